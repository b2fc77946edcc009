"""OfflineConversion: validation on construction, exact wire JSON, from_wire round trips, time window."""

from __future__ import annotations

import dataclasses
import json
import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings

from msclkid_middleware.capture.clickid import Click
from msclkid_middleware.conversions import (
    CURRENCY_CODES,
    OfflineConversion,
    UetEvent,
    UserIdentifiers,
    format_time,
)
from msclkid_middleware.errors import TimeWindowError, ValidationError
from tests.conversions.conversions_helpers import (
    CLICK,
    EMAIL,
    EMAIL_HASH,
    JOHN_HASH,
    PHONE,
    PHONE_HASH,
    offline,
    offline_conversions,
    recent,
)

# --- OfflineConversion -------------------------------------------------------------------------------


def test_offline_conversion_wire_is_exact() -> None:
    when = recent(hours=3)
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
    when = recent(minutes=5)
    conversion = OfflineConversion(conversion_name="Lead", conversion_time=when, msclkid=CLICK)
    assert conversion.to_wire() == {
        "ConversionName": "Lead",
        "ConversionTime": format_time(when),
        "MicrosoftClickId": CLICK,
    }


def test_offline_conversion_accepts_click_object_and_identifiers_only() -> None:
    click = Click.from_value(CLICK)
    assert offline(msclkid=click).msclkid == CLICK
    hashed_only = offline(msclkid=None, identifiers=UserIdentifiers(hashed_email=JOHN_HASH))
    assert "MicrosoftClickId" not in hashed_only.to_wire()
    assert hashed_only.to_wire()["HashedEmailAddress"] == JOHN_HASH


def test_offline_conversion_is_frozen_and_slotted() -> None:
    conversion = offline()
    with pytest.raises(dataclasses.FrozenInstanceError):
        conversion.value = 1.0  # type: ignore[misc]
    assert not hasattr(conversion, "__dict__")


def test_every_microsoft_currency_is_accepted() -> None:
    assert len(CURRENCY_CODES) == 100
    for code in sorted(CURRENCY_CODES):
        assert offline(currency=code.lower()).currency == code


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
        pytest.param({"conversion_time": recent(days=91)}, "conversion_time", "older than 90 days", id="too-old"),
        pytest.param({"conversion_time": recent(hours=-2)}, "conversion_time", "future", id="future"),
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
        offline(**overrides)
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
    wire = offline(conversion_time=recent(days=89)).to_wire()
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


@settings(max_examples=200, deadline=None)
@given(offline_conversions())
def test_offline_round_trip(conversion: OfflineConversion) -> None:
    wire = conversion.to_wire()
    again = OfflineConversion.from_wire(json.loads(json.dumps(wire)))
    assert again == conversion
    assert again.to_wire() == wire
