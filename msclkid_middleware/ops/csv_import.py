"""CRM exports in (``msclkid import-csv`` and ``msclkid validate``): one parser, two actions.

:class:`CrmFile` reads a CRM export: one row per conversion, columns mapped by name (``csv_format.COLUMNS``,
overridable), times in any of Microsoft's formats or ISO 8601 (a time without a zone is read in the given time
zone, or the zone of Microsoft's ``Parameters:TimeZone=`` line), raw email and phone normalised and hashed
(never stored).  :func:`import_file` records each parsed row; :func:`validate_file` makes every check
``record_offline`` would make and records nothing.  Both validate every row on its own and write the rows that
fail to a rejected-rows file with the reason (raw email and phone cells are blanked there).
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, TextIO

from msclkid_middleware.capture.clickid import Click
from msclkid_middleware.capture.consent import Consent
from msclkid_middleware.conversions import OfflineConversion, UserIdentifiers
from msclkid_middleware.dispatch.bulk import OfflineRows
from msclkid_middleware.dispatch.subject import NO_MATCH_KEY, check_goal, click_id
from msclkid_middleware.errors import ConfigError, MsclkidError, StoreError, ValidationError
from msclkid_middleware.ops.csv_format import (
    cell,
    parse_datetime_cell,
    parse_parameters,
    parse_time_zone,
    resolve_columns,
    safe_cell,
    unsafe_cell,
)

if TYPE_CHECKING:  # pragma: no cover
    from msclkid_middleware.dispatch.tracker import ConversionTracker
    from msclkid_middleware.outbox.base import EncodedRow, NewRow

__all__ = [
    "BATCH_ROWS",
    "FIELDS",
    "CrmFile",
    "ImportResult",
    "ImportRow",
    "RowError",
    "check_row",
    "count_lines",
    "field_cells",
    "import_file",
    "parse_cells",
    "parse_row",
    "validate_file",
]

#: Rows committed per outbox transaction (one batched insert) by ``import-csv``.  Each commit writes every page
#: the batch touched to SQLite's WAL, and the idempotency keys (random) touch pages all over their index: 2,000
#: rows a batch write half the WAL bytes of 500, and hold the write lock about a tenth of a second.
BATCH_ROWS = 2000
_RAW_PII = ("email", "phone")
#: What one row came to: recorded now, already in the outbox, or (validate) would be accepted.
RowOutcome = Literal["recorded", "existing", "valid"]


@dataclass(frozen=True, slots=True)
class RowError:
    """Why a CSV row was not recorded (1-based ``line`` of the file, the row's event ID when it had one)."""

    line: int
    event_id: str | None
    reason: str


class ImportRow(NamedTuple):
    """One CRM row, parsed: its line and the arguments of ``ConversionTracker.record_offline``.

    A tuple (built for every row of a file, so cheap to build) whose ``repr`` leaves out the raw email and phone.
    """

    line: int
    event_id: str
    conversion_name: str
    conversion_time: datetime
    value: float | None
    currency: str | None
    click: Click | str | None
    email: str | None
    phone: str | None
    hashed_email: str | None
    hashed_phone: str | None

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{name}={value!r}" for name, value in zip(self._fields, self, strict=True) if name not in _RAW_PII
        )
        return f"ImportRow({shown})"

    def identifiers(self) -> dict[str, str | None]:
        """The ``UserIdentifiers`` arguments (raw and hashed email and phone)."""
        return {
            "email": self.email,
            "phone": self.phone,
            "hashed_email": self.hashed_email,
            "hashed_phone": self.hashed_phone,
        }

    def arguments(self) -> dict[str, Any]:
        """The keyword arguments of ``record_offline`` (and ``offline_row``) for this row."""
        return dict(zip(self._fields[1:], self[1:], strict=True))

    def build(self, rows: OfflineRows) -> EncodedRow | None:
        """The outbox row of this row built by ``rows`` (``None``: only the model path can judge it)."""
        return rows.row(*self[1:])


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


#: The fields of a CRM row, in the order :func:`parse_row` takes their cells.
FIELDS = (
    "event_id", "conversion_name", "conversion_time", "value", "currency", "msclkid", "click_time", "email", "phone",
    "hashed_email", "hashed_phone",
)  # fmt: skip


def field_cells(cells: Sequence[str], indexes: Sequence[int | None]) -> list[str | None]:
    """The cell of each of :data:`FIELDS` (its column index in ``indexes``) as ``csv_format.cell`` reads it."""
    size = len(cells)
    texts = [cells[index].strip() if index is not None and index < size else "" for index in indexes]
    return [(unsafe_cell(text) if text[:1] == "'" else text) or None for text in texts]


