"""Our clients and tracker against an independent stand-in of Microsoft, written from the reference docs.

The stand-in below shares no code with ``msclkid_middleware.emulator``: it is a few hundred lines of
``http.server`` that implement what ``reference/microsoft-ads-api.md`` (sections 1-3, 5, 6) and
``reference/uet-capi.md`` (section 1) say Microsoft accepts and answers, and it records every request.
A test can queue canned answers per path (faults Microsoft documents: 429, 5xx HTML, ``AdApiFaultDetail``,
``ApiFaultDetail`` with ``BatchErrors``) that are served before the normal validation.  Then each test
asserts the exact paths, headers and bodies our code sent, and how it read the answers.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections import defaultdict, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest

from msclkid_middleware.capture.consent import Consent
from msclkid_middleware.config import Settings
from msclkid_middleware.conversions import (
    OfflineConversion,
    OfflineConversionAdjustment,
    OnlineConversionAdjustment,
    UetEvent,
    UetUserData,
)
from msclkid_middleware.conversions.identity import hash_email
from msclkid_middleware.dispatch.tracker import ConversionTracker
from msclkid_middleware.errors import ApiFault, AuthenticationError, ReconsentRequired, TransientError
from msclkid_middleware.microsoft import CampaignManagementClient, RefreshTokenProvider, RetryPolicy, UetClient
from msclkid_middleware.tokens import MemoryTokenStore

# -- the stand-in -------------------------------------------------------------------------------------------------

CLIENT_ID = "00000000-aaaa-bbbb-cccc-000000000001"
CLIENT_SECRET = "standin-client-secret-Q9"
DEVELOPER_TOKEN = "STANDIN-DEVTOKEN-7"
CUSTOMER_ID = "4000001"
ACCOUNT_ID = "5000001"
SCOPE = "https://ads.microsoft.com/msads.manage offline_access"
FIRST_REFRESH = "standin-refresh-0"
UET_TAG = "187000123"
UET_TOKEN = "standin-uet-token-3"

TOKEN_PATH = "/common/oauth2/v2.0/token"
CM = "/CampaignManagement/v13"
OFFLINE_PATH = f"{CM}/OfflineConversions/Apply"
OFFLINE_ADJ_PATH = f"{CM}/OfflineConversionAdjustments/Apply"
ONLINE_ADJ_PATH = f"{CM}/OnlineConversionAdjustments/Apply"
UET_PATH = f"/v1/{UET_TAG}/events"

# reference/microsoft-ads-api.md §2.1-2.3: the documented fields of each item (JSON templates).
OFFLINE_FIELDS = {
    "ConversionCurrencyCode",
    "ConversionName",
    "ConversionTime",
    "ConversionValue",
    "ExternalAttributionCredit",
    "ExternalAttributionModel",
    "HashedEmailAddress",
    "HashedPhoneNumber",
    "MicrosoftClickId",
}
OFFLINE_ADJ_FIELDS = {
    "AdjustmentCurrencyCode",
    "AdjustmentTime",
    "AdjustmentType",
    "AdjustmentValue",
    "ConversionName",
    "ConversionTime",
    "HashedEmailAddress",
    "HashedPhoneNumber",
    "MicrosoftClickId",
}
ONLINE_ADJ_FIELDS = {
    "AdjustmentCurrencyCode",
    "AdjustmentTime",
    "AdjustmentType",
    "AdjustmentValue",
    "ConversionName",
    "TransactionId",
}
APPLY = {
    OFFLINE_PATH: ("OfflineConversions", OFFLINE_FIELDS),
    OFFLINE_ADJ_PATH: ("OfflineConversionAdjustments", OFFLINE_ADJ_FIELDS),
    ONLINE_ADJ_PATH: ("OnlineConversionAdjustments", ONLINE_ADJ_FIELDS),
}
DOUBLE_FIELDS = {"ConversionValue", "AdjustmentValue", "ExternalAttributionCredit"}
TIME_FIELDS = {"ConversionTime", "AdjustmentTime"}
# xs:dateTime as JSON: ISO 8601, up to 7 fractional digits; we insist on an explicit UTC zone (§4.1 "UTC").
UTC_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,7})?(Z|\+00:00)")
CLICK = re.compile(r"[0-9a-fA-F]{32}")
HEX64 = re.compile(r"[0-9a-f]{64}")
# reference/uet-capi.md §1.2
UET_TOP = {"data", "continueOnValidationError", "dataProvider"}
UET_EVENT_FIELDS = {
    "eventType",
    "eventId",
    "eventName",
    "eventTime",
    "eventSourceUrl",
    "pageLoadId",
    "referrerUrl",
    "pageTitle",
    "keywords",
    "adStorageConsent",
    "userData",
    "customData",
}
UET_IDENTIFIERS = {"anonymousId", "externalId", "em", "ph", "msclkid", "idfa", "gaid"}


def check(condition: bool, what: object) -> None:
    if not condition:
        raise AssertionError(what)


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), None)

    def json(self) -> Any:
        return json.loads(self.body)

    def form(self) -> dict[str, str]:
        parsed = parse_qs(self.body.decode(), keep_blank_values=True, strict_parsing=True)
        assert all(len(v) == 1 for v in parsed.values()), parsed
        return {k: v[0] for k, v in parsed.items()}


@dataclass
class Canned:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


class StandIn:
    """Microsoft's token endpoint, the three Apply operations and UET CAPI, per the reference docs."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seen: list[Seen] = []
        self.violations: list[str] = []
        self.canned: dict[str, deque[Canned]] = defaultdict(deque)
        self.refresh_tokens: set[str] = {FIRST_REFRESH}
        self.issued_refresh: list[str] = []
        self.access_tokens: dict[str, bool] = {}  # token -> still valid
        self.bad_clicks: set[str] = set()  # answered with PartialErrors 5604
        self.auth_codes: dict[str, str] = {}  # authorization code -> the redirect_uri it was issued for
        self.expires_in = 3600
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    # -- test helpers --
    def queue(self, path: str, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.canned[path].append(Canned(status, raw, dict(headers or {})))

    def calls(self, path: str) -> list[Seen]:
        with self.lock:
            return [s for s in self.seen if s.path == path]

    def expire_access_tokens(self) -> None:
        with self.lock:
            for token in self.access_tokens:
                self.access_tokens[token] = False

    # -- the HTTP side --
    def _handler(self) -> type[BaseHTTPRequestHandler]:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                seen = Seen("POST", self.path, dict(self.headers.items()), body)
                with standin.lock:
                    standin.seen.append(seen)
                    canned = standin.canned[self.path].popleft() if standin.canned[self.path] else None
                tracking_id = str(uuid.uuid4())
                if canned is not None:
                    # Microsoft sends the same TrackingId in the header and in a fault body.
                    try:
                        parsed = json.loads(canned.body)
                    except ValueError:
                        parsed = None
                    if isinstance(parsed, dict):
                        fault = parsed.get("ApplicationFault", parsed)
                        tracking_id = str(fault.get("TrackingId") or tracking_id)
                    self._send(canned.status, canned.body, {"TrackingId": tracking_id, **canned.headers})
                    return
                try:
                    status, answer = standin.answer(seen, tracking_id)
                except AssertionError as exc:
                    # A request Microsoft's docs do not allow: fail the test (at teardown), answer 400.
                    with standin.lock:
                        standin.violations.append(f"{self.path}: {exc!r}")
                    status, answer = 400, {"standin_violation": repr(exc)}
                self._send(status, json.dumps(answer).encode(), {"TrackingId": tracking_id})

            def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                content_type = "application/json; charset=utf-8" if body[:1] in (b"{", b"[") else "text/html"
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

        return Handler

    def answer(self, seen: Seen, tracking_id: str) -> tuple[int, Any]:
        if seen.path == TOKEN_PATH:
            return self.token(seen)
        if seen.path in APPLY:
            return self.apply(seen, tracking_id)
        if seen.path.startswith("/v1/") and seen.path.endswith("/events"):
            return self.uet(seen)
        return 404, {"error": "not found"}

    # reference/microsoft-ads-api.md §6.1-6.2
    def token(self, seen: Seen) -> tuple[int, Any]:
        assert seen.header("Content-Type") == "application/x-www-form-urlencoded"
        form = seen.form()
        if form.get("client_id") != CLIENT_ID or form.get("client_secret") != CLIENT_SECRET:
            return 401, {"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret."}
        if form.get("scope") != SCOPE:
            return 400, {"error": "invalid_scope", "error_description": "AADSTS70011: The provided scope is invalid."}
        grant = form.get("grant_type")
        if grant == "authorization_code":
            with self.lock:
                redirect = self.auth_codes.pop(form.get("code", ""), None)
            if redirect is None or redirect != form.get("redirect_uri"):
                return 400, {"error": "invalid_grant", "error_description": "AADSTS70000: bad code"}
        elif grant != "refresh_token":
            return 400, {"error": "unsupported_grant_type", "error_description": "AADSTS70003"}
        with self.lock:
            if grant == "refresh_token" and form.get("refresh_token") not in self.refresh_tokens:
                return 400, {
                    "error": "invalid_grant",
                    "error_description": "AADSTS70000: The user could not be authenticated or the grant is expired. "
                    "Trace ID: 1 Correlation ID: 2 Timestamp: 2026-12-01 00:00:00Z",
                    "error_codes": [70000],
                    "timestamp": "2026-12-01 00:00:00Z",
                    "trace_id": "1",
                    "correlation_id": "2",
                }
            access = f"standin-access-{uuid.uuid4().hex}"
            refresh = f"standin-refresh-{len(self.issued_refresh) + 1}"
            self.access_tokens[access] = True
            self.refresh_tokens.add(refresh)  # Entra does not revoke the old one
            self.issued_refresh.append(refresh)
        return 200, {
            "token_type": "Bearer",
            "scope": "https://ads.microsoft.com/msads.manage https://ads.microsoft.com/ads.manage",
            "expires_in": self.expires_in,
            "ext_expires_in": self.expires_in,
            "access_token": access,
            "refresh_token": refresh,
        }

    @staticmethod
    def ad_api_fault(tracking_id: str, code: int, error_code: str, message: str) -> dict[str, Any]:
        return {
            "TrackingId": tracking_id,
            "Type": "AdApiFaultDetail",
            "Errors": [{"Code": code, "Detail": None, "ErrorCode": error_code, "Message": message}],
        }

    # reference/microsoft-ads-api.md §1.1, §2, §3.1
    def apply(self, seen: Seen, tracking_id: str) -> tuple[int, Any]:
        auth = seen.header("Authorization") or ""
        if not auth.startswith("Bearer "):
            return 401, self.ad_api_fault(tracking_id, 105, "InvalidCredentials", "Authentication failed.")
        with self.lock:
            valid = self.access_tokens.get(auth[len("Bearer ") :])
        if valid is None:
            return 401, self.ad_api_fault(tracking_id, 105, "InvalidCredentials", "Authentication failed.")
        if not valid:
            return 401, self.ad_api_fault(
                tracking_id, 109, "AuthenticationTokenExpired", "The OAuth access token has expired."
            )
        if seen.header("DeveloperToken") != DEVELOPER_TOKEN:
            return 401, self.ad_api_fault(tracking_id, 105, "InvalidCredentials", "Authentication failed.")
        if seen.header("CustomerId") != CUSTOMER_ID:
            return 400, self.ad_api_fault(tracking_id, 116, "RequestMissingHeaders", "CustomerId")
        if seen.header("CustomerAccountId") != ACCOUNT_ID:
            return 400, self.ad_api_fault(
                tracking_id, 1009, "CampaignServiceAccountIdMissingInRequestHeader", "CustomerAccountId"
            )
        assert (seen.header("Content-Type") or "").split(";")[0] == "application/json"
        wrapper, fields = APPLY[seen.path]
        body = seen.json()
        check(isinstance(body, dict) and set(body) == {wrapper}, body)
        items = body[wrapper]
        assert isinstance(items, list)
        assert items
        if len(items) > 1000:
            return 400, {
                "TrackingId": tracking_id,
                "Type": "ApiFaultDetail",
                "BatchErrors": [],
                "OperationErrors": [
                    {"Code": 5601, "Details": None, "ErrorCode": "OfflineConversionsLimitExceeded", "Message": "x"}
                ],
            }
        errors = []
        for index, item in enumerate(items):
            check(isinstance(item, dict) and set(item) <= fields, item)
            for key, value in item.items():
                # Omitted-when-None (the WSDL's EmitDefaultValue=false); doubles are JSON numbers.
                check(value is not None and value != "", key)
                if key in DOUBLE_FIELDS:
                    assert isinstance(value, float), (key, value)
                elif key in TIME_FIELDS:
                    assert UTC_TIME.fullmatch(value), (key, value)
                else:
                    assert isinstance(value, str), (key, value)
            assert item.get("ConversionName")
            if "AdjustmentType" in item:
                assert item["AdjustmentType"] in ("Restate", "Retract")
                assert ("AdjustmentValue" in item) == (item["AdjustmentType"] == "Restate")
                assert "AdjustmentTime" in item
            for hashed in ("HashedEmailAddress", "HashedPhoneNumber"):
                assert hashed not in item or HEX64.fullmatch(item[hashed])
            click = item.get("MicrosoftClickId")
            if seen.path != ONLINE_ADJ_PATH:
                assert click or item.get("HashedEmailAddress") or item.get("HashedPhoneNumber")
            if click is not None and (click in self.bad_clicks or not CLICK.fullmatch(click)):
                errors.append(
                    {
                        "Code": 5604,
                        "Details": "",
                        "ErrorCode": "OfflineConversionMicrosoftClickIdInvalid",
                        "FieldPath": "MicrosoftClickId",
                        "ForwardCompatibilityMap": [],
                        "Index": index,
                        "Message": "The Microsoft Click Id of the offline conversion is invalid.",
                        "Type": "BatchError",
                    }
                )
        return 200, {"PartialErrors": errors}

    # reference/uet-capi.md §1.1-1.3
    def uet(self, seen: Seen) -> tuple[int, Any]:
        if seen.header("Authorization") != f"Bearer {UET_TOKEN}" or seen.path != UET_PATH:
            return 401, {
                "error": {"code": "Unauthorized", "message": "You are not authorized to access this resource."}
            }
        assert (seen.header("Content-Type") or "").split(";")[0] == "application/json"
        body = seen.json()
        check(isinstance(body, dict) and set(body) <= UET_TOP and "data" in body, body)
        assert isinstance(body.get("dataProvider"), str)
        assert body["dataProvider"]
        keep_going = body.get("continueOnValidationError", False)
        assert isinstance(keep_going, bool)
        data = body["data"]
        assert isinstance(data, list)
        assert 1 <= len(data) <= 1000
        now = int(datetime.now(UTC).timestamp())
        details: list[dict[str, Any]] = []
        bad: set[int] = set()
        for index, event in enumerate(data):
            check(isinstance(event, dict) and set(event) <= UET_EVENT_FIELDS, event)
            user = event.get("userData")
            check(isinstance(user, dict) and bool(set(user) & UET_IDENTIFIERS), event)
            assert event.get("adStorageConsent") in (None, "G", "D")
            if event.get("eventType") not in ("pageLoad", "custom"):
                bad.add(index)
                details.append(_uet_detail(index, "eventType", event.get("eventType"), "InvalidEnumValue"))
            seconds = event.get("eventTime")
            if not isinstance(seconds, int) or isinstance(seconds, bool) or not now - 7 * 86400 <= seconds <= now + 60:
                bad.add(index)
                details.append(_uet_detail(index, "eventTime", seconds, "InvalidEventTime"))
        if bad and (not keep_going or len(bad) == len(data)):
            return 400, {
                "error": {
                    "code": "ValidationError",
                    "message": "One or multiple parameters did not pass validation checks, see details. "
                    "Note that only the first 10 errors and warnings are shown.",
                    "details": details[:10],
                }
            }
        answer: dict[str, Any] = {"eventsReceived": len(data) - len(bad)}
        if details:
            answer["error"] = {"code": "ValidationError", "message": "see details", "details": details[:10]}
        return 200, answer


def _uet_detail(index: int, prop: str, value: Any, code: str) -> dict[str, Any]:
    return {
        "index": index,
        "propertyName": f"data[{index}].{prop}",
        "attemptedValue": value,
        "errorMessage": f"{prop} is not valid",
        "errorCode": code,
        "isWarning": False,
    }


@pytest.fixture
def standin() -> Iterator[StandIn]:
    server = StandIn()
    server.thread.start()
    try:
        yield server
    finally:
        server.server.shutdown()
        server.server.server_close()
        server.thread.join(timeout=5)
    assert server.violations == []


def provider_for(standin: StandIn, store: MemoryTokenStore | None = None) -> RefreshTokenProvider:
    return RefreshTokenProvider(
        CLIENT_ID,
        CLIENT_SECRET,
        refresh_token=FIRST_REFRESH,
        token_url=standin.url + TOKEN_PATH,
        token_store=store if store is not None else MemoryTokenStore(),
    )


@pytest.fixture
def client(standin: StandIn) -> Iterator[CampaignManagementClient]:
    with CampaignManagementClient(
        api_url=standin.url,
        developer_token=DEVELOPER_TOKEN,
        customer_id=CUSTOMER_ID,
        account_id=ACCOUNT_ID,
        token_provider=provider_for(standin),
        timeout=(2.0, 10.0),
    ) as made:
        yield made


@pytest.fixture
def uet(standin: StandIn) -> Iterator[UetClient]:
    with UetClient(api_url=standin.url, api_token=UET_TOKEN, timeout=(2.0, 10.0)) as made:
        yield made


NOW = datetime.now(UTC).replace(microsecond=0)


def click_id(n: int) -> str:
    return f"{n:032x}"


def conversion(n: int, **overrides: Any) -> OfflineConversion:
    fields: dict[str, Any] = {
        "conversion_name": "Purchase",
        "conversion_time": NOW - timedelta(hours=2, seconds=n),
        "value": 10 + n,
        "currency": "USD",
        "msclkid": click_id(n),
    }
    fields.update(overrides)
    return OfflineConversion(**fields)


def wire_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- Campaign Management: request shape ------------------------------------------------------------------------


def test_offline_request_path_headers_and_body(standin: StandIn, client: CampaignManagementClient) -> None:
    item = conversion(1, identifiers=None)
    result = client.apply_offline_conversions([item])
    assert [r.accepted for r in result] == [True]

    [token_call] = standin.calls(TOKEN_PATH)
    assert token_call.form() == {
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "scope": SCOPE,
        "grant_type": "refresh_token",
        "refresh_token": FIRST_REFRESH,
    }
    [call] = standin.calls(OFFLINE_PATH)
    assert call.method == "POST"
    assert call.header("Authorization") == f"Bearer {next(iter(standin.access_tokens))}"
    assert call.header("DeveloperToken") == DEVELOPER_TOKEN
    assert call.header("CustomerId") == CUSTOMER_ID
    assert call.header("CustomerAccountId") == ACCOUNT_ID
    assert call.header("Content-Type") == "application/json"
    assert call.header("Accept") == "application/json"
    assert "msclkid-middleware" in (call.header("User-Agent") or "")
    assert call.json() == {
        "OfflineConversions": [
            {
                "ConversionCurrencyCode": "USD",
                "ConversionName": "Purchase",
                "ConversionTime": wire_time(NOW - timedelta(hours=2, seconds=1)),
                "ConversionValue": 11.0,
                "MicrosoftClickId": click_id(1),
            }
        ]
    }
    assert result.tracking_ids
    assert result[0].tracking_id == result.tracking_ids[0]


def test_enhanced_conversion_without_click(standin: StandIn, client: CampaignManagementClient) -> None:
    from msclkid_middleware.conversions import UserIdentifiers

    item = conversion(2, msclkid=None, identifiers=UserIdentifiers(email="John@Contoso.com", phone="+14255551234"))
    assert client.apply_offline_conversions([item])[0].accepted
    [sent] = standin.calls(OFFLINE_PATH)[0].json()["OfflineConversions"]
    assert sent["HashedEmailAddress"] == "ec81f3ac7b2b19675bab9d54cf416f9f18cff87c97da5cca82c0f0891bc40602"
    assert sent["HashedPhoneNumber"] == "c59475d96e9f01d7d18d06cfad84dd02333207f02c0c2c5663ef2782cda0390e"
    assert "MicrosoftClickId" not in sent


def test_adjustment_paths_and_bodies(standin: StandIn, client: CampaignManagementClient) -> None:
    original = NOW - timedelta(hours=5)
    restate = OfflineConversionAdjustment(
        adjustment_type="Restate",
        conversion_name="Purchase",
        conversion_time=original,
        adjustment_time=NOW - timedelta(minutes=1),
        value=99,
        currency="EUR",
        msclkid=click_id(3),
    )
    retract = OfflineConversionAdjustment(
        adjustment_type="Retract",
        conversion_name="Purchase",
        conversion_time=original,
        adjustment_time=NOW - timedelta(minutes=1),
        msclkid=click_id(4),
    )
    online = OnlineConversionAdjustment(
        adjustment_type="Restate",
        conversion_name="Checkout",
        transaction_id="T-77",
        adjustment_time=NOW - timedelta(minutes=2),
        value=5.5,
        currency="USD",
    )
    assert [r.accepted for r in client.apply_offline_conversion_adjustments([restate, retract])] == [True, True]
    assert [r.accepted for r in client.apply_online_conversion_adjustments([online])] == [True]
    [offline_call] = standin.calls(OFFLINE_ADJ_PATH)
    assert offline_call.json() == {
        "OfflineConversionAdjustments": [
            {
                "AdjustmentCurrencyCode": "EUR",
                "AdjustmentTime": wire_time(NOW - timedelta(minutes=1)),
                "AdjustmentType": "Restate",
                "AdjustmentValue": 99.0,
                "ConversionName": "Purchase",
                "ConversionTime": wire_time(original),
                "MicrosoftClickId": click_id(3),
            },
            {
                "AdjustmentTime": wire_time(NOW - timedelta(minutes=1)),
                "AdjustmentType": "Retract",
                "ConversionName": "Purchase",
                "ConversionTime": wire_time(original),
                "MicrosoftClickId": click_id(4),
            },
        ]
    }
    [online_call] = standin.calls(ONLINE_ADJ_PATH)
    assert online_call.json() == {
        "OnlineConversionAdjustments": [
            {
                "AdjustmentCurrencyCode": "USD",
                "AdjustmentTime": wire_time(NOW - timedelta(minutes=2)),
                "AdjustmentType": "Restate",
                "AdjustmentValue": 5.5,
                "ConversionName": "Checkout",
                "TransactionId": "T-77",
            }
        ]
    }
    for call in (offline_call, online_call):
        assert call.header("CustomerAccountId") == ACCOUNT_ID
        assert call.header("DeveloperToken") == DEVELOPER_TOKEN


def test_batches_of_at_most_1000_with_partial_errors_in_place(
    standin: StandIn, client: CampaignManagementClient
) -> None:
    bad = {7, 1000, 1999, 2499}
    standin.bad_clicks = {click_id(n) for n in bad}
    items = [conversion(n) for n in range(2500)]
    result = client.apply_offline_conversions(items)
    calls = standin.calls(OFFLINE_PATH)
    assert [len(c.json()["OfflineConversions"]) for c in calls] == [1000, 1000, 500]
    sent = [item["MicrosoftClickId"] for c in calls for item in c.json()["OfflineConversions"]]
    assert sent == [click_id(n) for n in range(2500)]
    assert len(result) == 2500
    assert [r.index for r in result] == list(range(2500))
    assert {r.index for r in result.rejected} == bad
    for rejected in result.rejected:
        assert (rejected.code, rejected.error_code, rejected.field_path) == (
            5604,
            "OfflineConversionMicrosoftClickIdInvalid",
            "MicrosoftClickId",
        )
    assert len(result.tracking_ids) == 3
    # Each item carries the TrackingId of the request that decided it.
    assert result[0].tracking_id == result.tracking_ids[0]
    assert result[1999].tracking_id == result.tracking_ids[1]
    assert result[2499].tracking_id == result.tracking_ids[2]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"PartialErrors": []}, id="empty-list"),
        pytest.param({"PartialErrors": None}, id="null"),
        pytest.param({}, id="absent"),
    ],
)
def test_clean_answers_in_every_documented_shape(
    standin: StandIn, client: CampaignManagementClient, body: dict[str, Any]
) -> None:
    client.token_provider.access_token()
    standin.queue(OFFLINE_PATH, 200, body)
    result = client.apply_offline_conversions([conversion(1), conversion(2)])
    assert [r.accepted for r in result] == [True, True]


