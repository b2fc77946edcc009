"""Hostile and random JSON never breaks the emulator: every answer is a well-formed Microsoft-shaped response."""

from __future__ import annotations

import json
from typing import Any

import ada_url
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.test import Client

from msclkid_middleware.emulator import Emulator, EmulatorConfig

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


# -- issue 19 item 8: redirects only to registered URIs; the control API only on its own address -----------------

CLIENT_ID = EmulatorConfig().client_id
SCOPE = "https://ads.microsoft.com/msads.manage offline_access"
_LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "[::1]"}


def _authorize(client: Client, redirect_uri: str) -> Any:
    return client.get(
        "/common/oauth2/v2.0/authorize",
        query_string={"client_id": CLIENT_ID, "scope": SCOPE, "redirect_uri": redirect_uri, "state": "s"},
    )


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "https://evil.example/cb",
        "http://evil.example/",
        "http://localhost@evil.example/",
        "http://localhost:80@evil.example/",
        "http://localhost.evil.example/",
        "http://127.0.0.1.nip.io/",
        "http://localhost\\@evil.example/",
        "http://localhost%2F@evil.example/",
        "https://localhost/",  # only the registered http loopback form
        "https://login.microsoftonline.com/common/oauth2/nativeclient/../../../evil",
        "https://login.microsoftonline.com.evil.example/common/oauth2/nativeclient",
        "http://[::ffff:7f00:1]/",
    ],
)
def test_authorize_refuses_unregistered_redirects(redirect_uri: str) -> None:
    answer = _authorize(Client(Emulator()), redirect_uri)
    assert answer.status_code == 400
    assert "Location" not in answer.headers


@pytest.mark.parametrize(
    "redirect_uri",
    ["http://localhost:8400/callback", "http://127.0.0.1:51234/", "http://[::1]:9/x", "http://LOCALHOST/cb"],
)
def test_authorize_accepts_loopback_on_any_port(redirect_uri: str) -> None:
    answer = _authorize(Client(Emulator()), redirect_uri)
    assert answer.status_code == 302
    assert answer.headers["Location"].lower().startswith(redirect_uri.lower())


def test_a_registration_replaces_the_defaults() -> None:
    client = Client(Emulator(EmulatorConfig(redirect_uris=("https://shop.example/msclkid-consent",))))
    assert _authorize(client, "https://shop.example/msclkid-consent").status_code == 302
    assert _authorize(client, "https://shop.example/msclkid-consent/x").status_code == 400
    assert _authorize(client, "http://localhost:8400/").status_code == 400


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.text(max_size=60),
        st.builds(
            lambda scheme, userinfo, host, rest: f"{scheme}://{userinfo}{host}{rest}",
            st.sampled_from(["http", "https", "HTTP", "javascript", ""]),
            st.sampled_from(["", "localhost@", "a:b@", "127.0.0.1@"]),
            st.sampled_from(["localhost", "127.0.0.1", "[::1]", "evil.example", "localhost.evil", "127.0.0.1:1"]),
            st.text(alphabet="/\\@:?#%.a", max_size=12),
        ),
    )
)
def test_property_every_redirect_lands_on_a_registered_host(redirect_uri: str) -> None:
    answer = _authorize(Client(Emulator()), redirect_uri)
    if answer.status_code != 302:
        return
    # Where a browser goes (the WHATWG URL parser, as browsers parse it).
    target = ada_url.URL(answer.headers["Location"])
    assert target.protocol == "http:"
    assert target.hostname in _LOOPBACK_HOSTS


@pytest.mark.parametrize("path", ["/_emulator/state", "/_emulator/received", "/"])
@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("localhost:8765", True),
        ("127.0.0.1:8765", True),
        ("[::1]:8765", True),
        ("192.168.1.20", True),  # an IP literal: no name, so no rebinding
        ("evil.example:8765", False),  # a rebinding page's name resolving to 127.0.0.1
        ("localhost.evil.example", False),
        ("127.0.0.1.nip.io:8765", False),
        ("emulator", False),
    ],
)
def test_the_control_api_and_dashboard_answer_only_their_own_address(path: str, host: str, allowed: bool) -> None:
    answer = Client(Emulator()).get(path, headers={"Host": host})
    assert (answer.status_code != 403) is allowed
    if not allowed:
        assert answer.json == {"error": "forbidden", "message": "Host is not this emulator's address"}


def test_a_reset_from_a_rebinding_page_changes_nothing() -> None:
    emulator = Emulator()
    emulator.add_goal("Kept")
    answer = Client(emulator).post("/_emulator/reset", headers={"Host": "evil.example:8765"})
    assert answer.status_code == 403
    assert any(goal["name"] == "Kept" for goal in emulator.state()["goals"])


def test_configured_control_hosts_are_accepted() -> None:
    client = Client(Emulator(EmulatorConfig(control_hosts=("emulator",))))
    assert client.get("/_emulator/state", headers={"Host": "emulator:8765"}).status_code == 200


def test_microsoft_endpoints_do_not_check_the_host() -> None:
    # SDKs reach the emulator by any name (a container's service name): only the control surface is guarded.
    answer = Client(Emulator()).post("/common/oauth2/v2.0/token", headers={"Host": "login.example"}, data={})
    assert answer.status_code == 400
