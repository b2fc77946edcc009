"""``msclkid send-test``: one conversion sent now, Microsoft's answer printed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from msclkid_middleware.cli import main
from msclkid_middleware.outbox import open_store
from msclkid_middleware.testing import EmulatorHandle

from .conftest import EMAIL, FakeClock, assert_clean, click_id, make_tracker, record, run


def test_send_test_sends_one_conversion_now_and_records_it(
    env: Path, ms: EmulatorHandle, capsys: pytest.CaptureFixture[str]
) -> None:
    clock = FakeClock()
    tracker = make_tracker(ms, env, clock)
    record(tracker, clock, 1)  # a queued conversion the test must not send
    tracker.close()
    ms.add_click(click_id(7), datetime.now(UTC) - timedelta(hours=3))
    code = main(["send-test", "--click-id", click_id(7), "--goal", "Purchase", "--value", "1.5", "--currency", "USD"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "outcome: delivered" in out
    assert "PartialErrors: none" in out
    tracking = next(line for line in out.splitlines() if line.startswith("TrackingId: ")).split(": ")[1]
    [item] = ms.received("offline")
    assert (item.payload["MicrosoftClickId"], item.tracking_id) == (click_id(7), tracking)
    store = open_store(f"sqlite:///{env / 'outbox.db'}")
    try:
        rows = {r.event_id: r for r in store.scan()}
        assert rows["ord_1"].state == "pending"
        assert rows["ord_1"].attempts == 0
        (sent,) = [r for r in rows.values() if r.event_id.startswith("send-test-")]
        assert (sent.state, sent.tracking_id) == ("delivered", tracking)
    finally:
        store.close()


def test_send_test_prints_the_rejection(env: Path, ms: EmulatorHandle) -> None:
    result = run("send-test", "--click-id", click_id(8), "--goal", "Purchasee", "--email", EMAIL)
    assert result.exit_code == 1
    assert "outcome: rejected" in result.output
    assert "PartialErrors: 5606 OfflineConversionNameInvalid" in result.output
    assert "TrackingId: " in result.output
    assert_clean(result.output, ms)
    again = run("send-test", "--click-id", "bad id", "--goal", "Purchase")
    assert again.exit_code == 1
    assert "click" in again.output


def test_send_test_for_a_goal_younger_than_two_hours_is_held(env: Path, ms: EmulatorHandle) -> None:
    assert run("goals", "create", "Brand new", "--currency", "USD").exit_code == 0
    result = run("send-test", "--click-id", click_id(9), "--goal", "Brand new")
    assert result.exit_code == 0, result.output
    assert "outcome: pending" in result.output
    assert "waiting: goal_too_new" in result.output
    assert "next attempt: " in result.output
    assert ms.received("offline") == []
