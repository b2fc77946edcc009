"""What Microsoft's offline-conversion files look like: columns, time zones, time and value formats, safe cells.

Shared by the export (``csv_export``), the import (``csv_import``) and the reports' CSV output, so a file this
toolkit writes reads back exactly and every cell a spreadsheet could run as a formula is defused the same way.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from msclkid_middleware.errors import ConfigError, ValidationError

__all__ = [
    "ADJUSTMENT_COLUMNS",
    "COLUMNS",
    "CONVERSION_COLUMNS",
    "MAX_ROWS_PER_FILE",
    "cell",
    "csv_text",
    "format_time",
    "format_value",
    "offset_text",
    "parse_datetime_cell",
    "parse_parameters",
    "parse_time_zone",
    "resolve_columns",
    "safe_cell",
    "unsafe_cell",
]

#: "A maximum of 100,000 rows are allowed for each upload."
MAX_ROWS_PER_FILE = 100_000
CONVERSION_COLUMNS = (
    "Microsoft Click ID",
    "Conversion Name",
    "Conversion Time",
    "Conversion Value",
    "Conversion Currency",
    "Hashed Email Address",
    "Hashed Phone Number",
)
ADJUSTMENT_COLUMNS = (
    "Microsoft Click ID",
    "Conversion Name",
    "Conversion Time",
    "Adjustment Value",
    "Adjustment Currency",
    "Adjustment Type",
    "Adjustment Time",
    "Hashed Email Address",
    "Hashed Phone Number",
)
#: Import mapping: field -> accepted header names (compared case-insensitively, spaces/dashes = underscores).
COLUMNS: Mapping[str, tuple[str, ...]] = {
    "event_id": ("event_id", "order_id", "id", "transaction_id"),
    "conversion_name": ("conversion_name", "goal", "conversion"),
    "conversion_time": ("conversion_time", "time", "converted_at"),
    "value": ("value", "conversion_value", "revenue", "amount"),
    # Microsoft's UI template says "Conversion Currency", its Bulk files "Conversion Currency Code".
    "currency": ("currency", "conversion_currency", "conversion_currency_code", "currency_code"),
    "msclkid": ("msclkid", "microsoft_click_id", "click_id"),
    "click_time": ("click_time", "clicked_at"),
    "email": ("email", "email_address"),
    "phone": ("phone", "phone_number"),
    "hashed_email": ("hashed_email", "hashed_email_address"),
    "hashed_phone": ("hashed_phone", "hashed_phone_number"),
}
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
#: Microsoft's UI upload time formats (reference §8.1) plus ISO 8601; tried in order.
TIME_FORMATS = (
    "%m/%d/%Y %I:%M:%S %p",
    "%b %d, %Y %I:%M:%S %p",
    "%m/%d/%Y %H:%M:%S",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%d %H:%M:%S%z",
    "%Y-%m-%dT%H:%M:%S%z",
    "%Y-%m-%d %H:%M",
    "%m/%d/%Y %H:%M",
)
_OFFSET = re.compile(r"([+-])(\d{2}):?(\d{2})")
_SPACED_OFFSET = re.compile(r"(.*\d)\s+([+-]\d{2}:?\d{2})")


def safe_cell(value: str) -> str:
    """A cell a spreadsheet will not run as a formula (OWASP CSV injection: prefix ``'``)."""
    return "'" + value if value.startswith(FORMULA_START) else value


def unsafe_cell(value: str) -> str:
    """Undo :func:`safe_cell`, so a file this toolkit exported reads back exactly."""
    return value[1:] if value.startswith("'") and value[1:2] and value[1] in FORMULA_START else value


def csv_text(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A small CSV document (``\\n`` line ends, no trailing newline) for a report's ``--format csv``."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().rstrip("\n")


def parse_time_zone(value: str | None) -> tzinfo:
    """``UTC`` (default), a fixed offset (``+0100``, ``-05:00``) or an IANA zone name (``Europe/Berlin``).

    Microsoft's own zone names (``EasternTimeUSCanada``) are not mapped: give the IANA name instead.
    """
    if value is None or value.strip().upper() in ("", "UTC", "Z", "GMT"):
        return UTC
    text = value.strip()
    match = _OFFSET.fullmatch(text)
    if match:
        sign = -1 if match.group(1) == "-" else 1
        hours, minutes = int(match.group(2)), int(match.group(3))
        if hours > 14 or minutes > 59:
            raise ConfigError(f"time zone offset {text!r} is out of range")
        return timezone(sign * timedelta(hours=hours, minutes=minutes))
    try:
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"unknown time zone {text!r}: use UTC, an offset like +0100 or a name like Europe/Berlin"
        ) from None


def parse_parameters(first_cell: str) -> tzinfo | None:
    """The zone of Microsoft's ``Parameters:TimeZone=-0800;`` line (``None`` when it names none).

    The template's line may end in separators (``;``, ``,``) and may leave the value empty ("You can leave the
    Parameters row empty if you don't enter a time zone").
    """
    _, _, value = first_cell.partition("TimeZone=")
    stated = value.strip().rstrip(";,").strip()
    return parse_time_zone(stated) if stated else None


def offset_text(offset: timedelta | None) -> str:
    """``+0100`` / ``-0530``: the offset as Microsoft's files write it."""
    minutes = int((offset or timedelta()).total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}{abs(minutes) % 60:02d}"


def format_time(value: datetime, zone: tzinfo) -> str:
    """``yyyy-MM-dd HH:mm:ss+zzzz`` in ``zone``: every row states its own offset."""
    local = value.astimezone(zone)
    return local.strftime("%Y-%m-%d %H:%M:%S") + offset_text(local.utcoffset())


def format_value(value: float | str | None) -> str:
    """At most three decimals and a period; empty for no value."""
    if value is None or value == "":
        return ""
    text = f"{float(value):.3f}".rstrip("0").rstrip(".")
    return text or "0"


def parse_datetime_cell(text: str, zone: tzinfo, field_name: str) -> datetime:
    """A time in any of Microsoft's upload formats or ISO 8601; without a zone it is read in ``zone``."""
    raw = text.strip()
    if not raw:
        raise ValidationError(field_name, "is empty")
    candidate = raw[:-1] + "+0000" if raw.endswith("Z") else raw
    # "2017-06-01 13:00:00 -0500": an offset after a space, as the template's zone column is appended (its sign is
    # the fifth or sixth character from the end: no other text needs the pattern).
    spaced = _SPACED_OFFSET.fullmatch(candidate) if candidate[-6:-4].strip("0123456789:") else None
    if spaced:
        candidate = spaced.group(1) + spaced.group(2)
    parsed: datetime | None = None
    try:
        parsed = datetime.fromisoformat(candidate)
    except ValueError:
        for fmt in TIME_FORMATS:
            try:
                parsed = datetime.strptime(candidate, fmt)
                break
            except ValueError:
                continue
    if parsed is None:
        raise ValidationError(field_name, "is not a date-time in a supported format (for example 2026-11-28 13:00:00)")
    if parsed.utcoffset() is None:
        parsed = parsed.replace(tzinfo=zone)
    return parsed.astimezone(UTC)


def _normalise_header(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


def resolve_columns(header: Sequence[str], mapping: Mapping[str, str] | None = None) -> dict[str, int]:
    """Field -> column index, from :data:`COLUMNS` and the explicit ``mapping`` (field -> header name)."""
    normalised = [_normalise_header(h) for h in header]
    found: dict[str, int] = {}
    for name, header_name in (mapping or {}).items():
        if name not in COLUMNS:
            raise ConfigError(f"unknown field {name!r} in the column mapping; fields: {', '.join(COLUMNS)}")
        wanted = _normalise_header(header_name)
        if wanted not in normalised:
            raise ConfigError(f"column {header_name!r} (for {name}) is not in the file's header")
        found[name] = normalised.index(wanted)
    for name, aliases in COLUMNS.items():
        if name in found:
            continue
        for alias in aliases:
            if alias in normalised:
                found[name] = normalised.index(alias)
                break
    return found


def cell(cells: Sequence[str], columns: Mapping[str, int], name: str) -> str | None:
    """The stripped value of field ``name`` in ``cells`` (``None`` when absent or empty)."""
    index = columns.get(name)
    if index is None or index >= len(cells):
        return None
    return unsafe_cell(cells[index].strip()) or None
