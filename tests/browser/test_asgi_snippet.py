"""The snippet in real Chromium against the FastAPI shop under uvicorn on 127.0.0.1 (issue 18, "Done means").

The shop (examples/fastapi_shop) runs opt-in behind MsclkidASGIMiddleware, served by a real uvicorn server in a
thread; Chromium lands from an ad click, the snippet holds the click while consent is pending, the banner's answer
goes to the snippet, and the snippet's ``POST /_msclkid`` reaches the ASGI adapter's capture endpoint.  The order
placed afterwards is read back from the outbox.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import uvicorn

from examples.fastapi_shop import create_app, shop_settings
from msclkid_middleware import ConversionTracker

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, Page, Response

pytestmark = pytest.mark.browser

CLICK = "3f2a9c1be0d84c47a5e6b7c8d9e0f1a2"


@dataclass(frozen=True, slots=True)
class Shop:
    base_url: str
    tracker: ConversionTracker

    def url(self, path: str) -> str:
        return self.base_url + path

    def row(self, order_id: str) -> Any:
        (row,) = self.tracker.store.find(order_id, kind="offline")
        return row


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[Shop]:
    settings = shop_settings({"MSCLKID_STORE_URL": f"sqlite:///{tmp_path / 'outbox.sqlite3'}"})
    tracker = ConversionTracker(settings=settings, microsoft=False, uet=False)
    app = create_app(settings, tracker=tracker)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive(), "uvicorn stopped"
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield Shop(f"http://127.0.0.1:{port}", tracker)
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()
    tracker.close()


def click_cookies(context: BrowserContext) -> list[dict[str, Any]]:
    return [dict(cookie) for cookie in context.cookies() if cookie["name"] == "msclkid"]


def is_capture(shop: Shop) -> Any:
    return lambda response: response.url == shop.url("/_msclkid") and response.request.method == "POST"


def buy(page: Page) -> str:
    page.fill('input[name="email"]', "ana@example.com")
    with page.expect_navigation():
        page.click("#buy")
    assert "/orders/" in page.url
    return page.url.rsplit("/", 1)[1]


def test_accepting_in_the_banner_lets_the_snippet_capture_the_held_click(context: BrowserContext, shop: Shop) -> None:
    page = context.new_page()
    page.goto(shop.url(f"/go?product=tea-tin&msclkid={CLICK}"))
    assert page.url == shop.url(f"/products/tea-tin?msclkid={CLICK}")  # the redirect carried the click on
    assert page.is_visible("#consent-banner")
    assert click_cookies(context) == []  # opt-in: nothing stored yet
    page.wait_for_function("() => window.msclkid && typeof window.msclkid.eventId === 'function'")
    with page.expect_response(is_capture(shop)) as captured:
        page.click("#accept")
    response: Response = captured.value
    assert response.status == 204
    assert response.request.post_data_json["msclkid"] == CLICK
    (cookie,) = click_cookies(context)
    assert cookie["httpOnly"] is True
    page.reload()
    assert page.text_content("#click-id") == CLICK  # the server's view: get_click(request.scope)
    order_id = buy(page)
    assert "waiting for delivery to Microsoft" in (page.text_content("#report") or "")
    row = shop.row(order_id)
    assert row.payload["MicrosoftClickId"] == CLICK
    assert row.state == "pending"


def test_declining_keeps_nothing_and_the_order_carries_no_identifier(context: BrowserContext, shop: Shop) -> None:
    page = context.new_page()
    sent: list[str] = []
    page.on("request", lambda request: sent.append(request.post_data or "") if request.method == "POST" else None)
    page.goto(shop.url(f"/go?msclkid={CLICK}"))
    page.wait_for_function("() => window.msclkid && typeof window.msclkid.eventId === 'function'")
    page.click("#decline")
    page.wait_for_timeout(300)  # time for a capture request that must not carry the click
    assert not [body for body in sent if CLICK in body]
    assert click_cookies(context) == []
    page.goto(shop.url("/products/blue-mug"))
    assert page.text_content("#click-id") == "none"
    assert page.text_content("#consent-state") == "denied"
    order_id = buy(page)
    assert "not sent: visitor refused consent" in (page.text_content("#report") or "")
    row = shop.row(order_id)
    assert row.state == "suppressed"
    assert "MicrosoftClickId" not in row.payload
