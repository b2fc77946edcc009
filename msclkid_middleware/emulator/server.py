"""Serving the emulator: a threaded werkzeug server in a daemon thread, and the ``msclkid emulator`` command."""

from __future__ import annotations

import ipaddress
import shlex
import threading
from collections.abc import Mapping
from typing import Any

import click
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from msclkid_middleware.emulator.app import Emulator
from msclkid_middleware.emulator.settings import EmulatorConfig, load_config_file

__all__ = ["EmulatorServer", "emulator_command"]


class _Handler(WSGIRequestHandler):
    def date_time_string(self, timestamp: float | None = None) -> str:
        # The ``Date`` header every answer carries (clients measure clock skew with it) comes from the
        # emulator's clock, so a test that moves that clock sees the skew a real server would show.
        if timestamp is None:
            clock = getattr(getattr(getattr(self.server, "app", None), "world", None), "clock", None)
            if callable(clock):
                timestamp = clock().timestamp()
        return super().date_time_string(timestamp)

    def connection_dropped(self, error: BaseException, environ: Any = None) -> None:
        # A dropped connection (the ``drop`` fault) can leave the unread request body in the read
        # buffer; served on, it would be parsed as the next request line and logged as "Bad request
        # syntax ('grant_type=refresh_token&client_secret=...')", secrets included.  End the connection.
        self.close_connection = True


class _QuietHandler(_Handler):
    """No per-request access log: tests and benchmarks would drown in it; the dashboard shows requests."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return None


class EmulatorServer:
    """Run an :class:`Emulator` on ``host:port`` (``port=0`` picks a free port) in a daemon thread."""

    def __init__(self, emulator: Emulator, host: str = "127.0.0.1", port: int = 0, *, quiet: bool = True) -> None:
        self.emulator = emulator
        self._server: BaseWSGIServer = make_server(
            host, port, emulator, threaded=True, request_handler=_QuietHandler if quiet else _Handler
        )
        self._thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        return str(self._server.server_address[0])

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = self.host
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    def start(self) -> EmulatorServer:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="msclkid-emulator", daemon=True
            )
            self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever(poll_interval=0.2)

    def stop(self, timeout: float = 5.0) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout)
            self._thread = None
        self._server.server_close()
        self.emulator.close()


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def build_config(config_file: str | None, overrides: Mapping[str, Any] | None = None) -> EmulatorConfig:
    config = load_config_file(config_file) if config_file else EmulatorConfig()
    return config.replace(**overrides) if overrides else config


@click.command("emulator")
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Interface to listen on (loopback unless told otherwise)."
)
@click.option("--port", default=8765, show_default=True, type=int, help="Port (0 = any free port).")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False), help="JSON or TOML file.")
def emulator_command(host: str, port: int, config_file: str | None) -> None:
    """Run the local Microsoft Advertising emulator and print the environment that points the toolkit at it."""
    from msclkid_middleware.errors import ConfigError

    try:
        emulator = Emulator(build_config(config_file))
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    server = EmulatorServer(emulator, host, port, quiet=True)
    if not _is_loopback(server.host):
        click.echo(
            f"# warning: listening on {server.host}: anyone who can reach it can read and reset the emulator"
            " through its control API (the default, 127.0.0.1, keeps it on this machine)",
            err=True,
        )
    for name, value in emulator.env(server.url).items():
        click.echo(f"export {name}={shlex.quote(value)}")
    click.echo(f"# dashboard: {server.url}/   control API: {server.url}/_emulator/state   (Ctrl-C stops)", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
