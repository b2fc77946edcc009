"""PostgreSQL connections for the outbox and the profile store: the URL, a fork-aware pool, errors.

``postgresql://user:password@host:5432/dbname?schema=msclkid&pool_max_size=8`` (``postgres://``
too).  Our own query parameters (removed before the rest goes to libpq): ``schema`` (created when
missing; default: the connection's ``current_schema()``, so ``?options=-csearch_path%3Dname`` works
as well), ``pool_min_size``, ``pool_max_size``, ``pool_timeout`` (seconds to wait for a
connection).  Everything else (``sslmode``, ``connect_timeout``, ``application_name``, ...) is libpq's.
"""

from __future__ import annotations

import os
import re
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import unquote, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool, PoolClosed

from msclkid_middleware.errors import ClosedError, ConfigError, StoreError
from msclkid_middleware.outbox.base import Durability

__all__ = [
    "URL_OPTIONS",
    "Database",
    "PostgresConfig",
    "is_connection_error",
    "lock_key",
    "parse_postgres_url",
    "store_error",
]

T = TypeVar("T")

_SCHEMA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,62}$")
#: Our own query parameters of the URL (also accepted as keyword options, which override them).
URL_OPTIONS = ("schema", "pool_min_size", "pool_max_size", "pool_timeout")
#: SQLSTATE classes meaning "the connection, not the statement, failed": retry on a fresh one.
_CONNECTION_SQLSTATES = ("08", "57P01", "57P02", "57P03")


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
        if unquote(key) in URL_OPTIONS:
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
def is_connection_error(exc: BaseException) -> bool:
    if not isinstance(exc, psycopg.OperationalError):
        return False
    state = getattr(exc, "sqlstate", None)
    # No SQLSTATE: a client-side failure (server closed the connection, pool timeout, cannot connect).
    return state is None or state.startswith(_CONNECTION_SQLSTATES)


def store_error(exc: psycopg.Error, action: str) -> StoreError:
    state = getattr(exc, "sqlstate", None) or ""
    if is_connection_error(exc):
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


# -- the pool --------------------------------------------------------------------------------------
class Database:
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
                raise ClosedError("PostgreSQL outbox")
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
                    raise store_error(exc, "connect") from exc
            return self._pool

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        with ExitStack() as stack:
            try:
                conn = stack.enter_context(self.pool().connection())
            except PoolClosed as exc:  # close() ran between pool() and the checkout
                raise ClosedError("PostgreSQL outbox") from exc
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
                if is_connection_error(exc) and attempt < self.reconnect_attempts:
                    with suppress(Exception):
                        self.pool().check()
                    time.sleep(0.05 * attempt)
                    continue
                on_error()
                raise store_error(exc, action) from exc

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


def lock_key(*parts: str) -> int:
    """A stable signed 64-bit advisory-lock key for this schema and purpose."""
    digest = zlib.crc32("\x00".join(parts).encode())
    return (0x6D73636C << 32 | digest) - (1 << 63)  # 'mscl' in the high half keeps us apart from others
