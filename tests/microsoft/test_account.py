"""Account properties, goal updates, the Date header and result files against the emulator (issue 20).

Every request body the clients send is validated with Microsoft's own REST SDK models (``msads``), as
``tests/conversions/test_wire_msads.py`` does for the conversion bodies.
"""

from __future__ import annotations

import json
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from pydantic.warnings import PydanticDeprecatedSince20

from msclkid_middleware.errors import ApiFault, ValidationError
from msclkid_middleware.microsoft import CampaignManagementClient
from msclkid_middleware.microsoft.account import AccountClient
from msclkid_middleware.microsoft.goals import GoalsClient, GoalUpdate
from msclkid_middleware.microsoft.result_files import ResultFileDownloader, parse_result_file
from msclkid_middleware.testing import EmulatorHandle, run_emulator

from .conftest import make_campaign
from .ms_helpers import click_id, wire_time

with warnings.catch_warnings():
    warnings.simplefilter("ignore", PydanticDeprecatedSince20)
    from openapi_client.api_client import ApiClient
    from openapi_client.models.campaign.get_account_properties_request import GetAccountPropertiesRequest
    from openapi_client.models.campaign.get_account_properties_response import GetAccountPropertiesResponse
    from openapi_client.models.campaign.get_offline_conversion_reports_request import (
        GetOfflineConversionReportsRequest,
    )
    from openapi_client.models.campaign.get_offline_conversion_reports_response import (
        GetOfflineConversionReportsResponse,
    )
    from openapi_client.models.campaign.get_uet_tags_by_ids_request import GetUetTagsByIdsRequest
    from openapi_client.models.campaign.get_uet_tags_by_ids_response import GetUetTagsByIdsResponse
    from openapi_client.models.campaign.offline_conversion_goal import OfflineConversionGoal
    from openapi_client.models.campaign.set_account_properties_request import SetAccountPropertiesRequest
    from openapi_client.models.campaign.update_conversion_goals_request import UpdateConversionGoalsRequest
    from openapi_client.models.campaign.update_conversion_goals_response import UpdateConversionGoalsResponse


def sent_body(kwargs: dict[str, Any]) -> Any:
    """The JSON body as it went on the wire (the client sends it encoded, as ``data``)."""
    data = kwargs.get("data")
    return json.loads(data) if data is not None else kwargs.get("json")


class Wire:
    """Every (method, path, JSON body, response JSON) the client's session exchanged."""

    def __init__(self, client: CampaignManagementClient) -> None:
        self.calls: list[tuple[str, str, Any, Any]] = []
        session = client.session
        post, request = session.post, session.request

        def watched_post(url: str, **kwargs: Any) -> requests.Response:
            response = post(url, **kwargs)
            self.calls.append(("POST", url.split("/v13/")[1], sent_body(kwargs), response.json()))
            return response

        def watched_request(method: str, url: str, **kwargs: Any) -> requests.Response:
            response = request(method, url, **kwargs)
            if method != "POST":  # session.post() goes through request() too: recorded once, above
                self.calls.append((method, url.split("/v13/")[1], sent_body(kwargs), response.json()))
            return response

        session.post = watched_post  # type: ignore[method-assign]
        session.request = watched_request  # type: ignore[method-assign]


def _strict(model: Any, body: Any) -> Any:
    """Validate with the SDK model and check the SDK would send back exactly what we sent."""
    parsed = model.model_validate(json.loads(json.dumps(body)))
    # What the SDK itself would put on the wire for this model is what we put on the wire.
    assert ApiClient.sanitize_for_serialization(ApiClient.__new__(ApiClient), parsed) == body
    return parsed


def test_auto_tagging_get_and_set_with_msads_models(ms: EmulatorHandle) -> None:
    with make_campaign(ms) as campaign:
        wire = Wire(campaign)
        account = AccountClient(campaign)
        assert account.auto_tagging_enabled() is True  # the emulator starts with auto-tagging on
        ms.set_account_properties({"MSCLKIDAutoTaggingEnabled": False})
        assert account.auto_tagging_enabled() is False
        account.enable_auto_tagging()
        assert ms.account_properties()["MSCLKIDAutoTaggingEnabled"] == "True"
        assert account.get_properties(["MSCLKIDAutoTaggingEnabled", "FinalUrlSuffix"]) == {
            "MSCLKIDAutoTaggingEnabled": "True",
            "FinalUrlSuffix": None,
        }
    queries = [c for c in wire.calls if c[1] == "AccountProperties/Query"]
    [setting] = [c for c in wire.calls if c[1] == "AccountProperties/Set"]
    for _, _, body, answer in queries:
        request = _strict(GetAccountPropertiesRequest, body)
        assert next(n.value for n in request.account_property_names) == "MSCLKIDAutoTaggingEnabled"
        GetAccountPropertiesResponse.model_validate(answer)
    request = _strict(SetAccountPropertiesRequest, setting[2])
    assert [(p.name.value, p.value) for p in request.account_properties] == [("MSCLKIDAutoTaggingEnabled", "True")]
    assert setting[0] == "POST"
    assert setting[3] == {}


