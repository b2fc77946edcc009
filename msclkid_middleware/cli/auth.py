"""``msclkid auth``: the first OAuth consent (Microsoft's sign-in URL -> code -> refresh token in the outbox).

Nothing printed here contains a token or a secret: the refresh token goes straight from Microsoft into the store.
"""

from __future__ import annotations

import math
import secrets
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

import click

from msclkid_middleware.cli.common import fail, goals_client, open_tracker, store_option
from msclkid_middleware.errors import ConfigError, MsclkidError

if TYPE_CHECKING:  # pragma: no cover
    from msclkid_middleware.dispatch.tracker import ConversionTracker

__all__ = ["NATIVE_REDIRECT", "auth"]

NATIVE_REDIRECT = "https://login.microsoftonline.com/common/oauth2/nativeclient"


class _OneShot(HTTPServer):
    """The one-shot loopback listener: waits for the redirect carrying this run's ``state``."""

    result: dict[str, str]
    #: The ``state`` this run sent to Microsoft: a redirect without it is someone else's (answered 400, ignored).
    state: str = ""
    #: Monotonic time the whole wait ends; every socket operation is bounded by it.
    deadline: float = 0.0


class _CallbackHandler(BaseHTTPRequestHandler):
    server: _OneShot

    def setup(self) -> None:
        super().setup()
        # A client that connects and sends nothing must not outlive --timeout (handle_request reads blocking).
        self.connection.settimeout(max(0.05, self.server.deadline - time.monotonic()))

    def do_GET(self) -> None:
        query = {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}
        if "code" not in query and "error" not in query:
            self._answer(404, "msclkid: nothing here", "This address only receives the sign-in redirect.")
            return
        if not secrets.compare_digest(query.get("state", ""), self.server.state):
            # A stale tab, or another page or process on this machine: not this run's redirect.  Keep waiting.
            self._answer(400, "msclkid: wrong sign-in link", "This redirect does not belong to the waiting program.")
            return
        self.server.result = query
        if "code" in query:
            self._answer(200, "msclkid: consent received", "You can close this window.")
        else:
            self._answer(400, "msclkid: consent failed", "See the terminal.")

    def _answer(self, status: int, title: str, text: str) -> None:
        body = f"<html><body><h1>{title}</h1><p>{text}</p></body></html>".encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return  # the request line holds the authorization code: never log it


def _listen_once(server: _OneShot, state: str, timeout: float) -> dict[str, str]:
    server.result = {}
    server.state = state
    server.deadline = time.monotonic() + timeout
    while not server.result:
        remaining = server.deadline - time.monotonic()
        if remaining <= 0:
            raise click.ClickException(f"no redirect arrived within {timeout:g} s; run `msclkid auth` again")
        server.timeout = min(0.2, remaining)  # how long one accept() waits
        server.handle_request()
    return server.result


def _seconds(value: float) -> float:
    # math.isfinite: NaN passes every comparison click's FloatRange makes, and would wait forever.
    if not (math.isfinite(value) and 0 < value <= 86400):
        raise click.BadParameter("give a number of seconds between 0 and 86400")
    return value


def _printable(text: str, limit: int = 500) -> str:
    """Text that came from the network, fit for a terminal: control characters (escape sequences, CR, ...) gone."""
    cleaned = "".join(ch for ch in text if ch.isprintable())
    return cleaned[:limit]


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
        raise click.ClickException(
            f"Microsoft refused the consent: {_printable(query['error'], 100)}: {_printable(description)}"
        )
    if (require_state or "state" in query) and query.get("state") != state:
        raise click.ClickException(
            "the redirect's state does not match this run (a stale or foreign link); start again"
        )
    code = query.get("code", "")
    if not code:
        raise click.ClickException("the redirect holds no code")
    return code


@click.command()
@store_option
@click.option("--check", is_flag=True, help="Refresh once and report which account the stored grant works for.")
@click.option("--listen", is_flag=True, help="Receive the redirect on a one-shot loopback listener.")
@click.option("--port", type=click.IntRange(0, 65535), default=0, help="Listener port (0: any free port).")
@click.option("--redirect-uri", default=None, help="Redirect URI registered for the app (default depends on mode).")
@click.option("--code", "answer", default=None, help="The redirected URL or the code (instead of the prompt).")
@click.option(
    "--timeout",
    type=float,
    callback=lambda ctx, param, value: _seconds(value),
    default=300.0,
    show_default=True,
    help="Listener wait, seconds.",
)
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

    with open_tracker(store_url, microsoft=None if check else False, uet=False) as tracker:
        settings = tracker.settings
        if check:
            _auth_check(tracker)
            return
        try:
            provider = RefreshTokenProvider.from_settings(
                settings, token_store=OutboxTokenStore(tracker.store, redactor=tracker.redactor)
            )
        except ConfigError as exc:
            raise fail(exc) from None
        state = secrets.token_urlsafe(16)
        server: _OneShot | None = None
        try:
            if listen:
                server = _OneShot(("127.0.0.1", port), _CallbackHandler)
                # The address actually bound: "localhost" may resolve to ::1 first, where nothing listens.
                host, bound_port = server.server_address[:2]
                redirect_uri = redirect_uri or f"http://{host!s}:{bound_port}/"
            redirect_uri = redirect_uri or NATIVE_REDIRECT
            url = provider.authorize_url(redirect_uri, state, prompt="select_account")
            click.echo(f"Sign in as the Microsoft Advertising user ({settings.environment}) and allow access:")
            click.echo(url)
            if server is not None:
                click.echo(f"Waiting for the redirect on {redirect_uri} ...", err=True)
                code = _code_from_query(_listen_once(server, state, timeout), state, require_state=True)
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
            raise fail(exc) from None
        finally:
            provider.close()
        click.echo(
            f"Access granted: refresh token stored in {tracker.store.url} (serial {token.serial}; it rotates on every"
            " use and is kept there). Next: `msclkid auth --check`, then `msclkid send-test`."
        )


def _auth_check(tracker: ConversionTracker) -> None:
    settings = tracker.settings
    client = goals_client(tracker)
    provider = client.campaign.token_provider
    try:
        provider.force_refresh()
        goals = client.list_goals()
    except MsclkidError as exc:
        raise fail(exc) from None
    stored = getattr(getattr(provider, "token_store", None), "load", lambda: None)()
    serial = f", serial {stored.serial}" if stored is not None else ""
    click.echo(f"OK: the refresh token works (application {settings.client_id}, {settings.environment}{serial}).")
    click.echo(
        f"Account {client.campaign.account_id} of customer {client.campaign.customer_id}: access confirmed,"
        f" {len(goals)} offline conversion goal(s)."
    )
