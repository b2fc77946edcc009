"""``msclkid uet token``: fetched through the API, stored, used by the worker, never printed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from msclkid_middleware.dispatch.tracker import ConversionTracker
from msclkid_middleware.testing import run_emulator

from .conftest import assert_clean, click_id, run, use_emulator


@pytest.mark.parametrize("shape", ["service", "guide"])
def test_uet_token_is_fetched_stored_and_used(shape: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with run_emulator(uet_auth_key_shape=shape) as ms:
        use_emulator(ms, tmp_path, monkeypatch)
        monkeypatch.delenv("UET_API_TOKEN")
        result = run("uet", "token")
        assert result.exit_code == 0, result.output
        assert f"UET CAPI token for tag {ms.env['UET_TAG_ID']} stored" in result.output
        assert_clean(result.output, ms)
        assert "unchanged" in run("uet", "token").output
        tracker = ConversionTracker.from_env()
        try:
            assert tracker.uet is not None
            tracker.record_uet_event("evt-1", "purchase", datetime.now(UTC) - timedelta(minutes=1), click=click_id(1))
            assert tracker.flush().delivered == 1
        finally:
            tracker.close()
        assert [i.outcome for i in ms.received("uet")] == ["accepted"]
        assert run("uet", "token", "--tag-id", "1").exit_code == 1
