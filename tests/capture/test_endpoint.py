"""The capture endpoint (POST /_msclkid) and the snippet route (GET /_msclkid.js)."""

from __future__ import annotations

import hashlib
import importlib.resources
import io
import json
import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from msclkid_middleware import MsclkidMiddleware
from msclkid_middleware.capture.consent import ConsentPolicy
from msclkid_middleware.capture.cookie import ClickCookie
from msclkid_middleware.capture.profiles import MemoryProfileStore
from msclkid_middleware.middleware import MAX_CAPTURE_BODY
from tests.tcf_encoder import TCSpec
from tests.wsgi_helpers import HEX, HEX2, T0, Clock, Result, UntouchableInput, call, make_environ

SECRET = "endpoint-secret"
NAME = "__Host-msclkid"
SAME_SITE = {"Sec-Fetch-Site": "same-origin"}
TC_ALLOWED = TCSpec().encode()
TC_NO_VENDOR = TCSpec(vendor_consents=(32, 755)).encode()
SNIPPET = (importlib.resources.files("msclkid_middleware") / "static" / "msclkid.min.js").read_bytes()


def app_not_called(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    start_response("418 I'm a teapot", [("Content-Type", "text/plain")])
    return [b"app"]


def middleware(**options: Any) -> MsclkidMiddleware:
    options.setdefault("secret_keys", [SECRET])
    options.setdefault("consent", ConsentPolicy(default="granted"))
    options.setdefault("clock", Clock())
    return MsclkidMiddleware(app_not_called, **options)


def post(
    mw: MsclkidMiddleware,
    payload: Any = None,
    *,
    raw: bytes | None = None,
    content_type: str = "application/json",
    headers: dict[str, str] | None = None,
    cookie: str | None = None,
    path: str = "/_msclkid",
) -> Result:
    body = raw if raw is not None else json.dumps(payload).encode()
    environ = make_environ(
        path,
        method="POST",
        body=body,
        content_type=content_type,
        headers=SAME_SITE if headers is None else headers,
        cookie=cookie,
    )
    return call(mw, environ)


def stored_id(result: Result) -> str | None:
    (header,) = result.set_cookies
    value = header.split(";")[0].split("=", 1)[1]
    loaded = ClickCookie([SECRET], clock=Clock()).decode(value)
    return loaded.msclkid if loaded else None


# -- capture: success paths ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "raw"),
    [
        pytest.param("application/json", json.dumps({"msclkid": HEX}).encode(), id="json"),
        pytest.param("application/json; charset=utf-8", json.dumps({"msclkid": HEX}).encode(), id="json-charset"),
        pytest.param("text/plain;charset=UTF-8", json.dumps({"msclkid": HEX}).encode(), id="beacon-text-plain"),
        pytest.param("application/x-www-form-urlencoded", f"msclkid={HEX}&consent=granted".encode(), id="form"),
        pytest.param("application/json", json.dumps({"msclkid": HEX, "consent": "granted"}).encode(), id="granted"),
    ],
)
def test_capture_sets_the_signed_cookie(content_type: str, raw: bytes) -> None:
    result = post(middleware(), raw=raw, content_type=content_type)
    assert result.status == "204 No Content"
    assert result.body == b""
    assert result.header_values("Cache-Control") == ["no-store"]
    assert stored_id(result) == HEX
    (header,) = result.set_cookies
    assert "HttpOnly" in header
    assert "Secure" in header


def test_capture_then_get_click_on_next_request() -> None:
    clock = Clock()
    seen: list[Any] = []

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        from msclkid_middleware import get_click

        seen.append(get_click(environ))
        start_response("200 OK", [])
        return []

    mw = MsclkidMiddleware(app, secret_keys=[SECRET], consent=ConsentPolicy(), clock=clock)
    result = post(mw, {"msclkid": HEX})
    cookie = result.set_cookies[0].split(";")[0]
    call(mw, make_environ("/product", cookie=cookie))
    assert seen[0].msclkid == HEX
    assert seen[0].source == "cookie"


