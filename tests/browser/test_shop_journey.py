"""The whole journey of the demo shop in headless Chromium, asserted against the emulator's received state.

The shop (examples/flask_shop) runs on a real werkzeug server on 127.0.0.1 with ``MSCLKID_WORKER="thread"``,
pointed at a real emulator on another loopback port; nothing is stubbed between the browser and the emulator.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from examples.flask_shop import msclkid
from msclkid_middleware.conversions.identity import hash_email, hash_phone
from tests.browser.flask_shop_server import Shop, running_shop

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, ConsoleMessage, Page

pytestmark = pytest.mark.browser

CLICK = "3f2a9c1be0d84c47a5e6b7c8d9e0f1a2"
EMAIL = "Ana.Doe+ads@Example.com"
PHONE = "+14255551234"


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[Shop]:
    with running_shop(tmp_path, CLICK) as running:
        yield running


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout:.0f} s")
        time.sleep(0.02)


def cookie(context: BrowserContext, name: str) -> dict[str, Any] | None:
    return next((dict(c) for c in context.cookies() if c["name"] == name), None)


def console_errors(page: Page) -> list[str]:
    errors: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(message.text)

    page.on("console", on_console)
    return errors


def land_and_choose(shop: Shop, page: Page, choice: str) -> None:
    """Open the ad URL, follow the redirect chain to the product page, answer the consent banner."""
    response = page.goto(shop.ad_click())
    assert response is not None
    assert response.ok
    # The shop runs opt-in: nothing is kept before the answer, so the redirect carries the click on in the URL.
    assert page.url == f"{shop.url}/products/blue-mug?msclkid={CLICK}"
    hop = response.request.redirected_from
    assert hop is not None
    assert hop.url == shop.ad_click()
    hop_response = hop.response()
    assert hop_response is not None
    assert hop_response.status == 302
    assert page.text_content("#click-id") == "none"  # not stored until the visitor accepts
    assert cookie(page.context, "msclkid") is None
    page.wait_for_function("() => window.msclkid && typeof window.msclkid.eventId === 'function'")
    page.click("#consent-accept" if choice == "granted" else "#consent-decline")
    assert page.is_hidden("#consent-banner")


def buy(page: Page, quantity: str = "2") -> str:
    page.click("#buy")
    page.wait_for_function("() => window.msclkid && typeof window.msclkid.eventId === 'function'")
    page.fill("input[name=quantity]", quantity)
    page.fill("input[name=email]", EMAIL)
    page.fill("input[name=phone]", PHONE)
    page.click("#pay")
    page.wait_for_selector("#order-confirmed")
    order_id = page.text_content("#order-id")
    assert order_id is not None
    assert re.fullmatch(r"ord_[0-9a-f]{12}", order_id)
    return order_id


def pushed_uet_event(page: Page, name: str) -> dict[str, Any]:
    # shop.js is deferred: on a loaded machine the confirmation's selector can appear before it has run.
    page.wait_for_function("(name) => Array.isArray(window.uetq) && window.uetq.includes(name)", arg=name)
    queue = page.evaluate("() => window.uetq")
    index = queue.index(name)
    assert queue[index - 1] == "event"
    data: dict[str, Any] = queue[index + 1]
    return data


def test_ad_click_to_purchase_refund_and_cancel(shop: Shop, context: BrowserContext) -> None:
    page = context.new_page()
    errors = console_errors(page)
    land_and_choose(shop, page, "granted")
    wait_until(lambda: (cookie(context, "shop_consent") or {}).get("value") == "granted")
    # The snippet posts the click it held in memory once the visitor accepts.
    wait_until(lambda: cookie(context, "msclkid") is not None)
    click_cookie = cookie(context, "msclkid")
    assert click_cookie is not None
    assert click_cookie["httpOnly"] is True
    order_id = buy(page)
    pushed = pushed_uet_event(page, "checkout_complete")
    # The page's UET push carries the ID the snippet generated on the checkout page (msclkid.eventId()).
    assert re.fullmatch(r"checkout_complete-[0-9a-f-]{36}-1", pushed["event_id"])
    assert pushed["revenue_value"] == 24.0
    assert pushed["currency"] == "USD"

    ms = shop.ms
    (offline,) = ms.wait_for_received(1, "offline", timeout=15)
    assert offline.outcome == "accepted"
    original = offline.payload
    assert original["MicrosoftClickId"] == CLICK
    assert original["HashedEmailAddress"] == hash_email(EMAIL)
    assert original["HashedEmailAddress"] == hash_email("anadoe@example.com")  # dots and +alias removed
    assert original["HashedPhoneNumber"] == hash_phone(PHONE)
    assert original["ConversionName"] == "Purchase"
    assert original["ConversionValue"] == 24.0
    assert original["ConversionCurrencyCode"] == "USD"
    assert EMAIL.lower() not in str(original).lower()
    (uet,) = ms.wait_for_received(1, "uet", timeout=15)
    assert uet.outcome == "accepted"
    assert uet.payload["eventId"] == pushed["event_id"]  # deduplicated with the browser's push
    assert uet.payload["eventName"] == "checkout_complete"
    assert uet.payload["userData"]["msclkid"] == CLICK
    assert uet.payload["userData"]["em"] == hash_email(EMAIL)
    assert uet.payload["customData"]["value"] == 24.0
    assert uet.payload["customData"]["transactionId"] == order_id
    assert uet.payload["adStorageConsent"] == "G"

    page.click("#my-orders")
    row = f"#order-{order_id}"
    page.fill(f"{row} form.refund input[name=amount]", "5")
    page.click(f"{row} form.refund button")
    page.wait_for_selector(".flash")
    assert "restated to 19" in (page.text_content(".flash") or "")
    ms.wait_for_received(1, "offline_adjustments", timeout=15)
    page.click(f"{row} form.cancel button")
    page.wait_for_selector(f"{row} .order-status:text('cancelled')")
    adjustments = ms.wait_for_received(2, "offline_adjustments", timeout=15)
    assert [a.payload["AdjustmentType"] for a in adjustments] == ["Restate", "Retract"]
    assert [a.outcome for a in adjustments] == ["accepted", "accepted"]
    restate, retract = (a.payload for a in adjustments)
    assert restate["AdjustmentValue"] == 19.0
    assert "AdjustmentValue" not in retract
    for adjustment in (restate, retract):
        assert adjustment["ConversionName"] == original["ConversionName"]
        assert adjustment["ConversionTime"] == original["ConversionTime"]
        assert adjustment["MicrosoftClickId"] == CLICK
    # Exactly one of each arrived, and the page ran under the strict CSP without a violation.
    assert len(ms.received("offline")) == 1
    assert len(ms.received("uet")) == 1
    assert not [e for e in errors if "Content Security Policy" in e]


def test_declined_consent_sends_nothing(shop: Shop, context: BrowserContext) -> None:
    page = context.new_page()
    land_and_choose(shop, page, "denied")
    wait_until(lambda: (cookie(context, "shop_consent") or {}).get("value") == "denied")
    # The snippet reported the refusal and the server deleted its click cookie.
    wait_until(lambda: cookie(context, "msclkid") is None)
    order_id = buy(page)
    event_id = pushed_uet_event(page, "checkout_complete")["event_id"]
    assert page.text_content("#click-id") == "none"
    assert page.text_content("#consent-state") == "denied"
    tracker = msclkid.state(shop.app).tracker
    tracker.flush(timeout=10)
    assert tracker.status(order_id).state == "suppressed"
    assert tracker.status(event_id).state == "suppressed"
    page.click("#my-orders")
    page.click(f"#order-{order_id} form.cancel button")
    page.wait_for_selector(f"#order-{order_id} .order-status:text('cancelled')")
    tracker.flush(timeout=10)
    assert shop.ms.received() == []
    assert shop.ms.requests() == []  # not even a token request
