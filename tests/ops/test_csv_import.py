"""CRM exports through ``import_file`` and ``validate_file`` (the commands are tested in tests/cli/test_csv.py)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from msclkid_middleware.config import Settings
from msclkid_middleware.dispatch.tracker import ConversionTracker
from msclkid_middleware.errors import OutboxFull
from msclkid_middleware.ops.csv_import import CrmFile, import_file, validate_file
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


def _goal_tracker(store_url: str) -> ConversionTracker:
    settings = Settings(conversion_goals=("Purchase",), account_id="123", customer_id="456")
    return ConversionTracker(settings=settings, store_url=store_url, microsoft=False, uet=False)


def test_imported_rows_are_what_record_offline_stores(store_url: str, tmp_path: Path) -> None:
    """Every stored column of an imported row equals what recording the same conversion through the public tracker
    stores: the bulk builder is invisible in the outbox."""
    now = datetime.now(UTC)
    when = (now - timedelta(hours=2)).strftime("%Y-%m-%d %H:%M:%S")
    hashed = "AB" * 32
    rows = [
        ["I1", "Purchase", when, "10.5", "usd", click_id(1), "", ""],
        ["I2", "Purchase", when, "", "", "", "Customer.2+promo@Example.com", ""],
        ["I3", "Purchase", when, "0", "EUR", "", "", "+1 (425) 555-1234"],
        ["I4", "Purchase", f"{when}.5", "-0", "", click_id(4), " ÄÖ@exämple.com ", "+14255551234"],
        ["I5", "Purchase", when, "999999999999", "USD", "", "", "", hashed],
    ]
    header = ["order_id", "goal", "converted_at", "amount", "currency", "msclkid", "email", "phone", "hashed_email"]
    source = crm_file(tmp_path / "same.csv", [r + [""] * (9 - len(r)) for r in rows], header=header)
    imported_by = _goal_tracker(store_url)
    recorded_by = _goal_tracker(f"sqlite:///{tmp_path / 'public.db'}")
    try:
        result = import_file(source, tracker=imported_by)
        assert (result.recorded, result.rejected) == (5, 0), result.errors
        with CrmFile(source) as crm:
            for line, cells in crm:
                recorded_by.record_offline(**crm.parse(line, cells).arguments())
        imported = {r.event_id: r for r in imported_by.store.scan()}
        public = {r.event_id: r for r in recorded_by.store.scan()}
        assert sorted(imported) == sorted(public) == ["I1", "I2", "I3", "I4", "I5"]
        columns = ("kind", "account", "idempotency_key", "payload", "conversion_name", "consent", "state")
        for event_id, row in imported.items():
            other = public[event_id]
            assert [getattr(row, c) for c in columns] == [getattr(other, c) for c in columns], event_id
            assert row.expires_at == other.expires_at
            assert (row.last_error_code, row.depends_on, row.attempts) == (None, None, 0)
    finally:
        imported_by.close()
        recorded_by.close()


def test_duplicates_a_bad_row_mid_batch_and_a_re_import(
    store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Duplicates inside the file and against stored rows are counted as already recorded; a row failing validation in
    the middle of a batch is rejected with validate's line and reason while the rest of its batch is stored; a
    re-import stores nothing and counts every valid row as already recorded."""
    monkeypatch.setattr("msclkid_middleware.ops.csv_import.BATCH_ROWS", 4)
    when = (datetime.now(UTC) - timedelta(hours=2)).strftime("%Y-%m-%d %H:%M:%S")
    rows = [
        *_rows(3, when),  # B0-B2
        ["B1", "Purchase", when, "1", "USD", click_id(1), "", ""],  # the same event again, same batch
        ["D1", "Purchase", when, "1", "USD", click_id(50), "", ""],
        ["D2", "Lead", when, "1", "USD", click_id(51), "", ""],  # unknown goal, mid-batch
        ["D3", "Purchase", when, "nan", "USD", click_id(52), "", ""],  # the models refuse it (not the parser)
        ["D4", "Purchase", when, "1", "USD", click_id(53), "", ""],
        ["B0", "Purchase", when, "1", "USD", click_id(0), "", ""],  # a duplicate in a later batch
        ["E1", "Purchase", when, "1", "USD", "", "", ""],  # nothing to match on
    ]
    source = crm_file(tmp_path / "dupes.csv", rows)
    tracker = _goal_tracker(store_url)
    try:
        tracker.record_offline("D4", "Purchase", datetime.now(UTC) - timedelta(hours=2), click=click_id(53))
        result = import_file(source, tracker=tracker)
        checked = validate_file(source, goals=("Purchase",))
        assert (result.rows, result.recorded, result.existing, result.rejected) == (10, 4, 3, 3)
        assert [(e.line, e.event_id, e.reason) for e in result.errors] == [
            (e.line, e.event_id, e.reason) for e in checked.errors
        ]
        assert [e.line for e in result.errors] == [7, 8, 11]
        assert "conversion_name" in result.errors[0].reason
        assert "value" in result.errors[1].reason
        assert sorted(r.event_id for r in tracker.store.scan()) == ["B0", "B1", "B2", "D1", "D4"]
        assert tracker.store.open_count() == 5
        again = import_file(source, tracker=tracker)
        assert (again.rows, again.recorded, again.existing, again.rejected) == (10, 0, 7, 3)
        assert [e.reason for e in again.errors] == [e.reason for e in result.errors]
        assert len(list(tracker.store.scan())) == 5
    finally:
        tracker.close()
