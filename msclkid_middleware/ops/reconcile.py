"""Microsoft's per-goal diagnostics beside the outbox's own counts (``msclkid reconcile``).

Our side is read through :meth:`OutboxStore.scan` only (any store); Microsoft's side is what
``GoalsClient.offline_conversion_report`` and ``daily_reports`` returned and, with ``--files``, the rows of
Microsoft's result files (``microsoft.result_files``), tied back to the shop's events by click ID (or hashed
identifier), goal name and conversion time: per event, what Microsoft did with it.  Nothing here calls Microsoft.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from msclkid_middleware.microsoft.goals import UNATTRIBUTED_HINTS
from msclkid_middleware.ops.csv_format import csv_text, safe_cell
from msclkid_middleware.ops.reports import Format

if TYPE_CHECKING:  # pragma: no cover
    from msclkid_middleware.microsoft.goals import DailyUploadSummary, GoalConversionSummary
    from msclkid_middleware.microsoft.result_files import ResultFile, ResultRecord
    from msclkid_middleware.outbox.base import OutboxRow, OutboxStore

__all__ = [
    "EventVerdict",
    "ReconcileLine",
    "Reconciliation",
    "reconcile",
    "render_reconciliation",
    "sent_per_goal",
    "tie_events",
]

#: The verdict of an event no downloaded result file mentions.
NOT_IN_FILES = "not in the result files"


@dataclass(frozen=True, slots=True)
class EventVerdict:
    """One shop event and what Microsoft's result file says about it (``status``: Microsoft's ``Status``)."""

    event_id: str
    kind: str
    goal: str | None
    conversion_time: datetime | None
    click_id: str | None
    state: str
    status: str
    upload_date: str | None = None

    @property
    def counted_upload(self) -> bool:
        return self.status.lower() == "success"


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
    files: tuple[ResultFile, ...] = ()
    events: tuple[EventVerdict, ...] = ()

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
            "result_files": [
                {
                    "upload_date": f.upload_date.isoformat() if f.upload_date else None,
                    "status": f.status,
                    "path": str(f.path) if f.path else None,
                    "bytes": f.size,
                    "sha256": f.sha256,
                    "records": None if f.records is None else len(f.records),
                    "note": f.note,
                }
                for f in self.files
            ],
            "events": [
                {
                    "event_id": e.event_id,
                    "kind": e.kind,
                    "goal": e.goal,
                    "conversion_time": e.conversion_time.isoformat() if e.conversion_time else None,
                    "click_id": e.click_id,
                    "outbox_state": e.state,
                    "microsoft_status": e.status,
                    "upload_date": e.upload_date,
                }
                for e in self.events
            ],
        }


def sent_per_goal(store: OutboxStore, since: datetime, goal: str | None = None) -> dict[str, int]:
    """Offline conversions delivered (to Microsoft) per goal name, recorded since ``since``."""
    sent: Counter[str] = Counter()
    for row in store.scan(since=since, kinds=("offline", "offline_adjustment")):
        if row.state == "delivered" and row.conversion_name and (goal is None or row.conversion_name == goal):
            sent[row.conversion_name] += 1
    return dict(sent)


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (parsed if parsed.utcoffset() is not None else parsed.replace(tzinfo=UTC)).astimezone(UTC)


def _key(
    goal: str | None, when: datetime | None, click: str | None, email: str | None, phone: str | None, adjustment: str
) -> tuple[Any, ...] | None:
    """Microsoft's conversion key: click ID (else the hashed identifiers), goal name, time to the second."""
    if goal is None or when is None:
        return None
    second = when.astimezone(UTC).replace(microsecond=0)
    if click:
        return (click, goal, second, adjustment)
    if email or phone:
        return (None, email, phone, goal, second, adjustment)
    return None


def _record_key(record: ResultRecord) -> tuple[Any, ...] | None:
    adjustment = (record.adjustment_type or "").upper()
    return _key(
        record.conversion_name,
        record.conversion_time,
        record.click_id,
        record.hashed_email,
        record.hashed_phone,
        adjustment,
    )


def tie_events(rows: Iterable[OutboxRow], files: Iterable[ResultFile]) -> tuple[EventVerdict, ...]:
    """Each delivered (or rejected) offline conversion/adjustment beside its row in Microsoft's result files.

    A row seen in several files (a resend) takes the latest file's verdict; an event no file mentions is
    :data:`NOT_IN_FILES` (uploaded on a day whose file was not downloaded, or still pending).
    """
    found: dict[tuple[Any, ...], tuple[str, str | None]] = {}
    for result in sorted(files, key=lambda f: f.upload_date.isoformat() if f.upload_date else ""):
        day = result.upload_date.isoformat() if result.upload_date else None
        for record in result.records or ():
            key = _record_key(record)
            if key is not None:
                found[key] = (record.status, day)
    verdicts = []
    for row in rows:
        if row.kind not in ("offline", "offline_adjustment") or row.state in ("pending", "paused", "suppressed"):
            continue
        p = row.payload
        adjustment = str(p.get("AdjustmentType") or "").upper() if row.kind == "offline_adjustment" else ""
        when = _time(p.get("ConversionTime"))
        click = p.get("MicrosoftClickId")
        key = _key(
            row.conversion_name, when, click, p.get("HashedEmailAddress"), p.get("HashedPhoneNumber"), adjustment
        )
        status, day = found.get(key, (NOT_IN_FILES, None)) if key is not None else (NOT_IN_FILES, None)
        verdicts.append(EventVerdict(row.event_id, row.kind, row.conversion_name, when, click, row.state, status, day))
    return tuple(verdicts)


def reconcile(
    sent: Mapping[str, int],
    goal_ids: Mapping[str, str],
    summaries: Mapping[str, GoalConversionSummary],
    *,
    since: datetime,
    until: datetime,
    days: Iterable[DailyUploadSummary] = (),
    files: Iterable[ResultFile] = (),
    events: Iterable[EventVerdict] = (),
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
    return Reconciliation(since, until, tuple(lines), tuple(days), tuple(files), tuple(events))


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
            extra = "  (result file offered: `msclkid reconcile --files`)" if d.has_file and not result.files else ""
            out_lines.append(f"  {day}: {d.success} succeeded, {d.failure} failed{extra}")
    out_lines.extend(_file_lines(result))
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


def _file_lines(result: Reconciliation) -> list[str]:
    if not result.files:
        return []
    out = ["", "Microsoft's result files:"]
    for f in result.files:
        day = f.upload_date.isoformat() if f.upload_date else "?"
        held = f" -> {f.path} ({f.size} bytes, {len(f.records)} rows)" if f.path and f.records is not None else ""
        if f.path and f.records is None:
            held = f" -> {f.path} ({f.size} bytes)"
        out.append(f"  {day}: {f.status}{held}" + (f"  [{f.note}]" if f.note else ""))
    if result.events:
        statuses = Counter(e.status for e in result.events)
        out.append("")
        out.append(
            "Per event (what Microsoft did with it): " + ", ".join(f"{s} {n}" for s, n in statuses.most_common())
        )
        for e in result.events:
            when = e.conversion_time.strftime("%Y-%m-%d %H:%M:%S") if e.conversion_time else "?"
            out.append(f"  {e.event_id[:36]:<36} {(e.goal or '-')[:20]:<20} {when}  {e.status}")
    return out
