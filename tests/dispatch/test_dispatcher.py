"""The dispatcher: claim -> group by kind and account -> send -> one typed outcome per row (retries, pauses,
windows, exhaustion).  Through the tracker against the emulator, and directly with fake clients."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from msclkid_middleware.dispatch.dispatcher import Dispatcher
from msclkid_middleware.dispatch.status import Code, EventStatus
from msclkid_middleware.dispatch.tracker import ConversionTracker
from msclkid_middleware.errors import (
    TransientError,
    UnknownEvent,
)
from msclkid_middleware.microsoft import RetryPolicy
from msclkid_middleware.microsoft.limits import MAX_BATCH
from msclkid_middleware.microsoft.results import ApplyResult, ItemResult, UetEventResult
from msclkid_middleware.microsoft.retry import RetryDecision
from msclkid_middleware.outbox import OutboxStore, open_store
from msclkid_middleware.testing import EmulatorHandle, run_emulator
from tests.outbox.conftest import T0, FakeClock, click_id, make_tracker, new_row, record
from tests.wsgi_helpers import HEX


def test_2500_offline_conversions_take_exactly_three_requests(
    tracker: ConversionTracker, ms: EmulatorHandle, clock: FakeClock
) -> None:
    for n in range(2500):
        record(tracker, clock, n)
    report = tracker.flush(timeout=None)
    assert report.delivered == 2500
    requests = ms.requests("offline")
    assert [r.items for r in requests] == [1000, 1000, 500]
    assert report.requests == 3
    assert len(ms.received("offline", outcome="accepted")) == 2500


def test_partial_errors_land_on_the_right_rows(
    tracker: ConversionTracker, ms: EmulatorHandle, clock: FakeClock
) -> None:
    for n in range(10):
        if n in (3, 7):
            # The click happened after the conversion: Microsoft rejects exactly these items (5616).
            ms.add_click(click_id(n), clock() - timedelta(minutes=1))
        record(tracker, clock, n)
    report = tracker.flush()
    assert (report.delivered, report.rejected, report.requests) == (8, 2, 1)
    for n in range(10):
        status = tracker.status(f"ord_{n}")
        if n in (3, 7):
            assert status.state == "rejected"
            assert status.last_error_code == "5616 ConversionTimeEarlierThanClickTime"
            assert status.last_error_message
            assert status.last_error_message.startswith("ConversionTime")
        else:
            assert status.state == "delivered"
    assert tracker.metrics()["rejected.5616 ConversionTimeEarlierThanClickTime"] == 2


@pytest.mark.parametrize(
    ("fault", "code", "min_wait"),
    [
        # The client reports an HTTP 429 as Microsoft's throttling code 117 (which waits at least 60 s).
        pytest.param({"kind": "throttle", "retry_after": 30}, "117 CallRateExceeded", 30, id="429-retry-after"),
        pytest.param({"kind": "http", "status": 503}, "HTTP 503", 0, id="503"),
        pytest.param({"kind": "internal"}, "0 InternalError", 0, id="internal-error-0"),
        pytest.param({"kind": "call_rate"}, "117 CallRateExceeded", 60, id="call-rate-117"),
        pytest.param({"kind": "drop"}, None, 0, id="dropped-connection"),
    ],
)
def test_transient_failures_retry_at_the_policys_time(
    tracker: ConversionTracker,
    ms: EmulatorHandle,
    clock: FakeClock,
    fault: dict[str, Any],
    code: str | None,
    min_wait: float,
) -> None:
    ms.inject_fault("offline", times=1, **fault)
    record(tracker, clock, 1)
    report = tracker.flush()
    assert (report.retried, report.delivered) == (1, 0)
    status = tracker.status("ord_1")
    assert status.state == "pending"
    if code is not None:
        assert status.last_error_code == code
    assert status.next_attempt_at is not None
    wait = (status.next_attempt_at - clock()).total_seconds()
    assert wait >= min_wait
    assert wait <= 3600
    # Not due yet: nothing is sent, and no real time passes in this test.
    assert tracker.flush().claimed == 0
    clock.advance(wait)
    assert tracker.flush().delivered == 1
    final = tracker.status("ord_1")
    assert (final.state, final.attempts) == ("delivered", 2)
    accepted = ms.received("offline", outcome="accepted")
    assert len(accepted) == 1


def test_attempts_exhausted_goes_dead_with_the_reason(ms: EmulatorHandle, tmp_path: Path, clock: FakeClock) -> None:
    tracker = make_tracker(ms, tmp_path, clock, retry_policy=RetryPolicy(max_attempts=2, rng=lambda: 0.5))
    try:
        ms.inject_fault("offline", "http", status=500)
        record(tracker, clock, 1)
        tracker.flush()
        clock.advance(3600)
        report = tracker.flush()
        assert report.dead == 1
        status = tracker.status("ord_1")
        assert status.state == "dead"
        assert status.last_error_code == "attempts_exhausted"
        assert status.last_error_message is not None
        assert "last error 0 InternalError" in status.last_error_message
        assert tracker.metrics()["dead.attempts_exhausted"] == 1
        ms.clear_faults()
        assert tracker.retry_dead() == 1
        assert tracker.flush().delivered == 1
    finally:
        tracker.close()


def test_events_past_microsofts_window_go_dead(
    tracker: ConversionTracker, ms: EmulatorHandle, clock: FakeClock
) -> None:
    record(tracker, clock, 1, conversion_time=clock() - timedelta(days=89, hours=23))
    tracker.record_uet_event("evt_1", "lead", clock() - timedelta(days=6), anonymous_id="a" * 32)
    clock.advance(2 * 3600)  # the worker was down: the offline conversion is now 90 days + 1 hour old
    clock.advance(86400)  # and the UET event 7 days + 2 hours old
    report = tracker.flush()
    assert report.dead == 2
    for event_id, window in (("ord_1", "90 days"), ("evt_1", "7 days")):
        status = tracker.status(event_id)
        assert (status.state, status.last_error_code) == ("dead", "expired")
        assert status.last_error_message is not None
        assert window in status.last_error_message
    assert ms.received() == []


def test_reconsent_pauses_without_burning_attempts_and_a_refresh_resumes(
    ms: EmulatorHandle, tmp_path: Path, clock: FakeClock
) -> None:
    from msclkid_middleware.outbox.tokens import OutboxTokenStore
    from msclkid_middleware.tokens import StoredToken

    tracker = make_tracker(ms, tmp_path, clock)
    try:
        ms.revoke_refresh_tokens()
        for n in range(3):
            record(tracker, clock, n)
        tracker.restate("ord_0", 1.0)
        tracker.record_uet_event("evt_1", "lead", clock(), anonymous_id="a" * 32)
        report = tracker.flush()
        assert report.paused == 4  # the three claimed conversions and the waiting restate
        assert report.delivered == 1  # UET has its own token and is not affected
        for n in range(3):
            status = tracker.status(f"ord_{n}")
            assert (status.state, status.attempts) == ("paused", 0)
            assert status.paused_reason is not None
            assert "msclkid auth" in status.paused_reason
        assert ms.received("offline") == []
        assert tracker.flush().claimed == 0  # paused rows are not claimed
        # Someone runs `msclkid auth`: a new refresh token lands in the store.
        stored = OutboxTokenStore(tracker.store).load()
        serial = stored.serial if stored is not None else 0
        OutboxTokenStore(tracker.store).save(StoredToken(ms.issue_refresh_token(), clock().timestamp(), serial + 1))
        clock.advance(301)  # the next probe of the token endpoint
        report = tracker.flush()
        assert report.resumed == 4
        assert report.delivered == 4
        assert {tracker.status(f"ord_{n}").state for n in range(3)} == {"delivered"}
        assert tracker.status("ord_0").adjustments[0].state == "delivered"
    finally:
        tracker.close()


def test_a_tracker_without_uet_leaves_uet_rows_for_another_worker(
    ms: EmulatorHandle, tmp_path: Path, clock: FakeClock
) -> None:
    tracker = make_tracker(ms, tmp_path, clock, uet=False)
    try:
        tracker.record_uet_event("evt_1", "lead", clock(), anonymous_id="a" * 32)
        record(tracker, clock, 1)
        report = tracker.flush(timeout=5)
        assert (report.claimed, report.delivered, report.remaining, report.timed_out) == (1, 1, 1, False)
        assert tracker.status("evt_1").state == "pending"
    finally:
        tracker.close()


def test_uet_outcomes_per_event_with_warnings(tracker: ConversionTracker, ms: EmulatorHandle, clock: FakeClock) -> None:
    tracker.record_uet_event("ok", "lead", clock(), click=click_id(1))
    tracker.record_uet_event("warned", "lead", clock(), click=click_id(2), value=1.0, currency="XYZ")
    # Microsoft's own sample click ID is valid for us but not a UUID for UET: it is dropped, and with
    # nothing else to match on the event is rejected.
    tracker.record_uet_event("bad", "lead", clock(), click="Example-123")
    report = tracker.flush()
    assert (report.delivered, report.rejected) == (2, 1)
    assert tracker.status("ok").warnings == ()
    warned = tracker.status("warned")
    assert warned.state == "delivered"
    assert warned.warnings == ("InvalidCurrency: customData.currency: 'currency' must be an ISO 4217 currency code.",)
    bad = tracker.status("bad")
    assert bad.state == "rejected"
    assert bad.last_error_code is not None
    assert bad.last_error_message is not None
    assert bad.last_error_message.startswith("userData")


def test_a_whole_request_fault_keeps_the_rows_and_backs_off(
    ms: EmulatorHandle, tmp_path: Path, clock: FakeClock
) -> None:
    tracker = make_tracker(ms, tmp_path, clock, settings={"developer_token": "WRONG-TOKEN"})
    try:
        record(tracker, clock, 1)
        report = tracker.flush()
        assert (report.rejected, report.retried) == (0, 1)
        status = tracker.status("ord_1")
        assert status.state == "pending"
        assert status.last_error_code is not None
        assert status.last_error_code.startswith("105")
        assert status.next_attempt_at is not None
        assert status.next_attempt_at > clock()
    finally:
        tracker.close()


def test_final_rows_are_pruned_after_the_retention(ms: EmulatorHandle, tmp_path: Path, clock: FakeClock) -> None:
    tracker = make_tracker(ms, tmp_path, clock, retention=timedelta(days=30))
    try:
        record(tracker, clock, 1)
        tracker.flush()
        clock.advance(29 * 86400)
        tracker.flush()
        assert tracker.status("ord_1").state == "delivered"  # kept for reconciliation
        clock.advance(2 * 86400)
        tracker.flush()
        with pytest.raises(UnknownEvent):
            tracker.status("ord_1")
    finally:
        tracker.close()


def test_a_future_dated_event_waits_for_its_time_instead_of_being_rejected(tmp_path: Path) -> None:
    clock = FakeClock()
    with run_emulator(clock=clock) as ms:  # Microsoft's clock follows the test's clock too
        tracker = make_tracker(ms, tmp_path, clock)
        try:
            ahead = clock() + timedelta(minutes=3)  # within the clock-skew allowance at record time
            record(tracker, clock, 1, conversion_time=ahead)
            tracker.record_uet_event("evt_1", "lead", ahead, anonymous_id="a" * 32)
            report = tracker.flush()
            assert (report.claimed, report.released, report.requests) == (2, 2, 0)
            status = tracker.status("ord_1")
            assert (status.state, status.attempts, status.last_error_code) == ("pending", 0, "future_time")
            assert status.next_attempt_at == ahead + timedelta(seconds=60)
            clock.advance(4 * 60)
            assert tracker.flush().delivered == 2
            assert [i.outcome for i in ms.received()] == ["accepted", "accepted"]
        finally:
            tracker.close()


def test_a_custom_client_that_raises_does_not_leave_rows_in_flight(tmp_path: object) -> None:
    """A client's own bug (not a MicrosoftError) used to escape flush() with the claimed rows left in flight."""
    from datetime import timedelta

    from msclkid_middleware.dispatch.tracker import ConversionTracker

    class BrokenClient:
        account_id = "2000001"
        calls = 0

        def apply_offline_conversions(self, payloads: object) -> object:
            self.calls += 1
            raise RuntimeError("bug in a custom client")

        apply_offline_conversion_adjustments = apply_online_conversion_adjustments = apply_offline_conversions

    client = BrokenClient()
    url = f"sqlite:///{tmp_path}/outbox.sqlite3"
    with ConversionTracker(store_url=url, microsoft=client, uet=False) as tracker:
        tracker.record_offline("order-1", "Purchase", datetime.now(UTC) - timedelta(hours=1), click=HEX)
        report = tracker.flush()
        assert client.calls == 1
        assert report.retried == 1
        status = tracker.status("order-1")
        assert status.state == "pending"  # settled for a later retry, not stuck in flight
        assert status.attempts == 1
        assert status.last_error_code == "client_error"
        assert status.last_error_message is not None
        assert "RuntimeError" in status.last_error_message
        assert status.next_attempt_at is not None


