"""Microsoft's import files from outbox rows: splitting at the row limit, one file when it fits, offsets."""

from __future__ import annotations

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
