"""Fixtures for the dispatch suite: the emulator, an injectable clock, a tracker on a fresh SQLite file and the
backend-parametrised ``store`` (SQLite and PostgreSQL).

They are the outbox suite's own fixtures (one definition, shared), re-exported here for ``tests/dispatch/``.
"""

from __future__ import annotations

from tests.outbox.conftest import clock, make_store, ms, pg_schemas, store, store_url, tracker

__all__ = ["clock", "make_store", "ms", "pg_schemas", "store", "store_url", "tracker"]
