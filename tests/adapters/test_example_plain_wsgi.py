from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import requests
from werkzeug.test import Client

ROOT = Path(__file__).resolve().parents[2]


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("plain_wsgi_example", ROOT / "examples" / "plain_wsgi.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_landing_redirect_keeps_the_click_and_product_page_shows_it() -> None:
    example = load_example()
    client = Client(example.create_app("test-key"))
    landing = client.get("/?msclkid=Example-123")
    assert landing.status_code == 302
    assert landing.headers["Location"] == "/product"
    assert landing.headers["Set-Cookie"].startswith("msclkid=1.Example-123.")
    product = client.get("/product")
    page = product.get_data(as_text=True)
    assert "<code>Example-123</code>" in page
    assert "source: <code>cookie</code>" in page
    assert 'src="/_msclkid.js"' in page
    assert client.get("/_msclkid.js").status_code == 200


def test_denying_consent_removes_the_click() -> None:
    client = Client(load_example().create_app("test-key"))
    client.get("/?msclkid=Example-123")
    response = client.get("/consent?state=denied", follow_redirects=True)
    page = response.get_data(as_text=True)
    assert "Click: <code>none</code>" in page
    assert "Consent: <code>denied</code>" in page
    assert client.get_cookie("msclkid") is None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_demo_serves_on_127_0_0_1_port_8000_by_default() -> None:
    assert (load_example().HOST, load_example().DEFAULT_PORT) == ("127.0.0.1", 8000)


def test_demo_runs_and_prints_a_landing_url() -> None:
    # Port 8000 may be taken on a shared machine: the demo honours MSCLKID_DEMO_PORT.
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", "MSCLKID_DEMO_PORT": str(port)}
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / "plain_wsgi.py")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = ""
        while "msclkid=" not in line:
            line = proc.stdout.readline()
            assert line, "the demo exited without printing a landing URL"
        url = line.split(": ", 1)[1].strip()
        assert url == f"http://127.0.0.1:{port}/?msclkid=Example-123"
        for _ in range(50):
            try:
                response = requests.get(url, timeout=2)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        assert "Example-123" in response.text
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()
