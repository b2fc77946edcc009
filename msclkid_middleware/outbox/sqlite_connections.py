"""The SQLite outbox's connections: one per thread (and one for bulk writes), each with the lock its thread holds
while using it, the short ``BEGIN IMMEDIATE`` transactions, ``close()`` and the fork hooks.

:class:`~msclkid_middleware.outbox.sqlite.SqliteOutbox` builds on this; the statements live there and in
``sqlite_schema.py``.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from msclkid_middleware.errors import ClosedError
from msclkid_middleware.outbox.base import Counters, Durability
from msclkid_middleware.outbox.sqlite_connect import store_error
from msclkid_middleware.outbox.sqlite_schema import BULK_CACHE_KIB

__all__ = ["SqliteConnections"]

_SYNCHRONOUS = {"crash": "NORMAL", "power_loss": "FULL"}


class SqliteConnections:
    """Per-thread connections to one SQLite file, closed safely under concurrent use, re-opened after ``fork()``."""

    def __init__(
        self, path: str | os.PathLike[str], *, durability: Durability, busy_timeout: float, wal_autocheckpoint: int
    ) -> None:
        self.path = os.fspath(path)
        self.durability: Durability = durability
        self.busy_timeout = busy_timeout
        self.wal_autocheckpoint = wal_autocheckpoint
        self._local = threading.local()
        self._lock = threading.Lock()
        self._pid = os.getpid()
        # Each thread's connection with the re-entrant lock its thread holds while using it: close() takes
        # every lock before closing, so no connection is closed under a statement another thread runs
        # (check_same_thread=False lets it try, and sqlite3 then crashes the interpreter).
        self._connections: list[tuple[sqlite3.Connection, threading.RLock]] = []
        self._closed = threading.Event()
        self._counters = Counters()
        # A fork while another thread is inside a transaction leaves SQLite's per-process lock records in the child
        # claiming a lock nobody there holds: the child's first write waits busy_timeout and fails ("database is
        # locked").  So a fork waits for statements in progress, as close() does (the hooks hold a weak reference).
        self._fork_guards: list[threading.RLock] = []
        if hasattr(os, "register_at_fork"):  # POSIX
            ref, release = weakref.ref(self), lambda: _at_fork(ref, hold=False)
            hold = lambda: _at_fork(ref, hold=True)  # noqa: E731 - a hook, named for the call below
            os.register_at_fork(before=hold, after_in_parent=release, after_in_child=release)

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
            raise store_error(exc, "open") from exc
        return conn

    def _conn(self) -> sqlite3.Connection:
        """This thread's connection (opened on first use)."""
        return self._held()[0]

    def _held(self) -> tuple[sqlite3.Connection, threading.RLock]:
        pid = os.getpid()
        if pid != self._pid:
            # After fork the parent's connections must not be used (SQLite forbids carrying an
            # open connection across fork); abandon them without closing, and start afresh.
            with self._lock:
                if pid != self._pid:
                    self._pid = pid
                    self._connections = []
                    self._local = threading.local()
        held: tuple[sqlite3.Connection, threading.RLock] | None = getattr(self._local, "held", None)
        if held is None:
            if self._closed.is_set():
                raise ClosedError
            held = (self._connect(), threading.RLock())
            with self._lock:
                if self._closed.is_set():
                    held[0].close()
                    raise ClosedError
                self._connections.append(held)
            self._local.held = held
        return held

    @contextmanager
    def _using(self) -> Iterator[sqlite3.Connection]:
        """This thread's connection, held against close() for the block; :class:`ClosedError` once closed."""
        conn, guard = self._held()
        with guard:
            if self._closed.is_set():
                raise ClosedError
            yield conn

    @contextmanager
    def _write(self, action: str) -> Iterator[sqlite3.Connection]:
        """A short ``BEGIN IMMEDIATE`` transaction on this thread's connection."""
        with self._using() as conn, self._begin(conn, action):
            yield conn

    @contextmanager
    def _begin(self, conn: sqlite3.Connection, action: str) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` on ``conn`` (rolled back on any error)."""
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            self._counters.add("store_errors")
            raise store_error(exc, action) from exc
        try:
            yield conn
        except BaseException as exc:
            # The transaction may already be gone (SQLITE_FULL rolls it back itself).
            with suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                self._counters.add("store_errors")
                raise store_error(exc, action) from exc
            raise
        else:
            try:
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                self._counters.add("store_errors")
                with suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise store_error(exc, action) from exc

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` on a bulk-write connection of this thread's, for ``enqueue(connection=...)``.

        Not the thread's usual connection: the thread may still read through the store while the batch is
        open.  The connection stays open for the thread's next batch, so its page cache (sized for bulk
        writes: :data:`BULK_CACHE_KIB`) is still warm; ``close()`` closes it with the others.
        """
        conn, guard = self._bulk()
        with guard:
            if self._closed.is_set():
                raise ClosedError
            with self._begin(conn, "transaction"):
                yield conn

    def _bulk(self) -> tuple[sqlite3.Connection, threading.RLock]:
        self._held()  # the fork check, and ClosedError once closed
        held: tuple[sqlite3.Connection, threading.RLock] | None = getattr(self._local, "bulk", None)
        if held is None:
            # The store's durability, as every connection (_connect): WAL with synchronous=NORMAL by default, so a
            # committed batch survives the process being killed and a commit costs no fsync (checkpoints sync);
            # "power_loss" keeps FULL.  Never OFF: the batches an import committed are what its re-run skips.
            conn = self._connect()
            conn.execute(f"PRAGMA cache_size = -{BULK_CACHE_KIB}")
            held = (conn, threading.RLock())
            with self._lock:
                if self._closed.is_set():
                    conn.close()
                    raise ClosedError
                self._connections.append(held)
            self._local.bulk = held
        return held

    def close(self) -> None:
        """Close every thread's connection; later calls raise :class:`~msclkid_middleware.errors.ClosedError`.

        A statement or transaction another thread is running finishes first (its commit is kept):
        each connection is closed under the lock its thread holds while using it.  Idempotent.
        """
        with self._lock:
            self._closed.set()
            connections, self._connections = self._connections, []
            self._local = threading.local()
        for conn, guard in connections:
            with guard, suppress(sqlite3.Error):
                conn.close()

    def hold_for_fork(self, hold: bool) -> None:
        """Take (``hold``) or give back every connection's lock around a ``fork()``: none is mid-transaction then."""
        if hold:
            with self._lock:
                guards = [guard for _, guard in self._connections]
            for guard in guards:
                guard.acquire()
            self._fork_guards = guards
        else:
            guards, self._fork_guards = self._fork_guards, []
            for guard in reversed(guards):
                guard.release()


def _at_fork(ref: weakref.ref[SqliteConnections], *, hold: bool) -> None:
    store = ref()
    if store is not None:
        store.hold_for_fork(hold)
