"""Server-side UET page loads in real Chromium (issue 13): a shop journey, then the same journey without consent.

The shop is a small WSGI app wrapped by MsclkidMiddleware with a PageLoadRecorder as its ``on_page_view`` hook and a
ConversionTracker whose UET client talks to the emulator over loopback HTTP. Its pages render
``render_page_tags`` (the page-load ID ``<meta>`` and the ID-sync script tag) and load the snippet; the ID-sync
pixel points at ``/_test/c.gif`` on the same server, a route standing in for ``https://c.bing.com/c.gif`` that
records every request the browser makes to it. No page has inline script (strict-CSP shape).
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import pytest
from werkzeug.serving import make_server

from msclkid_middleware.capture.consent import ConsentPolicy
from msclkid_middleware.capture.visitor import VisitorCookie
from msclkid_middleware.config import Settings
from msclkid_middleware.dispatch.page_loads import PageLoadRecorder
from msclkid_middleware.dispatch.tracker import ConversionTracker
from msclkid_middleware.middleware import MsclkidMiddleware, get_anonymous_id, get_click, get_consent, render_page_tags
from msclkid_middleware.testing import EmulatorHandle, run_emulator

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment
    from playwright.sync_api import BrowserContext, Page

pytestmark = pytest.mark.browser

HEX = "b4458f42c1b214060f81e89d7a9da3bb"
KEYS = ["uet-browser-test-key-0123456789"]
PIXEL = "/_test/c.gif"
GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")  # 1x1 transparent
BUY_JS = """
document.getElementById('buy').addEventListener('click', function () {
  fetch('/buy', {method: 'POST', headers: {'Content-Type': 'application/json'},
    body: JSON.stringify({pageLoadId: msclkid.pageLoadId, eventId: msclkid.eventId('purchase')})})
    .then(function (r) { return r.json(); })
    .then(function (data) { document.getElementById('done').textContent = data.state; });
});
"""
PAGES = {"/": ("Home", "/products/mug"), "/products/mug": ("Blue mug", "/cart"), "/cart": ("Cart", None)}


@dataclass
class Shop:
    base_url: str
    customer_id: str
    tracker: ConversionTracker
    recorder: PageLoadRecorder
    pixels: list[dict[str, list[str]]] = field(default_factory=list)
    purchases: list[dict[str, Any]] = field(default_factory=list)
    raw_pages: dict[str, str] = field(default_factory=dict)

    def url(self, path: str) -> str:
        return self.base_url + path


def make_shop_app(shop: Shop) -> Callable[[WSGIEnvironment, StartResponse], Iterable[bytes]]:
    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ["PATH_INFO"]
        if path == "/buy" and environ["REQUEST_METHOD"] == "POST":
            body = json.loads(environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0)))
            status = shop.tracker.record_uet_event(
                event_id=body["eventId"],
                event_name="purchase",
                event_time=shop.tracker.clock(),
                click=get_click(environ),
                anonymous_id=get_anonymous_id(environ),
                page_load_id=body["pageLoadId"],
                value=24.0,
                currency="USD",
                transaction_id="T-1001",
                consent=get_consent(environ),
            )
            shop.purchases.append(body)
            start_response("200 OK", [("Content-Type", "application/json")])
            return [json.dumps({"state": status.state}).encode()]
        if path == "/buy.js":
            start_response("200 OK", [("Content-Type", "text/javascript")])
            return [BUY_JS.encode()]
        if path in shop.raw_pages:
            start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
            return [shop.raw_pages[path].encode()]
        if path not in PAGES:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found"]
        title, next_page = PAGES[path]
        tags = render_page_tags(environ, customer_id=shop.customer_id, title=title, pixel_url=PIXEL)
        link = f'<a id="next" href="{next_page}">next</a>' if next_page else '<button id="buy">Buy</button>'
        buy = '<script src="/buy.js" defer></script><p id="done"></p>' if next_page is None else ""
        page = (
            f'<!doctype html><html><head><meta charset="utf-8"><title>{title}</title>{tags}'
            f'<script src="/_msclkid.js" async></script></head><body><h1>{title}</h1>{link}{buy}</body></html>'
        )
        start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
        return [page.encode()]

    return app


@pytest.fixture
def ms() -> Iterator[EmulatorHandle]:
    with run_emulator() as handle:
        yield handle


@pytest.fixture
def start_shop(ms: EmulatorHandle, tmp_path: Path) -> Iterator[Callable[[str], Shop]]:
    opened: list[tuple[Any, threading.Thread, Shop]] = []

    def start(consent_default: str) -> Shop:
        tracker = ConversionTracker(
            settings=Settings.from_env(ms.env), store_url=f"sqlite:///{tmp_path / f'outbox-{consent_default}.db'}"
        )
        recorder = PageLoadRecorder(tracker, mode="html")
        shop = Shop("", ms.env["MSADS_CUSTOMER_ID"], tracker, recorder)
        wrapped = MsclkidMiddleware(
            make_shop_app(shop),
            secret_keys=KEYS,
            consent=ConsentPolicy(default=consent_default),  # type: ignore[arg-type]
            cookie_secure=False,
            allow_insecure_cookie=True,
            on_page_view=recorder,
        )

        def dispatch(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
            if environ["PATH_INFO"] == PIXEL:  # the stand-in for c.bing.com: outside the shop and its middleware
                shop.pixels.append(parse_qs(environ.get("QUERY_STRING", "")))
                start_response("200 OK", [("Content-Type", "image/gif"), ("Cache-Control", "no-store")])
                return [GIF]
            return wrapped(environ, start_response)

        server = make_server("127.0.0.1", 0, dispatch, threaded=True)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        thread.start()
        shop.base_url = f"http://127.0.0.1:{server.server_port}"
        opened.append((server, thread, shop))
        return shop

    yield start
    for server, thread, shop in opened:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        shop.recorder.close()
        shop.tracker.close()


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout:.0f} s")
        time.sleep(0.02)


def journey(page: Page, shop: Shop) -> list[str]:
    """Land from a Bing ad, visit two more pages, buy; returns the page-load IDs the snippet saw on each page."""
    seen: list[str] = []
    page.goto(shop.url(f"/?msclkid={HEX}"), referer="https://www.bing.com/")
    for _ in range(2):
        page.wait_for_function("() => window.msclkid && window.msclkid.pageLoadId")
        seen.append(page.evaluate("msclkid.pageLoadId"))
        with page.expect_navigation():
            page.click("#next")
    page.wait_for_function("() => window.msclkid && window.msclkid.pageLoadId")
    seen.append(page.evaluate("msclkid.pageLoadId"))
    page.click("#buy")
    page.wait_for_function("() => document.getElementById('done').textContent !== ''")
    return seen


def delivered_payloads(shop: Shop, ms: EmulatorHandle) -> list[dict[str, Any]]:
    assert shop.recorder.flush(10)
    report = shop.tracker.flush()
    assert report.remaining == 0
    return [item.payload for item in ms.received("uet") if item.outcome == "accepted"]


def test_journey_with_consent(context: BrowserContext, start_shop: Callable[[str], Shop], ms: EmulatorHandle) -> None:
    shop = start_shop("granted")
    page = context.new_page()
    seen = journey(page, shop)
    wait_until(lambda: len(shop.pixels) >= 1)

    payloads = delivered_payloads(shop, ms)
    loads = [p for p in payloads if p["eventType"] == "pageLoad"]
    customs = [p for p in payloads if p["eventType"] == "custom"]
    assert len(loads) == 3
    loads.sort(key=lambda p: seen.index(p["pageLoadId"]))
    # URLs and referrers as the browser navigated; one page-load ID per page, the one the page itself had.
    assert [p["eventSourceUrl"] for p in loads] == [
        shop.url(f"/?msclkid={HEX}"),
        shop.url("/products/mug"),
        shop.url("/cart"),
    ]
    assert [p.get("referrerUrl") for p in loads] == [
        "https://www.bing.com/",
        shop.url(f"/?msclkid={HEX}"),
        shop.url("/products/mug"),
    ]
    assert [p["pageLoadId"] for p in loads] == seen
    assert len(set(seen)) == 3
    assert [p["pageTitle"] for p in loads] == ["Home", "Blue mug", "Cart"]
    assert all(p["adStorageConsent"] == "G" for p in payloads)
    assert all(p["userData"]["msclkid"] == HEX for p in payloads)  # the click ID on every event

    # One anonymous ID everywhere: every event, the visitor cookie, and the one ID-sync pixel the browser fired.
    anonymous_ids = {p["userData"]["anonymousId"] for p in payloads}
    assert len(anonymous_ids) == 1
    (anonymous_id,) = anonymous_ids
    (pixel,) = shop.pixels  # at most once per session: not again on pages two and three
    assert pixel == {"Red3": [f"BACID_{shop.customer_id}"], "vid": [anonymous_id]}
    (cookie,) = [c for c in context.cookies() if c["name"] == "msclkid_vid"]
    loaded = VisitorCookie(KEYS, name="msclkid_vid").decode(cookie["value"])
    assert loaded is not None
    assert loaded.visitor_id == anonymous_id
    assert cookie["httpOnly"] is True
    assert cookie["expires"] - time.time() > 389 * 86400

    # The purchase: a custom event tied to the cart page's page load, with the browser-made event ID.
    (purchase,) = customs
    (sent,) = shop.purchases
    assert purchase["eventName"] == "purchase"
    assert purchase["eventId"] == sent["eventId"]
    assert sent["eventId"].startswith(f"purchase-{seen[2]}-")
    assert purchase["pageLoadId"] == seen[2]
    assert purchase["customData"] == {"value": 24.0, "currency": "USD", "transactionId": "T-1001"}

    # A new tab in the same browser session: still no second pixel.
    other = context.new_page()
    other.goto(shop.url("/products/mug"))
    other.wait_for_function("() => window.msclkid && window.msclkid.pageLoadId")
    other.wait_for_load_state("networkidle")
    assert len(shop.pixels) == 1


def test_journey_without_consent(
    context: BrowserContext, start_shop: Callable[[str], Shop], ms: EmulatorHandle
) -> None:
    shop = start_shop("denied")
    page = context.new_page()
    pixel_requests: list[str] = []
    page.on("request", lambda request: pixel_requests.append(request.url) if PIXEL in request.url else None)
    seen = journey(page, shop)
    page.wait_for_load_state("networkidle")

    payloads = delivered_payloads(shop, ms)
    loads = [p for p in payloads if p["eventType"] == "pageLoad"]
    assert len(loads) == 3
    assert sorted(p["pageLoadId"] for p in loads) == sorted(seen)
    assert all(p["adStorageConsent"] == "D" for p in loads)
    for p in loads:
        # No click ID, no IP address, no stored visitor ID: only a one-off ID (UET CAPI needs one identifier).
        # Issue 19: no IP and no user agent either, unless MSCLKID_UET_DENIED_SEND_CLIENT_INFO is on.
        assert set(p["userData"]) == {"anonymousId"}
    assert len({p["userData"]["anonymousId"] for p in loads}) == 3
    # The purchase has nothing it may be matched on: it stays in the outbox as suppressed, never sent.
    assert [p for p in payloads if p["eventType"] == "custom"] == []
    assert shop.tracker.status(shop.purchases[0]["eventId"]).state == "suppressed"
    # No anonymous-ID cookie, no click cookie, no pixel, no sync marker.
    assert [c["name"] for c in context.cookies()] == []
    assert pixel_requests == []
    assert shop.pixels == []


def test_sync_script_sends_only_well_formed_ids(context: BrowserContext, start_shop: Callable[[str], Shop]) -> None:
    """The sync script as a unit in Chromium: malformed IDs send nothing, uid is encoded, one pixel per vid."""
    shop = start_shop("granted")
    vid = "0f81e89d7a9da3bbb4458f42c1b21406"

    def tag(**data: str) -> str:
        attributes = "".join(f' data-{name}="{value}"' for name, value in data.items())
        return f'<!doctype html><title>t</title><script src="/_msclkid-sync.js"{attributes} async></script>'

    shop.raw_pages.update(
        {
            "/raw/bad-vid": tag(cid="1234567", vid="not-a-hex-visitor-id", pixel=PIXEL),
            "/raw/bad-cid": tag(cid="12a", vid=vid, pixel=PIXEL),
            "/raw/no-vid": tag(cid="1234567", pixel=PIXEL),
            "/raw/good": tag(cid="1234567", vid=vid, uid="user 1&x", pixel=PIXEL),
            "/raw/other-vid": tag(cid="1234567", vid=vid.upper(), pixel=PIXEL),
        }
    )
    page = context.new_page()
    for path in ("/raw/bad-vid", "/raw/bad-cid", "/raw/no-vid"):
        page.goto(shop.url(path))
        page.wait_for_load_state("networkidle")
    assert shop.pixels == []
    for _ in range(2):
        page.goto(shop.url("/raw/good"))
        page.wait_for_load_state("networkidle")
    assert shop.pixels == [{"Red3": ["BACID_1234567"], "vid": [vid], "uid": ["user 1&x"]}]
    page.goto(shop.url("/raw/other-vid"))  # a different vid in the same session is synced again
    wait_until(lambda: len(shop.pixels) == 2)
    assert shop.pixels[1]["vid"] == [vid.upper()]
    (marker,) = [c for c in context.cookies() if c["name"] == "msclkid_sync"]
    assert marker["expires"] == -1  # a session cookie
