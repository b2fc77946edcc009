"""Conversion models: validation on construction, exact wire JSON, from_wire round trips, time windows."""

from __future__ import annotations

import dataclasses
import json
import math
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from msclkid_middleware.capture.clickid import Click
from msclkid_middleware.capture.consent import Consent
from msclkid_middleware.conversions import (
    CURRENCY_CODES,
    OfflineConversion,
    OfflineConversionAdjustment,
    OnlineConversionAdjustment,
    UetCustomData,
    UetEvent,
    UetHotelData,
    UetItem,
    UetUserData,
    UserIdentifiers,
    format_time,
    models,
    parse_time,
)
from msclkid_middleware.conversions.identity import hash_email, hash_phone
from msclkid_middleware.errors import InvalidClickId, InvalidIdentifier, TimeWindowError, ValidationError

CLICK = "f894f652ea334e739002f7167ab8f8e3"
EMAIL = "Jane.Doe+shop@Contoso.com"
PHONE = "+1 (425) 555-0199"
EMAIL_HASH = hash_email(EMAIL)
PHONE_HASH = hash_phone(PHONE)
JOHN_HASH = "ec81f3ac7b2b19675bab9d54cf416f9f18cff87c97da5cca82c0f0891bc40602"


def _recent(**delta: float) -> datetime:
    """A time in the recent past, whole seconds, so it is inside every window at test time."""
    return (datetime.now(UTC) - timedelta(**delta)).replace(microsecond=0)


def _offline(**overrides: Any) -> OfflineConversion:
    fields: dict[str, Any] = {
        "conversion_name": "Purchase",
        "conversion_time": _recent(hours=2),
        "value": 149.95,
        "currency": "USD",
        "msclkid": CLICK,
    }
    fields.update(overrides)
    return OfflineConversion(**fields)


# --- time helpers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(datetime(2026, 11, 28, 12, 0, 5, tzinfo=UTC), "2026-11-28T12:00:05Z", id="utc"),
        pytest.param(datetime(2026, 11, 28, 12, 0, 5, 999999, tzinfo=UTC), "2026-11-28T12:00:05Z", id="truncates"),
        pytest.param(
            datetime(2026, 11, 28, 13, 0, 5, tzinfo=timezone(timedelta(hours=1))), "2026-11-28T12:00:05Z", id="cet"
        ),
        pytest.param(
            datetime(2026, 11, 27, 19, 0, 0, tzinfo=timezone(timedelta(hours=-8))),
            "2026-11-28T03:00:00Z",
            id="pst-crosses-midnight",
        ),
    ],
)
def test_format_time(value: datetime, expected: str) -> None:
    assert format_time(value) == expected
    assert format_time(parse_time(expected)) == expected


@settings(deadline=None)
@given(
    st.datetimes(
        timezones=st.sampled_from([UTC, timezone(timedelta(hours=14)), timezone(timedelta(hours=-12, minutes=-30))])
    )
)
def test_format_time_round_trips_any_aware_datetime(value: datetime) -> None:
    try:
        text = format_time(value)
    except ValidationError as exc:
        # Only instants that do not exist in UTC (before year 1 or after year 9999) are refused.
        assert exc.field == "time"  # noqa: PT017 - the property needs both outcomes
        return
    assert len(text) == 20
    assert parse_time(text) == value.replace(microsecond=0)
    assert format_time(parse_time(text)) == text


def test_format_time_refuses_naive() -> None:
    with pytest.raises(ValidationError, match="timezone-aware"):
        format_time(datetime(2026, 11, 28, 12, 0))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("2026-11-28T12:00:05Z", datetime(2026, 11, 28, 12, 0, 5, tzinfo=UTC), id="z"),
        pytest.param("2026-11-28T13:00:05+01:00", datetime(2026, 11, 28, 12, 0, 5, tzinfo=UTC), id="offset"),
        pytest.param("2026-11-28T12:00:05.1234567Z", datetime(2026, 11, 28, 12, 0, 5, tzinfo=UTC), id="dotnet-ticks"),
    ],
)
def test_parse_time(text: str, expected: datetime) -> None:
    assert parse_time(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("2026-11-28T12:00:05", id="no-zone"),
        pytest.param("2026-11-28", id="date-only"),
        pytest.param("2026-02-30T12:00:00Z", id="impossible-date"),
        pytest.param(1795869788, id="number"),
        pytest.param("yesterday", id="words"),
    ],
)
def test_parse_time_rejects(text: object) -> None:
    with pytest.raises(ValidationError) as info:
        parse_time(text, "ConversionTime")
    assert info.value.field == "ConversionTime"


