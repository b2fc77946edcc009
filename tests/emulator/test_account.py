"""The emulator's account properties, goal updates, result files and Date header (issue 20), over HTTP."""

from __future__ import annotations

import csv
import email.utils
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from emulator_helpers import cm_headers

from msclkid_middleware.emulator.settings import EmulatorConfig, load_config_file
from msclkid_middleware.errors import ConfigError
from msclkid_middleware.testing import EmulatorHandle, run_emulator


def post(ms: EmulatorHandle, operation: str, body: Any, method: str = "POST") -> requests.Response:
    return requests.request(method, ms.campaign_url(operation), json=body, headers=cm_headers(ms), timeout=5)


def test_account_properties_over_the_api_and_the_control_api(ms: EmulatorHandle) -> None:
    query = {"AccountPropertyNames": ["MSCLKIDAutoTaggingEnabled"]}
    assert post(ms, "AccountProperties/Query", query).json() == {
        "AccountProperties": [{"Name": "MSCLKIDAutoTaggingEnabled", "Value": "True"}],
        "PartialErrors": [],
    }
    control = f"{ms.url}/_emulator/accounts/{ms.env['MSADS_ACCOUNT_ID']}/properties"
    assert requests.patch(control, json={"MSCLKIDAutoTaggingEnabled": "false"}, timeout=5).json() == {
        "MSCLKIDAutoTaggingEnabled": "False"
    }
    assert requests.get(f"{ms.url}/_emulator/accounts/default/properties", timeout=5).json() == {
        "MSCLKIDAutoTaggingEnabled": "False"
    }
    assert requests.patch(control, json={"MSCLKIDAutoTaggingEnabled": "maybe"}, timeout=5).status_code == 400
    answer = post(
        ms, "AccountProperties/Set", {"AccountProperties": [{"Name": "MSCLKIDAutoTaggingEnabled", "Value": "True"}]}
    )
    assert (answer.status_code, answer.json()) == (200, {})
    assert ms.state()["accounts"][0]["properties"] == {"MSCLKIDAutoTaggingEnabled": "True"}
    assert post(ms, "AccountProperties/Query", {"AccountPropertyNames": []}).status_code == 400
    assert post(ms, "AccountProperties/Query", {"AccountPropertyNames": ["Nope"]}).status_code == 400
    refused = post(
        ms,
        "AccountProperties/Set",
        {
            "AccountProperties": [
                {"Name": "FinalUrlSuffix", "Value": "a=b"},
                {"Name": "MSCLKIDAutoTaggingEnabled", "Value": "2"},
            ]
        },
    )
    assert refused.status_code == 400
    fault = refused.json()
    assert fault["Type"] == "ApiFaultDetail"
    assert [e["Index"] for e in fault["BatchErrors"]] == [1]
    assert "FinalUrlSuffix" not in ms.account_properties()  # partial success is not supported


def test_account_properties_from_the_configuration(tmp_path: Path) -> None:
    path = tmp_path / "emulator.toml"
    path.write_text(
        "[account_properties]\nMSCLKIDAutoTaggingEnabled = false\n\n"
        '[[accounts]]\ncustomer_id = "1000001"\naccount_id = "2000002"\n'
        'properties = { MSCLKIDAutoTaggingEnabled = "True" }\n'
    )
    config = load_config_file(path)
    assert config.account_properties == {"MSCLKIDAutoTaggingEnabled": "False"}
    with run_emulator(config) as ms:
        assert ms.account_properties() == {"MSCLKIDAutoTaggingEnabled": "False"}
        assert ms.account_properties("2000002") == {"MSCLKIDAutoTaggingEnabled": "True"}
        with pytest.raises(ConfigError):
            ms.configure(account_properties={})
    with pytest.raises(ConfigError, match="AccountPropertyName"):
        EmulatorConfig(account_properties={"AutoTagging": "True"})
    assert EmulatorConfig().account_properties == {"MSCLKIDAutoTaggingEnabled": "True"}


