"""Several ``msclkid worker`` processes on one PostgreSQL outbox, delivering to the emulator over HTTP.

- 20,000 events, four worker processes: each event claimed once (no two leases ever overlap, so no
  row is sent twice) and accepted once by the emulator; acknowledgements of an expired lease change
  nothing.
- A worker killed with SIGKILL mid-batch: the others deliver its rows once its lease expires.
- The PostgreSQL server restarted while the workers run: they reconnect and nothing is lost.  It
  needs permission to restart the local cluster (root, ``pg_ctlcluster``): skipped locally without
  it (or with ``MSCLKID_TEST_POSTGRES_RESTART=0``), never skipped under ``CI=true`` (``.ci/run`` runs
  as root).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from msclkid_middleware.config import Settings
from msclkid_middleware.dispatch.tracker import ConversionTracker
from msclkid_middleware.outbox import Outcome
from msclkid_middleware.testing import EmulatorHandle
from tests.outbox.conftest import FakeClock, record
from tests.pg_helpers import IN_CI, POSTGRES_URL, local_cluster, restart_server

pytestmark = [pytest.mark.postgres, pytest.mark.reliability]

REPO = Path(__file__).resolve().parents[2]


class Workers:
    """``msclkid worker`` subprocesses on one store; their logs go to files (a pipe could fill up)."""

    def __init__(self, ms: EmulatorHandle, store_url: str, logs: Path) -> None:
        # PYTHONFAULTHANDLER: a worker that hangs is stopped with SIGABRT, which then prints every thread's stack.
        self.env = {
            **os.environ,
            **ms.env,
            "MSCLKID_STORE_URL": store_url,
            "PYTHONPATH": str(REPO),
            "PYTHONFAULTHANDLER": "1",
        }
        self.env.pop("MSCLKID_FAULT_POINT", None)
        self.logs = logs
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, *args: str) -> subprocess.Popen[str]:
        n = len(self.procs)
        code = "import sys; from msclkid_middleware.cli import main; sys.exit(main(sys.argv[1:]))"
        with (self.logs / f"worker{n}.out").open("w") as out, (self.logs / f"worker{n}.err").open("w") as err:
            # The child has its own copies of the descriptors; ours close at once.
            proc = subprocess.Popen(
                [sys.executable, "-c", code, "worker", *args], env=self.env, stdout=out, stderr=err, text=True
            )
        self.procs.append(proc)
        return proc

    def output(self, proc: subprocess.Popen[str]) -> tuple[str, str]:
        n = self.procs.index(proc)
        return (self.logs / f"worker{n}.out").read_text(), (self.logs / f"worker{n}.err").read_text()

    def wait(self, proc: subprocess.Popen[str], timeout: float = 120) -> str:
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)  # its stacks go to its stderr (PYTHONFAULTHANDLER)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
            out, err = self.output(proc)
            raise AssertionError(
                f"the worker did not stop within {timeout} s of SIGTERM\n--- stdout\n{out[-2000:]}\n--- stderr\n"
                f"{err[-4000:]}"
            ) from None
        out, err = self.output(proc)
        assert proc.returncode == 0, err[-3000:]
        assert "worker stopped" in out
        return out

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


@pytest.fixture
def workers(ms: EmulatorHandle, pg_url: str, tmp_path: Path) -> Iterator[Workers]:
    w = Workers(ms, pg_url, tmp_path)
    yield w
    w.stop_all()


@pytest.fixture
def tracker(ms: EmulatorHandle, pg_url: str, clock: FakeClock) -> Iterator[ConversionTracker]:
    t = ConversionTracker(settings=Settings.from_env(ms.env), store_url=pg_url, clock=clock)
    yield t
    t.close()


def seed(tracker: ConversionTracker, clock: FakeClock, numbers: range, *, hosts: int = 4, chunk: int = 2500) -> None:
    """Record events as ``hosts`` web processes would, concurrently, each through the shop's own
    connection with ``chunk`` events per transaction (the transactional outbox at scale)."""
    errors: list[BaseException] = []

    def host(part: range) -> None:
        try:
            with psycopg.connect(POSTGRES_URL) as app:
                for start in range(part.start, part.stop, chunk):
                    with app.transaction():
                        for n in range(start, min(start + chunk, part.stop)):
                            record(tracker, clock, n, connection=app)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    step = -(-len(numbers) // hosts)
    threads = [
        threading.Thread(target=host, args=(range(s, min(s + step, numbers.stop)),))
        for s in range(numbers.start, numbers.stop, step)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []


def rows(schema: str) -> list[dict[str, Any]]:
    with psycopg.connect(POSTGRES_URL) as conn:
        cur = conn.execute(
            sql.SQL(
                "SELECT id, payload, state, attempts, tracking_id, lease_token FROM {}.msclkid_outbox ORDER BY id"
            ).format(sql.Identifier(schema))
        )
        names = [d.name for d in cur.description or ()]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def state_count(schema: str, state: str) -> int:
    with psycopg.connect(POSTGRES_URL) as conn:
        found = conn.execute(
            sql.SQL("SELECT count(*) FROM {}.msclkid_outbox WHERE state = %s").format(sql.Identifier(schema)),
            (state,),
        ).fetchone()
    return int(found[0]) if found else 0


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


def click_of(payload: str | dict[str, Any]) -> str:
    data = json.loads(payload) if isinstance(payload, str) else payload
    return str(data["MicrosoftClickId"])


def delivered_by(out: str) -> int:
    found = re.search(r"worker stopped: (\d+) delivered", out)
    assert found is not None, out
    return int(found.group(1))


def assert_each_accepted_once(ms: EmulatorHandle, expected: int) -> Counter[str]:
    """Every event accepted exactly once; returns how often each click was received at all."""
    received = ms.received("offline")
    accepted = Counter(click_of(i.payload) for i in received if i.outcome == "accepted")
    assert len(accepted) == expected
    assert set(accepted.values()) == {1}
    # Anything received again was a resend Microsoft already had: recognised as a duplicate.
    assert {i.outcome for i in received} <= {"accepted", "duplicate"}
    return Counter(click_of(i.payload) for i in received)


def test_20000_events_by_four_worker_processes_each_delivered_exactly_once(
    ms: EmulatorHandle, tracker: ConversionTracker, clock: FakeClock, pg_schema: str, workers: Workers
) -> None:
    total = 20_000
    started = time.monotonic()
    seed(tracker, clock, range(total))
    print(f"seeded in {time.monotonic() - started:.1f} s")
    assert tracker.store.open_count() == total

    # A stalled worker holds 500 rows under a 1-second lease and wakes up after the others took over.
    stalled = tracker.store.claim(owner="stalled", limit=500, now=clock(), lease_seconds=1)
    assert len(stalled) == 500
    expires = stalled[0].lease_expires_at
    assert expires is not None
    time.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds() + 0.2))

    procs = [workers.start("--drain", "--batch-size", "250", "--lease-seconds", "120") for _ in range(4)]
    outputs = [workers.wait(p) for p in procs]
    print(f"delivered in {time.monotonic() - started:.1f} s")
    shares = [delivered_by(out) for out in outputs]
    assert sum(shares) == total
    assert sum(1 for s in shares if s > 0) >= 2  # the work really was shared

    received = assert_each_accepted_once(ms, total)
    assert set(received.values()) == {1}  # not even a duplicate: no row was ever sent twice
    stored = rows(pg_schema)
    assert len(stored) == total
    assert {r["state"] for r in stored} == {"delivered"}
    stalled_ids = {r.id for r in stalled}
    # Each row claimed once, except the stalled ones: claimed again only after their lease expired.
    assert Counter(r["attempts"] for r in stored if r["id"] not in stalled_ids) == {1: total - 500}
    assert {r["attempts"] for r in stored if r["id"] in stalled_ids} == {2}
    # The delivering request's TrackingId is on every row: the worker that sent a row recorded it.
    tracking = {click_of(i.payload): i.tracking_id for i in ms.received("offline")}
    assert all(r["tracking_id"] == tracking[click_of(r["payload"])] for r in stored)

    # The stalled worker's acknowledgements are fenced off: nothing changes.
    late = [Outcome(r.id, r.lease_token or "", "rejected", error_code="stale") for r in stalled]
    assert tracker.store.settle(late, now=clock()) == 0
    assert rows(pg_schema) == stored


def test_a_worker_killed_mid_batch_is_finished_by_the_others_after_its_lease(
    ms: EmulatorHandle, tracker: ConversionTracker, clock: FakeClock, pg_schema: str, workers: Workers
) -> None:
    total = 3000
    seed(tracker, clock, range(total))
    ms.inject_fault("offline", "delay", delay=0.2)  # every batch spends a while on the wire
    common = ("--batch-size", "100", "--lease-seconds", "3", "--poll-interval", "0.1")
    victim = workers.start(*common)
    owner = re.compile(rf":{victim.pid}:")

    def victim_rows() -> list[int]:
        with psycopg.connect(POSTGRES_URL) as conn:
            found = conn.execute(
                sql.SQL("SELECT id, lease_owner FROM {}.msclkid_outbox WHERE state = 'in_flight'").format(
                    sql.Identifier(pg_schema)
                )
            ).fetchall()
        return [row_id for row_id, lease_owner in found if owner.search(lease_owner or "")]

    held: list[int] = []

    def holds_a_batch() -> bool:
        held[:] = victim_rows()
        return bool(held)

    wait_for(holds_a_batch, 60, "the victim to hold a batch")
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(10)
    assert victim.returncode == -signal.SIGKILL
    survivors = [workers.start(*common) for _ in range(2)]
    wait_for(lambda: state_count(pg_schema, "delivered") == total, 120, "every event delivered")
    for proc in survivors:
        proc.send_signal(signal.SIGTERM)
    for proc in survivors:
        workers.wait(proc, 30)

    assert_each_accepted_once(ms, total)
    stored = {r["id"]: r for r in rows(pg_schema)}
    assert {r["state"] for r in stored.values()} == {"delivered"}
    assert all(r["lease_token"] is None for r in stored.values())
    # The killed worker's rows were claimed again (after its lease expired) and delivered by another.
    assert len(held) == 100
    assert all(stored[i]["attempts"] >= 2 for i in held)


def test_workers_survive_a_postgresql_restart_without_losing_anything(
    ms: EmulatorHandle, tracker: ConversionTracker, clock: FakeClock, pg_schema: str, workers: Workers
) -> None:
    cluster = local_cluster()
    if cluster is None:
        message = "restarting the PostgreSQL server needs root and pg_ctlcluster on its host (and no RESTART=0)"
        if IN_CI:
            pytest.fail(message + " (CI=true: this test must run; .ci/run runs as root)")
        pytest.skip(message)
    first, later = 4000, 500
    seed(tracker, clock, range(first))
    ms.inject_fault("offline", "delay", delay=0.05)
    procs = [workers.start("--batch-size", "100", "--lease-seconds", "5", "--poll-interval", "0.1") for _ in range(3)]
    wait_for(lambda: len(ms.received("offline")) >= 800, 60, "the workers to be busy")

    started_at = server_start_time()
    restart_server(cluster)  # while they claim, send and settle
    assert server_start_time() > started_at

    # The web side reconnects too: record more events once the server is back.
    recorded = threading.Event()

    def record_more() -> None:
        for n in range(first, first + later):
            record(tracker, clock, n)
        recorded.set()

    recorder = threading.Thread(target=record_more)
    recorder.start()
    recorder.join(60)
    assert recorded.is_set()
    wait_for(lambda: state_count(pg_schema, "delivered") == first + later, 120, "every event delivered")
    for proc in procs:
        assert proc.poll() is None  # still running: the restart did not take any worker down
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        workers.wait(proc, 30)
    assert_each_accepted_once(ms, first + later)
    assert {r["state"] for r in rows(pg_schema)} == {"delivered"}
    # The restart really hit the running workers (their pools logged the lost server).
    logs = "".join(workers.output(p)[1] for p in procs)
    assert re.search(r"shutting down|starting up|terminating connection|Connection refused|server closed", logs)


def server_start_time() -> datetime:
    with psycopg.connect(POSTGRES_URL) as conn:
        found = conn.execute("SELECT pg_postmaster_start_time()").fetchone()
    assert found is not None
    return found[0]  # type: ignore[no-any-return]
