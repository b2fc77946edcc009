"""Fixtures for the outbox store behaviour suite.

``store`` is parametrised by backend: every test in ``test_store.py`` runs against each store
that implements :class:`~msclkid_middleware.outbox.OutboxStore`: a fresh SQLite file, and a fresh
schema on the PostgreSQL server (``MSCLKID_TEST_POSTGRES_URL``; skipped when unreachable, except
under ``CI=true`` where it fails).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from msclkid_middleware.config import Settings
from msclkid_middleware.dispatch.tracker import ConversionTracker, EventStatus
from msclkid_middleware.microsoft import RetryPolicy
from msclkid_middleware.outbox import NewRow, OutboxStore, open_store
from msclkid_middleware.testing import EmulatorHandle, run_emulator
from tests.pg_helpers import Schemas, schema_fixture, session_schemas

T0 = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)

StoreFactory = Callable[..., OutboxStore]


@pytest.fixture(scope="session")
def pg_schemas() -> Iterator[Schemas]:
    yield from session_schemas()


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'outbox.sqlite3'}"
        return
    schemas: Schemas = request.getfixturevalue("pg_schemas")
    for schema in schema_fixture(schemas):
        # Small pools: many people share the server's connection limit.
        yield schemas.store_url(schema, pool_max_size=4)


@pytest.fixture
def make_store(store_url: str) -> Iterator[StoreFactory]:
    """Open another handle on the same store (other options, or a second 'process')."""
    opened: list[OutboxStore] = []

    def factory(**options: Any) -> OutboxStore:
        store = open_store(store_url, **options)
        opened.append(store)
        return store

    yield factory
    for store in opened:
        store.close()


@pytest.fixture
def store(make_store: StoreFactory) -> OutboxStore:
    return make_store()


def new_row(n: int = 1, **overrides: Any) -> NewRow:
    fields: dict[str, Any] = {
        "kind": "offline",
        "account": "1000",
        "event_id": f"ord_{n}",
        "idempotency_key": f"offline:key-{n}",
        "payload": {
            "ConversionName": "Purchase",
            "ConversionTime": "2026-11-28T11:00:00Z",
            "MicrosoftClickId": f"c{n}",
        },
        "conversion_name": "Purchase",
        "consent": {"state": "granted", "basis": "default"},
        "expires_at": T0 + timedelta(days=90),
    }
    fields.update(overrides)
    return NewRow(**fields)


class FakeClock:
    """An injectable clock: starts at the real current time (the emulator checks times against its own
    clock) and moves only when a test advances it."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


def click_id(n: int) -> str:
    """A well-formed 32-hex msclkid, distinct per ``n``."""
    return f"{n:032x}"


@pytest.fixture
def ms() -> Iterator[EmulatorHandle]:
    with run_emulator() as handle:
        yield handle


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make_tracker(ms: EmulatorHandle, tmp_path: Path, clock: FakeClock, **options: Any) -> ConversionTracker:
    settings = Settings.from_env(ms.env, **options.pop("settings", {}))
    options.setdefault("retry_policy", RetryPolicy(rng=lambda: 0.5))
    return ConversionTracker(settings=settings, store_url=f"sqlite:///{tmp_path / 'outbox.db'}", clock=clock, **options)


@pytest.fixture
def tracker(ms: EmulatorHandle, tmp_path: Path, clock: FakeClock) -> Iterator[ConversionTracker]:
    t = make_tracker(ms, tmp_path, clock)
    yield t
    t.close()


def record(tracker: ConversionTracker, clock: FakeClock, n: int, **overrides: Any) -> EventStatus:
    fields: dict[str, Any] = {
        "event_id": f"ord_{n}",
        "conversion_name": "Purchase",
        "conversion_time": clock() - timedelta(minutes=30),
        "value": 10.0 + n,
        "currency": "USD",
        "click": click_id(n),
    }
    fields.update(overrides)
    return tracker.record_offline(**fields)
