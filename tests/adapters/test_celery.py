"""``msclkid_middleware.celery``: the outbox drained by real Celery workers on the local Redis.

Two worker processes (prefork, two children each) run many drains at once on one SQLite outbox: every
event reaches the emulator exactly once.  A worker with embedded beat delivers on the schedule that
``beat_schedule`` builds.  Redis or Celery missing: skipped locally, a failure under ``CI=true`` (``.ci/run``
starts Redis).  Importing the rest of the package never imports Celery.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from msclkid_middleware.config import Settings
from msclkid_middleware.dispatch.tracker import ConversionTracker
from msclkid_middleware.testing import EmulatorHandle, run_emulator

IN_CI = os.environ.get("CI") == "true"
REPO = Path(__file__).resolve().parents[2]
REDIS_URL = os.environ.get("MSCLKID_TEST_CELERY_URL", "redis://127.0.0.1:6379/15")
SECRET_VARS = ("MSADS_CLIENT_SECRET", "MSADS_DEVELOPER_TOKEN", "MSADS_REFRESH_TOKEN", "UET_API_TOKEN")


def unavailable(*, redis_server: bool) -> str | None:
    try:
        import celery  # noqa: F401
        import redis
    except ImportError as exc:
        return f"{exc.name} is not installed (pip install -e '.[test]')"
    if not redis_server:
        return None
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        return f"Redis is not reachable at {REDIS_URL}: {exc}"
    finally:
        client.close()
    return None


def require(*, redis_server: bool) -> None:
    reason = unavailable(redis_server=redis_server)
    if reason is None:
        return
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: the Celery tests must run; .ci/run starts Redis)")
    pytest.skip(reason)


@pytest.fixture
def needs_celery() -> None:
    """Celery installed (the tests that run no worker)."""
    require(redis_server=False)


@pytest.fixture
def needs_redis() -> None:
    """Celery installed and the local Redis reachable (the tests with real workers)."""
    require(redis_server=True)


class Run:
    """One test's Celery world: a key prefix and a queue of its own, worker processes logging to files."""

    def __init__(self, ms: EmulatorHandle, store_url: str, logs: Path) -> None:
        from tests.adapters.celery_app import make_app

        tag = uuid.uuid4().hex[:12]
        self.prefix, self.queue = f"msclkid-test-{tag}:", f"msclkid-test-{tag}"
        self.app = make_app(REDIS_URL, self.prefix, self.queue)
        self.logs = logs
        self.env = {
            **os.environ,
            **ms.env,
            "MSCLKID_STORE_URL": store_url,
            "PYTHONPATH": str(REPO),
            "MSCLKID_TEST_CELERY_URL": REDIS_URL,
            "MSCLKID_TEST_CELERY_PREFIX": self.prefix,
            "MSCLKID_TEST_CELERY_QUEUE": self.queue,
        }
        self.procs: list[subprocess.Popen[bytes]] = []

    def start_worker(self, *args: str, **env: str) -> subprocess.Popen[bytes]:
        n = len(self.procs)
        command = [sys.executable, "-m", "celery", "-A", "tests.adapters.celery_app", "worker", "-n", f"w{n}@%h"]
        command += ["--without-mingle", "--without-gossip", "--without-heartbeat", "-l", "INFO", *args]
        with (self.logs / f"worker{n}.log").open("wb") as log:
            proc = subprocess.Popen(
                command, env={**self.env, **env}, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.procs.append(proc)
        return proc

    def log(self, n: int) -> str:
        return (self.logs / f"worker{n}.log").read_text(errors="replace")

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        for n, proc in enumerate(self.procs):
            while " ready." not in self.log(n):
                assert proc.poll() is None, f"worker {n} exited:\n{self.log(n)[-3000:]}"
                assert time.monotonic() < deadline, f"worker {n} not ready:\n{self.log(n)[-3000:]}"
                time.sleep(0.1)

    def drain(self, count: int, **kwargs: Any) -> list[dict[str, Any]]:
        """Send ``count`` drains at once, then collect every result."""
        from msclkid_middleware.celery import DRAIN_TASK

        pending = [self.app.send_task(DRAIN_TASK, kwargs=kwargs) for _ in range(count)]
        return [result.get(timeout=90) for result in pending]

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()  # warm shutdown: running drains finish
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)  # the session we started for this worker
                proc.wait(10)
        self.app.close()
        import redis

        client = redis.Redis.from_url(REDIS_URL)
        try:
            keys = list(client.scan_iter(match=f"{self.prefix}*"))
            if keys:
                client.delete(*keys)
        finally:
            client.close()