# --- Click -------------------------------------------------------------------------------------------


def test_click_from_value_defaults_to_now_and_url() -> None:
    before = datetime.now(UTC)
    click = Click.from_value(CLICK)
    assert click.msclkid == CLICK
    assert click.source == "url"
    assert before <= click.captured_at <= datetime.now(UTC)
    fixed = datetime(2026, 1, 1, tzinfo=UTC)
    assert Click.from_value("Example-123", captured_at=fixed, source="profile") == Click(
        "Example-123", fixed, "profile"
    )
    with pytest.raises(InvalidClickId):
        Click.from_value("bad value!")


# --- UserIdentifiers ---------------------------------------------------------------------------------


def test_user_identifiers_hash_raw_values_and_forget_them() -> None:
    ids = UserIdentifiers(email=EMAIL, phone=PHONE)
    assert ids.hashed_email == hash_email("janedoe@contoso.com")
    assert ids.hashed_phone == hash_phone("+14255550199")
    assert ids.to_wire() == {"HashedEmailAddress": ids.hashed_email, "HashedPhoneNumber": ids.hashed_phone}
    assert [f.name for f in dataclasses.fields(ids)] == ["hashed_email", "hashed_phone"]
    assert not hasattr(ids, "__dict__")
    text = repr(ids)
    for secret in (EMAIL, "janedoe@contoso.com", "4255550199", "contoso"):
        assert secret not in text
    assert UserIdentifiers.from_wire(ids.to_wire()) == ids


def test_user_identifiers_hashes_pass_through_lowercased() -> None:
    ids = UserIdentifiers(hashed_email=JOHN_HASH.upper())
    assert ids.hashed_email == JOHN_HASH
    assert ids == UserIdentifiers(email="john@contoso.com")
    assert ids.to_wire() == {"HashedEmailAddress": JOHN_HASH}


def test_empty_user_identifiers_are_falsy() -> None:
    assert not UserIdentifiers()
    assert UserIdentifiers(hashed_phone=PHONE_HASH)
    assert UserIdentifiers().to_wire() == {}


@pytest.mark.parametrize(
    ("kwargs", "field", "reason"),
    [
        pytest.param({"hashed_email": EMAIL}, "hashed_email", "SHA-256 hex digest", id="plain-email-in-hashed"),
        pytest.param(
            {"hashed_phone": "+14255550199"}, "hashed_phone", "SHA-256 hex digest", id="plain-phone-in-hashed"
        ),
        pytest.param({"hashed_email": JOHN_HASH[:40]}, "hashed_email", "64 hex", id="short-hash"),
        pytest.param({"email": EMAIL, "hashed_email": JOHN_HASH}, "email", "not both", id="email-twice"),
        pytest.param({"phone": PHONE, "hashed_phone": JOHN_HASH}, "phone", "not both", id="phone-twice"),
        pytest.param({"email": "jane@contoso"}, "email", "dot in the domain", id="bad-email"),
        pytest.param({"phone": "425 555 0199"}, "phone", "country code", id="national-phone"),
    ],
)
def test_user_identifiers_reject(kwargs: dict[str, Any], field: str, reason: str) -> None:
    with pytest.raises(ValidationError) as info:
        UserIdentifiers(**kwargs)
    assert info.value.field == field
    assert reason in info.value.reason
    for value in kwargs.values():
        assert value not in str(info.value)


def test_user_identifiers_default_region() -> None:
    ids = UserIdentifiers(phone="(425) 555-0199", default_region="US")
    assert ids.hashed_phone == PHONE_HASH


# --- OfflineConversion -------------------------------------------------------------------------------


