"""What only the SQLite store has: pragmas, migrations, the app's own connection, fault mapping."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from msclkid_middleware.errors import ConfigError, StoreError
from msclkid_middleware.outbox import open_store
from msclkid_middleware.outbox.base import Outcome, TokenRecord
from msclkid_middleware.outbox.sqlite import MIGRATIONS, SqliteOutbox, sqlite_path_from_url
from tests.script_helpers import REPO, run_script_ok

from .conftest import T0, new_row


@pytest.mark.parametrize(
    ("durability", "synchronous"),
    [pytest.param("crash", 1, id="crash-NORMAL"), pytest.param("power_loss", 2, id="power-loss-FULL")],
)
def test_durability_modes_set_wal_and_synchronous(tmp_path: Path, durability: str, synchronous: int) -> None:
    store = SqliteOutbox(tmp_path / "o.db", durability=durability)  # type: ignore[arg-type]
    conn = store._conn()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == synchronous
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 5000
    store.close()


def test_default_durability_is_crash(tmp_path: Path) -> None:
    assert SqliteOutbox(tmp_path / "o.db").durability == "crash"
    with pytest.raises(ConfigError):
        SqliteOutbox(tmp_path / "o.db", durability="eventually")  # type: ignore[arg-type]


def test_migrations_run_once_and_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    store = SqliteOutbox(path)
    assert store.schema_version() == len(MIGRATIONS)
    store.enqueue(new_row(1), now=T0)
    store.close()
    reopened = SqliteOutbox(path)  # migrating again must be a no-op that keeps the data
    assert len(reopened.find("ord_1")) == 1
    reopened.close()
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    with pytest.raises(StoreError) as info:
        SqliteOutbox(path)
    assert info.value.reason == "schema_too_new"


def _outbox_sql(path: Path) -> str:
    with sqlite3.connect(path) as conn:
        return str(conn.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'outbox'").fetchone()[0])


def test_migration_3_rewrites_the_in_list_checks_and_keeps_their_rule(tmp_path: Path) -> None:
    """A store left at schema 2 (the CHECKs as IN lists, built again for every inserted row) gets OR-ed comparisons
    allowing the same kinds and states; its rows stay, the database stays sound, a fresh store gets the same SQL."""
    old = tmp_path / "old.db"
    with sqlite3.connect(old, isolation_level=None) as conn:
        for migration in MIGRATIONS[:2]:
            assert isinstance(migration, str)
            conn.executescript(migration)
        conn.execute("PRAGMA user_version = 2")
    assert "kind IN (" in _outbox_sql(old)
    store = SqliteOutbox(old)
    store.enqueue(new_row(1), now=T0)
    assert store.schema_version() == len(MIGRATIONS)
    store.close()
    migrated = _outbox_sql(old)
    assert " IN (" not in migrated
    assert "CHECK (kind = 'offline' OR kind = 'offline_adjustment'" in migrated
    SqliteOutbox(tmp_path / "new.db").close()
    assert _outbox_sql(tmp_path / "new.db") == migrated
    with sqlite3.connect(old) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        columns = "kind, account, event_id, idempotency_key, payload, state, next_attempt_at, created_at, updated_at"
        for kind, state in (("bogus", "pending"), ("offline", "bogus")):
            with pytest.raises(sqlite3.IntegrityError, match="CHECK constraint failed"):
                conn.execute(
                    f"INSERT INTO outbox ({columns}) VALUES (?, 'a', ?, ?, '{{}}', ?, 0, 0, 0)",  # noqa: S608
                    (kind, f"e-{kind}-{state}", f"k-{kind}-{state}", state),
                )
    reopened = SqliteOutbox(old)
    assert [r.event_id for r in reopened.find("ord_1")] == ["ord_1"]
    reopened.close()


def _triggers(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        return sorted(r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'"))


def test_migration_4_drops_the_update_trigger_and_the_store_keeps_the_open_count(tmp_path: Path) -> None:
    """A file at schema 3 (the per-row update trigger kept open_rows) opens at schema 4: the trigger is gone, the rows
    and the counter are kept, the database stays sound, and the store's own statements keep the counter exact."""
    old = tmp_path / "old.db"
    with sqlite3.connect(old, isolation_level=None) as conn:
        for migration in MIGRATIONS[:3]:
            conn.executescript(migration) if isinstance(migration, str) else migration(conn)
        conn.execute("PRAGMA user_version = 3")
        columns = "kind, account, event_id, idempotency_key, payload, state, next_attempt_at, created_at, updated_at"
        for n, state in enumerate(("pending", "pending", "pending", "delivered", "paused")):
            conn.execute(
                f"INSERT INTO outbox ({columns}) VALUES ('offline', '1000', ?, ?, '{{}}', ?, 0, 0, 0)",  # noqa: S608
                (f"ord_{n}", f"key-{n}", state),
            )
        conn.execute("UPDATE outbox_meta SET value = 4 WHERE name = 'open_rows'")  # schema 2's insert paths add
        conn.execute("UPDATE outbox SET state = 'dead' WHERE event_id = 'ord_2'")  # schema 3: the trigger takes one
        assert conn.execute("SELECT value FROM outbox_meta WHERE name = 'open_rows'").fetchone()[0] == 3
    assert _triggers(old) == ["outbox_open_delete", "outbox_open_update"]
    store = SqliteOutbox(old)
    assert store.schema_version() == len(MIGRATIONS) == 4
    assert _triggers(old) == ["outbox_open_delete"]
    assert store.open_count() == 3
    assert sorted((r.event_id, r.state) for r in store.scan()) == [
        ("ord_0", "pending"), ("ord_1", "pending"), ("ord_2", "dead"), ("ord_3", "delivered"), ("ord_4", "paused"),
    ]  # fmt: skip
    claimed = store.claim_batch(owner="w", limit=10, now=T0, lease_seconds=60)
    assert [c.event_id for c in claimed] == ["ord_0", "ord_1"]
    assert store.open_count() == 3
    token = claimed[0].lease_token
    assert store.settle([Outcome(c.id, token, "delivered") for c in claimed], now=T0) == 2
    assert store.open_count() == 1  # ord_4, paused
    assert store.retry_dead(now=T0) == 1
    assert store.open_count() == 2
    store.close()
    with sqlite3.connect(old) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    SqliteOutbox(tmp_path / "new.db").close()
    assert _triggers(tmp_path / "new.db") == ["outbox_open_delete"]


