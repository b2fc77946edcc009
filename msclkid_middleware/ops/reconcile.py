"""Microsoft's per-goal diagnostics beside the outbox's own counts (``msclkid reconcile``).

Our side is read through :meth:`OutboxStore.scan` only (any store); Microsoft's side is what
``GoalsClient.offline_conversion_report`` and ``daily_reports`` returned.  Nothing here calls Microsoft.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from msclkid_middleware.microsoft.goals import UNATTRIBUTED_HINTS
from msclkid_middleware.ops.csv_format import csv_text, safe_cell
from msclkid_middleware.ops.reports import Format

if TYPE_CHECKING:  # pragma: no cover
    from msclkid_middleware.microsoft.goals import DailyUploadSummary, GoalConversionSummary
    from msclkid_middleware.outbox.base import OutboxStore

__all__ = ["ReconcileLine", "Reconciliation", "reconcile", "render_reconciliation", "sent_per_goal"]


@dataclass(frozen=True, slots=True)
class ReconcileLine:
    """One goal: our delivered count beside Microsoft's counted and not-counted (by reason)."""

    goal: str
    goal_id: str | None
    sent: int
    microsoft_success: int
    microsoft_unattributed: int
    reasons: Mapping[str, int]
    note: str | None = None

    @property
    def unattributed_share(self) -> float:
        total = self.microsoft_success + self.microsoft_unattributed
        return self.microsoft_unattributed / total if total else 0.0


@dataclass(frozen=True, slots=True)
class Reconciliation:
    since: datetime
    until: datetime
    lines: tuple[ReconcileLine, ...]
    days: tuple[DailyUploadSummary, ...] = ()

    @property
    def unattributed_share(self) -> float:
        success = sum(line.microsoft_success for line in self.lines)
        unattributed = sum(line.microsoft_unattributed for line in self.lines)
        total = success + unattributed
        return unattributed / total if total else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "unattributed_share": round(self.unattributed_share, 6),
            "goals": [
                {
                    "goal": line.goal,
                    "goal_id": line.goal_id,
                    "sent": line.sent,
                    "microsoft_success": line.microsoft_success,
                    "microsoft_unattributed": line.microsoft_unattributed,
                    "unattributed_share": round(line.unattributed_share, 6),
                    "reasons": [
                        {"reason": r, "count": n, "hint": UNATTRIBUTED_HINTS.get(r, UNATTRIBUTED_HINTS["Unknown"])}
                        for r, n in sorted(line.reasons.items())
                    ],
                    "note": line.note,
                }
                for line in self.lines
            ],
            "daily": [
                {
                    "upload_date": d.upload_date.isoformat() if d.upload_date else None,
                    "success": d.success,
                    "failure": d.failure,
                    "result_file": d.has_file,
                }
                for d in self.days
            ],
        }


def sent_per_goal(store: OutboxStore, since: datetime, goal: str | None = None) -> dict[str, int]:
    """Offline conversions delivered (to Microsoft) per goal name, recorded since ``since``."""
    sent: Counter[str] = Counter()
    for row in store.scan(since=since, kinds=("offline", "offline_adjustment")):
        if row.state == "delivered" and row.conversion_name and (goal is None or row.conversion_name == goal):
            sent[row.conversion_name] += 1
    return dict(sent)


def reconcile(
    sent: Mapping[str, int],
    goal_ids: Mapping[str, str],
    summaries: Mapping[str, GoalConversionSummary],
    *,
    since: datetime,
    until: datetime,
    days: Iterable[DailyUploadSummary] = (),
) -> Reconciliation:
    """Put our per-goal counts (``sent``) beside Microsoft's ``summaries`` (keyed by goal ID)."""
    names = sorted(set(sent) | set(goal_ids))
    lines = []
    for name in names:
        goal_id = goal_ids.get(name)
        summary = summaries.get(goal_id) if goal_id is not None else None
        note = None
        if goal_id is None:
            note = "no offline goal of this name in the account (GoalNotFoundOrInactive / 5606)"
        elif summary is None:
            note = "Microsoft returned no diagnostics for this goal"
        lines.append(
            ReconcileLine(
                goal=name,
                goal_id=goal_id,
                sent=sent.get(name, 0),
                microsoft_success=summary.success if summary else 0,
                microsoft_unattributed=summary.unattributed if summary else 0,
                reasons=dict(summary.alerts) if summary else {},
                note=note,
            )
        )
    return Reconciliation(since, until, tuple(lines), tuple(days))


def render_reconciliation(result: Reconciliation, fmt: Format) -> str:
    if fmt == "json":
        return json.dumps(result.to_json(), indent=2, sort_keys=True)
    if fmt == "csv":
        header = ["goal", "goal_id", "sent", "microsoft_success", "microsoft_unattributed", "reason", "count"]
        return csv_text(header, _csv_rows(result))
    out_lines = [
        f"Reconciliation {result.since:%Y-%m-%d} .. {result.until:%Y-%m-%d} (UTC upload days)",
        f"{'goal':<24} {'id':>8} {'sent':>7} {'MS success':>10} {'MS not counted':>14} {'share':>6}",
    ]
    by_reason: defaultdict[str, int] = defaultdict(int)
    for line in result.lines:
        out_lines.append(
            f"{line.goal[:24]:<24} {line.goal_id or '-':>8} {line.sent:>7} {line.microsoft_success:>10}"
            f" {line.microsoft_unattributed:>14} {line.unattributed_share:>6.1%}"
        )
        if line.note:
            out_lines.append(f"    note: {line.note}")
        for reason, n in sorted(line.reasons.items()):
            by_reason[reason] += n
            out_lines.append(f"    {reason}: {n}  ({UNATTRIBUTED_HINTS.get(reason, UNATTRIBUTED_HINTS['Unknown'])})")
    if result.days:
        out_lines.append("")
        out_lines.append("Microsoft's daily upload summaries:")
        for d in result.days:
            day = d.upload_date.isoformat() if d.upload_date else "?"
            extra = "  (result file available in the Microsoft Advertising UI)" if d.has_file else ""
            out_lines.append(f"  {day}: {d.success} succeeded, {d.failure} failed{extra}")
    out_lines.append("")
    out_lines.append(
        f"Not counted overall: {result.unattributed_share:.1%}. Microsoft's numbers can lag by up to 6 hours."
    )
    return "\n".join(out_lines)


def _csv_rows(result: Reconciliation) -> Iterator[list[object]]:
    for line in result.lines:
        base = [
            safe_cell(line.goal),
            line.goal_id or "",
            line.sent,
            line.microsoft_success,
            line.microsoft_unattributed,
        ]
        if not line.reasons:
            yield [*base, "", ""]
        for reason, n in sorted(line.reasons.items()):
            yield [*base, reason, n]