def test_offline_conversion_wire_is_exact() -> None:
    when = _recent(hours=3)
    conversion = OfflineConversion(
        conversion_name="Purchase",
        conversion_time=when.astimezone(timezone(timedelta(hours=-5))),
        value=149,
        currency="usd",
        msclkid=CLICK,
        identifiers=UserIdentifiers(email=EMAIL, phone=PHONE),
        external_attribution_credit=0.5,
        external_attribution_model="Linear",
    )
    assert conversion.conversion_time == when
    assert conversion.conversion_time.tzinfo is UTC
    wire = conversion.to_wire()
    assert wire == {
        "ConversionCurrencyCode": "USD",
        "ConversionName": "Purchase",
        "ConversionTime": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "ConversionValue": 149.0,
        "ExternalAttributionCredit": 0.5,
        "ExternalAttributionModel": "Linear",
        "HashedEmailAddress": EMAIL_HASH,
        "HashedPhoneNumber": PHONE_HASH,
        "MicrosoftClickId": CLICK,
    }
    assert type(wire["ConversionValue"]) is float
    assert OfflineConversion.from_wire(wire) == conversion
    assert OfflineConversion.from_wire(json.loads(json.dumps(wire))).to_wire() == wire


def test_offline_conversion_minimal_wire_omits_none() -> None:
    when = _recent(minutes=5)
    conversion = OfflineConversion(conversion_name="Lead", conversion_time=when, msclkid=CLICK)
    assert conversion.to_wire() == {
        "ConversionName": "Lead",
        "ConversionTime": format_time(when),
        "MicrosoftClickId": CLICK,
    }


def test_offline_conversion_accepts_click_object_and_identifiers_only() -> None:
    click = Click.from_value(CLICK)
    assert _offline(msclkid=click).msclkid == CLICK
    hashed_only = _offline(msclkid=None, identifiers=UserIdentifiers(hashed_email=JOHN_HASH))
    assert "MicrosoftClickId" not in hashed_only.to_wire()
    assert hashed_only.to_wire()["HashedEmailAddress"] == JOHN_HASH


def test_offline_conversion_is_frozen_and_slotted() -> None:
    conversion = _offline()
    with pytest.raises(dataclasses.FrozenInstanceError):
        conversion.value = 1.0  # type: ignore[misc]
    assert not hasattr(conversion, "__dict__")


def test_every_microsoft_currency_is_accepted() -> None:
    assert len(CURRENCY_CODES) == 100
    for code in sorted(CURRENCY_CODES):
        assert _offline(currency=code.lower()).currency == code


@pytest.mark.parametrize(
    ("overrides", "field", "reason"),
    [
        pytest.param({"conversion_name": ""}, "conversion_name", "must not be empty", id="name-empty"),
        pytest.param({"conversion_name": "x" * 101}, "conversion_name", "at most 100", id="name-too-long"),
        pytest.param({"conversion_name": " Purchase"}, "conversion_name", "whitespace", id="name-leading-space"),
        pytest.param({"conversion_name": "Purchase\n"}, "conversion_name", "control", id="name-newline"),
        pytest.param({"conversion_name": 5}, "conversion_name", "string", id="name-not-string"),
        pytest.param(
            {"conversion_time": datetime(2026, 1, 1)},
            "conversion_time",
            "timezone-aware",
            id="naive-time",
        ),
        pytest.param({"conversion_time": "2026-01-01T00:00:00Z"}, "conversion_time", "datetime", id="string-time"),
        pytest.param({"conversion_time": _recent(days=91)}, "conversion_time", "older than 90 days", id="too-old"),
        pytest.param({"conversion_time": _recent(hours=-2)}, "conversion_time", "future", id="future"),
        pytest.param({"value": -1}, "value", "negative", id="negative-value"),
        pytest.param({"value": math.nan}, "value", "finite", id="nan-value"),
        pytest.param({"value": math.inf}, "value", "finite", id="inf-value"),
        pytest.param({"value": 1e12}, "value", "at most", id="value-too-large"),
        pytest.param({"value": True}, "value", "number", id="bool-value"),
        pytest.param({"value": "10"}, "value", "number", id="string-value"),
        pytest.param({"currency": "XYZ"}, "currency", "not one of the currencies", id="unknown-currency"),
        pytest.param({"currency": "US"}, "currency", "three-letter", id="short-currency"),
        pytest.param({"currency": "BTC"}, "currency", "not one of the currencies", id="crypto"),
        pytest.param({"msclkid": None}, "msclkid", "is required", id="no-click-no-identifiers"),
        pytest.param(
            {"msclkid": None, "identifiers": UserIdentifiers()}, "msclkid", "is required", id="empty-identifiers"
        ),
        pytest.param({"msclkid": "not valid!"}, "msclkid", "letters, digits", id="bad-click"),
        pytest.param({"identifiers": {"email": EMAIL}}, "identifiers", "UserIdentifiers", id="identifiers-dict"),
        pytest.param(
            {"external_attribution_credit": 0.5}, "external_attribution_credit", "together", id="credit-alone"
        ),
        pytest.param(
            {"external_attribution_model": "Linear"}, "external_attribution_credit", "together", id="model-alone"
        ),
        pytest.param(
            {"external_attribution_credit": 0, "external_attribution_model": "Linear"},
            "external_attribution_credit",
            "greater than 0",
            id="credit-zero",
        ),
        pytest.param(
            {"external_attribution_credit": 1.5, "external_attribution_model": "Linear"},
            "external_attribution_credit",
            "at most",
            id="credit-above-one",
        ),
        pytest.param(
            {"external_attribution_credit": 0.5, "external_attribution_model": ""},
            "external_attribution_model",
            "empty",
            id="model-empty",
        ),
    ],
)
def test_offline_conversion_rejects(overrides: dict[str, Any], field: str, reason: str) -> None:
    with pytest.raises(ValidationError) as info:
        _offline(**overrides)
    assert info.value.field == field
    assert reason in info.value.reason


