"""Campaign Management v13 ``UpdateConversionGoals`` (``PUT .../ConversionGoals``, issue 20).

An element left out (or null) keeps its value, as in every Campaign Management update.  Each goal is checked on its
own; a goal with an error is left unchanged and named in ``PartialErrors`` (codes from operation-error-codes.md:
5314 unknown ID, 5317 name taken, 5331 type mismatch, 5804 scope is read-only, 5337 window, 5332/5333 revenue,
6609 a view-through window on an offline goal).  Where Microsoft says an element is "not applicable for offline
conversion goals" (``AttributionModelType``) the emulator ignores it for them (see docs/emulator.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from werkzeug.wrappers import Response

from msclkid_middleware.emulator.campaign import api_fault, batch_error
from msclkid_middleware.emulator.codes import CURRENCIES
from msclkid_middleware.emulator.state import Account, Goal
from msclkid_middleware.emulator.wire import CallContext, json_response
from msclkid_middleware.emulator.world import World

__all__ = ["GOAL_STATUSES", "MAX_GOALS_PER_CALL", "REVENUE_TYPES", "name_taken", "update_goals"]

MAX_GOALS_PER_CALL = 100
GOAL_STATUSES = ("Active", "Paused", "Deleted", "InActive")
REVENUE_TYPES = ("FixedValue", "VariableValue", "NoValue")
_ATTRIBUTION_MODELS = ("LastClick", "LastTouch", "DataDriven")


class _Problem(Exception):
    def __init__(self, code: int, field: str | None = None, details: str | None = None) -> None:
        super().__init__(code)
        self.code, self.field, self.details = code, field, details


def name_taken(world: World, account: Account, name: str, *, except_id: int | None = None) -> bool:
    """Goal names are unique per customer (ConversionGoalNameAlreadyExists, 5317)."""
    return any(
        g.name == name and g.id != except_id
        for (acc, _), g in world.goals.items()
        if world.accounts.get(acc, account).customer_id == account.customer_id
    )


def _window(item: Mapping[str, Any], name: str, low: int, high: int, code: int) -> int | None:
    value = item.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _Problem(code, name, f"{name} must be between {low} and {high}.")
    return value


def _flag(item: Mapping[str, Any], name: str) -> bool | None:
    value = item.get(name)
    if value is not None and not isinstance(value, bool):
        raise _Problem(201, name, f"{name} must be true or false.")
    return value


def _revenue(item: Mapping[str, Any], goal: Goal) -> dict[str, Any]:
    revenue = item.get("Revenue")
    if revenue is None:
        return {}
    if not isinstance(revenue, dict):
        raise _Problem(201, "Revenue", "Revenue must be an object.")
    kind = revenue.get("Type")
    if kind is not None and kind not in REVENUE_TYPES:
        raise _Problem(5332, "Revenue.Type")
    value = revenue.get("Value")
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or value < 0):
        raise _Problem(5333, "Revenue.Value")
    currency = revenue.get("CurrencyCode")
    if currency is not None and not (isinstance(currency, str) and currency in CURRENCIES):
        raise _Problem(201, "Revenue.CurrencyCode", "Revenue.CurrencyCode is not a supported currency.")
    changes: dict[str, Any] = {}
    if kind is not None:
        changes["revenue_type"] = kind
        if kind == "NoValue":
            changes["currency"], changes["revenue_value"] = None, None
    if value is not None:
        changes["revenue_value"] = float(value)
    if currency is not None and kind != "NoValue":
        changes["currency"] = currency
    if changes.get("revenue_type", goal.revenue_type) != "NoValue" and changes.get("currency", goal.currency) is None:
        raise _Problem(201, "Revenue.CurrencyCode", "A currency is required for FixedValue and VariableValue.")
    return changes


def _changes(
    world: World, account: Account, item: Any, names_in_call: dict[str, int], index: int
) -> tuple[Goal, dict[str, Any]]:
    if not isinstance(item, dict):
        raise _Problem(5323)
    raw_id = item.get("Id")
    if raw_id in (None, ""):
        raise _Problem(5325, "Id")
    goal = world.goals_by_id.get(int(raw_id)) if str(raw_id).isdigit() else None
    owner = world.accounts.get(goal.account_id) if goal is not None else None
    if goal is None or owner is None or owner.customer_id != account.customer_id:
        raise _Problem(5314, "Id")
    if goal.scope == "Account" and goal.account_id != account.account_id:
        raise _Problem(5314, "Id")
    if item.get("Type") is not None and item.get("Type") != goal.type:
        raise _Problem(5331, "Type")
    changes: dict[str, Any] = {}
    name = item.get("Name")
    if name is not None and name != goal.name:
        if not isinstance(name, str) or not name.strip() or len(name) > 100:
            raise _Problem(5320, "Name")
        if names_in_call.setdefault(name, index) != index:
            raise _Problem(5316, "Name")
        if name_taken(world, account, name, except_id=goal.id):
            raise _Problem(5317, "Name")
        changes["name"] = name
    if item.get("Scope") is not None and item.get("Scope") != goal.scope:
        raise _Problem(5804, "Scope", "Scope cannot be changed after the goal was created.")
    if item.get("Status") is not None:
        if item["Status"] not in GOAL_STATUSES:
            raise _Problem(5328, "Status")
        changes["status"] = item["Status"]
    if item.get("CountType") is not None:
        if item["CountType"] not in ("All", "Unique"):
            raise _Problem(201, "CountType", "CountType must be All or Unique.")
        changes["count_type"] = item["CountType"]
    window = _window(item, "ConversionWindowInMinutes", 1, 129600, 5337)
    if window is not None:
        changes["conversion_window_minutes"] = window
    if item.get("ViewThroughConversionWindowInMinutes") is not None and goal.type == "OfflineConversion":
        raise _Problem(6609, "ViewThroughConversionWindowInMinutes")
    view = _window(item, "ViewThroughConversionWindowInMinutes", 1, 43200, 6608)
    if view is not None:
        changes["view_through_window_minutes"] = view
    changes.update(_revenue(item, goal))
    for wire_name, field in (
        ("ExcludeFromBidding", "exclude_from_bidding"),
        ("IsEnhancedConversionsEnabled", "enhanced"),
    ):
        flag = _flag(item, wire_name)
        if flag is not None:
            changes[field] = flag
    model = item.get("AttributionModelType")
    if model is not None:
        if model not in _ATTRIBUTION_MODELS:
            raise _Problem(
                201, "AttributionModelType", "AttributionModelType must be LastClick, LastTouch or DataDriven"
            )
        if goal.type != "OfflineConversion":
            changes["attribution_model"] = model
    return goal, changes


def update_goals(world: World, account: Account, ctx: CallContext, body: Mapping[str, Any]) -> Response:
    goals = body.get("ConversionGoals")
    if not isinstance(goals, list) or not goals:
        return api_fault(ctx, 5321, details="ConversionGoals cannot be null or empty.")
    if len(goals) > MAX_GOALS_PER_CALL:
        return api_fault(ctx, 5322, details=f"At most {MAX_GOALS_PER_CALL} conversion goals can be updated per call.")
    ctx.items = len(goals)
    errors: list[dict[str, Any]] = []
    names: dict[str, int] = {}
    for index, item in enumerate(goals):
        try:
            goal, changes = _changes(world, account, item, names, index)
        except _Problem as problem:
            errors.append(batch_error(index, problem.code, problem.field, problem.details))
            continue
        world.replace_goal(goal, **changes)
    return json_response({"PartialErrors": errors})
