"""The HTML report's data, gathered in the report's one pass: per day, match keys, delivery times, top codes."""

from __future__ import annotations

from datetime import timedelta

from msclkid_middleware.ops.rejections import advice
from msclkid_middleware.ops.reports import build_report
from msclkid_middleware.outbox import OutboxStore, Outcome

from .conftest import T0, new_row

DAY2 = T0 + timedelta(days=1)


def _settle(store: OutboxStore, now: object, **states: tuple[str, str | None]) -> None:
    """Claim everything due and settle each event ID to (state, code)."""
    claimed = store.claim(owner="w", limit=100, now=now, lease_seconds=60)  # type: ignore[arg-type]
    store.settle(
        [
            Outcome(r.id, r.lease_token or "", states[r.event_id][0], error_code=states[r.event_id][1])  # type: ignore[arg-type]
            for r in claimed
            if r.event_id in states
        ],
        now=now,  # type: ignore[arg-type]
    )


def seed(store: OutboxStore) -> None:
    hashed = {"HashedEmailAddress": "a" * 64}
    base = new_row(1).payload
    store.enqueue(new_row(1), now=T0)  # click only, delivered after 30 s
    store.enqueue(new_row(2, payload={**base, "MicrosoftClickId": "c2", **hashed}), now=T0)  # both
    store.enqueue(new_row(3, payload={"ConversionName": "Purchase", "ConversionTime": "x", **hashed}), now=T0)
    store.enqueue(  # consent refused: suppressed, no match key
        new_row(
            4,
            payload={"ConversionName": "Purchase", "ConversionTime": "x"},
            state="suppressed",
            error_code="consent_denied",
        ),
        now=T0,
    )
    store.enqueue(new_row(5, conversion_name="Lead", payload={**base, "ConversionName": "Lead"}), now=T0)
    _settle(
        store,
        T0 + timedelta(seconds=30),
        ord_1=("delivered", None),
        ord_2=("delivered", None),
        ord_3=("rejected", "5603 OfflineConversionMicrosoftClickIdNullOrEmpty"),
        ord_5=("rejected", "5603 OfflineConversionMicrosoftClickIdNullOrEmpty"),
    )
    store.enqueue(new_row(6), now=DAY2)  # delivered three hours later
    store.enqueue(new_row(7), now=DAY2)  # dead: Microsoft's window closed
    store.enqueue(new_row(8), now=DAY2)  # still pending
    _settle(store, DAY2 + timedelta(hours=3), ord_6=("delivered", None), ord_7=("dead", "expired"))


def test_per_day_rows_stand_where_they_are_now(store: OutboxStore) -> None:
    seed(store)
    report = build_report(store, now=DAY2 + timedelta(hours=4))
    first, second = report.days
    assert (first.day, first.recorded, first.delivered, first.pending, first.dead) == (T0.date(), 5, 2, 0, 0)
    assert first.rejected == {"5603 OfflineConversionMicrosoftClickIdNullOrEmpty": 2}
    assert first.suppressed == {"consent_denied": 1}
    assert (second.day, second.recorded, second.delivered, second.pending, second.dead) == (DAY2.date(), 3, 1, 1, 1)


def test_match_key_mix_and_the_attributable_share(store: OutboxStore) -> None:
    seed(store)
    lead, purchase = build_report(store, now=DAY2).match_keys
    assert (lead.goal, lead.click_only, lead.total) == ("Lead", 1, 1)
    assert (purchase.click_only, purchase.both, purchase.hashed_only, purchase.none) == (4, 1, 1, 1)
    assert purchase.attributable_share == 5 / 7
    assert purchase.attributable_if_enhanced_share == 6 / 7
    assert build_report(store, now=DAY2).to_json()["match_keys"][1]["attributable_share"] == round(5 / 7, 6)


def test_delivery_times_histogram_median_and_p90(store: OutboxStore) -> None:
    seed(store)
    times = build_report(store, now=DAY2 + timedelta(hours=4)).delivery_times
    assert times is not None
    assert dict(times.bins)["<1m"] == 2
    assert dict(times.bins)["2-6h"] == 1
    assert times.count == 3
    assert times.median_seconds == 30.0
    assert times.p90_seconds == 3 * 3600.0


def test_top_rejections_say_what_they_mean_and_what_to_do(store: OutboxStore) -> None:
    seed(store)
    top = build_report(store, now=DAY2).rejections
    assert [(r.code.split()[0], r.state, r.count, r.goals) for r in top] == [
        ("5603", "rejected", 2, ("Lead", "Purchase")),
        ("expired", "dead", 1, ("Purchase",)),
    ]
    assert "enhanced conversions" in top[0].action
    assert top[1].meaning == advice("expired").meaning


def test_advice_by_numeric_code_and_a_fallback() -> None:
    assert advice("5606 OfflineConversionNameInvalid") == advice("5606")
    assert "exact name" in advice("5606").meaning
    assert "msclkid status" in advice("9999 Whatever").action
    assert advice(None) == advice("")


def test_goal_filter_applies_to_every_figure(store: OutboxStore) -> None:
    seed(store)
    report = build_report(store, goal="Lead", now=DAY2)
    assert [m.goal for m in report.match_keys] == ["Lead"]
    assert sum(d.recorded for d in report.days) == 1
    assert report.to_json()["goal"] == "Lead"