# -- the Dispatcher directly, with fake clients ---------------------------------------------------


class FakeCampaign:
    """Satisfies ``CampaignClient``: records each request; rejects the click IDs in ``reject`` with 5604."""

    def __init__(self, reject: frozenset[str] = frozenset(), fail: Exception | None = None) -> None:
        self.requests: list[tuple[str, int]] = []
        self.reject = reject
        self.fail = fail

    def _answer(self, kind: str, items: Sequence[Mapping[str, object]]) -> ApplyResult:
        self.requests.append((kind, len(items)))
        if self.fail is not None:
            raise self.fail
        results = []
        for index, item in enumerate(items):
            if item.get("MicrosoftClickId") in self.reject:
                results.append(ItemResult(index, False, 5604, "OfflineConversionMicrosoftClickIdInvalid", "bad click"))
            else:
                results.append(ItemResult(index, True))
        return ApplyResult(tuple(results), ("tracking-1",))

    def apply_offline_conversions(self, items: Sequence[Mapping[str, object]]) -> ApplyResult:
        return self._answer("offline", items)

    def apply_offline_conversion_adjustments(self, items: Sequence[Mapping[str, object]]) -> ApplyResult:
        return self._answer("offline_adjustment", items)

    def apply_online_conversion_adjustments(self, items: Sequence[Mapping[str, object]]) -> ApplyResult:
        return self._answer("online_adjustment", items)


