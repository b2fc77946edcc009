"""Goals, diagnostics reports and the UET tag auth key (Campaign Management v13 REST)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from emulator_helpers import apply_offline, cm_headers, conversion, wire_time

from msclkid_middleware.testing import EmulatorHandle, run_emulator


def post(ms: EmulatorHandle, operation: str, body: Any, headers: dict[str, str] | None = None) -> requests.Response:
    return requests.post(ms.campaign_url(operation), json=body, headers=headers or cm_headers(ms), timeout=5)


def goal(name: str, **extra: Any) -> dict[str, Any]:
    return {
        "Type": "OfflineConversion",
        "Name": name,
        "GoalCategory": "Purchase",
        "ConversionWindowInMinutes": 1440,
        "Revenue": {"Type": "VariableValue", "CurrencyCode": "EUR", "Value": None},
        "Scope": "Account",
        **extra,
    }


def test_add_goals_then_query_them(ms: EmulatorHandle) -> None:
    headers = cm_headers(ms)
    response = post(ms, "ConversionGoals", {"ConversionGoals": [goal("Refund"), goal("Purchase"), goal("")]}, headers)
    assert response.status_code == 200
    body = response.json()
    assert body["ConversionGoalIds"][0].isdigit()
    assert body["ConversionGoalIds"][1:] == [None, None]
    assert [(e["Index"], e["Code"]) for e in body["PartialErrors"]] == [(1, 5317), (2, 201)]
    new_id = body["ConversionGoalIds"][0]
    by_id = post(
        ms,
        "ConversionGoals/QueryByIds",
        {"ConversionGoalIds": [new_id, "999"], "ConversionGoalTypes": "OfflineConversion"},
        headers,
    ).json()
    found, missing = by_id["ConversionGoals"]
    assert missing is None
    assert by_id["PartialErrors"][0]["Index"] == 1
    assert (found["Id"], found["Name"], found["Type"]) == (new_id, "Refund", "OfflineConversion")
    assert found["Revenue"] == {"Type": "VariableValue", "Value": None, "CurrencyCode": "EUR"}
    assert found["ConversionWindowInMinutes"] == 1440
    listed = post(ms, "ConversionGoals/QueryByIds", {"ConversionGoalTypes": "OfflineConversion"}, headers).json()
    assert [g["Name"] for g in listed["ConversionGoals"]] == ["Purchase", "Lead", "Refund"]
    none = post(ms, "ConversionGoals/QueryByIds", {"ConversionGoalTypes": "Event, Url"}, headers).json()
    assert none["ConversionGoals"] == []


def test_a_goal_added_over_the_api_is_too_young_for_uploads(ms: EmulatorHandle) -> None:
    headers = cm_headers(ms)
    post(ms, "ConversionGoals", {"ConversionGoals": [goal("Brand new")]}, headers)
    [error] = apply_offline(ms, [conversion(ConversionName="Brand new")], headers).json()["PartialErrors"]
    assert error["Code"] == 5615


@pytest.mark.parametrize(
    ("item", "field"),
    [
        pytest.param(goal("X", Type="Nope"), "Type", id="type"),
        pytest.param(goal("X", GoalCategory=None), "GoalCategory", id="category"),
        pytest.param(goal("X", ConversionWindowInMinutes=200000), "ConversionWindowInMinutes", id="window"),
        pytest.param(goal("X", Revenue={"CurrencyCode": "ZZZ"}), "Revenue.CurrencyCode", id="currency"),
        pytest.param(goal("X", Type="Event"), "TagId", id="event-needs-tag"),
    ],
)
def test_add_goal_validation(ms: EmulatorHandle, item: dict[str, Any], field: str) -> None:
    [error] = post(ms, "ConversionGoals", {"ConversionGoals": [item]}).json()["PartialErrors"]
    assert (error["Code"], error["FieldPath"]) == (201, field)


def test_query_by_tag_ids(ms: EmulatorHandle) -> None:
    headers = cm_headers(ms)
    post(ms, "ConversionGoals", {"ConversionGoals": [goal("Visit", Type="Event", TagId=ms.env["UET_TAG_ID"])]}, headers)
    body = post(ms, "ConversionGoals/QueryByTagIds", {"TagIds": [ms.env["UET_TAG_ID"]]}, headers).json()
    assert [g["Name"] for g in body["ConversionGoals"]] == ["Visit"]
    assert post(ms, "ConversionGoals/QueryByTagIds", {"TagIds": []}, headers).status_code == 400


def _report(ms: EmulatorHandle, headers: dict[str, str], *names: str) -> list[dict[str, Any]]:
    ids = {g["name"]: str(g["id"]) for g in ms.state()["goals"]}
    now = datetime.now(UTC)
    body = {
        "StartDateUtc": wire_time(now - timedelta(days=1)),
        "EndDateUtc": wire_time(now),
        "GoalIds": [ids[n] for n in names],
    }
    response = post(ms, "OfflineConversionReport/QueryByGoalIds", body, headers)
    assert response.status_code == 200
    assert response.json()["PartialErrors"] == []
    return list(response.json()["OfflineGoalConversionSummaries"])


def _alerts(summary: dict[str, Any]) -> dict[str, int]:
    return {a["UnattributedReason"]: a["Count"] for a in summary["OverallAlerts"]}


def test_report_by_goal_ids_shows_every_unattributed_reason() -> None:
    with run_emulator(strict_click_matching=True) as ms:
        headers = cm_headers(ms)
        now = datetime.now(UTC)
        ms.add_click("1" * 32, now - timedelta(hours=4))
        ms.add_click("2" * 32, now - timedelta(hours=4), account_id="999")
        ms.add_click("3" * 32, now - timedelta(minutes=30))
        ms.add_click("4" * 32, now - timedelta(days=40))
        ms.add_click("9" * 32, now - timedelta(hours=4))
        ms.add_goal("Paused", status="Paused")
        counted = conversion(MicrosoftClickId="1" * 32, ConversionTime=wire_time(now - timedelta(hours=2)))
        items = [
            counted,
            counted,  # DuplicateConversionKey
            conversion(MicrosoftClickId="5" * 32),  # NoMatchingClickFound (nobody registered it)
            conversion(MicrosoftClickId="2" * 32),  # AccountMismatch
            conversion(MicrosoftClickId="6" * 32, ConversionCurrencyCode="ZZZ"),  # MalformedData (5611)
            conversion(MicrosoftClickId="7" * 32, ConversionTime="2099-01-01T00:00:00Z"),  # ConversionTimeInFuture
            conversion(MicrosoftClickId="8" * 32, ConversionTime=wire_time(now - timedelta(days=91))),
            conversion(MicrosoftClickId="3" * 32),  # ClickTimestampAfterConversion
            conversion(MicrosoftClickId="4" * 32),  # OutsideGoalLookbackWindow
            conversion(MicrosoftClickId=..., HashedEmailAddress="a" * 64, ConversionName="Lead"),
            conversion(MicrosoftClickId="9" * 32, ConversionName="Paused"),  # GoalNotFoundOrInactive
        ]
        apply_offline(ms, items, headers)
        retract = {
            "MicrosoftClickId": "1" * 32,
            "ConversionName": "Purchase",
            "ConversionTime": counted["ConversionTime"],
            "AdjustmentType": "Retract",
            "AdjustmentTime": wire_time(now - timedelta(hours=1)),
        }
        adjustments = [
            retract,
            {**retract, "AdjustmentTime": wire_time(now - timedelta(minutes=50))},
            {**retract, "MicrosoftClickId": "0" * 32},
        ]
        post(ms, "OfflineConversionAdjustments/Apply", {"OfflineConversionAdjustments": adjustments}, headers)
        purchase, lead, paused = _report(ms, headers, "Purchase", "Lead", "Paused")
        assert _alerts(purchase) == {
            "DuplicateConversionKey": 1,
            "NoMatchingClickFound": 1,
            "AccountMismatch": 1,
            "MalformedData": 1,
            "ConversionTimeInFuture": 1,
            "ConversionTimeExceedsMaxLookback": 1,
            "ClickTimestampAfterConversion": 1,
            "OutsideGoalLookbackWindow": 1,
            "ConversionAlreadyRetracted": 1,
            "AdjustmentOriginalNotFound": 1,
        }
        # Counted: the original conversion and the first retract.
        assert (purchase["OverallSuccessCount"], purchase["OverallUnattributedCount"]) == ("2", "10")
        assert purchase["OverallSuccessRate"] == pytest.approx(2 / 12)
        [day] = purchase["DailySummaries"]
        assert (day["SuccessCount"], day["UnattributedCount"], day["GoalId"]) == (2, 10, purchase["GoalId"])
        assert _alerts(lead) == {"MissingMatchIdentifiers": 1}
        assert _alerts(paused) == {"GoalNotFoundOrInactive": 1}

        daily = post(
            ms,
            "OfflineConversionReports/Query",
            {"StartDateUtc": wire_time(now - timedelta(days=1)), "EndDateUtc": wire_time(now)},
            headers,
        )
        [row] = daily.json()["DailySummaries"]
        # Synchronous rejections are failures; everything else Microsoft took in is a success here.
        assert (row["SuccessCount"], row["FailureCount"]) == (8, 6)


def test_unregistered_clicks_count_as_matched_unless_strict(ms: EmulatorHandle) -> None:
    headers = cm_headers(ms)
    apply_offline(ms, [conversion(MicrosoftClickId="5" * 32)], headers)
    [purchase] = _report(ms, headers, "Purchase")
    assert (purchase["OverallSuccessCount"], _alerts(purchase)) == ("1", {})


def test_report_unknown_goal_id_is_a_partial_error(ms: EmulatorHandle) -> None:
    now = datetime.now(UTC)
    body = {
        "StartDateUtc": wire_time(now - timedelta(days=1)),
        "EndDateUtc": wire_time(now),
        "GoalIds": ["1001", "424242"],
    }
    report = post(ms, "OfflineConversionReport/QueryByGoalIds", body).json()
    assert report["OfflineGoalConversionSummaries"][1] is None
    assert report["PartialErrors"][0]["Index"] == 1


@pytest.mark.parametrize(
    ("body", "status"),
    [
        pytest.param(
            {"StartDateUtc": "2026-01-01T00:00:00Z", "EndDateUtc": "2026-01-09T00:00:00Z", "GoalIds": ["1001"]},
            400,
            id="more-than-7-days",
        ),
        pytest.param(
            {"StartDateUtc": "2026-01-02T00:00:00Z", "EndDateUtc": "2026-01-01T00:00:00Z", "GoalIds": ["1001"]},
            400,
            id="end-before-start",
        ),
        pytest.param(
            {
                "StartDateUtc": "2026-01-01T00:00:00Z",
                "EndDateUtc": "2026-01-02T00:00:00Z",
                "GoalIds": [str(i) for i in range(21)],
            },
            400,
            id="too-many-goals",
        ),
        pytest.param({"EndDateUtc": "2026-01-02T00:00:00Z", "GoalIds": ["1001"]}, 400, id="no-start"),
    ],
)
def test_report_by_goal_ids_limits(ms: EmulatorHandle, body: dict[str, Any], status: int) -> None:
    assert post(ms, "OfflineConversionReport/QueryByGoalIds", body).status_code == status


@pytest.mark.parametrize("field", ["UetTagId", "TagId"])
def test_uet_tag_auth_key(ms: EmulatorHandle, field: str) -> None:
    body = post(ms, "UetTagAuthKey/Query", {field: ms.env["UET_TAG_ID"]}).json()
    assert body == {"UetTagAuthKey": ms.env["UET_API_TOKEN"], "PartialErrors": []}


def test_uet_tag_auth_key_unknown_tag(ms: EmulatorHandle) -> None:
    body = post(ms, "UetTagAuthKey/Query", {"UetTagId": "1"}).json()
    assert body["UetTagAuthKey"] is None
    assert body["PartialErrors"][0]["FieldPath"] == "UetTagId"


def test_goal_endpoints_check_headers(ms: EmulatorHandle) -> None:
    headers = cm_headers(ms)
    del headers["CustomerAccountId"]
    assert post(ms, "ConversionGoals/QueryByIds", {}, headers).json()["Errors"][0]["Code"] == 1009


def test_uet_tag_auth_key_in_the_capi_guides_shape() -> None:
    with run_emulator(uet_auth_key_shape="guide") as ms:
        body = post(ms, "UetTagAuthKey/Query", {"TagId": int(ms.env["UET_TAG_ID"])}).json()
        assert body == {"TagAuthKey": {"AuthKey": ms.env["UET_API_TOKEN"]}, "PartialErrors": []}


def test_upload_channel_filter(ms: EmulatorHandle) -> None:
    headers = cm_headers(ms)
    apply_offline(ms, [conversion(MicrosoftClickId="5" * 32)], headers)
    now = datetime.now(UTC)
    body = {"StartDateUtc": wire_time(now - timedelta(days=1)), "EndDateUtc": wire_time(now), "GoalIds": ["1001"]}

    def success(channel: str | None) -> str:
        answer = post(ms, "OfflineConversionReport/QueryByGoalIds", {**body, "UploadChannelFilter": channel}, headers)
        return str(answer.json()["OfflineGoalConversionSummaries"][0]["OverallSuccessCount"])

    assert success(None) == "1"
    assert success("CampaignManagementAPI") == "1"
    assert success("WebUpload, BulkAPI") == "0"  # everything the emulator got came through the API
    bad = post(ms, "OfflineConversionReport/QueryByGoalIds", {**body, "UploadChannelFilter": "Fax"}, headers)
    assert bad.status_code == 400


def test_dashboard_lists_goals_and_their_age(ms: EmulatorHandle) -> None:
    post(ms, "ConversionGoals", {"ConversionGoals": [goal("<b>New</b>")]})
    page = requests.get(f"{ms.url}/", timeout=5).text
    assert "Conversion goals" in page
    assert "&lt;b&gt;New&lt;/b&gt;" in page
    assert "(uploads get 5615)" in page
    assert "24.0 h" in page  # the default goals were created a day ago
