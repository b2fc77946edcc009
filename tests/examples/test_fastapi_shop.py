"""The FastAPI shop (examples/fastapi_shop) through Starlette's TestClient: the real framework, the real middleware.

A visitor who accepts keeps the ad click from landing to checkout, and the recorded conversion carries it; a
visitor who declines in the banner, or whose browser sends ``Sec-GPC: 1``, gets an order whose report holds no
click ID and no hashed email.  The snippet itself runs in real Chromium against this shop under uvicorn:
tests/browser/test_asgi_snippet.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient

from examples.fastapi_shop import CONSENT_COOKIE, create_app, shop_settings
from msclkid_middleware import ConversionTracker

CLICK = "3f2a9c1be0d84c47a5e6b7c8d9e0f1a2"
BASE = "http://127.0.0.1:8001"
SAME_ORIGIN = {"sec-fetch-site": "same-origin"}


@pytest.fixture
def tracker(tmp_path: Path) -> Iterator[ConversionTracker]:
    settings = shop_settings({"MSCLKID_STORE_URL": f"sqlite:///{tmp_path / 'outbox.sqlite3'}"})
    tracker = ConversionTracker(settings=settings, microsoft=False, uet=False)
    yield tracker
    tracker.close()


@pytest.fixture
def app(tracker: ConversionTracker) -> FastAPI:
    return create_app(tracker.settings, tracker=tracker)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, base_url=BASE, follow_redirects=False) as client:  # runs the lifespan too
        yield client


def click_cookies(response: Any) -> list[str]:
    return [v for k, v in response.headers.multi_items() if k == "set-cookie" and v.startswith("msclkid=")]


def answer_banner(client: TestClient, choice: str, next_: str) -> str:
    answered = client.post("/consent", data={"choice": choice, "next": next_}, headers=SAME_ORIGIN)
    assert answered.status_code == 303
    return client.get(answered.headers["location"]).text


def buy(client: TestClient, headers: dict[str, str] | None = None) -> str:
    placed = client.post(
        "/checkout/tea-tin", data={"email": "Ana.Buyer+shop@Example.com"}, headers={**SAME_ORIGIN, **(headers or {})}
    )
    assert placed.status_code == 303, placed.text
    return str(placed.headers["location"]).rsplit("/", 1)[1]


def outbox_row(tracker: ConversionTracker, order_id: str) -> dict[str, Any]:
    (row,) = tracker.store.find(order_id, kind="offline")
    return {"payload": dict(row.payload), "state": row.state}


def test_opt_in_journey_keeps_the_click_from_landing_to_the_conversion(
    client: TestClient, tracker: ConversionTracker
) -> None:
    landing = client.get(f"/go?product=tea-tin&msclkid={CLICK}")
    assert landing.status_code == 302
    # Opt-in: nothing stored yet, so the click goes on in the URL for the snippet to hold in memory.
    assert landing.headers["location"] == f"/products/tea-tin?msclkid={CLICK}"
    assert click_cookies(landing) == []
    page = client.get(landing.headers["location"])
    assert 'data-consent="pending"' in page.text
    assert 'id="consent-banner"' in page.text
    assert '<code id="click-id">none</code>' in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    accepted = answer_banner(client, "granted", f"/products/tea-tin?msclkid={CLICK}")
    assert f'<code id="click-id">{CLICK}</code>' in accepted
    assert 'id="consent-banner"' not in accepted
    assert client.cookies.get("msclkid") is not None
    order_id = buy(client)
    confirmation = client.get(f"/orders/{order_id}")
    assert "waiting for delivery to Microsoft" in confirmation.text
    row = outbox_row(tracker, order_id)
    assert row["payload"]["MicrosoftClickId"] == CLICK
    assert row["state"] == "pending"


def test_a_visitor_who_declines_gets_an_order_reported_without_identifiers(
    client: TestClient, tracker: ConversionTracker
) -> None:
    client.get(f"/go?msclkid={CLICK}")
    declined = answer_banner(client, "denied", f"/products/blue-mug?msclkid={CLICK}")
    assert '<code id="click-id">none</code>' in declined
    assert client.cookies.get("msclkid") is None
    order_id = buy(client)
    assert "not sent: visitor refused consent" in client.get(f"/orders/{order_id}").text
    row = outbox_row(tracker, order_id)
    assert row["state"] == "suppressed"
    assert "MicrosoftClickId" not in row["payload"]
    assert not re.search(r"[0-9a-f]{64}", str(row["payload"]))  # no hashed email either


def test_gpc_is_a_refusal_even_after_the_banner_said_yes(client: TestClient, tracker: ConversionTracker) -> None:
    client.cookies.set(CONSENT_COOKIE, "granted")
    landing = client.get(f"/go?msclkid={CLICK}", headers={"sec-gpc": "1"})
    assert click_cookies(landing) == []
    order_id = buy(client, headers={"sec-gpc": "1"})
    row = outbox_row(tracker, order_id)
    assert row["state"] == "suppressed"
    assert "MicrosoftClickId" not in row["payload"]


def test_an_accepted_visitor_lands_with_the_cookie_on_the_redirect(client: TestClient) -> None:
    client.cookies.set(CONSENT_COOKIE, "granted")
    landing = client.get(f"/go?product=blue-mug&msclkid={CLICK}")
    assert landing.headers["location"] == "/products/blue-mug"  # the click is kept: no need to carry it on
    (cookie,) = click_cookies(landing)
    assert "HttpOnly" in cookie


def test_the_snippet_and_the_capture_endpoint_are_served(client: TestClient) -> None:
    snippet = client.get("/_msclkid.js")
    assert snippet.status_code == 200
    assert snippet.headers["content-type"].startswith("text/javascript")
    client.cookies.set(CONSENT_COOKIE, "granted")
    captured = client.post("/_msclkid", json={"msclkid": CLICK, "consent": "granted"}, headers=SAME_ORIGIN)
    assert captured.status_code == 204
    assert click_cookies(captured)


def test_forms_from_another_site_are_refused(client: TestClient) -> None:
    refused = client.post("/consent", data={"choice": "granted"}, headers={"sec-fetch-site": "cross-site"})
    assert refused.status_code == 403
    refused = client.post("/checkout/tea-tin", data={"email": "a@b.example"}, headers={"origin": "https://evil.test"})
    assert refused.status_code == 403


@pytest.mark.parametrize("next_", ["//evil.test/", "https://evil.test/", "/\\evil.test"])
def test_the_banner_goes_back_only_to_a_path_on_this_site(client: TestClient, next_: str) -> None:
    answered = client.post("/consent", data={"choice": "denied", "next": next_}, headers=SAME_ORIGIN)
    assert answered.headers["location"] == "/"


def test_unknown_product_and_order_are_404(client: TestClient) -> None:
    assert client.get("/products/nothing").status_code == 404
    assert client.get("/orders/ord_nothing").status_code == 404
