"""One item of ``ApplyOfflineConversions``: a conversion that happened outside the website (CRM, phone, store)."""

from __future__ import annotations

from dataclasses import InitVar, dataclass
from datetime import datetime
from typing import ClassVar

from msclkid_middleware.conversions.base import (
    MAX_CONVERSION_NAME_LENGTH,
    MAX_CONVERSION_VALUE,
    OFFLINE_MAX_AGE,
    TimedModel,
    Window,
    WireField,
    WireShape,
    format_time,
    optional_number,
    parse_time,
    utc_time,
    valid_conversion_name,
    valid_currency,
    valid_number,
    valid_text,
)
from msclkid_middleware.conversions.identifiers import IDENTIFIERS_WIRE, UserIdentifiers, set_match_key
from msclkid_middleware.errors import ValidationError

__all__ = ["OfflineConversion"]


@dataclass(frozen=True, slots=True, kw_only=True)
class OfflineConversion(TimedModel):
    """One item of ``ApplyOfflineConversions`` (Campaign Management v13 ``OfflineConversion``).

    ``conversion_name`` must equal the offline goal's name exactly.  ``value`` and ``currency``
    are optional (the goal's revenue settings apply when omitted).  A click ID (``msclkid``, a
    string; a :class:`Click` is accepted too), hashed ``identifiers`` or both are required.
    ``external_attribution_credit`` (in (0, 1]) and ``external_attribution_model`` go together
    and need a goal with external attribution.
    ``validate_times=False`` skips the clock-dependent checks (see :meth:`check_window`:
    ConversionTime within the last 90 days and not in the future).
    """

    conversion_name: str
    conversion_time: datetime
    value: float | None = None
    currency: str | None = None
    msclkid: str | None = None
    identifiers: UserIdentifiers | None = None
    external_attribution_credit: float | None = None
    external_attribution_model: str | None = None
    validate_times: InitVar[bool] = True

    WINDOW: ClassVar[Window] = Window(
        not_future=("conversion_time",), not_older=("conversion_time",), max_age=OFFLINE_MAX_AGE
    )
    WIRE: ClassVar[WireShape] = WireShape(
        "OfflineConversion",
        (
            WireField("conversion_name", "ConversionName", required=True),
            WireField("conversion_time", "ConversionTime", required=True, dump=format_time, load=parse_time),
            WireField("value", "ConversionValue"),
            WireField("currency", "ConversionCurrencyCode"),
            WireField("msclkid", "MicrosoftClickId"),
            IDENTIFIERS_WIRE,
            WireField("external_attribution_credit", "ExternalAttributionCredit"),
            WireField("external_attribution_model", "ExternalAttributionModel"),
        ),
        sort=True,
    )

    def __post_init__(self, validate_times: bool) -> None:
        valid_conversion_name(self.conversion_name)
        object.__setattr__(self, "conversion_time", utc_time(self.conversion_time, "conversion_time"))
        object.__setattr__(self, "value", optional_number("value", self.value, maximum=MAX_CONVERSION_VALUE))
        object.__setattr__(self, "currency", valid_currency("currency", self.currency))
        set_match_key(self)
        credit, model = self.external_attribution_credit, self.external_attribution_model
        if (credit is None) != (model is None):
            raise ValidationError(
                "external_attribution_credit", "external_attribution_credit and external_attribution_model go together"
            )
        if credit is not None:
            credit = valid_number("external_attribution_credit", credit, maximum=1.0)
            if credit == 0:
                raise ValidationError("external_attribution_credit", "must be greater than 0 and at most 1")
            object.__setattr__(self, "external_attribution_credit", credit)
            valid_text("external_attribution_model", model, max_length=MAX_CONVERSION_NAME_LENGTH)
        if validate_times:
            self.check_window()
