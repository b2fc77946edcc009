"""The emulator's world: accounts, goals, clicks, UET tags, and the journal of everything received.

Configuration objects (goals, clicks, tags) live in memory; the journal (received items, request log,
token issue log) is kept in memory or, when a SQLite path is given, written through to that file so a
person can inspect a run after the process has exited.  All access goes through :class:`Journal` under
the emulator's lock; this module starts no threads and opens nothing at import time.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Literal, Self

from msclkid_middleware.emulator.clock import iso, parse_datetime

__all__ = [
    "Account",
    "Goal",
    "Journal",
    "JsonRecord",
    "Outcome",
    "ReceivedItem",
    "RequestRecord",
    "TokenRecord",
    "UetTag",
]

Outcome = Literal["accepted", "rejected", "duplicate"]


class JsonRecord:
    """``to_json`` / ``from_json`` for a frozen dataclass: times as ISO strings, tuples as lists (a mixin)."""

    __slots__ = ()
    _TIMES: ClassVar[tuple[str, ...]] = ()
    _TUPLES: ClassVar[tuple[str, ...]] = ()

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = dataclasses.asdict(self)  # type: ignore[call-overload]
        for name in self._TIMES:
            data[name] = iso(getattr(self, name))
        for name in self._TUPLES:
            data[name] = list(getattr(self, name))
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        values = dict(data)
        for name in cls._TIMES:
            values[name] = parse_datetime(values[name])
        for name in cls._TUPLES:
            values[name] = tuple(values.get(name, ()))
        return cls(**values)


@dataclass(frozen=True, slots=True)
class Account:
    customer_id: str
    account_id: str


# Each JsonRecord below names its own times and fields; the records are alike in shape only.
@dataclass(frozen=True, slots=True)
class Goal(JsonRecord):
    """An offline (or other) conversion goal as Campaign Management would hold it."""

    _TIMES = ("created_at",)

    name: str
    id: int
    account_id: str
    created_at: datetime
    type: str = "OfflineConversion"
    conversion_window_minutes: int = 43200
    currency: str | None = "USD"
    revenue_value: float | None = None
    count_type: str = "All"
    status: str = "Active"
    enhanced: bool = False
    adjustments_supported: bool = True
    category: str = "Purchase"
    tag_id: str | None = None
    #: ``Account`` or ``Customer`` (read-only after creation, as at Microsoft).
    scope: str = "Account"
    #: ``None``: derived from currency/value (the emulator's older goals); else FixedValue/VariableValue/NoValue.
    revenue_type: str | None = None
    exclude_from_bidding: bool = False
    #: Microsoft: "Not applicable for offline conversion goals" (both stay ``None`` for them).
    attribution_model: str | None = None
    view_through_window_minutes: int | None = None
    is_auto_goal: bool = False


@dataclass(frozen=True, slots=True)
class UetTag:
    tag_id: str
    token: str
    account_id: str
    name: str = "Default tag"
    #: ``UetTagTrackingStatus``: Unverified, Active or Inactive.
    tracking_status: str = "Active"


@dataclass(frozen=True, slots=True)
class ReceivedItem(JsonRecord):
    """One item (conversion, adjustment or UET event) as received, with what the emulator did with it."""

    _TIMES = ("received_at",)
    _TUPLES = ("notes", "warnings")

    seq: int
    kind: str  # "offline" | "offline_adjustments" | "online_adjustments" | "uet"
    account: str  # CustomerAccountId, or the UET tag ID
    tracking_id: str
    index: int
    received_at: datetime
    outcome: Outcome
    payload: Any
    code: int | str | None = None
    error_code: str | None = None
    message: str | None = None
    field_path: str | None = None
    notes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RequestRecord(JsonRecord):
    _TIMES = ("at",)

    seq: int
    endpoint: str
    method: str
    path: str
    status: int | None  # None: the connection was dropped
    tracking_id: str
    at: datetime
    fault: str | None = None
    items: int = 0


@dataclass(frozen=True, slots=True)
class TokenRecord(JsonRecord):
    """One token endpoint answer: what was asked and, on success, the serial of the refresh token issued."""

    _TIMES = ("at",)
    _TUPLES = ("error_codes",)

    seq: int
    at: datetime
    grant_type: str
    outcome: str  # "issued" or the OAuth error name
    serial: int | None = None
    parent_serial: int | None = None
    refresh_token: str | None = None
    client_id: str | None = None
    error_codes: tuple[int, ...] = ()


_STREAMS: dict[str, type[JsonRecord]] = {"received": ReceivedItem, "requests": RequestRecord, "tokens": TokenRecord}


@dataclass
class Journal:
    """Append-only record streams, in memory or written through to SQLite. Not locked: callers hold the lock."""

    path: str | None = None
    _memory: dict[str, list[Any]] = field(default_factory=lambda: {name: [] for name in _STREAMS})
    _db: sqlite3.Connection | None = None
    _seq: int = 0
    _db_lock: threading.Lock = field(default_factory=threading.Lock)

    def open(self) -> None:
        if self.path is None or self._db is not None:
            return
        # One connection shared by the server threads; every use is under _db_lock.
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # An inspection journal, not a ledger: no fsync per batch.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS journal (seq INTEGER PRIMARY KEY, stream TEXT NOT NULL,"
            " kind TEXT, account TEXT, outcome TEXT, data TEXT NOT NULL)"
        )
        row = self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM journal").fetchone()
        self._seq = int(row[0])

    def close(self) -> None:
        if self._db is not None:
            with self._db_lock:
                self._db.close()
            self._db = None

    def next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def append(self, stream: str, record: ReceivedItem | RequestRecord | TokenRecord) -> None:
        if self._db is None:
            self._memory[stream].append(record)
            return
        kind = getattr(record, "kind", None)
        account = getattr(record, "account", None)
        outcome = getattr(record, "outcome", None)
        with self._db_lock:
            self._db.execute(
                "INSERT INTO journal (seq, stream, kind, account, outcome, data) VALUES (?, ?, ?, ?, ?, ?)",
                (record.seq, stream, kind, account, outcome, json.dumps(record.to_json())),
            )

    def extend(self, stream: str, records: list[ReceivedItem]) -> None:
        if self._db is None:
            self._memory[stream].extend(records)
            return
        rows = [(r.seq, stream, r.kind, r.account, r.outcome, json.dumps(r.to_json(), default=str)) for r in records]
        with self._db_lock:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO journal (seq, stream, kind, account, outcome, data) VALUES (?, ?, ?, ?, ?, ?)", rows
            )
            self._db.execute("COMMIT")

    def iter(self, stream: str) -> Iterator[Any]:
        if self._db is None:
            yield from list(self._memory[stream])
            return
        factory = _STREAMS[stream]
        with self._db_lock:
            rows = self._db.execute("SELECT data FROM journal WHERE stream = ? ORDER BY seq", (stream,)).fetchall()
        for (data,) in rows:
            yield factory.from_json(json.loads(data))

    def clear(self) -> None:
        for records in self._memory.values():
            records.clear()
        if self._db is not None:
            with self._db_lock:
                self._db.execute("DELETE FROM journal")
