"""``make demo``: the emulator, the shop and a worker on 127.0.0.1, in one command; Ctrl-C stops all three.

- the Microsoft Ads emulator runs in this process (a thread), on ``--emulator-port`` (default 8765, as
  ``msclkid emulator``); its credentials and URLs are handed to the other two as ``MSADS_*``/``UET_*``;
- the shop is ``flask --app examples.flask_shop run`` on ``--port`` (default 8000);
- the worker is ``flask --app examples.flask_shop msclkid worker``: the separate delivery process the
  toolkit recommends, reading the same app config (and the same outbox in the instance folder).

Both SQLite files (the shop's orders and the outbox) live in a fresh temporary instance folder that is
removed on exit, unless ``--data-dir`` names one to keep.  Environment variables ``MSCLKID_DEMO_PORT``,
``MSCLKID_DEMO_EMULATOR_PORT`` and ``MSCLKID_DEMO_DIR`` set the same options (``make demo`` passes them on).
Both ports are checked before anything starts: a taken one is named, with the variable that changes it, and
no URL is printed (another program answering on the shop's port would otherwise pass for the shop).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

import requests

from msclkid_middleware.emulator import Emulator, EmulatorConfig, EmulatorServer

HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_EMULATOR_PORT = 8765
ROOT = Path(__file__).resolve().parents[2]
_STARTUP_TIMEOUT = 30.0
_STOP_TIMEOUT = 10.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def port_problem(port: int, variable: str, what: str) -> str | None:
    """Why ``what`` cannot listen on ``HOST:port`` (with the variable that changes the port), or None."""
    if port == 0:
        return None  # the system picks a free one
    if not 0 < port < 65536:
        return f"demo: {port} is not a port number for the {what}; set {variable} to a free port such as {_free_port()}"
    with socket.socket() as sock:
        # As werkzeug's server does: a port left in TIME_WAIT by a previous run is free, one in use is not.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError as exc:
            return (
                f"demo: the {what} cannot listen on {HOST}:{port} ({exc.strerror or exc}: another program, or "
                f"another demo, uses it); set {variable} to a free port, for example {variable}={_free_port()}"
            )
    return None


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m examples.flask_shop", description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("MSCLKID_DEMO_PORT", DEFAULT_PORT)))
    parser.add_argument(
        "--emulator-port", type=int, default=int(os.environ.get("MSCLKID_DEMO_EMULATOR_PORT", DEFAULT_EMULATOR_PORT))
    )
    parser.add_argument("--data-dir", default=os.environ.get("MSCLKID_DEMO_DIR") or None)
    return parser.parse_args(argv)


def _wait_all(processes: list[subprocess.Popen[bytes]], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for proc in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(max(deadline - time.monotonic(), 0.01))


def _stop(processes: list[subprocess.Popen[bytes]], *, grace: float) -> None:
    """Stop the children gracefully: SIGINT (the worker finishes its request), then SIGTERM, then SIGKILL."""
    # After Ctrl-C the children got SIGINT from the terminal too: give them a moment to finish alone,
    # so a second signal does not interrupt their own clean shutdown.
    _wait_all(processes, grace)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        alive = [p for p in processes if p.poll() is None]
        if not alive:
            return
        for proc in alive:
            proc.send_signal(sig)
        _wait_all(alive, _STOP_TIMEOUT / 2)


def _wait_until_serving(url: str, processes: list[subprocess.Popen[bytes]], stop: threading.Event) -> bool:
    deadline = time.monotonic() + _STARTUP_TIMEOUT
    while time.monotonic() < deadline and not stop.is_set():
        if any(p.poll() is not None for p in processes):
            return False
        try:
            requests.get(url, timeout=2)
            return True
        except requests.RequestException:
            stop.wait(0.1)
    return False


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    stop = threading.Event()
    received: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        stop.set()

    # Ctrl-C reaches the whole process group (the children stop themselves too); SIGTERM only us.
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    port = args.port or _free_port()
    problems = [
        p
        for p in (
            port_problem(args.emulator_port, "MSCLKID_DEMO_EMULATOR_PORT", "emulator"),
            port_problem(port, "MSCLKID_DEMO_PORT", "shop"),
        )
        if p
    ]
    if port == args.emulator_port != 0:
        problems.append(f"demo: the shop and the emulator cannot share port {port}; set MSCLKID_DEMO_PORT")
    if problems:
        print("\n".join(problems), file=sys.stderr, flush=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        return 1
    try:
        server = EmulatorServer(Emulator(EmulatorConfig()), HOST, args.emulator_port).start()
    except (OSError, SystemExit):  # werkzeug reports a taken port itself, then exits
        print(
            f"demo: the emulator cannot listen on {HOST}:{args.emulator_port}; "
            "choose another port with MSCLKID_DEMO_EMULATOR_PORT",
            file=sys.stderr,
        )
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        return 1
    data_dir = args.data_dir or tempfile.mkdtemp(prefix="msclkid-demo-")
    os.makedirs(data_dir, exist_ok=True)
    processes: list[subprocess.Popen[bytes]] = []
    code = 0
    try:
        env = {
            **os.environ,
            **server.emulator.env(server.url),
            "SHOP_INSTANCE_PATH": os.path.abspath(data_dir),
            "SHOP_EMULATOR_URL": server.url + "/",
            "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p),
            "PYTHONUNBUFFERED": "1",
        }
        flask = [sys.executable, "-m", "flask", "--app", "examples.flask_shop"]
        processes.append(
            subprocess.Popen(  # noqa: S603 - our own interpreter and fixed arguments
                [*flask, "run", "--host", HOST, "--port", str(port), "--no-reload", "--no-debugger"], cwd=ROOT, env=env
            )
        )
        processes.append(
            subprocess.Popen(  # noqa: S603 - our own interpreter and fixed arguments
                [*flask, "msclkid", "worker", "--poll-interval", "0.5"], cwd=ROOT, env=env
            )
        )
        shop = f"http://{HOST}:{port}"
        if not _wait_until_serving(shop + "/", processes, stop):
            if not stop.is_set():
                print(
                    f"demo: the shop did not start on {HOST}:{port} (see the messages above; MSCLKID_DEMO_PORT "
                    "chooses another port)",
                    file=sys.stderr,
                    flush=True,
                )
                code = 1
            return code
        click_id = uuid.uuid4().hex  # a fresh 32-hex click ID, the shape of a real msclkid
        print(
            "\nmsclkid demo is running on 127.0.0.1 (Ctrl-C stops everything)\n"
            f"Ad click URL: {shop}/go?product=blue-mug&msclkid={click_id}\n"
            f"Shop URL: {shop}/\n"
            f"Emulator dashboard URL: {server.url}/\n"
            f"Data folder: {os.path.abspath(data_dir)}" + ("" if args.data_dir else " (removed on exit)") + "\n"
            "Open the ad click, accept the banner, buy, then refund and cancel under 'My orders':\n"
            "the conversion, the restatement and the retraction appear in the dashboard.\n",
            flush=True,
        )
        while not stop.wait(0.2):
            if any(p.poll() is not None for p in processes):
                print("demo: a component exited; stopping", file=sys.stderr, flush=True)
                code = 1
                break
        return code
    finally:
        _stop(processes, grace=2.0 if signal.SIGINT in received else 0.0)
        server.stop()
        if not args.data_dir:
            shutil.rmtree(data_dir, ignore_errors=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        print("msclkid demo stopped", flush=True)


if __name__ == "__main__":
    sys.exit(main())