# -- Campaign Management: faults ---------------------------------------------------------------------------------


def test_expired_access_token_is_refreshed_once_and_the_rotation_persisted(standin: StandIn) -> None:
    store = MemoryTokenStore()
    provider = provider_for(standin, store)
    with CampaignManagementClient(
        api_url=standin.url,
        developer_token=DEVELOPER_TOKEN,
        customer_id=CUSTOMER_ID,
        account_id=ACCOUNT_ID,
        token_provider=provider,
    ) as client:
        assert client.apply_offline_conversions([conversion(1)])[0].accepted
        first_access = next(iter(standin.access_tokens))
        standin.expire_access_tokens()
        assert client.apply_offline_conversions([conversion(2)])[0].accepted

    token_calls = standin.calls(TOKEN_PATH)
    assert [c.form()["refresh_token"] for c in token_calls] == [FIRST_REFRESH, "standin-refresh-1"]
    apply_calls = standin.calls(OFFLINE_PATH)
    assert [c.header("Authorization") for c in apply_calls[:2]] == [f"Bearer {first_access}"] * 2
    second_access = next(t for t in standin.access_tokens if t != first_access)
    assert apply_calls[2].header("Authorization") == f"Bearer {second_access}"
    assert apply_calls[1].json() == apply_calls[2].json()
    stored = store.load()
    assert stored is not None
    assert stored.refresh_token == "standin-refresh-2"


