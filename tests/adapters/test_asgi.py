"""MsclkidASGIMiddleware: under Starlette's TestClient (the real framework) and a raw ASGI harness (exact messages)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket

from msclkid_middleware import MsclkidMiddleware, get_anonymous_id, get_click, get_consent, get_page_load_id
from msclkid_middleware.asgi import STATE_KEY, MsclkidASGIMiddleware
from msclkid_middleware.capture.consent import Consent, ConsentPolicy
from msclkid_middleware.capture.context import request_consent
from msclkid_middleware.capture.cookie import ClickCookie
from msclkid_middleware.capture.decision import Decision
from msclkid_middleware.capture.pageview import PageView
from msclkid_middleware.capture.profiles import MemoryProfileStore
from msclkid_middleware.config import Settings
from msclkid_middleware.errors import ConfigError
from msclkid_middleware.middleware import STATE_KEY as WSGI_STATE_KEY
from tests.wsgi_helpers import HEX, HEX2, T0, Clock, call, make_environ

SECRET = "s3cret-key-for-asgi-tests"
NAME = "__Host-msclkid"
BASE = "https://shop.test"
HTML = "text/html; charset=utf-8"
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]


def token(msclkid: str = HEX, at: float = T0, keys: list[str] | None = None) -> str:
    return ClickCookie(keys or [SECRET], clock=Clock(at)).encode(msclkid, at)


def options(**extra: Any) -> dict[str, Any]:
    extra.setdefault("secret_keys", [SECRET])
    extra.setdefault("consent", ConsentPolicy(default="granted"))
    extra.setdefault("clock", Clock())
    return extra


def seen(request: Request) -> dict[str, Any]:
    """What a handler sees through the package-root helpers, given the request's ASGI scope."""
    click = get_click(request.scope)
    consent = get_consent(request.scope)
    return {
        "click": click.msclkid if click else None,
        "source": click.source if click else None,
        "consent": consent.state if consent else None,
        "basis": consent.basis if consent else None,
        "context": (request_consent() or Consent.denied_by("default")).state if request_consent() else None,
        "shared": request.scope["state"][STATE_KEY] is request.scope["state"][STATE_KEY],
    }


async def whoami(request: Request) -> JSONResponse:
    return JSONResponse(seen(request))


async def redirect(request: Request) -> RedirectResponse:
    return RedirectResponse("/product", status_code=302)


async def not_found(request: Request) -> PlainTextResponse:
    raise HTTPException(status_code=404, detail="no such product")


async def server_error(request: Request) -> PlainTextResponse:
    return PlainTextResponse("broken", status_code=500)


async def stream(request: Request) -> StreamingResponse:
    async def chunks() -> AsyncIterator[bytes]:
        for part in (b"<!doctype html><title>s</title>", b"<p>one</p>", b"<p>two</p>"):
            yield part

    return StreamingResponse(chunks(), media_type="text/html")


async def page(request: Request) -> HTMLResponse:
    return HTMLResponse(f"<!doctype html><title>p</title><p>{get_page_load_id(request.scope)}</p>")


async def echo_ws(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text("scope has no state key: " + str(STATE_KEY not in websocket.scope.get("state", {})))
    await websocket.close()


def starlette_app(**extra: Any) -> Starlette:
    routes = [
        Route("/whoami", whoami),
        Route("/go", redirect),
        Route("/missing", not_found),
        Route("/broken", server_error),
        Route("/stream", stream),
        Route("/page", page),
        WebSocketRoute("/ws", echo_ws),
    ]
    return Starlette(routes=routes, middleware=[Middleware(MsclkidASGIMiddleware, **options(**extra))])


@pytest.fixture
def client() -> TestClient:
    return TestClient(starlette_app(), base_url=BASE)


def set_cookies(response: Any) -> list[str]:
    return [v for k, v in response.headers.multi_items() if k == "set-cookie"]


def cookie_value(header: str, name: str = NAME) -> str:
    jar: SimpleCookie = SimpleCookie()
    jar.load(header)
    return jar[name].value


# -- the raw ASGI harness -------------------------------------------------------------------------------


@dataclass
class Exchange:
    """Everything that crossed the server boundary for one ASGI call."""

    sent: list[Message] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    received: int = 0

    @property
    def start(self) -> Message:
        return next(m for m in self.sent if m["type"] == "http.response.start")

    @property
    def status(self) -> int:
        return int(self.start["status"])

    @property
    def headers(self) -> list[tuple[bytes, bytes]]:
        return [(bytes(k), bytes(v)) for k, v in self.start.get("headers", [])]

    @property
    def set_cookies(self) -> list[str]:
        return [v.decode("latin-1") for k, v in self.headers if k == b"set-cookie"]

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent if m["type"] == "http.response.body")


