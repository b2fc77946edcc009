"""``msclkid export-csv`` (Microsoft's UI import files from the outbox), ``import-csv`` and ``validate`` (CRM exports).

``import-csv`` and ``validate`` take the same file options (:func:`_csv_file_options`) and read the file with
the same parser (``ops.csv_import.CrmFile``); only what happens to a parsed row differs.
"""

from __future__ import annotations

import csv
import difflib
import functools
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

import click

from msclkid_middleware.cli.common import (
    PROGRESS_THRESHOLD,
    command_settings,
    fail,
    open_tracker,
    parse_since,
    progress,
    store_option,
    verbose,
)
from msclkid_middleware.errors import MsclkidError

if TYPE_CHECKING:  # pragma: no cover
    from msclkid_middleware.dispatch.tracker import ConversionTracker
    from msclkid_middleware.ops.csv_export import ExportKind
    from msclkid_middleware.ops.csv_import import ImportResult
    from msclkid_middleware.outbox.base import OutboxRow

__all__ = ["CsvSource", "ReadOptions", "export_csv", "import_csv", "validate"]


@click.command("export-csv")
@store_option
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="File to write (default: msclkid-conversions.csv or msclkid-adjustments.csv in the current directory;"
    " more than 100,000 rows go to numbered files beside it).",
)
@click.option("--kind", type=click.Choice(["conversions", "adjustments"]), default="conversions", show_default=True)
@click.option("--since", default=None, help="Only events recorded since (7d, 24h, 2026-11-01).")
@click.option("--goal", default=None, help="Only this goal.")
@click.option("--time-zone", default="UTC", show_default=True, help="UTC, an offset (+0100) or a zone name.")
@click.option("--include-delivered", is_flag=True, help="Also rows the API already delivered.")
@click.option("--max-rows", type=click.IntRange(1, 100_000), default=100_000, show_default=True, hidden=True)
def export_csv(
    store_url: str | None,
    output: Path | None,
    kind: ExportKind,
    since: str | None,
    goal: str | None,
    time_zone: str,
    include_delivered: bool,
    max_rows: int,
) -> None:
    """Write Microsoft's UI import file(s) for offline conversions or adjustments from the outbox.

    Writes msclkid-conversions.csv (or msclkid-adjustments.csv) in the current directory unless --output is given.
    """
    from msclkid_middleware.ops.csv_export import EXPORT_STATES, export_rows, exportable_rows

    output = output or Path(f"msclkid-{kind}.csv")
    with open_tracker(store_url, microsoft=False, uet=False) as tracker:
        start = parse_since(since, tracker.clock())
        store_kind = _EXPORT_STORE_KIND[kind]
        counts = [c for c in tracker.store.counts() if c.kind == store_kind]
        if goal is not None:
            _warn_unknown_goal(goal, tracker.goals, {c.conversion_name for c in counts if c.conversion_name})
        # An upper bound (it ignores --since): the bar is completed when the export ends early.
        estimate = sum(
            c.count
            for c in counts
            if (goal is None or c.conversion_name == goal)
            and (c.state in EXPORT_STATES or (include_delivered and c.state == "delivered"))
        )
        rows = exportable_rows(tracker.store, kind, since=start, goal=goal, include_delivered=include_delivered)
        try:
            with _counted(rows, estimate) as counted:
                result = export_rows(counted, output, kind=kind, time_zone=time_zone, max_rows=max_rows)
        except (MsclkidError, OSError) as exc:
            raise fail(exc) from None
    for path, count in zip(result.files, result.rows, strict=True):
        click.echo(f"{path}: {count} row(s)")
    click.echo(
        f"{result.total} {kind} in {len(result.files)} file(s), times at the fixed offset {result.offset}"
        + (f" ({time_zone} at the time of the export)" if time_zone.upper() not in ("UTC", result.offset) else "")
        + ". Upload them under"
        " Conversions > Offline conversions > Uploads (duplicates of API uploads are ignored by Microsoft)."
    )


_EXPORT_STORE_KIND = {"conversions": "offline", "adjustments": "offline_adjustment"}


