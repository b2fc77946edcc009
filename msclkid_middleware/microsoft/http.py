"""Shared HTTP plumbing for the Microsoft clients: session, User-Agent, timeouts, error wrapping.

:class:`SessionClient` is the one place that owns a ``requests.Session`` (built on first use, closed only
when we built it) and posts JSON with a bearer token; the Campaign Management, UET and OAuth clients build
on it instead of repeating that handling.

Secrets travel only in headers and form/JSON bodies, never in URLs: urllib3 logs the request line
(method, path, query) at DEBUG and requests puts the URL into its exception messages, but neither logs
headers or bodies.  So nothing here ever builds a URL from a secret.
"""

from __future__ import annotations

import email.utils
import functools
import importlib.metadata
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Self

import requests
import requests.auth

from msclkid_middleware.errors import TransientError
from msclkid_middleware.microsoft.retry import parse_retry_after

__all__ = [
    "DEFAULT_TIMEOUT",
    "USER_AGENT",
    "BearerAuth",
    "ServerClock",
    "SessionClient",
    "Timeout",
    "build_session",
    "json_body",
    "network_error",
    "retry_after",
]

#: (connect, read) seconds.  Connect fails fast; the read allows a 1,000-item Apply to be processed.
Timeout = float | tuple[float, float]
DEFAULT_TIMEOUT: tuple[float, float] = (5.0, 60.0)


def _version() -> str:
    try:
        return importlib.metadata.version("msclkid-middleware")
    except importlib.metadata.PackageNotFoundError:  # running from a checkout
        return "0.1.0.dev0"


USER_AGENT = f"msclkid-middleware/{_version()} (+https://pypi.org/project/msclkid-middleware/) python-requests"


def build_session() -> requests.Session:
    session = requests.Session()
    # trust_env stays on (HTTPS_PROXY, CA bundles); credentials always go through BearerAuth, which also
    # stops requests from replacing our Authorization header with ~/.netrc credentials for the host.
    session.headers.update({"User-Agent": USER_AGENT, "Accept": "application/json"})
    return session


class BearerAuth(requests.auth.AuthBase):
    """``Authorization: Bearer <token>``; its ``repr`` never shows the token."""

    __slots__ = ("_token",)

    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._token}"
        return request

    def __repr__(self) -> str:
        return "BearerAuth(<redacted>)"


def json_body(response: requests.Response) -> Any:
    """The parsed JSON body, or ``None`` when the body is empty or not JSON (an HTML error page)."""
    if not response.content:
        return None
    try:
        return json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        return None


def retry_after(response: requests.Response) -> float | None:
    return parse_retry_after(response.headers.get("Retry-After"), datetime.now(UTC))


def network_error(what: str, exc: requests.RequestException) -> TransientError:
    """A transient error for a failed exchange; the message names the endpoint, never headers or bodies."""
    if isinstance(exc, requests.Timeout):
        kind = "read timeout" if isinstance(exc, requests.ReadTimeout) else "timeout"
    elif isinstance(exc, requests.ConnectionError):
        kind = "connection error"
    else:
        kind = type(exc).__name__
    return TransientError(f"{what}: {kind} ({type(exc).__name__})")


@dataclass(frozen=True, slots=True)
class ServerClock:
    """Microsoft's ``Date`` response header beside our clock when the answer arrived (for clock-skew checks).

    ``skew`` is server minus local; the header has whole seconds, so anything under ~1 s is noise.
    """

    server: datetime
    local: datetime

    @property
    def skew(self) -> timedelta:
        return self.server - self.local

    @classmethod
    def from_response(cls, response: requests.Response, local: datetime) -> ServerClock | None:
        value = response.headers.get("Date")
        if not value:
            return None
        try:
            server = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if server.tzinfo is None:
            server = server.replace(tzinfo=UTC)
        return cls(server.astimezone(UTC), local)


class SessionClient:
    """Base of the Microsoft clients: one ``requests.Session``, built on first use, one thread at a time.

    A session passed in is the caller's: :meth:`close` leaves it open.  Constructing a client (at import
    or config time) opens nothing.
    """

    #: Items may be stored JSON (:class:`~msclkid_middleware.microsoft.wirejson.WireJson`): the dispatcher hands
    #: the outbox's payloads over undecoded, to be spliced into the request body.
    accepts_stored_json = True

    def __init__(self, *, timeout: Timeout = DEFAULT_TIMEOUT, session: requests.Session | None = None) -> None:
        self.timeout = timeout
        self._session = session
        self._own_session = session is None

    @property
    def session(self) -> requests.Session:
        if self._session is None:
            self._session = build_session()
        return self._session

    def close(self) -> None:
        if self._own_session and self._session is not None:
            self._session.close()
            self._session = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def post_json(
        self,
        url: str,
        payload: Mapping[str, Any] | str,
        *,
        token: str,
        headers: Mapping[str, str],
        what: str,
        method: str = "POST",
    ) -> requests.Response:
        """Send ``payload`` as JSON with ``Authorization: Bearer``; a failed exchange raises ``TransientError``.

        ``method`` is ``POST`` for every operation but the REST updates (``PUT .../ConversionGoals``).  ``payload``
        is a mapping to encode, or a body already encoded as JSON text (stored items spliced in by
        :mod:`~msclkid_middleware.microsoft.wirejson`).  A read timeout after the body was sent leaves the outcome
        unknown; callers may resend because every payload we send is idempotent on Microsoft's side (see
        ``retry.py``).
        """
        # POST goes through ``session.post`` (what callers and tests wrap); the updates use ``request``.
        send = self.session.post if method == "POST" else functools.partial(self.session.request, method)
        encoded = payload if isinstance(payload, str) else json.dumps(dict(payload), allow_nan=False)
        try:
            return send(
                url,
                data=encoded.encode("utf-8"),
                auth=BearerAuth(token),
                headers={"Content-Type": "application/json", "Accept": "application/json", **headers},
                timeout=self.timeout,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            raise network_error(what, exc) from None
