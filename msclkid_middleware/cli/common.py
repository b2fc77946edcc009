"""What every command family shares: the ``--store`` option, the host's settings, opening the tracker, times,
errors and the progress bar.

Every command reads the same settings as the application (``MSCLKID_STORE_URL``, ``MSADS_*``, ``UET_*``; under
``flask msclkid`` the app's config), so it works on the shop's own outbox.  ``--store`` overrides the store URL;
``-v`` (with ``--store`` on every command that opens the outbox) says which outbox the command used.  Commands that
only read (:data:`READ_ONLY_COMMANDS`) never create an outbox: where there is none, they say where they looked.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:  # pragma: no cover
    from msclkid_middleware.config import Settings
    from msclkid_middleware.dispatch.tracker import ConversionTracker
    from msclkid_middleware.microsoft.goals import GoalsClient

__all__ = [
    "ENVIRON_META_KEY",
    "FORMATS",
    "PROGRESS_THRESHOLD",
    "READ_ONLY_COMMANDS",
    "VERBOSE_META_KEY",
    "command_environ",
    "command_settings",
    "fail",
    "goals_client",
    "open_tracker",
    "parse_minutes",
    "parse_since",
    "progress",
    "require_delivery_settings",
    "store_option",
    "verbose",
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

#: Key in ``click.Context.meta`` set by ``-v``/``--verbose``.
VERBOSE_META_KEY = "msclkid.verbose"
#: Commands that only read the outbox: without one where they look, they fail instead of creating an empty one.
READ_ONLY_COMMANDS = frozenset({"status", "report", "reconcile", "export-csv", "validate"})
_F = TypeVar("_F", bound=Callable[..., Any])
_CAMPAIGN_KINDS = frozenset({"offline", "offline_adjustment", "online_adjustment"})
_OPEN_STATES = frozenset({"pending", "in_flight", "paused"})
_MSADS_SETTINGS = (
    ("developer_token", "MSADS_DEVELOPER_TOKEN"),
    ("client_id", "MSADS_CLIENT_ID"),
    ("customer_id", "MSADS_CUSTOMER_ID"),
    ("account_id", "MSADS_ACCOUNT_ID"),
)
_UET_SETTINGS = (("uet_tag_id", "UET_TAG_ID"), ("uet_api_token", "UET_API_TOKEN"))


def _remember_verbose(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    if value:
        ctx.meta[VERBOSE_META_KEY] = True
    return value


_store = click.option(
    "--store", "store_url", metavar="URL", default=None, help="Outbox URL (default: MSCLKID_STORE_URL)."
)
_verbose = click.option(
    "-v",
    "--verbose",
    is_flag=True,
    expose_value=False,
    callback=_remember_verbose,
    help="Say which outbox the command uses (and log each step where the command has steps).",
)


def store_option(command: _F) -> _F:
    """``--store URL`` (the command's ``store_url`` argument) and ``-v``/``--verbose`` (see :func:`verbose`)."""
    return _store(_verbose(command))


def verbose() -> bool:
    """Whether the running command was given ``-v``/``--verbose``."""
    ctx = click.get_current_context(silent=True)
    return bool(ctx is not None and ctx.meta.get(VERBOSE_META_KEY))


def command_environ() -> Mapping[str, str] | None:
    """The settings mapping of the running command: the host's (Flask app config) or ``None`` for ``os.environ``."""
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return None
    environ = ctx.meta.get(ENVIRON_META_KEY)
    return environ if isinstance(environ, Mapping) else None


def command_settings() -> Settings:
    """The settings of the running command (environment, or the host's config), or a failure naming the bad one."""
    from msclkid_middleware.config import Settings
    from msclkid_middleware.errors import MsclkidError

    try:
        return Settings.from_env(command_environ())
    except MsclkidError as exc:
        raise click.ClickException(str(exc)) from None


def _store_source(store_url: str | None, settings: Settings) -> tuple[str, str]:
    """The outbox URL a command uses and where it came from."""
    if store_url:
        return store_url, "--store"
    if settings.store_url:
        return settings.store_url, "MSCLKID_STORE_URL"
    return settings.effective_store_url, "the default: MSCLKID_STORE_URL is not set"


def _require_existing(url: str, source: str) -> None:
    """A read-only command must not create an outbox: fail where a SQLite file is missing (say where we looked)."""
    if not url.startswith("sqlite:///"):
        return  # a PostgreSQL outbox is a server's database: opening it creates no file
    path = Path(url[len("sqlite:///") :].split("?", 1)[0]).resolve()
    if path.exists():
        return
    where = "--store" if source == "--store" else "MSCLKID_STORE_URL"
    if source.startswith("the default"):
        raise click.ClickException(
            f"no outbox found: MSCLKID_STORE_URL is not set, so this command looked for the default file {path}"
            " (in the current directory) and did not create it. Run it where the application runs, or point it at"
            " the application's outbox with --store URL or MSCLKID_STORE_URL"
            " (sqlite:////absolute/path.sqlite3 or postgresql://...)."
        )
    raise click.ClickException(
        f"no outbox at {path} (from {where}); nothing was created. Give the URL of the outbox the application"
        " writes to (sqlite:////absolute/path.sqlite3 or postgresql://...)."
    )


@contextmanager
def open_tracker(
    store_url: str | None, *, read_only: bool | None = None, **options: object
) -> Iterator[ConversionTracker]:
    """The application's tracker on its outbox (``options``: ``ConversionTracker`` keywords), closed afterwards.

    ``read_only`` (default: whether the command is one of :data:`READ_ONLY_COMMANDS`): fail rather than create a
    missing SQLite outbox.  With ``-v`` the outbox used is printed on stderr (without any password).
    """
    from msclkid_middleware.dispatch.tracker import ConversionTracker
    from msclkid_middleware.errors import MsclkidError

    settings = command_settings()
    url, source = _store_source(store_url, settings)
    if read_only is None:
        ctx = click.get_current_context(silent=True)
        read_only = ctx is not None and ctx.info_name in READ_ONLY_COMMANDS
    if read_only:
        _require_existing(url, source)
    try:
        tracker = ConversionTracker.from_env(None, settings=settings, store_url=url, **options)
    except MsclkidError as exc:
        raise click.ClickException(str(exc)) from None
    warn_exposed(tracker.store)
    try:
        if verbose():
            click.echo(f"store: {tracker.store.url} (from {source})", err=True)
        yield tracker
    finally:
        tracker.close()


def require_delivery_settings(tracker: ConversionTracker) -> None:
    """Fail, naming the missing settings, when the tracker cannot deliver what is (or will be) in the outbox.

    Without Microsoft's credentials the open offline conversions and adjustments cannot be sent, without the UET
    ones the open UET events cannot; with neither, nothing ever can.  A worker that ran anyway would report
    "0 delivered" forever.
    """
    open_kinds = {c.kind for c in tracker.store.counts() if c.state in _OPEN_STATES}
    settings = tracker.settings
    problems = []
    campaign_rows = open_kinds & _CAMPAIGN_KINDS
    if tracker.campaign is None and (campaign_rows or (tracker.uet is None and not open_kinds - _CAMPAIGN_KINDS)):
        names = [env for field, env in _MSADS_SETTINGS if not getattr(settings, field)]
        if not settings.refresh_token:
            names.append("MSADS_REFRESH_TOKEN (or run `msclkid auth`)")
        what = f"open {', '.join(sorted(campaign_rows))} rows" if campaign_rows else "offline conversions"
        problems.append(f"Microsoft Advertising is not configured for {what}: set {', '.join(names)}")
    if tracker.uet is None and "uet" in open_kinds:
        names = [env for field, env in _UET_SETTINGS if not getattr(settings, field)]
        problems.append(f"UET is not configured for the open uet rows: set {', '.join(names) or 'UET_API_TOKEN'}")
    if problems:
        raise click.ClickException("nothing can be delivered: " + "; ".join(problems))


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
    """A progress bar on stderr of ``length`` steps; yields its ``update(steps)``.

    Steps are drawn in chunks of ``update_min_steps``; what is left over is drawn when the block ends normally, so
    a finished run ends at 100% (click itself drops a last partial chunk).
    """
    with click.progressbar(length=length, label=label, show_pos=True, file=sys.stderr) as bar:
        pending = 0

        def update(steps: int) -> None:
            nonlocal pending
            pending += steps
            if pending >= update_min_steps:
                bar.update(pending)
                pending = 0

        yield update
        if pending:
            bar.update(pending)