def _warn_unknown_goal(goal: str, configured: Sequence[str], recorded: set[str]) -> None:
    """Warn (stderr) when --goal names no configured goal and nothing recorded: most likely a typo."""
    if goal in recorded or goal in configured:
        return
    known = sorted({*configured, *recorded})
    near = difflib.get_close_matches(goal, known, n=1)
    hint = f"; did you mean {near[0]!r}?" if near else (f"; known: {', '.join(map(repr, known[:10]))}" if known else "")
    click.echo(
        f"warning: no goal named {goal!r} is configured or recorded in this outbox{hint}"
        " (names must match exactly, including case and spaces)",
        err=True,
    )


@contextmanager
def _counted(rows: Iterator[OutboxRow], estimate: int) -> Iterator[Iterator[OutboxRow]]:
    """``rows`` with a progress bar on stderr when the export is long (``estimate`` rows or more)."""
    if estimate < PROGRESS_THRESHOLD:
        yield rows
        return
    with progress(estimate, "Exporting", update_min_steps=max(1, estimate // 200)) as update:
        done = 0

        def counting() -> Iterator[OutboxRow]:
            nonlocal done
            for row in rows:
                done += 1
                update(1)
                yield row

        yield counting()
        update(max(0, estimate - done))  # the estimate is an upper bound: end the bar at 100%


class ReadOptions(TypedDict):
    """How to read a CRM export: the keyword arguments ``import_file`` and ``validate_file`` share."""

    mapping: dict[str, str]
    time_zone: str
    default_goal: str | None
    rejected_path: Path | None
    encoding: str


@dataclass(frozen=True, slots=True)
class CsvSource:
    """A CRM export and how to read it: the options ``import-csv`` and ``validate`` share."""

    file: Path
    options: ReadOptions


def _mapping(values: tuple[str, ...]) -> dict[str, str]:
    mapping = {}
    for value in values:
        name, sep, column = value.partition("=")
        if not sep or not name.strip() or not column.strip():
            raise click.BadParameter(f"{value!r}: use FIELD=COLUMN, for example event_id=OrderNumber")
        mapping[name.strip()] = column.strip()
    return mapping


def _csv_file_options(command: Callable[[str | None, CsvSource], None]) -> Callable[..., None]:
    """The options of a command reading a CRM export, handed to it as one :class:`CsvSource`."""

    @store_option
    @click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
    @click.option("--map", "maps", multiple=True, metavar="FIELD=COLUMN", help="Map a field to a column header.")
    @click.option("--time-zone", default="UTC", show_default=True, help="Zone of times without an offset.")
    @click.option("--goal", default=None, help="Goal name for rows without a conversion_name column.")
    @click.option(
        "--rejected", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Rejected-rows file."
    )
    @click.option("--encoding", default="utf-8-sig", show_default=True, help="The file's text encoding.")
    @functools.wraps(command)
    def with_source(
        store_url: str | None,
        file: Path,
        maps: tuple[str, ...],
        time_zone: str,
        goal: str | None,
        rejected: Path | None,
        encoding: str,
    ) -> None:
        options = ReadOptions(
            mapping=_mapping(maps), time_zone=time_zone, default_goal=goal, rejected_path=rejected, encoding=encoding
        )
        command(store_url, CsvSource(file, options))

    return with_source


@contextmanager
def _file_errors() -> Iterator[None]:
    try:
        yield
    except MsclkidError as exc:
        raise fail(exc) from None
    except OSError as exc:
        raise click.ClickException(f"cannot write {exc.filename or 'a file'}: {exc.strerror}") from None


@dataclass(slots=True)
class _Done:
    """How far a file was read: data rows handled and the last line handled."""

    rows: int = 0
    line: int = 0


def _data_rows(source: CsvSource) -> int:
    """The file's data rows as the importer counts them: non-blank CSV records after the header (and Parameters)."""
    try:
        with source.file.open(newline="", encoding=source.options["encoding"]) as handle:
            records = (cells for cells in csv.reader(handle) if cells and any(c.strip() for c in cells))
            first = next(records, None)
            rows = sum(1 for _ in records)
    except (OSError, LookupError, UnicodeDecodeError, csv.Error):
        return 0  # the import itself reports what is wrong with the file
    if first and first[0].startswith("Parameters:") and rows:
        rows -= 1  # Microsoft's template: the header follows the Parameters line
    return rows


@contextmanager
def _row_progress(source: CsvSource) -> Iterator[tuple[Callable[[int], None], _Done]]:
    """``on_row`` (a progress bar of data rows on stderr for a large file) and what it has counted so far."""
    from msclkid_middleware.ops.csv_import import count_lines

    done = _Done()
    total = _data_rows(source) if count_lines(source.file) >= PROGRESS_THRESHOLD else 0
    if total < PROGRESS_THRESHOLD:

        def count(line: int) -> None:
            done.rows, done.line = done.rows + 1, line

        yield count, done
        return
    with progress(total, "Rows", update_min_steps=max(1, total // 200)) as update:

        def on_row(line: int) -> None:
            done.rows, done.line = done.rows + 1, line
            update(1)

        yield on_row, done


def _offline_rows(tracker: ConversionTracker) -> int | None:
    try:
        return sum(c.count for c in tracker.store.counts() if c.kind == "offline")
    except MsclkidError:
        return None


def _stopped(tracker: ConversionTracker, before: int | None, done: _Done, why: str) -> None:
    """Say what an interrupted import committed and how to resume (stderr)."""
    from msclkid_middleware.ops.csv_import import BATCH_ROWS

    after = _offline_rows(tracker)
    committed = f"{after - before} new conversion(s)" if after is not None and before is not None else "what"
    click.echo(
        f"import {why} after {done.rows} data row(s) (line {done.line} of the file): {committed} committed"
        f" (in batches of {BATCH_ROWS}); the batch in progress was rolled back. To resume, run the same command"
        " again: rows already recorded are skipped, so nothing is recorded twice.",
        err=True,
    )


@click.command("import-csv")
@_csv_file_options
def import_csv(store_url: str | None, source: CsvSource) -> None:
    """Record conversions from a CRM export (columns: see docs/operations.md); re-running a file is a no-op.

    An interrupted import (Ctrl-C, a full disk) keeps the batches it committed; run it again to resume.
    """
    from msclkid_middleware.errors import StoreError
    from msclkid_middleware.ops.csv_import import import_file

    with open_tracker(store_url) as tracker, _row_progress(source) as (on_row, done):
        before = _offline_rows(tracker)
        try:
            with _file_errors():
                try:
                    result = import_file(source.file, tracker=tracker, on_row=on_row, **source.options)
                except StoreError as exc:
                    _stopped(tracker, before, done, f"stopped ({exc})")
                    raise  # _file_errors turns it into the command's failure
        except KeyboardInterrupt:
            _stopped(tracker, before, done, "interrupted")
            raise click.exceptions.Exit(130) from None
    click.echo(
        f"{result.rows} row(s): {result.recorded} recorded, {result.existing} already recorded,"
        f" {result.rejected} rejected"
    )
    _show_rejects(result)


@click.command()
@_csv_file_options
def validate(store_url: str | None, source: CsvSource) -> None:
    """Check a CRM export like import-csv would, without recording anything (no outbox is opened or created).

    The goal names are checked against MSADS_CONVERSION_GOALS when it is set.
    """
    from msclkid_middleware.ops.csv_import import validate_file

    goals = command_settings().conversion_goals
    if verbose():
        click.echo("store: none (validate reads only the file and the settings)", err=True)
    with _file_errors(), _row_progress(source) as (on_row, _done):
        result = validate_file(source.file, goals=goals, on_row=on_row, **source.options)
    click.echo(f"{result.rows} row(s): {result.valid} valid, {result.rejected} invalid")
    _show_rejects(result)


def _show_rejects(result: ImportResult) -> None:
    for error in result.errors[:10]:
        click.echo(f"  line {error.line} ({error.event_id or 'no event_id'}): {error.reason}")
    if result.rejected > 10:
        click.echo(f"  ... and {result.rejected - 10} more")
    if result.rejected_file is not None:
        click.echo(f"rejected rows: {result.rejected_file}")
        raise click.exceptions.Exit(1)
