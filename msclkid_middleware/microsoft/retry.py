"""When to try a Microsoft call again: an immutable policy that classifies failures and computes delays.

Modelled on urllib3's ``Retry``: a frozen value, configured once, asked "what now?" after every failure.
It never sleeps and never calls anything: the dispatcher stores ``now + decision.delay`` as the row's next
attempt time and moves on.  Classification uses Microsoft's numeric error code first (a fault body says
*why*), the HTTP status second (gateways and proxies answer without a fault body), and the exception type
last (network errors never reach a status).

Why is it safe to retry a POST whose response never arrived (a read timeout)?  Because every payload we
send is idempotent on Microsoft's side: Campaign Management ignores an offline conversion whose
(MicrosoftClickId, ConversionName, ConversionTime) it has already seen ("only the first ... will be
counted"), adjustments are keyed to that same original, and UET CAPI deduplicates events by ``eventId``
(which the outbox fixes at enqueue).  Resending the identical bytes can therefore at worst produce a
duplicate that Microsoft drops; not resending could lose a conversion.  A non-idempotent API would need
the opposite rule.
"""

from __future__ import annotations

import dataclasses
import email.utils
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from msclkid_middleware.errors import AuthenticationError, MicrosoftError, ReconsentRequired, TransientError
from msclkid_middleware.microsoft.limits import GOAL_MIN_AGE

__all__ = [
    "REFRESH_CODES",
    "TERMINAL_CODES",
    "TRANSIENT_CODES",
    "WAIT_FOR_GOAL_CODE",
    "Action",
    "RetryDecision",
    "RetryPolicy",
    "parse_retry_after",
]

Action = Literal["retry", "refresh", "terminal", "wait_for_goal"]

#: 0 InternalError, 117 CallRateExceeded, 833 ServiceTimeOut, 5612 OfflineConversionsApplyFailed.
TRANSIENT_CODES = frozenset({0, 117, 833, 5612})
#: 109 AuthenticationTokenExpired: refresh the access token, then retry once.
REFRESH_CODES = frozenset({109})
#: 5615 OfflineConversionNotAcceptedForGoal: the goal is younger than two hours.
WAIT_FOR_GOAL_CODE = 5615
#: Credentials, authorisation and request-shape codes no retry can fix (plus every validation code).
TERMINAL_CODES = frozenset({100, 105, 106, 108, 113, 116, *range(120, 126), 201, 1009, 8004})
#: 117: "you can resubmit the request under the limit after waiting 60 seconds".
CALL_RATE_CODE = 117
CALL_RATE_WAIT = 60.0
_RETRY_STATUSES = frozenset({408, 429})


