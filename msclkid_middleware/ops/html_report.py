"""``msclkid report --html``: the report as one self-contained HTML file a merchant would rather look at than read.

One file: inline SVG charts (``msclkid_middleware.charts``), one ``<style>`` element, no script, no external
style, font or image, so it works offline, from an e-mail attachment, and under a strict Content-Security-Policy.
The file carries that policy itself (:data:`CSP`, in a ``<meta>`` element): the style is allowed by its SHA-256
hash, nothing else may load.  Pages that serve it (the demo shop's ``/report``) may send the same header.

The layout is one column that fits a 390 px phone: charts scale with the width, wide tables scroll inside their
own box, never the page.  :func:`report_data` is the same data as JSON (``msclkid report --json``).
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from msclkid_middleware.charts import PALETTE, Bar, Series, bar_chart, histogram, stacked_bar_chart
from msclkid_middleware.microsoft.goals import UNATTRIBUTED_HINTS
from msclkid_middleware.ops.reports import Report, tracker_report

if TYPE_CHECKING:  # pragma: no cover
    from msclkid_middleware.dispatch.tracker import ConversionTracker
    from msclkid_middleware.ops.reconcile import Reconciliation

__all__ = ["CSP", "STYLE", "render_html", "render_report_html", "report_data"]

STYLE = (
    ":root{color-scheme:light}*{box-sizing:border-box}"
    "body{font:15px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;color:#1b1b1b;background:#f6f7f9}"
    "main{max-width:960px;margin:0 auto;padding:12px}"
    "h1{font-size:1.45em;margin:.4em 0}h2{font-size:1.15em;margin:.2em 0 .5em}"
    "section{background:#fff;border:1px solid #dde1e6;border-radius:8px;padding:12px;margin:12px 0}"
    ".tiles{display:grid;grid-template-columns:repeat(auto-fit,minmax(130px,1fr));gap:8px;margin:12px 0}"
    ".tile{background:#fff;border:1px solid #dde1e6;border-radius:8px;padding:8px 10px}"
    ".tile b{display:block;font-size:1.5em}.tile span{color:#555;font-size:.9em}"
    ".scroll{overflow-x:auto;max-width:100%}"
    "table{border-collapse:collapse;width:100%;font-size:.92em}"
    "th,td{border-bottom:1px solid #e3e6ea;padding:5px 6px;text-align:left;vertical-align:top}"
    "th{background:#f0f2f5}td.n{text-align:right;font-variant-numeric:tabular-nums}"
    "svg.chart{display:block;max-width:min(100%,640px);height:auto;margin:8px auto}"
    "code{font-size:.9em;overflow-wrap:anywhere}p.note{color:#444}"
    ".warn{border-left:4px solid #d55e00;padding-left:8px}"
    "details summary{cursor:pointer;margin:.4em 0}"
    "ul.cards{list-style:none;padding:0;margin:0}ul.cards li{border-top:1px solid #e3e6ea;padding:6px 0}"
    "ul.cards p{margin:.2em 0}"
)
#: The policy the file declares and was tested under: nothing may load, only the one style element (by hash).
CSP = (
    "default-src 'none'; "
    f"style-src 'sha256-{base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()}'; "
    "img-src 'none'; base-uri 'none'; form-action 'none'"
)
_STATES = (
    ("delivered", "delivered", "#009e73"),
    ("pending", "pending, held or paused", "#56b4e9"),
    ("rejected", "rejected by Microsoft", "#d55e00"),
    ("dead", "dead (gave up)", "#4d4d4d"),
    ("consent_denied", "suppressed: consent refused", "#cc79a7"),
    ("no_identifier", "suppressed: nothing to match", "#e69f00"),
)


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _words(text: str) -> str:
    """Escaped text with its `command` spans as <code>."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", _e(text))


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def _table(header: Sequence[str], rows: Iterable[Sequence[object]], numeric: Sequence[int] = ()) -> str:
    head = "".join(f"<th scope=col>{_e(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td{' class=n' if i in numeric else ''}>{_e(c)}</td>" for i, c in enumerate(row)) + "</tr>"
        for row in rows
    )
    return f"<div class=scroll><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"


def report_data(report: Report, reconciliation: Reconciliation | None = None) -> dict[str, Any]:
    """The report's data as JSON-ready values (``msclkid report --json``): the same figures the HTML draws."""
    return {**report.to_json(), "microsoft": reconciliation.to_json() if reconciliation is not None else None}


def render_html(
    tracker: ConversionTracker,
    *,
    since: datetime | None = None,
    goal: str | None = None,
    reconciliation: Reconciliation | None = None,
) -> str:
    """The HTML report of ``tracker``'s outbox (what the demo shop's ``/report`` serves)."""
    return render_report_html(tracker_report(tracker, since=since, goal=goal), reconciliation)


