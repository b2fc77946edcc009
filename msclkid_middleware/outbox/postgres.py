"""The PostgreSQL outbox: one queue shared by several hosts.

Only the ``outbox/postgres*.py`` modules import the driver (``psycopg`` 3 and ``psycopg_pool``, the
``postgres`` extra); :func:`msclkid_middleware.outbox.open_store` imports this one only for
``postgresql://`` URLs (see :mod:`~msclkid_middleware.outbox.postgres_connect` for the URL).

- Claims are one statement: ``SELECT ... FOR UPDATE SKIP LOCKED`` picks due rows no other claimer
  holds, and the surrounding ``UPDATE`` leases them (owner, random token, expiry).  Claimers never
  wait for each other, and a row whose lease expired is claimable again (crash recovery).
- Every write-back is fenced: ``WHERE id = ... AND lease_token = ... AND state = 'in_flight'``.
- An enqueue is a single ``INSERT ... ON CONFLICT DO NOTHING``, so it joins the application's own
  transaction unchanged when ``connection=`` is given (transactional outbox) and never aborts it.
- Every name is schema-qualified: the tables are found from any connection whatever its
  ``search_path`` (the application's own connection included).
- Connections come from a ``psycopg_pool`` pool (opened lazily, re-created after ``fork()``); a
  connection lost to a server restart is discarded and the statement retried on a fresh one.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import psycopg
from psycopg.rows import dict_row

from msclkid_middleware import faultpoints
from msclkid_middleware.errors import ConfigError, OutboxFull, StoreError
from msclkid_middleware.outbox.base import (
    DEFAULT_MAX_PENDING,
    KINDS,
    Counters,
    Durability,
    EncodedRow,
    EnqueueResult,
    NewRow,
    Outcome,
    TokenRecord,
    check_store_options,
)
from msclkid_middleware.outbox.postgres_connect import (
    URL_OPTIONS,
    Database,
    PostgresConfig,
    lock_key,
    parse_postgres_url,
    store_error,
)
from msclkid_middleware.outbox.postgres_schema import DIALECT, MIGRATIONS, QUERIES, migrate
from msclkid_middleware.outbox.rows import (
    encode_row,
    insert_values,
    settle_values,
    token_values,
)
from msclkid_middleware.outbox.sql import COLUMNS
from msclkid_middleware.outbox.sql_store import SqlStore

__all__ = ["MIGRATIONS", "PostgresConfig", "PostgresOutbox", "parse_postgres_url"]

T = TypeVar("T")

_ENQUEUE = f"""
INSERT INTO {{s}}.msclkid_outbox ({COLUMNS})
SELECT {QUERIES.insert_values}
WHERE %(state)s <> 'pending' OR (SELECT sum(n) FROM {{s}}.msclkid_outbox_open) < %(max_pending)s
ON CONFLICT DO NOTHING
RETURNING *
"""  # noqa: S608 (only module constants are interpolated; values are bound parameters)

_DEPENDENCY_MET = (
    "(r.depends_on IS NULL"
    " OR EXISTS (SELECT 1 FROM {s}.msclkid_outbox AS o WHERE o.id = r.depends_on AND o.state = 'delivered'))"
)
# Two index-ordered scans (expired leases first, then due pending rows), each skipping rows another
# claimer has locked and stopping at the limit: claimers never wait for each other, and a claim
# costs the same with a backlog of ten rows or a million.
_CLAIM = f"""
WITH expired AS (
    SELECT r.id FROM {{s}}.msclkid_outbox AS r
    WHERE r.state = 'in_flight' AND r.lease_expires_at <= %(now)s AND r.kind = ANY(%(kinds)s) AND {_DEPENDENCY_MET}
    ORDER BY r.lease_expires_at, r.id
    LIMIT %(limit)s
    FOR UPDATE OF r SKIP LOCKED
), pending AS (
    SELECT r.id FROM {{s}}.msclkid_outbox AS r
    WHERE r.state = 'pending' AND r.next_attempt_at <= %(now)s AND r.kind = ANY(%(kinds)s) AND {_DEPENDENCY_MET}
    ORDER BY r.next_attempt_at, r.id
    LIMIT %(limit)s
    FOR UPDATE OF r SKIP LOCKED
)
UPDATE {{s}}.msclkid_outbox AS t
SET state = 'in_flight', lease_owner = %(owner)s, lease_token = %(token)s, lease_expires_at = %(expires)s,
    attempts = t.attempts + 1, updated_at = %(now)s
