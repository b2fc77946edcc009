"""What every command family shares: the ``--store`` option, the host's settings, opening the tracker, times,
errors and the progress bar.

Every command reads the same settings as the application (``MSCLKID_STORE_URL``, ``MSADS_*``, ``UET_*``; under
``flask msclkid`` the app's config), so it works on the shop's own outbox.  ``--store`` overrides the store URL.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:  # pragma: no cover
    from msclkid_middleware.dispatch.tracker import ConversionTracker
    from msclkid_middleware.microsoft.goals import GoalsClient

__all__ = [
    "ENVIRON_META_KEY",
    "FORMATS",
    "PROGRESS_THRESHOLD",
    "command_environ",
    "fail",
    "goals_client",
    "open_tracker",
    "parse_minutes",
    "parse_since",
    "progress",
    "store_option",
    "warn_exposed",
]

#: Backlogs (and files) at least this large get a progress bar.
PROGRESS_THRESHOLD = 1000
#: Key in ``click.Context.meta`` under which a host (``flask msclkid``) puts the settings mapping the
#: commands read instead of ``os.environ`` (the app's config, as ``MSCLKID_*``/``MSADS_*``/``UET_*`` strings).
ENVIRON_META_KEY = "msclkid.environ"
#: ``--format`` of the reports.
FORMATS = click.Choice(["table", "json", "csv"])
_DURATION = re.compile(r"(\d+)\s*([dhm])", re.IGNORECASE)

store_option = click.option(
    "--store", "store_url", metavar="URL", default=None, help="Outbox URL (default: MSCLKID_STORE_URL)."
)


def command_environ() -> Mapping[str, str] | None:
    """The settings mapping of the running command: the host's (Flask app config) or ``None`` for ``os.environ``."""
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return None
    environ = ctx.meta.get(ENVIRON_META_KEY)
    return environ if isinstance(environ, Mapping) else None


@contextmanager
def open_tracker(store_url: str | None, **options: object) -> Iterator[ConversionTracker]:
    """The application's tracker on its outbox (``options``: ``ConversionTracker`` keywords), closed afterwards."""
    from msclkid_middleware.dispatch.tracker import ConversionTracker
    from msclkid_middleware.errors import MsclkidError

    try:
        tracker = ConversionTracker.from_env(command_environ(), store_url=store_url, **options)
    except MsclkidError as exc:
        raise click.ClickException(str(exc)) from None
    warn_exposed(tracker.store)
    try:
        yield tracker
    finally:
        tracker.close()


def warn_exposed(store: object) -> None:
    """Warn on stderr when the store's files (they hold the Microsoft tokens in clear) are open to group or others.

    New SQLite stores are created 0600; one created by an older version, copied or restored may not be.
    PostgreSQL stores have no file here: their tokens are protected by the database's own grants.
    """
    exposed = getattr(store, "exposed_files", None)
    if not callable(exposed):
        return
    try:
        found = exposed()
    except OSError:
        return
    for path, mode in found:
        click.echo(
            f"warning: {path} is open to group or others (mode {mode:o}) and holds the Microsoft tokens;"
            f" run: chmod 600 {path}",
            err=True,
        )


def fail(exc: BaseException) -> click.ClickException:
    """The error as the command's failure message."""
    # Our errors' messages never carry secrets or personal data (errors.py); Microsoft's TrackingId is kept.
    return click.ClickException(str(exc))


def goals_client(tracker: ConversionTracker) -> GoalsClient:
    """The account's Campaign Management goals client, or a failure that says what to configure."""
    from msclkid_middleware.microsoft.goals import GoalsClient

    if tracker.campaign is None:
        raise click.ClickException(
            "Microsoft Advertising is not configured: set MSADS_DEVELOPER_TOKEN, MSADS_CLIENT_ID, MSADS_CUSTOMER_ID,"
            " MSADS_ACCOUNT_ID and run `msclkid auth` (or set MSADS_REFRESH_TOKEN)"
        )
    return GoalsClient(tracker.campaign)


def parse_since(value: str | None, now: datetime) -> datetime | None:
    """``7d`` / ``24h`` / ``90m`` ago, or an ISO date / date-time (UTC when no zone is given)."""
    if value is None:
        return None
    text = value.strip()
    match = _DURATION.fullmatch(text)
    if match:
        amount, unit = int(match.group(1)), match.group(2).lower()
        return now - timedelta(**{{"d": "days", "h": "hours", "m": "minutes"}[unit]: amount})
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{value!r}: use 7d, 24h, 90m or an ISO date such as 2026-11-01") from None
    return parsed if parsed.utcoffset() is not None else parsed.replace(tzinfo=UTC)


def parse_minutes(value: str) -> int:
    """``30d`` / ``12h`` / ``90m`` or plain minutes, as minutes."""
    text = value.strip().lower()
    if text.isdigit():
        return int(text)
    match = _DURATION.fullmatch(text)
    if not match:
        raise click.BadParameter(f"{value!r}: use 30d, 12h, 90m or minutes")
    return int(match.group(1)) * {"d": 1440, "h": 60, "m": 1}[match.group(2)]


@contextmanager
def progress(length: int, label: str, *, update_min_steps: int = 1) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr of ``length`` steps; yields its ``update(steps)``."""
    with click.progressbar(
        length=length, label=label, show_pos=True, file=sys.stderr, update_min_steps=update_min_steps
    ) as bar:
        yield bar.update
