"""Microsoft click ID (msclkid) rules, shared by the middleware, the snippet endpoint and models.

Real IDs are 32 hex characters; Microsoft's own test value is ``Example-123``.  We accept
``[A-Za-z0-9_-]{1,64}`` after percent-decoding, never change case, and never echo a bad value.
"""

from __future__ import annotations

import re

from .errors import InvalidClickId

__all__ = ["MAX_CLICK_ID_LENGTH", "is_valid_click_id", "validate_click_id"]

MAX_CLICK_ID_LENGTH = 64
_VALID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def is_valid_click_id(value: object) -> bool:
    return isinstance(value, str) and _VALID.fullmatch(value) is not None


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