def test_offline_time_window_boundaries() -> None:
    now = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    conversion = OfflineConversion.from_wire(
        {"ConversionName": "Purchase", "ConversionTime": "2026-08-30T12:00:00Z", "MicrosoftClickId": CLICK}
    )
    conversion.check_window(now)  # exactly 90 days old: still inside
    with pytest.raises(TimeWindowError, match="older than 90 days") as info:
        conversion.check_window(now + timedelta(seconds=1))
    assert info.value.field == "conversion_time"
    assert info.value.expired is True
    future = dataclasses.replace(conversion, conversion_time=now + timedelta(minutes=5), validate_times=False)
    future.check_window(now)  # within the clock skew
    with pytest.raises(TimeWindowError, match="future") as info:
        future.check_window(now - timedelta(seconds=1))
    assert info.value.expired is False


def _dispatch_decision(wire: dict[str, Any], now: datetime) -> str:
    """How a dispatcher uses the models: load stored wire JSON, then ask whether it can still be sent."""
    try:
        UetEvent.from_wire(wire).check_window(now)
    except TimeWindowError as exc:
        return f"dead: {exc}" if exc.expired else "later"
    return "send"


@pytest.mark.parametrize(
    ("age", "expected"),
    [
        pytest.param(timedelta(days=1), "send", id="fresh"),
        pytest.param(timedelta(days=7), "send", id="exactly-7-days"),
        pytest.param(timedelta(days=7, seconds=1), "dead: event_time: is older than 7 days", id="expired"),
        pytest.param(timedelta(minutes=-5), "send", id="within-skew"),
        pytest.param(timedelta(minutes=-6), "later", id="future"),
    ],
)
def test_window_errors_tell_dead_from_later(age: timedelta, expected: str) -> None:
    now = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    wire = {
        "eventType": "custom",
        "eventId": "e",
        "eventTime": int((now - age).timestamp()),
        "userData": {"msclkid": CLICK},
    }
    assert _dispatch_decision(wire, now).startswith(expected)


def test_aged_conversion_still_loads_from_the_outbox() -> None:
    # An 89-day-old conversion stored as wire JSON and loaded weeks later must load, then fail the window check.
    wire = _offline(conversion_time=_recent(days=89)).to_wire()
    later = datetime.now(UTC) + timedelta(days=30)
    loaded = OfflineConversion.from_wire(wire)
    assert loaded.to_wire() == wire
    with pytest.raises(ValidationError, match="older than 90 days"):
        loaded.check_window(later)


