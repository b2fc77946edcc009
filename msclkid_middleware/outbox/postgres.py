"""The PostgreSQL outbox, profile store and token store: one queue shared by several hosts.

The only module that imports the driver (``psycopg`` 3 and ``psycopg_pool``, the ``postgres``
extra); :func:`msclkid_middleware.outbox.open_store` imports it only for ``postgresql://`` URLs.

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

URL: ``postgresql://user:password@host:5432/dbname?schema=msclkid&pool_max_size=8`` (``postgres://``
too).  Our own query parameters (removed before the rest goes to libpq): ``schema`` (created when
missing; default: the connection's ``current_schema()``, so ``?options=-csearch_path%3Dname`` works
as well), ``pool_min_size``, ``pool_max_size``, ``pool_timeout`` (seconds to wait for a
connection).  Everything else (``sslmode``, ``connect_timeout``, ``application_name``, ...) is libpq's.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import threading
import time
import zlib
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar
from urllib.parse import unquote, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from msclkid_middleware import faultpoints
from msclkid_middleware.capture.clickid import Click
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
    to_timestamp,
)

__all__ = [
    "MIGRATIONS",
    "PostgresConfig",
    "PostgresOutbox",
    "PostgresProfileStore",
    "parse_postgres_url",
]

Durability = Literal["crash", "power_loss"]
T = TypeVar("T")

_DEFAULT_MAX_PENDING = 1_000_000
#: Open-row counter stripes: enqueues and settles of different sessions rarely touch the same row.
_COUNTER_SLOTS = 16
_SCHEMA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,62}$")
_OUR_PARAMS = ("schema", "pool_min_size", "pool_max_size", "pool_timeout")
#: SQLSTATE classes meaning "the connection, not the statement, failed": retry on a fresh one.
_CONNECTION_SQLSTATES = ("08", "57P01", "57P02", "57P03")


def _in(values: Collection[str]) -> str:
    return "(" + ", ".join(f"'{v}'" for v in values) + ")"


_OPEN = _in(OPEN_STATES)
_PRIMARY = _in(sorted(PRIMARY_KINDS))

#: Schema migrations, applied in order on open (under an advisory lock, so concurrent openers are
#: safe); ``msclkid_outbox_meta.schema_version`` records how many ran.  ``{s}`` is the quoted schema;
#: other interpolated values are this module's constants, never input.
MIGRATIONS: tuple[str, ...] = (
    f"""
    CREATE TABLE {{s}}.msclkid_outbox (
        id BIGSERIAL PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN {_in(KINDS)}),
        account TEXT NOT NULL,
        event_id TEXT NOT NULL,
        idempotency_key TEXT NOT NULL,
        payload TEXT NOT NULL,
        conversion_name TEXT,
        consent TEXT,
        state TEXT NOT NULL CHECK (state IN {_in(STATES)}),
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at TIMESTAMPTZ NOT NULL,
        expires_at TIMESTAMPTZ,
        lease_owner TEXT,
        lease_token TEXT,
        lease_expires_at TIMESTAMPTZ,
        last_error_code TEXT,
        last_error_message TEXT,
        tracking_id TEXT,
        warnings TEXT NOT NULL DEFAULT '[]',
        paused_reason TEXT,
        depends_on BIGINT REFERENCES {{s}}.msclkid_outbox (id),
        created_at TIMESTAMPTZ NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL,
        delivered_at TIMESTAMPTZ
    );
    CREATE UNIQUE INDEX msclkid_outbox_idempotency_key ON {{s}}.msclkid_outbox (idempotency_key);
    CREATE UNIQUE INDEX msclkid_outbox_primary_event ON {{s}}.msclkid_outbox (kind, account, event_id)
        WHERE kind IN {_PRIMARY};
    CREATE INDEX msclkid_outbox_pending_due ON {{s}}.msclkid_outbox (next_attempt_at, id) WHERE state = 'pending';
    CREATE INDEX msclkid_outbox_lease_due ON {{s}}.msclkid_outbox (lease_expires_at) WHERE state = 'in_flight';
    CREATE INDEX msclkid_outbox_event ON {{s}}.msclkid_outbox (event_id);
    CREATE INDEX msclkid_outbox_depends_on ON {{s}}.msclkid_outbox (depends_on) WHERE depends_on IS NOT NULL;
    CREATE INDEX msclkid_outbox_updated ON {{s}}.msclkid_outbox (state, updated_at);
    CREATE INDEX msclkid_outbox_paused ON {{s}}.msclkid_outbox (account, kind) WHERE state = 'paused';
    -- The open-row count (what max_pending bounds) is kept exact by statement triggers, striped over
    -- {_COUNTER_SLOTS} rows so concurrent writers rarely wait for each other on the counter.
    CREATE TABLE {{s}}.msclkid_outbox_open (slot INTEGER PRIMARY KEY, n BIGINT NOT NULL);
    INSERT INTO {{s}}.msclkid_outbox_open (slot, n) SELECT g, 0 FROM generate_series(0, {_COUNTER_SLOTS - 1}) AS g;
    CREATE FUNCTION {{s}}.msclkid_outbox_count_open() RETURNS trigger LANGUAGE plpgsql AS $fn$
    DECLARE
        delta BIGINT := 0;
    BEGIN
        IF TG_OP IN ('INSERT', 'UPDATE') THEN
            delta := delta + (SELECT count(*) FROM new_rows WHERE state IN {_OPEN});
        END IF;
        IF TG_OP IN ('UPDATE', 'DELETE') THEN
            delta := delta - (SELECT count(*) FROM old_rows WHERE state IN {_OPEN});
        END IF;
        IF delta <> 0 THEN
            UPDATE {{s}}.msclkid_outbox_open SET n = n + delta WHERE slot = pg_backend_pid() % {_COUNTER_SLOTS};
        END IF;
        RETURN NULL;
    END
    $fn$;
    CREATE TRIGGER msclkid_outbox_open_insert AFTER INSERT ON {{s}}.msclkid_outbox
        REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION {{s}}.msclkid_outbox_count_open();
    CREATE TRIGGER msclkid_outbox_open_update AFTER UPDATE ON {{s}}.msclkid_outbox
        REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
        FOR EACH STATEMENT EXECUTE FUNCTION {{s}}.msclkid_outbox_count_open();
    CREATE TRIGGER msclkid_outbox_open_delete AFTER DELETE ON {{s}}.msclkid_outbox
        REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION {{s}}.msclkid_outbox_count_open();
    CREATE TABLE {{s}}.msclkid_tokens (
        name TEXT PRIMARY KEY,
        refresh_token TEXT NOT NULL,
        issued_at TIMESTAMPTZ NOT NULL,
        serial BIGINT NOT NULL DEFAULT 0,
        data TEXT NOT NULL DEFAULT '{{{{}}}}',
        updated_at TIMESTAMPTZ NOT NULL
    );
    CREATE TABLE {{s}}.msclkid_profiles (
        visitor_id TEXT PRIMARY KEY,
        msclkid TEXT NOT NULL,
        captured_at TIMESTAMPTZ NOT NULL
    );
    """,  # noqa: S608 (only module constants are interpolated)
)


# -- configuration ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PostgresConfig:
    """A parsed store URL: what goes to libpq, and our own options."""

    conninfo: str = field(repr=False)  # may hold the password
    safe_url: str
    schema: str | None
    pool_min_size: int
    pool_max_size: int
    pool_timeout: float


def _positive(name: str, value: Any, kind: Callable[[Any], T]) -> T:
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number", setting="MSCLKID_STORE_URL") from None
    if number <= 0:  # type: ignore[operator]
        raise ConfigError(f"{name} must be positive", setting="MSCLKID_STORE_URL")
    return number


def parse_postgres_url(
    url: str,
    *,
    schema: str | None = None,
    pool_min_size: int | None = None,
    pool_max_size: int | None = None,
    pool_timeout: float | None = None,
) -> PostgresConfig:
    """Split ``url`` into libpq's part and ours; keyword arguments override the query parameters."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("postgresql", "postgres"):
        raise ConfigError(
            "a PostgreSQL store URL starts with postgresql:// or postgres://", setting="MSCLKID_STORE_URL"
        )
    ours: dict[str, str] = {}
    rest: list[str] = []
    for piece in parts.query.split("&"):
        key, _, value = piece.partition("=")
        if unquote(key) in _OUR_PARAMS:
            ours[unquote(key)] = unquote(value)
        elif piece:
            rest.append(piece)  # libpq's own, passed on exactly as written (it does the decoding)
    name = schema if schema is not None else ours.get("schema") or None
    if name is not None and not _SCHEMA_NAME.match(name):
        raise ConfigError(
            "schema must be a plain identifier (letters, digits, _ and $, at most 63 characters)",
            setting="MSCLKID_STORE_URL",
        )
    min_size = _positive("pool_min_size", ours.get("pool_min_size", 1) if pool_min_size is None else pool_min_size, int)
    max_size = _positive("pool_max_size", ours.get("pool_max_size", 8) if pool_max_size is None else pool_max_size, int)
    if min_size > max_size:
        raise ConfigError("pool_min_size must not exceed pool_max_size", setting="MSCLKID_STORE_URL")
    timeout = _positive("pool_timeout", ours.get("pool_timeout", 10.0) if pool_timeout is None else pool_timeout, float)
    conninfo = urlunsplit((parts.scheme, parts.netloc, parts.path, "&".join(rest), parts.fragment))
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        netloc = userinfo.split(":", 1)[0] + ("@" if userinfo else "") + host
    shown = [p for p in rest if unquote(p.partition("=")[0]).lower() != "password"]
    safe_query = "&".join(shown + [urlencode({k: v}) for k, v in ours.items()])
    safe_url = urlunsplit((parts.scheme, netloc, parts.path, safe_query, ""))
    return PostgresConfig(conninfo, safe_url, name, min_size, max_size, timeout)


