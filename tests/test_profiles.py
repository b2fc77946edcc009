from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from msclkid_middleware.capture.clickid import Click
from msclkid_middleware.capture.profiles import MemoryProfileStore, ProfileStore, SqliteProfileStore
from msclkid_middleware.errors import ConfigError, StoreError
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
        from msclkid_middleware.capture.profiles import PostgresProfileStore

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


def test_sqlite_store_opens_nothing_at_construction(tmp_path: Path) -> None:
    path = tmp_path / "lazy.sqlite3"
    SqliteProfileStore(str(path))
    assert not path.exists()


def test_sqlite_store_uses_wal_and_persists_across_instances(tmp_path: Path) -> None:
    path = str(tmp_path / "p.sqlite3")
    first = SqliteProfileStore(path)
    first.put("v", click("persisted", 3))
    first.close()
    second = SqliteProfileStore(path)
    got = second.get("v")
    assert got is not None
    assert got.msclkid == "persisted"
    mode = second._connection().execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_sqlite_store_one_connection_per_thread(tmp_path: Path) -> None:
    store = SqliteProfileStore(str(tmp_path / "t.sqlite3"))
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(50):
                store.put(f"v{n}", click(f"c{n}x{i}", minutes=i))
                assert store.get(f"v{n}") is not None
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for n in range(4):
        got = store.get(f"v{n}")
        assert got is not None
        assert got.msclkid == f"c{n}x49"


def test_sqlite_store_across_processes(tmp_path: Path) -> None:
    path = str(tmp_path / "proc.sqlite3")
    repo = Path(__file__).resolve().parent.parent
    code = (
        "import sys; from datetime import datetime, UTC;"
        "from msclkid_middleware.capture.profiles import SqliteProfileStore;"
        "from msclkid_middleware.conversions import Click;"
        "SqliteProfileStore(sys.argv[1]).put('v', Click('fromchild', datetime(2026, 11, 2, tzinfo=UTC)))"
    )
    subprocess.run([sys.executable, "-c", code, path], check=True, env={"PYTHONPATH": str(repo)})
    got = SqliteProfileStore(path).get("v")
    assert got is not None
    assert got.msclkid == "fromchild"


def test_sqlite_failures_are_store_errors(tmp_path: Path) -> None:
    store = SqliteProfileStore(str(tmp_path / "missing-dir" / "p.sqlite3"))
    with pytest.raises(StoreError):
        store.get("v")
    with pytest.raises(StoreError):
        store.put("v", click("a"))


def test_sqlite_memory_path_is_refused() -> None:
    with pytest.raises(ConfigError, match="MemoryProfileStore"):
        SqliteProfileStore(":memory:")
