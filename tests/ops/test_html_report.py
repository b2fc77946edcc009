"""The HTML report: one self-contained file (no script, nothing loaded), its CSP, its sections, its JSON twin."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from datetime import timedelta

from msclkid_middleware.microsoft.goals import GoalConversionSummary
from msclkid_middleware.ops.html_report import CSP, STYLE, render_report_html, report_data
from msclkid_middleware.ops.reconcile import reconcile
from msclkid_middleware.ops.reports import build_report
from msclkid_middleware.outbox import OutboxStore

from .conftest import T0, new_row
from .test_report_overview import DAY2, seed


def test_one_self_contained_file_under_its_own_strict_csp(store: OutboxStore) -> None:
    seed(store)
    page = render_report_html(build_report(store, now=DAY2))
    assert "<script" not in page.lower()
    assert " style=" not in page  # a CSP without 'unsafe-inline' would block style attributes
    urls = re.findall(r"(?:href|src|xmlns)=\"([^\"]*)\"", page)
    assert set(urls) == {"http://www.w3.org/2000/svg"}  # a namespace name, never fetched
    assert "@import" not in page
    assert "url(" not in page
    digest = base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()
    assert f"'sha256-{digest}'" in CSP
    assert "default-src 'none'" in CSP
    assert f'<meta http-equiv="Content-Security-Policy" content="{CSP}">' in page.replace("&#x27;", "'")
    assert page.count(f"<style>{STYLE}</style>") == 1
    assert 'name=viewport content="width=device-width,initial-scale=1"' in page


def test_every_section_and_chart_is_there(store: OutboxStore) -> None:
    seed(store)
    page = render_report_html(build_report(store, now=DAY2 + timedelta(hours=4)))
    for section in ("days", "rejections", "match-keys", "delivery", "microsoft", "goals"):
        assert f"<section id={section}>" in page
    assert page.count('role="img"') == 4  # per day, codes, match keys, delivery time (no Microsoft chart)
    assert "What it means:</b> no click ID, or hashed email/phone only" in page
    assert "Not fetched for this report" in page
    assert "median 30 s, 90% within 3.0 h" in page


def test_microsofts_figures_beside_ours(store: OutboxStore) -> None:
    seed(store)
    summary = GoalConversionSummary("7", "Purchase", success=2, unattributed=1, alerts={"NoMatchingClickFound": 1})
    result = reconcile({"Purchase": 3}, {"Purchase": "7"}, {"7": summary}, since=T0, until=DAY2)
    report = build_report(store, now=DAY2)
    page = render_report_html(report, result)
    assert "Not fetched" not in page
    assert "NoMatchingClickFound x1" in page
    assert page.count('role="img"') == 7  # + sent, counted and not counted per goal
    data = report_data(report, result)
    assert data["microsoft"]["goals"][0]["microsoft_unattributed"] == 1
    assert json.loads(json.dumps(data)) == data  # JSON-ready as it is
    assert report_data(report)["microsoft"] is None


def test_hostile_goal_names_are_escaped(store: OutboxStore) -> None:
    hostile = '<img src=x onerror=alert(1)>"'
    store.enqueue(
        new_row(1, conversion_name=hostile, payload={**new_row(1).payload, "ConversionName": hostile}), now=T0
    )
    page = render_report_html(build_report(store, now=T0))
    assert "<img" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;&quot;" in page


def test_an_empty_outbox_says_so(store: OutboxStore) -> None:
    page = render_report_html(build_report(store, now=T0))
    assert "nothing recorded in this period" in page
    assert "No rejected or dead events in this period." in page
