"""Fault injection: throttling, 117, 5xx, delays, dropped connections, expired tokens, scripts, probability."""

from __future__ import annotations

import time
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any

import pytest
import requests
from emulator_helpers import access_token, ago, apply_offline, cm_headers, conversion, refresh

from msclkid_middleware.errors import ConfigError
from msclkid_middleware.testing import EmulatorHandle, run_emulator


def uet(ms: EmulatorHandle) -> requests.Response:
    body = {
        "data": [
            {"eventType": "custom", "eventTime": int(ago(minutes=1).timestamp()), "userData": {"externalId": "u1"}}
        ]
    }
    return requests.post(
        ms.uet_url(), json=body, headers={"Authorization": f"Bearer {ms.env['UET_API_TOKEN']}"}, timeout=5
    )


def test_throttle_with_retry_after_seconds_then_recovers(ms: EmulatorHandle) -> None:
    headers = cm_headers(ms)
    ms.inject_fault("offline", "throttle", retry_after=7, times=1)
    response = apply_offline(ms, [conversion()], headers)
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "7"
    assert response.json()["Errors"][0]["Code"] == 117
    assert apply_offline(ms, [conversion()], headers).status_code == 200
    assert [r.fault for r in ms.requests("offline")] == ["throttle", None]
    assert ms.faults() == []  # a spent script is removed


def test_throttle_with_http_date(ms: EmulatorHandle) -> None:
    when = format_datetime(ago(seconds=-30).replace(microsecond=0), usegmt=True)
    ms.inject_fault("uet", "throttle", retry_after=when)
    response = uet(ms)
    assert response.status_code == 429
    assert parsedate_to_datetime(response.headers["Retry-After"]) > ago(seconds=0)


def test_call_rate_exceeded_fault(ms: EmulatorHandle) -> None:
    headers = cm_headers(ms)
    ms.inject_fault("campaign", "call_rate", times=2)
    for _ in range(2):
        response = apply_offline(ms, [conversion()], headers)
        assert response.status_code == 400
        body = response.json()
        assert body["Type"] == "AdApiFaultDetail"
        assert body["Errors"][0]["ErrorCode"] == "CallRateExceeded"
        assert body["TrackingId"] == response.headers["TrackingId"]
    assert apply_offline(ms, [conversion()], headers).status_code == 200


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_errors(ms: EmulatorHandle, status: int) -> None:
    headers = cm_headers(ms)
    ms.inject_fault("offline", "http", status=status, times=1)
    response = apply_offline(ms, [conversion()], headers)
    assert response.status_code == status
    assert response.headers["TrackingId"]
    if status == 500:
        assert response.json()["Errors"][0]["ErrorCode"] == "InternalError"
    assert ms.received() == []


@pytest.mark.parametrize("endpoint", ["token", "uet", "offline"])
def test_dropped_connection_is_a_connection_error(ms: EmulatorHandle, endpoint: str) -> None:
    headers = cm_headers(ms)
    ms.inject_fault(endpoint, "drop", times=1)
    calls = {
        "token": lambda: refresh(ms),
        "uet": lambda: uet(ms),
        "offline": lambda: apply_offline(ms, [conversion()], headers),
    }
    with pytest.raises(requests.ConnectionError):
        calls[endpoint]()
    assert calls[endpoint]().status_code == 200
    assert [r.status for r in ms.requests(endpoint)][-2:] == [None, 200]


def test_delay_slows_the_answer(ms: EmulatorHandle) -> None:
    ms.inject_fault("uet", "delay", delay=0.3, times=1)
    started = time.monotonic()
    assert uet(ms).status_code == 200
    assert time.monotonic() - started >= 0.3
    ms.inject_fault("uet", "delay", delay=1.0, times=1)
    with pytest.raises(requests.Timeout):
        requests.post(ms.uet_url(), json={"data": []}, timeout=0.2)


