"""The operating commands through ``main(argv)`` and click's CliRunner, against the emulator on a loopback port."""

from __future__ import annotations

import csv
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit
from zoneinfo import ZoneInfo

import pytest
import requests
from click.testing import CliRunner

from msclkid_middleware.capture.clickid import Click
from msclkid_middleware.cli import cli, main
from msclkid_middleware.cli.commands_ops import RECONCILE_ALERT_EXIT
from msclkid_middleware.config import Settings
from msclkid_middleware.dispatch.tracker import ConversionTracker
from msclkid_middleware.errors import OutboxFull
from msclkid_middleware.ops.csvfiles import import_file
from msclkid_middleware.outbox import open_store
from msclkid_middleware.testing import EmulatorHandle, run_emulator

from .conftest import FakeClock, click_id, make_tracker, record

EMAIL = "Jane.Doe+shop@Example.com"
PHONE = "+14255550123"


def _use(ms: EmulatorHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name, value in ms.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MSCLKID_STORE_URL", f"sqlite:///{tmp_path / 'outbox.db'}")
    monkeypatch.delenv("MSADS_CONVERSION_GOALS", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def env(ms: EmulatorHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return _use(ms, tmp_path, monkeypatch)


def secrets_of(ms: EmulatorHandle) -> list[str]:
    e = ms.env
    return [e["MSADS_REFRESH_TOKEN"], e["MSADS_CLIENT_SECRET"], e["MSADS_DEVELOPER_TOKEN"], e["UET_API_TOKEN"]]


def assert_clean(text: str, ms: EmulatorHandle, *more: str) -> None:
    """No token, secret, raw email or phone in what a command printed."""
    for secret in (*secrets_of(ms), EMAIL, EMAIL.lower(), PHONE, "rt-", "at-", *more):
        assert secret not in text


def run(*args: str, input: str | None = None) -> Any:
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


# -- auth ------------------------------------------------------------------------------------------------------


def _authorize(ms: EmulatorHandle, redirect_uri: str, state: str | None = None) -> str:
    """What the browser does: sign in (the emulator auto-consents) and return the redirect URL."""
    params = {
        "client_id": ms.env["MSADS_CLIENT_ID"],
        "response_type": "code",
        "redirect_uri": redirect_uri,
        "scope": "https://ads.microsoft.com/msads.manage offline_access",
        **({"state": state} if state else {}),
    }
    answer = requests.get(
        f"{ms.url}/common/oauth2/v2.0/authorize?{urlencode(params)}", allow_redirects=False, timeout=5
    )
    assert answer.status_code in (302, 303)
    return answer.headers["Location"]


def test_auth_paste_stores_the_refresh_token_then_check_uses_it(
    env: Path, ms: EmulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MSADS_REFRESH_TOKEN")
    redirect = "https://shop.example/msclkid-consent"
    location = _authorize(ms, redirect)
    result = run("auth", "--redirect-uri", redirect, input=location + "\n")
    assert result.exit_code == 0, result.output
    assert "login" not in result.output or "oauth2/v2.0/authorize?" in result.output
    assert "refresh token stored in sqlite:///" in result.output
    code = parse_qs(urlsplit(location).query)["code"][0]
    assert_clean(result.output, ms, code)
    store = open_store(f"sqlite:///{env / 'outbox.db'}")
    try:
        stored = store.load_token("microsoft")
        assert stored is not None
        assert stored.refresh_token.startswith("rt-")
        assert stored.refresh_token not in result.output
    finally:
        store.close()
    # Without MSADS_REFRESH_TOKEN the stored grant is used: --check refreshes and reaches the account.
    check = run("auth", "--check")
    assert check.exit_code == 0, check.output
    assert "OK: the refresh token works" in check.output
    assert f"Account {ms.env['MSADS_ACCOUNT_ID']} of customer {ms.env['MSADS_CUSTOMER_ID']}" in check.output
    assert "2 offline conversion goal(s)" in check.output
    assert_clean(check.output, ms)


def test_auth_url_uses_the_sandbox_scope(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MSADS_ENVIRONMENT", "sandbox")
    result = run("auth", "--code", "not-a-real-code")
    url = next(line for line in result.output.splitlines() if "authorize?" in line)
    assert parse_qs(urlsplit(url).query)["scope"] == ["https://si.ads.microsoft.com/msads.manage offline_access"]
    assert parse_qs(urlsplit(url).query)["redirect_uri"] == [
        "https://login.microsoftonline.com/common/oauth2/nativeclient"
    ]
    assert result.exit_code == 1  # the emulator does not know that code


def test_auth_with_a_code_argument_and_a_refused_redirect(env: Path, ms: EmulatorHandle) -> None:
    redirect = "https://shop.example/cb"
    code = parse_qs(urlsplit(_authorize(ms, redirect)).query)["code"][0]
    assert main(["auth", "--redirect-uri", redirect, "--code", code]) == 0
    # A code is single-use: redeeming it again is refused with Microsoft's reason, no traceback.
    assert main(["auth", "--redirect-uri", redirect, "--code", code]) == 1
    denied = f"{redirect}?error=access_denied&error_description=The+user+declined"
    assert main(["auth", "--redirect-uri", redirect, "--code", denied]) == 1


def test_auth_one_shot_loopback_listener(
    env: Path, ms: EmulatorHandle, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MSADS_REFRESH_TOKEN")
    outcome: list[int] = []
    worker = threading.Thread(target=lambda: outcome.append(main(["auth", "--listen", "--timeout", "20"])))
    worker.start()
    printed = ""
    deadline = time.monotonic() + 10
    while "authorize?" not in printed and time.monotonic() < deadline:
        time.sleep(0.05)
        printed += capsys.readouterr().out
    url = next(line for line in printed.splitlines() if "authorize?" in line)
    query = parse_qs(urlsplit(url).query)
    assert query["scope"] == ["https://ads.microsoft.com/msads.manage offline_access"]
    assert query["redirect_uri"][0].startswith("http://localhost:")
    # The "browser" follows Microsoft's redirect to the listener, which answers and exits.
    page = requests.get(url, timeout=10)
    assert page.status_code == 200
    assert "consent received" in page.text
    worker.join(15)
    assert outcome == [0]
    assert "Access granted" in capsys.readouterr().out
    assert main(["auth", "--check"]) == 0


# -- send-test -------------------------------------------------------------------------------------------------


def test_send_test_sends_one_conversion_now_and_records_it(
    env: Path, ms: EmulatorHandle, capsys: pytest.CaptureFixture[str]
) -> None:
    clock = FakeClock()
    tracker = make_tracker(ms, env, clock)
    record(tracker, clock, 1)  # a queued conversion the test must not send
    tracker.close()
    ms.add_click(click_id(7), datetime.now(UTC) - timedelta(hours=3))
    code = main(["send-test", "--click-id", click_id(7), "--goal", "Purchase", "--value", "1.5", "--currency", "USD"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "outcome: delivered" in out
    assert "PartialErrors: none" in out
    tracking = next(line for line in out.splitlines() if line.startswith("TrackingId: ")).split(": ")[1]
    [item] = ms.received("offline")
    assert (item.payload["MicrosoftClickId"], item.tracking_id) == (click_id(7), tracking)
    store = open_store(f"sqlite:///{env / 'outbox.db'}")
    try:
        rows = {r.event_id: r for r in store.scan()}
        assert rows["ord_1"].state == "pending"
        assert rows["ord_1"].attempts == 0
        (sent,) = [r for r in rows.values() if r.event_id.startswith("send-test-")]
        assert (sent.state, sent.tracking_id) == ("delivered", tracking)
    finally:
        store.close()


def test_send_test_prints_the_rejection(env: Path, ms: EmulatorHandle) -> None:
    result = run("send-test", "--click-id", click_id(8), "--goal", "Purchasee", "--email", EMAIL)
    assert result.exit_code == 1
    assert "outcome: rejected" in result.output
    assert "PartialErrors: 5606 OfflineConversionNameInvalid" in result.output
    assert "TrackingId: " in result.output
    assert_clean(result.output, ms)
    again = run("send-test", "--click-id", "bad id", "--goal", "Purchase")
    assert again.exit_code == 1
    assert "click" in again.output


def test_send_test_for_a_goal_younger_than_two_hours_is_held(env: Path, ms: EmulatorHandle) -> None:
    assert run("goals", "create", "Brand new", "--currency", "USD").exit_code == 0
    result = run("send-test", "--click-id", click_id(9), "--goal", "Brand new")
    assert result.exit_code == 0, result.output
    assert "outcome: pending" in result.output
    assert "waiting: goal_too_new" in result.output
    assert "next attempt: " in result.output
    assert ms.received("offline") == []


# -- report ----------------------------------------------------------------------------------------------------


def test_report_counts_per_goal_and_state_with_warnings(env: Path, ms: EmulatorHandle) -> None:
    clock = FakeClock()
    tracker = make_tracker(ms, env, clock)
    try:
        for n in range(3):
            record(tracker, clock, n)
        record(tracker, clock, 10, conversion_name="Purchse")  # 5606
        record(tracker, clock, 11, click=Click(click_id(11), clock() - timedelta(minutes=10)))  # soon after click
        tracker.flush()
        ms.add_goal("Fresh", created_hours_ago=0)
        tracker.goal_registry.record(tracker.account, "Fresh", clock(), "9")
        record(tracker, clock, 20, conversion_name="Fresh")
        record(tracker, clock, 21, conversion_time=clock() - timedelta(days=85))  # near 90 days, left pending
        tracker.flush()
        # Probably deduplicated: a second goal, same click and time as a delivered conversion.
        same = tracker.store.find("ord_0")[0].payload["ConversionTime"]
        ms.add_goal("Lead2")
        record(
            tracker, clock, 0, event_id="lead_0", conversion_name="Lead2", conversion_time=datetime.fromisoformat(same)
        )
        tracker.flush()
    finally:
        tracker.close()
    table = run("report")
    assert table.exit_code == 0, table.output
    lines = {line.split()[0]: line for line in table.output.splitlines() if line.startswith(("Purchase", "Purchse"))}
    assert lines["Purchase"].split()[2] == "5"  # 3 + soon-after-click + near-90-days, all delivered
    assert "5606 OfflineConversionNameInvalid x1" in lines["Purchse"]
    assert "Uploaded but probably not counted" in table.output
    data = json.loads(run("report", "--format", "json").output)
    goals = {(g["goal"], g["kind"]): g for g in data["goals"]}
    assert goals["Fresh", "offline"]["held"] == 1
    assert goals["Lead2", "offline"]["deduplicated"] == 1
    assert goals["Purchse", "offline"]["rejected"] == {"5606 OfflineConversionNameInvalid": 1}
    warnings = {(w["code"], w["goal"]): w["count"] for w in data["warnings"]}
    assert warnings["young_goal", "Fresh"] == 1
    assert warnings["unknown_goal", "Purchse"] == 1
    assert warnings["soon_after_click", "Purchase"] == 1
    only = json.loads(run("report", "--goal", "Fresh", "--format", "json").output)
    assert [g["goal"] for g in only["goals"]] == ["Fresh"]
    rows = list(csv.reader(run("report", "--format", "csv", "--since", "1d").output.splitlines()))
    assert rows[0] == ["goal", "kind", "state", "code", "count"]
    assert ["Purchse", "offline", "rejected", "5606 OfflineConversionNameInvalid", "1"] in rows
    assert ["Fresh", "", "warning:young_goal", "", "1"] in rows
    assert run("report", "--since", "yesterday").exit_code == 2


def test_report_warns_near_the_90_day_limit(env: Path, ms: EmulatorHandle) -> None:
    clock = FakeClock()
    tracker = make_tracker(ms, env, clock, microsoft=False)  # nothing is delivered: rows stay pending
    try:
        record(tracker, clock, 1, conversion_time=clock() - timedelta(days=85))
        record(tracker, clock, 2)
    finally:
        tracker.close()
    data = json.loads(run("report", "--format", "json").output)
    assert {(w["code"], w["count"]) for w in data["warnings"]} == {("near_90_days", 1)}
    assert data["goals"][0]["pending"] == 2


# -- CSV export / import / validate ----------------------------------------------------------------------------


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
    assert "'=HYPERLINK(1)" in second  # formula-injection safe
    assert EMAIL.lower() not in "\n".join(first)
    assert PHONE not in "\n".join(first)
    adjustments = run("export-csv", "--kind", "adjustments", "--time-zone", "Europe/Berlin")
    assert adjustments.exit_code == 0, adjustments.output
    text = (env / "msclkid-adjustments.csv").read_text(encoding="utf-8").splitlines()
    assert text[0] == "Parameters:"
    assert text[1].split(",")[3:7] == ["Adjustment Value", "Adjustment Currency", "Adjustment Type", "Adjustment Time"]
    restate, retract = (next(csv.reader([line])) for line in text[2:])
    assert (restate[3], restate[5], retract[3], retract[5]) == ("5.25", "Restate", "", "Retract")
    assert restate[2][-5:] in ("+0100", "+0200")
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


def _crm_file(path: Path, rows: list[list[str]], header: list[str] | None = None) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            header or ["order_id", "goal", "converted_at", "amount", "currency", "msclkid", "email", "phone"]
        )
        writer.writerows(rows)
    return path


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
    source = _crm_file(env / "crm.csv", rows)
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
    source = _crm_file(env / "big.csv", rows, header=["Order Number", "Closed", "Click"])
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
    source = _crm_file(env / "check.csv", rows)
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
    good = _crm_file(env / "good.csv", rows[:1])
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


def test_import_stops_when_the_outbox_is_full(env: Path, ms: EmulatorHandle) -> None:
    when = (datetime.now(UTC) - timedelta(hours=2)).strftime("%Y-%m-%d %H:%M:%S")
    source = _crm_file(
        env / "many.csv", [[f"F{n}", "Purchase", when, "1", "USD", click_id(n), "", ""] for n in range(5)]
    )
    clock = FakeClock()
    tracker = make_tracker(ms, env, clock, microsoft=False, max_pending=3)
    try:
        with pytest.raises(OutboxFull):
            import_file(source, tracker=tracker)
        # Rows of the failed batch were rolled back; nothing half-written.
        assert [r.event_id for r in tracker.store.scan()] == []
    finally:
        tracker.close()


# -- goals -----------------------------------------------------------------------------------------------------


def test_goals_list_check_and_create(env: Path, ms: EmulatorHandle, monkeypatch: pytest.MonkeyPatch) -> None:
    ms.add_goal("Old paused", status="Paused")
    monkeypatch.setenv("MSADS_CONVERSION_GOALS", "Purchase,purchase ,Old paused")
    result = run("goals")
    assert result.exit_code == 1, result.output
    assert "Purchase" in result.output
    assert "variable USD" in result.output
    assert "ok   'Purchase'" in result.output
    assert "did you mean 'Purchase'?" in result.output
    assert "FAIL 'Old paused': status Paused" in result.output
    created = run(
        "goals", "create", "Phone sale", "--revenue", "fixed", "--value", "40", "--currency", "eur",
        "--count", "unique", "--window", "7d", "--category", "submit-lead-form", "--enhanced",
    )  # fmt: skip
    assert created.exit_code == 0, created.output
    assert "created offline goal 'Phone sale'" in created.output
    assert "held until" in created.output
    listed = run("goals", "list")
    line = next(line for line in listed.output.splitlines() if "Phone sale" in line)
    assert "fixed 40 EUR" in line
    assert "7 d" in line or "168.0 h" in line
    assert "too young until" in line
    [goal] = [g for g in ms.state()["goals"] if g["name"] == "Phone sale"]
    assert (goal["count_type"], goal["conversion_window_minutes"], goal["enhanced"]) == ("Unique", 10080, True)
    monkeypatch.setenv("MSADS_CONVERSION_GOALS", "Phone sale")
    check = run("goals", "check")
    assert check.exit_code == 1
    assert "younger than 2 hours" in check.output
    # A conversion for it is held, not sent.
    clock = FakeClock()
    tracker = make_tracker(ms, env, clock)
    try:
        record(tracker, clock, 1, conversion_name="Phone sale")
        assert tracker.flush().delivered == 0
        assert tracker.status("ord_1").last_error_code == "goal_too_new"
    finally:
        tracker.close()
    duplicate = run("goals", "create", "Phone sale", "--currency", "EUR")
    assert duplicate.exit_code == 1
    assert "4803" in duplicate.output
    assert run("goals", "create", "X", "--category", "nonsense", "--currency", "EUR").exit_code == 2
    assert run("goals", "create", "X", "--revenue", "fixed", "--currency", "EUR").exit_code == 2


def test_goals_need_microsoft_settings(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MSADS_DEVELOPER_TOKEN")
    result = run("goals", "list")
    assert result.exit_code == 1
    assert "not configured" in result.output


# -- reconcile -------------------------------------------------------------------------------------------------


@pytest.fixture
def strict(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[EmulatorHandle]:
    with run_emulator(strict_click_matching=True) as handle:
        _use(handle, tmp_path, monkeypatch)
        yield handle


def test_reconcile_puts_microsofts_reasons_beside_our_counts(strict: EmulatorHandle, tmp_path: Path) -> None:
    ms = strict
    now = datetime.now(UTC)
    ms.add_goal("Paused goal", status="Paused")
    for n in (1, 2, 3):
        ms.add_click(click_id(n), now - timedelta(hours=5))
    ms.add_click(click_id(4), now - timedelta(days=40))  # outside the 30-day window
    ms.add_click(click_id(5), now - timedelta(hours=5), account_id="999")  # another account's click
    ms.add_click(click_id(6), now - timedelta(minutes=20))  # clicked after the conversion time
    clock = FakeClock()
    tracker = make_tracker(ms, tmp_path, clock)
    try:
        for n in (1, 2, 3, 4, 5, 6, 7):  # 7: nobody registered the click
            record(tracker, clock, n)
        record(tracker, clock, 8, click=click_id(1), conversion_name="Paused goal")
        # The same conversion also arrived by manual file upload: the outbox's copy is a duplicate.
        item = tracker.store.find("ord_2")[0].payload
        requests.post(
            ms.campaign_url("OfflineConversions/Apply"),
            json={"OfflineConversions": [dict(item)]},
            headers=_cm_headers(ms),
            timeout=5,
        ).raise_for_status()
        tracker.flush()
        tracker.retract("ord_3")
        tracker.flush()
    finally:
        tracker.close()
    result = run("reconcile", "--since", "1d")
    assert result.exit_code == RECONCILE_ALERT_EXIT, result.output
    out = result.output
    for reason in (
        "NoMatchingClickFound", "DuplicateConversionKey", "GoalNotFoundOrInactive", "OutsideGoalLookbackWindow",
        "AccountMismatch", "ClickTimestampAfterConversion",
    ):  # fmt: skip
        assert f"    {reason}: 1  (" in out, reason
    assert "only the first counts" in out
    assert "ALERT:" in out
    data = json.loads(run("reconcile", "--format", "json", "--max-unattributed", "1").output)
    purchase = next(g for g in data["goals"] if g["goal"] == "Purchase")
    reasons = {r["reason"]: r["count"] for r in purchase["reasons"]}
    assert reasons["NoMatchingClickFound"] == 1
    assert purchase["sent"] == 5 + 1  # delivered conversions + the retract (5617 and 5616 were rejected)
    assert purchase["microsoft_success"] == 4  # ord_1, the manual upload of ord_2, ord_3 and its retract
    assert data["daily"][0]["success"] >= 8
    assert run("reconcile", "--max-unattributed", "1").exit_code == 0
    assert main(["reconcile", "--max-unattributed", "0.5"]) == RECONCILE_ALERT_EXIT  # main() returns the code too
    assert main(["reconcile", "--max-unattributed", "1"]) == 0
    rows = list(
        csv.reader(
            run("reconcile", "--format", "csv", "--goal", "Paused goal", "--max-unattributed", "1").output.splitlines()
        )
    )
    assert rows[1][:6] == ["Paused goal", rows[1][1], "1", "0", "1", "GoalNotFoundOrInactive"]


def test_reconcile_names_rejection_reasons(strict: EmulatorHandle) -> None:
    """Items Microsoft refused outright are "not counted" too, each with its reason and hint."""
    ms = strict
    now = datetime.now(UTC)
    stamp = "%Y-%m-%dT%H:%M:%SZ"
    base = {"ConversionName": "Purchase", "ConversionTime": (now - timedelta(hours=1)).strftime(stamp)}
    items = [
        {**base, "MicrosoftClickId": click_id(1), "ConversionTime": (now + timedelta(days=2)).strftime(stamp)},
        {**base, "MicrosoftClickId": click_id(2), "ConversionTime": (now - timedelta(days=91)).strftime(stamp)},
        {**base},  # no click ID, no hashes
        {**base, "MicrosoftClickId": click_id(4), "ConversionCurrencyCode": "ZZZ"},
    ]
    requests.post(
        ms.campaign_url("OfflineConversions/Apply"),
        json={"OfflineConversions": items},
        headers=_cm_headers(ms),
        timeout=5,
    ).raise_for_status()
    result = run("reconcile", "--since", "2d")
    assert result.exit_code == RECONCILE_ALERT_EXIT
    for reason, hint in (
        ("ConversionTimeInFuture", "send UTC"),
        ("ConversionTimeExceedsMaxLookback", "older than 90 days"),
        ("MissingMatchIdentifiers", "neither a click ID"),
        ("MalformedData", "a field was invalid"),
    ):
        line = next(line for line in result.output.splitlines() if f"{reason}: 1" in line)
        assert hint in line
    assert "Not counted overall: 100.0%" in result.output


def test_reconcile_names_adjustment_reasons(strict: EmulatorHandle, tmp_path: Path) -> None:
    ms = strict
    ms.add_click(click_id(1), datetime.now(UTC) - timedelta(hours=5))
    clock = FakeClock()
    tracker = make_tracker(ms, tmp_path, clock)
    try:
        record(tracker, clock, 1)
        tracker.flush()
        tracker.retract("ord_1")
        tracker.flush()
    finally:
        tracker.close()
    payload = {
        "MicrosoftClickId": click_id(1), "ConversionName": "Purchase", "AdjustmentType": "Retract",
        "ConversionTime": tracker_time(tmp_path, "ord_1"),
        "AdjustmentTime": (datetime.now(UTC) - timedelta(seconds=5)).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }  # fmt: skip
    orphan = {**payload, "MicrosoftClickId": click_id(9)}
    requests.post(
        ms.campaign_url("OfflineConversionAdjustments/Apply"),
        json={"OfflineConversionAdjustments": [payload, orphan]},
        headers=_cm_headers(ms),
        timeout=5,
    ).raise_for_status()
    out = run("reconcile", "--max-unattributed", "1").output
    assert "ConversionAlreadyRetracted: 1" in out
    assert "AdjustmentOriginalNotFound: 1" in out


def tracker_time(tmp_path: Path, event_id: str) -> str:
    store = open_store(f"sqlite:///{tmp_path / 'outbox.db'}")
    try:
        return str(store.find(event_id)[0].payload["ConversionTime"])
    finally:
        store.close()


def _cm_headers(ms: EmulatorHandle) -> dict[str, str]:
    token = requests.post(
        ms.token_url,
        data={
            "client_id": ms.env["MSADS_CLIENT_ID"],
            "client_secret": ms.env["MSADS_CLIENT_SECRET"],
            "grant_type": "refresh_token",
            "refresh_token": ms.env["MSADS_REFRESH_TOKEN"],
            "scope": "https://ads.microsoft.com/msads.manage offline_access",
        },
        timeout=5,
    ).json()["access_token"]
    return {
        "Authorization": f"Bearer {token}",
        "DeveloperToken": ms.env["MSADS_DEVELOPER_TOKEN"],
        "CustomerId": ms.env["MSADS_CUSTOMER_ID"],
        "CustomerAccountId": ms.env["MSADS_ACCOUNT_ID"],
    }


# -- uet token -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", ["service", "guide"])
def test_uet_token_is_fetched_stored_and_used(shape: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with run_emulator(uet_auth_key_shape=shape) as ms:
        _use(ms, tmp_path, monkeypatch)
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


def test_every_ops_command_is_registered() -> None:
    result = run("--help")
    for name in ("auth", "send-test", "report", "export-csv", "import-csv", "validate", "goals", "reconcile", "uet"):
        assert name in result.output
    settings = Settings()
    assert settings.conversion_goals == ()


def test_commands_read_the_hosts_settings_not_the_environment(
    ms: EmulatorHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``flask msclkid ...`` hands the app config to the commands through ``ctx.meta``."""
    import click

    from msclkid_middleware.cli.commands import ENVIRON_META_KEY

    for name in (*ms.env, "MSCLKID_STORE_URL", "MSADS_CONVERSION_GOALS"):
        monkeypatch.delenv(name, raising=False)
    config = {**ms.env, "MSCLKID_STORE_URL": f"sqlite:///{tmp_path / 'app.db'}", "MSADS_CONVERSION_GOALS": "Purchase"}

    @click.group()
    @click.pass_context
    def host(ctx: click.Context) -> None:
        ctx.meta[ENVIRON_META_KEY] = config

    host.add_command(cli, "msclkid")
    runner = CliRunner()
    goals = runner.invoke(host, ["msclkid", "goals"], catch_exceptions=False)
    assert goals.exit_code == 0, goals.output
    assert "ok   'Purchase'" in goals.output
    sent = runner.invoke(host, ["msclkid", "send-test", "--click-id", click_id(3), "--goal", "Purchase"])
    assert "outcome: delivered" in sent.output
    report = runner.invoke(host, ["msclkid", "report", "--format", "json"], catch_exceptions=False)
    assert json.loads(report.output)["goals"][0]["delivered"] == 1
    assert (tmp_path / "app.db").exists()