def test_capture_of_the_same_click_does_not_reset_the_cookie() -> None:
    existing = ClickCookie([SECRET], clock=Clock()).encode(HEX, T0 - 60)
    result = post(middleware(), {"msclkid": HEX}, cookie=f"{NAME}={existing}")
    assert result.status == "204 No Content"
    assert result.set_cookies == []


def test_capture_of_a_newer_click_overwrites() -> None:
    existing = ClickCookie([SECRET], clock=Clock()).encode(HEX, T0 - 60)
    result = post(middleware(), {"msclkid": HEX2}, cookie=f"{NAME}={existing}")
    assert stored_id(result) == HEX2


def test_capture_saves_the_profile_of_a_known_visitor() -> None:
    store = MemoryProfileStore()
    result = post(middleware(visitor_id=lambda e: "user-9", profile_store=store), {"msclkid": HEX})
    assert result.status == "204 No Content"
    saved = store.get("user-9")
    assert saved is not None
    assert saved.msclkid == HEX


# -- capture: consent ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "payload", "headers", "outcome"),
    [
        pytest.param(ConsentPolicy(), {"consent": "denied"}, {}, "delete", id="denied-without-id"),
        pytest.param(ConsentPolicy(), {"msclkid": "x y", "consent": "denied"}, {}, "delete", id="denied-bad-id"),
        pytest.param(ConsentPolicy(), {"msclkid": HEX, "consent": "denied"}, {}, "delete", id="denied-with-id"),
        pytest.param(ConsentPolicy(), {"msclkid": HEX, "consent": "pending"}, {}, "nothing", id="pending"),
        pytest.param(ConsentPolicy(), {"consent": "pending"}, {}, "nothing", id="pending-without-id"),
        pytest.param(ConsentPolicy(default="denied"), {"msclkid": HEX}, {}, "delete", id="server-default-denied"),
        pytest.param(
            ConsentPolicy(default="denied"), {"msclkid": HEX, "consent": "granted"}, {}, "set", id="page-grants"
        ),
        pytest.param(
            ConsentPolicy(), {"msclkid": HEX, "consent": "granted"}, {"Sec-GPC": "1"}, "delete", id="gpc-beats-page"
        ),
        pytest.param(
            ConsentPolicy(resolver=lambda e: False),
            {"msclkid": HEX, "consent": "granted"},
            {},
            "delete",
            id="resolver-beats-page",
        ),
        pytest.param(ConsentPolicy(default="denied"), {"msclkid": HEX, "tcf": TC_ALLOWED}, {}, "set", id="tcf-allows"),
        pytest.param(ConsentPolicy(), {"msclkid": HEX, "tcf": TC_NO_VENDOR}, {}, "delete", id="tcf-no-vendor-1126"),
        pytest.param(ConsentPolicy(), {"msclkid": HEX, "tcf": "CO5V"}, {}, "delete", id="tcf-truncated"),
    ],
)
def test_capture_consent(policy: ConsentPolicy, payload: dict[str, str], headers: dict[str, str], outcome: str) -> None:
    store = MemoryProfileStore()
    mw = middleware(consent=policy, visitor_id=lambda e: "v", profile_store=store)
    result = post(mw, payload, headers={**SAME_SITE, **headers})
    assert result.status == "204 No Content"
    assert result.header_values("Cache-Control") == ["no-store"]
    if outcome == "set":
        assert stored_id(result) == HEX
        assert store.get("v") is not None
    elif outcome == "delete":
        (header,) = result.set_cookies
        assert header.startswith(f"{NAME}=; Max-Age=0;")
        assert store.get("v") is None
    else:
        assert result.set_cookies == []
        assert store.get("v") is None


