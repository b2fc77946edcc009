from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from msclkid_middleware.errors import ApiFault, AuthenticationError, ConfigError, TransientError
from msclkid_middleware.microsoft import CampaignManagementClient, RefreshTokenProvider, RetryPolicy
from msclkid_middleware.testing import EmulatorHandle, run_emulator

from .conftest import make_campaign, make_provider
from .ms_helpers import offline_items


def test_2500_items_are_split_into_1000_1000_500_with_results_in_order(
    ms: EmulatorHandle, campaign: CampaignManagementClient
) -> None:
    bad = {0: "name", 999: "click", 1000: "name", 1742: "click", 2499: "name"}
    items = offline_items(ms, 2500, bad=bad)
    result = campaign.apply_offline_conversions(items)
    sizes = [r.items for r in ms.requests("offline")]
    assert sizes == [1000, 1000, 500]
    assert len(result) == 2500
    assert [r.index for r in result] == list(range(2500))
    assert {r.index for r in result.rejected} == set(bad)
    for index, kind in bad.items():
        assert result[index].code == (5606 if kind == "name" else 5604)
        assert result[index].error_code in ("OfflineConversionNameInvalid", "OfflineConversionMicrosoftClickIdInvalid")
        assert result[index].message
    tracking = [r.tracking_id for r in ms.requests("offline")]
    assert list(result.tracking_ids) == tracking
    assert result[0].tracking_id == tracking[0]
    assert result[1500].tracking_id == tracking[1]
    assert result[2499].tracking_id == tracking[2]
    # What the emulator recorded as accepted is exactly what we report as accepted.
    accepted = {r.payload["MicrosoftClickId"] for r in ms.received("offline", outcome="accepted")}
    assert accepted == {items[r.index]["MicrosoftClickId"] for r in result.accepted}


def test_partial_errors_at_chosen_indexes(ms: EmulatorHandle, campaign: CampaignManagementClient) -> None:
    ms.inject_fault("offline", "partial_errors", indexes=[3, 7, 11], times=1)
    ms.inject_fault("offline", "partial_errors", indexes=[2], code=5615, skip=1, times=1)
    result = campaign.apply_offline_conversions(offline_items(ms, 12))
    assert [r.index for r in result.rejected] == [3, 7, 11]
    assert {(r.code, r.error_code) for r in result.rejected} == {(5612, "OfflineConversionsApplyFailed")}
    # The retry policy decides per item: 5612 is transient.
    assert RetryPolicy().classify(result[3], 1).action == "retry"
    second = campaign.apply_offline_conversions(offline_items(ms, 4))
    assert [(r.index, r.code) for r in second.rejected] == [(2, 5615)]
    assert RetryPolicy().classify(second[2], 1).action == "wait_for_goal"


@pytest.mark.parametrize("mode", ["list", "null", "absent"])
def test_partial_errors_may_be_empty_null_or_absent(mode: str) -> None:
    with run_emulator(empty_partial_errors=mode) as ms, make_campaign(ms) as client:
        result = client.apply_offline_conversions(offline_items(ms, 3))
        assert [r.accepted for r in result] == [True, True, True]
        assert len(result.tracking_ids) == 1


def test_adjustments_use_their_own_endpoints(ms: EmulatorHandle, campaign: CampaignManagementClient) -> None:
    items = offline_items(ms, 2)
    assert all(r.accepted for r in campaign.apply_offline_conversions(items))
    adjustment = {
        "AdjustmentType": "Restate",
        "AdjustmentValue": 5.0,
        "AdjustmentCurrencyCode": "USD",
        "AdjustmentTime": items[0]["ConversionTime"],
        "ConversionName": "Purchase",
        "ConversionTime": items[0]["ConversionTime"],
        "MicrosoftClickId": items[0]["MicrosoftClickId"],
    }
    retract = {**adjustment, "AdjustmentType": "Retract"}
    del retract["AdjustmentValue"], retract["AdjustmentCurrencyCode"]
    result = campaign.apply_offline_conversion_adjustments([adjustment, {**adjustment, "AdjustmentType": "Bogus"}])
    assert [r.accepted for r in result] == [True, False]
    assert result[1].code == 5618
    online = campaign.apply_online_conversion_adjustments(
        [{"AdjustmentType": "Retract", "AdjustmentTime": items[0]["ConversionTime"], "ConversionName": "Purchase",
          "TransactionId": "T-1"}]
    )  # fmt: skip
    assert len(online) == 1
    assert [r.endpoint for r in ms.requests()][-2:] == ["offline_adjustments", "online_adjustments"]


