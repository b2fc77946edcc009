"""``MSCLKID_WORKER="thread"``: delivery from the web process, started lazily where requests are served.

Started by the first request, so never in the Flask reloader's watching parent (it serves nothing) nor in a
pre-fork master; after ``fork()`` the pid check starts a fresh thread in the child.  Fork tests bound every
wait and end the child with ``os._exit`` so a failure can never hang the suite.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import traceback
import warnings
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from flask import Flask
from flask_helpers import CLICK, AppFactory

from msclkid_middleware.flask import Msclkid
from msclkid_middleware.testing import EmulatorHandle

ROOT = Path(__file__).resolve().parents[3]


def dispatch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "msclkid-dispatch" and t.is_alive()]


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def add_buy_view(app: Flask) -> None:
    @app.route("/buy/<order_id>/<int:minutes_ago>")
    def buy(order_id: str, minutes_ago: int) -> str:
        # Microsoft counts one conversion per click, goal and time: distinct orders get distinct times.
        when = datetime.now(UTC) - timedelta(minutes=minutes_ago)
        Msclkid.state().tracker.record_offline(order_id, "Purchase", when, 5.0, "USD", click=CLICK)
        return "ok"


def test_worker_starts_on_the_first_request_and_delivers(make_app: AppFactory, ms: EmulatorHandle) -> None:
    before = len(dispatch_threads())
    app = make_app({**ms.env, "MSCLKID_WORKER": "thread"}, tracker_options={"poll_interval": 0.05})
    add_buy_view(app)
    assert len(dispatch_threads()) == before  # nothing at init_app
    client = app.test_client()
    assert client.get("/buy/ord_1/0").status_code == 200
    assert len(dispatch_threads()) == before + 1
    ms.wait_for_received(1, "offline", outcome="accepted")
    client.get("/buy/ord_2/1")
    assert len(dispatch_threads()) == before + 1  # one thread per process, not per request
    ms.wait_for_received(2, "offline", outcome="accepted")
    Msclkid.state(app).close()
    assert wait_for(lambda: len(dispatch_threads()) == before)


def test_worker_off_by_default_starts_no_thread(make_app: AppFactory, ms: EmulatorHandle) -> None:
    before = len(dispatch_threads())
    app = make_app(dict(ms.env))
    add_buy_view(app)
    app.test_client().get("/buy/ord_1/0")
    assert len(dispatch_threads()) == before
    assert Msclkid.state(app).tracker.status("ord_1").state == "pending"  # waits for a separate worker


def test_after_fork_the_child_starts_its_own_worker(make_app: AppFactory, ms: EmulatorHandle) -> None:
    """gunicorn's pre-fork model: the master may have served (or started) already; each worker starts its own."""
    app = make_app({**ms.env, "MSCLKID_WORKER": "thread"}, tracker_options={"poll_interval": 0.05})
    add_buy_view(app)
    app.test_client().get("/buy/ord_parent/2")
    ms.wait_for_received(1, "offline", outcome="accepted")
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        # Python 3.12+ warns about fork() in a threaded process; this test is about exactly that situation.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            os.close(read_end)
            # Objects inherited from the parent (its HTTP connections) are dropped here; their ResourceWarnings
            # are the parent's business, not this child's.
            warnings.simplefilter("ignore")
            no_thread_yet = not dispatch_threads()  # threads do not survive fork
            app.test_client().get("/buy/ord_child/3")
            started = len(dispatch_threads()) == 1
            delivered = wait_for(
                lambda: Msclkid.state(app).tracker.status("ord_child").state == "delivered", timeout=30
            )
            os.write(write_end, f"{no_thread_yet},{started},{delivered}".encode())
            code = 0
        except BaseException:
            os.write(write_end, traceback.format_exc().encode()[-4000:])
        finally:
            os._exit(code)
    os.close(write_end)
    try:
        deadline = time.monotonic() + 60
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                raise AssertionError("the forked child did not finish within 60 s")
            time.sleep(0.02)
        report = os.read(read_end, 8192).decode()
    finally:
        os.close(read_end)
    assert os.waitstatus_to_exitcode(status) == 0, report
    assert report == "True,True,True"
    # The parent's own thread still runs and delivers.
    app.test_client().get("/buy/ord_parent2/4")
    assert wait_for(lambda: Msclkid.state(app).tracker.status("ord_parent2").state == "delivered")
    assert sorted(i.payload["ConversionValue"] for i in ms.received("offline", outcome="accepted")) == [5.0] * 3


RELOADER_APP = """
import os
from flask import Flask
from msclkid_middleware.flask import Msclkid
from msclkid_middleware.dispatch.tracker import ConversionTracker

_start = ConversionTracker.start


def start(self):
    # Record which process started a delivery thread.
    with open(os.environ["STARTS_FILE"], "a") as f:
        f.write(f"{os.getpid()}\\n")
    _start(self)


ConversionTracker.start = start


def create_app():
    app = Flask(__name__, instance_path=os.environ["INSTANCE"])
    app.config.update(SECRET_KEY="k", MSCLKID_WORKER="thread")
    Msclkid(app)

    @app.route("/ping")
    def ping():
        return str(os.getpid())

    return app
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_under_the_reloader_only_the_serving_child_starts_a_worker(tmp_path: Path) -> None:
    (tmp_path / "reloader_app.py").write_text(textwrap.dedent(RELOADER_APP))
    starts = tmp_path / "starts.txt"
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("MSCLKID_", "MSADS_", "UET_", "WERKZEUG_"))},
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),
        "STARTS_FILE": str(starts),
        "INSTANCE": str(tmp_path / "instance"),
    }
    command = [sys.executable, "-m", "flask", "--app", "reloader_app", "run", "--reload", "--port", str(port)]
    proc = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        served_by = None
        deadline = time.monotonic() + 30
        while served_by is None and time.monotonic() < deadline:
            try:
                served_by = int(requests.get(f"http://127.0.0.1:{port}/ping", timeout=10).text)
            except requests.RequestException:  # not listening yet, or a loaded machine
                time.sleep(0.1)
        assert served_by is not None, "the reloader never served"
        assert served_by != proc.pid  # the reloader's parent watches files; its child serves
        requests.get(f"http://127.0.0.1:{port}/ping", timeout=30)
        assert wait_for(starts.exists)
        assert [int(line) for line in starts.read_text().split()] == [served_by]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_a_worker_that_cannot_start_never_breaks_the_page(
    make_app: AppFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The outbox cannot be opened (its folder is a file): the page is still served, and the next request retries.
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    app = make_app({"MSCLKID_WORKER": "thread", "MSCLKID_STORE_URL": f"sqlite:///{blocker}/outbox.sqlite3"})

    @app.route("/page")
    def page() -> str:
        return "page"

    client = app.test_client()
    with caplog.at_level("WARNING", logger="msclkid_middleware.flask"):
        assert client.get("/page").get_data(as_text=True) == "page"
    assert "could not start the msclkid delivery thread" in caplog.text
    assert Msclkid.state(app).worker_pid is None
    blocker.unlink()
    blocker.mkdir()
    assert client.get("/page").status_code == 200
    assert Msclkid.state(app).worker_pid == os.getpid()
