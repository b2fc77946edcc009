"""Operating commands: ``auth``, ``send-test``, ``report``, ``export-csv``, ``import-csv``, ``validate``, ``goals``,
``reconcile`` and ``uet token`` (docs/operations.md).

Like the outbox commands they read the application's settings (``command_environ()``: the Flask config under
``flask msclkid``, else the environment) and the shop's own outbox.  Nothing printed here contains a token, a
secret, a raw email address or a phone number: tokens go straight from Microsoft into the store.
"""

from __future__ import annotations

import re
import secrets
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import click

from msclkid_middleware.cli.commands import PROGRESS_THRESHOLD, _store_option, _tracker
from msclkid_middleware.errors import ConfigError, MicrosoftError, MsclkidError, ValidationError

if TYPE_CHECKING:  # pragma: no cover
    from msclkid_middleware.dispatch.tracker import ConversionTracker
    from msclkid_middleware.microsoft.goals import ConversionGoal, GoalsClient
    from msclkid_middleware.outbox.base import Kind

__all__ = [
    "auth",
    "export_csv",
    "goals",
    "import_csv",
    "reconcile_command",
    "report",
    "send_test",
    "uet",
    "validate",
]

#: Exit code of ``msclkid reconcile`` when Microsoft could not attribute more than the threshold.
RECONCILE_ALERT_EXIT = 3
NATIVE_REDIRECT = "https://login.microsoftonline.com/common/oauth2/nativeclient"
_DURATION = re.compile(r"(\d+)\s*([dhm])", re.IGNORECASE)
_OFFLINE: tuple[Kind, ...] = ("offline",)
_FORMATS = click.Choice(["table", "json", "csv"])
_CATEGORIES = (
    "Purchase", "AddToCart", "BeginCheckout", "Subscribe", "SubmitLeadForm", "BookAppointment", "Signup",
    "RequestQuote", "GetDirections", "OutboundClick", "Contact", "PageView", "Download", "Other",
)  # fmt: skip


# -- helpers ---------------------------------------------------------------------------------------------------


@contextmanager
def _opened(store_url: str | None, **options: Any) -> Iterator[ConversionTracker]:
    tracker = _tracker(store_url, **options)
    try:
        yield tracker
    finally:
        tracker.close()


def _fail(exc: BaseException) -> click.ClickException:
    # Our errors' messages never carry secrets or personal data (errors.py); Microsoft's TrackingId is kept.
    return click.ClickException(str(exc))


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


def _window_minutes(value: str) -> int:
    text = value.strip().lower()
    if text.isdigit():
        return int(text)
    match = _DURATION.fullmatch(text)
    if not match:
        raise click.BadParameter(f"{value!r}: use 30d, 12h, 90m or minutes")
    return int(match.group(1)) * {"d": 1440, "h": 60, "m": 1}[match.group(2)]


def _goals_client(tracker: ConversionTracker) -> GoalsClient:
    from msclkid_middleware.microsoft.goals import GoalsClient

    if tracker.campaign is None:
        raise click.ClickException(
            "Microsoft Advertising is not configured: set MSADS_DEVELOPER_TOKEN, MSADS_CLIENT_ID, MSADS_CUSTOMER_ID,"
            " MSADS_ACCOUNT_ID and run `msclkid auth` (or set MSADS_REFRESH_TOKEN)"
        )
    return GoalsClient(tracker.campaign)


def _age(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.0f} d"


# -- auth ------------------------------------------------------------------------------------------------------


class _OneShot(HTTPServer):
    result: dict[str, str]


class _CallbackHandler(BaseHTTPRequestHandler):
    server: _OneShot

    def do_GET(self) -> None:
        query = {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}
        if "code" not in query and "error" not in query:
            self.send_response(404)
            self.end_headers()
            return
        self.server.result = query
        ok = "code" in query
        body = (
            "<html><body><h1>msclkid: consent received</h1><p>You can close this window.</p></body></html>"
            if ok
            else "<html><body><h1>msclkid: consent failed</h1><p>See the terminal.</p></body></html>"
        ).encode()
        self.send_response(200 if ok else 400)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return  # the request line holds the authorization code: never log it