# -- capture: refusals ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "raw", "reason"),
    [
        pytest.param("application/json", b'{"msclkid": "bad id!"}', "msclkid invalid", id="invalid-id"),
        pytest.param("application/json", b'{"msclkid": "' + b"a" * 65 + b'"}', "msclkid invalid", id="long-id"),
        pytest.param("application/json", b'{"msclkid": 123}', "msclkid invalid", id="id-not-string"),
        pytest.param("application/json", b"{}", "msclkid missing", id="missing-id"),
        pytest.param(
            "application/json", b'{"msclkid": "x y", "consent": "pending"}', "msclkid invalid", id="pending-bad"
        ),
        pytest.param("application/json", b'{"msclkid": ""}', "msclkid missing", id="empty-id"),
        pytest.param(
            "application/json",
            b'{"msclkid": "a", "consent": "yes"}',
            "consent must be granted, denied or pending",
            id="bad-consent",
        ),
        pytest.param("application/json", b'{"msclkid": "a", "tcf": 5}', "tcf invalid", id="tcf-not-string"),
        pytest.param(
            "application/json", b'{"msclkid": "a", "tcf": "' + b"A" * 2049 + b'"}', "tcf invalid", id="tcf-long"
        ),
        pytest.param("application/json", b"[1, 2]", "JSON body must be an object", id="json-array"),
        pytest.param("application/json", b"{not json", "malformed JSON body", id="malformed-json"),
        pytest.param("application/json", b"[" * 3000, "malformed JSON body", id="deep-nesting"),
        pytest.param("application/json", b"\xff\xfe", "malformed JSON body", id="binary"),
        pytest.param("application/x-www-form-urlencoded", b"msclkid=%FF%FE", "msclkid invalid", id="form-bytes"),
        pytest.param("application/x-www-form-urlencoded", b"\xff=1", "malformed form body", id="form-non-utf8"),
        pytest.param("application/x-www-form-urlencoded", b"a=1&" * 40, "malformed form body", id="form-many-fields"),
        pytest.param("multipart/form-data; boundary=x", b"--x--", "unsupported content type", id="multipart"),
        pytest.param("application/json", b"", "empty body", id="empty"),
    ],
)
def test_bad_input_is_400_with_a_short_reason_and_stores_nothing(content_type: str, raw: bytes, reason: str) -> None:
    result = post(middleware(), raw=raw, content_type=content_type)
    assert result.status == "400 Bad Request"
    assert result.body == (reason + "\n").encode()
    assert result.set_cookies == []
    assert result.header_values("Cache-Control") == ["no-store"]
    assert result.header_values("Content-Type") == ["text/plain; charset=utf-8"]


def test_reason_never_echoes_input() -> None:
    result = post(middleware(), {"msclkid": "<script>alert(1)</script>"})
    assert b"script" not in result.body


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        pytest.param({"Sec-Fetch-Site": "same-origin"}, 204, id="fetch-same-origin"),
        pytest.param({"Sec-Fetch-Site": "same-site"}, 403, id="fetch-same-site"),
        pytest.param({"Sec-Fetch-Site": "cross-site", "Origin": "https://shop.test"}, 403, id="fetch-cross-site"),
        pytest.param({"Sec-Fetch-Site": "none"}, 403, id="fetch-none"),
        pytest.param({"Origin": "https://shop.test"}, 204, id="origin-same"),
        pytest.param({"Origin": "https://SHOP.test:443"}, 204, id="origin-default-port-and-case"),
        pytest.param({"Origin": "http://shop.test"}, 403, id="origin-other-scheme"),
        pytest.param({"Origin": "https://shop.test:8443"}, 403, id="origin-other-port"),
        pytest.param({"Origin": "https://evil.test"}, 403, id="origin-other-host"),
        pytest.param({"Origin": "https://shop.test.evil.test"}, 403, id="origin-suffix"),
        pytest.param({"Origin": "null"}, 403, id="origin-null"),
        pytest.param({"Origin": "https://shop.test/path"}, 403, id="origin-with-path"),
        pytest.param({}, 403, id="no-origin-signal"),
    ],
)
def test_same_origin_is_required(headers: dict[str, str], expected: int) -> None:
    result = post(middleware(), {"msclkid": HEX}, headers=headers)
    assert result.code == expected
    if expected == 403:
        assert result.set_cookies == []
        assert result.body == b"cross-origin request refused\n"


