"""The recording recipe: validation, consent snapshot and suppression, idempotency keys, adjustments keyed
to their original, the application's transaction; and recording never imports ``requests``."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from msclkid_middleware.capture.consent import Consent
from msclkid_middleware.dispatch.tracker import ConversionTracker
from msclkid_middleware.errors import (
    AdjustmentError,
    UnknownEvent,
    UnknownGoal,
    ValidationError,
)
from msclkid_middleware.testing import EmulatorHandle
from tests.outbox.conftest import FakeClock, click_id, make_tracker, record


def test_raw_email_and_phone_never_reach_the_store(
    tracker: ConversionTracker, clock: FakeClock, tmp_path: Path
) -> None:
    record(tracker, clock, 1, email="Jane.Doe+shop@Example.com", phone="+14255551234")
    dump = "\n".join(sqlite3.connect(tmp_path / "outbox.db").iterdump())
    assert "Jane" not in dump
    assert "example.com" not in dump.lower()
    assert "4255551234" not in dump


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


def test_recording_a_conversion_does_not_import_requests(tmp_path: Path) -> None:
    """The request path records into the outbox; only building or using a Microsoft client loads ``requests``."""
    code = (
        "import sys\n"
        "from datetime import UTC, datetime, timedelta\n"
        "import msclkid_middleware.dispatch.tracker as t\n"
        f"tracker = t.ConversionTracker(store_url='sqlite:///{tmp_path / 'outbox.db'}')\n"
        "status = tracker.record_offline('ord-1', 'Purchase', datetime.now(UTC) - timedelta(hours=1),"
        " click='0123456789abcdef0123456789abcdef')\n"
        "tracker.close()\n"
        "print(status.state, sorted(m for m in ('requests', 'urllib3') if m in sys.modules))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MSADS_", "UET_", "MSCLKID_"))}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert result.stdout.split() == ["pending", "[]"]


# -- issue 19 item 4: a denied UET event carries no identifier and, by default, no client IP or user agent ------

_EVERY_IDENTIFIER: dict[str, Any] = {
    "phone": "+14255551234",
    "hashed_email": "a" * 64,
    "external_id": "user-77",
    "client_ip_address": "203.0.113.9",
    "client_user_agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/135.0",
}


@pytest.mark.parametrize("basis", ["gpc", "cookie", "tcf", "snippet", "resolver", "default"])
def test_denied_uet_event_sends_only_the_anonymous_id(
    tracker: ConversionTracker, ms: EmulatorHandle, clock: FakeClock, basis: Any
) -> None:
    anon = "b171a9b06ce011ecafcd1b209be8601b"
    tracker.record_uet_event(
        "evt_all",
        "lead",
        clock(),
        click=click_id(3),
        anonymous_id=anon,
        consent=Consent.denied_by(basis),
        **_EVERY_IDENTIFIER,
    )
    assert tracker.flush().delivered == 1
    (item,) = ms.received("uet")
    assert item.payload["adStorageConsent"] == "D"
    assert item.payload["userData"] == {"anonymousId": anon}
    stored = repr(tracker.store.find("evt_all")[0].payload)
    for value in ("user-77", "203.0.113.9", "Firefox", click_id(3), "a" * 64):
        assert value not in stored


def test_denied_uet_event_without_anonymous_id_is_suppressed(
    tracker: ConversionTracker, ms: EmulatorHandle, clock: FakeClock
) -> None:
    status = tracker.record_uet_event(
        "evt_ext", "lead", clock(), click=click_id(4), consent=Consent.denied_by("gpc"), **_EVERY_IDENTIFIER
    )
    assert status.state == "suppressed"  # the external ID alone does not make it sendable
    tracker.flush()
    assert ms.received("uet") == []


def test_client_info_with_denied_consent_only_when_the_site_allows_it(
    ms: EmulatorHandle, tmp_path: Path, clock: FakeClock
) -> None:
    tracker = make_tracker(ms, tmp_path, clock, settings={"uet_denied_client_info": True})
    try:
        anon = "b171a9b06ce011ecafcd1b209be8601b"
        tracker.record_uet_event(
            "evt_ci", "lead", clock(), anonymous_id=anon, consent=Consent.denied_by("gpc"), **_EVERY_IDENTIFIER
        )
        assert tracker.flush().delivered == 1
        (item,) = ms.received("uet")
        assert item.payload["userData"] == {
            "anonymousId": anon,
            "clientIpAddress": "203.0.113.9",
            "clientUserAgent": _EVERY_IDENTIFIER["client_user_agent"],
        }
    finally:
        tracker.close()


def test_granted_uet_event_keeps_everything(tracker: ConversionTracker, ms: EmulatorHandle, clock: FakeClock) -> None:
    tracker.record_uet_event(
        "evt_g", "lead", clock(), click=click_id(5), consent=Consent.granted_by("cookie"), **_EVERY_IDENTIFIER
    )
    assert tracker.flush().delivered == 1
    (item,) = ms.received("uet")
    assert set(item.payload["userData"]) == {"msclkid", "em", "ph", "externalId", "clientIpAddress", "clientUserAgent"}


def test_the_setting_is_read_from_the_environment() -> None:
    from msclkid_middleware.config import Settings

    assert Settings.from_env({}).uet_denied_client_info is False
    assert Settings.from_env({"MSCLKID_UET_DENIED_SEND_CLIENT_INFO": "true"}).uet_denied_client_info is True
