"""EventStatus: the shop's view of an outbox row, field by field."""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime, timedelta

import pytest

from msclkid_middleware.dispatch.status import EventStatus
from msclkid_middleware.outbox.base import OutboxRow

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def row(state: str = "pending") -> OutboxRow:
    values = {f.name: None for f in fields(OutboxRow)}
    values.update(
        id=7,
        kind="offline",
        account="123",
        event_id="order-1",
        idempotency_key="key-1",
        payload={},
        goal_name="Purchase",
        consent="granted",
        state=state,
        attempts=2,
        next_attempt_at=T0 + timedelta(minutes=5),
        last_error_code="5604 OfflineConversionMicrosoftClickIdInvalid",
        last_error_message="invalid click",
        tracking_id="tr-1",
        paused_reason=None,
        warnings=("w",),
        created_at=T0,
        updated_at=T0 + timedelta(minutes=1),
        delivered_at=None,
    )
    return OutboxRow(**{name: value for name, value in values.items() if name in {f.name for f in fields(OutboxRow)}})


def test_every_status_field_but_three_is_an_outbox_row_field() -> None:
    row_fields = {f.name for f in fields(OutboxRow)}
    own = {"next_attempt_at", "adjustments", "created"}
    assert {f.name for f in fields(EventStatus)} - own <= row_fields


@pytest.mark.parametrize("state", ["pending", "held", "delivered"])
def test_a_status_copies_its_row_and_keeps_the_retry_time_only_while_pending(state: str) -> None:
    source = row(state)
    status = EventStatus.from_row(source, created=False)
    for name in (
        "event_id",
        "kind",
        "state",
        "attempts",
        "last_error_code",
        "last_error_message",
        "tracking_id",
        "paused_reason",
        "warnings",
        "idempotency_key",
        "created_at",
        "updated_at",
        "delivered_at",
    ):
        assert getattr(status, name) == getattr(source, name), name
    assert status.next_attempt_at == (source.next_attempt_at if state == "pending" else None)
    assert status.created is False
    assert status.adjustments == ()