@pytest.mark.parametrize(
    ("wire", "field"),
    [
        pytest.param(
            {"ConversionTime": "2026-11-28T12:00:00Z", "MicrosoftClickId": CLICK}, "ConversionName", id="no-name"
        ),
        pytest.param({"ConversionName": "Purchase", "MicrosoftClickId": CLICK}, "ConversionTime", id="no-time"),
        pytest.param(
            {"ConversionName": "P", "ConversionTime": "2026-11-28T12:00:00", "MicrosoftClickId": CLICK},
            "ConversionTime",
            id="time-without-zone",
        ),
        pytest.param(
            {"ConversionName": "P", "ConversionTime": "2026-11-28T12:00:00Z", "MicrosoftClickId": CLICK, "Extra": 1},
            "OfflineConversion",
            id="unknown-key",
        ),
        pytest.param(["ConversionName"], "OfflineConversion", id="not-an-object"),
        pytest.param(
            {"ConversionName": "P", "ConversionTime": "2026-11-28T12:00:00Z", "HashedEmailAddress": EMAIL},
            "hashed_email",
            id="plain-email-on-the-wire",
        ),
    ],
)
def test_offline_from_wire_rejects(wire: Any, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        OfflineConversion.from_wire(wire)
    assert info.value.field == field
    assert EMAIL not in str(info.value)


# --- OfflineConversionAdjustment ------------------------------------------------------------------


def test_restate_and_retract_reuse_the_original_identity() -> None:
    original = _offline(identifiers=UserIdentifiers(email=EMAIL))
    at = _recent(minutes=1)
    restate = OfflineConversionAdjustment.restate(original, 99.95, at=at)
    assert restate.to_wire() == {
        "AdjustmentCurrencyCode": "USD",
        "AdjustmentTime": format_time(at),
        "AdjustmentType": "Restate",
        "AdjustmentValue": 99.95,
        "ConversionName": "Purchase",
        "ConversionTime": format_time(original.conversion_time),
        "HashedEmailAddress": EMAIL_HASH,
        "MicrosoftClickId": CLICK,
    }
    retract = OfflineConversionAdjustment.retract(original, at=at)
    assert retract.to_wire() == {
        "AdjustmentTime": format_time(at),
        "AdjustmentType": "Retract",
        "ConversionName": "Purchase",
        "ConversionTime": format_time(original.conversion_time),
        "HashedEmailAddress": EMAIL_HASH,
        "MicrosoftClickId": CLICK,
    }
    for adjustment in (restate, retract):
        assert OfflineConversionAdjustment.from_wire(adjustment.to_wire()) == adjustment


def test_restate_defaults_adjustment_time_to_now() -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    restate = OfflineConversionAdjustment.restate(_offline(), 10.0, "EUR")
    assert before <= restate.adjustment_time <= datetime.now(UTC)
    assert restate.currency == "EUR"


def _adjustment(**overrides: Any) -> OfflineConversionAdjustment:
    fields: dict[str, Any] = {
        "adjustment_type": "Restate",
        "conversion_name": "Purchase",
        "conversion_time": _recent(days=2),
        "adjustment_time": _recent(hours=1),
        "value": 10.0,
        "currency": "USD",
        "msclkid": CLICK,
    }
    fields.update(overrides)
    return OfflineConversionAdjustment(**fields)


@pytest.mark.parametrize(
    ("overrides", "field", "reason"),
    [
        pytest.param({"adjustment_type": "Cancel"}, "adjustment_type", "'Restate' or 'Retract'", id="bad-type"),
        pytest.param({"adjustment_type": "restate"}, "adjustment_type", "'Restate' or 'Retract'", id="lowercase-type"),
        pytest.param({"value": None}, "value", "required to restate", id="restate-without-value"),
        pytest.param({"currency": None}, "currency", "required to restate", id="restate-without-currency"),
        pytest.param(
            {"adjustment_type": "Retract", "currency": None}, "value", "must not be set", id="retract-with-value"
        ),
        pytest.param(
            {"adjustment_type": "Retract", "value": None}, "currency", "must not be set", id="retract-with-currency"
        ),
        pytest.param(
            {"adjustment_time": _recent(days=3)},
            "adjustment_time",
            "earlier than conversion_time",
            id="before-original",
        ),
        pytest.param({"adjustment_time": _recent(hours=-2)}, "adjustment_time", "future", id="future"),
        pytest.param(
            {"conversion_time": _recent(days=91), "adjustment_time": _recent(days=90, seconds=-60)},
            "conversion_time",
            "older than 90 days",
            id="original-too-old",
        ),
        pytest.param({"msclkid": None}, "msclkid", "is required", id="no-identity"),
        pytest.param({"value": -5.0}, "value", "negative", id="negative"),
        pytest.param({"currency": "ABC"}, "currency", "not one of", id="bad-currency"),
    ],
)
def test_offline_adjustment_rejects(overrides: dict[str, Any], field: str, reason: str) -> None:
    with pytest.raises(ValidationError) as info:
        _adjustment(**overrides)
    assert info.value.field == field
    assert reason in info.value.reason


def test_offline_adjustment_window_is_checked_separately() -> None:
    wire = _adjustment(adjustment_type="Retract", value=None, currency=None).to_wire()
    loaded = OfflineConversionAdjustment.from_wire(wire)
    loaded.check_window()
    with pytest.raises(ValidationError, match="older than 90 days"):
        loaded.check_window(datetime.now(UTC) + timedelta(days=100))


# --- OnlineConversionAdjustment -------------------------------------------------------------------


def test_online_adjustment_wire() -> None:
    at = _recent(hours=1)
    restate = OnlineConversionAdjustment(
        adjustment_type="Restate",
        conversion_name="Purchase",
        transaction_id="ord_10492",
        adjustment_time=at,
        value=99.95,
        currency="EUR",
    )
    assert restate.to_wire() == {
        "AdjustmentCurrencyCode": "EUR",
        "AdjustmentTime": format_time(at),
        "AdjustmentType": "Restate",
        "AdjustmentValue": 99.95,
        "ConversionName": "Purchase",
        "TransactionId": "ord_10492",
    }
    retract = OnlineConversionAdjustment(
        adjustment_type="Retract", conversion_name="Purchase", transaction_id="ord_10492", adjustment_time=at
    )
    assert retract.to_wire() == {
        "AdjustmentTime": format_time(at),
        "AdjustmentType": "Retract",
        "ConversionName": "Purchase",
        "TransactionId": "ord_10492",
    }
    for adjustment in (restate, retract):
        assert OnlineConversionAdjustment.from_wire(adjustment.to_wire()) == adjustment


@pytest.mark.parametrize(
    ("overrides", "field", "reason"),
    [
        pytest.param({"transaction_id": ""}, "transaction_id", "empty", id="empty-transaction"),
        pytest.param({"transaction_id": None}, "transaction_id", "string", id="no-transaction"),
        pytest.param({"value": None}, "value", "required to restate", id="restate-without-value"),
        pytest.param({"adjustment_type": "Retract"}, "value", "must not be set", id="retract-with-value"),
        pytest.param({"adjustment_time": _recent(hours=-2)}, "adjustment_time", "future", id="future"),
        pytest.param({"adjustment_time": _recent(days=91)}, "adjustment_time", "older than 90", id="too-old"),
    ],
)
def test_online_adjustment_rejects(overrides: dict[str, Any], field: str, reason: str) -> None:
    fields: dict[str, Any] = {
        "adjustment_type": "Restate",
        "conversion_name": "Purchase",
        "transaction_id": "ord_1",
        "adjustment_time": _recent(hours=1),
        "value": 1.0,
        "currency": "USD",
    }
    fields.update(overrides)
    with pytest.raises(ValidationError) as info:
        OnlineConversionAdjustment(**fields)
    assert info.value.field == field
    assert reason in info.value.reason


# --- UET CAPI -------------------------------------------------------------------------------------


def test_uet_event_wire_is_exact() -> None:
    when = _recent(minutes=10)
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
    when = _recent(seconds=30)
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
        event_time=_recent(seconds=1),
        user_data=UetUserData(msclkid=CLICK),
        consent=consent,
        ad_storage_consent=explicit,
    )
    assert event.ad_storage_consent == expected
    assert event.to_wire().get("adStorageConsent") == expected


