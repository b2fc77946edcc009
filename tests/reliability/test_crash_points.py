"""R3: the worker (or the recording process) SIGKILLed at every fault point, restarted: 0 lost.

Real subprocesses, a real store, the emulator over loopback HTTP.  ``MSCLKID_FAULT_POINT`` makes the
process kill itself at the named point (see ``msclkid_middleware/faultpoints.py``).  After the restart
every acknowledged event is delivered, Microsoft counted each exactly once, every resend carried the
same idempotency key and ConversionTime, and resends happened only for the batch in flight at the
crash.  Recovery is measured: the restarted worker resends the orphaned batch within
``lease + poll_interval`` (plus process start-up) of the dead worker's lease expiring.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from msclkid_middleware import faultpoints
from msclkid_middleware.outbox import open_store
from msclkid_middleware.testing import EmulatorHandle, run_emulator
from tests.pg_helpers import Schemas, require_postgres, schema_fixture, session_schemas

from .conftest import CRASH_ROUNDS, REPO, make_tracker, record

pytestmark = pytest.mark.reliability

EVENTS = 120
BATCH = 50
LEASE = 2.0
POLL = 0.2
#: Starting a Python process that imports the package, on a loaded 2-core CI machine.
STARTUP_ALLOWANCE = 5.0


def _env(ms: EmulatorHandle, store_url: str, fault: str | None) -> dict[str, str]:
    env = {**os.environ, **ms.env, "MSCLKID_STORE_URL": store_url, "PYTHONPATH": str(REPO)}
    env.pop(faultpoints.ENV_VAR, None)
    if fault is not None:
        env[faultpoints.ENV_VAR] = fault
    return env


def worker(ms: EmulatorHandle, store_url: str, *args: str, fault: str | None = None) -> subprocess.Popen[str]:
    code = "import sys; from msclkid_middleware.cli import main; sys.exit(main(sys.argv[1:]))"
    command = [sys.executable, "-c", code, "worker", "--batch-size", str(BATCH), "--lease-seconds", str(LEASE), *args]
    return subprocess.Popen(
        command, env=_env(ms, store_url, fault), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _key(payload: Any) -> str:
    return json.dumps([payload["MicrosoftClickId"], payload["ConversionName"], payload["ConversionTime"]])


def _wait_delivered(store_url: str, count: int, timeout: float) -> float:
    store = open_store(store_url)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = Counter(c.state for c in store.counts() for _ in range(c.count))
            if states["delivered"] >= count:
                return time.monotonic()
            time.sleep(0.05)
    finally:
        store.close()
    raise AssertionError(f"not all {count} events delivered within {timeout} s")


def _stop(proc: subprocess.Popen[str]) -> tuple[str, str]:
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    return out, err


def _reconcile(ms: EmulatorHandle, keys: dict[str, tuple[str, str]], crashes_per_key: int) -> Counter[str]:
    """Every event accepted exactly once; resends bounded by the crashes; keys and times never changed."""
    received = ms.received("offline")
    per_key = Counter(_key(i.payload) for i in received)
    accepted = Counter(_key(i.payload) for i in received if i.outcome == "accepted")
    assert set(accepted) == {wire for _, wire in keys.values()}, "lost or unexpected events"
    assert set(accepted.values()) == {1}, "an event was counted twice"
    assert max(per_key.values()) <= 1 + crashes_per_key
    return per_key


@pytest.mark.parametrize(
    ("fault", "resent"),
    [
        pytest.param("after_claim", 0, id="after-claim-commit"),
        pytest.param("building_batch@7", 0, id="while-building-batch"),
        pytest.param("after_send", BATCH, id="after-send-before-record"),
        pytest.param("settle_txn", BATCH, id="while-recording"),
    ],
)
@pytest.mark.parametrize("round_", range(CRASH_ROUNDS))
def test_worker_killed_at_fault_point_recovers_within_lease(
    ms: EmulatorHandle,
    store_url: str,
    fault: str,
    resent: int,
    round_: int,
    secret_canary: Any,
    recovery_log: list[Any],
) -> None:
    tracker = make_tracker(ms, store_url)
    keys: dict[str, tuple[str, str]] = {}
    for n in range(EVENTS):
        status = record(tracker, n)
        row = tracker.store.find(f"ord_{n}")[0]
        keys[status.event_id] = (status.idempotency_key, _key(row.payload))

    crashed = worker(ms, store_url, "--drain", fault=fault)
    out, err = crashed.communicate(timeout=60)
    killed_at = time.monotonic()
    assert crashed.returncode == -signal.SIGKILL, err
    secret_canary.check(out + err, "worker output")
    assert len(ms.received("offline")) == resent
    orphaned = [r for n in range(EVENTS) for r in tracker.store.find(f"ord_{n}") if r.state == "in_flight"]
    assert len(orphaned) == BATCH  # the claim committed; the outcome did not
    lease_expiry = max(r.lease_expires_at for r in orphaned if r.lease_expires_at is not None)

    # Restart at once, as a supervisor would; the orphaned rows wait for their lease.
    restarted = worker(ms, store_url, "--poll-interval", str(POLL))
    done = _wait_delivered(store_url, EVENTS, timeout=60)
    out, err = _stop(restarted)
    secret_canary.check(out + err, "worker output")

    orphan_keys = {keys[r.event_id][1] for r in orphaned}
    resent_at = min(
        i.received_at
        for i in ms.received("offline")
        if _key(i.payload) in orphan_keys and (resent == 0 or i.outcome == "duplicate")
    )
    lag = (resent_at - lease_expiry).total_seconds()
    assert lag >= -0.05, "an orphaned row was taken before its lease expired"
    assert lag <= POLL + STARTUP_ALLOWANCE, f"recovery took {lag:.2f} s after the lease expired"
    recovery_log.append((fault, lag))
    assert done - killed_at <= LEASE + POLL + STARTUP_ALLOWANCE + 5.0

    per_key = _reconcile(ms, keys, crashes_per_key=1)
    assert sum(1 for c in per_key.values() if c == 2) == resent  # only the batch in flight went twice
    for event_id, (key, _) in keys.items():
        status = tracker.status(event_id)
        assert status.state == "delivered"
        assert status.idempotency_key == key
    tracker.close()


def test_recording_process_killed_inside_its_transaction_loses_no_acknowledged_event(
    ms: EmulatorHandle, store_url: str, secret_canary: Any
) -> None:
    script = str(REPO / "tests" / "reliability" / "procs.py")
    env = _env(ms, store_url, "enqueue_txn@40")
    proc = subprocess.run(
        [sys.executable, script, "record", "0", str(EVENTS)], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    secret_canary.check(proc.stdout + proc.stderr, "recorder output")
    acknowledged = [line.split()[1] for line in proc.stdout.splitlines()]
    assert len(acknowledged) == 39

    store = open_store(store_url)
    stored = {r.event_id for n in range(EVENTS) for r in store.find(f"ord_{n}")}
    store.close()
    # All that returned is durable; the call that was killed left nothing half-written.
    assert stored == set(acknowledged)

    # The application retries everything it did not see acknowledged (here: everything, again).
    env = _env(ms, store_url, None)
    again = subprocess.run(
        [sys.executable, script, "record", "0", str(EVENTS)], env=env, capture_output=True, text=True, timeout=60
    )
    assert again.returncode == 0, again.stderr
    created = {line.split()[1]: line.split()[2] for line in again.stdout.splitlines()}
    assert [e for e, c in created.items() if c == "0"] == acknowledged  # duplicates, not second rows

    drained = worker(ms, store_url, "--drain")
    _out, err = drained.communicate(timeout=60)
    assert drained.returncode == 0, err
    received = ms.received("offline")
    assert len(received) == EVENTS
    assert {i.outcome for i in received} == {"accepted"}


@pytest.mark.parametrize("strict_rotation", [False, True], ids=["microsoft-rotation", "strict-rotation"])
def test_worker_killed_during_the_token_write_loses_nothing(
    store_url: str, strict_rotation: bool, secret_canary: Any
) -> None:
    with run_emulator(invalidate_used_refresh_tokens=strict_rotation) as ms:
        tracker = make_tracker(ms, store_url)
        for n in range(EVENTS):
            record(tracker, n)
        crashed = worker(ms, store_url, "--drain", fault="token_write")
        out, err = crashed.communicate(timeout=60)
        assert crashed.returncode == -signal.SIGKILL, err
        assert ms.received("offline") == []
        assert len(ms.token_log()) == 1  # Microsoft issued a new refresh token; we died writing it
        # The write was rolled back whole: no token row, or the previous one.
        assert tracker.store.load_token("microsoft") is None

        time.sleep(LEASE + 0.1)  # the dead worker's claim expires
        restarted = worker(ms, store_url, "--drain")
        out, err = restarted.communicate(timeout=60)
        secret_canary.check(out + err, "worker output")
        assert restarted.returncode == 0, err
        states = Counter(r.state for n in range(EVENTS) for r in tracker.store.find(f"ord_{n}"))
        if not strict_rotation:
            # Microsoft keeps a used refresh token valid, so the seed token still works.
            assert states == {"delivered": EVENTS}
            assert len(ms.received("offline", outcome="accepted")) == EVENTS
        else:
            # The rotated token died with the process: re-consent is needed, and nothing is lost meanwhile.
            assert states == {"paused": EVENTS}
            assert all(r.paused_reason for n in range(EVENTS) for r in tracker.store.find(f"ord_{n}"))
        tracker.close()


def test_fault_points_are_inert_unless_enabled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(faultpoints.ENV_VAR, raising=False)
    for point in faultpoints.POINTS:
        faultpoints.hit(point)  # would SIGKILL this test process if it were not inert
    monkeypatch.setenv(faultpoints.ENV_VAR, "after_claim@1000000")
    faultpoints.hit("settle_txn")  # another point: nothing
    monkeypatch.setenv(faultpoints.ENV_VAR, "no_such_point")
    for point in faultpoints.POINTS:
        faultpoints.hit(point)  # an unknown name never fires


@pytest.fixture(scope="module")
def pg_schemas() -> Iterator[Schemas]:
    yield from session_schemas()


@pytest.fixture
def pg_store_url(pg_schemas: Schemas) -> Iterator[str]:
    require_postgres()
    for schema in schema_fixture(pg_schemas):
        yield pg_schemas.store_url(schema, pool_max_size=4)


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("fault", "resent"),
    [
        pytest.param("after_claim", 0, id="after-claim-commit"),
        pytest.param("building_batch@7", 0, id="while-building-batch"),
        pytest.param("after_send", BATCH, id="after-send-before-record"),
        pytest.param("settle_txn", BATCH, id="while-recording"),
    ],
)
def test_postgres_worker_killed_at_fault_point_recovers_within_lease(
    ms: EmulatorHandle,
    pg_store_url: str,
    fault: str,
    resent: int,
    secret_canary: Any,
    recovery_log: list[Any],
) -> None:
    """The same crash matrix on the PostgreSQL store (its claims, leases and fenced settles)."""
    test_worker_killed_at_fault_point_recovers_within_lease(
        ms, pg_store_url, fault, resent, 0, secret_canary, recovery_log
    )
