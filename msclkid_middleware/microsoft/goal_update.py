"""What ``UpdateConversionGoals`` sends: the goal's ID and type and only the elements being changed (issue 20).

Microsoft's update semantics: an element left out (null) keeps its value.  Scope cannot be changed ("Once you set
scope, you can't change it"), and three elements are documented as "Not applicable for offline conversion goals"
(``AttributionModelType``, ``ViewThroughConversionWindowInMinutes``, ``TagId``): an update that sets one of them on
an offline goal is refused here with that quote instead of being sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from msclkid_middleware.errors import ValidationError

__all__ = ["ATTRIBUTION_MODELS", "COUNT_TYPES", "REVENUE_TYPES", "GoalUpdate"]

ATTRIBUTION_MODELS = ("LastClick", "LastTouch", "DataDriven")
COUNT_TYPES = ("All", "Unique")
REVENUE_TYPES = ("FixedValue", "VariableValue", "NoValue")
_NOT_FOR_OFFLINE = "is not applicable for offline conversion goals (Microsoft's OfflineConversionGoal page)"


@dataclass(frozen=True, slots=True)
class GoalUpdate:
    """One goal's changes; every ``None`` field is left as it is at Microsoft."""

    id: str
    type: str = "OfflineConversion"
    name: str | None = None
    status: Literal["Active", "Paused"] | None = None
    count_type: str | None = None
    conversion_window_minutes: int | None = None
    revenue_type: str | None = None
    revenue_value: float | None = None
    currency: str | None = None
    exclude_from_bidding: bool | None = None
    attribution_model: str | None = None
    view_through_window_minutes: int | None = None

    def __post_init__(self) -> None:
        if not str(self.id).strip().isdigit():
            raise ValidationError("id", "a conversion goal ID is a number")
        if self.name is not None and (not self.name.strip() or len(self.name) > 100):
            raise ValidationError("name", "a goal name is 1-100 characters")
        if self.count_type is not None and self.count_type not in COUNT_TYPES:
            raise ValidationError("count_type", "must be All or Unique")
        if self.conversion_window_minutes is not None and not 1 <= self.conversion_window_minutes <= 129600:
            raise ValidationError("conversion_window_minutes", "must be between 1 and 129600 (90 days)")
        if self.revenue_type is not None and self.revenue_type not in REVENUE_TYPES:
            raise ValidationError("revenue_type", "must be FixedValue, VariableValue or NoValue")
        if self.revenue_value is not None and self.revenue_value < 0:
            raise ValidationError("revenue_value", "must not be negative")
        if self.revenue_type == "FixedValue" and self.revenue_value is None:
            raise ValidationError("revenue_value", "a fixed revenue needs its value")
        if self.attribution_model is not None and self.attribution_model not in ATTRIBUTION_MODELS:
            raise ValidationError("attribution_model", "must be LastClick, LastTouch or DataDriven")
        if self.view_through_window_minutes is not None and not 1 <= self.view_through_window_minutes <= 43200:
            raise ValidationError("view_through_window_minutes", "must be between 1 and 43200 (30 days)")
        if self.type == "OfflineConversion":
            if self.attribution_model is not None:
                raise ValidationError("attribution_model", f"AttributionModelType {_NOT_FOR_OFFLINE}")
            if self.view_through_window_minutes is not None:
                raise ValidationError(
                    "view_through_window_minutes", f"ViewThroughConversionWindowInMinutes {_NOT_FOR_OFFLINE}"
                )
        if not self.changes():
            raise ValidationError("update", "nothing to change")

    def changes(self) -> dict[str, Any]:
        """The changed elements as Microsoft names them (no ``Id``/``Type``)."""
        wire: dict[str, Any] = {
            "Name": self.name,
            "Status": self.status,
            "CountType": self.count_type,
            "ConversionWindowInMinutes": self.conversion_window_minutes,
            "ExcludeFromBidding": self.exclude_from_bidding,
            "AttributionModelType": self.attribution_model,
            "ViewThroughConversionWindowInMinutes": self.view_through_window_minutes,
        }
        revenue = {
            "Type": self.revenue_type,
            "Value": None if self.revenue_value is None else float(self.revenue_value),
            "CurrencyCode": self.currency.upper() if self.currency else None,
        }
        if any(v is not None for v in revenue.values()):
            wire["Revenue"] = {k: v for k, v in revenue.items() if v is not None}
        return {k: v for k, v in wire.items() if v is not None}

    def to_wire(self) -> dict[str, Any]:
        """The ``ConversionGoal`` object of ``UpdateConversionGoals``: ``Type``, ``Id`` and the changes."""
        return {"Type": self.type, "Id": str(self.id).strip(), **self.changes()}
