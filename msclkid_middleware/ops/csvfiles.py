"""CSV in and out: Microsoft's UI import files (export) and CRM exports (import / validate).

**Export** writes the files of Microsoft Advertising's *Conversions → Offline conversions → Uploads* page
(reference §8.1): a ``Parameters:TimeZone=...`` first line, then the header row and one row per conversion
(or adjustment), times as ``yyyy-MM-dd HH:mm:ss+zzzz`` (a format Microsoft lists; every row states its own
offset, and the Parameters line states the zone when it is a fixed offset), values with at most three
decimals and a period, the enhanced-conversion hashed columns last, at most 100,000 rows per file (larger
exports are split into numbered files) and every cell that a spreadsheet would read as a formula prefixed
with ``'``.

**Import** reads a CRM export: one row per conversion, columns mapped by name (:data:`COLUMNS`, overridable),
times in any of Microsoft's formats or ISO 8601 (a time without a zone is read in the given time zone), raw
email and phone normalised and hashed (never stored), every row validated on its own; rows that fail go to a
rejected-rows file with the reason (raw email and phone cells are blanked there).
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TextIO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from msclkid_middleware.capture.clickid import Click
from msclkid_middleware.conversions import OfflineConversion, UserIdentifiers, parse_time
from msclkid_middleware.errors import ConfigError, MsclkidError, StoreError, ValidationError

if TYPE_CHECKING:  # pragma: no cover
    from msclkid_middleware.dispatch.tracker import ConversionTracker
    from msclkid_middleware.outbox.base import OutboxRow

__all__ = [
    "ADJUSTMENT_COLUMNS",
    "COLUMNS",
    "CONVERSION_COLUMNS",
    "MAX_ROWS_PER_FILE",
    "ExportResult",
    "ImportResult",
    "ImportRow",
    "RowError",
    "export_rows",
    "import_file",
    "parse_time_zone",
    "safe_cell",
]

#: Rows committed per transaction by ``import-csv`` on a SQLite outbox.
BATCH_ROWS = 500
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
ExportKind = Literal["conversions", "adjustments"]

#: Import mapping: field -> accepted header names (compared case-insensitively, spaces/dashes = underscores).
COLUMNS: Mapping[str, tuple[str, ...]] = {
    "event_id": ("event_id", "order_id", "id", "transaction_id"),
    "conversion_name": ("conversion_name", "goal", "conversion"),
    "conversion_time": ("conversion_time", "time", "converted_at"),
    "value": ("value", "conversion_value", "revenue", "amount"),
    "currency": ("currency", "conversion_currency", "currency_code"),
    "msclkid": ("msclkid", "microsoft_click_id", "click_id"),
    "click_time": ("click_time", "clicked_at"),
    "email": ("email", "email_address"),
    "phone": ("phone", "phone_number"),
    "hashed_email": ("hashed_email", "hashed_email_address"),
    "hashed_phone": ("hashed_phone", "hashed_phone_number"),
}
_RAW_PII = ("email", "phone")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
#: Microsoft's UI upload time formats (reference §8.1) plus ISO 8601; tried in order.
_TIME_FORMATS = (
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


def safe_cell(value: str) -> str:
    """A cell a spreadsheet will not run as a formula (OWASP CSV injection: prefix ``'``)."""
    return "'" + value if value.startswith(_FORMULA_START) else value


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


def _offset_text(offset: timedelta | None) -> str:
    minutes = int((offset or timedelta()).total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}{abs(minutes) % 60:02d}"


def _format_time(value: datetime, zone: tzinfo) -> str:
    local = value.astimezone(zone)
    return local.strftime("%Y-%m-%d %H:%M:%S") + _offset_text(local.utcoffset())


def _format_value(value: Any) -> str:
    if value is None or value == "":
        return ""
    text = f"{float(value):.3f}".rstrip("0").rstrip(".")
    return text or "0"


# -- export -------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExportResult:
    """The files written and how many data rows each holds."""

    files: tuple[Path, ...]
    rows: tuple[int, ...]

    @property
    def total(self) -> int:
        return sum(self.rows)


def _conversion_cells(row: OutboxRow, zone: tzinfo) -> list[str] | None:
    p = row.payload
    if row.kind != "offline" or "ConversionTime" not in p:
        return None
    return [
        str(p.get("MicrosoftClickId") or ""),
        str(p.get("ConversionName") or ""),
        _format_time(parse_time(p["ConversionTime"], "ConversionTime"), zone),
        _format_value(p.get("ConversionValue")),
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
        _format_time(parse_time(p["ConversionTime"], "ConversionTime"), zone),
        _format_value(p.get("AdjustmentValue")),
        str(p.get("AdjustmentCurrencyCode") or ""),
        str(p.get("AdjustmentType") or ""),
        _format_time(parse_time(p["AdjustmentTime"], "AdjustmentTime"), zone),
        str(p.get("HashedEmailAddress") or ""),
        str(p.get("HashedPhoneNumber") or ""),
    ]


def _numbered(output: Path, number: int) -> Path:
    return output.with_name(f"{output.stem}-{number:03d}{output.suffix or '.csv'}")


def export_rows(
    rows: Iterable[OutboxRow],
    output: Path,
    *,
    kind: ExportKind = "conversions",
    time_zone: str | None = None,
    max_rows: int = MAX_ROWS_PER_FILE,
) -> ExportResult:
    """Write ``rows`` (offline conversions or offline adjustments; others are skipped) as Microsoft import files.

    One file at ``output`` when it fits, else ``<stem>-001.csv``, ``<stem>-002.csv``, ... of at most ``max_rows``
    data rows each.  Rows are streamed: memory does not grow with the outbox.
    """
    if not 1 <= max_rows <= MAX_ROWS_PER_FILE:
        raise ConfigError(f"max_rows must be between 1 and {MAX_ROWS_PER_FILE}")
    zone = parse_time_zone(time_zone)
    fixed = zone.utcoffset(None) if not isinstance(zone, ZoneInfo) else None
    parameters = f"Parameters:TimeZone={_offset_text(fixed)}" if fixed is not None or zone is UTC else "Parameters:"
    header = CONVERSION_COLUMNS if kind == "conversions" else ADJUSTMENT_COLUMNS
    cells_of: Callable[[OutboxRow, tzinfo], list[str] | None] = (
        _conversion_cells if kind == "conversions" else _adjustment_cells
    )
    files: list[Path] = []
    counts: list[int] = []
    handle: TextIO | None = None
    writer: Any = None

    def start() -> None:
        nonlocal handle, writer
        path = _numbered(output, len(files) + 1)
        handle = path.open("w", newline="", encoding="utf-8")
        handle.write(parameters + "\r\n")
        writer = csv.writer(handle, lineterminator="\r\n")
        writer.writerow(header)
        files.append(path)
        counts.append(0)

    try:
        for row in rows:
            cells = cells_of(row, zone)
            if cells is None:
                continue
            if handle is None or counts[-1] >= max_rows:
                if handle is not None:
                    handle.close()
                start()
            writer.writerow([safe_cell(c) for c in cells])
            counts[-1] += 1
        if handle is None:
            start()  # an empty export still gives a file with the header, so a scheduled upload sees "nothing"
    finally:
        if handle is not None:
            handle.close()
    if len(files) == 1:
        files[0] = files[0].replace(output)
    return ExportResult(tuple(files), tuple(counts))


# -- import -------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RowError:
    """Why a CSV row was not recorded (1-based ``line`` of the file, the row's event ID when it had one)."""

    line: int
    event_id: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class ImportRow:
    """One CRM row, parsed: the keyword arguments of ``ConversionTracker.record_offline``."""

    line: int
    event_id: str
    conversion_name: str
    conversion_time: datetime
    value: float | None = None
    currency: str | None = None
    click: Click | str | None = None
    email: str | None = field(default=None, repr=False)
    phone: str | None = field(default=None, repr=False)
    hashed_email: str | None = None
    hashed_phone: str | None = None

    def record_kwargs(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "conversion_name": self.conversion_name,
            "conversion_time": self.conversion_time,
            "value": self.value,
            "currency": self.currency,
            "click": self.click,
            "email": self.email,
            "phone": self.phone,
            "hashed_email": self.hashed_email,
            "hashed_phone": self.hashed_phone,
        }


@dataclass(frozen=True, slots=True)
class ImportResult:
    """What an import (or a validation) found: rows ``recorded`` now, ``existing`` (already in the outbox:
    re-runs are no-ops), ``valid`` (validate only) and ``errors``."""

    rows: int = 0
    recorded: int = 0
    existing: int = 0
    valid: int = 0
    errors: tuple[RowError, ...] = ()
    rejected_file: Path | None = None

    @property
    def rejected(self) -> int:
        return len(self.errors)


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


def parse_datetime_cell(text: str, zone: tzinfo, field_name: str) -> datetime:
    """A time in any of Microsoft's upload formats or ISO 8601; without a zone it is read in ``zone``."""
    raw = text.strip()
    if not raw:
        raise ValidationError(field_name, "is empty")
    candidate = raw[:-1] + "+0000" if raw.endswith("Z") else raw
    parsed: datetime | None = None
    try:
        parsed = datetime.fromisoformat(candidate)
    except ValueError:
        for fmt in _TIME_FORMATS:
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


def _cell(cells: Sequence[str], columns: Mapping[str, int], name: str) -> str | None:
    index = columns.get(name)
    if index is None or index >= len(cells):
        return None
    value = cells[index].strip()
    if value.startswith("'") and value[1:2] and value[1] in _FORMULA_START:
        value = value[1:]  # undo safe_cell(): a file this toolkit exported reads back exactly
    return value or None


def parse_row(
    cells: Sequence[str], columns: Mapping[str, int], line: int, *, zone: tzinfo, default_goal: str | None
) -> ImportRow:
    """Parse one CRM row (raises :class:`~msclkid_middleware.errors.ValidationError` naming the field)."""
    event_id = _cell(cells, columns, "event_id")
    if event_id is None and "event_id" in columns:
        raise ValidationError("event_id", "is empty")
    name = _cell(cells, columns, "conversion_name") or default_goal
    if name is None:
        raise ValidationError("conversion_name", "is empty (give a column or --goal)")
    when_text = _cell(cells, columns, "conversion_time")
    if when_text is None:
        raise ValidationError("conversion_time", "is empty")
    when = parse_datetime_cell(when_text, zone, "conversion_time")
    value_text = _cell(cells, columns, "value")
    value: float | None = None
    if value_text is not None:
        try:
            value = float(value_text)
        except ValueError:
            raise ValidationError("value", "is not a number (use a period for decimals)") from None
    click_id = _cell(cells, columns, "msclkid")
    if event_id is None:
        # A file without event IDs (Microsoft's own import template): Microsoft's key names the conversion.
        key = "|".join(
            str(p)
            for p in (
                click_id,
                _cell(cells, columns, "hashed_email"),
                _cell(cells, columns, "hashed_phone"),
                name,
                when.isoformat(),
            )
        )
        event_id = "csv-" + hashlib.sha256(key.encode()).hexdigest()[:32]
    click_time = _cell(cells, columns, "click_time")
    click: Click | str | None = click_id
    if click_id is not None and click_time is not None:
        click = Click(click_id, parse_datetime_cell(click_time, zone, "click_time"), "profile")
    currency = _cell(cells, columns, "currency")
    return ImportRow(
        line=line,
        event_id=event_id,
        conversion_name=name,
        conversion_time=when,
        value=value,
        currency=currency.upper() if currency else None,
        click=click,
        email=_cell(cells, columns, "email"),
        phone=_cell(cells, columns, "phone"),
        hashed_email=_cell(cells, columns, "hashed_email"),
        hashed_phone=_cell(cells, columns, "hashed_phone"),
    )


def check_row(row: ImportRow, *, goals: Sequence[str], now: datetime, default_region: str | None = None) -> None:
    """Every check ``record_offline`` makes, without recording: goal name, click, identifiers, time window."""
    if goals and row.conversion_name not in goals:
        raise ValidationError(
            "conversion_name", "is not one of the configured conversion goals (MSADS_CONVERSION_GOALS)"
        )
    identifiers = UserIdentifiers(
        email=row.email,
        phone=row.phone,
        hashed_email=row.hashed_email,
        hashed_phone=row.hashed_phone,
        default_region=default_region,
    )
    click = row.click.msclkid if isinstance(row.click, Click) else row.click
    if click is None and not identifiers:
        raise ValidationError("click", "give a click ID or the customer's email or phone")
    conversion = OfflineConversion(
        conversion_name=row.conversion_name,
        conversion_time=row.conversion_time,
        value=row.value,
        currency=row.currency,
        msclkid=click,
        identifiers=identifiers or None,
        validate_times=False,
    )
    conversion.check_window(now)


def count_lines(path: Path) -> int:
    """Newlines in ``path`` (a fast upper bound of its rows, for the progress bar)."""
    total = 0
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            total += chunk.count(b"\n")
    return total


class _Batch:
    """Commit imported rows in transactions of :data:`BATCH_ROWS` on a SQLite outbox.

    Uses the store's transactional-outbox hook (``enqueue(..., connection=...)``) with a connection to the same
    file: one commit per batch instead of one per row.  Other stores commit row by row.  A failure rolls back
    only the open batch; a re-run records what is missing (imports are idempotent).
    """

    def __init__(self, store: Any) -> None:
        from msclkid_middleware.outbox.sqlite import SqliteOutbox  # stdlib only; other stores commit per row

        self.path: str | None = store.path if isinstance(store, SqliteOutbox) else None
        self.connection: sqlite3.Connection | None = None
        self.pending = 0

    def __enter__(self) -> _Batch:
        if self.path is not None:
            self.connection = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            self.connection.execute("PRAGMA busy_timeout = 30000")
            self.connection.execute("BEGIN IMMEDIATE")
        return self

    def written(self) -> None:
        if self.connection is None:
            return
        self.pending += 1
        if self.pending >= BATCH_ROWS:
            self.connection.execute("COMMIT")
            self.connection.execute("BEGIN IMMEDIATE")
            self.pending = 0

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if self.connection is None:
            return
        try:
            self.connection.execute("ROLLBACK" if exc_type is not None else "COMMIT")
        finally:
            self.connection.close()


def _read_rows(handle: TextIO, path: Path) -> Iterator[tuple[int, list[str]]]:
    reader = csv.reader(handle)
    try:
        for cells in reader:
            if cells and any(c.strip() for c in cells):
                yield reader.line_num, cells
    except csv.Error as exc:
        # A structurally broken file (NUL bytes, an unterminated quote, a giant field) cannot be read on.
        raise ConfigError(
            f"{path}: line {reader.line_num + 1} is not valid CSV ({exc}); nothing after it was read"
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(
            f"{path} is not valid {handle.encoding} text; export the file as UTF-8"
            " or give --encoding (for example cp1252)"
        ) from None


def import_file(
    path: Path,
    *,
    tracker: ConversionTracker | None,
    goals: Sequence[str] = (),
    mapping: Mapping[str, str] | None = None,
    time_zone: str | None = None,
    default_goal: str | None = None,
    rejected_path: Path | None = None,
    now: datetime | None = None,
    on_row: Callable[[int], None] | None = None,
    encoding: str = "utf-8-sig",
) -> ImportResult:
    """Validate every row of ``path`` and, with a ``tracker``, record the valid ones (``tracker=None``: validate).

    Re-running the same file records nothing new: each row's ``event_id`` (and its conversion key) is already in
    the outbox.  Rejected rows are written to ``rejected_path`` (default ``<file>.rejected.csv``) with ``line``
    and ``error`` columns in front; raw email and phone cells are blanked there.  ``on_row`` is called with the
    line number after each row (progress).
    """
    zone = parse_time_zone(time_zone)
    clock_now = now or (tracker.clock() if tracker is not None else datetime.now(UTC))
    known_goals = tuple(goals) if tracker is None else ()
    errors: list[RowError] = []
    counts = {"rows": 0, "recorded": 0, "existing": 0, "valid": 0}
    rejected_path = rejected_path or path.with_name(path.name + ".rejected.csv")
    rejected_handle: TextIO | None = None
    rejected_writer: Any = None
    try:
        handle = path.open(newline="", encoding=encoding)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    except LookupError:
        raise ConfigError(f"unknown encoding {encoding!r}") from None
    with handle, _Batch(tracker.store if tracker is not None else None) as batch:
        rows = _read_rows(handle, path)
        first = next(rows, None)
        if first is None:
            raise ConfigError(f"{path} is empty: the first row must name the columns")
        header = first[1]
        if header and header[0].startswith("Parameters:"):
            # Microsoft's template: "Parameters:TimeZone=<zone>" states the zone of times without one.
            stated = header[0].partition("TimeZone=")[2].strip()
            if stated:
                zone = parse_time_zone(stated)
            second = next(rows, None)
            if second is None:
                raise ConfigError(f"{path} has no header row after its Parameters line")
            header = second[1]
        columns = resolve_columns(header, mapping)
        missing = [n for n in ("conversion_time",) if n not in columns]
        if "conversion_name" not in columns and default_goal is None:
            missing.append("conversion_name")
        if missing:
            raise ConfigError(
                f"{path}: no column for {', '.join(missing)}; name the columns as in docs/operations.md"
                " or map them with --map FIELD=COLUMN"
            )
        pii = {columns[n] for n in _RAW_PII if n in columns}
        for line, cells in rows:
            counts["rows"] += 1
            event_id = _cell(cells, columns, "event_id")
            try:
                row = parse_row(cells, columns, line, zone=zone, default_goal=default_goal)
                if tracker is None:
                    check_row(row, goals=known_goals, now=clock_now)
                    counts["valid"] += 1
                elif tracker.store.find(row.event_id, kind="offline", account=tracker.account):
                    counts["existing"] += 1  # a re-run: a cheap read instead of a write transaction
                else:
                    status = tracker.record_offline(**row.record_kwargs(), connection=batch.connection)
                    counts["recorded" if status.created else "existing"] += 1
                    batch.written()
            except StoreError:
                # The outbox itself failed (full, disk, lock): stop; committed batches stay, a re-run adds the rest.
                raise
            except (MsclkidError, ValueError) as exc:
                # str() of our errors never holds the value itself (personal data), only field and rule.
                reason = str(exc) if isinstance(exc, MsclkidError) else f"invalid value: {type(exc).__name__}"
                errors.append(RowError(line, event_id, reason))
                if rejected_writer is None:
                    rejected_handle = rejected_path.open("w", newline="", encoding="utf-8")
                    rejected_writer = csv.writer(rejected_handle)
                    rejected_writer.writerow(["line", "error", *header])
                masked = ["" if i in pii else c for i, c in enumerate(cells)]
                rejected_writer.writerow([str(line), reason, *(safe_cell(c) for c in masked)])
            if on_row is not None:
                on_row(line)
    if rejected_handle is not None:
        rejected_handle.close()
    elif rejected_path.exists() and tracker is not None:
        rejected_path.unlink()  # a clean re-run leaves no stale rejects behind
    return ImportResult(
        rows=counts["rows"],
        recorded=counts["recorded"],
        existing=counts["existing"],
        valid=counts["valid"],
        errors=tuple(errors),
        rejected_file=rejected_path if errors else None,
    )


def read_export(path: Path) -> tuple[str, list[dict[str, str]]]:
    """Read back an exported file: its Parameters line and the data rows (for round-trip checks)."""
    with path.open(newline="", encoding="utf-8") as handle:
        text = handle.read()
    first, _, rest = text.partition("\r\n")
    return first, list(csv.DictReader(io.StringIO(rest)))
