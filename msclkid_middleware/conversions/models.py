"""Values that travel from capture to Microsoft: frozen, slotted, validated on construction.

Every conversion model checks its *structure* when it is built (types, lengths, currencies, which
fields go together) and, by default, its *time window* against the current clock (an offline
conversion older than 90 days or a UET event older than 7 days cannot be accepted by Microsoft).
``to_wire()`` returns exactly Microsoft's JSON object (field names, types, ``None`` omitted) and
``from_wire()`` rebuilds the model from that object *without* the time-window checks, because the
outbox stores wire JSON and an event that has aged in the queue must still load.  The dispatcher
calls ``check_window(now)`` before sending and moves an event that fails it to ``dead`` with the
error's reason.

Times are kept as aware UTC datetimes truncated to whole seconds and always written by
:func:`format_time` (``2026-11-28T12:00:00Z``), so a ConversionTime resent from the outbox is
byte-identical to the first attempt (Microsoft de-duplicates on it).
"""

from __future__ import annotations

import ipaddress
import math
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import InitVar, dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Final, Literal, Self
from urllib.parse import urlsplit

from msclkid_middleware.capture.clickid import Click
from msclkid_middleware.capture.consent import Consent
from msclkid_middleware.conversions.identity import hash_email, hash_phone, is_sha256_hex
from msclkid_middleware.errors import TimeWindowError, ValidationError

__all__ = [
    "CLOCK_SKEW",
    "CURRENCY_CODES",
    "MAX_CONVERSION_NAME_LENGTH",
    "MAX_CONVERSION_VALUE",
    "OFFLINE_MAX_AGE",
    "UET_MAX_AGE",
    "UET_PAGE_TYPES",
    "AdjustmentType",
    "OfflineConversion",
    "OfflineConversionAdjustment",
    "OnlineConversionAdjustment",
    "UetCustomData",
    "UetEvent",
    "UetEventType",
    "UetHotelData",
    "UetItem",
    "UetPageType",
    "UetUserData",
    "UserIdentifiers",
    "format_time",
    "parse_time",
]

#: Where a click came from: the landing URL, the browser snippet, our own signed cookie,
#: UET's ``_uetmsclkid`` cookie, or the server-side profile store.
# ---------------------------------------------------------------------------------------------
# Shared rules
# ---------------------------------------------------------------------------------------------

#: Microsoft accepts offline conversions (and adjustments) whose time is within the last 90 days.
OFFLINE_MAX_AGE: Final = timedelta(days=90)
#: UET CAPI: "'eventTime' must be a valid UNIX UTC timestamp in seconds within last 7 days".
UET_MAX_AGE: Final = timedelta(days=7)
#: How far into the future a time may be: clocks of the shop and Microsoft are never exactly equal.
CLOCK_SKEW: Final = timedelta(minutes=5)
#: A goal's Name is at most 100 characters and ConversionName must equal it.
MAX_CONVERSION_NAME_LENGTH: Final = 100
#: The range Microsoft's upload help gives for conversion values.
MAX_CONVERSION_VALUE: Final = 999_999_999_999.0

#: The 100 currencies Microsoft lists for conversion goal revenue ("Conversion Goal Revenue Currencies").
CURRENCY_CODES: Final = frozenset(
    """
    AED ALL AMD ARS AUD AZN BDT BGN BHD BND BOB BRL BWP BZD CAD CHF CLP CNY COP CRC CZK DKK DOP DZD EGP ETB EUR FJD
    GBP GEL GHS GTQ HKD HNL HRK HUF IDR ILS INR IQD ISK JMD JOD JPY KES KGS KRW KWD KZT LBP LKR LYD MAD MKD MNT MOP
    MUR MVR MWK MXN MYR NGN NIO NOK NZD OMR PAB PEN PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SEK SGD THB TND TOP TRL
    TTD TWD TZS UAH UGX USD UYU UZS VEF VND XAF XCD XOF YER ZAR ZMW
    """.split()  # noqa: SIM905 - rows as in Microsoft's table read better than 100 literals
)

AdjustmentType = Literal["Restate", "Retract"]
UetEventType = Literal["pageLoad", "custom"]
UetPageType = Literal["cart", "category", "home", "other", "product", "purchase", "searchresults"]
UET_PAGE_TYPES: Final = frozenset({"cart", "category", "home", "other", "product", "purchase", "searchresults"})
_ADJUSTMENT_TYPES = frozenset({"Restate", "Retract"})
_EVENT_TYPES = frozenset({"pageLoad", "custom"})
_WIRE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,7})?(?:Z|[+-]\d{2}:\d{2})")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_ISO_CURRENCY = re.compile(r"[A-Z]{3}")


def format_time(value: datetime) -> str:
    """The one wire form of a Campaign Management ``xs:dateTime``: UTC, whole seconds, ``Z``.

    >>> from datetime import timezone, timedelta
    >>> format_time(datetime(2026, 11, 28, 13, 0, 5, 999999, tzinfo=timezone(timedelta(hours=1))))
    '2026-11-28T12:00:05Z'
    """
    # isoformat() always writes four year digits (strftime's %Y does not on every platform).
    return _utc(value, "time").replace(tzinfo=None).isoformat(timespec="seconds") + "Z"


