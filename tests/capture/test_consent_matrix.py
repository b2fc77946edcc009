"""The consent precedence of issue 19, exhaustively: resolver x GPC x site cookie x TCF variants x snippet report x
default.

Order: the app's resolver, then any explicit refusal the server can see (``Sec-GPC``, the site's consent cookie, a
TCF string from the cookie or the snippet), then the snippet's report, then the server-side grants, then the
default.  The snippet may narrow, never widen.  :func:`expected` states the rule independently of the
implementation; every combination is decided by :class:`ConsentPolicy` directly and (with a click reported) through
the capture endpoint, where a grant sets our cookie and anything else does not.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from msclkid_middleware import MsclkidMiddleware
from msclkid_middleware.capture.consent import Consent, ConsentPolicy
from msclkid_middleware.capture.request import RequestFacts
from tests.tcf_encoder import TCSpec
from tests.wsgi_helpers import HEX, call, make_environ

NOW = datetime.now(UTC)

# name -> resolver answer (None: no resolver at all, "none": a resolver without an opinion)
RESOLVERS: dict[str, Any] = {"absent": None, "no-opinion": "none", "granted": True, "denied": False}
GPC = {"absent": None, "1": "1"}
SITE_COOKIE = {"absent": None, "granted": "yes", "denied": "no", "unknown": "perhaps"}
# name -> (TC string, does it let vendor 1126 store?)
TCF: dict[str, tuple[str | None, bool]] = {
    "absent": (None, False),
    "allows": (TCSpec(created=NOW - timedelta(days=3), last_updated=NOW - timedelta(days=3)).encode(), True),
    "no-vendor": (TCSpec(vendor_consents=(32,)).encode(), False),
    "truncated": (TCSpec().encode()[:20], False),
    "global-scope": (TCSpec(is_service_specific=False).encode(), False),
    "future": (TCSpec(created=NOW + timedelta(days=30), last_updated=NOW + timedelta(days=30)).encode(), False),
    "policy-2": (TCSpec(policy_version=2).encode(), False),
}
# Where the TC string travels: the CMP's cookie, or the snippet's report.
TCF_SOURCES = ("cookie", "reported")
# None: decide() (a page request, no report); the rest: decide_reported(state=...)
REPORTS: tuple[str | None, ...] = (None, "granted", "denied", "pending", "bogus")
DEFAULTS = ("granted", "denied")


def expected(resolver: str, gpc: str, site: str, tcf: str, report: str | None, default: str) -> tuple[str, str]:
    """``(state, basis)`` by the rule of issue 19, written from the issue, not from the code."""
    if resolver in ("granted", "denied"):
        return resolver, "resolver"
    # Explicit refusals the server can see.
    if gpc == "1":
        return "denied", "gpc"
    if site == "denied":
        return "denied", "cookie"
    tcf_string, tcf_allows = TCF[tcf]
    if tcf_string is not None and not tcf_allows:
        return "denied", "tcf"
    # The snippet's report narrows (anything but granted or pending refuses) ...
    if report is not None and report != "pending":
        if report != "granted":
            return "denied", "snippet"
        if site == "granted":
            return "granted", "cookie"
        return "granted", "tcf" if tcf_string is not None else "snippet"
    # ... and without it the server-side grants, then the default.
    if site == "granted":
        return "granted", "cookie"
    if tcf_string is not None:
        return "granted", "tcf"
    return default, "default"


def policy(resolver: str, default: str) -> ConsentPolicy:
    answer = RESOLVERS[resolver]
    if answer is None:
        resolve = None
    else:

        def resolve(environ: object) -> bool | None:
            return None if answer == "none" else bool(answer)

    return ConsentPolicy(default=default, resolver=resolve, cookie_name="site_consent")  # type: ignore[arg-type]


def cookie_header(site: str, tcf: str, source: str) -> str:
    parts = []
    if SITE_COOKIE[site] is not None:
        parts.append(f"site_consent={SITE_COOKIE[site]}")
    if TCF[tcf][0] is not None and source == "cookie":
        parts.append(f"euconsent-v2={TCF[tcf][0]}")
    return "; ".join(parts)


def combinations() -> Iterable[tuple[str, str, str, str, str, str | None, str]]:
    return itertools.product(RESOLVERS, GPC, SITE_COOKIE, TCF, TCF_SOURCES, REPORTS, DEFAULTS)


def test_every_combination_follows_the_precedence() -> None:
    policies = {(r, d): policy(r, d) for r in RESOLVERS for d in DEFAULTS}
    checked = 0
    for resolver, gpc, site, tcf, source, report, default in combinations():
        if report is None and source == "reported":
            continue  # a page request carries no report
        facts = RequestFacts(cookie_header=cookie_header(site, tcf, source), sec_gpc=GPC[gpc])
        reported_tc = TCF[tcf][0] if source == "reported" else None
        chosen = policies[(resolver, default)]
        if report is None:
            decision = chosen.decide(facts, app_request={})
        else:
            decision = chosen.decide_reported(facts, state=report, tc_string=reported_tc, app_request={})
        want = expected(resolver, gpc, site, tcf, report, default)
        assert (decision.state, decision.basis) == want, (resolver, gpc, site, tcf, source, report, default)
        checked += 1
    assert checked == 4 * 2 * 4 * 7 * (2 * 4 + 1) * 2


def test_the_snippet_never_widens() -> None:
    """Whatever else holds: a report of granted is never granted where the server saw a refusal, and a report of
    denied is denied unless the app's resolver decided."""
    for resolver, gpc, site, tcf, source, report, default in combinations():
        if report is None:
            continue
        facts = RequestFacts(cookie_header=cookie_header(site, tcf, source), sec_gpc=GPC[gpc])
        tc = TCF[tcf][0] if source == "reported" else None
        decision = policy(resolver, default).decide_reported(facts, state=report, tc_string=tc, app_request={})
        refusal_seen = gpc == "1" or site == "denied" or (TCF[tcf][0] is not None and not TCF[tcf][1])
        if resolver not in ("granted", "denied") and refusal_seen:
            assert not decision.granted
        if report in ("denied", "bogus") and resolver != "granted":
            assert not decision.granted


