"""Microsoft-exact normalisation and SHA-256 hashing of email addresses and phone numbers.

Enhanced conversions only match when the advertiser formats an identifier exactly the way Microsoft
does before hashing, and a wrong hash is silently discarded (it simply never matches).  The rules
follow Microsoft's offline enhanced-conversion help ("Format and hash the data") and the UET
Conversions API guide ("Hashed identifiers"):

* email: trim, lowercase, remove accents, remove spaces, remove everything from ``+`` up to ``@``,
  remove every dot before ``@`` (for *every* domain, not only Gmail), require exactly one ``@`` and a
  dot in the domain, no leading or trailing dot; then SHA-256 as lowercase hex.
* phone: E.164 with the leading ``+`` (``+14255551234``), then SHA-256 as lowercase hex; the ``+``
  is part of the hashed text (Microsoft's published vector proves it).

Values that already are 64 hex characters are taken as hashes and pass through (lowercased).
Errors are :class:`~msclkid_middleware.errors.InvalidIdentifier` naming the rule that was broken;
they never contain the value, which is personal data.

This module is pure: stdlib only.  ``phonenumbers`` (the ``msclkid-middleware[phone]`` extra) is
imported lazily and only for national numbers that need a ``default_region``.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

from msclkid_middleware.errors import InvalidIdentifier

__all__ = [
    "MAX_EMAIL_LENGTH",
    "hash_email",
    "hash_phone",
    "is_sha256_hex",
    "normalize_email",
    "normalize_phone",
]

#: RFC 5321's limit on a forward path; longer input is not an address anyone can receive mail at.
MAX_EMAIL_LENGTH = 254

_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
# Every Unicode whitespace character: Microsoft says "remove any spaces", and a pasted address
# often carries a no-break space or a tab.
_WHITESPACE = re.compile(r"\s+")
# Separators people write inside phone numbers.  Letters (vanity numbers, "ext. 12") are refused
# rather than guessed at.
_PHONE_PUNCTUATION = re.compile(r"[\s\-\u2010-\u2015\u2212.()/]+")
# "+44 (0)20 7946 0958": the bracketed trunk zero is not dialled from abroad and is not in E.164.
_TRUNK_ZERO = re.compile(r"\(\s*0\s*\)")
_DIGITS = re.compile(r"[0-9]+")
_ASCII_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
#: E.164 allows at most 15 digits; the shortest numbers in service (Niue, Tokelau: a 3-digit
#: country code and a 4-digit subscriber number) have 7.
_MIN_PHONE_DIGITS = 7
_MAX_PHONE_DIGITS = 15
_PHONE_EXTRA = "msclkid-middleware[phone]"


def is_sha256_hex(value: object) -> bool:
    """True when ``value`` is a string of exactly 64 hexadecimal characters (either case)."""
    return isinstance(value, str) and _HEX64.fullmatch(value) is not None


def _sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _has_control(text: str) -> bool:
    if text.isascii():  # the common case, without a per-character Unicode lookup
        return _ASCII_CONTROL.search(text) is not None
    return any(unicodedata.category(ch) in ("Cc", "Cf") for ch in text)


def _strip_accents(text: str) -> str:
    if text.isascii():
        return text
    # NFKD splits "à" into "a" + a combining grave accent, which we then drop.  It also folds
    # compatibility forms (full-width letters, ligatures) into their plain equivalents.
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def normalize_email(value: str) -> str:
    """Return ``value`` formatted the way Microsoft formats an email address before hashing.

    >>> normalize_email("  John.Doe+Newsletter@Contoso.COM ")
    'johndoe@contoso.com'

    Raises :class:`InvalidIdentifier` (field ``"email"``) naming the rule the value breaks.
    """
    field = "email"
    if not isinstance(value, str):
        raise InvalidIdentifier(field, "must be a string")
    text = value.strip()
    if not text:
        raise InvalidIdentifier(field, "must not be empty")
    text = _WHITESPACE.sub("", _strip_accents(text).lower())
    if _has_control(text):
        raise InvalidIdentifier(field, "must not contain control characters")
    if text.count("@") != 1:
        raise InvalidIdentifier(field, "must contain exactly one '@'")
    local, domain = text.split("@")
    # Everything from the first "+" up to "@" is an alias; then every dot of the local part goes.
    local = local.split("+", 1)[0].replace(".", "")
    if not local:
        raise InvalidIdentifier(field, "must have a local part before '@' (after removing dots and the +alias)")
    if "." not in domain:
        raise InvalidIdentifier(field, "must have a dot in the domain after '@'")
    if domain.startswith(".") or domain.endswith("."):
        raise InvalidIdentifier(field, "must not start or end with a dot (the domain does)")
    if ".." in domain:
        raise InvalidIdentifier(field, "must not have an empty label ('..') in the domain")
    result = f"{local}@{domain}"
    if len(result) > MAX_EMAIL_LENGTH:
        raise InvalidIdentifier(field, f"must be at most {MAX_EMAIL_LENGTH} characters")
    return result


def hash_email(value: str) -> str:
    """SHA-256 (lowercase hex) of the normalised address; a 64-hex value is taken as already hashed.

    >>> hash_email("john@contoso.com")
    'ec81f3ac7b2b19675bab9d54cf416f9f18cff87c97da5cca82c0f0891bc40602'
    """
    if isinstance(value, str):
        stripped = value.strip()
        if is_sha256_hex(stripped):
            return stripped.lower()
    return _sha256_hex(normalize_email(value))


def _check_e164_digits(digits: str) -> str:
    field = "phone"
    if not digits or _DIGITS.fullmatch(digits) is None:
        raise InvalidIdentifier(
            field, "may contain only digits after '+' or '00' (spaces, dashes, dots and parentheses are ignored)"
        )
    if digits[0] == "0":
        raise InvalidIdentifier(field, "country code must not start with 0")
    if not _MIN_PHONE_DIGITS <= len(digits) <= _MAX_PHONE_DIGITS:
        raise InvalidIdentifier(
            field, f"E.164 numbers have {_MIN_PHONE_DIGITS} to {_MAX_PHONE_DIGITS} digits including the country code"
        )
    return "+" + digits


def _national_with_region(text: str, default_region: str) -> str:
    field = "phone"
    try:
        import phonenumbers
    except ImportError:
        raise InvalidIdentifier(
            field, f"a default_region needs the phonenumbers package: pip install '{_PHONE_EXTRA}'"
        ) from None
    region = default_region.upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise InvalidIdentifier("default_region", "must be a two-letter region code known to libphonenumber")
    try:
        parsed = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        raise InvalidIdentifier(field, f"is not a phone number that can be read for region {region}") from None
    if not phonenumbers.is_possible_number(parsed):
        raise InvalidIdentifier(field, f"is not a possible phone number for region {region} (wrong length)")
    formatted: str = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    return _check_e164_digits(formatted[1:])


def normalize_phone(value: str, default_region: str | None = None) -> str:
    """Return ``value`` in E.164 form with the leading ``+`` (``"+14255551234"``).

    International input (``+`` or ``00`` prefix) is handled here without any dependency; spaces,
    dashes, dots, parentheses and slashes are ignored, and a bracketed trunk zero (``"+44 (0)20 …"``)
    is dropped.  National input (``"(425) 555-1234"``) needs ``default_region`` (``"US"``) and the
    ``phonenumbers`` package (the ``msclkid-middleware[phone]`` extra).

    >>> normalize_phone("+1 (425) 555-1234")
    '+14255551234'
    >>> normalize_phone("0044 20 7946 0958")
    '+442079460958'
    """
    field = "phone"
    if not isinstance(value, str):
        raise InvalidIdentifier(field, "must be a string")
    # NFKC turns full-width digits and plus signs into ASCII ones.
    text = unicodedata.normalize("NFKC", value).strip()
    if not text:
        raise InvalidIdentifier(field, "must not be empty")
    if _has_control(text):
        raise InvalidIdentifier(field, "must not contain control characters")
    if text.startswith(("+", "00")):
        rest = text[1:] if text.startswith("+") else text[2:]
        compact = _PHONE_PUNCTUATION.sub("", _TRUNK_ZERO.sub("", rest))
        if any(ch.isalpha() for ch in compact):
            raise InvalidIdentifier(field, "must not contain letters or an extension")
        return _check_e164_digits(compact)
    if default_region is None:
        raise InvalidIdentifier(
            field,
            "has no country code: write it as +<country code><number>, or pass default_region "
            f"(needs the '{_PHONE_EXTRA}' extra)",
        )
    if not isinstance(default_region, str):
        raise InvalidIdentifier("default_region", "must be a two-letter region code such as 'US'")
    compact = _PHONE_PUNCTUATION.sub("", text)
    if any(ch.isalpha() for ch in compact):
        raise InvalidIdentifier(field, "must not contain letters or an extension")
    return _national_with_region(text, default_region)


def hash_phone(value: str, default_region: str | None = None) -> str:
    """SHA-256 (lowercase hex) of the E.164 form *with* its ``+``; a 64-hex value passes through.

    >>> hash_phone("+14255551234")
    'c59475d96e9f01d7d18d06cfad84dd02333207f02c0c2c5663ef2782cda0390e'
    """
    if isinstance(value, str):
        stripped = value.strip()
        if is_sha256_hex(stripped):
            return stripped.lower()
    return _sha256_hex(normalize_phone(value, default_region))
