"""CRM exports through ``import_file`` and ``validate_file`` (the commands are tested in tests/cli/test_csv.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from msclkid_middleware.errors import OutboxFull
from msclkid_middleware.ops.csv_import import import_file
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