def test_models_with_to_wire_are_accepted(ms: EmulatorHandle, campaign: CampaignManagementClient) -> None:
    class Model:
        def __init__(self, wire: dict[str, Any]) -> None:
            self.wire = wire

        def to_wire(self) -> dict[str, Any]:
            return self.wire

    items = offline_items(ms, 2)
    result = campaign.apply_offline_conversions([Model(items[0]), items[1]])
    assert [r.accepted for r in result] == [True, True]
    with pytest.raises(TypeError):
        campaign.apply_offline_conversions([42])  # type: ignore[list-item]
    assert campaign.apply_offline_conversions([]).items == ()


def test_token_expiry_mid_batch_refreshes_once_and_retries(ms: EmulatorHandle, provider: RefreshTokenProvider) -> None:
    client = make_campaign(ms, provider)
    items = offline_items(ms, 2500)
    ms.inject_fault("offline", "expired_token", skip=1, times=1)  # the second request meets an expired token
    result = client.apply_offline_conversions(items)
    assert all(r.accepted for r in result)
    requests = ms.requests("offline")
    assert [r.status for r in requests] == [200, 401, 200, 200]
    assert [r.items for r in requests if r.status == 200] == [1000, 1000, 500]
    assert len([r for r in ms.token_log() if r.outcome == "issued"]) == 2  # initial + one refresh


def test_real_expiry_is_refreshed(ms: EmulatorHandle, provider: RefreshTokenProvider) -> None:
    client = make_campaign(ms, provider)
    client.apply_offline_conversions(offline_items(ms, 1))
    ms.expire_access_tokens()
    result = client.apply_offline_conversions(offline_items(ms, 2))
    assert all(r.accepted for r in result)


def test_token_still_expired_after_refresh_raises(ms: EmulatorHandle, campaign: CampaignManagementClient) -> None:
    ms.inject_fault("offline", "expired_token", times=2)
    with pytest.raises(AuthenticationError) as info:
        campaign.apply_offline_conversions(offline_items(ms, 1))
    assert (info.value.status, info.value.code, info.value.error_code) == (401, 109, "AuthenticationTokenExpired")
    assert info.value.tracking_id
    assert RetryPolicy().classify(info.value, 1, refreshed=True).action == "terminal"


@pytest.mark.parametrize(
    ("fault", "error", "status", "code"),
    [
        ({"kind": "call_rate"}, TransientError, 400, 117),
        ({"kind": "internal"}, TransientError, 500, 0),
        ({"kind": "http", "status": 500}, TransientError, 500, 0),
        ({"kind": "http", "status": 502}, TransientError, 502, None),
        ({"kind": "http", "status": 503}, TransientError, 503, None),
        ({"kind": "malformed"}, TransientError, 200, None),
        ({"kind": "malformed", "status": 500}, TransientError, 500, None),
        ({"kind": "malformed", "status": 404}, ApiFault, 404, None),
        ({"kind": "throttle", "retry_after": 17}, TransientError, 429, 117),
    ],
    ids=["117", "code-0", "500-fault", "502-html", "503-html", "200-not-json", "500-not-json", "404-html", "429"],
)
def test_faults_become_typed_errors(
    ms: EmulatorHandle, campaign: CampaignManagementClient, fault: dict[str, Any], error: type, status: int, code: Any
) -> None:
    ms.inject_fault("offline", times=1, **fault)
    with pytest.raises(error) as info:
        campaign.apply_offline_conversions(offline_items(ms, 2))
    exc = info.value
    assert type(exc) is error
    assert (exc.status, exc.code) == (status, code)
    assert exc.tracking_id == ms.requests("offline")[-1].tracking_id  # from the header, body or not
    if fault["kind"] == "throttle":
        assert exc.retry_after == 17.0
        assert RetryPolicy().classify(exc, 1).delay >= 60.0  # 117 waits at least 60 s
    if code == 117:
        assert exc.error_code == "CallRateExceeded"
        assert RetryPolicy().classify(exc, 1).delay >= 60.0