def _uet(**overrides: Any) -> UetEvent:
    fields: dict[str, Any] = {
        "event_id": "e-1",
        "event_time": _recent(minutes=1),
        "user_data": UetUserData(msclkid=CLICK),
    }
    fields.update(overrides)
    return UetEvent(**fields)


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
        pytest.param({"event_time": _recent(days=7, seconds=30)}, "event_time", "older than 7 days", id="too-old"),
        pytest.param({"event_time": _recent(hours=-2)}, "event_time", "future", id="future"),
        pytest.param({"event_time": 1795869788}, "event_time", "datetime", id="int-time"),
        pytest.param({"user_data": {"msclkid": CLICK}}, "user_data", "UetUserData", id="user-data-dict"),
        pytest.param({"custom_data": {"value": 1}}, "custom_data", "UetCustomData", id="custom-data-dict"),
        pytest.param({"page_title": "a\x00b"}, "page_title", "control", id="title-control"),
    ],
)
def test_uet_event_rejects(overrides: dict[str, Any], field: str, reason: str) -> None:
    with pytest.raises(ValidationError) as info:
        _uet(**overrides)
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
    wire = _uet(event_time=_recent(days=6)).to_wire()
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
    wire = _uet().to_wire()
    mutate(wire)
    with pytest.raises(ValidationError) as info:
        UetEvent.from_wire(wire)
    assert info.value.field == field


