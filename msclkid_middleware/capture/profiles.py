"""Server-side profiles: a known visitor's newest click, for when the browser has no cookie.

A visitor clicks an ad on the phone and buys on the laptop after logging in: the laptop has no
click cookie, but the shop knows the visitor.  When the middleware is given
``visitor_id=callable`` and a :class:`ProfileStore`, it saves the newest click of each known
visitor (only when consent allows) and :func:`~msclkid_middleware.get_click` falls back to it.

``sqlite3`` is imported when a :class:`SqliteProfileStore` first opens its database, so importing
this module (or the package root) stays cheap.  ``PostgresProfileStore`` (the ``postgres`` extra,
shared by several web hosts) lives in :mod:`msclkid_middleware.outbox.postgres` and is resolved
from here lazily, so the driver is imported only when it is used.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from msclkid_middleware.capture.clickid import Click
from msclkid_middleware.errors import ConfigError, StoreError

if TYPE_CHECKING:  # pragma: no cover
    import sqlite3

    from msclkid_middleware.outbox.postgres import PostgresProfileStore as PostgresProfileStore

# PostgresProfileStore stays out of __all__: ``import *`` must work without the postgres extra.
__all__ = ["MemoryProfileStore", "ProfileStore", "SqliteProfileStore"]


def __getattr__(name: str) -> object:
    if name == "PostgresProfileStore":
        from msclkid_middleware.outbox.postgres import PostgresProfileStore

        return PostgresProfileStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


#: Visitor IDs are the shop's own keys (user IDs, hashed emails); longer ones are refused.
MAX_VISITOR_ID_LENGTH = 256


@runtime_checkable
class ProfileStore(Protocol):
    """Where the newest click of each known visitor is kept."""

    def get(self, visitor_id: str) -> Click | None:
        """The visitor's newest click (``source="profile"``), or ``None``."""
        ...

    def put(self, visitor_id: str, click: Click) -> None:
        """Remember ``click`` unless the visitor already has a click captured at the same time or later."""
        ...


def _check_visitor_id(visitor_id: str) -> None:
    if not isinstance(visitor_id, str) or not visitor_id or len(visitor_id) > MAX_VISITOR_ID_LENGTH:
        raise ValueError(f"visitor_id must be a non-empty string of at most {MAX_VISITOR_ID_LENGTH} characters")


def _as_profile(click: Click) -> Click:
    return click if click.source == "profile" else Click(click.msclkid, click.captured_at, "profile")


class MemoryProfileStore:
    """A thread-safe, bounded in-process store (tests, single-process development servers).

    Holds at most ``max_visitors`` entries; the least recently written visitor is dropped first.
    """

    def __init__(self, *, max_visitors: int = 100_000) -> None:
        if max_visitors < 1:
            raise ConfigError("max_visitors must be at least 1", setting="max_visitors")
        self._max = max_visitors
        self._lock = threading.Lock()
        self._clicks: OrderedDict[str, Click] = OrderedDict()

    def get(self, visitor_id: str) -> Click | None:
        with self._lock:
            return self._clicks.get(visitor_id)

    def put(self, visitor_id: str, click: Click) -> None:
        _check_visitor_id(visitor_id)
        stored = _as_profile(click)
        with self._lock:
            current = self._clicks.get(visitor_id)
            if current is not None and current.captured_at >= stored.captured_at:
                return
            self._clicks[visitor_id] = stored
            self._clicks.move_to_end(visitor_id)
            while len(self._clicks) > self._max:
                self._clicks.popitem(last=False)

    def __len__(self) -> int:
        with self._lock:
            return len(self._clicks)


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
        import sqlite3

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
        import sqlite3

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
        _check_visitor_id(visitor_id)
        import sqlite3

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
