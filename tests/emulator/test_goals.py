"""Goals, diagnostics reports and the UET tag auth key (Campaign Management v13 REST)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from emulator_helpers import apply_offline, cm_headers, conversion, wire_time

from msclkid_middleware.testing import EmulatorHandle


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
    assert [(e["Index"], e["Code"]) for e in body["PartialErrors"]] == [(1, 4803), (2, 201)]
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


def test_report_by_goal_ids_counts_what_was_received(ms: EmulatorHandle) -> None:
    headers = cm_headers(ms)
    ms.add_click("1" * 32, datetime.now(UTC) - timedelta(hours=4))
    first = conversion(MicrosoftClickId="1" * 32)
    items = [
        first,
        first,  # duplicate
        conversion(MicrosoftClickId="2" * 32),  # click never registered
        conversion(MicrosoftClickId="3" * 32, ConversionCurrencyCode="ZZZ"),  # rejected
    ]
    apply_offline(ms, items, headers)
    goal_id = next(g["id"] for g in ms.state()["goals"] if g["name"] == "Purchase")
    now = datetime.now(UTC)
    body = {
        "StartDateUtc": wire_time(now - timedelta(days=1)),
        "EndDateUtc": wire_time(now),
        "GoalIds": [str(goal_id), "424242"],
    }
    report = post(ms, "OfflineConversionReport/QueryByGoalIds", body, headers).json()
    summary, missing = report["OfflineGoalConversionSummaries"]
    assert missing is None
    assert report["PartialErrors"][0]["Index"] == 1
    assert (summary["ConversionName"], summary["OverallSuccessCount"], summary["OverallUnattributedCount"]) == (
        "Purchase",
        "1",
        "3",
    )
    alerts = {a["UnattributedReason"]: a["Count"] for a in summary["OverallAlerts"]}
    assert alerts == {"DuplicateConversionKey": 1, "NoMatchingClickFound": 1, "MalformedData": 1}
    [day] = summary["DailySummaries"]
    assert (day["SuccessCount"], day["UnattributedCount"]) == (1, 3)

    daily = post(
        ms,
        "OfflineConversionReports/Query",
        {"StartDateUtc": body["StartDateUtc"], "EndDateUtc": body["EndDateUtc"]},
        headers,
    ).json()
    [row] = daily["DailySummaries"]
    assert (row["SuccessCount"], row["FailureCount"]) == (3, 1)


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