def endpoint(resolver: str, default: str) -> MsclkidMiddleware:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:  # pragma: no cover - never reached
        raise AssertionError("the capture endpoint answers itself")

    return MsclkidMiddleware(app, secret_keys=["k"], consent=policy(resolver, default), capture_rate=None)


@pytest.mark.parametrize("default", DEFAULTS)
@pytest.mark.parametrize("resolver", list(RESOLVERS))
def test_the_capture_endpoint_keeps_a_click_only_when_granted(resolver: str, default: str) -> None:
    mw = endpoint(resolver, default)
    for gpc, site, tcf, source in itertools.product(GPC, SITE_COOKIE, TCF, TCF_SOURCES):
        for report in ("granted", "denied", None):
            body: dict[str, Any] = {"msclkid": HEX}
            if report is not None:
                body["consent"] = report
            if source == "reported" and TCF[tcf][0] is not None:
                body["tcf"] = TCF[tcf][0]
            headers = {"Sec-Fetch-Site": "same-origin", **({"Sec-GPC": "1"} if GPC[gpc] else {})}
            environ = make_environ(
                "/_msclkid",
                method="POST",
                body=json.dumps(body).encode(),
                content_type="application/json",
                headers=headers,
                cookie=cookie_header(site, tcf, source) or None,
            )
            result = call(mw, environ)
            assert result.code == 204
            # The endpoint treats an absent report as the page having no opinion (decide_reported(state=None)).
            state, _ = expected(resolver, gpc, site, tcf, report or "pending", default)
            if report == "denied":
                state = "denied"  # the endpoint honours a reported refusal before asking the policy
            kept = [c for c in result.set_cookies if c.startswith("__Host-msclkid=1.")]
            assert bool(kept) == (state == "granted"), (resolver, gpc, site, tcf, source, report, default)


def test_a_consent_basis_is_one_of_the_documented_ones() -> None:
    bases = {expected(*combo[:4], combo[5], combo[6])[1] for combo in combinations()}
    assert bases <= {"resolver", "gpc", "cookie", "tcf", "snippet", "default"}
    assert Consent.denied_by("tcf").ad_storage == "D"
