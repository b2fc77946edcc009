"""The default outbox: one SQLite file in WAL mode, a connection per thread, short transactions.

SQLite has a single writer, so a claim is ``BEGIN IMMEDIATE`` + one ``UPDATE ... RETURNING``: no
two claimers can interleave.  Every write-back is ``WHERE id=? AND lease_token=?``.  Durability:

- ``durability="crash"`` (default): WAL + ``synchronous=NORMAL``.  A committed row survives the
  process being killed (SIGKILL, OOM); a power loss may roll back the last transactions.
- ``durability="power_loss"``: WAL + ``synchronous=FULL``; every commit is fsynced.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import closing, contextmanager, suppress
from datetime import datetime
from typing import Any

from msclkid_middleware import faultpoints
from msclkid_middleware.errors import OutboxFull
from msclkid_middleware.outbox.base import (
    DEFAULT_MAX_PENDING,
    OPEN_STATES,
    Durability,
    EncodedRow,
    EnqueueResult,
    NewRow,
    OutboxRow,
    Outcome,
    TokenRecord,
    check_store_options,
    to_timestamp,
)
from msclkid_middleware.outbox.rows import (
    encode_row,
    insert_values,
    settle_groups,
    token_values,
)
from msclkid_middleware.outbox.sql import in_list
from msclkid_middleware.outbox.sql_store import SqlStore
from msclkid_middleware.outbox.sqlite_connect import sqlite_path_from_url, store_error
from msclkid_middleware.outbox.sqlite_connections import SqliteConnections
from msclkid_middleware.outbox.sqlite_schema import (
    CLAIMED_COLUMNS,
    DEPENDENCY_MET,
    INSERT_ONE,
    MIGRATIONS,
    OPEN_ROWS_ADD,
    QUERIES,
    ROWS_PER_INSERT,
    SETTLE_MANY,
    insert_many,
    migrate,
)
from msclkid_middleware.tokens import create_private, exposed_files

__all__ = ["MIGRATIONS", "Durability", "SqliteOutbox", "sqlite_path_from_url"]


def _as_row(cur: sqlite3.Cursor, found: Any) -> sqlite3.Row | Mapping[str, Any]:
    """Rows from the application's connection may be plain tuples (its own row_factory)."""
    if isinstance(found, sqlite3.Row):
        return found
    return dict(zip([d[0] for d in cur.description], found, strict=True))