def test_enqueue_joins_the_applications_transaction(tmp_path: Path) -> None:
    path = tmp_path / "shop.db"
    store = SqliteOutbox(path)
    app = sqlite3.connect(path)  # the shop's own connection, default (deferred) transactions
    app.execute("CREATE TABLE orders (id TEXT PRIMARY KEY, total REAL)")
    app.commit()

    # Rolled back together: neither the order nor the conversion exists.
    app.execute("INSERT INTO orders VALUES ('ord_1', 10.0)")
    result = store.enqueue(new_row(1), now=T0, connection=app)
    assert result.created is True
    assert result.row.event_id == "ord_1"
    assert store.find("ord_1") == []  # not visible to others before the app commits
    app.rollback()
    assert store.find("ord_1") == []

    # Committed together.
    app.execute("INSERT INTO orders VALUES ('ord_2', 20.0)")
    store.enqueue(new_row(2), now=T0, connection=app)
    assert store.enqueue(new_row(2), now=T0, connection=app).created is False  # duplicate in the same tx
    app.commit()
    (row,) = store.find("ord_2")
    assert row.state == "pending"
    assert store.open_count() == 1
    app.close()
    store.close()


def test_disk_full_is_a_typed_counted_store_error(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    store = SqliteOutbox(path)
    conn = store._conn()
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages}")
    big = {"blob": "x" * 20000}
    failures = 0
    for n in range(5):
        with pytest.raises(StoreError) as info:
            store.enqueue(new_row(n, payload=big), now=T0)
        assert info.value.reason == "storage_full"
        failures += 1
    assert store.metrics()["store_errors"] == failures
    assert store.open_count() == 0
    store.close()


