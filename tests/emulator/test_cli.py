"""``msclkid emulator`` prints the environment and serves until interrupted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from msclkid_middleware.cli import main

REPO = Path(__file__).resolve().parents[2]


def test_cli_prints_env_and_serves(tmp_path: Path) -> None:
    config = tmp_path / "emulator.toml"
    config.write_text('customer_id = "42"\n')
    code = "import sys; from msclkid_middleware.cli import main; sys.exit(main(sys.argv[1:]))"
    process = subprocess.Popen(
        [sys.executable, "-c", code, "emulator", "--port", "0", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline().strip() for _ in range(11)]
        env = dict(line.removeprefix("export ").split("=", 1) for line in lines)
        assert all(line.startswith("export ") for line in lines)
        assert env["MSADS_CUSTOMER_ID"] == "42"
        assert env["MSADS_TOKEN_URL"] == f"{env['MSADS_API_URL']}/common/oauth2/v2.0/token"
        state = requests.get(f"{env['MSADS_API_URL']}/_emulator/state", timeout=5).json()
        assert state["accounts"][0]["customer_id"] == "42"
        form = {
            "grant_type": "refresh_token",
            "client_id": env["MSADS_CLIENT_ID"],
            "client_secret": env["MSADS_CLIENT_SECRET"],
            "refresh_token": env["MSADS_REFRESH_TOKEN"],
            "scope": "https://ads.microsoft.com/msads.manage offline_access",
        }
        assert requests.post(env["MSADS_TOKEN_URL"], data=form, timeout=5).status_code == 200
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) in (0, 130)
        if process.stdout:
            process.stdout.close()
        if process.stderr:
            process.stderr.close()


def test_cli_bad_config_is_a_usage_error(tmp_path: Path) -> None:
    config = tmp_path / "bad.json"
    config.write_text('{"unknown_goal": "sometimes"}')
    assert main(["emulator", "--port", "0", "--config", str(config)]) == 2


def test_cli_help_lists_the_command() -> None:
    assert main(["emulator", "--help"]) == 0


def test_the_emulator_binds_to_loopback_unless_told_and_warns_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from msclkid_middleware.emulator import server

    host_option = next(p for p in server.emulator_command.params if p.name == "host")
    assert host_option.default == "127.0.0.1"
    for loopback in ("127.0.0.1", "::1", "localhost"):
        assert server._is_loopback(loopback)
    everywhere = "0.0.0.0"  # noqa: S104 - the case under test
    for other in (everywhere, "192.0.2.7"):
        assert not server._is_loopback(other)

    served: list[str] = []

    class Quiet:  # prints no environment (the real one holds the emulator's test credentials)
        def __init__(self, config: object) -> None:
            pass

        def env(self, url: str) -> dict[str, str]:
            return {}

    class Stub:
        def __init__(self, emulator: object, host: str, port: int, *, quiet: bool = True) -> None:
            self.host, self.url = host, f"http://{host}:{port}"

        def serve_forever(self) -> None:
            served.append(self.host)

        def stop(self) -> None:
            pass

    monkeypatch.setattr(server, "Emulator", Quiet)
    monkeypatch.setattr(server, "EmulatorServer", Stub)
    quiet = CliRunner().invoke(server.emulator_command, ["--port", "0"])
    loud = CliRunner().invoke(server.emulator_command, ["--port", "0", "--host", everywhere])
    assert served == ["127.0.0.1", everywhere]
    assert "warning" not in quiet.stderr
    assert "anyone who can reach it can read and reset the emulator" in loud.stderr
