"""Time helpers: the emulator's own parser for Microsoft's ``xs:dateTime`` JSON values.

Deliberately independent of the toolkit's models so that a client formatting bug shows up here.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

__all__ = ["iso", "parse_datetime"]

# .NET's DateTime JSON parser takes ISO 8601 with up to 7 fractional digits and an optional zone.
# A value without a zone is taken as UTC, which is what Microsoft's docs demand of callers anyway.
_ISO = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})[T ](?P<h>\d{2}):(?P<m>\d{2})(?::(?P<s>\d{2})(?:\.(?P<f>\d{1,7}))?)?"
    r"(?P<tz>Z|z|[+-]\d{2}:?\d{2})?"
)


def parse_datetime(value: object) -> datetime:
    """Return an aware UTC datetime or raise ``ValueError`` (the caller maps it to an error code)."""
    if not isinstance(value, str):
        raise ValueError("not a string")
    value = value.strip()
    match = _ISO.fullmatch(value)
    if match is None:
        raise ValueError("not an ISO 8601 date-time")
    if len(match["f"] or "") <= 6:
        # Fast path (the regex already enforced the strict shape): the C parser does the arithmetic.
        parsed = datetime.fromisoformat(value[:-1] + "Z" if value.endswith("z") else value)
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    year, month, day = (int(part) for part in match["date"].split("-"))
    fraction = (match["f"] or "0").ljust(7, "0")
    # .NET's 7th digit (100 ns ticks) has no place in a Python datetime; it is truncated, so two times that
    # differ only there count as the same conversion time (a documented limit of the emulator).
    result = datetime(
        year, month, day, int(match["h"]), int(match["m"]), int(match["s"] or 0), int(fraction[:6]), tzinfo=UTC
    )
    zone = match["tz"]
    if zone and zone not in ("Z", "z"):
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
        result -= sign * offset
    return result


def iso(value: datetime) -> str:
    """Format an aware datetime as ``2026-01-15T17:02:35.123456Z``."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
