"""One event of a UET Conversions API request (``data[]``) and its parts: user data, custom data, items, hotel."""

from __future__ import annotations

import ipaddress
import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import InitVar, dataclass
from datetime import UTC, date, datetime
from typing import Any, ClassVar, Final, Literal, Self, get_args

from msclkid_middleware.capture.consent import Consent
from msclkid_middleware.conversions.base import (
    MAX_CONVERSION_VALUE,
    UET_MAX_AGE,
    TimedModel,
    Window,
    WireField,
    WireModel,
    WireShape,
    optional_number,
    optional_text,
    utc_time,
    valid_click_id,
    valid_count,
    valid_currency,
    valid_number,
    valid_text,
    valid_url,
)
from msclkid_middleware.conversions.identifiers import UserIdentifiers, hash_identifiers
from msclkid_middleware.errors import ValidationError

# (alike in shape to capture.consent's names and Literal types: coincidence.)
__all__ = [
    "UET_PAGE_TYPES",
    "UetCustomData",
    "UetEvent",
    "UetEventType",
    "UetHotelData",
    "UetItem",
    "UetPageType",
    "UetUserData",
]

_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
UetEventType = Literal["pageLoad", "custom"]
UetPageType = Literal["cart", "category", "home", "other", "product", "purchase", "searchresults"]
# The checks' sets are the types' own values, so the two can never disagree.
UET_PAGE_TYPES: Final[frozenset[str]] = frozenset(get_args(UetPageType))
_EVENT_TYPES: Final[frozenset[str]] = frozenset(get_args(UetEventType))


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


def _texts(field: str, values: object) -> tuple[str, ...]:
    if isinstance(values, str) or not isinstance(values, Iterable):
        raise ValidationError(field, "must be a list of strings")
    return tuple(valid_text(field, item) for item in values)


def _wire_list(value: object, field: str) -> list[Any]:
    if not isinstance(value, list):
        raise ValidationError(field, "must be a JSON array")
    return value


def _epoch(seconds: object, field: str) -> datetime:
    if isinstance(seconds, bool) or not isinstance(seconds, int):
        raise ValidationError(field, "must be an integer number of seconds since the epoch")
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        raise ValidationError(field, "is out of range") from None


def _plain(pairs: Iterable[tuple[str, str]]) -> tuple[WireField, ...]:
    return tuple(WireField(attr, key) for attr, key in pairs)


_UET_IDENTIFIER_FIELDS = ("anonymous_id", "external_id", "em", "ph", "msclkid", "idfa", "gaid")


