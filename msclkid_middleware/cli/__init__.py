"""The ``msclkid`` command line (also mounted as ``flask msclkid``).

Commands live in the modules that own their subject and are imported only when invoked, so
``msclkid --help`` stays fast and ``msclkid emulator`` does not load the outbox.
Add a command by adding one line to ``_COMMANDS``.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

import click

__all__ = ["cli", "main", "run"]

#: command name -> "module:attribute" of a ``click.Command``.
_COMMANDS: dict[str, str] = {
    "emulator": "msclkid_middleware.emulator.server:emulator_command",
    "worker": "msclkid_middleware.cli.commands:worker",
    "flush": "msclkid_middleware.cli.commands:flush",
    "status": "msclkid_middleware.cli.commands:status",
    "retry-dead": "msclkid_middleware.cli.commands:retry_dead",
    "auth": "msclkid_middleware.cli.commands_ops:auth",
    "send-test": "msclkid_middleware.cli.commands_ops:send_test",
    "report": "msclkid_middleware.cli.commands_ops:report",
    "export-csv": "msclkid_middleware.cli.commands_ops:export_csv",
    "import-csv": "msclkid_middleware.cli.commands_ops:import_csv",
    "validate": "msclkid_middleware.cli.commands_ops:validate",
    "goals": "msclkid_middleware.cli.commands_ops:goals",
    "reconcile": "msclkid_middleware.cli.commands_ops:reconcile_command",
    "uet": "msclkid_middleware.cli.commands_ops:uet",
}


class _LazyGroup(click.Group):
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


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="msclkid-middleware", prog_name="msclkid")
def cli() -> None:
    """Microsoft Advertising conversion tracking from your own server."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default ``sys.argv[1:]``) and return the exit code."""
    try:
        # Without standalone mode click *returns* the code of a ``click.exceptions.Exit`` raised by a command.
        result = cli.main(args=list(sys.argv[1:] if argv is None else argv), prog_name="msclkid", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        return int(exc.exit_code)
    except click.Abort:
        click.echo("Aborted.", err=True)
        return 1
    except KeyboardInterrupt:
        return 130
    return result if isinstance(result, int) and not isinstance(result, bool) else 0


def run() -> None:  # pragma: no cover - console-script shim
    sys.exit(main())
