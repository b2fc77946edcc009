"""Signed cookie tokens and cookie attributes, shared by the click and the visitor cookie (pure).

Both cookies are ``1.<payload>.<timestamp>.<signature>`` tokens in itsdangerous' ``TimestampSigner`` format
(HMAC-SHA256 over a key derived from the secret and the cookie's own salt with ``key_derivation="hmac"``;
key list oldest to newest, the newest signs, every key verifies), and both carry the same attribute checks
(RFC 6265 name, bare domain, ``__Host-``/``__Secure-`` prefix rules).  One recipe for each lives here so the
two cookies cannot drift apart.

The tokens are signed and verified here with :mod:`hmac` over keys derived once (:class:`TokenKeys`), not by
itsdangerous' signer objects: itsdangerous spends about three quarters of a verification on base64 and
``datetime`` objects and exceptions around a 2 us HMAC.  The bytes are the same, both ways: a token
itsdangerous signed verifies here and one signed here verifies with itsdangerous (tested).

A browser sends the same cookie string again and again, so each :class:`TokenKeys` keeps its verified tokens
in a bounded LRU (``functools.lru_cache``: C, thread-safe): a hit skips the HMAC and the parsing, but the
token's age is checked on every hit against the clock and ``max_age``, and the key that verified it must
still be one of the configured keys.  Only verified tokens are cached: a tampered or foreign token is
checked in full every time it is seen.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import time
from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import Any, Generic, Literal, NamedTuple, TypedDict, TypeVar

from itsdangerous.signer import SigningAlgorithm

from msclkid_middleware.errors import ConfigError

__all__ = [
    "COOKIE_NAME_PATTERN",
    "DEFAULT_CLOCK_SKEW",
    "DOMAIN_PATTERN",
    "MAX_MAX_AGE",
    "VERIFIED_CACHE_SIZE",
    "CookieNaming",
    "CookieOptions",
    "HeaderWriter",
    "HmacSha256",
    "SameSite",
    "SecretKeys",
    "SignedCookie",
    "TokenKeys",
    "TokenReader",
    "as_keys",
    "check_cookie",
    "cookie_attributes",
    "deletion_header",
]

SameSite = Literal["Lax", "Strict"]
SecretKeys = str | bytes | Iterable[str | bytes] | None
T = TypeVar("T")

#: Browsers cap cookies at 400 days (RFC 6265bis); a longer Max-Age is silently shortened.
MAX_MAX_AGE = 400 * 24 * 3600
#: RFC 6265 cookie-name token characters (no separators, no CTLs, no whitespace).
COOKIE_NAME_PATTERN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,64}")
#: A host name or registrable domain: letters, digits, hyphens, dots; no port, no leading dot.
DOMAIN_PATTERN = re.compile(r"(?=.{1,253}\Z)(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9-]{1,63}")
#: Seconds a cookie's signature may be dated ahead of this host's clock (another host's clock may run ahead).
DEFAULT_CLOCK_SKEW = 300
#: Verified token strings remembered per salt (a few hundred bytes each).
VERIFIED_CACHE_SIZE = 4096

# Every token we issue: version, payload, base64 timestamp and signature, dot-separated.
_TOKEN = re.compile(r"[A-Za-z0-9_.-]+")
# Unpadded base64: the last character of a segment of length 4n+2 (4n+3) carries 4 (2) unused
# bits, which must be zero; length 4n+1 is never valid.  "" means any character.
_LAST_CHAR = {0: "", 2: "AQgw", 3: "AEIMQUYcgkosw048"}
_SEP = b"."


class HmacSha256(SigningAlgorithm):
    """HMAC-SHA256 (RFC 2104) for one key, with the key's inner and outer SHA-256 states computed once.

    A new ``hmac.HMAC`` object per signature costs three times as much; this copies two prepared
    hash states instead, on every landing and every cookie check.  The bytes are the same as
    ``hmac.digest(key, value, "sha256")`` (tested); another key falls back to it.  It stays an
    itsdangerous ``SigningAlgorithm`` so it can also be handed to an itsdangerous signer.
    """

    __slots__ = ("_inner", "_key", "_outer")

    def __init__(self, key: bytes) -> None:
        block = (hashlib.sha256(key).digest() if len(key) > 64 else key).ljust(64, b"\0")
        self._key = key
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))

    def digest(self, value: bytes) -> bytes:
        """HMAC-SHA256 of ``value`` under this key."""
        inner = self._inner.copy()
        inner.update(value)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()

    def get_signature(self, key: bytes, value: bytes) -> bytes:
        if key != self._key:
            return hmac.digest(key, value, "sha256")
        return self.digest(value)


_URLSAFE = bytes.maketrans(b"+/", b"-_")
_b2a = binascii.b2a_base64


def _b64(data: bytes) -> bytes:
    """itsdangerous' ``base64_encode``: URL-safe base64 without padding (``urlsafe_b64encode`` minus two calls)."""
    return binascii.b2a_base64(data, newline=False).translate(_URLSAFE).rstrip(b"=")


