"""Small response helpers shared by the endpoint modules."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from werkzeug.wrappers import Response

from msclkid_middleware.emulator.faults import FaultRule

__all__ = ["CallContext", "json_response", "read_json"]


@dataclass
class CallContext:
    """What the dispatcher knows about the call a handler is answering."""

    endpoint: str
    tracking_id: str
    faults: list[FaultRule] = field(default_factory=list)
    items: int = 0  # set by handlers: how many items the request carried


def json_response(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    body = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    response = Response(body, status=status, content_type="application/json; charset=utf-8")
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


class BodyError(Exception):
    """The request body is absent or not a JSON document (mapped to each API's own error shape)."""


def read_json(data: bytes) -> Any:
    if not data.strip():
        raise BodyError("empty body")
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BodyError(f"body is not JSON: {exc}") from None