def test_invalid_grant_is_reconsent_required_without_secrets(standin: StandIn) -> None:
    provider = RefreshTokenProvider(
        CLIENT_ID,
        CLIENT_SECRET,
        refresh_token="revoked-refresh-token-XY",
        token_url=standin.url + TOKEN_PATH,
    )
    with pytest.raises(ReconsentRequired) as caught:
        provider.access_token()
    assert caught.value.error_code == "invalid_grant"
    assert caught.value.code == 70000
    text = str(caught.value) + repr(caught.value)
    assert "msclkid auth" in text
    for secret in ("revoked-refresh-token-XY", CLIENT_SECRET):
        assert secret not in text


def test_token_endpoint_5xx_is_transient(standin: StandIn) -> None:
    standin.queue(TOKEN_PATH, 503, b"<html>Service Unavailable</html>", {"Retry-After": "12"})
    with pytest.raises(TransientError) as caught:
        provider_for(standin).access_token()
    assert caught.value.status == 503
    assert caught.value.retry_after == 12


def test_invalid_credentials_refresh_once_then_fail(standin: StandIn, client: CampaignManagementClient) -> None:
    client.token_provider.access_token()
    fault = StandIn.ad_api_fault("t-105", 105, "InvalidCredentials", "Authentication failed.")
    standin.queue(OFFLINE_PATH, 401, fault)
    standin.queue(OFFLINE_PATH, 401, fault)
    with pytest.raises(AuthenticationError) as caught:
        client.apply_offline_conversions([conversion(1)])
    assert (caught.value.status, caught.value.code, caught.value.error_code) == (401, 105, "InvalidCredentials")
    assert len(standin.calls(OFFLINE_PATH)) == 2
    assert len(standin.calls(TOKEN_PATH)) == 2
    assert RetryPolicy().classify(caught.value, 1).action == "terminal"