def _listen_once(server: _OneShot, timeout: float) -> dict[str, str]:
    server.result = {}
    server.timeout = 0.2
    deadline = datetime.now(UTC) + timedelta(seconds=timeout)
    while not server.result:
        if datetime.now(UTC) >= deadline:
            raise click.ClickException(f"no redirect arrived within {timeout:.0f} s; run `msclkid auth` again")
        server.handle_request()
    return server.result


def _code_from(answer: str, state: str, *, require_state: bool) -> str:
    text = answer.strip()
    if "code=" in text or "error=" in text:
        query = {k: v[0] for k, v in parse_qs(urlsplit(text).query or text.split("?", 1)[-1]).items()}
        return _code_from_query(query, state, require_state=require_state)
    if not text:
        raise click.ClickException("no code given")
    return text


def _code_from_query(query: dict[str, str], state: str, *, require_state: bool) -> str:
    if "error" in query:
        description = query.get("error_description", "").split(" Trace ID:")[0]
        raise click.ClickException(f"Microsoft refused the consent: {query['error']}: {description}")
    if (require_state or "state" in query) and query.get("state") != state:
        raise click.ClickException(
            "the redirect's state does not match this run (a stale or foreign link); start again"
        )
    code = query.get("code", "")
    if not code:
        raise click.ClickException("the redirect holds no code")
    return code


@click.command()
@_store_option
@click.option("--check", is_flag=True, help="Refresh once and report which account the stored grant works for.")
@click.option("--listen", is_flag=True, help="Receive the redirect on a one-shot loopback listener.")
@click.option("--port", type=click.IntRange(0, 65535), default=0, help="Listener port (0: any free port).")
@click.option("--redirect-uri", default=None, help="Redirect URI registered for the app (default depends on mode).")
@click.option("--code", "answer", default=None, help="The redirected URL or the code (instead of the prompt).")
@click.option("--timeout", type=float, default=300.0, show_default=True, help="Listener wait, seconds.")
def auth(
    store_url: str | None,
    check: bool,
    listen: bool,
    port: int,
    redirect_uri: str | None,
    answer: str | None,
    timeout: float,
) -> None:
    """First OAuth consent: print Microsoft's sign-in URL, redeem the code, store the refresh token."""
    from msclkid_middleware.microsoft import RefreshTokenProvider
    from msclkid_middleware.outbox.tokens import OutboxTokenStore

    with _opened(store_url, microsoft=None if check else False, uet=False) as tracker:
        settings = tracker.settings
        if check:
            _auth_check(tracker)
            return
        try:
            provider = RefreshTokenProvider.from_settings(
                settings, token_store=OutboxTokenStore(tracker.store, redactor=tracker.redactor)
            )
        except ConfigError as exc:
            raise _fail(exc) from None
        state = secrets.token_urlsafe(16)
        server: _OneShot | None = None
        try:
            if listen:
                server = _OneShot(("127.0.0.1", port), _CallbackHandler)
                redirect_uri = redirect_uri or f"http://localhost:{server.server_address[1]}/"
            redirect_uri = redirect_uri or NATIVE_REDIRECT
            url = provider.authorize_url(redirect_uri, state, prompt="select_account")
            click.echo(f"Sign in as the Microsoft Advertising user ({settings.environment}) and allow access:")
            click.echo(url)
            if server is not None:
                click.echo(f"Waiting for the redirect on {redirect_uri} ...", err=True)
                code = _code_from_query(_listen_once(server, timeout), state, require_state=True)
            else:
                if answer is None:
                    answer = click.prompt("Paste the URL you were redirected to (or just the code)", hide_input=True)
                code = _code_from(answer, state, require_state=False)
        finally:
            if server is not None:
                server.server_close()
        try:
            token = provider.exchange_code(code, redirect_uri)
        except MsclkidError as exc:
            raise _fail(exc) from None
        finally:
            provider.close()
        click.echo(
            f"Access granted: refresh token stored in {tracker.store.url} (serial {token.serial}; it rotates on every"
            " use and is kept there). Next: `msclkid auth --check`, then `msclkid send-test`."
        )


