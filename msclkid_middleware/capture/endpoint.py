"""What the capture core answers itself: the snippet's capture endpoint and the scripts it ships (pure).

Each answer is an :class:`Answer` (status, headers, body); the adapter writes it out as its framework
does, and reads the request body through :func:`read_body` with whatever ``read(n)`` it has.
The capture endpoint (default ``POST /_msclkid``) takes a click ID and optional consent from the
snippet, checks same-origin (``Sec-Fetch-Site``, else ``Origin``), applies the same validation and
consent as a landing, and answers 204 with the signed cookie.  Request data is never echoed.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qsl

from msclkid_middleware.capture.clickid import Click, is_valid_click_id
from msclkid_middleware.capture.consent import Consent
from msclkid_middleware.capture.decision import AppRequest, Decision, DecisionContext, ProfileWrite, click_at
from msclkid_middleware.capture.ratelimit import RateLimiter
from msclkid_middleware.capture.request import RequestFacts, parse_cookies
from msclkid_middleware.errors import ConfigError

__all__ = [
    "MAX_CAPTURE_BODY",
    "Answer",
    "CaptureEndpoint",
    "StaticFile",
    "check_path",
    "is_same_origin",
    "parse_capture_body",
    "read_body",
]

#: Largest capture-endpoint body read (bytes); a larger one is answered 413 unread.
MAX_CAPTURE_BODY = 4096

Headers = list[tuple[str, str]]
ReportedState = Literal["granted", "denied", "pending"] | None

_REPORTED_STATES = frozenset({"granted", "denied", "pending"})
_MAX_TC_STRING = 2048
_NO_STORE = ("Cache-Control", "no-store")
_SNIPPET_CACHE = "public, max-age=3600"
_FORM = "application/x-www-form-urlencoded"
_JSON_TYPES = frozenset({"application/json", "text/plain"})
_DEFAULT_PORTS = {"http": "80", "https": "443"}


@dataclass(frozen=True, slots=True)
class Answer:
    """A response the core makes itself; ``decision`` carries a profile write for the adapter to run after."""

    status: str
    headers: Headers
    body: bytes = b""
    decision: Decision | None = field(default=None, compare=False)


def text_answer(status: str, reason: str) -> Answer:
    # ``reason`` is always one of our constant strings: request data is never echoed.
    return Answer(status, [_NO_STORE, ("Content-Type", "text/plain; charset=utf-8")], (reason + "\n").encode("ascii"))


INTERNAL_ERROR = Answer(
    "500 Internal Server Error", [_NO_STORE, ("Content-Type", "text/plain; charset=utf-8")], b"internal error\n"
)


def check_path(label: str, value: str | None) -> str | None:
    """An endpoint path option: an absolute URL path, or ``None`` to turn the endpoint off."""
    if value is None:
        return None
    if (
        not isinstance(value, str)
        or not value.startswith("/")
        or value.startswith("//")
        or any(c in value for c in "?#;\\ \t\r\n")
        or not value.isascii()
        or len(value) > 200
    ):
        raise ConfigError(
            f"{label} must be an absolute URL path such as '/_msclkid' (no query, fragment or spaces), or None "
            "to turn it off",
            setting=label,
        )
    return value


# -- the shipped scripts ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StaticFile:
    """A script shipped in ``msclkid_middleware/static/`` and its ETag (``body`` ``None``: file missing, 404)."""

    body: bytes | None
    etag: str

    @classmethod
    def load(cls, name: str, label: str, log: logging.Logger) -> StaticFile:
        from importlib.resources import files

        try:
            body = (files("msclkid_middleware") / "static" / name).read_bytes()
        except (OSError, ModuleNotFoundError):
            log.warning("%s file msclkid_middleware/static/%s not found; its path answers 404", label, name)
            return cls(None, "")
        return cls(body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')

    def serve(self, request: RequestFacts) -> Answer:
        """``GET``/``HEAD`` with the snippet's caching rules (an hour, revalidated by ETag)."""
        if request.method not in ("GET", "HEAD"):
            return Answer("405 Method Not Allowed", [("Allow", "GET, HEAD"), ("Content-Type", "text/plain")])
        if self.body is None:
            return Answer("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")], b"not found\n")
        headers = [("ETag", self.etag), ("Cache-Control", _SNIPPET_CACHE)]
        if _etag_matches(request.if_none_match, self.etag):
            return Answer("304 Not Modified", headers)
        headers += [("Content-Type", "text/javascript; charset=utf-8"), ("X-Content-Type-Options", "nosniff")]
        return Answer("200 OK", headers, self.body)


