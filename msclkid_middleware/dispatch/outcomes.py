"""The rules that turn Microsoft's answers (or their absence) into one typed ``Outcome`` per outbox row.

Separate from the loop in ``dispatcher.py`` (claim, group, send, settle): this module decides *what* each
row's fate is: delivered, rejected with Microsoft's code, retried at the policy's time, paused, held (a
future time or a young goal), or dead (window closed, attempts exhausted).  Exhaustion is read from the
retry decision's ``exhausted`` flag and written as :attr:`Code.ATTEMPTS_EXHAUSTED`, never from message text.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from msclkid_middleware.dispatch.protocols import GoalAges
from msclkid_middleware.dispatch.report import Metrics
from msclkid_middleware.dispatch.status import Code
from msclkid_middleware.errors import ConfigError, MicrosoftError, StoreError
from msclkid_middleware.microsoft.limits import GOAL_MIN_AGE
from msclkid_middleware.microsoft.results import ItemResult, UetEventResult, UetIssue
from msclkid_middleware.microsoft.retry import WAIT_FOR_GOAL_CODE, RetryDecision, RetryPolicy
from msclkid_middleware.outbox.base import ClaimedRow, Outcome
from msclkid_middleware.redact import shorten

__all__ = ["RECONSENT_MESSAGE", "OutcomeRules"]

logger = logging.getLogger("msclkid_middleware.dispatch.outcomes")

RECONSENT_MESSAGE = "re-consent needed: the refresh token was refused; run `msclkid auth`"
_RETRY_ACTIONS = frozenset({"retry", "wait_for_goal", "refresh"})
#: Kinds that name an offline conversion goal.
_GOAL_KINDS = frozenset({"offline", "offline_adjustment"})
#: How long after a future-dated event's own time it is sent (Microsoft's clock may lag ours a little).
_FUTURE_MARGIN = timedelta(seconds=60)


class OutcomeRules:
    """Outcome decisions for one dispatcher: its retry policy, clock, attempt limit, counters and goal ages."""

    def __init__(
        self,
        *,
        retry_policy: RetryPolicy,
        clock: Callable[[], datetime],
        max_attempts: int,
        metrics: Metrics,
        goal_ages: GoalAges | None,
    ) -> None:
        self.retry_policy = retry_policy
        self.clock = clock
        self.max_attempts = max_attempts
        self.metrics = metrics
        self.goal_ages = goal_ages

    # -- before sending ---------------------------------------------------------------------------
    def outside_window(self, rows: Sequence[ClaimedRow], now: datetime) -> list[Outcome]:
        """Rows Microsoft cannot take right now: too old (dead) or dated in the future (wait).

        A time slightly ahead of our clock is allowed at record time (clock skew), but Microsoft
        rejects future times (5614): such a row waits until just after its time instead of being
        sent early and rejected.  The wait does not count as an attempt.
        """
        outcomes = []
        ready_cache: dict[tuple[str, str], datetime | None] = {}
        for row in rows:
            token = row.lease_token
            if row.expires_at is not None and row.expires_at <= now:
                window = "7 days" if row.kind == "uet" else "90 days"
                message = f"older than {window}: Microsoft no longer accepts it"
                self.metrics.add("dead", reason=Code.EXPIRED)
                outcomes.append(Outcome(row.id, token, "dead", error_code=Code.EXPIRED, error_message=message))
                continue
            when = row.event_time
            if when is not None and when > now:
                outcomes.append(
                    Outcome(
                        row.id,
                        token,
                        "pending",
                        next_attempt_at=when + _FUTURE_MARGIN,
                        error_code=Code.FUTURE_TIME,
                        error_message="the event time is ahead of this clock; waiting until it has passed",
                        refund_attempt=True,
                    )
                )
                continue
            ready = self._goal_ready(row, ready_cache)
            if ready is not None and ready > now:
                # Sent now, Microsoft may answer 5615 or accept and silently not apply it: hold, do not drop.
                self.metrics.add("held", reason=Code.GOAL_TOO_NEW)
                outcomes.append(
                    Outcome(
                        row.id,
                        token,
                        "pending",
                        next_attempt_at=ready + _FUTURE_MARGIN,
                        error_code=Code.GOAL_TOO_NEW,
                        error_message=f"goal {row.conversion_name!r} is younger than 2 hours; held until"
                        f" {ready:%Y-%m-%d %H:%M} UTC (Microsoft may not apply conversions sent earlier)",
                        refund_attempt=True,
                    )
                )
        return outcomes

    def _goal_ready(self, row: ClaimedRow, cache: dict[tuple[str, str], datetime | None]) -> datetime | None:
        if self.goal_ages is None or row.kind not in _GOAL_KINDS or not row.conversion_name:
            return None
        key = (row.account, row.conversion_name)
        if key not in cache:
            try:
                cache[key] = self.goal_ages.ready_at(*key)
            except StoreError:
                cache[key] = None  # unknown age: send, and let a 5615 answer decide
        return cache[key]

    def pause(self, row: ClaimedRow, message: str = RECONSENT_MESSAGE) -> Outcome:
        return Outcome(
            row.id,
            row.lease_token,
            "paused",
            error_code=Code.RECONSENT_REQUIRED,
            error_message=message,
            refund_attempt=True,
        )

    # -- Microsoft's answers ----------------------------------------------------------------------
    def items(
        self, rows: Sequence[ClaimedRow], items: Sequence[ItemResult], request_tracking: str | None
    ) -> list[Outcome]:
        """:meth:`item` for each row and its answer (in order); the deliveries' counter is added once per kind."""
        if logger.isEnabledFor(logging.DEBUG):  # item() logs each delivery
            return [self.item(row, item, request_tracking) for row, item in zip(rows, items, strict=True)]
        outcomes: list[Outcome] = []
        delivered: dict[str, int] = {}
        for row, item in zip(rows, items, strict=True):
            if item.accepted:
                delivered[row.kind] = delivered.get(row.kind, 0) + 1
                tracking = item.tracking_id or request_tracking
                outcomes.append(Outcome(row.id, row.lease_token, "delivered", tracking_id=tracking))
            else:
                outcomes.append(self.item(row, item, request_tracking))
        for kind, n in delivered.items():
            self.metrics.add("delivered", n, reason=kind)
        return outcomes

    def item(self, row: ClaimedRow, item: ItemResult, request_tracking: str | None) -> Outcome:
        """One Campaign Management item: delivered, rejected with Microsoft's code, retried or dead."""
        tracking = item.tracking_id or request_tracking
        if item.accepted:
            self.metrics.add("delivered", reason=row.kind)
            if logger.isEnabledFor(logging.DEBUG):  # per item of every batch: not even the shortening otherwise
                logger.debug("delivered %s %s", row.kind, shorten(row.event_id, 12))
            return Outcome(row.id, row.lease_token, "delivered", tracking_id=tracking)
        code = _code(item.code, item.error_code)
        message = item.message or "rejected by Microsoft"
        if item.field_path:
            message = f"{item.field_path}: {message}"
        decision = self._classify(item, row)
        if decision.action in _RETRY_ACTIONS:
            return self._retry(row, decision, code, message, tracking)
        if decision.exhausted:
            return self._exhausted(row, decision.reason, code, message, tracking)
        self.metrics.add("rejected", reason=code)
        logger.info("rejected %s %s: %s %s", row.kind, shorten(row.event_id, 12), code, message)
        return Outcome(
            row.id, row.lease_token, "rejected", error_code=code, error_message=message, tracking_id=tracking
        )

    def uet(self, row: ClaimedRow, result: UetEventResult) -> Outcome:
        """One UET CAPI event: delivered (with its warnings) or rejected."""
        warnings = tuple(_issue_text(w) for w in result.warnings)
        if result.status == "delivered":
            self.metrics.add("delivered", reason=row.kind)
            self.metrics.add("warnings", len(warnings))
            return Outcome(row.id, row.lease_token, "delivered", warnings=warnings)
        code = result.error_code or "rejected"
        message = result.message or "rejected by Microsoft"
        if result.property_name:
            message = f"{result.property_name}: {message}"
        self.metrics.add("rejected", reason=code)
        return Outcome(row.id, row.lease_token, "rejected", error_code=code, error_message=message)

    def failure(self, row: ClaimedRow, exc: Exception) -> Outcome:
        """A whole request failed: retry when the policy says so, else back off until attempts run out.

        A terminal whole-request fault (bad developer token, wrong account, missing UET token) is about
        the request, not the event, so the row is not rejected: it backs off and goes ``dead`` only when
        its attempts or Microsoft's window run out, with the fault as the reason; once the cause is fixed,
        ``msclkid retry-dead`` revives it.
        """
        code: str
        if isinstance(exc, MicrosoftError):
            code = _code(exc.code, exc.error_code) if exc.code is not None or exc.error_code else _status(exc)
            message = exc.message
            tracking = exc.tracking_id
        elif isinstance(exc, ConfigError):
            code, message, tracking = Code.CONFIG_ERROR, str(exc), None
        else:
            code, message, tracking = Code.CLIENT_ERROR, f"{type(exc).__name__}: {exc}", None
        decision = self._classify(exc, row)
        if decision.action not in _RETRY_ACTIONS:
            if decision.exhausted:
                return self._exhausted(row, decision.reason, code, message, tracking)
            delay = self.retry_policy.backoff(row.attempts)
            decision = RetryDecision("retry", delay, decision.reason or "request failed")
        return self._retry(row, decision, code, message, tracking)

    # -- internals --------------------------------------------------------------------------------
    def _classify(self, error_or_result: object, row: ClaimedRow) -> RetryDecision:
        elapsed = max(0.0, (self.clock() - row.created_at).total_seconds())
        # The clients already refresh an expired access token once and retry, so a 109/401 reaching
        # us has been through a refresh.
        return self.retry_policy.classify(
            error_or_result,
            row.attempts,
            elapsed=elapsed,
            refreshed=True,
            goal_age=self._goal_age(error_or_result, row),
        )

    def _goal_age(self, error_or_result: object, row: ClaimedRow) -> float | None:
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
        return (GOAL_MIN_AGE - (ready - self.clock())).total_seconds()

    def _dead(self, row: ClaimedRow, code: str, message: str, tracking: str | None = None) -> Outcome:
        self.metrics.add("dead", reason=code)
        return Outcome(row.id, row.lease_token, "dead", error_code=code, error_message=message, tracking_id=tracking)

    def _exhausted(self, row: ClaimedRow, why: str, code: str, message: str, tracking: str | None) -> Outcome:
        return self._dead(row, Code.ATTEMPTS_EXHAUSTED, f"{why}; last error {code}: {message}", tracking)

    def _retry(
        self, row: ClaimedRow, decision: RetryDecision, code: str, message: str, tracking: str | None
    ) -> Outcome:
        if row.attempts >= self.max_attempts:
            return self._exhausted(row, f"gave up after {row.attempts} attempts", code, message, tracking)
        next_at = self.clock() + timedelta(seconds=max(0.0, decision.delay))
        if row.expires_at is not None and next_at >= row.expires_at:
            return self._dead(
                row,
                Code.EXPIRED,
                f"Microsoft's window closes before the next attempt; last error {code}: {message}",
                tracking,
            )
        self.metrics.add("retried", reason=code)
        logger.info("%s %s: %s; next attempt in %.0fs", row.kind, shorten(row.event_id, 12), code, decision.delay)
        return Outcome(
            row.id,
            row.lease_token,
            "pending",
            next_attempt_at=next_at,
            error_code=code,
            error_message=message,
            tracking_id=tracking,
        )


def _code(code: object, error_code: object) -> str:
    """``"5604 OfflineConversionMicrosoftClickIdInvalid"``: Microsoft's numeric and symbolic codes."""
    parts = [str(p) for p in (code, error_code) if p not in (None, "")]
    return " ".join(parts) or "unknown"


def _status(exc: MicrosoftError) -> str:
    return f"HTTP {exc.status}" if exc.status is not None else type(exc).__name__


def _issue_text(issue: UetIssue) -> str:
    return ": ".join(p for p in (issue.error_code, issue.property_name, issue.message) if p)
