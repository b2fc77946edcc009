"""GoalsClient against the emulator: goals, per-goal diagnostics in windows, daily summaries, UET auth key."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from msclkid_middleware.errors import ApiFault, AuthenticationError, ValidationError
from msclkid_middleware.microsoft import CampaignManagementClient
from msclkid_middleware.microsoft.goals import ConversionGoal, GoalsClient, report_windows
from msclkid_middleware.testing import EmulatorHandle, run_emulator

from .conftest import make_campaign
from .ms_helpers import click_id, wire_time


def test_add_then_list_and_query_goals(ms: EmulatorHandle, campaign: CampaignManagementClient) -> None:
    goals = GoalsClient(campaign)
    new = ConversionGoal(
        "Qualified lead", revenue_type="FixedValue", revenue_value=25.0, currency="EUR", count_type="Unique",
        conversion_window_minutes=7 * 1440, category="SubmitLeadForm", enhanced=False,
    )  # fmt: skip
    goal_id = goals.add_goal(new)
    assert goal_id.isdigit()
    listed = {g.name: g for g in goals.list_goals()}
    assert set(listed) == {"Purchase", "Lead", "Qualified lead"}
    got = listed["Qualified lead"]
    assert (got.id, got.revenue_type, got.revenue_value, got.currency) == (goal_id, "FixedValue", 25.0, "EUR")
    assert (got.count_type, got.conversion_window_minutes, got.category, got.active) == (
        "Unique", 10080, "SubmitLeadForm", True
    )  # fmt: skip
    assert listed["Purchase"].enhanced is True
    assert [g.name for g in goals.query_goals([goal_id, "424242"])] == ["Qualified lead"]
    # The emulator validates uploads against the goals created through the API (and they are new: 5615).
    [result] = campaign.apply_offline_conversions(
        [
            {
                "ConversionName": "Qualified lead",
                "ConversionTime": wire_time(datetime.now(UTC) - timedelta(minutes=5)),
                "MicrosoftClickId": click_id(1),
            }
        ]
    )
    assert result.code == 5615


def test_add_goals_reports_each_failure(campaign: CampaignManagementClient) -> None:
    goals = GoalsClient(campaign)
    results = goals.add_goals([ConversionGoal("Purchase"), ConversionGoal("Fresh")])
    assert results[0][0] is None
    assert "5317 ConversionGoalNameAlreadyExists" in (results[0][1] or "")
    assert results[1][0] is not None
    assert results[1][1] is None
    with pytest.raises(ApiFault, match="5317"):
        goals.add_goal(ConversionGoal("Purchase"))


def test_goal_values_are_validated() -> None:
    with pytest.raises(ValidationError):
        ConversionGoal("x" * 101)
    with pytest.raises(ValidationError):
        ConversionGoal("x", conversion_window_minutes=200000)


def test_report_windows_are_day_aligned_and_at_most_seven_days() -> None:
    start = datetime(2026, 11, 1, 15, 0, tzinfo=UTC)
    windows = list(report_windows(start, datetime(2026, 11, 20, 1, 0, tzinfo=UTC)))
    assert [(a.day, b.day) for a, b in windows] == [(1, 7), (8, 14), (15, 20)]
    assert all(b - a < timedelta(days=7) for a, b in windows)
    assert len(list(report_windows(start, start))) == 1
    with pytest.raises(ValidationError):
        list(report_windows(start, start - timedelta(days=1)))


def test_report_by_goal_ids_is_split_and_merged() -> None:
    with run_emulator(strict_click_matching=True) as ms, make_campaign(ms) as campaign:
        now = datetime.now(UTC)
        ms.add_click(click_id(1), now - timedelta(hours=3))
        extra = [ms.add_goal(f"Goal {n}") for n in range(25)]
        items = [
            {"ConversionName": "Purchase", "ConversionTime": wire_time(now - timedelta(hours=1)), "MicrosoftClickId": c}
            for c in (click_id(1), click_id(1), click_id(2))
        ]
        campaign.apply_offline_conversions(items)
        goals = GoalsClient(campaign)
        ids = ["1001", *(str(g.id) for g in extra)]
        report = goals.offline_conversion_report(ids, now - timedelta(days=20), now)
        # 27 goals and 21 days: 2 goal chunks x 3 windows (+1 when the range spans a partial day).
        calls = ms.requests("reports")
        assert len(calls) >= 6
        purchase = report["1001"]
        assert (purchase.conversion_name, purchase.success, purchase.unattributed) == ("Purchase", 1, 2)
        assert purchase.alerts == {"DuplicateConversionKey": 1, "NoMatchingClickFound": 1}
        assert purchase.success_rate == pytest.approx(1 / 3)
        assert sum(day.success for day in purchase.days) == 1
        assert report[str(extra[-1].id)].total == 0
        daily = goals.daily_reports(now - timedelta(days=1), now)
        assert [(d.success, d.failure, d.has_file) for d in daily] == [(3, 0, True)]
        assert daily[0].file_expires_at is not None
        assert daily[0].file_expires_at > now
        assert "FileUrl" not in repr(daily[0])
        assert (daily[0].file_url or "") not in repr(daily[0])


def test_uet_auth_key_in_both_shapes() -> None:
    for shape in ("service", "guide"):
        with run_emulator(uet_auth_key_shape=shape) as ms, make_campaign(ms) as campaign:
            goals = GoalsClient(campaign)
            assert goals.uet_tag_auth_key(ms.env["UET_TAG_ID"]) == ms.env["UET_API_TOKEN"]
            with pytest.raises(ApiFault, match="no UET auth key for tag 1"):
                goals.uet_tag_auth_key("1")


def test_faults_become_typed_errors(ms: EmulatorHandle, campaign: CampaignManagementClient) -> None:
    goals = GoalsClient(campaign)
    ms.inject_fault("goals", "http", status=401, code=105, times=2)
    with pytest.raises(AuthenticationError):
        goals.list_goals()