-- = ANY(ARRAY(...)): primary-key lookups, never a join over the whole table.
WHERE t.id = ANY(ARRAY(SELECT id FROM expired UNION ALL SELECT id FROM pending LIMIT %(limit)s))
RETURNING {{returning}}
"""  # noqa: S608 (only module constants are interpolated; values are bound parameters)
# What a delivery request needs of a claimed row; the payload's times are read by the server (as JSON values).
_CLAIMED_COLUMNS = (
    "t.id, t.kind, t.account, t.event_id, t.lease_token, t.attempts, t.conversion_name, t.created_at,"
    " t.expires_at, t.payload, t.payload::jsonb -> 'ConversionTime' AS conversion_time,"
    " t.payload::jsonb -> 'AdjustmentTime' AS adjustment_time, t.payload::jsonb -> 'eventTime' AS uet_time"
)
# A batch's rows in one statement (one round trip, one run of the statement trigger): each column of the batch is
# an array, unnested in the batch's order; a row matching a stored one (or an earlier one of the batch) is skipped.
_INSERT_MANY = f"""
INSERT INTO {{s}}.msclkid_outbox ({COLUMNS})
SELECT kind, account, event_id, idempotency_key, payload, conversion_name, consent, state, 0,
       %(now)s, expires_at, error_code, error_message, depends_on, %(now)s, %(now)s
FROM unnest(%(kind)s::text[], %(account)s::text[], %(event_id)s::text[], %(idempotency_key)s::text[],
            %(payload)s::text[], %(conversion_name)s::text[], %(consent)s::text[], %(state)s::text[],
            %(expires_at)s::timestamptz[], %(error_code)s::text[], %(error_message)s::text[], %(depends_on)s::bigint[])
     WITH ORDINALITY AS u({", ".join(EncodedRow._fields)}, n)
ORDER BY n
ON CONFLICT DO NOTHING
"""  # noqa: S608 (only module constants are interpolated; values are bound parameters)


# Every outcome in one statement (arrays unnested), fenced by each row's lease token.  The rows
# are locked in id order first (the CTE, materialised by the IN): two settles touching the same rows (a stale
# worker and the one that took over) then queue instead of deadlocking.
_SETTLE = f"""
WITH locked AS MATERIALIZED (SELECT id FROM {{s}}.msclkid_outbox WHERE id = ANY(%(id)s) ORDER BY id FOR UPDATE)
UPDATE {{s}}.msclkid_outbox AS t
SET {QUERIES.settle_assignments(lambda field: "%(now)s" if field == "now" else "o." + field)}
FROM unnest(%(id)s::bigint[], %(token)s::text[], %(state)s::text[], %(next_at)s::timestamptz[], %(code)s::text[],
            %(message)s::text[], %(tracking)s::text[], %(warnings)s::text[], %(refund)s::int[],
            %(paused_reason)s::text[])
     AS o(id, token, state, next_at, code, message, tracking, warnings, refund, paused_reason)
