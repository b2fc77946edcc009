"""S4/S5 for issue 19: hostile requests against the consent promise, at the soak's size (``MSCLKID_SOAK_EXAMPLES``).

Invariants, for any generated request:

- a refusal the server can see (``Sec-GPC: 1``, the site's consent cookie saying no, a TC string that does not
  allow Microsoft, global-scope or future-dated strings included) is never widened by what the snippet reports:
  the capture endpoint sets no click cookie, whatever the body (duplicate keys included: always ``400``);
- ``record_*`` without ``consent=`` inside the request records exactly the request's decision;
- a client hammering the capture endpoint gets at most ``burst + rate x elapsed`` answers that are not ``429``;
- a page view's URL is on a valid host name and its referrer is an ``http``/``https`` URL or nothing.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tcf_encoder import TCSpec
from wsgi_helpers import HEX, Clock, call, make_environ

from msclkid_middleware import ConsentPolicy, MsclkidMiddleware, get_consent
from msclkid_middleware.capture.pageview import PageView
from msclkid_middleware.config import Settings
from msclkid_middleware.dispatch.tracker import ConversionTracker

from .conftest import EXAMPLES

pytestmark = pytest.mark.reliability

PROFILE = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
)
NOW = datetime.now(UTC)
TC = {
    "allows": TCSpec(created=NOW - timedelta(days=2), last_updated=NOW - timedelta(days=2)).encode(),
    "no-vendor": TCSpec(vendor_consents=(32,)).encode(),
    "global": TCSpec(is_service_specific=False).encode(),
    "future": TCSpec(created=NOW + timedelta(days=9), last_updated=NOW + timedelta(days=9)).encode(),
    "truncated": TCSpec().encode()[:25],
}
REFUSING_TC = {"no-vendor", "global", "future", "truncated"}
CONSENT_VALUES = st.sampled_from(["granted", "denied", "pending", "GRANTED", "yes", ""])


def policy() -> ConsentPolicy:
    return ConsentPolicy(default="granted", cookie_name="site_consent")


@st.composite
def capture_requests(draw: st.DrawFn) -> tuple[bytes, str | None, str | None, bool]:
    """A capture body (JSON, keys possibly repeated), a Cookie header, Sec-GPC, and whether the server sees a
    refusal."""
    pairs: list[tuple[str, Any]] = [("msclkid", draw(st.sampled_from([HEX, "Example-123", "bad id", 7])))]
    for _ in range(draw(st.integers(0, 3))):
        key = draw(st.sampled_from(["consent", "tcf", "msclkid", "other"]))
        value = draw(CONSENT_VALUES) if key == "consent" else draw(st.sampled_from([*TC.values(), HEX, None]))
        pairs.append((key, value))
    body = (
        "{" + ", ".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in draw(st.permutations(pairs))) + "}"
    ).encode()
    site = draw(st.sampled_from([None, "granted", "denied", "no", "garbage"]))
    tcf = draw(st.sampled_from([None, *TC]))
    cookie = "; ".join(
        part
        for part in (
            f"site_consent={site}" if site is not None else None,
            f"euconsent-v2={TC[tcf]}" if tcf is not None else None,
            draw(st.sampled_from([None, "x=1", "__Host-msclkid=forged"])),
        )
        if part
    )
    gpc = draw(st.sampled_from([None, "1", "0"]))
    reported_tc = [v for k, v in pairs if k == "tcf"]
    refused = (
        gpc == "1"
        or site in ("denied", "no")
        or tcf in REFUSING_TC
        or any(v is not None and v != TC["allows"] for v in reported_tc)
    )
    return body, cookie or None, gpc, refused


@PROFILE
@given(request=capture_requests())
def test_the_snippet_never_widens_a_refusal_the_server_sees(
    request: tuple[bytes, str | None, str | None, bool],
) -> None:
    body, cookie, gpc, refused = request
    mw = MsclkidMiddleware(lambda e, s: [], secret_keys=["k"], consent=policy(), capture_rate=None, clock=Clock())
    headers = {"Sec-Fetch-Site": "same-origin", **({"Sec-GPC": gpc} if gpc else {})}
    environ = make_environ(
        "/_msclkid", method="POST", body=body, content_type="application/json", headers=headers, cookie=cookie
    )
    result = call(mw, environ)
    keys = [k for k, _ in json.loads(body, object_pairs_hook=lambda p: p)]
    if len(keys) != len(set(keys)):
        assert result.code == 400
        assert result.body == b"duplicate field\n"
    set_click = [c for c in result.set_cookies if c.startswith("__Host-msclkid=1.")]
    if refused:
        assert set_click == [], (body, cookie, gpc)


@pytest.fixture
def tracker(tmp_path: Path) -> Any:
    t = ConversionTracker(
        settings=Settings(consent_default="granted"),
        store_url=f"sqlite:///{tmp_path / 'outbox.db'}",
        microsoft=False,
        uet=False,
    )
    yield t
    t.close()


@PROFILE
@given(
    gpc=st.sampled_from([None, "1", "0", "1\r\n"]),
    cookie=st.one_of(
        st.none(), st.text(max_size=60), st.sampled_from(["site_consent=no", f"euconsent-v2={TC['global']}"])
    ),
    query=st.sampled_from(["", f"msclkid={HEX}", "msclkid=%ff"]),
)
def test_record_without_consent_follows_the_request(
    tracker: ConversionTracker, gpc: str | None, cookie: str | None, query: str
) -> None:
    seen: list[tuple[Any, str]] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        status = tracker.record_offline(
            f"r-{uuid.uuid4()}", "Purchase", datetime.now(UTC) - timedelta(minutes=1), click=uuid.uuid4().hex
        )
        seen.append((get_consent(environ), status.event_id))
        start_response("200 OK", [])
        return [b""]

    environ = make_environ("/", cookie=cookie, query=query)
    if gpc is not None:
        environ["HTTP_SEC_GPC"] = gpc
    call(MsclkidMiddleware(app, secret_keys=["k"], consent=policy()), environ)
    [(decision, event_id)] = seen
    [row] = tracker.store.find(event_id)
    assert (row.consent["state"], row.consent["basis"]) == (decision.state, decision.basis)
    if gpc == "1":
        assert row.state == "suppressed"


class Monotonic:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@PROFILE
@given(
    gaps=st.lists(st.floats(0, 3, allow_nan=False), min_size=1, max_size=120),
    clients=st.lists(st.sampled_from(["203.0.113.9", "2001:db8::1", "2001:db8::ffff", "198.51.100.2"]), min_size=1),
)
def test_a_hammered_endpoint_answers_at_most_burst_plus_rate(gaps: list[float], clients: list[str]) -> None:
    rate, burst = 0.5, 4
    mw = MsclkidMiddleware(lambda e, s: [], secret_keys=["k"], capture_rate=rate, capture_burst=burst)
    clock = Monotonic()
    assert mw.capture.endpoint.limiter is not None
    mw.capture.endpoint.limiter.clock = clock
    served: dict[str, int] = {}
    for n, gap in enumerate(gaps):
        clock.now += gap
        address = clients[n % len(clients)]
        environ = make_environ(
            "/_msclkid",
            method="POST",
            body=json.dumps({"msclkid": HEX}).encode(),
            content_type="application/json",
            headers={"Sec-Fetch-Site": "same-origin"},
        )
        environ["REMOTE_ADDR"] = address
        result = call(mw, environ)
        if result.code == 429:
            assert int(result.header_values("Retry-After")[0]) >= 1
            assert result.set_cookies == []
        else:
            key = "2001:db8::/64" if ":" in address else address
            served[key] = served.get(key, 0) + 1
    for count in served.values():
        assert count <= burst + rate * clock.now + 1e-9


@PROFILE
@given(
    host=st.one_of(st.text(max_size=60), st.sampled_from(["shop.test", "evil.example", "a b", "x/y", "[::1]:80"])),
    referer=st.one_of(st.none(), st.text(max_size=60), st.sampled_from(["javascript:alert(1)", "https://ok.example/"])),
    allowed=st.sampled_from([(), ("shop.test",), (".shop.test", "srv.internal")]),
)
def test_page_views_carry_only_served_hosts_and_web_referrers(
    host: str, referer: str | None, allowed: tuple[str, ...]
) -> None:
    views: list[PageView] = []

    def page(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/html")])
        return [b"<p>hi</p>"]

    mw = MsclkidMiddleware(page, secret_keys=["k"], on_page_view=views.append, allowed_hosts=allowed)
    environ = make_environ("/p", headers={"User-Agent": "Mozilla/5.0 Firefox/135.0"})
    environ["HTTP_HOST"], environ["SERVER_NAME"], environ["SERVER_PORT"] = host, "srv.internal", "443"
    if referer is not None:
        environ["HTTP_REFERER"] = referer
    call(mw, environ)
    for view in views:
        netloc = view.url.split("://", 1)[1].split("/", 1)[0]
        name = netloc.rsplit(":", 1)[0] if not netloc.startswith("[") else netloc
        assert all(ch.isalnum() or ch in ".-:[]" for ch in netloc)
        if allowed:
            assert name.lower() in ("shop.test", "srv.internal") or name.lower().endswith(".shop.test")
        if view.referrer is not None:
            assert view.referrer.lower().startswith(("http://", "https://"))