# -- errors ----------------------------------------------------------------------------------------
def _is_connection_error(exc: BaseException) -> bool:
    if not isinstance(exc, psycopg.OperationalError):
        return False
    state = getattr(exc, "sqlstate", None)
    # No SQLSTATE: a client-side failure (server closed the connection, pool timeout, cannot connect).
    return state is None or state.startswith(_CONNECTION_SQLSTATES)


def _error(exc: psycopg.Error, action: str) -> StoreError:
    state = getattr(exc, "sqlstate", None) or ""
    if _is_connection_error(exc):
        reason = "storage_unavailable"
    elif state in ("53100", "53200"):  # disk_full, out_of_memory
        reason = "storage_full"
    elif state in ("55P03", "40P01", "57014"):  # lock_not_available, deadlock_detected, query_canceled
        reason = "storage_locked"
    else:
        reason = "storage_error"
    # psycopg's messages never contain the password; the first line is the server's own text.
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return StoreError(f"outbox {action} failed: {text}", reason=reason)


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _utc(value: datetime | None) -> datetime | None:
    return None if value is None else value.astimezone(UTC)


def _aware(value: datetime) -> datetime:
    to_timestamp(value)  # raises ValidationError for a naive datetime, as the SQLite store does
    return value


def _row(r: Mapping[str, Any]) -> OutboxRow:
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
        next_attempt_at=r["next_attempt_at"].astimezone(UTC),
        expires_at=_utc(r["expires_at"]),
        lease_owner=r["lease_owner"],
        lease_token=r["lease_token"],
        lease_expires_at=_utc(r["lease_expires_at"]),
        last_error_code=r["last_error_code"],
        last_error_message=r["last_error_message"],
        tracking_id=r["tracking_id"],
        warnings=tuple(json.loads(r["warnings"] or "[]")),
        paused_reason=r["paused_reason"],
        depends_on=r["depends_on"],
        created_at=r["created_at"].astimezone(UTC),
        updated_at=r["updated_at"].astimezone(UTC),
        delivered_at=_utc(r["delivered_at"]),
    )