def parse_row(
    cells: Sequence[str], columns: Mapping[str, int], line: int, *, zone: tzinfo, default_goal: str | None
) -> ImportRow:
    """Parse one CRM row (raises :class:`~msclkid_middleware.errors.ValidationError` naming the field)."""
    values = field_cells(cells, [columns.get(name) for name in FIELDS])
    return parse_cells(values, line, zone=zone, default_goal=default_goal, event_ids="event_id" in columns)


def parse_cells(
    values: Sequence[str | None], line: int, *, zone: tzinfo, default_goal: str | None, event_ids: bool
) -> ImportRow:
    """:func:`parse_row` of the cells :func:`field_cells` took (``event_ids``: the file has an event ID column)."""
    event_id, name, when_text, value_text, currency, click_id, click_time, email, phone, hashed_email, hashed_phone = (
        values
    )
    if event_id is None and event_ids:
        raise ValidationError("event_id", "is empty")
    name = name or default_goal
    if name is None:
        raise ValidationError("conversion_name", "is empty (give a column or --goal)")
    if when_text is None:
        raise ValidationError("conversion_time", "is empty")
    when = parse_datetime_cell(when_text, zone, "conversion_time")
    value: float | None = None
    if value_text is not None:
        try:
            value = float(value_text)
        except ValueError:
            raise ValidationError("value", "is not a number (use a period for decimals)") from None
    if event_id is None:
        # A file without event IDs (Microsoft's own import template): Microsoft's key names the conversion.
        key = "|".join(str(p) for p in (click_id, hashed_email, hashed_phone, name, when.isoformat()))
        event_id = "csv-" + hashlib.sha256(key.encode()).hexdigest()[:32]
    click: Click | str | None = click_id
    if click_id is not None and click_time is not None:
        click = Click(click_id, parse_datetime_cell(click_time, zone, "click_time"), "profile")
    currency = currency.upper() if currency else None
    return ImportRow(line, event_id, name, when, value, currency, click, email, phone, hashed_email, hashed_phone)


def check_row(row: ImportRow, *, goals: Sequence[str], now: datetime, default_region: str | None = None) -> None:
    """Every check ``record_offline`` makes, without recording: goal name, click, identifiers, time window."""
    # The same values the tracker builds, built here without a tracker: ``validate`` needs no outbox and no
    # Microsoft settings, and the models and dispatch.subject (not this code) hold the rules, so validate and
    # import-csv (which runs this for a row dispatch.bulk cannot vouch for) cannot drift apart in rules or wording.
    check_goal(row.conversion_name, tuple(goals))
    click = click_id(row.click)
    identifiers = UserIdentifiers(**row.identifiers(), default_region=default_region)
    if click is None and not identifiers:
        raise ValidationError("click", NO_MATCH_KEY)
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


