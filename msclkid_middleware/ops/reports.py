"""The reconciliation report (``msclkid report``) and Microsoft's diagnostics beside it (``msclkid reconcile``).

Both read the outbox only through :meth:`OutboxStore.scan` (any store: SQLite, PostgreSQL), one pass, constant
memory per goal.  The report counts, per goal and state, what was delivered, rejected (by code), is pending,
dead (by reason), held, and *probably deduplicated by Microsoft* (a delivered conversion whose click ID and
ConversionTime an earlier delivered row already used: Microsoft keeps only the first), and lists the
"uploaded but probably not counted" warnings.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from msclkid_middleware.conversions import OFFLINE_MAX_AGE, parse_time
from msclkid_middleware.dispatch.goal_ages import GoalRegistry
from msclkid_middleware.dispatch.status import Code
from msclkid_middleware.microsoft.goals import UNATTRIBUTED_HINTS

if TYPE_CHECKING:  # pragma: no cover
    from msclkid_middleware.microsoft.goals import DailyUploadSummary, GoalConversionSummary
    from msclkid_middleware.outbox.base import OutboxRow, OutboxStore

__all__ = [
    "CLICK_WAIT",
    "EXPIRY_WARNING",
    "GoalCounts",
    "ReconcileLine",
    "Reconciliation",
    "Report",
    "Warning",
    "build_report",
    "reconcile",
    "render_report",
]

#: "As a best practice after an ad click you should wait an hour before uploading offline conversions."
CLICK_WAIT = timedelta(hours=1)
#: Warn about open conversions this close to Microsoft's 90-day limit.
EXPIRY_WARNING = timedelta(days=10)
Format = Literal["table", "json", "csv"]
_CAMPAIGN = ("offline", "offline_adjustment", "online_adjustment")


@dataclass
class GoalCounts:
    """One goal (and kind): rows per outcome; ``rejected``/``dead`` are broken down by code/reason."""

    goal: str
    kind: str
    delivered: int = 0
    deduplicated: int = 0
    pending: int = 0
    held: int = 0
    paused: int = 0
    in_flight: int = 0
    suppressed: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    dead: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return (
            self.delivered + self.pending + self.held + self.paused + self.in_flight + self.suppressed
            + sum(self.rejected.values()) + sum(self.dead.values())
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Warning:
    """An "uploaded but probably not counted" finding: ``code``, the goal, how many rows and what to do."""

    code: str
    goal: str
    count: int
    message: str


@dataclass(frozen=True, slots=True)
class Report:
    since: datetime | None
    generated_at: datetime
    goals: tuple[GoalCounts, ...]
    warnings: tuple[Warning, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "since": self.since.isoformat() if self.since else None,
            "generated_at": self.generated_at.isoformat(),
            "goals": [{**asdict(g), "total": g.total} for g in self.goals],
            "warnings": [asdict(w) for w in self.warnings],
        }


def _time(payload: Mapping[str, Any], name: str) -> datetime | None:
    try:
        return parse_time(payload[name], name) if name in payload else None
    except ValueError:
        return None


def build_report(
    store: OutboxStore,
    *,
    since: datetime | None = None,
    goal: str | None = None,
    known_goals: Sequence[str] = (),
    registry: GoalRegistry | None = None,
    now: datetime | None = None,
) -> Report:
    """Count the outbox per goal and state and find the "probably not counted" cases (see module doc)."""
    now = now or datetime.now(UTC)
    counts: dict[tuple[str, str], GoalCounts] = {}
    warn: Counter[tuple[str, str]] = Counter()
    seen_keys: set[tuple[str, str, str]] = set()
    ready_cache: dict[tuple[str, str], datetime | None] = {}
    for row in store.scan(since=since):
        name = row.conversion_name or "-"
        if goal is not None and name != goal:
            continue
        entry = counts.setdefault((name, row.kind), GoalCounts(name, row.kind))
        _count(entry, row, seen_keys)
        if row.kind in _CAMPAIGN:
            _warnings(row, name, now, known_goals, registry, ready_cache, warn)
    goals = tuple(sorted(counts.values(), key=lambda g: (g.goal, g.kind)))
    warnings = tuple(Warning(code, name, n, _WARNING_TEXT[code]) for (code, name), n in sorted(warn.items()))
    return Report(since, now, goals, warnings)


def _count(entry: GoalCounts, row: OutboxRow, seen: set[tuple[str, str, str]]) -> None:
    state = row.state
    if state == "delivered":
        key = None
        if row.kind == "offline" and row.payload.get("MicrosoftClickId"):
            key = (row.account, str(row.payload["MicrosoftClickId"]), str(row.payload.get("ConversionTime")))
        if key is not None and key in seen:
            entry.deduplicated += 1  # Microsoft ignores a second conversion with the same click ID and time
        else:
            entry.delivered += 1
        if key is not None:
            seen.add(key)
    elif state == "pending":
        if row.last_error_code == Code.GOAL_TOO_NEW:
            entry.held += 1
        else:
            entry.pending += 1
    elif state in ("rejected", "dead"):
        bucket = entry.rejected if state == "rejected" else entry.dead
        code = row.last_error_code or "unknown"
        bucket[code] = bucket.get(code, 0) + 1
    elif state == "paused":
        entry.paused += 1
    elif state == "in_flight":
        entry.in_flight += 1
    else:
        entry.suppressed += 1


def _warnings(
    row: OutboxRow,
    name: str,
    now: datetime,
    known_goals: Sequence[str],
    registry: GoalRegistry | None,
    cache: dict[tuple[str, str], datetime | None],
    warn: Counter[tuple[str, str]],
) -> None:
    sent = row.state == "delivered"
    open_ = row.state in ("pending", "paused", "in_flight")
    if (known_goals and name not in known_goals) or (row.last_error_code or "").startswith("5606"):
        warn["unknown_goal", name] += 1
    if registry is not None and row.kind != "online_adjustment":
        key = (row.account, name)
        if key not in cache:
            cache[key] = registry.ready_at(*key)
        ready = cache[key]
        if ready is not None and ((sent and row.delivered_at and row.delivered_at < ready) or (open_ and ready > now)):
            warn["young_goal", name] += 1
    elif (row.last_error_code or "").startswith("5615"):
        warn["young_goal", name] += 1
    clicked = _click_time(row)
    if clicked is not None:
        uploaded = row.delivered_at if sent else (now if open_ else None)
        if uploaded is not None and uploaded - clicked < CLICK_WAIT:
            warn["soon_after_click", name] += 1
    when = _time(row.payload, "ConversionTime")
    if open_ and when is not None and when + OFFLINE_MAX_AGE - now < EXPIRY_WARNING:
        warn["near_90_days", name] += 1


def _click_time(row: OutboxRow) -> datetime | None:
    value = (row.consent or {}).get("click_captured_at")
    try:
        return parse_time(value, "click_captured_at") if value else None
    except ValueError:
        return None


_WARNING_TEXT = {
    "young_goal": "goal younger than 2 hours when sent (or held until it is): Microsoft may not apply these;"
    " held rows are sent automatically once the goal is 2 hours old",
    "soon_after_click": "uploaded less than an hour after the click: Microsoft advises waiting an hour,"
    " such conversions may not be attributed",
    "unknown_goal": "goal name not configured (MSADS_CONVERSION_GOALS) or unknown to Microsoft (5606):"
    " names must match exactly, including case and spaces",
    "near_90_days": "ConversionTime is close to Microsoft's 90-day limit: deliver these soon"
    " (run a worker; check paused accounts)",
}


# -- rendering -------------------------------------------------------------------------------------------------


def _codes(values: Mapping[str, int]) -> str:
    return ", ".join(f"{code} x{n}" for code, n in sorted(values.items())) or "-"


def render_report(report: Report, fmt: Format) -> str:
    if fmt == "json":
        return json.dumps(report.to_json(), indent=2, sort_keys=True)
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["goal", "kind", "state", "code", "count"])
        for g in report.goals:
            for state in ("delivered", "deduplicated", "pending", "held", "paused", "in_flight", "suppressed"):
                if getattr(g, state):
                    writer.writerow([_safe(g.goal), g.kind, state, "", getattr(g, state)])
            for state, bucket in (("rejected", g.rejected), ("dead", g.dead)):
                for code, n in sorted(bucket.items()):
                    writer.writerow([_safe(g.goal), g.kind, state, code, n])
        for w in report.warnings:
            writer.writerow([_safe(w.goal), "", f"warning:{w.code}", "", w.count])
        return out.getvalue().rstrip("\n")
    lines = []
    since = report.since.strftime("%Y-%m-%d %H:%M UTC") if report.since else "the beginning"
    lines.append(f"Outbox report since {since} (generated {report.generated_at:%Y-%m-%d %H:%M} UTC)")
    if not report.goals:
        lines.append("nothing recorded in this period")
    header = (
        f"{'goal':<24} {'kind':<18} {'delivered':>9} {'dedup':>6} {'pending':>7} {'held':>5} {'paused':>6}"
        "  rejected (by code) / dead (by reason)"
    )
    if report.goals:
        lines.append(header)
    for g in report.goals:
        lines.append(
            f"{g.goal[:24]:<24} {g.kind:<18} {g.delivered:>9} {g.deduplicated:>6} {g.pending + g.in_flight:>7}"
            f" {g.held:>5} {g.paused:>6}  rejected: {_codes(g.rejected)}; dead: {_codes(g.dead)}"
        )
    if report.warnings:
        lines.append("")
        lines.append("Uploaded but probably not counted:")
        for w in report.warnings:
            lines.append(f"  ! {w.goal}: {w.count} row(s): {w.message}")
    lines.append("")
    lines.append("Compare 'delivered' with Microsoft's Conversions column; data there can take up to 6 hours.")
    return "\n".join(lines)


def _safe(value: str) -> str:
    from msclkid_middleware.ops.csvfiles import safe_cell

    return safe_cell(value)


# -- reconciliation --------------------------------------------------------------------------------------------


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
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["goal", "goal_id", "sent", "microsoft_success", "microsoft_unattributed", "reason", "count"])
        for line in result.lines:
            base = [
                _safe(line.goal),
                line.goal_id or "",
                line.sent,
                line.microsoft_success,
                line.microsoft_unattributed,
            ]
            if not line.reasons:
                writer.writerow([*base, "", ""])
            for reason, n in sorted(line.reasons.items()):
                writer.writerow([*base, reason, n])
        return out.getvalue().rstrip("\n")
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