def _b64_timestamp(timestamp: int) -> bytes:
    """itsdangerous' ``base64_encode(int_to_bytes(timestamp))``: eight big-endian bytes without leading zeros."""
    return _b64(timestamp.to_bytes(8, "big").lstrip(b"\0"))


def _canonical(part: str) -> bool:
    # Canonical base64 only: a changed unused low bit in the last character decodes to the
    # same bytes, so without this check one cookie would have several valid spellings.
    allowed = _LAST_CHAR.get(len(part) % 4)
    return bool(part) and allowed is not None and (not allowed or part[-1] in allowed)


class _Unverified(Exception):
    """A token that did not verify (raised, so the LRU, which keeps only returned values, never holds it)."""


class TokenKeys(Generic[T]):
    """Sign and verify ``<payload>.<timestamp>.<signature>`` tokens for one salt and key list.

    ``secret_keys`` oldest to newest; the derived keys are held newest first (the common case, a token of
    the current key, costs one HMAC).  ``parse`` turns a verified payload and its timestamp into the
    caller's value (``None``: a well-signed payload we cannot read, absent), and ``stale`` marks such a value
    as signed by an older key (to be re-issued).  ``message`` is the :class:`ConfigError` text for a missing or
    empty key.
    """

    __slots__ = ("_index", "_inner", "_keys", "_outer", "_parse", "_signer", "_stale", "_stamp", "_verified")

    def __init__(
        self,
        secret_keys: SecretKeys,
        salt: bytes,
        parse: Callable[[bytes, int], T | None],
        *,
        stale: Callable[[T], T],
        message: str,
    ) -> None:
        keys = as_keys(secret_keys)
        if not keys or any(not isinstance(k, str | bytes) or not k for k in keys):
            raise ConfigError(message, setting="MSCLKID_SECRET_KEYS")
        derived = [_derive(key, salt) for key in reversed(keys)]
        self._keys = tuple((HmacSha256(key), key) for key in derived)
        # The first position of each derived key (a key listed twice verifies as the newer one).
        self._index: dict[bytes, int] = {}
        for position, key in enumerate(derived):
            self._index.setdefault(key, position)
        self._parse = parse
        self._stale = stale
        self._verified = lru_cache(maxsize=VERIFIED_CACHE_SIZE)(self._verify_signature)
        newest = self._keys[0][0]
        self._signer = newest.digest
        # header() copies the newest key's prepared states itself: a landing's one HMAC without another call.
        self._inner = newest._inner
        self._outer = newest._outer
        # Landings sign "now": the encoded timestamp (with its leading dot, as bytes and as text) changes once a
        # second, so the last one is kept, with its time in one tuple (one store: threads never see a time with
        # another time's stamp).
        self._stamp = (-1, b"", "")

    def sign(self, payload: bytes, timestamp: int) -> str:
        """The token for ``payload`` dated ``timestamp``, signed with the newest key."""
        last, stamp, _ = self._stamp
        if timestamp != last:
            stamp = self._new_stamp(timestamp)[1]
        message = payload + stamp
        # A SHA-256 digest is 32 bytes: 43 base64 characters and one "=" that itsdangerous leaves out.
        signature = binascii.b2a_base64(self._signer(message), newline=False)[:43].translate(_URLSAFE)
        return (message + _SEP + signature).decode("ascii")

    def writer(self, head: str, prefix: str, tail: str) -> HeaderWriter:
        """A :class:`HeaderWriter` for ``Set-Cookie`` values ``<head><token><tail>`` of payloads ``prefix + value``."""
        return HeaderWriter(self, head, prefix, tail)

    def _new_stamp(self, timestamp: int) -> tuple[int, bytes, str]:
        encoded = _SEP + _b64_timestamp(timestamp)
        stamp = (timestamp, encoded, encoded.decode("ascii"))
        self._stamp = stamp
        return stamp

    def reader(self, max_length: int, max_age: int, clock_skew: float) -> TokenReader[T]:
        """A :class:`TokenReader`: verification within these limits (``max_age`` is required: expiry is always
        checked)."""
        return TokenReader(self, max_length, max_age, clock_skew)

    def _verify_signature(self, token: str) -> tuple[T | None, int, bytes]:
        """``(parsed payload, timestamp, derived key)`` of a token one of our keys signed, else :class:`_Unverified`."""
        if _TOKEN.fullmatch(token) is None:
            # Only tokens in the alphabet we emit: itsdangerous' base64 decoding silently drops
            # non-ASCII characters, which would make a decorated copy of a token verify.
            raise _Unverified
        parts = token.split(".")
        if len(parts) != 4 or not _canonical(parts[2]) or not _canonical(parts[3]):
            raise _Unverified
        message = token[: token.rindex(".")].encode("ascii")
        signature = parts[3].encode("ascii")
        for mac, derived in self._keys:
            if hmac.compare_digest(_b64(mac.digest(message)), signature):
                key = derived
                break
        else:
            raise _Unverified
        stamp = base64.urlsafe_b64decode(parts[2] + "=" * (-len(parts[2]) % 4))
        if len(stamp) > 8:
            raise _Unverified  # itsdangerous reads at most eight bytes: anything longer is malformed
        timestamp = int.from_bytes(stamp, "big")
        return self._parse(message[: message.rindex(_SEP)], timestamp), timestamp, key


