"""UET Conversions API: ``POST /v1/{tagId}/events`` (reference uet-capi.md §1).

Errors fail the event (and, unless ``continueOnValidationError`` is true, the whole batch with 400);
warnings remove the field and keep the event.  Only the first 10 details are shown, as Microsoft does.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from werkzeug.wrappers import Request, Response

from msclkid_middleware.emulator.codes import CURRENCIES
from msclkid_middleware.emulator.wire import BodyError, CallContext, json_response, read_json
from msclkid_middleware.emulator.world import Conversion, World

__all__ = ["MAX_DETAILS", "events_endpoint", "unauthorized"]

MAX_DETAILS = 10
_EVENT_TYPES = ("pageLoad", "custom")
_PAGE_TYPES = ("cart", "category", "home", "other", "product", "purchase", "searchresults")
_IDENTIFIERS = ("anonymousId", "externalId", "em", "ph", "msclkid", "idfa", "gaid")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_UUID = re.compile(r"[0-9a-fA-F]{32}|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_SEVEN_DAYS = timedelta(days=7)
_MESSAGE = (
    "One or multiple parameters did not pass validation checks, see details. "
    "Note that only the first 10 errors and warnings are shown."
)


def unauthorized() -> Response:
    return json_response(
        {"error": {"code": "Unauthorized", "message": "You are not authorized to access this resource."}}, 401
    )


def _valid_url(value: object) -> bool:
    if not isinstance(value, str) or len(value) > 2048:
        return False
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


class _Event:
    def __init__(self, index: int) -> None:
        self.index = index
        self.details: list[dict[str, Any]] = []

    @property
    def failed(self) -> bool:
        return any(not d["isWarning"] for d in self.details)

    def add(self, prop: str, value: Any, code: str, message: str, *, warning: bool = False) -> None:
        self.details.append(
            {
                "index": self.index,
                "propertyName": f"data[{self.index}].{prop}" if prop else f"data[{self.index}]",
                "attemptedValue": value,
                "errorMessage": message,
                "errorCode": code,
                "isWarning": warning,
            }
        )


def _validate(event: _Event, item: Any, now: datetime, future: timedelta) -> None:
    if not isinstance(item, dict):
        event.add("", None, "Empty", "Each event must be a JSON object.")
        return
    event_type = item.get("eventType")
    if event_type in (None, ""):
        event.add("eventType", event_type, "Empty", "'eventType' must not be empty.")
    elif event_type not in _EVENT_TYPES:
        event.add(
            "eventType",
            event_type,
            "InvalidEnumValue",
            f"'eventType' has a range of values which does not include '{event_type}'.",
        )
    event_time = item.get("eventTime")
    if event_time is None or event_time == "":
        event.add("eventTime", event_time, "Empty", "'eventTime' must not be empty.")
    else:
        ok = isinstance(event_time, int) and not isinstance(event_time, bool)
        if ok:
            when = datetime.fromtimestamp(event_time, now.tzinfo) if 0 < event_time < 10**11 else None
            ok = when is not None and now - _SEVEN_DAYS <= when <= now + future
        if not ok:
            event.add(
                "eventTime",
                event_time,
                "InvalidEventTime",
                "'eventTime' must be a valid UNIX UTC timestamp in seconds within last 7 days.",
            )
    source = item.get("eventSourceUrl")
    if event_type == "pageLoad" and source in (None, ""):
        event.add("eventSourceUrl", source, "Empty", "'eventSourceUrl' must not be empty for pageLoad events.")
    elif source not in (None, "") and not _valid_url(source):
        event.add(
            "eventSourceUrl",
            source,
            "InvalidUrl",
            "'eventSourceUrl' must be a valid absolute URL.",
            warning=event_type != "pageLoad",
        )
    referrer = item.get("referrerUrl")
    if referrer not in (None, "") and not _valid_url(referrer):
        event.add("referrerUrl", referrer, "InvalidUrl", "'referrerUrl' must be a valid absolute URL.", warning=True)
    consent = item.get("adStorageConsent")
    if consent is not None and consent not in ("G", "D"):
        event.add(
            "adStorageConsent", consent, "InvalidEnumValue", "'adStorageConsent' must be 'G' or 'D'.", warning=True
        )
    user = item.get("userData")
    if not isinstance(user, dict) or not user:
        event.add("userData", user, "Empty", "'userData' must not be empty.")
    else:
        _validate_user(event, user)
    custom = item.get("customData")
    if isinstance(custom, dict):
        currency = custom.get("currency")
        if currency is not None and not (isinstance(currency, str) and currency in CURRENCIES):
            event.add(
                "customData.currency",
                currency,
                "InvalidCurrency",
                "'currency' must be an ISO 4217 currency code.",
                warning=True,
            )
        page_type = custom.get("pageType")
        if page_type is not None and page_type not in _PAGE_TYPES:
            event.add(
                "customData.pageType",
                page_type,
                "InvalidEnumValue",
                f"'pageType' has a range of values which does not include '{page_type}'.",
                warning=True,
            )
    elif custom is not None:
        event.add("customData", custom, "InvalidValue", "'customData' must be an object.", warning=True)


def _validate_user(event: _Event, user: Mapping[str, Any]) -> None:
    dropped: set[str] = set()
    for name in ("em", "ph"):
        value = user.get(name)
        if value not in (None, "") and (not isinstance(value, str) or _SHA256.fullmatch(value) is None):
            event.add(
                f"userData.{name}",
                value,
                "InvalidSha256",
                f"'{name}' must be a SHA-256 hash formatted as a lowercase hexadecimal string.",
                warning=True,
            )
            dropped.add(name)
    click = user.get("msclkid")
    if click not in (None, "") and (not isinstance(click, str) or _UUID.fullmatch(click) is None):
        event.add("userData.msclkid", click, "InvalidUuid", "'msclkid' must be a valid UUID.", warning=True)
        dropped.add("msclkid")
    address = user.get("clientIpAddress")
    if address not in (None, ""):
        try:
            ipaddress.ip_address(str(address))
        except ValueError:
            event.add(
                "userData.clientIpAddress",
                address,
                "InvalidIpAddress",
                "'clientIpAddress' must be an IPv4 or IPv6 address.",
                warning=True,
            )
    if not any(user.get(name) not in (None, "") and name not in dropped for name in _IDENTIFIERS):
        event.add(
            "userData", None, "Empty", "'userData' must contain at least one of: " + ", ".join(_IDENTIFIERS) + "."
        )


def _bad_request(message: str, prop: str, value: Any, code: str) -> Response:
    detail = {
        "index": None,
        "propertyName": prop,
        "attemptedValue": value,
        "errorMessage": message,
        "errorCode": code,
        "isWarning": False,
    }
    return json_response({"error": {"code": "ValidationError", "message": _MESSAGE, "details": [detail]}}, 400)


def events_endpoint(
    world: World, request: Request, ctx: CallContext, tag_id: str, *, token_expired: bool = False
) -> Response:
    authorization = request.headers.get("Authorization", "")
    scheme, _, token = authorization.partition(" ")
    with world.lock:
        tag = world.tags.get(tag_id)
    if tag is None or scheme != "Bearer" or token.strip() != tag.token or token_expired:
        return unauthorized()
    try:
        body = read_json(request.get_data())
    except BodyError as exc:
        return json_response({"error": {"code": "BadRequest", "message": f"The request body is invalid: {exc}."}}, 400)
    if not isinstance(body, dict):
        return _bad_request("The request body must be a JSON object.", "", None, "InvalidValue")
    data = body.get("data")
    if not isinstance(data, list) or not data:
        return _bad_request("'data' must contain at least one event.", "data", None, "Empty")
    if len(data) > world.config.max_batch_items:
        return _bad_request(
            f"'data' must contain at most {world.config.max_batch_items} events.", "data", len(data), "InvalidLength"
        )
    ctx.items = len(data)
    cont = body.get("continueOnValidationError") is True
    now = world.clock()
    future = timedelta(seconds=world.config.uet_future_tolerance_seconds)
    events = []
    for index, item in enumerate(data):
        event = _Event(index)
        _validate(event, item, now, future)
        events.append(event)
    details = [d for e in events for d in e.details]
    valid = [e for e in events if not e.failed]
    batch_failed = (not cont and len(valid) != len(events)) or not valid
    records = []
    received = 0
    with world.lock:
        for event, item in zip(events, data, strict=True):
            first_error = next((d for d in event.details if not d["isWarning"]), None)
            outcome = "rejected"
            notes: list[str] = []
            if not event.failed and not batch_failed:
                outcome = "accepted"
                received += 1
                event_id = item.get("eventId")
                if isinstance(event_id, str) and event_id:
                    key = (tag.tag_id, event_id, str(item.get("eventName", "")))
                    if key in world.uet_seen:
                        outcome = "duplicate"
                    world.uet_seen.add(key)
                custom = item.get("customData") if isinstance(item.get("customData"), dict) else {}
                transaction = custom.get("transactionId") if custom else None
                if outcome == "accepted" and isinstance(transaction, str) and transaction:
                    world.online_conversions[(tag.account_id, transaction)] = Conversion(
                        "online", str(item.get("eventName", "")), None, custom.get("value"), custom.get("currency")
                    )
                consent = item.get("adStorageConsent")
                notes.append(f"adStorageConsent={consent if consent in ('G', 'D') else 'G'}")
            elif first_error is None:
                notes.append("BatchRejected")  # valid itself, but the batch failed without continueOnValidationError
            records.append(
                {
                    "kind": "uet",
                    "account": tag.tag_id,
                    "tracking_id": ctx.tracking_id,
                    "index": event.index,
                    "outcome": outcome,
                    "payload": item,
                    "code": 400 if outcome == "rejected" else None,
                    "error_code": first_error["errorCode"] if first_error else None,
                    "message": first_error["errorMessage"] if first_error else None,
                    "field_path": first_error["propertyName"] if first_error else None,
                    "notes": tuple(notes),
                    "warnings": tuple(
                        d["errorCode"] + ":" + d["propertyName"] for d in event.details if d["isWarning"]
                    ),
                }
            )
        world.record_items(records)
    shown = details[:MAX_DETAILS]
    if batch_failed:
        return json_response({"error": {"code": "ValidationError", "message": _MESSAGE, "details": shown}}, 400)
    result: dict[str, Any] = {"eventsReceived": received}
    if shown:
        result["error"] = {"code": "ValidationError", "message": _MESSAGE, "details": shown}
    return json_response(result)
