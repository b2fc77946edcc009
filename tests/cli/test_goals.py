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
    assert "5317" in duplicate.output
    assert run("goals", "create", "X", "--category", "nonsense", "--currency", "EUR").exit_code == 2
    assert run("goals", "create", "X", "--revenue", "fixed", "--currency", "EUR").exit_code == 2


def test_goals_need_microsoft_settings(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MSADS_DEVELOPER_TOKEN")
    result = run("goals", "list")
    assert result.exit_code == 1
    assert "not configured" in result.output


def test_goals_list_shows_every_field_that_matters_for_offline_goals(env: Path, ms: EmulatorHandle) -> None:
    ms.add_goal("Store visit", scope="Customer", exclude_from_bidding=True)
    listed = run("goals", "list")
    assert listed.exit_code == 0, listed.output
    header = listed.output.splitlines()[0].split()
    for column in ("status", "scope", "bidding", "attribution", "view-thru", "auto", "tag"):
        assert column in header
    line = next(line for line in listed.output.splitlines() if "Store visit" in line)
    assert "Customer" in line
    assert "excluded" in line
    # AttributionModelType, the view-through window and TagId are "not applicable for offline conversion goals".
    assert line.split().count("n/a") == 3
    assert " off " in line  # IsAutoGoal


def test_goals_update_changes_only_what_is_given(env: Path, ms: EmulatorHandle) -> None:
    result = run(
        "goals", "update", "Purchase", "--count", "unique", "--window", "7d", "--revenue", "fixed", "--value", "25",
        "--currency", "eur", "--exclude-from-bidding",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "updated goal 'Purchase'" in result.output
    [goal] = [g for g in ms.state()["goals"] if g["name"] == "Purchase"]
    assert (goal["count_type"], goal["conversion_window_minutes"]) == ("Unique", 10080)
    assert (goal["revenue_type"], goal["revenue_value"], goal["currency"]) == ("FixedValue", 25.0, "EUR")
    assert goal["exclude_from_bidding"] is True
    assert goal["enhanced"] is True  # untouched
    [request] = [r for r in ms.requests("goals") if r.method == "PUT"]
    assert request.status == 200
    renamed = run("goals", "update", "Purchase", "--rename", "Lead")
    assert renamed.exit_code == 1
    assert "5317" in renamed.output
    assert "ConversionGoalNameAlreadyExists" in renamed.output
    paused = run("goals", "update", "Lead", "--status", "paused")
    assert paused.exit_code == 0
    assert [g["status"] for g in ms.state()["goals"] if g["name"] == "Lead"] == ["Paused"]
    refused = run("goals", "update", "Lead", "--attribution-model", "LastTouch")
    assert refused.exit_code == 1
    assert "not applicable for offline conversion goals" in refused.output
    missing = run("goals", "update", "Nope", "--status", "paused")
    assert missing.exit_code == 1
    assert "no goal named exactly 'Nope'" in missing.output
    assert run("goals", "update", "Lead").exit_code == 1  # nothing to change


def test_goal_names_a_spreadsheet_would_run_are_refused(env: Path, ms: EmulatorHandle) -> None:
    refused = run("goals", "create", "=SUM(A1)", "--currency", "USD")
    assert refused.exit_code == 2
    assert "must not start with" in refused.output
    assert not [g for g in ms.state()["goals"] if g["name"].startswith("=")]
    assert run("goals", "update", "Purchase", "--rename", "+Purchase").exit_code == 2
