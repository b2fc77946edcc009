"""UET CAPI events and their parts: validation, exact wire JSON, consent, windows, round trips."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from msclkid_middleware.capture.consent import Consent
from msclkid_middleware.conversions import (
    UET_PAGE_TYPES,
    UetCustomData,
    UetEvent,
    UetHotelData,
    UetItem,
    UetUserData,
    UserIdentifiers,
)
from msclkid_middleware.errors import ValidationError
from tests.conversions.conversions_helpers import (
    CLICK,
    EMAIL,
    EMAIL_HASH,
    JOHN_HASH,
    PHONE,
    PHONE_HASH,
    any_clicks,
    any_hashes,
    any_uet_times,
    any_values,
    recent,
    uet_event,
)

# --- UET CAPI -------------------------------------------------------------------------------------


def test_uet_event_wire_is_exact() -> None:
    when = recent(minutes=10)
    event = UetEvent(
        event_type="custom",
        event_id="ord_10492",
        event_name="checkout_complete",
        event_time=when,
        event_source_url="https://shop.example/checkout/done",
        page_load_id="2F1C3B7E-8D4A-4B6C-9E0F-1A2B3C4D5E6F",
        referrer_url="https://shop.example/cart",
        page_title="Thank you",
        keywords="clocks,homedecor",
        consent=Consent.granted_by("cookie"),
        user_data=UetUserData(
            msclkid=CLICK,
            anonymous_id="b171a9b06ce011ecafcd1b209be8601b",
            external_id="u-42",
            email=EMAIL,
            phone=PHONE,
            client_ip_address="::ffff:203.0.113.7",
            client_user_agent="Mozilla/5.0",
        ),
        custom_data=UetCustomData(
            value=149.95,
            currency="usd",
            transaction_id="ord_10492",
            event_category="checkout",
            event_label="card",
            event_value=-1,
            search_term="wall clock",
            page_type="purchase",
            items=[UetItem(id="sku-1", quantity=2, price=49.5, name="Clock")],
            item_ids=["sku-1", "sku-2"],
            ecomm_total_value=149.95,
            ecomm_category="clocks",
            hotel_data=UetHotelData(
                total_price=300,
                base_price=250.5,
                checkin_date="2026-12-01",
                checkout_date=date(2026, 12, 3),
                length_of_stay=2,
                partner_hotel_id="H1",
                booking_href="https://hotel.example/b/1",
            ),
        ),
    )
    wire = event.to_wire()
    assert wire == {
        "eventType": "custom",
        "eventId": "ord_10492",
        "eventName": "checkout_complete",
        "eventTime": int(when.timestamp()),
        "eventSourceUrl": "https://shop.example/checkout/done",
        "pageLoadId": "2f1c3b7e-8d4a-4b6c-9e0f-1a2b3c4d5e6f",
        "referrerUrl": "https://shop.example/cart",
        "pageTitle": "Thank you",
        "keywords": "clocks,homedecor",
        "adStorageConsent": "G",
        "userData": {
            "anonymousId": "b171a9b06ce011ecafcd1b209be8601b",
            "externalId": "u-42",
            "em": EMAIL_HASH,
            "ph": PHONE_HASH,
            "clientIpAddress": "203.0.113.7",
            "clientUserAgent": "Mozilla/5.0",
            "msclkid": CLICK,
        },
        "customData": {
            "eventCategory": "checkout",
            "eventLabel": "card",
            "eventValue": -1.0,
            "searchTerm": "wall clock",
            "transactionId": "ord_10492",
            "value": 149.95,
            "currency": "USD",
            "items": [{"id": "sku-1", "quantity": 2, "price": 49.5, "name": "Clock"}],
            "itemIds": ["sku-1", "sku-2"],
            "pageType": "purchase",
            "ecommTotalValue": 149.95,
            "ecommCategory": "clocks",
            "hotelData": {
                "totalPrice": 300.0,
                "basePrice": 250.5,
                "checkinDate": "2026-12-01",
                "checkoutDate": "2026-12-03",
                "lengthOfStay": 2,
                "partnerHotelId": "H1",
                "bookingHref": "https://hotel.example/b/1",
            },
        },
    }
    assert type(wire["eventTime"]) is int
    assert UetEvent.from_wire(json.loads(json.dumps(wire))) == event
    assert EMAIL not in repr(event)
    assert "4255550199" not in repr(event)


def test_uet_page_load_minimal() -> None:
    when = recent(seconds=30)
    event = UetEvent(
        event_type="pageLoad",
        event_id="pl-1",
        event_time=when,
        event_source_url="https://shop.example/?msclkid=" + CLICK,
        user_data=UetUserData(anonymous_id="b171a9b06ce011ecafcd1b209be8601b"),
    )
    assert event.to_wire() == {
        "eventType": "pageLoad",
        "eventId": "pl-1",
        "eventTime": int(when.timestamp()),
        "eventSourceUrl": "https://shop.example/?msclkid=" + CLICK,
        "userData": {"anonymousId": "b171a9b06ce011ecafcd1b209be8601b"},
    }


@pytest.mark.parametrize(
    ("consent", "explicit", "expected"),
    [
        pytest.param(Consent.granted_by("default"), None, "G", id="granted"),
        pytest.param(Consent.denied_by("gpc"), None, "D", id="denied"),
        pytest.param(None, "D", "D", id="explicit"),
        pytest.param(Consent.denied_by("tcf"), "D", "D", id="agreeing"),
        pytest.param(None, None, None, id="unknown-omitted"),
    ],
)
def test_uet_ad_storage_consent(consent: Consent | None, explicit: Any, expected: str | None) -> None:
    event = UetEvent(
        event_id="e",
        event_time=recent(seconds=1),
        user_data=UetUserData(msclkid=CLICK),
        consent=consent,
        ad_storage_consent=explicit,
    )
    assert event.ad_storage_consent == expected
    assert event.to_wire().get("adStorageConsent") == expected


@pytest.mark.parametrize(
    ("overrides", "field", "reason"),
    [
        pytest.param({"event_type": "purchase"}, "event_type", "'pageLoad' or 'custom'", id="bad-type"),
        pytest.param({"event_id": ""}, "event_id", "empty", id="empty-id"),
        pytest.param({"event_type": "pageLoad"}, "event_source_url", "required for pageLoad", id="pageload-no-url"),
        pytest.param({"event_source_url": "ftp://x.example/"}, "event_source_url", "http", id="ftp-url"),
        pytest.param({"event_source_url": "/checkout"}, "event_source_url", "http", id="relative-url"),
        pytest.param({"event_source_url": "https://x.example/a b"}, "event_source_url", "whitespace", id="url-space"),
        pytest.param({"referrer_url": "not a url"}, "referrer_url", "whitespace", id="bad-referrer"),
        pytest.param({"referrer_url": "shop.example/cart"}, "referrer_url", "absolute", id="relative-referrer"),
        pytest.param({"page_load_id": "1234"}, "page_load_id", "UUID", id="bad-uuid"),
        pytest.param({"ad_storage_consent": "Y"}, "ad_storage_consent", "'G'", id="bad-consent"),
        pytest.param(
            {"ad_storage_consent": "G", "consent": Consent.denied_by("gpc")},
            "ad_storage_consent",
            "contradicts",
            id="consent-conflict",
        ),
        pytest.param({"consent": "granted"}, "consent", "Consent value", id="consent-string"),
        pytest.param({"event_time": recent(days=7, seconds=30)}, "event_time", "older than 7 days", id="too-old"),
        pytest.param({"event_time": recent(hours=-2)}, "event_time", "future", id="future"),
        pytest.param({"event_time": 1795869788}, "event_time", "datetime", id="int-time"),
        pytest.param({"user_data": {"msclkid": CLICK}}, "user_data", "UetUserData", id="user-data-dict"),
        pytest.param({"custom_data": {"value": 1}}, "custom_data", "UetCustomData", id="custom-data-dict"),
        pytest.param({"page_title": "a\x00b"}, "page_title", "control", id="title-control"),
    ],
)
def test_uet_event_rejects(overrides: dict[str, Any], field: str, reason: str) -> None:
    with pytest.raises(ValidationError) as info:
        uet_event(**overrides)
    assert info.value.field == field
    assert reason in info.value.reason


@pytest.mark.parametrize(
    ("kwargs", "field", "reason"),
    [
        pytest.param({}, "user_data", "at least one", id="empty"),
        pytest.param(
            {"client_ip_address": "203.0.113.7", "client_user_agent": "UA"},
            "user_data",
            "at least one",
            id="ip-ua-only",
        ),
        pytest.param({"em": EMAIL}, "em", "SHA-256", id="plain-email-in-em"),
        pytest.param({"ph": "+14255550199"}, "ph", "SHA-256", id="plain-phone-in-ph"),
        pytest.param({"msclkid": "bad click"}, "msclkid", "letters", id="bad-click"),
        pytest.param({"msclkid": CLICK, "client_ip_address": "999.1.1.1"}, "client_ip_address", "IPv4", id="bad-ip"),
        pytest.param({"anonymous_id": ""}, "anonymous_id", "empty", id="empty-anonymous-id"),
        pytest.param({"email": "nobody"}, "email", "'@'", id="bad-raw-email"),
    ],
)
def test_uet_user_data_rejects(kwargs: dict[str, Any], field: str, reason: str) -> None:
    with pytest.raises(ValidationError) as info:
        UetUserData(**kwargs)
    assert info.value.field == field
    assert reason in info.value.reason
    assert EMAIL not in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "wire"),
    [
        pytest.param(
            {"idfa": "6D92078A-8246-4BA4-AE5B-76104861E7DC"},
            {"idfa": "6D92078A-8246-4BA4-AE5B-76104861E7DC"},
            id="idfa",
        ),
        pytest.param(
            {"gaid": "38400000-8cf0-11bd-b23e-10b96e40000d"},
            {"gaid": "38400000-8cf0-11bd-b23e-10b96e40000d"},
            id="gaid",
        ),
        pytest.param(
            {"external_id": "u1", "client_ip_address": "2001:DB8::1"},
            {"externalId": "u1", "clientIpAddress": "2001:db8::1"},
            id="ipv6",
        ),
        pytest.param({"em": JOHN_HASH.upper()}, {"em": JOHN_HASH}, id="hash-lowercased"),
    ],
)
def test_uet_user_data_wire(kwargs: dict[str, Any], wire: dict[str, Any]) -> None:
    user = UetUserData(**kwargs)
    assert user.to_wire() == wire
    assert UetUserData.from_wire(wire) == user


def test_uet_user_data_from_identifiers() -> None:
    user = UetUserData.from_identifiers(UserIdentifiers(email=EMAIL), msclkid=CLICK)
    assert user.to_wire() == {"em": EMAIL_HASH, "msclkid": CLICK}


@pytest.mark.parametrize(
    ("factory", "field", "reason"),
    [
        pytest.param(lambda: UetCustomData(page_type="checkout"), "page_type", "must be one of", id="page-type"),
        pytest.param(lambda: UetCustomData(currency="EURO"), "currency", "three-letter", id="currency"),
        pytest.param(lambda: UetCustomData(value=-1), "value", "negative", id="negative-value"),
        pytest.param(lambda: UetCustomData(items=[{"id": "1"}]), "items", "UetItem", id="item-dict"),
        pytest.param(lambda: UetCustomData(items="sku-1"), "items", "UetItem", id="items-string"),
        pytest.param(lambda: UetCustomData(item_ids="sku-1"), "item_ids", "list of strings", id="item-ids-string"),
        pytest.param(lambda: UetCustomData(item_ids=["ok", ""]), "item_ids", "empty", id="item-ids-empty"),
        pytest.param(lambda: UetItem(id="1", quantity=-1), "items.quantity", "negative", id="quantity"),
        pytest.param(lambda: UetItem(id="1", quantity=1.5), "items.quantity", "integer", id="quantity-float"),
        pytest.param(lambda: UetItem(id=""), "items.id", "empty", id="item-id"),
        pytest.param(
            lambda: UetHotelData(checkin_date="2026-12-03", checkout_date="2026-12-01"),
            "hotel_data.checkout_date",
            "before checkin",
            id="hotel-dates",
        ),
        pytest.param(
            lambda: UetHotelData(checkin_date="03/12/2026"), "hotel_data.checkin_date", "YYYY-MM-DD", id="hotel-format"
        ),
        pytest.param(
            lambda: UetHotelData(checkin_date="2026-02-30"), "hotel_data.checkin_date", "calendar", id="hotel-invalid"
        ),
        pytest.param(
            lambda: UetHotelData(checkin_date=datetime.now(UTC)), "hotel_data.checkin_date", "not a datetime", id="dt"
        ),
    ],
)
def test_uet_custom_data_rejects(factory: Any, field: str, reason: str) -> None:
    with pytest.raises(ValidationError) as info:
        factory()
    assert info.value.field == field
    assert reason in info.value.reason


def test_uet_aged_event_loads_then_fails_window() -> None:
    wire = uet_event(event_time=recent(days=6)).to_wire()
    loaded = UetEvent.from_wire(wire)
    assert loaded.to_wire() == wire
    with pytest.raises(ValidationError, match="older than 7 days"):
        loaded.check_window(datetime.now(UTC) + timedelta(days=2))


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        pytest.param(lambda w: w.update(eventTime="1795869788"), "eventTime", id="string-time"),
        pytest.param(lambda w: w.update(eventTime=1.5), "eventTime", id="float-time"),
        pytest.param(lambda w: w.pop("userData"), "userData", id="no-user-data"),
        pytest.param(lambda w: w.update(data=[]), "UetEvent", id="unknown-key"),
        pytest.param(lambda w: w["userData"].update(email="x"), "userData", id="unknown-user-key"),
        pytest.param(lambda w: w.update(customData={"items": {"id": "1"}}), "items", id="items-not-array"),
    ],
)
def test_uet_from_wire_rejects(mutate: Any, field: str) -> None:
    wire = uet_event().to_wire()
    mutate(wire)
    with pytest.raises(ValidationError) as info:
        UetEvent.from_wire(wire)
    assert info.value.field == field


_user_data = st.builds(
    UetUserData,
    msclkid=any_clicks,
    anonymous_id=st.one_of(st.none(), any_hashes.map(lambda h: h[:32])),
    em=st.one_of(st.none(), any_hashes),
    client_ip_address=st.one_of(st.none(), st.ip_addresses().map(str)),
)
_custom = st.one_of(
    st.none(),
    st.builds(
        UetCustomData,
        value=st.one_of(st.none(), any_values),
        currency=st.one_of(st.none(), st.sampled_from(["USD", "EUR", "CHF"])),
        page_type=st.one_of(st.none(), st.sampled_from(sorted(UET_PAGE_TYPES))),
        items=st.lists(
            st.builds(UetItem, id=any_clicks, quantity=st.one_of(st.none(), st.integers(0, 99)), price=any_values),
            max_size=3,
        ),
        item_ids=st.lists(any_clicks, max_size=3),
        hotel_data=st.one_of(
            st.none(),
            st.builds(UetHotelData, checkin_date=st.dates(), length_of_stay=st.integers(0, 30)),
        ),
    ),
)


@settings(max_examples=150, deadline=None)
@given(
    event_time=any_uet_times,
    event_type=st.sampled_from(["pageLoad", "custom"]),
    page_load_id=st.one_of(st.none(), st.uuids().map(str)),
    consent=st.sampled_from([None, Consent.granted_by(), Consent.denied_by()]),
    user_data=_user_data,
    custom_data=_custom,
)
def test_uet_round_trip(
    event_time: datetime,
    event_type: Any,
    page_load_id: str | None,
    consent: Consent | None,
    user_data: UetUserData,
    custom_data: UetCustomData | None,
) -> None:
    event = UetEvent(
        event_id="e",
        event_type=event_type,
        event_time=event_time,
        event_source_url="https://shop.example/p",
        page_load_id=page_load_id,
        consent=consent,
        user_data=user_data,
        custom_data=custom_data,
    )
    wire = json.loads(json.dumps(event.to_wire()))
    assert UetEvent.from_wire(wire) == event
    assert UetEvent.from_wire(wire).to_wire() == wire