@pytest.mark.parametrize("retry_after", ["7", "HTTP-DATE"])
def test_http_429_with_retry_after(standin: StandIn, client: CampaignManagementClient, retry_after: str) -> None:
    client.token_provider.access_token()
    if retry_after == "HTTP-DATE":
        from email.utils import format_datetime

        retry_after = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    standin.queue(OFFLINE_PATH, 429, b"", {"Retry-After": retry_after})
    with pytest.raises(TransientError) as caught:
        client.apply_offline_conversions([conversion(1)])
    assert caught.value.status == 429
    assert caught.value.retry_after is not None
    expected = 7 if retry_after == "7" else 30
    assert expected - 3 <= caught.value.retry_after <= expected
    decision = RetryPolicy(rng=lambda: 0.0).classify(caught.value, 1)
    assert decision.action == "retry"
    assert expected - 3 <= decision.delay <= expected
    # Nothing was sent twice: the client leaves the waiting to the dispatcher.
    assert len(standin.calls(OFFLINE_PATH)) == 1


def test_call_rate_exceeded_117_waits_at_least_60s(standin: StandIn, client: CampaignManagementClient) -> None:
    client.token_provider.access_token()
    standin.queue(OFFLINE_PATH, 400, StandIn.ad_api_fault("t-117", 117, "CallRateExceeded", "Too many calls."))
    with pytest.raises(TransientError) as caught:
        client.apply_offline_conversions([conversion(1)])
    assert (caught.value.code, caught.value.error_code, caught.value.tracking_id) == (117, "CallRateExceeded", "t-117")
    decision = RetryPolicy(rng=lambda: 0.0).classify(caught.value, 1)
    assert decision.action == "retry"
    assert decision.delay >= 60


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_errors_with_html_bodies_are_transient(
    standin: StandIn, client: CampaignManagementClient, status: int
) -> None:
    client.token_provider.access_token()
    standin.queue(OFFLINE_PATH, status, b"<html><body>Gateway trouble</body></html>")
    with pytest.raises(TransientError) as caught:
        client.apply_offline_conversions([conversion(1)])
    assert caught.value.status == status
    assert RetryPolicy().classify(caught.value, 1).action == "retry"


