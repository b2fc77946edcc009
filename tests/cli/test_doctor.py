"""``msclkid doctor`` (and ``--fix``) against the emulator: every check, the exit status, the fixes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from msclkid_middleware.cli import main
from msclkid_middleware.testing import EmulatorHandle, run_emulator

from .conftest import FakeClock, assert_clean, make_tracker, record, run, use_emulator


@pytest.fixture
def healthy(env: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MSADS_CONVERSION_GOALS", "Purchase,Lead")
    return env


def _private(path: Path) -> None:
    for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        if name.exists():
            name.chmod(0o600)


def test_a_healthy_account_passes_every_check(healthy: Path, ms: EmulatorHandle) -> None:
    assert run("retry-dead").exit_code == 0  # creates the outbox (read-only commands such as status never do)
    _private(healthy / "outbox.db")
    result = run("doctor")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    for name in ("configuration", "oauth", "credentials", "auto_tagging", "goal:Purchase", "goal:Lead", "uet_tag"):
        assert any(line.startswith(f"✔ {name} ") for line in lines), (name, result.output)
    assert any(line.startswith("✔ store ") for line in lines), result.output
    assert any(line.startswith("✔ clock ") for line in lines)
    assert "0 failed" in result.output
    assert_clean(result.output, ms)


def test_failures_say_what_to_do_and_exit_non_zero(
    healthy: Path, ms: EmulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MSADS_CONVERSION_GOALS", "Purchase,purchase ,Brand")
    ms.set_account_properties({"MSCLKIDAutoTaggingEnabled": False})
    ms.add_goal("Brand", type="Event", tag_id="343001234")
    ms.add_uet_tag("77", account_id=ms.env["MSADS_ACCOUNT_ID"], tracking_status="Inactive")
    monkeypatch.setenv("UET_TAG_ID", "77")
    result = run("doctor")
    assert result.exit_code == 1
    out = result.output
    assert "✘ auto_tagging" in out
    assert "MSCLKIDAutoTaggingEnabled is False" in out
    assert "→ run `msclkid doctor --fix` (SetAccountProperties)" in out
    assert "did you mean 'Purchase'?" in out
    assert "goal:Brand" in out
    assert "Event, scope Account, status Active: not an offline goal" in out
    assert "✘ uet_tag" in out
    assert "is Inactive" in out
    data = json.loads(run("doctor", "--format", "json").output)
    assert data["ok"] is False
    assert {c["check"]: c["status"] for c in data["checks"]}["auto_tagging"] == "fail"


def test_fix_asks_and_turns_auto_tagging_on(healthy: Path, ms: EmulatorHandle) -> None:
    ms.set_account_properties({"MSCLKIDAutoTaggingEnabled": "false"})
    assert run("retry-dead").exit_code == 0  # creates the outbox
    (healthy / "outbox.db").chmod(0o644)  # a store from before files were created 0600, or copied
    declined = run("doctor", "--fix", input="n\nn\n")
    assert "Turn on msclkid auto-tagging" in declined.output
    assert "auto_tagging: left unchanged" in declined.output
    assert ms.account_properties()["MSCLKIDAutoTaggingEnabled"] == "False"
    assert not [r for r in ms.requests("account_properties") if r.path.endswith("/Set")]
    fixed = run("doctor", "--fix", "--yes")
    assert "fixed: ✔ auto_tagging" in fixed.output
    assert "fixed: ✔ store" in fixed.output
    assert ms.account_properties()["MSCLKIDAutoTaggingEnabled"] == "True"
    assert (healthy / "outbox.db").stat().st_mode & 0o077 == 0
    assert fixed.exit_code == 0, fixed.output
    assert run("doctor").exit_code == 0


def test_store_permissions_and_dead_events(healthy: Path, ms: EmulatorHandle) -> None:
    clock = FakeClock()
    tracker = make_tracker(ms, healthy, clock)
    try:
        record(tracker, clock, 1, conversion_name="Purchse")  # 5606: rejected
        tracker.flush()
    finally:
        tracker.close()
    (healthy / "outbox.db").chmod(0o644)
    out = run("doctor").output
    assert "✘ store" in out
    assert "readable by others" in out
    assert "644" in out
    assert "! events" in out
    assert "1 rejected (5606" in out


def test_oauth_and_credential_failures(healthy: Path, ms: EmulatorHandle, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MSADS_CLIENT_SECRET", "wrong-secret")
    out = run("doctor").output
    assert "✘ oauth" in out
    assert "check MSADS_CLIENT_SECRET" in out
    assert "! credentials" in out
    assert "not checked" in out
    monkeypatch.setenv("MSADS_CLIENT_SECRET", ms.env["MSADS_CLIENT_SECRET"])
    monkeypatch.setenv("MSADS_ACCOUNT_ID", "424242")
    out = run("doctor").output
    assert "✘ credentials" in out
    assert "MSADS_ACCOUNT_ID" in out
    ms.revoke_refresh_tokens()
    monkeypatch.setenv("MSADS_ACCOUNT_ID", ms.env["MSADS_ACCOUNT_ID"])
    out = run("doctor", "--store", f"sqlite:///{healthy / 'other.db'}").output
    assert "✘ oauth" in out
    assert "msclkid auth" in out
    monkeypatch.delenv("MSADS_DEVELOPER_TOKEN")
    out = run("doctor", "--store", f"sqlite:///{healthy / 'third.db'}").output
    assert "✘ configuration" in out
    assert "MSADS_DEVELOPER_TOKEN" in out
    assert main(["doctor", "--store", f"sqlite:///{healthy / 'third.db'}"]) == 1


def test_clock_skew_from_microsofts_date_header(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with run_emulator(clock=lambda: datetime.now(UTC) + timedelta(minutes=10)) as ms:
        use_emulator(ms, tmp_path, monkeypatch)
        out = run("doctor").output
        assert "✘ clock" in out
        assert "behind Microsoft" in out
        assert "NTP" in out
    second = tmp_path / "second"
    second.mkdir()
    with run_emulator(clock=lambda: datetime.now(UTC) - timedelta(minutes=2)) as ms:
        use_emulator(ms, second, monkeypatch)
        out = run("doctor").output
        assert "! clock" in out
        assert "ahead of Microsoft" in out


def test_an_invalid_setting_fails_configuration_without_creating_an_outbox(
    env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MSADS_ENVIRONMENT", "staging")
    monkeypatch.delenv("MSCLKID_STORE_URL")
    result = run("doctor")
    assert result.exit_code == 1
    assert "✘ configuration" in result.output
    assert "MSADS_ENVIRONMENT" in result.output
    assert "! store" in result.output
    assert not (env / "msclkid-outbox.sqlite3").exists()
