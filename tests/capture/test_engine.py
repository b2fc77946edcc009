"""The capture core decides on RequestFacts alone: no WSGI environ, no framework, no writes inside a decision."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from msclkid_middleware.capture.clickid import Click
from msclkid_middleware.capture.consent import Consent, ConsentPolicy
from msclkid_middleware.capture.decision import ProfileWrite
from msclkid_middleware.capture.engine import Capture
from msclkid_middleware.capture.profiles import MemoryProfileStore
from msclkid_middleware.capture.request import MAX_COOKIE_HEADER, RequestFacts, parse_cookies
from tests.adapters.test_wsgi import middleware, seen
from tests.wsgi_helpers import HEX, HEX2, T0, Clock, call, make_environ

KEYS = ["old-key-0123456789", "new-key-0123456789"]
NINETY_DAYS = 90 * 24 * 3600
NOBODY: dict[str, str] = {}


def engine(clock: Clock | None = None, **options: object) -> Capture:
    return Capture(secret_keys=KEYS, clock=clock or Clock(), **options)  # type: ignore[arg-type]


def test_landing_decision_sets_the_signed_cookie() -> None:
    capture = engine()
    decision = capture.decide(RequestFacts(query=f"utm=x&MSCLKID={HEX}"))
    assert decision.click(NOBODY) == Click(HEX, datetime.fromtimestamp(T0, UTC), "url")
    assert decision.consent(NOBODY) == Consent("granted", "default")
    (header,) = decision.response_headers(NOBODY)
    assert header[0] == "Set-Cookie"
    token = header[1].split(";", 1)[0].split("=", 1)[1]
    loaded = capture.cookie.decode(token)
    assert loaded is not None
    assert loaded.msclkid == HEX
    assert loaded.timestamp == T0


def test_cookie_decision_reads_our_cookie_and_sets_nothing() -> None:
    capture = engine()
    token = capture.cookie.encode(HEX, T0 - 60)
    decision = capture.decide(RequestFacts(cookie_header=f"a=b; {capture.cookie.name}={token}"))
    click = decision.click(NOBODY)
    assert click is not None
    assert click.source == "cookie"
    assert click.msclkid == HEX
    assert decision.response_headers(NOBODY) == []


def test_uet_cookie_is_a_fallback() -> None:
    decision = engine().decide(RequestFacts(cookie_header=f"_uetmsclkid=_uet{HEX}"))
    click = decision.click(NOBODY)
    assert click is not None
    assert (click.msclkid, click.source) == (HEX, "uet_cookie")


def test_gpc_denies_and_deletes_an_existing_cookie() -> None:
    capture = engine()
    token = capture.cookie.encode(HEX, T0)
    decision = capture.decide(RequestFacts(cookie_header=f"{capture.cookie.name}={token}", sec_gpc="1"))
    assert decision.consent(NOBODY) == Consent("denied", "gpc")
    assert decision.click(NOBODY) is None
    (header,) = decision.response_headers(NOBODY)
    assert "Max-Age=0" in header[1]


def test_the_resolver_gets_the_app_request_passed_in() -> None:
    seen_requests: list[object] = []

    def resolver(app_request: object) -> bool:
        seen_requests.append(app_request)
        return False

    decision = engine(consent=ConsentPolicy(resolver=resolver)).decide(RequestFacts(query=f"msclkid={HEX}"))
    app_request = {"user": "u1"}
    assert decision.consent(app_request) == Consent("denied", "resolver")
    assert seen_requests == [app_request]
    assert decision.response_headers(app_request) == []


class _CountingPolicy(ConsentPolicy):
    """A ConsentPolicy subclass: it may read the app's request in decide(), so it is asked lazily."""

    __slots__ = ("calls",)

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def decide(self, request: Any, cookies: Any = None, *, app_request: Any = None) -> Consent:
        self.calls += 1
        return super().decide(request, cookies, app_request=app_request)


def test_only_a_policy_without_a_resolver_is_asked_up_front() -> None:
    # Asked lazily: a resolver (and any decider that is not exactly a ConsentPolicy) needs the app's request.
    asked: list[object] = []
    lazy = engine(consent=ConsentPolicy(resolver=lambda request: asked.append(request))).decide(
        RequestFacts(query=f"msclkid={HEX}")
    )
    assert asked == []
    assert lazy.consent({"user": "u1"}) == Consent("granted", "default")
    assert asked == [{"user": "u1"}]
    counting = _CountingPolicy()
    decision = engine(consent=counting).decide(RequestFacts(query=f"msclkid={HEX}"))
    assert counting.calls == 0
    decision.response_headers(NOBODY)
    assert counting.calls == 1


_CONSENT_HEADERS = st.sampled_from(
    ["", "a=b", "consent=granted", "consent=denied", "consent=maybe", "euconsent-v2=junk", "consent=denied; x=1"]
)


