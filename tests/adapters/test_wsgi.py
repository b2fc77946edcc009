from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from http.cookies import SimpleCookie
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from msclkid_middleware import MsclkidMiddleware, get_click, get_consent
from msclkid_middleware.capture.clickid import Click
from msclkid_middleware.capture.consent import Consent, ConsentPolicy
from msclkid_middleware.capture.cookie import DEFAULT_MAX_AGE, ClickCookie
from msclkid_middleware.capture.profiles import MemoryProfileStore
from msclkid_middleware.config import Settings
from msclkid_middleware.errors import ConfigError, StoreError
from msclkid_middleware.middleware import STATE_KEY
from tests.wsgi_helpers import HEX, HEX2, T0, Clock, Result, UntouchableInput, call, make_environ

SECRET = "s3cret-key-for-tests"
NAME = "__Host-msclkid"
GPC = {"HTTP_SEC_GPC": "1"}


def shop_app(status: str = "200 OK", extra: list[tuple[str, str]] | None = None) -> Callable[..., Iterable[bytes]]:
    """An app that reports what it saw through get_click/get_consent in its body."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        click = get_click(environ)
        consent = get_consent(environ)
        start_response(status, [("Content-Type", "text/plain"), *(extra or [])])
        text = f"{click.msclkid if click else '-'}|{click.source if click else '-'}|"
        text += f"{consent.state if consent else '-'}|{consent.basis if consent else '-'}"
        return [text.encode()]

    return app


def middleware(
    app: Callable[..., Iterable[bytes]] | None = None, clock: Clock | None = None, **options: Any
) -> MsclkidMiddleware:
    options.setdefault("secret_keys", [SECRET])
    options.setdefault("consent", ConsentPolicy(default="granted"))
    return MsclkidMiddleware(app or shop_app(), clock=clock or Clock(), **options)


def token(msclkid: str = HEX, at: float = T0, keys: list[str] | None = None, clock: Clock | None = None) -> str:
    return ClickCookie(keys or [SECRET], clock=clock or Clock(at)).encode(msclkid, at)


def seen(result: Result) -> tuple[str, str, str, str]:
    click_id, source, state, basis = result.body.decode().split("|")
    return click_id, source, state, basis


def cookie_value(result: Result) -> str:
    (header,) = result.set_cookies
    jar: SimpleCookie = SimpleCookie()
    jar.load(header)
    return jar[NAME].value


# -- construction ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "match"),
    [
        pytest.param({"secret_keys": []}, "secret key", id="no-secret"),
        pytest.param({"secret_keys": None}, "secret key", id="secret-none"),
        pytest.param({"cookie_domain": "example.com", "cookie_name": "__Host-msclkid"}, "__Host-", id="host-domain"),
        pytest.param({"cookie_secure": False}, "allow_insecure_cookie", id="insecure-without-flag"),
        pytest.param(
            {"cookie_secure": False, "allow_insecure_cookie": True, "cookie_name": "__Host-msclkid"},
            "__Host-",
            id="host-without-secure",
        ),
        pytest.param({"cookie_domain": "example.com", "cookie_name": "msclkid"}, "__Secure-", id="domain-plain-name"),
        pytest.param({"capture_path": "_msclkid"}, "capture_path", id="relative-path"),
        pytest.param({"capture_path": "/a?b"}, "capture_path", id="path-with-query"),
        pytest.param({"snippet_path": "//evil"}, "snippet_path", id="protocol-relative"),
        pytest.param({"snippet_path": "/x\r\n"}, "snippet_path", id="path-crlf"),
        pytest.param({"capture_path": "/x", "snippet_path": "/x"}, "differ", id="same-paths"),
        pytest.param({"visitor_id": lambda e: None}, "go together", id="visitor-without-store"),
        pytest.param({"profile_store": MemoryProfileStore()}, "go together", id="store-without-visitor"),
        pytest.param({"max_age": timedelta(days=401)}, "400 days", id="max-age-too-long"),
        pytest.param({"max_query_length": 0}, "max_query_length", id="zero-query-cap"),
        pytest.param({"consent": object()}, "ConsentPolicy", id="bad-consent"),
    ],
)
def test_misuse_fails_at_construction(options: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        middleware(**options)


@pytest.mark.parametrize(
    ("options", "name", "present", "absent"),
    [
        pytest.param({}, "__Host-msclkid", ["Secure", "HttpOnly", "SameSite=Lax", "Path=/"], ["Domain"], id="default"),
        pytest.param(
            {"cookie_domain": "example.com"},
            "__Secure-msclkid",
            ["Secure", "Domain=example.com", "Path=/"],
            [],
            id="cross-subdomain",
        ),
        pytest.param(
            {"cookie_secure": False, "allow_insecure_cookie": True},
            "msclkid",
            ["HttpOnly", "SameSite=Lax"],
            ["Secure", "Domain"],
            id="insecure-dev",
        ),
        pytest.param({"cookie_samesite": "Strict"}, "__Host-msclkid", ["SameSite=Strict"], [], id="strict"),
    ],
)
def test_cookie_name_and_attributes(options: dict[str, Any], name: str, present: list[str], absent: list[str]) -> None:
    result = call(middleware(**options), make_environ(query=f"msclkid={HEX}"))
    (header,) = result.set_cookies
    assert header.startswith(f"{name}=1.{HEX}.")
    attributes = [a.strip() for a in header.split(";")[1:]]
    for attribute in present:
        assert attribute in attributes
    for attribute in absent:
        assert not any(a.startswith(attribute) for a in attributes)
    assert f"Max-Age={DEFAULT_MAX_AGE}" in attributes


def test_from_settings() -> None:
    mw = MsclkidMiddleware.from_settings(
        shop_app(), Settings(secret_keys=("old", "new"), consent_default="denied"), clock=Clock()
    )
    result = call(mw, make_environ(query=f"msclkid={HEX}"))
    assert result.set_cookies == []
    assert seen(result) == ("-", "-", "denied", "default")


# -- query variants through the middleware -----------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        pytest.param(f"msclkid={HEX}", HEX, id="plain"),
        pytest.param("MSCLKID=Example-123", "Example-123", id="upper-name"),
        pytest.param("msclkid=bad!&msclkid=Good_1", "Good_1", id="first-valid"),
        pytest.param("msclkid=%41bc", "Abc", id="percent"),
        pytest.param("msclkid=a;msclkid=b", None, id="semicolon"),
        pytest.param("msclkid=" + "a" * 65, None, id="overlong"),
        pytest.param("msclkid=\xff\xfe", None, id="non-utf8"),
        pytest.param("a=1&" * 10_000 + f"msclkid={HEX}", None, id="10000-fields-before"),
        pytest.param(f"msclkid={HEX}&" + "a=1&" * 10_000, HEX, id="10000-fields-after"),
        pytest.param("msclkid=abc%0D%0ASet-Cookie:%20x=1", None, id="header-injection"),
    ],
)
def test_query_variants(query: str, expected: str | None) -> None:
    result = call(middleware(), make_environ(query=query))
    assert result.code == 200
    if expected is None:
        assert result.set_cookies == []
        assert seen(result)[:2] == ("-", "-")
    else:
        assert seen(result)[:2] == (expected, "url")
        assert ClickCookie([SECRET], clock=Clock()).decode(cookie_value(result)).msclkid == expected  # type: ignore[union-attr]
    for _, value in result.headers:
        assert "\r" not in value
        assert "\n" not in value
        assert "Set-Cookie:" not in value


# -- cookie states ---------------------------------------------------------------------------------


def _cookie_states() -> list[Any]:
    valid = token()
    tampered = valid[:-3] + ("AAA" if not valid.endswith("AAA") else "BBB")
    return [
        pytest.param(f"{NAME}={valid}", 0, HEX, False, id="valid"),
        pytest.param(f'{NAME}="{valid}"', 0, HEX, False, id="valid-quoted"),
        pytest.param(f"{NAME}={tampered}", 0, None, False, id="tampered"),
        pytest.param(f"{NAME}=garbage", 0, None, False, id="unparsable"),
        pytest.param(f"{NAME}={valid}", DEFAULT_MAX_AGE + 1, None, False, id="expired"),
        pytest.param(f"{NAME}={token(at=T0 + 200)}", 0, HEX, False, id="future-within-skew"),
        pytest.param(f"{NAME}={token(at=T0 + 400)}", 0, None, False, id="future-beyond-skew"),
        pytest.param(f"{NAME}={token(keys=['retired'])}", 0, HEX, True, id="rotated-key-reissued"),
        pytest.param(f"{NAME}={token(keys=['unknown'])}", 0, None, False, id="removed-key"),
        pytest.param(f"{NAME}={tampered}; {NAME}={valid}", 0, HEX, False, id="duplicate-tampered-first"),
        pytest.param(f"{NAME}={token(HEX2, at=T0 - 100)}; {NAME}={valid}", 0, HEX, False, id="duplicate-newest-wins"),
        pytest.param(f"other=1; {NAME}={valid}; x=2", 0, HEX, False, id="among-others"),
    ]


@pytest.mark.parametrize(("cookie", "elapsed", "expected", "reissued"), _cookie_states())
def test_cookie_states(cookie: str, elapsed: int, expected: str | None, reissued: bool) -> None:
    clock = Clock(T0 + elapsed)
    mw = middleware(clock=clock, secret_keys=["retired", SECRET])
    result = call(mw, make_environ(cookie=cookie))
    if expected is None:
        assert seen(result)[:2] == ("-", "-")
    else:
        assert seen(result)[:2] == (expected, "cookie")
    if reissued:
        new = cookie_value(result)
        loaded = ClickCookie([SECRET], clock=clock).decode(new)  # newest key only
        assert loaded is not None
        assert loaded.msclkid == expected
        assert loaded.timestamp == int(T0)  # the click time survives re-signing
    else:
        assert result.set_cookies == []


def test_rotated_cookie_keeps_its_remaining_lifetime() -> None:
    clock = Clock(T0 + 10 * 86400)
    mw = middleware(clock=clock, secret_keys=["retired", SECRET])
    result = call(mw, make_environ(cookie=f"{NAME}={token(keys=['retired'])}"))
    (header,) = result.set_cookies
    assert f"Max-Age={DEFAULT_MAX_AGE - 10 * 86400};" in header


# -- newer and older clicks ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "cookie_id", "expect_set", "expect_time"),
    [
        pytest.param(f"msclkid={HEX2}", HEX, HEX2, T0 + 3600, id="newer-url-click-overwrites"),
        pytest.param(f"msclkid={HEX}", HEX, None, T0, id="same-click-not-reset"),
        pytest.param("", HEX, None, T0, id="cookie-only"),
        pytest.param(f"msclkid={HEX2}", None, HEX2, T0 + 3600, id="first-click"),
    ],
)
def test_newer_and_older_clicks(query: str, cookie_id: str | None, expect_set: str | None, expect_time: float) -> None:
    clock = Clock(T0 + 3600)
    seen_clicks: list[Click | None] = []

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        seen_clicks.append(get_click(environ))
        start_response("200 OK", [])
        return []

    cookie = f"{NAME}={token(cookie_id)}" if cookie_id else None
    result = call(middleware(app, clock=clock), make_environ(query=query, cookie=cookie))
    (click,) = seen_clicks
    assert click is not None
    assert click.captured_at == datetime.fromtimestamp(expect_time, UTC)
    if expect_set is None:
        assert result.set_cookies == []
    else:
        loaded = ClickCookie([SECRET], clock=clock).decode(cookie_value(result))
        assert loaded is not None
        assert loaded.msclkid == expect_set
        assert loaded.timestamp == int(clock.now)


# -- source precedence -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "ours", "uet", "profile", "expected"),
    [
        pytest.param("UrlId", "CookieId", "UetId", "ProfileId", ("UrlId", "url"), id="url-first"),
        pytest.param(None, "CookieId", "UetId", "ProfileId", ("CookieId", "cookie"), id="cookie-second"),
        pytest.param(None, None, "UetId", "ProfileId", ("UetId", "uet_cookie"), id="uet-third"),
        pytest.param(None, None, None, "ProfileId", ("ProfileId", "profile"), id="profile-last"),
        pytest.param(None, None, None, None, ("-", "-"), id="nothing"),
    ],
)
def test_click_source_precedence(
    url: str | None, ours: str | None, uet: str | None, profile: str | None, expected: tuple[str, str]
) -> None:
    store = MemoryProfileStore()
    if profile:
        store.put("user-7", Click(profile, datetime.fromtimestamp(T0 - 50, UTC)))
    mw = middleware(visitor_id=lambda environ: "user-7", profile_store=store)
    cookies = []
    if ours:
        cookies.append(f"{NAME}={token(ours)}")
    if uet:
        cookies.append(f"_uetmsclkid=_uet{uet}")
    environ = make_environ(query=f"msclkid={url}" if url else "", cookie="; ".join(cookies) or None)
    assert seen(call(mw, environ))[:2] == expected


def test_uet_cookie_is_read_but_not_copied_into_our_cookie() -> None:
    result = call(middleware(), make_environ(cookie=f"_uetmsclkid=_uet{HEX}-1N"))
    assert seen(result)[:2] == (HEX, "uet_cookie")
    assert result.set_cookies == []


# -- consent matrix ----------------------------------------------------------------------------------------


def _consent_rows() -> list[Any]:
    def policy(**kw: Any) -> ConsentPolicy:
        kw.setdefault("cookie_name", "site_consent")
        return ConsentPolicy(**kw)

    return [
        pytest.param(policy(), {}, "", "granted", "default", id="default-granted"),
        pytest.param(policy(default="denied"), {}, "", "denied", "default", id="default-denied"),
        pytest.param(policy(resolver=lambda e: True), GPC, "", "granted", "resolver", id="resolver>gpc"),
        pytest.param(policy(resolver=lambda e: "denied"), {}, "", "denied", "resolver", id="resolver-denies"),
        pytest.param(policy(resolver=lambda e: None), GPC, "", "denied", "gpc", id="resolver-none>gpc"),
        pytest.param(policy(resolver=lambda e: 1 / 0), {}, "", "denied", "resolver", id="resolver-raises"),
        pytest.param(policy(), {"HTTP_SEC_GPC": "1"}, "site_consent=granted", "denied", "gpc", id="gpc>cookie"),
        pytest.param(policy(honor_gpc=False), {"HTTP_SEC_GPC": "1"}, "", "granted", "default", id="gpc-ignored"),
        pytest.param(policy(), {}, "site_consent=denied", "denied", "cookie", id="cookie-denies"),
        pytest.param(policy(default="denied"), {}, "site_consent=Granted", "granted", "cookie", id="cookie-grants"),
        # A refusal never loses (issue 19): a broken TC string refuses even beside the site cookie's grant.
        pytest.param(policy(), {}, "site_consent=granted; euconsent-v2=CO5V", "denied", "tcf", id="tcf-refusal>cookie"),
        pytest.param(policy(), {}, "site_consent=maybe; euconsent-v2=CO5V", "denied", "tcf", id="unknown-cookie>tcf"),
        pytest.param(policy(), {}, "euconsent-v2=CAAAAAAAAAAAAAAA", "denied", "tcf", id="tcf-truncated"),
        pytest.param(policy(tcf_cookie_name=None), {}, "euconsent-v2=CO5V", "granted", "default", id="tcf-off"),
    ]


@pytest.mark.parametrize("existing", [False, True], ids=["no-cookie", "with-cookie"])
@pytest.mark.parametrize(("policy", "headers", "cookies", "state", "basis"), _consent_rows())
def test_consent_matrix(
    policy: ConsentPolicy, headers: dict[str, str], cookies: str, state: str, basis: str, existing: bool
) -> None:
    store = MemoryProfileStore()
    mw = middleware(consent=policy, visitor_id=lambda e: "user-1", profile_store=store)
    jar = [c for c in (cookies, f"{NAME}={token(HEX2)}" if existing else "") if c]
    environ = make_environ(query=f"msclkid={HEX}", cookie="; ".join(jar) or None)
    environ.update(headers)
    result = call(mw, environ)
    assert seen(result)[2:] == (state, basis)
    if state == "granted":
        assert seen(result)[:2] == (HEX, "url")
        assert ClickCookie([SECRET], clock=Clock()).decode(cookie_value(result)).msclkid == HEX  # type: ignore[union-attr]
        stored = store.get("user-1")
        assert stored is not None
        assert stored.msclkid == HEX
    else:
        assert seen(result)[:2] == ("-", "-")
        assert store.get("user-1") is None
        if existing:
            (deletion,) = result.set_cookies
            assert deletion.startswith(f"{NAME}=; Max-Age=0;")
        else:
            assert result.set_cookies == []


def test_denied_with_cookie_only_deletes_it_and_hides_the_click() -> None:
    mw = middleware(consent=ConsentPolicy(default="granted"))
    environ = make_environ(cookie=f"{NAME}={token()}")
    environ["HTTP_SEC_GPC"] = "1"
    result = call(mw, environ)
    assert seen(result) == ("-", "-", "denied", "gpc")
    (deletion,) = result.set_cookies
    assert "Max-Age=0" in deletion


def test_consent_is_decided_once_per_request() -> None:
    calls: list[int] = []

    def resolver(environ: Any) -> bool:
        calls.append(1)
        return True

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        for _ in range(3):
            get_click(environ)
            get_consent(environ)
        start_response("200 OK", [])
        return []

    call(middleware(app, consent=ConsentPolicy(resolver=resolver)), make_environ(query=f"msclkid={HEX}"))
    assert calls == [1]


def test_plain_request_decides_consent_only_when_asked() -> None:
    calls: list[int] = []

    def resolver(environ: Any) -> bool:
        calls.append(1)
        return False

    def quiet(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response("200 OK", [])
        return [b"ok"]

    consent_policy = ConsentPolicy(resolver=resolver)
    result = call(middleware(quiet, consent=consent_policy), make_environ(query="page=2", cookie="a=b"))
    assert calls == []
    assert result.set_cookies == []
    result = call(middleware(consent=consent_policy), make_environ(query="page=2"))
    assert seen(result) == ("-", "-", "denied", "resolver")
    assert calls == [1]


# -- response handling ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "status",
    ["301 Moved Permanently", "302 Found", "303 See Other", "307 Temporary Redirect", "308 Permanent Redirect"],
)
def test_redirects_carry_the_cookie(status: str) -> None:
    app = shop_app(status, [("Location", "/landing")])
    result = call(middleware(app), make_environ(query=f"msclkid={HEX}"))
    assert result.status == status
    assert result.header_values("Location") == ["/landing"]
    assert len(result.set_cookies) == 1


@pytest.mark.parametrize("status", ["204 No Content", "404 Not Found", "500 Internal Server Error"])
def test_any_status_carries_the_cookie(status: str) -> None:
    result = call(middleware(shop_app(status)), make_environ(query=f"msclkid={HEX}"))
    assert result.status == status
    assert len(result.set_cookies) == 1


def test_app_headers_and_body_untouched() -> None:
    extra = [("Set-Cookie", "app=1; Path=/"), ("X-Thing", "a"), ("Set-Cookie", "other=2")]
    bare = call(shop_app(extra=extra), make_environ(query=f"msclkid={HEX}"))
    wrapped = call(middleware(shop_app(extra=extra)), make_environ(query=f"msclkid={HEX}"))
    assert wrapped.headers[: len(bare.headers)] == bare.headers
    assert len(wrapped.headers) == len(bare.headers) + 1
    assert wrapped.headers[-1][0] == "Set-Cookie"


def test_exc_info_start_response_gets_the_cookie_too() -> None:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/html")])
        try:
            raise RuntimeError("template failed")
        except RuntimeError:
            import sys

            start_response("500 Internal Server Error", [("Content-Type", "text/plain")], sys.exc_info())
        return [b"error page"]

    result = call(middleware(app), make_environ(query=f"msclkid={HEX}"))
    assert result.status.startswith("500")
    assert len(result.set_cookies) == 1
    assert result.body == b"error page"


def test_write_callable_apps() -> None:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        write = start_response("200 OK", [])
        write(b"written ")
        return [b"returned"]

    result = call(middleware(app), make_environ(query=f"msclkid={HEX}"))
    assert result.body == b"written returned"
    assert len(result.set_cookies) == 1


def test_iterable_close_is_called_and_lazy_start_response_works() -> None:
    closed: list[bool] = []

    class Body:
        def __init__(self, start_response: Callable[..., Any]) -> None:
            self.start_response = start_response

        def __iter__(self) -> Iterator[bytes]:
            # start_response called lazily, on first iteration (generator-style apps).
            self.start_response("200 OK", [("Content-Type", "text/plain")])
            yield b"a"
            yield b"b"

        def close(self) -> None:
            closed.append(True)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Body:
        return Body(start_response)

    result = call(middleware(app), make_environ(query=f"msclkid={HEX}"))
    assert result.body == b"ab"
    assert closed == [True]
    assert len(result.set_cookies) == 1


def test_app_exceptions_propagate_unchanged() -> None:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        raise KeyError("app bug")

    with pytest.raises(KeyError, match="app bug"):
        call(middleware(app), make_environ(query=f"msclkid={HEX}"))


def test_plain_request_passes_environ_with_one_key() -> None:
    environ = make_environ(query="page=2", cookie="session=abc")
    before = dict(environ)
    call(middleware(), environ)
    added = set(environ) - set(before)
    assert added == {STATE_KEY}
    assert isinstance(environ["wsgi.input"], UntouchableInput)
    assert environ["wsgi.input"].reads == 0


def test_get_click_without_middleware() -> None:
    assert get_click({}) is None
    assert get_consent({}) is None
    assert get_click({STATE_KEY: "something else"}) is None


# -- internal failures never reach the server ------------------------------------------------------------


class BrokenStore:
    def get(self, visitor_id: str) -> Click | None:
        raise StoreError("disk on fire")

    def put(self, visitor_id: str, click: Click) -> None:
        raise StoreError("disk on fire")


def test_profile_store_failure_is_logged_and_ignored(caplog: pytest.LogCaptureFixture) -> None:
    mw = middleware(visitor_id=lambda e: "v", profile_store=BrokenStore())
    with caplog.at_level(logging.WARNING, logger="msclkid_middleware.middleware"):
        landing = call(mw, make_environ(query=f"msclkid={HEX}"))
        later = call(mw, make_environ())
    assert landing.code == 200
    assert len(landing.set_cookies) == 1
    assert seen(later)[:2] == ("-", "-")
    messages = [r.getMessage() for r in caplog.records]
    assert any("profile store write failed" in m for m in messages)
    assert any("profile store read failed" in m for m in messages)
    assert all(SECRET not in m and HEX not in m for m in messages)


def test_visitor_id_failure_is_logged_and_ignored(caplog: pytest.LogCaptureFixture) -> None:
    def visitor(environ: Any) -> str:
        raise RuntimeError("session backend down")

    mw = middleware(visitor_id=visitor, profile_store=MemoryProfileStore())
    with caplog.at_level(logging.WARNING, logger="msclkid_middleware.middleware"):
        result = call(mw, make_environ(query=f"msclkid={HEX}"))
    assert result.code == 200
    assert len(result.set_cookies) == 1
    assert any("visitor_id" in r.getMessage() for r in caplog.records)


def test_broken_consent_object_fails_closed(caplog: pytest.LogCaptureFixture) -> None:
    class Exploding(ConsentPolicy):
        def decide(self, environ: Any, cookies: Any = None) -> Consent:
            raise RuntimeError("bug")

    with caplog.at_level(logging.WARNING, logger="msclkid_middleware.middleware"):
        result = call(middleware(consent=Exploding()), make_environ(query=f"msclkid={HEX}"))
    assert result.code == 200
    assert result.set_cookies == []
    assert seen(result) == ("-", "-", "denied", "default")
    assert any(r.name == "msclkid_middleware.middleware" and r.levelno == logging.WARNING for r in caplog.records)


# -- profile fallback ------------------------------------------------------------------------------------


def test_profile_fallback_click_on_phone_purchase_on_laptop() -> None:
    store = MemoryProfileStore()
    clock = Clock()
    users = {"phone-session": "user-42", "laptop-session": "user-42"}
    mw = middleware(clock=clock, visitor_id=lambda e: users.get(e.get("HTTP_X_SESSION", "")), profile_store=store)
    phone = make_environ(query=f"msclkid={HEX}", headers={"X-Session": "phone-session"})
    assert seen(call(mw, phone))[:2] == (HEX, "url")
    clock.now += 86400
    laptop = make_environ(path="/checkout", headers={"X-Session": "laptop-session"})
    result = call(mw, laptop)
    assert seen(result)[:2] == (HEX, "profile")
    assert result.set_cookies == []  # a profile click is not copied into this browser


def test_profile_keeps_newest_and_cookie_click_is_saved_once(tmp_path: Any) -> None:
    from msclkid_middleware.outbox import SqliteProfileStore

    store = SqliteProfileStore(str(tmp_path / "profiles.sqlite3"))
    writes: list[str] = []

    class CountingStore:
        def get(self, visitor_id: str) -> Click | None:
            return store.get(visitor_id)

        def put(self, visitor_id: str, click: Click) -> None:
            writes.append(click.msclkid)
            store.put(visitor_id, click)

    mw = middleware(visitor_id=lambda e: "u", profile_store=CountingStore())
    cookie = f"{NAME}={token(HEX)}"
    for _ in range(3):
        call(mw, make_environ(cookie=cookie))
    assert writes == [HEX]
    stored = store.get("u")
    assert stored is not None
    assert stored.msclkid == HEX


def test_anonymous_visitor_has_no_profile() -> None:
    store = MemoryProfileStore()
    mw = middleware(visitor_id=lambda e: None, profile_store=store)
    call(mw, make_environ(query=f"msclkid={HEX}"))
    assert len(store) == 0


# -- property: nothing a request carries can break the response -------------------------------------------

_header_text = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=255), max_size=200)
_query = st.one_of(
    _header_text,
    st.lists(st.tuples(st.sampled_from(["msclkid", "MSCLKID", "x", "msclkid%00", ""]), _header_text), max_size=8).map(
        lambda pairs: "&".join(f"{k}={v}" for k, v in pairs)
    ),
)
_cookie = st.one_of(
    st.none(),
    _header_text,
    st.lists(
        st.tuples(
            st.sampled_from([NAME, "_uetmsclkid", "euconsent-v2", "site_consent", "x"]),
            st.one_of(_header_text, st.just(token()), st.just("_uet" + HEX), st.just("granted")),
        ),
        max_size=6,
    ).map(lambda pairs: "; ".join(f"{k}={v}" for k, v in pairs)),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    query=_query,
    cookie=_cookie,
    gpc=st.sampled_from([None, "1", "0", "\r\n"]),
    status=st.sampled_from(["200 OK", "302 Found", "404 Not Found"]),
)
def test_property_no_request_breaks_the_response(query: str, cookie: str | None, gpc: str | None, status: str) -> None:
    extra = [("Location", "/x"), ("Set-Cookie", "app=1")]
    mw = middleware(shop_app(status, extra), consent=ConsentPolicy(cookie_name="site_consent"))
    environ = make_environ(query=query, cookie=cookie)
    if gpc is not None:
        environ["HTTP_SEC_GPC"] = gpc
    result = call(mw, environ)
    assert result.status == status
    ours = [(k, v) for k, v in result.headers if k == "Set-Cookie" and v.startswith(NAME + "=")]
    others = [h for h in result.headers if h not in ours]
    assert others == [("Content-Type", "text/plain"), *extra]
    assert len(ours) <= 1
    for name, value in result.headers:
        assert "\r" not in name + value
        assert "\n" not in name + value
    for _, value in ours:
        assert len(value) <= 1024
        if "Max-Age=0" not in value:
            loaded = ClickCookie([SECRET], clock=Clock()).decode(value.split(";")[0].split("=", 1)[1])
            assert loaded is not None
    assert environ["wsgi.input"].reads == 0


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"QUERY_STRING": b"msclkid=abc"}, id="bytes-query"),
        pytest.param({"HTTP_COOKIE": b"__Host-msclkid=x"}, id="bytes-cookie"),
        pytest.param({"QUERY_STRING": None, "HTTP_COOKIE": None}, id="none-values"),
    ],
)
def test_non_conforming_server_values_do_not_break_requests(overrides: dict[str, Any]) -> None:
    environ = make_environ()
    environ.update(overrides)
    result = call(middleware(), environ)
    assert result.code == 200
    assert result.set_cookies == []


def test_request_state_does_not_reference_the_environ() -> None:
    # environ -> state only: no reference cycle per request for the garbage collector.
    import gc

    environ = make_environ(query=f"msclkid={HEX}", cookie=f"{NAME}={token()}")
    call(middleware(), environ)
    state = environ[STATE_KEY]
    assert environ not in gc.get_referents(state)


def test_building_the_middleware_loads_no_heavy_modules() -> None:
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import sys\n"
        "from msclkid_middleware import MsclkidMiddleware\n"
        "mw = MsclkidMiddleware(lambda e, s: [], secret_keys=['k'])\n"
        "print(','.join(m for m in ('requests', 'sqlite3', 'flask', 'psycopg') if m in sys.modules))\n"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env={"PYTHONPATH": str(root)}
    )
    assert out.stdout.strip() == ""


def test_locked_sqlite_profile_store_does_not_affect_the_response(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    import sqlite3

    from msclkid_middleware.outbox import SqliteProfileStore

    path = str(tmp_path / "locked.sqlite3")
    store = SqliteProfileStore(path, busy_timeout=0.05)
    store.put("warm-up", Click(HEX2, datetime.fromtimestamp(T0, UTC)))  # create the schema
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        mw = middleware(visitor_id=lambda e: "v", profile_store=store)
        with caplog.at_level(logging.WARNING, logger="msclkid_middleware.middleware"):
            result = call(mw, make_environ(query=f"msclkid={HEX}"))
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert result.code == 200
    assert seen(result)[:2] == (HEX, "url")
    assert len(result.set_cookies) == 1
    assert any("profile store write failed" in r.getMessage() for r in caplog.records)


def test_testing_make_click_cookie_round_trips_through_the_middleware() -> None:
    """DESIGN section 3 promises ``testing.make_click_cookie`` for shops' own tests."""
    from msclkid_middleware.testing import make_click_cookie

    mw = middleware(secret_keys=["old", "new"])
    header = make_click_cookie(HEX, ["old", "new"], captured_at=T0 - 3600)
    assert header.startswith("__Host-msclkid=")
    result = call(mw, make_environ(cookie=header))
    assert seen(result)[:2] == (HEX, "cookie")
    assert result.set_cookies == []  # signed with the newest key: nothing to re-issue
    assert seen(call(mw, make_environ(cookie=make_click_cookie(HEX, ["other"]))))[:2] == ("-", "-")