def test_retry_after_as_http_date(ms: EmulatorHandle, campaign: CampaignManagementClient) -> None:
    from datetime import UTC, datetime, timedelta
    from email.utils import format_datetime

    when = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    ms.inject_fault("offline", "throttle", retry_after=when, times=1)
    with pytest.raises(TransientError) as info:
        campaign.apply_offline_conversions(offline_items(ms, 1))
    assert info.value.retry_after is not None
    assert 100 <= info.value.retry_after <= 121


@pytest.mark.parametrize(
    ("change", "code", "status"),
    [
        ({"developer_token": "WRONG"}, 105, 401),
        ({"account_id": "999"}, 106, 403),
    ],
    ids=["105-developer-token", "106-account"],
)
def test_authentication_faults(ms: EmulatorHandle, change: dict[str, str], code: int, status: int) -> None:
    with make_campaign(ms, **change) as client, pytest.raises(AuthenticationError) as info:
        client.apply_offline_conversions(offline_items(ms, 1))
    assert (info.value.code, info.value.status) == (code, status)
    assert info.value.tracking_id
    assert RetryPolicy().classify(info.value, 1).action == "terminal"


def test_api_fault_detail_operation_error(ms: EmulatorHandle) -> None:
    # The emulator enforces its own (configurable) batch limit with ApiFaultDetail 5601.
    ms.configure(max_batch_items=5)
    with make_campaign(ms) as client, pytest.raises(ApiFault) as info:
        client.apply_offline_conversions(offline_items(ms, 6))
    exc = info.value
    assert (exc.status, exc.code, exc.error_code) == (400, 5601, "OfflineConversionsLimitExceeded")
    assert exc.details
    assert exc.details[0]["Code"] == 5601
    assert RetryPolicy().classify(exc, 1).action == "terminal"


def test_network_errors_and_read_timeouts_are_transient(ms: EmulatorHandle) -> None:
    with make_campaign(ms) as client:
        ms.inject_fault("offline", "drop", times=1)
        with pytest.raises(TransientError, match="connection error"):
            client.apply_offline_conversions(offline_items(ms, 1))
    with make_campaign(ms, timeout=(2.0, 0.3)) as client:
        client.token_provider.access_token()
        ms.inject_fault("offline", "delay", delay=1.0, times=1)
        with pytest.raises(TransientError, match="read timeout"):
            client.apply_offline_conversions(offline_items(ms, 1))


def test_headers_session_and_user_agent(ms: EmulatorHandle) -> None:
    sent: list[Any] = []
    client = make_campaign(ms)
    assert client._session is None  # built on first use, not in __init__
    client.apply_offline_conversions(offline_items(ms, 1))
    session = client._session
    assert session is not None
    session.hooks["response"].append(lambda response, **_: sent.append(response.request))
    client.apply_offline_conversions(offline_items(ms, 1))
    assert client._session is session  # one session per client
    client.close()
    assert client._session is None
    request = sent[0]
    headers = request.headers
    assert request.url == f"{ms.env['MSADS_API_URL']}/CampaignManagement/v13/OfflineConversions/Apply"
    assert "?" not in request.url  # nothing secret (or anything at all) in the query string
    assert headers["User-Agent"].startswith("msclkid-middleware/")
    assert headers["Authorization"].startswith("Bearer ")
    assert headers["DeveloperToken"] == ms.env["MSADS_DEVELOPER_TOKEN"]
    assert headers["CustomerId"] == ms.env["MSADS_CUSTOMER_ID"]
    assert headers["CustomerAccountId"] == ms.env["MSADS_ACCOUNT_ID"]
    assert headers["Content-Type"] == headers["Accept"] == "application/json"
    assert json.loads(request.body) == {"OfflineConversions": [offline_items(ms, 1)[0]]}


