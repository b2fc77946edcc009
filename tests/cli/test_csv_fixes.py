"""``import-csv``/``validate``/``export-csv`` say what they do: one rule set and wording, honest progress, resume."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from msclkid_middleware.cli import main
from msclkid_middleware.dispatch.bulk import OfflineRows
from msclkid_middleware.testing import EmulatorHandle
from tests.csv_helpers import crm_file

from .conftest import EMAIL, FakeClock, click_id, make_tracker, record, run

WHEN = (datetime.now(UTC) - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")


class Bars:
    """Stands in for click.progressbar: records each bar's length and the steps drawn."""

    def __init__(self) -> None:
        self.bars: list[dict[str, Any]] = []

    @contextmanager
    def __call__(self, **options: Any) -> Iterator[Any]:
        bar: dict[str, Any] = {"length": options["length"], "label": options["label"], "done": 0}
        self.bars.append(bar)

        class Bar:
            def update(self, steps: int) -> None:
                bar["done"] += steps

        yield Bar()


@pytest.fixture
def bars(monkeypatch: pytest.MonkeyPatch) -> Bars:
    fake = Bars()
    monkeypatch.setattr("msclkid_middleware.cli.common.click.progressbar", fake)
    return fake


def test_validate_and_import_word_each_problem_the_same(
    env: Path, ms: EmulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MSADS_CONVERSION_GOALS", "Purchase,Lead")
    rows = [
        ["A1", "Purchase", WHEN, "", "", "bad!id", "", ""],  # click ID format
        ["A2", "Purchse", WHEN, "", "", click_id(2), "", ""],  # goal name
        ["A3", "Purchase", WHEN, "", "", "", "", ""],  # nothing to match on
        ["A4", "Purchase", WHEN, "", "", "", "not-an-email", ""],  # identifier
        ["A5", "Purchase", "2020-01-01T00:00:00Z", "", "", click_id(5), "", ""],  # 90-day window
    ]
    source = crm_file(env / "crm.csv", rows)
    checked = run("validate", str(source), "--rejected", str(env / "v.csv"))
    imported = run("import-csv", str(source), "--rejected", str(env / "i.csv"))
    reasons = [line.split(": ", 1)[1] for line in checked.output.splitlines() if line.startswith("  line")]
    assert reasons == [line.split(": ", 1)[1] for line in imported.output.splitlines() if line.startswith("  line")]
    assert reasons[0] == "click: may contain only letters, digits, '-' and '_'"
    assert reasons[1].startswith("conversion_name: not one of the configured conversion goals ('Purchase', 'Lead')")
    assert reasons[2] == "click: give a click (or its msclkid) or the customer's email or phone"
    assert len(reasons) == 5
    assert EMAIL not in checked.output


def test_the_import_progress_bar_counts_data_rows_and_ends_at_100(env: Path, ms: EmulatorHandle, bars: Bars) -> None:
    rows = [[f"P{n}", "Purchase", WHEN, "", "", click_id(n), "", ""] for n in range(1000)]
    rows.insert(500, ["", "", "", "", "", "", "", ""])  # a blank row is not a data row
    source = env / "big.csv"
    crm_file(source, rows)
    source.write_text("Parameters:TimeZone=+0000\n" + source.read_text())  # and neither is the Parameters line
    assert run("import-csv", str(source)).exit_code == 0
    assert bars.bars == [{"length": 1000, "label": "Rows", "done": 1000}]


def test_an_interrupted_import_says_what_was_committed_and_how_to_resume(
    env: Path, ms: EmulatorHandle, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [[f"R{n}", "Purchase", WHEN, "", "", click_id(n), "", ""] for n in range(12)]
    source = crm_file(env / "crm.csv", rows)
    monkeypatch.setattr("msclkid_middleware.ops.csv_import.BATCH_ROWS", 5)
    # Each data row becomes one outbox row (OfflineRows.row) before its batch is committed: stop at the eighth.
    original = OfflineRows.row
    calls = 0

    def interrupted(self: OfflineRows, *args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 8:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(OfflineRows, "row", interrupted)
    assert main(["import-csv", str(source)]) == 130
    err = capsys.readouterr().err
    assert "import interrupted after 7 data row(s) (line 8 of the file): 5 new conversion(s) committed" in err
    assert "To resume, run the same command again: rows already recorded are skipped" in err
    monkeypatch.setattr(OfflineRows, "row", original)
    assert main(["import-csv", str(source)]) == 0
    assert "12 row(s): 7 recorded, 5 already recorded, 0 rejected" in capsys.readouterr().out


def test_export_csv_help_progress_and_unknown_goal(
    env: Path, ms: EmulatorHandle, bars: Bars, capsys: pytest.CaptureFixture[str]
) -> None:
    help_text = " ".join(run("export-csv", "--help").output.split())
    assert "Writes msclkid-conversions.csv (or msclkid-adjustments.csv) in the current directory" in help_text
    clock = FakeClock()
    tracker = make_tracker(ms, env, clock, microsoft=False)
    for n in range(1000):
        record(tracker, clock, n)
    tracker.close()
    assert main(["export-csv", "--since", "1h"]) == 0
    assert bars.bars == [{"length": 1000, "label": "Exporting", "done": 1000}]
    assert (env / "msclkid-conversions.csv").exists()
    capsys.readouterr()
    assert main(["export-csv", "--goal", "Purchse", "--output", "x.csv"]) == 0
    err = capsys.readouterr().err
    assert "warning: no goal named 'Purchse' is configured or recorded in this outbox; did you mean 'Purchase'?" in err
    assert main(["export-csv", "--goal", "Purchase", "--output", "y.csv"]) == 0
    assert "warning" not in capsys.readouterr().err


def test_send_test_documents_the_relative_times_it_accepts() -> None:
    text = " ".join(run("send-test", "--help").output.split())
    assert "how long ago as a number and one unit: 90m, 2h, 3d (minutes, hours, days)" in text
