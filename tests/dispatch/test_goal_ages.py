"""Conversions for a goal younger than two hours are held (not dropped) and sent once the goal is old enough."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from msclkid_middleware.capture.clickid import Click
from msclkid_middleware.dispatch.goal_ages import GOAL_MIN_AGE, GoalRegistry
from msclkid_middleware.dispatch.status import Code
from msclkid_middleware.dispatch.tracker import ConversionTracker
from msclkid_middleware.outbox import OutboxStore
from msclkid_middleware.testing import EmulatorHandle
from tests.outbox.conftest import T0, FakeClock, click_id, make_tracker, record


def test_registry_keeps_the_first_creation_time(store: OutboxStore) -> None:
    registry = GoalRegistry(store)
    assert registry.ready_at("1", "Purchase") is None
    first = registry.record("1", "Purchase", T0, goal_id="1001")
    again = registry.record("1", "Purchase", T0 + timedelta(hours=5), goal_id="9")
    assert again == first
    assert (first.goal_id, first.created_at, first.ready_at) == ("1001", T0, T0 + GOAL_MIN_AGE)
    assert registry.get("2", "Purchase") is None  # per account
    # The goal record is not a token: the Microsoft refresh token slot is untouched.
    assert store.load_token("microsoft") is None


def test_young_goal_rows_wait_then_deliver(ms: EmulatorHandle, tmp_path: Path, clock: FakeClock) -> None:
    # The emulator created the goal 30 minutes ago (it would answer 5615); we know it from `goals create`.
    ms.add_goal("Fresh", created_hours_ago=0.5)
    tracker = make_tracker(ms, tmp_path, clock)
    try:
        tracker.goal_registry.record(tracker.account, "Fresh", clock() - timedelta(minutes=30), goal_id="7")
        record(tracker, clock, 1, conversion_name="Fresh")
        record(tracker, clock, 2)  # an old goal is not affected
        report = tracker.flush()
        assert (report.delivered, report.released) == (1, 1)
        held = tracker.status("ord_1")
        assert (held.state, held.last_error_code, held.attempts) == ("pending", Code.GOAL_TOO_NEW, 0)
        assert held.next_attempt_at is not None
        assert held.next_attempt_at > clock() + timedelta(minutes=89)
        assert "younger than 2 hours" in (held.last_error_message or "")
        assert [i.payload["ConversionName"] for i in ms.received("offline")] == ["Purchase"]
        assert tracker.metrics()["held.goal_too_new"] == 1
        # Still too young an hour later: nothing is sent, nothing is lost.
        clock.advance(3600)
        assert tracker.flush().claimed == 0
        # Past the two hours (the emulator's own clock is real, so make its goal old as well).
        ms.add_goal("Fresh", created_hours_ago=3)
        clock.advance(3600 + 120)
        assert tracker.flush().delivered == 1
        assert tracker.status("ord_1").state == "delivered"
    finally:
        tracker.close()


def test_unknown_goal_age_is_sent_at_once(ms: EmulatorHandle, tracker: ConversionTracker, clock: FakeClock) -> None:
    record(tracker, clock, 1)
    assert tracker.flush().delivered == 1


def test_click_time_is_kept_with_the_row(tracker: ConversionTracker, clock: FakeClock) -> None:
    click = Click(click_id(5), clock() - timedelta(minutes=40), "url")
    record(tracker, clock, 5, click=click)
    (row,) = tracker.store.find("ord_5")
    assert row.consent is not None
    assert row.consent["click_captured_at"] == click.captured_at.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_a_5615_answer_waits_exactly_until_the_known_goal_age(
    ms: EmulatorHandle, tmp_path: Path, clock: FakeClock
) -> None:
    # Microsoft still thinks the goal is new (its clock, its rules); we know it was created 2h05m ago.
    ms.add_goal("Skewed", created_hours_ago=1)
    tracker = make_tracker(ms, tmp_path, clock)
    try:
        tracker.goal_registry.record(tracker.account, "Skewed", clock() - timedelta(hours=2, minutes=5))
        record(tracker, clock, 1, conversion_name="Skewed")
        assert tracker.flush().retried == 1
        status = tracker.status("ord_1")
        assert status.last_error_code is not None
        assert status.last_error_code.startswith("5615")
        assert status.next_attempt_at == clock() + timedelta(seconds=60)  # not the 30-minute default
    finally:
        tracker.close()
