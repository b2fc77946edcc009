"""capture/signing.py: our own token codec is byte-for-byte itsdangerous', and its cache never outlives a check."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from itsdangerous import TimestampSigner

from msclkid_middleware.capture.clickid import Click
from msclkid_middleware.capture.cookie import COOKIE_SALT, DEFAULT_MAX_AGE, ClickCookie
from msclkid_middleware.capture.signing import VERIFIED_CACHE_SIZE, TokenKeys
from msclkid_middleware.capture.visitor import VISITOR_SALT, VisitorCookie

T0 = 1_790_000_000
HEX = "b4458f42c1b214060f81e89d7a9da3bb"
VID = "438fd44007ba11f086535bdba1bcc1a7"

_keys = st.one_of(st.text(min_size=1, max_size=80), st.binary(min_size=1, max_size=100))
_ids = st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True)


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FixedSigner(TimestampSigner):
    """itsdangerous' own signer, dated by a test clock."""

    def __init__(self, key: str | bytes, salt: bytes, now: int) -> None:
        super().__init__(key, salt=salt, key_derivation="hmac", digest_method=hashlib.sha256)
        self.now = now

    def get_timestamp(self) -> int:
        return self.now


@settings(max_examples=300)
@given(key=_keys, msclkid=_ids, when=st.integers(1, 2**37))
def test_itsdangerous_tokens_verify_here_and_ours_verify_there(key: str | bytes, msclkid: str, when: int) -> None:
    theirs = FixedSigner(key, COOKIE_SALT, when)
    ours = ClickCookie([key], clock=Clock(when))
    token = ours.encode(msclkid, when)
    assert token == theirs.sign(b"1." + msclkid.encode()).decode()
    value, signed_at = theirs.unsign(token, max_age=DEFAULT_MAX_AGE, return_timestamp=True)
    assert (value, int(signed_at.timestamp())) == (b"1." + msclkid.encode(), when)
    loaded = ours.decode(theirs.sign(b"1." + msclkid.encode()).decode())
    assert loaded is not None
    assert (loaded.msclkid, loaded.timestamp, loaded.stale_key) == (msclkid, when, False)


def test_visitor_tokens_are_itsdangerous_tokens_too() -> None:
    theirs = FixedSigner("k", VISITOR_SALT, T0)
    ours = VisitorCookie(["k"], name="vid", clock=Clock(T0))
    assert ours.encode(VID, T0) == theirs.sign(b"1." + VID.encode()).decode()
    loaded = ours.decode(theirs.sign(b"1." + VID.encode()).decode())
    assert loaded is not None
    assert (loaded.visitor_id, loaded.timestamp) == (VID, T0)


def test_a_cached_cookie_still_expires() -> None:
    clock = Clock()
    cookie = ClickCookie(["k"], clock=clock)
    token = cookie.encode(HEX, T0)
    assert cookie.decode(token) is not None  # verified, now cached
    clock.now = T0 + DEFAULT_MAX_AGE
    assert cookie.decode(token) is not None
    clock.now = T0 + DEFAULT_MAX_AGE + 1
    assert cookie.decode(token) is None  # from the cache, and still expired
    assert cookie.keys._verified.cache_info().hits >= 2


def test_a_cached_cookie_dated_too_far_ahead_is_refused() -> None:
    clock = Clock()
    cookie = ClickCookie(["k"], clock=clock)
    token = cookie.encode(HEX, T0)
    assert cookie.decode(token) is not None
    clock.now = T0 - 299
    assert cookie.decode(token) is not None
    clock.now = T0 - 301
    assert cookie.decode(token) is None


def test_a_retired_key_is_never_served_from_a_cache() -> None:
    clock = Clock()
    old_token = ClickCookie(["old"], clock=clock).encode(HEX, T0)
    rotating = ClickCookie(["old", "new"], clock=clock)
    for _ in range(3):  # the first verifies, the others are cache hits: still stale, so still re-issued
        loaded = rotating.decode(old_token)
        assert loaded is not None
        assert loaded.stale_key is True
    assert rotating.keys._verified.cache_info().hits >= 2
    assert ClickCookie(["new"], clock=clock).decode(old_token) is None  # the old key retired
    assert ClickCookie(["new"], clock=clock).decode(old_token) is None
    fresh = ClickCookie(["old", "new"], clock=clock).encode(HEX, T0)
    loaded = rotating.decode(fresh)
    assert loaded is not None
    assert loaded.stale_key is False


def test_a_cache_entry_is_checked_against_the_configured_keys() -> None:
    keys = TokenKeys(["k"], b"salt", lambda payload, ts: payload, stale=lambda payload: payload, message="m")
    token = keys.sign(b"1.x", T0)
    assert keys.reader(512, 10, 0).load(token, Clock()()) == b"1.x"
    keys._index.clear()  # as if the key had been retired under the cache's feet
    assert keys.reader(512, 10, 0).load(token, Clock()()) is None


