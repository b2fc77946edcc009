"""S1/S2/S4/S5/S8: Hypothesis over the middleware with hostile requests (``MSCLKID_SOAK_EXAMPLES`` each).

Inputs: query strings (repeated and ``;``-joined ``msclkid``, percent-encoded non-UTF-8, NUL, CR/LF,
1 MiB values, 10,000 fields), Cookie headers (our signed cookie genuine, forged and mutated, quoted,
duplicated, 8 KiB), consent cookies, TCF strings (valid, truncated, random base64url), ``Sec-GPC``
variants, hostile paths, and capture-endpoint bodies.

Invariants: no exception, no 5xx, no CR/LF in any header, the app's status, headers and body pass
through untouched (only our one ``Set-Cookie`` may be appended), no ``Location`` is ever added, a
cookie click seen by the app comes only from a genuine token, no cookie is set without consent or
with GPC, every emitted cookie has the required attributes, and ``wsgi.input`` is never read outside
the capture endpoint (which never reads beyond its limit).
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tcf_encoder import Restriction, TCSpec
from wsgi_helpers import T0, Clock, UntouchableInput

from msclkid_middleware import ConsentPolicy, MsclkidMiddleware, get_click, get_consent
from msclkid_middleware.capture.clickid import click_id_from_query, click_id_from_uet_cookie, is_valid_click_id
from msclkid_middleware.capture.cookie import ClickCookie

from .conftest import EXAMPLES

pytestmark = pytest.mark.reliability

SECRET = "hostile-input-signing-key"
NAME = "__Host-msclkid"
MAX_COOKIE_AGE = 400 * 24 * 3600
HEX_IDS = st.text(alphabet="0123456789abcdef", min_size=32, max_size=32)
VALID_IDS = st.one_of(HEX_IDS, st.from_regex(r"[A-Za-z0-9_-]{8,64}", fullmatch=True))
LATIN1 = st.characters(min_codepoint=0, max_codepoint=255)
PROFILE = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
APP_HEADERS = [("Content-Type", "text/plain"), ("Set-Cookie", "app=1; Path=/"), ("X-App", "kept")]

_codec = ClickCookie([SECRET], clock=Clock())


def genuine(click: str, at: float = T0) -> str:
    return _codec.encode(click, at)


# -- strategies ---------------------------------------------------------------------------------------

_junk_values = st.one_of(
    st.text(LATIN1, max_size=80),
    st.sampled_from(["%ff%fe", "%00", "%0d%0aSet-Cookie:%20x=1", "\r\nLocation: //evil.example", "%", "%zz", "\x00"]),
    VALID_IDS.map(lambda v: v + "\x00"),
    VALID_IDS.map(lambda v: quote(v + "\u00e9")),
)
_query_fields = st.lists(
    st.tuples(
        st.sampled_from(["msclkid", "MSCLKID", "MsClkId", "msclkid%00", "msclkid[]", "x", ""]),
        st.one_of(VALID_IDS, _junk_values),
    ),
    max_size=8,
)
QUERIES = st.one_of(
    st.text(LATIN1, max_size=300),
    st.tuples(_query_fields, st.sampled_from(["&", ";", "&&", "&;"])).map(
        lambda p: p[1].join(f"{k}={v}" for k, v in p[0])
    ),
    st.sampled_from(
        [
            "msclkid=" + "a" * (1 << 20),  # a 1 MiB value
            "x=1&" * 10_000 + "msclkid=" + "b" * 32,  # 10,000 fields before ours
            "msclkid=a;msclkid=" + "c" * 32,
            "msclkid=%ff%fe" + "d" * 30,
        ]
    ),
)


@st.composite
def mutated_token(draw: st.DrawFn) -> str:
    """A genuine token changed by one hostile edit (never the identity)."""
    token = genuine(draw(VALID_IDS), draw(st.floats(T0 - 100 * 86400, T0 + 1000)))
    op = draw(
        st.sampled_from(
            [
                "flip",
                "truncate",
                "extend",
                "separator",
                "non-ascii",
                "case",
                "swap",
                "huge",
                "other-key",
                "other-salt",
                "prefix",
            ]
        )
    )
    if op == "flip":
        i = draw(st.integers(0, len(token) - 1))
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."
        c = draw(st.sampled_from(alphabet).filter(lambda c: c != token[i]))
        return token[:i] + c + token[i + 1 :]
    if op == "truncate":
        return token[: draw(st.integers(0, len(token) - 1))]
    if op == "extend":
        return token + draw(st.text("Aa0-_.=", min_size=1, max_size=8))
    # Insertions go inside the token: a space or ";" at either end is stripped by the Cookie header's own
    # grammar, which leaves the genuine token (not a forgery).
    if op == "separator":
        i = draw(st.integers(1, len(token) - 1))
        return token[:i] + draw(st.sampled_from([".", "..", ":", ";", "=", " "])) + token[i:]
    if op == "non-ascii":
        i = draw(st.integers(1, len(token) - 1))
        return token[:i] + draw(st.sampled_from(["\u00e9", "\u00ff", "\x00", "\u2603"])) + token[i:]
    if op == "case":
        i = draw(st.integers(0, len(token) - 1).filter(lambda i: token[i].swapcase() != token[i]))
        return token[:i] + token[i].swapcase() + token[i + 1 :]
    if op == "swap":
        parts = token.split(".")
        i, j = draw(st.permutations(range(len(parts))))[:2]
        parts[i], parts[j] = parts[j], parts[i]
        swapped = ".".join(parts)
        return swapped if swapped != token else token[:-1]
    if op == "huge":
        return token + "A" * 100_000
    if op == "other-key":
        return ClickCookie(["another-key-entirely"], clock=Clock()).encode(draw(VALID_IDS), T0)
    if op == "other-salt":
        from itsdangerous import TimestampSigner

        return TimestampSigner(SECRET, salt="another-salt").sign(b"1." + draw(HEX_IDS).encode()).decode()
    return "v1." + token


TC_STRINGS = st.one_of(
    st.just(TCSpec().encode()),
    st.sampled_from(
        [
            TCSpec(policy_version=2).encode(),
            TCSpec(purposes_consent=(2, 3)).encode(),
            TCSpec(vendor_consents=(32,)).encode(),
            TCSpec(restrictions=(Restriction(1, 0, (1126,)),)).encode(),
            TCSpec(vendor_consent_encoding="range").encode(),
            "CO5V",
            "CAAAAAAAAAAAAAAA",
        ]
    ),
    st.builds(lambda s, n: s[:n], st.just(TCSpec().encode()), st.integers(0, 60)),
    st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.", max_size=300),
)


@st.composite
def cookie_headers(draw: st.DrawFn) -> tuple[str | None, set[str]]:
    """A Cookie header and the click IDs of the genuine tokens in it (the only ones a cookie may yield)."""
    if draw(st.booleans()) and draw(st.booleans()):
        return draw(st.one_of(st.none(), st.text(LATIN1, max_size=300), st.just("x=" + "y" * 8192))), set()
    genuine_ids: set[str] = set()
    pairs = []
    for _ in range(draw(st.integers(0, 6))):
        name = draw(st.sampled_from([NAME, NAME, "_uetmsclkid", "euconsent-v2", "site_consent", "x", " " + NAME]))
        if name.strip() == NAME:
            if draw(st.integers(0, 3)) == 0:
                click = draw(VALID_IDS)
                genuine_ids.add(click)
                value = genuine(click)
            else:
                value = draw(mutated_token())
            if draw(st.integers(0, 5)) == 0:
                value = f'"{value}"'
        elif name == "_uetmsclkid":
            value = draw(st.one_of(HEX_IDS.map(lambda h: "_uet" + h), st.text(LATIN1, max_size=40)))
        elif name == "euconsent-v2":
            value = draw(TC_STRINGS)
        elif name == "site_consent":
            value = draw(st.sampled_from(["granted", "denied", "yes", "", "\\073", "granted\r\n"]))
        else:
            value = draw(st.text(LATIN1, max_size=40))
        pairs.append(f"{name}={value}")
    return "; ".join(pairs), genuine_ids


PATHS = st.sampled_from(["/", "/shop", "//evil.example", "/\\evil.example", "https://evil.example", "/%0d%0a", "/a?b"])
GPC = st.sampled_from([None, "1", "0", " 1", "1\r\n", "true", ""])
POLICIES = {
    "granted": ConsentPolicy(default="granted"),
    "denied": ConsentPolicy(default="denied", cookie_name="site_consent"),
    "gpc-ignored": ConsentPolicy(default="granted", honor_gpc=False),
}


def environ(path: str, query: str | None, cookie: str | None, gpc: str | None, **extra: Any) -> dict[str, Any]:
    env: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": "shop.test",
        "SERVER_PORT": "443",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "shop.test",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "https",
        "wsgi.input": UntouchableInput(),
        "wsgi.errors": io.StringIO(),
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    if cookie is not None:
        env["HTTP_COOKIE"] = cookie
    if gpc is not None:
        env["HTTP_SEC_GPC"] = gpc
    env.update(extra)
    return env


def run(app: Callable[..., Iterable[bytes]], env: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes]:
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
        seen["status"], seen["headers"] = status, list(headers)
        return lambda data: None

    body = b"".join(app(env, start_response))
    return seen["status"], seen["headers"], body


def check_headers(headers: list[tuple[str, str]]) -> list[str]:
    """No CR/LF anywhere; every cookie of ours has the S1 attributes.  Returns our Set-Cookie values."""
    ours = []
    for name, value in headers:
        assert "\r" not in name + value
        assert "\n" not in name + value
        if name.lower() == "set-cookie" and value.startswith(NAME + "="):
            ours.append(value)
            assert len(value) <= 4093
            attrs = [a.strip() for a in value.split(";")[1:]]
            lowered = {a.split("=")[0].lower(): a.partition("=")[2] for a in attrs}
            assert {"secure", "httponly", "path", "samesite", "max-age"} <= set(lowered), value
            assert "domain" not in lowered  # __Host- prefix: host-only
            assert lowered["path"] == "/"
            assert lowered["samesite"] == "Lax"
            assert 0 <= int(lowered["max-age"]) <= MAX_COOKIE_AGE
    return ours


def shop(environ_seen: list[dict[str, Any]]) -> Callable[..., Iterable[bytes]]:
    def app(env: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        environ_seen.append({"click": get_click(env), "consent": get_consent(env)})
        start_response("200 OK", list(APP_HEADERS))
        return [b"app body"]

    return app


# -- properties -----------------------------------------------------------------------------------------


@PROFILE
@given(
    path=PATHS,
    query=st.one_of(st.none(), QUERIES),
    cookie=cookie_headers(),
    gpc=GPC,
    policy=st.sampled_from(sorted(POLICIES)),
)
def test_hostile_requests_never_break_the_response_or_forge_a_click(
    path: str, query: str | None, cookie: tuple[str | None, set[str]], gpc: str | None, policy: str
) -> None:
    header, genuine_ids = cookie
    seen: list[dict[str, Any]] = []
    mw = MsclkidMiddleware(shop(seen), secret_keys=[SECRET], consent=POLICIES[policy], clock=Clock())
    env = environ(path, query, header, gpc)
    status, headers, body = run(mw, env)

    assert status == "200 OK"
    assert body == b"app body"
    ours = check_headers(headers)
    assert [h for h in headers if not (h[0] == "Set-Cookie" and h[1].startswith(NAME + "="))] == APP_HEADERS
    assert not any(k.lower() == "location" for k, _ in headers)
    assert len(ours) <= 1
    assert env["wsgi.input"].reads == 0

    click = seen[0]["click"]
    consent = seen[0]["consent"]
    if click is not None:
        assert is_valid_click_id(click.msclkid)
        if click.source == "cookie":
            assert click.msclkid in genuine_ids, "a forged or mutated cookie was accepted"
        elif click.source == "url":
            assert click.msclkid == click_id_from_query(
                query or "", max_length=mw.max_query_length, max_fields=mw.max_query_fields
            )
        elif click.source == "uet":
            assert header is not None
            assert click.msclkid in header
    for value in ours:
        if "Max-Age=0" in value:
            continue  # a deletion is always allowed
        assert consent is not None
        assert consent.granted
        if gpc == "1" and policy != "gpc-ignored":
            raise AssertionError("a cookie was set although Sec-GPC: 1")
        loaded = _codec.decode(value.split(";")[0].split("=", 1)[1])
        assert loaded is not None
        assert is_valid_click_id(loaded.msclkid)
        assert loaded.msclkid == (click.msclkid if click else None)


@PROFILE
@given(token=mutated_token())
def test_mutated_signed_cookies_are_treated_as_absent(token: str) -> None:
    assert _codec.decode(token) is None
    seen: list[dict[str, Any]] = []
    mw = MsclkidMiddleware(shop(seen), secret_keys=[SECRET], consent=POLICIES["granted"], clock=Clock())
    with_cookie = run(mw, environ("/", "", f"{NAME}={token}", None))
    without = run(mw, environ("/", "", None, None))
    assert seen[0]["click"] is None
    # Treated as absent: same response as no cookie, except that a bad cookie of ours may be deleted.
    assert [h for h in with_cookie[1] if "Max-Age=0" not in h[1]] == without[1]
    check_headers(with_cookie[1])


@PROFILE
@given(tc=TC_STRINGS, gpc=GPC, extra=st.text(LATIN1, max_size=30))
def test_tcf_and_consent_cookies_decide_without_raising(tc: str, gpc: str | None, extra: str) -> None:
    from msclkid_middleware.capture.tcf import microsoft_allowed

    env = environ("/", "", f"euconsent-v2={tc}; site_consent={extra}", gpc)
    for policy in (ConsentPolicy(default="denied"), ConsentPolicy(default="denied", cookie_name="site_consent")):
        decision = policy.decide(env)
        assert decision.state in ("granted", "denied")
        if decision.granted and gpc == "1":
            raise AssertionError("granted despite Sec-GPC: 1")
    allowed = microsoft_allowed(tc)
    if tc in ("CO5V", "CAAAAAAAAAAAAAAA") or len(tc) < 30:
        assert allowed is False  # truncated strings fail closed (iab-tcf fails open on these)
    if allowed:
        assert ConsentPolicy(default="denied").decide(environ("/", "", f"euconsent-v2={tc}", None)).granted


class CountingInput(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.max_read = 0

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        self.max_read = self.tell()
        return chunk


_bodies = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "consent": st.one_of(st.sampled_from(["granted", "denied", "pending", "GRANTED"]), st.integers()),
            "msclkid": st.one_of(VALID_IDS, _junk_values, st.none(), st.integers()),
            "tcf": st.one_of(TC_STRINGS, st.just("A" * 3000)),
        },
    ).flatmap(
        lambda d: st.sampled_from(
            [
                ("application/json", json.dumps(d).encode()),
                ("text/plain", json.dumps(d).encode()),
                ("application/x-www-form-urlencoded", "&".join(f"{k}={quote(str(v))}" for k, v in d.items()).encode()),
            ]
        )
    ),
    st.tuples(
        st.sampled_from(["application/json", "application/x-www-form-urlencoded", "text/plain", "", "image/png"]),
        st.one_of(st.binary(max_size=300), st.just(b"[" * 5000), st.just(b"x" * 5000), st.just(b"\xff\xfe{}")),
    ),
)


@PROFILE
@given(
    body=_bodies,
    length=st.sampled_from(["exact", "missing", "negative", "junk", "longer", "huge"]),
    origin=st.sampled_from(["same", "cross", "none", "null", "fetch-same", "fetch-cross", "bad"]),
    method=st.sampled_from(["POST", "POST", "POST", "GET", "PUT"]),
    cookie=cookie_headers(),
    gpc=GPC,
)
def test_capture_endpoint_survives_hostile_bodies(
    body: tuple[str, bytes], length: str, origin: str, method: str, cookie: tuple[str | None, set[str]], gpc: str | None
) -> None:
    content_type, data = body
    stream = CountingInput(data + b"TRAILING-BYTES-NOT-OURS")
    lengths = {
        "exact": str(len(data)),
        "missing": None,
        "negative": "-1",
        "junk": "12abc",
        "longer": str(len(data) + 10),
        "huge": "99999999",
    }
    origins = {
        "same": {"HTTP_ORIGIN": "https://shop.test"},
        "cross": {"HTTP_ORIGIN": "https://evil.example"},
        "none": {},
        "null": {"HTTP_ORIGIN": "null"},
        "fetch-same": {"HTTP_SEC_FETCH_SITE": "same-origin"},
        "fetch-cross": {"HTTP_SEC_FETCH_SITE": "cross-site", "HTTP_ORIGIN": "https://shop.test"},
        "bad": {"HTTP_ORIGIN": "https://shop.test/\r\n"},
    }
    extra: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "CONTENT_TYPE": content_type,
        "wsgi.input": stream,
        **origins[origin],
    }
    if lengths[length] is not None:
        extra["CONTENT_LENGTH"] = lengths[length]
    seen: list[dict[str, Any]] = []
    mw = MsclkidMiddleware(shop(seen), secret_keys=[SECRET], consent=POLICIES["granted"], clock=Clock())
    status, headers, _ = run(mw, environ("/_msclkid", "", cookie[0], gpc, **extra))

    code = int(status.split()[0])
    assert code in (204, 400, 403, 405, 413), status
    assert seen == []  # the endpoint is ours: the app never runs
    ours = check_headers(headers)
    declared = len(data) if length == "exact" else len(data) + 10 if length == "longer" else 0
    assert stream.max_read <= max(declared, 4097)  # never beyond the declared length or the cap
    if method != "POST" or origin in ("cross", "none", "null", "fetch-cross", "bad"):
        assert code in (403, 405)
        assert not ours
    for value in ours:
        if "Max-Age=0" in value:
            continue
        assert code == 204
        assert gpc != "1"
        loaded = _codec.decode(value.split(";")[0].split("=", 1)[1])
        assert loaded is not None
        assert is_valid_click_id(loaded.msclkid)


def test_uet_cookie_ids_come_only_from_the_uet_cookie() -> None:
    # The "uet" source above is checked loosely; pin the rule it relies on.
    assert click_id_from_uet_cookie("_uet" + "a" * 32) == "a" * 32
    assert click_id_from_uet_cookie("_uet\r\n") is None
