from __future__ import annotations

import dataclasses
import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from msclkid_middleware.errors import ApiFault, AuthenticationError, ReconsentRequired, TransientError
from msclkid_middleware.microsoft import ItemResult, RetryPolicy, UetEventResult, parse_retry_after

# A deterministic policy: the jitter sample is always 0.5, so a backoff is half its ceiling.
HALF = RetryPolicy(rng=lambda: 0.5)


def fault(status: int | None, code: int | None, cls: type[Exception] = ApiFault, retry_after: float | None = None):
    return cls("x", status=status, code=code, retry_after=retry_after)  # type: ignore[call-arg]


CASES = [
    # (id, error, attempt, expected action, minimum delay, maximum delay)
    ("code-0-internal", fault(500, 0, TransientError), 1, "retry", 0.0, 1.0),
    ("code-117-call-rate", fault(400, 117, TransientError), 1, "retry", 60.0, 60.0),
    ("code-117-retry-after-longer", fault(400, 117, TransientError, 90.0), 1, "retry", 90.0, 90.0),
    ("code-833-timeout", fault(500, 833, TransientError), 3, "retry", 2.0, 2.0),
    ("code-5612-apply-failed", fault(200, 5612), 2, "retry", 1.0, 1.0),
    ("code-109-expired", fault(401, 109, AuthenticationError), 1, "refresh", 0.0, 0.0),
    ("code-105-credentials", fault(401, 105, AuthenticationError), 1, "terminal", 0.0, 0.0),
    ("code-106-not-authorized", fault(403, 106, AuthenticationError), 1, "terminal", 0.0, 0.0),
    ("code-116-missing-headers", fault(400, 116), 1, "terminal", 0.0, 0.0),
    ("code-1009-account-missing", fault(400, 1009), 1, "terminal", 0.0, 0.0),
    ("code-5606-validation", fault(400, 5606), 1, "terminal", 0.0, 0.0),
    ("code-5601-limit", fault(400, 5601), 1, "terminal", 0.0, 0.0),
    ("code-beats-status-5xx", fault(500, 5604), 1, "terminal", 0.0, 0.0),
    ("code-beats-status-4xx", fault(400, 0, TransientError), 1, "retry", 0.0, 1.0),
    ("code-5615-goal-young", fault(200, 5615), 1, "wait_for_goal", 1800.0, 1800.0),
    ("unknown-code-500", fault(500, 4242), 1, "retry", 0.5, 0.5),
    ("unknown-code-400", fault(400, 4242), 1, "terminal", 0.0, 0.0),
    ("status-502-html", fault(502, None, TransientError), 1, "retry", 0.5, 0.5),
    ("status-503", fault(503, None, TransientError), 4, "retry", 4.0, 4.0),
    ("status-429-retry-after", fault(429, None, TransientError, 30.0), 1, "retry", 30.0, 30.0),
    ("status-429-retry-after-capped", fault(429, None, TransientError, 10**6), 1, "retry", 3600.0, 3600.0),
    ("status-408", fault(408, None, TransientError), 1, "retry", 0.5, 0.5),
    ("status-401-bare", fault(401, None, AuthenticationError), 1, "refresh", 0.0, 0.0),
    ("status-403", fault(403, None, AuthenticationError), 1, "terminal", 0.0, 0.0),
    ("status-400", fault(400, None), 1, "terminal", 0.0, 0.0),
    ("network-transient", TransientError("connection error"), 1, "retry", 0.5, 0.5),
    ("builtin-timeout", TimeoutError("read timed out"), 2, "retry", 1.0, 1.0),
    ("builtin-connection-reset", ConnectionResetError(), 1, "retry", 0.5, 0.5),
    ("reconsent", ReconsentRequired("invalid_grant", status=400, error_code="invalid_grant"), 1, "terminal", 0, 0),
    ("item-5612", ItemResult(index=0, accepted=False, code=5612), 1, "retry", 0.5, 0.5),
    ("item-5615", ItemResult(index=0, accepted=False, code=5615), 1, "wait_for_goal", 1800.0, 1800.0),
    ("item-5604", ItemResult(index=0, accepted=False, code=5604), 1, "terminal", 0.0, 0.0),
    ("item-accepted", ItemResult(index=0, accepted=True), 1, "terminal", 0.0, 0.0),
    ("uet-rejected", UetEventResult(index=0, event_id="e", status="rejected", error_code="InvalidEventTime"), 1,
     "terminal", 0.0, 0.0),
    ("value-error", ValueError("bug"), 1, "terminal", 0.0, 0.0),
]  # fmt: skip


