"""Campaign Management v13 REST: header checks, fault bodies and the three ``.../Apply`` operations.

Validation reads the raw JSON with Microsoft's documented rules (reference §2, §4, §5); it never uses the
toolkit's models, so a client that builds a wrong body is caught here.  Choices where Microsoft is silent
are listed in ``docs/emulator.md`` ("Where Microsoft is silent").
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from werkzeug.wrappers import Request, Response

from msclkid_middleware.emulator.clock import iso, parse_datetime
from msclkid_middleware.emulator.codes import CODES, CURRENCIES
from msclkid_middleware.emulator.state import Account, Goal
from msclkid_middleware.emulator.wire import BodyError, CallContext, json_response, read_json
from msclkid_middleware.emulator.world import Conversion, World

__all__ = [
    "GOAL_MIN_AGE",
    "ad_api_fault",
    "api_fault",
    "apply_endpoint",
    "batch_error",
    "check_headers",
    "read_call",
]

_HEX64 = re.compile(r"[0-9a-f]{64}")
_MAX_VALUE = 999_999_999_999.0
_NINETY_DAYS = timedelta(days=90)
#: A goal younger than this rejects uploads with 5615; the dashboard marks such goals with the same rule.
GOAL_MIN_AGE = timedelta(hours=2)


def ad_api_fault(
    ctx: CallContext, code: int, status: int, detail: str | None = None, headers: Mapping[str, str] | None = None
) -> Response:
    error_code, message = CODES[code]
    body = {
        "TrackingId": ctx.tracking_id,
        "Type": "AdApiFaultDetail",
        "Errors": [{"Code": code, "Detail": detail, "ErrorCode": error_code, "Message": message}],
    }
    return json_response(body, status, headers)


def api_fault(ctx: CallContext, code: int, status: int = 400, details: str | None = None) -> Response:
    error_code, message = CODES[code]
    body = {
        "TrackingId": ctx.tracking_id,
        "Type": "ApiFaultDetail",
        "BatchErrors": [],
        "OperationErrors": [{"Code": code, "Details": details, "ErrorCode": error_code, "Message": message}],
    }
    return json_response(body, status)


def batch_error(index: int, code: int, field_path: str | None = None, details: str | None = None) -> dict[str, Any]:
    error_code, message = CODES[code]
    return {
        "Code": code,
        "Details": details,
        "ErrorCode": error_code,
        "FieldPath": field_path,
        "ForwardCompatibilityMap": [],
        "Index": index,
        "Message": message,
        "Type": "BatchError",
    }


def check_headers(world: World, request: Request, ctx: CallContext, *, token_expired: bool) -> Account | Response:
    """Authenticate, then authorise, in the order documented in docs/emulator.md."""
    headers = request.headers
    authorization = headers.get("Authorization", "")
    scheme, _, access_token = authorization.partition(" ")
    if scheme != "Bearer" or not access_token.strip():
        # Microsoft: "Please ensure that the token is prefixed with "Bearer "".
        return ad_api_fault(ctx, 105, 401, "The Authorization header must be 'Bearer <access token>'.")
    developer_token = headers.get("DeveloperToken", "")
    if not developer_token:
        return ad_api_fault(ctx, 116, 400, "Missing header: DeveloperToken.")
    grant = world.access_tokens.get(access_token.strip())
    if grant is None:
        return ad_api_fault(ctx, 105, 401)
    if token_expired or grant.expires_at <= world.clock():
        return ad_api_fault(ctx, 109, 401)
    if developer_token != world.config.developer_token:
        return ad_api_fault(ctx, 105, 401, "The developer token is not valid for this environment.")
    customer_id = headers.get("CustomerId", "")
    if not customer_id:
        return ad_api_fault(ctx, 116, 400, "Missing header: CustomerId.")
    account_id = headers.get("CustomerAccountId", "")
    if not account_id:
        return ad_api_fault(ctx, 1009, 400)
    account = world.accounts.get(account_id)
    if account is None or account.customer_id != customer_id:
        return ad_api_fault(ctx, 106, 403, "The user has no access to this customer and account.")
    return account


def read_call(
    world: World, request: Request, ctx: CallContext, *, token_expired: bool
) -> tuple[Account, dict[str, Any]] | Response:
    """The calling account and the JSON object body of a Campaign Management call, or the fault to answer."""
    with world.lock:
        account = check_headers(world, request, ctx, token_expired=token_expired)
    if isinstance(account, Response):
        return account
    try:
        body = read_json(request.get_data())
    except BodyError as exc:
        return ad_api_fault(ctx, 100 if "empty" in str(exc) else 201, 400, str(exc))
    if not isinstance(body, dict):
        return ad_api_fault(ctx, 201, 400, "The request body must be a JSON object.")
    return account, body


class _Reject(Exception):
    def __init__(self, code: int, field_path: str | None = None, details: str | None = None) -> None:
        super().__init__(code)
        self.code = code
        self.field_path = field_path
        self.details = details


def _string(item: Mapping[str, Any], name: str) -> str | None:
    value = item.get(name)
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else str(value)


def _time(item: Mapping[str, Any], name: str, missing: int, invalid: int) -> datetime:
    value = item.get(name)
    if value is None or value == "":
        raise _Reject(missing, name)
    try:
        return parse_datetime(value)
    except ValueError:
        raise _Reject(invalid, name, f"{name} must be an ISO 8601 UTC date-time.") from None


def _number(item: Mapping[str, Any], name: str) -> float | None:
    value = item.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _Reject(5610, name, f"{name} must be a number.")
    if value < 0 or value > _MAX_VALUE:
        raise _Reject(5610, name, f"{name} must be between 0 and 999999999999.")
    return float(value)


def _currency(item: Mapping[str, Any], name: str) -> str | None:
    value = item.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or value not in CURRENCIES:
        raise _Reject(5611, name)
    return value


class _Validator:
    def __init__(self, world: World, account: Account, ctx: CallContext) -> None:
        self.world = world
        self.account = account
        self.ctx = ctx
        self.now = world.clock()
        self.future = timedelta(seconds=world.config.future_tolerance_seconds)
        self.notes: list[str] = []

    def goal(self, name: str, *, offline_only: bool) -> Goal | None:
        goal = self.world.goal(self.account.account_id, name)
        if goal is not None and offline_only and goal.type != "OfflineConversion":
            goal = None
        if goal is None:
            if self.world.config.unknown_goal == "reject":
                raise _Reject(5606, "ConversionName")
            self.notes.append("GoalNotFoundOrInactive")
            return None
        if goal.status != "Active":
            self.notes.append("GoalNotFoundOrInactive")
        return goal

    def identifiers(self, item: Mapping[str, Any]) -> tuple[str | None, str | None, str | None]:
        click = _string(item, "MicrosoftClickId")
        email = _string(item, "HashedEmailAddress")
        phone = _string(item, "HashedPhoneNumber")
        if click is None and email is None and phone is None:
            raise _Reject(5603, "MicrosoftClickId")
        if click is not None and self.world.click_id_re.fullmatch(click) is None:
            raise _Reject(5604, "MicrosoftClickId")
        if email is not None and _HEX64.fullmatch(email) is None:
            raise _Reject(8004, "HashedEmailAddress", "HashedEmailAddress must be a lowercase hex SHA-256.")
        if phone is not None and _HEX64.fullmatch(phone) is None:
            # Microsoft documents no code for an unhashed phone; the value is discarded, not the conversion.
            self.notes.append("HashedPhoneNumberDiscarded")
        return click, email, phone

    def key(
        self, name: str, when: datetime, click: str | None, email: str | None, phone: str | None
    ) -> tuple[Any, ...]:
        # Microsoft: the first conversion for a click ID + name + time counts; hashed-only uploads use the full key.
        if click is not None:
            return (self.account.account_id, click, name, when)
        return (self.account.account_id, None, name, when, email, phone)

    def adjustment_time(self, item: Mapping[str, Any], original: datetime | None) -> datetime:
        when = _time(item, "AdjustmentTime", 5619, 5621)
        if when > self.now + self.future:
            raise _Reject(5622, "AdjustmentTime")
        if when < self.now - _NINETY_DAYS:
            raise _Reject(5623, "AdjustmentTime")
        if original is not None and when < original:
            raise _Reject(5620, "AdjustmentTime")
        return when

    def adjustment_value(self, item: Mapping[str, Any], goal: Goal | None) -> tuple[str, float | None, str | None]:
        kind = item.get("AdjustmentType")
        if kind not in ("Restate", "Retract"):
            raise _Reject(5618, "AdjustmentType")
        if goal is not None and not goal.adjustments_supported:
            raise _Reject(5627, "AdjustmentType")
        if kind == "Retract":
            if item.get("AdjustmentValue") is not None:
                raise _Reject(5624, "AdjustmentValue")
            return kind, None, None
        if item.get("AdjustmentValue") is None:
            raise _Reject(5625, "AdjustmentValue")
        value = _number(item, "AdjustmentValue")
        currency = _currency(item, "AdjustmentCurrencyCode")
        if currency is None and (goal is None or goal.currency is None):
            raise _Reject(5626, "AdjustmentCurrencyCode")
        return kind, value, currency or (goal.currency if goal else None)

    # -- the three item kinds ----------------------------------------------------------------------------------------

    def original(self, item: Mapping[str, Any]) -> tuple[str, str | None, str | None, str | None, datetime]:
        """What identifies an offline conversion: ConversionName, click ID, hashes, ConversionTime."""
        name = _string(item, "ConversionName")
        if name is None:
            raise _Reject(5605, "ConversionName")
        click, email, phone = self.identifiers(item)
        return name, click, email, phone, _time(item, "ConversionTime", 5608, 5607)

    def offline(self, item: Mapping[str, Any]) -> tuple[str, Any]:
        name, click, email, phone, when = self.original(item)
        if when > self.now + self.future:
            raise _Reject(5614, "ConversionTime")
        if when < self.now - _NINETY_DAYS:
            raise _Reject(5609, "ConversionTime")
        goal = self.goal(name, offline_only=True)
        if goal is not None and self.now - goal.created_at < GOAL_MIN_AGE:
            raise _Reject(5615, "ConversionName")
        value = _number(item, "ConversionValue")
        currency = _currency(item, "ConversionCurrencyCode")
        if click is None and goal is not None and not goal.enhanced:
            # Help: without an msclkid, a conversion for a goal without enhanced conversions is rejected.
            raise _Reject(5603, "MicrosoftClickId", "The goal does not have enhanced conversions enabled.")
        if click is not None and (email or phone) and goal is not None and not goal.enhanced:
            self.notes.append("EnhancedFieldsIgnored")
        click_time = self.world.clicks.get(click) if click is not None else None
        if click_time is not None:
            if when < click_time:
                raise _Reject(5616, "ConversionTime")
            window = goal.conversion_window_minutes if goal is not None else 129600
            if when > click_time + timedelta(minutes=window):
                raise _Reject(5617, "ConversionTime")
            owner = self.world.click_accounts.get(click) if click is not None else None
            if owner is not None and owner != self.account.account_id:
                self.notes.append("AccountMismatch")  # accepted, but Microsoft cannot attribute it to this account
        elif click is not None:
            self.notes.append("ClickNotRegistered")
        if item.get("ExternalAttributionCredit") is not None or item.get("ExternalAttributionModel") is not None:
            self.notes.append("GoalNotEligibleForExternalAttribution")
        key = self.key(name, when, click, email, phone)
        if key in self.world.conversions:
            return "duplicate", None
        self.world.conversions[key] = Conversion(
            "offline",
            name,
            when,
            value if value is not None else (goal.revenue_value if goal else None),
            currency or (goal.currency if goal else None),
        )
        return "accepted", None

    def offline_adjustment(self, item: Mapping[str, Any]) -> tuple[str, Any]:
        name, click, email, phone, original_time = self.original(item)
        goal = self.goal(name, offline_only=True)
        kind, value, currency = self.adjustment_value(item, goal)
        when = self.adjustment_time(item, original_time)
        original = self.world.conversions.get(self.key(name, original_time, click, email, phone))
        return self._adjust(original, kind, value, currency, when)

    def online_adjustment(self, item: Mapping[str, Any]) -> tuple[str, Any]:
        name = _string(item, "ConversionName")
        if name is None:
            raise _Reject(5605, "ConversionName")
        transaction = _string(item, "TransactionId")
        if transaction is None:
            raise _Reject(201, "TransactionId", "TransactionId cannot be null or empty.")
        goal = self.goal(name, offline_only=False)
        kind, value, currency = self.adjustment_value(item, goal)
        when = self.adjustment_time(item, None)
        original = self.world.online_conversions.get((self.account.account_id, transaction))
        return self._adjust(original, kind, value, currency, when)

    def _adjust(
        self, original: Conversion | None, kind: str, value: float | None, currency: str | None, when: datetime
    ) -> tuple[str, Any]:
        # Microsoft reports these only later, as unattributed reasons in the diagnostics report.
        if original is None:
            self.notes.append("AdjustmentOriginalNotFound")
            return "accepted", None
        entry = {"type": kind, "value": value, "currency": currency, "time": iso(when)}
        if entry in original.adjustments:
            return "duplicate", None
        if original.retracted:
            self.notes.append("ConversionAlreadyRetracted")
        original.adjustments.append(entry)
        if kind == "Retract":
            original.retracted = True
        else:
            original.value, original.currency = value, currency
        return "accepted", None


_KINDS: dict[str, tuple[str, Callable[[_Validator, Mapping[str, Any]], tuple[str, Any]]]] = {
    "offline": ("OfflineConversions", _Validator.offline),
    "offline_adjustments": ("OfflineConversionAdjustments", _Validator.offline_adjustment),
    "online_adjustments": ("OnlineConversionAdjustments", _Validator.online_adjustment),
}


def apply_endpoint(world: World, request: Request, ctx: CallContext, *, token_expired: bool = False) -> Response:
    """``POST /CampaignManagement/v13/{OfflineConversions|...}/Apply`` for the endpoint named in ``ctx``."""
    wrapper, validate = _KINDS[ctx.endpoint]
    checked = read_call(world, request, ctx, token_expired=token_expired)
    if isinstance(checked, Response):
        return checked
    account, body = checked
    items = body.get(wrapper)
    if items is None or items == []:
        return api_fault(ctx, 5600, details=f"{wrapper} is null or empty.")
    if not isinstance(items, list):
        return ad_api_fault(ctx, 201, 400, f"{wrapper} must be a JSON array.")
    ctx.items = len(items)
    if len(items) > world.config.max_batch_items:
        return api_fault(ctx, 5601, details=f"{len(items)} items; the limit is {world.config.max_batch_items}.")
    injected = {i: rule.code or 5612 for rule in ctx.faults if rule.kind == "partial_errors" for i in rule.indexes}
    errors: list[dict[str, Any]] = []
    records: list[dict[str, Any]] = []
    with world.lock:
        validator = _Validator(world, account, ctx)  # one clock reading per request, as a server would
        for index, item in enumerate(items):
            validator.notes = []
            outcome = "accepted"
            error: dict[str, Any] | None = None
            try:
                if not isinstance(item, dict):
                    raise _Reject(5602)
                if index in injected:
                    raise _Reject(injected[index], None, "Injected by the emulator's fault rules.")
                outcome, _ = validate(validator, item)
            except _Reject as reject:
                outcome = "rejected"
                error = batch_error(index, reject.code, reject.field_path, reject.details)
                errors.append(error)
            records.append(
                {
                    "kind": ctx.endpoint,
                    "account": account.account_id,
                    "tracking_id": ctx.tracking_id,
                    "index": index,
                    "outcome": outcome,
                    "payload": item,
                    "code": error["Code"] if error else None,
                    "error_code": error["ErrorCode"] if error else None,
                    "message": error["Message"] if error else None,
                    "field_path": error["FieldPath"] if error else None,
                    "notes": tuple(validator.notes),
                }
            )
        world.record_items(records)
    mode = world.config.empty_partial_errors
    if errors or mode == "list":
        return json_response({"PartialErrors": errors})
    return json_response({"PartialErrors": None} if mode == "null" else {})
