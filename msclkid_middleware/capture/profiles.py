"""Server-side profiles: a known visitor's newest click, for when the browser has no cookie.

A visitor clicks an ad on the phone and buys on the laptop after logging in: the laptop has no
click cookie, but the shop knows the visitor.  When the middleware is given
``visitor_id=callable`` and a :class:`ProfileStore`, it saves the newest click of each known
visitor (only when consent allows) and :func:`~msclkid_middleware.get_click` falls back to it.

This module holds the protocol and an in-memory store; the database-backed stores live with the
outbox: ``from msclkid_middleware.outbox import SqliteProfileStore, PostgresProfileStore`` (each
imported only when used, so neither ``sqlite3`` nor the PostgreSQL driver is loaded otherwise).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Protocol, runtime_checkable

from msclkid_middleware.capture.clickid import Click
from msclkid_middleware.errors import ConfigError

__all__ = ["MAX_VISITOR_ID_LENGTH", "MemoryProfileStore", "ProfileStore", "check_visitor_id"]


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


def check_visitor_id(visitor_id: str) -> None:
    """Raise ``ValueError`` unless ``visitor_id`` is a key every profile store accepts."""
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
        check_visitor_id(visitor_id)
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