@pytest.mark.parametrize(
    ("error", "attempt", "action", "low", "high"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_classify_table(error: object, attempt: int, action: str, low: float, high: float) -> None:
    decision = HALF.classify(error, attempt)
    assert decision.action == action, decision.reason
    assert low <= decision.delay <= high
    assert decision.reason


def test_109_after_a_refresh_is_terminal() -> None:
    expired = fault(401, 109, AuthenticationError)
    assert HALF.classify(expired, 1, refreshed=True).action == "terminal"
    assert HALF.classify(fault(401, None, AuthenticationError), 1, refreshed=True).action == "terminal"


@pytest.mark.parametrize(
    ("goal_age", "expected"),
    [(0.0, 7200.0 + 60), (3600.0, 3600.0 + 60), (7000.0, 200.0 + 60), (9000.0, 60.0)],
    ids=["new", "one-hour", "almost", "old-enough"],
)
def test_5615_waits_until_the_goal_is_two_hours_old(goal_age: float, expected: float) -> None:
    decision = HALF.classify(fault(200, 5615), 1, goal_age=goal_age)
    assert decision.action == "wait_for_goal"
    assert decision.delay == pytest.approx(expected)


def test_max_attempts_and_horizon_make_retries_terminal() -> None:
    policy = HALF.with_max_attempts(3)
    err = fault(503, None, TransientError)
    assert policy.classify(err, 2).action == "retry"
    exhausted = policy.classify(err, 3)
    assert exhausted.action == "terminal"
    assert "3 attempts" in exhausted.reason
    short = HALF.replace(max_horizon=100.0)
    assert short.classify(fault(400, 117, TransientError), 1, elapsed=50.0).action == "terminal"
    assert short.classify(fault(400, 117, TransientError), 1, elapsed=10.0).action == "retry"
    # A refresh does not spend an attempt.
    assert policy.classify(fault(401, 109, AuthenticationError), 3).action == "refresh"


def test_policy_is_immutable_and_derivable() -> None:
    policy = RetryPolicy()
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.max_attempts = 3  # type: ignore[misc]
    derived = policy.with_backoff(0.5, 10.0).with_max_attempts(4)
    assert (derived.backoff_base, derived.backoff_max, derived.max_attempts) == (0.5, 10.0, 4)
    assert (policy.backoff_base, policy.max_attempts) == (1.0, 10)
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="backoff"):
        RetryPolicy(backoff_base=2.0, backoff_max=1.0)


def test_next_attempt_at() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    decision = HALF.classify(fault(400, 117, TransientError), 1)
    assert decision.next_attempt_at(now) == now + timedelta(seconds=60)


@given(
    attempt=st.integers(min_value=1, max_value=10_000),
    base=st.floats(min_value=0.01, max_value=1.0),
    cap=st.floats(min_value=1.0, max_value=3600.0),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_backoff_is_bounded_full_jitter(attempt: int, base: float, cap: float, seed: int) -> None:
    policy = RetryPolicy(backoff_base=base, backoff_max=cap, rng=random.Random(seed).random)
    delay = policy.backoff(attempt)
    assert 0.0 <= delay <= min(cap, base * 2 ** min(attempt - 1, 64))
    if attempt == 1:
        assert delay <= 1.0  # the first retry waits at most a second


@given(attempt=st.integers(min_value=1, max_value=200), retry_after=st.floats(min_value=0, max_value=1e9))
def test_transient_delays_respect_retry_after_and_caps(attempt: int, retry_after: float) -> None:
    policy = RetryPolicy(max_attempts=1000, rng=random.Random(attempt).random)
    decision = policy.classify(fault(429, None, TransientError, retry_after), attempt)
    assert decision.action == "retry"
    assert min(retry_after, policy.retry_after_max) <= decision.delay <= max(policy.backoff_max, policy.retry_after_max)
    throttled = policy.classify(fault(400, 117, TransientError, retry_after), attempt)
    assert throttled.delay >= 60.0


def test_backoff_grows_exponentially_to_the_cap() -> None:
    policy = RetryPolicy(backoff_base=1.0, backoff_max=30.0, rng=lambda: 0.999999)
    ceilings = [round(policy.backoff(n)) for n in range(1, 8)]
    assert ceilings == [1, 2, 4, 8, 16, 30, 30]


@pytest.mark.parametrize(
    ("header", "expected"),
    [("120", 120.0), (" 0 ", 0.0), ("", None), (None, None), ("soon", None), ("-5", None)],
    ids=["seconds", "zero", "empty", "missing", "garbage", "negative"],
)
def test_parse_retry_after_seconds(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header) == expected


def test_parse_retry_after_http_date() -> None:
    now = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)
    header = format_datetime(now + timedelta(seconds=90), usegmt=True)
    assert parse_retry_after(header, now) == pytest.approx(90.0)
    past = format_datetime(now - timedelta(seconds=90), usegmt=True)
    assert parse_retry_after(past, now) == 0.0