def test_a_held_write_lock_is_reported_as_locked(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    store = SqliteOutbox(path, busy_timeout=0.2)
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StoreError) as info:
            store.enqueue(new_row(1), now=T0)
        assert info.value.reason == "storage_locked"
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert store.enqueue(new_row(1), now=T0).created is True
    store.close()


def test_each_thread_gets_its_own_connection(tmp_path: Path) -> None:
    store = SqliteOutbox(tmp_path / "o.db")
    seen: list[int] = []

    def use() -> None:
        seen.append(id(store._conn()))

    threads = [threading.Thread(target=use) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    use()
    assert len(set(seen)) == 4
    store.close()


def test_a_forked_child_opens_fresh_connections(tmp_path: Path) -> None:
    store = SqliteOutbox(tmp_path / "o.db")
    parent_conn = store._conn()
    store.enqueue(new_row(1), now=T0)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        ok = store._conn() is not parent_conn and store.enqueue(new_row(2), now=T0).created
        os.write(write, b"1" if ok else b"0")
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    assert os.read(read, 1) == b"1"
    os.close(read)
    assert len(store.find("ord_2")) == 1
    store.close()


def test_a_fork_waits_for_a_transaction_another_thread_has_open(tmp_path: Path) -> None:
    # Forked mid-transaction, the child's SQLite would believe a lock of the parent's thread is still held in its
    # own process, and its first write would fail with "database is locked" after busy_timeout.
    store = SqliteOutbox(tmp_path / "o.db", busy_timeout=1.0)
    store.enqueue(new_row(1), now=T0)
    inside, finish = threading.Event(), threading.Event()

    def long_transaction() -> None:
        with store.transaction() as conn:
            store.enqueue(new_row(2), now=T0, connection=conn)
            inside.set()
            finish.wait(5)

    holder = threading.Thread(target=long_transaction)
    holder.start()
    assert inside.wait(5)
    threading.Timer(0.3, finish.set).start()  # the transaction ends while fork() waits for it
    read, write = os.pipe()
    began = time.monotonic()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            ok = store.enqueue(new_row(3), now=T0).created
        except Exception:
            ok = False
        os.write(write, b"1" if ok else b"0")
        os._exit(0)
    waited = time.monotonic() - began
    os.close(write)
    os.waitpid(pid, 0)
    assert os.read(read, 1) == b"1", "the child could not write after the fork"
    os.close(read)
    holder.join(5)
    assert waited >= 0.2  # fork() waited for the open transaction
    assert {len(store.find(f"ord_{n}")) for n in (1, 2, 3)} == {1}
    store.close()


@pytest.mark.parametrize(
    ("url", "path"),
    [
        pytest.param("sqlite:///relative.db", "relative.db", id="relative"),
        pytest.param("sqlite:////abs/o.db", "/abs/o.db", id="absolute"),
        pytest.param("sqlite:////abs/o.db?mode=rw", "/abs/o.db", id="query-ignored"),
    ],
)
def test_sqlite_urls(url: str, path: str) -> None:
    assert sqlite_path_from_url(url) == path


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("sqlite:///:memory:", id="memory"),
        pytest.param("sqlite://", id="empty"),
        pytest.param("mysql://x", id="other-scheme"),
    ],
)
def test_bad_store_urls_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        open_store(url)
    assert info.value.setting == "MSCLKID_STORE_URL"


# -- issue 19 item 6: the store holds tokens in clear, so its files are private -----------------------------------


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_a_new_store_and_its_wal_and_shm_are_0600(tmp_path: Path) -> None:
    old_umask = os.umask(0o022)  # the usual umask, which would give SQLite's files 0644
    try:
        path = tmp_path / "outbox.sqlite3"
        store = SqliteOutbox(path)
        try:
            store.enqueue(new_row(1), now=T0)
            store.save_token("microsoft", TokenRecord(refresh_token="rt-secret", issued_at=T0, serial=1))
            for suffix in ("", "-wal", "-shm"):
                assert _mode(Path(f"{path}{suffix}")) == 0o600, suffix
            assert store.exposed_files() == []
        finally:
            store.close()
    finally:
        os.umask(old_umask)


