"""The facts of one request that capture decides on, and the one Cookie-header parser (pure).

An adapter builds a :class:`RequestFacts` once per request from its framework's request (the WSGI
adapter from the environ; an ASGI adapter would read the scope's headers), then hands it to
:class:`~msclkid_middleware.capture.engine.Capture`.  Every value is a plain ``str`` (or ``None``
when the request did not carry it), so nothing in ``capture/`` knows which framework served it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["RequestFacts", "parse_cookies"]


@dataclass(frozen=True, slots=True)
class RequestFacts:
    """What capture reads from one request: the method, path, query, cookies and a few headers."""

    method: str = "GET"
    path: str = "/"
    #: The raw query string (``QUERY_STRING``), undecoded.
    query: str = ""
    #: The raw ``Cookie`` header ("" without one).
    cookie_header: str = ""
    scheme: str = "http"
    #: ``Host`` (or the server's name and port when the request had none).
    host: str = ""
    client_address: str | None = None
    user_agent: str | None = None
    referer: str | None = None
    origin: str | None = None
    sec_fetch_site: str | None = None
    sec_fetch_dest: str | None = None
    #: ``Sec-Purpose``, ``Purpose`` or ``X-Purpose`` (prefetch hints), whichever came first.
    purpose: str | None = None
    #: htmx's ``HX-Request`` header.
    hx_request: str | None = None
    sec_gpc: str | None = None
    content_type: str = ""
    content_length: str | None = None
    if_none_match: str | None = None
    #: The server delivered a ``Cookie`` header that is not text: consent that needs cookies fails closed.
    cookie_unreadable: bool = False

    @classmethod
    def from_environ(cls, environ: Mapping[str, Any]) -> RequestFacts:
        """The facts of a CGI-style environ: a WSGI environ, or Django's ``request.META``.

        A value a server delivered as anything but ``str`` is treated as absent (not ours to judge).
        """
        get = environ.get
        cookie = get("HTTP_COOKIE")
        host = _text(get("HTTP_HOST"))
        if not host:
            host = f"{_text(get('SERVER_NAME')) or ''}:{_text(get('SERVER_PORT')) or ''}".rstrip(":")
        return cls(
            method=_text(get("REQUEST_METHOD")) or "GET",
            path=_text(get("PATH_INFO")) or "/",
            query=_text(get("QUERY_STRING")) or "",
            cookie_header=cookie if isinstance(cookie, str) else "",
            scheme=_text(get("wsgi.url_scheme")) or "http",
            host=host,
            client_address=_text(get("REMOTE_ADDR")) or None,
            user_agent=_text(get("HTTP_USER_AGENT")),
            referer=_text(get("HTTP_REFERER")) or None,
            origin=_text(get("HTTP_ORIGIN")),
            sec_fetch_site=_text(get("HTTP_SEC_FETCH_SITE")),
            sec_fetch_dest=_text(get("HTTP_SEC_FETCH_DEST")),
            purpose=_text(get("HTTP_SEC_PURPOSE") or get("HTTP_PURPOSE") or get("HTTP_X_PURPOSE")),
            hx_request=_text(get("HTTP_HX_REQUEST")),
            sec_gpc=_text(get("HTTP_SEC_GPC")),
            content_type=_text(get("CONTENT_TYPE")) or "",
            content_length=_text(get("CONTENT_LENGTH")),
            if_none_match=_text(get("HTTP_IF_NONE_MATCH")),
            cookie_unreadable=cookie is not None and not isinstance(cookie, str),
        )


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def parse_cookies(header: str, name: str = "") -> tuple[dict[str, str], list[str]]:
    """All cookies of a ``Cookie`` header (first value of each name wins) and every value named ``name``.

    A value in double quotes loses them.  Our own values are collected separately because a
    duplicate (a cookie tossed from a subdomain in ``__Secure-`` mode) must not hide the real one.
    """
    cookies: dict[str, str] = {}
    ours: list[str] = []
    for part in header.split(";"):
        key, sep, value = part.partition("=")
        if not sep:
            continue
        key = key.strip()
        value = value.strip()
        if len(value) > 1 and value[0] == value[-1] == '"':
            value = value[1:-1]
        if key == name:
            ours.append(value)
        if key and key not in cookies:
            cookies[key] = value
    return cookies, ours