@pytest.mark.parametrize(
    ("query", "cookie"),
    [
        ("page=2", "session=abc"),
        ("", None),
        (None, None),
        ("MsClkId=x", None),
        ("utm=msclkid", ""),
        ("", f"{NAME}=x"),
        ("", f"a=1; {NAME}=x"),
        ("", f"{NAME} =x"),  # no "name=": not ours by the cheap check (the engine's rule)
        ("", "_uetmsclkid=x"),
        ("", "msclkid=x"),
        (b"msclkid=x", None),  # a server's non-str value is not ours to judge
        ("a=1", b"__Host-msclkid=x"),
    ],
)
def test_the_adapter_treats_a_request_as_ours_exactly_when_carries_ours_does(query: Any, cookie: Any) -> None:
    # The WSGI adapter runs Capture.carries_ours inline: a request it thinks carries nothing gets the plain marker.
    seen_state: list[object] = []

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        seen_state.append(environ[STATE_KEY])
        start_response("200 OK", [])
        return [b""]

    wrapped = middleware(app)
    environ = make_environ("/")
    for key, value in (("QUERY_STRING", query), ("HTTP_COOKIE", cookie)):
        if value is None:
            environ.pop(key, None)
        else:
            environ[key] = value
    call(wrapped, environ)
    expected = wrapped.capture.carries_ours(query, cookie)
    assert (type(seen_state[0]).__name__ == "Decision") is expected


