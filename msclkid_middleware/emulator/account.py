"""Campaign Management v13 ``GetAccountProperties`` and ``SetAccountProperties`` (issue 20).

``POST .../AccountProperties/Query`` ``{"AccountPropertyNames": [...]}`` answers
``{"AccountProperties": [{"Name", "Value"}], "PartialErrors": []}``; ``POST .../AccountProperties/Set``
``{"AccountProperties": [{"Name", "Value"}]}`` answers ``{}`` (Microsoft's response body has no elements).  Set is
all or nothing: "Partial success is not supported i.e., if any account property cannot be set, then none of the
account properties will be set" (Microsoft's SetAccountProperties page), so an invalid item fails the whole call
with an ``ApiFaultDetail`` whose ``BatchErrors`` name it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from werkzeug.wrappers import Request, Response

from msclkid_middleware.emulator.campaign import ad_api_fault, batch_error, read_call
from msclkid_middleware.emulator.codes import CODES
from msclkid_middleware.emulator.settings import ACCOUNT_PROPERTY_NAMES, account_property_value
from msclkid_middleware.emulator.state import Account
from msclkid_middleware.emulator.wire import CallContext, json_response
from msclkid_middleware.emulator.world import World

__all__ = ["dispatch"]


def _query(world: World, account: Account, ctx: CallContext, body: Mapping[str, Any]) -> Response:
    names = body.get("AccountPropertyNames")
    if not isinstance(names, list) or not names:
        return ad_api_fault(ctx, 201, 400, "AccountPropertyNames cannot be null or empty.")
    unknown = [n for n in names if n not in ACCOUNT_PROPERTY_NAMES]
    if unknown:
        return ad_api_fault(ctx, 201, 400, f"{unknown[0]!r} is not an AccountPropertyName.")
    held = world.account_properties.get(account.account_id, {})
    properties = [{"Name": name, "Value": held.get(name)} for name in dict.fromkeys(names)]
    return json_response({"AccountProperties": properties, "PartialErrors": []})


def _set(world: World, account: Account, ctx: CallContext, body: Mapping[str, Any]) -> Response:
    items = body.get("AccountProperties")
    if not isinstance(items, list) or not items:
        return ad_api_fault(ctx, 201, 400, "AccountProperties cannot be null or empty.")
    values: dict[str, str] = {}
    errors: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            errors.append(batch_error(index, 201, None, "The account property cannot be null."))
            continue
        name = item.get("Name")
        try:
            values[str(name)] = account_property_value(str(name), item.get("Value"))
        except ValueError as exc:
            field = "Name" if name not in ACCOUNT_PROPERTY_NAMES else "Value"
            errors.append(batch_error(index, 201, f"AccountProperties[{index}].{field}", f"{exc}."))
    if errors:
        # Nothing is applied: partial success is not supported.
        error_code, message = CODES[201]
        fault = {
            "TrackingId": ctx.tracking_id,
            "Type": "ApiFaultDetail",
            "BatchErrors": errors,
            "OperationErrors": [{"Code": 201, "Details": None, "ErrorCode": error_code, "Message": message}],
        }
        return json_response(fault, 400)
    world.set_account_properties(account.account_id, values)
    return json_response({})


def _uet_tags(world: World, account: Account, ctx: CallContext, body: Mapping[str, Any]) -> Response:
    """``GetUetTagsByIds``: the account's tags with their ``TrackingStatus`` (5300 InvalidUetTagId for others)."""
    tag_ids = body.get("TagIds")
    if not isinstance(tag_ids, list) or not tag_ids:
        return ad_api_fault(ctx, 201, 400, "TagIds cannot be null or empty.")
    tags: list[dict[str, Any] | None] = []
    errors: list[dict[str, Any]] = []
    for index, tag_id in enumerate(tag_ids):
        tag = world.tags.get(str(tag_id))
        if tag is None or tag.account_id != account.account_id:
            tags.append(None)
            errors.append(batch_error(index, 5300, "TagIds"))
            continue
        tags.append(
            {
                "Id": tag.tag_id,
                "Name": tag.name,
                "Description": None,
                "TrackingStatus": tag.tracking_status,
                "TrackingScript": None,
                "TrackingNoScript": None,
                "CustomerShare": None,
                "Industry": None,
            }
        )
    return json_response({"UetTags": tags, "PartialErrors": errors})


def dispatch(world: World, request: Request, ctx: CallContext, *, token_expired: bool = False) -> Response:
    checked = read_call(world, request, ctx, token_expired=token_expired)
    if isinstance(checked, Response):
        return checked
    account, body = checked
    with world.lock:
        if request.path.endswith("/UetTags/QueryByIds"):
            return _uet_tags(world, account, ctx, body)
        if request.path.endswith("/Set"):
            return _set(world, account, ctx, body)
        return _query(world, account, ctx, body)