def test_set_account_properties_is_all_or_nothing(ms: EmulatorHandle) -> None:
    ms.set_account_properties({"MSCLKIDAutoTaggingEnabled": False})
    with make_campaign(ms) as campaign:
        account = AccountClient(campaign)
        with pytest.raises(ApiFault) as info:
            account.set_properties({"MSCLKIDAutoTaggingEnabled": True, "AdClickParallelTracking": "maybe"})
        assert info.value.status == 400
        assert [d["Index"] for d in info.value.details if "Index" in d] == [1]
        assert ms.account_properties()["MSCLKIDAutoTaggingEnabled"] == "False"  # nothing applied
        with pytest.raises(ApiFault):
            account.get_properties(["NoSuchProperty"])


def test_adding_an_offline_goal_turns_auto_tagging_on(ms: EmulatorHandle) -> None:
    from msclkid_middleware.microsoft.goals import ConversionGoal

    ms.set_account_properties({"MSCLKIDAutoTaggingEnabled": False})
    with make_campaign(ms) as campaign:
        GoalsClient(campaign).add_goal(ConversionGoal("Phone order", currency="USD"))
        # Microsoft's AddConversionGoals page: the property "is set to True automatically".
        assert AccountClient(campaign).auto_tagging_enabled() is True


def test_uet_tag_status(ms: EmulatorHandle) -> None:
    ms.add_uet_tag("88", tracking_status="Unverified")
    with make_campaign(ms) as campaign:
        wire = Wire(campaign)
        account = AccountClient(campaign)
        assert account.uet_tag_status(ms.env["UET_TAG_ID"]) == "Active"
        assert account.uet_tag_status("88") == "Unverified"
        assert account.uet_tag_status("404") is None
    for _, _, body, answer in wire.calls:
        _strict(GetUetTagsByIdsRequest, body)
        GetUetTagsByIdsResponse.model_validate(answer)


def test_update_conversion_goals_with_msads_models(ms: EmulatorHandle) -> None:
    with make_campaign(ms) as campaign:
        wire = Wire(campaign)
        goals = GoalsClient(campaign)
        purchase = next(g for g in goals.list_goals() if g.name == "Purchase")
        assert purchase.id is not None
        update = GoalUpdate(
            purchase.id, count_type="Unique", conversion_window_minutes=2880, exclude_from_bidding=True,
            revenue_type="FixedValue", revenue_value=30, currency="eur",
        )  # fmt: skip
        errors = goals.update_goals(
            [update, GoalUpdate("999999", status="Paused"), GoalUpdate(purchase.id, name="Lead")]
        )
        assert errors[0] is None
        assert errors[1] is not None
        assert errors[1].startswith("5314 InvalidConversionGoalId")
        assert errors[2] is not None
        assert errors[2].startswith("5317 ConversionGoalNameAlreadyExists")
        after = next(g for g in goals.list_goals() if g.id == purchase.id)
        assert (after.count_type, after.conversion_window_minutes, after.exclude_from_bidding) == ("Unique", 2880, True)
        assert (after.revenue_type, after.revenue_value, after.currency) == ("FixedValue", 30.0, "EUR")
        assert after.enhanced is True  # left out of the update: unchanged
        assert (after.attribution_model, after.view_through_window_minutes, after.is_auto_goal) == (None, None, False)
    [(_method, path, body, answer)] = [c for c in wire.calls if c[0] == "PUT"]
    assert path == "ConversionGoals"
    assert UpdateConversionGoalsRequest.from_dict(json.loads(json.dumps(body))) is not None
    for item in body["ConversionGoals"]:
        _strict(OfflineConversionGoal, item)
    UpdateConversionGoalsResponse.model_validate(answer)
    # What the goal listing returns validates as Microsoft's offline goal model too.
    listing = next(c for c in wire.calls if c[1] == "ConversionGoals/QueryByIds")
    for goal in listing[3]["ConversionGoals"]:
        OfflineConversionGoal.model_validate(goal)


def test_goal_update_refuses_what_microsoft_calls_not_applicable() -> None:
    with pytest.raises(ValidationError, match="not applicable for offline conversion goals"):
        GoalUpdate("1001", attribution_model="LastTouch")
    with pytest.raises(ValidationError, match="not applicable"):
        GoalUpdate("1001", view_through_window_minutes=60)
    assert GoalUpdate("7", type="Event", attribution_model="DataDriven").to_wire() == {
        "Type": "Event",
        "Id": "7",
        "AttributionModelType": "DataDriven",
    }
    with pytest.raises(ValidationError, match="nothing to change"):
        GoalUpdate("1001")


