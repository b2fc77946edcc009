"""Click profiles (:class:`~msclkid_middleware.capture.profiles.ProfileStore`) in a SQLite file.

Imported from :mod:`msclkid_middleware.outbox` only when used, so ``sqlite3`` stays out of a
process that never opens one.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from datetime import UTC, datetime

from msclkid_middleware.capture.clickid import Click
from msclkid_middleware.capture.profiles import check_visitor_id
from msclkid_middleware.errors import ConfigError, StoreError
from msclkid_middleware.tokens import create_private

__all__ = ["SqliteProfileStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS msclkid_profiles (
    visitor_id  TEXT PRIMARY KEY,
    msclkid     TEXT NOT NULL,
    captured_at INTEGER NOT NULL
)
"""
# Keep only the newest click: the update happens only when the new one is strictly newer.
_UPSERT = """
INSERT INTO msclkid_profiles (visitor_id, msclkid, captured_at) VALUES (?, ?, ?)
ON CONFLICT (visitor_id) DO UPDATE SET msclkid = excluded.msclkid, captured_at = excluded.captured_at
WHERE excluded.captured_at > msclkid_profiles.captured_at
"""


class SqliteProfileStore:
    """Profiles in a SQLite file (WAL, busy timeout), safe across threads and processes.

    Each thread gets its own connection, opened on first use; nothing is opened at construction.
    Failures raise :class:`~msclkid_middleware.errors.StoreError` (the middleware logs and
    carries on without the profile).
    """

    def __init__(self, path: str, *, busy_timeout: float = 5.0) -> None:
        if not path or path == ":memory:":
            raise ConfigError(
                "SqliteProfileStore needs a file path (':memory:' would give each thread its own empty database); "
                "use MemoryProfileStore for an in-process store",
                setting="profile_store",
            )
        self.path = str(path)
        self.busy_timeout = busy_timeout
        self._local = threading.local()
        self._schema_lock = threading.Lock()
        self._schema_ready = False

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        with contextlib.suppress(OSError):  # private like the outbox: it links visitors to clicks
            create_private(self.path)
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=True)
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
        if not self._schema_ready:
            with self._schema_lock:
                if not self._schema_ready:
                    conn.execute("PRAGMA journal_mode = WAL")
                    conn.execute(_SCHEMA)
                    self._schema_ready = True
        conn.execute("PRAGMA synchronous = NORMAL")
        self._local.conn = conn
        return conn

    def get(self, visitor_id: str) -> Click | None:
        try:
            row = (
                self._connection()
                .execute("SELECT msclkid, captured_at FROM msclkid_profiles WHERE visitor_id = ?", (visitor_id,))
                .fetchone()
            )
        except sqlite3.Error as exc:
            raise StoreError(f"profile store read failed: {exc}", reason="profile_read") from exc
        if row is None:
            return None
        return Click(str(row[0]), datetime.fromtimestamp(int(row[1]), UTC), "profile")

    def put(self, visitor_id: str, click: Click) -> None:
        check_visitor_id(visitor_id)

        try:
            self._connection().execute(_UPSERT, (visitor_id, click.msclkid, int(click.captured_at.timestamp())))
        except sqlite3.Error as exc:
            raise StoreError(f"profile store write failed: {exc}", reason="profile_write") from exc

    def close(self) -> None:
        """Close this thread's connection (other threads' connections close when they end)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
