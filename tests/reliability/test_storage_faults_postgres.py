"""R6/R7/R9 on PostgreSQL: the store's connections are dropped and the server stays unreachable for a while.

A real TCP proxy on loopback stands between the store and the PostgreSQL server; "cutting" it closes
every open connection mid-session and refuses new ones, as a network partition or a failing-over
database does.  Guarantees: the shop's responses are byte-identical to a run without storage, every
failed ``record_*`` raises a typed :class:`StoreError` (``storage_unavailable``) and is counted exactly,
nothing half-written is left, and once the proxy heals the store reconnects by itself and everything
the shop held is delivered once.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from msclkid_middleware.errors import StoreError
from msclkid_middleware.testing import EmulatorHandle
from tests.pg_helpers import POSTGRES_URL, Schemas, require_postgres, schema_fixture, session_schemas

from .conftest import make_tracker, record
from .test_storage_faults import _journey, _Null, checkout_shop

pytestmark = [pytest.mark.reliability, pytest.mark.postgres]


class CuttableProxy:
    """A loopback TCP proxy to the PostgreSQL server whose link can be cut (all sockets closed) and healed."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.cut = False
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.cut:
                client.close()  # refused mid-handshake: libpq sees the server close the connection
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for s in (source, sink):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def drop_all(self) -> None:
        self.cut = True
        with self._lock:
            sockets, self._sockets = self._sockets, set()
        for s in sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def heal(self) -> None:
        self.cut = False

    def close(self) -> None:
        self._stopped = True
        self.listener.close()
        self.drop_all()


@pytest.fixture(scope="module")
def pg_schemas() -> Iterator[Schemas]:
    yield from session_schemas()


@pytest.fixture
def proxied_url(pg_schemas: Schemas) -> Iterator[tuple[str, CuttableProxy]]:
    require_postgres()
    parts = urlsplit(POSTGRES_URL)
    proxy = CuttableProxy((parts.hostname or "127.0.0.1", parts.port or 5432))
    try:
        for schema in schema_fixture(pg_schemas):
            url = pg_schemas.store_url(schema, pool_max_size=2, pool_timeout=1)
            netloc = f"{parts.username or 'postgres'}@127.0.0.1:{proxy.port}"
            yield url.replace(parts.netloc, netloc, 1), proxy
    finally:
        proxy.close()


def wait_for_store(tracker: Any, limit: float = 30.0) -> float:
    """Seconds until the store answers again (the pool re-connects in the background, with back-off)."""
    start = time.monotonic()
    while True:
        try:
            tracker.store.open_count()
        except StoreError:
            if time.monotonic() - start > limit:
                raise
            time.sleep(0.1)
        else:
            return time.monotonic() - start


def test_dropped_connections_leave_responses_unchanged_and_lose_nothing(
    proxied_url: tuple[str, CuttableProxy], ms: EmulatorHandle
) -> None:
    url, proxy = proxied_url
    tracker = make_tracker(ms, url)
    try:
        held: list[dict[str, Any]] = []
        app = checkout_shop(tracker, held)
        healthy = [_journey(app, n) for n in range(5)]
        assert held == []
        assert [j[1][0] for j in healthy] == ["200 OK"] * 5

        proxy.drop_all()  # every pooled connection dies mid-session, and no new one gets through
        failures = 2
        during = [_journey(app, n) for n in range(5, 5 + failures)]
        with pytest.raises(StoreError) as info:
            record(tracker, 999)
        assert info.value.reason == "storage_unavailable"
        # The shop's responses are exactly those of a shop without storage (same clock, same cookies).
        for n, journey in enumerate(during, start=5):
            assert journey == _journey(checkout_shop(_Null(), []), n)
        assert len(held) == failures
        assert tracker.metrics()["store_errors.storage_unavailable"] == failures + 1

        proxy.heal()  # the store reconnects by itself: no restart, no new tracker
        reconnected_after = wait_for_store(tracker)
        assert reconnected_after < 30
        assert all(tracker.store.find(e["event_id"]) == [] for e in held)  # nothing half-written
        assert tracker.store.find("ord_999") == []
        for event in held:
            assert tracker.record_offline(**event).created
        report = tracker.flush(timeout=60)
        assert report.delivered == 5 + failures
        received = ms.received("offline")
        assert len(received) == 5 + failures
        assert {i.outcome for i in received} == {"accepted"}
    finally:
        tracker.close()
