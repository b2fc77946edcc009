"""Builders for wire items the emulator accepts (and breaks on purpose at chosen indexes)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from msclkid_middleware.testing import EmulatorHandle

BASE = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)


def click_id(n: int) -> str:
    return f"{n:032x}"


def wire_time(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def offline_items(ms: EmulatorHandle, count: int, *, bad: dict[int, str] | None = None) -> list[dict[str, Any]]:
    """``count`` valid, distinct offline conversions; ``bad`` maps index -> "name" | "click" (5606 / 5604)."""
    bad = bad or {}
    items = []
    for n in range(count):
        ms.add_click(click_id(n), BASE - timedelta(minutes=5))
        item = {
            "MicrosoftClickId": click_id(n),
            "ConversionName": "Purchase",
            "ConversionTime": wire_time(BASE + timedelta(seconds=n % 3600)),
            "ConversionValue": 10.0 + n,
            "ConversionCurrencyCode": "USD",
        }
        if bad.get(n) == "name":
            item["ConversionName"] = "NoSuchGoal"
        elif bad.get(n) == "click":
            item["MicrosoftClickId"] = "not-a-click"
        items.append(item)
    return items


def uet_events(count: int, *, bad: dict[int, str] | None = None) -> list[dict[str, Any]]:
    """``count`` valid UET events; ``bad`` maps index -> "type" (error), "time" (error), "referrer" (warning)."""
    bad = bad or {}
    now = int(datetime.now(UTC).timestamp()) - 60
    events = []
    for n in range(count):
        event: dict[str, Any] = {
            "eventType": "custom",
            "eventId": f"ev-{n}",
            "eventName": "checkout_complete",
            "eventTime": now,
            "userData": {"msclkid": click_id(n)},
            "customData": {"value": 1.5, "currency": "USD"},
        }
        kind = bad.get(n)
        if kind == "type":
            event["eventType"] = "bogus"
        elif kind == "time":
            event["eventTime"] = now - 30 * 24 * 3600
        elif kind == "referrer":
            event["referrerUrl"] = "not a url"
        events.append(event)
    return events
