"""The facts of one request that capture decides on, and the one Cookie-header parser (pure).

An adapter builds a :class:`RequestFacts` once per request from its framework's request (the WSGI
adapter from the environ, the ASGI adapter from the scope), then hands it to
:class:`~msclkid_middleware.capture.engine.Capture`.  Every value is a plain ``str`` (or ``None``
when the request did not carry it), so nothing in ``capture/`` knows which framework served it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from operator import itemgetter
from typing import TYPE_CHECKING, Any

__all__ = ["MAX_COOKIE_HEADER", "RequestFacts", "cookie_values", "facts_of", "parse_cookies", "route_path"]

_new_tuple = tuple.__new__

#: The request line's and the headers' CGI names for what capture reads lazily (field -> environ key).
_HEADER_KEYS: dict[str, str] = {
    "method": "REQUEST_METHOD",
    "path": "PATH_INFO",
    "scheme": "wsgi.url_scheme",
    "host": "HTTP_HOST",
    "client_address": "REMOTE_ADDR",
    "user_agent": "HTTP_USER_AGENT",
    "referer": "HTTP_REFERER",
    "origin": "HTTP_ORIGIN",
    "sec_fetch_site": "HTTP_SEC_FETCH_SITE",
    "sec_fetch_dest": "HTTP_SEC_FETCH_DEST",
    "purpose": "HTTP_SEC_PURPOSE",
    "hx_request": "HTTP_HX_REQUEST",
    "content_type": "CONTENT_TYPE",
    "content_length": "CONTENT_LENGTH",
    "if_none_match": "HTTP_IF_NONE_MATCH",
}
#: The ASGI headers capture reads, by their CGI names (as a WSGI server names them).
_SCOPE_KEYS: dict[bytes, str] = {
    b"cookie": "HTTP_COOKIE",
    b"sec-gpc": "HTTP_SEC_GPC",
    b"host": "HTTP_HOST",
    b"user-agent": "HTTP_USER_AGENT",
    b"referer": "HTTP_REFERER",
    b"origin": "HTTP_ORIGIN",
    b"sec-fetch-site": "HTTP_SEC_FETCH_SITE",
    b"sec-fetch-dest": "HTTP_SEC_FETCH_DEST",
    b"sec-purpose": "HTTP_SEC_PURPOSE",
    b"purpose": "HTTP_PURPOSE",
    b"x-purpose": "HTTP_X_PURPOSE",
    b"hx-request": "HTTP_HX_REQUEST",
    b"content-type": "CONTENT_TYPE",
    b"content-length": "CONTENT_LENGTH",
    b"if-none-match": "HTTP_IF_NONE_MATCH",
}

#: Characters of a ``Cookie`` header in which our own cookie's values are looked for (each one found is
#: verified: an HMAC).  Twice what common front ends accept for one header line (nginx, Apache and gunicorn
#: stop near 8 KiB), so only a header no browser sends to a default set-up reaches past it.
MAX_COOKIE_HEADER = 16 * 1024

_Items = tuple[str, str, "str | None", bool, Mapping[str, Any]]


def _text(value: object) -> str | None:
    return value if value.__class__ is str else None


class RequestFacts(_Items):
    """What capture reads from one request: the method, path, query, cookies and a few headers.

    Immutable.  Built on every request that carries a click, so only what every decision reads is read
    up front (query, ``Cookie``, ``Sec-GPC``); the method, path and other headers stay in a CGI-style
    snapshot of the request (``headers``: a copy of the WSGI environ, or the ASGI scope's headers under
    their CGI names) and are read from it when asked for.  A value a server delivered as anything but
    ``str`` counts as absent (not ours to judge).  Two facts are equal when every field is.
    """

    __slots__ = ()

    def __new__(
        cls,
        method: str = "GET",
        path: str = "/",
        query: str = "",
        cookie_header: str = "",
        scheme: str = "http",
        host: str = "",
        client_address: str | None = None,
        user_agent: str | None = None,
        referer: str | None = None,
        origin: str | None = None,
        sec_fetch_site: str | None = None,
        sec_fetch_dest: str | None = None,
        purpose: str | None = None,
        hx_request: str | None = None,
        sec_gpc: str | None = None,
        content_type: str = "",
        content_length: str | None = None,
        if_none_match: str | None = None,
        cookie_unreadable: bool = False,
    ) -> RequestFacts:
        lazy = {
            "method": method,
            "path": path,
            "scheme": scheme,
            "host": host,
            "client_address": client_address,
            "user_agent": user_agent,
            "referer": referer,
            "origin": origin,
            "sec_fetch_site": sec_fetch_site,
            "sec_fetch_dest": sec_fetch_dest,
            "purpose": purpose,
            "hx_request": hx_request,
            "content_type": content_type,
            "content_length": content_length,
            "if_none_match": if_none_match,
        }
        headers = {_HEADER_KEYS[field]: value for field, value in lazy.items() if value}
        return _new_tuple(cls, (query, cookie_header, sec_gpc, cookie_unreadable, headers))

    @classmethod
    def from_environ(cls, environ: Mapping[str, Any]) -> RequestFacts:
        """The facts of a CGI-style environ: a WSGI environ, or Django's ``request.META`` (copied, not kept)."""
        get = environ.get
        query = get("QUERY_STRING") or ""
        cookie = get("HTTP_COOKIE")
        gpc = get("HTTP_SEC_GPC")
        snapshot = environ.copy() if environ.__class__ is dict else dict(environ)
        if (
            query.__class__ is str
            and (cookie is None or cookie.__class__ is str)
            and (gpc is None or gpc.__class__ is str)
        ):
            return _new_tuple(cls, (query, cookie or "", gpc, False, snapshot))
        # A server broke the WSGI rule that values are str: such values are absent (not ours to judge).
        return _new_tuple(
            cls,
            (
                _text(query) or "",
                _text(cookie) or "",
                _text(gpc),
                cookie is not None and cookie.__class__ is not str,
                snapshot,
            ),
        )

    @classmethod
    def from_scope(cls, scope: Mapping[str, Any]) -> RequestFacts:
        """The facts of an ASGI ``http`` scope (header names lower-case bytes, values latin-1 bytes: ASGI 3).

        A repeated header is joined as WSGI servers join it (``Cookie`` with ``"; "``, the others with
        ``","``), so both adapters decide on the same text.  A scope breaking those types raises: the
        adapter then passes the request on untouched.
        """
        headers: dict[str, Any] = {}
        for name, value in scope.get("headers") or ():
            key = _SCOPE_KEYS.get(name)
            if key is not None:
                text = value.decode("latin-1")
                seen = headers.get(key)
                headers[key] = text if seen is None else seen + ("; " if key == "HTTP_COOKIE" else ",") + text
        server = scope.get("server")  # (host, port), or (socket path, None) on a Unix socket
        if server:
            headers["SERVER_NAME"] = str(server[0])
            if server[1] is not None:
                headers["SERVER_PORT"] = str(server[1])
        client = scope.get("client")
        if client:
            headers["REMOTE_ADDR"] = client[0]
        scheme = scope.get("scheme")
        if scheme:
            headers["wsgi.url_scheme"] = scheme
        headers["REQUEST_METHOD"] = scope.get("method") or "GET"
        headers["PATH_INFO"] = route_path(scope) or "/"
        query = (scope.get("query_string") or b"").decode("latin-1")
        return _new_tuple(cls, (query, headers.get("HTTP_COOKIE") or "", headers.get("HTTP_SEC_GPC"), False, headers))

    # -- the fields read up front -------------------------------------------------------------------
    if TYPE_CHECKING:  # pragma: no cover - the same fields, typed; at run time C item getters read them

        @property
        def query(self) -> str:
            """The raw query string (``QUERY_STRING``), undecoded."""

        @property
        def cookie_header(self) -> str:
            """The raw ``Cookie`` header ("" without one)."""

        @property
        def sec_gpc(self) -> str | None: ...
        @property
        def cookie_unreadable(self) -> bool:
            """The server delivered a ``Cookie`` header that is not text: consent that needs cookies fails closed."""

        @property
        def headers(self) -> Mapping[str, Any]:
            """The request's CGI-style snapshot the other fields are read from."""
    else:
        query = property(itemgetter(0))
        cookie_header = property(itemgetter(1))
        sec_gpc = property(itemgetter(2))
        cookie_unreadable = property(itemgetter(3))
        headers = property(itemgetter(4))

    # -- the fields read on demand -------------------------------------------------------------------
    @property
    def method(self) -> str:
        return _text(self[4].get("REQUEST_METHOD")) or "GET"

    @property
    def path(self) -> str:
        return _text(self[4].get("PATH_INFO")) or "/"

    @property
    def scheme(self) -> str:
        return _text(self[4].get("wsgi.url_scheme")) or "http"

    @property
    def host(self) -> str:
        """``Host`` (or the server's name and port when the request had none)."""
        get = self[4].get
        host = get("HTTP_HOST")
        if host and host.__class__ is str:
            return host
        return f"{get('SERVER_NAME') or ''}:{get('SERVER_PORT') or ''}".rstrip(":")

    @property
    def client_address(self) -> str | None:
        return _text(self[4].get("REMOTE_ADDR")) or None

    @property
    def user_agent(self) -> str | None:
        return _text(self[4].get("HTTP_USER_AGENT"))

    @property
    def referer(self) -> str | None:
        return _text(self[4].get("HTTP_REFERER")) or None

    @property
    def origin(self) -> str | None:
        return _text(self[4].get("HTTP_ORIGIN"))

    @property
    def sec_fetch_site(self) -> str | None:
        return _text(self[4].get("HTTP_SEC_FETCH_SITE"))

    @property
    def sec_fetch_dest(self) -> str | None:
        return _text(self[4].get("HTTP_SEC_FETCH_DEST"))

    @property
    def purpose(self) -> str | None:
        """``Sec-Purpose``, ``Purpose`` or ``X-Purpose`` (prefetch hints), whichever came first."""
        get = self[4].get
        return _text(get("HTTP_SEC_PURPOSE")) or _text(get("HTTP_PURPOSE")) or _text(get("HTTP_X_PURPOSE"))

    @property
    def hx_request(self) -> str | None:
        """htmx's ``HX-Request`` header."""
        return _text(self[4].get("HTTP_HX_REQUEST"))

    @property
    def content_type(self) -> str:
        return _text(self[4].get("CONTENT_TYPE")) or ""

    @property
    def content_length(self) -> str | None:
        return _text(self[4].get("CONTENT_LENGTH"))

    @property
    def if_none_match(self) -> str | None:
        return _text(self[4].get("HTTP_IF_NONE_MATCH"))

    # -- a value ------------------------------------------------------------------------------------
    def fields(self) -> dict[str, str | bool | None]:
        """Every field by name (what equality compares)."""
        return {name: getattr(self, name) for name in _FIELDS}

    def replace(self, **changes: Any) -> RequestFacts:
        """A copy with some fields changed (the adapters' framework view of scheme and host, say)."""
        fields = self.fields()
        unknown = set(changes) - set(fields)
        if unknown:
            raise TypeError(f"RequestFacts has no field(s) {sorted(unknown)}")
        fields.update(changes)
        return RequestFacts(**fields)  # type: ignore[arg-type]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RequestFacts):
            return NotImplemented
        return self.fields() == other.fields()

    def __ne__(self, other: object) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    def __hash__(self) -> int:
        return hash(tuple(self.fields().values()))

    def __repr__(self) -> str:
        return "RequestFacts(" + ", ".join(f"{name}={value!r}" for name, value in self.fields().items()) + ")"