def test_goal_names_taken_answer_5317_and_updates_use_the_documented_codes(ms: EmulatorHandle) -> None:
    goal = {"Type": "OfflineConversion", "GoalCategory": "Purchase", "Revenue": {"Type": "NoValue"}}
    added = post(
        ms,
        "ConversionGoals",
        {"ConversionGoals": [{**goal, "Name": "Purchase"}, {**goal, "Name": "X"}, {**goal, "Name": "X"}]},
    ).json()
    codes = [(e["Index"], e["Code"], e["ErrorCode"]) for e in added["PartialErrors"]]
    assert codes == [(0, 5317, "ConversionGoalNameAlreadyExists"), (2, 5316, "DuplicateConversionGoalName")]
    new_id = added["ConversionGoalIds"][1]
    updates = [
        {"Type": "OfflineConversion", "Id": new_id, "CountType": "Unique", "ExcludeFromBidding": True},
        {"Type": "OfflineConversion", "Id": "77777"},
        {"Type": "Event", "Id": new_id},
        {"Type": "OfflineConversion", "Id": new_id, "Scope": "Customer"},
        {"Type": "OfflineConversion", "Id": new_id, "ConversionWindowInMinutes": 0},
        {"Type": "OfflineConversion", "Id": new_id, "ViewThroughConversionWindowInMinutes": 60},
        {"Type": "OfflineConversion", "Id": new_id, "Name": "Lead"},
        {"Type": "OfflineConversion"},
        {"Type": "OfflineConversion", "Id": new_id, "Revenue": {"Type": "Sometimes"}},
    ]
    answer = post(ms, "ConversionGoals", {"ConversionGoals": updates}, method="PUT")
    assert answer.status_code == 200
    assert [(e["Index"], e["Code"]) for e in answer.json()["PartialErrors"]] == [
        (1, 5314), (2, 5331), (3, 5804), (4, 5337), (5, 6609), (6, 5317), (7, 5325), (8, 5332),
    ]  # fmt: skip
    [stored] = [g for g in ms.state()["goals"] if g["name"] == "X"]
    assert (stored["count_type"], stored["exclude_from_bidding"], stored["scope"]) == ("Unique", True, "Account")
    assert (
        post(ms, "ConversionGoals", {"ConversionGoals": []}, method="PUT").json()["OperationErrors"][0]["Code"] == 5321
    )


def test_result_files_are_signed_and_expire(tmp_path: Path) -> None:
    moment = [datetime.now(UTC)]
    with run_emulator(clock=lambda: moment[0]) as ms:
        now = moment[0]
        ms.add_click("a" * 32, now - timedelta(hours=2))
        item = {
            "MicrosoftClickId": "a" * 32,
            "ConversionName": "Purchase",
            "ConversionTime": (now - timedelta(hours=1)).isoformat(),
        }
        post(ms, "OfflineConversions/Apply", {"OfflineConversions": [item, {**item, "ConversionName": ""}]})
        body = {"StartDateUtc": (now - timedelta(days=1)).isoformat(), "EndDateUtc": now.isoformat()}
        [day] = post(ms, "OfflineConversionReports/Query", body).json()["DailySummaries"]
        assert day["FileUrl"].startswith(f"{ms.url}/_results/{ms.env['MSADS_ACCOUNT_ID']}/")
        response = requests.get(day["FileUrl"], timeout=5)
        assert response.status_code == 200
        assert response.headers["Content-Type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(response.text)))
        assert [r["Status"] for r in rows] == ["Success", "OfflineConversionNameNullOrEmpty"]
        assert rows[0]["MSClickId"] == "a" * 32
        assert rows[0]["ChannelName"] == "SOAP"
        assert requests.get(day["FileUrl"].replace("sig=", "sig=f"), timeout=5).status_code == 403
        moment[0] = now + timedelta(hours=2)
        expired = requests.get(day["FileUrl"], timeout=5)
        assert expired.status_code == 403
        assert "AuthenticationFailed" in expired.text


def test_every_answer_carries_a_date_header_from_the_emulator_clock() -> None:
    with run_emulator(clock=lambda: datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC)) as ms:
        for response in (requests.get(f"{ms.url}/_emulator/state", timeout=5), requests.post(ms.token_url, timeout=5)):
            assert email.utils.parsedate_to_datetime(response.headers["Date"]) == datetime(
                2031, 5, 6, 7, 8, 9, tzinfo=UTC
            )