def test_validation_errors_are_value_errors_and_identity_errors_are_validation_errors() -> None:
    assert issubclass(ValidationError, ValueError)
    assert issubclass(InvalidIdentifier, ValidationError)
    with pytest.raises(InvalidIdentifier):
        UserIdentifiers(email="nope")


def test_module_exports_exist() -> None:
    for name in models.__all__:
        assert hasattr(models, name), name


# --- properties -------------------------------------------------------------------------------------

_NOW = datetime.now(UTC).replace(microsecond=0)
_times = st.integers(min_value=0, max_value=89 * 24 * 3600).map(lambda s: _NOW - timedelta(seconds=s))
_uet_times = st.integers(min_value=0, max_value=6 * 24 * 3600).map(lambda s: _NOW - timedelta(seconds=s))
_names = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1, max_size=100
).filter(lambda s: s == s.strip())
_clicks = st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True)
_values = st.floats(min_value=0, max_value=999_999_999_999, allow_nan=False)
_hashes = st.from_regex(r"[0-9a-f]{64}", fullmatch=True)
_emails = st.builds(
    lambda local, domain: f"{local}@{domain}.com",
    st.from_regex(r"[A-Za-z][A-Za-z0-9.+]{0,15}", fullmatch=True),
    st.from_regex(r"[a-z]{2,12}", fullmatch=True),
)
_phones = st.from_regex(r"\+[1-9][0-9]{7,13}", fullmatch=True)
_identifiers = st.one_of(
    st.none(),
    st.builds(UserIdentifiers, hashed_email=st.one_of(st.none(), _hashes), hashed_phone=_hashes),
    st.builds(UserIdentifiers, email=_emails, phone=st.one_of(st.none(), _phones)),
)


@st.composite
def _offline_conversions(draw: st.DrawFn) -> OfflineConversion:
    identifiers = draw(_identifiers)
    msclkid = draw(_clicks if identifiers is None else st.one_of(st.none(), _clicks))
    credit = draw(st.one_of(st.none(), st.floats(min_value=0.001, max_value=1.0)))
    return OfflineConversion(
        conversion_name=draw(_names),
        conversion_time=draw(_times),
        value=draw(st.one_of(st.none(), _values)),
        currency=draw(st.one_of(st.none(), st.sampled_from(sorted(CURRENCY_CODES)))),
        msclkid=msclkid,
        identifiers=identifiers,
        external_attribution_credit=credit,
        external_attribution_model=None if credit is None else draw(_names),
    )


@settings(max_examples=200, deadline=None)
@given(_offline_conversions())
def test_offline_round_trip(conversion: OfflineConversion) -> None:
    wire = conversion.to_wire()
    again = OfflineConversion.from_wire(json.loads(json.dumps(wire)))
    assert again == conversion
    assert again.to_wire() == wire


@settings(max_examples=100, deadline=None)
@given(_offline_conversions(), st.sampled_from(["Restate", "Retract"]), _values)
def test_offline_adjustment_round_trip(original: OfflineConversion, kind: str, value: float) -> None:
    if kind == "Restate":
        adjustment = OfflineConversionAdjustment.restate(original, value, "USD")
    else:
        adjustment = OfflineConversionAdjustment.retract(original)
    wire = json.loads(json.dumps(adjustment.to_wire()))
    assert OfflineConversionAdjustment.from_wire(wire) == adjustment


