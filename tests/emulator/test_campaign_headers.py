"""Campaign Management header checks: AdApiFaultDetail bodies, statuses and TrackingId."""

from __future__ import annotations

import uuid

import pytest
import requests
from emulator_helpers import access_token, apply_offline, cm_headers, conversion

from msclkid_middleware.testing import EmulatorHandle


def _fault(response: requests.Response, status: int, code: int, error_code: str) -> dict[str, object]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["Type"] == "AdApiFaultDetail"
    assert body["TrackingId"] == response.headers["TrackingId"]
    uuid.UUID(body["TrackingId"])
    [error] = body["Errors"]
    assert set(error) == {"Code", "Detail", "ErrorCode", "Message"}
    assert error["Code"] == code
    assert error["ErrorCode"] == error_code
    assert error["Message"]
    return body


@pytest.mark.parametrize(
    ("change", "status", "code", "error_code"),
    [
        pytest.param({"Authorization": None}, 401, 105, "InvalidCredentials", id="no-authorization"),
        pytest.param({"Authorization": "at-1-raw-token"}, 401, 105, "InvalidCredentials", id="no-bearer-prefix"),
        pytest.param({"Authorization": "Bearer at-9-unknown"}, 401, 105, "InvalidCredentials", id="unknown-token"),
        pytest.param({"DeveloperToken": None}, 400, 116, "RequestMissingHeaders", id="no-developer-token"),
        pytest.param({"DeveloperToken": "BBD37VB98"}, 401, 105, "InvalidCredentials", id="wrong-developer-token"),
        pytest.param({"CustomerId": None}, 400, 116, "RequestMissingHeaders", id="no-customer-id"),
        pytest.param(
            {"CustomerAccountId": None}, 400, 1009, "CampaignServiceAccountIdMissingInRequestHeader", id="no-account"
        ),
        pytest.param({"CustomerAccountId": "999"}, 403, 106, "UserIsNotAuthorized", id="unknown-account"),
        pytest.param({"CustomerId": "999"}, 403, 106, "UserIsNotAuthorized", id="customer-mismatch"),
    ],
)
def test_header_faults(
    ms: EmulatorHandle, change: dict[str, str | None], status: int, code: int, error_code: str
) -> None:
    headers = cm_headers(ms)
    for name, value in change.items():
        if value is None:
            del headers[name]
        else:
            headers[name] = value
    _fault(apply_offline(ms, [conversion()], headers), status, code, error_code)
    assert ms.received() == []  # nothing is recorded for a rejected request


def test_expired_access_token_gives_109(ms: EmulatorHandle) -> None:
    token = access_token(ms)
    assert ms.expire_access_tokens(token) == 1
    _fault(apply_offline(ms, [conversion()], cm_headers(ms, token)), 401, 109, "AuthenticationTokenExpired")
    # A fresh token works again.
    assert apply_offline(ms, [conversion()]).status_code == 200


def test_every_response_has_a_fresh_tracking_id(ms: EmulatorHandle) -> None:
    headers = cm_headers(ms)
    ids = [apply_offline(ms, [conversion()], headers).headers["TrackingId"] for _ in range(3)]
    assert len(set(ids)) == 3
    assert requests.get(f"{ms.url}/_emulator/state", timeout=5).headers["TrackingId"]
    assert [r.tracking_id for r in ms.requests("offline")] == ids
    assert [r.status for r in ms.requests("offline")] == [200, 200, 200]


def test_unknown_path_and_method(ms: EmulatorHandle) -> None:
    assert requests.post(ms.campaign_url("Nope/Apply"), json={}, timeout=5).status_code == 404
    response = requests.get(ms.campaign_url("OfflineConversions/Apply"), timeout=5)
    assert response.status_code == 405
    assert "POST" in response.headers["Allow"]
