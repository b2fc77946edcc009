"""The report reads the outbox only through the store protocol (``scan`` and the token table), so any store works."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from msclkid_middleware.dispatch.goal_ages import GoalRegistry
from msclkid_middleware.ops.reports import build_report, render_report
from msclkid_middleware.outbox import OutboxStore, Outcome, TokenRecord

from .conftest import T0, new_row


class ProtocolOnly:
    """Exposes just the protocol methods a report may use; anything else fails the test."""

    def __init__(self, store: OutboxStore) -> None:
        self._store = store
        self.url = store.url

    def scan(self, **options: Any) -> Iterator[Any]:
        return self._store.scan(**options)

    def load_token(self, name: str) -> TokenRecord | None:
        return self._store.load_token(name)


def test_report_counts_through_scan_only(store: OutboxStore) -> None:
    rows = [
        store.enqueue(new_row(n, payload={**new_row(n).payload, "MicrosoftClickId": "c"}), now=T0).row for n in (1, 2)
    ]
    store.enqueue(new_row(3), now=T0)
    store.enqueue(new_row(4, conversion_name="Lead"), now=T0)
    claimed = store.claim(owner="w", limit=10, now=T0, lease_seconds=60)
    by_id = {r.id: r for r in claimed}
    outcomes = [Outcome(r.id, by_id[r.id].lease_token or "", "delivered") for r in rows]
    third = next(r for r in claimed if r.event_id == "ord_3")
    lead = next(r for r in claimed if r.event_id == "ord_4")
    outcomes.append(Outcome(third.id, third.lease_token or "", "dead", error_code="expired"))
    outcomes.append(Outcome(lead.id, lead.lease_token or "", "rejected", error_code="5604 Invalid"))
    store.settle(outcomes, now=T0)
    GoalRegistry(store).record("1000", "Lead", T0 - timedelta(minutes=30))
    report = build_report(
        ProtocolOnly(store),  # type: ignore[arg-type]
        known_goals=("Purchase", "Lead"),
        registry=GoalRegistry(ProtocolOnly(store)),  # type: ignore[arg-type]
        now=T0,
    )
    purchase, lead_counts = sorted(report.goals, key=lambda g: g.goal != "Purchase")
    # Same click ID and ConversionTime twice: Microsoft keeps only the first.
    assert (purchase.delivered, purchase.deduplicated, purchase.dead) == (1, 1, {"expired": 1})
    assert lead_counts.rejected == {"5604 Invalid": 1}
    assert report.warnings == ()  # the Lead row was rejected, not sent while the goal was young
    assert "Purchase" in render_report(report, "table")
