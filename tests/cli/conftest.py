"""Fixtures and helpers of the command-line tests: the commands run through click's ``CliRunner`` or
``main(argv)`` against the emulator on a loopback port, on a SQLite outbox in the test's directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from msclkid_middleware.cli import cli
from msclkid_middleware.testing import EmulatorHandle
from tests.outbox import conftest as outbox

# Fixtures are found by name in a conftest's namespace: these share the outbox suite's definitions (the emulator,
# the fake clock, recording helpers) instead of copying them; the test modules import the helpers from here.
ms = outbox.ms
FakeClock = outbox.FakeClock
click_id = outbox.click_id
make_tracker = outbox.make_tracker
record = outbox.record

EMAIL = "Jane.Doe+shop@Example.com"
PHONE = "+14255550123"


def use_emulator(ms: EmulatorHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The emulator's settings in the environment, an outbox in ``tmp_path``, which becomes the working directory."""
    for name, value in ms.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MSCLKID_STORE_URL", f"sqlite:///{tmp_path / 'outbox.db'}")
    monkeypatch.delenv("MSADS_CONVERSION_GOALS", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def env(ms: EmulatorHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return use_emulator(ms, tmp_path, monkeypatch)


def secrets_of(ms: EmulatorHandle) -> list[str]:
    e = ms.env
    return [e["MSADS_REFRESH_TOKEN"], e["MSADS_CLIENT_SECRET"], e["MSADS_DEVELOPER_TOKEN"], e["UET_API_TOKEN"]]


def assert_clean(text: str, ms: EmulatorHandle, *more: str) -> None:
    """No token, secret, raw email or phone in what a command printed."""
    for secret in (*secrets_of(ms), EMAIL, EMAIL.lower(), PHONE, "rt-", "at-", *more):
        assert secret not in text


def run(*args: str, input: str | None = None) -> Any:
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)
