"""``msclkid worker | flush | status [EVENT_ID] | retry-dead``: deliver the outbox and look into it from a shell."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING

import click

from msclkid_middleware.cli.common import (
    PROGRESS_THRESHOLD,
    open_tracker,
    progress,
    require_delivery_settings,
    store_option,
    verbose,
)
from msclkid_middleware.dispatch.status import Code

if TYPE_CHECKING:  # pragma: no cover
    from msclkid_middleware.dispatch.report import DispatchReport
    from msclkid_middleware.dispatch.tracker import ConversionTracker

__all__ = ["flush", "retry_dead", "status", "worker"]


#: Pending codes of rows held on purpose (not failed): a young goal, an event time ahead of the clock.
_HELD = frozenset({Code.GOAL_TOO_NEW, Code.FUTURE_TIME})


def _fmt_time(value: datetime | None) -> str:
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M:%S UTC")


@click.command()
@store_option
@click.option("--poll-interval", type=float, default=1.0, show_default=True, help="Idle poll interval, seconds.")
@click.option("--batch-size", type=click.IntRange(1, 1000), default=1000, show_default=True)
@click.option("--lease-seconds", type=float, default=300.0, show_default=True, help="Lease per claimed batch.")
@click.option("--drain", is_flag=True, help="Exit once nothing is due instead of running until signalled.")
def worker(store_url: str | None, poll_interval: float, batch_size: int, lease_seconds: float, drain: bool) -> None:
    """Deliver the outbox to Microsoft until SIGTERM/SIGINT (graceful: leases are finished or released).

    Exits with an error naming the missing settings when Microsoft's (or UET's) credentials are not configured.
    """
    logging.basicConfig(level=logging.DEBUG if verbose() else logging.INFO, format="%(asctime)s %(name)s %(message)s")
    with open_tracker(
        store_url, batch_size=batch_size, lease_seconds=lease_seconds, poll_interval=poll_interval
    ) as tracker:
        require_delivery_settings(tracker)
        if drain:
            report = tracker.flush(timeout=None)
        else:
            click.echo(f"msclkid worker: delivering {tracker.store.url} (Ctrl-C or SIGTERM to stop)", err=True)
            report = tracker.run_worker()
        summary = _summary(tracker, report)
    click.echo(f"worker stopped: {summary}")


@click.command()
@store_option
@click.option("--timeout", type=float, default=300.0, show_default=True, help="Give up after this many seconds.")
def flush(store_url: str | None, timeout: float) -> None:
    """Deliver everything that is due now, then report (each event once, however often it was retried).

    Exits with an error naming the missing settings when Microsoft's (or UET's) credentials are not configured.
    """
    with open_tracker(store_url) as tracker:
        require_delivery_settings(tracker)
        backlog = tracker.store.open_count()
        if backlog >= PROGRESS_THRESHOLD:
            with progress(backlog, "Delivering") as update:
                # Settled events, not claims: a row retried within the flush is claimed again but is one event.
                report = tracker.flush(timeout=timeout, on_step=lambda step: update(step.settled))
        else:
            report = tracker.flush(timeout=timeout)
        summary = _summary(tracker, report)
    click.echo(f"flush: {summary}" + (" (timed out)" if report.timed_out else ""))
    if report.timed_out:
        raise click.exceptions.Exit(1)


def _summary(tracker: ConversionTracker, report: DispatchReport) -> str:
    """What a drain did, one count per event: settled now, and where the still-open events wait."""
    # DispatchReport.retried counts attempts (one event retried three times counts three), so the open events are
    # counted from the outbox instead: each once, by why it waits.
    waiting = held = paused = 0
    for c in tracker.store.counts():
        if c.state == "paused":
            paused += c.count
        elif c.state == "pending" and c.error_code in _HELD:
            held += c.count
        elif c.state == "pending" and c.error_code:
            waiting += c.count
    return (
        f"{report.delivered} delivered, {report.rejected} rejected, {report.dead} dead;"
        f" {report.remaining} still open ({waiting} waiting for a retry, {held} held, {paused} paused);"
        f" {report.requests} request(s) to Microsoft"
    )


@click.command()
@store_option
@click.argument("event_id", required=False)
def status(store_url: str | None, event_id: str | None) -> None:
    """Show one event's delivery status, or counts per kind, goal and state."""
    from msclkid_middleware.errors import UnknownEvent

    with open_tracker(store_url) as tracker:
        if event_id is not None:
            try:
                st = tracker.status(event_id)
            except UnknownEvent as exc:
                raise click.ClickException(str(exc)) from None
            for item in (st, *st.adjustments):
                click.echo(f"{item.kind} {item.event_id}: {item.state}")
                click.echo(f"  attempts: {item.attempts}   next attempt: {_fmt_time(item.next_attempt_at)}")
                if item.tracking_id:
                    click.echo(f"  TrackingId: {item.tracking_id}")
                if item.last_error_code or item.last_error_message:
                    click.echo(f"  last error: {item.last_error_code or '-'}: {item.last_error_message or ''}")
                if item.paused_reason:
                    click.echo(f"  paused: {item.paused_reason}")
                for warning in item.warnings:
                    click.echo(f"  warning: {warning}")
            return
        counts = tracker.store.counts()
        if not counts:
            click.echo("the outbox is empty")
            return
        click.echo(f"{'kind':<19} {'goal':<24} {'state':<11} {'code':<28} {'count':>8}")
        for c in counts:
            goal = (c.conversion_name or "-")[:24]
            click.echo(f"{c.kind:<19} {goal:<24} {c.state:<11} {(c.error_code or '-')[:28]:<28} {c.count:>8}")
        for account, kind, reason in tracker.store.paused_accounts():
            click.echo(f"paused: {kind} for account {account}: {reason}")
        click.echo(f"open rows: {tracker.store.open_count()} (limit {tracker.store.max_pending})")


@click.command("retry-dead")
@store_option
@click.option("--include-rejected", is_flag=True, help="Also resend rows Microsoft rejected (after fixing the cause).")
@click.option("--event-id", default=None, help="Only this event.")
def retry_dead(store_url: str | None, include_rejected: bool, event_id: str | None) -> None:
    """Give dead (and optionally rejected) events another chance; paused accounts are resumed too."""
    with open_tracker(store_url) as tracker:
        count = tracker.retry_dead(include_rejected=include_rejected, event_id=event_id)
        resumed = tracker.resume() if event_id is None else 0
    click.echo(f"requeued {count} event(s)" + (f", resumed {resumed} paused" if resumed else ""))
