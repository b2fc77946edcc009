"""``msclkid worker | flush | status | retry-dead`` through ``main(argv)`` on a real outbox and the emulator."""

from __future__ import annotations

from pathlib import Path

import pytest

from msclkid_middleware.cli import main
from msclkid_middleware.outbox import open_store
from msclkid_middleware.testing import EmulatorHandle

from .conftest import FakeClock, make_tracker, record


def test_status_of_an_empty_outbox(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    open_store(f"sqlite:///{env / 'outbox.db'}").close()
    assert main(["status"]) == 0
    assert "the outbox is empty" in capsys.readouterr().out


def test_flush_then_status_per_goal_and_per_event(
    env: Path, ms: EmulatorHandle, capsys: pytest.CaptureFixture[str]
) -> None:
    clock = FakeClock()
    tracker = make_tracker(ms, env, clock)
    for n in range(3):
        record(tracker, clock, n)
    record(tracker, clock, 9, conversion_name="Nope")
    tracker.close()

    assert main(["flush"]) == 0
    assert "flush: 3 delivered, 1 rejected, 0 dead" in capsys.readouterr().out

    assert main(["status"]) == 0
    table = capsys.readouterr().out
    assert "open rows: 0" in table
    lines = {tuple(line.split()[:3]): line.split()[-1] for line in table.splitlines()[1:] if line.startswith("offline")}
    assert lines[("offline", "Purchase", "delivered")] == "3"
    assert lines[("offline", "Nope", "rejected")] == "1"

    assert main(["status", "ord_9"]) == 0
    detail = capsys.readouterr().out
    assert "offline ord_9: rejected" in detail
    assert "5606 OfflineConversionNameInvalid" in detail

    assert main(["status", "ord_404"]) == 1
    assert "no recorded event with event_id 'ord_404'" in capsys.readouterr().err


def test_retry_dead_requeues(env: Path, ms: EmulatorHandle, capsys: pytest.CaptureFixture[str]) -> None:
    from msclkid_middleware.microsoft import RetryPolicy

    clock = FakeClock()
    tracker = make_tracker(ms, env, clock, retry_policy=RetryPolicy(max_attempts=1, rng=lambda: 0.5))
    ms.inject_fault("offline", "http", status=503, times=1)
    record(tracker, clock, 1)
    assert tracker.flush().dead == 1
    tracker.close()
    assert main(["retry-dead"]) == 0
    assert "requeued 1 event(s)" in capsys.readouterr().out
    assert main(["worker", "--drain"]) == 0
    assert "worker stopped: 1 delivered" in capsys.readouterr().out


def test_flush_shows_a_progress_bar_on_large_backlogs(
    env: Path, ms: EmulatorHandle, capsys: pytest.CaptureFixture[str]
) -> None:
    clock = FakeClock()
    tracker = make_tracker(ms, env, clock)
    for n in range(1000):
        record(tracker, clock, n)
    tracker.close()
    assert main(["flush"]) == 0
    captured = capsys.readouterr()
    # Not a terminal here, so click prints the label only (the bar itself needs a TTY).
    assert "Delivering" in captured.err
    assert "flush: 1000 delivered" in captured.out
    record_small = make_tracker(ms, env, clock)
    record(record_small, clock, 5000)
    record_small.close()
    assert main(["flush"]) == 0
    assert "Delivering" not in capsys.readouterr().err


def test_a_bad_store_url_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MSCLKID_STORE_URL", "mysql://nope")
    assert main(["status"]) == 1
    assert "MSCLKID_STORE_URL must start with sqlite:///" in capsys.readouterr().err
