"""Microsoft's UI import files (``msclkid export-csv``) from the outbox.

The files of Microsoft Advertising's *Conversions → Offline conversions → Uploads* page (reference §8.1): the first
line is always ``Parameters:TimeZone=+HHMM`` (or ``-HHMM``), a fixed offset, and every time in the file is written
in that offset as ``yyyy-MM-dd HH:mm:ss+HHMM`` (a format Microsoft lists); a zone with daylight saving time
(``Europe/Berlin``) is never named: its offset at the time of the export is used for the whole file and every
time converted to it, so a file spanning a DST change stays exact.  Then the header row and one row per
conversion (or adjustment), values with at most three decimals and a period, the enhanced-conversion hashed
columns last, at most 100,000 rows per file (larger exports are split into numbered files).

Every cell is written verbatim.  Microsoft matches goal names and click IDs exactly, so the spreadsheet
formula-injection guard (a leading ``'``) must not touch them, and the layout has no free-text column to guard:
names that a spreadsheet would run as a formula are refused when ``msclkid goals create`` makes a goal instead.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timezone, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from zoneinfo import ZoneInfo

from msclkid_middleware.conversions import parse_time
from msclkid_middleware.errors import ConfigError
from msclkid_middleware.ops.csv_format import (
    ADJUSTMENT_COLUMNS,
    CONVERSION_COLUMNS,
    MAX_ROWS_PER_FILE,
    format_time,
    format_value,
    offset_text,
    parse_time_zone,
)

if TYPE_CHECKING:  # pragma: no cover
    from msclkid_middleware.outbox.base import Kind, OutboxRow, OutboxStore

__all__ = [
    "EXPORT_STATES",
    "ExportKind",
    "ExportResult",
    "export_rows",
    "exportable_rows",
    "fixed_offset",
    "read_export",
]

ExportKind = Literal["conversions", "adjustments"]
#: Rows the API has not delivered (yet): the ones a UI upload can still bring to Microsoft.
EXPORT_STATES = ("pending", "paused", "dead", "in_flight")
_STORE_KIND: dict[ExportKind, Kind] = {"conversions": "offline", "adjustments": "offline_adjustment"}


@dataclass(frozen=True, slots=True)
class ExportResult:
    """The files written and how many data rows each holds."""

    files: tuple[Path, ...]
    rows: tuple[int, ...]
    #: The fixed offset every time in the files is written in (``+0100``), as their ``Parameters`` line says.
    offset: str = "+0000"

    @property
    def total(self) -> int:
        return sum(self.rows)


def exportable_rows(
    store: OutboxStore,
    kind: ExportKind,
    *,
    since: datetime | None = None,
    goal: str | None = None,
    include_delivered: bool = False,
) -> Iterator[OutboxRow]:
    """The outbox rows ``export-csv`` writes: not delivered by the API (or all, with ``include_delivered``)."""
    states = (*EXPORT_STATES, "delivered") if include_delivered else EXPORT_STATES
    for row in store.scan(since=since, kinds=(_STORE_KIND[kind],)):
        if row.state in states and (goal is None or row.conversion_name == goal):
            yield row


# Two of Microsoft's file layouts, column by column: alike in shape, one function each so each reads as its header.
def _conversion_cells(row: OutboxRow, zone: tzinfo) -> list[str] | None:
    p = row.payload
    if row.kind != "offline" or "ConversionTime" not in p:
        return None
    return [
        str(p.get("MicrosoftClickId") or ""),
        str(p.get("ConversionName") or ""),
        format_time(parse_time(p["ConversionTime"], "ConversionTime"), zone),
        format_value(p.get("ConversionValue")),
        str(p.get("ConversionCurrencyCode") or ""),
        str(p.get("HashedEmailAddress") or ""),
        str(p.get("HashedPhoneNumber") or ""),
    ]


def _adjustment_cells(row: OutboxRow, zone: tzinfo) -> list[str] | None:
    p = row.payload
    if row.kind != "offline_adjustment" or "AdjustmentTime" not in p:
        return None
    return [
        str(p.get("MicrosoftClickId") or ""),
        str(p.get("ConversionName") or ""),
        format_time(parse_time(p["ConversionTime"], "ConversionTime"), zone),
        format_value(p.get("AdjustmentValue")),
        str(p.get("AdjustmentCurrencyCode") or ""),
        str(p.get("AdjustmentType") or ""),
        format_time(parse_time(p["AdjustmentTime"], "AdjustmentTime"), zone),
        str(p.get("HashedEmailAddress") or ""),
        str(p.get("HashedPhoneNumber") or ""),
    ]


def fixed_offset(zone: tzinfo, at: datetime) -> timezone:
    """``zone`` as one fixed offset: its own for UTC and offsets, for a DST zone its offset at ``at``."""
    if isinstance(zone, timezone):
        return zone
    offset = at.astimezone(zone).utcoffset() if isinstance(zone, ZoneInfo) else zone.utcoffset(at)
    return timezone(offset) if offset is not None else UTC


def _numbered(output: Path, number: int) -> Path:
    return output.with_name(f"{output.stem}-{number:03d}{output.suffix or '.csv'}")


def export_rows(
    rows: Iterable[OutboxRow],
    output: Path,
    *,
    kind: ExportKind = "conversions",
    time_zone: str | None = None,
    max_rows: int = MAX_ROWS_PER_FILE,
    now: datetime | None = None,
) -> ExportResult:
    """Write ``rows`` (offline conversions or offline adjustments; others are skipped) as Microsoft import files.

    One file at ``output`` when it fits, else ``<stem>-001.csv``, ``<stem>-002.csv``, ... of at most ``max_rows``
    data rows each.  Rows are streamed: memory does not grow with the outbox.  ``time_zone`` is ``UTC``, a fixed
    offset or an IANA zone; an IANA zone becomes its offset at ``now`` (default: the time of the export).
    """
    if not 1 <= max_rows <= MAX_ROWS_PER_FILE:
        raise ConfigError(f"max_rows must be between 1 and {MAX_ROWS_PER_FILE}")
    zone = fixed_offset(parse_time_zone(time_zone), now or datetime.now(UTC))
    offset = offset_text(zone.utcoffset(None))
    parameters = f"Parameters:TimeZone={offset}"
    header = CONVERSION_COLUMNS if kind == "conversions" else ADJUSTMENT_COLUMNS
    cells_of: Callable[[OutboxRow, tzinfo], list[str] | None] = (
        _conversion_cells if kind == "conversions" else _adjustment_cells
    )
    lines = (cells for row in rows if (cells := cells_of(row, zone)) is not None)
    files: list[Path] = []
    counts: list[int] = []
    # An empty export still gives a file with the header, so a scheduled upload sees "nothing".
    upcoming = next(lines, None)
    while True:
        path = _numbered(output, len(files) + 1)
        count = 0
        with path.open("w", newline="", encoding="utf-8") as handle:
            handle.write(parameters + "\r\n")
            writer = csv.writer(handle, lineterminator="\r\n")
            writer.writerow(header)
            while upcoming is not None and count < max_rows:
                writer.writerow(upcoming)
                count += 1
                upcoming = next(lines, None)
        files.append(path)
        counts.append(count)
        if upcoming is None:
            break
    if len(files) == 1:
        files[0] = files[0].replace(output)
    return ExportResult(tuple(files), tuple(counts), offset)


def read_export(path: Path) -> tuple[str, list[dict[str, str]]]:
    """Read back an exported file: its Parameters line and the data rows (for round-trip checks)."""
    with path.open(newline="", encoding="utf-8") as handle:
        text = handle.read()
    first, _, rest = text.partition("\r\n")
    return first, list(csv.DictReader(io.StringIO(rest)))
