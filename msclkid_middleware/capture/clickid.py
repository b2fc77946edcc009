"""The Click value and the msclkid rules: capture produces Clicks, conversions/ imports them.

Real IDs are 32 hex characters; Microsoft's own test value is ``Example-123``.  We accept
``[A-Za-z0-9_-]{1,64}`` after percent-decoding, never change case, and never echo a bad value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal
from urllib.parse import unquote_to_bytes

from msclkid_middleware.errors import InvalidClickId, ValidationError

__all__ = [
    "DEFAULT_MAX_FIELDS",
    "DEFAULT_MAX_QUERY_LENGTH",
    "MAX_CLICK_ID_LENGTH",
    "QUERY_MARKER",
    "UET_COOKIE_NAME",
    "Click",
    "ClickSource",
    "click_id_from_query",
    "click_id_from_uet_cookie",
    "is_valid_click_id",
    "validate_click_id",
]

MAX_CLICK_ID_LENGTH = 64
_VALID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def is_valid_click_id(value: object) -> bool:
    # An ASCII string is alphanumeric exactly when every character is in [A-Za-z0-9]; with "-" and "_" read as
    # "0" that is the ID alphabet.  Three C calls that each look at a character once (a replace() that finds
    # nothing returns the string itself), where strip(alphabet) searched the alphabet for every character.
    return (
        isinstance(value, str)
        and 0 < len(value) <= MAX_CLICK_ID_LENGTH
        and value.isascii()
        and value.replace("-", "0").replace("_", "0").isalnum()
    )


def validate_click_id(value: object) -> str:
    """Return ``value`` unchanged when it is a well-formed click ID, else raise :class:`InvalidClickId`."""
    if not isinstance(value, str):
        raise InvalidClickId("must be a string")
    if not value:
        raise InvalidClickId("must not be empty")
    if len(value) > MAX_CLICK_ID_LENGTH:
        raise InvalidClickId(f"must be at most {MAX_CLICK_ID_LENGTH} characters")
    if _VALID.fullmatch(value) is None:
        raise InvalidClickId("may contain only letters, digits, '-' and '_'")
    return value


# -- query strings ---------------------------------------------------------------------------------

#: Raw ``QUERY_STRING`` characters examined; a landing URL with more is read up to the last
#: complete field before the cap (a value cut in half could look like a valid, but wrong, ID).
DEFAULT_MAX_QUERY_LENGTH = 8192
#: ``&``-separated fields examined; the rest of a longer query is ignored.
DEFAULT_MAX_FIELDS = 1000

_PARAM = "msclkid"
#: A query string without this (case-insensitively) carries no click ID.
QUERY_MARKER = _PARAM
_NEEDLE = _PARAM + "="
_SKIP = len(_NEEDLE)


def click_id_from_query(
    query: str,
    max_length: int = DEFAULT_MAX_QUERY_LENGTH,
    max_fields: int = DEFAULT_MAX_FIELDS,
    lowered: str | None = None,
) -> str | None:
    """The first valid ``msclkid`` in a raw WSGI ``QUERY_STRING``, or ``None``.

    - The parameter name matches case-insensitively (``MSCLKID=``, ``MsClkId=``), as UET's tag
      and our snippet match it: on the raw name, without percent-decoding the name.
    - Only ``&`` separates fields (``;`` does not, as in :func:`urllib.parse.parse_qsl` since
      Python 3.10): ``msclkid=a;msclkid=b`` is one invalid value.
    - The value is percent-decoded to bytes; a valid ID is ASCII, so any byte outside
      ``[A-Za-z0-9_-]`` (including non-UTF-8 and latin-1 bytes, which PEP 3333 delivers as
      U+0080-U+00FF) makes that value invalid, and the next ``msclkid`` field is tried.
    - At most ``max_length`` raw characters and ``max_fields`` fields are examined.

    Invalid values are skipped silently: the caller must never echo them.  ``lowered`` is ``query.lower()``
    when the caller has it already (an adapter's cheap check lower-cases the query to look for the name).
    """
    if not query:
        return None
    if len(query) > max_length:
        # Keep only complete fields: everything before the last "&" inside the cap.
        cut = query.rfind("&", 0, max_length + 1)
        if cut <= 0:
            return None
        query = query[:cut]
        lowered = None
    if lowered is None:
        lowered = query.lower()
    if len(lowered) != len(query):  # a character whose lower case is longer: positions differ, split instead
        return _from_fields(query, max_fields)
    # Look for "msclkid=" instead of splitting every field: a landing URL carries a dozen utm_* fields.
    start = lowered.find(_NEEDLE)
    while start >= 0:
        # (A field's index is below its position: most queries need no count of the fields before it.)
        if (start == 0 or query[start - 1] == "&") and (start < max_fields or query[:start].count("&") < max_fields):
            stop = query.find("&", start)
            value = query[start + _SKIP : stop] if stop >= 0 else query[start + _SKIP :]
            # Most IDs are 32 hex characters: ASCII letters and digits, nothing to decode, no "-" or "_" to read.
            if value.isascii() and value.isalnum() and len(value) <= MAX_CLICK_ID_LENGTH:
                return value
            if "%" in value:
                value = _percent_decode(value) or ""
            # is_valid_click_id, inline (the landing path's one check of the ID).
            if (
                0 < len(value) <= MAX_CLICK_ID_LENGTH
                and value.isascii()
                and value.replace("-", "0").replace("_", "0").isalnum()
            ):
                return value
        start = lowered.find(_NEEDLE, start + _SKIP)
    return None


def _from_fields(query: str, max_fields: int) -> str | None:
    """:func:`click_id_from_query` field by field (for a query whose lower case changes its length)."""
    fields = query.split("&", max_fields)
    if len(fields) > max_fields:
        del fields[max_fields:]
    for field in fields:
        name, sep, value = field.partition("=")
        if not sep or len(name) != len(_PARAM) or name.lower() != _PARAM:
            continue
        if "%" in value:
            value = _percent_decode(value) or ""
        if _VALID.fullmatch(value) is not None:
            return value
    return None


def _percent_decode(value: str) -> str | None:
    """Percent-decode ``value``; ``None`` when the result is not ASCII (no valid ID can be)."""
    try:
        return unquote_to_bytes(value).decode("ascii")
    except (UnicodeDecodeError, UnicodeEncodeError):
        return None


# -- UET's first-party cookie -----------------------------------------------------------------------

#: UET writes ``_uetmsclkid=_uet<msclkid>``.
UET_COOKIE_NAME = "_uetmsclkid"
_UET_PREFIX = "_uet"
# Beacon-format suffixes: "-1" (new click from the URL), "-0" (from the cookie), a trailing "N"
# when the tag's cookie write failed.  Stripped only from a 32-hex ID: on other IDs (Microsoft's
# test value "Example-123", say) a trailing "-1" or "N" may be part of the ID itself.
_UET_HEX = re.compile(r"([0-9A-Fa-f]{32})(?:-[01])?N?")


def click_id_from_uet_cookie(value: str | None) -> str | None:
    """The click ID in a ``_uetmsclkid`` cookie value, or ``None`` when it holds none.

    Strips the ``_uet`` prefix (Microsoft's no-JS sample stores the raw ID without it, so the
    prefix is optional) and, from 32-hex IDs, the beacon suffixes ``-0``, ``-1`` and ``N``.
    """
    if not value:
        return None
    value = value.strip().strip('"')
    if value.startswith(_UET_PREFIX):
        value = value[len(_UET_PREFIX) :]
    match = _UET_HEX.fullmatch(value)
    if match is not None:
        return match.group(1)
    return value if _VALID.fullmatch(value) is not None else None


ClickSource = Literal["url", "snippet", "cookie", "uet_cookie", "profile"]
_SOURCES = frozenset({"url", "snippet", "cookie", "uet_cookie", "profile"})


@dataclass(frozen=True, slots=True)
class Click:
    """A Microsoft Ads click: its ``msclkid``, when we captured it (aware UTC) and from where."""

    msclkid: str
    captured_at: datetime
    source: ClickSource = "url"

    def __post_init__(self) -> None:
        validate_click_id(self.msclkid)
        if not isinstance(self.captured_at, datetime) or self.captured_at.utcoffset() is None:
            raise ValidationError("captured_at", "must be a timezone-aware datetime")
        if self.captured_at.utcoffset():
            object.__setattr__(self, "captured_at", self.captured_at.astimezone(UTC))
        if self.source not in _SOURCES:
            raise ValidationError("source", f"must be one of {sorted(_SOURCES)}")

    @classmethod
    def verified(cls, msclkid: str, captured_at: datetime, source: ClickSource) -> Click:
        """A click from values capture has just checked (a valid ID, an aware UTC time, a known source).

        The checks of the constructor are not repeated: the cookie and landing paths build a Click on every
        request from an ID that was validated (or HMAC-verified) a moment before.
        """
        click = object.__new__(cls)
        object.__setattr__(click, "msclkid", msclkid)
        object.__setattr__(click, "captured_at", captured_at)
        object.__setattr__(click, "source", source)
        return click

    @classmethod
    def from_value(cls, msclkid: str, *, captured_at: datetime | None = None, source: ClickSource = "url") -> Click:
        """A click from a bare ``msclkid`` (for example one stored by the shop), captured now unless told."""
        return cls(msclkid, captured_at if captured_at is not None else datetime.now(UTC), source)