def parse_time(value: object, field: str = "time") -> datetime:
    """Read a wire ``xs:dateTime`` (an explicit zone is required) back into an aware UTC datetime."""
    if not isinstance(value, str) or _WIRE_TIME.fullmatch(value) is None:
        raise ValidationError(field, "must be an ISO 8601 date-time with a zone, such as 2026-11-28T12:00:00Z")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValidationError(field, "is not a valid calendar date-time") from None
    return _utc(parsed, field)


def _utc(value: object, field: str) -> datetime:
    # Naive datetimes are refused rather than guessed: Microsoft wants UTC and a server's local
    # time silently shifts every conversion by hours.
    if not isinstance(value, datetime):
        raise ValidationError(field, "must be a datetime")
    if value.utcoffset() is None:
        raise ValidationError(field, "must be timezone-aware (naive datetimes are ambiguous)")
    try:
        return value.astimezone(UTC).replace(microsecond=0)
    except OverflowError:
        raise ValidationError(field, "is out of the representable range") from None


def _now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    return _utc(now, "now")


def _check_not_future(field: str, when: datetime, now: datetime) -> None:
    if when > now + CLOCK_SKEW:
        raise TimeWindowError(
            field, f"must not be in the future (more than {_minutes(CLOCK_SKEW)} minutes ahead)", expired=False
        )


def _check_not_older(field: str, when: datetime, now: datetime, max_age: timedelta) -> None:
    if now - when > max_age:
        raise TimeWindowError(field, f"is older than {max_age.days} days: Microsoft no longer accepts it", expired=True)