class FakeUet:
    def __init__(self) -> None:
        self.requests: list[tuple[str, int]] = []

    def send_events(self, tag_id: str, events: Sequence[Mapping[str, object]]) -> list[UetEventResult]:
        self.requests.append((tag_id, len(events)))
        return [UetEventResult(index=i, event_id=None, status="delivered") for i in range(len(events))]


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[OutboxStore]:
    store = open_store(f"sqlite:///{tmp_path / 'outbox.db'}")
    yield store
    store.close()


def _dispatcher(store: OutboxStore, clock: FakeClock, **options: Any) -> Dispatcher:
    options.setdefault("retry_policy", RetryPolicy(rng=lambda: 0.5))
    return Dispatcher(store, clock=clock, **options)


def _fixed_clock() -> FakeClock:
    clock = FakeClock()
    clock.now = T0
    return clock


def test_rows_are_grouped_by_kind_and_account_one_request_each(sqlite_store: OutboxStore) -> None:
    clock = _fixed_clock()
    rows = [new_row(n, account="A") for n in range(3)] + [new_row(n, account="B") for n in range(3, 5)]
    rows += [new_row(n, account="A", kind="online_adjustment") for n in range(5, 7)]
    rows += [new_row(7, account="tag-1", kind="uet", payload={"eventId": "e7"})]
    for row in rows:
        sqlite_store.enqueue(row, now=T0)
    campaign, uet = FakeCampaign(), FakeUet()
    report = _dispatcher(sqlite_store, clock, campaign=campaign, uet=uet).step()
    assert sorted(campaign.requests) == [("offline", 2), ("offline", 3), ("online_adjustment", 2)]
    assert uet.requests == [("tag-1", 1)]
    assert (report.claimed, report.delivered, report.requests) == (8, 8, 4)