@given(header=_CONSENT_HEADERS, gpc=st.sampled_from([None, "1", "0"]), default=st.sampled_from(["granted", "denied"]))
def test_the_up_front_consent_is_the_one_asked_for_later(header: str, gpc: str | None, default: str) -> None:
    policy = ConsentPolicy(default=default, cookie_name="consent")  # type: ignore[arg-type]
    facts = RequestFacts(query=f"msclkid={HEX}", cookie_header=header, sec_gpc=gpc)
    decision = engine(consent=policy).decide(facts)
    assert decision.consent(NOBODY) == policy.decide(facts)
    # The Set-Cookie follows that consent: granted issues the cookie, a refusal issues nothing.
    issued = bool(decision.response_headers(NOBODY))
    assert issued == policy.decide(facts).granted


def test_profile_write_is_a_value_written_only_when_asked() -> None:
    store = MemoryProfileStore()
    capture = engine(visitor_id=lambda request: request.get("user"), profile_store=store)
    decision = capture.decide(RequestFacts(query=f"msclkid={HEX}"))
    decision.response_headers({"user": "u1"})
    assert decision.profile_write == ProfileWrite(Click(HEX, datetime.fromtimestamp(T0, UTC), "url"), new=True)
    assert store.get("u1") is None  # deciding wrote nothing
    capture.write_profile(decision, {"user": "u1"})
    saved = store.get("u1")
    assert saved is not None
    assert saved.msclkid == HEX
    assert decision.profile_write is None  # written at most once


def test_cheap_check_and_blank_decision() -> None:
    capture = engine()
    assert not capture.carries_ours("page=2", "session=abc")
    assert capture.carries_ours("MsClkId=x", "")
    assert capture.carries_ours("", f"{capture.cookie.name}=x")
    assert capture.carries_ours("", "_uetmsclkid=x")
    assert not capture.carries_ours(b"msclkid=x", None)  # a server's non-str value is not ours to judge
    decision = capture.blank(RequestFacts())
    assert decision.click(NOBODY) is None
    assert decision.response_headers(NOBODY) == []


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        pytest.param(RequestFacts(), True, id="plain-get"),
        pytest.param(RequestFacts(method="POST"), False, id="post"),
        pytest.param(RequestFacts(path="/app.js"), False, id="asset"),
        pytest.param(RequestFacts(path="/admin/x"), False, id="excluded"),
    ],
)
def test_page_view_candidates(facts: RequestFacts, expected: bool) -> None:
    assert engine(page_view_exclude=("/admin/",)).page_view_candidate(facts) is expected


def test_page_view_needs_html_a_document_and_a_person() -> None:
    capture = engine()
    html = [("Content-Type", "text/html")]
    person = RequestFacts(user_agent="Mozilla/5.0 Firefox/130.0")
    assert capture.is_page_view(person, "200 OK", html)
    assert not capture.is_page_view(person, "200 OK", [("Content-Type", "application/json")])
    assert not capture.is_page_view(RequestFacts(user_agent="Googlebot/2.1"), "200 OK", html)
    assert not capture.is_page_view(RequestFacts(user_agent="Mozilla/5.0", sec_fetch_dest="image"), "200 OK", html)


def test_get_click_finds_a_decision_in_an_asgi_scope_state() -> None:
    from msclkid_middleware.middleware import STATE_KEY, get_click, get_consent

    decision = engine().decide(RequestFacts(query=f"msclkid={HEX}"))
    scope = {"type": "http", "state": {STATE_KEY: decision}}
    click = get_click(scope)
    assert click is not None
    assert click.msclkid == HEX
    assert get_consent(scope) == Consent("granted", "default")
    assert get_click({"type": "http"}) is None


# Moved from tests/test_review_regressions.py (issue 17): the click's lifetime rule lives in the decision.
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


# -- issue 19 item 10: every duplicate of our cookie counts, within the cookie header cap -----------------------


def test_the_newest_click_wins_among_many_tossed_duplicates() -> None:
    capture = engine()
    name = capture.cookie.name
    junk = [f"{name}=junk{n}" for n in range(40)]  # a sibling subdomain tossed forty fakes in first
    old = f"{name}={capture.cookie.encode(HEX2, T0 - 3600)}"
    new = f"{name}={capture.cookie.encode(HEX, T0 - 60)}"
    decision = capture.decide(RequestFacts(cookie_header="; ".join([*junk, old, *junk, new])))
    click = decision.click(NOBODY)
    assert click is not None
    assert (click.msclkid, click.source) == (HEX, "cookie")


