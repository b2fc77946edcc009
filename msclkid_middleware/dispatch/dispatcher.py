"""One synchronous, deterministic drain step: claim → group → send → record each item's outcome.

The dispatcher owns no thread and never sleeps: time comes from an injected clock and the
:class:`~msclkid_middleware.microsoft.retry.RetryPolicy` says *when* to try again, so every path is
testable without waiting.  The store transaction that claims rows is committed before any HTTP call,
and outcomes are written back afterwards, fenced by the lease token (see ``docs/dispatch.md``).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from msclkid_middleware import faultpoints
from msclkid_middleware.conversions import parse_time
from msclkid_middleware.errors import ConfigError, MicrosoftError, MsclkidError, ReconsentRequired, StoreError
from msclkid_middleware.microsoft.results import ItemResult, UetEventResult, UetIssue
from msclkid_middleware.microsoft.retry import GOAL_MIN_AGE, WAIT_FOR_GOAL_CODE, RetryDecision, RetryPolicy
from msclkid_middleware.outbox.base import CAMPAIGN_KINDS, Kind, OutboxRow, OutboxStore, Outcome, iter_chunks
from msclkid_middleware.redact import shorten

__all__ = ["GOAL_TOO_NEW", "DispatchReport", "Dispatcher", "GoalAges", "Metrics", "default_owner", "utcnow"]

logger = logging.getLogger("msclkid_middleware.dispatch.dispatcher")

#: Microsoft's hard limit for all three Apply operations and for UET CAPI.
MAX_BATCH = 1000
#: How often a paused account probes the token endpoint (a successful refresh resumes it).
DEFAULT_PROBE_INTERVAL = 300.0

Clock = Callable[[], datetime]

_CAMPAIGN_METHODS = {
    "offline": "apply_offline_conversions",
    "offline_adjustment": "apply_offline_conversion_adjustments",
    "online_adjustment": "apply_online_conversion_adjustments",
}
_RETRY_ACTIONS = frozenset({"retry", "wait_for_goal", "refresh"})


def utcnow() -> datetime:
    return datetime.now(UTC)


def default_owner() -> str:
    """A lease owner name that says which process holds a row (``host:pid:random``)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Metrics:
    """Thread-safe counters keyed ``outcome`` or ``outcome.reason`` (``rejected.5604``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def add(self, name: str, n: int = 1, *, reason: str | None = None) -> None:
        if n <= 0:
            return
        with self._lock:
            self._counts[name] += n
            if reason:
                self._counts[f"{name}.{reason}"] += n

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(sorted(self._counts.items()))


@dataclass(frozen=True, slots=True)
class DispatchReport:
    """What one or more drain steps did.  ``remaining`` is the open-row count afterwards."""

    claimed: int = 0
    delivered: int = 0
    rejected: int = 0
    retried: int = 0
    dead: int = 0
    paused: int = 0
    released: int = 0
    stale: int = 0
    requests: int = 0
    resumed: int = 0
    remaining: int = 0
    timed_out: bool = False

    def __add__(self, other: DispatchReport) -> DispatchReport:
        values = {f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)}
        values["remaining"] = other.remaining
        values["timed_out"] = self.timed_out or other.timed_out
        return DispatchReport(**values)

    @property
    def settled(self) -> int:
        return self.delivered + self.rejected + self.dead

    def summary(self) -> str:
        return (
            f"{self.delivered} delivered, {self.rejected} rejected, {self.dead} dead, {self.retried} to retry,"
            f" {self.paused} paused, {self.remaining} open, {self.requests} requests"
        )


class _TokenProvider(Protocol):
    def force_refresh(self) -> Any: ...


class GoalAges(Protocol):
    """When a goal becomes old enough for uploads (``goal_ages.GoalRegistry``); ``None``: unknown."""

    def ready_at(self, account: str, name: str) -> datetime | None: ...


class Dispatcher:
    """Drains an :class:`~msclkid_middleware.outbox.OutboxStore` into Microsoft.

    ``campaign``: a ``CampaignManagementClient`` (offline conversions and both adjustment kinds);
    ``uet``: a ``UetClient``.  A kind whose client is ``None`` is never claimed, so a process without
    credentials can share the outbox with one that has them.  ``token_provider`` (defaults to
    ``campaign.token_provider``) is probed to resume accounts paused by ``ReconsentRequired``.
    ``goal_ages`` (optional) holds offline rows of a goal younger than two hours until it is old enough.
    """

    def __init__(
        self,
        store: OutboxStore,
        *,
        campaign: Any = None,
        uet: Any = None,
        retry_policy: RetryPolicy | None = None,
        clock: Clock = utcnow,
        owner: str | None = None,
        batch_size: int = MAX_BATCH,
        lease_seconds: float = 300.0,
        max_attempts: int | None = None,
        token_provider: _TokenProvider | None = None,
        probe_interval: float = DEFAULT_PROBE_INTERVAL,
        metrics: Metrics | None = None,
        goal_ages: GoalAges | None = None,
    ) -> None:
        if not 1 <= batch_size <= MAX_BATCH:
            raise ValueError(f"batch_size must be between 1 and {MAX_BATCH}")
        self.store = store
        self.campaign = campaign
        self.uet = uet
        self.retry_policy = retry_policy if retry_policy is not None else RetryPolicy()
        self.clock = clock
        self.owner = owner or default_owner()
        self.batch_size = batch_size
        self.lease_seconds = lease_seconds
        self.max_attempts = max_attempts or self.retry_policy.max_attempts
        self.token_provider = token_provider or getattr(campaign, "token_provider", None)
        self.probe_interval = probe_interval
        self.metrics = metrics or Metrics()
        self.goal_ages = goal_ages
        self._next_probe: datetime | None = None
        # One step at a time per dispatcher: flush() and the background thread share the clients,
        # and a client (one requests.Session) is meant for one thread at a time.
        self._step_lock = threading.Lock()

    # -- public -----------------------------------------------------------------------------------
    @property
    def kinds(self) -> tuple[Kind, ...]:
        """The kinds this dispatcher can send (and therefore claims)."""
        kinds: list[Kind] = []
        if self.campaign is not None:
            kinds.extend(sorted(CAMPAIGN_KINDS))
        if self.uet is not None:
            kinds.append("uet")
        return tuple(kinds)

    def step(self, *, should_stop: Callable[[], bool] | None = None) -> DispatchReport:
        """Claim one batch of due rows, send it, record every outcome.  Never sleeps.

        ``should_stop`` is checked between requests: once it answers True, the rows not yet sent
        are released (attempt refunded) so another worker can take them at once.
        """
        with self._step_lock:
            return self._step(should_stop)

    def _step(self, should_stop: Callable[[], bool] | None) -> DispatchReport:
        kinds = self.kinds
        if not kinds:
            return DispatchReport(remaining=self.store.open_count())
        resumed = self._probe_paused()
        now = self.clock()
        rows = self.store.claim(
            owner=self.owner, limit=self.batch_size, now=now, lease_seconds=self.lease_seconds, kinds=kinds
        )
        if not rows:
            return DispatchReport(resumed=resumed, remaining=self.store.open_count())
        faultpoints.hit("after_claim")
        return self._deliver(rows, now, should_stop, resumed=resumed)

    def deliver(self, rows: Sequence[OutboxRow]) -> DispatchReport:
        """Send rows this dispatcher has already claimed (``store.claim(owner=self.owner, ...)``) and settle them.

        The same path as :meth:`step` after its claim: window checks, one request per kind and account,
        every outcome recorded.  ``msclkid send-test`` uses it to deliver one chosen event now.
        """
        with self._step_lock:
            return self._deliver(rows, self.clock(), None, resumed=0)

    def _deliver(
        self, rows: Sequence[OutboxRow], now: datetime, should_stop: Callable[[], bool] | None, *, resumed: int
    ) -> DispatchReport:
        self.metrics.add("claimed", len(rows))
        counts: Counter[str] = Counter(claimed=len(rows), resumed=resumed)
        paused_accounts: set[str] = set()
        for group in self._groups(rows):
            kind, account = group[0].kind, group[0].account
            stopping = should_stop is not None and should_stop()
            if stopping:
                outcomes = [Outcome(r.id, r.lease_token or "", "pending", refund_attempt=True) for r in group]
            elif kind in CAMPAIGN_KINDS and account in paused_accounts:
                outcomes = [self._pause(r, "reconsent_required", _RECONSENT_MESSAGE) for r in group]
            else:
                outcomes = self._outside_window(group, now)
                gone = {o.row_id for o in outcomes}
                live = [r for r in group if r.id not in gone]
                if live:
                    counts["requests"] += 1
                    sent = self._send(kind, account, live)
                    outcomes.extend(sent)
                    if any(o.state == "paused" for o in sent):
                        paused_accounts.add(account)
            faultpoints.hit("after_send")
            counts.update(self._settle(outcomes))
        for account in paused_accounts:
            counts["paused"] += self.store.pause(
                account=account, kinds=CAMPAIGN_KINDS, reason=_RECONSENT_MESSAGE, now=self.clock()
            )
            self._next_probe = self.clock() + timedelta(seconds=self.probe_interval)
        faultpoints.hit("after_settle")
        return DispatchReport(
            claimed=counts["claimed"],
            delivered=counts["delivered"],
            rejected=counts["rejected"],
            retried=counts["retried"],
            dead=counts["dead"],
            paused=counts["paused"],
            released=counts["released"],
            stale=counts["stale"],
            requests=counts["requests"],
            resumed=counts["resumed"],
            remaining=self.store.open_count(),
        )

    def drain(
        self,
        *,
        timeout: float | None = None,
        deadline: Callable[[], bool] | None = None,
        on_step: Callable[[DispatchReport], None] | None = None,
    ) -> DispatchReport:
        """Run steps until nothing is due *now* (or ``deadline()`` answers True).

        Rows scheduled for a later retry are left for the worker; ``remaining`` says how many.
        ``timeout`` (seconds) ends the drain when it has passed on the injected clock *or* on the
        real monotonic clock, so a frozen test clock cannot make it spin forever.
        """
        start, started = self.clock(), time.monotonic()
        total = DispatchReport()
        while True:
            report = self.step()
            total = total + report
            if on_step is not None:
                on_step(report)
            if report.claimed == 0:
                return total
            expired = timeout is not None and (
                (self.clock() - start).total_seconds() >= timeout or time.monotonic() - started >= timeout
            )
            if expired or (deadline is not None and deadline()):
                return total + DispatchReport(remaining=total.remaining, timed_out=True)

    def maintain(self, *, retention: timedelta | None = None) -> dict[str, int]:
        """Housekeeping: kill adjustments whose original failed, prune old terminal rows."""
        now = self.clock()
        orphans = self.store.fail_orphans(now=now)
        self.metrics.add("dead", orphans, reason="original_not_delivered")
        pruned = self.store.prune(before=now - retention) if retention is not None else 0
        checkpoint = getattr(self.store, "checkpoint", None)
        if callable(checkpoint):
            checkpoint()
        return {"orphans": orphans, "pruned": pruned}

    # -- internals --------------------------------------------------------------------------------
    def _groups(self, rows: Sequence[OutboxRow]) -> list[Sequence[OutboxRow]]:
        groups: dict[tuple[str, str], list[OutboxRow]] = {}
        for row in rows:
            groups.setdefault((row.kind, row.account), []).append(row)
        out: list[Sequence[OutboxRow]] = []
        for members in groups.values():
            out.extend(iter_chunks(members, self.batch_size))
        return out

    def _outside_window(self, rows: Sequence[OutboxRow], now: datetime) -> list[Outcome]:
        """Rows Microsoft cannot take right now: too old (dead) or dated in the future (wait).

        A time slightly ahead of our clock is allowed at record time (clock skew), but Microsoft
        rejects future times (5614): such a row waits until just after its time instead of being
        sent early and rejected.  The wait does not count as an attempt.
        """
        outcomes = []
        ready_cache: dict[tuple[str, str], datetime | None] = {}
        for row in rows:
            token = row.lease_token or ""
            if row.expires_at is not None and row.expires_at <= now:
                window = "7 days" if row.kind == "uet" else "90 days"
                message = f"older than {window}: Microsoft no longer accepts it"
                self.metrics.add("dead", reason="expired")
                outcomes.append(Outcome(row.id, token, "dead", error_code="expired", error_message=message))
                continue
            when = _event_time(row)
            if when is not None and when > now:
                outcomes.append(
                    Outcome(
                        row.id,
                        token,
                        "pending",
                        next_attempt_at=when + _FUTURE_MARGIN,
                        error_code="future_time",
                        error_message="the event time is ahead of this clock; waiting until it has passed",
                        refund_attempt=True,
                    )
                )
                continue
            ready = self._goal_ready(row, ready_cache)
            if ready is not None and ready > now:
                # Sent now, Microsoft may answer 5615 or accept and silently not apply it: hold, do not drop.
                self.metrics.add("held", reason="goal_too_new")
                outcomes.append(
                    Outcome(
                        row.id,
                        token,
                        "pending",
                        next_attempt_at=ready + _FUTURE_MARGIN,
                        error_code=GOAL_TOO_NEW,
                        error_message=f"goal {row.conversion_name!r} is younger than 2 hours; held until"
                        f" {ready:%Y-%m-%d %H:%M} UTC (Microsoft may not apply conversions sent earlier)",
                        refund_attempt=True,
                    )
                )
        return outcomes

    def _goal_ready(self, row: OutboxRow, cache: dict[tuple[str, str], datetime | None]) -> datetime | None:
        if self.goal_ages is None or row.kind not in _GOAL_KINDS or not row.conversion_name:
            return None
        key = (row.account, row.conversion_name)
        if key not in cache:
            try:
                cache[key] = self.goal_ages.ready_at(*key)
            except StoreError:
                cache[key] = None  # unknown age: send, and let a 5615 answer decide
        return cache[key]

    def _pause(self, row: OutboxRow, code: str, message: str) -> Outcome:
        return Outcome(
            row.id, row.lease_token or "", "paused", error_code=code, error_message=message, refund_attempt=True
        )

    def _send(self, kind: Kind, account: str, rows: Sequence[OutboxRow]) -> list[Outcome]:
        payloads = []
        for row in rows:
            payloads.append(dict(row.payload))
            faultpoints.hit("building_batch")
        try:
            if kind == "uet":
                results = list(self.uet.send_events(account, payloads))
                return [self._uet_outcome(row, res) for row, res in zip(rows, results, strict=True)]
            result = getattr(self.campaign, _CAMPAIGN_METHODS[kind])(payloads)
        except ReconsentRequired as exc:
            logger.warning("account %s needs re-consent (run `msclkid auth`): dispatch paused", account)
            self.metrics.add("paused", len(rows), reason="reconsent_required")
            return [self._pause(r, "reconsent_required", f"{_RECONSENT_MESSAGE} ({exc.message})") for r in rows]
        except MicrosoftError as exc:
            logger.warning("%s request for %s failed: %s", kind, account, exc)
            return [self._failure(row, exc) for row in rows]
        except ConfigError as exc:
            # A configuration gap (no UET token for this tag): keep the rows, back off, say why.
            logger.error("cannot send %s rows for %s: %s", kind, account, exc)
            return [self._failure(row, exc) for row in rows]
        except Exception as exc:
            # A custom client's own bug must not leave the claimed rows in flight until their lease runs out
            # (and again after every re-claim): settle them as a failed request, with the exception as reason.
            logger.error("%s client raised %s for %s rows of %s", kind, type(exc).__name__, len(rows), account)
            return [self._failure(row, exc) for row in rows]
        tracking = result.tracking_ids[0] if result.tracking_ids else None
        return [self._item_outcome(row, item, tracking) for row, item in zip(rows, result.items, strict=True)]

    def _item_outcome(self, row: OutboxRow, item: ItemResult, request_tracking: str | None) -> Outcome:
        tracking = item.tracking_id or request_tracking
        if item.accepted:
            self.metrics.add("delivered", reason=row.kind)
            logger.debug("delivered %s %s", row.kind, shorten(row.event_id, 12))
            return Outcome(row.id, row.lease_token or "", "delivered", tracking_id=tracking)
        code = _code(item.code, item.error_code)
        message = item.message or "rejected by Microsoft"
        if item.field_path:
            message = f"{item.field_path}: {message}"
        decision = self._classify(item, row)
        if decision.action in _RETRY_ACTIONS:
            return self._retry(row, decision, code, message, tracking)
        if decision.reason.startswith("gave up"):
            return self._dead(row, "attempts_exhausted", f"{decision.reason}; last error {code}: {message}", tracking)
        self.metrics.add("rejected", reason=code)
        logger.info("rejected %s %s: %s %s", row.kind, shorten(row.event_id, 12), code, message)
        return Outcome(
            row.id, row.lease_token or "", "rejected", error_code=code, error_message=message, tracking_id=tracking
        )

    def _uet_outcome(self, row: OutboxRow, result: UetEventResult) -> Outcome:
        warnings = tuple(_issue_text(w) for w in result.warnings)
        if result.status == "delivered":
            self.metrics.add("delivered", reason=row.kind)
            self.metrics.add("warnings", len(warnings))
            return Outcome(row.id, row.lease_token or "", "delivered", warnings=warnings)
        code = result.error_code or "rejected"
        message = result.message or "rejected by Microsoft"
        if result.property_name:
            message = f"{result.property_name}: {message}"
        self.metrics.add("rejected", reason=code)
        return Outcome(row.id, row.lease_token or "", "rejected", error_code=code, error_message=message)

    def _failure(self, row: OutboxRow, exc: Exception) -> Outcome:
        """A whole request failed: retry when the policy says so, else back off until attempts run out.

        A terminal whole-request fault (bad developer token, wrong account, missing UET token) is about
        the request, not the event, so the row is not rejected: it backs off and goes ``dead`` only when
        its attempts or Microsoft's window run out, with the fault as the reason; once the cause is fixed,
        ``msclkid retry-dead`` revives it.
        """
        if isinstance(exc, MicrosoftError):
            code = _code(exc.code, exc.error_code) if exc.code is not None or exc.error_code else _status(exc)
            message = exc.message
            tracking = exc.tracking_id
        elif isinstance(exc, ConfigError):
            code, message, tracking = "config_error", str(exc), None
        else:
            code, message, tracking = "client_error", f"{type(exc).__name__}: {exc}", None
        decision = self._classify(exc, row)
        if decision.action not in _RETRY_ACTIONS:
            if decision.reason.startswith("gave up"):
                return self._dead(
                    row, "attempts_exhausted", f"{decision.reason}; last error {code}: {message}", tracking
                )
            decision = RetryDecision("retry", self._backoff(row.attempts), decision.reason or "request failed")
        return self._retry(row, decision, code, message, tracking)

    def _classify(self, error_or_result: object, row: OutboxRow) -> RetryDecision:
        elapsed = max(0.0, (self.clock() - row.created_at).total_seconds())
        # The clients already refresh an expired access token once and retry, so a 109/401 reaching
        # us has been through a refresh.
        decision: RetryDecision = self.retry_policy.classify(
            error_or_result,
            row.attempts,
            elapsed=elapsed,
            refreshed=True,
            goal_age=self._goal_age(error_or_result, row),
        )
        return decision

    def _goal_age(self, error_or_result: object, row: OutboxRow) -> float | None:
        """For a 5615 answer: the goal's age in seconds when known, so the retry waits exactly until it is 2 h old."""
        if self.goal_ages is None or getattr(error_or_result, "code", None) != WAIT_FOR_GOAL_CODE:
            return None
        if not row.conversion_name:
            return None
        try:
            ready = self.goal_ages.ready_at(row.account, row.conversion_name)
        except StoreError:
            return None
        if ready is None:
            return None
        return GOAL_MIN_AGE - (ready - self.clock()).total_seconds()

    def _backoff(self, attempt: int) -> float:
        backoff = getattr(self.retry_policy, "backoff", None)
        return float(backoff(attempt)) if callable(backoff) else float(min(600, 2 ** max(0, attempt)))

    def _dead(self, row: OutboxRow, code: str, message: str, tracking: str | None = None) -> Outcome:
        self.metrics.add("dead", reason=code)
        return Outcome(
            row.id, row.lease_token or "", "dead", error_code=code, error_message=message, tracking_id=tracking
        )

    def _retry(self, row: OutboxRow, decision: RetryDecision, code: str, message: str, tracking: str | None) -> Outcome:
        if row.attempts >= self.max_attempts:
            return self._dead(
                row,
                "attempts_exhausted",
                f"gave up after {row.attempts} attempts; last error {code}: {message}",
                tracking,
            )
        next_at = self.clock() + timedelta(seconds=max(0.0, decision.delay))
        if row.expires_at is not None and next_at >= row.expires_at:
            return self._dead(
                row,
                "expired",
                f"Microsoft's window closes before the next attempt; last error {code}: {message}",
                tracking,
            )
        self.metrics.add("retried", reason=code)
        logger.info("%s %s: %s; next attempt in %.0fs", row.kind, shorten(row.event_id, 12), code, decision.delay)
        return Outcome(
            row.id,
            row.lease_token or "",
            "pending",
            next_attempt_at=next_at,
            error_code=code,
            error_message=message,
            tracking_id=tracking,
        )

    def _settle(self, outcomes: Sequence[Outcome]) -> Counter[str]:
        counts: Counter[str] = Counter()
        if not outcomes:
            return counts
        try:
            applied = self.store.settle(outcomes, now=self.clock())
        except StoreError:
            # The rows stay in flight; their leases expire and they are sent again with the same key.
            logger.exception("could not record %d outcomes; they will be retried after the lease", len(outcomes))
            self.metrics.add("settle_failed", len(outcomes))
            counts["stale"] += len(outcomes)
            return counts
        if applied != len(outcomes):
            # Our lease expired and another worker owns these rows now; its result wins.
            counts["stale"] += len(outcomes) - applied
            self.metrics.add("stale_acks", len(outcomes) - applied)
        for o in outcomes:
            counts[_REPORT_FIELD[o.state] if not (o.state == "pending" and o.refund_attempt) else "released"] += 1
        return counts

    def _probe_paused(self) -> int:
        """Resume accounts paused for re-consent once a token refresh succeeds again."""
        if self.token_provider is None or self.campaign is None:
            return 0
        now = self.clock()
        if self._next_probe is not None and now < self._next_probe:
            return 0
        accounts = {a for a, kind, _ in self.store.paused_accounts() if kind in CAMPAIGN_KINDS}
        if not accounts:
            self._next_probe = None
            return 0
        try:
            self.token_provider.force_refresh()
        except MsclkidError as exc:
            self._next_probe = now + timedelta(seconds=self.probe_interval)
            logger.info("still paused (%s); next check in %.0fs", type(exc).__name__, self.probe_interval)
            return 0
        resumed = 0
        for account in accounts:
            resumed += self.store.resume(account=account, kinds=CAMPAIGN_KINDS, now=now)
        self._next_probe = None
        self.metrics.add("resumed", resumed)
        logger.info("token refresh succeeded: resumed %d paused rows", resumed)
        return resumed