def test_internal_error_code_0_in_a_500_fault(standin: StandIn, client: CampaignManagementClient) -> None:
    client.token_provider.access_token()
    standin.queue(OFFLINE_PATH, 500, StandIn.ad_api_fault("t-0", 0, "InternalError", "An internal error."))
    with pytest.raises(TransientError) as caught:
        client.apply_offline_conversions([conversion(1)])
    assert (caught.value.code, caught.value.tracking_id) == (0, "t-0")


def test_api_fault_detail_batch_errors_reject_named_items_and_resend_the_rest(
    standin: StandIn, client: CampaignManagementClient
) -> None:
    client.token_provider.access_token()
    standin.queue(
        OFFLINE_PATH,
        400,
        {
            "TrackingId": "t-batch",
            "Type": "ApiFaultDetail",
            "BatchErrors": [
                {
                    "Code": 5609,
                    "Details": None,
                    "ErrorCode": "OfflineConversionTimeOutOfWindow",
                    "FieldPath": "ConversionTime",
                    "ForwardCompatibilityMap": [],
                    "Index": 1,
                    "Message": "The conversion time is out of the conversion window.",
                    "Type": "BatchError",
                }
            ],
            "OperationErrors": [],
        },
    )
    result = client.apply_offline_conversions([conversion(0), conversion(1), conversion(2)])
    assert [r.accepted for r in result] == [True, False, True]
    assert (result[1].code, result[1].error_code, result[1].field_path) == (
        5609,
        "OfflineConversionTimeOutOfWindow",
        "ConversionTime",
    )
    _first, second = standin.calls(OFFLINE_PATH)
    assert [i["MicrosoftClickId"] for i in second.json()["OfflineConversions"]] == [click_id(0), click_id(2)]
    assert RetryPolicy().classify(result[1], 1).action == "terminal"