# -- shapes the emulator does not produce: a loopback fake speaking Microsoft's documented variants -----------


def _fake_campaign(
    answer: Callable[[dict[str, str], Any], tuple[int, Any, dict[str, str]]], raw: list[bytes] | None = None
) -> Any:
    import contextlib

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received = self.rfile.read(int(self.headers["Content-Length"]))
            if raw is not None:
                raw.append(received)
            body = json.loads(received)
            status, payload, headers = answer(dict(self.headers), body)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            return

    @contextlib.contextmanager
    def serve() -> Iterator[str]:
        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_port}"
        finally:
            server.shutdown()
            server.server_close()

    return serve()


def test_application_fault_wrapper_is_unwrapped(ms: EmulatorHandle) -> None:
    # Microsoft's PHP migration guide shows faults wrapped in "ApplicationFault"; the emulator sends them bare.
    error = {"Code": 5600, "ErrorCode": "OfflineConversionsNullOrEmpty", "Message": "empty"}
    fault = {"TrackingId": "tid-wrapped", "Type": "ApiFaultDetail", "BatchErrors": [], "OperationErrors": [error]}
    body = {"ApplicationFault": fault}
    with _fake_campaign(lambda h, b: (400, body, {})) as url, pytest.raises(ApiFault) as info:
        make_campaign(ms, api_url=url).apply_offline_conversions(offline_items(ms, 1))
    assert (info.value.code, info.value.tracking_id, info.value.status) == (5600, "tid-wrapped", 400)


def test_api_fault_batch_errors_become_item_results_and_the_rest_is_resent(ms: EmulatorHandle) -> None:
    # ApiFaultDetail with BatchErrors (documented, not produced by the emulator): named items are rejected and
    # the operation applied nothing, so the others are sent again.
    calls: list[list[str]] = []

    def answer(headers: dict[str, str], body: Any) -> tuple[int, Any, dict[str, str]]:
        clicks = [item["MicrosoftClickId"] for item in body["OfflineConversions"]]
        calls.append(clicks)
        if len(calls) == 1:
            common = {"Code": 5604, "ErrorCode": "OfflineConversionMicrosoftClickIdInvalid", "Message": "bad"}
            errors = [{**common, "Index": i, "FieldPath": "MicrosoftClickId", "Type": "BatchError"} for i in (1, 3)]
            fault = {"TrackingId": "t1", "Type": "ApiFaultDetail", "BatchErrors": errors, "OperationErrors": []}
            return 400, fault, {"TrackingId": "t1"}
        return 200, {"PartialErrors": []}, {"TrackingId": "t2"}

    items = offline_items(ms, 5)
    with _fake_campaign(answer) as url:
        result = make_campaign(ms, api_url=url).apply_offline_conversions(items)
    assert [r.accepted for r in result] == [True, False, True, False, True]
    assert (result[1].code, result[1].field_path, result[1].tracking_id) == (5604, "MicrosoftClickId", "t1")
    assert result[4].tracking_id == "t2"
    assert result.tracking_ids == ("t1", "t2")
    assert calls[1] == [items[i]["MicrosoftClickId"] for i in (0, 2, 4)]


def test_config_is_validated() -> None:
    provider = RefreshTokenProvider("c", refresh_token="r")
    with pytest.raises(ConfigError):
        CampaignManagementClient(developer_token="", customer_id="1", account_id="2", token_provider=provider)
    with pytest.raises(ConfigError):
        CampaignManagementClient(developer_token="d", customer_id="", account_id="2", token_provider=provider)
    # str(None) is "None": a client built with customer_id=None must refuse, never send "CustomerId: None".
    for customer, account, setting in (
        (None, "2", "MSADS_CUSTOMER_ID"),
        ("1", None, "MSADS_ACCOUNT_ID"),
        ("None", "2", "MSADS_CUSTOMER_ID"),
    ):
        with pytest.raises(ConfigError) as info:
            CampaignManagementClient(
                developer_token="d",
                customer_id=customer,
                account_id=account,
                token_provider=provider,  # type: ignore[arg-type]
            )
        assert info.value.setting == setting
        assert setting in str(info.value)
    with pytest.raises(ConfigError):
        CampaignManagementClient(
            developer_token="d", customer_id="1", account_id="2", token_provider=provider, batch_size=1001
        )


