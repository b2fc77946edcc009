"""ConversionTracker end to end: record → flush → Microsoft (the emulator, over real HTTP on 127.0.0.1)."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from msclkid_middleware.capture.clickid import Click
from msclkid_middleware.capture.consent import Consent
from msclkid_middleware.conversions.identity import hash_email
from msclkid_middleware.dispatch.tracker import ConversionTracker
from msclkid_middleware.errors import (
    AdjustmentError,
    OutboxFull,
    StoreError,
    UnknownEvent,
    UnknownGoal,
    ValidationError,
)
from msclkid_middleware.microsoft import RetryPolicy
from msclkid_middleware.testing import EmulatorHandle, run_emulator

from .conftest import FakeClock, click_id, make_tracker, record

# -- the whole path, per kind ---------------------------------------------------------------------


def test_offline_record_flush_delivered(tracker: ConversionTracker, ms: EmulatorHandle, clock: FakeClock) -> None:
    click = Click(click_id(1), clock() - timedelta(hours=2))
    ms.add_click(click.msclkid, click.captured_at)
    status = tracker.record_offline(
        "ord_1", "Purchase", clock() - timedelta(minutes=5), 149.95, "USD", click=click, email=" John@Contoso.com "
    )
    assert (status.state, status.created, status.attempts) == ("pending", True, 0)
    report = tracker.flush()
    assert (report.delivered, report.requests, report.remaining) == (1, 1, 0)
    (item,) = ms.received("offline")
    assert item.outcome == "accepted"
    assert item.payload == {
        "ConversionCurrencyCode": "USD",
        "ConversionName": "Purchase",
        "ConversionTime": (clock() - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "ConversionValue": 149.95,
        "HashedEmailAddress": hash_email("john@contoso.com"),
        "MicrosoftClickId": click.msclkid,
    }
    done = tracker.status("ord_1")
    assert done.state == "delivered"
    assert done.tracking_id == item.tracking_id
    assert done.attempts == 1
    assert tracker.metrics()["delivered.offline"] == 1


def test_raw_email_and_phone_never_reach_the_store(
    tracker: ConversionTracker, clock: FakeClock, tmp_path: Path
) -> None:
    record(tracker, clock, 1, email="Jane.Doe+shop@Example.com", phone="+14255551234")
    dump = "\n".join(sqlite3.connect(tmp_path / "outbox.db").iterdump())
    assert "Jane" not in dump
    assert "example.com" not in dump.lower()
    assert "4255551234" not in dump


def test_uet_event_delivered_with_consent_flag(
    tracker: ConversionTracker, ms: EmulatorHandle, clock: FakeClock
) -> None:
    tracker.record_uet_event(
        "evt_1",
        "checkout_complete",
        clock() - timedelta(minutes=1),
        click=click_id(7),
        value=20.0,
        currency="EUR",
        transaction_id="T-1",
        consent=Consent.granted_by("cookie"),
    )
    assert tracker.flush().delivered == 1
    (item,) = ms.received("uet")
    assert item.payload["eventId"] == "evt_1"
    assert item.payload["adStorageConsent"] == "G"
    assert item.payload["userData"] == {"msclkid": click_id(7)}
    assert item.payload["customData"] == {"currency": "EUR", "transactionId": "T-1", "value": 20.0}
    assert tracker.status("evt_1").state == "delivered"


def test_online_adjustment_delivered(tracker: ConversionTracker, ms: EmulatorHandle, clock: FakeClock) -> None:
    status = tracker.adjust_online("T-99", "Purchase", "Restate", value=5.0, currency="USD")
    assert status.event_id == "T-99"
    assert tracker.flush().delivered == 1
    (item,) = ms.received("online_adjustments")
    assert item.payload["TransactionId"] == "T-99"
    assert item.payload["AdjustmentType"] == "Restate"
    assert tracker.status("T-99").state == "delivered"


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        pytest.param(
            "restate",
            {"AdjustmentType": "Restate", "AdjustmentValue": 5.5, "AdjustmentCurrencyCode": "USD"},
            id="restate",
        ),
        pytest.param("retract", {"AdjustmentType": "Retract"}, id="retract"),
    ],
)
def test_adjustment_reuses_the_originals_exact_fields(
    tracker: ConversionTracker, ms: EmulatorHandle, clock: FakeClock, action: str, expected: dict[str, Any]
) -> None:
    record(tracker, clock, 1, email="a@b.example", phone="+14255551234")
    # Recorded before the original is delivered: it waits for it.
    status = tracker.restate("ord_1", 5.5) if action == "restate" else tracker.retract("ord_1")
    assert status.kind == "offline_adjustment"
    report = tracker.flush()
    assert report.delivered == 2
    assert report.requests == 2
    (original,) = ms.received("offline")
    (adjustment,) = ms.received("offline_adjustments")
    assert original.seq < adjustment.seq
    for name in ("ConversionName", "ConversionTime", "MicrosoftClickId", "HashedEmailAddress", "HashedPhoneNumber"):
        assert adjustment.payload[name] == original.payload[name]
    for name, value in expected.items():
        assert adjustment.payload[name] == value
    assert ("AdjustmentValue" in adjustment.payload) is (action == "restate")
    assert adjustment.outcome == "accepted"
    assert [a.state for a in tracker.status("ord_1").adjustments] == ["delivered"]


def test_adjustment_errors(tracker: ConversionTracker, ms: EmulatorHandle, clock: FakeClock) -> None:
    with pytest.raises(UnknownEvent) as info:
        tracker.restate("ord_never", 1.0)
    assert info.value.event_id == "ord_never"
    record(tracker, clock, 1)
    tracker.retract("ord_1")
    with pytest.raises(AdjustmentError, match="already retracted"):
        tracker.retract("ord_1")
    with pytest.raises(AdjustmentError, match="already retracted"):
        tracker.restate("ord_1", 3.0)
    # An original Microsoft rejected cannot be adjusted.
    record(tracker, clock, 2, conversion_name="NoSuchGoal")
    tracker.flush()
    assert tracker.status("ord_2").state == "rejected"
    with pytest.raises(AdjustmentError, match="rejected"):
        tracker.restate("ord_2", 1.0)


def test_adjustment_of_an_original_rejected_later_goes_dead(
    tracker: ConversionTracker, ms: EmulatorHandle, clock: FakeClock
) -> None:
    record(tracker, clock, 1, conversion_name="NoSuchGoal")
    tracker.restate("ord_1", 4.0)
    report = tracker.flush()
    assert report.rejected == 1
    status = tracker.status("ord_1")
    assert status.state == "rejected"
    assert status.last_error_code == "5606 OfflineConversionNameInvalid"
    (adjustment,) = status.adjustments
    assert adjustment.state == "dead"
    assert adjustment.last_error_code == "original_not_delivered"
    assert ms.received("offline_adjustments") == []


# -- batching and per-item outcomes ---------------------------------------------------------------


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


def test_duplicate_record_calls_deliver_once(tracker: ConversionTracker, ms: EmulatorHandle, clock: FakeClock) -> None:
    first = record(tracker, clock, 1)
    again = record(tracker, clock, 1)
    # A retried checkout that recomputes the time is still the same event.
    later = record(tracker, clock, 1, conversion_time=clock() - timedelta(minutes=1), value=99.0)
    assert first.created is True
    assert again.created is False
    assert later.created is False
    assert again.idempotency_key == later.idempotency_key == first.idempotency_key
    tracker.flush()
    assert len(ms.received("offline")) == 1
    assert record(tracker, clock, 1).state == "delivered"
    assert tracker.metrics()["duplicates.offline"] == 3


# -- consent and validation -----------------------------------------------------------------------


def test_denied_consent_suppresses_offline_rows(
    tracker: ConversionTracker, ms: EmulatorHandle, clock: FakeClock
) -> None:
    status = record(tracker, clock, 1, email="a@b.example", consent=Consent.denied_by("gpc"))
    assert status.state == "suppressed"
    assert status.last_error_code == "consent_denied"
    assert status.last_error_message is not None
    assert "gpc" in status.last_error_message
    (row,) = tracker.store.find("ord_1")
    assert "MicrosoftClickId" not in row.payload
    assert "HashedEmailAddress" not in row.payload
    assert row.consent == {
        "state": "denied",
        "basis": "gpc",
        "dropped": ["msclkid", "identifiers"],
        "reason": "consent denied (gpc)",
    }
    # Another denied purchase in the same second is another event, not a duplicate.
    other = record(tracker, clock, 2, consent=Consent.denied_by("gpc"))
    assert (other.created, other.state) == (True, "suppressed")
    assert tracker.flush().claimed == 0
    assert ms.received() == []
    assert tracker.metrics()["suppressed.consent_denied"] == 2


def test_denied_uet_event_keeps_the_anonymous_id_and_says_D(
    tracker: ConversionTracker, ms: EmulatorHandle, clock: FakeClock
) -> None:
    anon = "b171a9b06ce011ecafcd1b209be8601b"
    tracker.record_uet_event(
        "evt_d",
        "lead",
        clock(),
        click=click_id(1),
        email="a@b.example",
        anonymous_id=anon,
        consent=Consent.denied_by("tcf"),
    )
    tracker.record_uet_event("evt_none", "lead", clock(), click=click_id(2), consent=Consent.denied_by("tcf"))
    assert tracker.status("evt_none").state == "suppressed"
    assert tracker.flush().delivered == 1
    (item,) = ms.received("uet")
    assert item.payload["adStorageConsent"] == "D"
    assert item.payload["userData"] == {"anonymousId": anon}


def test_site_default_consent_applies_when_the_app_passes_none(
    ms: EmulatorHandle, tmp_path: Path, clock: FakeClock
) -> None:
    tracker = make_tracker(ms, tmp_path, clock, settings={"consent_default": "denied"})
    try:
        assert record(tracker, clock, 1).state == "suppressed"
        assert record(tracker, clock, 2, consent=Consent.granted_by("cookie")).state == "pending"
    finally:
        tracker.close()


def test_unknown_goal_is_rejected_at_record_time(ms: EmulatorHandle, tmp_path: Path, clock: FakeClock) -> None:
    tracker = make_tracker(ms, tmp_path, clock, goals=["Purchase", "Lead"])
    try:
        with pytest.raises(UnknownGoal) as info:
            record(tracker, clock, 1, conversion_name="purchase")
        assert info.value.field == "conversion_name"
        assert tracker.store.find("ord_1") == []
        assert record(tracker, clock, 2, conversion_name="Lead").state == "pending"
        assert tracker.metrics()["rejected_at_record.unknown_goal"] == 1
    finally:
        tracker.close()


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        pytest.param({"event_id": ""}, "event_id", id="empty-event-id"),
        pytest.param({"click": None}, "click", id="nothing-to-match-on"),
        pytest.param({"click": "bad id!"}, "click", id="malformed-click"),
        pytest.param({"email": "not-an-address"}, "email", id="bad-email"),
        pytest.param({"currency": "XXX"}, "currency", id="bad-currency"),
        pytest.param({"value": -1.0}, "value", id="negative-value"),
        pytest.param({"conversion_time": "2026-11-28"}, "conversion_time", id="time-not-datetime"),
        pytest.param({"conversion_time_offset": timedelta(days=91)}, "conversion_time", id="older-than-90-days"),
        pytest.param({"conversion_time_offset": -timedelta(hours=1)}, "conversion_time", id="in-the-future"),
    ],
)
def test_validation_names_the_field(
    tracker: ConversionTracker, clock: FakeClock, overrides: dict[str, Any], field: str
) -> None:
    offset = overrides.pop("conversion_time_offset", None)
    if offset is not None:
        overrides["conversion_time"] = clock() - offset
    with pytest.raises(ValidationError) as info:
        record(tracker, clock, 1, **overrides)
    assert info.value.field == field
    assert tracker.store.open_count() == 0


# -- failures: retries, pauses, storage -----------------------------------------------------------


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


def test_the_rotated_refresh_token_survives_a_restart(tmp_path: Path, clock: FakeClock) -> None:
    with run_emulator(invalidate_used_refresh_tokens=True) as ms:
        first = make_tracker(ms, tmp_path, clock)
        record(first, clock, 1)
        assert first.flush().delivered == 1
        first.close()
        # The seed in MSADS_REFRESH_TOKEN is now invalid (strict rotation); the store holds the new one.
        second = make_tracker(ms, tmp_path, clock)
        try:
            record(second, clock, 2)
            assert second.flush().delivered == 1
            stored = second.store.load_token("microsoft")
            assert stored is not None
            assert stored.refresh_token != ms.env["MSADS_REFRESH_TOKEN"]
        finally:
            second.close()


def test_storage_failures_reach_the_caller_typed_and_counted(tracker: ConversionTracker, clock: FakeClock) -> None:
    conn = tracker.store._conn()  # type: ignore[attr-defined]
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages}")

    def fill() -> None:
        for n in range(200):
            record(tracker, clock, n, external_attribution_model="x" * 90, external_attribution_credit=0.5)

    with pytest.raises(StoreError) as info:
        fill()
    assert info.value.reason == "storage_full"
    assert tracker.metrics()["store_errors.storage_full"] == 1


def test_outbox_full_rejects_new_events(ms: EmulatorHandle, tmp_path: Path, clock: FakeClock) -> None:
    tracker = make_tracker(ms, tmp_path, clock, max_pending=2)
    try:
        record(tracker, clock, 1)
        record(tracker, clock, 2)
        with pytest.raises(OutboxFull):
            record(tracker, clock, 3)
        assert tracker.metrics()["store_errors.outbox_full"] == 1
        tracker.flush()
        assert record(tracker, clock, 3).state == "pending"
    finally:
        tracker.close()


def test_record_joins_the_applications_transaction(
    tracker: ConversionTracker, clock: FakeClock, tmp_path: Path
) -> None:
    app = sqlite3.connect(tmp_path / "outbox.db")
    app.execute("CREATE TABLE orders (id TEXT PRIMARY KEY)")
    app.commit()
    app.execute("INSERT INTO orders VALUES ('ord_1')")
    record(tracker, clock, 1, connection=app)
    app.rollback()
    with pytest.raises(UnknownEvent):
        tracker.status("ord_1")
    app.execute("INSERT INTO orders VALUES ('ord_1')")
    record(tracker, clock, 1, connection=app)
    app.commit()
    assert tracker.status("ord_1").state == "pending"
    app.close()


def test_a_tracker_without_credentials_records_and_waits(tmp_path: Path, clock: FakeClock) -> None:
    tracker = ConversionTracker(store_url=f"sqlite:///{tmp_path / 'o.db'}", clock=clock)
    try:
        assert tracker.dispatcher.kinds == ()
        record(tracker, clock, 1)
        report = tracker.flush()
        assert (report.claimed, report.remaining) == (0, 1)
        assert tracker.status("ord_1").state == "pending"
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


def test_conversion_tracker_is_exported_lazily() -> None:
    import msclkid_middleware

    assert msclkid_middleware.ConversionTracker is ConversionTracker


def test_restates_are_keyed_by_time_and_value(tracker: ConversionTracker, ms: EmulatorHandle, clock: FakeClock) -> None:
    record(tracker, clock, 1)
    first = tracker.restate("ord_1", 8.0)
    again = tracker.restate("ord_1", 8.0)  # a retried refund handler: the same adjustment
    other = tracker.restate("ord_1", 6.0)  # a second partial refund in the same second
    assert first.created is True
    assert again.created is False
    assert again.idempotency_key == first.idempotency_key
    assert other.created is True
    assert other.idempotency_key != first.idempotency_key
    tracker.flush()
    assert [i.payload["AdjustmentValue"] for i in ms.received("offline_adjustments")] == [8.0, 6.0]


def test_no_secret_reaches_the_logs_or_the_metrics(
    ms: EmulatorHandle, tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    tracker = make_tracker(ms, tmp_path, clock, retry_policy=RetryPolicy(max_attempts=1, rng=lambda: 0.5))
    try:
        with caplog.at_level(logging.DEBUG):
            ms.expire_access_tokens()
            record(tracker, clock, 1)
            tracker.record_uet_event("evt_1", "lead", clock(), anonymous_id="a" * 32)
            ms.inject_fault("offline", "http", status=500, times=1)
            record(tracker, clock, 2)
            tracker.flush()
            stored = tracker.store.load_token("microsoft")
            assert stored is not None
            logging.getLogger("msclkid_middleware.dispatch.dispatcher").warning(
                "a careless message with %s and %s", stored.refresh_token, stored.data.get("access_token")
            )
        secrets = [
            ms.env["MSADS_DEVELOPER_TOKEN"],
            ms.env["MSADS_CLIENT_SECRET"],
            ms.env["MSADS_REFRESH_TOKEN"],
            ms.env["UET_API_TOKEN"],
            stored.refresh_token,
            str(stored.data.get("access_token")),
        ]
        text = caplog.text + repr(tracker.metrics()) + repr(tracker)
        assert "<redacted>" in caplog.text
        for secret in secrets:
            assert secret not in text
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
