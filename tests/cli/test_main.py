"""The command group: every command registered; the host's settings (``flask msclkid``) read, not the environment."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from msclkid_middleware.cli import cli
from msclkid_middleware.config import Settings
from msclkid_middleware.testing import EmulatorHandle

from .conftest import click_id, run


def test_every_ops_command_is_registered() -> None:
    result = run("--help")
    for name in ("auth", "send-test", "report", "export-csv", "import-csv", "validate", "goals", "reconcile", "uet"):
        assert name in result.output
    settings = Settings()
    assert settings.conversion_goals == ()


def test_commands_read_the_hosts_settings_not_the_environment(
    ms: EmulatorHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``flask msclkid ...`` hands the app config to the commands through ``ctx.meta``."""
    import click

    from msclkid_middleware.cli.common import ENVIRON_META_KEY

    for name in (*ms.env, "MSCLKID_STORE_URL", "MSADS_CONVERSION_GOALS"):
        monkeypatch.delenv(name, raising=False)
    config = {**ms.env, "MSCLKID_STORE_URL": f"sqlite:///{tmp_path / 'app.db'}", "MSADS_CONVERSION_GOALS": "Purchase"}

    @click.group()
    @click.pass_context
    def host(ctx: click.Context) -> None:
        ctx.meta[ENVIRON_META_KEY] = config

    host.add_command(cli, "msclkid")
    runner = CliRunner()
    goals = runner.invoke(host, ["msclkid", "goals"], catch_exceptions=False)
    assert goals.exit_code == 0, goals.output
    assert "ok   'Purchase'" in goals.output
    sent = runner.invoke(host, ["msclkid", "send-test", "--click-id", click_id(3), "--goal", "Purchase"])
    assert "outcome: delivered" in sent.output
    report = runner.invoke(host, ["msclkid", "report", "--format", "json"], catch_exceptions=False)
    assert json.loads(report.output)["goals"][0]["delivered"] == 1
    assert (tmp_path / "app.db").exists()
