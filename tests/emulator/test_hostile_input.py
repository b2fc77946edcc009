"""Hostile and random JSON never breaks the emulator: every answer is a well-formed Microsoft-shaped response."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.test import Client

from msclkid_middleware.emulator import Emulator

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=20), children, max_size=5),
    max_leaves=25,
)
OFFLINE_KEYS = [
    "MicrosoftClickId",
    "ConversionName",
    "ConversionTime",
    "ConversionValue",
    "ConversionCurrencyCode",
    "HashedEmailAddress",
    "HashedPhoneNumber",
    "AdjustmentType",
    "AdjustmentTime",
    "AdjustmentValue",
    "AdjustmentCurrencyCode",
    "TransactionId",
]
ITEM = st.dictionaries(st.sampled_from(OFFLINE_KEYS), JSON, max_size=8) | JSON
UET_EVENT = (
    st.dictionaries(
        st.sampled_from(
            [
                "eventType",
                "eventTime",
                "eventId",
                "eventName",
                "eventSourceUrl",
                "referrerUrl",
                "adStorageConsent",
                "userData",
                "customData",
            ]
        ),
        JSON
        | st.dictionaries(st.sampled_from(["em", "ph", "msclkid", "currency", "pageType", "clientIpAddress"]), JSON),
        max_size=9,
    )
    | JSON
)


@pytest.fixture(scope="module")
def emulator() -> Emulator:
    return Emulator()


def _campaign_headers(emulator: Emulator) -> dict[str, str]:
    with emulator.world.lock:
        token, _ = emulator.world.issue_access_token(emulator.config.client_id, "scope")
    return {
        "Authorization": f"Bearer {token}",
        "DeveloperToken": emulator.config.developer_token,
        "CustomerId": emulator.config.customer_id,
        "CustomerAccountId": emulator.config.account_id,
    }


def _check(response: Any, allowed: set[int]) -> Any:
    assert response.status_code in allowed, response.get_data(as_text=True)
    assert response.headers["TrackingId"]
    return json.loads(response.get_data())


@pytest.mark.parametrize(
    ("operation", "wrapper"),
    [
        ("OfflineConversions", "OfflineConversions"),
        ("OfflineConversionAdjustments", "OfflineConversionAdjustments"),
        ("OnlineConversionAdjustments", "OnlineConversionAdjustments"),
    ],
)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(items=st.lists(ITEM, max_size=6))
def test_apply_never_breaks(emulator: Emulator, operation: str, wrapper: str, items: list[Any]) -> None:
    client = Client(emulator)
    response = client.post(
        f"/CampaignManagement/v13/{operation}/Apply", json={wrapper: items}, headers=_campaign_headers(emulator)
    )
    body = _check(response, {200, 400})
    if response.status_code == 200:
        assert all(0 <= e["Index"] < len(items) and e["Type"] == "BatchError" for e in body["PartialErrors"])


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=st.dictionaries(
        st.sampled_from(["data", "continueOnValidationError", "dataProvider"]), st.lists(UET_EVENT, max_size=6) | JSON
    )
)
def test_uet_never_breaks(emulator: Emulator, body: dict[str, Any]) -> None:
    client = Client(emulator)
    response = client.post(
        f"/v1/{emulator.config.uet_tag_id}/events",
        json=body,
        headers={"Authorization": f"Bearer {emulator.config.uet_token}"},
    )
    result = _check(response, {200, 400})
    details = result.get("error", {}).get("details", [])
    assert len(details) <= 10


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=200))
def test_raw_bytes_never_break_any_endpoint(emulator: Emulator, body: bytes) -> None:
    client = Client(emulator)
    headers = _campaign_headers(emulator)
    for path in (
        "/CampaignManagement/v13/OfflineConversions/Apply",
        "/CampaignManagement/v13/ConversionGoals",
        "/CampaignManagement/v13/OfflineConversionReport/QueryByGoalIds",
    ):
        _check(client.post(path, data=body, headers=headers), {200, 400})
    _check(
        client.post(
            f"/v1/{emulator.config.uet_tag_id}/events",
            data=body,
            headers={"Authorization": f"Bearer {emulator.config.uet_token}"},
        ),
        {400},
    )
    _check(
        client.post(
            "/common/oauth2/v2.0/token", data=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
        ),
        {400, 401},
    )


GOAL_BODY = st.dictionaries(
    st.sampled_from(
        [
            "ConversionGoals",
            "ConversionGoalIds",
            "ConversionGoalTypes",
            "TagIds",
            "StartDateUtc",
            "EndDateUtc",
            "GoalIds",
            "UetTagId",
            "TagId",
        ]
    ),
    st.lists(
        st.dictionaries(
            st.sampled_from(
                ["Name", "Type", "GoalCategory", "Revenue", "ConversionWindowInMinutes", "TagId", "Status", "CountType"]
            ),
            JSON,
        ),
        max_size=3,
    )
    | JSON,
    max_size=5,
)


@pytest.mark.parametrize(
    "operation",
    [
        "ConversionGoals",
        "ConversionGoals/QueryByIds",
        "ConversionGoals/QueryByTagIds",
        "OfflineConversionReport/QueryByGoalIds",
        "OfflineConversionReports/Query",
        "UetTagAuthKey/Query",
    ],
)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=GOAL_BODY)
def test_goal_and_report_endpoints_never_break(emulator: Emulator, operation: str, body: dict[str, Any]) -> None:
    client = Client(emulator)
    _check(
        client.post(f"/CampaignManagement/v13/{operation}", json=body, headers=_campaign_headers(emulator)), {200, 400}
    )
