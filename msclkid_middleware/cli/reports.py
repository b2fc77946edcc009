"""``msclkid report`` (the outbox per goal and state) and ``msclkid reconcile`` (Microsoft's diagnostics beside it)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from msclkid_middleware.cli.common import FORMATS, fail, goals_client, open_tracker, parse_since, store_option
from msclkid_middleware.errors import MsclkidError

if TYPE_CHECKING:  # pragma: no cover
    from msclkid_middleware.dispatch.tracker import ConversionTracker
    from msclkid_middleware.microsoft.goals import DailyUploadSummary
    from msclkid_middleware.microsoft.result_files import ResultFile
    from msclkid_middleware.ops.reconcile import EventVerdict, Reconciliation
    from msclkid_middleware.ops.reports import Format

__all__ = ["RECONCILE_ALERT_EXIT", "reconcile_command", "report"]

#: Exit code of ``msclkid reconcile`` when Microsoft could not attribute more than the threshold.
RECONCILE_ALERT_EXIT = 3
#: ``GetOfflineConversionReportByGoalIds`` covers at most 7 days.
_MICROSOFT_SPAN = timedelta(days=7)
_F = TypeVar("_F", bound=Callable[..., Any])


def _also_write(flag: str, dest: str, help: str, *, allow_dash: bool = False) -> Callable[[_F], _F]:
    """``--html`` / ``--json``: an optional file the report is also written to (``allow_dash``: ``-`` is stdout)."""
    path = click.Path(dir_okay=False, writable=not allow_dash, allow_dash=allow_dash, path_type=Path)
    return click.option(flag, dest, type=path, default=None, help=help)


@click.command()
@store_option
@click.option("--since", default=None, help="Only events recorded since (7d, 24h, 2026-11-01).")
@click.option("--goal", default=None, help="Only this goal.")
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
@_also_write(
    "--html",
    "html_file",
    "Also write the report with charts to this self-contained HTML file (no script, works offline).",
)
@_also_write(
    "--json",
    "json_file",
    "Also write the same data as the HTML report as JSON to this file ('-': standard output).",
    allow_dash=True,
)
@click.option(
    "--with-microsoft",
    is_flag=True,
    help="Put Microsoft's counted / not-counted figures (last 7 days at most) beside ours; needs the MSADS_* settings.",
)
def report(
    store_url: str | None,
    since: str | None,
    goal: str | None,
    fmt: Format,
    html_file: Path | None,
    json_file: Path | None,
    with_microsoft: bool,
) -> None:
    """Per goal and state: delivered, rejected by code, pending, held, dead by reason, deduplicated; warnings.

    With --html FILE: per day, match keys per goal, delivery times and the top rejection codes as charts.
    """
    from msclkid_middleware.ops.reports import render_report, tracker_report

    with open_tracker(store_url, read_only=True, microsoft=None if with_microsoft else False, uet=False) as tracker:
        now = tracker.clock()
        start = parse_since(since, now)
        result = tracker_report(tracker, since=start, goal=goal, now=now)
        # Microsoft's report spans 7 days at most: the last 7 of the period.
        recent = max(start or now - _MICROSOFT_SPAN, now - _MICROSOFT_SPAN)
        reconciliation = _reconcile(tracker, recent, now, goal) if with_microsoft else None
    if html_file is None and json_file is None:
        click.echo(render_report(result, fmt))
        return
    from msclkid_middleware.ops.html_report import render_report_html, report_data

    try:
        if html_file is not None:
            html_file.write_text(render_report_html(result, reconciliation), encoding="utf-8")
            click.echo(f"wrote {html_file}", err=True)
        if json_file is not None:
            text = json.dumps(report_data(result, reconciliation), indent=2, sort_keys=True)
            if str(json_file) == "-":
                click.echo(text)
            else:
                json_file.write_text(text + "\n", encoding="utf-8")
                click.echo(f"wrote {json_file}", err=True)
    except OSError as exc:
        raise click.ClickException(f"cannot write {exc.filename or 'the report'}: {exc.strerror}") from None


def _reconcile(
    tracker: ConversionTracker, start: datetime, now: datetime, goal: str | None, *, files_dir: Path | None = None
) -> Reconciliation:
    """Microsoft's diagnostics from ``start`` to ``now`` beside what we delivered (with ``files_dir``: the daily
    result files, downloaded there, tied to our events)."""
    from msclkid_middleware.ops.reconcile import reconcile, sent_per_goal, tie_events

    client = goals_client(tracker)
    sent = sent_per_goal(tracker.store, start, goal)
    try:
        ids = {g.name: g.id for g in client.list_goals() if g.id and (goal is None or g.name == goal)}
        wanted = [ids[n] for n in sorted(set(sent) | set(ids)) if n in ids]
        summaries = client.offline_conversion_report(wanted, start, now) if wanted else {}
        days = client.daily_reports(start, now)
    except MsclkidError as exc:
        raise fail(exc) from None
    files: list[ResultFile] = []
    events: tuple[EventVerdict, ...] = ()
    if files_dir is not None:
        files = _download(days, files_dir, tracker.account)
        rows = tracker.store.scan(since=start, kinds=("offline", "offline_adjustment"))
        events = tie_events((r for r in rows if goal is None or r.conversion_name == goal), files)
    goal_ids = {k: v for k, v in ids.items() if v}
    return reconcile(sent, goal_ids, summaries, since=start, until=now, days=days, files=files, events=events)


@click.command("reconcile")
@store_option
@click.option("--since", default="7d", show_default=True, help="Start (7d, 24h, 2026-11-01).")
@click.option("--goal", default=None, help="Only this goal.")
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
@click.option(
    "--max-unattributed",
    type=click.FloatRange(0, 1),
    default=0.2,
    show_default=True,
    envvar="MSCLKID_MAX_UNATTRIBUTED",
    help=f"Exit {RECONCILE_ALERT_EXIT} when Microsoft could not attribute a larger share (cron alerting).",
)
@click.option(
    "--files",
    "with_files",
    is_flag=True,
    help="Download Microsoft's daily result files (before their links expire) and report, per event, what it did.",
)
@click.option(
    "--files-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("msclkid-result-files"),
    show_default=True,
    help="Where --files keeps the downloaded files (readable by their owner only).",
)
def reconcile_command(
    store_url: str | None,
    since: str,
    goal: str | None,
    fmt: Format,
    max_unattributed: float,
    with_files: bool,
    files_dir: Path,
) -> None:
    """Microsoft's per-goal diagnostics (counted, not counted by reason) beside the outbox's own counts."""
    from msclkid_middleware.ops.reconcile import render_reconciliation

    with open_tracker(store_url, uet=False) as tracker:
        now = tracker.clock()
        start = parse_since(since, now) or now - timedelta(days=7)
        result = _reconcile(tracker, start, now, goal, files_dir=files_dir if with_files else None)
    click.echo(render_reconciliation(result, fmt))
    if result.unattributed_share > max_unattributed:
        click.echo(
            f"ALERT: {result.unattributed_share:.1%} not counted by Microsoft (threshold {max_unattributed:.0%})",
            err=True,
        )
        raise click.exceptions.Exit(RECONCILE_ALERT_EXIT)


def _download(days: Sequence[DailyUploadSummary], directory: Path, account: str) -> list[ResultFile]:
    """Every offered result file, fetched now (its link expires at ``FileUrlExpiryTimeUtc``)."""
    from msclkid_middleware.microsoft.result_files import ResultFileDownloader

    with ResultFileDownloader(directory) as downloader:
        return [
            downloader.fetch(
                d.file_url,
                upload_date=d.upload_date,
                expires_at=d.file_expires_at,
                account=account,
                now=datetime.now(UTC),
            )
            for d in days
            if d.has_file
        ]