def test_at_most_1000_items_per_request(sqlite_store: OutboxStore) -> None:
    clock = _fixed_clock()
    for n in range(1500):
        sqlite_store.enqueue(new_row(n), now=T0)
    campaign = FakeCampaign()
    report = _dispatcher(sqlite_store, clock, campaign=campaign).drain()
    assert campaign.requests == [("offline", MAX_BATCH), ("offline", 500)]
    assert report.delivered == 1500
    with pytest.raises(ValueError, match="1000"):
        Dispatcher(sqlite_store, batch_size=MAX_BATCH + 1)


def test_outcomes_are_typed_per_item(sqlite_store: OutboxStore) -> None:
    clock = _fixed_clock()
    for n in (1, 2):
        sqlite_store.enqueue(new_row(n), now=T0)
    _dispatcher(sqlite_store, clock, campaign=FakeCampaign(reject=frozenset({"c2"}))).step()
    delivered, rejected = sqlite_store.find("ord_1")[0], sqlite_store.find("ord_2")[0]
    assert (delivered.state, delivered.tracking_id, delivered.last_error_code) == ("delivered", "tracking-1", None)
    assert rejected.state == "rejected"
    assert rejected.last_error_code == "5604 OfflineConversionMicrosoftClickIdInvalid"


def test_retry_exhaustion_is_a_typed_code_not_a_message(sqlite_store: OutboxStore) -> None:
    clock = _fixed_clock()
    sqlite_store.enqueue(new_row(1), now=T0)
    policy = RetryPolicy(max_attempts=2, rng=lambda: 0.5)
    dispatcher = _dispatcher(
        sqlite_store, clock, campaign=FakeCampaign(fail=TransientError("down")), retry_policy=policy
    )
    assert dispatcher.step().retried == 1
    clock.advance(3600)
    assert dispatcher.step().dead == 1
    row = sqlite_store.find("ord_1")[0]
    assert (row.state, row.last_error_code) == ("dead", Code.ATTEMPTS_EXHAUSTED)
    assert EventStatus.from_row(row).exhausted
    assert dispatcher.metrics.snapshot()["dead.attempts_exhausted"] == 1