@settings(max_examples=100, deadline=None)
@given(
    name=_names,
    transaction=st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1, max_size=40),
    at=_times,
    value=st.one_of(st.none(), _values),
)
def test_online_adjustment_round_trip(name: str, transaction: str, at: datetime, value: float | None) -> None:
    adjustment = OnlineConversionAdjustment(
        adjustment_type="Retract" if value is None else "Restate",
        conversion_name=name,
        transaction_id=transaction,
        adjustment_time=at,
        value=value,
        currency=None if value is None else "GBP",
    )
    assert OnlineConversionAdjustment.from_wire(json.loads(json.dumps(adjustment.to_wire()))) == adjustment


_user_data = st.builds(
    UetUserData,
    msclkid=_clicks,
    anonymous_id=st.one_of(st.none(), _hashes.map(lambda h: h[:32])),
    em=st.one_of(st.none(), _hashes),
    client_ip_address=st.one_of(st.none(), st.ip_addresses().map(str)),
)
_custom = st.one_of(
    st.none(),
    st.builds(
        UetCustomData,
        value=st.one_of(st.none(), _values),
        currency=st.one_of(st.none(), st.sampled_from(["USD", "EUR", "CHF"])),
        page_type=st.one_of(st.none(), st.sampled_from(sorted(models.UET_PAGE_TYPES))),
        items=st.lists(
            st.builds(UetItem, id=_clicks, quantity=st.one_of(st.none(), st.integers(0, 99)), price=_values),
            max_size=3,
        ),
        item_ids=st.lists(_clicks, max_size=3),
        hotel_data=st.one_of(
            st.none(),
            st.builds(UetHotelData, checkin_date=st.dates(), length_of_stay=st.integers(0, 30)),
        ),
    ),
)


@settings(max_examples=150, deadline=None)
@given(
    event_time=_uet_times,
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


@settings(max_examples=150, deadline=None)
@given(email=_emails, phone=_phones, kind=st.sampled_from(["offline", "uet", "ids"]))
def test_raw_email_and_phone_never_leak(email: str, phone: str, kind: str) -> None:
    digits = phone[1:]
    if kind == "offline":
        obj: Any = _offline(identifiers=UserIdentifiers(email=email, phone=phone))
    elif kind == "uet":
        obj = _uet(user_data=UetUserData(email=email, phone=phone))
    else:
        obj = UserIdentifiers(email=email, phone=phone)
    text = repr(obj) + json.dumps(obj.to_wire())
    local = email.split("@")[0]
    assert email not in text
    assert email.lower() not in text
    assert digits not in text
    if len(local) >= 6:
        assert local not in text


@settings(max_examples=150, deadline=None)
@given(
    garbage=st.one_of(
        st.from_regex(r"[a-z]{4,10}@[a-z]{3,8}", fullmatch=True),
        st.from_regex(r"[a-z]{3,8}\.[a-z]{4,10}@@[a-z]{3,8}\.com", fullmatch=True),
        st.from_regex(r"[0-9]{6,12}", fullmatch=True),
        st.from_regex(r"\+0[0-9]{8,12}", fullmatch=True),
    ),
    field=st.sampled_from(["email", "phone", "hashed_email", "hashed_phone"]),
)
def test_errors_never_contain_the_value(garbage: str, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        UserIdentifiers(**{field: garbage})
    assert garbage not in str(info.value)
    assert garbage not in repr(info.value)


def test_doctests() -> None:
    import doctest

    result = doctest.testmod(models)
    assert result.attempted >= 2
    assert result.failed == 0


def test_docs_examples_run() -> None:
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "docs" / "models.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```python\n(.*?)^```", text, re.S | re.M)
    assert len(blocks) == 2
    namespace: dict[str, Any] = {}
    for block in blocks:
        exec(compile(block, "docs/models.md", "exec"), namespace)  # noqa: S102 - our own documentation
    assert namespace["refund"].value == 99.95
    assert namespace["event"].to_wire()["adStorageConsent"] == "G"
    assert namespace["loaded"] == namespace["sale"]
