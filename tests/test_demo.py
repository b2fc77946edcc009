"""``make demo``: one command starts the emulator, the shop and a worker on loopback; Ctrl-C stops them all.

The first test runs ``make demo`` itself (``-o`` keeps make from re-installing the venv, ``PY=`` uses this
interpreter), the second the exact launcher command the Makefile runs.  Both use free ports (the defaults,
8000 and 8765, may be taken on a shared machine) through the environment variables ``make demo`` honours.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import requests

from examples.flask_shop import demo

ROOT = Path(__file__).resolve().parent.parent
LABELS = ("Ad click URL", "Shop URL", "Emulator dashboard URL")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Running:
    proc: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    urls: dict[str, str] = field(default_factory=dict)
    ready: threading.Event = field(default_factory=threading.Event)

    def read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            label, sep, value = line.partition(": ")
            if sep and label in LABELS:
                self.urls[label] = value.strip()
                if len(self.urls) == len(LABELS):
                    self.ready.set()
        self.ready.set()  # the process ended: stop waiting

    @property
    def output(self) -> str:
        return "".join(self.lines)


@contextmanager
def running(command: list[str]) -> Iterator[Running]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("MSCLKID_", "MSADS_", "UET_", "FLASK_", "MAKE"))},
        "PYTHONPATH": str(ROOT),
        "PYTHONUNBUFFERED": "1",
        "MSCLKID_DEMO_PORT": str(free_port()),
        "MSCLKID_DEMO_EMULATOR_PORT": str(free_port()),
    }
    proc = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: the test's "terminal"
    )
    run = Running(proc)
    reader = threading.Thread(target=run.read, daemon=True)
    reader.start()
    try:
        yield run
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        reader.join(10)
        assert proc.stdout is not None
        proc.stdout.close()


def wait_ready(run: Running) -> None:
    assert run.ready.wait(60), "the demo printed no URLs within 60 s"
    assert set(run.urls) == set(LABELS), run.output


def exercise(run: Running) -> None:
    """Fetch the three printed URLs, buy once, and see the separate worker deliver to the emulator."""
    ad, shop, dashboard = (run.urls[label] for label in LABELS)
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/go\?product=blue-mug&msclkid=[0-9a-f]{32}", ad)
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", shop)
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", dashboard)
    click_id = ad.rsplit("=", 1)[1]
    session = requests.Session()
    landing = session.get(ad, timeout=10)
    assert landing.status_code == 200
    assert landing.history[0].status_code == 302
    # The shop runs opt-in: accept the banner (its no-JavaScript form, with the page's CSRF token) to keep the click.
    token = re.search(r'name="csrf_token" value="([^"]+)"', landing.text)
    assert token is not None
    accepted = session.post(
        shop + "consent",
        data={"choice": "granted", "next": landing.url.removeprefix(shop[:-1]), "csrf_token": token.group(1)},
        timeout=10,
    )
    assert accepted.status_code == 200
    assert f'<code id="click-id">{click_id}</code>' in accepted.text
    assert session.get(shop, timeout=10).status_code == 200
    board = requests.get(dashboard, timeout=10)
    assert board.status_code == 200
    assert "Microsoft Ads emulator" in board.text
    bought = session.post(
        shop + "checkout/blue-mug",
        data={"email": "ana@example.com", "phone": "+14255551234", "quantity": "1", "csrf_token": token.group(1)},
    )
    assert bought.status_code == 200
    deadline = time.monotonic() + 20
    received: list[dict[str, object]] = []
    while time.monotonic() < deadline and not received:
        received = requests.get(dashboard + "_emulator/received?kind=offline", timeout=5).json()
        time.sleep(0.1)
    assert [(item["outcome"], item["payload"]["MicrosoftClickId"]) for item in received] == [  # type: ignore[index]
        ("accepted", click_id)
    ]


def assert_all_stopped(run: Running, ports: list[int]) -> None:
    assert "msclkid demo stopped" in run.output
    with_group = True
    try:
        os.killpg(run.proc.pid, 0)
    except ProcessLookupError:
        with_group = False
    assert not with_group, "a process of the demo is still running"
    for port in ports:
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still answers"
    data_dirs = re.findall(r"^Data folder: (\S+) \(removed on exit\)$", run.output, re.M)
    assert data_dirs, run.output
    assert not Path(data_dirs[0]).exists()  # the temporary instance folder (orders, outbox) is removed


def ports_of(run: Running) -> list[int]:
    return [int(re.findall(r":(\d+)/", run.urls[label])[0]) for label in LABELS[1:]]


def test_make_demo_serves_the_journey_and_stops_on_ctrl_c() -> None:
    command = ["make", "-s", "-o", ".venv/.installed", "demo", f"PY={sys.executable}"]
    with running(command) as run:
        wait_ready(run)
        exercise(run)
        ports = ports_of(run)
        os.killpg(run.proc.pid, signal.SIGINT)  # Ctrl-C: the whole foreground group gets SIGINT
        run.proc.wait(30)
    # GNU make re-raises SIGINT on itself after its recipe finished (that is make, not the demo);
    # the demo underneath stopped cleanly, which is what the assertions below check.
    assert run.proc.returncode in (0, -signal.SIGINT), run.output
    assert "Traceback" not in run.output, run.output
    assert_all_stopped(run, ports)


def test_the_launcher_exits_0_on_sigint_and_stops_its_children_on_sigterm() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "\t$(PY) -m examples.flask_shop\n" in makefile  # the command tested here is the one make runs
    for how in ("ctrl-c", "sigterm"):
        with running([sys.executable, "-m", "examples.flask_shop"]) as run:
            wait_ready(run)
            ports = ports_of(run)
            assert requests.get(run.urls["Shop URL"], timeout=10).status_code == 200
            if how == "ctrl-c":
                os.killpg(run.proc.pid, signal.SIGINT)
            else:
                run.proc.send_signal(signal.SIGTERM)  # only the launcher: it must stop the others itself
            run.proc.wait(30)
        assert run.proc.returncode == 0, run.output
        assert "Traceback" not in run.output, run.output
        assert_all_stopped(run, ports)


def test_defaults_are_loopback_and_the_documented_ports() -> None:
    assert (demo.HOST, demo.DEFAULT_PORT, demo.DEFAULT_EMULATOR_PORT) == ("127.0.0.1", 8000, 8765)


def test_a_taken_emulator_port_is_a_clear_message_not_a_traceback() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, "PYTHONPATH": str(ROOT), "MSCLKID_DEMO_EMULATOR_PORT": str(port)}
        done = subprocess.run(
            [sys.executable, "-m", "examples.flask_shop", "--port", str(free_port())],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1
    assert "MSCLKID_DEMO_EMULATOR_PORT" in done.stderr
    assert "Traceback" not in done.stderr