def _minutes(delta: timedelta) -> int:
    return int(delta.total_seconds() // 60)


def _text(field: str, value: object, *, max_length: int | None = None, strip_check: bool = False) -> str:
    if not isinstance(value, str):
        raise ValidationError(field, "must be a string")
    if not value:
        raise ValidationError(field, "must not be empty")
    if max_length is not None and len(value) > max_length:
        raise ValidationError(field, f"must be at most {max_length} characters")
    if _CONTROL.search(value):
        raise ValidationError(field, "must not contain control characters")
    if strip_check and value != value.strip():
        raise ValidationError(field, "must not start or end with whitespace (Microsoft matches names exactly)")
    return value


def _optional_text(field: str, value: object, *, max_length: int | None = None) -> str | None:
    return None if value is None else _text(field, value, max_length=max_length)


def _number(field: str, value: object, *, maximum: float | None = None, allow_negative: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise ValidationError(field, "must be a number")
    # Money is often a Decimal (SQL NUMERIC, Django's DecimalField); the wire wants a double.  A signalling
    # NaN would raise in float(), so non-finite Decimals are refused first.
    if isinstance(value, Decimal) and not value.is_finite():
        raise ValidationError(field, "must be a finite number")
    result = float(value)
    if not math.isfinite(result):
        raise ValidationError(field, "must be a finite number")
    if not allow_negative and result < 0:
        raise ValidationError(field, "must not be negative")
    if maximum is not None and result > maximum:
        raise ValidationError(field, f"must be at most {maximum:.0f}")
    return result


def _optional_number(field: str, value: object, *, maximum: float | None = None) -> float | None:
    return None if value is None else _number(field, value, maximum=maximum)


def _count(field: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(field, "must be an integer")
    if value < 0:
        raise ValidationError(field, "must not be negative")
    return value


def _currency(field: str, value: object, allowed: frozenset[str] | None = CURRENCY_CODES) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationError(field, "must be a three-letter ISO 4217 code")
    code = value.upper()
    if _ISO_CURRENCY.fullmatch(code) is None:
        raise ValidationError(field, "must be a three-letter ISO 4217 code")
    if allowed is not None and code not in allowed:
        raise ValidationError(field, "is not one of the currencies Microsoft supports for conversion revenue")
    return code


def _click_id(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, Click):
        return value.msclkid
    # Imported here so ``models`` and ``clickid`` can refer to each other without a cycle.
    from msclkid_middleware.capture.clickid import validate_click_id

    return validate_click_id(value)


def _hashed(field: str, value: object) -> str | None:
    if value is None:
        return None
    if not is_sha256_hex(value):
        # Never echo the value: it is probably a plain email address or phone number.
        raise ValidationError(
            field, "must be a SHA-256 hex digest (64 hex characters); pass plain values as email=/phone= to hash them"
        )
    assert isinstance(value, str)  # noqa: S101 - narrowed by is_sha256_hex
    return value.lower()


def _url(field: str, value: object, *, web_only: bool) -> str | None:
    if value is None:
        return None
    text = _text(field, value)
    if any(ch.isspace() for ch in text):
        raise ValidationError(field, "must not contain whitespace")
    try:
        parts = urlsplit(text)
    except ValueError:
        raise ValidationError(field, "is not a valid URL") from None
    if web_only and parts.scheme not in ("http", "https"):
        raise ValidationError(field, "must be an http:// or https:// URL")
    if not parts.scheme or not parts.netloc:
        raise ValidationError(field, "must be an absolute URL")
    return text


def _mapping(field: str, data: object) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise ValidationError(field, "must be a JSON object")
    return data


def _only_keys(field: str, data: Mapping[str, Any], allowed: Iterable[str]) -> None:
    unknown = set(data) - set(allowed)
    if unknown:
        raise ValidationError(field, f"has unknown wire fields {sorted(map(str, unknown))}")


def _required(data: Mapping[str, Any], key: str) -> Any:
    value = data.get(key)
    if value is None:
        raise ValidationError(key, "is required")
    return value


def _compact(pairs: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    return {key: value for key, value in pairs if value is not None}


# ---------------------------------------------------------------------------------------------
# Identifiers
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class UserIdentifiers:
    """Hashed email and/or phone for enhanced conversions.

    Give plain values as ``email=`` / ``phone=`` (normalised and hashed here, then forgotten: they
    are not fields, so they are never in ``repr``, equality, the outbox or an error) or ready
    SHA-256 hex digests as ``hashed_email=`` / ``hashed_phone=``.  A plain value given to a hashed
    field is an error, never hashed silently.  ``default_region`` (``"US"``) lets national phone
    numbers be read (needs the ``msclkid-middleware[phone]`` extra).  Empty identifiers are allowed
    and falsy, so callers can build them from optional form fields.
    """

    hashed_email: str | None = None
    hashed_phone: str | None = None
    email: InitVar[str | None] = None
    phone: InitVar[str | None] = None
    default_region: InitVar[str | None] = None

    def __post_init__(self, email: str | None, phone: str | None, default_region: str | None) -> None:
        _init_hashes(self, "hashed_email", "hashed_phone", email, phone, default_region)

    def __bool__(self) -> bool:
        return self.hashed_email is not None or self.hashed_phone is not None

    def to_wire(self) -> dict[str, Any]:
        """The Campaign Management fields ``HashedEmailAddress`` / ``HashedPhoneNumber``."""
        return _compact((("HashedEmailAddress", self.hashed_email), ("HashedPhoneNumber", self.hashed_phone)))

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Self:
        data = _mapping("identifiers", data)
        return cls(hashed_email=data.get("HashedEmailAddress"), hashed_phone=data.get("HashedPhoneNumber"))


def _init_hashes(
    obj: object,
    email_field: str,
    phone_field: str,
    email: str | None,
    phone: str | None,
    default_region: str | None,
) -> None:
    hashed_email = _hashed(email_field, getattr(obj, email_field))
    hashed_phone = _hashed(phone_field, getattr(obj, phone_field))
    if email is not None:
        if hashed_email is not None:
            raise ValidationError("email", f"give email or {email_field}, not both")
        hashed_email = hash_email(email)
    if phone is not None:
        if hashed_phone is not None:
            raise ValidationError("phone", f"give phone or {phone_field}, not both")
        hashed_phone = hash_phone(phone, default_region)
    object.__setattr__(obj, email_field, hashed_email)
    object.__setattr__(obj, phone_field, hashed_phone)


def _identifiers(value: object) -> UserIdentifiers | None:
    if value is None:
        return None
    if not isinstance(value, UserIdentifiers):
        raise ValidationError("identifiers", "must be a UserIdentifiers value")
    # Empty identifiers carry nothing; storing None keeps equality and round trips simple.
    return value if value else None


def _require_match_key(msclkid: str | None, identifiers: UserIdentifiers | None) -> None:
    if msclkid is None and identifiers is None:
        raise ValidationError(
            "msclkid", "a click ID or a hashed email/phone (identifiers) is required to match the conversion"
        )


# ---------------------------------------------------------------------------------------------
# Campaign Management: offline conversions and adjustments
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class OfflineConversion:
    """One item of ``ApplyOfflineConversions`` (Campaign Management v13 ``OfflineConversion``).

    ``conversion_name`` must equal the offline goal's name exactly.  ``value`` and ``currency``
    are optional (the goal's revenue settings apply when omitted).  A click ID (``msclkid``, a
    string; a :class:`Click` is accepted too), hashed ``identifiers`` or both are required.
    ``external_attribution_credit`` (in (0, 1]) and ``external_attribution_model`` go together
    and need a goal with external attribution.
    ``validate_times=False`` skips the clock-dependent checks (see :meth:`check_window`).
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

    def __post_init__(self, validate_times: bool) -> None:
        _text("conversion_name", self.conversion_name, max_length=MAX_CONVERSION_NAME_LENGTH, strip_check=True)
        object.__setattr__(self, "conversion_time", _utc(self.conversion_time, "conversion_time"))
        object.__setattr__(self, "value", _optional_number("value", self.value, maximum=MAX_CONVERSION_VALUE))
        object.__setattr__(self, "currency", _currency("currency", self.currency))
        object.__setattr__(self, "msclkid", _click_id(self.msclkid))
        object.__setattr__(self, "identifiers", _identifiers(self.identifiers))
        _require_match_key(self.msclkid, self.identifiers)
        credit, model = self.external_attribution_credit, self.external_attribution_model
        if (credit is None) != (model is None):
            raise ValidationError(
                "external_attribution_credit", "external_attribution_credit and external_attribution_model go together"
            )
        if credit is not None:
            credit = _number("external_attribution_credit", credit, maximum=1.0)
            if credit == 0:
                raise ValidationError("external_attribution_credit", "must be greater than 0 and at most 1")
            object.__setattr__(self, "external_attribution_credit", credit)
            _text("external_attribution_model", model, max_length=MAX_CONVERSION_NAME_LENGTH)
        if validate_times:
            self.check_window()

    def check_window(self, now: datetime | None = None) -> None:
        """Raise :class:`~msclkid_middleware.errors.TimeWindowError` unless Microsoft would accept this time at ``now``.

        ConversionTime must be within the last 90 days and not in the future (beyond
        :data:`CLOCK_SKEW`).  The dispatcher calls this before each send.
        """
        current = _now(now)
        _check_not_future("conversion_time", self.conversion_time, current)
        _check_not_older("conversion_time", self.conversion_time, current, OFFLINE_MAX_AGE)

    def to_wire(self) -> dict[str, Any]:
        wire = _compact(
            (
                ("ConversionCurrencyCode", self.currency),
                ("ConversionName", self.conversion_name),
                ("ConversionTime", format_time(self.conversion_time)),
                ("ConversionValue", self.value),
                ("ExternalAttributionCredit", self.external_attribution_credit),
                ("ExternalAttributionModel", self.external_attribution_model),
            )
        )
        if self.identifiers is not None:
            wire.update(self.identifiers.to_wire())
        if self.msclkid is not None:
            wire["MicrosoftClickId"] = self.msclkid
        return wire

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Self:
        """Rebuild from :meth:`to_wire` output; structural checks only (no clock-dependent ones)."""
        data = _mapping("OfflineConversion", data)
        _only_keys("OfflineConversion", data, _OFFLINE_KEYS)
        return cls(
            conversion_name=_required(data, "ConversionName"),
            conversion_time=parse_time(_required(data, "ConversionTime"), "ConversionTime"),
            value=data.get("ConversionValue"),
            currency=data.get("ConversionCurrencyCode"),
            msclkid=data.get("MicrosoftClickId"),
            identifiers=_wire_identifiers(data),
            external_attribution_credit=data.get("ExternalAttributionCredit"),
            external_attribution_model=data.get("ExternalAttributionModel"),
            validate_times=False,
        )


_OFFLINE_KEYS = frozenset(
    {
        "ConversionCurrencyCode",
        "ConversionName",
        "ConversionTime",
        "ConversionValue",
        "ExternalAttributionCredit",
        "ExternalAttributionModel",
        "HashedEmailAddress",
        "HashedPhoneNumber",
        "MicrosoftClickId",
    }
)


def _wire_identifiers(data: Mapping[str, Any]) -> UserIdentifiers | None:
    if data.get("HashedEmailAddress") is None and data.get("HashedPhoneNumber") is None:
        return None
    return UserIdentifiers.from_wire(data)


def _check_adjustment(adjustment_type: object, value: float | None, currency: str | None) -> None:
    if adjustment_type not in _ADJUSTMENT_TYPES:
        raise ValidationError("adjustment_type", "must be 'Restate' or 'Retract'")
    if adjustment_type == "Restate":
        if value is None:
            raise ValidationError("value", "is required to restate a conversion")
        if currency is None:
            raise ValidationError("currency", "is required to restate a conversion")
    else:
        if value is not None:
            raise ValidationError("value", "must not be set when retracting a conversion")
        if currency is not None:
            raise ValidationError("currency", "must not be set when retracting a conversion")


def _adjustment_values(obj: OfflineConversionAdjustment | OnlineConversionAdjustment) -> None:
    value = _optional_number("value", obj.value, maximum=MAX_CONVERSION_VALUE)
    currency = _currency("currency", obj.currency)
    object.__setattr__(obj, "value", value)
    object.__setattr__(obj, "currency", currency)
    _check_adjustment(obj.adjustment_type, value, currency)


@dataclass(frozen=True, slots=True, kw_only=True)
class OfflineConversionAdjustment:
    """One item of ``ApplyOfflineConversionAdjustments``: restate or retract an offline conversion.

    The original is identified by its exact ``conversion_name``, ``conversion_time`` and click ID
    and/or hashed identifiers.  Restate needs ``value`` and ``currency``; Retract takes neither.
    ``adjustment_time`` defaults to now; it may not be before ``conversion_time``.
    Use :meth:`restate` / :meth:`retract` to build one from the original :class:`OfflineConversion`.
    """

    adjustment_type: AdjustmentType
    conversion_name: str
    conversion_time: datetime
    adjustment_time: datetime
    value: float | None = None
    currency: str | None = None
    msclkid: str | None = None
    identifiers: UserIdentifiers | None = None
    validate_times: InitVar[bool] = True

    def __post_init__(self, validate_times: bool) -> None:
        _text("conversion_name", self.conversion_name, max_length=MAX_CONVERSION_NAME_LENGTH, strip_check=True)
        object.__setattr__(self, "conversion_time", _utc(self.conversion_time, "conversion_time"))
        object.__setattr__(self, "adjustment_time", _utc(self.adjustment_time, "adjustment_time"))
        if self.adjustment_time < self.conversion_time:
            raise ValidationError("adjustment_time", "must not be earlier than conversion_time")
        _adjustment_values(self)
        object.__setattr__(self, "msclkid", _click_id(self.msclkid))
        object.__setattr__(self, "identifiers", _identifiers(self.identifiers))
        _require_match_key(self.msclkid, self.identifiers)
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

    def check_window(self, now: datetime | None = None) -> None:
        """Raise :class:`~msclkid_middleware.errors.TimeWindowError` unless Microsoft would accept these times now.

        AdjustmentTime must not be in the future (error 5622) and, like the conversion it adjusts,
        must be within the last 90 days (5623 / 5609).
        """
        current = _now(now)
        _check_not_future("adjustment_time", self.adjustment_time, current)
        _check_not_older("conversion_time", self.conversion_time, current, OFFLINE_MAX_AGE)
        _check_not_older("adjustment_time", self.adjustment_time, current, OFFLINE_MAX_AGE)

    def to_wire(self) -> dict[str, Any]:
        wire = _compact(
            (
                ("AdjustmentCurrencyCode", self.currency),
                ("AdjustmentTime", format_time(self.adjustment_time)),
                ("AdjustmentType", self.adjustment_type),
                ("AdjustmentValue", self.value),
                ("ConversionName", self.conversion_name),
                ("ConversionTime", format_time(self.conversion_time)),
            )
        )
        if self.identifiers is not None:
            wire.update(self.identifiers.to_wire())
        if self.msclkid is not None:
            wire["MicrosoftClickId"] = self.msclkid
        return wire

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Self:
        """Rebuild from :meth:`to_wire` output; structural checks only (no clock-dependent ones)."""
        data = _mapping("OfflineConversionAdjustment", data)
        _only_keys("OfflineConversionAdjustment", data, _OFFLINE_ADJUSTMENT_KEYS)
        return cls(
            adjustment_type=_required(data, "AdjustmentType"),
            conversion_name=_required(data, "ConversionName"),
            conversion_time=parse_time(_required(data, "ConversionTime"), "ConversionTime"),
            adjustment_time=parse_time(_required(data, "AdjustmentTime"), "AdjustmentTime"),
            value=data.get("AdjustmentValue"),
            currency=data.get("AdjustmentCurrencyCode"),
            msclkid=data.get("MicrosoftClickId"),
            identifiers=_wire_identifiers(data),
            validate_times=False,
        )


_OFFLINE_ADJUSTMENT_KEYS = frozenset(
    {
        "AdjustmentCurrencyCode",
        "AdjustmentTime",
        "AdjustmentType",
        "AdjustmentValue",
        "ConversionName",
        "ConversionTime",
        "HashedEmailAddress",
        "HashedPhoneNumber",
        "MicrosoftClickId",
    }
)


@dataclass(frozen=True, slots=True, kw_only=True)
class OnlineConversionAdjustment:
    """One item of ``ApplyOnlineConversionAdjustments``: restate or retract a UET (online) conversion.

    The original is identified by the ``transaction_id`` that UET reported with it and the goal's
    ``conversion_name``.  Restate needs ``value`` and ``currency``; Retract takes neither.
    """

    adjustment_type: AdjustmentType
    conversion_name: str
    transaction_id: str
    adjustment_time: datetime
    value: float | None = None
    currency: str | None = None
    validate_times: InitVar[bool] = True

    def __post_init__(self, validate_times: bool) -> None:
        _text("conversion_name", self.conversion_name, max_length=MAX_CONVERSION_NAME_LENGTH, strip_check=True)
        _text("transaction_id", self.transaction_id)
        object.__setattr__(self, "adjustment_time", _utc(self.adjustment_time, "adjustment_time"))
        _adjustment_values(self)
        if validate_times:
            self.check_window()

    def check_window(self, now: datetime | None = None) -> None:
        """AdjustmentTime must not be in the future and must be within the last 90 days."""
        current = _now(now)
        _check_not_future("adjustment_time", self.adjustment_time, current)
        _check_not_older("adjustment_time", self.adjustment_time, current, OFFLINE_MAX_AGE)

    def to_wire(self) -> dict[str, Any]:
        return _compact(
            (
                ("AdjustmentCurrencyCode", self.currency),
                ("AdjustmentTime", format_time(self.adjustment_time)),
                ("AdjustmentType", self.adjustment_type),
                ("AdjustmentValue", self.value),
                ("ConversionName", self.conversion_name),
                ("TransactionId", self.transaction_id),
            )
        )

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Self:
        """Rebuild from :meth:`to_wire` output; structural checks only (no clock-dependent ones)."""
        data = _mapping("OnlineConversionAdjustment", data)
        _only_keys("OnlineConversionAdjustment", data, _ONLINE_ADJUSTMENT_KEYS)
        return cls(
            adjustment_type=_required(data, "AdjustmentType"),
            conversion_name=_required(data, "ConversionName"),
            transaction_id=_required(data, "TransactionId"),
            adjustment_time=parse_time(_required(data, "AdjustmentTime"), "AdjustmentTime"),
            value=data.get("AdjustmentValue"),
            currency=data.get("AdjustmentCurrencyCode"),
            validate_times=False,
        )


_ONLINE_ADJUSTMENT_KEYS = frozenset(
    {
        "AdjustmentCurrencyCode",
        "AdjustmentTime",
        "AdjustmentType",
        "AdjustmentValue",
        "ConversionName",
        "TransactionId",
    }
)


# ---------------------------------------------------------------------------------------------
# UET Conversions API
# ---------------------------------------------------------------------------------------------


def _uuid(field: str, value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationError(field, "must be a UUID string")
    try:
        # Canonical lowercase, dashed form, so a value written any way round-trips identically.
        return str(uuid.UUID(value))
    except ValueError:
        raise ValidationError(field, "must be a UUID") from None


def _date(field: str, value: object) -> date | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        raise ValidationError(field, "must be a date (YYYY-MM-DD), not a datetime")
    if isinstance(value, date):
        return value
    if isinstance(value, str) and _ISO_DATE.fullmatch(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise ValidationError(field, "is not a valid calendar date") from None
    raise ValidationError(field, "must be a date or a YYYY-MM-DD string")


def _tuple_of_text(field: str, values: object) -> tuple[str, ...]:
    if isinstance(values, str) or not isinstance(values, Iterable):
        raise ValidationError(field, "must be a list of strings")
    return tuple(_text(field, item) for item in values)


def _wire_list(field: str, value: object) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValidationError(field, "must be a JSON array")
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class UetUserData:
    """UET CAPI ``userData``: who the event belongs to (at least one identifier is required).

    ``em`` / ``ph`` are SHA-256 hex digests; give plain values as ``email=`` / ``phone=`` to have
    them normalised and hashed here (they are not kept).  ``anonymous_id`` is UET's visitor ID
    (the ``_uetvid`` cookie, equal to the ID-sync pixel's ``vid``); ``external_id`` an anonymised
    signed-in user ID; ``client_ip_address`` / ``client_user_agent`` help matching but are not
    identifiers on their own.
    """

    msclkid: str | None = None
    anonymous_id: str | None = None
    external_id: str | None = None
    em: str | None = None
    ph: str | None = None
    idfa: str | None = None
    gaid: str | None = None
    client_ip_address: str | None = None
    client_user_agent: str | None = None
    email: InitVar[str | None] = None
    phone: InitVar[str | None] = None
    default_region: InitVar[str | None] = None

    def __post_init__(self, email: str | None, phone: str | None, default_region: str | None) -> None:
        _init_hashes(self, "em", "ph", email, phone, default_region)
        object.__setattr__(self, "msclkid", _click_id(self.msclkid))
        for name in ("anonymous_id", "external_id", "idfa", "gaid", "client_user_agent"):
            _optional_text(name, getattr(self, name))
        if self.client_ip_address is not None:
            if not isinstance(self.client_ip_address, str):
                raise ValidationError("client_ip_address", "must be a string")
            try:
                address = ipaddress.ip_address(self.client_ip_address)
            except ValueError:
                raise ValidationError("client_ip_address", "must be an IPv4 or IPv6 address") from None
            # A dual-stack server reports IPv4 clients as ::ffff:a.b.c.d; send the plain IPv4 form.
            mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
            object.__setattr__(self, "client_ip_address", str(mapped or address))
        if not any(getattr(self, name) is not None for name in _UET_IDENTIFIER_FIELDS):
            raise ValidationError(
                "user_data", "needs at least one of anonymous_id, external_id, em, ph, msclkid, idfa, gaid"
            )

    @classmethod
    def from_identifiers(cls, identifiers: UserIdentifiers | None, **fields: Any) -> Self:
        """UET user data carrying the hashes of an existing :class:`UserIdentifiers`."""
        if identifiers is not None:
            fields.setdefault("em", identifiers.hashed_email)
            fields.setdefault("ph", identifiers.hashed_phone)
        return cls(**fields)

    def to_wire(self) -> dict[str, Any]:
        return _compact((wire, getattr(self, name)) for name, wire in _UET_USER_WIRE)

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Self:
        data = _mapping("userData", data)
        _only_keys("userData", data, (wire for _, wire in _UET_USER_WIRE))
        return cls(**{name: data.get(wire) for name, wire in _UET_USER_WIRE})


_UET_IDENTIFIER_FIELDS = ("anonymous_id", "external_id", "em", "ph", "msclkid", "idfa", "gaid")
_UET_USER_WIRE = (
    ("anonymous_id", "anonymousId"),
    ("external_id", "externalId"),
    ("em", "em"),
    ("ph", "ph"),
    ("client_ip_address", "clientIpAddress"),
    ("client_user_agent", "clientUserAgent"),
    ("msclkid", "msclkid"),
    ("idfa", "idfa"),
    ("gaid", "gaid"),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class UetItem:
    """One entry of ``customData.items``: ``{id, quantity, price, name}``."""

    id: str
    quantity: int | None = None
    price: float | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        _text("items.id", self.id)
        if self.quantity is not None:
            _count("items.quantity", self.quantity)
        object.__setattr__(self, "price", _optional_number("items.price", self.price))
        _optional_text("items.name", self.name)

    def to_wire(self) -> dict[str, Any]:
        return _compact((("id", self.id), ("quantity", self.quantity), ("price", self.price), ("name", self.name)))

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Self:
        data = _mapping("items", data)
        _only_keys("items", data, ("id", "quantity", "price", "name"))
        return cls(
            id=_required(data, "id"), quantity=data.get("quantity"), price=data.get("price"), name=data.get("name")
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class UetHotelData:
    """``customData.hotelData`` for hotel advertising; dates are sent as ``YYYY-MM-DD``."""

    total_price: float | None = None
    base_price: float | None = None
    checkin_date: date | None = None
    checkout_date: date | None = None
    length_of_stay: int | None = None
    partner_hotel_id: str | None = None
    booking_href: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "total_price", _optional_number("hotel_data.total_price", self.total_price))
        object.__setattr__(self, "base_price", _optional_number("hotel_data.base_price", self.base_price))
        checkin = _date("hotel_data.checkin_date", self.checkin_date)
        checkout = _date("hotel_data.checkout_date", self.checkout_date)
        if checkin is not None and checkout is not None and checkout < checkin:
            raise ValidationError("hotel_data.checkout_date", "must not be before checkin_date")
        object.__setattr__(self, "checkin_date", checkin)
        object.__setattr__(self, "checkout_date", checkout)
        if self.length_of_stay is not None:
            _count("hotel_data.length_of_stay", self.length_of_stay)
        _optional_text("hotel_data.partner_hotel_id", self.partner_hotel_id)
        _url("hotel_data.booking_href", self.booking_href, web_only=False)

    def to_wire(self) -> dict[str, Any]:
        return _compact(
            (
                ("totalPrice", self.total_price),
                ("basePrice", self.base_price),
                ("checkinDate", self.checkin_date.isoformat() if self.checkin_date else None),
                ("checkoutDate", self.checkout_date.isoformat() if self.checkout_date else None),
                ("lengthOfStay", self.length_of_stay),
                ("partnerHotelId", self.partner_hotel_id),
                ("bookingHref", self.booking_href),
            )
        )

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Self:
        data = _mapping("hotelData", data)
        _only_keys("hotelData", data, (wire for _, wire in _HOTEL_WIRE))
        return cls(**{name: data.get(wire) for name, wire in _HOTEL_WIRE})


_HOTEL_WIRE = (
    ("total_price", "totalPrice"),
    ("base_price", "basePrice"),
    ("checkin_date", "checkinDate"),
    ("checkout_date", "checkoutDate"),
    ("length_of_stay", "lengthOfStay"),
    ("partner_hotel_id", "partnerHotelId"),
    ("booking_href", "bookingHref"),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class UetCustomData:
    """UET CAPI ``customData``: revenue, goal matching fields and retail/hotel details.

    ``currency`` is any ISO 4217 code (UET only warns on others); ``page_type`` is one of
    :data:`UET_PAGE_TYPES`; ``items`` and ``item_ids`` accept any iterable and are kept as tuples.
    """

    value: float | None = None
    currency: str | None = None
    transaction_id: str | None = None
    event_category: str | None = None
    event_label: str | None = None
    event_value: float | None = None
    search_term: str | None = None
    page_type: UetPageType | None = None
    items: tuple[UetItem, ...] = ()
    item_ids: tuple[str, ...] = ()
    ecomm_total_value: float | None = None
    ecomm_category: str | None = None
    hotel_data: UetHotelData | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "value", _optional_number("value", self.value, maximum=MAX_CONVERSION_VALUE))
        object.__setattr__(self, "currency", _currency("currency", self.currency, allowed=None))
        for name in ("transaction_id", "event_category", "event_label", "search_term", "ecomm_category"):
            _optional_text(name, getattr(self, name))
        if self.event_value is not None:
            object.__setattr__(self, "event_value", _number("event_value", self.event_value, allow_negative=True))
        if self.ecomm_total_value is not None:
            object.__setattr__(self, "ecomm_total_value", _number("ecomm_total_value", self.ecomm_total_value))
        if self.page_type is not None and self.page_type not in UET_PAGE_TYPES:
            raise ValidationError("page_type", f"must be one of {sorted(UET_PAGE_TYPES)}")
        raw_items: object = self.items
        if isinstance(raw_items, str | bytes) or not isinstance(raw_items, Iterable):
            raise ValidationError("items", "must be a list of UetItem values")
        items = tuple(raw_items)
        if not all(isinstance(item, UetItem) for item in items):
            raise ValidationError("items", "must be a list of UetItem values")
        object.__setattr__(self, "items", items)
        object.__setattr__(self, "item_ids", _tuple_of_text("item_ids", self.item_ids))
        if self.hotel_data is not None and not isinstance(self.hotel_data, UetHotelData):
            raise ValidationError("hotel_data", "must be a UetHotelData value")

    def to_wire(self) -> dict[str, Any]:
        return _compact(
            (
                ("eventCategory", self.event_category),
                ("eventLabel", self.event_label),
                ("eventValue", self.event_value),
                ("searchTerm", self.search_term),
                ("transactionId", self.transaction_id),
                ("value", self.value),
                ("currency", self.currency),
                ("items", [item.to_wire() for item in self.items] or None),
                ("itemIds", list(self.item_ids) or None),
                ("pageType", self.page_type),
                ("ecommTotalValue", self.ecomm_total_value),
                ("ecommCategory", self.ecomm_category),
                ("hotelData", self.hotel_data.to_wire() if self.hotel_data is not None else None),
            )
        )

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Self:
        data = _mapping("customData", data)
        _only_keys("customData", data, _CUSTOM_KEYS)
        hotel = data.get("hotelData")
        return cls(
            value=data.get("value"),
            currency=data.get("currency"),
            transaction_id=data.get("transactionId"),
            event_category=data.get("eventCategory"),
            event_label=data.get("eventLabel"),
            event_value=data.get("eventValue"),
            search_term=data.get("searchTerm"),
            page_type=data.get("pageType"),
            items=tuple(UetItem.from_wire(item) for item in _wire_list("items", data.get("items"))),
            item_ids=tuple(_wire_list("itemIds", data.get("itemIds"))),
            ecomm_total_value=data.get("ecommTotalValue"),
            ecomm_category=data.get("ecommCategory"),
            hotel_data=UetHotelData.from_wire(hotel) if hotel is not None else None,
        )


_CUSTOM_KEYS = frozenset(
    {
        "eventCategory",
        "eventLabel",
        "eventValue",
        "searchTerm",
        "transactionId",
        "value",
        "currency",
        "items",
        "itemIds",
        "pageType",
        "ecommTotalValue",
        "ecommCategory",
        "hotelData",
    }
)


@dataclass(frozen=True, slots=True, kw_only=True)
class UetEvent:
    """One event of a UET Conversions API request (``data[]``).

    ``event_id`` must be stable across retries and equal to the browser tag's ``event_id`` for
    deduplication.  ``event_time`` is an aware datetime (sent as epoch seconds) within the last 7
    days.  ``event_source_url`` is required for ``pageLoad`` events.  ``ad_storage_consent`` is
    ``"G"``/``"D"``; pass ``consent=`` (a :class:`~msclkid_middleware.capture.consent.Consent` snapshot)
    to derive it.
    """

    event_id: str
    event_time: datetime
    user_data: UetUserData
    event_type: UetEventType = "custom"
    event_name: str | None = None
    event_source_url: str | None = None
    page_load_id: str | None = None
    referrer_url: str | None = None
    page_title: str | None = None
    keywords: str | None = None
    ad_storage_consent: Literal["G", "D"] | None = None
    custom_data: UetCustomData | None = None
    consent: InitVar[Consent | None] = None
    validate_times: InitVar[bool] = True

    def __post_init__(self, consent: Consent | None, validate_times: bool) -> None:
        if self.event_type not in _EVENT_TYPES:
            raise ValidationError("event_type", "must be 'pageLoad' or 'custom'")
        _text("event_id", self.event_id)
        _optional_text("event_name", self.event_name)
        object.__setattr__(self, "event_time", _utc(self.event_time, "event_time"))
        _url("event_source_url", self.event_source_url, web_only=True)
        if self.event_type == "pageLoad" and self.event_source_url is None:
            raise ValidationError("event_source_url", "is required for pageLoad events")
        object.__setattr__(self, "page_load_id", _uuid("page_load_id", self.page_load_id))
        _url("referrer_url", self.referrer_url, web_only=False)
        _optional_text("page_title", self.page_title)
        _optional_text("keywords", self.keywords)
        if consent is not None:
            if not isinstance(consent, Consent):
                raise ValidationError("consent", "must be a Consent value")
            if self.ad_storage_consent is not None and self.ad_storage_consent != consent.ad_storage:
                raise ValidationError("ad_storage_consent", "contradicts the consent snapshot")
            object.__setattr__(self, "ad_storage_consent", consent.ad_storage)
        if self.ad_storage_consent is not None and self.ad_storage_consent not in ("G", "D"):
            raise ValidationError("ad_storage_consent", "must be 'G' (granted) or 'D' (denied)")
        if not isinstance(self.user_data, UetUserData):
            raise ValidationError("user_data", "must be a UetUserData value")
        if self.custom_data is not None and not isinstance(self.custom_data, UetCustomData):
            raise ValidationError("custom_data", "must be a UetCustomData value")
        if validate_times:
            self.check_window()

    def check_window(self, now: datetime | None = None) -> None:
        """Raise :class:`~msclkid_middleware.errors.TimeWindowError` unless UET CAPI would accept ``event_time``.

        eventTime must be within the last 7 days and not in the future (beyond :data:`CLOCK_SKEW`).
        """
        current = _now(now)
        _check_not_future("event_time", self.event_time, current)
        _check_not_older("event_time", self.event_time, current, UET_MAX_AGE)

    def to_wire(self) -> dict[str, Any]:
        return _compact(
            (
                ("eventType", self.event_type),
                ("eventId", self.event_id),
                ("eventName", self.event_name),
                ("eventTime", int(self.event_time.timestamp())),
                ("eventSourceUrl", self.event_source_url),
                ("pageLoadId", self.page_load_id),
                ("referrerUrl", self.referrer_url),
                ("pageTitle", self.page_title),
                ("keywords", self.keywords),
                ("adStorageConsent", self.ad_storage_consent),
                ("userData", self.user_data.to_wire()),
                ("customData", self.custom_data.to_wire() if self.custom_data is not None else None),
            )
        )

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Self:
        """Rebuild from :meth:`to_wire` output; structural checks only (no clock-dependent ones)."""
        data = _mapping("UetEvent", data)
        _only_keys("UetEvent", data, _UET_EVENT_KEYS)
        seconds = _required(data, "eventTime")
        if isinstance(seconds, bool) or not isinstance(seconds, int):
            raise ValidationError("eventTime", "must be an integer number of seconds since the epoch")
        try:
            event_time = datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            raise ValidationError("eventTime", "is out of range") from None
        custom = data.get("customData")
        return cls(
            event_type=_required(data, "eventType"),
            event_id=_required(data, "eventId"),
            event_name=data.get("eventName"),
            event_time=event_time,
            event_source_url=data.get("eventSourceUrl"),
            page_load_id=data.get("pageLoadId"),
            referrer_url=data.get("referrerUrl"),
            page_title=data.get("pageTitle"),
            keywords=data.get("keywords"),
            ad_storage_consent=data.get("adStorageConsent"),
            user_data=UetUserData.from_wire(_required(data, "userData")),
            custom_data=UetCustomData.from_wire(custom) if custom is not None else None,
            validate_times=False,
        )


_UET_EVENT_KEYS = frozenset(
    {
        "eventType",
        "eventId",
        "eventName",
        "eventTime",
        "eventSourceUrl",
        "pageLoadId",
        "referrerUrl",
        "pageTitle",
        "keywords",
        "adStorageConsent",
        "userData",
        "customData",
    }
)
