"""The facts of one request that capture decides on, and the one Cookie-header parser (pure).

An adapter builds a :class:`RequestFacts` once per request from its framework's request (the WSGI
adapter from the environ, the ASGI adapter from the scope), then hands it to
:class:`~msclkid_middleware.capture.engine.Capture`.  Every value is a plain ``str`` (or ``None``
when the request did not carry it), so nothing in ``capture/`` knows which framework served it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

__all__ = ["MAX_COOKIE_HEADER", "RequestFacts", "cookie_values", "parse_cookies", "route_path"]

_new_tuple = tuple.__new__

#: The ASGI headers capture reads, each with its position in :class:`RequestFacts` (``Purpose`` variants apart).
_SCOPE_HEADERS: dict[bytes, int] = {
    b"cookie": 3,
    b"host": 5,
    b"user-agent": 7,
    b"referer": 8,
    b"origin": 9,
    b"sec-fetch-site": 10,
    b"sec-fetch-dest": 11,
    b"sec-purpose": 18,
    b"purpose": 19,
    b"x-purpose": 20,
    b"hx-request": 13,
    b"sec-gpc": 14,
    b"content-type": 15,
    b"content-length": 16,
    b"if-none-match": 17,
}

#: Characters of a ``Cookie`` header in which our own cookie's values are looked for (each one found is
#: verified: an HMAC).  Twice what common front ends accept for one header line (nginx, Apache and gunicorn
#: stop near 8 KiB), so only a header no browser sends to a default set-up reaches past it.
MAX_COOKIE_HEADER = 16 * 1024


class RequestFacts(NamedTuple):
    """What capture reads from one request: the method, path, query, cookies and a few headers.

    Immutable and slotted; a NamedTuple rather than a frozen dataclass because it is built on every
    request that carries a click, and a frozen dataclass of 19 fields costs microseconds to construct.
    """

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
        host = get("HTTP_HOST")
        if not host or not isinstance(host, str):
            host = f"{get('SERVER_NAME') or ''}:{get('SERVER_PORT') or ''}".rstrip(":")
        values = (
            get("REQUEST_METHOD") or "GET",
            get("PATH_INFO") or "/",
            get("QUERY_STRING") or "",
            cookie or "",
            get("wsgi.url_scheme") or "http",
            host,
            get("REMOTE_ADDR") or None,
            get("HTTP_USER_AGENT"),
            get("HTTP_REFERER") or None,
            get("HTTP_ORIGIN"),
            get("HTTP_SEC_FETCH_SITE"),
            get("HTTP_SEC_FETCH_DEST"),
            get("HTTP_SEC_PURPOSE") or get("HTTP_PURPOSE") or get("HTTP_X_PURPOSE"),
            get("HTTP_HX_REQUEST"),
            get("HTTP_SEC_GPC"),
            get("CONTENT_TYPE") or "",
            get("CONTENT_LENGTH"),
            get("HTTP_IF_NONE_MATCH"),
        )
        for value in values:
            if value is not None and value.__class__ is not str:
                break
        else:
            # tuple.__new__ directly: the NamedTuple's generated __new__ costs twice as much for 19 fields.
            return _new_tuple(cls, (*values, False))
        # A server broke the WSGI rule that values are str: such values are absent (not ours to judge).
        fixed = [value if value is None or isinstance(value, str) else None for value in values]
        for index, empty in ((0, "GET"), (1, "/"), (2, ""), (3, ""), (4, "http"), (5, ""), (15, "")):
            if fixed[index] is None:
                fixed[index] = empty
        return cls._make([*fixed, cookie is not None and not isinstance(cookie, str)])

    @classmethod
    def from_scope(cls, scope: Mapping[str, Any]) -> RequestFacts:
        """The facts of an ASGI ``http`` scope (header names lower-case bytes, values latin-1 bytes: ASGI 3).

        A repeated header is joined as WSGI servers join it (``Cookie`` with ``"; "``, the others with
        ``","``), so both adapters decide on the same text.  A scope breaking those types raises: the
        adapter then passes the request on untouched.
        """
        found: list[str | None] = [None] * 21
        for name, value in scope.get("headers") or ():
            index = _SCOPE_HEADERS.get(name)
            if index is not None:
                text = value.decode("latin-1")
                seen = found[index]
                found[index] = text if seen is None else seen + ("; " if index == 3 else ",") + text
        host = found[5]
        if not host:
            server = scope.get("server")  # (host, port), or (socket path, None) on a Unix socket
            host = (f"{server[0]}:{server[1]}" if server[1] is not None else str(server[0])) if server else ""
        client = scope.get("client")
        return cls(
            scope.get("method") or "GET",
            route_path(scope) or "/",
            (scope.get("query_string") or b"").decode("latin-1"),
            found[3] or "",
            scope.get("scheme") or "http",
            host,
            client[0] if client else None,
            found[7],
            found[8] or None,
            found[9],
            found[10],
            found[11],
            found[18] or found[19] or found[20],
            found[13],
            found[14],
            found[15] or "",
            found[16],
            found[17],
        )


def route_path(scope: Mapping[str, Any]) -> str:
    """An ASGI scope's path below its ``root_path`` (WSGI's ``PATH_INFO``), as Starlette routes it: servers differ
    on whether ``path`` includes the ``root_path`` an app is mounted or proxied at."""
    path: str = scope.get("path") or ""
    root = scope.get("root_path")
    if root and path.startswith(root) and path[len(root) : len(root) + 1] in ("/", ""):
        return path[len(root) :]
    return path


def parse_cookies(header: str, name: str = "") -> tuple[dict[str, str], list[str]]:
    """All cookies of a ``Cookie`` header (first value of each name wins) and every value named ``name``.

    A value in double quotes loses them.  Our own values are collected separately because a
    duplicate (a cookie tossed from a subdomain in ``__Secure-`` mode) must not hide the real one:
    every one that starts within the first :data:`MAX_COOKIE_HEADER` characters is returned.
    """
    cookies: dict[str, str] = {}
    ours: list[str] = []
    start = 0
    for part in header.split(";"):
        offset = start
        start += len(part) + 1
        key, sep, value = part.partition("=")
        if not sep:
            continue
        key = key.strip()
        value = value.strip()
        if len(value) > 1 and value[0] == value[-1] == '"':
            value = value[1:-1]
        if key == name and offset < MAX_COOKIE_HEADER:
            ours.append(value)
        if key and key not in cookies:
            cookies[key] = value
    return cookies, ours


def cookie_values(header: str, name: str, *, first: bool = False) -> list[str]:
    """Every value of cookie ``name`` in a ``Cookie`` header, exactly as :func:`parse_cookies` finds them (those
    starting within the first :data:`MAX_COOKIE_HEADER` characters).

    Scans for the name instead of splitting the whole header: a request carrying our cookie among a
    dozen analytics cookies reads only ours.  ``first``: stop at the first value (the one a dict of all
    cookies would hold).
    """
    size = len(name)
    start = header.find(name) if name else -1
    if start < 0:
        return []
    end = start + size
    before = header[start - 1] if start else ";"
    if (
        header.startswith("=", end)
        and (before == ";" or (before == " " and (start == 1 or header[start - 2] == ";")))
        and header.find(name, end) < 0
    ):
        # The common spelling, once: "...; name=value; ..." (at most one space after the ";").
        if header.rfind(";", 0, start) + 1 >= MAX_COOKIE_HEADER:
            return []
        stop = header.find(";", end)
        value = header[end + 1 : stop if stop >= 0 else len(header)].strip()
        if len(value) > 1 and value[0] == value[-1] == '"':
            value = value[1:-1]
        return [value]
    values: list[str] = []
    while start >= 0:
        end = start + size
        # A match counts when only whitespace stands between it and the previous ";" (or the start),
        # and between it and the first "=" of its part, as parse_cookies' strip() would leave it.
        part_start = header.rfind(";", 0, start) + 1
        if part_start >= MAX_COOKIE_HEADER:
            break  # as parse_cookies: values past the cookie header cap are not looked at
        equals = header.find("=", end)
        semicolon = header.find(";", end)
        if (
            equals >= 0
            and (semicolon < 0 or equals < semicolon)
            and (part_start == start or header[part_start:start].isspace())
            and (equals == end or header[end:equals].isspace())
        ):
            value = header[equals + 1 : semicolon if semicolon >= 0 else len(header)].strip()
            if len(value) > 1 and value[0] == value[-1] == '"':
                value = value[1:-1]
            values.append(value)
            if first:
                break
        start = header.find(name, end)
    return values