@dataclass(frozen=True, slots=True, kw_only=True)
class UetUserData(WireModel):
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

    WIRE: ClassVar[WireShape] = WireShape(
        "userData",
        _plain(
            (
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
        ),
    )

    def __post_init__(self, email: str | None, phone: str | None, default_region: str | None) -> None:
        hash_identifiers(self, "em", "ph", email, phone, default_region)
        object.__setattr__(self, "msclkid", valid_click_id(self.msclkid))
        for name in ("anonymous_id", "external_id", "idfa", "gaid", "client_user_agent"):
            optional_text(name, getattr(self, name))
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


@dataclass(frozen=True, slots=True, kw_only=True)
class UetItem(WireModel):
    """One entry of ``customData.items``: ``{id, quantity, price, name}``."""

    id: str
    quantity: int | None = None
    price: float | None = None
    name: str | None = None

    WIRE: ClassVar[WireShape] = WireShape(
        "items",
        (
            WireField("id", "id", required=True),
            *_plain((("quantity", "quantity"), ("price", "price"), ("name", "name"))),
        ),
    )

    def __post_init__(self) -> None:
        valid_text("items.id", self.id)
        if self.quantity is not None:
            valid_count("items.quantity", self.quantity)
        object.__setattr__(self, "price", optional_number("items.price", self.price))
        optional_text("items.name", self.name)


def _iso_date(value: date) -> str:
    return value.isoformat()


@dataclass(frozen=True, slots=True, kw_only=True)
class UetHotelData(WireModel):
    """``customData.hotelData`` for hotel advertising; dates are sent as ``YYYY-MM-DD``."""

    total_price: float | None = None
    base_price: float | None = None
    checkin_date: date | None = None
    checkout_date: date | None = None
    length_of_stay: int | None = None
    partner_hotel_id: str | None = None
    booking_href: str | None = None

    WIRE: ClassVar[WireShape] = WireShape(
        "hotelData",
        (
            WireField("total_price", "totalPrice"),
            WireField("base_price", "basePrice"),
            WireField("checkin_date", "checkinDate", dump=_iso_date),
            WireField("checkout_date", "checkoutDate", dump=_iso_date),
            WireField("length_of_stay", "lengthOfStay"),
            WireField("partner_hotel_id", "partnerHotelId"),
            WireField("booking_href", "bookingHref"),
        ),
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "total_price", optional_number("hotel_data.total_price", self.total_price))
        object.__setattr__(self, "base_price", optional_number("hotel_data.base_price", self.base_price))
        checkin = _date("hotel_data.checkin_date", self.checkin_date)
        checkout = _date("hotel_data.checkout_date", self.checkout_date)
        if checkin is not None and checkout is not None and checkout < checkin:
            raise ValidationError("hotel_data.checkout_date", "must not be before checkin_date")
        object.__setattr__(self, "checkin_date", checkin)
        object.__setattr__(self, "checkout_date", checkout)
        if self.length_of_stay is not None:
            valid_count("hotel_data.length_of_stay", self.length_of_stay)
        optional_text("hotel_data.partner_hotel_id", self.partner_hotel_id)
        valid_url("hotel_data.booking_href", self.booking_href, web_only=False)


def _dump_items(items: tuple[UetItem, ...]) -> list[dict[str, Any]] | None:
    return [item.to_wire() for item in items] or None


def _load_items(value: object, field: str) -> tuple[UetItem, ...]:
    return tuple(UetItem.from_wire(item) for item in _wire_list(value, field))


def _dump_texts(values: tuple[str, ...]) -> list[str] | None:
    return list(values) or None


def _load_texts(value: object, field: str) -> tuple[Any, ...]:
    return tuple(_wire_list(value, field))


def _dump_part(part: WireModel) -> dict[str, Any]:
    return part.to_wire()


def _loader(model: type[WireModel]) -> Callable[[Any, str], WireModel]:
    def load(value: Any, field: str) -> WireModel:
        return model.from_wire(value)

    return load


@dataclass(frozen=True, slots=True, kw_only=True)
class UetCustomData(WireModel):
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

    WIRE: ClassVar[WireShape] = WireShape(
        "customData",
        (
            *_plain(
                (
                    ("event_category", "eventCategory"),
                    ("event_label", "eventLabel"),
                    ("event_value", "eventValue"),
                    ("search_term", "searchTerm"),
                    ("transaction_id", "transactionId"),
                    ("value", "value"),
                    ("currency", "currency"),
                )
            ),
            WireField("items", "items", dump=_dump_items, load=_load_items, default=()),
            WireField("item_ids", "itemIds", dump=_dump_texts, load=_load_texts, default=()),
            *_plain(
                (
                    ("page_type", "pageType"),
                    ("ecomm_total_value", "ecommTotalValue"),
                    ("ecomm_category", "ecommCategory"),
                )
            ),
            WireField("hotel_data", "hotelData", dump=_dump_part, load=_loader(UetHotelData)),
        ),
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "value", optional_number("value", self.value, maximum=MAX_CONVERSION_VALUE))
        object.__setattr__(self, "currency", valid_currency("currency", self.currency, allowed=None))
        for name in ("transaction_id", "event_category", "event_label", "search_term", "ecomm_category"):
            optional_text(name, getattr(self, name))
        if self.event_value is not None:
            object.__setattr__(self, "event_value", valid_number("event_value", self.event_value, allow_negative=True))
        if self.ecomm_total_value is not None:
            object.__setattr__(self, "ecomm_total_value", valid_number("ecomm_total_value", self.ecomm_total_value))
        if self.page_type is not None and self.page_type not in UET_PAGE_TYPES:
            raise ValidationError("page_type", f"must be one of {sorted(UET_PAGE_TYPES)}")
        raw_items: object = self.items
        if isinstance(raw_items, str | bytes) or not isinstance(raw_items, Iterable):
            raise ValidationError("items", "must be a list of UetItem values")
        items = tuple(raw_items)
        if not all(isinstance(item, UetItem) for item in items):
            raise ValidationError("items", "must be a list of UetItem values")
        object.__setattr__(self, "items", items)
        object.__setattr__(self, "item_ids", _texts("item_ids", self.item_ids))
        if self.hotel_data is not None and not isinstance(self.hotel_data, UetHotelData):
            raise ValidationError("hotel_data", "must be a UetHotelData value")


def _epoch_seconds(value: datetime) -> int:
    return int(value.timestamp())


@dataclass(frozen=True, slots=True, kw_only=True)
class UetEvent(TimedModel):
    """One event of a UET Conversions API request (``data[]``).

    ``event_id`` must be stable across retries and equal to the browser tag's ``event_id`` for
    deduplication.  ``event_time`` is an aware datetime (sent as epoch seconds) within the last 7
    days and not in the future (see :meth:`check_window`).  ``event_source_url`` is required for
    ``pageLoad`` events.  ``ad_storage_consent`` is ``"G"``/``"D"``; pass ``consent=`` (a
    :class:`~msclkid_middleware.capture.consent.Consent` snapshot) to derive it.
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

    WINDOW: ClassVar[Window] = Window(not_future=("event_time",), not_older=("event_time",), max_age=UET_MAX_AGE)
    WIRE: ClassVar[WireShape] = WireShape(
        "UetEvent",
        (
            WireField("event_type", "eventType", required=True),
            WireField("event_id", "eventId", required=True),
            WireField("event_name", "eventName"),
            WireField("event_time", "eventTime", required=True, dump=_epoch_seconds, load=_epoch),
            *_plain(
                (
                    ("event_source_url", "eventSourceUrl"),
                    ("page_load_id", "pageLoadId"),
                    ("referrer_url", "referrerUrl"),
                    ("page_title", "pageTitle"),
                    ("keywords", "keywords"),
                    ("ad_storage_consent", "adStorageConsent"),
                )
            ),
            WireField("user_data", "userData", required=True, dump=_dump_part, load=_loader(UetUserData)),
            WireField("custom_data", "customData", dump=_dump_part, load=_loader(UetCustomData)),
        ),
    )

    def __post_init__(self, consent: Consent | None, validate_times: bool) -> None:
        if self.event_type not in _EVENT_TYPES:
            raise ValidationError("event_type", "must be 'pageLoad' or 'custom'")
        valid_text("event_id", self.event_id)
        optional_text("event_name", self.event_name)
        object.__setattr__(self, "event_time", utc_time(self.event_time, "event_time"))
        valid_url("event_source_url", self.event_source_url, web_only=True)
        if self.event_type == "pageLoad" and self.event_source_url is None:
            raise ValidationError("event_source_url", "is required for pageLoad events")
        object.__setattr__(self, "page_load_id", _uuid("page_load_id", self.page_load_id))
        valid_url("referrer_url", self.referrer_url, web_only=False)
        optional_text("page_title", self.page_title)
        optional_text("keywords", self.keywords)
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
