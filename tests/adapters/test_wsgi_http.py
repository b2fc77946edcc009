"""The middleware behind a real HTTP server on 127.0.0.1, followed by ``requests`` like a browser."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest
import requests
from werkzeug.serving import make_server

from msclkid_middleware import MsclkidMiddleware, get_click, get_consent
from msclkid_middleware.capture.consent import ConsentPolicy

HEX = "b4458f42c1b214060f81e89d7a9da3bb"


def shop(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    path = environ["PATH_INFO"]
    if path == "/":  # the landing page redirects at once: the cookie must ride on the redirect
        start_response("302 Found", [("Location", "/step")])
        return [b""]
    if path == "/step":
        start_response("301 Moved Permanently", [("Location", "/product")])
        return [b""]
    click = get_click(environ)
    consent = get_consent(environ)
    body = f"{click.msclkid if click else '-'} {click.source if click else '-'} {consent.state if consent else '-'}"
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body.encode()]


@pytest.fixture
def server() -> Iterator[str]:
    app = MsclkidMiddleware(
        shop,
        secret_keys=["http-test-secret"],
        consent=ConsentPolicy(cookie_name="site_consent"),
        # Plain http on 127.0.0.1: the explicit development mode (a Secure cookie would not come back).
        cookie_secure=False,
        allow_insecure_cookie=True,
    )
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}"
    finally:
        httpd.shutdown()
        thread.join(5)
        httpd.server_close()


def test_redirect_chain_keeps_the_click(server: str) -> None:
    with requests.Session() as browser:
        landing = browser.get(f"{server}/?msclkid={HEX}", timeout=10)
        assert [r.status_code for r in landing.history] == [302, 301]
        assert "msclkid" in landing.history[0].headers["Set-Cookie"]
        # The redirect target already sees the click, now from the cookie.
        assert landing.text == f"{HEX} cookie granted"
        assert browser.cookies.get("msclkid") is not None
        later = browser.get(f"{server}/checkout", timeout=10)
        assert later.text == f"{HEX} cookie granted"
        assert "Set-Cookie" not in later.headers


def test_denial_deletes_the_cookie_over_http(server: str) -> None:
    with requests.Session() as browser:
        browser.get(f"{server}/?msclkid={HEX}", timeout=10)
        assert browser.cookies.get("msclkid") is not None
        browser.cookies.set("site_consent", "denied")
        page = browser.get(f"{server}/product", timeout=10)
        assert page.text == "- - denied"
        assert browser.cookies.get("msclkid") is None


def test_capture_endpoint_over_http(server: str) -> None:
    with requests.Session() as browser:
        refused = browser.post(f"{server}/_msclkid", json={"msclkid": HEX}, headers={"Origin": "http://evil.test"})
        assert refused.status_code == 403
        assert browser.cookies.get("msclkid") is None
        taken = browser.post(f"{server}/_msclkid", json={"msclkid": HEX}, headers={"Origin": server}, timeout=10)
        assert taken.status_code == 204
        assert browser.get(f"{server}/product", timeout=10).text == f"{HEX} cookie granted"
        snippet = browser.get(f"{server}/_msclkid.js", timeout=10)
        assert snippet.status_code == 200
        assert snippet.headers["Content-Type"] == "text/javascript; charset=utf-8"
        again = browser.get(f"{server}/_msclkid.js", headers={"If-None-Match": snippet.headers["ETag"]}, timeout=10)
        assert again.status_code == 304
