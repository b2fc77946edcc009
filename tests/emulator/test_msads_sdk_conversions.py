"""More of Microsoft's REST SDK (``msads``) against the emulator: every conversion operation and its answers.

``test_msads_sdk.py`` covers OAuth, one offline upload, a retract error and the fault bodies; this module
drives the rest of what a shop does through the SDK (enhanced conversions without a click, restate and
retract of an accepted conversion, online adjustments, the 1,000-item limit, the time rules) and the
faults a caller must handle (throttling, a bad developer token), all as the SDK
ships: its own serialisation, headers and response models.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from msclkid_middleware.conversions.identity import hash_email, hash_phone
from msclkid_middleware.testing import EmulatorHandle
from tests.needs import require_module

authorization = require_module("bingads.authorization", why="Microsoft's msads SDK")
service_client = require_module("bingads.service_client", why="Microsoft's msads SDK")
campaign_models = require_module("openapi_client.models.campaign", why="Microsoft's msads SDK")
exceptions = require_module("openapi_client.exceptions", why="Microsoft's msads SDK")

NOW = datetime.now(UTC).replace(microsecond=0)


def _client(ms: EmulatorHandle, monkeypatch: pytest.MonkeyPatch, **data: Any) -> Any:
    key = (authorization.PRODUCTION, authorization.MSADS_MANAGE)
    monkeypatch.setitem(authorization._UriOAuthService.AUTH_TOKEN_URI, key, ms.token_url)
    auth = authorization.OAuthWebAuthCodeGrant(
        client_id=ms.env["MSADS_CLIENT_ID"],
        client_secret=ms.env["MSADS_CLIENT_SECRET"],
        redirection_uri="http://localhost:8400/callback",
    )
    auth.request_oauth_tokens_by_refresh_token(ms.env["MSADS_REFRESH_TOKEN"])
    fields = {
        "account_id": ms.env["MSADS_ACCOUNT_ID"],
        "customer_id": ms.env["MSADS_CUSTOMER_ID"],
        "developer_token": ms.env["MSADS_DEVELOPER_TOKEN"],
        "authentication": auth,
    }
    fields.update(data)
    return service_client.ServiceClient(
        "CampaignManagementService", 13, authorization.AuthorizationData(**fields), location=ms.url
    )


@pytest.fixture
def sdk(ms: EmulatorHandle, monkeypatch: pytest.MonkeyPatch) -> Any:
    return _client(ms, monkeypatch)


def _apply(client: Any, *items: Any) -> Any:
    return client.apply_offline_conversions(
        campaign_models.ApplyOfflineConversionsRequest(OfflineConversions=list(items))
    )


def _errors(response: Any) -> list[tuple[int, int, str]]:
    return [(e.index, e.code, e.error_code) for e in (response.partial_errors or [])]


def test_sdk_enhanced_conversion_without_a_click(ms: EmulatorHandle, sdk: Any) -> None:
    hashed = campaign_models.OfflineConversion(
        ConversionName="Purchase",
        ConversionTime=NOW - timedelta(hours=1),
        ConversionValue=20.0,
        ConversionCurrencyCode="EUR",
        HashedEmailAddress=hash_email("john@contoso.com"),
        HashedPhoneNumber=hash_phone("+14255551234"),
    )
    # "Lead" has enhanced conversions off: without a click ID, Microsoft rejects the file/row.
    lead = campaign_models.OfflineConversion(
        ConversionName="Lead", ConversionTime=NOW - timedelta(hours=1), HashedEmailAddress=hash_email("a@b.example")
    )
    response = _apply(sdk, hashed, lead)
    assert _errors(response) == [(1, 5603, "OfflineConversionMicrosoftClickIdNullOrEmpty")]
    accepted, rejected = ms.received("offline")
    assert accepted.outcome == "accepted"
    assert accepted.payload["HashedEmailAddress"] == hash_email("john@contoso.com")
    assert "MicrosoftClickId" not in accepted.payload
    assert rejected.outcome == "rejected"


def test_sdk_restate_then_retract_an_accepted_conversion(ms: EmulatorHandle, sdk: Any) -> None:
    click = "f894f652ea334e739002f7167ab8f8e3"
    when = NOW - timedelta(hours=3)
    ms.add_click(click, when - timedelta(hours=1))
    assert (
        _errors(
            _apply(
                sdk,
                campaign_models.OfflineConversion(
                    MicrosoftClickId=click, ConversionName="Purchase", ConversionTime=when, ConversionValue=100.0
                ),
            )
        )
        == []
    )

    def adjust(kind: str, **extra: Any) -> Any:
        item = campaign_models.OfflineConversionAdjustment(
            MicrosoftClickId=click,
            ConversionName="Purchase",
            ConversionTime=when,
            AdjustmentType=kind,
            AdjustmentTime=NOW - timedelta(minutes=5),
            **extra,
        )
        return sdk.apply_offline_conversion_adjustments(
            campaign_models.ApplyOfflineConversionAdjustmentsRequest(OfflineConversionAdjustments=[item])
        )

    assert _errors(adjust("Restate", AdjustmentValue=80.0, AdjustmentCurrencyCode="USD")) == []
    assert _errors(adjust("Restate")) == [(0, 5625, "OfflineConversionAdjustmentValueRequired")]
    assert _errors(adjust("Retract")) == []
    outcomes = [(i.outcome, i.payload["AdjustmentType"]) for i in ms.received("offline_adjustments")]
    assert outcomes == [("accepted", "Restate"), ("rejected", "Restate"), ("accepted", "Retract")]
    # Both adjustments found their original (no "AdjustmentOriginalNotFound" diagnostic).
    assert all("AdjustmentOriginalNotFound" not in i.notes for i in ms.received("offline_adjustments"))


def test_sdk_online_conversion_adjustments(ms: EmulatorHandle, sdk: Any) -> None:
    def online(**fields: Any) -> Any:
        item = campaign_models.OnlineConversionAdjustment(
            ConversionName="Purchase", AdjustmentTime=NOW - timedelta(minutes=1), **fields
        )
        return sdk.apply_online_conversion_adjustments(
            campaign_models.ApplyOnlineConversionAdjustmentsRequest(OnlineConversionAdjustments=[item])
        )

    ok = online(TransactionId="T-1", AdjustmentType="Restate", AdjustmentValue=5.0, AdjustmentCurrencyCode="USD")
    assert _errors(ok) == []
    assert _errors(online(TransactionId="T-2", AdjustmentType="Refund")) == [
        (0, 5618, "OfflineConversionInvalidAdjustmentType")
    ]
    [first, second] = ms.received("online_adjustments")
    assert first.payload["TransactionId"] == "T-1"
    assert (first.outcome, second.outcome) == ("accepted", "rejected")


@pytest.mark.parametrize(
    ("when", "code"),
    [
        pytest.param(NOW + timedelta(hours=2), 5614, id="future"),
        pytest.param(NOW - timedelta(days=91), 5609, id="older-than-90-days"),
    ],
)
def test_sdk_time_rules(sdk: Any, when: datetime, code: int) -> None:
    item = campaign_models.OfflineConversion(MicrosoftClickId="a" * 32, ConversionName="Purchase", ConversionTime=when)
    [(index, got, _)] = _errors(_apply(sdk, item))
    assert (index, got) == (0, code)


def test_sdk_naive_datetime_is_read_as_utc(ms: EmulatorHandle, sdk: Any) -> None:
    # The SDK serialises a naive datetime without a zone; Microsoft's docs require UTC values.
    naive = (NOW - timedelta(hours=1)).replace(tzinfo=None)
    item = campaign_models.OfflineConversion(MicrosoftClickId="b" * 32, ConversionName="Purchase", ConversionTime=naive)
    assert _errors(_apply(sdk, item)) == []
    [received] = ms.received("offline")
    assert received.payload["ConversionTime"] == naive.isoformat()


def test_sdk_exactly_1000_items_are_accepted(ms: EmulatorHandle, sdk: Any) -> None:
    items = [
        campaign_models.OfflineConversion(
            MicrosoftClickId=f"{n:032x}", ConversionName="Purchase", ConversionTime=NOW - timedelta(hours=1, seconds=n)
        )
        for n in range(1000)
    ]
    assert _errors(_apply(sdk, *items)) == []
    assert len(ms.received("offline")) == 1000


def test_sdk_sees_throttling_with_retry_after(ms: EmulatorHandle, sdk: Any) -> None:
    ms.inject_fault("offline", "throttle", retry_after=42, times=1)
    item = campaign_models.OfflineConversion(
        MicrosoftClickId="c" * 32, ConversionName="Purchase", ConversionTime=NOW - timedelta(hours=1)
    )
    with pytest.raises(exceptions.ApiException) as caught:
        _apply(sdk, item)
    assert caught.value.status == 429
    headers = dict(caught.value.headers)
    assert headers["Retry-After"] == "42"
    fault = campaign_models.ApplicationFault.from_dict(json.loads(caught.value.body))
    assert type(fault).__name__ == "AdApiFaultDetail"
    assert [(e.code, e.error_code) for e in fault.errors] == [(117, "CallRateExceeded")]
    assert fault.tracking_id == headers["TrackingId"]
    # The next call goes through.
    assert _errors(_apply(sdk, item)) == []


def test_sdk_wrong_developer_token(ms: EmulatorHandle, monkeypatch: pytest.MonkeyPatch) -> None:
    client = _client(ms, monkeypatch, developer_token="NOT-THE-TOKEN")
    item = campaign_models.OfflineConversion(
        MicrosoftClickId="d" * 32, ConversionName="Purchase", ConversionTime=NOW - timedelta(hours=1)
    )
    with pytest.raises(exceptions.UnauthorizedException) as caught:
        _apply(client, item)
    fault = campaign_models.ApplicationFault.from_dict(json.loads(caught.value.body))
    assert [(e.code, e.error_code) for e in fault.errors] == [(105, "InvalidCredentials")]
    assert ms.received("offline") == []


def test_sdk_first_consent_through_the_authorize_page(ms: EmulatorHandle, monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK's authorization-code flow: its authorize URL, the redirect with the code, the code redemption."""
    import requests

    key = (authorization.PRODUCTION, authorization.MSADS_MANAGE)
    # The SDK's table holds a URL template; only its host is swapped for the emulator's.
    template = authorization._UriOAuthService.AUTHORIZE_URI[key]
    authorize = template.replace("https://login.microsoftonline.com", ms.url.rstrip("/"))
    monkeypatch.setitem(authorization._UriOAuthService.AUTHORIZE_URI, key, authorize)
    monkeypatch.setitem(authorization._UriOAuthService.AUTH_TOKEN_URI, key, ms.token_url)
    refreshed: list[Any] = []
    auth = authorization.OAuthWebAuthCodeGrant(
        client_id=ms.env["MSADS_CLIENT_ID"],
        client_secret=ms.env["MSADS_CLIENT_SECRET"],
        redirection_uri="http://localhost:8400/callback",
        token_refreshed_callback=refreshed.append,
    )
    auth.state = "state-42"
    answer = requests.get(auth.get_authorization_endpoint(), allow_redirects=False, timeout=10)
    assert answer.status_code == 302
    location = answer.headers["Location"]
    assert location.startswith("http://localhost:8400/callback?code=")
    assert "state=state-42" in location
    tokens = auth.request_oauth_tokens_by_response_uri(location)
    assert tokens.access_token
    assert tokens.refresh_token
    assert refreshed == [tokens]
    client = service_client.ServiceClient(
        "CampaignManagementService",
        13,
        authorization.AuthorizationData(
            account_id=ms.env["MSADS_ACCOUNT_ID"],
            customer_id=ms.env["MSADS_CUSTOMER_ID"],
            developer_token=ms.env["MSADS_DEVELOPER_TOKEN"],
            authentication=auth,
        ),
        location=ms.url,
    )
    item = campaign_models.OfflineConversion(
        MicrosoftClickId="f" * 32, ConversionName="Purchase", ConversionTime=NOW - timedelta(hours=1)
    )
    assert _errors(_apply(client, item)) == []
    # A code is redeemed once only, as Microsoft's identity platform does.
    with pytest.raises(authorization.OAuthTokenRequestException) as caught:
        auth.request_oauth_tokens_by_response_uri(location)
    assert caught.value.error_code == "invalid_grant"