def test_operation_error_is_a_typed_fault(standin: StandIn, client: CampaignManagementClient) -> None:
    client.token_provider.access_token()
    standin.queue(
        OFFLINE_PATH,
        400,
        {
            "TrackingId": "t-op",
            "Type": "ApiFaultDetail",
            "BatchErrors": [],
            "OperationErrors": [
                {
                    "Code": 5613,
                    "Details": "",
                    "ErrorCode": "OfflineConversionPilotNotEnabledForCustomer",
                    "Message": "The customer is not enabled for the offline conversion feature.",
                }
            ],
        },
    )
    with pytest.raises(ApiFault) as caught:
        client.apply_offline_conversions([conversion(0)])
    assert (caught.value.status, caught.value.code, caught.value.tracking_id) == (400, 5613, "t-op")
    assert caught.value.error_code == "OfflineConversionPilotNotEnabledForCustomer"


def test_wrapped_application_fault_is_read(standin: StandIn, client: CampaignManagementClient) -> None:
    client.token_provider.access_token()
    inner = StandIn.ad_api_fault("t-wrapped", 117, "CallRateExceeded", "Too many calls.")
    standin.queue(OFFLINE_PATH, 400, {"ApplicationFault": inner})
    with pytest.raises(TransientError) as caught:
        client.apply_offline_conversions([conversion(0)])
    assert (caught.value.code, caught.value.tracking_id) == (117, "t-wrapped")


def test_goal_too_young_5615_waits_for_the_goal(standin: StandIn, client: CampaignManagementClient) -> None:
    client.token_provider.access_token()
    standin.queue(
        OFFLINE_PATH,
        200,
        {
            "PartialErrors": [
                {
                    "Code": 5615,
                    "ErrorCode": "OfflineConversionNotAcceptedForGoal",
                    "FieldPath": None,
                    "Index": 0,
                    "Message": "You must wait 2 hours after the goal was created before uploading offline conversions.",
                    "Type": "BatchError",
                }
            ]
        },
    )
    result = client.apply_offline_conversions([conversion(0)])
    assert (result[0].accepted, result[0].code) == (False, 5615)
    assert RetryPolicy().classify(result[0], 1).action == "wait_for_goal"


# -- UET CAPI ------------------------------------------------------------------------------------------------------


def uet_event(n: int, **overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "eventType": "custom",
        "eventId": f"ev-{n}",
        "eventName": "checkout_complete",
        "eventTime": int(NOW.timestamp()) - 60,
        "adStorageConsent": "G",
        "userData": {"msclkid": click_id(n)},
        "customData": {"value": 1.5, "currency": "USD"},
    }
    event.update(overrides)
    return event


def test_uet_request_path_headers_and_body(standin: StandIn, uet: UetClient) -> None:
    model = UetEvent(
        event_id="ord-1",
        event_name="purchase",
        event_time=NOW - timedelta(minutes=1),
        user_data=UetUserData(msclkid=click_id(1), email="john@contoso.com"),
        consent=Consent.granted_by("cookie"),
    )
    [result] = uet.send_events(UET_TAG, [model])
    assert result.delivered
    assert result.event_id == "ord-1"
    [call] = standin.calls(UET_PATH)
    assert call.header("Authorization") == f"Bearer {UET_TOKEN}"
    assert call.header("Content-Type") == "application/json"
    body = call.json()
    assert body == {
        "data": [
            {
                "eventType": "custom",
                "eventId": "ord-1",
                "eventName": "purchase",
                "eventTime": int((NOW - timedelta(minutes=1)).timestamp()),
                "adStorageConsent": "G",
                "userData": {"em": hash_email("john@contoso.com"), "msclkid": click_id(1)},
            }
        ],
        "dataProvider": body["dataProvider"],
        "continueOnValidationError": False,
    }
    assert body["dataProvider"]


def test_uet_batches_and_more_than_ten_errors(standin: StandIn, uet: UetClient) -> None:
    bad = {3, 17, 250, 999, 1000, 1001, 1500, 2400, *range(2000, 2012)}
    events = [uet_event(n, eventType="bogus") if n in bad else uet_event(n) for n in range(2500)]
    results = uet.send_events(UET_TAG, events)
    assert [r.event_id for r in results] == [f"ev-{n}" for n in range(2500)]
    assert {r.index for r in results if not r.delivered} == bad
    assert all(
        r.error_code == "InvalidEnumValue" and r.property_name == "eventType" for r in results if not r.delivered
    )
    calls = standin.calls(UET_PATH)
    assert all(len(c.json()["data"]) <= 1000 for c in calls)
    # Every good event was accepted exactly once (strict mode: a 400 accepts nothing).
    accepted: list[str] = []
    for call in calls:
        data = call.json()["data"]
        if not any(e["eventType"] == "bogus" for e in data):
            accepted += [e["eventId"] for e in data]
    assert sorted(accepted) == sorted(f"ev-{n}" for n in range(2500) if n not in bad)