def _auth_check(tracker: ConversionTracker) -> None:
    settings = tracker.settings
    client = _goals_client(tracker)
    provider = client.campaign.token_provider
    try:
        provider.force_refresh()
        goals = client.list_goals()
    except MsclkidError as exc:
        raise _fail(exc) from None
    stored = getattr(getattr(provider, "token_store", None), "load", lambda: None)()
    serial = f", serial {stored.serial}" if stored is not None else ""
    click.echo(f"OK: the refresh token works (application {settings.client_id}, {settings.environment}{serial}).")
    click.echo(
        f"Account {client.campaign.account_id} of customer {client.campaign.customer_id}: access confirmed,"
        f" {len(goals)} offline conversion goal(s)."
    )


# -- send-test -------------------------------------------------------------------------------------------------


@click.command("send-test")
@_store_option
@click.option("--click-id", default=None, help="The msclkid of a real ad click (or give --email/--phone).")
@click.option("--goal", required=True, help="The offline conversion goal's exact name.")
@click.option("--value", type=float, default=None)
@click.option("--currency", default=None)
@click.option("--time", "when", default=None, help="Conversion time (ISO 8601; default: now).")
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
    with _opened(store_url) as tracker:
        if tracker.campaign is None:
            _goals_client(tracker)  # raises the "not configured" message
        now = tracker.clock()
        conversion_time = parse_since(when, now) if when else now - timedelta(seconds=5)
        assert conversion_time is not None  # noqa: S101 - parse_since returns a time for a value
        event_id = event_id or f"send-test-{now:%Y%m%dT%H%M%S}"
        try:
            status = tracker.record_offline(event_id, goal, conversion_time, value, currency, click_id, email, phone)
        except MsclkidError as exc:
            raise _fail(exc) from None
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


# -- report ----------------------------------------------------------------------------------------------------


@click.command()
@_store_option
@click.option("--since", default=None, help="Only events recorded since (7d, 24h, 2026-11-01).")
@click.option("--goal", default=None, help="Only this goal.")
@click.option("--format", "fmt", type=_FORMATS, default="table", show_default=True)
def report(store_url: str | None, since: str | None, goal: str | None, fmt: str) -> None:
    """Per goal and state: delivered, rejected by code, pending, held, dead by reason, deduplicated; warnings."""
    from msclkid_middleware.ops.reports import build_report, render_report

    with _opened(store_url, microsoft=False, uet=False) as tracker:
        now = tracker.clock()
        result = build_report(
            tracker.store,
            since=parse_since(since, now),
            goal=goal,
            known_goals=tracker.goals,
            registry=tracker.goal_registry,
            now=now,
        )
    click.echo(render_report(result, fmt))  # type: ignore[arg-type]


# -- CSV -------------------------------------------------------------------------------------------------------

_EXPORT_STATES = ("pending", "paused", "dead", "in_flight")