def render_report_html(report: Report, reconciliation: Reconciliation | None = None) -> str:
    """One self-contained HTML document (see the module doc)."""
    period = f"since {report.since:%Y-%m-%d %H:%M} UTC" if report.since else "everything in the outbox"
    scope = f" for goal {report.goal}" if report.goal else ""
    sections = [
        _tiles(report),
        _days(report),
        _rejections(report),
        _match_keys(report),
        _delivery(report),
        _microsoft(report, reconciliation),
        _goals(report),
    ]
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f'<meta http-equiv="Content-Security-Policy" content="{_e(CSP)}">'
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        '<meta name=referrer content="no-referrer">'
        f"<title>Conversions report{_e(scope)}</title><style>{STYLE}</style></head><body><main>"
        f"<h1>Conversions sent to Microsoft Advertising{_e(scope)}</h1>"
        f"<p class=note>{_e(period)}; generated {report.generated_at:%Y-%m-%d %H:%M} UTC. Days are UTC days on"
        " which the events were recorded; each shows where those events stand now.</p>"
        f"{''.join(sections)}"
        "<p class=note>Compare “delivered” with Microsoft's Conversions column: its figures can lag by up to"
        " 6 hours. Generated by <code>msclkid report --html</code>.</p></main></body></html>"
    )


def _tiles(report: Report) -> str:
    totals = {key: 0 for key, _label, _colour in _STATES}
    recorded = 0
    for day in report.days:
        recorded += day.recorded
        totals["delivered"] += day.delivered
        totals["pending"] += day.pending
        totals["dead"] += day.dead
        totals["rejected"] += sum(day.rejected.values())
        totals["consent_denied"] += day.suppressed.get("consent_denied", 0)
        totals["no_identifier"] += sum(n for k, n in day.suppressed.items() if k != "consent_denied")
    tiles = [("recorded", recorded)] + [(label, totals[key]) for key, label, _colour in _STATES]
    body = "".join(f"<div class=tile><b>{n:,}</b><span>{_e(label)}</span></div>" for label, n in tiles)
    return f"<div class=tiles aria-label=Totals>{body}</div>"


def _days(report: Report) -> str:
    days = report.days
    categories = [d.day.strftime("%b %d") for d in days]
    values = {
        "delivered": [d.delivered for d in days],
        "pending": [d.pending for d in days],
        "rejected": [sum(d.rejected.values()) for d in days],
        "dead": [d.dead for d in days],
        "consent_denied": [d.suppressed.get("consent_denied", 0) for d in days],
        "no_identifier": [sum(n for k, n in d.suppressed.items() if k != "consent_denied") for d in days],
    }
    series = [Series(label, values[key], colour) for key, label, colour in _STATES]
    chart = stacked_bar_chart(
        "Events per day and where they stand",
        categories,
        series,
        x_label="day recorded (UTC)",
        y_label="events",
        ident="days",
        empty="nothing recorded in this period",
    )
    rows = [
        (
            d.day.isoformat(),
            d.recorded,
            d.delivered,
            ", ".join(f"{c} x{n}" for c, n in sorted(d.rejected.items())) or "0",
            d.pending,
            d.dead,
            d.suppressed.get("consent_denied", 0),
            sum(n for k, n in d.suppressed.items() if k != "consent_denied"),
        )
        for d in days
    ]
    table = _table(
        ["day", "recorded", "delivered", "rejected (by code)", "pending", "dead", "no consent", "nothing to match"],
        rows,
        numeric=(1, 2, 4, 5, 6, 7),
    )
    return (
        f"<section id=days><h2>Per day</h2>{chart}<details><summary>The numbers per day</summary>{table}"
        "</details></section>"
    )


def _rejections(report: Report) -> str:
    if not report.rejections:
        return "<section id=rejections><h2>Rejections</h2><p>No rejected or dead events in this period.</p></section>"
    bars = [Bar(f"{r.code.split(' ', 1)[0]}", r.count, f"{r.code} ({r.state}): {r.count}") for r in report.rejections]
    chart = bar_chart(
        "Most frequent rejection and dead-letter codes",
        bars,
        x_label="code",
        y_label="events",
        ident="codes",
        colour=PALETTE[3],
    )
    # Cards, not a six-column table: the explanations stay readable on a phone.
    cards = "".join(
        f"<li><p><b><code>{_e(r.code)}</code></b> {_e(r.state)} &times;{r.count} ({_e(', '.join(r.goals))})</p>"
        f"<p><b>What it means:</b> {_words(r.meaning)}.</p><p><b>What to do:</b> {_words(r.action)}.</p></li>"
        for r in report.rejections
    )
    return (
        f"<section id=rejections><h2>Rejections: what they mean, what to do</h2>{chart}"
        f"<ul class=cards>{cards}</ul></section>"
    )


