"""``msclkid export-csv`` (Microsoft's UI import files from the outbox), ``import-csv`` and ``validate`` (CRM exports).

``import-csv`` and ``validate`` take the same file options (:func:`_csv_file_options`) and read the file with
the same parser (``ops.csv_import.CrmFile``); only what happens to a parsed row differs.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

import click

from msclkid_middleware.cli.common import (
    PROGRESS_THRESHOLD,
    fail,
    open_tracker,
    parse_since,
    progress,
    store_option,
)
from msclkid_middleware.errors import MsclkidError

if TYPE_CHECKING:  # pragma: no cover
    from msclkid_middleware.ops.csv_export import ExportKind
    from msclkid_middleware.ops.csv_import import ImportResult

__all__ = ["CsvSource", "ReadOptions", "export_csv", "import_csv", "validate"]


@click.command("export-csv")
@store_option
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=None, help="File to write.")
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
    """Write Microsoft's UI import file(s) for offline conversions or adjustments from the outbox."""
    from msclkid_middleware.ops.csv_export import export_rows, exportable_rows

    output = output or Path(f"msclkid-{kind}.csv")
    with open_tracker(store_url, microsoft=False, uet=False) as tracker:
        start = parse_since(since, tracker.clock())
        rows = exportable_rows(tracker.store, kind, since=start, goal=goal, include_delivered=include_delivered)
        try:
            result = export_rows(rows, output, kind=kind, time_zone=time_zone, max_rows=max_rows)
        except (MsclkidError, OSError) as exc:
            raise fail(exc) from None
    for path, count in zip(result.files, result.rows, strict=True):
        click.echo(f"{path}: {count} row(s)")
    click.echo(
        f"{result.total} {kind} in {len(result.files)} file(s), times in {time_zone}. Upload them under"
        " Conversions > Offline conversions > Uploads (duplicates of API uploads are ignored by Microsoft)."
    )


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


@contextmanager
def _row_progress(source: CsvSource) -> Iterator[Callable[[int], None] | None]:
    """``on_row`` for a large file (a progress bar by line number), ``None`` for a small one."""
    from msclkid_middleware.ops.csv_import import count_lines

    lines = count_lines(source.file)
    if lines < PROGRESS_THRESHOLD:
        yield None
        return
    with progress(lines, "Rows", update_min_steps=max(1, lines // 200)) as update:
        last = 1

        def on_row(line: int) -> None:
            nonlocal last
            update(line - last)
            last = line

        yield on_row


@click.command("import-csv")
@_csv_file_options
def import_csv(store_url: str | None, source: CsvSource) -> None:
    """Record conversions from a CRM export (docs/operations.md: columns); re-running a file is a no-op."""
    from msclkid_middleware.ops.csv_import import import_file

    with open_tracker(store_url) as tracker, _file_errors(), _row_progress(source) as on_row:
        result = import_file(source.file, tracker=tracker, on_row=on_row, **source.options)
    click.echo(
        f"{result.rows} row(s): {result.recorded} recorded, {result.existing} already recorded,"
        f" {result.rejected} rejected"
    )
    _show_rejects(result)


@click.command()
@_csv_file_options
def validate(store_url: str | None, source: CsvSource) -> None:
    """Check a CRM export like import-csv would, without recording anything."""
    from msclkid_middleware.ops.csv_import import validate_file

    with open_tracker(store_url, microsoft=False, uet=False) as tracker:
        goals = tracker.goals
    with _file_errors(), _row_progress(source) as on_row:
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