def test_the_date_header_gives_the_server_clock() -> None:
    ahead = timedelta(minutes=3)
    with run_emulator(clock=lambda: datetime.now(UTC) + ahead) as ms, make_campaign(ms) as campaign:
        assert campaign.last_server_clock is None
        AccountClient(campaign).auto_tagging_enabled()
        seen = campaign.last_server_clock
        assert seen is not None
        assert abs(seen.skew - ahead) < timedelta(seconds=2)


def test_result_files_are_downloaded_kept_and_parsed(ms: EmulatorHandle, tmp_path: Path) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    ms.add_click(click_id(1), now - timedelta(hours=3))
    when = wire_time(now - timedelta(hours=1))
    items = [
        {"MicrosoftClickId": click_id(1), "ConversionName": "Purchase", "ConversionTime": when,
         "ConversionValue": 12.5, "ConversionCurrencyCode": "USD"},
        {"MicrosoftClickId": click_id(2), "ConversionName": "Nope", "ConversionTime": when},
    ]  # fmt: skip
    with make_campaign(ms) as campaign:
        campaign.apply_offline_conversions(items)
        [day] = GoalsClient(campaign).daily_reports(now - timedelta(days=1), now)
    assert day.has_file
    assert day.file_url
    assert day.file_expires_at
    with ResultFileDownloader(tmp_path / "files") as downloader:
        got = downloader.fetch(
            day.file_url, upload_date=day.upload_date, expires_at=day.file_expires_at, account="2000001", now=now
        )
        assert got.status == "downloaded"
        assert got.path is not None
        assert got.records is not None
        assert got.path.stat().st_mode & 0o777 == 0o600
        ok, bad = got.records
        assert (ok.status, ok.click_id, ok.conversion_name, ok.conversion_time) == (
            "Success",
            click_id(1),
            "Purchase",
            now - timedelta(hours=1),
        )
        assert (ok.value, ok.currency) == ("12.5", "USD")
        assert bad.status == "OfflineConversionNameInvalid"
        assert not bad.succeeded
        late = downloader.fetch(
            day.file_url, upload_date=day.upload_date, expires_at=day.file_expires_at, account="2000001",
            now=day.file_expires_at + timedelta(seconds=1),
        )  # fmt: skip
        assert (late.status, late.path) == ("expired", None)
        forged = downloader.fetch(
            day.file_url.replace("sig=", "sig=0"), upload_date=day.upload_date, expires_at=None, account="x", now=now
        )
        assert forged.status == "failed"
        assert "HTTP 403" in (forged.note or "")
        assert day.file_url not in (forged.note or "")


def test_an_undocumented_file_is_kept_unparsed(ms: EmulatorHandle, tmp_path: Path) -> None:
    assert parse_result_file(b"Some,Other,Columns\n1,2,3\n") is None
    assert parse_result_file(b"\x00\xff\xfe garbage") is None
    records = parse_result_file(
        json.dumps(
            [
                {
                    "MSClickId": "a" * 32,
                    "ConversionName": "P",
                    "ConversionTime": "2026-01-01T00:00:00",
                    "Status": "Success",
                }
            ]
        ).encode()
    )
    assert records is not None
    assert records[0].succeeded
    preamble = (
        b"Report,Offline\r\n\r\nMSClickId,ConversionName,ConversionTime,TimeZone,Status\r\n"
        b"abc,P,01/02/2026 1:00:00 PM,-0500,Success\r\n"
    )
    [row] = parse_result_file(preamble) or ()
    assert row.conversion_time == datetime(2026, 1, 2, 18, 0, tzinfo=UTC)


def test_daily_reports_with_file_links_validate_as_msads_models(ms: EmulatorHandle) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    with make_campaign(ms) as campaign:
        campaign.apply_offline_conversions(
            [{"MicrosoftClickId": click_id(9), "ConversionName": "Purchase", "ConversionTime": wire_time(now)}]
        )
        wire = Wire(campaign)
        [day] = GoalsClient(campaign).daily_reports(now - timedelta(days=1), now)
    [(_, _, body, answer)] = wire.calls
    GetOfflineConversionReportsRequest.model_validate(body)
    [summary] = GetOfflineConversionReportsResponse.model_validate(answer).daily_summaries
    assert summary.file_url == day.file_url
    assert summary.file_url_expiry_time_utc == day.file_expires_at
    assert (summary.success_count, summary.failure_count) == (1, 0)