def http_scope(
    path: str = "/",
    *,
    query: str = "",
    cookie: str | None = None,
    headers: dict[str, str] | None = None,
    method: str = "GET",
    state: bool = True,
) -> Scope:
    raw = [(b"host", b"shop.test"), (b"user-agent", BROWSER.encode())]
    raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    if cookie is not None:
        raw.append((b"cookie", cookie.encode("latin-1")))
    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "https",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode("latin-1"),
        "root_path": "",
        "headers": raw,
        "client": ("203.0.113.7", 50123),
        "server": ("shop.test", 443),
    }
    if state:
        scope["state"] = {}
    return scope


def run(
    app: ASGIApp,
    scope: Scope,
    *,
    body: list[bytes] | None = None,
    readable: bool = True,
    exchange: Exchange | None = None,
) -> Exchange:
    """Call ``app`` as a server would; ``readable=False`` fails the test if the request body is read."""
    result = exchange or Exchange()
    chunks = list(body or [b""])

    async def receive() -> Message:
        if not readable:
            raise AssertionError("the request body was read")
        result.received += 1
        if not chunks:
            return {"type": "http.disconnect"}
        chunk = chunks.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}

    async def send(message: Message) -> None:
        result.sent.append(message)
        result.events.append(message["type"] + ("+more" if message.get("more_body") else ""))

    asyncio.run(app(scope, receive, send))
    return result


def raw_app(
    status: int = 200,
    headers: list[tuple[bytes, bytes]] | None = None,
    chunks: tuple[bytes, ...] = (b"hello",),
    seen: dict[str, Any] | None = None,
) -> ASGIApp:
    """A bare ASGI app: records its scope and the helpers' answers, sends its response as given."""

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if seen is not None:
            seen["scope"] = scope
            seen["click"] = get_click(scope)
            seen["consent"] = get_consent(scope)
            seen["context"] = request_consent()
        await send({"type": "http.response.start", "status": status, "headers": headers or [(b"content-type", b"x")]})
        for index, chunk in enumerate(chunks):
            await send({"type": "http.response.body", "body": chunk, "more_body": index < len(chunks) - 1})

    return app


