"""Shared HTTP plumbing for the Microsoft clients: session, User-Agent, timeouts, error wrapping.

Secrets travel only in headers and form/JSON bodies, never in URLs: urllib3 logs the request line
(method, path, query) at DEBUG and requests puts the URL into its exception messages, but neither logs
headers or bodies.  So nothing here ever builds a URL from a secret.
"""

from __future__ import annotations

import importlib.metadata
import json
from datetime import UTC, datetime
from typing import Any

import requests
import requests.auth

from msclkid_middleware.errors import TransientError
from msclkid_middleware.microsoft.retry import parse_retry_after

__all__ = [
    "DEFAULT_TIMEOUT",
    "USER_AGENT",
    "BearerAuth",
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
