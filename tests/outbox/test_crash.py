"""Crash recovery: ``msclkid worker`` killed with SIGKILL at a fault point, restarted, loses nothing.

The worker runs as a real subprocess against a real SQLite file and the emulator over HTTP.  The
test-only hook ``MSCLKID_FAULT_POINT`` makes it SIGKILL itself right after claiming or right after
sending (before the outcome is recorded).  Leases are 1 second, so recovery needs no long waits.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from msclkid_middleware.testing import EmulatorHandle

from .conftest import FakeClock, make_tracker, record

pytestmark = pytest.mark.reliability

REPO = Path(__file__).resolve().parents[2]
EVENTS = 120
BATCH = 50


def worker(ms: EmulatorHandle, store: Path, *args: str, fault: str | None = None) -> subprocess.Popen[str]:
    env = {**os.environ, **ms.env, "MSCLKID_STORE_URL": f"sqlite:///{store}", "PYTHONPATH": str(REPO)}
    env.pop("MSCLKID_FAULT_POINT", None)
    if fault is not None:
        env["MSCLKID_FAULT_POINT"] = fault
    code = "import sys; from msclkid_middleware.cli import main; sys.exit(main(sys.argv[1:]))"
    command = [sys.executable, "-c", code, "worker", "--batch-size", str(BATCH), "--lease-seconds", "1", *args]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _key(payload: dict[str, object]) -> str:
    return json.dumps([payload["MicrosoftClickId"], payload["ConversionName"], payload["ConversionTime"]])


@pytest.mark.parametrize(
    ("fault", "sent_before_crash"),
    [
        pytest.param("after_claim", 0, id="killed-after-claim"),
        pytest.param("after_send", BATCH, id="killed-after-send"),
        pytest.param("after_send@2", 2 * BATCH, id="killed-after-second-send"),
    ],
)
def test_sigkill_then_restart_delivers_everything_once(
    ms: EmulatorHandle, tmp_path: Path, fault: str, sent_before_crash: int
) -> None:
    clock = FakeClock()
    tracker = make_tracker(ms, tmp_path, clock)
    keys = {}
    for n in range(EVENTS):
        keys[f"ord_{n}"] = record(tracker, clock, n).idempotency_key
    store = tmp_path / "outbox.db"

    crashed = worker(ms, store, "--drain", fault=fault)
    crashed.communicate(timeout=60)
    assert crashed.returncode == -signal.SIGKILL
    assert len(ms.received("offline")) == sent_before_crash
    in_flight = [r for n in range(EVENTS) for r in tracker.store.find(f"ord_{n}") if r.state == "in_flight"]
    assert len(in_flight) == BATCH  # the batch the worker held when it died

    time.sleep(1.1)  # the dead worker's 1-second lease expires
    restarted = worker(ms, store, "--drain")
    out, err = restarted.communicate(timeout=60)
    assert restarted.returncode == 0, err
    assert "worker stopped" in out

    # Every event delivered, none lost, the key never regenerated.
    for event_id, key in keys.items():
        status = tracker.status(event_id)
        assert status.state == "delivered"
        assert status.idempotency_key == key
    received = ms.received("offline")
    per_key = Counter(_key(item.payload) for item in received)
    accepted = Counter(_key(item.payload) for item in received if item.outcome == "accepted")
    assert len(accepted) == EVENTS
    assert set(accepted.values()) == {1}
    # Only the batch sent before the kill went twice, and Microsoft dropped the resend as a duplicate.
    resent = {k for k, count in per_key.items() if count > 1}
    assert len(resent) == (BATCH if fault.startswith("after_send") else 0)
    assert all(per_key[k] == 2 for k in resent)
    assert len([i for i in received if i.outcome == "duplicate"]) == len(resent)
    tracker.close()


def test_sigterm_finishes_the_request_in_flight_and_exits_cleanly(ms: EmulatorHandle, tmp_path: Path) -> None:
    clock = FakeClock()
    tracker = make_tracker(ms, tmp_path, clock)
    for n in range(3 * BATCH):
        record(tracker, clock, n)
    ms.inject_fault("offline", "delay", delay=0.5)
    proc = worker(ms, tmp_path / "outbox.db", "--poll-interval", "0.05")
    deadline = time.monotonic() + 20
    while not ms.requests("offline") and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)  # arrives while the first request is being answered
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "worker stopped" in out
    rows = [r for n in range(3 * BATCH) for r in tracker.store.find(f"ord_{n}")]
    states = Counter(r.state for r in rows)
    assert states["in_flight"] == 0  # nothing left leased
    assert states["delivered"] >= BATCH  # the request in flight was finished and recorded
    assert all(r.attempts == 0 for r in rows if r.state == "pending")
    assert states["delivered"] == len(ms.received("offline", outcome="accepted"))
    tracker.close()


def test_several_worker_processes_share_one_outbox_without_double_sends(ms: EmulatorHandle, tmp_path: Path) -> None:
    clock = FakeClock()
    tracker = make_tracker(ms, tmp_path, clock)
    total = 6 * BATCH
    for n in range(total):
        record(tracker, clock, n)
    ms.inject_fault("offline", "delay", delay=0.05)  # keep requests overlapping
    workers = [worker(ms, tmp_path / "outbox.db", "--drain", "--lease-seconds", "30") for _ in range(3)]
    for proc in workers:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    received = ms.received("offline")
    assert len(received) == total  # every event sent exactly once: no two workers held the same row
    assert Counter(_key(i.payload) for i in received).most_common(1)[0][1] == 1
    assert {tracker.status(f"ord_{n}").state for n in range(total)} == {"delivered"}
    tracker.close()
