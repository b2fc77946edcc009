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
import threading
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from datetime import datetime
from typing import Any, Literal

from msclkid_middleware import faultpoints
from msclkid_middleware.errors import ConfigError, OutboxFull, StoreError
from msclkid_middleware.outbox.base import (
    KINDS,
    OPEN_STATES,
    PRIMARY_KINDS,
    STATES,
    EnqueueResult,
    Kind,
    NewRow,
    OutboxRow,
    Outcome,
    StateCount,
    TokenRecord,
    from_timestamp,
    to_timestamp,
)

__all__ = ["Durability", "SqliteOutbox", "sqlite_path_from_url"]

Durability = Literal["crash", "power_loss"]

_SYNCHRONOUS = {"crash": "NORMAL", "power_loss": "FULL"}
_DEFAULT_MAX_PENDING = 1_000_000


def _in(values: Collection[str]) -> str:
    return "(" + ", ".join(f"'{v}'" for v in values) + ")"


_OPEN = _in(OPEN_STATES)
_PRIMARY = _in(sorted(PRIMARY_KINDS))

#: Schema migrations, applied in order on open; ``PRAGMA user_version`` records how many ran.
MIGRATIONS: tuple[str, ...] = (
    # Interpolated values are this module's constants, never input.
    f"""
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL CHECK (kind IN {_in(KINDS)}),
        account TEXT NOT NULL,
        event_id TEXT NOT NULL,
        idempotency_key TEXT NOT NULL,
        payload TEXT NOT NULL,
        conversion_name TEXT,
        consent TEXT,
        state TEXT NOT NULL CHECK (state IN {_in(STATES)}),
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL,
        expires_at REAL,
        lease_owner TEXT,
        lease_token TEXT,
        lease_expires_at REAL,
        last_error_code TEXT,
        last_error_message TEXT,
        tracking_id TEXT,
        warnings TEXT NOT NULL DEFAULT '[]',
        paused_reason TEXT,
        depends_on INTEGER REFERENCES outbox(id),
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        delivered_at REAL
    );
    CREATE UNIQUE INDEX outbox_idempotency_key ON outbox (idempotency_key);
    CREATE UNIQUE INDEX outbox_primary_event ON outbox (kind, account, event_id) WHERE kind IN {_PRIMARY};
    CREATE INDEX outbox_due ON outbox (state, next_attempt_at);
    CREATE INDEX outbox_event ON outbox (event_id);
    CREATE INDEX outbox_depends_on ON outbox (depends_on) WHERE depends_on IS NOT NULL;
    CREATE INDEX outbox_updated ON outbox (state, updated_at);
    -- open_rows is kept exact by triggers so the max_pending check is O(1) on every enqueue.
    CREATE TABLE outbox_meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
    INSERT INTO outbox_meta (name, value) VALUES ('open_rows', 0);
    CREATE TRIGGER outbox_open_insert AFTER INSERT ON outbox WHEN NEW.state IN {_OPEN}
    BEGIN UPDATE outbox_meta SET value = value + 1 WHERE name = 'open_rows'; END;
    CREATE TRIGGER outbox_open_delete AFTER DELETE ON outbox WHEN OLD.state IN {_OPEN}
    BEGIN UPDATE outbox_meta SET value = value - 1 WHERE name = 'open_rows'; END;
    CREATE TRIGGER outbox_open_update AFTER UPDATE OF state ON outbox
    WHEN (OLD.state IN {_OPEN}) <> (NEW.state IN {_OPEN})
    BEGIN UPDATE outbox_meta SET value = value + (CASE WHEN NEW.state IN {_OPEN} THEN 1 ELSE -1 END)
          WHERE name = 'open_rows'; END;
    CREATE TABLE tokens (
        name TEXT PRIMARY KEY,
        refresh_token TEXT NOT NULL,
        issued_at REAL NOT NULL,
        serial INTEGER NOT NULL DEFAULT 0,
        data TEXT NOT NULL DEFAULT '{{}}',
        updated_at REAL NOT NULL
    );
    """,  # noqa: S608
)


