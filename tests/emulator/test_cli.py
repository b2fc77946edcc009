"""``msclkid emulator`` prints the environment and serves until interrupted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

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