#: ``last_error_code`` of a row held back because its goal is younger than two hours.
GOAL_TOO_NEW = "goal_too_new"
#: Kinds that name an offline conversion goal.
_GOAL_KINDS = frozenset({"offline", "offline_adjustment"})

_RECONSENT_MESSAGE = "re-consent needed: the refresh token was refused; run `msclkid auth`"

_REPORT_FIELD = {
    "delivered": "delivered",
    "rejected": "rejected",
    "dead": "dead",
    "pending": "retried",
    "paused": "paused",
}


#: How long after a future-dated event's own time it is sent (Microsoft's clock may lag ours a little).
_FUTURE_MARGIN = timedelta(seconds=60)


def _event_time(row: OutboxRow) -> datetime | None:
    """The latest time in the payload that Microsoft checks against "not in the future"."""
    payload = row.payload
    try:
        if row.kind == "uet":
            seconds = payload.get("eventTime")
            return datetime.fromtimestamp(seconds, UTC) if isinstance(seconds, int) else None
        times = [parse_time(payload[name], name) for name in ("ConversionTime", "AdjustmentTime") if name in payload]
    except (ValueError, OverflowError, OSError):
        return None
    return max(times) if times else None


def _code(code: object, error_code: object) -> str:
    """``"5604 OfflineConversionMicrosoftClickIdInvalid"``: Microsoft's numeric and symbolic codes."""
    parts = [str(p) for p in (code, error_code) if p not in (None, "")]
    return " ".join(parts) or "unknown"


def _status(exc: MicrosoftError) -> str:
    return f"HTTP {exc.status}" if exc.status is not None else type(exc).__name__


def _issue_text(issue: UetIssue) -> str:
    return ": ".join(p for p in (issue.error_code, issue.property_name, issue.message) if p)
