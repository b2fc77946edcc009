"""The ``msclkid`` command line (also mounted as ``flask msclkid``).

Commands live in one module per command family and are imported only when invoked, so ``msclkid --help``
stays fast and ``msclkid emulator`` does not load the outbox.  Add a command by adding one line to
``_COMMANDS``.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

import click

__all__ = ["LazyGroup", "cli", "invoke", "main", "run"]

#: command name -> "module:attribute" of a ``click.Command``.
_COMMANDS: dict[str, str] = {
    "emulator": "msclkid_middleware.emulator.server:emulator_command",
    "worker": "msclkid_middleware.cli.delivery:worker",
    "flush": "msclkid_middleware.cli.delivery:flush",
    "status": "msclkid_middleware.cli.delivery:status",
    "retry-dead": "msclkid_middleware.cli.delivery:retry_dead",
    "auth": "msclkid_middleware.cli.auth:auth",
    "send-test": "msclkid_middleware.cli.send_test:send_test",
    "report": "msclkid_middleware.cli.reports:report",
    "reconcile": "msclkid_middleware.cli.reports:reconcile_command",
    "export-csv": "msclkid_middleware.cli.csv:export_csv",
    "import-csv": "msclkid_middleware.cli.csv:import_csv",
    "validate": "msclkid_middleware.cli.csv:validate",
    "goals": "msclkid_middleware.cli.goals:goals",
    "uet": "msclkid_middleware.cli.uet:uet",
    "doctor": "msclkid_middleware.cli.doctor:doctor",
}


class LazyGroup(click.Group):
    """A click group whose ``_COMMANDS`` are imported on first use (the Flask group extends it)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = _COMMANDS.get(cmd_name)
        if target is None:
            return super().get_command(ctx, cmd_name)
        module_name, _, attr = target.partition(":")
        command = getattr(importlib.import_module(module_name), attr)
        if not isinstance(command, click.Command):
            raise TypeError(f"{target} is not a click command")
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="msclkid-middleware", prog_name="msclkid")
def cli() -> None:
    """Microsoft Advertising conversion tracking from your own server."""


def invoke(group: click.Group, args: list[str], prog_name: str) -> int:
    """Run ``group`` with ``args`` and return the exit code, as a shell would see it (``manage.py msclkid`` too)."""
    try:
        # Without standalone mode click *returns* the code of a ``click.exceptions.Exit`` raised by a command.
        result = group.main(args=args, prog_name=prog_name, standalone_mode=False)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        return int(exc.exit_code)
    except click.Abort:
        click.echo("Aborted.", err=True)
        return 1
    return result if isinstance(result, int) and not isinstance(result, bool) else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default ``sys.argv[1:]``) and return the exit code."""
    try:
        return invoke(cli, list(sys.argv[1:] if argv is None else argv), "msclkid")
    except KeyboardInterrupt:
        return 130


def run() -> None:  # pragma: no cover - console-script shim
    sys.exit(main())