def _match_keys(report: Report) -> str:
    mixes = report.match_keys
    categories = [m.goal for m in mixes]
    series = [
        Series("click ID only", [m.click_only for m in mixes], "#0072b2"),
        Series("click ID + hashed email/phone", [m.both for m in mixes], "#009e73"),
        Series("hashed email/phone only", [m.hashed_only for m in mixes], "#e69f00"),
        Series("nothing to match (suppressed)", [m.none for m in mixes], "#cc79a7"),
    ]
    chart = stacked_bar_chart(
        "What each goal's conversions can be matched on",
        categories,
        series,
        x_label="conversion goal",
        y_label="offline conversions",
        ident="keys",
        empty="no offline conversions in this period",
    )
    rows = [
        (
            m.goal,
            m.total,
            m.click_only,
            m.both,
            m.hashed_only,
            m.none,
            f"{m.attributable_share:.0%}",
            f"{m.attributable_if_enhanced_share:.0%}",
        )
        for m in mixes
    ]
    table = _table(
        ["goal", "total", "click ID", "both", "hashed only", "none", "attributable", "if enhanced"],
        rows,
        numeric=(1, 2, 3, 4, 5, 6, 7),
    )
    return (
        f"<section id=match-keys><h2>Match keys per goal</h2>{chart}{table}<p class=note>“Attributable” is the"
        " share with a click ID, which Microsoft can match on any goal. Hashed email or phone without a click ID"
        " is matched only when the goal has enhanced conversions on (“if enhanced”); Microsoft rejects it"
        " (5603) otherwise.</p></section>"
    )


def _delivery(report: Report) -> str:
    times = report.delivery_times
    bins = list(times.bins) if times else []
    chart = histogram(
        "Time from record to delivery",
        bins,
        x_label="time from record to delivery (m: minutes, h: hours, d: days)",
        y_label="delivered events",
        ident="latency",
        empty="nothing delivered in this period",
    )
    summary = ""
    if times and times.count:
        summary = (
            f"<p>{times.count:,} delivered; median {_e(_duration(times.median_seconds))}, 90% within"
            f" {_e(_duration(times.p90_seconds))}. Conversions for a goal younger than 2 hours are held until it"
            " is (Microsoft refuses them before), which shows here as hours.</p>"
        )
    return f"<section id=delivery><h2>Delivery time</h2>{chart}{summary}</section>"


def _microsoft(report: Report, reconciliation: Reconciliation | None) -> str:
    if reconciliation is None:
        return (
            "<section id=microsoft><h2>Microsoft's own figures</h2><p>Not fetched for this report. Run"
            " <code>msclkid report --html FILE --with-microsoft</code> (needs the Microsoft Advertising"
            " credentials) to put Microsoft's counted and not-counted conversions, with the reasons, beside"
            " ours.</p></section>"
        )
    lines = reconciliation.lines
    series = [
        Series("sent by us", [line.sent for line in lines], "#0072b2"),
        Series("counted by Microsoft", [line.microsoft_success for line in lines], "#009e73"),
        Series("not counted", [line.microsoft_unattributed for line in lines], "#d55e00"),
    ]
    # Side by side, not stacked: "sent" is a separate figure from Microsoft's two.
    charts = "".join(
        bar_chart(
            f"{s.name.capitalize()} per goal",
            [Bar(line.goal, v) for line, v in zip(lines, s.values, strict=True)],
            x_label="conversion goal",
            y_label="offline conversions",
            ident=f"ms{i}",
            colour=s.colour or PALETTE[i],
            height=220,
            empty="no goal in this period",
        )
        for i, s in enumerate(series)
    )
    rows = []
    for line in lines:
        reasons = "; ".join(
            f"{r} x{n}: {UNATTRIBUTED_HINTS.get(r, UNATTRIBUTED_HINTS['Unknown'])}"
            for r, n in sorted(line.reasons.items())
        )
        rows.append(
            (
                line.goal,
                line.sent,
                line.microsoft_success,
                line.microsoft_unattributed,
                f"{line.unattributed_share:.0%}",
                reasons or line.note or "-",
            )
        )
    table = _table(["goal", "sent by us", "counted", "not counted", "share", "why not counted"], rows, (1, 2, 3))
    return (
        f"<section id=microsoft><h2>Microsoft's own figures</h2><p class=note>Upload days"
        f" {reconciliation.since:%Y-%m-%d} to {reconciliation.until:%Y-%m-%d} (UTC); not counted overall:"
        f" {reconciliation.unattributed_share:.0%}.</p>{charts}{table}</section>"
    )


def _goals(report: Report) -> str:
    rows = [
        (
            g.goal,
            g.kind,
            g.delivered,
            g.deduplicated,
            g.pending + g.in_flight,
            g.held,
            g.paused,
            g.suppressed,
            ", ".join(f"{c} x{n}" for c, n in sorted(g.rejected.items())) or "-",
            ", ".join(f"{c} x{n}" for c, n in sorted(g.dead.items())) or "-",
        )
        for g in report.goals
    ]
    table = _table(
        ["goal", "kind", "delivered", "dedup", "pending", "held", "paused", "suppressed", "rejected", "dead"],
        rows,
        numeric=(2, 3, 4, 5, 6, 7),
    )
    warnings = "".join(
        f"<li class=warn><b>{_e(w.goal)}</b>: {w.count} event(s): {_e(w.message)}</li>" for w in report.warnings
    )
    warn_block = f"<h2>Uploaded but probably not counted</h2><ul>{warnings}</ul>" if warnings else ""
    return (
        f"<section id=goals><h2>Per goal and kind</h2>{table}<p class=note>“dedup”: delivered with the click ID"
        " and conversion time of an earlier delivered conversion; Microsoft counts only the first.</p>"
        f"{warn_block}</section>"
    )
