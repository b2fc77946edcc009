"""``msclkid goals [list | check | create]`` against the emulator's goals."""

from __future__ import annotations

from pathlib import Path

import pytest

from msclkid_middleware.testing import EmulatorHandle

from .conftest import FakeClock, make_tracker, record, run


def test_goals_list_check_and_create(env: Path, ms: EmulatorHandle, monkeypatch: pytest.MonkeyPatch) -> None:
    ms.add_goal("Old paused", status="Paused")
    monkeypatch.setenv("MSADS_CONVERSION_GOALS", "Purchase,purchase ,Old paused")
    result = run("goals")
    assert result.exit_code == 1, result.output
    assert "Purchase" in result.output
    assert "variable USD" in result.output
    assert "ok   'Purchase'" in result.output
    assert "did you mean 'Purchase'?" in result.output
    assert "FAIL 'Old paused': status Paused" in result.output
    created = run(
        "goals", "create", "Phone sale", "--revenue", "fixed", "--value", "40", "--currency", "eur",
        "--count", "unique", "--window", "7d", "--category", "submit-lead-form", "--enhanced",
    )  # fmt: skip
    assert created.exit_code == 0, created.output
    assert "created offline goal 'Phone sale'" in created.output
    assert "held until" in created.output
    listed = run("goals", "list")
    line = next(line for line in listed.output.splitlines() if "Phone sale" in line)
    assert "fixed 40 EUR" in line
    assert "7 d" in line or "168.0 h" in line
    assert "too young until" in line
    [goal] = [g for g in ms.state()["goals"] if g["name"] == "Phone sale"]
    assert (goal["count_type"], goal["conversion_window_minutes"], goal["enhanced"]) == ("Unique", 10080, True)
    monkeypatch.setenv("MSADS_CONVERSION_GOALS", "Phone sale")
    check = run("goals", "check")
    assert check.exit_code == 1
    assert "younger than 2 hours" in check.output
    # A conversion for it is held, not sent.
    clock = FakeClock()
    tracker = make_tracker(ms, env, clock)
    try:
        record(tracker, clock, 1, conversion_name="Phone sale")
        assert tracker.flush().delivered == 0
        assert tracker.status("ord_1").last_error_code == "goal_too_new"
    finally:
        tracker.close()
    duplicate = run("goals", "create", "Phone sale", "--currency", "EUR")
    assert duplicate.exit_code == 1
    assert "4803" in duplicate.output
    assert run("goals", "create", "X", "--category", "nonsense", "--currency", "EUR").exit_code == 2
    assert run("goals", "create", "X", "--revenue", "fixed", "--currency", "EUR").exit_code == 2


def test_goals_need_microsoft_settings(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MSADS_DEVELOPER_TOKEN")
    result = run("goals", "list")
    assert result.exit_code == 1
    assert "not configured" in result.output
