"""The page-view hook, the anonymous visitor ID and its cookie, page-load IDs (issue 13), on the real middleware."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator
from importlib import resources
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from msclkid_middleware import ConsentPolicy, MsclkidMiddleware
from msclkid_middleware.capture.pageview import (
    DEFAULT_BOT_PATTERN,
    PageView,
    compile_bot_pattern,
    is_asset_path,
    is_bot,
    web_referrer,
)
from msclkid_middleware.capture.visitor import DEFAULT_VISITOR_MAX_AGE, VisitorCookie
from msclkid_middleware.errors import ConfigError
from msclkid_middleware.middleware import (
    get_anonymous_id,
    get_click,
    get_page_load_id,
    render_page_tags,
    set_page_title,
)
from tests.wsgi_helpers import HEX, T0, Clock, call, make_environ

KEYS = ["old-key-0123456789", "new-key-0123456789"]
CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"
HTML = [("Content-Type", "text/html; charset=utf-8")]
UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
VID = "438fd44007ba11f086535bdba1bcc1a7"
VISITOR = "__Host-msclkid_vid"


def page(
    status: str = "200 OK", headers: list[tuple[str, str]] | None = None, body: bytes = b"<p>hi</p>"
) -> Callable[..., Iterable[bytes]]:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        environ["test.page_load_id"] = get_page_load_id(environ)
        start_response(status, list(HTML if headers is None else headers))
        return [body]

    return app


class Views:
    def __init__(self) -> None:
        self.seen: list[PageView] = []

    def __call__(self, view: PageView) -> None:
        self.seen.append(view)


@pytest.fixture
def views() -> Views:
    return Views()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def mw(app: Callable[..., Iterable[bytes]], views: Views | None, clock: Clock, **options: Any) -> MsclkidMiddleware:
    options.setdefault("consent", ConsentPolicy(cookie_name="consent"))
    options.setdefault("on_page_view", views)
    return MsclkidMiddleware(app, secret_keys=KEYS, clock=clock, **options)


def env(path: str = "/products/mug", **kw: Any) -> dict[str, Any]:
    headers = {"User-Agent": CHROME, **kw.pop("headers", {})}
    environ = make_environ(path, headers=headers, **kw)
    environ["REMOTE_ADDR"] = "203.0.113.9"
    return environ


def visitor_cookie(result_cookies: list[str]) -> str | None:
    for header in result_cookies:
        if header.startswith(VISITOR + "="):
            return header
    return None


def token_of(header: str) -> str:
    return header.split(";", 1)[0].split("=", 1)[1]


# -- when the hook runs ----------------------------------------------------------------------------


def test_html_page_view_reports_everything(views: Views, clock: Clock) -> None:
    environ = env(
        query=f"utm_source=bing&msclkid={HEX}",
        headers={"Referer": "https://www.bing.com/", "Cookie": "consent=granted"},
    )
    result = call(mw(page(), views, clock), environ)
    assert result.code == 200
    assert result.body == b"<p>hi</p>"
    (view,) = views.seen
    assert view.url == f"https://shop.test/products/mug?utm_source=bing&msclkid={HEX}"
    assert view.referrer == "https://www.bing.com/"
    assert view.page_load_id == environ["test.page_load_id"]
    assert UUID4.match(view.page_load_id)
    assert view.click is not None
    assert view.click.msclkid == HEX
    assert view.consent.granted
    assert view.landing is True
    assert view.client_ip == "203.0.113.9"
    assert view.user_agent == CHROME
    assert view.time.timestamp() == T0
    # A new visitor: a fresh 32-hex ID, stored in the signed 390-day cookie on this very response.
    assert view.anonymous_id is not None
    assert re.fullmatch(r"[0-9a-f]{32}", view.anonymous_id)
    assert view.anonymous_id_source == "cookie"
    header = visitor_cookie(result.set_cookies)
    assert header is not None
    assert f"Max-Age={DEFAULT_VISITOR_MAX_AGE}" in header
    assert DEFAULT_VISITOR_MAX_AGE == 390 * 86400
    assert "HttpOnly" in header
    assert "Secure" in header
    assert "SameSite=Lax" in header
    assert "Domain" not in header
    loaded = VisitorCookie(KEYS, name=VISITOR).decode(token_of(header))
    assert loaded is not None
    assert loaded.visitor_id == view.anonymous_id


def test_hook_runs_only_when_the_server_closes_the_response(views: Views, clock: Clock) -> None:
    app = mw(page(), views, clock)
    started: list[str] = []
    body = app(env(), lambda status, headers, exc_info=None: started.append(status))
    assert started == ["200 OK"]
    assert b"".join(body) == b"<p>hi</p>"
    assert views.seen == []  # headers and body are out, the server has not closed yet
    body.close()  # type: ignore[attr-defined]
    assert len(views.seen) == 1
    body.close()  # type: ignore[attr-defined]
    assert len(views.seen) == 1


def test_the_apps_close_still_runs_before_the_hook(views: Views, clock: Clock) -> None:
    order: list[str] = []

    class Body:
        def __iter__(self) -> Iterator[bytes]:
            return iter([b"x"])

        def close(self) -> None:
            order.append("app close")

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        start_response("200 OK", HTML)
        return Body()

    call(mw(app, lambda view: order.append("hook"), clock), env())  # type: ignore[arg-type]
    assert order == ["app close", "hook"]


def test_generator_app_that_starts_late_is_a_page_view(views: Views, clock: Clock) -> None:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        start_response("200 OK", HTML)
        yield b"<p>streamed</p>"

    result = call(mw(app, views, clock), env())
    assert result.body == b"<p>streamed</p>"
    assert len(views.seen) == 1


@pytest.mark.parametrize(
    ("app", "environ"),
    [
        pytest.param(
            page(), env(method="POST", body=b"a=1", content_type="application/x-www-form-urlencoded"), id="post"
        ),
        pytest.param(page(), env(method="HEAD"), id="head"),
        pytest.param(page("404 Not Found"), env(), id="404"),
        pytest.param(page("500 Internal Server Error"), env(), id="500"),
        pytest.param(page("204 No Content"), env(), id="204"),
        pytest.param(page("302 Found", [("Location", "/x"), *HTML]), env(), id="redirect"),
        pytest.param(page(headers=[("Content-Type", "text/plain")]), env(), id="text-plain"),
        pytest.param(page(headers=[("Content-Type", "application/json")]), env(), id="json"),
        pytest.param(page(headers=[]), env(), id="no-content-type"),
        pytest.param(page(), env("/static/app.css"), id="css-asset"),
        pytest.param(page(), env("/img/Logo.PNG"), id="png-asset"),
        pytest.param(page(), env("/app.js"), id="js-asset"),
        pytest.param(page(), env("/admin/users"), id="excluded-prefix"),
        pytest.param(page(), env(headers={"Sec-Fetch-Dest": "empty"}), id="fetch-call"),
        pytest.param(page(), env(headers={"Sec-Purpose": "prefetch"}), id="prefetch"),
        pytest.param(page(), env(headers={"HX-Request": "true"}), id="htmx-fragment"),
    ],
)
def test_not_a_page_view(
    app: Callable[..., Iterable[bytes]], environ: dict[str, Any], views: Views, clock: Clock
) -> None:
    result = call(mw(app, views, clock, page_view_exclude=("/admin/",)), environ)
    assert views.seen == []
    assert visitor_cookie(result.set_cookies) is None  # no page view, no new visitor cookie


@pytest.mark.parametrize("path", ["/_msclkid.js", "/_msclkid-sync.js", "/_msclkid"])
def test_middleware_endpoints_are_never_page_views(path: str, views: Views, clock: Clock) -> None:
    call(mw(page(), views, clock), env(path))
    assert views.seen == []


BOTS = [
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "AdsBot-Google (+http://www.google.com/adsbot.html)",
    "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
    "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
    "Mozilla/5.0 (compatible; Baiduspider/2.0; +http://www.baidu.com/search/spider.html)",
    "Mozilla/5.0 (compatible; Yahoo! Slurp; http://help.yahoo.com/help/us/ysearch/slurp)",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) (compatible; BingPreview/1.0b)",
    "curl/8.5.0",
    "python-requests/2.32.3",
    "Go-http-client/1.1",
    "",
]
PEOPLE = [
    CHROME,
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 "
    "Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 10; Cubot X30) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Mobile Safari",
    "Mozilla/5.0 (Linux; Android 12; CUBOT_P80) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Mobile Safari",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0 Safari/537.36",
]


@pytest.mark.parametrize("agent", BOTS)
def test_bots_are_not_page_views(agent: str, views: Views, clock: Clock) -> None:
    result = call(mw(page(), views, clock), env(headers={"User-Agent": agent}))
    assert result.code == 200
    assert views.seen == []
    assert visitor_cookie(result.set_cookies) is None


@pytest.mark.parametrize("agent", PEOPLE)
def test_browsers_are_page_views(agent: str, views: Views, clock: Clock) -> None:
    call(mw(page(), views, clock), env(headers={"User-Agent": agent}))
    assert len(views.seen) == 1


def test_bot_filter_is_configurable(views: Views, clock: Clock) -> None:
    headless = PEOPLE[-1]
    call(
        mw(page(), views, clock, bot_user_agents=DEFAULT_BOT_PATTERN + "|headless"),
        env(headers={"User-Agent": headless}),
    )
    assert views.seen == []
    call(mw(page(), views, clock, bot_user_agents=None), env(headers={"User-Agent": BOTS[0]}))
    assert len(views.seen) == 1
    pattern = compile_bot_pattern(DEFAULT_BOT_PATTERN)
    assert pattern is not None
    assert pattern.flags & re.IGNORECASE
    assert is_bot(pattern, None)
    assert not is_bot(None, None)


def test_hook_errors_are_logged_and_swallowed(clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    def broken(view: PageView) -> None:
        raise RuntimeError("hook down")

    with caplog.at_level(logging.WARNING, logger="msclkid_middleware.middleware"):
        result = call(mw(page(), None, clock, on_page_view=broken), env())
    assert (result.code, result.body) == (200, b"<p>hi</p>")
    assert "on_page_view hook failed" in caplog.text


def test_app_error_after_start_is_not_a_page_view(views: Views, clock: Clock) -> None:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        start_response("200 OK", HTML)
        try:
            raise ValueError("template failed")
        except ValueError:
            start_response("500 Internal Server Error", [("Content-Type", "text/plain")], sys.exc_info())
        yield b"error"

    call(mw(app, views, clock), env())
    assert views.seen == []


def test_title_reaches_the_view(views: Views, clock: Clock) -> None:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        set_page_title(environ, "Blue mug")
        start_response("200 OK", HTML)
        return [b""]

    call(mw(app, views, clock), env())
    assert views.seen[0].title == "Blue mug"


def test_without_the_hook_nothing_changes(clock: Clock) -> None:
    """The default configuration: no visitor cookie, the response iterable untouched."""
    body = [b"<p>hi</p>"]

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        start_response("200 OK", HTML)
        return body

    plain = MsclkidMiddleware(app, secret_keys=KEYS, clock=clock)
    assert plain(env(), lambda *a: None) is body
    result = call(plain, env())
    assert result.set_cookies == []
    assert UUID4.match(get_page_load_id(result.environ) or "")
    assert get_anonymous_id(result.environ) is None


def test_non_html_response_iterable_is_returned_unwrapped(views: Views, clock: Clock) -> None:
    body = [b"{}"]

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Type", "application/json")])
        return body

    assert mw(app, views, clock)(env("/api/cart"), lambda *a: None) is body


# -- template helper ----------------------------------------------------------------------------------


def _render(cookie: str, clock: Clock, **kwargs: Any) -> tuple[str, dict[str, Any]]:
    out: dict[str, Any] = {}

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        out["html"] = render_page_tags(environ, **kwargs)
        start_response("200 OK", HTML)
        return [out["html"].encode()]

    result = call(mw(app, None, clock, anonymous_id_cookie=True), env(cookie=cookie))
    return out["html"], result.environ


def test_render_page_tags_with_consent(clock: Clock) -> None:
    html, environ = _render(f"_uetvid={VID}", clock, customer_id=1234567, pixel_url="/px?a=<b>", nonce="n0")
    assert f'<meta name="msclkid-page-load-id" content="{get_page_load_id(environ)}">' in html
    assert (
        f'<script src="/_msclkid-sync.js" data-cid="1234567" data-vid="{VID}" data-pixel="/px?a=&lt;b&gt;" '
        'nonce="n0" async></script>'
    ) in html


@pytest.mark.parametrize(
    ("cookie", "kwargs"),
    [
        pytest.param(f"consent=denied; _uetvid={VID}", {"customer_id": "1234567"}, id="denied"),
        pytest.param(f"_uetvid={VID}", {"customer_id": None}, id="no-customer-id"),
        pytest.param(f"_uetvid={VID}", {"customer_id": '12"><script>'}, id="bad-customer-id"),
    ],
)
def test_render_page_tags_without_sync(cookie: str, kwargs: dict[str, Any], clock: Clock) -> None:
    html, _ = _render(cookie, clock, **kwargs)
    assert html.startswith('<meta name="msclkid-page-load-id"')
    assert "<script" not in html


# -- configuration, packaging, imports --------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"on_page_view": "not callable"}, id="hook"),
        pytest.param({"bot_user_agents": "("}, id="bad-regex"),
        pytest.param({"page_view_exclude": ["static/"]}, id="prefix"),
        pytest.param({"sync_script_path": "/_msclkid.js"}, id="same-path"),
        pytest.param({"visitor_max_age": 500 * 86400}, id="too-long"),
    ],
)
def test_config_errors(options: dict[str, Any], clock: Clock) -> None:
    options.setdefault("on_page_view", Views())
    with pytest.raises(ConfigError):
        MsclkidMiddleware(page(), secret_keys=KEYS, clock=clock, **options)


def test_sync_script_is_served_and_shipped(clock: Clock) -> None:
    shipped = (resources.files("msclkid_middleware") / "static" / "msclkid-sync.js").read_bytes()
    result = call(mw(page(), None, clock), env("/_msclkid-sync.js"))
    assert result.code == 200
    assert result.body == shipped
    assert result.header_values("Content-Type") == ["text/javascript; charset=utf-8"]
    (etag,) = result.header_values("ETag")
    again = call(mw(page(), None, clock), env("/_msclkid-sync.js", headers={"If-None-Match": etag}))
    assert again.code == 304
    assert b"c.bing.com/c.gif" in shipped
    assert b"Red3=BACID_" in shipped


def test_asset_paths() -> None:
    assert is_asset_path("/a/b.CSS")
    assert is_asset_path("/favicon.ico")
    assert not is_asset_path("/products/mug")
    assert not is_asset_path("/v1.2/page")
    assert not is_asset_path("/")


def test_middleware_and_recorder_import_no_outbox_or_http_stack() -> None:
    code = (
        "import sys, msclkid_middleware.middleware, msclkid_middleware.capture.pageview,"
        " msclkid_middleware.dispatch.page_loads;"
        "bad = [m for m in sys.modules if m.startswith(('msclkid_middleware.outbox',"
        " 'msclkid_middleware.dispatch.tracker',"
        " 'requests', 'sqlite3'))];"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_get_click_unaffected_by_tracking(views: Views, clock: Clock) -> None:
    result = call(mw(page(), views, clock), env(query=f"msclkid={HEX}"))
    assert get_click(result.environ) is not None
    assert any(h.startswith("__Host-msclkid=") for h in result.set_cookies)


@pytest.mark.parametrize("proxy_inside", [True, False], ids=["proxyfix-inside", "proxyfix-outside"])
def test_url_and_client_ip_as_the_proxy_set_up_reports_them(proxy_inside: bool, views: Views, clock: Clock) -> None:
    from werkzeug.middleware.proxy_fix import ProxyFix

    headers = {"X-Forwarded-For": "198.51.100.7", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "www.shop.example"}
    if proxy_inside:
        app: Any = mw(ProxyFix(page(), x_for=1, x_proto=1, x_host=1), views, clock)
    else:
        app = ProxyFix(mw(page(), views, clock), x_for=1, x_proto=1, x_host=1)
    environ = env("/mug", query="a=1", headers=headers, scheme="http", host="10.0.0.5:8000")
    call(app, environ)
    (view,) = views.seen
    assert view.url == "https://www.shop.example/mug?a=1"
    assert view.client_ip == "198.51.100.7"


def test_sync_script_needs_no_unsafe_csp_source() -> None:
    code = (resources.files("msclkid_middleware") / "static" / "msclkid-sync.js").read_text()
    for forbidden in ("eval(", "new Function", "Function(", "innerHTML", "document.write", "setTimeout("):
        assert forbidden not in code, forbidden


def test_url_with_raw_spaces_and_non_ascii_is_encoded(views: Views, clock: Clock) -> None:
    call(mw(page(), views, clock), env("/café", query="q=blue mug&x=\xc3\xa9"))  # WSGI: UTF-8 bytes as latin-1
    assert views.seen[0].url == "https://shop.test/caf%C3%A9?q=blue%20mug&x=%C3%A9"


def test_render_page_tags_is_safe_markup_for_jinja(clock: Clock) -> None:
    from jinja2 import Environment

    html, _ = _render(f"_uetvid={VID}", clock, customer_id="1234567")
    rendered = Environment(autoescape=True).from_string("<head>{{ tags }}</head>").render(tags=html)
    assert rendered == f"<head>{html}</head>"
    assert "&lt;" not in rendered


# -- issue 19 item 9: referrers and hosts from hostile requests ------------------------------------------------


@pytest.mark.parametrize(
    ("referer", "kept"),
    [
        ("https://www.bing.com/search?q=mug", True),
        ("HTTP://partner.example/x", True),
        ("javascript:alert(document.cookie)", False),
        ("data:text/html,<script>alert(1)</script>", False),
        ("file:///etc/passwd", False),
        ("ftp://files.example/", False),
        ("android-app://com.example/", False),
        ("//evil.example/", False),
        ("https:///no-host", False),
        ("https://evil.example/\r\nX-Injected: 1", False),
        ("https://evil.example/a b", False),
        ("https://" + "a" * 5000 + ".example/", False),
        ("", False),
    ],
)
def test_referrer_keeps_only_web_urls(referer: str, kept: bool, views: Views, clock: Clock) -> None:
    environ = env()
    environ["HTTP_REFERER"] = referer  # set raw: a server may pass on what a client sent
    call(mw(page(), views, clock), environ)
    (view,) = views.seen
    assert view.referrer == (referer if kept else None)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_property_referrer_is_a_web_url_or_none(referer: str) -> None:
    kept = web_referrer(referer)
    if kept is not None:
        assert kept.lower().startswith(("http://", "https://"))
        assert all(ch > " " and ch != "\x7f" for ch in kept)


@pytest.mark.parametrize(
    ("allowed", "host", "url"),
    [
        ((), "shop.test", "https://shop.test/products/mug"),
        ((), "shop.test:8443", "https://shop.test:8443/products/mug"),
        ((), "[2001:db8::1]:8443", "https://[2001:db8::1]:8443/products/mug"),
        ((), "evil.example/phish?", "https://srv.internal/products/mug"),  # not a host name: the server's own
        ((), "evil.example@shop.test", "https://srv.internal/products/mug"),
        ((), "a b", "https://srv.internal/products/mug"),
        ((), "<script>", "https://srv.internal/products/mug"),
        (("shop.test",), "SHOP.test", "https://SHOP.test/products/mug"),
        (("shop.test",), "evil.example", None),  # neither the Host nor the server name is one the site serves
        ((".shop.test",), "www.shop.test", "https://www.shop.test/products/mug"),
        ((".shop.test",), "shop.test:443", "https://shop.test:443/products/mug"),
        ((".shop.test",), "evilshop.test", None),
        (("*",), "anything.example", "https://anything.example/products/mug"),
        (("*",), "bad host", "https://srv.internal/products/mug"),
        (("srv.internal",), "evil.example", "https://srv.internal/products/mug"),
    ],
)
def test_page_url_host_is_one_the_site_serves(
    allowed: tuple[str, ...], host: str, url: str | None, views: Views, clock: Clock
) -> None:
    environ = env()
    environ["HTTP_HOST"] = host
    environ["SERVER_NAME"], environ["SERVER_PORT"] = "srv.internal", "443"
    call(mw(page(), views, clock, allowed_hosts=allowed), environ)
    assert [v.url for v in views.seen] == ([url] if url else [])


@settings(max_examples=300, deadline=None)
@given(host=st.text(max_size=80))
def test_property_a_page_url_never_carries_a_bad_host(host: str) -> None:
    seen: list[PageView] = []
    environ = env()
    environ["HTTP_HOST"] = host
    environ["SERVER_NAME"], environ["SERVER_PORT"] = "srv.internal", "443"
    call(mw(page(), seen.append, Clock()), environ)  # type: ignore[arg-type]
    (view,) = seen
    netloc = view.url.split("://", 1)[1].split("/", 1)[0]
    assert netloc in (host, "srv.internal")
    assert all(ch.isalnum() or ch in ".-:[]" for ch in netloc)


@pytest.mark.parametrize(
    "bad", ["https://shop.test", "shop.test:443", "a b", "", "exa mple.com", "[::1", "*.shop.test", "shop.test/x"]
)
def test_allowed_hosts_must_be_host_names(bad: str, clock: Clock) -> None:
    if not bad:
        assert mw(page(), None, clock, allowed_hosts=[bad]).capture.allowed_hosts == ()
        return
    with pytest.raises(ConfigError) as raised:
        mw(page(), None, clock, allowed_hosts=[bad])
    assert raised.value.setting == "MSCLKID_ALLOWED_HOSTS"


def test_allowed_hosts_from_settings(clock: Clock) -> None:
    from msclkid_middleware.config import Settings

    settings = Settings.from_env({"MSCLKID_SECRET_KEYS": "k", "MSCLKID_ALLOWED_HOSTS": "shop.test, .shop.example"})
    middleware = MsclkidMiddleware.from_settings(page(), settings)
    assert middleware.capture.allowed_hosts == ("shop.test", ".shop.example")
