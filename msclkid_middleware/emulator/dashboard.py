"""The HTML dashboard at ``/``: what arrived, what was accepted, rejected (with code) or deduplicated.

Everything received is hostile input: every value goes through :func:`html.escape`, the page has no
script, and a strict Content-Security-Policy forbids any that might slip in.
"""

from __future__ import annotations

import html
import json

from werkzeug.wrappers import Request, Response

from msclkid_middleware.emulator.campaign import GOAL_MIN_AGE
from msclkid_middleware.emulator.surface import ControlSurface

__all__ = ["render"]

_STYLE = (
    "body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse;width:100%;"
    "margin-bottom:2em}th,td{border:1px solid #ccc;padding:4px 6px;text-align:left;vertical-align:top}"
    "th{background:#f3f3f3}.accepted{color:#0a6b0a}.rejected{color:#b00020}.duplicate{color:#8a6d00}"
    "code{font-size:12px;white-space:pre-wrap;word-break:break-all}"
)
_LIMIT = 200


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def render(emulator: ControlSurface, request: Request) -> Response:
    kind = request.args.get("kind")
    items = emulator.received(kind)
    refresh = emulator.config.dashboard_refresh_seconds
    rows = []
    for item in reversed(items[-_LIMIT:]):
        payload = json.dumps(item.payload, ensure_ascii=False, sort_keys=True)
        code = f"{item.code} {item.error_code or ''}" if item.code is not None else ""
        rows.append(
            f"<tr><td>{item.seq}</td><td>{_e(item.received_at.strftime('%H:%M:%S'))}</td><td>{_e(item.kind)}</td>"
            f"<td>{_e(item.account)}</td><td>{item.index}</td><td class='{_e(item.outcome)}'>{_e(item.outcome)}</td>"
            f"<td>{_e(code)}<br>{_e(item.message)}</td><td>{_e(', '.join(item.notes + item.warnings))}</td>"
            f"<td><code>{_e(payload[:600])}</code></td><td><code>{_e(item.tracking_id)}</code></td></tr>"
        )
    per_account: dict[tuple[str, str], dict[str, int]] = {}
    for item in items:
        bucket = per_account.setdefault((item.kind, item.account), {"accepted": 0, "rejected": 0, "duplicate": 0})
        bucket[item.outcome] += 1
    summary = "".join(
        f"<tr><td>{_e(kind)}</td><td>{_e(account)}</td><td class=accepted>{c['accepted']}</td>"
        f"<td class=rejected>{c['rejected']}</td><td class=duplicate>{c['duplicate']}</td></tr>"
        for (kind, account), c in sorted(per_account.items())
    )
    requests = "".join(
        f"<tr><td>{r.seq}</td><td>{_e(r.at.strftime('%H:%M:%S'))}</td><td>{_e(r.method)} {_e(r.path)}</td>"
        f"<td>{_e(r.status if r.status is not None else 'dropped')}</td><td>{_e(r.fault)}</td><td>{r.items}</td>"
        f"<td><code>{_e(r.tracking_id)}</code></td></tr>"
        for r in reversed(emulator.requests()[-50:])
    )
    now = emulator.world.clock()
    with emulator.world.lock:
        goal_list = sorted(emulator.world.goals.values(), key=lambda g: (g.account_id, g.id))
    goals = "".join(
        f"<tr><td>{g.id}</td><td>{_e(g.account_id)}</td><td>{_e(g.name)}</td><td>{_e(g.type)}</td><td>{_e(g.status)}</td>"
        f"<td>{_e(g.currency or 'no value')}</td><td>{g.conversion_window_minutes}</td>"
        f"<td>{'on' if g.enhanced else 'off'}</td>"
        f"<td>{(now - g.created_at).total_seconds() / 3600:.1f} h"
        f"{' (uploads get 5615)' if now - g.created_at < GOAL_MIN_AGE else ''}</td></tr>"
        for g in goal_list
    )
    page = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<meta http-equiv=refresh content='{int(refresh)}'><title>msclkid emulator</title>"
        f"<style>{_STYLE}</style></head><body><h1>Microsoft Ads emulator</h1>"
        f"<p>Showing the newest {_LIMIT} items{' of kind ' + _e(kind) if kind else ''}; refreshes every "
        f"{int(refresh)} s. JSON: <a href='/_emulator/received'>/_emulator/received</a>, "
        "<a href='/_emulator/state'>/_emulator/state</a>.</p>"
        "<h2>Totals</h2><table><tr><th>kind</th><th>account / tag</th><th>accepted</th><th>rejected</th>"
        f"<th>duplicate</th></tr>{summary or '<tr><td colspan=5>nothing received yet</td></tr>'}</table>"
        "<h2>Conversion goals</h2><table><tr><th>id</th><th>account</th><th>name</th><th>type</th><th>status</th>"
        f"<th>currency</th><th>window (min)</th><th>enhanced</th><th>age</th></tr>{goals}</table>"
        "<h2>Received items</h2><table><tr><th>#</th><th>time</th><th>kind</th><th>account / tag</th><th>index</th>"
        "<th>outcome</th><th>code</th><th>notes</th><th>payload</th><th>TrackingId</th></tr>"
        f"{''.join(rows)}</table><h2>Requests</h2><table><tr><th>#</th><th>time</th><th>request</th><th>status</th>"
        f"<th>fault</th><th>items</th><th>TrackingId</th></tr>{requests}</table></body></html>"
    )
    return Response(
        page,
        content_type="text/html; charset=utf-8",
        headers={
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-store",
        },
    )
