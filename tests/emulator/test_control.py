"""Control API under /_emulator/ and the HTML dashboard."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
import requests
from emulator_helpers import access_token, ago, apply_offline, cm_headers, conversion, refresh, wire_time

from msclkid_middleware.emulator import Emulator, EmulatorConfig, load_config_file
from msclkid_middleware.errors import ConfigError
from msclkid_middleware.testing import EmulatorHandle, run_emulator


def test_out_of_the_box_state(ms: EmulatorHandle) -> None:
    state = requests.get(f"{ms.url}/_emulator/state", timeout=5).json()
    assert state["accounts"] == [
        {
            "customer_id": ms.env["MSADS_CUSTOMER_ID"],
            "account_id": ms.env["MSADS_ACCOUNT_ID"],
            "properties": {"MSCLKIDAutoTaggingEnabled": "True"},
        }
    ]
    goals = {g["name"]: g for g in state["goals"]}
    assert set(goals) == {"Purchase", "Lead"}
    assert goals["Purchase"]["type"] == "OfflineConversion"
    assert state["uet_tags"] == [
        {"tag_id": ms.env["UET_TAG_ID"], "account_id": ms.env["MSADS_ACCOUNT_ID"], "tracking_status": "Active"}
    ]
    assert "client_secret" not in state["config"]
    assert state["refresh_tokens"] == {"issued": 1, "revoked": 0, "latest_serial": 1}


def test_env_names_match_design(ms: EmulatorHandle) -> None:
    assert set(ms.env) == {
        "MSADS_API_URL",
        "MSADS_TOKEN_URL",
        "UET_API_URL",
        "MSADS_DEVELOPER_TOKEN",
        "MSADS_CLIENT_ID",
        "MSADS_CLIENT_SECRET",
        "MSADS_REFRESH_TOKEN",
        "MSADS_CUSTOMER_ID",
        "MSADS_ACCOUNT_ID",
        "UET_TAG_ID",
        "UET_API_TOKEN",
    }
    assert ms.env["MSADS_API_URL"] == ms.url
    assert ms.env["MSADS_TOKEN_URL"] == f"{ms.url}/common/oauth2/v2.0/token"


def test_received_filters_and_reset(ms: EmulatorHandle) -> None:
    apply_offline(ms, [conversion(), conversion(ConversionName="Nope")])
    base = f"{ms.url}/_emulator/received"
    everything = requests.get(base, timeout=5).json()
    assert [(i["kind"], i["outcome"], i["code"]) for i in everything] == [
        ("offline", "accepted", None),
        ("offline", "rejected", 5606),
    ]
    assert everything[1]["error_code"] == "OfflineConversionNameInvalid"
    assert everything[1]["payload"]["ConversionName"] == "Nope"
    rejected = requests.get(base, params={"outcome": "rejected"}, timeout=5).json()
    assert len(rejected) == 1
    assert requests.get(base, params={"kind": "uet"}, timeout=5).json() == []
    assert requests.get(base, params={"account": ms.env["MSADS_ACCOUNT_ID"]}, timeout=5).json() == everything
    assert requests.post(f"{ms.url}/_emulator/reset", timeout=5).json() == {"reset": True}
    assert requests.get(base, timeout=5).json() == []
    # The initial refresh token survives a reset, so .env stays valid.
    assert refresh(ms).status_code == 200


def test_configure_goals_clicks_tags_accounts_over_http(ms: EmulatorHandle) -> None:
    base = f"{ms.url}/_emulator"
    goal = requests.post(
        f"{base}/goals", json={"name": "Signup", "conversion_window_minutes": 60, "created_hours_ago": 3}, timeout=5
    )
    assert goal.status_code == 201
    assert goal.json()["conversion_window_minutes"] == 60
    click_time = wire_time(ago(hours=2))
    assert (
        requests.post(f"{base}/clicks", json={"click_id": "9" * 32, "click_time": click_time}, timeout=5).status_code
        == 201
    )
    item = conversion(MicrosoftClickId="9" * 32, ConversionName="Signup", ConversionTime=wire_time(ago(minutes=30)))
    [error] = apply_offline(ms, [item]).json()["PartialErrors"]
    assert error["Code"] == 5617  # 90 minutes after the click, window 60
    tag = requests.post(f"{base}/tags", json={"tag_id": "777"}, timeout=5).json()
    assert tag["token"]
    assert requests.post(f"{base}/accounts", json={"customer_id": "1", "account_id": "2"}, timeout=5).status_code == 201
    assert {a["account_id"] for a in ms.state()["accounts"]} == {ms.env["MSADS_ACCOUNT_ID"], "2"}


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        pytest.param("POST", "goals", {"conversion_window_minutes": 5}, id="goal-without-name"),
        pytest.param("POST", "goals", {"name": "x", "conversion_window_minutes": 0}, id="goal-window"),
        pytest.param("POST", "clicks", {"click_id": "a" * 32, "click_time": "noon"}, id="click-time"),
        pytest.param("PATCH", "config", {"unknown_goal": "maybe"}, id="config-value"),
        pytest.param("PATCH", "config", {"goals": []}, id="config-fixed"),
        pytest.param("PATCH", "config", {"nope": 1}, id="config-unknown"),
    ],
)
def test_control_input_errors(ms: EmulatorHandle, method: str, path: str, body: dict[str, object]) -> None:
    response = requests.request(method, f"{ms.url}/_emulator/{path}", json=body, timeout=5)
    assert response.status_code == 400
    assert response.json()["error"] == "bad_request"


def test_unknown_control_route_is_404(ms: EmulatorHandle) -> None:
    assert requests.get(f"{ms.url}/_emulator/nope", timeout=5).status_code == 404


def test_config_patch_changes_runtime_settings_until_reset(ms: EmulatorHandle) -> None:
    response = requests.patch(f"{ms.url}/_emulator/config", json={"empty_partial_errors": "null"}, timeout=5)
    assert response.json()["empty_partial_errors"] == "null"
    assert apply_offline(ms, [conversion()]).json() == {"PartialErrors": None}
    ms.reset()
    assert apply_offline(ms, [conversion()]).json() == {"PartialErrors": []}


def test_token_control_routes(ms: EmulatorHandle) -> None:
    issued = requests.post(f"{ms.url}/_emulator/tokens/issue", timeout=5).json()["refresh_token"]
    assert issued.startswith("rt-2-")
    token = access_token(ms)
    assert requests.post(f"{ms.url}/_emulator/tokens/expire", json={}, timeout=5).json() == {"expired": 1}
    assert apply_offline(ms, [conversion()], cm_headers(ms, token)).json()["Errors"][0]["Code"] == 109
    log = requests.get(f"{ms.url}/_emulator/tokens", timeout=5).json()
    assert [(r["grant_type"], r["outcome"]) for r in log] == [("refresh_token", "issued")]


def test_dashboard_escapes_hostile_input(ms: EmulatorHandle) -> None:
    hostile = '<script>alert("x")</script>'
    apply_offline(ms, [conversion(ConversionName=hostile), conversion()])
    response = requests.get(f"{ms.url}/", timeout=5)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    assert "<script>" not in response.text
    assert "&lt;script&gt;" in response.text
    assert "http-equiv=refresh" in response.text
    assert "5606" in response.text
    assert "accepted" in response.text
    assert response.text.count("<tr>") >= 4


def test_sqlite_store_keeps_the_journal(tmp_path: Path) -> None:
    path = tmp_path / "emulator.sqlite3"
    with run_emulator(store=str(path)) as ms:
        apply_offline(ms, [conversion(), conversion(ConversionName="Nope")])
        assert [i.outcome for i in ms.received("offline")] == ["accepted", "rejected"]
        assert ms.received("offline")[1].code == 5606
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT stream, outcome FROM journal WHERE stream = 'received' ORDER BY seq").fetchall()
    assert rows == [("received", "accepted"), ("received", "rejected")]
    # A new emulator on the same file sees the earlier journal.
    with run_emulator(store=str(path)) as again:
        assert len(again.received("offline")) == 2


@pytest.mark.parametrize("suffix", [".json", ".toml"])
def test_config_files(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"emulator{suffix}"
    if suffix == ".json":
        path.write_text(
            '{"unknown_goal": "accept", "goals": [{"name": "Call", "created_hours_ago": 5}],'
            ' "faults": [{"endpoint": "uet", "kind": "http", "status": 503, "times": 1}]}'
        )
    else:
        path.write_text(
            'unknown_goal = "accept"\n[[goals]]\nname = "Call"\ncreated_hours_ago = 5\n'
            '[[faults]]\nendpoint = "uet"\nkind = "http"\nstatus = 503\ntimes = 1\n'
        )
    config = load_config_file(path)
    assert config.unknown_goal == "accept"
    emulator = Emulator(config)
    assert [g["name"] for g in emulator.state()["goals"]] == ["Call"]
    assert emulator.faults()[0]["status"] == 503


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param('{"colour": 1}', "unknown emulator setting", id="unknown-key"),
        pytest.param("{", "not valid", id="bad-json"),
        pytest.param("[]", "top level", id="not-object"),
        pytest.param('{"goals": {"name": "x"}}', "list", id="goals-not-list"),
    ],
)
def test_bad_config_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "c.json"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config_file(path)


def test_config_validation() -> None:
    with pytest.raises(ConfigError):
        EmulatorConfig(click_id_pattern="(")
    with pytest.raises(ConfigError):
        EmulatorConfig(access_token_lifetime=0)


def test_wait_for_received_polls_until_items_arrive(ms: EmulatorHandle) -> None:
    headers = cm_headers(ms)
    timer = threading.Timer(0.2, lambda: apply_offline(ms, [conversion()], headers))
    timer.start()
    try:
        [item] = ms.wait_for_received(1, "offline", timeout=5)
        assert item.outcome == "accepted"
        with pytest.raises(TimeoutError, match="0 of 1 uet"):
            ms.wait_for_received(1, "uet", timeout=0.1)
    finally:
        timer.join()


def test_an_internal_bug_answers_like_microsofts_internal_error(
    ms: EmulatorHandle, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(ms.emulator, "_handle", broken)
    response = apply_offline(ms, [conversion()], {"Authorization": "Bearer x"})
    assert response.status_code == 500
    body = response.json()
    assert body["Errors"][0]["ErrorCode"] == "InternalError"
    assert body["TrackingId"] == response.headers["TrackingId"]
    assert response.headers["TrackingId"] in caplog.text