def sqlite_path_from_url(url: str) -> str:
    """``sqlite:///relative.db`` / ``sqlite:////abs/path.db`` (SQLAlchemy's spelling) -> a path."""
    if not url.startswith("sqlite:///"):
        raise ConfigError(
            "MSCLKID_STORE_URL must look like sqlite:///relative/path.sqlite3 or sqlite:////absolute/path.sqlite3",
            setting="MSCLKID_STORE_URL",
        )
    path = url[len("sqlite:///") :].split("?", 1)[0]
    if not path or path == ":memory:":
        raise ConfigError(
            "the outbox must be a file (a connection per thread cannot share an in-memory database)",
            setting="MSCLKID_STORE_URL",
        )
    return path


def _error(exc: sqlite3.Error, action: str) -> StoreError:
    name = getattr(exc, "sqlite_errorname", "")
    text = str(exc)
    if name == "SQLITE_FULL" or "disk is full" in text:
        reason = "storage_full"
    elif name.startswith("SQLITE_BUSY") or "locked" in text:
        reason = "storage_locked"
    else:
        reason = "storage_error"
    return StoreError(f"outbox {action} failed: {text}", reason=reason)


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def _as_row(cur: sqlite3.Cursor, found: Any) -> sqlite3.Row | Mapping[str, Any]:
    """Rows from the application's connection may be plain tuples (its own row_factory)."""
    if isinstance(found, sqlite3.Row):
        return found
    return dict(zip([d[0] for d in cur.description], found, strict=True))


def _row(r: sqlite3.Row | Mapping[str, Any]) -> OutboxRow:
    return OutboxRow(
        id=r["id"],
        kind=r["kind"],
        account=r["account"],
        event_id=r["event_id"],
        idempotency_key=r["idempotency_key"],
        payload=json.loads(r["payload"]),
        conversion_name=r["conversion_name"],
        consent=_loads(r["consent"]),
        state=r["state"],
        attempts=r["attempts"],
        next_attempt_at=from_timestamp(r["next_attempt_at"]),  # type: ignore[arg-type]
        expires_at=from_timestamp(r["expires_at"]),
        lease_owner=r["lease_owner"],
        lease_token=r["lease_token"],
        lease_expires_at=from_timestamp(r["lease_expires_at"]),
        last_error_code=r["last_error_code"],
        last_error_message=r["last_error_message"],
        tracking_id=r["tracking_id"],
        warnings=tuple(json.loads(r["warnings"] or "[]")),
        paused_reason=r["paused_reason"],
        depends_on=r["depends_on"],
        created_at=from_timestamp(r["created_at"]),  # type: ignore[arg-type]
        updated_at=from_timestamp(r["updated_at"]),  # type: ignore[arg-type]
        delivered_at=from_timestamp(r["delivered_at"]),
    )