class HeaderWriter:
    """``write(value, timestamp)``: the ``Set-Cookie`` value ``<head><token><tail>`` for the ASCII payload
    ``prefix + value``, signed with the newest key of a :class:`TokenKeys`.

    :meth:`TokenKeys.sign`'s token, built as text in one piece: a landing pays for one call and one format, not for
    encoding, joining and decoding the token and then formatting the header around it.  ``head`` is ``name=``,
    ``tail`` the ``; Max-Age=...`` attributes: a cookie binds its constant parts once and keeps ``writer.write``,
    so a request makes one call with two arguments (``functools.partial`` over a bound method with five is a slower
    path in CPython: it copies the arguments to the heap).
    """

    __slots__ = ("_head", "_keys", "_prefix", "_tail")

    def __init__(self, keys: TokenKeys[Any], head: str, prefix: str, tail: str) -> None:
        self._keys = keys
        self._head = head
        self._prefix = prefix
        self._tail = tail

    def write(self, value: str, timestamp: int) -> str:
        keys = self._keys
        last, _, stamp = keys._stamp
        if timestamp != last:
            stamp = keys._new_stamp(timestamp)[2]
        message = f"{self._prefix}{value}{stamp}"
        inner = keys._inner.copy()
        inner.update(message.encode())
        outer = keys._outer.copy()
        outer.update(inner.digest())
        # b2a_base64 ends a digest's 43 characters with "=" and a newline: the slice drops both (no keyword call).
        signature = _b2a(outer.digest())[:43].translate(_URLSAFE).decode()
        return f"{self._head}{message}.{signature}{self._tail}"


class TokenReader(Generic[T]):
    """``load(token, now)``: the parsed payload of a token one of a :class:`TokenKeys`' keys signed at most
    ``max_age`` seconds before ``now``.

    ``None`` when absent, longer than ``max_length``, not canonical, tampered, expired, dated further ahead than
    ``clock_skew``, or not readable by ``parse``; a value an older key signed comes through ``stale``.  Expiry and
    the key are checked on every call, cached or not; only the HMAC and the parsing are remembered.  A cookie keeps
    ``reader.load``: one call with two arguments per request.
    """

    __slots__ = ("_keys", "clock_skew", "max_age", "max_length")

    def __init__(self, keys: TokenKeys[T], max_length: int, max_age: int, clock_skew: float) -> None:
        self._keys = keys
        self.max_length = max_length
        self.max_age = max_age
        self.clock_skew = clock_skew

    def load(self, token: str | None, now: float) -> T | None:
        if not token or len(token) > self.max_length:
            return None
        keys = self._keys
        try:
            parsed, timestamp, key = keys._verified(token)
        except _Unverified:
            return None
        index = keys._index.get(key)
        if index is None:  # pragma: no cover - the keys are fixed per instance; kept should they ever change
            return None
        age = int(now) - timestamp
        # itsdangerous' rule (0 <= age <= max_age, whole seconds), plus a signature dated in the
        # future by at most clock_skew: another host's clock may run slightly ahead.
        if age > self.max_age or (age < 0 and not 0 < timestamp - now <= self.clock_skew) or parsed is None:
            return None
        return parsed if index == 0 else keys._stale(parsed)


def _derive(secret: str | bytes, salt: bytes) -> bytes:
    """itsdangerous' ``key_derivation="hmac"``: HMAC(secret, salt) with SHA-256."""
    return hmac.digest(secret.encode("utf-8") if isinstance(secret, str) else secret, salt, "sha256")


def as_keys(secret_keys: SecretKeys) -> tuple[str | bytes, ...]:
    """The secret keys as a tuple, oldest to newest (a single key is a list of one)."""
    if secret_keys is None:
        return ()
    if isinstance(secret_keys, str | bytes):
        return (secret_keys,)
    return tuple(secret_keys)