@pytest.fixture
def ms() -> Iterator[EmulatorHandle]:
    with run_emulator() as handle:
        yield handle


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'outbox.sqlite3'}"


@pytest.fixture
def recorder(ms: EmulatorHandle, store_url: str) -> Iterator[ConversionTracker]:
    """The shop's web process: records, never delivers."""
    tracker = ConversionTracker(settings=Settings.from_env(ms.env), store_url=store_url)
    yield tracker
    tracker.close()


@pytest.fixture
def run(needs_redis: None, ms: EmulatorHandle, store_url: str, tmp_path: Path) -> Iterator[Run]:
    celery_run = Run(ms, store_url, tmp_path)
    yield celery_run
    celery_run.close()


def click_id(n: int) -> str:
    return f"{n:032x}"


def record(tracker: ConversionTracker, numbers: range) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    for n in numbers:
        tracker.record_offline(f"ord_{n}", "Purchase", now - timedelta(minutes=30), value=10.0 + n, click=click_id(n))
        if n % 5 == 0:
            tracker.record_uet_event(f"evt_{n}", "purchase", now - timedelta(minutes=1), click=click_id(n))


def assert_exactly_once(ms: EmulatorHandle, numbers: range) -> None:
    clicks = Counter(item.payload["MicrosoftClickId"] for item in ms.received("offline"))
    assert clicks == Counter(click_id(n) for n in numbers)
    events = Counter(item.payload["eventId"] for item in ms.received("uet"))
    assert events == Counter(f"evt_{n}" for n in numbers if n % 5 == 0)
    assert {item.outcome for item in ms.received()} == {"accepted"}


def assert_no_secrets(ms: EmulatorHandle, *texts: str) -> None:
    for name in SECRET_VARS:
        for text in texts:
            assert ms.env[name] not in text, f"{name} leaked"


@pytest.mark.slow
def test_two_prefork_workers_drain_concurrently_and_send_each_event_once(
    run: Run, ms: EmulatorHandle, recorder: ConversionTracker
) -> None:
    numbers = range(150)
    record(recorder, numbers)
    expected = len(numbers) + len(numbers) // 5
    for _ in range(2):
        run.start_worker("-P", "prefork", "--concurrency", "2", MSCLKID_TEST_CELERY_BATCH="5")
    run.wait_ready()

    reports = run.drain(12)

    assert sum(r["delivered"] for r in reports) == expected
    assert sum(r["claimed"] for r in reports) == expected  # no row was ever claimed twice
    assert all(r["rejected"] == r["dead"] == 0 and not r["timed_out"] for r in reports)
    workers = Counter(r["worker"] for r in reports if r["delivered"])
    assert len({owner.rsplit(":", 2)[1] for owner in workers}) >= 2, workers  # several processes delivered
    assert_exactly_once(ms, numbers)
    assert all(recorder.status(f"ord_{n}").state == "delivered" for n in numbers)

    # Drains with nothing due change nothing; new events go out with the next ones.
    assert {r["claimed"] for r in run.drain(4)} == {0}
    record(recorder, range(150, 151))  # an offline conversion and a UET event
    assert sum(r["delivered"] for r in run.drain(3)) == 2
    assert_exactly_once(ms, range(151))
    run.close()
    assert_no_secrets(ms, run.log(0), run.log(1), json.dumps(reports))


@pytest.mark.slow
def test_embedded_beat_delivers_on_the_documented_schedule(
    run: Run, ms: EmulatorHandle, recorder: ConversionTracker, tmp_path: Path
) -> None:
    run.start_worker("-P", "solo", "-B", "-s", str(tmp_path / "beat-schedule"), MSCLKID_TEST_CELERY_BEAT="0.5")
    run.wait_ready()
    record(recorder, range(20))
    ms.wait_for_received(24, timeout=30)
    record(recorder, range(20, 30))  # the schedule keeps running: a later wave goes out too
    ms.wait_for_received(36, timeout=30)
    time.sleep(1.5)  # a few more beats: nothing is sent again
    assert_exactly_once(ms, range(30))
    log = run.log(0)
    assert "msclkid_middleware.drain_outbox" in log
    run.close()
    assert_no_secrets(ms, run.log(0))


