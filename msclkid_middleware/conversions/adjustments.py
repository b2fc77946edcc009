"""Restating or retracting a conversion already sent: offline (by its identity) or online (by transaction ID)."""

from __future__ import annotations

from dataclasses import InitVar, dataclass
from datetime import UTC, datetime
from typing import ClassVar, Final, Literal, Self

from msclkid_middleware.conversions import base
from msclkid_middleware.conversions.identifiers import IDENTIFIERS_WIRE, UserIdentifiers, set_match_key
from msclkid_middleware.conversions.offline import OfflineConversion
from msclkid_middleware.errors import ValidationError

__all__ = ["AdjustmentType", "OfflineConversionAdjustment", "OnlineConversionAdjustment"]

AdjustmentType = Literal["Restate", "Retract"]
_ADJUSTMENT_TYPES: Final = frozenset({"Restate", "Retract"})


@dataclass(frozen=True, slots=True, kw_only=True)
class _Adjustment(base.TimedModel):
    """What both adjustments carry: Restate (a new value and its currency) or Retract, of a goal, at a time."""

    adjustment_type: AdjustmentType
    conversion_name: str
    adjustment_time: datetime
    value: float | None = None
    currency: str | None = None
    validate_times: InitVar[bool] = True

    def _set_adjustment_values(self) -> None:
        # Restate carries the new value and its currency; Retract carries neither (the value becomes 0).
        value = base.optional_number("value", self.value, maximum=base.MAX_CONVERSION_VALUE)
        currency = base.valid_currency("currency", self.currency)
        object.__setattr__(self, "value", value)
        object.__setattr__(self, "currency", currency)
        if self.adjustment_type not in _ADJUSTMENT_TYPES:
            raise ValidationError("adjustment_type", "must be 'Restate' or 'Retract'")
        if self.adjustment_type == "Restate":
            if value is None:
                raise ValidationError("value", "is required to restate a conversion")
            if currency is None:
                raise ValidationError("currency", "is required to restate a conversion")
        else:
            if value is not None:
                raise ValidationError("value", "must not be set when retracting a conversion")
            if currency is not None:
                raise ValidationError("currency", "must not be set when retracting a conversion")


_TYPE = base.WireField("adjustment_type", "AdjustmentType", required=True)
_NAME = base.WireField("conversion_name", "ConversionName", required=True)
_TIME = base.WireField("adjustment_time", "AdjustmentTime", required=True, dump=base.format_time, load=base.parse_time)
_VALUE = base.WireField("value", "AdjustmentValue")
_CURRENCY = base.WireField("currency", "AdjustmentCurrencyCode")


@dataclass(frozen=True, slots=True, kw_only=True)
class OfflineConversionAdjustment(_Adjustment):
    """One item of ``ApplyOfflineConversionAdjustments``: restate or retract an offline conversion.

    The original is identified by its exact ``conversion_name``, ``conversion_time`` and click ID
    and/or hashed identifiers.  Restate needs ``value`` and ``currency``; Retract takes neither.
    ``adjustment_time`` defaults to now; it may not be before ``conversion_time``.
    Use :meth:`restate` / :meth:`retract` to build one from the original :class:`OfflineConversion`.
    AdjustmentTime must not be in the future (error 5622) and, like the conversion it adjusts,
    must be within the last 90 days (5623 / 5609): see :meth:`check_window`.
    """

    conversion_time: datetime
    msclkid: str | None = None
    identifiers: UserIdentifiers | None = None

    WINDOW: ClassVar[base.Window] = base.Window(
        not_future=("adjustment_time",), not_older=("conversion_time", "adjustment_time"), max_age=base.OFFLINE_MAX_AGE
    )
    WIRE: ClassVar[base.WireShape] = base.WireShape(
        "OfflineConversionAdjustment",
        (
            _TYPE,
            _NAME,
            base.WireField(
                "conversion_time", "ConversionTime", required=True, dump=base.format_time, load=base.parse_time
            ),
            _TIME,
            _VALUE,
            _CURRENCY,
            base.WireField("msclkid", "MicrosoftClickId"),
            IDENTIFIERS_WIRE,
        ),
        sort=True,
    )

    def __post_init__(self, validate_times: bool) -> None:
        base.valid_conversion_name(self.conversion_name)
        object.__setattr__(self, "conversion_time", base.utc_time(self.conversion_time, "conversion_time"))
        object.__setattr__(self, "adjustment_time", base.utc_time(self.adjustment_time, "adjustment_time"))
        if self.adjustment_time < self.conversion_time:
            raise ValidationError("adjustment_time", "must not be earlier than conversion_time")
        self._set_adjustment_values()
        set_match_key(self)
        if validate_times:
            self.check_window()

    @classmethod
    def restate(
        cls, original: OfflineConversion, value: float, currency: str | None = None, *, at: datetime | None = None
    ) -> Self:
        """Restate ``original`` to ``value`` (``currency`` defaults to the original's)."""
        return cls(
            adjustment_type="Restate",
            conversion_name=original.conversion_name,
            conversion_time=original.conversion_time,
            adjustment_time=at if at is not None else datetime.now(UTC),
            value=value,
            currency=currency if currency is not None else original.currency,
            msclkid=original.msclkid,
            identifiers=original.identifiers,
        )

    @classmethod
    def retract(cls, original: OfflineConversion, *, at: datetime | None = None) -> Self:
        """Retract ``original`` (it stops counting and its value becomes 0)."""
        return cls(
            adjustment_type="Retract",
            conversion_name=original.conversion_name,
            conversion_time=original.conversion_time,
            adjustment_time=at if at is not None else datetime.now(UTC),
            msclkid=original.msclkid,
            identifiers=original.identifiers,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class OnlineConversionAdjustment(_Adjustment):
    """One item of ``ApplyOnlineConversionAdjustments``: restate or retract a UET (online) conversion.

    The original is identified by the ``transaction_id`` that UET reported with it and the goal's
    ``conversion_name``.  Restate needs ``value`` and ``currency``; Retract takes neither.
    AdjustmentTime must not be in the future and must be within the last 90 days.
    """

    transaction_id: str

    WINDOW: ClassVar[base.Window] = base.Window(
        not_future=("adjustment_time",), not_older=("adjustment_time",), max_age=base.OFFLINE_MAX_AGE
    )
    WIRE: ClassVar[base.WireShape] = base.WireShape(
        "OnlineConversionAdjustment",
        (
            _TYPE,
            _NAME,
            base.WireField("transaction_id", "TransactionId", required=True),
            _TIME,
            _VALUE,
            _CURRENCY,
        ),
        sort=True,
    )

    def __post_init__(self, validate_times: bool) -> None:
        base.valid_conversion_name(self.conversion_name)
        base.valid_text("transaction_id", self.transaction_id)
        object.__setattr__(self, "adjustment_time", base.utc_time(self.adjustment_time, "adjustment_time"))
        self._set_adjustment_values()
        if validate_times:
            self.check_window()