# -- connections -----------------------------------------------------------------------------------
class _Database:
    """A lazily opened, fork-aware connection pool plus the schema every statement names.

    Shared by the outbox and the profile store when they are built on the same URL/store.
    """

    def __init__(self, config: PostgresConfig, *, durability: Durability = "crash", reconnect_attempts: int = 3):
        self.config = config
        self.durability = durability
        self.reconnect_attempts = reconnect_attempts
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._pool: ConnectionPool[psycopg.Connection[Any]] | None = None
        # Pools inherited over fork() are kept referenced but never touched or closed: closing them
        # would terminate the parent's sessions over the shared sockets.
        self._abandoned: list[ConnectionPool[psycopg.Connection[Any]]] = []
        self._closed = False
        self.schema: str = config.schema or ""
        self._queries: dict[str, sql.Composed] = {}

    def _configure(self, conn: psycopg.Connection[Any]) -> None:
        # Our statements commit one by one or inside explicit ``conn.transaction()`` blocks.
        conn.autocommit = True
        # Our statements are short OLTP ones: JIT compilation would cost more than it saves.
        conn.execute("SET jit = off")
        if self.durability == "power_loss":
            # Never weaker than fsync-on-commit, whatever the server's default is.
            conn.execute("SET synchronous_commit = on")

    def pool(self) -> ConnectionPool[psycopg.Connection[Any]]:
        pid = os.getpid()
        pool = self._pool
        if pool is not None and pid == self._pid:
            return pool
        with self._lock:
            if self._closed:
                raise StoreError("the PostgreSQL store is closed", reason="storage_closed")
            if self._pid != pid:
                if self._pool is not None:
                    self._abandoned.append(self._pool)
                self._pool = None
                self._pid = pid
            if self._pool is None:
                self._pool = ConnectionPool(
                    self.config.conninfo,
                    min_size=self.config.pool_min_size,
                    max_size=self.config.pool_max_size,
                    timeout=self.config.pool_timeout,
                    configure=self._configure,
                    num_workers=2,
                    name="msclkid-outbox",
                    open=False,
                )
                try:
                    self._pool.open(wait=False)
                except psycopg.Error as exc:  # pragma: no cover - open(wait=False) only starts threads
                    raise _error(exc, "connect") from exc
            return self._pool

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        with self.pool().connection() as conn:
            yield conn

    def run(self, action: str, fn: Callable[[psycopg.Connection[Any]], T], *, on_error: Callable[[], None]) -> T:
        """Run ``fn`` on a pooled connection; retry on a fresh one when the connection itself failed.

        A server restart leaves every idle pooled connection dead: the first statement on each
        fails.  ``pool.check()`` discards the dead ones, and the retry waits (bounded by
        ``pool_timeout``) for a new connection.  Every operation here is safe to repeat: enqueue
        is idempotent, claims only lease, settles are fenced by the lease token.
        """
        attempt = 0
        while True:
            try:
                with self.connection() as conn:
                    return fn(conn)
            except psycopg.Error as exc:
                attempt += 1
                if _is_connection_error(exc) and attempt < self.reconnect_attempts:
                    with suppress(Exception):
                        self.pool().check()
                    time.sleep(0.05 * attempt)
                    continue
                on_error()
                raise _error(exc, action) from exc

    def connect_unpooled(self, **kwargs: Any) -> psycopg.Connection[Any]:
        return psycopg.connect(self.config.conninfo, autocommit=True, **kwargs)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
            same_process = self._pid == os.getpid()
        if pool is not None and same_process:
            pool.close()

    def resolve_schema(self, conn: psycopg.Connection[Any]) -> None:
        if not self.schema:
            found = conn.execute("SELECT current_schema()").fetchone()
            if found is None or found[0] is None:
                raise StoreError(
                    "no schema: the connection's search_path names no existing schema; add ?schema=NAME",
                    reason="schema_missing",
                )
            self.schema = str(found[0])

    def q(self, template: str) -> sql.Composed:
        """``{s}`` in ``template`` becomes the quoted schema name (composed once per template)."""
        query = self._queries.get(template)
        if query is None:
            query = sql.SQL(template).format(s=sql.Identifier(self.schema))
            self._queries[template] = query
        return query


