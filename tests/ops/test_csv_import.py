"""CRM exports through ``import_file`` and ``validate_file`` (the commands are tested in tests/cli/test_csv.py)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from msclkid_middleware.config import Settings
from msclkid_middleware.dispatch.tracker import ConversionTracker
from msclkid_middleware.errors import OutboxFull
from msclkid_middleware.ops.csv_import import import_file, validate_file
from msclkid_middleware.testing import EmulatorHandle
from tests.csv_helpers import crm_file

from .conftest import FakeClock, click_id, make_tracker


def test_import_stops_when_the_outbox_is_full(tmp_path: Path, ms: EmulatorHandle) -> None:
    when = (datetime.now(UTC) - timedelta(hours=2)).strftime("%Y-%m-%d %H:%M:%S")
    source = crm_file(
        tmp_path / "many.csv", [[f"F{n}", "Purchase", when, "1", "USD", click_id(n), "", ""] for n in range(5)]
    )
    clock = FakeClock()
    tracker = make_tracker(ms, tmp_path, clock, microsoft=False, max_pending=3)
    try:
        with pytest.raises(OutboxFull):
            import_file(source, tracker=tracker)
        # Rows of the failed batch were rolled back; nothing half-written.
        assert [r.event_id for r in tracker.store.scan()] == []
    finally:
        tracker.close()


def _rows(count: int, when: str) -> list[list[str]]:
    return [[f"B{n}", "Purchase", when, "1", "USD", click_id(n), "", ""] for n in range(count)]


def test_import_commits_batches_through_the_stores_transaction(
    store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """BATCH_ROWS (500 here) rows per ``store.transaction()`` (one batched insert each), on either store; a re-run
    stores nothing: the inserts skip every row, without a lookup per row."""
    monkeypatch.setattr("msclkid_middleware.ops.csv_import.BATCH_ROWS", 500)
    when = (datetime.now(UTC) - timedelta(hours=2)).strftime("%Y-%m-%d %H:%M:%S")
    source = crm_file(
        tmp_path / "batches.csv", [*_rows(1100, when), ["bad", "Purchase", "soon", "1", "USD", "", "", ""]]
    )
    tracker = ConversionTracker(
        settings=Settings(conversion_goals=("Purchase",)), store_url=store_url, microsoft=False, uet=False
    )
    try:
        opened: list[int] = []
        transaction = tracker.store.transaction

        def counted() -> AbstractContextManager[object]:
            opened.append(1)
            return transaction()

        monkeypatch.setattr(tracker.store, "transaction", counted)
        result = import_file(source, tracker=tracker)
        assert (result.rows, result.recorded, result.existing, result.rejected) == (1101, 1100, 0, 1)
        assert len(opened) == 3  # 500 + 500 + 100
        assert tracker.store.open_count() == 1100
        inserted: list[int] = []
        enqueue_many = tracker.store.enqueue_many
        monkeypatch.setattr(tracker.store, "find", lambda *a, **k: pytest.fail("a lookup per row"))
        monkeypatch.setattr(
            tracker.store, "enqueue_many", lambda rows, **k: inserted.append(len(rows)) or enqueue_many(rows, **k)
        )
        again = import_file(source, tracker=tracker)
        assert (again.recorded, again.existing, again.rejected) == (0, 1100, 1)
        assert (len(opened), inserted) == (6, [500, 500, 100])
        assert tracker.store.open_count() == 1100
    finally:
        tracker.close()


def test_validate_and_import_parse_a_file_alike(ms: EmulatorHandle, tmp_path: Path) -> None:
    """Both run the one parser: the same rows fail with the same reasons, the rest is valid or recorded."""
    when = (datetime.now(UTC) - timedelta(hours=2)).strftime("%Y-%m-%d %H:%M:%S")
    rows = [
        *_rows(3, when),
        ["", "Purchase", when, "1", "USD", click_id(7), "", ""],  # empty event ID
        ["B8", "Purchase", when, "one", "USD", click_id(8), "", ""],  # not a number
        ["B9", "Lead", when, "1", "USD", click_id(9), "", ""],  # unknown goal
        ["B10", "Purchase", when, "1", "USD", "", "", ""],  # neither click nor identifiers
    ]
    source = crm_file(tmp_path / "alike.csv", rows)
    checked = validate_file(source, goals=("Purchase",))
    tracker = make_tracker(ms, tmp_path, FakeClock(), microsoft=False, settings={"conversion_goals": "Purchase"})
    try:
        imported = import_file(source, tracker=tracker)
    finally:
        tracker.close()
    assert (checked.rows, checked.valid, imported.rows, imported.recorded) == (7, 3, 7, 3)
    assert [e.line for e in checked.errors] == [e.line for e in imported.errors] == [5, 6, 7, 8]
    assert [e.reason.split()[0] for e in checked.errors][:2] == [e.reason.split()[0] for e in imported.errors][:2]
    assert checked.rejected_file == imported.rejected_file == tmp_path / "alike.csv.rejected.csv"


def test_microsofts_own_template_as_a_merchant_fills_it(ms: EmulatorHandle, tmp_path: Path) -> None:
    """``Parameters:TimeZone=-0800;``, ``#`` instruction lines, Microsoft's headers and date formats."""
    now = datetime.now(UTC).replace(microsecond=0)
    local = now.astimezone(timezone(timedelta(hours=-8))) - timedelta(hours=1)
    source = tmp_path / "template.csv"
    source.write_text(
        "# Microsoft Advertising offline conversions import template\r\n"
        "#Fill in one conversion per row. Do not change the column names.\r\n"
        "Parameters:TimeZone=-0800;,,,,\r\n"
        "Microsoft Click Id,Conversion Name,Conversion Time,Conversion Value,Conversion Currency Code\r\n"
        f"{click_id(1)},Purchase,{local:%m/%d/%Y %I:%M:%S %p},10.5,usd\r\n"
        f'{click_id(2)},Purchase,"{local:%b %d, %Y %I:%M:%S %p}",3,EUR\r\n'
        f"{click_id(3)},Purchase,{local:%Y-%m-%d %H:%M:%S} -0800,1,USD\r\n"
        f"{click_id(4)},Purchase,{local:%Y-%m-%dT%H:%M:%S%z},1,USD\r\n",
        encoding="utf-8",
    )
    result = validate_file(source, goals=("Purchase",))
    assert (result.valid, result.rejected) == (4, 0), result.errors
    clock = FakeClock()
    tracker = make_tracker(ms, tmp_path, clock, microsoft=False)
    try:
        imported = import_file(source, tracker=tracker)
        assert imported.recorded == 4
        rows = sorted(tracker.store.scan(), key=lambda r: r.payload["MicrosoftClickId"])
        # Times without an offset are read in the file's -0800 and converted: every row is the same instant.
        assert {r.payload["ConversionTime"] for r in rows} == {f"{(now - timedelta(hours=1)):%Y-%m-%dT%H:%M:%SZ}"}
        assert [r.payload["ConversionCurrencyCode"] for r in rows] == ["USD", "EUR", "USD", "USD"]
    finally:
        tracker.close()