def _insert_rows(conn: sqlite3.Connection, values: list[tuple[Any, ...]]) -> int:
    """Insert ``values`` (rows of 15 values), many per statement; returns how many rows were new."""
    per = max(1, min(ROWS_PER_INSERT, conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // 15))
    created = 0
    for start in range(0, len(values), per):
        chunk = values[start : start + per]
        created += max(conn.execute(insert_many(len(chunk)), [v for row in chunk for v in row]).rowcount, 0)
    return created


class SqliteOutbox(SqliteConnections, SqlStore):
    """:class:`~msclkid_middleware.outbox.base.OutboxStore` on a SQLite file.

    ``max_pending`` bounds the rows still owed to Microsoft (pending, in_flight, paused): when it is
    reached, :meth:`enqueue` rejects the *new* event with :class:`~msclkid_middleware.errors.OutboxFull`
    (the caller still holds it) and counts ``overflow_rejected``; stored rows are never evicted.
    ``busy_timeout`` is how long a writer waits for SQLite's write lock before failing with
    ``StoreError(reason="storage_locked")``.
    """

    queries = QUERIES
    row_columns = "*"
    claimed_columns = CLAIMED_COLUMNS

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        durability: Durability = "crash",
        max_pending: int = DEFAULT_MAX_PENDING,
        busy_timeout: float = 5.0,
        wal_autocheckpoint: int = 10000,
    ) -> None:
        check_store_options(durability, max_pending)
        super().__init__(path, durability=durability, busy_timeout=busy_timeout, wal_autocheckpoint=wal_autocheckpoint)
        self.url = "sqlite:///" + self.path
        self.max_pending = max_pending
        # The tokens table holds the refresh and access tokens in clear: the file (and so its -wal and -shm,
        # which SQLite creates with the database's mode) is 0600 like the token file.
        with suppress(OSError):  # a missing directory is reported by sqlite3's own open below
            create_private(self.path)
        self._migrate()

    def exposed_files(self) -> list[tuple[str, int]]:
        """``(path, mode)`` of the store's files (database, ``-wal``, ``-shm``) open to group or others."""
        return exposed_files(self.path, self.path + "-wal", self.path + "-shm")

    @classmethod
    def from_url(cls, url: str, **options: Any) -> SqliteOutbox:
        return cls(sqlite_path_from_url(url), **options)

    def __repr__(self) -> str:
        return f"SqliteOutbox({self.path!r}, durability={self.durability!r}, max_pending={self.max_pending})"

    def _fetch(self, query: str, params: Mapping[str, Any] = {}) -> list[sqlite3.Row]:
        try:
            with self._using() as conn:
                return conn.execute(query, params).fetchall()
        except sqlite3.Error as exc:
            self._count("store_errors")
            raise store_error(exc, "read") from exc

    def _migrate(self) -> None:
        with self._write("migration") as conn:
            migrate(conn)

    def schema_version(self) -> int:
        return int(self._fetch("PRAGMA user_version")[0][0])

    # -- enqueue ----------------------------------------------------------------------------------
    def enqueue(self, row: NewRow, *, now: datetime, connection: Any = None) -> EnqueueResult:
        values = insert_values(row, now, to_timestamp)
        with self._enqueuing(connection) as conn:
            result = self._enqueue_on(conn, values)
        self._count("enqueued" if result.created else "duplicates")
        return result

    @contextmanager
    def _enqueuing(self, connection: Any) -> Iterator[Any]:
        """The connection an enqueue writes on: the caller's (the transactional outbox: inside their
        transaction, they commit), else a ``BEGIN IMMEDIATE`` transaction of our own."""
        if connection is None:
            with self._write("enqueue") as conn:
                yield conn
                faultpoints.hit("enqueue_txn")
            return
        try:
            yield connection
        except sqlite3.Error as exc:
            self._count("store_errors")
            raise store_error(exc, "enqueue") from exc

    def enqueue_many(self, rows: Sequence[NewRow | EncodedRow], *, now: datetime, connection: Any = None) -> int:
        if not rows:
            return 0
        at = to_timestamp(now)
        # One tuple per row in the order of COLUMNS (insert_many): the times as POSIX seconds.
        values = [
            (k, a, e, key, p, name, c, s, at, None if x is None else to_timestamp(x), code, msg, dep, at, at)
            for k, a, e, key, p, name, c, s, x, code, msg, dep in map(encode_row, rows)
        ]
        if connection is not None:
            try:
                created = self._insert_many(connection, values)
            except sqlite3.Error as exc:
                self._count("store_errors")
                raise store_error(exc, "enqueue") from exc
        else:
            with self._write("enqueue") as conn:
                created = self._insert_many(conn, values)
                faultpoints.hit("enqueue_txn")
        self._count("enqueued", created)
        self._count("duplicates", len(rows) - created)
        return created

    def _insert_many(self, conn: Any, values: list[tuple[Any, ...]]) -> int:
        # A savepoint: an overflow takes back this batch only, inside the caller's transaction too.
        conn.execute("SAVEPOINT enqueue_many")
        try:
            pending = [v for v in values if v[7] == "pending"]
            created = opened = _insert_rows(conn, pending)
            if len(pending) < len(values):
                created += _insert_rows(conn, [v for v in values if v[7] != "pending"])
            if opened:
                conn.execute(OPEN_ROWS_ADD, {"n": opened})  # the insert trigger's work (schema migration 2)
                open_rows = conn.execute("SELECT value FROM outbox_meta WHERE name = 'open_rows'").fetchone()[0]
                if open_rows > self.max_pending:
                    self._count("overflow_rejected", created)
                    raise OutboxFull(self.max_pending)
        except BaseException:
            with suppress(sqlite3.Error):
                conn.execute("ROLLBACK TO enqueue_many")
                conn.execute("RELEASE enqueue_many")
            raise
        conn.execute("RELEASE enqueue_many")
        return created

    def _existing(self, conn: Any, values: Mapping[str, Any]) -> OutboxRow | None:
        cur = conn.execute(QUERIES.existing, values)
        found = cur.fetchone()
        return None if found is None else self._row(_as_row(cur, found))

    def _enqueue_on(self, conn: Any, values: Mapping[str, Any]) -> EnqueueResult:
        existing = self._existing(conn, values)
        if existing is not None:
            return EnqueueResult(existing, False)
        if values["state"] == "pending":
            open_rows = conn.execute("SELECT value FROM outbox_meta WHERE name = 'open_rows'").fetchone()[0]
            if open_rows >= self.max_pending:
                self._count("overflow_rejected")
                raise OutboxFull(self.max_pending)
        try:
            cur = conn.execute(INSERT_ONE, values)
            inserted = cur.fetchone()
            if values["state"] == "pending":
                conn.execute(OPEN_ROWS_ADD, {"n": 1})  # the insert trigger's work (schema migration 2)
        except sqlite3.IntegrityError:
            # Another writer inserted the same key between our SELECT and INSERT (possible only
            # inside a caller's deferred transaction): theirs wins, as a duplicate.
            existing = self._existing(conn, values)
            if existing is None:
                raise
            return EnqueueResult(existing, False)
        return EnqueueResult(self._row(_as_row(cur, inserted)), True)

    # -- reads ------------------------------------------------------------------------------------
    def open_count(self) -> int:
        return int(self._fetch("SELECT value FROM outbox_meta WHERE name = 'open_rows'")[0][0])

    # -- claim and settle -------------------------------------------------------------------------
    def _claim(
        self, owner: str, limit: int, now: datetime, lease_seconds: float, kinds: list[str] | None, returning: str
    ) -> list[sqlite3.Row]:
        kind_filter = "" if kinds is None else f" AND r.kind IN {in_list(kinds)}"
        ts = to_timestamp(now)
        token = secrets.token_hex(16)
        with self._write("claim") as conn:
            # Two index-ordered scans, each stopping at the limit (expired leases first, then due pending rows in
            # the order of outbox_due): one scan under an OR would read every due row and sort them all, on
            # every claim, which made a drain of N rows cost N * N / batch row reads.
            return conn.execute(
                "UPDATE outbox SET state = 'in_flight', lease_owner = :owner, lease_token = :token,"  # noqa: S608 (validated kind names and module constants only)
                " lease_expires_at = :expires, attempts = attempts + 1, updated_at = :now WHERE id IN ("
                "  SELECT id FROM (SELECT r.id FROM outbox AS r WHERE r.state = 'in_flight'"
                f"   AND r.lease_expires_at <= :now AND {DEPENDENCY_MET}{kind_filter}"
                "   ORDER BY r.lease_expires_at, r.id LIMIT :limit)"
                "  UNION ALL"
                "  SELECT id FROM (SELECT r.id FROM outbox AS r WHERE r.state = 'pending'"
                f"   AND r.next_attempt_at <= :now AND {DEPENDENCY_MET}{kind_filter}"
                "   ORDER BY r.next_attempt_at, r.id LIMIT :limit)"
                f"  LIMIT :limit) RETURNING {returning}",
                {"owner": owner, "token": token, "expires": ts + lease_seconds, "now": ts, "limit": limit},
            ).fetchall()

    def settle(self, outcomes: Sequence[Outcome], *, now: datetime) -> int:
        if not outcomes:
            return 0
        groups = settle_groups(outcomes, now, to_timestamp)
        applied = closed = 0
        with self._write("settle") as conn:
            for group in groups:
                group["ids"] = json.dumps(group["ids"])
                settled = conn.execute(SETTLE_MANY, group).rowcount
                applied += settled
                if group["state"] not in OPEN_STATES:  # in_flight -> delivered, rejected, dead
                    closed += settled
            if closed:
                conn.execute(OPEN_ROWS_ADD, {"n": -closed})  # the update trigger's work (migration 4)
            faultpoints.hit("settle_txn")
        if applied != len(outcomes):
            self._count("stale_acks", len(outcomes) - applied)
        return applied

    # -- pause, resume, maintenance ---------------------------------------------------------------
    def _change(self, action: str, query: str, params: Mapping[str, Any], *, opens: int = 0) -> int:
        with self._write(action) as conn:
            changed = int(conn.execute(query, params).rowcount)
            if opens and changed > 0:
                conn.execute(OPEN_ROWS_ADD, {"n": opens * changed})  # the update trigger's work (migration 4)
            return changed

    def checkpoint(self) -> None:
        """Copy the WAL into the database now (PASSIVE: never waits for readers or writers).

        The worker calls this during maintenance so the fsync of a checkpoint happens off the
        request path; ``wal_autocheckpoint`` remains the safety net when no worker runs.
        """
        self._fetch("PRAGMA wal_checkpoint(PASSIVE)")

    # -- tokens -----------------------------------------------------------------------------------
    def save_token(self, name: str, record: TokenRecord) -> bool:
        with self._write("save_token") as conn:
            # updated_at is the token's own issue time (one clock: the writer's).
            cur = conn.execute(QUERIES.save_token, token_values(name, record, record.issued_at, to_timestamp))
            faultpoints.hit("token_write")
        return cur.rowcount > 0

    @contextmanager
    def token_lock(self, name: str) -> Iterator[None]:
        """Single-flight refresh across threads and processes.

        ``BEGIN IMMEDIATE`` is the lock, taken on a small sidecar database (``<outbox>.token-lock``)
        rather than the outbox itself: the refresh holds it during an HTTP call to the token
        endpoint, and that must never block ``record_*`` on the outbox's write lock.
        """
        del name  # one lock file per outbox; refreshes of different tokens are rare and short
        try:
            # Waiters may queue behind a whole token request, so they wait longer than busy_timeout.
            conn = sqlite3.connect(
                self.path + ".token-lock", timeout=max(self.busy_timeout, 60.0), isolation_level=None
            )
        except sqlite3.Error as exc:
            raise store_error(exc, "token lock") from exc
        with closing(conn):  # closing the connection ends the transaction, and so releases the lock
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise store_error(exc, "token lock") from exc
            yield