def _lock_key(*parts: str) -> int:
    """A stable signed 64-bit advisory-lock key for this schema and purpose."""
    digest = zlib.crc32("\x00".join(parts).encode())
    return (0x6D73636C << 32 | digest) - (1 << 63)  # 'mscl' in the high half keeps us apart from others


def _migrate(db: _Database) -> int:
    def run(conn: psycopg.Connection[Any]) -> int:
        db.resolve_schema(conn)
        with conn.transaction():
            # Serialises concurrent openers (several hosts starting at once) for this schema.
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_key("migrate", db.schema),))
            if db.config.schema is not None:
                conn.execute(db.q("CREATE SCHEMA IF NOT EXISTS {s}"))
            exists = conn.execute(
                "SELECT 1 FROM pg_tables WHERE schemaname = %s AND tablename = 'msclkid_outbox_meta'", (db.schema,)
            ).fetchone()
            if exists is None:
                conn.execute(
                    db.q("CREATE TABLE {s}.msclkid_outbox_meta (name TEXT PRIMARY KEY, value BIGINT NOT NULL)")
                )
                conn.execute(db.q("INSERT INTO {s}.msclkid_outbox_meta VALUES ('schema_version', 0)"))
            found = conn.execute(
                db.q("SELECT value FROM {s}.msclkid_outbox_meta WHERE name = 'schema_version' FOR UPDATE")
            ).fetchone()
            version = int(found[0]) if found is not None else 0
            if version > len(MIGRATIONS):
                raise _SchemaTooNew(version)
            for number in range(version, len(MIGRATIONS)):
                conn.execute(db.q(MIGRATIONS[number]))
            conn.execute(
                db.q("UPDATE {s}.msclkid_outbox_meta SET value = %s WHERE name = 'schema_version'"),
                (len(MIGRATIONS),),
            )
            return len(MIGRATIONS)

    try:
        return db.run("migration", run, on_error=lambda: None)
    except _SchemaTooNew as exc:
        raise StoreError(
            f"the outbox schema is version {exc.version}, newer than this release knows ({len(MIGRATIONS)})",
            reason="schema_too_new",
        ) from None


class _SchemaTooNew(Exception):
    def __init__(self, version: int) -> None:
        super().__init__(version)
        self.version = version


# -- the outbox ------------------------------------------------------------------------------------
_COLUMNS = (
    "kind, account, event_id, idempotency_key, payload, conversion_name, consent, state, attempts,"
    " next_attempt_at, expires_at, last_error_code, last_error_message, depends_on, created_at, updated_at"
)

_ENQUEUE = f"""
INSERT INTO {{s}}.msclkid_outbox ({_COLUMNS})
SELECT %(kind)s, %(account)s, %(event_id)s, %(key)s, %(payload)s, %(conversion_name)s, %(consent)s, %(state)s, 0,
       %(now)s, %(expires_at)s, %(error_code)s, %(error_message)s, %(depends_on)s, %(now)s, %(now)s
WHERE %(state)s <> 'pending' OR (SELECT sum(n) FROM {{s}}.msclkid_outbox_open) < %(max_pending)s
ON CONFLICT DO NOTHING
RETURNING *
"""  # noqa: S608 (only module constants are interpolated; values are bound parameters)

