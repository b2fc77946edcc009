"""The one validation and wire recipe every value sent to Microsoft is built on.

Every conversion model checks its *structure* when it is built (types, lengths, currencies, which
fields go together) and, by default, its *time window* against the current clock (an offline
conversion older than 90 days or a UET event older than 7 days cannot be accepted by Microsoft).
``to_wire()`` returns exactly Microsoft's JSON object (field names, types, ``None`` omitted) and
``from_wire()`` rebuilds the model from that object *without* the time-window checks, because the
outbox stores wire JSON and an event that has aged in the queue must still load.  The dispatcher
calls ``check_window(now)`` before sending and moves an event that fails it to ``dead`` with the
error's reason.

A model declares its wire object once (a :class:`WireShape` of :class:`WireField` rows) and its
time window once (a :class:`Window`); :class:`WireModel` and :class:`TimedModel` turn those into
``to_wire``, ``from_wire`` and ``check_window``, so the four kinds of conversion share one recipe
instead of four copies.

Times are kept as aware UTC datetimes truncated to whole seconds and always written by
:func:`format_time` (``2026-11-28T12:00:00Z``), so a ConversionTime resent from the outbox is
byte-identical to the first attempt (Microsoft de-duplicates on it).
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar, Final, Self
from urllib.parse import urlsplit

from msclkid_middleware.capture.clickid import Click, validate_click_id
from msclkid_middleware.conversions.identity import is_sha256_hex
from msclkid_middleware.errors import TimeWindowError, ValidationError

__all__ = [
    "CLOCK_SKEW",
    "CURRENCY_CODES",
    "MAX_CONVERSION_NAME_LENGTH",
    "MAX_CONVERSION_VALUE",
    "OFFLINE_MAX_AGE",
    "UET_MAX_AGE",
    "FlatWireField",
    "TimedModel",
    "Window",
    "WireField",
    "WireModel",
    "WireShape",
    "compact",
    "format_time",
    "optional_number",
    "optional_text",
    "parse_time",
    "required",
    "utc_time",
    "valid_click_id",
    "valid_conversion_name",
    "valid_count",
    "valid_currency",
    "valid_hash",
    "valid_number",
    "valid_text",
    "valid_url",
    "wire_mapping",
]

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

_WIRE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,7})?(?:Z|[+-]\d{2}:\d{2})")
#: :func:`format_time`'s own form (UTC, whole seconds, ``Z``): a part of ``_WIRE_TIME`` already in ``utc_time``'s form.
_UTC_SECONDS = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_ISO_CURRENCY = re.compile(r"[A-Z]{3}")


# -- times -----------------------------------------------------------------------------------------


def format_time(value: datetime) -> str:
    """The one wire form of a Campaign Management ``xs:dateTime``: UTC, whole seconds, ``Z``.

    >>> from datetime import timezone, timedelta
    >>> format_time(datetime(2026, 11, 28, 13, 0, 5, 999999, tzinfo=timezone(timedelta(hours=1))))
    '2026-11-28T12:00:05Z'
    """
    # isoformat() always writes four year digits (strftime's %Y does not on every platform).
    return utc_time(value, "time").replace(tzinfo=None).isoformat(timespec="seconds") + "Z"


def parse_time(value: object, field: str = "time") -> datetime:
    """Read a wire ``xs:dateTime`` (an explicit zone is required) back into an aware UTC datetime."""
    if type(value) is str and _UTC_SECONDS.fullmatch(value) is not None:
        # What format_time writes (every stored payload's times): read as it is, already UTC whole seconds.
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            raise ValidationError(field, "is not a valid calendar date-time") from None
    if not isinstance(value, str) or _WIRE_TIME.fullmatch(value) is None:
        raise ValidationError(field, "must be an ISO 8601 date-time with a zone, such as 2026-11-28T12:00:00Z")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValidationError(field, "is not a valid calendar date-time") from None
    return utc_time(parsed, field)


def utc_time(value: object, field: str) -> datetime:
    """An aware datetime as UTC whole seconds; a naive or out-of-range one is a :class:`ValidationError`."""
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


@dataclass(frozen=True, slots=True)
class Window:
    """Which times of a model Microsoft checks against its clock, and how old they may be."""

    not_future: tuple[str, ...]
    not_older: tuple[str, ...]
    max_age: timedelta

    def check(self, model: object, now: datetime | None) -> None:
        current = datetime.now(UTC) if now is None else utc_time(now, "now")
        for field in self.not_future:
            if getattr(model, field) > current + CLOCK_SKEW:
                minutes = int(CLOCK_SKEW.total_seconds() // 60)
                raise TimeWindowError(
                    field, f"must not be in the future (more than {minutes} minutes ahead)", expired=False
                )
        for field in self.not_older:
            if current - getattr(model, field) > self.max_age:
                raise TimeWindowError(
                    field, f"is older than {self.max_age.days} days: Microsoft no longer accepts it", expired=True
                )


# -- field rules -------------------------------------------------------------------------------------


def valid_text(field: str, value: object, *, max_length: int | None = None, strip_check: bool = False) -> str:
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


def optional_text(field: str, value: object, *, max_length: int | None = None) -> str | None:
    return None if value is None else valid_text(field, value, max_length=max_length)


def valid_conversion_name(value: object) -> str:
    """A goal name as ConversionName: Microsoft matches it exactly, so no surrounding whitespace."""
    return valid_text("conversion_name", value, max_length=MAX_CONVERSION_NAME_LENGTH, strip_check=True)


def valid_number(field: str, value: object, *, maximum: float | None = None, allow_negative: bool = False) -> float:
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


def optional_number(field: str, value: object, *, maximum: float | None = None) -> float | None:
    return None if value is None else valid_number(field, value, maximum=maximum)


def valid_count(field: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(field, "must be an integer")
    if value < 0:
        raise ValidationError(field, "must not be negative")
    return value


def valid_currency(field: str, value: object, allowed: frozenset[str] | None = CURRENCY_CODES) -> str | None:
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


def valid_click_id(value: object) -> str | None:
    """The click ID of a :class:`Click` or of a string (validated by capture's rules), or ``None``."""
    if value is None:
        return None
    if isinstance(value, Click):
        return value.msclkid
    return validate_click_id(value)


def valid_hash(field: str, value: object) -> str | None:
    if value is None:
        return None
    if not is_sha256_hex(value):
        # Never echo the value: it is probably a plain email address or phone number.
        raise ValidationError(
            field, "must be a SHA-256 hex digest (64 hex characters); pass plain values as email=/phone= to hash them"
        )
    assert isinstance(value, str)  # noqa: S101 - narrowed by is_sha256_hex
    return value.lower()


def valid_url(field: str, value: object, *, web_only: bool) -> str | None:
    if value is None:
        return None
    text = valid_text(field, value)
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


# -- wire ------------------------------------------------------------------------------------------


def wire_mapping(field: str, data: object) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise ValidationError(field, "must be a JSON object")
    return data


def required(data: Mapping[str, Any], key: str) -> Any:
    value = data.get(key)
    if value is None:
        raise ValidationError(key, "is required")
    return value


def compact(pairs: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    return {key: value for key, value in pairs if value is not None}


@dataclass(frozen=True, slots=True)
class WireField:
    """One attribute and its wire member.

    ``dump`` turns a non-``None`` attribute into JSON, ``load`` a non-``None`` member back into what
    the constructor takes (it gets the member name for its errors); ``default`` stands in for an
    absent member.
    """

    attr: str
    key: str
    required: bool = False
    dump: Callable[[Any], Any] | None = None
    load: Callable[[Any, str], Any] | None = None
    default: Any = None


@dataclass(frozen=True, slots=True)
class FlatWireField:
    """One attribute written as several top-level members (hashed identifiers beside ConversionName)."""

    attr: str
    keys: tuple[str, ...]
    dump: Callable[[Any], Mapping[str, Any]]
    load: Callable[[Mapping[str, Any]], Any]


class WireShape:
    """A model's wire object, declared once: its name, its members and the order they are written in.

    ``fields`` lists the members in the order ``from_wire`` reads (and so reports) them, which is also
    the order ``to_wire`` writes them unless ``sort`` is set: Campaign Management's data contracts list
    their members alphabetically, and writing them that way keeps the JSON byte-stable.  Everything a
    call needs is worked out here, once per model class, because wire JSON is built for every event.
    """

    __slots__ = ("_dump_rows", "_getter", "_keys", "_load_rows", "name")

    def __init__(self, name: str, fields: Iterable[WireField | FlatWireField], *, sort: bool = False) -> None:
        self.name = name
        specs = tuple(fields)
        self._load_rows = specs
        self._keys = frozenset(
            key for spec in specs for key in (spec.keys if isinstance(spec, FlatWireField) else (spec.key,))
        )
        ordered = sorted(specs, key=lambda s: s.keys[0] if isinstance(s, FlatWireField) else s.key) if sort else specs
        self._getter = operator.attrgetter(*(spec.attr for spec in ordered))
        self._dump_rows = tuple(
            (spec.keys[0], spec.dump, True) if isinstance(spec, FlatWireField) else (spec.key, spec.dump, False)
            for spec in ordered
        )

    def dump(self, model: object) -> dict[str, Any]:
        wire: dict[str, Any] = {}
        # Every shape has several fields, so the getter returns a tuple.
        for value, (key, dump, flat) in zip(self._getter(model), self._dump_rows, strict=True):
            if value is None:
                continue
            if dump is None:
                wire[key] = value
            elif flat:
                wire.update(dump(value))
            elif (dumped := dump(value)) is not None:
                wire[key] = dumped
        return wire

    def load(self, data: object) -> dict[str, Any]:
        """The constructor's keyword arguments for a wire object; unknown members are an error."""
        data = wire_mapping(self.name, data)
        unknown = data.keys() - self._keys
        if unknown:
            raise ValidationError(self.name, f"has unknown wire fields {sorted(map(str, unknown))}")
        arguments: dict[str, Any] = {}
        for spec in self._load_rows:
            if isinstance(spec, FlatWireField):
                arguments[spec.attr] = spec.load(data)
                continue
            value = required(data, spec.key) if spec.required else data.get(spec.key)
            if value is None:
                value = spec.default
            elif spec.load is not None:
                value = spec.load(value, spec.key)
            arguments[spec.attr] = value
        return arguments


class WireModel:
    """``to_wire`` / ``from_wire`` from the class's :attr:`WIRE` shape (a mixin for frozen dataclasses)."""

    __slots__ = ()
    WIRE: ClassVar[WireShape]

    def to_wire(self) -> dict[str, Any]:
        return self.WIRE.dump(self)

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Self:
        """Rebuild from :meth:`to_wire` output; unknown members are an error."""
        return cls(**cls.WIRE.load(data))


class TimedModel(WireModel):
    """A model Microsoft accepts only within a time :attr:`WINDOW`; ``from_wire`` skips that check."""

    __slots__ = ()
    WINDOW: ClassVar[Window]

    def check_window(self, now: datetime | None = None) -> None:
        """Raise :class:`~msclkid_middleware.errors.TimeWindowError` unless Microsoft would accept the times at ``now``.

        No time may be in the future (beyond :data:`CLOCK_SKEW`) nor older than the kind allows (90 days
        for Campaign Management items, 7 days for UET events).  The dispatcher calls this before each send.
        """
        self.WINDOW.check(self, now)

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Self:
        """Rebuild from :meth:`to_wire` output; structural checks only (no clock-dependent ones)."""
        # An event that aged in the outbox must still load; the dispatcher decides about its window.
        arguments = cls.WIRE.load(data)
        arguments["validate_times"] = False
        return cls(**arguments)
