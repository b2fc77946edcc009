"""ConsentPolicy: the S5 decision table (each signal alone and their precedence), resolvers, settings, hostile input."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, get_args

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from werkzeug.http import parse_cookie

import msclkid_middleware
from msclkid_middleware.capture.consent import (
    DEFAULT_DENIED_VALUES,
    DEFAULT_GRANTED_VALUES,
    Consent,
    ConsentBasis,
    ConsentPolicy,
)
from msclkid_middleware.capture.request import RequestFacts
from msclkid_middleware.config import Settings
from msclkid_middleware.errors import ConfigError
from tests.tcf_encoder import Restriction, TCSpec

TC_ALLOWED = TCSpec().encode()
TC_POLICY_2 = TCSpec(policy_version=2).encode()
TC_POLICY_3 = TCSpec(policy_version=3).encode()
TC_NO_VENDOR = TCSpec(vendor_consents=(32, 755)).encode()
TC_NO_P1 = TCSpec(purposes_consent=(2, 3, 4)).encode()
TC_RESTRICTED = TCSpec(restrictions=(Restriction(1, 0, (1126,)),)).encode()
TC_RANGE = TCSpec(vendor_consent_encoding="range").encode()
TC_TRUNCATED = TC_ALLOWED[:20]

G = Consent.granted_by
D = Consent.denied_by


def environ(*, gpc: str | None = None, cookie: str | None = None, **extra: Any) -> dict[str, Any]:
    env: dict[str, Any] = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "wsgi.url_scheme": "https"}
    if gpc is not None:
        env["HTTP_SEC_GPC"] = gpc
    if cookie is not None:
        env["HTTP_COOKIE"] = cookie
    env.update(extra)
    return env


def tcf(value: str) -> str:
    return f"euconsent-v2={value}"


# (policy kwargs, Sec-GPC, Cookie header, expected decision)
DECIDE = [
    # -- the default alone
    pytest.param({}, None, None, G("default"), id="nothing-default-granted"),
    pytest.param({"default": "denied"}, None, None, D("default"), id="nothing-default-denied"),
    pytest.param({"default": "denied"}, None, "session=abc; theme=dark", D("default"), id="unrelated-cookies"),
    # -- Global Privacy Control alone
    pytest.param({}, "1", None, D("gpc"), id="gpc-1"),
    pytest.param({}, " 1 ", None, D("gpc"), id="gpc-1-with-whitespace"),
    pytest.param({}, "0", None, G("default"), id="gpc-0"),
    pytest.param({}, "true", None, G("default"), id="gpc-not-1"),
    pytest.param({}, "", None, G("default"), id="gpc-empty"),
    pytest.param({"honor_gpc": False}, "1", None, G("default"), id="gpc-not-honoured"),
    pytest.param({"honor_gpc": False, "default": "denied"}, "1", None, D("default"), id="gpc-not-honoured-denied"),
    # -- the site's consent cookie alone
    pytest.param({"cookie_name": "cc"}, None, "cc=granted", G("cookie"), id="cookie-granted"),
    pytest.param({"cookie_name": "cc"}, None, "cc=GRANTED", G("cookie"), id="cookie-case-insensitive"),
    pytest.param({"cookie_name": "cc"}, None, 'cc="Yes"', G("cookie"), id="cookie-quoted-yes"),
    pytest.param({"cookie_name": "cc"}, None, "cc=accepted", G("cookie"), id="cookie-accepted"),
    pytest.param({"cookie_name": "cc"}, None, "cc=denied", D("cookie"), id="cookie-denied"),
    pytest.param({"cookie_name": "cc"}, None, "cc=Rejected", D("cookie"), id="cookie-rejected"),
    pytest.param({"cookie_name": "cc"}, None, "cc=0", D("cookie"), id="cookie-0"),
    pytest.param({"cookie_name": "cc", "default": "denied"}, None, "cc=1", G("cookie"), id="cookie-grants-opt-in"),
    pytest.param({"cookie_name": "cc"}, None, "cc=maybe", G("default"), id="cookie-unknown-value"),
    pytest.param(
        {"cookie_name": "cc", "default": "denied"}, None, "cc=maybe", D("default"), id="cookie-unknown-opt-in"
    ),
    pytest.param({"cookie_name": "cc"}, None, "cc=", G("default"), id="cookie-empty-value"),
    pytest.param({"cookie_name": "cc"}, None, "cc=denied; cc=granted", D("cookie"), id="cookie-duplicate-first-wins"),
    pytest.param({"cookie_name": "cc"}, None, "xcc=granted", G("default"), id="cookie-name-is-exact"),
    pytest.param({"cookie_name": "cc", "default": "denied"}, None, "CC=granted", D("default"), id="cookie-name-case"),
    pytest.param({}, None, "cc=denied", G("default"), id="cookie-not-configured"),
    pytest.param(
        {"cookie_name": "consent", "granted_values": ["opt-in"], "denied_values": ["opt-out"]},
        None,
        "consent=OPT-IN",
        G("cookie"),
        id="cookie-custom-granted",
    ),
    pytest.param(
        {"cookie_name": "consent", "granted_values": ["opt-in"], "denied_values": ["opt-out"]},
        None,
        "consent=yes",
        G("default"),
        id="cookie-custom-values-replace-defaults",
    ),
    pytest.param(
        {"cookie_name": "consent", "granted_values": "opt-in, ok", "denied_values": "opt-out"},
        None,
        "consent=ok",
        G("cookie"),
        id="cookie-values-as-comma-string",
    ),
    # -- a TCF string alone (the euconsent-v2 cookie)
    pytest.param({"default": "denied"}, None, tcf(TC_ALLOWED), G("tcf"), id="tcf-allows"),
    pytest.param({"default": "denied"}, None, tcf(TC_RANGE), G("tcf"), id="tcf-allows-range-encoded"),
    pytest.param({}, None, tcf(TC_POLICY_2), D("tcf"), id="tcf-policy-2"),
    pytest.param({}, None, tcf(TC_POLICY_3), D("tcf"), id="tcf-policy-3"),
    pytest.param({}, None, tcf(TC_NO_VENDOR), D("tcf"), id="tcf-p1-without-vendor-1126"),
    pytest.param({}, None, tcf(TC_NO_P1), D("tcf"), id="tcf-vendor-without-p1"),
    pytest.param({}, None, tcf(TC_RESTRICTED), D("tcf"), id="tcf-restriction-type-0"),
    pytest.param({}, None, tcf(TC_TRUNCATED), D("tcf"), id="tcf-truncated"),
    pytest.param({}, None, tcf("CO5V"), D("tcf"), id="tcf-CO5V"),
    pytest.param({}, None, tcf("CAAAAAAAAAAAAAAA"), D("tcf"), id="tcf-CAAAAAAAAAAAAAAA"),
    pytest.param({}, None, tcf("C"), D("tcf"), id="tcf-C"),
    pytest.param({}, None, tcf("!!!!"), D("tcf"), id="tcf-bangs"),
    pytest.param({}, None, tcf("A" * 5000), D("tcf"), id="tcf-over-long"),
    pytest.param({}, None, tcf("%FF%FE"), D("tcf"), id="tcf-percent-garbage"),
    pytest.param({}, None, tcf(""), G("default"), id="tcf-empty-value-is-absent"),
    pytest.param({}, None, tcf(TC_ALLOWED + "; euconsent-v2=CO5V"), G("tcf"), id="tcf-duplicate-first-wins"),
    pytest.param({"tcf_cookie_name": None}, None, tcf("CO5V"), G("default"), id="tcf-cookie-disabled"),
    pytest.param(
        {"tcf_cookie_name": "tcstring", "default": "denied"}, None, f"tcstring={TC_ALLOWED}", G("tcf"), id="tcf-renamed"
    ),
    pytest.param({"vendor_id": 32}, None, tcf(TC_RESTRICTED), G("tcf"), id="tcf-other-vendor-id"),
    # -- precedence
    pytest.param({"cookie_name": "cc"}, "1", "cc=granted", D("gpc"), id="gpc-beats-consent-cookie"),
    pytest.param({}, "1", tcf(TC_ALLOWED), D("gpc"), id="gpc-beats-tcf"),
    pytest.param({"cookie_name": "cc"}, None, f"cc=denied; {tcf(TC_ALLOWED)}", D("cookie"), id="cookie-beats-tcf"),
    # A refusal never loses (issue 19): a TC string that refuses (or is broken) beats the cookie's grant.
    pytest.param({"cookie_name": "cc"}, None, f"cc=granted; {tcf('CO5V')}", D("tcf"), id="bad-tcf-beats-cookie-grant"),
    pytest.param(
        {"cookie_name": "cc"}, None, f"cc=granted; {tcf(TC_NO_VENDOR)}", D("tcf"), id="tcf-refusal-beats-cookie-grant"
    ),
    pytest.param({"cookie_name": "cc"}, None, f"cc=granted; {tcf(TC_ALLOWED)}", G("cookie"), id="both-grant"),
    pytest.param(
        {"cookie_name": "cc", "default": "denied"},
        None,
        f"cc=whatever; {tcf(TC_ALLOWED)}",
        G("tcf"),
        id="unknown-cookie-falls-to-tcf",
    ),
    pytest.param({"default": "granted"}, None, tcf(TC_NO_VENDOR), D("tcf"), id="tcf-beats-default-granted"),
    pytest.param({"default": "denied"}, None, tcf(TC_ALLOWED), G("tcf"), id="tcf-beats-default-denied"),
]


@pytest.mark.parametrize("via", ["header", "mapping"])
@pytest.mark.parametrize(("kwargs", "gpc", "cookie", "expected"), DECIDE)
def test_decide(kwargs: dict[str, Any], gpc: str | None, cookie: str | None, expected: Consent, via: str) -> None:
    policy = ConsentPolicy(**kwargs)
    env = environ(gpc=gpc, cookie=cookie)
    if via == "header":
        assert policy.decide(env) == expected
    else:
        # The middleware parses cookies once and hands them over; the header must not matter then.
        cookies = parse_cookie(cookie) if cookie is not None else {}
        env["HTTP_COOKIE"] = "cc=denied; euconsent-v2=CO5V"
        assert policy.decide(env, cookies) == expected


# -- resolvers --------------------------------------------------------------------------------------


class Boom(RuntimeError):
    pass


def _raise(env: Mapping[str, Any]) -> Any:
    raise Boom("resolver failed")


RESOLVERS = [
    pytest.param(lambda env: Consent("granted", "explicit"), {}, G("explicit"), id="consent-kept-as-is"),
    pytest.param(lambda env: Consent("denied", "resolver"), {}, D("resolver"), id="consent-denied"),
    pytest.param(lambda env: True, {"default": "denied"}, G("resolver"), id="true"),
    pytest.param(lambda env: False, {}, D("resolver"), id="false"),
    pytest.param(lambda env: "granted", {"default": "denied"}, G("resolver"), id="str-granted"),
    pytest.param(lambda env: "denied", {}, D("resolver"), id="str-denied"),
    pytest.param(lambda env: " Denied ", {}, D("resolver"), id="str-denied-loose"),
    pytest.param(lambda env: None, {}, G("default"), id="none-falls-through"),
    pytest.param(lambda env: None, {"default": "denied"}, D("default"), id="none-falls-through-denied"),
    pytest.param(lambda env: "pending", {}, D("resolver"), id="str-other-fails-closed"),
    pytest.param(lambda env: 1, {}, D("resolver"), id="int-fails-closed"),
    pytest.param(lambda env: {"state": "granted"}, {}, D("resolver"), id="dict-fails-closed"),
    pytest.param(_raise, {}, D("resolver"), id="raises-fails-closed"),
    pytest.param(
        lambda env: env.get("HTTP_X_REGION") == "US" or None, {"default": "denied"}, G("resolver"), id="reads-environ"
    ),
]


@pytest.mark.parametrize(("resolver", "kwargs", "expected"), RESOLVERS)
def test_resolver_answers(resolver: Any, kwargs: dict[str, Any], expected: Consent) -> None:
    policy = ConsentPolicy(resolver=resolver, **kwargs)
    assert policy.decide(environ(HTTP_X_REGION="US")) == expected


@pytest.mark.parametrize(
    ("answer", "gpc", "cookie", "expected"),
    [
        pytest.param(True, "1", None, G("resolver"), id="resolver-beats-gpc"),
        pytest.param(False, None, "cc=granted", D("resolver"), id="resolver-beats-cookie"),
        pytest.param(False, None, tcf(TC_ALLOWED), D("resolver"), id="resolver-beats-tcf"),
        pytest.param(True, None, tcf("CO5V"), G("resolver"), id="resolver-beats-bad-tcf"),
        pytest.param(None, "1", None, D("gpc"), id="no-opinion-then-gpc"),
        pytest.param(None, None, "cc=granted", G("cookie"), id="no-opinion-then-cookie"),
        pytest.param(None, None, tcf(TC_NO_P1), D("tcf"), id="no-opinion-then-tcf"),
    ],
)
def test_resolver_precedence(answer: bool | None, gpc: str | None, cookie: str | None, expected: Consent) -> None:
    policy = ConsentPolicy(resolver=lambda env: answer, cookie_name="cc", default="denied")
    assert policy.decide(environ(gpc=gpc, cookie=cookie)) == expected


def test_raising_resolver_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    policy = ConsentPolicy(resolver=_raise, default="granted")
    with caplog.at_level(logging.DEBUG, logger="msclkid_middleware.capture.consent"):
        assert policy.decide(environ()) == D("resolver")
    records = [r for r in caplog.records if r.name == "msclkid_middleware.capture.consent"]
    assert len(records) == 1
    assert records[0].levelno == logging.ERROR
    assert records[0].exc_info is not None
    assert records[0].exc_info[0] is Boom


def test_resolver_wrong_type_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    def resolver(env: Mapping[str, Any]) -> Any:
        return 42

    policy = ConsentPolicy(resolver=resolver)
    with caplog.at_level(logging.ERROR, logger="msclkid_middleware.capture.consent"):
        assert policy.decide(environ()) == D("resolver")
    assert "returned int" in caplog.text


def test_resolver_base_exceptions_are_not_swallowed() -> None:
    def interrupted(env: Mapping[str, Any]) -> bool:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ConsentPolicy(resolver=interrupted).decide(environ())


def test_resolver_sees_the_environ() -> None:
    seen: list[Mapping[str, Any]] = []
    env = environ(HTTP_X_USER="42")

    def resolver(e: Mapping[str, Any]) -> None:
        seen.append(e)

    ConsentPolicy(resolver=resolver).decide(env)
    assert seen == [env]
    assert seen[0] is env


# -- decide_reported (the snippet's capture endpoint) ----------------------------------------------

REPORTED = [
    pytest.param({}, None, None, "granted", None, G("snippet"), id="state-granted"),
    pytest.param({}, None, None, "denied", None, D("snippet"), id="state-denied"),
    pytest.param({"default": "denied"}, None, None, " Granted ", None, G("snippet"), id="state-loose-case"),
    pytest.param({}, None, None, "pending", None, G("default"), id="state-pending-no-opinion"),
    pytest.param({"default": "denied"}, None, None, "pending", None, D("default"), id="state-pending-opt-in"),
    pytest.param({}, None, None, None, None, G("default"), id="state-none"),
    pytest.param({}, None, None, "yes please", None, D("snippet"), id="state-unknown-fails-closed"),
    pytest.param({}, None, None, "", None, D("snippet"), id="state-empty-fails-closed"),
    pytest.param({}, "1", None, "granted", None, D("gpc"), id="gpc-beats-state"),
    # The snippet narrows, never widens (issue 19): a refusal the server sees beats a reported grant.
    pytest.param(
        {"cookie_name": "cc"}, None, "cc=denied", "granted", None, D("cookie"), id="cookie-refusal-beats-state"
    ),
    pytest.param({"cookie_name": "cc"}, None, "cc=granted", "denied", None, D("snippet"), id="state-narrows-cookie"),
    pytest.param({}, None, tcf(TC_NO_VENDOR), "granted", None, D("tcf"), id="tcf-refusal-beats-state"),
    pytest.param({}, None, None, "granted", TC_NO_VENDOR, D("tcf"), id="reported-tcf-refusal-beats-state"),
    pytest.param({}, None, tcf(TC_ALLOWED), "denied", None, D("snippet"), id="state-beats-tcf-cookie"),
    pytest.param({}, None, None, "denied", TC_ALLOWED, D("snippet"), id="state-beats-reported-tcf"),
    pytest.param({"cookie_name": "cc"}, None, "cc=granted", "pending", None, G("cookie"), id="pending-then-cookie"),
    pytest.param({"default": "denied"}, None, None, None, TC_ALLOWED, G("tcf"), id="reported-tcf-allows"),
    pytest.param({"default": "denied"}, None, None, "pending", TC_ALLOWED, G("tcf"), id="pending-with-tcf"),
    pytest.param({}, None, None, None, TC_NO_VENDOR, D("tcf"), id="reported-tcf-without-vendor"),
    pytest.param({}, None, None, None, "CO5V", D("tcf"), id="reported-tcf-truncated"),
    pytest.param({}, None, tcf(TC_ALLOWED), None, "CO5V", D("tcf"), id="reported-tcf-beats-cookie-tcf"),
    pytest.param({}, None, tcf("CO5V"), None, TC_ALLOWED, D("tcf"), id="bad-cookie-tcf-is-not-widened"),
    pytest.param({}, None, tcf(TC_NO_P1), None, "", D("tcf"), id="empty-reported-tcf-uses-cookie"),
    pytest.param({"tcf_cookie_name": None}, None, None, None, "CO5V", D("tcf"), id="reported-tcf-without-cookie-name"),
    pytest.param({"cookie_name": "cc"}, None, "cc=granted", None, "CO5V", D("tcf"), id="reported-tcf-refusal-wins"),
    pytest.param({}, "1", None, None, TC_ALLOWED, D("gpc"), id="gpc-beats-reported-tcf"),
]


@pytest.mark.parametrize(("kwargs", "gpc", "cookie", "state", "tc_string", "expected"), REPORTED)
def test_decide_reported(
    kwargs: dict[str, Any],
    gpc: str | None,
    cookie: str | None,
    state: str | None,
    tc_string: str | None,
    expected: Consent,
) -> None:
    policy = ConsentPolicy(**kwargs)
    assert policy.decide_reported(environ(gpc=gpc, cookie=cookie), state=state, tc_string=tc_string) == expected


def test_resolver_beats_reported_state() -> None:
    policy = ConsentPolicy(resolver=lambda env: False)
    assert policy.decide_reported(environ(), state="granted", tc_string=TC_ALLOWED) == D("resolver")


def test_decide_ignores_what_only_the_snippet_reports() -> None:
    # decide() has no reported state: a page cannot grant consent through a query or header.
    policy = ConsentPolicy(default="denied")
    assert policy.decide(environ(QUERY_STRING="consent=granted", HTTP_X_CONSENT="granted")) == D("default")


# -- odd input never raises, fails closed -----------------------------------------------------------


class ExplodingCookies(Mapping[str, str]):
    def __getitem__(self, key: str) -> str:
        raise RuntimeError("broken mapping")

    def __iter__(self) -> Iterator[str]:
        return iter(["cc"])

    def __len__(self) -> int:
        return 1


class ExplodingEnviron(dict[str, Any]):
    def get(self, key: str, default: Any = None) -> Any:
        raise RuntimeError("broken environ")


def test_broken_cookie_mapping_denies() -> None:
    policy = ConsentPolicy(cookie_name="cc")
    assert policy.decide(environ(), ExplodingCookies()) == D("cookie")


def test_broken_environ_denies(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="msclkid_middleware.capture.consent"):
        assert ConsentPolicy().decide(ExplodingEnviron()) == D("default")
    assert "consent decision failed" in caplog.text


@pytest.mark.parametrize(
    "cookie",
    [pytest.param(b"euconsent-v2=CO5V", id="bytes"), pytest.param(["euconsent-v2=x"], id="list")],
)
def test_non_string_cookie_header_denies(cookie: Any) -> None:
    assert ConsentPolicy().decide(environ(HTTP_COOKIE=cookie)) == D("cookie")


def test_non_string_values_in_cookie_mapping_are_absent() -> None:
    policy = ConsentPolicy(cookie_name="cc", default="denied")
    assert policy.decide(environ(), {"cc": 1, "euconsent-v2": None}) == D("default")  # type: ignore[dict-item]


def test_tc_string_value_is_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    secretish = "CPxSECRETVALUE" + "A" * 40
    with caplog.at_level(logging.DEBUG, logger="msclkid_middleware.capture.consent"):
        ConsentPolicy().decide(environ(cookie=tcf(secretish)))
        ConsentPolicy().decide_reported(environ(), tc_string=secretish)
    assert caplog.records, "a rejected TC string is logged (at DEBUG), without its value"
    assert "SECRETVALUE" not in caplog.text


headers = st.one_of(st.none(), st.text(max_size=200), st.sampled_from(["1", " 1", "0"]))
cookie_headers = st.one_of(
    st.none(),
    st.text(max_size=300),
    st.builds(
        lambda name, value: f"{name}={value}",
        st.sampled_from(["cc", "euconsent-v2", "x"]),
        st.one_of(st.text(max_size=120), st.sampled_from([TC_ALLOWED, TC_NO_P1, "granted", "denied", "CO5V"])),
    ),
)


@settings(max_examples=500, deadline=None)
@given(
    gpc=headers,
    cookie=cookie_headers,
    state=st.one_of(st.none(), st.text(max_size=20), st.sampled_from(["granted", "denied", "pending"])),
    tc_string=st.one_of(st.none(), st.text(max_size=200), st.just(TC_ALLOWED)),
    default=st.sampled_from(["granted", "denied"]),
    honor_gpc=st.booleans(),
)
def test_property_never_raises_and_always_decides(
    gpc: str | None, cookie: str | None, state: str | None, tc_string: str | None, default: Any, honor_gpc: bool
) -> None:
    policy = ConsentPolicy(default=default, honor_gpc=honor_gpc, cookie_name="cc")
    env = environ(gpc=gpc, cookie=cookie)
    for decision in (policy.decide(env), policy.decide_reported(env, state=state, tc_string=tc_string)):
        assert decision.state in ("granted", "denied")
        assert decision.basis in get_args(ConsentBasis)
        if honor_gpc and gpc is not None and gpc.strip() == "1":
            assert decision == D("gpc")
        if decision.basis == "tcf" and decision.granted:
            # Only a string that really allows Microsoft can grant.
            assert TC_ALLOWED in (cookie or "") or tc_string == TC_ALLOWED


# -- configuration ----------------------------------------------------------------------------------

BAD_CONFIG = [
    pytest.param({"default": "maybe"}, "MSCLKID_CONSENT_DEFAULT", id="default-unknown"),
    pytest.param({"default": "Granted"}, "MSCLKID_CONSENT_DEFAULT", id="default-case"),
    pytest.param({"resolver": "not callable"}, None, id="resolver-not-callable"),
    pytest.param({"cookie_name": ""}, "MSCLKID_CONSENT_COOKIE", id="cookie-name-empty"),
    pytest.param({"cookie_name": " cc"}, "MSCLKID_CONSENT_COOKIE", id="cookie-name-spaces"),
    pytest.param({"tcf_cookie_name": ""}, "MSCLKID_CONSENT_TCF_COOKIE", id="tcf-cookie-name-empty"),
    pytest.param({"granted_values": ["yes"], "denied_values": ["YES"]}, "MSCLKID_CONSENT_GRANTED_VALUES", id="overlap"),
    pytest.param({"granted_values": [1]}, "MSCLKID_CONSENT_GRANTED_VALUES", id="value-not-str"),
    pytest.param({"vendor_id": 0}, None, id="vendor-0"),
    pytest.param({"vendor_id": 65536}, None, id="vendor-too-big"),
    pytest.param({"vendor_id": True}, None, id="vendor-bool"),
]


@pytest.mark.parametrize(("kwargs", "setting"), BAD_CONFIG)
def test_misconfiguration_fails_at_construction(kwargs: dict[str, Any], setting: str | None) -> None:
    with pytest.raises(ConfigError) as info:
        ConsentPolicy(**kwargs)
    assert info.value.setting == setting


def test_defaults_match_settings_defaults() -> None:
    defaults = Settings()
    policy = ConsentPolicy()
    assert policy.default == defaults.consent_default
    assert policy.honor_gpc is defaults.consent_honor_gpc
    assert policy.cookie_name == defaults.consent_cookie_name
    assert policy.tcf_cookie_name == defaults.consent_tcf_cookie_name
    assert policy.granted_values == frozenset(defaults.consent_granted_values) == frozenset(DEFAULT_GRANTED_VALUES)
    assert policy.denied_values == frozenset(defaults.consent_denied_values) == frozenset(DEFAULT_DENIED_VALUES)
    assert policy.vendor_id == 1126
    assert policy.resolver is None


def test_from_settings_uses_every_consent_setting() -> None:
    config = Settings.from_mapping(
        {
            "MSCLKID_CONSENT_DEFAULT": "denied",
            "MSCLKID_CONSENT_COOKIE": "site_consent",
            "MSCLKID_CONSENT_GRANTED_VALUES": "all, marketing",
            "MSCLKID_CONSENT_DENIED_VALUES": "necessary",
            "MSCLKID_CONSENT_HONOR_GPC": "false",
            "MSCLKID_CONSENT_TCF_COOKIE": "tcstring",
        }
    )

    def resolver(env: Mapping[str, Any]) -> bool | None:
        return False if env.get("HTTP_X_BOT") else None

    policy = ConsentPolicy.from_settings(config, resolver=resolver)
    assert policy.default == "denied"
    assert policy.cookie_name == "site_consent"
    assert policy.granted_values == frozenset({"all", "marketing"})
    assert policy.denied_values == frozenset({"necessary"})
    assert policy.honor_gpc is False
    assert policy.tcf_cookie_name == "tcstring"
    assert policy.resolver is resolver
    assert policy.decide(environ(gpc="1", cookie="site_consent=Marketing")) == G("cookie")
    assert policy.decide(environ(cookie="site_consent=necessary")) == D("cookie")
    assert policy.decide(environ(cookie=f"tcstring={TC_ALLOWED}")) == G("tcf")
    assert policy.decide(environ(cookie=f"euconsent-v2={TC_ALLOWED}")) == D("default")
    assert policy.decide(environ(HTTP_X_BOT="1", cookie="site_consent=all")) == D("resolver")


def test_repr_names_the_configuration() -> None:
    text = repr(ConsentPolicy(default="denied", cookie_name="cc"))
    assert text.startswith("ConsentPolicy(default='denied'")
    assert "cookie_name='cc'" in text
    assert "tcf_cookie_name='euconsent-v2'" in text


def test_exported_from_the_package() -> None:
    assert msclkid_middleware.ConsentPolicy is ConsentPolicy
    assert "ConsentPolicy" in msclkid_middleware.__all__


def test_decisions_are_cheap() -> None:
    # The plain request (no consent cookies) must not parse or decode anything.  Generous bound:
    # the point is to catch an accidental per-request regex compile or TC string decode.
    policy = ConsentPolicy(cookie_name="cc")
    env = environ(cookie="session=" + "x" * 200 + "; theme=dark; _ga=GA1.2.3")
    rounds = 5000
    started = time.perf_counter()
    for _ in range(rounds):
        policy.decide(env)
    per_call = (time.perf_counter() - started) / rounds
    assert per_call < 50e-6, f"{per_call * 1e6:.1f} µs per decision"


def test_repeated_tc_strings_keep_their_verdict_per_policy() -> None:
    microsoft = ConsentPolicy()
    xandr = ConsentPolicy(vendor_id=32)
    for _ in range(3):
        for value, expected_microsoft, expected_xandr in (
            (TC_RESTRICTED, D("tcf"), G("tcf")),
            (TC_ALLOWED, G("tcf"), G("tcf")),
            (TC_NO_P1, D("tcf"), D("tcf")),
            ("CO5V", D("tcf"), D("tcf")),
        ):
            assert microsoft.decide(environ(cookie=tcf(value))) == expected_microsoft
            assert xandr.decide(environ(cookie=tcf(value))) == expected_xandr


def _doc_examples() -> list[Any]:
    text = (Path(__file__).resolve().parents[2] / "docs" / "consent.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    # The wiring example needs the middleware (another module) and an app; every other block runs.
    runnable = [b for b in blocks if "MsclkidMiddleware" not in b]
    return [pytest.param(block, id=f"block-{i}") for i, block in enumerate(runnable)]


@pytest.mark.parametrize("block", _doc_examples())
def test_docs_examples_run(block: str) -> None:
    exec(compile(block, "docs/consent.md", "exec"), {})  # noqa: S102 - our own documentation


def test_pure_modules_load_no_framework_even_with_a_policy_built() -> None:
    # Issue 17: capture/ parses the Cookie header itself, so a policy no longer pulls in werkzeug.http.
    root = Path(__file__).resolve().parents[2]
    code = (
        "import sys, msclkid_middleware.capture.consent as c, msclkid_middleware.capture.tcf;"
        "before = sorted(m for m in sys.modules if m.split('.')[0] in ('werkzeug', 'requests', 'flask'));"
        "c.ConsentPolicy();"
        "print(before, 'werkzeug.http' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    assert out.stdout.strip() == "[] False"


_GPC = st.sampled_from([None, "1", " 1 ", "0", ""])
_JARS = st.sampled_from(
    ["", "a=b", "euconsent-v2=", "euconsent-v2=CPxyz", "site_consent=denied", "site_consent=yes; x=y", "x=euconsent-v2"]
)


@settings(max_examples=300)
@given(
    default=st.sampled_from(["granted", "denied"]),
    cookie_name=st.sampled_from([None, "site_consent"]),
    tcf_cookie_name=st.sampled_from([None, "euconsent-v2"]),
    honor_gpc=st.booleans(),
    gpc=_GPC,
    header=_JARS,
    unreadable=st.booleans(),
)
def test_decide_answers_as_the_full_decision_does(
    default: Any,
    cookie_name: str | None,
    tcf_cookie_name: str | None,
    honor_gpc: bool,
    gpc: str | None,
    header: str,
    unreadable: bool,
) -> None:
    # decide() answers requests without a resolver, GPC or a consent cookie before the full decision: the same answer.
    policy = ConsentPolicy(
        default=default, cookie_name=cookie_name, tcf_cookie_name=tcf_cookie_name, honor_gpc=honor_gpc
    )
    facts = RequestFacts(cookie_header=header, sec_gpc=gpc, cookie_unreadable=unreadable)
    assert policy.decide(facts) == policy.decide_reported(facts)
