"""Microsoft's import files from outbox rows: splitting at the row limit, one file when it fits, offsets."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from msclkid_middleware.errors import ConfigError
from msclkid_middleware.ops.csv_export import export_rows, read_export
from msclkid_middleware.ops.csv_format import MAX_ROWS_PER_FILE
from msclkid_middleware.outbox import OutboxStore

from .conftest import T0, new_row


def test_export_splits_at_the_limit_and_keeps_one_file_when_it_fits(store: OutboxStore, tmp_path: Path) -> None:
    for n in range(1, 8):
        store.enqueue(new_row(n, payload={**new_row(n).payload, "MicrosoftClickId": f"{n:032x}"}), now=T0)
    rows = list(store.scan())
    split = export_rows(rows, tmp_path / "out.csv", max_rows=3)
    assert [p.name for p in split.files] == ["out-001.csv", "out-002.csv", "out-003.csv"]
    assert split.rows == (3, 3, 1)
    parameters, data = read_export(split.files[2])
    assert parameters == "Parameters:TimeZone=+0000"
    assert data[0]["Microsoft Click ID"] == f"{7:032x}"
    assert data[0]["Conversion Time"] == "2026-11-28 11:00:00+0000"
    whole = export_rows(rows, tmp_path / "all.csv")
    assert [p.name for p in whole.files] == ["all.csv"]
    assert whole.total == 7
    empty = export_rows([], tmp_path / "none.csv")
    assert (empty.files, empty.rows) == ((tmp_path / "none.csv",), (0,))
    assert read_export(tmp_path / "none.csv")[1] == []
    with pytest.raises(ConfigError):
        export_rows(rows, tmp_path / "x.csv", max_rows=MAX_ROWS_PER_FILE + 1)
    offset = export_rows(rows[:1], tmp_path / "offset.csv", time_zone="+0100")
    parameters, data = read_export(offset.files[0])
    assert parameters == "Parameters:TimeZone=+0100"
    assert data[0]["Conversion Time"] == "2026-11-28 12:00:00+0100"


def test_a_dst_zone_is_written_as_one_fixed_offset(store: OutboxStore, tmp_path: Path) -> None:
    winter = new_row(1, payload={**new_row(1).payload, "ConversionTime": "2026-01-15T12:00:00Z"})
    summer = new_row(2, payload={**new_row(2).payload, "ConversionTime": "2026-07-15T12:00:00Z"})
    for row in (winter, summer):
        store.enqueue(row, now=T0)
    rows = list(store.scan())
    at = datetime(2026, 7, 1, tzinfo=UTC)  # Berlin is on summer time (+0200) at the time of this export
    result = export_rows(rows, tmp_path / "berlin.csv", time_zone="Europe/Berlin", now=at)
    parameters, data = read_export(result.files[0])
    assert parameters == "Parameters:TimeZone=+0200"
    # Both times in that one offset, the winter one included (never +0100 in the same file): converted, not named.
    assert [d["Conversion Time"] for d in data] == ["2026-01-15 14:00:00+0200", "2026-07-15 14:00:00+0200"]
    negative = export_rows(rows, tmp_path / "ny.csv", time_zone="America/New_York", now=at)
    assert read_export(negative.files[0])[0] == "Parameters:TimeZone=-0400"


def test_goal_names_and_click_ids_are_written_verbatim(store: OutboxStore, tmp_path: Path) -> None:
    payload = {**new_row(1).payload, "ConversionName": "-Sale +Promo", "MicrosoftClickId": "=" + "a" * 31}
    store.enqueue(new_row(1, payload=payload), now=T0)
    _, [data] = read_export(export_rows(list(store.scan()), tmp_path / "v.csv").files[0])
    assert (data["Conversion Name"], data["Microsoft Click ID"]) == ("-Sale +Promo", "=" + "a" * 31)
