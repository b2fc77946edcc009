"""Regression tests for defects found in the independent review (one test per defect, named after it)."""

from __future__ import annotations

from datetime import UTC, datetime

from msclkid_middleware.capture.profiles import MemoryProfileStore
from tests.test_middleware import middleware, seen
from tests.wsgi_helpers import HEX, T0, Clock, call, make_environ

NINETY_DAYS = 90 * 24 * 3600


def test_profile_click_older_than_the_cookie_lifetime_is_not_used() -> None:
    """The profile fallback keeps a click exactly as long as the cookie would: 90 days from the click."""
    store = MemoryProfileStore()
    clock = Clock()
    mw = middleware(clock=clock, visitor_id=lambda e: "user-1", profile_store=store)
    call(mw, make_environ(query=f"msclkid={HEX}"))
    stored = store.get("user-1")
    assert stored is not None
    assert stored.captured_at == datetime.fromtimestamp(T0, UTC)

    clock.now = T0 + NINETY_DAYS - 60
    assert seen(call(mw, make_environ(path="/checkout")))[:2] == (HEX, "profile")
    clock.now = T0 + NINETY_DAYS + 60
    assert seen(call(mw, make_environ(path="/checkout")))[:2] == ("-", "-")


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
