"""``flask msclkid ...``: the same commands as ``msclkid``, run with the app's config (FlaskCliRunner)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from flask_helpers import CLICK, AppFactory

from msclkid_middleware import cli
from msclkid_middleware.flask import Msclkid, cli_group
from msclkid_middleware.testing import EmulatorHandle

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(autouse=True)
def _no_settings_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # Prove the commands read the app's config, not os.environ.
    for name in list(os.environ):
        if name.startswith(("MSCLKID_", "MSADS_", "UET_")):
            monkeypatch.delenv(name)


def test_the_group_lists_exactly_the_msclkid_commands(make_app: AppFactory) -> None:
    app = make_app()
    result = app.test_cli_runner().invoke(args=["msclkid", "--help"])
    assert result.exit_code == 0, result.output
    listed = [line.split()[0] for line in result.output.split("Commands:")[1].splitlines() if line.strip()]
    assert listed == sorted(cli._COMMANDS)
    assert app.cli.get_command(None, "msclkid") is cli_group  # type: ignore[arg-type]


@pytest.mark.secret_canary_allow("flask-secret")  # the probe prints the mapping it was given, secret included
def test_commands_added_later_appear_and_receive_the_apps_config(
    make_app: AppFactory, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(cli._COMMANDS, "probe", "flask_helpers:probe")
    app = make_app({"MSADS_CUSTOMER_ID": 1234, "MSADS_CONVERSION_GOALS": ("Purchase", "Lead"), "UET_TAG_ID": "77"})
    app.config["MSCLKID_FUTURE_SETTING"] = True  # a key this version does not know is passed on too
    result = app.test_cli_runner().invoke(args=["msclkid", "probe"])
    assert result.exit_code == 0, result.output
    environ = json.loads(result.output)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in environ.items())
    assert environ["MSADS_CUSTOMER_ID"] == "1234"
    assert environ["MSADS_CONVERSION_GOALS"] == "Purchase,Lead"
    assert environ["UET_TAG_ID"] == "77"
    assert environ["MSCLKID_FUTURE_SETTING"] == "true"
    assert environ["MSCLKID_SECRET_KEYS"] == "flask-secret"  # SECRET_KEY reused
    assert environ["MSCLKID_STORE_URL"] == f"sqlite:///{Path(app.instance_path) / 'msclkid-outbox.sqlite3'}"
    assert environ["MSCLKID_UET_PAGE_LOADS"] == "off"
    assert "SECRET_KEY" not in environ
    assert "MSADS_CLIENT_SECRET" not in environ  # unset (None) values are left out
    # The plain ``msclkid`` command has no host mapping: it reads os.environ.
    capsys.readouterr()
    assert cli.main(["probe"]) == 0
    assert capsys.readouterr().out.strip() == "null"


def test_flush_and_status_use_the_apps_outbox_and_credentials(make_app: AppFactory, ms: EmulatorHandle) -> None:
    app = make_app(dict(ms.env))
    tracker = Msclkid.state(app).tracker
    tracker.record_offline("ord_7", "Purchase", datetime.now(UTC), 12.5, "USD", click=CLICK)
    runner = app.test_cli_runner()
    status = runner.invoke(args=["msclkid", "status", "ord_7"])
    assert status.exit_code == 0, status.output
    assert "offline ord_7: pending" in status.output
    flushed = runner.invoke(args=["msclkid", "flush"])
    assert flushed.exit_code == 0, flushed.output
    assert flushed.output.startswith("flush: 1 delivered")
    assert [item.payload["MicrosoftClickId"] for item in ms.received("offline", outcome="accepted")] == [CLICK]
    assert "delivered" in runner.invoke(args=["msclkid", "status", "ord_7"]).output
    # The secrets came from the app config and are never printed.
    for output in (status.output, flushed.output):
        assert ms.env["MSADS_CLIENT_SECRET"] not in output
        assert ms.env["MSADS_REFRESH_TOKEN"] not in output


def test_missing_instance_folder_is_created_for_the_default_store(make_app: AppFactory) -> None:
    app = make_app()
    assert not os.path.exists(app.instance_path)
    runner = app.test_cli_runner()
    # A read-only command never creates the outbox: it says where it looked.
    looked = runner.invoke(args=["msclkid", "status"])
    assert looked.exit_code == 1
    assert os.path.join(app.instance_path, "msclkid-outbox.sqlite3") in looked.output
    assert not os.path.exists(os.path.join(app.instance_path, "msclkid-outbox.sqlite3"))
    # A command that writes creates it, instance folder included.
    assert runner.invoke(args=["msclkid", "retry-dead"]).exit_code == 0
    assert os.path.exists(os.path.join(app.instance_path, "msclkid-outbox.sqlite3"))
    result = runner.invoke(args=["msclkid", "status"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "the outbox is empty"


def test_the_flask_commands_entry_point_is_the_group() -> None:
    (entry,) = [ep for ep in entry_points(group="flask.commands") if ep.name == "msclkid"]
    assert entry.load() is cli_group


def test_the_real_flask_command_runs_the_group_with_the_shop_app(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MSCLKID_", "MSADS_", "UET_", "FLASK_"))} | {
        "PYTHONPATH": str(ROOT),
        "SHOP_INSTANCE_PATH": str(tmp_path / "inst"),
    }
    command = [sys.executable, "-m", "flask", "--app", "examples.flask_shop", "msclkid", "retry-dead"]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr  # a writing command creates the outbox
    command[-1] = "status"
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "the outbox is empty"
    assert (tmp_path / "inst" / "msclkid-outbox.sqlite3").exists()


def test_doctor_runs_as_a_flask_command_with_the_apps_config(make_app: AppFactory, ms: EmulatorHandle) -> None:
    app = make_app({**ms.env, "MSADS_CONVERSION_GOALS": ("Purchase",)})
    ms.set_account_properties({"MSCLKIDAutoTaggingEnabled": False})
    runner = app.test_cli_runner()
    result = runner.invoke(args=["msclkid", "doctor"])
    assert result.exit_code == 1, result.output
    assert "✔ configuration" in result.output
    assert "✔ goal:Purchase" in result.output
    assert "✘ auto_tagging" in result.output
    fixed = runner.invoke(args=["msclkid", "doctor", "--fix", "--yes"])
    assert "fixed: ✔ auto_tagging" in fixed.output
    assert ms.account_properties()["MSCLKIDAutoTaggingEnabled"] == "True"
    for secret in (ms.env["MSADS_CLIENT_SECRET"], ms.env["MSADS_DEVELOPER_TOKEN"], ms.env["MSADS_REFRESH_TOKEN"]):
        assert secret not in result.output + fixed.output


def test_flask_msclkid_report_writes_the_html_report(make_app: AppFactory, ms: EmulatorHandle, tmp_path: Path) -> None:
    app = make_app(ms.env)
    runner = app.test_cli_runner()
    assert runner.invoke(args=["msclkid", "retry-dead"]).exit_code == 0  # creates the app's outbox
    result = runner.invoke(args=["msclkid", "report", "--html", str(tmp_path / "r.html"), "--json", "-"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "r.html").read_text(encoding="utf-8").startswith("<!doctype html>")
    assert '"days": []' in result.output
