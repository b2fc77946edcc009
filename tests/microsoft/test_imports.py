"""Importing the clients opens nothing; the package root never pulls them (or requests) in."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run(code: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout


def test_root_and_models_do_not_import_the_clients() -> None:
    out = run(
        "import sys, msclkid_middleware, msclkid_middleware.conversions, msclkid_middleware.config;"
        "print([m for m in ('requests', 'urllib3', 'msclkid_middleware.microsoft') if m in sys.modules])"
    )
    assert out.strip() == "[]"


def test_importing_and_constructing_clients_opens_no_connection_or_thread() -> None:
    out = run(
        "import threading, socket\n"
        "opened = []\n"
        "real = socket.socket.connect\n"
        "socket.socket.connect = lambda self, *a: opened.append(a) or real(self, *a)\n"
        "from msclkid_middleware.microsoft import CampaignManagementClient, RefreshTokenProvider, UetClient\n"
        "p = RefreshTokenProvider('c', refresh_token='r', token_url='http://127.0.0.1:9/token')\n"
        "c = CampaignManagementClient(developer_token='d', customer_id='1', account_id='2', token_provider=p)\n"
        "u = UetClient(api_token='t')\n"
        "print(len(opened), threading.active_count(), c._session is None and u._session is None)\n"
    )
    assert out.split() == ["0", "1", "True"]
