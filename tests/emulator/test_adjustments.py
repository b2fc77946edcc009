"""``OfflineConversionAdjustments/Apply`` and ``OnlineConversionAdjustments/Apply``: 5618-5627, history."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from emulator_helpers import CLICK, ago, apply, apply_offline, conversion, wire_time

from msclkid_middleware.testing import EmulatorHandle

ORIGINAL_TIME = wire_time(ago(hours=5))


def adjustment(**overrides: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "MicrosoftClickId": CLICK,
        "ConversionName": "Purchase",
        "ConversionTime": ORIGINAL_TIME,
        "AdjustmentType": "Restate",
        "AdjustmentValue": 5.0,
        "AdjustmentCurrencyCode": "USD",
        "AdjustmentTime": wire_time(ago(hours=1)),
    }
    item.update(overrides)
    return {k: v for k, v in item.items() if v is not ...}


def online(**overrides: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "TransactionId": "T-1",
        "ConversionName": "Purchase",
        "AdjustmentType": "Retract",
        "AdjustmentTime": wire_time(ago(hours=1)),
    }
    item.update(overrides)
    return {k: v for k, v in item.items() if v is not ...}


def apply_adjustments(ms: EmulatorHandle, items: list[Any]) -> requests.Response:
    return apply(ms, "OfflineConversionAdjustments", "OfflineConversionAdjustments", items)


def apply_online(ms: EmulatorHandle, items: list[Any]) -> requests.Response:
    return apply(ms, "OnlineConversionAdjustments", "OnlineConversionAdjustments", items)


@pytest.mark.parametrize(
    ("overrides", "code", "field"),
    [
        pytest.param({"AdjustmentType": "Refund"}, 5618, "AdjustmentType", id="5618"),
        pytest.param({"AdjustmentType": ...}, 5618, "AdjustmentType", id="5618-missing"),
        pytest.param({"AdjustmentTime": ...}, 5619, "AdjustmentTime", id="5619"),
        pytest.param({"AdjustmentTime": wire_time(ago(hours=6))}, 5620, "AdjustmentTime", id="5620"),
        pytest.param({"AdjustmentTime": "soon"}, 5621, "AdjustmentTime", id="5621"),
        pytest.param({"AdjustmentTime": "2099-01-01T00:00:00Z"}, 5622, "AdjustmentTime", id="5622"),
        pytest.param(
            {"AdjustmentTime": wire_time(ago(days=91)), "ConversionTime": wire_time(ago(days=92))},
            5623,
            "AdjustmentTime",
            id="5623",
        ),
        pytest.param({"AdjustmentType": "Retract", "AdjustmentValue": 1.0}, 5624, "AdjustmentValue", id="5624"),
        pytest.param({"AdjustmentValue": ...}, 5625, "AdjustmentValue", id="5625"),
        pytest.param(
            {"ConversionName": "Lead", "AdjustmentCurrencyCode": ...}, 5626, "AdjustmentCurrencyCode", id="5626"
        ),
        pytest.param({"AdjustmentCurrencyCode": "EURO"}, 5611, "AdjustmentCurrencyCode", id="5611"),
        pytest.param({"AdjustmentValue": -3}, 5610, "AdjustmentValue", id="5610"),
        pytest.param({"ConversionTime": ...}, 5608, "ConversionTime", id="5608"),
        pytest.param({"MicrosoftClickId": "zz"}, 5604, "MicrosoftClickId", id="5604"),
        pytest.param({"ConversionName": "Nope"}, 5606, "ConversionName", id="5606"),
    ],
)
def test_offline_adjustment_rules(ms: EmulatorHandle, overrides: dict[str, Any], code: int, field: str) -> None:
    response = apply_adjustments(ms, [adjustment(**overrides)])
    assert response.status_code == 200
    [error] = response.json()["PartialErrors"]
    assert (error["Index"], error["Code"], error["FieldPath"], error["Type"]) == (0, code, field, "BatchError")


def test_restate_then_retract_are_recorded_against_the_original(ms: EmulatorHandle) -> None:
    assert apply_offline(ms, [conversion(ConversionTime=ORIGINAL_TIME)]).json() == {"PartialErrors": []}
    restate = adjustment()
    assert apply_adjustments(ms, [restate]).json() == {"PartialErrors": []}
    retract = adjustment(AdjustmentType="Retract", AdjustmentValue=..., AdjustmentCurrencyCode=...)
    assert apply_adjustments(ms, [retract]).json() == {"PartialErrors": []}
    # Retracting twice and adjusting an unknown original are not synchronous errors; they are diagnostics.
    retract_again = {**retract, "AdjustmentTime": wire_time(ago(minutes=30))}
    assert apply_adjustments(ms, [retract_again]).json() == {"PartialErrors": []}
    assert apply_adjustments(ms, [adjustment(MicrosoftClickId="f" * 32)]).json() == {"PartialErrors": []}
    # The very same adjustment sent twice is a duplicate.
    assert apply_adjustments(ms, [restate]).json() == {"PartialErrors": []}
    items = ms.received("offline_adjustments")
    assert [i.outcome for i in items] == ["accepted", "accepted", "accepted", "accepted", "duplicate"]
    assert items[0].notes == ()
    assert "ConversionAlreadyRetracted" in items[2].notes
    assert "AdjustmentOriginalNotFound" in items[3].notes


def test_adjustments_can_be_disabled_per_goal(ms: EmulatorHandle) -> None:
    ms.add_goal("NoAdjust", adjustments_supported=False)
    [error] = apply_adjustments(ms, [adjustment(ConversionName="NoAdjust")]).json()["PartialErrors"]
    assert error["Code"] == 5627


def test_online_adjustments_by_transaction_id(ms: EmulatorHandle) -> None:
    event = {
        "eventType": "custom",
        "eventName": "purchase",
        "eventId": "o-1",
        "eventTime": int(ago(hours=2).timestamp()),
        "userData": {"msclkid": CLICK},
        "customData": {"transactionId": "T-1", "value": 20.0, "currency": "USD"},
    }
    response = requests.post(
        ms.uet_url(), json={"data": [event]}, headers={"Authorization": f"Bearer {ms.env['UET_API_TOKEN']}"}, timeout=5
    )
    assert response.status_code == 200
    assert apply_online(ms, [online(), online(TransactionId="T-404")]).json() == {"PartialErrors": []}
    first, second = ms.received("online_adjustments")
    assert first.notes == ()
    assert "AdjustmentOriginalNotFound" in second.notes


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        pytest.param({"TransactionId": ...}, 201, id="no-transaction"),
        pytest.param({"ConversionName": ...}, 5605, id="5605"),
        pytest.param({"AdjustmentType": "Restate"}, 5625, id="5625"),
        pytest.param({"AdjustmentTime": ...}, 5619, id="5619"),
    ],
)
def test_online_adjustment_rules(ms: EmulatorHandle, overrides: dict[str, Any], code: int) -> None:
    [error] = apply_online(ms, [online(**overrides)]).json()["PartialErrors"]
    assert error["Code"] == code


def test_adjustment_list_limits(ms: EmulatorHandle) -> None:
    assert apply_adjustments(ms, []).json()["OperationErrors"][0]["Code"] == 5600
    assert apply_online(ms, [online()] * 1001).json()["OperationErrors"][0]["Code"] == 5601
