"""The HTML report and the emulator's dashboard in headless Chromium, at phone and desktop widths.

Both pages are served with their strict Content-Security-Policy (nothing may load; the one style element is
allowed by its hash), so a style or script the policy refused would show up as a console error.  Checked: no
console error, no sideways scroll at 390 px, the charts present with an accessible name, axis labels and a
tooltip per bar; the dashboard's payloads whole (valid JSON, equal to what the emulator received).
"""

from __future__ import annotations

import json
import tempfile
import threading
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from werkzeug.serving import make_server

from msclkid_middleware.emulator.dashboard import CSP as DASHBOARD_CSP
from msclkid_middleware.ops.html_report import CSP, render_html
from msclkid_middleware.testing import EmulatorHandle, run_emulator
from tools.report_demo import Clock, seed, tracker_for

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.browser
WIDTHS = [390, 1280]


@pytest.fixture(scope="module")
def demo() -> Iterator[tuple[EmulatorHandle, str]]:
    """The emulator after two weeks of demo conversions, and the HTML report of them."""
    clock = Clock(datetime.now(UTC).replace(microsecond=0))
    # A slow refresh: the dashboard must not reload while a test reads it.
    with tempfile.TemporaryDirectory() as tmp, run_emulator(dashboard_refresh_seconds=3600) as ms:
        tracker = tracker_for(dict(ms.env), Path(tmp) / "outbox.db", clock)
        try:
            seed(tracker, clock)
            page = render_html(tracker)
        finally:
            tracker.close()
        yield ms, page


@pytest.fixture(scope="module")
def report_url(demo: tuple[EmulatorHandle, str]) -> Iterator[str]:
    body = demo[1].encode()

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        start_response(
            "200 OK",
            [
                ("Content-Type", "text/html; charset=utf-8"),
                ("Content-Security-Policy", CSP),
                ("Cache-Control", "no-store"),
            ],
        )
        return [body]

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/report.html"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def open_page(browser: Browser, url: str, width: int) -> tuple[Page, list[str]]:
    context = browser.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: errors.append(f"fetched {r.url}") if r.url != url else None)
    page.goto(url)
    return page, errors


def charts(page: Page) -> list[dict[str, object]]:
    """Each chart's accessible name (its aria-labelledby title), description, texts and bar tooltips."""
    return page.evaluate(
        """() => [...document.querySelectorAll('svg[role="img"]')].map(svg => ({
            name: svg.getAttribute('aria-labelledby').split(' ').map(id => document.getElementById(id).textContent)
                .join(' | '),
            texts: [...svg.querySelectorAll(':scope > text')].map(t => t.textContent),
            tips: [...svg.querySelectorAll('rect > title')].map(t => t.textContent),
            width: svg.getBoundingClientRect().width,
        }))"""
    )


def no_sideways_scroll(page: Page) -> None:
    scroll, inner = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert scroll <= inner, f"page is {scroll} px wide in a {inner} px window"


@pytest.mark.parametrize("width", WIDTHS)
def test_the_html_report_under_its_csp(browser: Browser, report_url: str, width: int) -> None:
    page, errors = open_page(browser, report_url, width)
    found = charts(page)
    names = [str(c["name"]).split(" | ")[0] for c in found]
    assert names == [
        "Events per day and where they stand",
        "Most frequent rejection and dead-letter codes",
        "What each goal's conversions can be matched on",
        "Time from record to delivery",
    ]
    for chart in found:
        assert str(chart["name"]).split(" | ")[1]  # the text description screen readers read
        assert chart["tips"], chart["name"]  # a tooltip per bar
        assert float(chart["width"]) <= width  # type: ignore[arg-type]
    assert "day recorded (UTC)" in found[0]["texts"]  # type: ignore[operator]
    assert "events" in found[0]["texts"]  # type: ignore[operator]
    # The hashed <style> applied under the CSP: the page's own background, not the browser's white.
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(246, 247, 249)"
    page.get_by_text("The numbers per day").click()
    assert page.locator("#days table").is_visible()
    no_sideways_scroll(page)
    assert errors == []
    page.context.close()


def test_the_html_report_opened_from_disk(browser: Browser, demo: tuple[EmulatorHandle, str], tmp_path: Path) -> None:
    path = tmp_path / "report.html"
    path.write_text(demo[1], encoding="utf-8")  # its own <meta> CSP applies: nothing loads offline either
    page, errors = open_page(browser, path.as_uri(), 390)
    assert len(charts(page)) == 4
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(246, 247, 249)"
    no_sideways_scroll(page)
    assert errors == []
    page.context.close()


@pytest.mark.parametrize("width", WIDTHS)
def test_the_dashboard_charts_payloads_and_notes(
    browser: Browser, demo: tuple[EmulatorHandle, str], width: int
) -> None:
    ms = demo[0]
    assert DASHBOARD_CSP.startswith("default-src 'none'")
    page, errors = open_page(browser, ms.url + "/", width)
    found = charts(page)
    assert [str(c["name"]).split(" | ")[0] for c in found] == [
        "Items received, by kind and outcome",
        "Rejections by code",
        "Offline conversions: match keys per goal",
        "Notes on received items",
    ]
    assert all(c["tips"] for c in found)
    # Payloads: whole, pretty-printed, collapsed until asked for.
    newest = ms.received()[-1]
    first = page.locator("ul.items > li").first
    details = first.locator("details", has=page.locator("pre")).last
    assert not details.locator("pre").is_visible()
    details.locator("summary").click()
    shown = details.locator("pre").inner_text()
    assert json.loads(shown) == newest.payload
    assert "\n  " in shown  # indented
    # Every note is explained in words, with what Microsoft would do.
    assert "ClickNotRegistered" in page.locator("dl").inner_text()
    assert "the real Microsoft counts the conversion only if the click really happened" in page.content()
    no_sideways_scroll(page)
    assert errors == []
    page.context.close()
