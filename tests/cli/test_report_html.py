"""``msclkid report --html FILE`` / ``--json FILE`` / ``--with-microsoft`` on a real outbox and the emulator."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from msclkid_middleware.cli import main
from msclkid_middleware.outbox import open_store
from msclkid_middleware.testing import EmulatorHandle

from .conftest import FakeClock, assert_clean, make_tracker, record


def _delivered(env: Path, ms: EmulatorHandle) -> None:
    clock = FakeClock()
    tracker = make_tracker(ms, env, clock)
    try:
        record(tracker, clock, 1)
        record(tracker, clock, 2, click=None, email="ana@example.com")
        record(tracker, clock, 3, conversion_name="Newsletter")  # no such goal: 5606
        tracker.flush()
    finally:
        tracker.close()


def test_html_and_json_files(env: Path, ms: EmulatorHandle, capsys: pytest.CaptureFixture[str]) -> None:
    _delivered(env, ms)
    assert main(["report", "--html", "report.html", "--json", "report.json"]) == 0
    captured = capsys.readouterr()
    assert captured.out == ""  # the table is not printed when files are asked for
    assert "wrote report.html" in captured.err
    page = (env / "report.html").read_text(encoding="utf-8")
    assert page.startswith("<!doctype html>")
    assert page.count('role="img"') == 4
    assert "5606 OfflineConversionNameInvalid" in page
    assert "Not fetched for this report" in page
    data = json.loads((env / "report.json").read_text(encoding="utf-8"))
    purchase = next(m for m in data["match_keys"] if m["goal"] == "Purchase")
    assert (purchase["click_only"], purchase["hashed_only"]) == (1, 1)
    assert data["top_rejections"][0]["code"].startswith("5606")
    assert data["microsoft"] is None
    assert_clean(page + json.dumps(data), ms, "ana@example.com")


def test_json_to_standard_output_for_monitoring(
    env: Path, ms: EmulatorHandle, capsys: pytest.CaptureFixture[str]
) -> None:
    _delivered(env, ms)
    assert main(["report", "--json", "-", "--goal", "Purchase"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["goal"] == "Purchase"
    assert sum(day["delivered"] for day in data["days"]) == 2
    assert data["delivery_times"]["count"] == 2


def test_with_microsoft_puts_its_figures_beside_ours(
    env: Path, ms: EmulatorHandle, capsys: pytest.CaptureFixture[str]
) -> None:
    _delivered(env, ms)
    assert main(["report", "--with-microsoft", "--html", "r.html", "--json", "-"]) == 0
    data = json.loads(capsys.readouterr().out)
    by_goal = {g["goal"]: g for g in data["microsoft"]["goals"]}
    assert by_goal["Purchase"]["sent"] == 2
    assert by_goal["Purchase"]["microsoft_success"] + by_goal["Purchase"]["microsoft_unattributed"] == 2
    page = (env / "r.html").read_text(encoding="utf-8")
    assert "Microsoft's own figures" in page
    assert "Not fetched" not in page
    assert page.count('role="img"') == 7


def test_with_microsoft_without_credentials_names_them(
    env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    open_store(f"sqlite:///{env / 'outbox.db'}").close()  # an outbox without a stored refresh token
    monkeypatch.delenv("MSADS_DEVELOPER_TOKEN")
    monkeypatch.delenv("MSADS_REFRESH_TOKEN")
    assert main(["report", "--with-microsoft", "--html", "r.html"]) == 1
    assert "Microsoft Advertising is not configured: set MSADS_DEVELOPER_TOKEN" in capsys.readouterr().err
    assert not (env / "r.html").exists()