def test_uet_401_is_an_authentication_error(standin: StandIn) -> None:
    with (
        UetClient(api_url=standin.url, api_token="wrong-token") as client,
        pytest.raises(AuthenticationError) as caught,
    ):
        client.send_events(UET_TAG, [uet_event(1)])
    assert (caught.value.status, caught.value.error_code) == (401, "Unauthorized")
    assert "wrong-token" not in str(caught.value)


@pytest.mark.parametrize("status", [429, 500, 503])
def test_uet_transient_answers(standin: StandIn, uet: UetClient, status: int) -> None:
    standin.queue(UET_PATH, status, b"", {"Retry-After": "5"})
    with pytest.raises(TransientError) as caught:
        uet.send_events(UET_TAG, [uet_event(1)])
    assert (caught.value.status, caught.value.retry_after) == (status, 5)


def test_uet_warnings_are_kept_on_delivered_events(standin: StandIn, uet: UetClient) -> None:
    standin.queue(
        UET_PATH,
        200,
        {
            "eventsReceived": 2,
            "error": {
                "code": "ValidationError",
                "message": "see details",
                "details": [
                    {
                        "index": 1,
                        "propertyName": "data[1].referrerUrl",
                        "attemptedValue": "nope",
                        "errorMessage": "invalid url",
                        "errorCode": "InvalidUrl",
                        "isWarning": True,
                    }
                ],
            },
        },
    )
    first, second = uet.send_events(UET_TAG, [uet_event(0), uet_event(1, referrerUrl="nope")])
    assert first.delivered
    assert not first.warnings
    assert second.delivered
    assert [(w.error_code, w.property_name) for w in second.warnings] == [("InvalidUrl", "referrerUrl")]


# -- the tracker, end to end ---------------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def tracker(standin: StandIn, tmp_path: Path) -> Iterator[tuple[ConversionTracker, Clock]]:
    settings = Settings.from_env(
        {
            "MSCLKID_STORE_URL": f"sqlite:///{tmp_path / 'outbox.sqlite3'}",
            "MSADS_DEVELOPER_TOKEN": DEVELOPER_TOKEN,
            "MSADS_CLIENT_ID": CLIENT_ID,
            "MSADS_CLIENT_SECRET": CLIENT_SECRET,
            "MSADS_REFRESH_TOKEN": FIRST_REFRESH,
            "MSADS_CUSTOMER_ID": CUSTOMER_ID,
            "MSADS_ACCOUNT_ID": ACCOUNT_ID,
            "MSADS_API_URL": standin.url,
            "MSADS_TOKEN_URL": standin.url + TOKEN_PATH,
            "UET_API_URL": standin.url,
            "UET_TAG_ID": UET_TAG,
            "UET_API_TOKEN": UET_TOKEN,
        }
    )
    clock = Clock()
    made = ConversionTracker(settings=settings, clock=clock, retry_policy=RetryPolicy(rng=lambda: 0.0))
    try:
        yield made, clock
    finally:
        made.close()


def test_tracker_delivers_every_kind_with_identical_adjustment_fields(
    standin: StandIn, tracker: tuple[ConversionTracker, Clock]
) -> None:
    tr, clock = tracker
    when = clock() - timedelta(hours=1, seconds=7)
    tr.record_offline("ord-1", "Purchase", when, 149.95, "USD", click=click_id(1), email=" John@Contoso.com ")
    tr.record_uet_event(
        "ev-1", "purchase", clock() - timedelta(minutes=1), click=click_id(1), value=3.0, currency="EUR"
    )
    tr.adjust_online("T-9", "Checkout", "Retract")
    report = tr.flush()
    assert report.remaining == 0
    assert tr.status("ord-1").delivered
    assert tr.status("ev-1").delivered
    assert tr.status("T-9").delivered

    tr.restate("ord-1", 99.5)
    tr.flush()
    tr.retract("ord-1")
    tr.flush()

    [offline] = standin.calls(OFFLINE_PATH)
    original = offline.json()["OfflineConversions"][0]
    assert original == {
        "ConversionCurrencyCode": "USD",
        "ConversionName": "Purchase",
        "ConversionTime": wire_time(when),
        "ConversionValue": 149.95,
        "HashedEmailAddress": hash_email("john@contoso.com"),
        "MicrosoftClickId": click_id(1),
    }
    restate_call, retract_call = standin.calls(OFFLINE_ADJ_PATH)
    [restate] = restate_call.json()["OfflineConversionAdjustments"]
    [retract] = retract_call.json()["OfflineConversionAdjustments"]
    for adjustment in (restate, retract):
        for key in ("ConversionName", "ConversionTime", "MicrosoftClickId", "HashedEmailAddress"):
            assert adjustment[key] == original[key]
    assert (restate["AdjustmentType"], restate["AdjustmentValue"], restate["AdjustmentCurrencyCode"]) == (
        "Restate",
        99.5,
        "USD",
    )
    assert retract["AdjustmentType"] == "Retract"
    assert "AdjustmentValue" not in retract
    [online] = standin.calls(ONLINE_ADJ_PATH)
    assert online.json()["OnlineConversionAdjustments"][0]["TransactionId"] == "T-9"
    [uet_call] = standin.calls(UET_PATH)
    [event] = uet_call.json()["data"]
    assert (event["eventId"], event["userData"]["msclkid"], event["customData"]) == (
        "ev-1",
        click_id(1),
        {"value": 3.0, "currency": "EUR"},
    )
    assert tr.status("ord-1").tracking_id


def test_tracker_sends_at_most_1000_per_request(standin: StandIn, tracker: tuple[ConversionTracker, Clock]) -> None:
    tr, clock = tracker
    for n in range(2500):
        tr.record_offline(
            f"ord-{n}", "Purchase", clock() - timedelta(hours=1, seconds=n), 1.0, "USD", click=click_id(n)
        )
    standin.bad_clicks = {click_id(42)}
    report = tr.flush()
    assert [len(c.json()["OfflineConversions"]) for c in standin.calls(OFFLINE_PATH)] == [1000, 1000, 500]
    assert (report.delivered, report.rejected) == (2499, 1)
    status = tr.status("ord-42")
    assert status.state == "rejected"
    assert (status.last_error_code or "").split()[0] == "5604"