def test_provider_fixture_is_shared(ms: EmulatorHandle) -> None:
    assert make_provider(ms).access_token()


def test_105_gets_one_refresh_then_fails(ms: EmulatorHandle) -> None:
    with make_campaign(ms, developer_token="WRONG") as client, pytest.raises(AuthenticationError):
        client.apply_offline_conversions(offline_items(ms, 1))
    assert [r.status for r in ms.requests("offline")] == [401, 401]
    assert len([r for r in ms.token_log() if r.outcome == "issued"]) == 2


def test_from_settings(ms: EmulatorHandle, tmp_path: Any) -> None:
    from msclkid_middleware.config import Settings
    from msclkid_middleware.tokens import FileTokenStore

    settings = Settings.from_env(ms.env)
    store = FileTokenStore(tmp_path / "token.json")
    with CampaignManagementClient.from_settings(settings, token_store=store) as client:
        assert all(r.accepted for r in client.apply_offline_conversions(offline_items(ms, 2)))
    assert store.load() is not None
    with pytest.raises(ConfigError, match="MSADS_DEVELOPER_TOKEN"):
        CampaignManagementClient.from_settings(Settings())


def test_stored_json_items_are_spliced_into_the_body_as_they_are(ms: EmulatorHandle) -> None:
    # The outbox hands its payloads over undecoded (WireJson): the body carries them byte for byte, and the
    # resend after a fault naming items splices the remaining ones again.
    from msclkid_middleware.microsoft.wirejson import WireJson

    bodies: list[bytes] = []

    def answer(headers: dict[str, str], body: Any) -> tuple[int, Any, dict[str, str]]:
        if len(bodies) == 1:
            error = {"Code": 5604, "ErrorCode": "X", "Message": "bad", "Index": 1, "Type": "BatchError"}
            fault = {"TrackingId": "t1", "Type": "ApiFaultDetail", "BatchErrors": [error], "OperationErrors": []}
            return 400, fault, {"TrackingId": "t1"}
        return 200, {"PartialErrors": []}, {"TrackingId": "t2"}

    items = offline_items(ms, 3)
    stored = [WireJson(json.dumps(item, separators=(",", ":"), sort_keys=True)) for item in items]
    with _fake_campaign(answer, raw=bodies) as url:
        result = make_campaign(ms, api_url=url).apply_offline_conversions(stored)
    assert [r.accepted for r in result] == [True, False, True]
    assert bodies[0] == ('{"OfflineConversions":[' + ",".join(stored) + "]}").encode()
    assert bodies[1] == ('{"OfflineConversions":[' + ",".join((stored[0], stored[2])) + "]}").encode()
    # And against the emulator: accepted like the dicts they were encoded from.
    fresh = [WireJson(json.dumps(item)) for item in offline_items(ms, 2)]
    assert [r.accepted for r in make_campaign(ms).apply_offline_conversions(fresh)] == [True, True]


def test_to_wire_takes_stored_json_dicts_and_models_without_a_protocol_check() -> None:
    from msclkid_middleware.microsoft.campaign import to_wire
    from msclkid_middleware.microsoft.wirejson import WireJson, json_object

    stored = WireJson('{"a":1}')
    assert to_wire(stored) is stored
    assert to_wire({"a": 1}) == {"a": 1}
    assert json.loads(json_object({"flag": True}, "data", [stored, {"b": "é"}])) == {
        "data": [{"a": 1}, {"b": "é"}],
        "flag": True,
    }
    with pytest.raises(TypeError):
        to_wire(3)  # type: ignore[arg-type]
