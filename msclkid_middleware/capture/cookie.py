"""The signed click cookie: codec and ``Set-Cookie`` header, in itsdangerous' token format (pure).

Token format (compact, URL-safe, 85 characters for a 32-hex ID; the whole header is about 160)::

    1.<msclkid>.<timestamp>.<signature>

``1`` is the payload version; ``<timestamp>`` is itsdangerous' base64 timestamp and holds the
moment the click was *captured* (not the moment of signing), so re-signing a cookie under a new
key keeps its age, and ``max_age`` counts from the click (fixed, not sliding).  The signature is
HMAC-SHA256 over a key derived from our own salt, so a token cannot be replayed into another
itsdangerous user (a Flask session) that shares the secret, and vice versa.  The bytes are exactly
itsdangerous' ``TimestampSigner(key, salt=COOKIE_SALT, key_derivation="hmac", digest_method=sha256)``,
signed and verified by :class:`~msclkid_middleware.capture.signing.TokenKeys` without its per-call
overhead; a verified token is remembered (its age and key still checked on every request).

Secret keys are a list, oldest to newest: the newest signs, every key verifies, and a cookie
verified by an older key is reported as ``stale_key`` so the middleware re-issues it.  Expiry is
always checked (``max_age`` is a required argument of every verification); a signature dated in the future by
at most ``clock_skew`` seconds is accepted, because another host's clock may run slightly ahead.
Tampered, expired, too-future or unparsable tokens are all simply absent (``None``), and so is any
spelling of a token other than the one we emit (itsdangerous alone would ignore non-ASCII characters
and unused base64 bits).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Unpack

from msclkid_middleware.capture.clickid import Click, is_valid_click_id
from msclkid_middleware.capture.signing import (
    DEFAULT_CLOCK_SKEW,
    MAX_MAX_AGE,
    CookieNaming,
    CookieOptions,
    SameSite,
    SecretKeys,
    SignedCookie,
    TokenKeys,
)
from msclkid_middleware.errors import ConfigError

__all__ = [
    "COOKIE_SALT",
    "DEFAULT_CLOCK_SKEW",
    "DEFAULT_MAX_AGE",
    "MAX_SET_COOKIE_LENGTH",
    "ClickCookie",
    "LoadedCookie",
    "SameSite",
]

COOKIE_SALT = b"msclkid-middleware.click-cookie.v1"
DEFAULT_MAX_AGE = 90 * 24 * 3600
#: Hard cap on the whole ``Set-Cookie`` value.  Werkzeug only *warns* above 4093 bytes; a token
#: for a 64-character ID with every attribute is about 250 bytes, so 1 KiB is generous headroom.
MAX_SET_COOKIE_LENGTH = 1024

_VERSION = b"1"
#: The longest cookie value verified (ours are about 85 characters).
_MAX_TOKEN_LENGTH = 512
_SEP = b"."
_PREFIX = _VERSION + _SEP
_TEXT_PREFIX = _PREFIX.decode("ascii")
_NAMING = CookieNaming(
    ("cookie_name", "cookie"),
    ("MSCLKID_COOKIE_NAME", "MSCLKID_COOKIE_DOMAIN", "MSCLKID_COOKIE_MAX_AGE"),
    "; for a cookie shared across subdomains use cookie_name='__Secure-msclkid' with cookie_domain",
)


@dataclass(frozen=True, slots=True)
class LoadedCookie:
    """A verified click cookie."""

    msclkid: str
    captured_at: datetime
    #: Seconds since epoch of the capture (the signed timestamp).
    timestamp: int
    #: Verified by an older key: re-issue it under the newest key.
    stale_key: bool
    #: The cookie's click (``source="cookie"``), built once from the verified values.
    click: Click


class ClickCookie(SignedCookie[LoadedCookie]):
    """Encode, verify and emit the signed click cookie.

    ``secret_keys`` is a key or a list of keys, oldest to newest.  Cookie attributes are
    validated here and the constant part of the header is built once.
    """

    __slots__ = ("fresh", "load")

    def __init__(
        self,
        secret_keys: SecretKeys,
        *,
        name: str = "__Host-msclkid",
        http_only: bool = True,
        max_age: int = DEFAULT_MAX_AGE,
        **options: Unpack[CookieOptions],
    ) -> None:
        keys = TokenKeys(
            secret_keys,
            COOKIE_SALT,
            _parse,
            stale=_stale,
            message="secret_keys: give at least one non-empty secret key (a list, oldest to newest), for example "
            "secret_keys=[os.environ['MSCLKID_SECRET_KEYS']]",
        )
        super().__init__(keys, name, max_age, http_only, _NAMING, options)
        samesite, clock_skew = self.samesite, self.clock_skew
        if samesite not in ("Lax", "Strict"):
            raise ConfigError("cookie_samesite must be 'Lax' or 'Strict'", setting="cookie_samesite")
        if isinstance(clock_skew, bool) or not isinstance(clock_skew, int) or not 0 <= clock_skew <= 3600:
            raise ConfigError("clock_skew must be between 0 and 3600 seconds", setting="clock_skew")
        longest = f"{name}={'x' * 160}; Max-Age={MAX_MAX_AGE}{self.attributes}"
        if len(longest) > MAX_SET_COOKIE_LENGTH:
            raise ConfigError(
                f"the click cookie header would exceed {MAX_SET_COOKIE_LENGTH} bytes; shorten cookie_name or "
                "cookie_domain",
                setting="MSCLKID_COOKIE_DOMAIN",
            )
        #: ``fresh(msclkid, now)``: the ``Set-Cookie`` of a click captured ``now`` (its whole ``max_age`` ahead), for
        #: an ID capture has validated.  The landing's header, with name, version and attributes bound once.
        self.fresh: Callable[[str, int], str] = keys.writer(
            f"{name}=", _TEXT_PREFIX, f"; Max-Age={max_age}{self.attributes}"
        ).write
        #: ``load(token, now)``: the verified click of one cookie value at ``now``, or ``None`` (:meth:`decode`
        #: without the clock, in one call: what the engine asks of a request carrying our cookie once).
        self.load: Callable[[str | None, float], LoadedCookie | None] = keys.reader(
            _MAX_TOKEN_LENGTH, max_age, clock_skew
        ).load

    # -- codec ------------------------------------------------------------------------------------
    def encode(self, msclkid: str, captured_at: int | float | datetime) -> str:
        """The signed token for a click, signed with the newest key."""
        if not is_valid_click_id(msclkid):
            raise ValueError("not a valid click ID")
        ts = int(captured_at.timestamp()) if isinstance(captured_at, datetime) else int(captured_at)
        return self.keys.sign(_PREFIX + msclkid.encode("ascii"), ts)

    def decode(self, token: str | None, now: float | None = None) -> LoadedCookie | None:
        """Verify ``token`` (at ``now``, the clock's time by default); ``None`` when it is absent, tampered,
        expired, too new or unparsable."""
        return self.load(token, self.clock() if now is None else now)

    def decode_newest(self, tokens: list[str], now: float | None = None) -> LoadedCookie | None:
        """The newest verified click among several values of our cookie (a duplicate tossed from a subdomain
        in ``__Secure-`` mode must not hide the real one); every value is looked at (``parse_cookies`` bounds
        them by the cookie header cap, ``request.MAX_COOKIE_HEADER``)."""
        if now is None:
            now = self.clock()
        load = self.load
        best: LoadedCookie | None = None
        for token in tokens:
            loaded = load(token, now)
            if loaded is not None and (
                best is None
                or loaded.timestamp > best.timestamp
                or (loaded.timestamp == best.timestamp and best.stale_key and not loaded.stale_key)
            ):
                best = loaded
        return best

    # -- headers ----------------------------------------------------------------------------------
    def remaining_age(self, captured_at: int | float) -> int:
        """Seconds the cookie of a click captured at ``captured_at`` has left (fixed, not sliding)."""
        return max(0, min(self.max_age, int(captured_at) + self.max_age - int(self.clock())))

    def set_cookie(self, msclkid: str, captured_at: int | float) -> str | None:
        """The ``Set-Cookie`` value storing a click, or ``None`` when it has no lifetime left.

        Only our own characters go into the header (the token alphabet is ``[A-Za-z0-9_.-]``),
        and the length is checked against :data:`MAX_SET_COOKIE_LENGTH`.
        """
        if not is_valid_click_id(msclkid):
            raise ValueError("not a valid click ID")
        return self.issue(msclkid, int(captured_at), int(self.clock()))

    def issue(self, msclkid: str, captured_at: int, now: int) -> str | None:
        """:meth:`set_cookie` for a click ID capture has validated already, at the decision's ``now``: the
        landing path checks an ID once, not once per use."""
        max_age = self.max_age
        age = captured_at + max_age - now
        if age <= 0:
            return None
        if age > max_age:  # a click dated ahead of this host's clock (another host's, within clock_skew)
            age = max_age
        tail = f"; Max-Age={age}{self.attributes}"
        header = self.keys.writer(f"{self.name}=", _TEXT_PREFIX, tail).write(msclkid, captured_at)
        if len(header) > MAX_SET_COOKIE_LENGTH:  # pragma: no cover - excluded by the construction check
            return None
        return header


def _stale(loaded: LoadedCookie) -> LoadedCookie:
    """The same click, marked as signed by an older key (the middleware re-issues it under the newest)."""
    return replace(loaded, stale_key=True)


def _parse(value: bytes, timestamp: int) -> LoadedCookie | None:
    """The click of a verified payload (``1.<msclkid>``); ``None`` for a version or ID we cannot read."""
    version, sep, raw_id = value.partition(_SEP)
    if version != _VERSION or not sep:
        return None  # a future payload version we cannot read counts as absent
    try:
        msclkid = raw_id.decode("ascii")
        captured_at = datetime.fromtimestamp(timestamp, UTC)
    except (UnicodeDecodeError, ValueError, OverflowError, OSError):
        return None
    if not is_valid_click_id(msclkid):
        return None
    return LoadedCookie(msclkid, captured_at, timestamp, False, Click.verified(msclkid, captured_at, "cookie"))