class CrmFile:
    """The one CSV parser of ``import-csv`` and ``validate``: open, read the header, yield parsed rows.

    Opening reads the optional ``Parameters:TimeZone=`` line and the header row and resolves the columns
    (a file it cannot use raises :class:`~msclkid_middleware.errors.ConfigError`); iterating yields
    ``(line, cells)`` for every non-blank data row, which :meth:`parse` turns into an :class:`ImportRow`.
    """

    def __init__(
        self,
        path: Path,
        *,
        mapping: Mapping[str, str] | None = None,
        time_zone: str | None = None,
        default_goal: str | None = None,
        encoding: str = "utf-8-sig",
    ) -> None:
        self.path = path
        self.zone = parse_time_zone(time_zone)
        self.default_goal = default_goal
        try:
            self._handle: TextIO = path.open(newline="", encoding=encoding)
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
        except LookupError:
            raise ConfigError(f"unknown encoding {encoding!r}") from None
        try:
            self._rows = self._read_rows()
            self.header = self._read_header()
            self.columns = resolve_columns(self.header, mapping)
            self._check_columns()
        except BaseException:
            self._handle.close()
            raise
        #: Column indexes of raw personal data, blanked in the rejected-rows file.
        self.pii = frozenset(self.columns[n] for n in _RAW_PII if n in self.columns)
        self._indexes = [self.columns.get(name) for name in FIELDS]
        self._event_ids = "event_id" in self.columns

    def _read_rows(self) -> Iterator[tuple[int, list[str]]]:
        reader = csv.reader(self._handle)
        try:
            for cells in reader:
                if cells and (cells[0].strip() or any(c.strip() for c in cells)):
                    yield reader.line_num, cells
        except csv.Error as exc:
            # A structurally broken file (NUL bytes, an unterminated quote, a giant field) cannot be read on.
            raise ConfigError(
                f"{self.path}: line {reader.line_num + 1} is not valid CSV ({exc}); nothing after it was read"
            ) from None
        except UnicodeDecodeError:
            raise ConfigError(
                f"{self.path} is not valid {self._handle.encoding} text; export the file as UTF-8"
                " or give --encoding (for example cp1252)"
            ) from None

    def _read_header(self) -> list[str]:
        """The header row, after Microsoft's template preamble: ``#`` instruction lines and the Parameters line.

        ``Parameters:TimeZone=<zone>`` states the zone of the times that carry none (trailing separators allowed);
        it wins over ``--time-zone``, because it is what the file says about itself.
        """
        seen = False
        while True:
            row = next(self._rows, None)
            if row is None:
                if not seen:
                    raise ConfigError(f"{self.path} is empty: the first row must name the columns")
                raise ConfigError(f"{self.path} has no header row after its Parameters and # lines")
            seen = True
            first = row[1][0].strip() if row[1] else ""
            if first.startswith("#"):
                continue
            if first.startswith("Parameters:"):
                stated = parse_parameters(first)
                if stated is not None:
                    self.zone = stated
                continue
            return row[1]

    def _check_columns(self) -> None:
        missing = [n for n in ("conversion_time",) if n not in self.columns]
        if "conversion_name" not in self.columns and self.default_goal is None:
            missing.append("conversion_name")
        if missing:
            raise ConfigError(
                f"{self.path}: no column for {', '.join(missing)}; name the columns as in docs/operations.md"
                " or map them with --map FIELD=COLUMN"
            )

    def __iter__(self) -> Iterator[tuple[int, list[str]]]:
        """``(line, cells)`` of every non-blank data row; :meth:`parse` turns one into an :class:`ImportRow`."""
        return self._rows

    def parse(self, line: int, cells: Sequence[str]) -> ImportRow:
        values = field_cells(cells, self._indexes)
        return parse_cells(values, line, zone=self.zone, default_goal=self.default_goal, event_ids=self._event_ids)

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> CrmFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Rejects:
    """The rejected-rows file: written only when a row fails, with ``line`` and ``error`` in front."""

    def __init__(self, path: Path, header: Sequence[str], pii: frozenset[int]) -> None:
        self.path, self.header, self.pii = path, header, pii
        self.errors: list[RowError] = []
        self._handle: TextIO | None = None

    def add(self, line: int, event_id: str | None, reason: str, cells: Sequence[str]) -> None:
        self.errors.append(RowError(line, event_id, reason))
        if self._handle is None:
            self._handle = self.path.open("w", newline="", encoding="utf-8")
            csv.writer(self._handle).writerow(["line", "error", *self.header])
        masked = ["" if i in self.pii else c for i, c in enumerate(cells)]
        csv.writer(self._handle).writerow([str(line), reason, *(safe_cell(c) for c in masked)])

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()


def _process(
    crm: CrmFile,
    handle_row: Callable[[ImportRow], RowOutcome],
    *,
    rejected_path: Path,
    on_row: Callable[[int], None] | None,
) -> ImportResult:
    """Run ``handle_row`` on every parsed row of ``crm``; count the outcomes, write the failures."""
    counts: dict[RowOutcome, int] = {"recorded": 0, "existing": 0, "valid": 0}
    rows = 0
    rejects = _Rejects(rejected_path, crm.header, crm.pii)
    try:
        for line, cells in crm:
            rows += 1
            try:
                counts[handle_row(crm.parse(line, cells))] += 1
            except StoreError:
                # The outbox itself failed (full, disk, lock): stop; committed batches stay, a re-run adds the rest.
                raise
            except (MsclkidError, ValueError) as exc:
                # str() of our errors never holds the value itself (personal data), only field and rule.
                reason = str(exc) if isinstance(exc, MsclkidError) else f"invalid value: {type(exc).__name__}"
                rejects.add(line, cell(cells, crm.columns, "event_id"), reason, cells)
            if on_row is not None:
                on_row(line)
    finally:
        rejects.close()
    return ImportResult(
        rows=rows,
        recorded=counts["recorded"],
        existing=counts["existing"],
        valid=counts["valid"],
        errors=tuple(rejects.errors),
        rejected_file=rejects.path if rejects.errors else None,
    )


def _rejected_path(path: Path, rejected_path: Path | None) -> Path:
    return rejected_path or path.with_name(path.name + ".rejected.csv")


