"""Regression tests for defects found in the independent review (one test per defect, named after it)."""

from __future__ import annotations

from datetime import UTC, datetime

from tests.wsgi_helpers import HEX

NINETY_DAYS = 90 * 24 * 3600


def test_money_as_decimal_is_accepted_and_sent_as_a_double() -> None:
    """Shops keep order totals as Decimal (Django's DecimalField, SQL NUMERIC); Microsoft wants a JSON double."""
    from datetime import timedelta
    from decimal import Decimal

    import pytest

    from msclkid_middleware.conversions import OfflineConversion, OfflineConversionAdjustment
    from msclkid_middleware.errors import ValidationError

    when = datetime.now(UTC) - timedelta(hours=1)
    wire = OfflineConversion(
        conversion_name="Purchase", conversion_time=when, value=Decimal("149.95"), currency="USD", msclkid=HEX
    ).to_wire()
    assert wire["ConversionValue"] == 149.95
    assert type(wire["ConversionValue"]) is float
    restate = OfflineConversionAdjustment(
        adjustment_type="Restate",
        conversion_name="Purchase",
        conversion_time=when,
        adjustment_time=when + timedelta(minutes=5),
        value=Decimal("99.5"),
        currency="USD",
        msclkid=HEX,
    ).to_wire()
    assert restate["AdjustmentValue"] == 99.5
    for bad in (Decimal("NaN"), Decimal("sNaN"), Decimal("Infinity"), Decimal("-1")):
        with pytest.raises(ValidationError):
            OfflineConversion(conversion_name="Purchase", conversion_time=when, value=bad, msclkid=HEX)


def test_tracker_rejects_a_client_that_is_not_one_at_construction(tmp_path: object) -> None:
    """``microsoft=True`` used to fail at the first flush with an AttributeError and rows left in flight."""
    import pytest

    from msclkid_middleware.dispatch.tracker import ConversionTracker
    from msclkid_middleware.errors import ConfigError

    url = f"sqlite:///{tmp_path}/outbox.sqlite3"
    for options in ({"microsoft": True}, {"uet": "token"}, {"microsoft": object()}):
        with pytest.raises(ConfigError):
            ConversionTracker(store_url=url, **options)


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
