"""What every recorded event starts from: its checked ID, who it is about under consent, its idempotency key.

The recording recipe (``recording.py``) uses these for all four kinds, so the rules live once: an event ID
is a non-empty string of at most 255 characters; a click is a ``Click``, a valid click-ID string or
``None``; a denied consent snapshot drops the click ID and identifiers and says so in the stored snapshot;
an event left with nothing to match on is stored ``suppressed``, never sent; the key is a SHA-256 of exactly
the fields Microsoft de-duplicates on.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Required, TypedDict

from msclkid_middleware.capture.clickid import Click, validate_click_id
from msclkid_middleware.capture.consent import Consent
from msclkid_middleware.conversions import AdjustmentType, format_time
from msclkid_middleware.dispatch.status import Code
from msclkid_middleware.errors import UnknownGoal, ValidationError

__all__ = [
    "MAX_EVENT_ID",
    "NO_MATCH_KEY",
    "ClickLike",
    "OfflineArguments",
    "Subject",
    "adjustment_key",
    "check_event_id",
    "check_goal",
    "click_id",
    "digest",
    "offline_key",
]

ClickLike = Click | str | None
MAX_EVENT_ID = 255
#: Why an offline conversion without a click and without email/phone is refused (``record_offline``, the CSV tools).
NO_MATCH_KEY = "give a click (or its msclkid) or the customer's email or phone"


class OfflineArguments(TypedDict, total=False):
    """The arguments of ``record_offline`` but ``connection``, by name: what ``offline_row`` takes (bulk imports)."""

    event_id: Required[str]
    conversion_name: Required[str]
    conversion_time: Required[datetime]
    value: float | None
    currency: str | None
    click: ClickLike
    email: str | None
    phone: str | None
    consent: Consent | None
    hashed_email: str | None
    hashed_phone: str | None
    external_attribution_credit: float | None
    external_attribution_model: str | None


def digest(kind: str, *parts: object) -> str:
    """The idempotency key: the kind plus a SHA-256 of exactly the fields Microsoft de-duplicates on."""
    canonical = json.dumps(list(parts), separators=(",", ":"), ensure_ascii=False)
    return f"{kind}:{hashlib.sha256(canonical.encode()).hexdigest()}"


def offline_key(account: str, wire: Mapping[str, Any]) -> str:
    """Offline: the click ID (or the hashed identifiers) + ConversionName + ConversionTime, as sent."""
    if wire.get("MicrosoftClickId"):
        match: list[object] = [wire["MicrosoftClickId"]]
    else:
        match = [None, wire.get("HashedEmailAddress"), wire.get("HashedPhoneNumber")]
    return digest("offline", account, *match, wire["ConversionName"], wire["ConversionTime"])


@dataclass(frozen=True, slots=True)
class Subject:
    """Who the event is about, under the consent snapshot: ``granted`` or what was ``dropped``."""

    consent: Consent
    msclkid: str | None
    #: Whether the call gave email/phone (raw or hashed): dropped too when consent is denied.
    identifiers: bool = False

    @property
    def granted(self) -> bool:
        return self.consent.granted

    @property
    def dropped(self) -> tuple[str, ...]:
        if self.consent.granted:
            return ()
        return (*(("msclkid",) if self.msclkid is not None else ()), *(("identifiers",) if self.identifiers else ()))

    def snapshot(self, click: object = None) -> dict[str, Any]:
        """The consent snapshot stored with the row (UET's ``adStorageConsent`` and the report read it)."""
        snap: dict[str, Any] = {"state": self.consent.state, "basis": self.consent.basis}
        if isinstance(click, Click):
            # Provenance of what was captured under this consent; the report uses the click time to warn about
            # conversions uploaded less than an hour after their click (Microsoft advises waiting an hour).
            snap["click_captured_at"] = format_time(click.captured_at)
        if self.dropped:
            snap["dropped"] = list(self.dropped)
            snap["reason"] = f"consent denied ({self.consent.basis})"
        return snap

    def suppression(self, *, matchable: bool) -> dict[str, Any]:
        """Row fields for an event with nothing left to match on: stored for the record, never sent."""
        if matchable:
            return {}
        if not self.granted:
            message = f"consent denied ({self.consent.basis}): no click ID or identifier may be sent"
            return {"state": "suppressed", "error_code": Code.CONSENT_DENIED, "error_message": message}
        return {
            "state": "suppressed",
            "error_code": Code.NO_IDENTIFIER,
            "error_message": "nothing to match the event on",
        }


def check_event_id(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValidationError("event_id", "must be a non-empty string (for example your order ID)")
    if len(value) > MAX_EVENT_ID:
        raise ValidationError("event_id", f"must be at most {MAX_EVENT_ID} characters")
    return value


def check_goal(name: object, goals: tuple[str, ...]) -> str:
    """The conversion name, when it is a string and (with ``goals`` configured) one of them exactly."""
    if not isinstance(name, str):
        raise ValidationError("conversion_name", "must be a string")
    if goals and name not in goals:
        raise UnknownGoal(len(name), goals)
    return name


def click_id(click: object) -> str | None:
    if click is None:
        return None
    if isinstance(click, Click):
        return click.msclkid
    if isinstance(click, str):
        try:
            return validate_click_id(click)
        except ValidationError as exc:
            raise ValidationError("click", exc.reason) from None
    raise ValidationError("click", "must be a Click, a click ID string or None")


def adjustment_key(wire: Mapping[str, Any], adjustment_type: AdjustmentType) -> tuple[object, ...]:
    """The key fields both adjustment kinds share: type, time, value and currency as sent."""
    return (
        adjustment_type,
        wire["AdjustmentTime"],
        wire.get("AdjustmentValue"),
        wire.get("AdjustmentCurrencyCode"),
    )