def _etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    for candidate in header.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") == etag:
            return True
    return False


# -- the capture endpoint ------------------------------------------------------------------------------


def _origin_of(scheme: str, host: str) -> str | None:
    scheme = scheme.lower()
    host = host.strip().lower()
    if not host or scheme not in _DEFAULT_PORTS:
        return None
    if host.startswith("["):  # IPv6 literal
        end = host.find("]")
        if end < 0:
            return None
        name, port = host[: end + 1], host[end + 2 :] if host[end + 1 : end + 2] == ":" else ""
    else:
        name, _, port = host.partition(":")
    if port == _DEFAULT_PORTS[scheme]:
        port = ""
    return f"{scheme}://{name}:{port}" if port else f"{scheme}://{name}"


def is_same_origin(request: RequestFacts) -> bool:
    """``Sec-Fetch-Site: same-origin``; without that header, an ``Origin`` equal to our own."""
    if request.sec_fetch_site is not None:
        return request.sec_fetch_site.strip().lower() == "same-origin"
    origin = request.origin
    if not origin or origin == "null":
        return False
    scheme, sep, rest = origin.partition("://")
    if not sep or "/" in rest:
        return False
    theirs = _origin_of(scheme, rest)
    return theirs is not None and theirs == _origin_of(request.scheme, request.host)


def read_body(
    request: RequestFacts, read: Callable[[int], bytes] | None, *, terminated: bool = False
) -> bytes | Answer:
    """The capture request's body through ``read(n)``, or the 4xx answer (never more than the cap is read).

    ``terminated``: the stream ends at the body's end (WSGI's ``wsgi.input_terminated``), so a body
    without ``Content-Length`` may be read up to the cap.
    """
    raw_length = request.content_length
    if raw_length:
        try:
            length = int(raw_length)
        except ValueError:
            return text_answer("400 Bad Request", "bad content length")
        if length < 0:
            return text_answer("400 Bad Request", "bad content length")
        if length > MAX_CAPTURE_BODY:
            return text_answer("413 Content Too Large", "body too large")
        body = read(length) if (read is not None and length) else b""
        if len(body) != length:
            return text_answer("400 Bad Request", "incomplete body")
        return bytes(body)
    if terminated and read is not None:
        body = read(MAX_CAPTURE_BODY + 1)
        if len(body) > MAX_CAPTURE_BODY:
            return text_answer("413 Content Too Large", "body too large")
        return bytes(body)
    return b""


