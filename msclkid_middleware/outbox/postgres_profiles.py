"""Click profiles (:class:`~msclkid_middleware.capture.profiles.ProfileStore`) on PostgreSQL, shared by web hosts.

The table lives in the outbox's schema and comes with its migrations, so an outbox and its profile
store on the same URL share one schema (and, built on an open outbox, one pool).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC
from typing import Any, TypeVar

import psycopg

from msclkid_middleware.capture.clickid import Click
from msclkid_middleware.capture.profiles import check_visitor_id
from msclkid_middleware.errors import StoreError
from msclkid_middleware.outbox.postgres import PostgresOutbox
from msclkid_middleware.outbox.postgres_connect import URL_OPTIONS, Database, parse_postgres_url
from msclkid_middleware.outbox.postgres_schema import migrate

__all__ = ["PostgresProfileStore"]

T = TypeVar("T")


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
            url_options = {k: options.pop(k) for k in URL_OPTIONS if k in options}
            url_options.setdefault("pool_max_size", 4)
            self._db = Database(parse_postgres_url(target, **url_options), **options)
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
                    migrate(self._db)
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
        check_visitor_id(visitor_id)
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