class _Batches:
    """Rows enqueued :data:`BATCH_ROWS` at a time: one batched insert and one commit per batch, no lookups.

    Each row is validated and built once (``dispatch.bulk``, or the model path for a row it cannot vouch for); a full
    batch goes to the outbox as one ``INSERT ... ON CONFLICT DO NOTHING`` inside a store transaction (a page cache
    sized for bulk writes), so rows already stored (a re-run) are skipped by the database instead of a ``find()``
    per row.  A row counts as recorded when it is taken; those the insert skipped are moved to ``existing`` when
    their batch is written.  A failure rolls back only the open batch; a re-run records what is missing (imports
    are idempotent).
    """

    def __init__(self, tracker: ConversionTracker) -> None:
        self.tracker = tracker
        self.built = OfflineRows.of(tracker)
        self.rows: list[EncodedRow | NewRow] = []
        #: Rows taken as recorded that were already in the outbox.
        self.existing = 0

    def record(self, row: ImportRow) -> RowOutcome:
        built = row.build(self.built)
        if built is None:
            # The model path, for the row the bulk builder cannot vouch for: validate's checks first (one rule set,
            # one wording per problem), then record_offline's own (the event ID, the consent decision).
            tracker = self.tracker
            check_row(row, goals=tracker.goals, now=tracker.clock(), default_region=tracker.default_region)
            self.rows.append(tracker.offline_row(**row.arguments()))
        else:
            self.rows.append(built)
        if len(self.rows) >= BATCH_ROWS:
            self.write()
        return "recorded"

    def write(self) -> None:
        rows, self.rows = self.rows, []
        if rows:
            with self.tracker.store.transaction() as connection:
                created = self.tracker.record_offline_rows(rows, connection=connection)
            self.existing += len(rows) - created

    def __enter__(self) -> _Batches:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if kind is None:
            self.write()


def import_file(
    path: Path,
    *,
    tracker: ConversionTracker,
    mapping: Mapping[str, str] | None = None,
    time_zone: str | None = None,
    default_goal: str | None = None,
    rejected_path: Path | None = None,
    on_row: Callable[[int], None] | None = None,
    encoding: str = "utf-8-sig",
) -> ImportResult:
    """Validate every row of ``path`` and record the valid ones through ``tracker``.

    Re-running the same file records nothing new: each row's ``event_id`` (and its conversion key) is already in
    the outbox.  Rejected rows are written to ``rejected_path`` (default ``<file>.rejected.csv``) with ``line``
    and ``error`` columns in front; raw email and phone cells are blanked there; a clean run removes a stale one.
    ``on_row`` is called with the line number after each row (progress).
    """
    rejected = _rejected_path(path, rejected_path)
    crm = CrmFile(path, mapping=mapping, time_zone=time_zone, default_goal=default_goal, encoding=encoding)
    with crm, _Batches(tracker) as batches:
        result = _process(crm, batches.record, rejected_path=rejected, on_row=on_row)
    result = dataclasses.replace(
        result, recorded=result.recorded - batches.existing, existing=result.existing + batches.existing
    )
    if result.rejected_file is None and rejected.exists():
        rejected.unlink()  # a clean re-run leaves no stale rejects behind
    return result


def validate_file(
    path: Path,
    *,
    goals: Sequence[str] = (),
    mapping: Mapping[str, str] | None = None,
    time_zone: str | None = None,
    default_goal: str | None = None,
    rejected_path: Path | None = None,
    now: datetime | None = None,
    on_row: Callable[[int], None] | None = None,
    encoding: str = "utf-8-sig",
) -> ImportResult:
    """Check every row of ``path`` as :func:`import_file` would (``goals``: the known goal names), recording nothing.

    A rejected-rows file is written as by :func:`import_file`; a stale one is left as it is.
    """
    clock_now = now or datetime.now(UTC)
    # The import's bulk checks (no account or consent matter here: nothing is stored), then check_row's for a row
    # they cannot vouch for: check_row alone decides what is invalid and why.
    bulk = OfflineRows(account="validate", goals=goals, consent=Consent("granted", "default"), clock=lambda: clock_now)

    def check(row: ImportRow) -> RowOutcome:
        if row.build(bulk) is None:
            check_row(row, goals=goals, now=clock_now)
        return "valid"

    with CrmFile(path, mapping=mapping, time_zone=time_zone, default_goal=default_goal, encoding=encoding) as crm:
        return _process(crm, check, rejected_path=_rejected_path(path, rejected_path), on_row=on_row)
