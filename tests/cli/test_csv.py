"""``msclkid export-csv``, ``import-csv`` and ``validate`` on files in the test's directory."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from msclkid_middleware.cli import cli, main
from msclkid_middleware.ops.csv_export import read_export
from msclkid_middleware.outbox import open_store
from msclkid_middleware.testing import EmulatorHandle
from tests.csv_helpers import crm_file

from .conftest import EMAIL, PHONE, FakeClock, assert_clean, click_id, make_tracker, record, run


def _recorded(env: Path, ms: EmulatorHandle, count: int, **options: Any) -> None:
    clock = FakeClock()
    tracker = make_tracker(ms, env, clock, microsoft=False)
    try:
        for n in range(count):
            extra = {"email": EMAIL, "phone": PHONE} if n % 2 else {}
            record(tracker, clock, n, **extra, **options)
        record(tracker, clock, 99, conversion_name="=HYPERLINK(1)", value=None)
        tracker.restate("ord_1", 5.25)
        tracker.retract("ord_2")
    finally:
        tracker.close()


def test_export_csv_writes_microsofts_import_files(env: Path, ms: EmulatorHandle) -> None:
    _recorded(env, ms, 5)
    result = run("export-csv", "--output", "conv.csv", "--max-rows", "4")
    assert result.exit_code == 0, result.output
    assert "6 conversions in 2 file(s)" in result.output
    first = (env / "conv-001.csv").read_text(encoding="utf-8").splitlines()
    assert first[0] == "Parameters:TimeZone=+0000"
    assert first[1] == (
        "Microsoft Click ID,Conversion Name,Conversion Time,Conversion Value,Conversion Currency,"
        "Hashed Email Address,Hashed Phone Number"
    )
    assert len(first) == 2 + 4
    cells = next(csv.reader([first[2]]))
    assert cells[0] == click_id(0)
    assert cells[2].endswith("+0000")
    datetime.strptime(cells[2], "%Y-%m-%d %H:%M:%S%z")
    assert cells[3] == "10"  # 10.0 written without a needless fraction
    assert cells[5] == cells[6] == ""
    hashed = next(csv.reader([first[3]]))
    assert len(hashed[5]) == 64
    assert len(hashed[6]) == 64
    second = (env / "conv-002.csv").read_text(encoding="utf-8")
    # Microsoft matches goal names exactly: written verbatim (`goals create` refuses such names instead).
    assert ",=HYPERLINK(1)," in second
    assert "'=HYPERLINK" not in second
    assert EMAIL.lower() not in "\n".join(first)
    assert PHONE not in "\n".join(first)
    adjustments = run("export-csv", "--kind", "adjustments", "--time-zone", "Europe/Berlin")
    assert adjustments.exit_code == 0, adjustments.output
    text = (env / "msclkid-adjustments.csv").read_text(encoding="utf-8").splitlines()
    # A DST zone is never named: one fixed offset for the whole file, every time converted to it.
    assert text[0] in ("Parameters:TimeZone=+0100", "Parameters:TimeZone=+0200")
    assert text[1].split(",")[3:7] == ["Adjustment Value", "Adjustment Currency", "Adjustment Type", "Adjustment Time"]
    restate, retract = (next(csv.reader([line])) for line in text[2:])
    assert (restate[3], restate[5], retract[3], retract[5]) == ("5.25", "Restate", "", "Retract")
    assert restate[2][-5:] == retract[2][-5:] == retract[6][-5:] == text[0][-5:]
    assert run("export-csv", "--time-zone", "Mars/Olympus").exit_code == 1


def test_exported_files_import_back_unchanged(env: Path, ms: EmulatorHandle, tmp_path: Path) -> None:
    _recorded(env, ms, 4)
    assert run("export-csv", "--output", "round.csv").exit_code == 0
    other = f"sqlite:///{tmp_path / 'other.db'}"
    result = run("import-csv", "round.csv", "--store", other)
    assert result.exit_code == 0, result.output
    assert "5 row(s): 5 recorded" in result.output
    before = open_store(f"sqlite:///{env / 'outbox.db'}")
    after = open_store(other)
    try:
        original = {r.idempotency_key: dict(r.payload) for r in before.scan(kinds=("offline",))}
        copied = {r.idempotency_key: dict(r.payload) for r in after.scan(kinds=("offline",))}
        assert len(copied) == 5  # including the "=HYPERLINK(1)" goal name, unprefixed again
        for key, payload in copied.items():
            assert original[key] == payload
    finally:
        before.close()
        after.close()


def test_import_csv_records_hashes_validates_and_is_idempotent(env: Path, ms: EmulatorHandle) -> None:
    now = datetime.now(UTC)
    local = (now - timedelta(hours=3)).astimezone(ZoneInfo("America/New_York"))
    rows = [
        ["A1", "Purchase", local.strftime("%m/%d/%Y %I:%M:%S %p"), "19.99", "usd", click_id(1), "", ""],
        ["A2", "Purchase", (now - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ"), "5", "EUR", "", EMAIL, PHONE],
        ["A3", "Purchase", "yesterday-ish", "5", "EUR", click_id(3), "", ""],
        ["A4", "Purchase", (now - timedelta(days=100)).strftime("%Y-%m-%d %H:%M:%S"), "5", "EUR", click_id(4), "", ""],
        ["A5", "Purchase", local.strftime("%m/%d/%Y %H:%M:%S"), "-3", "EUR", click_id(5), "", ""],
        ["A6", "Purchase", local.strftime("%m/%d/%Y %H:%M:%S"), "1", "EUR", "", "not-an-email", ""],
    ]
    source = crm_file(env / "crm.csv", rows)
    result = run("import-csv", str(source), "--time-zone", "America/New_York")
    assert result.exit_code == 1, result.output
    assert "6 row(s): 2 recorded, 0 already recorded, 4 rejected" in result.output
    assert_clean(result.output, ms)
    rejected = list(csv.reader((env / "crm.csv.rejected.csv").read_text(encoding="utf-8").splitlines()))
    assert rejected[0][:3] == ["line", "error", "order_id"]
    assert [r[0] for r in rejected[1:]] == ["4", "5", "6", "7"]
    assert "conversion_time" in rejected[1][1]
    assert "not-an-email" not in "\n".join(",".join(r) for r in rejected)  # raw email cells are blanked
    store = open_store(f"sqlite:///{env / 'outbox.db'}")
    try:
        a1 = store.find("A1")[0].payload
        assert a1["ConversionTime"] == (now - timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
        assert a1["ConversionCurrencyCode"] == "USD"
        a2 = store.find("A2")[0].payload
        assert len(a2["HashedEmailAddress"]) == 64
        assert len(a2["HashedPhoneNumber"]) == 64
        assert EMAIL not in json.dumps(a2)
    finally:
        store.close()
    again = run("import-csv", str(source), "--time-zone", "America/New_York")
    assert "2 already recorded" in again.output
    assert "0 recorded" in again.output


def test_import_csv_column_mapping_default_goal_and_progress_bar(env: Path, ms: EmulatorHandle) -> None:
    when = (datetime.now(UTC) - timedelta(hours=2)).strftime("%Y-%m-%d %H:%M:%S")
    rows = [[f"N{n}", when, click_id(n)] for n in range(1200)]
    source = crm_file(env / "big.csv", rows, header=["Order Number", "Closed", "Click"])
    args = ["import-csv", str(source), "--map", "event_id=Order Number", "--map", "conversion_time=closed"]
    args += ["--map", "msclkid=Click", "--goal", "Purchase"]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "1200 row(s): 1200 recorded" in result.output
    assert "Rows" in result.output  # the progress bar (stderr is mixed into the runner's output)
    assert run("import-csv", str(source), "--map", "event_id=Nope").exit_code == 1
    assert run("import-csv", str(source), "--map", "broken").exit_code == 2


def test_validate_checks_without_recording(env: Path, ms: EmulatorHandle, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MSADS_CONVERSION_GOALS", "Purchase,Lead")
    when = (datetime.now(UTC) - timedelta(hours=2)).strftime("%Y-%m-%d %H:%M:%S")
    rows = [
        ["V1", "Purchase", when, "1", "USD", click_id(1), "", ""],
        ["V2", "purchase", when, "1", "USD", click_id(2), "", ""],
        ["V3", "Lead", when, "", "", "", EMAIL, ""],
    ]
    source = crm_file(env / "check.csv", rows)
    result = run("validate", str(source))
    assert result.exit_code == 1
    assert "3 row(s): 2 valid, 1 invalid" in result.output
    assert "line 3 (V2): conversion_name" in result.output
    assert_clean(result.output, ms)
    store = open_store(f"sqlite:///{env / 'outbox.db'}")
    try:
        assert list(store.scan()) == []
    finally:
        store.close()
    good = crm_file(env / "good.csv", rows[:1])
    assert run("validate", str(good)).exit_code == 0
    assert main(["validate", str(source)]) == 1
    assert main(["validate", str(good)]) == 0


def test_broken_files_are_refused_with_a_reason(env: Path, ms: EmulatorHandle) -> None:
    when = (datetime.now(UTC) - timedelta(hours=2)).strftime("%Y-%m-%d %H:%M:%S")
    latin = env / "latin.csv"
    text = f"order_id,goal,time,msclkid\nL1,Purchase,{when},{click_id(1)}\nL2,Caf\xe9,{when},bad id\n"
    latin.write_bytes(text.encode("latin-1"))
    result = run("import-csv", str(latin))
    assert result.exit_code == 1
    assert "is not valid utf-8-sig text" in result.output
    assert "--encoding" in result.output
    decoded = run("validate", str(latin), "--encoding", "cp1252")
    assert "2 row(s): 1 valid, 1 invalid" in decoded.output
    huge = env / "huge.csv"
    huge.write_bytes(b'order_id,goal,time\nN1,Purchase,"' + b"9" * 200_000 + b'"\n')  # over csv's field limit
    broken = run("validate", str(huge))
    assert broken.exit_code == 1
    assert "not valid CSV" in broken.output
    empty = env / "empty.csv"
    empty.write_text("")
    assert "is empty" in run("validate", str(empty)).output
    assert run("validate", str(latin), "--encoding", "klingon").exit_code == 1
    unwritable = run("validate", str(latin), "--encoding", "cp1252", "--rejected", str(env / "no" / "such" / "dir.csv"))
    assert unwritable.exit_code == 1
    assert "cannot write" in unwritable.output


def test_export_csv_summary_names_the_fixed_offset_it_wrote(
    env: Path, ms: EmulatorHandle, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 20: a daylight-saving zone is converted to one fixed offset, and the summary says so (never the name
    alone, which would suggest Microsoft applies the zone's rules)."""
    clock = FakeClock()
    tracker = make_tracker(ms, env, clock, microsoft=False)
    record(tracker, clock, 1)
    tracker.close()
    assert main(["export-csv", "--since", "1h", "--time-zone", "Europe/Berlin", "--output", "b.csv"]) == 0
    out = capsys.readouterr().out
    first, _rows = read_export(env / "b.csv")
    offset = first.removeprefix("Parameters:TimeZone=")
    assert offset in ("+0100", "+0200")
    assert f"times at the fixed offset {offset} (Europe/Berlin at the time of the export)" in out
    assert main(["export-csv", "--since", "1h", "--output", "u.csv"]) == 0
    assert "times at the fixed offset +0000. Upload" in capsys.readouterr().out