def test_beat_schedule_entry(needs_celery: None) -> None:
    from celery import Celery
    from celery.beat import ScheduleEntry

    from msclkid_middleware.celery import BEAT_ENTRY, DRAIN_TASK, beat_schedule

    schedule = beat_schedule(every=timedelta(seconds=30), timeout=12, queue="msclkid")
    assert schedule == {
        BEAT_ENTRY: {
            "task": DRAIN_TASK,
            "schedule": timedelta(seconds=30),
            "options": {"expires": 30.0, "queue": "msclkid"},
            "kwargs": {"timeout": 12.0},
        }
    }
    assert beat_schedule(10, key="drain", task="shop.drain") == {
        "drain": {"task": "shop.drain", "schedule": timedelta(seconds=10), "options": {"expires": 10.0}}
    }
    for bad in (0, -1, timedelta(0)):
        with pytest.raises(ValueError, match="every"):
            beat_schedule(bad)
    # Celery beat takes the entry as it is.
    app = Celery("schedule-test", set_as_current=False)
    app.conf.beat_schedule = schedule
    entry = ScheduleEntry(name=BEAT_ENTRY, app=app, **app.conf.beat_schedule[BEAT_ENTRY])
    assert entry.task == DRAIN_TASK
    assert entry.schedule.run_every == timedelta(seconds=30)
    assert entry.kwargs == {"timeout": 12.0}
    assert entry.options["expires"] == 30.0
    app.close()


def test_task_options_and_secret_free_failures(needs_celery: None, ms: EmulatorHandle, store_url: str) -> None:
    from celery import Celery

    from msclkid_middleware.celery import DRAIN_TASK, DrainFailed, register_tasks
    from msclkid_middleware.errors import ConfigError

    secret = ms.env["MSADS_CLIENT_SECRET"]
    app = Celery("options-test", set_as_current=False)
    tracker = ConversionTracker(settings=Settings.from_env(ms.env), store_url=store_url)
    try:
        task = register_tasks(app, tracker_factory=lambda: tracker, rate_limit="10/s")
        assert app.tasks[DRAIN_TASK].name == task.name == DRAIN_TASK
        assert (task.acks_late, task.reject_on_worker_lost, task.max_retries, task.rate_limit) == (
            True,
            False,
            0,
            "10/s",
        )
        assert task.apply().get()["delivered"] == 0

        def failing_flush(timeout: float | None = None) -> Any:
            raise RuntimeError(f"cannot reach the store with {secret}")

        tracker.flush = failing_flush  # type: ignore[method-assign]
        result = task.apply()
        assert result.failed()
        assert isinstance(result.result, DrainFailed)
        assert str(result.result).startswith("RuntimeError: cannot reach the store with ")
        assert secret not in str(result.result)
        assert secret not in (result.traceback or "")
    finally:
        tracker.close()

    def broken_factory() -> ConversionTracker:
        raise KeyError(secret)

    def misconfigured() -> ConversionTracker:
        raise ConfigError("MSCLKID_STORE_URL is not a supported URL", setting="store_url")

    for factory, shown in ((broken_factory, "KeyError while building"), (misconfigured, "ConfigError: MSCLKID")):
        other = Celery("failure-test", set_as_current=False)
        result = register_tasks(other, tracker_factory=factory).apply()
        assert isinstance(result.result, DrainFailed)
        assert str(result.result).startswith(shown)
        assert secret not in str(result.result) + (result.traceback or "")
        other.close()
    with pytest.raises(ValueError, match="timeout"):
        register_tasks(Celery("bad", set_as_current=False), timeout=0)
    app.close()


def test_the_package_never_imports_celery() -> None:
    """Every module but the adapter imports without Celery (an adapter whose framework is absent is skipped)."""
    code = """
import importlib, pkgutil, sys
import msclkid_middleware
for info in pkgutil.walk_packages(msclkid_middleware.__path__, "msclkid_middleware."):
    if info.name == "msclkid_middleware.celery":
        continue
    try:
        importlib.import_module(info.name)
    except ModuleNotFoundError as exc:
        if (exc.name or "").startswith("msclkid_middleware"):
            raise
print(",".join(sorted(m for m in sys.modules if m.split(".")[0] in ("celery", "kombu", "billiard"))))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == ""


def test_docs_wiring_example_runs(needs_celery: None) -> None:
    """docs/celery.md's wiring block, as written: the task is registered and the beat entry is in place."""
    from msclkid_middleware.celery import BEAT_ENTRY, DRAIN_TASK

    doc = (REPO / "docs" / "celery.md").read_text(encoding="utf-8")
    wiring = doc.split("## Wiring", 1)[1]
    block = wiring.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict[str, Any] = {}
    exec(compile(block, "docs/celery.md", "exec"), namespace)  # noqa: S102 - our own documentation
    app = namespace["app"]
    assert DRAIN_TASK in app.tasks
    assert namespace["drain_outbox"].name == DRAIN_TASK
    assert app.conf.beat_schedule[BEAT_ENTRY]["schedule"] == timedelta(seconds=10)
    app.close()
