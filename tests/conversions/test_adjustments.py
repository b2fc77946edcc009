"""Offline and online conversion adjustments: restate/retract rules, wire JSON, windows, round trips."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from msclkid_middleware.conversions import (
    OfflineConversion,
    OfflineConversionAdjustment,
    OnlineConversionAdjustment,
    UserIdentifiers,
    format_time,
)
from msclkid_middleware.errors import ValidationError
from tests.conversions.conversions_helpers import (
    CLICK,
    EMAIL,
    EMAIL_HASH,
    any_names,
    any_times,
    any_values,
    offline,
    offline_conversions,
    recent,
)

# --- OfflineConversionAdjustment ------------------------------------------------------------------


def test_restate_and_retract_reuse_the_original_identity() -> None:
    original = offline(identifiers=UserIdentifiers(email=EMAIL))
    at = recent(minutes=1)
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
    restate = OfflineConversionAdjustment.restate(offline(), 10.0, "EUR")
    assert before <= restate.adjustment_time <= datetime.now(UTC)
    assert restate.currency == "EUR"


def _adjustment(**overrides: Any) -> OfflineConversionAdjustment:
    fields: dict[str, Any] = {
        "adjustment_type": "Restate",
        "conversion_name": "Purchase",
        "conversion_time": recent(days=2),
        "adjustment_time": recent(hours=1),
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
            {"adjustment_time": recent(days=3)},
            "adjustment_time",
            "earlier than conversion_time",
            id="before-original",
        ),
        pytest.param({"adjustment_time": recent(hours=-2)}, "adjustment_time", "future", id="future"),
        pytest.param(
            {"conversion_time": recent(days=91), "adjustment_time": recent(days=90, seconds=-60)},
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
    at = recent(hours=1)
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
        pytest.param({"adjustment_time": recent(hours=-2)}, "adjustment_time", "future", id="future"),
        pytest.param({"adjustment_time": recent(days=91)}, "adjustment_time", "older than 90", id="too-old"),
    ],
)
def test_online_adjustment_rejects(overrides: dict[str, Any], field: str, reason: str) -> None:
    fields: dict[str, Any] = {
        "adjustment_type": "Restate",
        "conversion_name": "Purchase",
        "transaction_id": "ord_1",
        "adjustment_time": recent(hours=1),
        "value": 1.0,
        "currency": "USD",
    }
    fields.update(overrides)
    with pytest.raises(ValidationError) as info:
        OnlineConversionAdjustment(**fields)
    assert info.value.field == field
    assert reason in info.value.reason


@settings(max_examples=100, deadline=None)
@given(offline_conversions(), st.sampled_from(["Restate", "Retract"]), any_values)
def test_offline_adjustment_round_trip(original: OfflineConversion, kind: str, value: float) -> None:
    if kind == "Restate":
        adjustment = OfflineConversionAdjustment.restate(original, value, "USD")
    else:
        adjustment = OfflineConversionAdjustment.retract(original)
    wire = json.loads(json.dumps(adjustment.to_wire()))
    assert OfflineConversionAdjustment.from_wire(wire) == adjustment


@settings(max_examples=100, deadline=None)
@given(
    name=any_names,
    transaction=st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1, max_size=40),
    at=any_times,
    value=st.one_of(st.none(), any_values),
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
