"""Microsoft's own REST SDK (``msads``, module ``bingads``) against the emulator: the wire format is Microsoft's.

The SDK's token URL is a class-level table; the test points that one entry at the emulator (the network edge),
everything else is the SDK as shipped: its OAuth refresh, its headers, its JSON (de)serialisation.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from msclkid_middleware.testing import EmulatorHandle
from tests.needs import require_module

authorization = require_module("bingads.authorization", why="Microsoft's msads SDK")
service_client = require_module("bingads.service_client", why="Microsoft's msads SDK")
campaign_models = require_module("openapi_client.models.campaign", why="Microsoft's msads SDK")
exceptions = require_module("openapi_client.exceptions", why="Microsoft's msads SDK")


@pytest.fixture
def sdk(ms: EmulatorHandle, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, list[Any]]:
    key = (authorization.PRODUCTION, authorization.MSADS_MANAGE)
    monkeypatch.setitem(authorization._UriOAuthService.AUTH_TOKEN_URI, key, ms.token_url)
    refreshed: list[Any] = []
    auth = authorization.OAuthWebAuthCodeGrant(
        client_id=ms.env["MSADS_CLIENT_ID"],
        client_secret=ms.env["MSADS_CLIENT_SECRET"],
        redirection_uri="http://localhost:8400/callback",
        token_refreshed_callback=refreshed.append,
    )
    auth.request_oauth_tokens_by_refresh_token(ms.env["MSADS_REFRESH_TOKEN"])
    data = authorization.AuthorizationData(
        account_id=ms.env["MSADS_ACCOUNT_ID"],
        customer_id=ms.env["MSADS_CUSTOMER_ID"],
        developer_token=ms.env["MSADS_DEVELOPER_TOKEN"],
        authentication=auth,
    )
    client = service_client.ServiceClient("CampaignManagementService", 13, data, location=ms.url)
    return client, refreshed


def _conversion(click: str, name: str = "Purchase", **extra: Any) -> Any:
    return campaign_models.OfflineConversion(
        MicrosoftClickId=click,
        ConversionName=name,
        ConversionTime=datetime.now(UTC) - timedelta(hours=1),
        ConversionValue=42.5,
        ConversionCurrencyCode="USD",
        **extra,
    )


def test_sdk_oauth_refresh_rotates_the_refresh_token(ms: EmulatorHandle, sdk: tuple[Any, list[Any]]) -> None:
    _, refreshed = sdk
    [tokens] = refreshed
    assert tokens.refresh_token.startswith("rt-2-")
    assert tokens.access_token_expires_in_seconds == 3600
    assert ms.token_log()[0].serial == 2


def test_sdk_apply_offline_conversions_clean_and_partial_errors(ms: EmulatorHandle, sdk: tuple[Any, list[Any]]) -> None:
    client, _ = sdk
    request = campaign_models.ApplyOfflineConversionsRequest(
        OfflineConversions=[
            _conversion("f894f652ea334e739002f7167ab8f8e3"),
            _conversion("bad id"),
            _conversion("a" * 32, name="Unknown goal"),
        ]
    )
    # The *_with_http_info variant also returns the HTTP headers (the plain call's get_response_header() is empty
    # in msads 13.0.30.1 because the REST ApiClient keeps no last_response).
    raw = client.apply_offline_conversions_with_http_info(request)
    assert raw.status_code == 200
    errors = raw.data.partial_errors
    assert [(e.index, e.code, e.error_code, e.field_path) for e in errors] == [
        (1, 5604, "OfflineConversionMicrosoftClickIdInvalid", "MicrosoftClickId"),
        (2, 5606, "OfflineConversionNameInvalid", "ConversionName"),
    ]
    tracking_id = raw.headers["TrackingId"]
    received = ms.received("offline")
    assert [i.outcome for i in received] == ["accepted", "rejected", "rejected"]
    assert {i.tracking_id for i in received} == {tracking_id}
    # What the SDK put on the wire is what the emulator saw (aware UTC time, the value as a double).
    assert received[0].payload["ConversionValue"] == 42.5
    assert received[0].payload["ConversionTime"].endswith("+00:00")

    clean = client.apply_offline_conversions(
        campaign_models.ApplyOfflineConversionsRequest(OfflineConversions=[_conversion("b" * 32)])
    )
    assert clean.partial_errors == []


def test_sdk_adjustments_round_trip(ms: EmulatorHandle, sdk: tuple[Any, list[Any]]) -> None:
    client, _ = sdk
    adjustment = campaign_models.OfflineConversionAdjustment(
        MicrosoftClickId="c" * 32,
        ConversionName="Purchase",
        ConversionTime=datetime.now(UTC) - timedelta(hours=3),
        AdjustmentType="Retract",
        AdjustmentValue=1.0,
        AdjustmentTime=datetime.now(UTC) - timedelta(hours=1),
    )
    response = client.apply_offline_conversion_adjustments(
        campaign_models.ApplyOfflineConversionAdjustmentsRequest(OfflineConversionAdjustments=[adjustment])
    )
    [error] = response.partial_errors
    assert (error.code, error.error_code) == (5624, "OfflineConversionAdjustmentValueNotExpected")


def test_sdk_parses_the_fault_bodies(ms: EmulatorHandle, sdk: tuple[Any, list[Any]]) -> None:
    client, _ = sdk
    ms.expire_access_tokens()
    request = campaign_models.ApplyOfflineConversionsRequest(OfflineConversions=[_conversion("d" * 32)])
    with pytest.raises(exceptions.UnauthorizedException) as caught:
        client.apply_offline_conversions(request)
    # msads resolves "ApplicationFault" to a model of another service when it builds exc.data, so parse the body
    # with the Campaign Management model, as a caller has to.
    fault = campaign_models.ApplicationFault.from_dict(json.loads(caught.value.body))
    assert type(fault).__name__ == "AdApiFaultDetail"
    [error] = fault.errors
    assert (error.code, error.error_code) == (109, "AuthenticationTokenExpired")
    assert fault.tracking_id == dict(caught.value.headers)["TrackingId"]


def test_sdk_parses_operation_errors(ms: EmulatorHandle, sdk: tuple[Any, list[Any]]) -> None:
    client, _ = sdk
    request = campaign_models.ApplyOfflineConversionsRequest(
        OfflineConversions=[_conversion(f"{i:032x}") for i in range(1001)]
    )
    with pytest.raises(exceptions.BadRequestException) as caught:
        client.apply_offline_conversions(request)
    fault = campaign_models.ApplicationFault.from_dict(json.loads(caught.value.body))
    assert type(fault).__name__ == "ApiFaultDetail"
    [error] = fault.operation_errors
    assert (error.code, error.error_code) == (5601, "OfflineConversionsLimitExceeded")


def test_sdk_goal_management_and_diagnostics(ms: EmulatorHandle, sdk: tuple[Any, list[Any]]) -> None:
    client, _ = sdk
    new_goal = campaign_models.OfflineConversionGoal(
        Name="Refund",
        GoalCategory="Purchase",
        ConversionWindowInMinutes=1440,
        Revenue=campaign_models.ConversionGoalRevenue(Type="VariableValue", CurrencyCode="EUR"),
        CountType="All",
        Status="Active",
        Scope="Account",
    )
    added = client.add_conversion_goals(campaign_models.AddConversionGoalsRequest(ConversionGoals=[new_goal]))
    [goal_id] = added.conversion_goal_ids
    assert added.partial_errors == []
    listed = client.get_conversion_goals_by_ids(
        campaign_models.GetConversionGoalsByIdsRequest(
            ConversionGoalTypes=campaign_models.ConversionGoalType.OFFLINECONVERSION
        )
    )
    assert [(g.name, type(g).__name__) for g in listed.conversion_goals] == [
        ("Purchase", "OfflineConversionGoal"),
        ("Lead", "OfflineConversionGoal"),
        ("Refund", "OfflineConversionGoal"),
    ]
    assert listed.conversion_goals[2].id == goal_id
    assert listed.conversion_goals[2].revenue.currency_code == "EUR"
    key = client.get_uet_tag_auth_key(campaign_models.GetUetTagAuthKeyRequest(UetTagId=ms.env["UET_TAG_ID"]))
    assert key.uet_tag_auth_key == ms.env["UET_API_TOKEN"]
    now = datetime.now(UTC)
    report = client.get_offline_conversion_report_by_goal_ids(
        campaign_models.GetOfflineConversionReportByGoalIdsRequest(
            StartDateUtc=now - timedelta(days=1), EndDateUtc=now, GoalIds=[listed.conversion_goals[0].id]
        )
    )
    [summary] = report.offline_goal_conversion_summaries
    assert (summary.conversion_name, summary.overall_success_count) == ("Purchase", "0")
