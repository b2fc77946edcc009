"""The clients send the models' own wire format (``to_wire()``) and the emulator accepts it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from msclkid_middleware.conversions import (
    OfflineConversion,
    OfflineConversionAdjustment,
    OnlineConversionAdjustment,
    UetCustomData,
    UetEvent,
    UetUserData,
)
from msclkid_middleware.microsoft import CampaignManagementClient, UetClient
from msclkid_middleware.testing import EmulatorHandle

from .ms_helpers import click_id


def test_offline_conversion_and_adjustments_from_models(ms: EmulatorHandle, campaign: CampaignManagementClient) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    clicked = now - timedelta(hours=5)
    ms.add_click(click_id(1), clicked)
    ms.add_click(click_id(2), clicked)
    when = clicked + timedelta(hours=1)

    def conversion(name: str, value: float, click: str) -> OfflineConversion:
        return OfflineConversion(conversion_name=name, conversion_time=when, value=value, currency="USD", msclkid=click)

    original = conversion("Purchase", 149.95, click_id(1))
    other = conversion("Purchase", 20.0, click_id(2))
    unknown_goal = conversion("NoSuchGoal", 1.0, click_id(2))
    result = campaign.apply_offline_conversions([original, unknown_goal, other])
    assert [r.accepted for r in result] == [True, False, True]
    assert result[1].code == 5606
    stored = {r.payload["MicrosoftClickId"]: r.payload for r in ms.received("offline", outcome="accepted")}
    assert stored[click_id(1)] == original.to_wire()

    adjusted_at = now - timedelta(minutes=1)
    restate = OfflineConversionAdjustment(
        adjustment_type="Restate",
        conversion_name="Purchase",
        conversion_time=when,
        adjustment_time=adjusted_at,
        value=99.95,
        currency="USD",
        msclkid=click_id(1),
    )
    retract = OfflineConversionAdjustment(
        adjustment_type="Retract",
        conversion_name="Purchase",
        conversion_time=when,
        adjustment_time=adjusted_at,
        msclkid=click_id(2),
    )
    adjusted = campaign.apply_offline_conversion_adjustments([restate, retract])
    assert [r.accepted for r in adjusted] == [True, True]
    online = OnlineConversionAdjustment(
        adjustment_type="Retract", conversion_name="Purchase", transaction_id="T-1001", adjustment_time=adjusted_at
    )
    assert len(campaign.apply_online_conversion_adjustments([online])) == 1


def test_uet_events_from_models(ms: EmulatorHandle, uet: UetClient) -> None:
    now = datetime.now(UTC) - timedelta(minutes=1)
    events = [
        UetEvent(
            event_id=f"ord-{n}",
            event_time=now,
            event_name="checkout_complete",
            user_data=UetUserData(msclkid=click_id(n), email="A.B+x@Example.com"),
            custom_data=UetCustomData(value=10.0 + n, currency="USD", transaction_id=f"T-{n}"),
        )
        for n in range(3)
    ]
    results = uet.send_events(ms.env["UET_TAG_ID"], events)
    assert [(r.event_id, r.status) for r in results] == [("ord-0", "delivered"), ("ord-1", "delivered"),
                                                         ("ord-2", "delivered")]  # fmt: skip
    received = ms.received("uet", outcome="accepted")
    assert [r.payload for r in received] == [e.to_wire() for e in events]
