"""The HTML dashboard at ``/``: what arrived, what was accepted, rejected (with code) or deduplicated, as charts.

Everything received is hostile input: every value goes through :func:`html.escape`, the page has no script, and
a strict Content-Security-Policy (:data:`CSP`: nothing may load; the one ``<style>`` element is allowed by its
hash) forbids any that might slip in.  The charts are the HTML report's renderer (``msclkid_middleware.charts``,
a foundation module: the emulator imports nothing above the foundation).  Payloads are shown whole and
pretty-printed in collapsible ``<details>``; every note the emulator attaches (``ClickNotRegistered``, ...) is
explained in words with what the real Microsoft would do.  One column: it reads on a phone.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
from collections import Counter
from collections.abc import Iterable, Sequence

from werkzeug.wrappers import Request, Response

from msclkid_middleware.charts import Bar, Series, bar_chart, stacked_bar_chart
from msclkid_middleware.emulator.campaign import GOAL_MIN_AGE
from msclkid_middleware.emulator.state import ReceivedItem
from msclkid_middleware.emulator.surface import ControlSurface

__all__ = ["CSP", "NOTES", "STYLE", "explain", "render"]

STYLE = (
    "*{box-sizing:border-box}body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#1b1b1b;background:#f6f7f9}"
    "main{max-width:1000px;margin:0 auto;padding:10px}h1{font-size:1.4em;margin:.3em 0}"
    "h2{font-size:1.12em;margin:.2em 0 .5em}"
    "section{background:#fff;border:1px solid #dde1e6;border-radius:8px;padding:10px;margin:10px 0}"
    ".scroll{overflow-x:auto;max-width:100%}table{border-collapse:collapse;width:100%}"
    "th,td{border-bottom:1px solid #e3e6ea;padding:4px 6px;text-align:left;vertical-align:top}th{background:#f0f2f5}"
    ".accepted{color:#0a6b0a}.rejected{color:#b00020}.duplicate{color:#8a6d00}"
    "svg.chart{display:block;max-width:min(100%,600px);height:auto;margin:6px auto}"
    ".charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(100%,420px),1fr));gap:8px}"
    "ul.items,dl{list-style:none;padding:0;margin:0}ul.items>li{border-top:1px solid #e3e6ea;padding:6px 0}"
    "ul.items p{margin:.15em 0}ul.items ul{margin:.2em 0;padding-left:1.2em}"
    "dt{font-weight:bold;margin-top:.5em}dd{margin:0 0 0 1em}"
    "pre{background:#f4f5f7;padding:8px;border-radius:6px;overflow-x:auto;max-width:100%;margin:4px 0;"
    "white-space:pre-wrap;overflow-wrap:anywhere}"
    "code{overflow-wrap:anywhere}summary{cursor:pointer}"
)
CSP = (
    "default-src 'none'; "
    f"style-src 'sha256-{base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()}'; "
    "img-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_LIMIT = 200

#: What each note means and what the real Microsoft would do with such an item.
NOTES: dict[str, str] = {
    "ClickNotRegistered": "The emulator was never told about this click ID (POST /_emulator/clicks), so it cannot"
    " check it. Accepted, as Microsoft accepts any well-formed click ID at upload; the real Microsoft counts the"
    " conversion only if the click really happened on one of this account's ads, and otherwise reports it later"
    " as NoMatchingClickFound in the offline conversion report (the emulator does too with strict_click_matching).",
    "GoalNotFoundOrInactive": "No active offline conversion goal of this exact name in the account. The real"
    " Microsoft may answer 5606 OfflineConversionNameInvalid, or accept the item silently and never count it"
    " (reported as GoalNotFoundOrInactive): create the goal or fix the name (case and spaces count).",
    "HashedPhoneNumberDiscarded": "HashedPhoneNumber is not a SHA-256 hex digest. Microsoft documents no error"
    " code for it: the phone is dropped and the conversion kept, matched on its other keys only.",
    "EnhancedFieldsIgnored": "The goal does not have enhanced conversions on. Microsoft records the conversion"
    " on its click ID as a regular conversion and ignores the hashed email and phone.",
    "AccountMismatch": "The click belongs to another advertiser account. Accepted, but Microsoft cannot attribute"
    " it to this account (AccountMismatch in the offline conversion report): upload to the account of the click.",
    "GoalNotEligibleForExternalAttribution": "ExternalAttributionCredit/Model were sent for a goal without external"
    " attribution. Microsoft documents the error GoalNotEligibleForExternalAttribution (no numeric code known):"
    " the credit is not used.",
    "AdjustmentOriginalNotFound": "No conversion matches this restatement or retraction (name, click ID and"
    " conversion time). Accepted now; Microsoft changes nothing and reports AdjustmentOriginalNotFound later.",
    "ConversionAlreadyRetracted": "The conversion was already retracted. Microsoft accepts the adjustment, applies"
    " nothing and reports ConversionAlreadyRetracted later.",
    "BatchRejected": "This UET event was valid, but another event of the same request failed and"
    " continueOnValidationError was not set: Microsoft rejects the whole request, this event included.",
    "adStorageConsent=G": "The UET event says ad storage was granted (or did not say: Microsoft treats a missing"
    " value as granted): Microsoft may use it for attribution and remarketing.",
    "adStorageConsent=D": "The UET event says ad storage was denied: Microsoft keeps it but does not use it for any"
    " advertising purpose, conversion attribution and remarketing included.",
}
_OUTCOMES = {
    "duplicate": "Microsoft keeps only the first conversion with the same click ID, goal and conversion time;"
    " this copy is ignored without an error (DuplicateConversionKey in the offline conversion report).",
}
_WARNING = "A UET warning: Microsoft removed this field and kept the event (partial data loss: the field was not used)."


def explain(note: str) -> str:
    """The words for one note (or UET warning ``Code:property``) shown beside an item."""
    if note in NOTES:
        return NOTES[note]
    if ":" in note:
        return _WARNING
    return "A note of the emulator's own; see docs/emulator.md."


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _table(header: Sequence[str], rows: Iterable[str], empty: str) -> str:
    body = "".join(rows) or f"<tr><td colspan={len(header)}>{_e(empty)}</td></tr>"
    head = "".join(f"<th scope=col>{_e(h)}</th>" for h in header)
    return f"<div class=scroll><table><tr>{head}</tr>{body}</table></div>"


def _charts(items: Sequence[ReceivedItem]) -> str:
    kinds = sorted({i.kind for i in items})
    outcome: Counter[tuple[str, str]] = Counter((i.kind, str(i.outcome)) for i in items)
    per_kind = stacked_bar_chart(
        "Items received, by kind and outcome",
        kinds,
        [
            Series(name, [outcome[k, name] for k in kinds], colour)
            for name, colour in (("accepted", "#009e73"), ("rejected", "#d55e00"), ("duplicate", "#e69f00"))
        ],
        x_label="kind",
        y_label="items",
        ident="kinds",
        empty="nothing received yet",
    )
    codes = Counter(f"{i.code} {i.error_code or ''}".strip() for i in items if i.outcome == "rejected")
    rejected = bar_chart(
        "Rejections by code",
        [Bar(code.split(" ", 1)[0], n, f"{code}: {n}") for code, n in codes.most_common(10)],
        x_label="code",
        y_label="items",
        ident="codes",
        colour="#d55e00",
        empty="nothing rejected",
    )
    keys: dict[str, Counter[str]] = {}
    for i in items:
        if i.kind != "offline" or not isinstance(i.payload, dict):
            continue
        p = i.payload
        click, hashed = bool(p.get("MicrosoftClickId")), bool(p.get("HashedEmailAddress") or p.get("HashedPhoneNumber"))
        key = "both" if click and hashed else "click" if click else "hashed" if hashed else "none"
        keys.setdefault(str(p.get("ConversionName") or "-"), Counter())[key] += 1
    goals = sorted(keys)
    mix = stacked_bar_chart(
        "Offline conversions: match keys per goal",
        goals,
        [
            Series(label, [keys[g][key] for g in goals], colour)
            for key, label, colour in (
                ("click", "click ID only", "#0072b2"),
                ("both", "click ID + hashed", "#009e73"),
                ("hashed", "hashed email/phone only", "#e69f00"),
                ("none", "no match key", "#cc79a7"),
            )
        ],
        x_label="conversion goal",
        y_label="offline conversions",
        ident="keys",
        empty="no offline conversion received",
    )
    notes = Counter(n for i in items for n in (*i.notes, *i.warnings))
    noted = bar_chart(
        "Notes on received items",
        [Bar(n.split("=")[0][:14], c, f"{n}: {c}") for n, c in notes.most_common(8)],
        x_label="note",
        y_label="items",
        ident="notes",
        colour="#cc79a7",
        empty="no notes",
    )
    return f"<div class=charts>{per_kind}{rejected}{mix}{noted}</div>"


def _item(item: ReceivedItem) -> str:
    code = f" {item.code} {item.error_code or ''}" if item.code is not None else ""
    payload = json.dumps(item.payload, ensure_ascii=False, sort_keys=True, indent=2)
    # Each note folds open to its explanation: the list stays short on a phone, the words stay beside the item.
    notes = "".join(
        f"<li><details><summary>note <code>{_e(n)}</code></summary>{_e(explain(n))}</details></li>"
        for n in (*item.notes, *item.warnings)
    )
    outcome_note = f"<p>{_e(_OUTCOMES[item.outcome])}</p>" if item.outcome in _OUTCOMES else ""
    return (
        f"<li><p><b>#{item.seq}</b> {_e(item.received_at.strftime('%H:%M:%S'))} {_e(item.kind)}"
        f" item {item.index} for {_e(item.account)}: <b class={_e(item.outcome)}>{_e(item.outcome)}</b>"
        f"{_e(code)}</p>"
        + (f"<p>{_e(item.field_path + ': ' if item.field_path else '')}{_e(item.message)}</p>" if item.message else "")
        + outcome_note
        + (f"<ul>{notes}</ul>" if notes else "")
        + f"<details><summary>payload ({len(payload.encode())} bytes), TrackingId <code>{_e(item.tracking_id)}"
        f"</code></summary><pre>{_e(payload)}</pre></details></li>"
    )


def render(emulator: ControlSurface, request: Request) -> Response:
    kind = request.args.get("kind")
    items = emulator.received(kind)
    refresh = emulator.config.dashboard_refresh_seconds
    per_account: dict[tuple[str, str], dict[str, int]] = {}
    for item in items:
        bucket = per_account.setdefault((item.kind, item.account), {"accepted": 0, "rejected": 0, "duplicate": 0})
        bucket[item.outcome] += 1
    summary = _table(
        ["kind", "account / tag", "accepted", "rejected", "duplicate"],
        (
            f"<tr><td>{_e(kind)}</td><td>{_e(account)}</td><td class=accepted>{c['accepted']}</td>"
            f"<td class=rejected>{c['rejected']}</td><td class=duplicate>{c['duplicate']}</td></tr>"
            for (kind, account), c in sorted(per_account.items())
        ),
        "nothing received yet",
    )
    requests = _table(
        ["#", "time", "request", "status", "fault", "items", "TrackingId"],
        (
            f"<tr><td>{r.seq}</td><td>{_e(r.at.strftime('%H:%M:%S'))}</td><td>{_e(r.method)} {_e(r.path)}</td>"
            f"<td>{_e(r.status if r.status is not None else 'dropped')}</td><td>{_e(r.fault)}</td><td>{r.items}</td>"
            f"<td><code>{_e(r.tracking_id)}</code></td></tr>"
            for r in reversed(emulator.requests()[-50:])
        ),
        "no request yet",
    )
    now = emulator.world.clock()
    with emulator.world.lock:
        goal_list = sorted(emulator.world.goals.values(), key=lambda g: (g.account_id, g.id))
    goals = _table(
        ["id", "account", "name", "type", "status", "currency", "window (min)", "enhanced", "age"],
        (
            f"<tr><td>{g.id}</td><td>{_e(g.account_id)}</td><td>{_e(g.name)}</td><td>{_e(g.type)}</td>"
            f"<td>{_e(g.status)}</td><td>{_e(g.currency or 'no value')}</td><td>{g.conversion_window_minutes}</td>"
            f"<td>{'on' if g.enhanced else 'off'}</td><td>{(now - g.created_at).total_seconds() / 3600:.1f} h"
            f"{' (uploads get 5615)' if now - g.created_at < GOAL_MIN_AGE else ''}</td></tr>"
            for g in goal_list
        ),
        "no goal",
    )
    seen = sorted({n for i in items for n in (*i.notes, *i.warnings)})
    explained = "".join(f"<dt><code>{_e(n)}</code></dt><dd>{_e(explain(n))}</dd>" for n in seen)
    shown = "".join(_item(i) for i in reversed(items[-_LIMIT:]))
    page = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        f"<meta http-equiv=refresh content='{int(refresh)}'><title>msclkid emulator</title>"
        f"<style>{STYLE}</style></head><body><main><h1>Microsoft Ads emulator</h1>"
        f"<p>Everything the emulator received{' of kind ' + _e(kind) if kind else ''}; refreshes every"
        f" {int(refresh)} s. JSON: <a href='/_emulator/received'>/_emulator/received</a>,"
        " <a href='/_emulator/state'>/_emulator/state</a>.</p>"
        f"<section><h2>Totals</h2>{summary}{_charts(items)}</section>"
        + (f"<section><h2>Notes explained</h2><dl>{explained}</dl></section>" if explained else "")
        + f"<section><h2>Conversion goals</h2>{goals}</section>"
        f"<section><h2>Received items (newest {_LIMIT})</h2><ul class=items>"
        f"{shown or '<li>nothing received yet</li>'}</ul></section>"
        f"<section><h2>Requests</h2>{requests}</section></main></body></html>"
    )
    return Response(
        page,
        content_type="text/html; charset=utf-8",
        headers={"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"},
    )