#: ``facts_of((query, cookie_header, sec_gpc, cookie_unreadable, headers))``: the facts of values an adapter has
#: checked already (a ``str`` query and ``Cookie`` header, ``""`` when absent; Sec-GPC a ``str`` or ``None``; the
#: CGI-style snapshot), without checking them again and without a Python call (``tuple.__new__``, bound).  What
#: :meth:`RequestFacts.from_environ` builds when every value is a ``str``; that is the checked way.
facts_of: Callable[[_Items], RequestFacts] = partial(_new_tuple, RequestFacts)

#: Every field, in the order of :class:`RequestFacts`' constructor.
_FIELDS = tuple(RequestFacts.__new__.__code__.co_varnames[1 : RequestFacts.__new__.__code__.co_argcount])


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
    # The common spelling first: "...; name=value; ..." (at most one space after the ";"), no other "name" before
    # it and no second one after it.  Two partitions do it: each is one C call that returns all its pieces.
    before, sep, after = header.partition(name + "=")
    if (
        sep
        and len(before) < MAX_COOKIE_HEADER
        and (before[-2:] == "; " or before[-1:] == ";" or before == "" or before == " ")
        and name not in before
    ):
        value, sep, rest = after.partition(";")
        if not sep or name not in rest:
            value = value.strip()
            if value[-1:] == '"' and len(value) > 1 and value[0] == '"':
                value = value[1:-1]
            return [value]
    size = len(name)
    start = header.find(name) if name else -1
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
