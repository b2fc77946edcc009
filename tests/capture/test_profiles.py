from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from msclkid_middleware.capture.clickid import Click
from msclkid_middleware.capture.profiles import MemoryProfileStore, ProfileStore
from msclkid_middleware.outbox import PostgresProfileStore, SqliteProfileStore
from tests.pg_helpers import Schemas, schema_fixture, session_schemas

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def click(msclkid: str, minutes: int = 0, source: str = "url") -> Click:
    return Click(msclkid, T0 + timedelta(minutes=minutes), source)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def pg_schemas() -> Iterator[Schemas]:
    yield from session_schemas()


@pytest.fixture(
    params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ProfileStore]:
    if request.param == "memory":
        yield MemoryProfileStore()
    elif request.param == "sqlite":
        yield SqliteProfileStore(str(tmp_path / "profiles.sqlite3"))
    else:
        schemas: Schemas = request.getfixturevalue("pg_schemas")
        for schema in schema_fixture(schemas):
            pg = PostgresProfileStore(schemas.store_url(schema, pool_max_size=4))
            yield pg
            pg.close()


def test_both_stores_satisfy_the_protocol(store: ProfileStore) -> None:
    assert isinstance(store, ProfileStore)


def test_unknown_visitor_has_no_click(store: ProfileStore) -> None:
    assert store.get("nobody") is None


@pytest.mark.parametrize(
    ("writes", "expected"),
    [
        pytest.param([("a", 0)], "a", id="single"),
        pytest.param([("a", 0), ("b", 5)], "b", id="newer-overwrites"),
        pytest.param([("b", 5), ("a", 0)], "b", id="older-ignored"),
        pytest.param([("a", 0), ("b", 0)], "a", id="same-time-keeps-first"),
    ],
)
def test_keeps_only_the_newest_click(store: ProfileStore, writes: list[tuple[str, int]], expected: str) -> None:
    for msclkid, minutes in writes:
        store.put("visitor-1", click(msclkid, minutes))
    got = store.get("visitor-1")
    assert got is not None
    assert got.msclkid == expected
    assert got.source == "profile"
    assert got.captured_at.tzinfo is not None


def test_visitors_are_separate(store: ProfileStore) -> None:
    store.put("v1", click("one"))
    store.put("v2", click("two"))
    assert store.get("v1") == click("one", source="profile")
    assert store.get("v2") == click("two", source="profile")


@pytest.mark.parametrize("visitor", ["", "x" * 257], ids=["empty", "too-long"])
def test_bad_visitor_ids_are_refused(store: ProfileStore, visitor: str) -> None:
    with pytest.raises(ValueError):
        store.put(visitor, click("a"))


def test_memory_store_is_bounded() -> None:
    store = MemoryProfileStore(max_visitors=3)
    for i in range(5):
        store.put(f"v{i}", click(f"c{i}"))
    assert len(store) == 3
    assert store.get("v0") is None
    assert store.get("v4") is not None


def test_memory_store_threads() -> None:
    store = MemoryProfileStore()

    def worker(n: int) -> None:
        for i in range(200):
            store.put("shared", click(f"c{n}x{i}", minutes=i))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = store.get("shared")
    assert got is not None
    assert got.captured_at == T0 + timedelta(minutes=199)