def check_cookie(
    name: object,
    domain: str | None,
    secure: bool,
    max_age: object,
    *,
    labels: tuple[str, str],
    settings: tuple[str, str, str],
    host_hint: str = "",
) -> str | None:
    """Check a cookie's name, domain, prefix rules and lifetime; the domain without a leading dot.

    ``labels``: how the name option and the cookie are called in messages (``"cookie_name"``, ``"cookie"``);
    ``settings``: the settings named in errors for the name, the domain and the lifetime.
    """
    name_label, what = labels
    name_setting, domain_setting, age_setting = settings
    if not isinstance(name, str) or COOKIE_NAME_PATTERN.fullmatch(name) is None:
        raise ConfigError(
            f"{name_label} must be 1-64 cookie token characters (letters, digits, '-', '_', ...)", setting=name_setting
        )
    if domain is not None:
        domain = domain.lstrip(".")
        if DOMAIN_PATTERN.fullmatch(domain) is None:
            raise ConfigError(
                "cookie_domain must be a bare domain such as 'example.com' (no scheme, port or path)",
                setting=domain_setting,
            )
    if name.startswith("__Host-") and (domain is not None or not secure):
        raise ConfigError(
            f"a '__Host-' {what} must be Secure and have no Domain (browsers drop it otherwise){host_hint}",
            setting=name_setting,
        )
    if name.startswith("__Secure-") and not secure:
        raise ConfigError(
            f"a '__Secure-' {what} must be Secure (browsers drop it otherwise); use a name without the prefix for "
            "plain-http development",
            setting=name_setting,
        )
    if isinstance(max_age, bool) or not isinstance(max_age, int) or not 0 < max_age <= MAX_MAX_AGE:
        label = "max_age" if age_setting.startswith("MSCLKID_") else age_setting
        raise ConfigError(
            f"{label} must be between 1 second and 400 days (browsers cap cookies at 400 days)", setting=age_setting
        )
    return domain


def cookie_attributes(*, domain: str | None, secure: bool, http_only: bool, samesite: SameSite) -> str:
    """The constant tail of a ``Set-Cookie`` value: ``; Path=/; Domain=...; Secure; HttpOnly; SameSite=...``."""
    parts = ["Path=/"]
    if domain is not None:
        parts.append(f"Domain={domain}")
    if secure:
        parts.append("Secure")
    if http_only:
        parts.append("HttpOnly")
    parts.append(f"SameSite={samesite}")
    return "; " + "; ".join(parts)


def deletion_header(name: str, attributes: str) -> str:
    """The ``Set-Cookie`` value that removes cookie ``name`` (same path and domain as it was set with)."""
    return f"{name}=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT{attributes}"


class CookieOptions(TypedDict, total=False):
    """The attributes the click and the visitor cookie share (a site sets them once, for both)."""

    domain: str | None
    secure: bool
    samesite: SameSite
    clock_skew: int
    clock: Callable[[], float]


class CookieNaming(NamedTuple):
    """How a cookie's options are called in :class:`ConfigError` messages (see :func:`check_cookie`)."""

    labels: tuple[str, str]
    settings: tuple[str, str, str]
    host_hint: str = ""


class SignedCookie(Generic[T]):
    """What the click and the visitor cookie share: a name and attributes checked once (:func:`check_cookie`),
    the signing keys of one salt, the clock and tolerance every verification uses, and the constant tails of
    their ``Set-Cookie`` values.  Each cookie adds its own payload, lifetime rules and checks."""

    __slots__ = (
        "attributes",
        "clock",
        "clock_skew",
        "deletion",
        "domain",
        "http_only",
        "keys",
        "max_age",
        "name",
        "samesite",
        "secure",
    )

    def __init__(
        self, keys: TokenKeys[T], name: str, max_age: int, http_only: bool, naming: CookieNaming, options: CookieOptions
    ) -> None:
        secure = options.get("secure", True)
        samesite: SameSite = options.get("samesite", "Lax")
        self.domain = check_cookie(
            name,
            options.get("domain"),
            secure,
            max_age,
            labels=naming.labels,
            settings=naming.settings,
            host_hint=naming.host_hint,
        )
        self.name = name
        self.secure = secure
        self.samesite = samesite
        self.http_only = http_only
        self.max_age = max_age
        self.clock_skew = options.get("clock_skew", DEFAULT_CLOCK_SKEW)
        self.clock = options.get("clock", time.time)
        self.keys = keys
        #: ``; Path=/; ...``: what follows the value in every ``Set-Cookie`` of this cookie.
        self.attributes = cookie_attributes(domain=self.domain, secure=secure, http_only=http_only, samesite=samesite)
        self.deletion = deletion_header(name, self.attributes)

    def delete_cookie(self) -> str:
        """The ``Set-Cookie`` value that removes the cookie (same name, path and domain)."""
        return self.deletion
