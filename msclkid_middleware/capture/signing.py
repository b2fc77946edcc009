"""Signed cookie tokens and cookie attributes, shared by the click and the visitor cookie (pure).

Both cookies are ``1.<payload>.<timestamp>.<signature>`` tokens signed by itsdangerous under their own
salt (HMAC-SHA256, key list oldest to newest, the newest signs, every key verifies), and both carry the
same attribute checks (RFC 6265 name, bare domain, ``__Host-``/``__Secure-`` prefix rules).  One recipe
for each lives here so the two cookies cannot drift apart.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Literal

from itsdangerous import BadData, SignatureExpired, Signer, TimestampSigner
from itsdangerous.encoding import base64_encode, int_to_bytes
from itsdangerous.signer import SigningAlgorithm

from msclkid_middleware.errors import ConfigError

__all__ = [
    "COOKIE_NAME_PATTERN",
    "DOMAIN_PATTERN",
    "MAX_MAX_AGE",
    "HmacSha256",
    "SameSite",
    "SecretKeys",
    "TimedSigner",
    "as_keys",
    "check_cookie",
    "cookie_attributes",
    "deletion_header",
    "signers_for",
    "verify_token",
]

SameSite = Literal["Lax", "Strict"]
SecretKeys = str | bytes | Iterable[str | bytes] | None

#: Browsers cap cookies at 400 days (RFC 6265bis); a longer Max-Age is silently shortened.
MAX_MAX_AGE = 400 * 24 * 3600
#: RFC 6265 cookie-name token characters (no separators, no CTLs, no whitespace).
COOKIE_NAME_PATTERN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,64}")
#: A host name or registrable domain: letters, digits, hyphens, dots; no port, no leading dot.
DOMAIN_PATTERN = re.compile(r"(?=.{1,253}\Z)(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9-]{1,63}")

# Every token we issue: version, payload, base64 timestamp and signature, dot-separated.
_TOKEN = re.compile(r"[A-Za-z0-9_.-]+")
# Unpadded base64: the last character of a segment of length 4n+2 (4n+3) carries 4 (2) unused
# bits, which must be zero; length 4n+1 is never valid.  "" means any character.
_LAST_CHAR = {0: "", 2: "AQgw", 3: "AEIMQUYcgkosw048"}


class HmacSha256(SigningAlgorithm):
    """HMAC-SHA256 (RFC 2104) for one key, with the key's inner and outer SHA-256 states computed once.

    itsdangerous' own HMACAlgorithm builds an ``hmac.HMAC`` object per signature; this copies two
    prepared hash states instead, a third of the time, on every landing and every cookie check.
    The bytes are the same as ``hmac.digest(key, value, "sha256")`` (tested); another key falls back to it.
    """

    __slots__ = ("_inner", "_key", "_outer")

    def __init__(self, key: bytes) -> None:
        block = (hashlib.sha256(key).digest() if len(key) > 64 else key).ljust(64, b"\0")
        self._key = key
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))

    def get_signature(self, key: bytes, value: bytes) -> bytes:
        if key != self._key:
            return hmac.digest(key, value, "sha256")
        inner = self._inner.copy()
        inner.update(value)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()


class TimedSigner(TimestampSigner):
    """A TimestampSigner for one key and salt, with an injectable clock and the derived key cached.

    itsdangerous derives the HMAC key from (secret, salt) on every call; with one key per
    signer the derivation is done once, here.
    """

    def __init__(self, secret_key: str | bytes, clock: Callable[[], float], salt: bytes) -> None:
        super().__init__(secret_key, salt=salt, key_derivation="hmac", digest_method=hashlib.sha256)
        self._clock = clock
        self._derived = TimestampSigner.derive_key(self)
        self.algorithm = HmacSha256(self._derived)

    def derive_key(self, secret_key: str | bytes | None = None) -> bytes:
        # This signer holds exactly one key, so every derivation yields the cached value.
        return self._derived

    def get_timestamp(self) -> int:
        return int(self._clock())

    def sign_at(self, value: bytes, timestamp: int) -> bytes:
        """Sign ``value`` as if at ``timestamp`` (the click's capture time)."""
        return Signer.sign(self, value + self.sep + base64_encode(int_to_bytes(timestamp)))


def verify_token(
    token: str | None,
    signers: tuple[TimedSigner, ...],
    *,
    max_length: int,
    max_age: int,
    clock: Callable[[], float],
    clock_skew: float,
) -> tuple[bytes, datetime, int] | None:
    """``(payload, signed_at, key index)`` of a token one of ``signers`` (newest first) signed, else ``None``.

    ``None`` when absent, too long, not canonical, tampered, expired or dated further ahead than
    ``clock_skew``.
    """
    if not token or len(token) > max_length or _TOKEN.fullmatch(token) is None:
        # Only tokens in the alphabet we emit: itsdangerous' base64 decoding silently drops
        # non-ASCII characters, which would make a decorated copy of a token verify.
        return None
    parts = token.split(".")
    if len(parts) != 4:
        return None
    for part in parts[2:]:
        # Canonical base64 only: a changed unused low bit in the last character decodes to the
        # same bytes, so without this check one cookie would have several valid spellings.
        allowed = _LAST_CHAR.get(len(part) % 4)
        if not part or allowed is None or (allowed and part[-1] not in allowed):
            return None
    for index, signer in enumerate(signers):
        try:
            value, signed_at = signer.unsign(token, max_age=max_age, return_timestamp=True)
        except SignatureExpired as exc:
            # Raised only after the signature verified.  Dated in the future within the skew
            # allowance: another host's clock runs ahead, accept.  Too old or too new: absent.
            if exc.date_signed is None or not isinstance(exc.payload, bytes):
                return None
            ahead = exc.date_signed.timestamp() - clock()
            if not 0 < ahead <= clock_skew:
                return None
            value, signed_at = exc.payload, exc.date_signed
        except BadData:
            continue  # not this key (or garbage): try the next one
        return value, signed_at, index
    return None


def as_keys(secret_keys: SecretKeys) -> tuple[str | bytes, ...]:
    """The secret keys as a tuple, oldest to newest (a single key is a list of one)."""
    if secret_keys is None:
        return ()
    if isinstance(secret_keys, str | bytes):
        return (secret_keys,)
    return tuple(secret_keys)


def signers_for(
    secret_keys: SecretKeys, clock: Callable[[], float], salt: bytes, *, message: str
) -> tuple[TimedSigner, ...]:
    """One signer per key, newest first (the common case, a token of the current key, costs one HMAC).

    ``message`` is the :class:`ConfigError` text for a missing or empty key.
    """
    keys = as_keys(secret_keys)
    if not keys or any(not isinstance(k, str | bytes) or not k for k in keys):
        raise ConfigError(message, setting="MSCLKID_SECRET_KEYS")
    return tuple(TimedSigner(key, clock, salt) for key in reversed(keys))


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