# -- construction ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        pytest.param({"secret_keys": []}, "secret key", id="no-secret"),
        pytest.param({"cookie_secure": False}, "allow_insecure_cookie", id="insecure-without-flag"),
        pytest.param({"capture_path": "no-slash"}, "capture_path", id="bad-path"),
    ],
)
def test_misconfiguration_fails_at_construction(extra: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        MsclkidASGIMiddleware(raw_app(), **options(**extra))


def test_app_must_be_callable() -> None:
    with pytest.raises(ConfigError, match="ASGI application"):
        MsclkidASGIMiddleware("not an app", secret_keys=[SECRET])  # type: ignore[arg-type]


def test_state_key_is_the_wsgi_adapters() -> None:
    assert STATE_KEY == WSGI_STATE_KEY


def test_from_settings_reads_the_msclkid_variables() -> None:
    settings = Settings.from_env({"MSCLKID_SECRET_KEYS": SECRET, "MSCLKID_CONSENT_DEFAULT": "denied"})
    middleware = MsclkidASGIMiddleware.from_settings(raw_app(), settings, clock=Clock())
    exchange = run(middleware, http_scope(query=f"msclkid={HEX}"))
    assert exchange.set_cookies == []  # opt-in default: nothing stored
    granted = MsclkidASGIMiddleware.from_settings(raw_app(), settings, consent=ConsentPolicy(default="granted"))
    assert cookie_value(run(granted, http_scope(query=f"msclkid={HEX}")).set_cookies[0]).startswith("")


# -- Starlette: cookies on whatever the app sends ---------------------------------------------------------


def test_landing_sets_the_cookie_and_the_handler_sees_the_click(client: TestClient) -> None:
    response = client.get(f"/whoami?msclkid={HEX}", headers={"user-agent": BROWSER})
    assert response.status_code == 200
    (header,) = set_cookies(response)
    assert header.startswith(f"{NAME}=")
    assert "HttpOnly" in header
    assert "Secure" in header
    assert response.json() == {
        "click": HEX,
        "source": "url",
        "consent": "granted",
        "basis": "default",
        "context": "granted",
        "shared": True,
    }


@pytest.mark.parametrize(
    ("path", "status"),
    [
        pytest.param("/go", 302, id="redirect"),
        pytest.param("/missing", 404, id="http-exception"),
        pytest.param("/broken", 500, id="error-response"),
        pytest.param("/stream", 200, id="streaming"),
        pytest.param("/nowhere", 404, id="no-route"),
    ],
)
def test_cookie_rides_on_every_response(client: TestClient, path: str, status: int) -> None:
    response = client.get(f"{path}?msclkid={HEX}", follow_redirects=False)
    assert response.status_code == status
    (header,) = set_cookies(response)
    assert header.startswith(f"{NAME}=")


def test_streaming_body_is_passed_through_unchanged(client: TestClient) -> None:
    response = client.get(f"/stream?msclkid={HEX}")
    assert response.text == "<!doctype html><title>s</title><p>one</p><p>two</p>"


def test_cookie_request_reads_the_click_back(client: TestClient) -> None:
    client.cookies.set(NAME, token())
    response = client.get("/whoami")
    assert set_cookies(response) == []  # a valid cookie under the newest key is not re-issued
    assert response.json()["click"] == HEX
    assert response.json()["source"] == "cookie"


def test_plain_request_still_answers_consent_and_no_click(client: TestClient) -> None:
    body = client.get("/whoami").json()
    assert body["click"] is None
    assert body["consent"] == "granted"
    assert body["context"] == "granted"


def test_websocket_passes_through(client: TestClient) -> None:
    with client.websocket_connect("/ws") as websocket:
        assert websocket.receive_text() == "scope has no state key: True"


# -- consent ------------------------------------------------------------------------------------------


def test_gpc_suppresses_the_cookie_and_the_click(client: TestClient) -> None:
    response = client.get(f"/whoami?msclkid={HEX}", headers={"sec-gpc": "1"})
    assert set_cookies(response) == []
    body = response.json()
    assert (body["click"], body["consent"], body["basis"], body["context"]) == (None, "denied", "gpc", "denied")


def test_gpc_deletes_an_existing_cookie(client: TestClient) -> None:
    client.cookies.set(NAME, token())
    response = client.get("/whoami", headers={"sec-gpc": "1"})
    (header,) = set_cookies(response)
    assert header.startswith(f"{NAME}=;")
    assert "Max-Age=0" in header
    assert response.json()["click"] is None


def test_gpc_on_a_plain_request_is_a_refusal_for_the_handler_and_the_tracker_context() -> None:
    seen: dict[str, Any] = {}
    run(MsclkidASGIMiddleware(raw_app(seen=seen), **options()), http_scope(headers={"Sec-GPC": "1"}))
    assert seen["consent"].state == "denied"
    assert seen["consent"].basis == "gpc"
    assert seen["context"] is not None
    assert seen["context"].state == "denied"
    assert request_consent() is None  # outside the request again


def test_site_consent_cookie_refusal_suppresses() -> None:
    consent = ConsentPolicy(default="granted", cookie_name="site_consent")
    middleware = MsclkidASGIMiddleware(raw_app(), **options(consent=consent))
    exchange = run(middleware, http_scope(query=f"msclkid={HEX}", cookie="site_consent=denied"))
    assert exchange.set_cookies == []


# -- the raw harness: exact messages ---------------------------------------------------------------------


def test_body_messages_are_the_apps_own_objects_and_the_start_is_not_mutated() -> None:
    bodies = [
        {"type": "http.response.body", "body": b"a", "more_body": True},
        {"type": "http.response.body", "body": b"b", "more_body": False},
    ]
    start = {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        await send(start)
        for message in bodies:
            await send(message)

    exchange = run(MsclkidASGIMiddleware(app, **options()), http_scope(query=f"msclkid={HEX}"))
    assert exchange.sent[1] is bodies[0]
    assert exchange.sent[2] is bodies[1]
    assert start["headers"] == [(b"content-type", b"text/plain")]  # the app's own message is left as it was
    assert exchange.headers[0] == (b"content-type", b"text/plain")
    assert len(exchange.set_cookies) == 1


def test_plain_request_send_is_not_wrapped_and_receive_is_not_read() -> None:
    seen: dict[str, Any] = {}

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        seen["send"] = send
        await raw_app()(scope, receive, send)

    middleware = MsclkidASGIMiddleware(app, **options())
    exchange = Exchange()
    run(middleware, http_scope(cookie="session=abc"), readable=False, exchange=exchange)
    assert seen["send"].__qualname__ == "run.<locals>.send"
    assert exchange.body == b"hello"


def test_request_body_is_never_read_outside_the_endpoint() -> None:
    middleware = MsclkidASGIMiddleware(raw_app(), **options())
    exchange = run(
        middleware,
        http_scope("/checkout", method="POST", query=f"msclkid={HEX}", headers={"content-length": "5"}),
        readable=False,
    )
    assert exchange.status == 200
    assert len(exchange.set_cookies) == 1


@pytest.mark.parametrize("kind", ["lifespan", "websocket"])
def test_non_http_scopes_pass_through_untouched(kind: str) -> None:
    seen: dict[str, Any] = {}

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        seen.update(scope=scope, receive=receive, send=send)

    async def receive() -> Message:
        raise AssertionError("not read by the middleware")

    async def send(message: Message) -> None:
        raise AssertionError("nothing sent")

    scope: Scope = {"type": kind, "asgi": {"version": "3.0"}, "path": "/_msclkid"}
    asyncio.run(MsclkidASGIMiddleware(app, **options())(scope, receive, send))
    assert seen == {"scope": scope, "receive": receive, "send": send}
    assert scope == {"type": kind, "asgi": {"version": "3.0"}, "path": "/_msclkid"}


def test_state_is_created_when_the_server_gives_none() -> None:
    seen: dict[str, Any] = {}
    run(MsclkidASGIMiddleware(raw_app(seen=seen), **options()), http_scope(query=f"msclkid={HEX}", state=False))
    assert isinstance(seen["scope"]["state"][STATE_KEY], Decision)
    assert seen["click"].msclkid == HEX


def test_plain_decision_is_made_on_first_use_and_keeps_an_early_title() -> None:
    from msclkid_middleware.middleware import set_page_title

    seen: dict[str, Any] = {}

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        set_page_title(scope, "Blue mug")
        decision = scope["state"][STATE_KEY]
        seen["title"] = decision.title
        seen["gpc"] = decision.facts.sec_gpc
        seen["decision"] = decision
        await raw_app()(scope, receive, send)

    run(MsclkidASGIMiddleware(app, **options()), http_scope(headers={"sec-gpc": "1"}))
    assert seen == {"title": "Blue mug", "gpc": "1", "decision": seen["decision"]}


def test_plain_decision_unused_during_the_request_is_not_readable_after_it(caplog: pytest.LogCaptureFixture) -> None:
    seen: dict[str, Any] = {}

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        seen["scope"] = scope
        await raw_app()(scope, receive, send)

    run(MsclkidASGIMiddleware(app, **options()), http_scope())
    with caplog.at_level(logging.WARNING, logger="msclkid_middleware"):
        assert get_consent(seen["scope"]) is None  # the request is over: no answer, no exception


# -- the capture endpoint and the scripts ------------------------------------------------------------


def endpoint_scope(body: bytes, **headers: str) -> Scope:
    base = {"content-type": "application/json", "sec-fetch-site": "same-origin", "content-length": str(len(body))}
    base.update({k.replace("_", "-"): v for k, v in headers.items()})
    return http_scope("/_msclkid", method="POST", headers={k: v for k, v in base.items() if v})


def never_called() -> ASGIApp:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        raise AssertionError("the app was called for the middleware's own endpoint")

    return app


def test_capture_endpoint_sets_the_cookie() -> None:
    body = f'{{"msclkid": "{HEX}", "consent": "granted"}}'.encode()
    exchange = run(MsclkidASGIMiddleware(never_called(), **options()), endpoint_scope(body), body=[body])
    assert exchange.status == 204
    assert cookie_value(exchange.set_cookies[0])
    assert (b"content-length", b"0") in exchange.headers


def test_capture_endpoint_reads_a_body_sent_in_chunks() -> None:
    body = f'{{"msclkid": "{HEX}"}}'.encode()
    exchange = run(
        MsclkidASGIMiddleware(never_called(), **options()),
        endpoint_scope(body, content_length=""),
        body=[body[:5], body[5:12], body[12:]],
    )
    assert exchange.status == 204
    assert exchange.received == 3
    assert len(exchange.set_cookies) == 1


def test_capture_endpoint_refuses_cross_origin_without_reading() -> None:
    body = f'{{"msclkid": "{HEX}"}}'.encode()
    exchange = run(
        MsclkidASGIMiddleware(never_called(), **options()),
        endpoint_scope(body, sec_fetch_site="cross-site"),
        readable=False,
    )
    assert exchange.status == 403
    assert exchange.set_cookies == []


def test_capture_endpoint_refuses_a_declared_large_body_unread() -> None:
    exchange = run(
        MsclkidASGIMiddleware(never_called(), **options()),
        endpoint_scope(b"", content_length="100000"),
        readable=False,
    )
    assert exchange.status == 413


def test_capture_endpoint_stops_reading_an_undeclared_large_body() -> None:
    chunks = [b"x" * 1024] * 50
    exchange = run(
        MsclkidASGIMiddleware(never_called(), **options()), endpoint_scope(b"", content_length=""), body=chunks
    )
    assert exchange.status == 413
    assert exchange.received <= 6  # stops just past the 4 KiB cap


def test_capture_endpoint_with_a_client_gone_mid_body() -> None:
    exchange = run(
        MsclkidASGIMiddleware(never_called(), **options()),
        endpoint_scope(b"", content_length="40"),
        body=[],
    )
    assert exchange.status == 400


def test_capture_endpoint_denied_report_deletes() -> None:
    body = b'{"consent": "denied"}'
    exchange = run(MsclkidASGIMiddleware(never_called(), **options()), endpoint_scope(body), body=[body])
    assert exchange.status == 204
    assert "Max-Age=0" in exchange.set_cookies[0]


def test_capture_endpoint_writes_the_profile_off_the_loop() -> None:
    store = MemoryProfileStore()
    middleware = MsclkidASGIMiddleware(
        never_called(), **options(profile_store=store, visitor_id=lambda scope: "visitor-1")
    )
    body = f'{{"msclkid": "{HEX}"}}'.encode()
    run(middleware, endpoint_scope(body), body=[body])
    saved = store.get("visitor-1")
    assert saved is not None
    assert saved.msclkid == HEX


@pytest.mark.parametrize(
    ("method", "headers", "status", "has_body"),
    [
        pytest.param("GET", {}, 200, True, id="get"),
        pytest.param("HEAD", {}, 200, False, id="head"),
        pytest.param("POST", {}, 405, False, id="post"),
    ],
)
def test_snippet_is_served(method: str, headers: dict[str, str], status: int, has_body: bool) -> None:
    exchange = run(MsclkidASGIMiddleware(never_called(), **options()), http_scope("/_msclkid.js", method=method))
    assert exchange.status == status
    assert bool(exchange.body) is has_body
    if status == 200:
        assert (b"content-type", b"text/javascript; charset=utf-8") in exchange.headers
        etag = dict(exchange.headers)[b"etag"].decode()
        again = run(
            MsclkidASGIMiddleware(never_called(), **options()),
            http_scope("/_msclkid.js", headers={"if-none-match": etag}),
        )
        assert again.status == 304


@pytest.mark.parametrize("path", ["/shop/_msclkid.js", "/_msclkid.js"], ids=["path-holds-root", "path-without-root"])
def test_endpoints_are_found_below_a_root_path(path: str) -> None:
    scope = http_scope(path)
    scope["root_path"] = "/shop"
    exchange = run(MsclkidASGIMiddleware(never_called(), **options()), scope)
    assert exchange.status == 200


@pytest.mark.parametrize("path", ["/shop/p", "/p"], ids=["path-holds-root", "path-without-root"])
def test_page_view_url_holds_the_root_path_once(path: str) -> None:
    views: list[PageView] = []
    scope = http_scope(path)
    scope["root_path"] = "/shop"
    app = raw_app(headers=[(b"content-type", HTML.encode())])
    run(MsclkidASGIMiddleware(app, **options(on_page_view=views.append)), scope)
    assert [view.url for view in views] == ["https://shop.test/shop/p"]


@pytest.mark.parametrize(
    ("host", "server", "expected"),
    [
        ("shop.test", ("shop.test", 443), ["https://shop.test/p"]),
        ("evil.example", ("shop.test", 443), ["https://shop.test/p"]),  # not served: the server's own name
        ("evil.example", ("10.0.0.5", 8443), []),  # neither is served: no page view at all
        ("sh<op>.test", None, []),  # not a host name, and no server name to fall back on
    ],
    ids=["served", "foreign-host-falls-back", "nothing-served", "invalid-host"],
)
def test_page_view_urls_use_only_hosts_the_site_serves(
    host: str, server: tuple[str, int] | None, expected: list[str]
) -> None:
    """Issue 19 item 9 under ASGI: a made-up Host must not put someone else's site into the site's UET data."""
    views: list[PageView] = []
    scope = http_scope("/p")
    scope["headers"] = [(b"host", host.encode()), *[(k, v) for k, v in scope["headers"] if k != b"host"]]
    scope["server"] = server
    app = raw_app(headers=[(b"content-type", HTML.encode())])
    run(MsclkidASGIMiddleware(app, **options(on_page_view=views.append, allowed_hosts=["shop.test"])), scope)
    assert [view.url for view in views] == expected


def test_sync_script_is_served() -> None:
    exchange = run(MsclkidASGIMiddleware(never_called(), **options()), http_scope("/_msclkid-sync.js"))
    assert exchange.status == 200
    assert exchange.body


def test_endpoint_under_starlette(client: TestClient) -> None:
    response = client.post(
        "/_msclkid", json={"msclkid": HEX2}, headers={"origin": BASE, "content-type": "application/json"}
    )
    assert response.status_code == 204
    client.cookies.set(NAME, cookie_value(set_cookies(response)[0]))
    assert client.get("/whoami").json()["click"] == HEX2


# -- page views ---------------------------------------------------------------------------------------


def test_page_view_is_reported_after_the_last_body_chunk_of_a_stream() -> None:
    exchange = Exchange()
    views: list[PageView] = []

    def hook(view: PageView) -> None:
        views.append(view)
        exchange.events.append("page view")

    app = raw_app(headers=[(b"content-type", HTML.encode())], chunks=(b"<p>1</p>", b"<p>2</p>", b"<p>3</p>"))
    middleware = MsclkidASGIMiddleware(app, **options(on_page_view=hook))
    run(middleware, http_scope("/product", query=f"msclkid={HEX}&x=%C3%A9"), exchange=exchange)
    assert exchange.events == [
        "http.response.start",
        "http.response.body+more",
        "http.response.body+more",
        "http.response.body",
        "page view",
    ]
    (view,) = views
    assert view.url == f"https://shop.test/product?msclkid={HEX}&x=%C3%A9"
    assert view.landing
    assert view.click is not None
    assert view.click.msclkid == HEX
    assert view.client_ip == "203.0.113.7"
    assert view.user_agent == BROWSER
    # The visitor cookie (on with page views) rides on the same response as the click cookie.
    assert {header.split("=")[0] for header in exchange.set_cookies} == {NAME, f"{NAME}_vid"}


@pytest.mark.parametrize(
    ("app", "scope"),
    [
        pytest.param(raw_app(headers=[(b"content-type", b"application/json")]), http_scope("/api"), id="json"),
        pytest.param(raw_app(status=302, headers=[(b"location", b"/")]), http_scope("/go"), id="redirect"),
        pytest.param(raw_app(headers=[(b"content-type", HTML.encode())]), http_scope(method="POST"), id="post"),
        pytest.param(
            raw_app(headers=[(b"content-type", HTML.encode())]),
            http_scope(headers={"user-agent": "Googlebot/2.1"}),
            id="bot",
        ),
    ],
)
def test_not_page_views(app: ASGIApp, scope: Scope) -> None:
    views: list[PageView] = []
    run(MsclkidASGIMiddleware(app, **options(on_page_view=views.append)), scope)
    assert views == []


def test_page_view_hook_failure_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    def hook(view: PageView) -> None:
        raise RuntimeError("hook broke")

    app = raw_app(headers=[(b"content-type", HTML.encode())])
    with caplog.at_level(logging.WARNING, logger="msclkid_middleware.asgi"):
        exchange = run(MsclkidASGIMiddleware(app, **options(on_page_view=hook)), http_scope("/p"))
    assert exchange.body == b"hello"
    assert "on_page_view hook failed" in caplog.text


def test_page_view_under_starlette_streaming() -> None:
    views: list[PageView] = []
    client = TestClient(starlette_app(on_page_view=views.append), base_url=BASE)
    response = client.get("/page", headers={"user-agent": BROWSER})
    (view,) = views
    assert view.page_load_id in response.text  # the same ID the page rendered
    assert get_anonymous_id is not None


# -- the cookie is the same under WSGI and ASGI --------------------------------------------------------------


def wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b""]


def test_a_cookie_issued_under_wsgi_verifies_under_asgi() -> None:
    wsgi = MsclkidMiddleware(wsgi_app, **options())
    (header,) = call(wsgi, make_environ(query=f"msclkid={HEX}")).set_cookies
    seen: dict[str, Any] = {}
    run(MsclkidASGIMiddleware(raw_app(seen=seen), **options()), http_scope(cookie=f"{NAME}={cookie_value(header)}"))
    assert seen["click"].msclkid == HEX
    assert seen["click"].source == "cookie"


def test_a_cookie_issued_under_asgi_verifies_under_wsgi() -> None:
    (header,) = run(MsclkidASGIMiddleware(raw_app(), **options()), http_scope(query=f"msclkid={HEX}")).set_cookies
    seen: dict[str, Any] = {}

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen["click"] = get_click(environ)
        start_response("200 OK", [])
        return [b""]

    call(MsclkidMiddleware(app, **options()), make_environ(cookie=f"{NAME}={cookie_value(header)}"))
    assert seen["click"].msclkid == HEX
    assert seen["click"].source == "cookie"


def test_same_request_same_cookie_bytes_under_both_adapters() -> None:
    (wsgi_header,) = call(MsclkidMiddleware(wsgi_app, **options()), make_environ(query=f"msclkid={HEX}")).set_cookies
    (asgi_header,) = run(MsclkidASGIMiddleware(raw_app(), **options()), http_scope(query=f"msclkid={HEX}")).set_cookies
    assert wsgi_header == asgi_header


# -- never raises into the server --------------------------------------------------------------------------


def test_internal_failure_leaves_the_request_untouched(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    middleware = MsclkidASGIMiddleware(raw_app(), **options())

    def broken(*args: Any) -> Decision:
        raise RuntimeError("engine broke")

    monkeypatch.setattr(middleware.capture, "decide", broken)
    with caplog.at_level(logging.WARNING, logger="msclkid_middleware.asgi"):
        exchange = run(middleware, http_scope(query=f"msclkid={HEX}"))
    assert exchange.status == 200
    assert exchange.body == b"hello"
    assert exchange.set_cookies == []
    assert "request passed on untouched" in caplog.text


def test_a_scope_breaking_the_types_is_passed_on_untouched(caplog: pytest.LogCaptureFixture) -> None:
    scope = http_scope(query=f"msclkid={HEX}")
    scope["headers"].append((b"cookie", "text, not bytes"))
    with caplog.at_level(logging.WARNING, logger="msclkid_middleware.asgi"):
        exchange = run(MsclkidASGIMiddleware(raw_app(), **options()), scope)
    assert exchange.status == 200
    assert exchange.set_cookies == []


def test_header_failure_sends_the_apps_response_start(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(self: Decision, app_request: Any) -> list[tuple[str, str]]:
        return [("Set-Cookie", "caf\u00e9\u2603")]  # not encodable: the middleware must not send half a change

    monkeypatch.setattr(Decision, "response_headers", broken)
    with caplog.at_level(logging.WARNING, logger="msclkid_middleware.asgi"):
        exchange = run(MsclkidASGIMiddleware(raw_app(), **options()), http_scope(query=f"msclkid={HEX}"))
    assert exchange.status == 200
    assert exchange.set_cookies == []
    assert exchange.body == b"hello"
    assert "response left untouched" in caplog.text


def test_app_errors_propagate_and_the_context_is_left() -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        raise ValueError("the app's own bug")

    with pytest.raises(ValueError, match="own bug"):
        run(MsclkidASGIMiddleware(app, **options()), http_scope(query=f"msclkid={HEX}"))
    assert request_consent() is None


def test_profile_store_write_after_the_headers() -> None:
    store = MemoryProfileStore()
    middleware = MsclkidASGIMiddleware(raw_app(), **options(profile_store=store, visitor_id=lambda scope: "v-9"))
    run(middleware, http_scope(query=f"msclkid={HEX}"))
    saved = store.get("v-9")
    assert saved is not None
    assert saved.msclkid == HEX
    seen: dict[str, Any] = {}
    later = MsclkidASGIMiddleware(raw_app(seen=seen), **options(profile_store=store, visitor_id=lambda scope: "v-9"))
    run(later, http_scope())
    assert seen["click"].msclkid == HEX
