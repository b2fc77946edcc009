"""``msclkid send-test``: one controlled conversion, recorded in the outbox and sent now; Microsoft's answer printed.

Nothing printed holds the email address or phone number given: they are hashed before anything is stored.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

import click

from msclkid_middleware.cli.common import fail, goals_client, open_tracker, parse_since, store_option
from msclkid_middleware.errors import MsclkidError

if TYPE_CHECKING:  # pragma: no cover
    from msclkid_middleware.dispatch.tracker import ConversionTracker
    from msclkid_middleware.outbox.base import Kind

__all__ = ["send_test"]

_OFFLINE: tuple[Kind, ...] = ("offline",)


@click.command("send-test")
@store_option
@click.option("--click-id", default=None, help="The msclkid of a real ad click (or give --email/--phone).")
@click.option("--goal", required=True, help="The offline conversion goal's exact name.")
@click.option("--value", type=float, default=None)
@click.option("--currency", default=None)
@click.option(
    "--time",
    "when",
    default=None,
    help="Conversion time: ISO 8601 (2026-11-28T12:00:00Z; no zone means UTC) or how long ago as a number and one"
    " unit: 90m, 2h, 3d (minutes, hours, days). Default: now.",
)
@click.option("--event-id", default=None, help="Event ID to record it under (default: send-test-<time>).")
@click.option("--email", default=None, help="Customer email (hashed here, never stored or printed).")
@click.option("--phone", default=None, help="Customer phone in E.164 (hashed here).")
def send_test(
    store_url: str | None,
    click_id: str | None,
    goal: str,
    value: float | None,
    currency: str | None,
    when: str | None,
    event_id: str | None,
    email: str | None,
    phone: str | None,
) -> None:
    """Send one controlled conversion now (recorded in the outbox) and print Microsoft's answer."""
    with open_tracker(store_url) as tracker:
        if tracker.campaign is None:
            goals_client(tracker)  # raises the "not configured" message
        now = tracker.clock()
        conversion_time = parse_since(when, now) if when else now - timedelta(seconds=5)
        assert conversion_time is not None  # noqa: S101 - parse_since returns a time for a value
        event_id = event_id or f"send-test-{now:%Y%m%dT%H%M%S}"
        try:
            status = tracker.record_offline(event_id, goal, conversion_time, value, currency, click_id, email, phone)
        except MsclkidError as exc:
            raise fail(exc) from None
        if not status.created:
            click.echo(f"{event_id} was recorded before; its state: {status.state}")
        else:
            _send_now(tracker, event_id)
        final = tracker.status(event_id)
        click.echo(f"outcome: {final.state}")
        if final.state == "pending" and final.last_error_code:
            # Not sent (held for a young goal, or a transient failure to retry): say why and when.
            click.echo(f"waiting: {final.last_error_code}: {final.last_error_message or ''}")
            click.echo(f"next attempt: {final.next_attempt_at:%Y-%m-%d %H:%M:%S} UTC" if final.next_attempt_at else "")
        elif final.last_error_code or final.last_error_message:
            click.echo(f"PartialErrors: {final.last_error_code or '-'}: {final.last_error_message or ''}")
        else:
            click.echo("PartialErrors: none")
        click.echo(f"TrackingId: {final.tracking_id or '-'}")
        if final.state == "delivered":
            click.echo("Accepted. Microsoft shows it in the Conversions column after up to 6 hours.")
        if final.state not in ("delivered", "pending"):
            raise click.exceptions.Exit(1)


def _send_now(tracker: ConversionTracker, event_id: str) -> None:
    """Claim exactly this event and send it now; other due rows met on the way are released untouched.

    Uses the dispatcher's own send/settle steps, so the outcome is recorded exactly as the worker would.
    """
    from msclkid_middleware.outbox.base import Outcome

    dispatcher, store = tracker.dispatcher, tracker.store
    mine = list(store.find(event_id, kind="offline"))
    if not mine:
        return
    target = mine[0].id
    for _ in range(100):
        now = tracker.clock()
        rows = store.claim(owner=dispatcher.owner, limit=1000, now=now, lease_seconds=120.0, kinds=_OFFLINE)
        others = [r for r in rows if r.id != target]
        if others:
            store.settle([Outcome(r.id, r.lease_token or "", "pending", refund_attempt=True) for r in others], now=now)
        found = [r for r in rows if r.id == target]
        if found:
            dispatcher.deliver(found)
            return
        if not rows:
            return  # not due (held, or a worker holds its lease): the status shows where it is
