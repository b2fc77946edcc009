from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

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


# -- issue 19 item 1: the sale is recorded without consent=, and a refusing visitor has nothing sent ---------------


def _buy(client: Client, **headers: str) -> str:
    answer = client.post(
        "/buy",
        data={"email": "ana@example.com"},
        headers={"Origin": "https://localhost", **headers},
        base_url="https://localhost",
    )
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return answer.get_data(as_text=True)


def _tracker(tmp_path: Path, default: str) -> Any:
    from msclkid_middleware.config import Settings
    from msclkid_middleware.dispatch.tracker import ConversionTracker

    return ConversionTracker(
        settings=Settings(consent_default=default),  # type: ignore[arg-type]
        store_url=f"sqlite:///{tmp_path / 'outbox.db'}",
        microsoft=False,
        uet=False,
    )


def test_a_refusing_visitor_buys_and_nothing_would_be_sent(tmp_path: Path) -> None:
    tracker = _tracker(tmp_path, "granted")  # the example's own policy grants by default
    try:
        example = load_example()
        gpc = Client(example.create_app("test-key", tracker=tracker))
        gpc.get("/?msclkid=Example-123", headers={"Sec-GPC": "1"})
        assert "its report to Microsoft: suppressed" in _buy(gpc, **{"Sec-GPC": "1"})
        banner = Client(example.create_app("test-key", tracker=tracker))
        banner.get("/?msclkid=Example-123")
        banner.get("/consent?state=denied")
        assert "its report to Microsoft: suppressed" in _buy(banner)
        claimable = tracker.store.claim(owner="t", limit=100, now=datetime.now(UTC), lease_seconds=1)
        assert claimable == []  # nothing to send
    finally:
        tracker.close()


def test_a_consenting_visitor_buys_and_the_click_is_recorded(tmp_path: Path) -> None:
    tracker = _tracker(tmp_path, "denied")
    try:
        client = Client(load_example().create_app("test-key", tracker=tracker))
        client.get("/consent?state=granted")
        client.get("/?msclkid=Example-123")
        assert "its report to Microsoft: pending" in _buy(client)
    finally:
        tracker.close()


def test_the_buy_form_refuses_cross_site_posts(tmp_path: Path) -> None:
    tracker = _tracker(tmp_path, "granted")
    try:
        client = Client(load_example().create_app("test-key", tracker=tracker))
        refused = client.post("/buy", data={"email": "a@b.example"}, headers={"Origin": "https://evil.example"})
        assert refused.status_code == 403
        assert client.get("/buy").status_code == 403
    finally:
        tracker.close()
