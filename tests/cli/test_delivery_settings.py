"""``worker`` and ``flush`` never "succeed at doing nothing": missing credentials are named, events counted once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from msclkid_middleware.cli import main
from msclkid_middleware.testing import EmulatorHandle

from .conftest import FakeClock, click_id, make_tracker, record

MSADS = ("MSADS_DEVELOPER_TOKEN", "MSADS_CLIENT_ID", "MSADS_CUSTOMER_ID", "MSADS_ACCOUNT_ID", "MSADS_REFRESH_TOKEN")


def _record(env: Path, ms: EmulatorHandle, *, uet: bool = False) -> None:
    clock = FakeClock()
    tracker = make_tracker(ms, env, clock, microsoft=False, uet=False)
    try:
        if uet:
            tracker.record_uet_event("evt-1", "purchase", datetime.now(UTC) - timedelta(minutes=1), click=click_id(1))
        else:
            record(tracker, clock, 1)
    finally:
        tracker.close()


@pytest.mark.parametrize("command", [["flush"], ["worker", "--drain"]], ids=lambda c: c[0])
def test_without_microsoft_credentials_the_missing_settings_are_named(
    env: Path,
    ms: EmulatorHandle,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: list[str],
) -> None:
    _record(env, ms)
    for name in ("MSADS_DEVELOPER_TOKEN", "MSADS_ACCOUNT_ID", "MSADS_REFRESH_TOKEN"):
        monkeypatch.delenv(name)
    assert main(command) == 1
    captured = capsys.readouterr()
    assert "0 delivered" not in captured.out
    assert "Microsoft Advertising is not configured for open offline rows" in captured.err
    assert "MSADS_DEVELOPER_TOKEN, MSADS_ACCOUNT_ID, MSADS_REFRESH_TOKEN (or run `msclkid auth`)" in captured.err
    assert "MSADS_CLIENT_ID" not in captured.err  # only what is missing


def test_uet_events_without_uet_credentials_are_named(
    env: Path, ms: EmulatorHandle, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _record(env, ms, uet=True)
    monkeypatch.delenv("UET_API_TOKEN")
    assert main(["flush"]) == 1
    err = capsys.readouterr().err
    assert "UET is not configured for the open uet rows: set UET_API_TOKEN" in err
    assert "Microsoft Advertising" not in err  # the Microsoft side is configured


def test_no_credentials_at_all_fails_even_on_an_empty_outbox(
    env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in (*MSADS, "UET_TAG_ID", "UET_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    assert main(["worker", "--drain"]) == 1
    assert "nothing can be delivered: Microsoft Advertising is not configured for offline conversions" in (
        capsys.readouterr().err
    )


def test_flush_counts_each_event_once(env: Path, ms: EmulatorHandle, capsys: pytest.CaptureFixture[str]) -> None:
    clock = FakeClock()
    tracker = make_tracker(ms, env, clock, microsoft=False)
    for n in (1, 2):
        record(tracker, clock, n)
    tracker.close()
    ms.inject_fault("offline", "http", status=503, times=1)  # the whole first request fails: both rows retry
    assert main(["flush"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("flush: 0 delivered, 0 rejected, 0 dead; 2 still open (2 waiting for a retry, 0 held,")
    assert main(["retry-dead"]) == 0  # nothing dead: the two rows wait for their next attempt
