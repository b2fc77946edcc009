"""One synchronous, deterministic drain step: claim → group → send → record each item's outcome.

The dispatcher owns no thread and never sleeps: time comes from an injected clock and the
:class:`~msclkid_middleware.microsoft.retry.RetryPolicy` says *when* to try again, so every path is
testable without waiting.  The store transaction that claims rows is committed before any HTTP call,
and outcomes are written back afterwards, fenced by the lease token (see ``docs/dispatch.md``).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from msclkid_middleware import faultpoints
from msclkid_middleware.dispatch.outcomes import RECONSENT_MESSAGE, OutcomeRules
from msclkid_middleware.dispatch.protocols import CampaignClient, GoalAges, TokenRefresher, UetSender, WirePayload
from msclkid_middleware.dispatch.report import DispatchReport, Metrics
from msclkid_middleware.dispatch.status import Code
from msclkid_middleware.errors import ConfigError, MicrosoftError, MsclkidError, ReconsentRequired, StoreError
from msclkid_middleware.microsoft.limits import MAX_BATCH
from msclkid_middleware.microsoft.results import ApplyResult
from msclkid_middleware.microsoft.retry import RetryPolicy
from msclkid_middleware.microsoft.wirejson import WireJson
from msclkid_middleware.outbox.base import (
    CAMPAIGN_KINDS,
    ClaimedRow,
    Kind,
    OutboxRow,
    OutboxStore,
    Outcome,
    iter_chunks,
)
from msclkid_middleware.outbox.rows import claimed_of

__all__ = ["Dispatcher", "default_owner", "utcnow"]

logger = logging.getLogger("msclkid_middleware.dispatch.dispatcher")

#: How often a paused account probes the token endpoint (a successful refresh resumes it).
DEFAULT_PROBE_INTERVAL = 300.0

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


def default_owner() -> str:
    """A lease owner name that says which process holds a row (``host:pid:random``)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


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
        campaign: CampaignClient | None = None,
        uet: UetSender | None = None,
        retry_policy: RetryPolicy | None = None,
        clock: Clock = utcnow,
        owner: str | None = None,
        batch_size: int = MAX_BATCH,
        lease_seconds: float = 300.0,
        max_attempts: int | None = None,
        token_provider: TokenRefresher | None = None,
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
        # The built-in client carries its OAuth provider; a custom client may pass none (no probing then).
        self.token_provider: TokenRefresher | None = token_provider or getattr(campaign, "token_provider", None)
        self.probe_interval = probe_interval
        self.metrics = metrics or Metrics()
        self.goal_ages = goal_ages
        self.rules = OutcomeRules(
            retry_policy=self.retry_policy,
            clock=clock,
            max_attempts=self.max_attempts,
            metrics=self.metrics,
            goal_ages=goal_ages,
        )
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
        # Only the columns a request needs, the payloads as stored (spliced into the body undecoded).
        rows = self.store.claim_batch(
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
            return self._deliver([claimed_of(row) for row in rows], self.clock(), None, resumed=0)

    def _deliver(
        self, rows: Sequence[ClaimedRow], now: datetime, should_stop: Callable[[], bool] | None, *, resumed: int
    ) -> DispatchReport:
        self.metrics.add("claimed", len(rows))
        counts: Counter[str] = Counter(claimed=len(rows), resumed=resumed)
        paused_accounts: set[str] = set()
        for group in self._groups(rows):
            kind, account = group[0].kind, group[0].account
            stopping = should_stop is not None and should_stop()
            if stopping:
                outcomes = [Outcome(r.id, r.lease_token, "pending", refund_attempt=True) for r in group]
            elif kind in CAMPAIGN_KINDS and account in paused_accounts:
                outcomes = [self.rules.pause(r) for r in group]
            else:
                outcomes = self.rules.outside_window(group, now)
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
                account=account, kinds=CAMPAIGN_KINDS, reason=RECONSENT_MESSAGE, now=self.clock()
            )
            self._next_probe = self.clock() + timedelta(seconds=self.probe_interval)
        faultpoints.hit("after_settle")
        return DispatchReport.from_counts(counts, remaining=self.store.open_count())

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
    def _groups(self, rows: Sequence[ClaimedRow]) -> list[Sequence[ClaimedRow]]:
        groups: dict[tuple[str, str], list[ClaimedRow]] = {}
        for row in rows:
            groups.setdefault((row.kind, row.account), []).append(row)
        out: list[Sequence[ClaimedRow]] = []
        for members in groups.values():
            out.extend(iter_chunks(members, self.batch_size))
        return out

    def _send(self, kind: Kind, account: str, rows: Sequence[ClaimedRow]) -> list[Outcome]:
        client: object = self.uet if kind == "uet" else self.campaign
        # The built-in clients splice stored JSON into the request body; a custom client gets dicts, as before.
        spliced = getattr(client, "accepts_stored_json", False) is True
        item: Callable[[str], Any] = WireJson if spliced else json.loads
        payloads: list[Any]
        if faultpoints.armed():  # the crash tests' per-row point (building_batch@n dies after the n-th row)
            payloads = []
            for row in rows:
                payloads.append(item(row.payload_json))
                faultpoints.hit("building_batch")
        else:  # one environment lookup per batch, not one per row
            payloads = [item(row.payload_json) for row in rows]
        try:
            if kind == "uet":
                results = list(self._uet_client().send_events(account, payloads))
                return [self.rules.uet(row, res) for row, res in zip(rows, results, strict=True)]
            result = self._apply(kind, payloads)
        except ReconsentRequired as exc:
            logger.warning("account %s needs re-consent (run `msclkid auth`): dispatch paused", account)
            self.metrics.add("paused", len(rows), reason=Code.RECONSENT_REQUIRED)
            return [self.rules.pause(r, f"{RECONSENT_MESSAGE} ({exc.message})") for r in rows]
        except MicrosoftError as exc:
            logger.warning("%s request for %s failed: %s", kind, account, exc)
            return [self.rules.failure(row, exc) for row in rows]
        except ConfigError as exc:
            # A configuration gap (no UET token for this tag): keep the rows, back off, say why.
            logger.error("cannot send %s rows for %s: %s", kind, account, exc)
            return [self.rules.failure(row, exc) for row in rows]
        except Exception as exc:
            # A custom client's own bug must not leave the claimed rows in flight until their lease runs out
            # (and again after every re-claim): settle them as a failed request, with the exception as reason.
            logger.error("%s client raised %s for %s rows of %s", kind, type(exc).__name__, len(rows), account)
            return [self.rules.failure(row, exc) for row in rows]
        tracking = result.tracking_ids[0] if result.tracking_ids else None
        return self.rules.items(rows, result.items, tracking)

    def _apply(self, kind: Kind, payloads: Sequence[WirePayload]) -> ApplyResult:
        campaign = self.campaign
        if campaign is None:  # kinds() never claims these rows without a client
            raise ConfigError("no Campaign Management client", setting="microsoft")
        if kind == "offline":
            return campaign.apply_offline_conversions(payloads)
        if kind == "offline_adjustment":
            return campaign.apply_offline_conversion_adjustments(payloads)
        return campaign.apply_online_conversion_adjustments(payloads)

    def _uet_client(self) -> UetSender:
        if self.uet is None:  # kinds() never claims UET rows without a client
            raise ConfigError("no UET CAPI client", setting="uet")
        return self.uet

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


_REPORT_FIELD = {
    "delivered": "delivered",
    "rejected": "rejected",
    "dead": "dead",
    "pending": "retried",
    "paused": "paused",
}
