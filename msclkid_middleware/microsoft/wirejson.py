"""Wire items already encoded as JSON: the outbox stores each item so, and a request body splices them in as they are.

A flush of 1,000 stored conversions used to decode every payload into a dict and have ``requests`` encode it
again; a :class:`WireJson` item skips both.  The clients accept it wherever they accept a wire dict.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["WireJson", "json_array", "json_object"]


class WireJson(str):
    """One wire item as compact JSON text (an object), trusted as it is: it was encoded by us when recorded."""

    __slots__ = ()

    def decoded(self) -> dict[str, Any]:
        """The item as a dict (for the rare answer that needs a field of it, such as a rejected UET event's ID)."""
        value = json.loads(self)
        return value if isinstance(value, dict) else {}


def _encode(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def json_array(items: Sequence[Mapping[str, Any] | WireJson]) -> str:
    """The JSON array of ``items``: stored JSON spliced in as it is, dicts encoded."""
    return "[" + ",".join(item if isinstance(item, WireJson) else _encode(item) for item in items) + "]"


def json_object(fields: Mapping[str, Any], items_key: str, items: Sequence[Mapping[str, Any] | WireJson]) -> str:
    """A request body: ``{items_key: [...items], **fields}`` with the items spliced in by :func:`json_array`."""
    parts = [f"{_encode(items_key)}:{json_array(items)}"]
    parts.extend(f"{_encode(key)}:{_encode(value)}" for key, value in fields.items())
    return "{" + ",".join(parts) + "}"
