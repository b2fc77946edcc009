"""The outbox store contract: row values, states and the :class:`OutboxStore` protocol.

Every store (SQLite here, PostgreSQL in ``postgres.py``) implements the same protocol and passes
the same behaviour tests (``tests/outbox/test_store.py``), so the dispatcher and the tracker never
know which database they talk to.

State machine::

    pending ──claim──▶ in_flight ──▶ delivered | rejected | dead
       ▲                   │
       └──── retry ────────┘        paused ◀──▶ pending (ReconsentRequired / resume)
    suppressed: recorded but never sent (consent left nothing to match on)

``in_flight`` rows carry a lease (owner, random token, expiry).  Every write-back is fenced by the
lease token, and a row whose lease has expired is claimable again: that is crash recovery.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple, Protocol, runtime_checkable

from msclkid_middleware.errors import ConfigError, StoreError, ValidationError

__all__ = [
    "CAMPAIGN_KINDS",
    "DEFAULT_MAX_PENDING",
    "KINDS",
    "OPEN_STATES",
    "PRIMARY_KINDS",
    "STATES",
    "TERMINAL_STATES",
    "ClaimedRow",
    "Counters",
    "Durability",
    "EncodedRow",
    "EnqueueResult",
    "Kind",
    "NewRow",
    "OutboxRow",
    "OutboxStore",
    "Outcome",
    "State",
    "StateCount",
    "TokenRecord",
    "check_store_options",
    "from_timestamp",
    "schema_too_new",
    "to_timestamp",
]

Kind = Literal["offline", "offline_adjustment", "online_adjustment", "uet"]
KINDS: tuple[Kind, ...] = ("offline", "offline_adjustment", "online_adjustment", "uet")
#: Kinds sent through Campaign Management (OAuth): a ReconsentRequired pauses all of them.
CAMPAIGN_KINDS: frozenset[Kind] = frozenset({"offline", "offline_adjustment", "online_adjustment"})
#: Kinds recorded once per shop event: ``(kind, account, event_id)`` is unique for them.
PRIMARY_KINDS: frozenset[Kind] = frozenset({"offline", "uet"})

State = Literal["pending", "in_flight", "delivered", "rejected", "dead", "paused", "suppressed"]
STATES: tuple[State, ...] = ("pending", "in_flight", "delivered", "rejected", "dead", "paused", "suppressed")
#: States that still owe Microsoft a delivery; ``max_pending`` bounds how many rows may be in them.
OPEN_STATES: tuple[State, ...] = ("pending", "in_flight", "paused")
TERMINAL_STATES: tuple[State, ...] = ("delivered", "rejected", "dead", "suppressed")

#: ``crash``: a committed row survives the process dying; ``power_loss``: every commit is fsynced.
Durability = Literal["crash", "power_loss"]

#: The default bound on open rows (``max_pending``).
DEFAULT_MAX_PENDING = 1_000_000

SettleState = Literal["delivered", "rejected", "dead", "pending", "paused"]


def check_store_options(durability: str, max_pending: int) -> None:
    """The options every store takes, checked the same way."""
    if durability not in ("crash", "power_loss"):
        raise ConfigError("durability must be 'crash' or 'power_loss'", setting="durability")
    if max_pending < 1:
        raise ConfigError("max_pending must be at least 1", setting="max_pending")


def schema_too_new(found: int, known: int) -> StoreError:
    """A database migrated by a newer release: refuse it rather than misread its rows."""
    return StoreError(
        f"the outbox schema is version {found}, newer than this release knows ({known})", reason="schema_too_new"
    )


class Counters:
    """A store's process-local metrics (``enqueued``, ``duplicates``, ``store_errors``, ...), thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, int] = {}

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._values[name] = self._values.get(name, 0) + n

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._values)


def to_timestamp(value: datetime) -> float:
    """Aware datetime -> POSIX seconds (what the stores keep, so comparisons are numeric)."""
    if value.utcoffset() is None:
        raise ValidationError("now", "must be a timezone-aware datetime")
    return value.timestamp()