_EXISTING = f"""
SELECT * FROM {{s}}.msclkid_outbox
WHERE idempotency_key = %(key)s OR (kind = %(kind)s AND account = %(account)s AND event_id = %(event_id)s
      AND kind IN {_PRIMARY})
ORDER BY id LIMIT 1
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
RETURNING t.*
"""  # noqa: S608 (only module constants are interpolated; values are bound parameters)

_SETTLE = """
UPDATE {s}.msclkid_outbox AS t
SET state = o.state, next_attempt_at = o.next_at,
    attempts = GREATEST(t.attempts - o.refund, 0),
    lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL,
    last_error_code = CASE WHEN o.state = 'delivered' THEN NULL ELSE COALESCE(o.code, t.last_error_code) END,
    last_error_message = CASE WHEN o.state = 'delivered' THEN NULL ELSE COALESCE(o.message, t.last_error_message) END,
    tracking_id = COALESCE(o.tracking, t.tracking_id),
    warnings = CASE WHEN o.state = 'delivered' THEN o.warnings ELSE t.warnings END,
    paused_reason = o.paused_reason,
    delivered_at = CASE WHEN o.state = 'delivered' THEN %(now)s ELSE t.delivered_at END,
    updated_at = %(now)s
FROM unnest(%(ids)s::bigint[], %(tokens)s::text[], %(states)s::text[], %(next)s::timestamptz[], %(codes)s::text[],
            %(messages)s::text[], %(tracking)s::text[], %(warnings)s::text[], %(refund)s::int[],
            %(paused)s::text[])
     AS o(id, token, state, next_at, code, message, tracking, warnings, refund, paused_reason)
WHERE t.id = o.id AND t.lease_token = o.token AND t.state = 'in_flight'
"""


