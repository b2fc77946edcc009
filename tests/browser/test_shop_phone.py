"""The demo shop on a phone (390 x 844 CSS px, touch) in headless Chromium (issue 22 item 4).

No page scrolls sideways, every order's buttons are on screen and work, the opt-in banner stores nothing until
the visitor accepts and the footer follows the answer without a reload, orders say in words what became of their
reports, and no page logs a console error.  A real shop server (worker thread) talks to a real emulator.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.browser.flask_shop_server import Shop, running_shop

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page

pytestmark = pytest.mark.browser

CLICK = "7d1e0c9ab3f24e5f8a6b7c8d9e0f1a2b"
PHONE_SIZE = {"width": 390, "height": 844}


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[Shop]:
    with running_shop(tmp_path, CLICK) as running:
        yield running


@pytest.fixture
def phone(browser: Browser) -> Iterator[BrowserContext]:
    context = browser.new_context(viewport=PHONE_SIZE, device_scale_factor=3, is_mobile=True, has_touch=True)
    context.set_default_timeout(10_000)
    yield context
    context.close()


def wait_until(predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout:.0f} s")
        time.sleep(0.05)


def watch_errors(page: Page) -> list[str]:
    """Console errors (a 404 favicon, a CSP violation, a failed fetch) and uncaught exceptions."""
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    return errors


def cookie(context: BrowserContext, name: str) -> dict[str, Any] | None:
    return next((dict(c) for c in context.cookies() if c["name"] == name), None)


def assert_fits(page: Page) -> None:
    """Nothing wider than the screen: no sideways scroll."""
    widths = page.evaluate(
        "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth, window.innerWidth]"
    )
    assert widths[0] <= widths[1] <= PHONE_SIZE["width"], f"{page.url}: scrollWidth, clientWidth = {widths}"


def assert_on_screen(page: Page, selector: str) -> None:
    """Visible and wholly inside the screen's width (reachable by scrolling down only)."""
    element = page.locator(selector)
    assert element.is_visible(), selector
    box = element.bounding_box()
    assert box is not None, selector
    assert box["x"] >= 0, (selector, box)
    assert box["x"] + box["width"] <= PHONE_SIZE["width"], (selector, box)


def land(shop: Shop, page: Page) -> None:
    response = page.goto(shop.ad_click())
    assert response is not None
    assert response.ok
    page.wait_for_function("() => window.msclkid && typeof window.msclkid.eventId === 'function'")
    # Marks this document: still there after the banner's answer means the page was not reloaded.
    page.evaluate("() => { window.sameDocument = true; }")


def buy(page: Page) -> str:
    page.click("#buy")
    page.wait_for_function("() => window.msclkid && typeof window.msclkid.eventId === 'function'")
    assert_fits(page)
    page.fill("input[name=email]", "ana@example.com")
    page.fill("input[name=phone]", "+14255551234")
    assert_on_screen(page, "#pay")
    page.click("#pay")
    page.wait_for_selector("#order-confirmed")
    assert_fits(page)
    order_id = page.text_content("#order-id")
    assert order_id is not None
    return order_id


def test_phone_accept_buy_refund_cancel(shop: Shop, phone: BrowserContext) -> None:
    page = phone.new_page()
    errors = watch_errors(page)
    land(shop, page)
    assert_fits(page)
    banner = page.text_content("#consent-banner") or ""
    assert "Nothing is stored or sent until you accept." in banner
    assert_on_screen(page, "#consent-accept")
    assert_on_screen(page, "#consent-decline")
    # Opt-in: nothing kept before the answer, on the server or in the footer.
    assert cookie(phone, "msclkid") is None
    assert page.text_content("#click-id") == "none"
    assert page.text_content("#consent-words") == "not asked yet: nothing is stored"

    page.tap("#consent-accept")
    assert page.is_hidden("#consent-banner")
    # The footer follows the answer on the same page, from what the server now holds.
    page.wait_for_selector("html[data-footer=current]")
    assert page.text_content("#click-id") == CLICK
    assert page.text_content("#consent-state") == "granted"
    assert page.text_content("#consent-words") == "you accepted"
    assert page.evaluate("() => window.sameDocument") is True
    assert cookie(phone, "msclkid") is not None

    order_id = buy(page)
    page.tap("#my-orders")
    page.wait_for_url(f"{shop.url}/orders")
    row = f"#order-{order_id}"
    assert_fits(page)
    for control in (f"{row} form.refund input[name=amount]", f"{row} form.refund button", f"{row} form.cancel button"):
        assert_on_screen(page, control)
    page.fill(f"{row} form.refund input[name=amount]", "3.50")
    page.tap(f"{row} form.refund button")
    page.wait_for_selector(".flash")
    assert "restated to 8.50" in (page.text_content(".flash") or "")
    assert_fits(page)
    assert_on_screen(page, f"{row} form.cancel button")
    page.tap(f"{row} form.cancel button")
    page.wait_for_selector(f"{row} .order-status:text('cancelled')")
    shop.ms.wait_for_received(2, "offline_adjustments", timeout=15)

    def reads(words: str) -> bool:
        page.reload()
        return words in (page.text_content(f"{row} .delivery") or "")

    wait_until(lambda: reads("retracted: delivered"))
    delivery = " ".join((page.text_content(f"{row} .delivery") or "").split())
    assert "Microsoft: delivered" in delivery
    assert "restated to 8.50: delivered" in delivery
    assert_fits(page)

    for link in ("#report-link", "#my-orders"):
        assert_on_screen(page, link)
    page.tap("#report-link")
    page.wait_for_selector("svg[role=img]")  # the HTML report of the shop's outbox, its charts inline
    assert_fits(page)
    assert errors == []


def test_phone_decline_sends_nothing_and_says_so(shop: Shop, phone: BrowserContext) -> None:
    page = phone.new_page()
    errors = watch_errors(page)
    land(shop, page)
    page.tap("#consent-decline")
    page.wait_for_selector("html[data-footer=current]")
    assert page.text_content("#consent-state") == "denied"
    assert page.text_content("#click-id") == "none"
    assert page.text_content("#consent-words") == "you declined: nothing is stored or sent"
    assert page.evaluate("() => window.sameDocument") is True
    assert cookie(phone, "msclkid") is None
    order_id = buy(page)
    page.tap("#my-orders")
    page.wait_for_url(f"{shop.url}/orders")
    assert_fits(page)
    delivery = " ".join((page.text_content(f"#order-{order_id} .delivery") or "").split())
    assert delivery.startswith("Microsoft: not sent: visitor refused consent")
    assert shop.ms.received() == []
    assert errors == []