@click.command("export-csv")
@_store_option
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
    kind: str,
    since: str | None,
    goal: str | None,
    time_zone: str,
    include_delivered: bool,
    max_rows: int,
) -> None:
    """Write Microsoft's UI import file(s) for offline conversions or adjustments from the outbox."""
    from msclkid_middleware.ops.csvfiles import export_rows

    states = (*_EXPORT_STATES, "delivered") if include_delivered else _EXPORT_STATES
    output = output or Path(f"msclkid-{kind}.csv")
    with _opened(store_url, microsoft=False, uet=False) as tracker:
        now = tracker.clock()
        store_kind: tuple[Kind, ...] = _OFFLINE if kind == "conversions" else ("offline_adjustment",)
        rows = (
            r
            for r in tracker.store.scan(since=parse_since(since, now), kinds=store_kind)
            if r.state in states and (goal is None or r.conversion_name == goal)
        )
        try:
            result = export_rows(rows, output, kind=kind, time_zone=time_zone, max_rows=max_rows)  # type: ignore[arg-type]
        except (MsclkidError, OSError) as exc:
            raise _fail(exc) from None
    for path, count in zip(result.files, result.rows, strict=True):
        click.echo(f"{path}: {count} row(s)")
    click.echo(
        f"{result.total} {kind} in {len(result.files)} file(s), times in {time_zone}. Upload them under"
        " Conversions > Offline conversions > Uploads (duplicates of API uploads are ignored by Microsoft)."
    )


def _mapping(values: tuple[str, ...]) -> dict[str, str]:
    mapping = {}
    for value in values:
        name, sep, column = value.partition("=")
        if not sep or not name.strip() or not column.strip():
            raise click.BadParameter(f"{value!r}: use FIELD=COLUMN, for example event_id=OrderNumber")
        mapping[name.strip()] = column.strip()
    return mapping


_csv_options = [
    click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path)),
    click.option("--map", "maps", multiple=True, metavar="FIELD=COLUMN", help="Map a field to a column header."),
    click.option("--time-zone", default="UTC", show_default=True, help="Zone of times without an offset."),
    click.option("--goal", default=None, help="Goal name for rows without a conversion_name column."),
    click.option(
        "--rejected", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Rejected-rows file."
    ),
    click.option("--encoding", default="utf-8-sig", show_default=True, help="The file's text encoding."),
]


def _with_csv_options(command: Any) -> Any:
    for option in reversed(_csv_options):
        command = option(command)
    return command