WHERE t.id = o.id AND t.lease_token = o.token AND t.state = 'in_flight' AND t.id IN (SELECT id FROM locked)
"""  # noqa: S608 (only module constants are interpolated; values are bound parameters)
_SETTLE_FIELDS = ("id", "token", "state", "next_at", "code", "message", "tracking", "warnings", "refund")


class PostgresOutbox(SqlStore):
    """:class:`~msclkid_middleware.outbox.base.OutboxStore` on PostgreSQL, shared by many hosts.

    ``max_pending`` bounds the open rows (pending, in_flight, paused) with the reject-new policy of
    the SQLite store.  Concurrent enqueues from different sessions each see the count before the
    others commit, so the bound may be overshot by at most the number of concurrent writers.
    ``durability="power_loss"`` forces ``synchronous_commit=on`` for our sessions; ``"crash"`` (the
    default) leaves the server's own setting (PostgreSQL's default is already fsync on commit).
    """

    queries = QUERIES
    row_columns = "t.*"
    claimed_columns = _CLAIMED_COLUMNS

    def __init__(
        self,
        config: PostgresConfig,
        *,
        durability: Durability = "crash",
        max_pending: int = DEFAULT_MAX_PENDING,
        reconnect_attempts: int = 3,
    ) -> None:
        check_store_options(durability, max_pending)
        self.url = config.safe_url
        self.durability: Durability = durability
        self.max_pending = max_pending
        self.db = Database(config, durability=durability, reconnect_attempts=reconnect_attempts)
        self._counters = Counters()
        try:
            migrate(self.db)
        except BaseException:
            self.db.close()
            raise

    @classmethod
    def from_url(cls, url: str, **options: Any) -> PostgresOutbox:
        """``options``: ``durability``, ``max_pending``, ``reconnect_attempts`` and the URL's own
        ``schema``, ``pool_min_size``, ``pool_max_size``, ``pool_timeout`` (which they override)."""
        url_options = {k: options.pop(k) for k in URL_OPTIONS if k in options}
        options.pop("busy_timeout", None)  # SQLite's option; the pool timeout plays its part here
        return cls(parse_postgres_url(url, **url_options), **options)

    @property
    def schema(self) -> str:
        return self.db.schema

    def __repr__(self) -> str:
        return f"PostgresOutbox({self.url!r}, schema={self.schema!r}, max_pending={self.max_pending})"

    # -- plumbing ---------------------------------------------------------------------------------
    def _run(self, action: str, fn: Callable[[psycopg.Connection[Any]], T]) -> T:
        return self.db.run(action, fn, on_error=lambda: self._count("store_errors"))

    def _fetch(self, query: str, params: Mapping[str, Any] = {}) -> list[dict[str, Any]]:
        def run(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
            with conn.cursor(row_factory=dict_row) as cur:
                cur.execute(self.db.q(query), params)
                return cur.fetchall()

        return self._run("read", run)

    def _change(self, action: str, query: str, params: Mapping[str, Any] | Sequence[Any], *, opens: int = 0) -> int:
        del opens  # the open-row count is kept by the table's statement triggers

        def run(conn: psycopg.Connection[Any]) -> int:
            cur = conn.execute(self.db.q(query), params)
            return max(cur.rowcount, 0)

        return self._run(action, run)

    def schema_version(self) -> int:
        rows = self._fetch("SELECT value FROM {s}.msclkid_outbox_meta WHERE name = 'schema_version'")
        return int(rows[0]["value"])

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection inside a transaction, for ``enqueue(connection=...)``.

        Not retried on a lost connection (the caller's batch would be half gone): the error is a
        ``StoreError`` and the caller re-runs the batch (enqueues are idempotent).
        """
        try:
            with self.db.connection() as conn, conn.transaction():
                yield conn
        except psycopg.Error as exc:
            self._count("store_errors")
            raise store_error(exc, "transaction") from exc

    # -- enqueue ----------------------------------------------------------------------------------
    def enqueue(self, row: NewRow, *, now: datetime, connection: Any = None) -> EnqueueResult:
        params = {**insert_values(row, now, DIALECT.write_time), "max_pending": self.max_pending}
        if connection is not None:
            result = self._on_callers(connection, lambda conn: self._enqueue_on(conn, params))
        else:
            result = self._run("enqueue", lambda conn: self._enqueue_hit(self._enqueue_on(conn, params)))
        self._count("enqueued" if result.created else "duplicates")
        return result

    def _on_callers(self, connection: object, fn: Callable[[psycopg.Connection[Any]], T]) -> T:
        """Run an enqueue on the application's connection, in its transaction (it commits): never retried."""
        if not isinstance(connection, psycopg.Connection):
            raise ConfigError(
                "connection= must be a psycopg (3) Connection to the outbox's database", setting="connection"
            )
        try:
            return fn(connection)
        except psycopg.Error as exc:
            self._count("store_errors")
            raise store_error(exc, "enqueue") from exc

    @staticmethod
    def _enqueue_hit(result: EnqueueResult) -> EnqueueResult:
        # The enqueue is one autocommitted statement: the crash point fires after its commit, before the
        # caller hears of it (a re-record after restart is then a deduplicated no-op).
        faultpoints.hit("enqueue_txn")
        return result

    def _enqueue_on(self, conn: psycopg.Connection[Any], params: Mapping[str, Any]) -> EnqueueResult:
        with conn.cursor(row_factory=dict_row) as cur:
            # One statement: a single round trip, atomic without an explicit transaction, and
            # ON CONFLICT DO NOTHING never aborts the application's transaction on a duplicate.
            cur.execute(self.db.q(_ENQUEUE), params)
            inserted = cur.fetchone()
            if inserted is not None:
                return EnqueueResult(self._row(inserted), True)
            cur.execute(self.db.q(QUERIES.existing), params)
            existing = cur.fetchone()
        if existing is not None:
            return EnqueueResult(self._row(existing), False)
        if params["state"] == "pending":
            self._count("overflow_rejected")
            raise OutboxFull(self.max_pending)
        # Not inserted, not full, no match: a concurrent row took the key and vanished (pruned).
        raise StoreError("outbox enqueue failed: a conflicting row disappeared; retry", reason="storage_conflict")

    # -- reads ------------------------------------------------------------------------------------
    def open_count(self) -> int:
        found = self._fetch("SELECT COALESCE(sum(n), 0) AS n FROM {s}.msclkid_outbox_open")
        return int(found[0]["n"])

    # -- claim and settle -------------------------------------------------------------------------
    def _claim(
        self, owner: str, limit: int, now: datetime, lease_seconds: float, kinds: list[str] | None, returning: str
    ) -> list[dict[str, Any]]:
        params = {
            "owner": owner,
            "token": secrets.token_hex(16),
            "now": DIALECT.write_time(now),
            "expires": now + timedelta(seconds=lease_seconds),
            "kinds": list(KINDS) if kinds is None else kinds,
            "limit": limit,
        }
        return self._fetch(_CLAIM.replace("{returning}", returning), params)

    def enqueue_many(self, rows: Sequence[NewRow | EncodedRow], *, now: datetime, connection: Any = None) -> int:
        if not rows:
            return 0
        encoded = [encode_row(row) for row in rows]
        columns = [list(column) for column in zip(*encoded, strict=True)]
        params: dict[str, Any] = dict(zip(EncodedRow._fields, columns, strict=True))
        params["expires_at"] = [None if x is None else DIALECT.write_time(x) for x in params["expires_at"]]
        params["now"] = DIALECT.write_time(now)
        has_pending = "pending" in params["state"]

        def run(conn: psycopg.Connection[Any]) -> int:
            # A transaction of its own, or a savepoint in the caller's: an overflow takes back this batch only.
            with conn.transaction():
                with conn.cursor() as cur:
                    cur.execute(self.db.q(_INSERT_MANY), params)
                    created = max(cur.rowcount, 0)
                    if created and has_pending:
                        cur.execute(self.db.q("SELECT COALESCE(sum(n), 0) FROM {s}.msclkid_outbox_open"))
                        found = cur.fetchone()
                        if found is not None and found[0] > self.max_pending:
                            self._count("overflow_rejected", created)
                            raise OutboxFull(self.max_pending)
                return created

        if connection is not None:
            if not isinstance(connection, psycopg.Connection):
                raise ConfigError(
                    "connection= must be a psycopg (3) Connection to the outbox's database", setting="connection"
                )
            try:
                created = run(connection)
            except psycopg.Error as exc:
                self._count("store_errors")
                raise store_error(exc, "enqueue") from exc
        else:
            created = self._run("enqueue", run)
        self._count("enqueued", created)
        self._count("duplicates", len(rows) - created)
        return created

    def settle(self, outcomes: Sequence[Outcome], *, now: datetime) -> int:
        if not outcomes:
            return 0
        values = [settle_values(o, now, DIALECT.write_time) for o in sorted(outcomes, key=lambda o: o.row_id)]
        params: dict[str, Any] = {name: [v[name] for v in values] for name in _SETTLE_FIELDS}
        params["paused_reason"] = [v["paused_reason"] for v in values]
        params["now"] = DIALECT.write_time(now)

        def run(conn: psycopg.Connection[Any]) -> int:
            # One statement for the whole batch (it locks its rows in id order itself), inside a transaction so
            # a crash before COMMIT leaves every row in flight for its lease to recover (the settle_txn point).
            with conn.transaction():
                applied = max(conn.execute(self.db.q(_SETTLE), params).rowcount, 0)
                faultpoints.hit("settle_txn")
            return applied

        applied = self._run("settle", run)
        if applied != len(outcomes):
            self._count("stale_acks", len(outcomes) - applied)
        return applied

    # -- tokens -----------------------------------------------------------------------------------
    def save_token(self, name: str, record: TokenRecord) -> bool:
        """Never regress, under the row lock.

        ``INSERT ... ON CONFLICT DO UPDATE`` locks the stored row and evaluates the ``WHERE`` against
        its newest committed version, so of two hosts saving rotated tokens at once the newer
        ``(serial, issued_at)`` always ends up stored, whichever commits last.
        """
        values = token_values(name, record, datetime.now(UTC), DIALECT.write_time)
        count = self._change("save_token", QUERIES.save_token, values)
        faultpoints.hit("token_write")  # one autocommitted statement: after its commit
        return count > 0

    @contextmanager
    def token_lock(self, name: str) -> Iterator[None]:
        """Single-flight refresh across hosts: a session advisory lock on a dedicated connection.

        Not a pooled connection and not a row lock in the outbox: the refresh holds the lock during
        an HTTP call to the token endpoint, which must never block ``record_*`` or the workers.  If
        the holder dies, the server drops its session and the lock with it.
        """
        try:
            conn = self.db.connect_unpooled(connect_timeout=max(int(self.db.config.pool_timeout), 2))
        except psycopg.Error as exc:
            raise store_error(exc, "token lock") from exc
        try:
            try:
                # Waiters may queue behind a whole token request, so they wait up to a minute.
                conn.execute("SET lock_timeout = '60s'")
                conn.execute("SELECT pg_advisory_lock(%s)", (lock_key("token", self.schema, name),))
            except psycopg.Error as exc:
                raise store_error(exc, "token lock") from exc
            try:
                yield
            finally:
                with suppress(psycopg.Error):
                    conn.execute("SELECT pg_advisory_unlock(%s)", (lock_key("token", self.schema, name),))
        finally:
            conn.close()