def test_a_landing_is_logged_at_debug_with_the_click_id_cut(caplog: pytest.LogCaptureFixture) -> None:
    # The debug line is written only when debug logging is on (checked before formatting), and never in full.
    with caplog.at_level(logging.INFO, logger="msclkid_middleware.middleware"):
        call(middleware(), make_environ("/", query=f"msclkid={HEX}"))
    assert not [r for r in caplog.records if "captured click" in r.getMessage()]
    with caplog.at_level(logging.DEBUG, logger="msclkid_middleware.middleware"):
        call(middleware(), make_environ("/", query=f"msclkid={HEX}"))
    (message,) = [r.getMessage() for r in caplog.records if "captured click" in r.getMessage()]
    assert message == f"captured click {HEX[:6]}… from the landing URL"
    assert HEX not in message


_SERVER_VALUES = st.one_of(
    st.none(),
    st.sampled_from(["", "1", f"msclkid={HEX}", f"{NAME}=x; a=b", "_uetmsclkid=_uet" + HEX, "consent=denied"]),
    st.binary(max_size=8),  # a server breaking PEP 3333's str rule
    st.integers(),
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query=_SERVER_VALUES, cookie=_SERVER_VALUES, gpc=_SERVER_VALUES)
def test_the_adapters_inline_facts_are_from_environs(query: Any, cookie: Any, gpc: Any) -> None:
    # The WSGI adapter builds RequestFacts itself when every value is a str; whatever the server hands over, the
    # decision it stores must hold exactly RequestFacts.from_environ's facts (a marker in any value makes it decide).
    from msclkid_middleware.capture.request import RequestFacts

    environ = make_environ(query=f"msclkid={HEX}")
    for key, value in (("QUERY_STRING", query), ("HTTP_COOKIE", cookie), ("HTTP_SEC_GPC", gpc)):
        if value is None:
            environ.pop(key, None)
        else:
            environ[key] = value
    expected = RequestFacts.from_environ(environ)
    stored: list[Any] = []

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        stored.append(environ.get(STATE_KEY))
        start_response("200 OK", [])
        return [b""]

    call(middleware(app, anonymous_id_cookie=True), environ)  # tracking: every request gets a decision
    (state,) = stored
    assert state.facts == expected