class _DuplicateKey(Exception):
    """A JSON object names a key twice (``json`` would keep the last; another parser the first)."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for key, value in pairs:
        if key in data:
            raise _DuplicateKey
        data[key] = value
    return data


def parse_capture_body(content_type: str, body: bytes) -> tuple[ReportedState, str | None, str | None] | str:
    """``(consent, msclkid, tcf)`` from the body, or a short reason for a 400.

    A key named twice (in a JSON object at any depth, or a form field) is refused: ``json`` keeps the last
    value and other parsers the first, so a repeated ``consent`` must not be able to mean two things.
    """
    media_type = content_type.split(";", 1)[0].strip().lower()
    if not body:
        return "empty body"
    data: Mapping[str, Any]
    if media_type == _FORM:
        try:
            pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=16)
        except (UnicodeDecodeError, ValueError):
            return "malformed form body"
        form: dict[str, str] = {}
        for key, value in pairs:
            if key in form:
                return "duplicate field"  # which one would a proxy or the app have read?  Neither wins.
            form[key] = value
        data = form
    elif media_type in _JSON_TYPES:
        try:
            parsed = json.loads(body, object_pairs_hook=_unique_keys)
        except _DuplicateKey:
            return "duplicate field"
        except (ValueError, RecursionError):
            return "malformed JSON body"
        if not isinstance(parsed, dict):
            return "JSON body must be an object"
        data = parsed
    else:
        return "unsupported content type"
    reported = data.get("consent")
    if reported is not None and (not isinstance(reported, str) or reported not in _REPORTED_STATES):
        return "consent must be granted, denied or pending"
    msclkid = data.get("msclkid")
    if msclkid is not None and not isinstance(msclkid, str):
        return "msclkid invalid"
    tc_string = data.get("tcf")
    if tc_string is not None and (not isinstance(tc_string, str) or len(tc_string) > _MAX_TC_STRING):
        return "tcf invalid"
    if msclkid == "":
        msclkid = None
    state: ReportedState = reported  # type: ignore[assignment]
    return state, msclkid, tc_string or None


class CaptureEndpoint:
    """Answers the snippet's capture requests with the configured cookie and consent policy.

    ``limiter``: the per-client rate limit (``None``: none); a client over it is answered 429 before
    anything else is looked at.
    """

    __slots__ = ("context", "limiter")

    def __init__(self, context: DecisionContext, limiter: RateLimiter | None = None) -> None:
        self.context = context
        self.limiter = limiter

    def precheck(self, request: RequestFacts) -> Answer | None:
        """The answer for a request refused before its body is read (wrong method, over the rate limit,
        cross-origin), else ``None``."""
        if request.method != "POST":
            return Answer("405 Method Not Allowed", [("Allow", "POST"), _NO_STORE, ("Content-Type", "text/plain")])
        if self.limiter is not None:
            wait = self.limiter.acquire(request.client_address)
            if wait is not None:
                answer = text_answer("429 Too Many Requests", "too many requests")
                return Answer(answer.status, [*answer.headers, ("Retry-After", str(wait))], answer.body)
        if not is_same_origin(request):
            return text_answer("403 Forbidden", "cross-origin request refused")
        return None

    def answer(self, request: RequestFacts, body: bytes, app_request: AppRequest) -> Answer:
        """The answer to a capture request whose body was read; its decision may hold a profile write."""
        fields = parse_capture_body(request.content_type, body)
        if isinstance(fields, str):
            return text_answer("400 Bad Request", fields)
        reported, msclkid, tc_string = fields
        cookie = self.context.cookie
        cookies, ours = parse_cookies(request.cookie_header, cookie.name)
        if reported == "denied":
            # A refusal is honoured whatever else the body holds.
            return Answer("204 No Content", [_NO_STORE, ("Set-Cookie", cookie.delete_cookie())])
        if msclkid is not None and not is_valid_click_id(msclkid):
            return text_answer("400 Bad Request", "msclkid invalid")
        if reported == "pending":
            return Answer("204 No Content", [_NO_STORE])
        if msclkid is None:
            return text_answer("400 Bad Request", "msclkid missing")
        try:
            consent = self.context.consent.decide_reported(
                request, cookies, state=reported, tc_string=tc_string, app_request=app_request
            )
            if not isinstance(consent, Consent):
                raise TypeError("the consent policy did not return a Consent")
        except Exception:
            self.context.log.warning("consent policy failed on the capture endpoint; treated as denied", exc_info=True)
            consent = Consent.denied_by("default")
        if not consent.granted:
            return Answer("204 No Content", [_NO_STORE, ("Set-Cookie", cookie.delete_cookie())])
        decision = Decision(self.context, request, cookies, consent)
        existing = cookie.decode_newest(ours)
        headers = [_NO_STORE]
        saved: Click
        if existing is not None and existing.msclkid == msclkid:
            saved = Click(existing.msclkid, existing.captured_at, "snippet")
            if existing.stale_key:
                reissued = cookie.set_cookie(existing.msclkid, existing.timestamp)
                if reissued:
                    headers.append(("Set-Cookie", reissued))
        else:
            header = cookie.set_cookie(msclkid, decision.now)
            if header:
                headers.append(("Set-Cookie", header))
            saved = click_at(msclkid, decision.now, "snippet")
            self.context.log.debug("captured click %.6s… through the capture endpoint", msclkid)  # cut, as on landings
        if self.context.profile_store is not None:
            decision.profile_write = ProfileWrite(saved, new=True)
        return Answer("204 No Content", headers, decision=decision)
