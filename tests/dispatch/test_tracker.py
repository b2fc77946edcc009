"""ConversionTracker end to end: record → flush → Microsoft (the emulator, over real HTTP on 127.0.0.1)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from msclkid_middleware.capture.clickid import Click
from msclkid_middleware.capture.consent import Consent
from msclkid_middleware.conversions.identity import hash_email
from msclkid_middleware.dispatch.tracker import ConversionTracker
from msclkid_middleware.errors import (
    OutboxFull,
    StoreError,
)
from msclkid_middleware.microsoft import RetryPolicy
from msclkid_middleware.testing import EmulatorHandle, run_emulator
from tests.outbox.conftest import FakeClock, click_id, make_tracker, record
from tests.script_helpers import REPO, run_script_ok

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


# -- failures: retries, pauses, storage -----------------------------------------------------------


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


def test_conversion_tracker_is_exported_lazily() -> None:
    import msclkid_middleware

    assert msclkid_middleware.ConversionTracker is ConversionTracker


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


# -- close() while other threads record and deliver (issue 21 item 5) ---------------------------------------

_CLOSE_WHILE_RECORDING = r"""
import sys, threading, time
from datetime import UTC, datetime, timedelta
sys.path.insert(0, sys.argv[2])
from msclkid_middleware.capture.consent import Consent
from msclkid_middleware.dispatch.tracker import ConversionTracker
from msclkid_middleware.errors import ClosedError
from msclkid_middleware.outbox.sqlite import SqliteOutbox

granted = Consent.granted_by("explicit")
for round_ in range(int(sys.argv[3])):
    url = f"sqlite:///{sys.argv[1]}/o{round_}.db"
    tracker = ConversionTracker(store_url=url, microsoft=False, uet=False, uet_tag_id="12345")
    stop = threading.Event()
    recorded, odd = [], []

    def record(n):
        i = 0
        while not stop.is_set():
            i += 1
            when = datetime.now(UTC) - timedelta(minutes=1)
            try:
                tracker.record_uet_event(f"e{n}-{i}", "purchase", when, click=f"{i:032x}", consent=granted)
                recorded.append(f"e{n}-{i}")
            except ClosedError:
                pass
            except Exception as exc:
                odd.append(repr(exc))

    def deliver():
        while not stop.is_set():
            try:
                tracker.flush(timeout=1)
            except ClosedError:
                pass
            except Exception as exc:
                odd.append(repr(exc))

    threads = [threading.Thread(target=record, args=(n,)) for n in range(3)] + [threading.Thread(target=deliver)]
    for t in threads:
        t.start()
    time.sleep(0.1)
    tracker.close()
    time.sleep(0.02)
    stop.set()
    for t in threads:
        t.join()
    assert not odd, odd[:3]
    try:
        tracker.record_uet_event("late", "purchase", datetime.now(UTC), click="0" * 32, consent=granted)
    except ClosedError:
        pass
    else:
        raise AssertionError("a record after close() was accepted")
    store = SqliteOutbox(url[len("sqlite:///"):])
    kept = {r.event_id for r in store.scan()}
    store.close()
    assert set(recorded) <= kept, "an event recorded before close() was lost"
print("ok")
"""


def test_close_while_other_threads_record_and_deliver_never_crashes(tmp_path: Path) -> None:
    run_script_ok(_CLOSE_WHILE_RECORDING, str(tmp_path), str(REPO), "6", timeout=180)