def test_tampered_values_are_never_served_from_the_cache() -> None:
    cookie = ClickCookie(["k"], clock=Clock())
    token = cookie.encode(HEX, T0)
    assert cookie.decode(token) is not None
    for index in range(len(token)):
        for replacement in ("A", "b", "-", "."):
            mutated = token[:index] + replacement + token[index + 1 :]
            if mutated != token:
                assert cookie.decode(mutated) is None
    assert cookie.decode(token + "A") is None
    # Only verified tokens are remembered: the rejected ones did not evict anything.
    assert cookie.keys._verified.cache_info().currsize == 1


def test_the_cache_is_bounded() -> None:
    cookie = ClickCookie(["k"], clock=Clock())
    for i in range(VERIFIED_CACHE_SIZE + 50):
        assert cookie.decode(cookie.encode(f"{i:032x}", T0)) is not None
    assert cookie.keys._verified.cache_info().currsize == VERIFIED_CACHE_SIZE


def test_a_cached_cookie_yields_the_click_of_its_own_token() -> None:
    clock = Clock()
    cookie = ClickCookie(["k"], clock=clock)
    first = cookie.decode(cookie.encode(HEX, T0))
    relanded = cookie.decode(cookie.encode(HEX, T0 + 60))
    assert first is not None
    assert relanded is not None
    assert first.click == Click(HEX, datetime.fromtimestamp(T0, UTC), "cookie")
    assert relanded.click == Click(HEX, datetime.fromtimestamp(T0 + 60, UTC), "cookie")
    other = cookie.decode(cookie.encode("Example-123", T0))
    assert other is not None
    assert other.click.msclkid == "Example-123"


def test_verified_click_equals_the_checked_one() -> None:
    when = datetime.fromtimestamp(T0, UTC)
    assert Click.verified(HEX, when, "url") == Click(HEX, when, "url")
    assert hash(Click.verified(HEX, when, "url")) == hash(Click(HEX, when, "url"))
    with pytest.raises(AttributeError):
        Click.verified(HEX, when, "url").msclkid = "x"  # type: ignore[misc]


def test_decisions_over_a_cached_cookie_never_serve_a_stale_click() -> None:
    from msclkid_middleware.capture.consent import ConsentPolicy
    from msclkid_middleware.capture.engine import Capture
    from msclkid_middleware.capture.request import RequestFacts

    clock = Clock()
    capture = Capture(secret_keys=["k"], clock=clock, consent=ConsentPolicy(cookie_name="consent"))
    token = capture.cookie.encode(HEX, T0 - 60)
    header = f"a=1; __Host-msclkid={token}"
    for _ in range(2):  # the second request is served from the verified-token cache
        decision = capture.decide(RequestFacts(cookie_header=header))
        assert decision.click({}) == Click(HEX, datetime.fromtimestamp(T0 - 60, UTC), "cookie")
        assert decision.response_headers({}) == []
    # A landing with another click wins over the cached cookie, and is dated now.
    landing = capture.decide(RequestFacts(query="msclkid=Example-123", cookie_header=header))
    assert landing.click({}) == Click("Example-123", datetime.fromtimestamp(T0, UTC), "url")
    # A refusal hides the cached click and deletes the cookie.
    refused = capture.decide(RequestFacts(cookie_header=header + "; consent=denied"))
    assert refused.click({}) is None
    assert refused.response_headers({})[0][1].startswith("__Host-msclkid=; Max-Age=0")
    # Once expired, the cached cookie is gone too.
    clock.now = T0 - 60 + DEFAULT_MAX_AGE + 1
    assert capture.decide(RequestFacts(cookie_header=header)).click({}) is None


@settings(max_examples=200)
@given(key=_keys, msclkid=_ids, when=st.integers(1, 2**37), age=st.integers(1, DEFAULT_MAX_AGE))
def test_a_set_cookie_value_carries_the_itsdangerous_token(key: str | bytes, msclkid: str, when: int, age: int) -> None:
    # HeaderWriter builds the header as text in one piece; its token must stay sign()'s bytes.
    theirs = FixedSigner(key, COOKIE_SALT, when)
    ours = ClickCookie([key], clock=Clock(when))
    header = ours.keys.writer("n=", "1.", f"; Max-Age={age}; Path=/").write(msclkid, when)
    assert header == f"n={theirs.sign(b'1.' + msclkid.encode()).decode()}; Max-Age={age}; Path=/"
    # A second timestamp right after the first: the remembered stamp is replaced, never reused.
    assert (
        ours.keys.writer("n=", "1.", f"; Max-Age={age}").write(msclkid, when + 1)
        == f"n={ours.encode(msclkid, when + 1)}; Max-Age={age}"
    )
    # ClickCookie.fresh: the landing's header, the whole max_age ahead, as set_cookie() writes it at that time.
    assert ours.fresh(msclkid, when) == ours.set_cookie(msclkid, when)