class PostgresOutbox:
    """:class:`~msclkid_middleware.outbox.base.OutboxStore` on PostgreSQL, shared by many hosts.

    ``max_pending`` bounds the open rows (pending, in_flight, paused) with the reject-new policy of
    the SQLite store.  Concurrent enqueues from different sessions each see the count before the
    others commit, so the bound may be overshot by at most the number of concurrent writers.
    ``durability="power_loss"`` forces ``synchronous_commit=on`` for our sessions; ``"crash"`` (the
    default) leaves the server's own setting (PostgreSQL's default is already fsync on commit).
    """

    def __init__(
        self,
        config: PostgresConfig,
        *,
        durability: Durability = "crash",
        max_pending: int = _DEFAULT_MAX_PENDING,
        reconnect_attempts: int = 3,
    ) -> None:
        if durability not in ("crash", "power_loss"):
            raise ConfigError("durability must be 'crash' or 'power_loss'", setting="durability")
        if max_pending < 1:
            raise ConfigError("max_pending must be at least 1", setting="max_pending")
        self.url = config.safe_url
        self.durability: Durability = durability
        self.max_pending = max_pending
        self.db = _Database(config, durability=durability, reconnect_attempts=reconnect_attempts)
        self._lock = threading.Lock()
        self._counters: dict[str, int] = {}
        try:
            _migrate(self.db)
        except BaseException:
            self.db.close()
            raise

    @classmethod
    def from_url(cls, url: str, **options: Any) -> PostgresOutbox:
        """``options``: ``durability``, ``max_pending``, ``reconnect_attempts`` and the URL's own
        ``schema``, ``pool_min_size``, ``pool_max_size``, ``pool_timeout`` (which they override)."""
        url_options = {k: options.pop(k) for k in _OUR_PARAMS if k in options}
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

    def _count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counters[name] = self._counters.get(name, 0) + n

    def _fetch(self, query: str, params: Mapping[str, Any] | Sequence[Any] = ()) -> list[dict[str, Any]]:
        def run(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
            with conn.cursor(row_factory=dict_row) as cur:
                cur.execute(self.db.q(query), params)
                return cur.fetchall()

        return self._run("read", run)

    def _change(self, action: str, query: str, params: Mapping[str, Any] | Sequence[Any]) -> int:
        def run(conn: psycopg.Connection[Any]) -> int:
            cur = conn.execute(self.db.q(query), params)
            return max(cur.rowcount, 0)

        return self._run(action, run)

    def schema_version(self) -> int:
        rows = self._fetch("SELECT value FROM {s}.msclkid_outbox_meta WHERE name = 'schema_version'")
        return int(rows[0]["value"])

    def metrics(self) -> Mapping[str, int]:
        with self._lock:
            return dict(self._counters)

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
            raise _error(exc, "transaction") from exc

    # -- enqueue ----------------------------------------------------------------------------------
    def enqueue(self, row: NewRow, *, now: datetime, connection: Any = None) -> EnqueueResult:
        params = {
            "kind": row.kind,
            "account": row.account,
            "event_id": row.event_id,
            "key": row.idempotency_key,
            "payload": _dumps(dict(row.payload)),
            "conversion_name": row.conversion_name,
            "consent": None if row.consent is None else _dumps(dict(row.consent)),
            "state": row.state,
            "now": _aware(now),
            "expires_at": row.expires_at,
            "error_code": row.error_code,
            "error_message": row.error_message,
            "depends_on": row.depends_on,
            "max_pending": self.max_pending,
        }
        if connection is not None:
            # The transactional outbox: the application's connection and transaction; it commits.
            if not isinstance(connection, psycopg.Connection):
                raise ConfigError(
                    "connection= must be a psycopg (3) Connection to the outbox's database", setting="connection"
                )
            try:
                result = self._enqueue_on(connection, params)
            except psycopg.Error as exc:
                self._count("store_errors")
                raise _error(exc, "enqueue") from exc
        else:
            result = self._run("enqueue", lambda conn: self._enqueue_hit(self._enqueue_on(conn, params)))
        self._count("enqueued" if result.created else "duplicates")
        return result

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
                return EnqueueResult(_row(inserted), True)
            cur.execute(self.db.q(_EXISTING), params)
            existing = cur.fetchone()
        if existing is not None:
            return EnqueueResult(_row(existing), False)
        if params["state"] == "pending":
            self._count("overflow_rejected")
            raise OutboxFull(self.max_pending)
        # Not inserted, not full, no match: a concurrent row took the key and vanished (pruned).
        raise StoreError("outbox enqueue failed: a conflicting row disappeared; retry", reason="storage_conflict")

    # -- reads ------------------------------------------------------------------------------------
    def get(self, row_id: int) -> OutboxRow | None:
        rows = self._fetch("SELECT * FROM {s}.msclkid_outbox WHERE id = %s", (row_id,))
        return _row(rows[0]) if rows else None

    def find(self, event_id: str, *, kind: Kind | None = None, account: str | None = None) -> list[OutboxRow]:
        query = "SELECT * FROM {s}.msclkid_outbox WHERE event_id = %s"
        params: list[Any] = [event_id]
        if kind is not None:
            query += " AND kind = %s"
            params.append(kind)
        if account is not None:
            query += " AND account = %s"
            params.append(account)
        return [_row(r) for r in self._fetch(query + " ORDER BY id", params)]

    def counts(self) -> list[StateCount]:
        rows = self._fetch(
            "SELECT kind, conversion_name, state, last_error_code, COUNT(*) AS n FROM {s}.msclkid_outbox"
            " GROUP BY kind, conversion_name, state, last_error_code ORDER BY kind, conversion_name, state"
        )
        return [StateCount(r["kind"], r["conversion_name"], r["state"], r["last_error_code"], r["n"]) for r in rows]

    def scan(
        self, *, since: datetime | None = None, kinds: Collection[Kind] | None = None, page_size: int = 1000
    ) -> Iterator[OutboxRow]:
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        query = "SELECT * FROM {s}.msclkid_outbox WHERE id > %s"
        params: list[Any] = []
        if since is not None:
            query += " AND created_at >= %s"
            params.append(_aware(since))
        if kinds is not None:
            wanted = [k for k in kinds if k in KINDS]
            if not wanted:
                return
            query += " AND kind = ANY(%s)"
            params.append(wanted)
        # Keyset pages, each its own short read: no transaction or server cursor is held between pages.
        query += " ORDER BY id LIMIT %s"
        last = 0
        while True:
            page = self._fetch(query, [last, *params, page_size])
            for r in page:
                yield _row(r)
            if len(page) < page_size:
                return
            last = page[-1]["id"]

    def open_count(self) -> int:
        rows = self._fetch("SELECT COALESCE(sum(n), 0) AS n FROM {s}.msclkid_outbox_open")
        return int(rows[0]["n"])

    def next_due(self) -> datetime | None:
        rows = self._fetch(
            "SELECT LEAST((SELECT min(next_attempt_at) FROM {s}.msclkid_outbox WHERE state = 'pending'),"
            " (SELECT min(lease_expires_at) FROM {s}.msclkid_outbox WHERE state = 'in_flight')) AS t"
        )
        return _utc(rows[0]["t"])

    def paused_accounts(self) -> list[tuple[str, Kind, str]]:
        rows = self._fetch(
            "SELECT DISTINCT account, kind, paused_reason FROM {s}.msclkid_outbox WHERE state = 'paused'"
        )
        return [(r["account"], r["kind"], r["paused_reason"] or "") for r in rows]

    # -- claim and settle -------------------------------------------------------------------------
    def claim(
        self, *, owner: str, limit: int, now: datetime, lease_seconds: float, kinds: Collection[Kind] | None = None
    ) -> list[OutboxRow]:
        if limit < 1:
            return []
        wanted = list(KINDS) if kinds is None else [k for k in kinds if k in KINDS]
        if not wanted:
            return []
        params = {
            "owner": owner,
            "token": secrets.token_hex(16),
            "now": _aware(now),
            "expires": now + timedelta(seconds=lease_seconds),
            "kinds": wanted,
            "limit": limit,
        }
        rows = self._fetch(_CLAIM, params)
        self._count("claimed", len(rows))
        return sorted((_row(r) for r in rows), key=lambda r: r.id)

    def settle(self, outcomes: Sequence[Outcome], *, now: datetime) -> int:
        if not outcomes:
            return 0
        ordered = sorted(outcomes, key=lambda o: o.row_id)
        params = {
            "now": _aware(now),
            "ids": [o.row_id for o in ordered],
            "tokens": [o.lease_token for o in ordered],
            "states": [o.state for o in ordered],
            "next": [now if o.next_attempt_at is None else o.next_attempt_at for o in ordered],
            "codes": [o.error_code for o in ordered],
            "messages": [o.error_message for o in ordered],
            "tracking": [o.tracking_id for o in ordered],
            "warnings": [_dumps(list(o.warnings)) for o in ordered],
            "refund": [1 if o.refund_attempt else 0 for o in ordered],
            "paused": [o.error_message if o.state == "paused" else None for o in ordered],
        }

        def run(conn: psycopg.Connection[Any]) -> int:
            with conn.transaction():
                # Lock in id order first: two settles touching the same rows (a stale worker and the
                # one that took over) then queue instead of deadlocking.
                conn.execute(
                    self.db.q("SELECT id FROM {s}.msclkid_outbox WHERE id = ANY(%s) ORDER BY id FOR UPDATE"),
                    (params["ids"],),
                )
                applied = max(conn.execute(self.db.q(_SETTLE), params).rowcount, 0)
                faultpoints.hit("settle_txn")
                return applied

        applied = self._run("settle", run)
        if applied != len(outcomes):
            self._count("stale_acks", len(outcomes) - applied)
        return applied

    # -- pause, resume, maintenance ---------------------------------------------------------------
    def pause(self, *, account: str, kinds: Collection[Kind], reason: str, now: datetime) -> int:
        wanted = [k for k in kinds if k in KINDS]
        if not wanted:
            return 0
        return self._change(
            "pause",
            "UPDATE {s}.msclkid_outbox SET state = 'paused', paused_reason = %s, updated_at = %s"
            " WHERE state = 'pending' AND account = %s AND kind = ANY(%s)",
            (reason, _aware(now), account, wanted),
        )

    def resume(self, *, account: str | None = None, kinds: Collection[Kind] | None = None, now: datetime) -> int:
        query = (
            "UPDATE {s}.msclkid_outbox SET state = 'pending', paused_reason = NULL, next_attempt_at = %s,"
            " updated_at = %s WHERE state = 'paused'"
        )
        params: list[Any] = [_aware(now), now]
        if account is not None:
            query += " AND account = %s"
            params.append(account)
        if kinds is not None:
            query += " AND kind = ANY(%s)"
            params.append([k for k in kinds if k in KINDS])
        return self._change("resume", query, params)

    def fail_orphans(self, *, now: datetime) -> int:
        return self._change(
            "fail_orphans",
            "UPDATE {s}.msclkid_outbox AS a SET state = 'dead', last_error_code = 'original_not_delivered',"
            " last_error_message = 'the original event ended ' || o.state || '; the adjustment cannot apply',"
            " paused_reason = NULL, updated_at = %s"
            " FROM {s}.msclkid_outbox AS o"
            " WHERE o.id = a.depends_on AND a.state IN ('pending', 'paused')"
            " AND o.state IN ('rejected', 'dead', 'suppressed')",
            (_aware(now),),
        )

    def retry_dead(
        self, *, now: datetime, include_rejected: bool = False, event_id: str | None = None, reset_attempts: bool = True
    ) -> int:
        states = ["dead", "rejected"] if include_rejected else ["dead"]
        query = "UPDATE {s}.msclkid_outbox SET state = 'pending', next_attempt_at = %s, updated_at = %s"
        query += (", attempts = 0" if reset_attempts else "") + " WHERE state = ANY(%s)"
        params: list[Any] = [_aware(now), now, states]
        if event_id is not None:
            query += " AND event_id = %s"
            params.append(event_id)
        return self._change("retry_dead", query, params)

    def prune(self, *, before: datetime) -> int:
        count = self._change(
            "prune",
            "DELETE FROM {s}.msclkid_outbox AS t WHERE state IN ('delivered', 'rejected', 'dead', 'suppressed')"
            " AND updated_at < %s AND NOT EXISTS (SELECT 1 FROM {s}.msclkid_outbox AS a WHERE a.depends_on = t.id)",
            (_aware(before),),
        )
        self._count("pruned", count)
        return count

    # -- tokens -----------------------------------------------------------------------------------
    def load_token(self, name: str) -> TokenRecord | None:
        rows = self._fetch(
            "SELECT refresh_token, issued_at, serial, data FROM {s}.msclkid_tokens WHERE name = %s", (name,)
        )
        if not rows:
            return None
        r = rows[0]
        return TokenRecord(r["refresh_token"], r["issued_at"].astimezone(UTC), int(r["serial"]), json.loads(r["data"]))

    def save_token(self, name: str, record: TokenRecord) -> bool:
        """Never regress, under the row lock.

        ``INSERT ... ON CONFLICT DO UPDATE`` locks the stored row and evaluates the ``WHERE`` against
        its newest committed version, so of two hosts saving rotated tokens at once the newer
        ``(serial, issued_at)`` always ends up stored, whichever commits last.
        """
        params = (name, record.refresh_token, _aware(record.issued_at), record.serial, _dumps(dict(record.data)))
        count = self._change(
            "save_token",
            "INSERT INTO {s}.msclkid_tokens AS t (name, refresh_token, issued_at, serial, data, updated_at)"
            " VALUES (%s, %s, %s, %s, %s, now())"
            " ON CONFLICT (name) DO UPDATE SET refresh_token = excluded.refresh_token,"
            " issued_at = excluded.issued_at, serial = excluded.serial, data = excluded.data, updated_at = now()"
            " WHERE (excluded.serial, excluded.issued_at) > (t.serial, t.issued_at)",
            params,
        )
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
            raise _error(exc, "token lock") from exc
        try:
            try:
                # Waiters may queue behind a whole token request, so they wait up to a minute.
                conn.execute("SET lock_timeout = '60s'")
                conn.execute("SELECT pg_advisory_lock(%s)", (_lock_key("token", self.schema, name),))
            except psycopg.Error as exc:
                raise _error(exc, "token lock") from exc
            try:
                yield
            finally:
                with suppress(psycopg.Error):
                    conn.execute("SELECT pg_advisory_unlock(%s)", (_lock_key("token", self.schema, name),))
        finally:
            conn.close()


# -- profiles --------------------------------------------------------------------------------------
class PostgresProfileStore:
    """Server-side click profiles (:class:`~msclkid_middleware.capture.profiles.ProfileStore`) on PostgreSQL.

    ``PostgresProfileStore("postgresql://...?schema=msclkid")`` opens its own small pool (lazily,
    on first use); ``PostgresProfileStore(outbox)`` shares an open :class:`PostgresOutbox`'s pool and
    schema.  Keeps only the newest click per visitor, atomically (a conditional upsert), so web
    hosts racing on the same visitor never go back to an older click.  Failures raise
    :class:`~msclkid_middleware.errors.StoreError` (the middleware logs them and carries on).
    """

    def __init__(self, target: str | PostgresOutbox, **options: Any) -> None:
        if isinstance(target, PostgresOutbox):
            self._db = target.db
            self._owns = False
        else:
            url_options = {k: options.pop(k) for k in _OUR_PARAMS if k in options}
            url_options.setdefault("pool_max_size", 4)
            self._db = _Database(parse_postgres_url(target, **url_options), **options)
            self._owns = True
        self.url = self._db.config.safe_url
        self._ready = not self._owns
        self._ready_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"PostgresProfileStore({self.url!r})"

    def _run(self, action: str, fn: Callable[[psycopg.Connection[Any]], T]) -> T:
        if not self._ready:
            with self._ready_lock:
                if not self._ready:
                    _migrate(self._db)
                    self._ready = True
        try:
            return self._db.run(action, fn, on_error=lambda: None)
        except StoreError as exc:
            raise StoreError(str(exc).replace("outbox", "profile store", 1), reason=action) from exc

    def get(self, visitor_id: str) -> Click | None:
        def run(conn: psycopg.Connection[Any]) -> tuple[Any, ...] | None:
            return conn.execute(
                self._db.q("SELECT msclkid, captured_at FROM {s}.msclkid_profiles WHERE visitor_id = %s"),
                (visitor_id,),
            ).fetchone()

        found = self._run("profile_read", run)
        if found is None:
            return None
        return Click(str(found[0]), found[1].astimezone(UTC), "profile")

    def put(self, visitor_id: str, click: Click) -> None:
        from msclkid_middleware.capture.profiles import _check_visitor_id

        _check_visitor_id(visitor_id)
        self._run(
            "profile_write",
            lambda conn: conn.execute(
                self._db.q(
                    "INSERT INTO {s}.msclkid_profiles AS p (visitor_id, msclkid, captured_at) VALUES (%s, %s, %s)"
                    " ON CONFLICT (visitor_id) DO UPDATE SET msclkid = excluded.msclkid,"
                    " captured_at = excluded.captured_at WHERE excluded.captured_at > p.captured_at"
                ),
                (visitor_id, click.msclkid, click.captured_at),
            ),
        )

    def close(self) -> None:
        """Close the pool this store opened (a shared outbox pool is closed by the outbox)."""
        if self._owns:
            self._db.close()
