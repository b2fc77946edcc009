"""Campaign Management v13 account properties: is auto-tagging of ``msclkid`` on, and turning it on (issue 20).

``GetAccountProperties`` (``POST .../AccountProperties/Query``) and ``SetAccountProperties``
(``POST .../AccountProperties/Set``), shapes as in Microsoft's REST SDK (``msads``): property names are
``AccountPropertyName`` values, values are strings (``"True"``/``"False"`` for the switches).  Without
``MSCLKIDAutoTaggingEnabled`` Microsoft adds no ``msclkid`` to landing-page URLs, so nothing can be captured and no
offline conversion can match a click: the most common cause of "uploaded but not counted" on Microsoft's side.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from msclkid_middleware.errors import ApiFault, ConfigError
from msclkid_middleware.microsoft.campaign import CampaignManagementClient
from msclkid_middleware.microsoft.faults import error_from_fault, unwrap_fault

__all__ = ["AUTO_TAGGING", "AccountClient", "parse_bool"]

#: ``AccountPropertyName`` of msclkid auto-tagging.
AUTO_TAGGING = "MSCLKIDAutoTaggingEnabled"


def parse_bool(value: Any) -> bool | None:
    """A property value as a bool (.NET writes ``True``/``False``); ``None`` when it is neither."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return None


class AccountClient:
    """Account properties of the account of ``campaign`` (a :class:`CampaignManagementClient`)."""

    def __init__(self, campaign: object) -> None:
        if not isinstance(campaign, CampaignManagementClient):
            raise ConfigError("account properties need the built-in CampaignManagementClient", setting="microsoft")
        self.campaign = campaign

    def __repr__(self) -> str:
        return f"AccountClient({self.campaign!r})"

    def _call(self, operation: str, payload: Mapping[str, Any]) -> Mapping[str, Any]:
        status, body, tracking_id, wait = self.campaign.post_operation(operation, dict(payload))
        if status == 200 and (body is None or isinstance(body, Mapping)) and unwrap_fault(body) is None:
            return body or {}
        raise error_from_fault(status, body, tracking_id=tracking_id, retry_after=wait, what=operation)

    def get_properties(self, names: Iterable[str]) -> dict[str, str | None]:
        """``GetAccountProperties``: name -> value (``None`` when Microsoft returned no value for it)."""
        wanted = list(dict.fromkeys(names))
        if not wanted:
            return {}
        body = self._call("AccountProperties/Query", {"AccountPropertyNames": wanted})
        errors = [e for e in body.get("PartialErrors") or () if isinstance(e, Mapping)]
        if errors:
            first = errors[0]
            raise ApiFault(
                f"AccountProperties/Query: {first.get('Message') or 'error'}",
                code=first.get("Code") if isinstance(first.get("Code"), int) else None,
                error_code=str(first.get("ErrorCode") or "") or None,
                details=tuple(dict(e) for e in errors),
            )
        found: dict[str, str | None] = dict.fromkeys(wanted)
        for item in body.get("AccountProperties") or ():
            if isinstance(item, Mapping) and item.get("Name") in found:
                value = item.get("Value")
                found[str(item["Name"])] = None if value is None else str(value)
        return found

    def set_properties(self, values: Mapping[str, str | bool]) -> None:
        """``SetAccountProperties``: all or nothing (Microsoft: "Partial success is not supported")."""
        items = [
            {"Name": name, "Value": ("True" if value else "False") if isinstance(value, bool) else value}
            for name, value in values.items()
        ]
        if items:
            self._call("AccountProperties/Set", {"AccountProperties": items})

    def uet_tag_status(self, tag_id: str | int) -> str | None:
        """``GetUetTagsByIds``: the tag's ``TrackingStatus`` (Unverified, Active, Inactive); ``None`` if not found."""
        body = self._call("UetTags/QueryByIds", {"TagIds": [str(tag_id)]})
        for tag in body.get("UetTags") or ():
            if isinstance(tag, Mapping) and str(tag.get("Id")) == str(tag_id):
                return str(tag.get("TrackingStatus") or "Unverified")
        return None

    def auto_tagging_enabled(self) -> bool | None:
        """``MSCLKIDAutoTaggingEnabled`` as a bool (``None``: Microsoft gave no readable value)."""
        return parse_bool(self.get_properties([AUTO_TAGGING]).get(AUTO_TAGGING))

    def enable_auto_tagging(self) -> None:
        """Turn msclkid auto-tagging on (``SetAccountProperties``)."""
        self.set_properties({AUTO_TAGGING: True})
