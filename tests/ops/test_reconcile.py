"""Our per-goal counts beside Microsoft's diagnostics: lines, notes and the not-counted share."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime

from msclkid_middleware.microsoft.goals import GoalConversionSummary
from msclkid_middleware.microsoft.result_files import ResultFile, ResultRecord
from msclkid_middleware.ops.reconcile import NOT_IN_FILES, reconcile, tie_events
from msclkid_middleware.outbox import OutboxStore

from .conftest import T0, new_row


def test_reconcile_lines_and_share() -> None:
    summary = GoalConversionSummary("1001", "Purchase", 6, 2, {"NoMatchingClickFound": 2})
    result = reconcile(
        {"Purchase": 8, "Ghost": 3}, {"Purchase": "1001", "Lead": "1002"}, {"1001": summary}, since=T0, until=T0
    )
    lines = {line.goal: line for line in result.lines}
    assert lines["Purchase"].unattributed_share == 0.25
    assert lines["Ghost"].note is not None
    assert "GoalNotFoundOrInactive" in lines["Ghost"].note
    assert lines["Lead"].note == "Microsoft returned no diagnostics for this goal"
    assert result.unattributed_share == 0.25


def test_result_file_rows_are_tied_back_to_events(store: OutboxStore) -> None:
    hashed = {"ConversionName": "Purchase", "ConversionTime": "2026-11-28T11:00:00Z", "HashedEmailAddress": "e" * 64}
    retract = {**new_row(1).payload, "AdjustmentType": "Retract", "AdjustmentTime": "2026-11-29T10:00:00Z"}
    for row in (
        new_row(1),
        new_row(2),
        new_row(3, payload=hashed),
        new_row(4, kind="offline_adjustment", idempotency_key="adj-1", payload=retract),
        new_row(5),
    ):
        store.enqueue(row, now=T0)
    states = {"ord_1": "delivered", "ord_2": "rejected", "ord_3": "delivered", "ord_4": "delivered", "ord_5": "pending"}
    rows = [dataclasses.replace(r, state=states[r.event_id]) for r in store.scan()]  # type: ignore[arg-type]
    at = datetime(2026, 11, 28, 11, 0, tzinfo=UTC)
    records = (
        ResultRecord("Success", "Purchase", at, click_id="c1"),
        ResultRecord("OfflineConversionMSClickIdInvalid", "Purchase", at, click_id="c2"),
        ResultRecord("Success", "Purchase", at, hashed_email="e" * 64),
        ResultRecord("Success", "Purchase", at, click_id="c1", adjustment_type="RETRACT"),
    )
    older = ResultFile(
        date(2026, 11, 27), "downloaded", records=(ResultRecord("Failed", "Purchase", at, click_id="c1"),)
    )
    files = [ResultFile(date(2026, 11, 28), "downloaded", records=records), older]
    verdicts = {v.event_id: v for v in tie_events(rows, files)}
    assert verdicts["ord_1"].status == "Success"  # the later day's file wins over the older one
    assert verdicts["ord_1"].upload_date == "2026-11-28"
    assert verdicts["ord_2"].status == "OfflineConversionMSClickIdInvalid"
    assert verdicts["ord_3"].status == "Success"  # hashed-only: matched by the hashed email
    assert (verdicts["ord_4"].kind, verdicts["ord_4"].status) == ("offline_adjustment", "Success")
    assert "ord_5" not in verdicts  # not uploaded yet
    unparsed = [ResultFile(date(2026, 11, 28), "downloaded", note="kept unparsed")]
    assert {v.status for v in tie_events(rows, unparsed)} == {NOT_IN_FILES}
