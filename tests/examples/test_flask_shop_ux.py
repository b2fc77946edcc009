"""The demo shop as a visitor and an owner meet it (issue 22 item 4), through the Flask test client.

Opt-in banner words and what is stored, the status of each order in words, the report page, the favicon, the
emulator link, and the launcher's answer to a busy port.  Phone layout and the same-page footer update run in
real Chromium: tests/browser/test_shop_phone.py.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from examples.flask_shop import create_app, msclkid
from examples.flask_shop.demo import HOST, port_problem
from examples.flask_shop.status_words import describe, event_words
from msclkid_middleware.ops.html_report import CSP as HTML_REPORT_CSP
from msclkid_middleware.testing import EmulatorHandle

ROOT = Path(__file__).resolve().parents[2]
CLICK = "3f2a9c1be0d84c47a5e6b7c8d9e0f1a2"
BUYER = {"email": "ana@example.com", "phone": "+14255551234", "quantity": "1"}


def token(client: FlaskClient) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/checkout/blue-mug").get_data(as_text=True))
    assert match is not None
    return match.group(1)


def answer_banner(client: FlaskClient, choice: str, next_: str) -> str:
    """The banner without JavaScript: POST /consent, then follow the redirect. Returns the page."""
    answered = client.post("/consent", data={"choice": choice, "next": next_, "csrf_token": token(client)})
    assert answered.status_code == 303
    return client.get(answered.headers["Location"]).get_data(as_text=True)


def buy(client: FlaskClient) -> str:
    placed = client.post("/checkout/tea-tin", data={**BUYER, "csrf_token": token(client)})
    assert placed.status_code == 303
    return str(placed.headers["Location"]).rsplit("/", 1)[1]


def delivery_cell(page: str, order_id: str) -> str:
    match = re.search(rf'id="order-{order_id}".*?class="delivery">(.*?)</td>', page, re.S)
    assert match is not None
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", match.group(1))).strip()


# -- opt-in: nothing stored until the visitor accepts ---------------------------------------------------------


def test_opt_in_stores_nothing_until_the_visitor_accepts(shop: Flask) -> None:
    client = shop.test_client()
    landing = client.get(f"/go?product=tea-tin&msclkid={CLICK}")
    # Nothing kept: the click goes on in the URL, for the snippet to hold in the page's memory.
    assert landing.status_code == 302
    assert landing.headers["Location"] == f"/products/tea-tin?msclkid={CLICK}"
    assert not [c for c in landing.headers.getlist("Set-Cookie") if c.startswith("msclkid=")]
    page = client.get(landing.headers["Location"])
    html = page.get_data(as_text=True)
    assert not [c for c in page.headers.getlist("Set-Cookie") if c.startswith("msclkid=")]
    assert client.get_cookie("msclkid") is None
    assert 'data-consent="pending"' in html  # the snippet waits for the banner
    assert "Nothing is stored or sent until you accept." in html
    assert '<code id="click-id">none</code>' in html
    assert "not asked yet: nothing is stored" in html
    assert client.get("/consent/status").json == {"click": None, "consent": "denied", "basis": "default"}
    # Accepting (the no-JavaScript path) comes back to the landing URL, which now keeps the click.
    accepted = answer_banner(client, "granted", f"/products/tea-tin?msclkid={CLICK}")
    assert f'<code id="click-id">{CLICK}</code>' in accepted
    assert "you accepted" in accepted
    assert 'id="consent-banner"' not in accepted
    assert client.get_cookie("msclkid") is not None
    assert client.get("/consent/status").json == {"click": CLICK, "consent": "granted", "basis": "cookie"}


def test_a_decline_keeps_it_that_way_and_the_order_says_why_nothing_was_sent(shop: Flask) -> None:
    client = shop.test_client()
    client.get(f"/go?msclkid={CLICK}")
    declined = answer_banner(client, "denied", f"/products/blue-mug?msclkid={CLICK}")
    assert '<code id="click-id">none</code>' in declined
    assert "you declined: nothing is stored or sent" in declined
    assert client.get_cookie("msclkid") is None
    assert client.get(f"/go?msclkid={CLICK}").headers["Location"] == "/products/blue-mug"  # no click to carry
    order_id = buy(client)
    words = delivery_cell(client.get("/orders").get_data(as_text=True), order_id)
    assert words == "Microsoft: not sent: visitor refused consent UET event: not sent: visitor refused consent"
    flashed = client.post(f"/orders/{order_id}/cancel", data={"csrf_token": token(client)}, follow_redirects=True)
    assert "nothing to retract at Microsoft" in flashed.get_data(as_text=True)


def test_opt_out_banner_words_match_a_granted_default(ms: EmulatorHandle, tmp_path: Path) -> None:
    app = create_app({**ms.env, "TESTING": True, "MSCLKID_CONSENT_DEFAULT": "granted"}, instance_path=str(tmp_path))
    try:
        client = app.test_client()
        landing = client.get(f"/go?msclkid={CLICK}")
        assert landing.headers["Location"] == "/products/blue-mug"  # kept on the redirect already
        html = client.get("/products/blue-mug").get_data(as_text=True)
        assert "Decline and we delete the click ID and send nothing." in html
        assert "Nothing is stored" not in html
        assert 'data-consent="pending"' not in html
        assert f'<code id="click-id">{CLICK}</code>' in html
    finally:
        msclkid.close(app)


# -- order status in words -----------------------------------------------------------------------------------


def test_orders_say_what_became_of_each_report(shop: Flask) -> None:
    client = shop.test_client()
    client.get(f"/go?msclkid={CLICK}")
    answer_banner(client, "granted", f"/products/blue-mug?msclkid={CLICK}")
    order_id = buy(client)
    tracker = msclkid.state(shop).tracker
    assert delivery_cell(client.get("/orders").get_data(as_text=True), order_id) == (
        "Microsoft: waiting to be sent UET event: waiting to be sent"
    )
    client.post(f"/orders/{order_id}/refund", data={"amount": "16", "csrf_token": token(client)})
    client.post(f"/orders/{order_id}/cancel", data={"csrf_token": token(client)})
    assert delivery_cell(client.get("/orders").get_data(as_text=True), order_id) == (
        "Microsoft: waiting to be sent restated to 8.50: waiting to be sent retracted: waiting to be sent"
        " UET event: waiting to be sent"
    )
    tracker.flush(timeout=10)
    tracker.flush(timeout=10)  # adjustments go once the original is delivered
    page = client.get("/orders").get_data(as_text=True)
    assert delivery_cell(page, order_id) == (
        "Microsoft: delivered restated to 8.50: delivered retracted: delivered UET event: delivered"
    )
    assert "<li>restated to 8.50: delivered</li>" in page
    assert "<li>retracted: delivered</li>" in page


@dataclass(frozen=True)
class FakeStatus:
    state: str
    attempts: int = 0
    last_error_code: str | None = None
    paused_reason: str | None = None
    idempotency_key: str = "k"


@pytest.mark.parametrize(
    ("status", "words"),
    [
        (FakeStatus("delivered"), "delivered"),
        (FakeStatus("suppressed", last_error_code="consent_denied"), "not sent: visitor refused consent"),
        (FakeStatus("suppressed", last_error_code="no_identifier"), "not sent: no ad click, email or phone to match"
                                                                     " it on"),
        (FakeStatus("pending"), "waiting to be sent"),
        (FakeStatus("pending", attempts=2, last_error_code="http_503"), "waiting to retry (last try: http_503)"),
        (FakeStatus("in_flight"), "being sent"),
        (FakeStatus("rejected", last_error_code="5604"), "rejected by Microsoft (code 5604)"),
        (FakeStatus("dead", attempts=8, last_error_code="timeout"), "gave up after 8 tries (timeout)"),
        (FakeStatus("paused", paused_reason="reconsent required"), "paused: reconsent required"),
    ],
)  # fmt: skip
def test_each_state_has_words(status: FakeStatus, words: str) -> None:
    assert event_words(status) == words


def test_adjustments_read_as_what_the_shop_asked_for() -> None:
    sale = FakeStatus("delivered")
    restate = FakeStatus("delivered", idempotency_key="r1")
    retract = FakeStatus("pending", idempotency_key="r2")
    foreign = FakeStatus("dead", attempts=3, idempotency_key="x")
    asked = {"r1": Decimal("8.5"), "r2": None}
    assert describe(sale, [restate, retract, foreign], asked) == [
        "delivered",
        "restated to 8.50: delivered",
        "retracted: waiting to be sent",
        "adjusted: gave up after 3 tries",
    ]
    assert describe(None) == ["not recorded"]


# -- report, favicon, emulator link ------------------------------------------------------------------------------


def test_the_report_page_serves_the_html_report_of_the_shops_outbox(shop: Flask) -> None:
    client = shop.test_client()
    assert 'href="/report"' in client.get("/").get_data(as_text=True)
    page = client.get("/report")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert text.lower().startswith("<!doctype html>")
    assert "<svg" in text
    assert "<script" not in text
    # The report's own policy (its style allowed by hash), sent as a header as well as in its <meta>.
    assert page.headers["Content-Security-Policy"] == HTML_REPORT_CSP
    assert "'unsafe-inline'" not in page.headers["Content-Security-Policy"]


def test_a_favicon_and_no_404_for_the_default_path(shop: Flask) -> None:
    client = shop.test_client()
    html = client.get("/").get_data(as_text=True)
    assert '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">' in html
    for path in ("/favicon.ico", "/static/favicon.svg"):
        with client.get(path) as icon:
            assert icon.status_code == 200
            assert icon.mimetype == "image/svg+xml"
            assert icon.get_data().startswith(b"<svg")


def test_the_header_links_to_the_emulator_dashboard_when_the_demo_runs_one(
    ms: EmulatorHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for url, instance in (("http://127.0.0.1:8765/", "with"), (None, "without")):
        if url:
            monkeypatch.setenv("SHOP_EMULATOR_URL", url)  # what the launcher hands the shop
        else:
            monkeypatch.delenv("SHOP_EMULATOR_URL", raising=False)
        app = create_app({**ms.env, "TESTING": True}, instance_path=str(tmp_path / instance))
        try:
            html = app.test_client().get("/").get_data(as_text=True)
        finally:
            msclkid.close(app)
        link = '<a href="http://127.0.0.1:8765/" id="emulator-link">Emulator dashboard</a>'
        assert (link in html) is bool(url)
        assert ('id="emulator-link"' in html) is bool(url)


# -- the launcher: a busy port before any URL ----------------------------------------------------------------------


def test_port_problem_names_the_variable() -> None:
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        problem = port_problem(port, "MSCLKID_DEMO_PORT", "shop")
    assert problem is not None
    assert f"{HOST}:{port}" in problem
    assert "MSCLKID_DEMO_PORT=" in problem
    assert port_problem(0, "MSCLKID_DEMO_PORT", "shop") is None
    assert "not a port number" in (port_problem(70000, "MSCLKID_DEMO_EMULATOR_PORT", "emulator") or "")


@pytest.mark.parametrize("variable", ["MSCLKID_DEMO_PORT", "MSCLKID_DEMO_EMULATOR_PORT"])
def test_a_busy_port_stops_the_demo_before_any_url_is_printed(variable: str) -> None:
    with socket.socket() as taken, socket.socket() as spare:
        # Another program answering HTTP on the port would otherwise pass for the shop.
        taken.bind((HOST, 0))
        taken.listen()
        spare.bind((HOST, 0))
        busy, free = taken.getsockname()[1], spare.getsockname()[1]
        spare.close()
        other = "MSCLKID_DEMO_EMULATOR_PORT" if variable == "MSCLKID_DEMO_PORT" else "MSCLKID_DEMO_PORT"
        env = {**os.environ, "PYTHONPATH": str(ROOT), variable: str(busy), other: str(free)}
        done = subprocess.run(
            [sys.executable, "-m", "examples.flask_shop"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 1
    assert f"{HOST}:{busy}" in done.stderr
    assert f"{variable}=" in done.stderr
    assert "URL" not in done.stdout
    assert "Traceback" not in done.stderr
