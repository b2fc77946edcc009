"""The anonymous visitor ID (UET's ``_uetvid``, else our signed visitor cookie) on the real middleware (issue 13)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from typing import Any

import pytest

from msclkid_middleware import ConsentPolicy
from msclkid_middleware.capture.cookie import ClickCookie
from msclkid_middleware.capture.visitor import DEFAULT_VISITOR_MAX_AGE, VisitorCookie, uet_visitor_id
from msclkid_middleware.middleware import get_anonymous_id, get_page_load_id, set_page_title
from tests.capture.test_pageview import HTML, KEYS, VID, VISITOR, Views, env, mw, page, token_of, visitor_cookie
from tests.wsgi_helpers import HEX, T0, Clock, call


@pytest.fixture
def views() -> Views:
    return Views()


@pytest.fixture
def clock() -> Clock:
    return Clock()


# -- the anonymous ID ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(VID, VID, id="plain"),
        pytest.param(VID + "|1733150000|3|0", VID, id="suffix"),
        pytest.param(VID.upper(), VID.upper(), id="case-kept"),
        pytest.param(VID[:31], None, id="short"),
        pytest.param(VID + "0", None, id="33-hex"),
        pytest.param("_uet" + VID, None, id="prefixed"),
        pytest.param("", None, id="empty"),
    ],
)
def test_uet_visitor_id(value: str, expected: str | None) -> None:
    assert uet_visitor_id(value) == expected


def test_uetvid_wins_and_no_cookie_of_ours_is_set(views: Views, clock: Clock) -> None:
    result = call(mw(page(), views, clock), env(cookie=f"_uetvid={VID}|1733150000|3|0"))
    assert views.seen[0].anonymous_id == VID
    assert views.seen[0].anonymous_id_source == "uet"
    assert visitor_cookie(result.set_cookies) is None


def test_own_cookie_keeps_the_id_and_refreshes_daily(views: Views, clock: Clock) -> None:
    app = mw(page(), views, clock)
    first = call(app, env())
    token = token_of(visitor_cookie(first.set_cookies) or "")
    vid = views.seen[0].anonymous_id
    clock.now += 3600
    again = call(app, env(cookie=f"{VISITOR}={token}"))
    assert views.seen[1].anonymous_id == vid
    assert visitor_cookie(again.set_cookies) is None  # fresh: no Set-Cookie on every page
    clock.now += 2 * 86400
    later = call(app, env(cookie=f"{VISITOR}={token}"))
    assert views.seen[2].anonymous_id == vid
    refreshed = visitor_cookie(later.set_cookies)
    assert refreshed is not None
    loaded = VisitorCookie(KEYS, name=VISITOR, clock=clock).decode(token_of(refreshed))
    assert loaded is not None
    assert (loaded.visitor_id, loaded.timestamp) == (vid, int(clock.now))


def test_cookie_signed_with_an_old_key_is_reissued(views: Views, clock: Clock) -> None:
    old = VisitorCookie(KEYS[:1], name=VISITOR, clock=clock).encode(VID, clock.now)
    result = call(mw(page(), views, clock), env(cookie=f"{VISITOR}={old}"))
    assert views.seen[0].anonymous_id == VID
    header = visitor_cookie(result.set_cookies)
    assert header is not None
    assert token_of(header) != old
    assert VisitorCookie(KEYS[1:], name=VISITOR, clock=clock).decode(token_of(header)) is not None


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("tampered", id="garbage"),
        pytest.param(ClickCookie(KEYS).encode(HEX, T0), id="click-cookie-token"),
    ],
)
def test_bad_cookie_gets_a_new_id(token: str, views: Views, clock: Clock) -> None:
    result = call(mw(page(), views, clock), env(cookie=f"{VISITOR}={token}"))
    assert views.seen[0].anonymous_id not in (None, VID, HEX)
    assert visitor_cookie(result.set_cookies) is not None


def test_visitor_token_is_not_a_click_cookie(clock: Clock) -> None:
    token = VisitorCookie(KEYS, name=VISITOR, clock=clock).encode(VID, clock.now)
    assert ClickCookie(KEYS, clock=clock).decode(token) is None


def test_expired_cookie_is_replaced(views: Views, clock: Clock) -> None:
    token = VisitorCookie(KEYS, name=VISITOR, clock=clock).encode(VID, clock.now - DEFAULT_VISITOR_MAX_AGE - 10)
    call(mw(page(), views, clock), env(cookie=f"{VISITOR}={token}"))
    assert views.seen[0].anonymous_id != VID


def test_denied_consent_no_id_no_cookie_and_ours_is_deleted(views: Views, clock: Clock) -> None:
    token = VisitorCookie(KEYS, name=VISITOR, clock=clock).encode(VID, clock.now)
    cookie = f"consent=denied; _uetvid={HEX}; {VISITOR}={token}"
    result = call(mw(page(), views, clock), env(query=f"msclkid={HEX}", cookie=cookie))
    (view,) = views.seen
    assert view.consent.state == "denied"
    assert (view.anonymous_id, view.click) == (None, None)
    assert view.landing is True  # the URL still was an ad landing
    header = visitor_cookie(result.set_cookies)
    assert header is not None
    assert "Max-Age=0" in header
    assert get_anonymous_id(result.environ) is None


def test_denied_new_visitor_gets_no_cookie(views: Views, clock: Clock) -> None:
    result = call(mw(page(), views, clock, consent=ConsentPolicy(default="denied")), env())
    assert views.seen[0].anonymous_id is None
    assert result.set_cookies == []


def test_app_asking_for_the_id_on_a_post_gets_a_kept_one(clock: Clock) -> None:
    def buy(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        anonymous_id = get_anonymous_id(environ)
        start_response("303 See Other", [("Location", "/thanks")])
        return [str(anonymous_id).encode()]

    result = call(
        mw(buy, None, clock, anonymous_id_cookie=True), env(method="POST", body=b"", content_type="text/plain")
    )
    header = visitor_cookie(result.set_cookies)
    assert header is not None
    loaded = VisitorCookie(KEYS, name=VISITOR, clock=clock).decode(token_of(header))
    assert loaded is not None
    assert loaded.visitor_id.encode() == result.body


def test_id_is_the_same_for_the_app_the_hook_and_the_cookie(views: Views, clock: Clock) -> None:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        environ["test.anonymous_id"] = get_anonymous_id(environ)
        start_response("200 OK", HTML)
        return [b""]

    result = call(mw(app, views, clock), env())
    header = visitor_cookie(result.set_cookies)
    assert header is not None
    loaded = VisitorCookie(KEYS, name=VISITOR, clock=clock).decode(token_of(header))
    assert loaded is not None
    assert result.environ["test.anonymous_id"] == views.seen[0].anonymous_id == loaded.visitor_id


def test_cookie_names_follow_the_click_cookie(views: Views, clock: Clock) -> None:
    dev = mw(page(), views, clock, cookie_secure=False, allow_insecure_cookie=True)
    assert dev.visitor_cookie is not None
    assert dev.visitor_cookie.name == "msclkid_vid"
    shared = mw(page(), views, clock, cookie_domain="shop.test")
    result = call(shared, env())
    (header,) = [h for h in result.set_cookies if h.startswith("__Secure-msclkid_vid=")]
    assert "Domain=shop.test" in header
    assert "Secure" in header


def test_page_load_id_is_stable_within_a_request_and_new_per_request(clock: Clock, views: Views) -> None:
    ids: list[str | None] = []

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        ids.extend([get_page_load_id(environ), get_page_load_id(environ)])
        start_response("200 OK", HTML)
        return [b""]

    wrapped = mw(app, views, clock)
    call(wrapped, env())
    call(wrapped, env())
    assert ids[0] == ids[1] != ids[2] == ids[3]
    assert [v.page_load_id for v in views.seen] == [ids[0], ids[2]]
    assert uuid.UUID(str(ids[0])).version == 4


def test_get_functions_outside_the_middleware() -> None:
    assert get_anonymous_id({}) is None
    assert get_page_load_id({}) is None
    set_page_title({}, "x")  # a no-op, never raises
