"""Where a SQLite outbox lives and what its errors mean: the URL spelling and the ``StoreError`` mapping."""

from __future__ import annotations

import sqlite3

from msclkid_middleware.errors import ConfigError, StoreError

__all__ = ["sqlite_path_from_url", "store_error"]


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


def store_error(exc: sqlite3.Error, action: str) -> StoreError:
    """A ``StoreError`` whose ``reason`` says what went wrong (full disk, a lock, anything else)."""
    name = getattr(exc, "sqlite_errorname", "")
    text = str(exc)
    if name == "SQLITE_FULL" or "disk is full" in text:
        reason = "storage_full"
    elif name.startswith("SQLITE_BUSY") or "locked" in text:
        reason = "storage_locked"
    else:
        reason = "storage_error"
    return StoreError(f"outbox {action} failed: {text}", reason=reason)