class SqliteOutbox:
    """:class:`~msclkid_middleware.outbox.base.OutboxStore` on a SQLite file.

    ``max_pending`` bounds the rows still owed to Microsoft (pending, in_flight, paused): when it is
    reached, :meth:`enqueue` rejects the *new* event with :class:`~msclkid_middleware.errors.OutboxFull`
    (the caller still holds it) and counts ``overflow_rejected``; stored rows are never evicted.
    ``busy_timeout`` is how long a writer waits for SQLite's write lock before failing with
    ``StoreError(reason="storage_locked")``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        durability: Durability = "crash",
        max_pending: int = _DEFAULT_MAX_PENDING,
        busy_timeout: float = 5.0,
        wal_autocheckpoint: int = 10000,
    ) -> None:
        if durability not in _SYNCHRONOUS:
            raise ConfigError("durability must be 'crash' or 'power_loss'", setting="durability")
        if max_pending < 1:
            raise ConfigError("max_pending must be at least 1", setting="max_pending")
        self.path = os.fspath(path)
        self.url = "sqlite:///" + self.path
        self.durability: Durability = durability
        self.max_pending = max_pending
        self.busy_timeout = busy_timeout
        self.wal_autocheckpoint = wal_autocheckpoint
        self._local = threading.local()
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._connections: list[sqlite3.Connection] = []
        self._counters: dict[str, int] = {}
        self._migrate()

    @classmethod
    def from_url(cls, url: str, **options: Any) -> SqliteOutbox:
        return cls(sqlite_path_from_url(url), **options)

    def __repr__(self) -> str:
        return f"SqliteOutbox({self.path!r}, durability={self.durability!r}, max_pending={self.max_pending})"

    # -- connections ------------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        try:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves, so no implicit transaction
            # is ever left open (the sqlite3 module's default would hold one until commit()).
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {_SYNCHRONOUS[self.durability]}")
            conn.execute("PRAGMA foreign_keys = ON")
            # Checkpoints fsync the database file; let them grow larger so they run rarely on the
            # request path (the worker runs a passive checkpoint in maintenance).
            conn.execute(f"PRAGMA wal_autocheckpoint = {self.wal_autocheckpoint}")
        except sqlite3.Error as exc:
            raise _error(exc, "open") from exc
        return conn

    def _conn(self) -> sqlite3.Connection:
        pid = os.getpid()
        if pid != self._pid:
            # After fork the parent's connections must not be used (SQLite forbids carrying an
            # open connection across fork); abandon them without closing, and start afresh.
            with self._lock:
                if pid != self._pid:
                    self._pid = pid
                    self._connections = []
                    self._local = threading.local()
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    @contextmanager
    def _write(self, action: str, conn: sqlite3.Connection | None = None) -> Iterator[sqlite3.Connection]:
        """A short ``BEGIN IMMEDIATE`` transaction on this thread's connection."""
        conn = conn or self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            self._count("store_errors")
            raise _error(exc, action) from exc
        try:
            yield conn
        except BaseException as exc:
            # The transaction may already be gone (SQLITE_FULL rolls it back itself).
            with suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                self._count("store_errors")
                raise _error(exc, action) from exc
            raise
        else:
            try:
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                self._count("store_errors")
                with suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise _error(exc, action) from exc

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` on a connection of its own to the outbox file, for ``enqueue(connection=...)``.

        Its own connection, not this thread's: the thread may still read through the store while the
        batch is open (a re-run's ``find``), and the connection is closed when the block ends.
        """
        conn = self._connect()
        try:
            with self._write("transaction", conn):
                yield conn
        finally:
            conn.close()

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        try:
            return self._conn().execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            self._count("store_errors")
            raise _error(exc, "read") from exc

    def _migrate(self) -> None:
        conn = self._conn()
        with self._write("migration", conn):
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > len(MIGRATIONS):
                raise StoreError(
                    f"the outbox schema is version {version}, newer than this release knows ({len(MIGRATIONS)})",
                    reason="schema_too_new",
                )
            for number in range(version, len(MIGRATIONS)):
                for statement in _split_sql(MIGRATIONS[number]):
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")

    def schema_version(self) -> int:
        return int(self._read("PRAGMA user_version")[0][0])

    def _count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counters[name] = self._counters.get(name, 0) + n

    def metrics(self) -> Mapping[str, int]:
        with self._lock:
            return dict(self._counters)

    def close(self) -> None:
        with self._lock:
            connections, self._connections = self._connections, []
            self._local = threading.local()
        for conn in connections:
            with suppress(sqlite3.Error):
                conn.close()

    # -- enqueue ----------------------------------------------------------------------------------
    def enqueue(self, row: NewRow, *, now: datetime, connection: Any = None) -> EnqueueResult:
        ts = to_timestamp(now)
        if connection is not None:
            # The transactional outbox: run inside the caller's transaction; they commit.
            try:
                result = self._enqueue_on(connection, row, ts)
            except sqlite3.Error as exc:
                self._count("store_errors")
                raise _error(exc, "enqueue") from exc
        else:
            with self._write("enqueue") as conn:
                result = self._enqueue_on(conn, row, ts)
                faultpoints.hit("enqueue_txn")
        self._count("enqueued" if result.created else "duplicates")
        return result

    def _existing(self, conn: Any, row: NewRow) -> OutboxRow | None:
        cur = conn.execute(
            "SELECT * FROM outbox WHERE idempotency_key = ? "  # noqa: S608 (only module constants are interpolated)
            f"OR (kind = ? AND account = ? AND event_id = ? AND kind IN {_PRIMARY}) ORDER BY id LIMIT 1",
            (row.idempotency_key, row.kind, row.account, row.event_id),
        )
        found = cur.fetchone()
        return None if found is None else _row(_as_row(cur, found))

    def _enqueue_on(self, conn: Any, row: NewRow, ts: float) -> EnqueueResult:
        existing = self._existing(conn, row)
        if existing is not None:
            return EnqueueResult(existing, False)
        if row.state == "pending":
            open_rows = conn.execute("SELECT value FROM outbox_meta WHERE name = 'open_rows'").fetchone()[0]
            if open_rows >= self.max_pending:
                self._count("overflow_rejected")
                raise OutboxFull(self.max_pending)
        try:
            cur = conn.execute(
                "INSERT INTO outbox (kind, account, event_id, idempotency_key, payload, conversion_name, consent,"
                " state, attempts, next_attempt_at, expires_at, last_error_code, last_error_message, depends_on,"
                " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?, ?, ?) RETURNING *",
                (
                    row.kind,
                    row.account,
                    row.event_id,
                    row.idempotency_key,
                    _dumps(dict(row.payload)),
                    row.conversion_name,
                    None if row.consent is None else _dumps(dict(row.consent)),
                    row.state,
                    ts,
                    None if row.expires_at is None else to_timestamp(row.expires_at),
                    row.error_code,
                    row.error_message,
                    row.depends_on,
                    ts,
                    ts,
                ),
            )
        except sqlite3.IntegrityError:
            # Another writer inserted the same key between our SELECT and INSERT (possible only
            # inside a caller's deferred transaction): theirs wins, as a duplicate.
            existing = self._existing(conn, row)
            if existing is None:
                raise
            return EnqueueResult(existing, False)
        return EnqueueResult(_row(_as_row(cur, cur.fetchone())), True)

    # -- reads ------------------------------------------------------------------------------------
    def get(self, row_id: int) -> OutboxRow | None:
        rows = self._read("SELECT * FROM outbox WHERE id = ?", (row_id,))
        return _row(rows[0]) if rows else None

    def find(self, event_id: str, *, kind: Kind | None = None, account: str | None = None) -> list[OutboxRow]:
        sql = "SELECT * FROM outbox WHERE event_id = ?"
        params: list[Any] = [event_id]
        if kind is not None:
            sql += " AND kind = ?"
            params.append(kind)
        if account is not None:
            sql += " AND account = ?"
            params.append(account)
        return [_row(r) for r in self._read(sql + " ORDER BY id", params)]

    def counts(self) -> list[StateCount]:
        rows = self._read(
            "SELECT kind, conversion_name, state, last_error_code, COUNT(*) AS n FROM outbox"
            " GROUP BY kind, conversion_name, state, last_error_code ORDER BY kind, conversion_name, state"
        )
        return [StateCount(r["kind"], r["conversion_name"], r["state"], r["last_error_code"], r["n"]) for r in rows]

    def scan(
        self, *, since: datetime | None = None, kinds: Collection[Kind] | None = None, page_size: int = 1000
    ) -> Iterator[OutboxRow]:
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        sql = "SELECT * FROM outbox WHERE id > ?"
        params: list[Any] = []
        if since is not None:
            sql += " AND created_at >= ?"
            params.append(to_timestamp(since))
        if kinds is not None:
            sql += f" AND kind IN {_in([k for k in kinds if k in KINDS] or ['-'])}"
        sql += " ORDER BY id LIMIT ?"
        last = 0
        while True:
            page = self._read(sql, [last, *params, page_size])
            for r in page:
                yield _row(r)
            if len(page) < page_size:
                return
            last = page[-1]["id"]

    def open_count(self) -> int:
        return int(self._read("SELECT value FROM outbox_meta WHERE name = 'open_rows'")[0][0])

    def next_due(self) -> datetime | None:
        rows = self._read(
            "SELECT MIN(t) FROM (SELECT MIN(next_attempt_at) AS t FROM outbox WHERE state = 'pending'"
            " UNION ALL SELECT MIN(lease_expires_at) FROM outbox WHERE state = 'in_flight')"
        )
        value = rows[0][0]
        return None if value is None else from_timestamp(value)

    def paused_accounts(self) -> list[tuple[str, Kind, str]]:
        rows = self._read("SELECT DISTINCT account, kind, paused_reason FROM outbox WHERE state = 'paused'")
        return [(r["account"], r["kind"], r["paused_reason"] or "") for r in rows]

    # -- claim and settle -------------------------------------------------------------------------
    def claim(
        self, *, owner: str, limit: int, now: datetime, lease_seconds: float, kinds: Collection[Kind] | None = None
    ) -> list[OutboxRow]:
        if limit < 1:
            return []
        kind_filter = ""
        if kinds is not None:
            wanted = [k for k in kinds if k in KINDS]
            if not wanted:
                return []
            kind_filter = f" AND r.kind IN {_in(wanted)}"
        ts = to_timestamp(now)
        token = secrets.token_hex(16)
        with self._write("claim") as conn:
            rows = conn.execute(
                "UPDATE outbox SET state = 'in_flight', lease_owner = ?, lease_token = ?, lease_expires_at = ?,"  # noqa: S608 (validated kind names only)
                " attempts = attempts + 1, updated_at = ? WHERE id IN ("
                "  SELECT r.id FROM outbox AS r WHERE"
                "  ((r.state = 'pending' AND r.next_attempt_at <= ?)"
                "   OR (r.state = 'in_flight' AND r.lease_expires_at <= ?))"
                "  AND (r.depends_on IS NULL OR EXISTS"
                "       (SELECT 1 FROM outbox AS o WHERE o.id = r.depends_on AND o.state = 'delivered'))"
                f"{kind_filter} ORDER BY r.next_attempt_at, r.id LIMIT ?"
                ") RETURNING *",
                (owner, token, ts + lease_seconds, ts, ts, ts, limit),
            ).fetchall()
        self._count("claimed", len(rows))
        return sorted((_row(r) for r in rows), key=lambda r: r.id)

    def settle(self, outcomes: Sequence[Outcome], *, now: datetime) -> int:
        if not outcomes:
            return 0
        ts = to_timestamp(now)
        params = []
        for o in outcomes:
            next_at = ts if o.next_attempt_at is None else to_timestamp(o.next_attempt_at)
            params.append(
                {
                    "id": o.row_id,
                    "token": o.lease_token,
                    "state": o.state,
                    "next": next_at,
                    "code": o.error_code,
                    "message": o.error_message,
                    "tracking": o.tracking_id,
                    "warnings": _dumps(list(o.warnings)),
                    "refund": 1 if o.refund_attempt else 0,
                    "paused_reason": o.error_message if o.state == "paused" else None,
                    "now": ts,
                }
            )
        applied = 0
        with self._write("settle") as conn:
            for p in params:
                cur = conn.execute(
                    "UPDATE outbox SET state = :state, next_attempt_at = :next,"
                    " attempts = MAX(attempts - :refund, 0),"
                    " lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL,"
                    # A retry or release keeps the previous error visible unless a new one is given.
                    " last_error_code = CASE WHEN :state = 'delivered' THEN NULL"
                    "   ELSE COALESCE(:code, last_error_code) END,"
                    " last_error_message = CASE WHEN :state = 'delivered' THEN NULL"
                    "   ELSE COALESCE(:message, last_error_message) END,"
                    " tracking_id = COALESCE(:tracking, tracking_id),"
                    " warnings = CASE WHEN :state = 'delivered' THEN :warnings ELSE warnings END,"
                    " paused_reason = :paused_reason,"
                    " delivered_at = CASE WHEN :state = 'delivered' THEN :now ELSE delivered_at END,"
                    " updated_at = :now"
                    " WHERE id = :id AND lease_token = :token AND state = 'in_flight'",
                    p,
                )
                applied += cur.rowcount
            faultpoints.hit("settle_txn")
        if applied != len(params):
            self._count("stale_acks", len(params) - applied)
        return applied

    # -- pause, resume, maintenance ---------------------------------------------------------------
    def pause(self, *, account: str, kinds: Collection[Kind], reason: str, now: datetime) -> int:
        kinds = [k for k in kinds if k in KINDS]
        if not kinds:
            return 0
        with self._write("pause") as conn:
            cur = conn.execute(
                "UPDATE outbox SET state = 'paused', paused_reason = ?, updated_at = ? WHERE state = 'pending'"  # noqa: S608 (only module constants are interpolated)
                f" AND account = ? AND kind IN {_in(kinds)}",
                (reason, to_timestamp(now), account),
            )
        return cur.rowcount

    def resume(self, *, account: str | None = None, kinds: Collection[Kind] | None = None, now: datetime) -> int:
        ts = to_timestamp(now)
        sql = "UPDATE outbox SET state = 'pending', paused_reason = NULL, next_attempt_at = ?, updated_at = ?"
        sql += " WHERE state = 'paused'"
        params: list[Any] = [ts, ts]
        if account is not None:
            sql += " AND account = ?"
            params.append(account)
        if kinds is not None:
            sql += f" AND kind IN {_in([k for k in kinds if k in KINDS] or ['-'])}"
        with self._write("resume") as conn:
            cur = conn.execute(sql, params)
        return cur.rowcount

    def fail_orphans(self, *, now: datetime) -> int:
        with self._write("fail_orphans") as conn:
            cur = conn.execute(
                "UPDATE outbox SET state = 'dead', last_error_code = 'original_not_delivered',"
                " last_error_message = 'the original event ended ' || (SELECT o.state FROM outbox AS o"
                "   WHERE o.id = outbox.depends_on) || '; the adjustment cannot apply',"
                " paused_reason = NULL, updated_at = ?"
                " WHERE depends_on IS NOT NULL AND state IN ('pending', 'paused') AND EXISTS (SELECT 1 FROM outbox AS o"
                "   WHERE o.id = outbox.depends_on AND o.state IN ('rejected', 'dead', 'suppressed'))",
                (to_timestamp(now),),
            )
        return cur.rowcount

    def retry_dead(
        self, *, now: datetime, include_rejected: bool = False, event_id: str | None = None, reset_attempts: bool = True
    ) -> int:
        states = ("dead", "rejected") if include_rejected else ("dead",)
        ts = to_timestamp(now)
        sql = (
            "UPDATE outbox SET state = 'pending', next_attempt_at = ?, updated_at = ?"  # noqa: S608 (only module constants are interpolated)
            + (", attempts = 0" if reset_attempts else "")
            + f" WHERE state IN {_in(states)}"
        )
        params: list[Any] = [ts, ts]
        if event_id is not None:
            sql += " AND event_id = ?"
            params.append(event_id)
        with self._write("retry_dead") as conn:
            cur = conn.execute(sql, params)
        return cur.rowcount

    def prune(self, *, before: datetime) -> int:
        with self._write("prune") as conn:
            cur = conn.execute(
                "DELETE FROM outbox WHERE state IN ('delivered', 'rejected', 'dead', 'suppressed')"
                " AND updated_at < ? AND NOT EXISTS (SELECT 1 FROM outbox AS a WHERE a.depends_on = outbox.id)",
                (to_timestamp(before),),
            )
        self._count("pruned", cur.rowcount)
        return cur.rowcount

    def checkpoint(self) -> None:
        """Copy the WAL into the database now (PASSIVE: never waits for readers or writers).

        The worker calls this during maintenance so the fsync of a checkpoint happens off the
        request path; ``wal_autocheckpoint`` remains the safety net when no worker runs.
        """
        self._read("PRAGMA wal_checkpoint(PASSIVE)")

    # -- tokens -----------------------------------------------------------------------------------
    def load_token(self, name: str) -> TokenRecord | None:
        rows = self._read("SELECT refresh_token, issued_at, serial, data FROM tokens WHERE name = ?", (name,))
        if not rows:
            return None
        r = rows[0]
        issued = from_timestamp(r["issued_at"])
        assert issued is not None  # noqa: S101 - the column is NOT NULL
        return TokenRecord(r["refresh_token"], issued, r["serial"], json.loads(r["data"]))

    def save_token(self, name: str, record: TokenRecord) -> bool:
        ts = to_timestamp(record.issued_at)
        with self._write("save_token") as conn:
            # Never regress: an older token (a slow process finishing late) does not overwrite a newer one.
            cur = conn.execute(
                "INSERT INTO tokens (name, refresh_token, issued_at, serial, data, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET refresh_token = excluded.refresh_token,"
                " issued_at = excluded.issued_at, serial = excluded.serial, data = excluded.data,"
                " updated_at = excluded.updated_at"
                " WHERE (excluded.serial, excluded.issued_at) > (tokens.serial, tokens.issued_at)",
                (name, record.refresh_token, ts, record.serial, _dumps(dict(record.data)), ts),
            )
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
            raise _error(exc, "token lock") from exc
        try:
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise _error(exc, "token lock") from exc
            try:
                yield
            finally:
                with suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
        finally:
            conn.close()


def _split_sql(script: str) -> list[str]:
    """Split a migration into statements (``sqlite3.complete_statement`` keeps triggers whole)."""
    statements: list[str] = []
    buffer = ""
    for line in script.splitlines(keepends=True):
        if line.strip().startswith("--"):
            continue
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                statements.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        statements.append(buffer.strip())
    return statements
