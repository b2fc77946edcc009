"""R6/R7/R9: storage faults never touch the request path and never drop an event silently.

Faults are real: a full database (SQLite ``max_page_count``, SQLite's own "database or disk is full"),
a write lock held by another connection (``BEGIN EXCLUSIVE``).  ``STORAGE_FAULTS`` lists them per
backend; the PostgreSQL store adds "connection dropped" (``pg_terminate_backend`` on the store's
connection) there, and every test below runs it unchanged.

Guarantees checked: the response of a shop wrapped in the middleware is byte-identical with and
without the fault; every failed ``record_*`` raises a typed :class:`StoreError` with a reason and is
counted (``store_errors.<reason>`` equals the failures exactly); nothing half-written is left; the
events the caller still holds go through once the fault clears, and all are delivered.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from wsgi_helpers import Clock, call, make_environ

from msclkid_middleware import ConsentPolicy, MsclkidMiddleware, get_click
from msclkid_middleware.dispatch.tracker import ConversionTracker
from msclkid_middleware.errors import OutboxFull, StoreError
from msclkid_middleware.outbox import OutboxStore, open_store
from msclkid_middleware.outbox.sqlite import SqliteOutbox
from msclkid_middleware.testing import EmulatorHandle

from .conftest import click_id, make_tracker, record

pytestmark = pytest.mark.reliability

SECRET = "storage-fault-cookie-key"
Injector = Callable[[OutboxStore], Any]


@contextmanager
def sqlite_disk_full(store: OutboxStore) -> Iterator[str]:
    assert isinstance(store, SqliteOutbox)
    # max_page_count is per connection: cap every connection the store has opened (all threads).
    conns = [conn for conn, _ in store._connections] or [store._conn()]
    pages = conns[0].execute("PRAGMA page_count").fetchone()[0]
    for conn in conns:
        conn.execute(f"PRAGMA max_page_count = {pages}")
    try:
        yield "storage_full"
    finally:
        for conn in conns:
            conn.execute("PRAGMA max_page_count = 4294967294")


@contextmanager
def sqlite_locked(store: OutboxStore) -> Iterator[str]:
    assert isinstance(store, SqliteOutbox)
    blocker = sqlite3.connect(store.path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        yield "storage_locked"
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()


STORAGE_FAULTS: dict[str, dict[str, Callable[[OutboxStore], Any]]] = {
    "sqlite": {"disk full": sqlite_disk_full, "database locked": sqlite_locked},
}


def _faults() -> list[Any]:
    return [pytest.param(backend, name, id=f"{backend}-{name}") for backend, f in STORAGE_FAULTS.items() for name in f]


@pytest.fixture
def faulty_tracker(request: pytest.FixtureRequest, ms: EmulatorHandle, store_url: str) -> Iterator[ConversionTracker]:
    store = open_store(store_url, busy_timeout=0.1)
    tracker = make_tracker(ms, store_url, store=store)
    yield tracker
    tracker.close()
    store.close()


def checkout_shop(tracker: ConversionTracker, held: list[dict[str, Any]]) -> Callable[..., Iterable[bytes]]:
    """A shop whose /checkout records the sale; on a storage error it keeps the event to record later."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        order = environ.get("QUERY_STRING", "").partition("order=")[2] or "none"
        if environ.get("PATH_INFO") == "/checkout":
            click = get_click(environ)
            event = {
                "event_id": order,
                "conversion_name": "Purchase",
                "conversion_time": datetime.now(UTC) - timedelta(minutes=1),
                "value": 25.0,
                "currency": "USD",
                "click": click,
            }
            try:
                tracker.record_offline(**event)
            except StoreError:
                held.append(event)  # the shop's own retry list: the event is not lost
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [f"thanks for {order}".encode()]

    return app


def _journey(app: Callable[..., Iterable[bytes]], order: int) -> list[tuple[str, list[tuple[str, str]], bytes]]:
    mw = MsclkidMiddleware(app, secret_keys=[SECRET], consent=ConsentPolicy(default="granted"), clock=Clock())
    landing = call(mw, make_environ("/", query=f"msclkid={click_id(order)}"))
    cookie = landing.set_cookies[0].split(";")[0]
    checkout = call(mw, make_environ("/checkout", query=f"order=ord_{order}", cookie=cookie))
    return [(r.status, r.headers, r.body) for r in (landing, checkout)]


