"""Helpers shared by the Flask extension tests (fixtures live in conftest.py)."""

from __future__ import annotations

import json
from collections.abc import Callable

import click
from flask import Flask

from msclkid_middleware.cli.common import command_environ

CLICK = "f894f652ea334e739002f7167ab8f8e3"

AppFactory = Callable[..., Flask]


@click.command("probe")
def probe() -> None:
    """Echo the settings mapping a command receives (what ``flask msclkid`` hands to every command)."""
    environ = command_environ()
    click.echo(json.dumps(None if environ is None else dict(environ), sort_keys=True))