def test_origin_compared_with_server_name_when_no_host_header() -> None:
    environ = make_environ(
        "/_msclkid",
        method="POST",
        body=b'{"msclkid": "abc"}',
        content_type="application/json",
        headers={"Origin": "http://127.0.0.1:8000"},
        scheme="http",
        host="127.0.0.1:8000",
    )
    del environ["HTTP_HOST"]
    environ["SERVER_NAME"], environ["SERVER_PORT"] = "127.0.0.1", "8000"
    assert call(middleware(), environ).code == 204


@pytest.mark.parametrize("method", ["GET", "HEAD", "PUT", "DELETE", "OPTIONS"])
def test_other_methods_are_405(method: str) -> None:
    environ = make_environ("/_msclkid", method=method)
    result = call(middleware(), environ)
    assert result.status == "405 Method Not Allowed"
    assert result.header_values("Allow") == ["POST"]
    assert environ["wsgi.input"].reads == 0


def test_too_large_is_413_without_reading() -> None:
    environ = make_environ("/_msclkid", method="POST", headers=SAME_SITE)
    environ["CONTENT_LENGTH"] = str(MAX_CAPTURE_BODY + 1)
    environ["CONTENT_TYPE"] = "application/json"
    environ["wsgi.input"] = UntouchableInput()
    result = call(middleware(), environ)
    assert result.code == 413
    assert result.set_cookies == []
    assert environ["wsgi.input"].reads == 0


def test_body_at_the_limit_is_accepted() -> None:
    payload = {"msclkid": HEX, "pad": ""}
    payload["pad"] = "x" * (MAX_CAPTURE_BODY - len(json.dumps(payload)))
    raw = json.dumps(payload).encode()
    assert len(raw) == MAX_CAPTURE_BODY
    assert post(middleware(), raw=raw).code == 204


@pytest.mark.parametrize(
    ("length", "terminated", "body", "expected"),
    [
        pytest.param("abc", False, b"", 400, id="bad-length"),
        pytest.param("-1", False, b"", 400, id="negative-length"),
        pytest.param("100", False, b'{"msclkid": "abc"}', 400, id="short-body"),
        pytest.param(None, True, b'{"msclkid": "abc"}', 204, id="terminated-input-no-length"),
        pytest.param(None, True, b"x" * (MAX_CAPTURE_BODY + 10), 413, id="terminated-input-too-large"),
        pytest.param(None, False, b'{"msclkid": "abc"}', 400, id="no-length-not-read"),
    ],
)
def test_body_framing(length: str | None, terminated: bool, body: bytes, expected: int) -> None:
    environ = make_environ("/_msclkid", method="POST", headers=SAME_SITE)
    environ["CONTENT_TYPE"] = "application/json"
    environ.pop("CONTENT_LENGTH", None)
    if length is not None:
        environ["CONTENT_LENGTH"] = length
    environ["wsgi.input"] = io.BytesIO(body)
    if terminated:
        environ["wsgi.input_terminated"] = True
    assert call(middleware(), environ).code == expected


def test_capture_path_is_configurable_and_can_be_turned_off() -> None:
    mw = middleware(capture_path="/t/c")
    assert post(mw, {"msclkid": HEX}, path="/t/c").code == 204
    assert post(mw, {"msclkid": HEX}).code == 418  # the app's own route now
    off = middleware(capture_path=None)
    assert post(off, {"msclkid": HEX}).code == 418


# -- snippet serving -----------------------------------------------------------------------------------


def get_snippet(mw: MsclkidMiddleware, method: str = "GET", headers: dict[str, str] | None = None) -> Result:
    return call(mw, make_environ("/_msclkid.js", method=method, headers=headers))


def test_snippet_served_from_the_package() -> None:
    result = get_snippet(middleware())
    assert result.status == "200 OK"
    assert result.body == SNIPPET
    assert result.header_values("Content-Type") == ["text/javascript; charset=utf-8"]
    assert result.header_values("Cache-Control") == ["public, max-age=3600"]
    assert result.header_values("Content-Length") == [str(len(SNIPPET))]
    (etag,) = result.header_values("ETag")
    assert etag == '"' + hashlib.sha256(SNIPPET).hexdigest()[:32] + '"'
    assert result.set_cookies == []


