"""``msclkid report`` and ``msclkid reconcile`` against the emulator (reconcile: strict click matching)."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from msclkid_middleware.capture.clickid import Click
from msclkid_middleware.cli import main
from msclkid_middleware.cli.reports import RECONCILE_ALERT_EXIT
from msclkid_middleware.outbox import open_store
from msclkid_middleware.testing import EmulatorHandle, run_emulator

from .conftest import FakeClock, click_id, make_tracker, record, run, use_emulator


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


@pytest.fixture
def strict(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[EmulatorHandle]:
    with run_emulator(strict_click_matching=True) as handle:
        use_emulator(handle, tmp_path, monkeypatch)
        open_store(f"sqlite:///{tmp_path / 'outbox.db'}").close()  # reconcile only reads: it needs an outbox
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


def test_reconcile_files_says_per_event_what_microsoft_did(env: Path, ms: EmulatorHandle) -> None:
    now = datetime.now(UTC)
    ms.add_click(click_id(1), now - timedelta(hours=5))
    clock = FakeClock()
    tracker = make_tracker(ms, env, clock)
    try:
        record(tracker, clock, 1)  # accepted
        record(tracker, clock, 2, click="not-a-click-id-but-long-enough-xx")  # refused locally or by Microsoft
        record(tracker, clock, 3, conversion_name="Purchse")  # 5606
        record(tracker, clock, 4, hashed_email="a" * 64, click=None)  # enhanced (hashed-only)
        tracker.flush()
    finally:
        tracker.close()
    result = run("reconcile", "--since", "1d", "--files", "--max-unattributed", "1")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "Microsoft's result files:" in out
    assert "downloaded -> msclkid-result-files/offline-results-2000001-" in out
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip().startswith("ord_")}
    assert lines["ord_1"].endswith("Success")
    assert lines["ord_3"].endswith("OfflineConversionNameInvalid")
    assert lines["ord_4"].endswith("Success")
    kept = next((env / "msclkid-result-files").iterdir())
    assert kept.stat().st_mode & 0o777 == 0o600
    data = json.loads(
        run("reconcile", "--since", "1d", "--files", "--format", "json", "--max-unattributed", "1").output
    )
    by_event = {e["event_id"]: e for e in data["events"]}
    assert by_event["ord_1"]["microsoft_status"] == "Success"
    assert by_event["ord_3"]["outbox_state"] == "rejected"
    assert data["result_files"][0]["status"] == "downloaded"
    assert data["result_files"][0]["records"] >= 3
    # The signed link is never printed.
    assert "sig=" not in out
    assert "_results/" not in json.dumps(data)
