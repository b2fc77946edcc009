"""``python manage.py msclkid <command> ...``: every ``msclkid`` command, with the project's Django settings.

The same click group as the ``msclkid`` console script and ``flask msclkid`` (``status``, ``flush``, ``worker``,
``retry-dead``, ``report``, ``export-csv``, ``goals``, ...; those added later too), run with the Django settings
as its settings mapping (``MSCLKID_*`` / ``MSADS_*`` / ``UET_*``, ``SECRET_KEY`` reused, the outbox beside the
project): the host passes them under :data:`~msclkid_middleware.cli.common.ENVIRON_META_KEY`, as the Flask group
does.  Everything after ``msclkid`` goes to click (``manage.py msclkid status --help`` is click's help), and the
output goes to the command's own streams, so ``call_command("msclkid", "status", stdout=buffer)`` captures it.
A failing command raises :class:`~django.core.management.CommandError` with its exit status.
"""

from __future__ import annotations

import argparse
import io
from contextlib import redirect_stderr, redirect_stdout
from typing import Any

import click
from django.core.management.base import BaseCommand, CommandError, OutputWrapper

from msclkid_middleware.cli import LazyGroup, invoke
from msclkid_middleware.cli.common import ENVIRON_META_KEY
from msclkid_middleware.django import command_environ

__all__ = ["Command", "DjangoCommandGroup", "group", "run"]


class DjangoCommandGroup(LazyGroup):
    """The ``msclkid`` commands, reading the Django settings instead of the process environment."""

    def invoke(self, ctx: click.Context) -> Any:
        # Only reached with a sub-command (without one, click shows the group's help while parsing).
        ctx.meta[ENVIRON_META_KEY] = command_environ()
        return super().invoke(ctx)


group = DjangoCommandGroup(
    name="msclkid",
    help="Microsoft Advertising conversion tracking (the msclkid commands, with this project's settings).",
    context_settings={"help_option_names": ["-h", "--help"]},
)


class _Stream(io.TextIOBase):
    """A text stream writing through Django's ``OutputWrapper`` as it is (no added line ending)."""

    def __init__(self, out: OutputWrapper) -> None:
        super().__init__()
        self.out = out

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.out.write(text, ending="")
        return len(text)

    def flush(self) -> None:
        self.out.flush()

    def isatty(self) -> bool:
        return bool(self.out.isatty())


class Command(BaseCommand):
    help = "Microsoft Advertising conversion tracking: `manage.py msclkid <command> --help` for each command."
    # The commands report their own configuration problems; an unrelated check error must not block `status`.
    requires_system_checks: list[str] = []

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> Any:
        """Django's parser for Django's own options (``--settings``, ``--traceback``, ...) wherever they stand;
        every other argument, ``--help`` included, is passed to click in its order."""
        parser = super().create_parser(prog_name, subcommand, add_help=False, allow_abbrev=False, **kwargs)
        known = parser.parse_known_args

        def parse_args(args: list[str] | None = None, namespace: argparse.Namespace | None = None) -> Any:
            options, rest = known(args, namespace)
            options.args = rest
            return options

        parser.parse_args = parse_args
        return parser

    def handle(self, *args: str, **options: Any) -> None:
        # Without a command: the list of commands (click would print it as a usage error, status 2).
        argv = list(args) or ["--help"]
        with redirect_stdout(_Stream(self.stdout)), redirect_stderr(_Stream(self.stderr)):
            code = run(argv)
        if code:
            raise CommandError(f"msclkid {argv[0]} failed (exit status {code})", returncode=code)


def run(argv: list[str]) -> int:
    """Run the group with ``argv`` and return the exit status, as ``msclkid_middleware.cli.main`` does."""
    return invoke(group, argv, "manage.py msclkid")
