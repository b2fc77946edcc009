"""The background thread: delivers on its own, stops gracefully, survives errors and fork()."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from msclkid_middleware.dispatch.tracker import ConversionTracker
from msclkid_middleware.errors import StoreError
from msclkid_middleware.testing import EmulatorHandle
from tests.outbox.conftest import FakeClock, make_tracker, record


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_background_thread_delivers_and_stops(ms: EmulatorHandle, tmp_path: Path) -> None:
    clock = FakeClock()
    tracker = make_tracker(ms, tmp_path, clock, poll_interval=0.05)
    try:
        assert tracker.shutdown(1) is True  # never started: nothing to stop
        tracker.start()
        tracker.start()  # idempotent
        for n in range(5):
            record(tracker, clock, n)
        assert wait_for(lambda: all(tracker.status(f"ord_{n}").state == "delivered" for n in range(5)))
        assert tracker.shutdown(5) is True
        assert len(ms.received("offline")) == 5
    finally:
        tracker.close()


def test_stopping_releases_claimed_rows_that_were_not_sent(ms: EmulatorHandle, tmp_path: Path) -> None:
    clock = FakeClock()
    tracker = make_tracker(ms, tmp_path, clock)
    try:
        record(tracker, clock, 1)
        tracker.record_uet_event("evt_1", "lead", clock(), anonymous_id="a" * 32)
        answers = iter([False, True])  # stop requested after the first request
        report = tracker.dispatcher.step(should_stop=lambda: next(answers))
        assert (report.claimed, report.delivered, report.released, report.requests) == (2, 1, 1, 1)
        released = [r for r in tracker.store.find("ord_1") + tracker.store.find("evt_1") if r.state != "delivered"]
        (row,) = released
        assert (row.state, row.attempts, row.lease_token) == ("pending", 0, None)
        assert tracker.flush().delivered == 1
    finally:
        tracker.close()


def test_worker_errors_go_to_on_error_and_a_failing_callback_is_contained(ms: EmulatorHandle, tmp_path: Path) -> None:
    seen: list[BaseException] = []

    def on_error(exc: BaseException) -> None:
        seen.append(exc)
        raise RuntimeError("the app's callback is broken too")

    clock = FakeClock()
    tracker = make_tracker(ms, tmp_path, clock, poll_interval=0.05, on_error=on_error)
    try:
        record(tracker, clock, 1)
        # Break the database under the worker: every step now fails inside the store.
        with sqlite3.connect(tmp_path / "outbox.db") as conn:
            conn.execute("DROP TABLE outbox")
        tracker.start()
        assert wait_for(lambda: len(seen) >= 1)
        assert isinstance(seen[0], StoreError)
        assert tracker._worker is not None
        assert tracker._worker.alive
        assert tracker.shutdown(5) is True
        assert tracker.metrics()["worker_errors.StoreError"] >= 1
    finally:
        tracker.close()


def test_a_forked_child_gets_its_own_worker(ms: EmulatorHandle, tmp_path: Path) -> None:
    clock = FakeClock()
    tracker: ConversionTracker = make_tracker(ms, tmp_path, clock, poll_interval=0.05)
    try:
        tracker.start()
        record(tracker, clock, 1)
        assert wait_for(lambda: tracker.status("ord_1").state == "delivered")
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 1
            try:
                record(tracker, clock, 2)  # detects the new pid and starts a worker in this process
                if wait_for(lambda: tracker.status("ord_2").state == "delivered"):
                    code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        # The parent's own worker was untouched and still delivers.
        record(tracker, clock, 3)
        assert wait_for(lambda: tracker.status("ord_3").state == "delivered")
        assert len(ms.received("offline", outcome="accepted")) == 3
    finally:
        tracker.close()
