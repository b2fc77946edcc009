"""Real-browser fixtures: Debian's headless Chromium driven by Playwright, real WSGI servers on 127.0.0.1.

Every site is a real werkzeug server in a thread. Its WSGI app is a small dispatcher:

- ``/cached/...`` are static files (landing pages, page scripts) that **bypass** the middleware, the way a CDN
  or a full-page cache answers without ever reaching the app;
- everything else goes through :class:`MsclkidMiddleware` in its insecure development mode (plain http on the
  loopback), which serves the snippet at ``/_msclkid.js`` and the capture endpoint at ``/_msclkid``; the app
  behind it answers ``/whoami`` with what :func:`get_click` sees and ``/app`` with a server-rendered page.

Every request to the capture endpoint is recorded (body, headers, status, Set-Cookie) so tests can assert what
the browser sent and what the server answered.
"""

from __future__ import annotations

import io
import json
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from werkzeug.serving import make_server

from msclkid_middleware.capture.consent import ConsentPolicy
from msclkid_middleware.middleware import MsclkidMiddleware, get_click

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment
    from playwright.sync_api import Browser, BrowserContext, Playwright

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
STATIC_DIR = Path(__file__).resolve().parents[2] / "msclkid_middleware" / "static"
SECRET_KEYS = ["browser-test-secret-key-0123456789"]
COOKIE_NAME = "msclkid"  # insecure development mode: no __Host- prefix over plain http
CAPTURE_PATH = "/_msclkid"


@pytest.fixture(scope="session")
def playwright_instance() -> Iterator[Playwright]:
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing: install Debian's chromium package (apt-get install -y chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="session")
def browser(playwright_instance: Playwright) -> Iterator[Browser]:
    browser = playwright_instance.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
    yield browser
    browser.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A fresh profile per test: no cookies or cache carried over."""
    context = browser.new_context()
    context.set_default_timeout(10_000)
    yield context
    context.close()


@dataclass(frozen=True, slots=True)
class Capture:
    """One request that reached the capture endpoint, and the middleware's answer."""

    method: str
    content_type: str
    origin: str | None
    fetch_site: str | None
    body: bytes
    status: int
    set_cookies: tuple[str, ...]

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(slots=True)
class Site:
    """A running test site; ``url(path)`` builds absolute URLs on it."""

    base_url: str
    captures: list[Capture] = field(default_factory=list)

    def url(self, path: str) -> str:
        return self.base_url + path

    def posts(self) -> list[Capture]:
        return [capture for capture in self.captures if capture.method == "POST"]

    def click_seen(self, context: BrowserContext) -> dict[str, str] | None:
        """What ``get_click`` sees on the next request carrying the browser's cookies."""
        response = context.request.get(self.url("/whoami"))
        assert response.ok, response.status
        result: dict[str, str] | None = response.json()
        return result


def _static_app(files: Mapping[str, tuple[str, bytes, Mapping[str, str]]]) -> WSGIApplication:
    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        entry = files.get(environ["PATH_INFO"])
        if entry is None:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found"]
        content_type, body, headers = entry
        start_response("200 OK", [("Content-Type", content_type), ("Cache-Control", "no-store"), *headers.items()])
        return [body]

    return app


def _dynamic_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    path = environ["PATH_INFO"]
    if path == "/whoami":
        click = get_click(environ)
        payload = None if click is None else {"msclkid": click.msclkid, "source": click.source}
        start_response("200 OK", [("Content-Type", "application/json"), ("Cache-Control", "no-store")])
        return [json.dumps(payload).encode()]
    if path == "/app":
        start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
        return [b"<!doctype html><title>server-rendered</title><p>app</p>"]
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found"]


def _recording(app: WSGIApplication, site: Site) -> WSGIApplication:
    """Records each capture-endpoint request: the body is read here and handed on unchanged."""

    def recorder(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ["PATH_INFO"] != CAPTURE_PATH:
            return app(environ, start_response)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        seen: dict[str, Any] = {}

        def spy(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], object]:
            seen["status"] = int(status.split()[0])
            seen["cookies"] = tuple(value for name, value in headers if name.lower() == "set-cookie")
            return start_response(status, headers, exc_info)

        result = list(app(environ, spy))
        site.captures.append(
            Capture(
                method=environ["REQUEST_METHOD"],
                content_type=environ.get("CONTENT_TYPE", ""),
                origin=environ.get("HTTP_ORIGIN"),
                fetch_site=environ.get("HTTP_SEC_FETCH_SITE"),
                body=body,
                status=seen["status"],
                set_cookies=seen["cookies"],
            )
        )
        return result

    return recorder


SiteFactory = Callable[..., Site]


@pytest.fixture
def make_site() -> Iterator[SiteFactory]:
    """``make_site(files, consent_default=..., consent_cookie=..., middleware=True)`` starts a site, returns it.

    ``files`` maps a path under ``/cached/`` to ``(content_type, body)`` or ``(content_type, body, headers)``.
    The consent policy has the given default and reads the site's consent cookie ``consent_cookie`` if named.
    ``middleware=False`` gives a site without the middleware at all (a foreign origin for cross-origin tests).
    """
    servers: list[Any] = []

    def factory(
        files: Mapping[str, tuple[Any, ...]],
        *,
        consent_default: str = "granted",
        consent_cookie: str | None = None,
        middleware: bool = True,
    ) -> Site:
        normalised = {
            path: (
                entry[0],
                entry[1].encode() if isinstance(entry[1], str) else entry[1],
                entry[2] if len(entry) > 2 else {},
            )
            for path, entry in files.items()
        }
        static = _static_app(normalised)
        site = Site(base_url="")
        wrapped: WSGIApplication = _dynamic_app
        if middleware:
            wrapped = MsclkidMiddleware(
                _dynamic_app,
                secret_keys=SECRET_KEYS,
                consent=ConsentPolicy(default=consent_default, cookie_name=consent_cookie),
                cookie_name=COOKIE_NAME,
                cookie_secure=False,
                allow_insecure_cookie=True,
            )
        dynamic = _recording(wrapped, site)

        def dispatch(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
            if environ["PATH_INFO"].startswith("/cached/"):
                return static(environ, start_response)
            return dynamic(environ, start_response)

        server = make_server("127.0.0.1", 0, dispatch, threaded=True)
        thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.02}, name=f"site-{server.server_port}", daemon=True
        )
        thread.start()
        servers.append((server, thread))
        site.base_url = f"http://127.0.0.1:{server.server_port}"
        return site

    yield factory
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@dataclass(frozen=True, slots=True)
class SnippetSource:
    """Where pages load the snippet from, plus the static files that needs."""

    src: str
    files: Mapping[str, tuple[str, bytes]]


@pytest.fixture(params=["min", "source"])
def snippet(request: pytest.FixtureRequest) -> SnippetSource:
    """The middleware's minified copy, or the readable source served as a static file: the behavioural tests
    run against both, which proves the two files behave the same."""
    if request.param == "min":
        return SnippetSource("/_msclkid.js", {})
    source = (STATIC_DIR / "msclkid.js").read_bytes()
    return SnippetSource("/cached/msclkid.js", {"/cached/msclkid.js": ("text/javascript; charset=utf-8", source)})
