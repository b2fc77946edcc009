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

``hash_email`` and ``hash_phone`` take a fast path for plain ASCII input (a handful of ``str``
methods, no ``unicodedata``, no regular expression in the common case) and fall back to the generic
normalisation above for anything else: non-ASCII text, hashes passed through, national numbers, and
every input that breaks a rule (so errors come from one place).  Both paths give identical results;
``tests/conversions/test_identity_fast.py`` property-tests that against a frozen copy of the generic one.

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
# The ASCII characters ``_WHITESPACE`` matches (str.isspace: \t \n \v \f \r, the separators \x1c-\x1f, space).
_ASCII_WHITESPACE = str.maketrans("", "", "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f ")
# The printable ASCII characters ``_PHONE_PUNCTUATION`` matches, for bytes.translate(None, ...).
_ASCII_PHONE_PUNCTUATION = b" -.()/"
_ZERO = ord("0")
_sha256 = hashlib.sha256


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
    # Fast path: plain ASCII that normalises without error.  For ASCII, stripping, lowercasing and
    # removing whitespace are the generic steps (NFKD changes nothing), and str.isprintable() is
    # exactly "no control character" (\x00-\x1f, \x7f).  Everything else goes the generic way.
    if value.__class__ is str and value.isascii():
        text = value.strip().lower()
        if " " in text or not text.isprintable():
            text = text.translate(_ASCII_WHITESPACE)
            if not text.isprintable():
                return _hash_email_generic(value)  # a control character: the generic path raises
        local, at, domain = text.partition("@")
        if at and "@" not in domain:
            local = local.partition("+")[0].replace(".", "")
            if local and "." in domain and domain[0] != "." and domain[-1] != "." and ".." not in domain:
                result = local + "@" + domain
                if len(result) <= MAX_EMAIL_LENGTH:
                    return _sha256(result.encode()).hexdigest()
    return _hash_email_generic(value)


def _hash_email_generic(value: str) -> str:
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
    # Fast path: printable ASCII with a "+" or "00" prefix that is a valid E.164 number once the
    # punctuation is gone.  NFKC changes no ASCII text, and with no control character the only
    # whitespace left is the space.  Everything else (errors included) goes the generic way.
    if value.__class__ is str and value.isascii():
        text = value.strip()
        if text[:1] == "+":
            rest = text[1:]
        elif text[:2] == "00":
            rest = text[2:]
        else:
            return _hash_phone_generic(value, default_region)
        if text.isprintable():
            if "(0" in rest or "( " in rest:  # only then can _TRUNK_ZERO match
                rest = _TRUNK_ZERO.sub("", rest)
            digits = rest.encode().translate(None, _ASCII_PHONE_PUNCTUATION)  # bytes: C-speed deletion
            if digits.isdigit() and digits[0] != _ZERO and _MIN_PHONE_DIGITS <= len(digits) <= _MAX_PHONE_DIGITS:
                return _sha256(b"+" + digits).hexdigest()
    return _hash_phone_generic(value, default_region)


def _hash_phone_generic(value: str, default_region: str | None) -> str:
    if isinstance(value, str):
        stripped = value.strip()
        if is_sha256_hex(stripped):
            return stripped.lower()
    return _sha256_hex(normalize_phone(value, default_region))