def test_an_existing_open_store_is_reported_not_changed(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    SqliteOutbox(path).close()
    path.chmod(0o644)
    store = SqliteOutbox(path)
    try:
        # SQLite gives the -wal and -shm files the database's mode: all three are open, all three reported.
        assert store.exposed_files() == [(f"{path}{suffix}", 0o644) for suffix in ("", "-wal", "-shm")]
        assert _mode(path) == 0o644  # the operator decides; the CLI says how
    finally:
        store.close()


def test_the_profile_store_is_private_too(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from msclkid_middleware.capture.clickid import Click
    from msclkid_middleware.outbox import SqliteProfileStore

    store = SqliteProfileStore(str(tmp_path / "profiles.sqlite3"))
    try:
        store.put("visitor-1", Click("0" * 32, datetime.now(UTC), "url"))
        assert _mode(tmp_path / "profiles.sqlite3") == 0o600
    finally:
        store.close()


# -- close() while other threads write (issue 21 item 5) ----------------------------------------------------

_CLOSE_WHILE_WRITING = r"""
import sys, threading, time
from datetime import UTC, datetime, timedelta
sys.path.insert(0, sys.argv[2])
from msclkid_middleware.errors import ClosedError
from msclkid_middleware.outbox.base import NewRow
from msclkid_middleware.outbox.sqlite import SqliteOutbox

T0 = datetime(2026, 11, 28, 12, tzinfo=UTC)
for round_ in range(int(sys.argv[3])):
    path = f"{sys.argv[1]}/o{round_}.db"
    store = SqliteOutbox(path)
    stop = threading.Event()
    created, odd = [], []

    def hammer(n):
        i = 0
        while not stop.is_set():
            i += 1
            row = NewRow(kind="offline", account="1", event_id=f"e{n}-{i}", idempotency_key=f"k{n}-{i}",
                         payload={"MicrosoftClickId": f"c{i}"}, conversion_name="Purchase",
                         consent={"state": "granted", "basis": "default"}, expires_at=T0 + timedelta(days=1))
            try:
                if store.enqueue(row, now=T0).created:
                    created.append(row.event_id)
                store.open_count()
                for claimed in store.claim(owner="w", limit=5, now=T0, lease_seconds=60):
                    pass
            except ClosedError:
                pass
            except Exception as exc:
                odd.append(repr(exc))

    threads = [threading.Thread(target=hammer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.05)
    store.close()
    time.sleep(0.02)
    stop.set()
    for t in threads:
        t.join()
    assert not odd, odd[:3]
    reopened = SqliteOutbox(path)
    kept = {r.event_id for r in reopened.scan()}
    reopened.close()
    assert set(created) <= kept, "a write acknowledged before close() was lost"
print("ok")
"""


def test_close_while_other_threads_write_never_crashes(tmp_path: Path) -> None:
    run_script_ok(_CLOSE_WHILE_WRITING, str(tmp_path), str(REPO), "8", timeout=120)


def test_a_closed_store_refuses_later_calls(tmp_path: Path) -> None:
    from msclkid_middleware.errors import ClosedError

    store = SqliteOutbox(tmp_path / "o.db")
    store.enqueue(new_row(1), now=T0)
    store.close()
    store.close()  # idempotent
    with pytest.raises(ClosedError) as raised:
        store.enqueue(new_row(2), now=T0)
    assert isinstance(raised.value, StoreError)
    assert raised.value.reason == "closed"
    with pytest.raises(ClosedError):
        store.find("ord_1")
    with pytest.raises(ClosedError), store.transaction():
        pass
    reopened = SqliteOutbox(tmp_path / "o.db")
    assert [r.event_id for r in reopened.scan()] == ["ord_1"]
    reopened.close()
