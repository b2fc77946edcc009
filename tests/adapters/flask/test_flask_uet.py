"""The Flask extension's server-side UET wiring: ``MSCLKID_UET_PAGE_LOADS`` and ``msclkid_page_tags()`` (issue 13).

A real Flask app, its SQLite outbox and the emulator over loopback HTTP.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import render_template_string
from flask.testing import FlaskClient
from flask_helpers import AppFactory

from msclkid_middleware.dispatch.page_loads import page_load_event_id
from msclkid_middleware.errors import ConfigError
from msclkid_middleware.flask import Msclkid
from msclkid_middleware.testing import EmulatorHandle

CLICK = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
VID = "438fd44007ba11f086535bdba1bcc1a7"
CHROME = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"
PAGE = "<!doctype html><head>{{ msclkid_page_tags('Blue mug', pixel_url='/pixel') }}</head><h1>Mug</h1>"


def uet_app(make_app: AppFactory, ms: EmulatorHandle, mode: str, **config: Any) -> Any:
    app = make_app({**ms.env, "MSCLKID_UET_PAGE_LOADS": mode, "MSCLKID_CONSENT_DEFAULT": "granted", **config})

    @app.get("/")
    def landing() -> str:
        return render_template_string(PAGE)

    @app.get("/mug")
    def mug() -> str:
        return render_template_string(PAGE)

    @app.get("/api")
    def api() -> dict[str, bool]:
        return {"ok": True}

    return app


def get(client: FlaskClient, url: str, **headers: str) -> str:
    # A real server closes every response; the page-view hook runs then (after the body went out).
    with client.get(url, headers=headers) as response:
        return response.get_data(as_text=True)


def deliver(app: Any) -> None:
    state = Msclkid.state(app)
    assert state.page_loads is not None
    recorder = state.page_loads.recorder()
    assert recorder is not None
    assert recorder.flush(10)
    state.tracker.flush()


def test_page_loads_are_off_by_default(make_app: AppFactory, ms: EmulatorHandle) -> None:
    app = make_app(ms.env)
    assert Msclkid.state(app).page_loads is None
    assert Msclkid.state(app).middleware.on_page_view is None


def test_page_loads_need_a_uet_tag(make_app: AppFactory) -> None:
    with pytest.raises(ConfigError, match="UET_TAG_ID") as excinfo:
        make_app({"MSCLKID_UET_PAGE_LOADS": "html"})
    assert excinfo.value.setting == "MSCLKID_UET_PAGE_LOADS"


def test_html_mode_sends_a_page_load_per_page_with_the_pages_id(make_app: AppFactory, ms: EmulatorHandle) -> None:
    app = uet_app(make_app, ms, "html")
    client = app.test_client()
    client.set_cookie("_uetvid", VID)
    page = get(client, f"/?msclkid={CLICK}", **{"User-Agent": CHROME, "Referer": "https://www.bing.com/"})
    [landing_id] = re.findall(r'<meta name="msclkid-page-load-id" content="([0-9a-f-]{36})">', page)
    # With consent and a customer ID the ID-sync script carries the same anonymous ID the server sends.
    assert f'data-vid="{VID}"' in page
    assert f'data-cid="{ms.env["MSADS_CUSTOMER_ID"]}"' in page
    assert 'data-pixel="/pixel"' in page
    second = get(client, "/mug", **{"User-Agent": CHROME})
    [mug_id] = re.findall(r'content="([0-9a-f-]{36})"', second)
    assert get(client, "/api", **{"User-Agent": CHROME}) == '{"ok":true}\n'  # JSON: not a page view
    get(client, "/mug", **{"User-Agent": "Mozilla/5.0 (compatible; bingbot/2.0)"})  # a bot: not one either

    deliver(app)
    payloads = {item.payload["pageLoadId"]: item.payload for item in ms.received("uet")}
    assert set(payloads) == {landing_id, mug_id}
    first = payloads[landing_id]
    assert first["eventType"] == "pageLoad"
    assert first["eventId"] == page_load_event_id(landing_id)
    assert first["pageTitle"] == "Blue mug"
    assert first["referrerUrl"] == "https://www.bing.com/"
    assert first["adStorageConsent"] == "G"
    assert first["userData"]["anonymousId"] == VID
    assert first["userData"]["msclkid"] == CLICK
    assert payloads[mug_id]["userData"]["msclkid"] == CLICK  # from the click cookie


def test_landing_mode_sends_only_the_ad_landing(make_app: AppFactory, ms: EmulatorHandle) -> None:
    app = uet_app(make_app, ms, "landing")
    client = app.test_client()
    get(client, f"/?msclkid={CLICK}", **{"User-Agent": CHROME})
    get(client, "/mug", **{"User-Agent": CHROME})
    deliver(app)
    [item] = ms.received("uet")
    assert item.payload["userData"]["msclkid"] == CLICK


def test_denied_visitor_gets_no_sync_pixel(make_app: AppFactory, ms: EmulatorHandle) -> None:
    app = uet_app(make_app, ms, "html", MSCLKID_CONSENT_DEFAULT="denied")
    client = app.test_client()
    client.set_cookie("_uetvid", VID)
    page = get(client, f"/?msclkid={CLICK}", **{"User-Agent": CHROME})
    assert "msclkid-page-load-id" in page
    assert "data-vid" not in page
    deliver(app)
    [item] = ms.received("uet")
    assert item.payload["adStorageConsent"] == "D"
    assert item.payload["userData"].get("anonymousId") != VID
    assert "msclkid" not in item.payload["userData"]


def test_page_tags_are_empty_outside_a_request(make_app: AppFactory, ms: EmulatorHandle) -> None:
    app = uet_app(make_app, ms, "html")
    with app.app_context():
        assert render_template_string("{{ msclkid_page_tags() }}") == ""
