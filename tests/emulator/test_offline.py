"""``OfflineConversions/Apply``: per-item rules 5600-5617, duplicates, PartialErrors shape."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from emulator_helpers import CLICK, ago, apply_offline, cm_headers, conversion, wire_time

from msclkid_middleware.testing import EmulatorHandle, run_emulator

EMAIL_HASH = "ec81f3ac7b2b19675bab9d54cf416f9f18cff87c97da5cca82c0f0891bc40602"
PHONE_HASH = "c59475d96e9f01d7d18d06cfad84dd02333207f02c0c2c5663ef2782cda0390e"
BATCH_ERROR_KEYS = {"Code", "Details", "ErrorCode", "FieldPath", "ForwardCompatibilityMap", "Index", "Message", "Type"}


def test_clean_batch_returns_empty_partial_errors(ms: EmulatorHandle) -> None:
    response = apply_offline(ms, [conversion(), conversion(MicrosoftClickId="a" * 32)])
    assert response.status_code == 200
    assert response.json() == {"PartialErrors": []}
    assert response.headers["TrackingId"]
    items = ms.received("offline")
    assert [(i.index, i.outcome) for i in items] == [(0, "accepted"), (1, "accepted")]
    assert {i.tracking_id for i in items} == {response.headers["TrackingId"]}
    assert items[0].account == ms.env["MSADS_ACCOUNT_ID"]


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        pytest.param("null", {"PartialErrors": None}, id="null"),
        pytest.param("absent", {}, id="absent"),
    ],
)
def test_clean_response_shape_is_configurable(mode: str, expected: dict[str, Any]) -> None:
    with run_emulator(empty_partial_errors=mode) as ms:
        assert apply_offline(ms, [conversion()]).json() == expected


def _later(**delta: float) -> str:
    return wire_time(ago(**{k: -v for k, v in delta.items()}))


@pytest.mark.parametrize(
    ("overrides", "code", "error_code", "field"),
    [
        pytest.param({"ConversionName": ...}, 5605, "OfflineConversionNameNullOrEmpty", "ConversionName", id="5605"),
        pytest.param({"ConversionName": ""}, 5605, "OfflineConversionNameNullOrEmpty", "ConversionName", id="5605-e"),
        pytest.param({"ConversionName": "Nope"}, 5606, "OfflineConversionNameInvalid", "ConversionName", id="5606"),
        pytest.param(
            {"MicrosoftClickId": ...},
            5603,
            "OfflineConversionMicrosoftClickIdNullOrEmpty",
            "MicrosoftClickId",
            id="5603",
        ),
        pytest.param(
            {"MicrosoftClickId": "not a click"},
            5604,
            "OfflineConversionMicrosoftClickIdInvalid",
            "MicrosoftClickId",
            id="5604",
        ),
        pytest.param(
            {"MicrosoftClickId": "Example-123"},
            5604,
            "OfflineConversionMicrosoftClickIdInvalid",
            "MicrosoftClickId",
            id="5604-short",
        ),
        pytest.param(
            {"ConversionTime": "yesterday"}, 5607, "OfflineConversionTimeInvalid", "ConversionTime", id="5607"
        ),
        pytest.param({"ConversionTime": None}, 5608, "OfflineConversionTimeNullOrEmpty", "ConversionTime", id="5608"),
        pytest.param(
            {"ConversionTime": wire_time(ago(days=91))},
            5609,
            "OfflineConversionTimeOutOfWindow",
            "ConversionTime",
            id="5609",
        ),
        pytest.param({"ConversionValue": -1}, 5610, "OfflineConversionValueInvalid", "ConversionValue", id="5610"),
        pytest.param(
            {"ConversionValue": "10"}, 5610, "OfflineConversionValueInvalid", "ConversionValue", id="5610-string"
        ),
        pytest.param(
            {"ConversionValue": 1e13}, 5610, "OfflineConversionValueInvalid", "ConversionValue", id="5610-big"
        ),
        pytest.param(
            {"ConversionCurrencyCode": "usd"},
            5611,
            "OfflineConversionCurrencyCodeInvalid",
            "ConversionCurrencyCode",
            id="5611",
        ),
        pytest.param(
            {"ConversionTime": "2099-01-01T00:00:00Z"},
            5614,
            "FutureConversionTimeCannotBeSet",
            "ConversionTime",
            id="5614",
        ),
        pytest.param({"HashedEmailAddress": "a@b.com"}, 8004, "EmailMustBeHashed", "HashedEmailAddress", id="8004"),
    ],
)
def test_item_rules(ms: EmulatorHandle, overrides: dict[str, Any], code: int, error_code: str, field: str) -> None:
    response = apply_offline(ms, [conversion(MicrosoftClickId="b" * 32), conversion(**overrides)])
    assert response.status_code == 200
    [error] = response.json()["PartialErrors"]
    assert set(error) == BATCH_ERROR_KEYS
    assert error["Type"] == "BatchError"
    assert error["Index"] == 1
    assert error["Code"] == code
    assert error["ErrorCode"] == error_code
    assert error["FieldPath"] == field
    assert error["ForwardCompatibilityMap"] == []
    first, second = ms.received("offline")
    assert first.outcome == "accepted"
    assert (second.outcome, second.code, second.error_code) == ("rejected", code, error_code)


def test_null_item_is_5602(ms: EmulatorHandle) -> None:
    [error] = apply_offline(ms, [None]).json()["PartialErrors"]
    assert (error["Index"], error["Code"], error["ErrorCode"]) == (0, 5602, "OfflineConversionIsNull")


@pytest.mark.parametrize(
    ("body", "code"),
    [
        pytest.param({"OfflineConversions": []}, 5600, id="empty"),
        pytest.param({"OfflineConversions": None}, 5600, id="null"),
        pytest.param({"Conversions": [{}]}, 5600, id="wrong-wrapper"),
    ],
)
def test_null_or_empty_list_is_an_operation_error(ms: EmulatorHandle, body: dict[str, Any], code: int) -> None:
    response = requests.post(ms.campaign_url("OfflineConversions/Apply"), json=body, headers=cm_headers(ms), timeout=5)
    assert response.status_code == 400
    fault = response.json()
    assert fault["Type"] == "ApiFaultDetail"
    assert fault["TrackingId"] == response.headers["TrackingId"]
    assert fault["BatchErrors"] == []
    [error] = fault["OperationErrors"]
    assert (error["Code"], error["ErrorCode"]) == (code, "OfflineConversionsNullOrEmpty")
    assert set(error) == {"Code", "Details", "ErrorCode", "Message"}


def test_more_than_1000_items_is_5601_and_nothing_is_recorded(ms: EmulatorHandle) -> None:
    response = apply_offline(ms, [conversion()] * 1001)
    assert response.status_code == 400
    [error] = response.json()["OperationErrors"]
    assert (error["Code"], error["ErrorCode"]) == (5601, "OfflineConversionsLimitExceeded")
    assert ms.received() == []
    assert apply_offline(ms, [conversion(MicrosoftClickId=f"{i:032x}") for i in range(1000)]).status_code == 200
    assert len(ms.received("offline", outcome="accepted")) == 1000


@pytest.mark.parametrize(
    ("data", "code"),
    [
        pytest.param(b"", 100, id="empty-body"),
        pytest.param(b"{not json", 201, id="not-json"),
        pytest.param(b"[1]", 201, id="not-object"),
    ],
)
def test_unreadable_body_is_a_fault(ms: EmulatorHandle, data: bytes, code: int) -> None:
    response = requests.post(ms.campaign_url("OfflineConversions/Apply"), data=data, headers=cm_headers(ms), timeout=5)
    assert response.status_code == 400
    assert response.json()["Errors"][0]["Code"] == code


def test_duplicates_are_silently_accepted_but_recorded(ms: EmulatorHandle) -> None:
    item = conversion()
    assert apply_offline(ms, [item, item]).json() == {"PartialErrors": []}
    assert apply_offline(ms, [item]).json() == {"PartialErrors": []}
    # Same click and time but a different name is a different conversion.
    assert apply_offline(ms, [{**item, "ConversionName": "Lead"}]).json() == {"PartialErrors": []}
    assert [i.outcome for i in ms.received("offline")] == ["accepted", "duplicate", "duplicate", "accepted"]


def test_time_formats_with_offsets_identify_the_same_instant(ms: EmulatorHandle) -> None:
    when = ago(hours=3).replace(microsecond=0)
    utc = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    shifted = when.astimezone().isoformat()
    assert apply_offline(ms, [conversion(ConversionTime=utc), conversion(ConversionTime=shifted)]).status_code == 200
    assert [i.outcome for i in ms.received("offline")] == ["accepted", "duplicate"]


def test_hashed_only_needs_an_enhanced_goal(ms: EmulatorHandle) -> None:
    items = [
        conversion(MicrosoftClickId=..., HashedEmailAddress=EMAIL_HASH, ConversionName="Lead"),
        conversion(MicrosoftClickId=..., HashedPhoneNumber=PHONE_HASH, ConversionName="Purchase"),
    ]
    [error] = apply_offline(ms, items).json()["PartialErrors"]
    assert (error["Index"], error["Code"]) == (0, 5603)
    # Hashed-only duplicates use the full key (name, time, email, phone).
    apply_offline(ms, [items[1], {**items[1], "HashedEmailAddress": EMAIL_HASH}, items[1]])
    assert [i.outcome for i in ms.received("offline")] == ["rejected", "accepted", "duplicate", "accepted", "duplicate"]


def test_unknown_goal_can_be_accepted_silently_like_microsofts_examples() -> None:
    with run_emulator(unknown_goal="accept") as ms:
        assert apply_offline(ms, [conversion(ConversionName="Typo")]).json() == {"PartialErrors": []}
        [item] = ms.received("offline")
        assert item.outcome == "accepted"
        assert "GoalNotFoundOrInactive" in item.notes


def test_configure_switches_unknown_goal_mode_at_run_time(ms: EmulatorHandle) -> None:
    assert apply_offline(ms, [conversion(ConversionName="Typo")]).json()["PartialErrors"][0]["Code"] == 5606
    ms.configure(unknown_goal="accept")
    assert apply_offline(ms, [conversion(ConversionName="Typo")]).json() == {"PartialErrors": []}


def test_goal_younger_than_two_hours_is_5615(ms: EmulatorHandle) -> None:
    ms.add_goal("Fresh", created_hours_ago=1)
    [error] = apply_offline(ms, [conversion(ConversionName="Fresh")]).json()["PartialErrors"]
    assert (error["Code"], error["ErrorCode"]) == (5615, "OfflineConversionNotAcceptedForGoal")
    ms.add_goal("Fresh", created_hours_ago=2.1)
    assert apply_offline(ms, [conversion(ConversionName="Fresh")]).json() == {"PartialErrors": []}


def test_registered_click_time_rules(ms: EmulatorHandle) -> None:
    ms.add_goal("Short", conversion_window_minutes=60 * 24)
    ms.add_click("c" * 32, ago(minutes=30))
    ms.add_click("d" * 32, ago(days=3))
    items = [
        conversion(MicrosoftClickId="c" * 32, ConversionTime=wire_time(ago(hours=1))),  # before the click
        conversion(MicrosoftClickId="d" * 32, ConversionName="Short", ConversionTime=wire_time(ago(hours=1))),
        conversion(MicrosoftClickId="d" * 32, ConversionTime=wire_time(ago(hours=1))),  # Purchase: 30-day window
        conversion(MicrosoftClickId="e" * 32),  # unknown but well-formed: accepted, as Microsoft does
    ]
    errors = apply_offline(ms, items).json()["PartialErrors"]
    assert [(e["Index"], e["Code"]) for e in errors] == [(0, 5616), (1, 5617)]
    assert "ClickNotRegistered" in ms.received("offline")[3].notes


def test_dashed_guid_click_ids_are_valid(ms: EmulatorHandle) -> None:
    item = conversion(MicrosoftClickId="dd4afccc-b1c9-4a4c-ad95-44dd7e5006ab")
    assert apply_offline(ms, [item]).json() == {"PartialErrors": []}


def test_errors_name_their_index_in_any_order(ms: EmulatorHandle) -> None:
    items = [conversion(MicrosoftClickId=f"{i:032x}") for i in range(10)]
    for index in (7, 2, 9):
        items[index]["ConversionCurrencyCode"] = "XXX"
    errors = apply_offline(ms, items).json()["PartialErrors"]
    assert sorted(e["Index"] for e in errors) == [2, 7, 9]
    assert {e["Code"] for e in errors} == {5611}
    assert CLICK not in {e["Message"] for e in errors}
