"""Conversion goal management and diagnostics (issue 12): add/query goals, offline conversion reports,
UET tag auth key.  Shapes follow the ``msads`` REST models (IDs and report counts are JSON strings there).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from werkzeug.wrappers import Request, Response

from msclkid_middleware.emulator.campaign import ad_api_fault, api_fault, batch_error, read_call
from msclkid_middleware.emulator.clock import parse_datetime
from msclkid_middleware.emulator.codes import CURRENCIES
from msclkid_middleware.emulator.goal_update import name_taken, update_goals
from msclkid_middleware.emulator.results import file_link
from msclkid_middleware.emulator.state import Account, Goal
from msclkid_middleware.emulator.wire import CallContext, json_response
from msclkid_middleware.emulator.world import World

__all__ = ["dispatch", "goal_to_wire"]

_TYPES = ("Url", "Duration", "PagesViewedPerVisit", "Event", "AppInstall", "OfflineConversion", "InStoreTransaction")
_MAX_REPORT_DAYS = 7
_MAX_GOAL_IDS = 20
_CHANNELS = ("Unknown", "CampaignManagementAPI", "BulkAPI", "WebUpload")


def goal_to_wire(goal: Goal) -> dict[str, Any]:
    revenue_type = goal.revenue_type or (
        "NoValue" if goal.currency is None else ("FixedValue" if goal.revenue_value else "VariableValue")
    )
    offline = goal.type == "OfflineConversion"
    data: dict[str, Any] = {
        "Type": goal.type,
        "Id": str(goal.id),
        "Name": goal.name,
        "Status": goal.status,
        "Scope": goal.scope,
        "CountType": goal.count_type,
        "Revenue": {"Type": revenue_type, "Value": goal.revenue_value, "CurrencyCode": goal.currency},
        "ConversionWindowInMinutes": goal.conversion_window_minutes,
        # "Not applicable for offline conversion goals": TagId, AttributionModelType, the view-through window.
        "TagId": None if offline else goal.tag_id,
        "TrackingStatus": "NoRecentConversions",
        "ExcludeFromBidding": goal.exclude_from_bidding,
        "ViewThroughConversionWindowInMinutes": None if offline else goal.view_through_window_minutes,
        "GoalCategory": goal.category,
        "AttributionModelType": None if offline else (goal.attribution_model or "LastClick"),
        "IsEnhancedConversionsEnabled": goal.enhanced,
        "IsAutoGoal": goal.is_auto_goal,
    }
    if goal.type == "OfflineConversion":
        data["IsExternallyAttributed"] = False
    return data


def _types(value: Any) -> set[str] | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise ValueError("ConversionGoalTypes must be a string of comma-separated flags")
    wanted = {part.strip() for part in value.split(",") if part.strip()}
    if not wanted <= set(_TYPES):
        raise ValueError(f"unknown ConversionGoalTypes: {', '.join(sorted(wanted - set(_TYPES)))}")
    return wanted


def _add(world: World, account: Account, ctx: CallContext, body: Mapping[str, Any]) -> Response:
    goals = body.get("ConversionGoals")
    if not isinstance(goals, list) or not goals:
        return ad_api_fault(ctx, 201, 400, "ConversionGoals cannot be null or empty.")
    if len(goals) > 100:
        return ad_api_fault(ctx, 201, 400, "At most 100 conversion goals can be added per call.")
    ids: list[str | None] = []
    errors: list[dict[str, Any]] = []
    names: dict[str, int] = {}
    for index, item in enumerate(goals):
        name = item.get("Name") if isinstance(item, dict) else None
        if isinstance(name, str) and names.setdefault(name, index) != index:
            problem: tuple[int, str | None, str | None] | None = (5316, "Name", None)
        else:
            problem = _check_goal(world, account, item)
        if problem is not None:
            errors.append(batch_error(index, problem[0], problem[1], problem[2]))
            ids.append(None)
            continue
        revenue = item.get("Revenue") or {}
        goal = world.add_goal(
            {
                "name": item["Name"],
                "account_id": account.account_id,
                "type": item["Type"],
                "conversion_window_minutes": item.get("ConversionWindowInMinutes") or 43200,
                "currency": revenue.get("CurrencyCode") if revenue.get("Type", "VariableValue") != "NoValue" else None,
                "revenue_value": revenue.get("Value"),
                "count_type": item.get("CountType") or "All",
                "status": item.get("Status") or "Active",
                "enhanced": bool(item.get("IsEnhancedConversionsEnabled")),
                "category": item.get("GoalCategory"),
                "tag_id": item.get("TagId"),
                "created_hours_ago": 0,
                "scope": item.get("Scope") or "Account",
                "revenue_type": revenue.get("Type") or "VariableValue",
                "exclude_from_bidding": bool(item.get("ExcludeFromBidding")),
                "attribution_model": item.get("AttributionModelType"),
                "view_through_window_minutes": item.get("ViewThroughConversionWindowInMinutes"),
            }
        )
        ids.append(str(goal.id))
        # "Every time you add or update a new ... OfflineConversionGoal ... the MSCLKIDAutoTaggingEnabled value of
        # the corresponding AccountProperty is set to True automatically" (all of the customer's accounts for a
        # goal of Customer scope): Microsoft's AddConversionGoals page.
        targets = (
            [a for a in world.accounts.values() if a.customer_id == account.customer_id]
            if goal.scope == "Customer"
            else [account]
        )
        for target in targets:
            world.set_account_properties(target.account_id, {"MSCLKIDAutoTaggingEnabled": "True"})
    return json_response({"ConversionGoalIds": ids, "PartialErrors": errors})


def _check_goal(world: World, account: Account, item: Any) -> tuple[int, str | None, str | None] | None:
    if not isinstance(item, dict):
        return 201, None, "The conversion goal cannot be null."
    name = item.get("Name")
    if not isinstance(name, str) or not name.strip() or len(name) > 100:
        return 201, "Name", "Name is required and can be at most 100 characters."
    if item.get("Type") not in _TYPES:
        return 201, "Type", "Type must be one of " + ", ".join(_TYPES) + "."
    if not item.get("GoalCategory"):
        return 201, "GoalCategory", "GoalCategory is required when adding a conversion goal."
    if name_taken(world, account, name):
        return 5317, "Name", None
    if item.get("Scope") not in (None, "Account", "Customer"):
        return 201, "Scope", "Scope must be Account or Customer."
    if item.get("Status") not in (None, "Active", "Paused", "Deleted", "InActive"):
        return 201, "Status", "Status must be Active, Paused, Deleted or InActive."
    if item.get("CountType") not in (None, "All", "Unique"):
        return 201, "CountType", "CountType must be All or Unique."
    if item.get("GoalCategory") is not None and not isinstance(item.get("GoalCategory"), str):
        return 201, "GoalCategory", "GoalCategory must be a string."
    window = item.get("ConversionWindowInMinutes")
    if window is not None and (isinstance(window, bool) or not isinstance(window, int) or not 1 <= window <= 129600):
        return 201, "ConversionWindowInMinutes", "ConversionWindowInMinutes must be between 1 and 129600."
    revenue = item.get("Revenue")
    if revenue is not None:
        if not isinstance(revenue, dict):
            return 201, "Revenue", "Revenue must be an object."
        value = revenue.get("Value")
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or value < 0):
            return 201, "Revenue.Value", "Revenue.Value must be a non-negative number."
        currency = revenue.get("CurrencyCode")
        if currency is not None and not (isinstance(currency, str) and currency in CURRENCIES):
            return 201, "Revenue.CurrencyCode", "Revenue.CurrencyCode is not a supported currency."
    if item.get("Type") != "OfflineConversion" and not item.get("TagId"):
        return 201, "TagId", "TagId is required for this conversion goal type."
    return None


def _query(world: World, account: Account, ctx: CallContext, body: Mapping[str, Any], by_tag: bool) -> Response:
    try:
        wanted_types = _types(body.get("ConversionGoalTypes"))
    except ValueError as exc:
        return ad_api_fault(ctx, 201, 400, str(exc))
    key = "TagIds" if by_tag else "ConversionGoalIds"
    requested = body.get(key)
    if requested is not None and not isinstance(requested, list):
        return ad_api_fault(ctx, 201, 400, f"{key} must be an array.")
    mine = [g for g in world.goals.values() if g.account_id == account.account_id]
    if wanted_types is not None:
        mine = [g for g in mine if g.type in wanted_types]
    if not requested:
        if by_tag:
            return ad_api_fault(ctx, 201, 400, "TagIds cannot be null or empty.")
        # An empty ID list returns every goal of the requested types (the way to list goals).
        return json_response({"ConversionGoals": [goal_to_wire(g) for g in mine], "PartialErrors": []})
    results: list[dict[str, Any] | None] = []
    errors: list[dict[str, Any]] = []
    for index, value in enumerate(requested):
        if by_tag:
            results.extend(goal_to_wire(g) for g in mine if g.tag_id == str(value))
            continue
        found = next((g for g in mine if str(g.id) == str(value)), None)
        results.append(goal_to_wire(found) if found else None)
        if found is None:
            errors.append(batch_error(index, 201, "ConversionGoalIds", f"Conversion goal {value} was not found."))
    return json_response({"ConversionGoals": results, "PartialErrors": errors})


def _dates(body: Mapping[str, Any]) -> tuple[datetime, datetime]:
    start, end = parse_datetime(body.get("StartDateUtc")), parse_datetime(body.get("EndDateUtc"))
    if end < start:
        raise ValueError("EndDateUtc must not be earlier than StartDateUtc")
    return start, end


#: Synchronous rejection code -> the OfflineConversionUnattributedReason the diagnostics report shows for it.
_REASON_BY_CODE = {
    5603: "MissingMatchIdentifiers",
    5606: "GoalNotFoundOrInactive",
    5609: "ConversionTimeExceedsMaxLookback",
    5614: "ConversionTimeInFuture",
    5616: "ClickTimestampAfterConversion",
    5617: "OutsideGoalLookbackWindow",
}
#: Notes recorded at upload time that Microsoft reports as unattributed reasons.
_REASON_BY_NOTE = {
    "GoalNotFoundOrInactive": "GoalNotFoundOrInactive",
    "AccountMismatch": "AccountMismatch",
    "AdjustmentOriginalNotFound": "AdjustmentOriginalNotFound",
    "ConversionAlreadyRetracted": "ConversionAlreadyRetracted",
}


def _report_rows(world: World, account: Account, start: datetime, end: datetime) -> list[tuple[str, Any]]:
    """(day, item) for every offline conversion or adjustment uploaded to this account in [start day, end day]."""
    last = end.date()
    return [
        (item.received_at.date().isoformat(), item)
        for item in world.received(account=account.account_id)
        if item.kind in ("offline", "offline_adjustments") and start.date() <= item.received_at.date() <= last
    ]


def _reasons(world: World, item: Any) -> list[str]:
    """Why an item did not count; empty when it did (the emulator's stand-in for Microsoft's attribution)."""
    if item.outcome == "duplicate":
        return ["DuplicateConversionKey"]
    if item.outcome == "rejected":
        return [_REASON_BY_CODE.get(item.code, "MalformedData")]
    reasons = [_REASON_BY_NOTE[n] for n in item.notes if n in _REASON_BY_NOTE]
    if "ClickNotRegistered" in item.notes and world.config.strict_click_matching:
        reasons.append("NoMatchingClickFound")
    return reasons


def _report_by_goals(world: World, account: Account, ctx: CallContext, body: Mapping[str, Any]) -> Response:
    try:
        start, end = _dates(body)
    except ValueError as exc:
        return ad_api_fault(ctx, 201, 400, f"StartDateUtc/EndDateUtc: {exc}.")
    if end - start > timedelta(days=_MAX_REPORT_DAYS):
        return api_fault(ctx, 201, details="The date range can be at most 7 days.")
    goal_ids = body.get("GoalIds")
    if not isinstance(goal_ids, list) or not goal_ids or len(goal_ids) > _MAX_GOAL_IDS:
        return api_fault(ctx, 201, details="GoalIds must hold 1 to 20 goal IDs.")
    channels = body.get("UploadChannelFilter")
    wanted = {c.strip() for c in channels.split(",")} if isinstance(channels, str) and channels.strip() else None
    if wanted is not None and not wanted <= set(_CHANNELS):
        return ad_api_fault(ctx, 201, 400, f"UploadChannelFilter must be flags of {', '.join(_CHANNELS)}.")
    # Everything the emulator receives arrives through the Campaign Management API.
    rows = _report_rows(world, account, start, end) if wanted is None or "CampaignManagementAPI" in wanted else []
    summaries: list[dict[str, Any] | None] = []
    errors: list[dict[str, Any]] = []
    for index, goal_id in enumerate(goal_ids):
        goal = world.goals_by_id.get(int(goal_id)) if str(goal_id).isdigit() else None
        if goal is None or goal.account_id != account.account_id:
            summaries.append(None)
            errors.append(batch_error(index, 201, "GoalIds", f"Goal {goal_id} was not found."))
            continue
        days: dict[str, Counter[str]] = {}
        for day, item in rows:
            if not isinstance(item.payload, dict) or item.payload.get("ConversionName") != goal.name:
                continue
            counts = days.setdefault(day, Counter())
            reasons = _reasons(world, item)
            counts["success" if not reasons else "unattributed"] += 1
            counts.update(f"alert:{r}" for r in reasons)
        daily = []
        overall: Counter[str] = Counter()
        for day, counts in sorted(days.items()):
            overall.update(counts)
            total = counts["success"] + counts["unattributed"]
            daily.append(
                {
                    "GoalId": str(goal.id),
                    "UploadDate": f"{day}T00:00:00Z",
                    "SuccessCount": counts["success"],
                    "UnattributedCount": counts["unattributed"],
                    "SuccessRate": counts["success"] / total if total else 0.0,
                    "Alerts": _alerts(counts),
                }
            )
        total = overall["success"] + overall["unattributed"]
        summaries.append(
            {
                "GoalId": str(goal.id),
                "ConversionName": goal.name,
                "OverallSuccessCount": str(overall["success"]),
                "OverallUnattributedCount": str(overall["unattributed"]),
                "OverallSuccessRate": overall["success"] / total if total else 0.0,
                "OverallAlerts": _alerts(overall),
                "DailySummaries": daily,
            }
        )
    return json_response({"OfflineGoalConversionSummaries": summaries, "PartialErrors": errors})


def _alerts(counts: Counter[str]) -> list[dict[str, Any]]:
    return [
        {"UnattributedReason": k.split(":", 1)[1], "Count": v}
        for k, v in sorted(counts.items())
        if k.startswith("alert:")
    ]


def _reports(world: World, account: Account, ctx: CallContext, body: Mapping[str, Any], base_url: str) -> Response:
    try:
        start, end = _dates(body)
    except ValueError as exc:
        return ad_api_fault(ctx, 201, 400, f"StartDateUtc/EndDateUtc: {exc}.")
    days: dict[str, Counter[str]] = {}
    for day, item in _report_rows(world, account, start, end):
        days.setdefault(day, Counter())["failure" if item.outcome == "rejected" else "success"] += 1
    expires = world.clock() + timedelta(hours=1)
    summaries = []
    for day, counts in sorted(days.items()):
        # A signed link to the day's result file (emulator/results.py), valid for an hour.
        url = file_link(world, base_url, account.account_id, day, expires)
        summaries.append(
            {
                "UploadDate": f"{day}T00:00:00Z",
                "SuccessCount": counts["success"],
                "FailureCount": counts["failure"],
                "FileUrl": url,
                "FileUrlExpiryTimeUtc": expires.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
        )
    return json_response({"DailySummaries": summaries})


def _auth_key(world: World, account: Account, ctx: CallContext, body: Mapping[str, Any]) -> Response:
    # The CAPI guide and the service reference disagree on the field names; accept both requests, answer with
    # the service reference's (and msads's) names.
    tag_id = body.get("UetTagId", body.get("TagId"))
    tag = world.tags.get(str(tag_id)) if tag_id not in (None, "") else None
    if tag is None or tag.account_id != account.account_id:
        return json_response(
            {
                "UetTagAuthKey": None,
                "PartialErrors": [batch_error(0, 201, "UetTagId", f"UET tag {tag_id} was not found.")],
            }
        )
    if world.config.uet_auth_key_shape == "guide":
        return json_response({"TagAuthKey": {"AuthKey": tag.token}, "PartialErrors": []})
    return json_response({"UetTagAuthKey": tag.token, "PartialErrors": []})


def dispatch(world: World, request: Request, ctx: CallContext, *, token_expired: bool = False) -> Response:
    checked = read_call(world, request, ctx, token_expired=token_expired)
    if isinstance(checked, Response):
        return checked
    account, body = checked
    path = request.path.rsplit("/v13/", 1)[1]
    with world.lock:
        if path == "ConversionGoals":
            if request.method == "PUT":
                return update_goals(world, account, ctx, body)
            return _add(world, account, ctx, body)
        if path in ("ConversionGoals/QueryByIds", "ConversionGoals/QueryByTagIds"):
            return _query(world, account, ctx, body, by_tag=path.endswith("TagIds"))
        if path == "OfflineConversionReport/QueryByGoalIds":
            return _report_by_goals(world, account, ctx, body)
        if path == "OfflineConversionReports/Query":
            return _reports(world, account, ctx, body, request.host_url)
        return _auth_key(world, account, ctx, body)
