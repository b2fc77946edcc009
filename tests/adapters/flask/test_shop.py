"""The demo shop (examples/flask_shop) through the Flask test client, against the emulator."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from flask_helpers import CLICK

from examples.flask_shop import CONSENT_COOKIE, create_app, msclkid
from msclkid_middleware.testing import EmulatorHandle


@pytest.fixture
def shop(ms: EmulatorHandle, tmp_path: Path) -> Iterator[Flask]:
    app = create_app({**ms.env, "TESTING": True}, instance_path=str(tmp_path))
    yield app
    msclkid.close(app)


def csrf(client: FlaskClient) -> str:
    """The session's CSRF token, as the checkout form carries it (every POST form needs it)."""
    match = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/checkout/blue-mug").get_data(as_text=True))
    assert match is not None
    return match.group(1)


def order_id_of(location: str) -> str:
    match = re.fullmatch(r"/orders/(ord_[0-9a-f]{12})", location)
    assert match is not None, location
    return match.group(1)


def test_pages_run_under_a_strict_csp_with_the_snippet_nonce(shop: Flask) -> None:
    client = shop.test_client()
    page = client.get("/products/blue-mug")
    policy = page.headers["Content-Security-Policy"]
    nonce = re.search(r"'nonce-([^']+)'", policy)
    assert nonce is not None
    assert "unsafe-inline" not in policy
    html = page.get_data(as_text=True)
    # Opt-in and not asked yet: the snippet holds the landing click in memory until the banner's answer.
    assert f'<script src="/_msclkid.js" data-consent="pending" async nonce="{nonce.group(1)}"></script>' in html
    assert "<script>" not in html  # nothing inline
    assert 'id="consent-banner"' in html
    client.set_cookie(CONSENT_COOKIE, "granted")
    again = client.get("/products/blue-mug").get_data(as_text=True)
    assert 'id="consent-banner"' not in again
    assert 'data-consent="granted"' in again


def test_landing_redirect_keeps_the_click_and_unknown_products_fall_back(shop: Flask) -> None:
    client = shop.test_client()
    client.set_cookie(CONSENT_COOKIE, "granted")  # the shop runs opt-in: only an accepted click is kept
    landing = client.get(f"/go?product=nope&msclkid={CLICK}")
    assert landing.status_code == 302
    assert landing.headers["Location"] == "/products/blue-mug"
    assert f"msclkid=1.{CLICK}." in landing.headers["Set-Cookie"]
    assert CLICK in client.get("/products/blue-mug").get_data(as_text=True)


def test_checkout_validates_before_anything_is_recorded(shop: Flask) -> None:
    client = shop.test_client()
    bad = client.post(
        "/checkout/blue-mug",
        data={"email": "not-an-email", "phone": "555", "quantity": "99", "csrf_token": csrf(client)},
    )
    assert bad.status_code == 400
    text = bad.get_data(as_text=True)
    assert "Enter an email address" in text
    assert "country code" in text
    assert "Choose 1 to 10" in text
    assert msclkid.state(shop).tracker.store.open_count() == 0
    assert client.get("/checkout/nope").status_code == 404


def test_orders_belong_to_their_session_and_refunds_are_bounded(shop: Flask, ms: EmulatorHandle) -> None:
    client = shop.test_client()
    client.set_cookie(CONSENT_COOKIE, "granted")  # the shop runs opt-in
    client.get(f"/go?msclkid={CLICK}")
    token = csrf(client)
    placed = client.post(
        "/checkout/tea-tin",
        data={"email": "a@example.com", "phone": "+14255551234", "quantity": "1", "csrf_token": token},
    )
    assert placed.status_code == 303
    order_id = order_id_of(placed.headers["Location"])
    other = shop.test_client()
    assert other.get(f"/orders/{order_id}").status_code == 404
    assert other.post(f"/orders/{order_id}/cancel", data={"csrf_token": csrf(other)}).status_code == 404
    too_much = client.post(
        f"/orders/{order_id}/refund", data={"amount": "24.50", "csrf_token": token}, follow_redirects=True
    )
    assert "less than 24.50" in too_much.get_data(as_text=True)
    not_a_number = client.post(
        f"/orders/{order_id}/refund", data={"amount": "x", "csrf_token": token}, follow_redirects=True
    )
    assert not_a_number.status_code == 200
    tracker = msclkid.state(shop).tracker
    assert tracker.status(order_id).adjustments == ()
    client.post(f"/orders/{order_id}/refund", data={"amount": "4.50", "csrf_token": token})
    client.post(f"/orders/{order_id}/cancel", data={"csrf_token": token})
    again = client.post(f"/orders/{order_id}/cancel", data={"csrf_token": token}, follow_redirects=True)
    assert "already cancelled" in again.get_data(as_text=True)
    assert [a.state for a in tracker.status(order_id).adjustments] == ["pending", "pending"]
    tracker.flush(timeout=10)
    tracker.flush(timeout=10)  # adjustments go once the original is delivered
    adjustments = ms.received("offline_adjustments", outcome="accepted")
    assert [(a.payload["AdjustmentType"], a.payload.get("AdjustmentValue")) for a in adjustments] == [
        ("Restate", 20.0),
        ("Retract", None),
    ]
    page = client.get("/orders").get_data(as_text=True)
    assert "cancelled" in page
    assert "Microsoft: delivered" in page


def test_the_banner_works_without_javascript(shop: Flask) -> None:
    client = shop.test_client()
    client.get(f"/go?msclkid={CLICK}")
    token = csrf(client)
    answer = client.post("/consent", data={"choice": "denied", "next": "/products/blue-mug", "csrf_token": token})
    assert answer.status_code == 303
    assert answer.headers["Location"] == "/products/blue-mug"
    page = client.get("/products/blue-mug").get_data(as_text=True)
    assert '<code id="click-id">none</code>' in page
    assert '<code id="consent-state">denied</code>' in page
    assert client.get_cookie("msclkid") is None  # the middleware deleted it
    hostile = client.post("/consent", data={"choice": "granted", "next": "//evil.example/", "csrf_token": token})
    assert hostile.headers["Location"] == "/"


def test_a_conversion_that_cannot_be_recorded_never_costs_the_sale(
    ms: EmulatorHandle, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A misconfigured goal list: "Purchase" is unknown, so the tracker refuses to record it.
    app = create_app({**ms.env, "TESTING": True, "MSADS_CONVERSION_GOALS": "Lead"}, instance_path=str(tmp_path))
    try:
        client = app.test_client()
        with caplog.at_level("ERROR"):
            placed = client.post(
                "/checkout/blue-mug",
                data={"email": "ana@example.com", "phone": "+14255551234", "quantity": "1", "csrf_token": csrf(client)},
            )
        assert placed.status_code == 303
        order_id = order_id_of(placed.headers["Location"])
        assert client.get(placed.headers["Location"]).status_code == 200
        assert f"order {order_id}: conversion not recorded" in caplog.text
        assert "ana@example.com" not in caplog.text
        assert msclkid.state(app).tracker.store.find(order_id) == []
    finally:
        msclkid.close(app)
