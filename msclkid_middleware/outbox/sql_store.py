"""The :class:`~msclkid_middleware.outbox.base.OutboxStore` methods whose SQL both stores share.

A store subclasses :class:`SqlStore`, names its :class:`~msclkid_middleware.outbox.sql.Queries`, and
supplies how a statement is read (``_fetch``), how a write runs in one short transaction (``_change``) and
how due rows are leased (``_claim``).  What differs between the databases (enqueue, the claim statement,
settle, locks) stays in the store.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from msclkid_middleware.outbox.base import ClaimedRow, Counters, Kind, OutboxRow, StateCount, TokenRecord
from msclkid_middleware.outbox.rows import Record, decode_claimed, decode_row, decode_token, state_count
from msclkid_middleware.outbox.sql import Queries, known_kinds

__all__ = ["SqlStore"]


class SqlStore(ABC):
    """Reads, claims, maintenance and token reads over the shared statements; a store supplies the hooks."""

    queries: Queries
    _counters: Counters
    #: What a claim's ``RETURNING`` lists: the whole row (:meth:`claim`), or what a request needs (:meth:`claim_batch`).
    row_columns: str
    claimed_columns: str

    @abstractmethod
    def _fetch(self, query: str, params: Mapping[str, Any] = {}) -> Sequence[Record]:
        """Run a read statement and return its rows."""

    @abstractmethod
    def _change(self, action: str, query: str, params: Mapping[str, Any], *, opens: int = 0) -> int:
        """Run a write statement in one short transaction and return how many rows it changed.

        ``opens`` is what each changed row does to the open-row count (``1``: a closed row reopened, ``-1``: an
        open row closed, ``0``: neither); a store whose database keeps that count itself (triggers) ignores it.
        """

    @abstractmethod
    def _claim(
        self, owner: str, limit: int, now: datetime, lease_seconds: float, kinds: list[str] | None, returning: str
    ) -> Sequence[Record]:
        """Lease up to ``limit`` (at least 1) due rows of ``kinds`` (``None``: every kind; never empty) to ``owner``.

        Returns the ``returning`` columns of the leased rows, in no particular order.
        """

    def _count(self, name: str, n: int = 1) -> None:
        self._counters.add(name, n)

    def _time(self, value: datetime) -> object:
        return self.queries.d.write_time(value)

    def _row(self, record: Record) -> OutboxRow:
        return decode_row(record, self.queries.d.read_time)

    def metrics(self) -> Mapping[str, int]:
        return self._counters.snapshot()

    # -- reads ------------------------------------------------------------------------------------
    def get(self, row_id: int) -> OutboxRow | None:
        found = self._fetch(self.queries.get, {"id": row_id})
        return self._row(found[0]) if found else None

    def find(self, event_id: str, *, kind: Kind | None = None, account: str | None = None) -> list[OutboxRow]:
        query = self.queries.find(kind=kind is not None, account=account is not None)
        return [self._row(r) for r in self._fetch(query, {"event_id": event_id, "kind": kind, "account": account})]

    def counts(self) -> list[StateCount]:
        return [state_count(r) for r in self._fetch(self.queries.counts)]

    def scan(
        self, *, since: datetime | None = None, kinds: Collection[Kind] | None = None, page_size: int = 1000
    ) -> Iterator[OutboxRow]:
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        query = self.queries.scan(since=since is not None, kinds=kinds)
        params: dict[str, Any] = {"since": None if since is None else self._time(since), "limit": page_size}
        last = 0
        while True:
            # Keyset pages, each its own short read: no transaction or cursor is held between pages.
            page = self._fetch(query, {**params, "last": last})
            for r in page:
                yield self._row(r)
            if len(page) < page_size:
                return
            last = page[-1]["id"]

    def next_due(self) -> datetime | None:
        return self.queries.d.read_time(self._fetch(self.queries.next_due)[0]["due"])

    def paused_accounts(self) -> list[tuple[str, Kind, str]]:
        return [(r["account"], r["kind"], r["paused_reason"] or "") for r in self._fetch(self.queries.paused_accounts)]

    # -- claims -----------------------------------------------------------------------------------
    def claim(
        self, *, owner: str, limit: int, now: datetime, lease_seconds: float, kinds: Collection[Kind] | None = None
    ) -> list[OutboxRow]:
        claimed = self._leased(owner, limit, now, lease_seconds, kinds, self.row_columns)
        return sorted((self._row(r) for r in claimed), key=lambda r: r.id)

    def claim_batch(
        self, *, owner: str, limit: int, now: datetime, lease_seconds: float, kinds: Collection[Kind] | None = None
    ) -> list[ClaimedRow]:
        claimed = self._leased(owner, limit, now, lease_seconds, kinds, self.claimed_columns)
        return sorted((decode_claimed(r, self.queries.d.read_time) for r in claimed), key=lambda r: r.id)

    def _leased(
        self, owner: str, limit: int, now: datetime, seconds: float, kinds: Collection[Kind] | None, returning: str
    ) -> Sequence[Record]:
        wanted = None if kinds is None else known_kinds(kinds)
        if limit < 1 or wanted == []:
            return []  # a filter naming no real kind matches nothing
        claimed = self._claim(owner, limit, now, seconds, wanted, returning)
        self._count("claimed", len(claimed))
        return claimed

    # -- pause, resume, maintenance ---------------------------------------------------------------
    def pause(self, *, account: str, kinds: Collection[Kind], reason: str, now: datetime) -> int:
        if not known_kinds(kinds):
            return 0
        params = {"reason": reason, "now": self._time(now), "account": account}
        return self._change("pause", self.queries.pause(kinds), params)

    def resume(self, *, account: str | None = None, kinds: Collection[Kind] | None = None, now: datetime) -> int:
        query = self.queries.resume(account=account is not None, kinds=kinds)
        return self._change("resume", query, {"now": self._time(now), "account": account})

    def fail_orphans(self, *, now: datetime) -> int:
        # pending or paused -> dead
        return self._change("fail_orphans", self.queries.fail_orphans, {"now": self._time(now)}, opens=-1)

    def retry_dead(
        self, *, now: datetime, include_rejected: bool = False, event_id: str | None = None, reset_attempts: bool = True
    ) -> int:
        query = self.queries.retry_dead(
            include_rejected=include_rejected, event_id=event_id is not None, reset_attempts=reset_attempts
        )
        # dead or rejected -> pending
        return self._change("retry_dead", query, {"now": self._time(now), "event_id": event_id}, opens=1)

    def prune(self, *, before: datetime) -> int:
        count = self._change("prune", self.queries.prune, {"before": self._time(before)})
        self._count("pruned", count)
        return count

    # -- tokens -----------------------------------------------------------------------------------
    def load_token(self, name: str) -> TokenRecord | None:
        found = self._fetch(self.queries.load_token, {"name": name})
        return decode_token(found[0], self.queries.d.read_time) if found else None
