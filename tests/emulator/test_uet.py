"""UET Conversions API ``POST /v1/{tagId}/events``: auth, validation errors and warnings, dedup."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from emulator_helpers import CLICK, ago

from msclkid_middleware.testing import EmulatorHandle

EM = "ec81f3ac7b2b19675bab9d54cf416f9f18cff87c97da5cca82c0f0891bc40602"
MESSAGE = (
    "One or multiple parameters did not pass validation checks, see details. "
    "Note that only the first 10 errors and warnings are shown."
)


def event(**overrides: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "eventType": "custom",
        "eventId": "evt-1",
        "eventName": "checkout_complete",
        "eventTime": int(ago(minutes=5).timestamp()),
        "adStorageConsent": "G",
        "userData": {"msclkid": CLICK, "em": EM, "clientIpAddress": "203.0.113.9"},
        "customData": {"value": 12.5, "currency": "USD", "pageType": "purchase"},
    }
    item.update(overrides)
    return {k: v for k, v in item.items() if v is not ...}


def send(ms: EmulatorHandle, body: Any, token: str | None = None, tag: str | None = None) -> requests.Response:
    headers = {"Authorization": f"Bearer {token or ms.env['UET_API_TOKEN']}"}
    return requests.post(ms.uet_url(tag), json=body, headers=headers, timeout=5)


def test_valid_events_are_received(ms: EmulatorHandle) -> None:
    response = send(ms, {"data": [event(), event(eventId="evt-2")], "dataProvider": "msclkid-middleware"})
    assert response.status_code == 200
    assert response.json() == {"eventsReceived": 2}
    assert [i.outcome for i in ms.received("uet")] == ["accepted", "accepted"]
    assert ms.received("uet")[0].account == ms.env["UET_TAG_ID"]
    assert "adStorageConsent=G" in ms.received("uet")[0].notes


@pytest.mark.parametrize(
    ("token", "tag"),
    [
        pytest.param("wrong", None, id="wrong-token"),
        pytest.param(None, "999", id="unknown-tag"),
    ],
)
def test_unauthorized(ms: EmulatorHandle, token: str | None, tag: str | None) -> None:
    response = send(ms, {"data": [event()]}, token, tag)
    assert response.status_code == 401
    assert response.json() == {
        "error": {"code": "Unauthorized", "message": "You are not authorized to access this resource."}
    }


def test_missing_authorization_is_401(ms: EmulatorHandle) -> None:
    response = requests.post(ms.uet_url(), json={"data": [event()]}, timeout=5)
    assert response.status_code == 401


def test_token_is_per_tag(ms: EmulatorHandle) -> None:
    other = ms.add_uet_tag("555", "other-token")
    assert send(ms, {"data": [event()]}, other.token, "555").status_code == 200
    assert send(ms, {"data": [event()]}, ms.env["UET_API_TOKEN"], "555").status_code == 401


@pytest.mark.parametrize(
    ("overrides", "prop", "code"),
    [
        pytest.param({"eventType": "purchase"}, "eventType", "InvalidEnumValue", id="event-type"),
        pytest.param({"eventType": ...}, "eventType", "Empty", id="event-type-missing"),
        pytest.param({"eventTime": ...}, "eventTime", "Empty", id="event-time-missing"),
        pytest.param({"eventTime": int(ago(days=8).timestamp())}, "eventTime", "InvalidEventTime", id="too-old"),
        pytest.param(
            {"eventTime": int(ago(minutes=5).timestamp()) * 1000}, "eventTime", "InvalidEventTime", id="milliseconds"
        ),
        pytest.param({"eventTime": "1767793837"}, "eventTime", "InvalidEventTime", id="string"),
        pytest.param({"eventTime": int(ago(hours=-2).timestamp())}, "eventTime", "InvalidEventTime", id="future"),
        pytest.param({"eventType": "pageLoad"}, "eventSourceUrl", "Empty", id="pageload-without-url"),
        pytest.param(
            {"eventType": "pageLoad", "eventSourceUrl": "not a url"},
            "eventSourceUrl",
            "InvalidUrl",
            id="pageload-bad-url",
        ),
        pytest.param({"userData": ...}, "userData", "Empty", id="no-user-data"),
        pytest.param({"userData": {"clientUserAgent": "x"}}, "userData", "Empty", id="no-identifier"),
    ],
)
def test_validation_errors_fail_the_batch(ms: EmulatorHandle, overrides: dict[str, Any], prop: str, code: str) -> None:
    response = send(ms, {"data": [event(eventId="ok"), event(**overrides)]})
    assert response.status_code == 400
    body = response.json()
    assert body["error"]["code"] == "ValidationError"
    assert body["error"]["message"] == MESSAGE
    [detail] = [d for d in body["error"]["details"] if not d["isWarning"]]
    assert detail["index"] == 1
    assert detail["propertyName"] == f"data[1].{prop}"
    assert detail["errorCode"] == code
    assert set(detail) == {"index", "propertyName", "attemptedValue", "errorMessage", "errorCode", "isWarning"}
    first, second = ms.received("uet")
    assert first.outcome == "rejected"
    assert "BatchRejected" in first.notes
    assert (second.outcome, second.error_code) == ("rejected", code)


@pytest.mark.parametrize(
    ("overrides", "prop", "code"),
    [
        pytest.param({"referrerUrl": "::"}, "referrerUrl", "InvalidUrl", id="referrer"),
        pytest.param({"userData": {"em": "A@B.COM", "msclkid": CLICK}}, "userData.em", "InvalidSha256", id="em"),
        pytest.param({"userData": {"ph": "+14255551234", "externalId": "u1"}}, "userData.ph", "InvalidSha256", id="ph"),
        pytest.param({"customData": {"currency": "DOLLARS"}}, "customData.currency", "InvalidCurrency", id="currency"),
        pytest.param(
            {"customData": {"pageType": "checkout"}}, "customData.pageType", "InvalidEnumValue", id="page-type"
        ),
        pytest.param({"adStorageConsent": "G|D"}, "adStorageConsent", "InvalidEnumValue", id="consent-placeholder"),
    ],
)
def test_warnings_keep_the_event(ms: EmulatorHandle, overrides: dict[str, Any], prop: str, code: str) -> None:
    response = send(ms, {"data": [event(**overrides)]})
    assert response.status_code == 200
    body = response.json()
    assert body["eventsReceived"] == 1
    [detail] = body["error"]["details"]
    assert (detail["propertyName"], detail["errorCode"], detail["isWarning"]) == (f"data[0].{prop}", code, True)
    [item] = ms.received("uet")
    assert item.outcome == "accepted"
    assert item.warnings == (f"{code}:data[0].{prop}",)


def test_invalid_hash_as_only_identifier_is_an_error(ms: EmulatorHandle) -> None:
    response = send(ms, {"data": [event(userData={"em": "plain@example.com"})]})
    assert response.status_code == 400
    codes = [(d["errorCode"], d["isWarning"]) for d in response.json()["error"]["details"]]
    assert codes == [("InvalidSha256", True), ("Empty", False)]


def test_continue_on_validation_error_skips_bad_events(ms: EmulatorHandle) -> None:
    data = [event(eventId="a"), event(eventId="b", eventType="nope"), event(eventId="c")]
    response = send(ms, {"data": data, "continueOnValidationError": True})
    assert response.status_code == 200
    body = response.json()
    assert body["eventsReceived"] == 2
    assert [d["index"] for d in body["error"]["details"]] == [1]
    assert [i.outcome for i in ms.received("uet")] == ["accepted", "rejected", "accepted"]


def test_continue_on_validation_error_with_no_valid_event_is_400(ms: EmulatorHandle) -> None:
    response = send(ms, {"data": [event(eventType="nope")], "continueOnValidationError": True})
    assert response.status_code == 400


def test_only_first_ten_details_are_shown(ms: EmulatorHandle) -> None:
    data = [event(eventId=str(i), eventType="bad") for i in range(15)]
    response = send(ms, {"data": data, "continueOnValidationError": True})
    assert response.status_code == 400
    details = response.json()["error"]["details"]
    assert [d["index"] for d in details] == list(range(10))
    assert len(ms.received("uet", outcome="rejected")) == 15


@pytest.mark.parametrize(
    ("body", "prop"),
    [
        pytest.param({"data": []}, "data", id="empty"),
        pytest.param({}, "data", id="missing"),
        pytest.param({"data": [{}] * 1001}, "data", id="too-many"),
    ],
)
def test_request_level_errors(ms: EmulatorHandle, body: dict[str, Any], prop: str) -> None:
    response = send(ms, body)
    assert response.status_code == 400
    assert response.json()["error"]["details"][0]["propertyName"] == prop
    assert ms.received() == []


def test_non_json_body_is_400(ms: EmulatorHandle) -> None:
    response = requests.post(
        ms.uet_url(), data=b"{", timeout=5, headers={"Authorization": f"Bearer {ms.env['UET_API_TOKEN']}"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "BadRequest"


def test_dedup_by_event_id_and_name(ms: EmulatorHandle) -> None:
    assert send(ms, {"data": [event(), event()]}).json() == {"eventsReceived": 2}
    assert send(ms, {"data": [event(eventName="other")]}).status_code == 200
    assert [i.outcome for i in ms.received("uet")] == ["accepted", "duplicate", "accepted"]


def test_denied_consent_is_recorded(ms: EmulatorHandle) -> None:
    send(ms, {"data": [event(adStorageConsent="D")]})
    assert "adStorageConsent=D" in ms.received("uet")[0].notes
