"""Token endpoint and authorize page of the emulated Microsoft identity platform."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from emulator_helpers import SCOPE, refresh

from msclkid_middleware.testing import EmulatorHandle, run_emulator

_ERROR_KEYS = {"error", "error_description", "error_codes", "timestamp", "trace_id", "correlation_id"}


def _assert_oauth_error(response: requests.Response, status: int, error: str, code: int) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) >= _ERROR_KEYS
    assert body["error"] == error
    assert body["error_codes"] == [code]
    assert body["error_description"].startswith(f"AADSTS{code}: ")
    assert body["trace_id"] in body["error_description"]
    assert body["correlation_id"] in body["error_description"]
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}Z", body["timestamp"])


def test_refresh_returns_tokens_in_microsoft_shape(ms: EmulatorHandle) -> None:
    response = refresh(ms)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    assert "no-store" in response.headers["Cache-Control"]
    assert response.headers["TrackingId"]
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["scope"] == SCOPE
    assert body["expires_in"] == 3600
    assert body["access_token"].startswith("at-")
    assert body["refresh_token"] != ms.env["MSADS_REFRESH_TOKEN"]


def test_each_refresh_rotates_with_increasing_serial_and_old_tokens_stay_valid(ms: EmulatorHandle) -> None:
    first = refresh(ms).json()["refresh_token"]
    second = refresh(ms, first).json()["refresh_token"]
    serials = [int(t.split("-")[1]) for t in (ms.env["MSADS_REFRESH_TOKEN"], first, second)]
    assert serials == sorted(serials)
    assert len(set(serials)) == 3
    # Microsoft does not revoke a refresh token when it is used.
    assert refresh(ms, first).status_code == 200
    log = ms.token_log()
    assert [r.outcome for r in log] == ["issued", "issued", "issued"]
    assert log[1].parent_serial == serials[1]
    assert log[1].serial == serials[2]


def test_strict_rotation_invalidates_used_tokens() -> None:
    with run_emulator(invalidate_used_refresh_tokens=True) as ms:
        assert refresh(ms).status_code == 200
        _assert_oauth_error(refresh(ms), 400, "invalid_grant", 50173)


def test_revoked_refresh_token_gives_invalid_grant(ms: EmulatorHandle) -> None:
    assert ms.revoke_refresh_tokens(ms.env["MSADS_REFRESH_TOKEN"]) == 1
    _assert_oauth_error(refresh(ms), 400, "invalid_grant", 50173)
    assert ms.token_log()[-1].outcome == "invalid_grant"


def test_control_api_revokes_every_token(ms: EmulatorHandle) -> None:
    new = refresh(ms).json()["refresh_token"]
    response = requests.post(f"{ms.url}/_emulator/tokens/revoke", json={}, timeout=5)
    assert response.json() == {"revoked": 2}
    _assert_oauth_error(refresh(ms, new), 400, "invalid_grant", 50173)


def test_access_token_lifetime_is_configurable() -> None:
    with run_emulator(access_token_lifetime=7) as ms:
        assert refresh(ms).json()["expires_in"] == 7


@pytest.mark.parametrize(
    ("form_changes", "status", "error", "code"),
    [
        pytest.param({"refresh_token": "rt-99-unknown"}, 400, "invalid_grant", 9002313, id="unknown-refresh-token"),
        pytest.param({"refresh_token": ""}, 400, "invalid_request", 900144, id="missing-refresh-token"),
        pytest.param({"grant_type": "password"}, 400, "unsupported_grant_type", 70003, id="unsupported-grant"),
        pytest.param({"grant_type": ""}, 400, "invalid_request", 900144, id="missing-grant"),
        pytest.param({"client_id": ""}, 400, "invalid_request", 900144, id="missing-client-id"),
        pytest.param({"client_id": "0000000040000000"}, 400, "unauthorized_client", 700016, id="unknown-client"),
        pytest.param({"client_secret": ""}, 401, "invalid_client", 7000218, id="confidential-without-secret"),
        pytest.param({"client_secret": "wrong"}, 401, "invalid_client", 7000215, id="wrong-secret"),
        pytest.param({"scope": "https://graph.microsoft.com/.default"}, 400, "invalid_scope", 70011, id="bad-scope"),
        pytest.param({"scope": ""}, 400, "invalid_request", 900144, id="missing-scope"),
    ],
)
def test_token_errors(ms: EmulatorHandle, form_changes: dict[str, str], status: int, error: str, code: int) -> None:
    form = {
        "grant_type": "refresh_token",
        "client_id": ms.env["MSADS_CLIENT_ID"],
        "client_secret": ms.env["MSADS_CLIENT_SECRET"],
        "refresh_token": ms.env["MSADS_REFRESH_TOKEN"],
        "scope": SCOPE,
    }
    form.update(form_changes)
    response = requests.post(ms.token_url, data={k: v for k, v in form.items() if v}, timeout=5)
    _assert_oauth_error(response, status, error, code)


@pytest.mark.parametrize(
    "scope",
    [
        pytest.param("https://si.ads.microsoft.com/msads.manage offline_access", id="sandbox"),
        pytest.param("https://ads.microsoft.com/msads.manage offline_access openid profile", id="with-openid"),
    ],
)
def test_accepted_scopes(ms: EmulatorHandle, scope: str) -> None:
    assert refresh(ms, scope=scope).status_code == 200


def test_json_body_is_not_accepted(ms: EmulatorHandle) -> None:
    response = requests.post(ms.token_url, json={"grant_type": "refresh_token"}, timeout=5)
    _assert_oauth_error(response, 400, "invalid_request", 900144)


def test_public_client_must_not_send_a_secret() -> None:
    with run_emulator(client_secret=None) as ms:
        assert "MSADS_CLIENT_SECRET" not in ms.env
        _assert_oauth_error(refresh(ms, client_secret="x"), 400, "invalid_request", 700025)
        form = {
            "grant_type": "refresh_token",
            "client_id": ms.env["MSADS_CLIENT_ID"],
            "scope": SCOPE,
            "refresh_token": ms.env["MSADS_REFRESH_TOKEN"],
        }
        assert requests.post(ms.token_url, data=form, timeout=5).status_code == 200


def test_authorize_redirects_with_code_and_state_and_code_redeems_once(ms: EmulatorHandle) -> None:
    redirect = "http://localhost:8400/callback"
    response = requests.get(
        f"{ms.url}/common/oauth2/v2.0/authorize",
        params={
            "client_id": ms.env["MSADS_CLIENT_ID"],
            "response_type": "code",
            "redirect_uri": redirect,
            "scope": SCOPE,
            "state": "xyz<>",
        },
        allow_redirects=False,
        timeout=5,
    )
    assert response.status_code == 302
    location = urlsplit(response.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == redirect
    query = parse_qs(location.query)
    assert query["state"] == ["xyz<>"]
    form = {
        "grant_type": "authorization_code",
        "client_id": ms.env["MSADS_CLIENT_ID"],
        "client_secret": ms.env["MSADS_CLIENT_SECRET"],
        "code": query["code"][0],
        "redirect_uri": redirect,
        "scope": SCOPE,
    }
    first = requests.post(ms.token_url, data=form, timeout=5)
    assert first.status_code == 200
    assert first.json()["refresh_token"].startswith("rt-")
    _assert_oauth_error(requests.post(ms.token_url, data=form, timeout=5), 400, "invalid_grant", 54005)


def test_code_redemption_checks_redirect_uri(ms: EmulatorHandle) -> None:
    response = requests.get(
        f"{ms.url}/common/oauth2/v2.0/authorize",
        params={"client_id": ms.env["MSADS_CLIENT_ID"], "redirect_uri": "http://localhost/a", "scope": SCOPE},
        allow_redirects=False,
        timeout=5,
    )
    code = parse_qs(urlsplit(response.headers["Location"]).query)["code"][0]
    form = {
        "grant_type": "authorization_code",
        "client_id": ms.env["MSADS_CLIENT_ID"],
        "client_secret": ms.env["MSADS_CLIENT_SECRET"],
        "code": code,
        "redirect_uri": "http://localhost/b",
        "scope": SCOPE,
    }
    _assert_oauth_error(requests.post(ms.token_url, data=form, timeout=5), 400, "invalid_grant", 50148)


def test_authorize_native_client_shows_code_page_escaped(ms: EmulatorHandle) -> None:
    response = requests.get(
        f"{ms.url}/common/oauth2/v2.0/authorize",
        params={
            "client_id": ms.env["MSADS_CLIENT_ID"],
            "scope": SCOPE,
            "state": "<script>x</script>",
            "redirect_uri": "https://login.microsoftonline.com/common/oauth2/nativeclient",
        },
        allow_redirects=False,
        timeout=5,
    )
    assert response.status_code == 200
    assert "code=code-" in response.text
    assert "<script>" not in response.text


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        pytest.param({"client_id": "nope"}, "AADSTS700016", id="unknown-client"),
        pytest.param({"scope": "openid"}, "AADSTS70011", id="bad-scope"),
        pytest.param({"redirect_uri": "javascript:alert(1)"}, "AADSTS900144", id="bad-redirect"),
    ],
)
def test_authorize_errors(ms: EmulatorHandle, params: dict[str, str], fragment: str) -> None:
    query = {"client_id": ms.env["MSADS_CLIENT_ID"], "scope": SCOPE, "redirect_uri": "http://localhost/cb", **params}
    response = requests.get(f"{ms.url}/common/oauth2/v2.0/authorize", params=query, allow_redirects=False, timeout=5)
    assert response.status_code == 400
    assert fragment in response.text


def test_registered_redirect_uris_are_enforced() -> None:
    with run_emulator(redirect_uris=["http://localhost/ok"]) as ms:
        base = {"client_id": ms.env["MSADS_CLIENT_ID"], "scope": SCOPE}
        bad = requests.get(
            f"{ms.url}/common/oauth2/v2.0/authorize",
            params={**base, "redirect_uri": "http://x/"},
            allow_redirects=False,
            timeout=5,
        )
        assert bad.status_code == 400
        assert "AADSTS50011" in bad.text
        good = requests.get(
            f"{ms.url}/common/oauth2/v2.0/authorize",
            params={**base, "redirect_uri": "http://localhost/ok"},
            allow_redirects=False,
            timeout=5,
        )
        assert good.status_code == 302


def test_tenant_segment_is_accepted(ms: EmulatorHandle) -> None:
    url = ms.token_url.replace("/common/", "/consumers/")
    form = {
        "grant_type": "refresh_token",
        "client_id": ms.env["MSADS_CLIENT_ID"],
        "client_secret": ms.env["MSADS_CLIENT_SECRET"],
        "refresh_token": ms.env["MSADS_REFRESH_TOKEN"],
        "scope": SCOPE,
    }
    assert requests.post(url, data=form, timeout=5).status_code == 200


def test_concurrent_refreshes_get_unique_increasing_serials(ms: EmulatorHandle) -> None:
    def worker(_: int) -> list[int]:
        with requests.Session() as session:
            serials = []
            for _ in range(10):
                form = {
                    "grant_type": "refresh_token",
                    "client_id": ms.env["MSADS_CLIENT_ID"],
                    "client_secret": ms.env["MSADS_CLIENT_SECRET"],
                    "refresh_token": ms.env["MSADS_REFRESH_TOKEN"],
                    "scope": SCOPE,
                }
                token = session.post(ms.token_url, data=form, timeout=10).json()["refresh_token"]
                serials.append(int(token.split("-")[1]))
            return serials

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(worker, range(8)))
    everything = [s for serials in results for s in serials]
    assert sorted(everything) == list(range(2, 82))
    assert all(serials == sorted(serials) for serials in results)
    assert [r.serial for r in ms.token_log()] == list(range(2, 82))


def test_access_tokens_expire_after_their_lifetime() -> None:
    now = [datetime(2026, 6, 1, 12, 0, tzinfo=UTC)]
    with run_emulator(access_token_lifetime=60, clock=lambda: now[0]) as ms:
        token = refresh(ms).json()["access_token"]
        headers = {
            "Authorization": f"Bearer {token}",
            "DeveloperToken": ms.env["MSADS_DEVELOPER_TOKEN"],
            "CustomerId": ms.env["MSADS_CUSTOMER_ID"],
            "CustomerAccountId": ms.env["MSADS_ACCOUNT_ID"],
        }
        url = ms.campaign_url("ConversionGoals/QueryByIds")
        assert requests.post(url, json={}, headers=headers, timeout=5).status_code == 200
        now[0] += timedelta(seconds=61)
        response = requests.post(url, json={}, headers=headers, timeout=5)
        assert response.status_code == 401
        assert response.json()["Errors"][0]["Code"] == 109
