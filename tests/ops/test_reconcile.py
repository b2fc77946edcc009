"""Our per-goal counts beside Microsoft's diagnostics: lines, notes and the not-counted share."""

from __future__ import annotations

from msclkid_middleware.microsoft.goals import GoalConversionSummary
from msclkid_middleware.ops.reconcile import reconcile

from .conftest import T0


def test_reconcile_lines_and_share() -> None:
    summary = GoalConversionSummary("1001", "Purchase", 6, 2, {"NoMatchingClickFound": 2})
    result = reconcile(
        {"Purchase": 8, "Ghost": 3}, {"Purchase": "1001", "Lead": "1002"}, {"1001": summary}, since=T0, until=T0
    )
    lines = {line.goal: line for line in result.lines}
    assert lines["Purchase"].unattributed_share == 0.25
    assert lines["Ghost"].note is not None
    assert "GoalNotFoundOrInactive" in lines["Ghost"].note
    assert lines["Lead"].note == "Microsoft returned no diagnostics for this goal"
    assert result.unattributed_share == 0.25