def test_exhaustion_is_read_from_the_decision_flag_whatever_its_reason_says(sqlite_store: OutboxStore) -> None:
    @dataclass(frozen=True)
    class GiveUpAtOnce(RetryPolicy):
        def classify(self, error_or_result: object, attempt: int, **options: Any) -> RetryDecision:
            return RetryDecision("terminal", 0.0, "any wording at all", exhausted=True)

    clock = _fixed_clock()
    sqlite_store.enqueue(new_row(1), now=T0)
    policy = GiveUpAtOnce(rng=lambda: 0.5)
    _dispatcher(sqlite_store, clock, campaign=FakeCampaign(fail=TransientError("down")), retry_policy=policy).step()
    row = sqlite_store.find("ord_1")[0]
    assert (row.state, row.last_error_code) == ("dead", "attempts_exhausted")
    assert row.last_error_message is not None
    assert row.last_error_message.startswith("any wording at all")
    assert not RetryPolicy().classify(TransientError("down"), 1).exhausted
    assert RetryPolicy(max_attempts=1).classify(TransientError("down"), 1).exhausted


@pytest.mark.parametrize("debug", [False, True], ids=["batched", "debug-per-item"])
def test_a_batchs_outcomes_are_each_items_own(debug: bool, caplog: pytest.LogCaptureFixture) -> None:
    """``OutcomeRules.items`` (a batch's answers, deliveries counted once per kind) gives, row by row and in order, what
    ``item`` gives for each; the counters come out the same, and at DEBUG each delivery is still logged."""
    from msclkid_middleware.dispatch.outcomes import OutcomeRules
    from msclkid_middleware.dispatch.report import Metrics
    from msclkid_middleware.outbox.base import ClaimedRow

    clock = _fixed_clock()

    def rules() -> OutcomeRules:
        return OutcomeRules(
            retry_policy=RetryPolicy(rng=lambda: 0.5), clock=clock, max_attempts=8, metrics=Metrics(), goal_ages=None
        )

    kinds = ["offline", "offline", "online_adjustment", "offline", "offline"]
    rows = [
        ClaimedRow(n, kind, "A", f"ord_{n}", "lease", 1, "Purchase", T0, None, None, "{}")  # type: ignore[arg-type]
        for n, kind in enumerate(kinds)
    ]
    answers = [
        ItemResult(0, True),
        ItemResult(1, False, 5604, "OfflineConversionMicrosoftClickIdInvalid", "bad click"),
        ItemResult(2, True, tracking_id="item-tracking"),
        ItemResult(3, False, 0, "InternalError", "try again"),
        ItemResult(4, True),
    ]
    caplog.set_level(logging.DEBUG if debug else logging.INFO, logger="msclkid_middleware.dispatch.outcomes")
    batched, single = rules(), rules()
    outcomes = batched.items(rows, answers, "request-tracking")
    assert outcomes == [single.item(row, answer, "request-tracking") for row, answer in zip(rows, answers, strict=True)]
    assert [o.state for o in outcomes] == ["delivered", "rejected", "delivered", "pending", "delivered"]
    assert [o.row_id for o in outcomes] == [0, 1, 2, 3, 4]
    assert (outcomes[0].tracking_id, outcomes[2].tracking_id) == ("request-tracking", "item-tracking")
    assert batched.metrics.snapshot() == single.metrics.snapshot()
    assert batched.metrics.snapshot()["delivered.offline"] == 2
    assert batched.metrics.snapshot()["delivered.online_adjustment"] == 1
    logged = [r.getMessage() for r in caplog.records if r.getMessage().startswith("delivered")]
    assert len(logged) == (6 if debug else 0)  # both rules objects log each of their three deliveries
