"""The reconciliation report (``msclkid report``); Microsoft's diagnostics beside it are in ``ops.reconcile``.

It reads the outbox only through :meth:`OutboxStore.scan` (any store: SQLite, PostgreSQL), one pass, constant
memory per goal.  The report counts, per goal and state, what was delivered, rejected (by code), is pending,
dead (by reason), held, and *probably deduplicated by Microsoft* (a delivered conversion whose click ID and
ConversionTime an earlier delivered row already used: Microsoft keeps only the first), and lists the
"uploaded but probably not counted" warnings.

The same pass gathers what the HTML report (``ops.html_report``) draws: per recording day where the rows stand
now; the match keys of each goal's offline conversions (click ID, hashed email/phone only, both, none); the time
from record to delivery; and the most frequent rejection and dead-letter codes with what they mean.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from msclkid_middleware.conversions import OFFLINE_MAX_AGE, parse_time
from msclkid_middleware.dispatch.goal_ages import GoalRegistry
from msclkid_middleware.dispatch.status import Code
from msclkid_middleware.ops.csv_format import csv_text, safe_cell
from msclkid_middleware.ops.rejections import advice

if TYPE_CHECKING:  # pragma: no cover
    from msclkid_middleware.dispatch.tracker import ConversionTracker
    from msclkid_middleware.outbox.base import OutboxRow, OutboxStore

__all__ = [
    "CLICK_WAIT",
    "EXPIRY_WARNING",
    "LATENCY_BINS",
    "DayCounts",
    "DeliveryTimes",
    "Format",
    "GoalCounts",
    "MatchKeyMix",
    "Rejection",
    "Report",
    "Warning",
    "build_report",
    "render_report",
    "tracker_report",
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
    # What Microsoft answered.
    delivered: int = 0
    deduplicated: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    # What is still to be sent.
    pending: int = 0
    held: int = 0
    paused: int = 0
    in_flight: int = 0
    # What ended here, never counted by Microsoft.
    dead: dict[str, int] = field(default_factory=dict)
    suppressed: int = 0

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


@dataclass
class DayCounts:
    """Rows recorded on one UTC ``day`` and where they stand now (``pending`` includes held, paused, in flight)."""

    day: date
    recorded: int = 0
    delivered: int = 0
    pending: int = 0
    dead: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    #: By reason: ``consent_denied`` (the visitor refused) or ``no_identifier`` (nothing to match on).
    suppressed: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "day": self.day.isoformat()}


@dataclass
class MatchKeyMix:
    """What one goal's offline conversions carry to be matched on.

    ``click_only``: a click ID; ``hashed_only``: hashed email and/or phone, no click ID (Microsoft can match these
    only on a goal with enhanced conversions on); ``both``; ``none``: suppressed, nothing left to match on.
    """

    goal: str
    click_only: int = 0
    hashed_only: int = 0
    both: int = 0
    none: int = 0

    @property
    def total(self) -> int:
        return self.click_only + self.hashed_only + self.both + self.none

    @property
    def attributable_share(self) -> float:
        """Share with a click ID: what Microsoft can attribute on any goal."""
        return (self.click_only + self.both) / self.total if self.total else 0.0

    @property
    def attributable_if_enhanced_share(self) -> float:
        """Share with any match key: what Microsoft can attribute when the goal has enhanced conversions on."""
        return (self.click_only + self.both + self.hashed_only) / self.total if self.total else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "total": self.total,
            "attributable_share": round(self.attributable_share, 6),
            "attributable_if_enhanced_share": round(self.attributable_if_enhanced_share, 6),
        }


#: Upper bounds (exclusive) and labels of the record-to-delivery histogram; the last bin is open.
LATENCY_BINS: tuple[tuple[timedelta | None, str], ...] = (
    (timedelta(minutes=1), "<1m"),
    (timedelta(minutes=5), "1-5m"),
    (timedelta(minutes=15), "5-15m"),
    (timedelta(hours=1), "15-60m"),
    (timedelta(hours=2), "1-2h"),
    (timedelta(hours=6), "2-6h"),
    (timedelta(days=1), "6-24h"),
    (timedelta(days=3), "1-3d"),
    (None, ">3d"),
)


@dataclass(frozen=True, slots=True)
class DeliveryTimes:
    """Time from record to delivery of the delivered rows: counts per :data:`LATENCY_BINS` bin, median, 90th %."""

    bins: tuple[tuple[str, int], ...]
    count: int
    median_seconds: float | None
    p90_seconds: float | None

    def to_json(self) -> dict[str, Any]:
        return {
            "bins": [{"label": label, "count": n} for label, n in self.bins],
            "count": self.count,
            "median_seconds": self.median_seconds,
            "p90_seconds": self.p90_seconds,
        }


@dataclass(frozen=True, slots=True)
class Rejection:
    """A rejection (``state="rejected"``) or dead-letter (``"dead"``) code: how often, for which goals, what to do."""

    code: str
    state: str
    count: int
    goals: tuple[str, ...]
    meaning: str
    action: str


@dataclass(frozen=True, slots=True)
class Report:
    since: datetime | None
    generated_at: datetime
    goals: tuple[GoalCounts, ...]
    warnings: tuple[Warning, ...]
    days: tuple[DayCounts, ...] = ()
    match_keys: tuple[MatchKeyMix, ...] = ()
    delivery_times: DeliveryTimes | None = None
    rejections: tuple[Rejection, ...] = ()
    goal: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "since": self.since.isoformat() if self.since else None,
            "goal": self.goal,
            "generated_at": self.generated_at.isoformat(),
            "goals": [{**asdict(g), "total": g.total} for g in self.goals],
            "warnings": [asdict(w) for w in self.warnings],
            "days": [d.to_json() for d in self.days],
            "match_keys": [m.to_json() for m in self.match_keys],
            "delivery_times": self.delivery_times.to_json() if self.delivery_times else None,
            "top_rejections": [{**asdict(r), "goals": list(r.goals)} for r in self.rejections],
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
    overview = _Overview()
    for row in store.scan(since=since):
        name = row.conversion_name or "-"
        if goal is not None and name != goal:
            continue
        entry = counts.setdefault((name, row.kind), GoalCounts(name, row.kind))
        _count(entry, row, seen_keys)
        overview.add(row, name)
        if row.kind in _CAMPAIGN:
            _warnings(row, name, now, known_goals, registry, ready_cache, warn)
    goals = tuple(sorted(counts.values(), key=lambda g: (g.goal, g.kind)))
    warnings = tuple(Warning(code, name, n, _WARNING_TEXT[code]) for (code, name), n in sorted(warn.items()))
    return Report(
        since,
        now,
        goals,
        warnings,
        days=tuple(overview.days[d] for d in sorted(overview.days)),
        match_keys=tuple(overview.mix[g] for g in sorted(overview.mix)),
        delivery_times=overview.delivery_times(),
        rejections=overview.rejections(),
        goal=goal,
    )


def tracker_report(
    tracker: ConversionTracker, *, since: datetime | None = None, goal: str | None = None, now: datetime | None = None
) -> Report:
    """:func:`build_report` of ``tracker``'s outbox, with its goals, goal registry and clock."""
    return build_report(
        tracker.store,
        since=since,
        goal=goal,
        known_goals=tracker.goals,
        registry=tracker.goal_registry,
        now=now or tracker.clock(),
    )