@pytest.mark.parametrize(("backend", "fault"), _faults())
def test_storage_fault_leaves_responses_unchanged_and_loses_nothing(
    backend: str, fault: str, store_url: str, faulty_tracker: ConversionTracker, ms: EmulatorHandle
) -> None:
    if not store_url.startswith(backend):
        pytest.skip(f"{fault} is a {backend} fault")  # pragma: no cover - one backend per store_url today
    tracker = faulty_tracker
    held: list[dict[str, Any]] = []
    app = checkout_shop(tracker, held)
    healthy = [_journey(app, n) for n in range(5)]
    assert held == []

    failures = 10
    with STORAGE_FAULTS[backend][fault](tracker.store) as reason:
        during = [_journey(app, n) for n in range(5, 5 + failures)]
        # The caller of record_* gets the typed error too (here: directly).
        with pytest.raises(StoreError) as info:
            record(tracker, 999)
        assert info.value.reason == reason
    # The shop's responses are exactly what they are without a fault (same clock, same cookies).
    for n, journey in enumerate(during, start=5):
        expected = _journey(checkout_shop(_Null(), []), n)
        assert journey == expected
    assert [j[1][0] for j in healthy] == ["200 OK"] * 5
    # Every failure was reported and counted; none left a row behind.  (A full database still takes
    # what fits in its free pages, so only the later events of that scenario fail.)
    assert len(held) == failures if reason == "storage_locked" else 0 < len(held) <= failures
    assert tracker.metrics()[f"store_errors.{reason}"] == len(held) + 1
    assert all(tracker.store.find(e["event_id"]) == [] for e in held)
    assert tracker.store.find("ord_999") == []

    # The fault clears: the shop records what it held, and everything is delivered.
    for event in held:
        assert tracker.record_offline(**event).created
    report = tracker.flush(timeout=60)
    assert report.delivered == 5 + failures
    assert {i.outcome for i in ms.received("offline")} == {"accepted"}
    assert len(ms.received("offline")) == 5 + failures


class _Null:
    """A tracker stand-in that records nothing: the shop's response without any storage involved."""

    def record_offline(self, **event: Any) -> None:
        return None


@pytest.mark.parametrize(("backend", "fault"), _faults())
def test_background_worker_survives_a_storage_fault_and_catches_up(
    backend: str, fault: str, store_url: str, ms: EmulatorHandle
) -> None:
    if not store_url.startswith(backend):
        pytest.skip(f"{fault} is a {backend} fault")  # pragma: no cover
    errors: list[BaseException] = []
    store = open_store(store_url, busy_timeout=0.1)
    tracker = make_tracker(ms, store_url, store=store, on_error=errors.append, poll_interval=0.05)
    for n in range(20):
        record(tracker, n)
    tracker.flush(timeout=30)
    tracker.start()
    try:
        with STORAGE_FAULTS[backend][fault](store) as reason:
            # The worker thread's own connection exists now; record nothing, just let it poll into the fault.
            time.sleep(0.5)
            still = errors[:]
        for n in range(20, 40):
            record(tracker, n)
        deadline = time.monotonic() + 20
        while len(ms.received("offline", outcome="accepted")) < 40 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        tracker.shutdown(5)
    assert len(ms.received("offline", outcome="accepted")) == 40
    assert all(isinstance(e, StoreError) and e.reason == reason for e in errors), errors
    if reason == "storage_locked":
        assert still, "the worker did not meet the lock"  # it polls, and every poll needs the store
    tracker.close()
    store.close()


def test_bounded_outbox_rejects_new_events_and_counts_every_one(ms: EmulatorHandle, store_url: str) -> None:
    tracker = make_tracker(ms, store_url, max_pending=50)
    reasons = []
    for n in range(80):
        try:
            record(tracker, n)
        except OutboxFull as exc:
            reasons.append(exc.reason)
    rejected = len(reasons)
    assert set(reasons) == {"outbox_full"}
    assert rejected == 30
    assert tracker.store.open_count() == 50
    assert tracker.metrics()["store_errors.outbox_full"] == rejected
    assert tracker.flush(timeout=30).delivered == 50
    record(tracker, 80)  # room again once delivered
    tracker.close()
