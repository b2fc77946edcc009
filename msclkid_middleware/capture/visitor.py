"""The anonymous visitor ID for UET: UET's own ``_uetvid``, else our signed first-party cookie (pure).

UET CAPI's ``userData.anonymousId`` must equal the ``vid`` of the client-side ID-sync pixel
(``docs/uet.md``).  When the browser tag runs, its ``_uetvid`` cookie is that ID (its first 32 hex
characters; newer tags may append ``|...``).  Without the tag we keep our own: 32 random hex
characters in a signed, HttpOnly cookie that lives 390 days (UET's own visitor cookie lifetime),
written only with consent.  The ID is random (a v4 UUID's hex), never derived from a user's real
ID, a MAC address or a timestamp.

Token format, signed like the click cookie but under its own salt (a click token can never pass
as a visitor token, nor the reverse)::

    1.<32 hex>.<timestamp>.<signature>
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, replace
from typing import Unpack

from msclkid_middleware.capture.signing import CookieNaming, CookieOptions, SecretKeys, SignedCookie, TokenKeys

__all__ = [
    "DEFAULT_VISITOR_MAX_AGE",
    "UET_VISITOR_COOKIE",
    "VISITOR_REFRESH_AFTER",
    "VISITOR_SALT",
    "LoadedVisitor",
    "VisitorCookie",
    "is_anonymous_id",
    "uet_visitor_id",
]

VISITOR_SALT = b"msclkid-middleware.visitor-cookie.v1"
#: 390 days: the lifetime commonly given for UET's own ``_uetvid`` (13 months).
DEFAULT_VISITOR_MAX_AGE = 390 * 24 * 3600
#: A cookie older than this is re-issued (same ID, new date) on the next page view, so the ID lives
#: 390 days after the visitor's *last* visit while costing at most one Set-Cookie a day.
VISITOR_REFRESH_AFTER = 24 * 3600
#: UET's visitor cookie.
UET_VISITOR_COOKIE = "_uetvid"

_VERSION = b"1"
_NAMING = CookieNaming(
    ("visitor_cookie_name", "visitor cookie"), ("visitor_cookie_name", "cookie_domain", "visitor_max_age")
)
_HEX32 = re.compile(r"[0-9a-fA-F]{32}")
_LEADING_HEX32 = re.compile(r"[0-9a-fA-F]{32}(?![0-9a-fA-F])")


def uet_visitor_id(value: str | None) -> str | None:
    """The visitor ID in a ``_uetvid`` cookie value: its first 32 hex characters, or ``None``.

    Anything after them (a ``|...`` suffix of newer tags) is ignored; a value that does not start
    with exactly 32 hex characters is not UET's and is ignored too.  Case is kept: the same string
    must reach Microsoft from the tag (``vid``) and from us (``anonymousId``).
    """
    if not value or len(value) > 512:
        return None
    match = _LEADING_HEX32.match(value)
    return match.group(0) if match else None


def is_anonymous_id(value: object) -> bool:
    """True for a 32-hex anonymous visitor ID."""
    return isinstance(value, str) and _HEX32.fullmatch(value) is not None


@dataclass(frozen=True, slots=True)
class LoadedVisitor:
    """A verified visitor cookie."""

    visitor_id: str
    #: Seconds since epoch when this token was signed (its last refresh).
    timestamp: int
    #: Verified by an older key: re-issue it under the newest key.
    stale_key: bool


class VisitorCookie(SignedCookie[LoadedVisitor]):
    """Encode, verify and emit the signed visitor-ID cookie (attributes checked once, here).

    It reads like :class:`~msclkid_middleware.capture.cookie.ClickCookie` on purpose (a kept repeat): both are
    thin over :mod:`~msclkid_middleware.capture.signing`, but the payloads (a click ID and its capture time vs a
    visitor ID), the lifetimes (fixed from the click vs refreshed daily) and the settings named in errors differ.
    """

    __slots__ = ("_read",)

    def __init__(
        self,
        secret_keys: SecretKeys,
        *,
        name: str,
        max_age: int = DEFAULT_VISITOR_MAX_AGE,
        **options: Unpack[CookieOptions],
    ) -> None:
        keys = TokenKeys(
            secret_keys,
            VISITOR_SALT,
            _parse,
            stale=_stale,
            message="secret_keys: give at least one non-empty secret key",
        )
        # HttpOnly: page scripts get the ID from the server-rendered tag, never from the cookie.
        super().__init__(keys, name, max_age, True, _NAMING, options)
        self._read = keys.reader(256, max_age, self.clock_skew).load

    @staticmethod
    def new_id() -> str:
        """A fresh random visitor ID: 32 lowercase hex characters (a v4 UUID without dashes)."""
        return uuid.uuid4().hex

    def encode(self, visitor_id: str, timestamp: int | float) -> str:
        if not is_anonymous_id(visitor_id):
            raise ValueError("a visitor ID is 32 hex characters")
        payload = _VERSION + b"." + visitor_id.encode("ascii")
        return self.keys.sign(payload, int(timestamp))

    def decode(self, token: str | None) -> LoadedVisitor | None:
        """Verify ``token``; ``None`` when absent, tampered, expired, too new or unparsable."""
        return self._read(token, self.clock())

    def set_cookie(self, visitor_id: str, timestamp: int | float) -> str:
        """The ``Set-Cookie`` value storing ``visitor_id`` for ``max_age`` from ``timestamp``."""
        return f"{self.name}={self.encode(visitor_id, timestamp)}; Max-Age={self.max_age}{self.attributes}"


def _parse(value: bytes, timestamp: int) -> LoadedVisitor | None:
    """The visitor of a verified payload (``1.<32 hex>``) signed at ``timestamp``; ``None`` for a version or ID we
    cannot read."""
    version, _, raw = value.partition(b".")
    try:
        visitor_id = raw.decode("ascii")
    except UnicodeDecodeError:
        return None
    return LoadedVisitor(visitor_id, timestamp, False) if version == _VERSION and is_anonymous_id(visitor_id) else None


def _stale(loaded: LoadedVisitor) -> LoadedVisitor:
    """The same visitor, marked as signed by an older key (re-issued under the newest)."""
    return replace(loaded, stale_key=True)
