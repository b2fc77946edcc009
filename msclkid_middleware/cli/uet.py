"""``msclkid uet token``: fetch the UET Conversions API token through the API; kept in the outbox, never shown."""

from __future__ import annotations

import click

from msclkid_middleware.cli.common import fail, goals_client, open_tracker, store_option
from msclkid_middleware.errors import MicrosoftError, MsclkidError

__all__ = ["uet"]


@click.group()
def uet() -> None:
    """UET Conversions API helpers."""


@uet.command("token")
@store_option
@click.option("--tag-id", default=None, help="UET tag ID (default: UET_TAG_ID).")
def uet_token(store_url: str | None, tag_id: str | None) -> None:
    """Fetch the UET CAPI token through the API (UetTagAuthKey/Query) and store it; it is never printed."""
    from msclkid_middleware.dispatch.tracker import UET_TOKEN_PREFIX
    from msclkid_middleware.outbox.base import TokenRecord

    with open_tracker(store_url, uet=False) as tracker:
        tag = tag_id or tracker.settings.uet_tag_id
        if not tag:
            raise click.ClickException("give --tag-id or set UET_TAG_ID")
        client = goals_client(tracker)
        try:
            key = client.uet_tag_auth_key(tag)
        except (MicrosoftError, MsclkidError) as exc:
            raise fail(exc) from None
        tracker.redactor.add(key)
        name = f"{UET_TOKEN_PREFIX}{tag}"
        previous = tracker.store.load_token(name)
        changed = previous is None or previous.refresh_token != key
        if changed:
            serial = (previous.serial if previous is not None else 0) + 1
            tracker.store.save_token(name, TokenRecord(key, tracker.clock(), serial, {"tag_id": tag}))
    state = "stored" if changed else "unchanged"
    click.echo(f"UET CAPI token for tag {tag} {state} in {tracker.store.url} (not shown). Workers use it when"
               " UET_API_TOKEN is not set.")  # fmt: skip