def _run_import(
    tracker: ConversionTracker | None,
    goals: tuple[str, ...],
    file: Path,
    maps: tuple[str, ...],
    time_zone: str,
    goal: str | None,
    rejected: Path | None,
    encoding: str,
) -> Any:
    from msclkid_middleware.ops.csvfiles import count_lines, import_file

    kwargs: dict[str, Any] = {
        "tracker": tracker,
        "goals": goals,
        "mapping": _mapping(maps),
        "time_zone": time_zone,
        "default_goal": goal,
        "rejected_path": rejected,
        "encoding": encoding,
    }
    try:
        lines = count_lines(file)
        if lines < PROGRESS_THRESHOLD:
            return import_file(file, **kwargs)
        with click.progressbar(
            length=lines, label="Rows", show_pos=True, file=sys.stderr, update_min_steps=max(1, lines // 200)
        ) as bar:
            last = [1]

            def progress(line: int) -> None:
                bar.update(line - last[0])
                last[0] = line

            return import_file(file, on_row=progress, **kwargs)
    except MsclkidError as exc:
        raise _fail(exc) from None
    except OSError as exc:
        raise click.ClickException(f"cannot write {exc.filename or 'a file'}: {exc.strerror}") from None


@click.command("import-csv")
@_store_option
@_with_csv_options
def import_csv(
    store_url: str | None,
    file: Path,
    maps: tuple[str, ...],
    time_zone: str,
    goal: str | None,
    rejected: Path | None,
    encoding: str,
) -> None:
    """Record conversions from a CRM export (docs/operations.md: columns); re-running a file is a no-op."""
    with _opened(store_url) as tracker:
        result = _run_import(tracker, tracker.goals, file, maps, time_zone, goal, rejected, encoding)
    click.echo(
        f"{result.rows} row(s): {result.recorded} recorded, {result.existing} already recorded,"
        f" {result.rejected} rejected"
    )
    _show_rejects(result)


@click.command()
@_store_option
@_with_csv_options
def validate(
    store_url: str | None,
    file: Path,
    maps: tuple[str, ...],
    time_zone: str,
    goal: str | None,
    rejected: Path | None,
    encoding: str,
) -> None:
    """Check a CRM export like import-csv would, without recording anything."""
    with _opened(store_url, microsoft=False, uet=False) as tracker:
        goals = tracker.goals
    result = _run_import(None, goals, file, maps, time_zone, goal, rejected, encoding)
    click.echo(f"{result.rows} row(s): {result.valid} valid, {result.rejected} invalid")
    _show_rejects(result)


def _show_rejects(result: Any) -> None:
    for error in result.errors[:10]:
        click.echo(f"  line {error.line} ({error.event_id or 'no event_id'}): {error.reason}")
    if result.rejected > 10:
        click.echo(f"  ... and {result.rejected - 10} more")
    if result.rejected_file is not None:
        click.echo(f"rejected rows: {result.rejected_file}")
        raise click.exceptions.Exit(1)


# -- goals -----------------------------------------------------------------------------------------------------


@click.group(invoke_without_command=True)
@_store_option
@click.pass_context
def goals(ctx: click.Context, store_url: str | None) -> None:
    """List the account's offline conversion goals and check the configured names against them."""
    ctx.obj = store_url
    if ctx.invoked_subcommand is None:
        ctx.invoke(list_goals, store_url=store_url)
        ctx.invoke(check_goals, store_url=store_url)


def _store_of(ctx: click.Context, store_url: str | None) -> str | None:
    return store_url or (ctx.obj if isinstance(ctx.obj, str) else None)


@goals.command("list")
@_store_option
@click.pass_context
def list_goals(ctx: click.Context, store_url: str | None) -> None:
    """The account's offline conversion goals."""
    with _opened(_store_of(ctx, store_url), uet=False) as tracker:
        client = _goals_client(tracker)
        try:
            found = client.list_goals()
        except MsclkidError as exc:
            raise _fail(exc) from None
        now = tracker.clock()
        click.echo(
            f"{'id':>10} {'name':<28} {'status':<8} {'revenue':<22} {'window':>7} {'count':<6} {'enhanced':<8} age"
        )
        for g in found:
            click.echo(
                f"{g.id or '-':>10} {g.name[:28]:<28} {g.status:<8} {_revenue(g)[:22]:<22}"
                f" {_age(timedelta(minutes=g.conversion_window_minutes)):>7} {g.count_type:<6}"
                f" {_flag(g.enhanced):<8} {_goal_age(tracker, g.name, now)}"
            )
        if not found:
            click.echo("no offline conversion goals: create one with `msclkid goals create NAME`")


def _revenue(goal: ConversionGoal) -> str:
    if goal.revenue_type == "NoValue":
        return "no value"
    value = "" if goal.revenue_value is None else f" {goal.revenue_value:g}"
    kind = "fixed" if goal.revenue_type == "FixedValue" else "variable"
    return f"{kind}{value} {goal.currency or ''}".strip()


def _flag(value: bool | None) -> str:
    return "unknown" if value is None else ("on" if value else "off")


def _goal_age(tracker: ConversionTracker, name: str, now: datetime) -> str:
    record = tracker.goal_registry.get(tracker.account, name)
    if record is None:
        return "unknown (not created by msclkid)"
    age = record.age(now)
    return _age(age) + ("" if record.ready_at <= now else f" (too young until {record.ready_at:%H:%M} UTC)")


@goals.command("check")
@_store_option
@click.pass_context
def check_goals(ctx: click.Context, store_url: str | None) -> None:
    """Check MSADS_CONVERSION_GOALS (else the names in the outbox) against the account: exact, active, age."""
    with _opened(_store_of(ctx, store_url), uet=False) as tracker:
        client = _goals_client(tracker)
        try:
            found = {g.name: g for g in client.list_goals()}
        except MsclkidError as exc:
            raise _fail(exc) from None
        names = list(tracker.goals) or sorted({c.conversion_name for c in tracker.store.counts() if c.conversion_name})
        if not names:
            click.echo("no goal names configured (MSADS_CONVERSION_GOALS) or recorded yet: nothing to check")
            return
        now = tracker.clock()
        problems = 0
        for name in names:
            goal = found.get(name)
            if goal is None:
                problems += 1
                near = [n for n in found if n.strip().casefold() == name.strip().casefold()]
                hint = f"; did you mean {near[0]!r}? (names must match exactly)" if near else ""
                click.echo(f"FAIL {name!r}: no offline goal with exactly this name{hint}")
                continue
            issues = []
            if not goal.active:
                issues.append(f"status {goal.status}: conversions will not count")
            record = tracker.goal_registry.get(tracker.account, name)
            if record is not None and record.ready_at > now:
                issues.append(f"younger than 2 hours: uploads are held until {record.ready_at:%H:%M} UTC")
            details = (
                f"id {goal.id}, window {_age(timedelta(minutes=goal.conversion_window_minutes))},"
                f" {_revenue(goal)}, count {goal.count_type}, enhanced conversions {_flag(goal.enhanced)},"
                f" age {_goal_age(tracker, name, now)}"
            )
            if issues:
                problems += 1
                click.echo(f"FAIL {name!r}: {'; '.join(issues)} ({details})")
            else:
                click.echo(f"ok   {name!r}: {details}")
    if problems:
        raise click.exceptions.Exit(1)


@goals.command("create")
@_store_option
@click.argument("name")
@click.option("--type", "goal_type", type=click.Choice(["offline"]), default="offline", show_default=True)
@click.option("--revenue", type=click.Choice(["fixed", "variable", "none"]), default="variable", show_default=True)
@click.option("--value", type=click.FloatRange(min=0), default=None, help="Fixed value, or the variable default.")
@click.option("--currency", default=None, help="ISO code, for fixed/variable revenue.")
@click.option("--count", type=click.Choice(["all", "unique"]), default="all", show_default=True)
@click.option("--window", default="30d", show_default=True, help="Conversion window: 30d, 12h, minutes (max 90d).")
@click.option("--category", default="purchase", show_default=True, help="GoalCategory: " + ", ".join(_CATEGORIES))
@click.option("--enhanced/--no-enhanced", default=None, help="IsEnhancedConversionsEnabled.")
@click.pass_context
def create_goal(
    ctx: click.Context,
    store_url: str | None,
    name: str,
    goal_type: str,
    revenue: str,
    value: float | None,
    currency: str | None,
    count: str,
    window: str,
    category: str,
    enhanced: bool | None,
) -> None:
    """Create an offline conversion goal (step 1 of the setup) and remember when, for the 2-hour wait."""
    from msclkid_middleware.microsoft.goals import ConversionGoal

    matches = [c for c in _CATEGORIES if c.casefold() == category.replace("-", "").replace("_", "").casefold()]
    if not matches:
        raise click.BadParameter(f"{category!r}: one of {', '.join(_CATEGORIES)}", param_hint="--category")
    if revenue != "none" and not currency:
        raise click.BadParameter("give --currency for fixed or variable revenue", param_hint="--currency")
    if revenue == "fixed" and value is None:
        raise click.BadParameter("fixed revenue needs --value", param_hint="--value")
    del goal_type  # offline is the only type this toolkit uploads to
    try:
        spec = ConversionGoal(
            name,
            revenue_type={"fixed": "FixedValue", "variable": "VariableValue", "none": "NoValue"}[revenue],  # type: ignore[arg-type]
            revenue_value=value,
            currency=currency.upper() if currency else None,
            count_type="All" if count == "all" else "Unique",
            conversion_window_minutes=_window_minutes(window),
            category=matches[0],
            enhanced=enhanced,
        )
    except ValidationError as exc:
        raise _fail(exc) from None
    with _opened(_store_of(ctx, store_url), uet=False) as tracker:
        client = _goals_client(tracker)
        try:
            goal_id = client.add_goal(spec)
        except MsclkidError as exc:
            raise _fail(exc) from None
        record = tracker.goal_registry.record(tracker.account, name, tracker.clock(), goal_id)
    click.echo(f"created offline goal {name!r} (id {goal_id}) in account {tracker.account}")
    click.echo(
        f"Wait 2 hours before uploading: conversions for it are held until {record.ready_at:%Y-%m-%d %H:%M} UTC."
        " Add the exact name to MSADS_CONVERSION_GOALS."
    )


# -- reconcile -------------------------------------------------------------------------------------------------


@click.command("reconcile")
@_store_option
@click.option("--since", default="7d", show_default=True, help="Start (7d, 24h, 2026-11-01).")
@click.option("--goal", default=None, help="Only this goal.")
@click.option("--format", "fmt", type=_FORMATS, default="table", show_default=True)
@click.option(
    "--max-unattributed",
    type=click.FloatRange(0, 1),
    default=0.2,
    show_default=True,
    envvar="MSCLKID_MAX_UNATTRIBUTED",
    help=f"Exit {RECONCILE_ALERT_EXIT} when Microsoft could not attribute a larger share (cron alerting).",
)
def reconcile_command(store_url: str | None, since: str, goal: str | None, fmt: str, max_unattributed: float) -> None:
    """Microsoft's per-goal diagnostics (counted, not counted by reason) beside the outbox's own counts."""
    from msclkid_middleware.ops.reports import reconcile, render_reconciliation, sent_per_goal

    with _opened(store_url, uet=False) as tracker:
        client = _goals_client(tracker)
        now = tracker.clock()
        start = parse_since(since, now) or now - timedelta(days=7)
        sent = sent_per_goal(tracker.store, start, goal)
        try:
            ids = {g.name: g.id for g in client.list_goals() if g.id and (goal is None or g.name == goal)}
            wanted = [ids[n] for n in sorted(set(sent) | set(ids)) if n in ids]
            summaries = client.offline_conversion_report(wanted, start, now) if wanted else {}
            days = client.daily_reports(start, now)
        except MsclkidError as exc:
            raise _fail(exc) from None
    if goal is not None:
        sent = {k: v for k, v in sent.items() if k == goal}
    result = reconcile(sent, {k: v for k, v in ids.items() if v}, summaries, since=start, until=now, days=days)
    click.echo(render_reconciliation(result, fmt))  # type: ignore[arg-type]
    if result.unattributed_share > max_unattributed:
        click.echo(
            f"ALERT: {result.unattributed_share:.1%} not counted by Microsoft (threshold {max_unattributed:.0%})",
            err=True,
        )
        raise click.exceptions.Exit(RECONCILE_ALERT_EXIT)


# -- uet token -------------------------------------------------------------------------------------------------


@click.group()
def uet() -> None:
    """UET Conversions API helpers."""


@uet.command("token")
@_store_option
@click.option("--tag-id", default=None, help="UET tag ID (default: UET_TAG_ID).")
def uet_token(store_url: str | None, tag_id: str | None) -> None:
    """Fetch the UET CAPI token through the API (UetTagAuthKey/Query) and store it; it is never printed."""
    from msclkid_middleware.dispatch.tracker import UET_TOKEN_PREFIX
    from msclkid_middleware.outbox.base import TokenRecord

    with _opened(store_url, uet=False) as tracker:
        tag = tag_id or tracker.settings.uet_tag_id
        if not tag:
            raise click.ClickException("give --tag-id or set UET_TAG_ID")
        client = _goals_client(tracker)
        try:
            key = client.uet_tag_auth_key(tag)
        except (MicrosoftError, MsclkidError) as exc:
            raise _fail(exc) from None
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
