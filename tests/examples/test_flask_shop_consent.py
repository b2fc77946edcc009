"""The demo shop records without ``consent=`` (issue 19 item 1): a refusing visitor sends nothing, on an opt-in shop
and, where a forgotten argument used to grant, on an opt-out one too."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from examples.flask_shop import CONSENT_COOKIE, create_app, msclkid
from msclkid_middleware.testing import EmulatorHandle

CLICK = "3f2a9c1be0d84c47a5e6b7c8d9e0f1a2"
BUYER = {"email": "ana@example.com", "phone": "+14255551234", "quantity": "1"}


@pytest.fixture(params=["denied", "granted"], ids=["opt-in-shop", "opt-out-shop"])
def shop(request: pytest.FixtureRequest, ms: EmulatorHandle, tmp_path: Path) -> Iterator[Flask]:
    config = {**ms.env, "TESTING": True, "MSCLKID_CONSENT_DEFAULT": request.param}
    app = create_app(config, instance_path=str(tmp_path))
    yield app
    msclkid.close(app)


def buy(client: FlaskClient, **headers: str) -> str:
    page = client.get("/checkout/blue-mug", headers=headers).get_data(as_text=True)
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match is not None
    placed = client.post("/checkout/blue-mug", data={**BUYER, "csrf_token": match.group(1)}, headers=headers)
    assert placed.status_code == 303
    return str(placed.headers["Location"]).rsplit("/", 1)[1]


REFUSERS = [
    pytest.param({"Sec-GPC": "1"}, None, "gpc", id="gpc"),
    pytest.param({}, "denied", "cookie", id="consent-cookie"),
    pytest.param({"Sec-GPC": "1"}, "granted", "gpc", id="gpc-beats-an-accepted-banner"),
]


@pytest.mark.parametrize(("headers", "cookie", "basis"), REFUSERS)
def test_a_refusing_visitor_has_nothing_sent(
    shop: Flask, ms: EmulatorHandle, headers: dict[str, str], cookie: str | None, basis: str
) -> None:
    client = shop.test_client()
    if cookie is not None:
        client.set_cookie(CONSENT_COOKIE, cookie)
    client.get(f"/go?msclkid={CLICK}", headers=headers)
    order_id = buy(client, **headers)
    tracker = msclkid.state(shop).tracker
    rows = tracker.store.find(order_id)
    assert rows, "the sale is still recorded, for the record"
    for row in rows:
        assert row.state == "suppressed"
        assert (row.consent["state"], row.consent["basis"]) == ("denied", basis)
        assert "MicrosoftClickId" not in row.payload
        assert "HashedEmailAddress" not in row.payload
        assert "HashedPhoneNumber" not in row.payload
    tracker.flush()
    assert ms.received() == []


def test_an_accepting_visitor_is_sent_with_the_banner_as_basis(shop: Flask, ms: EmulatorHandle) -> None:
    client = shop.test_client()
    client.set_cookie(CONSENT_COOKIE, "granted")
    client.get(f"/go?msclkid={CLICK}")
    order_id = buy(client)
    tracker = msclkid.state(shop).tracker
    (row,) = tracker.store.find(order_id, kind="offline")
    assert (row.consent["state"], row.consent["basis"]) == ("granted", "cookie")
    assert row.payload["MicrosoftClickId"] == CLICK
    assert tracker.flush().delivered >= 1
    assert [item.payload["MicrosoftClickId"] for item in ms.received("offline")] == [CLICK]
