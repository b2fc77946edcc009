"""SqliteProfileStore's own behaviour (the shared contract is in tests/capture/test_profiles.py)."""

from __future__ import annotations

import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from msclkid_middleware.capture.clickid import Click
from msclkid_middleware.errors import ConfigError, StoreError
from msclkid_middleware.outbox import SqliteProfileStore

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def click(msclkid: str, minutes: int = 0, source: str = "url") -> Click:
    return Click(msclkid, T0 + timedelta(minutes=minutes), source)  # type: ignore[arg-type]


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
        "from msclkid_middleware.outbox import SqliteProfileStore;"
        "from msclkid_middleware.capture.clickid import Click;"
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
