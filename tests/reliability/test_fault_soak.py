"""R1/R2: every fault scenario x N events through the emulator's fault injection, reconciled.

For each scenario: ``enqueued = delivered + rejected + dead`` (each rejected/dead row with a reason),
0 lost, 0 events counted twice by Microsoft, a duplicate receipt only where a response was lost after
Microsoft processed the request (the soak's equivalent of a crash after sending), and every resend
identical to what was recorded (same idempotency key, same ConversionTime).  N comes from
``MSCLKID_SOAK_EVENTS`` (1,000 in ``make test``, 20,000 in ``make soak``).
"""

from __future__ import annotations

import email.utils
from collections.abc import Callable
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from msclkid_middleware.microsoft import RetryPolicy
from msclkid_middleware.testing import EmulatorHandle, run_emulator

from .conftest import EVENTS, REPORT, FakeClock, make_tracker
from .soak import BATCH, LOST_RESPONSE_DELAY, SoakResult, blackhole_url, refused_url, run_soak, url_chaos

pytestmark = pytest.mark.reliability

P = 0.3  # share of requests that fail in a probabilistic scenario


def _http_date(seconds: int) -> str:
    return email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=seconds), usegmt=True)


def _lost_responses(events: int) -> dict[str, Any]:
    # A few per scenario: each costs a real read timeout.
    return {"kind": "delay", "delay": LOST_RESPONSE_DELAY, "times": max(2, events // 500), "probability": 0.5}


#: scenario -> emulator fault rules (endpoint "offline").
FAULTS: dict[str, list[dict[str, Any]]] = {
    "read timeout": [_lost_responses(EVENTS)],
    "dropped connection": [{"kind": "drop", "probability": P}],
    "HTTP 500": [{"kind": "http", "status": 500, "probability": P}],
    "HTTP 502": [{"kind": "http", "status": 502, "probability": P}],
    "HTTP 503": [{"kind": "http", "status": 503, "probability": P}],
    "HTTP 504": [{"kind": "http", "status": 504, "probability": P}],
    "429 Retry-After seconds": [{"kind": "throttle", "retry_after": 3, "probability": P}],
    "429 Retry-After HTTP date": [{"kind": "throttle", "retry_after": _http_date(45), "probability": P}],
    "117 CallRateExceeded": [{"kind": "call_rate", "probability": P}],
    "109 token expired": [{"kind": "expired_token", "probability": P}],
    "partial errors, transient 5612": [{"kind": "partial_errors", "indexes": [0, 13, 57, 99], "probability": P}],
    "partial errors, rejected 5604": [{"kind": "partial_errors", "indexes": [3, 50], "code": 5604, "probability": P}],
    "malformed body (200)": [{"kind": "malformed", "probability": P}],
    "non-JSON body (503)": [{"kind": "malformed", "status": 503, "probability": P}],
    "internal error 0": [{"kind": "internal", "probability": P}],
    "random mix": [
        {"kind": "drop", "probability": 0.1},
        {"kind": "http", "status": 503, "probability": 0.1},
        {"kind": "throttle", "retry_after": 2, "probability": 0.05},
        {"kind": "call_rate", "probability": 0.05},
        {"kind": "expired_token", "probability": 0.05},
        {"kind": "malformed", "probability": 0.05},
        {"kind": "partial_errors", "indexes": [1, 42], "probability": 0.1},
        {"kind": "partial_errors", "indexes": [7], "code": 5604, "probability": 0.05},
        _lost_responses(EVENTS),
    ],
}

#: scenario -> a URL chaos (the client pointed elsewhere for a share of the dispatch steps).
NETWORK: dict[str, Callable[[], Any]] = {
    "connection refused": refused_url,
    "connect timeout": blackhole_url,
}


def _finish(result: SoakResult, rows: list[SoakResult]) -> None:
    rows.append(result)
    if REPORT:
        with Path(REPORT).open("a", encoding="utf-8") as fh:
            fh.write("\t".join(str(c) for c in result.row()) + "\n")
    assert result.lost == 0
    assert result.double_counted == 0
    assert result.delivered + result.rejected + result.dead == result.events


def _check_faults_fired(ms: EmulatorHandle, minimum: int = 1) -> None:
    faulty = [r for r in ms.requests("offline") if r.fault]
    assert len(faulty) >= minimum, "the scenario injected no fault"


@pytest.mark.parametrize("scenario", list(FAULTS))
def test_fault_scenario_loses_nothing(
    scenario: str, store_url: str, soak_rows: list[SoakResult], tmp_path: Path
) -> None:
    with run_emulator() as ms:
        for rule in FAULTS[scenario]:
            ms.inject_fault("offline", **rule)
        clock = FakeClock()
        options: dict[str, Any] = {}
        if scenario == "random mix":
            # Few attempts, so some batches exhaust them: the dead column (with its reason) is exercised too.
            options["retry_policy"] = RetryPolicy(max_attempts=4, rng=lambda: 0.5)
        tracker = make_tracker(ms, store_url, clock, batch_size=BATCH, **options)
        try:
            result = run_soak(scenario, ms, tracker, clock, EVENTS)
        finally:
            tracker.close()
        _check_faults_fired(ms)
    _finish(result, soak_rows)
    if "5604" in scenario:
        assert result.rejected > 0
        assert set(result.reasons) == {"rejected:5604 OfflineConversionMicrosoftClickIdInvalid"}
    elif scenario == "random mix":
        assert result.dead > 0
        assert {r for r in result.reasons if r.startswith("dead")} == {"dead:attempts_exhausted"}
    else:
        assert result.rejected == 0, result.reasons
    if "read timeout" in scenario or scenario == "random mix":
        assert result.duplicates > 0  # the lost responses really happened, and were absorbed by Microsoft
    # Elsewhere a duplicate needs a read timeout the machine caused itself (rare; accounted per event).
    assert result.duplicates <= result.lost_responses


@pytest.mark.parametrize("scenario", list(NETWORK))
def test_network_scenario_loses_nothing(scenario: str, store_url: str, soak_rows: list[SoakResult]) -> None:
    with run_emulator() as ms, ExitStack() as stack:
        bad = stack.enter_context(NETWORK[scenario]())
        clock = FakeClock()
        tracker = make_tracker(ms, store_url, clock, batch_size=BATCH)
        try:
            chaos = url_chaos(tracker.campaign.api_url, bad, P)
            result = run_soak(scenario, ms, tracker, clock, EVENTS, chaos=chaos)
            retried = tracker.metrics()
        finally:
            tracker.close()
    _finish(result, soak_rows)
    assert result.rejected == 0
    assert result.duplicates == 0
    assert any(k.startswith("retried") for k in retried), retried  # the outage really hit requests