def test_expired_token_fault(ms: EmulatorHandle) -> None:
    headers = cm_headers(ms)
    ms.inject_fault("offline", "expired_token", times=1)
    response = apply_offline(ms, [conversion()], headers)
    assert response.status_code == 401
    assert response.json()["Errors"][0]["Code"] == 109
    ms.inject_fault("uet", "expired_token", times=1)
    assert uet(ms).status_code == 401
    ms.inject_fault("token", "expired_token", times=1)
    assert refresh(ms).json()["error"] == "invalid_grant"


def test_malformed_body(ms: EmulatorHandle) -> None:
    headers = cm_headers(ms)
    ms.inject_fault("offline", "malformed", times=1)
    response = apply_offline(ms, [conversion()], headers)
    assert response.status_code == 200
    with pytest.raises(ValueError):
        response.json()


def test_partial_errors_at_chosen_indexes(ms: EmulatorHandle) -> None:
    ms.inject_fault("offline", "partial_errors", indexes=[0, 2], code=5612, times=1)
    items = [conversion(MicrosoftClickId=f"{i:032x}") for i in range(3)]
    errors = apply_offline(ms, items).json()["PartialErrors"]
    assert [(e["Index"], e["ErrorCode"]) for e in errors] == [
        (0, "OfflineConversionsApplyFailed"),
        (2, "OfflineConversionsApplyFailed"),
    ]
    assert [i.outcome for i in ms.received("offline")] == ["rejected", "accepted", "rejected"]


def test_skip_lets_calls_through_first(ms: EmulatorHandle) -> None:
    ms.inject_fault("token", "http", status=503, skip=2, times=1)
    assert [refresh(ms).status_code for _ in range(4)] == [200, 200, 503, 200]


def _pattern(seed: int) -> list[int]:
    with run_emulator(
        seed=seed, faults=[{"endpoint": "token", "kind": "http", "status": 503, "probability": 0.5}]
    ) as m:
        return [refresh(m).status_code for _ in range(16)]


def test_probability_is_seeded_and_replays() -> None:
    first = _pattern(7)
    assert first == _pattern(7)
    assert {200, 503} == set(first)


def test_faults_through_the_control_api(ms: EmulatorHandle) -> None:
    created = requests.post(
        f"{ms.url}/_emulator/faults", json={"endpoint": "offline", "kind": "http", "status": 502, "times": 3}, timeout=5
    )
    assert created.status_code == 201
    rule = created.json()
    listed = requests.get(f"{ms.url}/_emulator/faults", timeout=5).json()
    assert [(r["id"], r["status"], r["fired"]) for r in listed] == [(rule["id"], 502, 0)]
    headers = cm_headers(ms)
    assert apply_offline(ms, [conversion()], headers).status_code == 502
    removed = requests.delete(f"{ms.url}/_emulator/faults", params={"id": rule["id"]}, timeout=5)
    assert removed.json() == {"removed": 1}
    assert apply_offline(ms, [conversion()], headers).status_code == 200


@pytest.mark.parametrize(
    "spec",
    [
        pytest.param({"endpoint": "nowhere", "kind": "http"}, id="endpoint"),
        pytest.param({"endpoint": "uet", "kind": "explode"}, id="kind"),
        pytest.param({"endpoint": "uet", "kind": "http", "probability": 2}, id="probability"),
        pytest.param({"endpoint": "uet", "kind": "http", "colour": "red"}, id="unknown-option"),
    ],
)
def test_bad_fault_specs_are_rejected(ms: EmulatorHandle, spec: dict[str, Any]) -> None:
    response = requests.post(f"{ms.url}/_emulator/faults", json=spec, timeout=5)
    assert response.status_code == 400
    with pytest.raises(ConfigError):
        ms.inject_fault(**spec)


def test_faults_from_start_config_and_wildcard() -> None:
    with run_emulator(faults=[{"endpoint": "*", "kind": "http", "status": 503, "times": 2}]) as ms:
        assert refresh(ms).status_code == 503
        assert uet(ms).status_code == 503
        token = access_token(ms)
        assert apply_offline(ms, [conversion()], cm_headers(ms, token)).status_code == 200