class _Overview:
    """The per-day, match-key, delivery-time and rejection figures, gathered in the report's one pass."""

    # Latencies are kept as a histogram of whole seconds under an hour and whole minutes above: bounded by
    # Microsoft's 90-day window (~133,000 keys at worst) however many rows there are, and exact enough for a median.

    def __init__(self) -> None:
        self.days: dict[date, DayCounts] = {}
        self.mix: dict[str, MatchKeyMix] = {}
        self.latency: Counter[int] = Counter()
        self.codes: Counter[tuple[str, str]] = Counter()
        self.code_goals: dict[tuple[str, str], set[str]] = {}

    def add(self, row: OutboxRow, name: str) -> None:
        day = row.created_at.astimezone(UTC).date()
        entry = self.days.get(day) or self.days.setdefault(day, DayCounts(day))
        entry.recorded += 1
        state = row.state
        if state == "delivered":
            entry.delivered += 1
            if row.delivered_at is not None:
                seconds = max(0, int((row.delivered_at - row.created_at).total_seconds()))
                self.latency[seconds if seconds < 3600 else seconds // 60 * 60] += 1
        elif state in ("pending", "in_flight", "paused"):
            entry.pending += 1
        elif state == "suppressed":
            reason = row.last_error_code or "unknown"
            entry.suppressed[reason] = entry.suppressed.get(reason, 0) + 1
        else:
            code = row.last_error_code or "unknown"
            if state == "rejected":
                entry.rejected[code] = entry.rejected.get(code, 0) + 1
            else:
                entry.dead += 1
            self.codes[state, code] += 1
            self.code_goals.setdefault((state, code), set()).add(name)
        if row.kind == "offline":
            self._match_key(row, name)

    def _match_key(self, row: OutboxRow, name: str) -> None:
        mix = self.mix.get(name) or self.mix.setdefault(name, MatchKeyMix(name))
        payload = row.payload
        click = bool(payload.get("MicrosoftClickId")) and row.state != "suppressed"
        hashed = bool(payload.get("HashedEmailAddress") or payload.get("HashedPhoneNumber"))
        if click and hashed:
            mix.both += 1
        elif click:
            mix.click_only += 1
        elif hashed:
            mix.hashed_only += 1
        else:
            mix.none += 1

    def delivery_times(self) -> DeliveryTimes:
        bins = [0] * len(LATENCY_BINS)
        for seconds, n in self.latency.items():
            for i, (limit, _label) in enumerate(LATENCY_BINS):
                if limit is None or seconds < limit.total_seconds():
                    bins[i] += n
                    break
        count = sum(bins)
        return DeliveryTimes(
            tuple((label, n) for (_limit, label), n in zip(LATENCY_BINS, bins, strict=True)),
            count,
            self._percentile(0.5, count),
            self._percentile(0.9, count),
        )

    def _percentile(self, q: float, count: int) -> float | None:
        if not count:
            return None
        rank, seen = q * count, 0
        for seconds in sorted(self.latency):
            seen += self.latency[seconds]
            if seen >= rank:
                return float(seconds)
        return None  # pragma: no cover - the ranks cover the count

    def rejections(self, limit: int = 10) -> tuple[Rejection, ...]:
        top = sorted(self.codes.items(), key=lambda item: (-item[1], item[0]))[:limit]
        out = []
        for (state, code), n in top:
            hint = advice(code)
            goals = tuple(sorted(self.code_goals[state, code]))
            out.append(Rejection(code, state, n, goals, hint.meaning, hint.action))
        return tuple(out)


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
        return csv_text(["goal", "kind", "state", "code", "count"], _csv_rows(report))
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


def _csv_rows(report: Report) -> Iterator[list[object]]:
    for g in report.goals:
        for state in ("delivered", "deduplicated", "pending", "held", "paused", "in_flight", "suppressed"):
            if getattr(g, state):
                yield [safe_cell(g.goal), g.kind, state, "", getattr(g, state)]
        for state, bucket in (("rejected", g.rejected), ("dead", g.dead)):
            for code, n in sorted(bucket.items()):
                yield [safe_cell(g.goal), g.kind, state, code, n]
    for w in report.warnings:
        yield [safe_cell(w.goal), "", f"warning:{w.code}", "", w.count]