@dataclass(frozen=True, slots=True)
class RetryDecision:
    """What to do after a failure: ``action``, how long to wait first (``delay`` seconds) and why.

    ``exhausted`` is True when the failure itself was retryable but the policy's attempts or horizon ran
    out: the caller tells "give up" apart from "not retryable" by this flag, never by the ``reason`` text.
    """

    action: Action
    delay: float = 0.0
    reason: str = ""
    exhausted: bool = False

    @property
    def retryable(self) -> bool:
        return self.action != "terminal"

    def next_attempt_at(self, now: datetime | None = None) -> datetime:
        """The aware UTC time of the next attempt (``now`` defaults to the current time)."""
        return (now or datetime.now(UTC)) + timedelta(seconds=self.delay)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """A ``Retry-After`` header as seconds from ``now``: delta-seconds or an HTTP date; ``None`` if unusable."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isdigit():
        return float(int(text))
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; an obsolete form may parse naive
        when = when.replace(tzinfo=UTC)
    seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return max(0.0, seconds)


def _default_rng() -> Callable[[], float]:
    # Jitter is not a security decision; a private Random keeps tests able to inject their own.
    return random.Random().random  # noqa: S311


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Immutable retry policy.  Derive variants with :meth:`replace` or the ``with_*`` helpers.

    - ``max_attempts``: attempts in total (the first one included) before a transient failure is terminal.
    - ``max_horizon``: seconds after the first attempt after which nothing is retried any more.
    - ``backoff_base`` / ``backoff_max``: exponential backoff with full jitter; the n-th retry waits a random
      time in ``[0, min(backoff_max, backoff_base * 2 ** (n - 1))]`` (so the first wait is at most
      ``backoff_base``, 1 s by default).
    - ``retry_after_max``: a server's ``Retry-After`` is honoured up to this many seconds.
    - ``goal_wait``: the wait after 5615 when the goal's age is unknown.
    - ``rng``: a zero-argument callable returning floats in ``[0, 1)``; inject a seeded one in tests.
    """

    max_attempts: int = 10
    max_horizon: float = 7 * 24 * 3600.0
    backoff_base: float = 1.0
    backoff_max: float = 600.0
    retry_after_max: float = 3600.0
    call_rate_wait: float = CALL_RATE_WAIT
    goal_wait: float = 30 * 60.0
    rng: Callable[[], float] = field(default_factory=_default_rng, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if not self.backoff_base > 0 or not self.backoff_max >= self.backoff_base:
            raise ValueError("backoff_base must be > 0 and backoff_max >= backoff_base")
        if self.retry_after_max < 0 or self.max_horizon <= 0 or self.goal_wait < 0 or self.call_rate_wait < 0:
            raise ValueError("retry_after_max, goal_wait and call_rate_wait must be >= 0 and max_horizon > 0")

    # -- variants ---------------------------------------------------------------------------------------------

    def replace(self, **changes: Any) -> RetryPolicy:
        return dataclasses.replace(self, **changes)

    def with_max_attempts(self, max_attempts: int) -> RetryPolicy:
        return self.replace(max_attempts=max_attempts)

    def with_backoff(self, base: float, maximum: float | None = None) -> RetryPolicy:
        return self.replace(backoff_base=base, backoff_max=self.backoff_max if maximum is None else maximum)

    def with_rng(self, rng: Callable[[], float]) -> RetryPolicy:
        return self.replace(rng=rng)

    # -- delays -----------------------------------------------------------------------------------------------

    def backoff(self, attempt: int) -> float:
        """Full-jitter delay before retry number ``attempt`` (1 = the first retry)."""
        exponent = max(0, attempt - 1)
        # Cap the exponent before computing the power so huge attempt numbers cannot overflow.
        ceiling = self.backoff_max if exponent > 60 else min(self.backoff_max, self.backoff_base * 2.0**exponent)
        sample = self.rng()
        if not 0.0 <= sample < 1.0 or math.isnan(sample):
            sample = 0.5
        return ceiling * sample

    def _server_wait(self, retry_after: float | None) -> float:
        if retry_after is None or retry_after != retry_after or retry_after < 0:
            return 0.0
        return min(retry_after, self.retry_after_max)

    # -- classification ---------------------------------------------------------------------------------------

    def classify(
        self,
        error_or_result: object,
        attempt: int,
        *,
        elapsed: float = 0.0,
        refreshed: bool = False,
        goal_age: float | None = None,
    ) -> RetryDecision:
        """Decide what to do after ``attempt`` attempts (1-based) ended in ``error_or_result``.

        ``error_or_result`` is an exception (the typed errors of ``errors.py``, or a raw network error) or a
        per-item result (``ItemResult`` / ``UetEventResult``).  ``elapsed`` is the time since the first
        attempt, ``refreshed`` says the token was already refreshed for this failure, ``goal_age`` is the
        goal's age in seconds when known (used for 5615).
        """
        status, code, retry_after, kind = _facts(error_or_result)
        if kind == "accepted":
            return RetryDecision("terminal", 0.0, "accepted: nothing to retry")
        if kind == "reconsent":
            return RetryDecision("terminal", 0.0, "reconsent required: run `msclkid auth`")

        decision = self._by_code(code, attempt, retry_after, refreshed, goal_age)
        if decision is None:
            decision = self._by_status(status, attempt, retry_after, refreshed)
        if decision is None:
            if kind == "network":
                decision = RetryDecision("retry", self.backoff(attempt), "network error or timeout")
            elif kind == "transient":
                decision = RetryDecision(
                    "retry", max(self.backoff(attempt), self._server_wait(retry_after)), "transient error"
                )
            elif kind == "auth":
                decision = RetryDecision("terminal", 0.0, "authentication failed")
            else:
                decision = RetryDecision("terminal", 0.0, "not retryable")
        return self._bounded(decision, attempt, elapsed)

    def _by_code(
        self, code: int | None, attempt: int, retry_after: float | None, refreshed: bool, goal_age: float | None
    ) -> RetryDecision | None:
        if code is None:
            return None
        if code in REFRESH_CODES:
            if refreshed:
                return RetryDecision("terminal", 0.0, f"code {code}: token still expired after a refresh")
            return RetryDecision("refresh", 0.0, f"code {code}: access token expired; refresh and retry once")
        if code == CALL_RATE_CODE:
            wait = max(self.call_rate_wait, self._server_wait(retry_after), self.backoff(attempt))
            return RetryDecision("retry", wait, f"code {code}: call rate exceeded; wait at least 60 s")
        if code in TRANSIENT_CODES:
            wait = max(self.backoff(attempt), self._server_wait(retry_after))
            return RetryDecision("retry", wait, f"code {code}: transient Microsoft error")
        if code == WAIT_FOR_GOAL_CODE:
            wait = self.goal_wait if goal_age is None else max(0.0, GOAL_MIN_AGE.total_seconds() - goal_age) + 60.0
            return RetryDecision("wait_for_goal", wait, f"code {code}: goal younger than 2 hours")
        if code in TERMINAL_CODES or 5600 <= code <= 5699:
            return RetryDecision("terminal", 0.0, f"code {code}: not retryable")
        return None  # an unknown code: let the HTTP status decide

    def _by_status(
        self, status: int | None, attempt: int, retry_after: float | None, refreshed: bool
    ) -> RetryDecision | None:
        if status is None:
            return None
        if status >= 500 or status in _RETRY_STATUSES:
            wait = max(self.backoff(attempt), self._server_wait(retry_after))
            return RetryDecision("retry", wait, f"HTTP {status}: transient")
        if status == 401 and not refreshed:
            return RetryDecision("refresh", 0.0, "HTTP 401: refresh the access token and retry once")
        if 400 <= status < 500:
            return RetryDecision("terminal", 0.0, f"HTTP {status}: not retryable")
        return None

    def _bounded(self, decision: RetryDecision, attempt: int, elapsed: float) -> RetryDecision:
        if decision.action == "terminal":
            return decision
        # A refresh is not a spent attempt (the request never reached the operation), but the horizon holds.
        if decision.action in ("retry", "wait_for_goal") and attempt >= self.max_attempts:
            return RetryDecision(
                "terminal", 0.0, f"gave up after {attempt} attempts ({decision.reason})", exhausted=True
            )
        if elapsed + decision.delay > self.max_horizon:
            return RetryDecision(
                "terminal", 0.0, f"gave up: retry horizon exceeded ({decision.reason})", exhausted=True
            )
        return decision


def _facts(obj: object) -> tuple[int | None, int | None, float | None, str]:
    """(HTTP status, Microsoft code, retry_after, kind) for anything a client can hand back."""
    if isinstance(obj, ReconsentRequired):
        return obj.status, obj.code, None, "reconsent"
    if isinstance(obj, MicrosoftError):
        kind = (
            "transient" if isinstance(obj, TransientError) else "auth" if isinstance(obj, AuthenticationError) else ""
        )
        return obj.status, obj.code, obj.retry_after, kind
    if isinstance(obj, TimeoutError | ConnectionError):
        return None, None, None, "network"
    if isinstance(obj, BaseException):
        # requests' exceptions derive from OSError (IOError); clients normally wrap them in TransientError.
        return None, None, None, "network" if isinstance(obj, OSError) else ""
    # Per-item results (duck-typed so this module stays free of the HTTP layer).
    accepted = getattr(obj, "accepted", None)
    if accepted is True or getattr(obj, "status", None) == "delivered":
        return None, None, None, "accepted"
    code = getattr(obj, "code", None)
    return None, code if isinstance(code, int) else None, None, "item"
