"""``manage.py msclkid ...`` (call_command and a real manage.py process): the msclkid commands with Django settings."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import click
import pytest
from django.core.management import call_command, get_commands
from django.core.management.base import CommandError
from django.test import override_settings

from msclkid_middleware import cli
from msclkid_middleware.cli.common import command_environ
from msclkid_middleware.django import get_tracker
from msclkid_middleware.testing import EmulatorHandle, run_emulator
from tests.django_setup import SECRET_KEY

ROOT = Path(__file__).resolve().parents[3]
CLICK = "f894f652ea334e739002f7167ab8f8e3"


@click.command()
def probe() -> None:
    """Print the settings mapping the host gave (a stand-in for commands added later)."""
    click.echo(json.dumps(dict(command_environ() or {}), sort_keys=True))


@pytest.fixture(autouse=True)
def _no_settings_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # Prove the commands read the Django settings, not os.environ.
    for name in list(os.environ):
        if name.startswith(("MSCLKID_", "MSADS_", "UET_")):
            monkeypatch.delenv(name)


@pytest.fixture
def ms() -> Iterator[EmulatorHandle]:
    with run_emulator() as handle:
        yield handle


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("msclkid", *args, stdout=out, stderr=out)
    return out.getvalue()


def test_the_command_is_found_in_the_installed_app() -> None:
    assert get_commands()["msclkid"] == "msclkid_middleware.djangoapp"


def test_help_lists_every_msclkid_command() -> None:
    output = run("--help")
    listed = [line.split()[0] for line in output.split("Commands:")[1].splitlines() if line.strip()]
    assert listed == sorted(cli._COMMANDS)
    assert "Usage: manage.py msclkid" in output
    assert run() == output  # no command: the same list, not an error


@pytest.mark.secret_canary_allow(SECRET_KEY)  # the probe prints the mapping it was given, secret included
def test_commands_receive_the_django_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(cli._COMMANDS, "probe", f"{__name__}:probe")
    with override_settings(
        MSADS_CUSTOMER_ID=1234,
        MSADS_CONVERSION_GOALS=("Purchase", "Lead"),
        MSCLKID_FUTURE_SETTING=True,
        MSCLKID_STORE_URL=None,
        BASE_DIR=tmp_path,
    ):
        environ = json.loads(run("probe"))
    assert environ["MSADS_CUSTOMER_ID"] == "1234"
    assert environ["MSADS_CONVERSION_GOALS"] == "Purchase,Lead"
    assert environ["MSCLKID_FUTURE_SETTING"] == "true"
    assert environ["MSCLKID_SECRET_KEYS"] == SECRET_KEY  # Django's SECRET_KEY reused
    assert environ["MSCLKID_STORE_URL"] == f"sqlite:///{tmp_path / 'msclkid-outbox.sqlite3'}"  # beside the project
    assert "MSCLKID_MIDDLEWARE_OPTIONS" not in environ
    assert "SECRET_KEY" not in environ


def test_status_and_flush_use_the_projects_outbox_and_credentials(ms: EmulatorHandle) -> None:
    with override_settings(**ms.env):
        get_tracker().record_offline("ord_7", "Purchase", datetime.now(UTC), 12.5, "USD", click=CLICK)
        assert "offline ord_7: pending" in run("status", "ord_7")
        assert run("flush").startswith("flush: 1 delivered")
        assert "delivered" in run("status", "ord_7")
    assert [item.payload["MicrosoftClickId"] for item in ms.received("offline", outcome="accepted")] == [CLICK]


def test_a_failing_command_raises_command_error_with_its_exit_status() -> None:
    with pytest.raises(CommandError) as raised:
        run("no-such-command")
    assert raised.value.returncode == 2
    with pytest.raises(CommandError) as raised:
        run("status", "--format", "nonsense")
    assert raised.value.returncode == 2


def manage_py(shop_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The example shop's ``manage.py msclkid ...`` as a shell runs it, with its outbox in ``shop_dir``."""
    env = {**os.environ, "MSCLKID_DJANGO_SHOP_DIR": str(shop_dir), "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "examples.django_shop", "msclkid", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_manage_py_in_a_process(tmp_path: Path) -> None:
    """A real ``manage.py msclkid status`` (the example shop's), exit status and output as a shell sees them."""
    # A read-only command never creates the outbox: it names the one the settings point at.
    missing = manage_py(tmp_path, "status")
    assert missing.returncode == 1
    assert f"no outbox at {tmp_path / 'outbox.sqlite3'}" in missing.stderr
    assert not (tmp_path / "outbox.sqlite3").exists()
    created = manage_py(tmp_path, "retry-dead")
    assert created.returncode == 0, created.stderr
    done = manage_py(tmp_path, "status")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "the outbox is empty\n"
    assert (tmp_path / "outbox.sqlite3").exists()  # the shop's outbox, from its settings
    failed = manage_py(tmp_path, "status", "--format", "nonsense")
    assert failed.returncode == 2
    assert "No such option" in failed.stderr


def test_doctor_runs_as_a_manage_py_command_with_the_projects_settings(ms: EmulatorHandle) -> None:
    """Issue 20: ``manage.py msclkid doctor`` is the same checklist as ``msclkid doctor``, with Django's settings."""
    ms.set_account_properties({"MSCLKIDAutoTaggingEnabled": False})
    with override_settings(**ms.env, MSADS_CONVERSION_GOALS=("Purchase",)):
        get_tracker().record_offline("ord_8", "Purchase", datetime.now(UTC), 1.0, "USD", click=CLICK)
        with pytest.raises(CommandError) as failed:
            run("doctor")
        assert failed.value.returncode == 1  # auto-tagging is off
        fixed = run("doctor", "--fix", "--yes")
    assert "fixed: ✔ auto_tagging" in fixed
    assert ms.account_properties()["MSCLKIDAutoTaggingEnabled"] == "True"
    for secret in (ms.env["MSADS_CLIENT_SECRET"], ms.env["MSADS_DEVELOPER_TOKEN"], ms.env["MSADS_REFRESH_TOKEN"]):
        assert secret not in fixed