def test_tracker_waits_out_429_and_keeps_the_same_payload(
    standin: StandIn, tracker: tuple[ConversionTracker, Clock]
) -> None:
    tr, clock = tracker
    tr.record_offline("ord-1", "Purchase", clock() - timedelta(minutes=70), 5.0, "USD", click=click_id(1))
    tr.campaign.token_provider.access_token()
    standin.queue(OFFLINE_PATH, 429, b"", {"Retry-After": "120"})
    tr.flush()
    pending = tr.status("ord-1")
    assert pending.state == "pending"
    assert pending.next_attempt_at is not None
    assert pending.next_attempt_at >= clock() + timedelta(seconds=119)
    tr.flush()
    assert len(standin.calls(OFFLINE_PATH)) == 1  # not due yet
    clock.now += timedelta(seconds=121)
    tr.flush()
    assert tr.status("ord-1").delivered
    first, second = standin.calls(OFFLINE_PATH)
    assert first.body == second.body


def test_tracker_refreshes_an_expired_token_and_pauses_on_invalid_grant(
    standin: StandIn, tracker: tuple[ConversionTracker, Clock]
) -> None:
    tr, clock = tracker
    tr.record_offline("ord-1", "Purchase", clock() - timedelta(minutes=70), 5.0, "USD", click=click_id(1))
    tr.flush()
    standin.expire_access_tokens()
    tr.record_offline("ord-2", "Purchase", clock() - timedelta(minutes=71), 5.0, "USD", click=click_id(2))
    tr.flush()
    assert tr.status("ord-2").delivered
    assert [c.form()["refresh_token"] for c in standin.calls(TOKEN_PATH)] == [FIRST_REFRESH, "standin-refresh-1"]

    # Every refresh token revoked: the account pauses without burning attempts.
    standin.refresh_tokens.clear()
    standin.expire_access_tokens()
    tr.record_offline("ord-3", "Purchase", clock() - timedelta(minutes=72), 5.0, "USD", click=click_id(3))
    tr.flush()
    paused = tr.status("ord-3")
    assert paused.state == "paused"
    assert paused.paused_reason
    assert paused.attempts == 0


def test_the_standin_catches_a_body_microsoft_does_not_document(
    standin: StandIn, client: CampaignManagementClient
) -> None:
    """The stand-in is strict: an integer double, an unknown field or a naive time is a violation."""
    import requests

    token = client.token_provider.access_token()
    headers = {
        "Authorization": f"Bearer {token}",
        "DeveloperToken": DEVELOPER_TOKEN,
        "CustomerId": CUSTOMER_ID,
        "CustomerAccountId": ACCOUNT_ID,
    }
    good = conversion(1).to_wire()
    for wrong in ({"ConversionValue": 10}, {"ClickId": "x"}, {"ConversionTime": "2026-01-01T00:00:00"}):
        response = requests.post(
            standin.url + OFFLINE_PATH, json={"OfflineConversions": [{**good, **wrong}]}, headers=headers, timeout=5
        )
        assert response.status_code == 400
    assert len(standin.violations) == 3
    standin.violations.clear()


def test_partial_errors_with_numbers_as_strings_still_name_their_item(
    standin: StandIn, client: CampaignManagementClient
) -> None:
    """A serialiser that writes int32 fields as strings must not turn a rejection into an acceptance."""
    client.token_provider.access_token()
    standin.queue(
        OFFLINE_PATH,
        200,
        {"PartialErrors": [{"Code": "5615", "ErrorCode": "OfflineConversionNotAcceptedForGoal", "Index": "1"}]},
    )
    result = client.apply_offline_conversions([conversion(0), conversion(1)])
    assert [r.accepted for r in result] == [True, False]
    assert result[1].code == 5615
    assert RetryPolicy().classify(result[1], 1).action == "wait_for_goal"


def test_uet_detail_without_index_is_placed_by_its_property_name(standin: StandIn, uet: UetClient) -> None:
    """``propertyName`` ("data[1].eventTime") names the event too; no bisection needed when ``index`` is missing."""
    standin.queue(
        UET_PATH,
        400,
        {
            "error": {
                "code": "ValidationError",
                "message": "see details",
                "details": [
                    {
                        "propertyName": "data[1].eventTime",
                        "attemptedValue": 1,
                        "errorMessage": "'eventTime' must be within the last 7 days.",
                        "errorCode": "InvalidEventTime",
                        "isWarning": False,
                    }
                ],
            }
        },
    )
    results = uet.send_events(UET_TAG, [uet_event(0), uet_event(1), uet_event(2)])
    assert [r.delivered for r in results] == [True, False, True]
    assert (results[1].error_code, results[1].property_name) == ("InvalidEventTime", "eventTime")
    _, second = standin.calls(UET_PATH)
    assert [e["eventId"] for e in second.json()["data"]] == ["ev-0", "ev-2"]


def test_authorization_code_redemption_stores_the_refresh_token(standin: StandIn) -> None:
    """The first consent (`msclkid auth`): code + redirect_uri in the form, the refresh token kept in the store."""
    standin.auth_codes["code-123"] = "http://localhost:8400/callback"
    store = MemoryTokenStore()
    provider = RefreshTokenProvider(CLIENT_ID, CLIENT_SECRET, token_url=standin.url + TOKEN_PATH, token_store=store)
    url = provider.authorize_url("http://localhost:8400/callback", "state-1")
    assert url.startswith(standin.url + "/common/oauth2/v2.0/authorize?")
    assert "scope=https%3A%2F%2Fads.microsoft.com%2Fmsads.manage+offline_access" in url
    assert "response_type=code" in url
    token = provider.exchange_code("code-123", "http://localhost:8400/callback")
    [call] = standin.calls(TOKEN_PATH)
    assert call.form() == {
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "scope": SCOPE,
        "grant_type": "authorization_code",
        "code": "code-123",
        "redirect_uri": "http://localhost:8400/callback",
    }
    stored = store.load()
    assert stored is not None
    assert stored.refresh_token == token.refresh_token == "standin-refresh-1"
    # The next access token comes from the stored refresh token.
    assert provider.access_token() == token.access_token
    standin.expire_access_tokens()
    provider.force_refresh()
    assert standin.calls(TOKEN_PATH)[-1].form()["refresh_token"] == "standin-refresh-1"
    with pytest.raises(ReconsentRequired):
        provider.exchange_code("code-123", "http://localhost:8400/callback")  # codes are single use