@pytest.mark.parametrize(
    ("if_none_match", "expected"),
    [
        pytest.param("{etag}", 304, id="exact"),
        pytest.param("W/{etag}", 304, id="weak"),
        pytest.param('"other", {etag}', 304, id="list"),
        pytest.param("*", 304, id="star"),
        pytest.param('"other"', 200, id="other"),
    ],
)
def test_snippet_conditional_get(if_none_match: str, expected: int) -> None:
    mw = middleware()
    (etag,) = get_snippet(mw).header_values("ETag")
    result = get_snippet(mw, headers={"If-None-Match": if_none_match.format(etag=etag)})
    assert result.code == expected
    assert result.header_values("ETag") == [etag]
    if expected == 304:
        assert result.body == b""


def test_snippet_head() -> None:
    result = get_snippet(middleware(), "HEAD")
    assert result.code == 200
    assert result.body == b""
    assert result.header_values("Content-Length") == [str(len(SNIPPET))]


def test_snippet_other_methods() -> None:
    result = get_snippet(middleware(), "POST")
    assert result.code == 405
    assert result.header_values("Allow") == ["GET, HEAD"]


def test_snippet_path_configurable_and_off() -> None:
    assert get_snippet(middleware(snippet_path=None)).code == 418
    result = call(middleware(snippet_path="/static/m.js"), make_environ("/static/m.js"))
    assert result.body == SNIPPET


def test_missing_snippet_file_answers_404_and_logs_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(importlib.resources, "files", lambda package: tmp_path)
    with caplog.at_level(logging.WARNING, logger="msclkid_middleware.middleware"):
        mw = middleware()
        first = get_snippet(mw)
        second = get_snippet(mw)
    assert first.code == second.code == 404
    assert len([r for r in caplog.records if "snippet" in r.getMessage()]) == 1


# -- issue 19 item 5: a field named twice is refused, never last-wins ------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "raw"),
    [
        pytest.param("application/json", b'{"consent": "denied", "msclkid": "%s", "consent": "granted"}', id="consent"),
        pytest.param("application/json", b'{"msclkid": "%s", "msclkid": "%s"}', id="same-value-twice"),
        pytest.param("text/plain", b'{"msclkid": "%s", "tcf": "a", "tcf": "b"}', id="beacon-tcf"),
        pytest.param("application/json", b'{"msclkid": "%s", "x": {"a": 1, "a": 2}}', id="nested"),
        pytest.param(
            "application/json", b'{"msclkid": "%s", "\\u0063onsent": "granted", "consent": "denied"}', id="escaped"
        ),
        pytest.param("application/x-www-form-urlencoded", b"consent=denied&msclkid=%s&consent=granted", id="form"),
        pytest.param("application/x-www-form-urlencoded", b"msclkid=%s&msclkid=%s", id="form-same-twice"),
    ],
)
def test_duplicate_fields_are_400(content_type: str, raw: bytes) -> None:
    body = raw.replace(b"%s", HEX.encode())
    result = post(middleware(), raw=body, content_type=content_type)
    assert result.status == "400 Bad Request"
    assert result.body == b"duplicate field\n"
    assert result.set_cookies == []


@settings(max_examples=300, deadline=None)
@given(
    key=st.sampled_from(["consent", "msclkid", "tcf", "other"]),
    values=st.lists(
        st.one_of(
            st.sampled_from(["granted", "denied", "pending", HEX]), st.integers(), st.none(), st.text(max_size=8)
        ),
        min_size=2,
        max_size=4,
    ),
    extra=st.dictionaries(st.text(max_size=6), st.text(max_size=6), max_size=3),
)
def test_property_any_repeated_json_key_is_refused(key: str, values: list[Any], extra: dict[str, str]) -> None:
    pairs = [f"{json.dumps(k)}: {json.dumps(v)}" for k, v in extra.items() if k != key]
    pairs += [f"{json.dumps(key)}: {json.dumps(v)}" for v in values]
    raw = ("{" + ", ".join(pairs) + "}").encode()
    result = post(middleware(capture_rate=None), raw=raw)
    assert result.status == "400 Bad Request"
    assert result.body == b"duplicate field\n"
    assert result.set_cookies == []