def test_values_past_the_cookie_header_cap_are_not_verified() -> None:
    capture = engine()
    name = capture.cookie.name
    token = capture.cookie.encode(HEX, T0 - 60)
    filler = "; ".join(f"pad{n}={'x' * 100}" for n in range(MAX_COOKIE_HEADER // 100))
    assert capture.decide(RequestFacts(cookie_header=f"{filler}; {name}={token}")).click(NOBODY) is None
    assert capture.decide(RequestFacts(cookie_header=f"{name}={token}; {filler}")).click(NOBODY) is not None


def test_a_header_full_of_forged_values_costs_a_bounded_number_of_checks() -> None:
    capture = engine()
    name = capture.cookie.name
    forged = capture.cookie.encode(HEX, T0)[:-4] + "AAAA"  # well-formed, wrong signature: a full HMAC each
    header = "; ".join([f"{name}={forged}"] * 5000)  # far past the cap
    _, ours = parse_cookies(header, name)  # what decode_newest is handed: every value it will verify
    assert len(ours) <= MAX_COOKIE_HEADER // len(f"{name}={forged}; ") + 1
    assert capture.decide(RequestFacts(cookie_header=header)).click(NOBODY) is None


@settings(max_examples=150, deadline=None)
@given(
    ages=st.lists(st.integers(min_value=1, max_value=80 * 24 * 3600), min_size=1, max_size=30),
    junk=st.lists(st.text(alphabet="abcXYZ019._-=", max_size=90), max_size=30),
    seed=st.randoms(use_true_random=False),
)
def test_property_the_newest_valid_value_wins(ages: list[int], junk: list[str], seed: Any) -> None:
    capture = engine()
    name = capture.cookie.name
    ids = [f"{n:032x}" for n in range(len(ages))]
    values = [capture.cookie.encode(i, T0 - age) for i, age in zip(ids, ages, strict=True)] + junk
    seed.shuffle(values)
    decision = capture.decide(RequestFacts(cookie_header="; ".join(f"{name}={v}" for v in values)))
    click = decision.click(NOBODY)
    assert click is not None
    assert int(click.captured_at.timestamp()) == T0 - min(ages)


class _LazyPolicy(ConsentPolicy):
    """The same policy, but not exactly a ConsentPolicy: a decision asks it lazily (click(), response_headers())."""

    __slots__ = ()


_COOKIE_STATES = st.sampled_from(["absent", "same", "other", "stale", "stale-same", "tampered", "expired"])


@settings(max_examples=300)
@given(
    url=st.sampled_from([None, HEX, "bad!id", HEX2]),
    cookie=_COOKIE_STATES,
    extra=st.sampled_from(["", "a=b", "consent=denied", "consent=granted", f"_uetmsclkid=_uet{HEX2}"]),
    gpc=st.sampled_from([None, "1"]),
    default=st.sampled_from(["granted", "denied"]),
    profiles=st.booleans(),
)
def test_the_answers_made_with_the_request_are_the_lazy_answers(
    url: str | None, cookie: str, extra: str, gpc: str | None, default: str, profiles: bool
) -> None:
    # decide_request answers a plain landing and a plain cookie request up front (Set-Cookie, click); a policy it
    # must ask lazily gets every answer from click() and response_headers(): both must agree, whatever the request.
    clock = Clock()
    old = engine(clock).cookie
    new = Capture(secret_keys=KEYS[1:], clock=clock).cookie  # signs with the newest key only: a fresh-key cookie
    values = {
        "absent": None,
        "same": new.encode(HEX, T0 - 60),
        "other": new.encode(HEX2, T0 - 60),
        "stale": Capture(secret_keys=KEYS[:1], clock=clock).cookie.encode(HEX2, T0 - 60),
        "stale-same": Capture(secret_keys=KEYS[:1], clock=clock).cookie.encode(HEX, T0 - 60),
        "tampered": new.encode(HEX, T0 - 60)[:-2] + "xx",
        "expired": new.encode(HEX, T0 - NINETY_DAYS - 1),
    }
    value = values[cookie]
    header = "; ".join(part for part in (extra, f"{old.name}={value}" if value else "") if part)
    facts = RequestFacts(query=f"utm=x&msclkid={url}" if url else "page=2", cookie_header=header, sec_gpc=gpc)
    answers = []
    for policy_class in (ConsentPolicy, _LazyPolicy):
        store = MemoryProfileStore() if profiles else None
        options: dict[str, Any] = {"consent": policy_class(default=default, cookie_name="consent")}  # type: ignore[arg-type]
        if store is not None:
            options.update(visitor_id=lambda request: "v1", profile_store=store)
        decision = engine(clock, **options).decide(facts)
        answers.append(
            (
                decision.consent(NOBODY),
                decision.click(NOBODY),
                decision.response_headers(NOBODY),
                decision.profile_write,
            )
        )
    assert answers[0] == answers[1]