def from_timestamp(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


@dataclass(frozen=True, slots=True)
class NewRow:
    """What the tracker hands to :meth:`OutboxStore.enqueue`: everything fixed at record time.

    ``payload`` is the wire item exactly as it will be sent (never raw email or phone).
    ``idempotency_key`` is computed once here and never regenerated.  ``expires_at`` is when
    Microsoft stops accepting the event (90 days for offline, 7 days for UET).  A row created in
    state ``suppressed`` is stored for the record but never claimed; ``error_code`` says why.
    """

    kind: Kind
    account: str
    event_id: str
    idempotency_key: str
    payload: Mapping[str, Any]
    conversion_name: str | None = None
    consent: Mapping[str, Any] | None = None
    state: Literal["pending", "suppressed"] = "pending"
    depends_on: int | None = None
    expires_at: datetime | None = None
    error_code: str | None = None
    error_message: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValidationError("kind", f"must be one of {', '.join(KINDS)}")
        if self.state not in ("pending", "suppressed"):
            raise ValidationError("state", "a new row is 'pending' or 'suppressed'")
        for name in ("account", "event_id", "idempotency_key"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value or len(value) > 255:
                raise ValidationError(name, "must be a non-empty string of at most 255 characters")


class EncodedRow(NamedTuple):
    """A :class:`NewRow` as a bulk insert binds it: in column order, its JSON columns encoded (compact, sorted keys).

    :meth:`OutboxStore.enqueue_many` takes these or ``NewRow`` values (which it encodes with
    ``rows.encode_row``); a bulk builder that makes every check ``NewRow`` makes (``dispatch.bulk``) builds them
    directly, without the ``NewRow`` and the two ``json.dumps`` per row.
    """

    kind: Kind
    account: str
    event_id: str
    idempotency_key: str
    #: The wire item as compact JSON with sorted keys (``rows.dumps``).
    payload: str
    conversion_name: str | None
    consent: str | None
    state: Literal["pending", "suppressed"]
    expires_at: datetime | None
    error_code: str | None
    error_message: str | None
    depends_on: int | None


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One stored event, as read back from the store."""

    id: int
    kind: Kind
    account: str
    event_id: str
    idempotency_key: str
    payload: Mapping[str, Any]
    conversion_name: str | None
    consent: Mapping[str, Any] | None
    state: State
    attempts: int
    next_attempt_at: datetime
    expires_at: datetime | None
    lease_owner: str | None
    lease_token: str | None
    lease_expires_at: datetime | None
    last_error_code: str | None
    last_error_message: str | None
    tracking_id: str | None
    warnings: tuple[str, ...]
    paused_reason: str | None
    depends_on: int | None
    created_at: datetime
    updated_at: datetime
    delivered_at: datetime | None


class ClaimedRow(NamedTuple):
    """A claimed row as delivery needs it (:meth:`OutboxStore.claim_batch`): no more columns than the request uses.

    ``payload_json`` is the stored wire item as it is (compact JSON): the clients splice it into the
    request body without decoding it; ``event_time`` is the payload's latest event time (what Microsoft
    checks against "not in the future"), read by the database, or ``None``.  A ``NamedTuple``: a claim builds
    one per row (a frozen dataclass's ``__init__`` cost five times as much, 2.3 us).
    """

    id: int
    kind: Kind
    account: str
    event_id: str
    lease_token: str
    attempts: int
    conversion_name: str | None
    created_at: datetime
    expires_at: datetime | None
    event_time: datetime | None
    payload_json: str


@dataclass(frozen=True, slots=True)
class EnqueueResult:
    """The stored row and whether this call created it (``False``: it already existed)."""

    row: OutboxRow
    created: bool


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one claimed row; written back only if ``lease_token`` still matches.

    ``state``: ``delivered`` / ``rejected`` / ``dead`` are final; ``pending`` schedules another
    attempt at ``next_attempt_at`` (or releases the row at once when it is ``None``); ``paused``
    parks the row until :meth:`OutboxStore.resume`.  ``refund_attempt`` gives back the attempt the
    claim counted (graceful release, pause: nothing was really tried).
    """

    # Alike in shape to capture's PageView (required fields, then optional ones): another concept, nothing to share.
    row_id: int
    lease_token: str
    state: SettleState
    next_attempt_at: datetime | None = None
    error_code: str | None = None
    error_message: str | None = None
    tracking_id: str | None = None
    warnings: tuple[str, ...] = ()
    refund_attempt: bool = False


@dataclass(frozen=True, slots=True)
class StateCount:
    """One line of the per-goal report: how many rows of a kind/goal are in a state (with a code)."""

    kind: Kind
    conversion_name: str | None
    state: State
    error_code: str | None
    count: int


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """A persisted refresh token (the SQL side of the clients' ``TokenStore``)."""

    refresh_token: str = field(repr=False)
    issued_at: datetime
    #: Grows by one with every refresh; ``(serial, issued_at)`` orders tokens (newest wins).
    serial: int = 0
    data: Mapping[str, Any] = field(default_factory=dict, repr=False)


@runtime_checkable
class OutboxStore(Protocol):
    """The durable queue between ``record_*`` and the dispatcher.

    Concurrency contract: any number of threads and processes may call any method at once.
    ``claim`` never hands the same row to two callers while a lease is unexpired; ``settle`` applies
    an outcome only when the row is still ``in_flight`` under the given lease token.  No method
    keeps a transaction open after it returns.  Failures raise :class:`~msclkid_middleware.errors.StoreError`.
    """

    #: The store's location with any password removed (safe to log).
    url: str
    #: Maximum rows in an open state; enqueue beyond it raises ``OutboxFull`` (reject-new policy).
    max_pending: int

    def enqueue(self, row: NewRow, *, now: datetime, connection: Any = None) -> EnqueueResult:
        """Store ``row`` (committed on return) or return the existing row with the same key.

        A row matches an existing one when the ``idempotency_key`` is equal or, for
        :data:`PRIMARY_KINDS`, when ``(kind, account, event_id)`` is equal.  With ``connection``
        (the application's own DB-API connection to the same database), the row is written in the
        caller's open transaction and committed (or rolled back) by the caller: the transactional
        outbox.  Raises ``OutboxFull`` when a new pending row would exceed ``max_pending``.
        """
        ...

    def transaction(self) -> AbstractContextManager[object]:
        """A write transaction of the store's own, for many enqueues under one commit (bulk imports).

        Yields a connection to pass as ``enqueue(row, now=..., connection=conn)``; the transaction
        commits when the block ends and rolls back when it raises (nothing of the block is stored).
        While it is open, other writers of a SQLite outbox wait for it: keep it to a batch (a few
        hundred rows), and never call the store's other writing methods inside it.  Failures to
        begin or commit raise :class:`~msclkid_middleware.errors.StoreError`.
        """
        ...

    def get(self, row_id: int) -> OutboxRow | None: ...

    def find(self, event_id: str, *, kind: Kind | None = None, account: str | None = None) -> list[OutboxRow]:
        """Rows recorded under ``event_id`` (oldest first), optionally of one kind/account."""
        ...

    def claim(
        self, *, owner: str, limit: int, now: datetime, lease_seconds: float, kinds: Collection[Kind] | None = None
    ) -> list[OutboxRow]:
        """Lease up to ``limit`` due rows (pending and due, or in_flight with an expired lease).

        ``kinds`` limits the claim to the kinds the caller can send (``None``: all).

        Adjustments are only due once the row they depend on is ``delivered``.  Each claimed row
        gets ``attempts + 1`` and one fresh random lease token shared by this claim.  Rows are
        returned in id order.
        """
        ...

    def claim_batch(
        self, *, owner: str, limit: int, now: datetime, lease_seconds: float, kinds: Collection[Kind] | None = None
    ) -> list[ClaimedRow]:
        """:meth:`claim` for delivery: the same lease, but only the columns a request needs, undecoded."""
        ...

    def enqueue_many(self, rows: Sequence[NewRow | EncodedRow], *, now: datetime, connection: Any = None) -> int:
        """Store the rows that are new (one batched ``INSERT ... ON CONFLICT DO NOTHING``); returns how many.

        A row matching a stored one (as :meth:`enqueue` matches) is skipped without a lookup; with
        ``connection`` (from :meth:`transaction`) the rows join that transaction.  Raises ``OutboxFull``
        (nothing of the batch stored) when the new pending rows would exceed ``max_pending``.
        """
        ...

    def settle(self, outcomes: Sequence[Outcome], *, now: datetime) -> int:
        """Write back outcomes in one short transaction (one statement per outcome shape, not per row);
        returns how many were applied (fenced by each row's lease token)."""
        ...

    def pause(self, *, account: str, kinds: Collection[Kind], reason: str, now: datetime) -> int:
        """Park every pending row of ``account`` and ``kinds`` with ``reason``; returns the count."""
        ...

    def resume(self, *, account: str | None = None, kinds: Collection[Kind] | None = None, now: datetime) -> int:
        """Move paused rows back to pending, due now; returns the count."""
        ...

    def paused_accounts(self) -> list[tuple[str, Kind, str]]:
        """Distinct ``(account, kind, reason)`` of paused rows."""
        ...

    def fail_orphans(self, *, now: datetime) -> int:
        """Adjustments whose original ended rejected/dead/suppressed can never apply: mark them dead."""
        ...

    def retry_dead(
        self, *, now: datetime, include_rejected: bool = False, event_id: str | None = None, reset_attempts: bool = True
    ) -> int:
        """Give ``dead`` (and optionally ``rejected``) rows another chance: back to pending, due now."""
        ...

    def prune(self, *, before: datetime) -> int:
        """Delete terminal rows last updated before ``before`` (retention), keeping any row that an
        open adjustment still depends on.  Returns the count."""
        ...

    def counts(self) -> list[StateCount]:
        """Rows grouped by kind, conversion name, state and last error code."""
        ...

    def scan(
        self, *, since: datetime | None = None, kinds: Collection[Kind] | None = None, page_size: int = 1000
    ) -> Iterator[OutboxRow]:
        """Every row (created at or after ``since``, of ``kinds``; ``None``: all) in id order.

        For reports and exports: rows are read in pages of ``page_size`` by key (``id > last id``), so
        no transaction or cursor stays open while the caller works between pages and writers are
        never blocked.  A row that changes during the scan is seen in whichever state it had when
        its page was read.
        """
        ...

    def open_count(self) -> int:
        """Rows in an open state (what ``max_pending`` bounds)."""
        ...

    def next_due(self) -> datetime | None:
        """The earliest time a row becomes claimable (for idle sleeping); ``None`` when nothing is open."""
        ...

    def load_token(self, name: str) -> TokenRecord | None: ...

    def save_token(self, name: str, record: TokenRecord) -> bool:
        """Persist ``record`` only if it is newer than the stored one by ``(serial, issued_at)``.

        Returns whether it was written; an equal or older record changes nothing (never regress).
        """
        ...

    def token_lock(self, name: str) -> AbstractContextManager[None]:
        """A cross-process lock for single-flight refreshes (re-read the token inside it).

        It must not block the outbox itself: a refresh holds it during an HTTP call.
        """
        ...

    def metrics(self) -> Mapping[str, int]:
        """Process-local counters: enqueued, duplicates, overflow_rejected, store_errors, ..."""
        ...

    def close(self) -> None: ...


def iter_chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    """Consecutive slices of at most ``size`` items."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
