"""JSON control API under ``/_emulator/``: inspect what arrived, reset, configure goals/clicks/faults/tokens.

Each route calls the same :class:`~.surface.ControlSurface` method the ``run_emulator`` handle exposes, so the
HTTP and Python surfaces cannot drift apart.  Errors answer 400 ``{"error": "...", "message": "..."}``.
"""

from __future__ import annotations

import json
from typing import Any

from werkzeug.exceptions import NotFound
from werkzeug.wrappers import Request, Response

from msclkid_middleware.emulator.surface import ControlError, ControlSurface
from msclkid_middleware.emulator.wire import json_response
from msclkid_middleware.errors import ConfigError

__all__ = ["dispatch"]


def _body(request: Request) -> dict[str, Any]:
    raw = request.get_data()
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        raise ControlError("the body must be a JSON object") from None
    if not isinstance(data, dict):
        raise ControlError("the body must be a JSON object")
    return data


def _require(data: dict[str, Any], name: str) -> Any:
    if data.get(name) in (None, ""):
        raise ControlError(f"{name!r} is required")
    return data[name]


def dispatch(emulator: ControlSurface, request: Request, path: str) -> Response:
    try:
        return _route(emulator, request, path.strip("/"), request.method)
    except (ConfigError, TypeError, KeyError) as exc:
        return json_response({"error": "bad_request", "message": str(exc)}, 400)


def _route(emulator: ControlSurface, request: Request, path: str, method: str) -> Response:
    args = request.args
    if (path, method) == ("state", "GET"):
        return json_response(emulator.state())
    if (path, method) == ("received", "GET"):
        items = emulator.received(args.get("kind"), account=args.get("account"), outcome=args.get("outcome"))
        return json_response([item.to_json() for item in items])
    if (path, method) == ("requests", "GET"):
        return json_response([r.to_json() for r in emulator.requests(args.get("endpoint"))])
    if (path, method) == ("reset", "POST"):
        emulator.reset()
        return json_response({"reset": True})
    if (path, method) == ("config", "PATCH") or (path, method) == ("config", "POST"):
        return json_response(emulator.configure(**_body(request)).to_json())
    if (path, method) == ("goals", "GET"):
        return json_response(emulator.state()["goals"])
    if (path, method) == ("goals", "POST"):
        data = _body(request)
        return json_response(
            emulator.add_goal(_require(data, "name"), **{k: v for k, v in data.items() if k != "name"}).to_json(), 201
        )
    if (path, method) == ("clicks", "POST"):
        data = _body(request)
        when = emulator.add_click(
            str(_require(data, "click_id")), data.get("click_time"), account_id=data.get("account_id")
        )
        return json_response({"click_id": data["click_id"], "click_time": when.isoformat()}, 201)
    if (path, method) == ("tags", "POST"):
        data = _body(request)
        tag = emulator.add_uet_tag(
            str(_require(data, "tag_id")),
            data.get("token"),
            account_id=data.get("account_id"),
            tracking_status=str(data.get("tracking_status") or "Active"),
        )
        return json_response({"tag_id": tag.tag_id, "token": tag.token, "account_id": tag.account_id}, 201)
    if path.startswith("accounts/") and path.endswith("/properties") and method in ("GET", "PATCH", "POST"):
        # /_emulator/accounts/<account ID>/properties (the main account also as "default").
        named = path.split("/")[1]
        account_id = None if named == "default" else named
        if method == "GET":
            return json_response(emulator.account_properties(account_id))
        return json_response(emulator.set_account_properties(_body(request), account_id=account_id))
    if (path, method) == ("accounts", "POST"):
        data = _body(request)
        account = emulator.add_account(str(_require(data, "customer_id")), str(_require(data, "account_id")))
        return json_response({"customer_id": account.customer_id, "account_id": account.account_id}, 201)
    if path == "faults":
        if method == "GET":
            return json_response(emulator.faults())
        if method == "POST":
            data = _body(request)
            rule = emulator.inject_fault(
                str(_require(data, "endpoint")),
                str(_require(data, "kind")),
                **{k: v for k, v in data.items() if k not in ("endpoint", "kind")},
            )
            return json_response(rule.to_json(), 201)
        if method == "DELETE":
            rule_id = args.get("id", type=int)
            return json_response({"removed": emulator.clear_faults(rule_id, endpoint=args.get("endpoint"))})
    if (path, method) == ("tokens", "GET"):
        return json_response([r.to_json() for r in emulator.token_log()])
    if (path, method) == ("tokens/revoke", "POST"):
        return json_response({"revoked": emulator.revoke_refresh_tokens(_body(request).get("refresh_token"))})
    if (path, method) == ("tokens/expire", "POST"):
        return json_response({"expired": emulator.expire_access_tokens(_body(request).get("access_token"))})
    if (path, method) == ("tokens/issue", "POST"):
        return json_response({"refresh_token": emulator.issue_refresh_token()}, 201)
    raise NotFound(f"no control route {method} /_emulator/{path}")
