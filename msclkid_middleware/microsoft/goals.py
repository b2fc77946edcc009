"""Campaign Management v13 REST: conversion goals, Microsoft's offline conversion diagnostics, the UET auth key.

Built on :class:`~.campaign.CampaignManagementClient` (same session, headers, token refresh on 109/401 and
fault mapping).  Paths and JSON shapes follow Microsoft's REST SDK (``msads``): ``POST .../ConversionGoals``
(add), ``.../ConversionGoals/QueryByIds``, ``.../OfflineConversionReport/QueryByGoalIds`` (at most 7 days and
20 goal IDs per call: this client splits longer ranges and longer lists and merges the answers),
``.../OfflineConversionReports/Query`` and ``.../UetTagAuthKey/Query``.  IDs and some counts are JSON strings
in the SDK's models; both strings and numbers are accepted.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal

from msclkid_middleware.errors import ApiFault, ConfigError, ValidationError
from msclkid_middleware.microsoft.campaign import CampaignManagementClient
from msclkid_middleware.microsoft.faults import error_from_fault, unwrap_fault
from msclkid_middleware.microsoft.goal_update import GoalUpdate
from msclkid_middleware.microsoft.result_files import parse_utc

__all__ = [
    "MAX_REPORT_DAYS",
    "MAX_REPORT_GOALS",
    "UNATTRIBUTED_HINTS",
    "ConversionGoal",
    "DailyUploadSummary",
    "GoalConversionSummary",
    "GoalDay",
    "GoalUpdate",
    "GoalsClient",
    "report_windows",
]

log = logging.getLogger("msclkid_middleware.microsoft.goals")

#: ``GetOfflineConversionReportByGoalIds``: "Date range up to 7 days; up to 20 goal IDs".
MAX_REPORT_DAYS = 7
MAX_REPORT_GOALS = 20
RevenueType = Literal["FixedValue", "VariableValue", "NoValue"]
_FLAGS = ("IsEnhancedConversionsEnabled", "IsExternallyAttributed", "ExcludeFromBidding", "IsAutoGoal")
_REVENUE_TYPES: tuple[RevenueType, ...] = ("FixedValue", "VariableValue", "NoValue")
_ADDITIONAL_FIELDS = (
    "GoalCategory,IsEnhancedConversionsEnabled,IsExternallyAttributed,ViewThroughConversionWindowInMinutes,"
    "AttributionModelType,IsAutoGoal"
)

#: A plain-language hint per ``OfflineConversionUnattributedReason`` (reference §1.2, §4).
UNATTRIBUTED_HINTS: Mapping[str, str] = {
    "NoMatchingClickFound": "the click ID is unknown to this account: a test ID, a click of another account, "
    "or a click that was not a Microsoft Ads click",
    "DuplicateConversionKey": "sent twice with the same click ID, name and time: only the first counts "
    "(harmless after retries)",
    "GoalNotFoundOrInactive": "no active offline goal has exactly this name (check spelling, case, status)",
    "OutsideGoalLookbackWindow": "the conversion came later after the click than the goal's conversion window",
    "ConversionTimeExceedsMaxLookback": "the conversion is older than 90 days",
    "ConversionTimeInFuture": "the conversion time is in the future: check time zones (send UTC)",
    "ClickTimestampAfterConversion": "the conversion time is before the click: check time zones (send UTC)",
    "MissingMatchIdentifiers": "neither a click ID nor hashed email/phone was sent",
    "AccountMismatch": "the click belongs to another account: upload to the account that owns the click",
    "MalformedData": "a field was invalid (see the rejected rows in `msclkid report`)",
    "HistoricalClickDataExpired": "the click is too old for Microsoft to match",
    "AdjustmentOriginalNotFound": "the restate/retract names a conversion Microsoft never counted",
    "ConversionAlreadyRetracted": "the conversion was retracted before",
    "Unknown": "Microsoft gives no reason",
}


def _int(value: Any) -> int:
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return 0


def _float(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(str(value))
    except ValueError:
        return None


def _str(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def _date(value: Any) -> date | None:
    if not isinstance(value, str) or len(value) < 10:
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


def _wire_time(value: datetime) -> str:
    if value.utcoffset() is None:
        raise ValidationError("date", "must be timezone-aware")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class ConversionGoal:
    """A conversion goal as Campaign Management holds it (the fields an operator checks).

    ``id`` is ``None`` for a goal not created yet.  ``revenue_type``: ``FixedValue`` (``revenue_value`` is
    the value), ``VariableValue`` (the upload's value, ``revenue_value`` the default) or ``NoValue``.
    ``enhanced`` is ``IsEnhancedConversionsEnabled`` (``None`` when Microsoft did not say); so are the read-only
    extras ``exclude_from_bidding``, ``attribution_model``, ``view_through_window_minutes`` and ``is_auto_goal``
    (Microsoft: the last three are "not applicable for offline conversion goals"; ``goals list`` shows them).
    """

    # Alike in shape to other records of optional strings (capture.request's RequestFacts): other concepts.
    name: str
    type: str = "OfflineConversion"
    id: str | None = None
    status: str = "Active"
    scope: str = "Account"
    count_type: str = "All"
    revenue_type: RevenueType = "VariableValue"
    revenue_value: float | None = None
    currency: str | None = None
    conversion_window_minutes: int = 43200
    category: str | None = "Purchase"
    enhanced: bool | None = None
    externally_attributed: bool | None = None
    tag_id: str | None = None
    tracking_status: str | None = None
    exclude_from_bidding: bool | None = None
    attribution_model: str | None = None
    view_through_window_minutes: int | None = None
    is_auto_goal: bool | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip() or len(self.name) > 100:
            raise ValidationError("name", "a goal name is 1-100 characters")
        if self.revenue_type not in ("FixedValue", "VariableValue", "NoValue"):
            raise ValidationError("revenue_type", "must be FixedValue, VariableValue or NoValue")
        if self.count_type not in ("All", "Unique"):
            raise ValidationError("count_type", "must be All or Unique")
        if not 1 <= self.conversion_window_minutes <= 129600:
            raise ValidationError("conversion_window_minutes", "must be between 1 and 129600 (90 days)")
        if self.revenue_value is not None and self.revenue_value < 0:
            raise ValidationError("revenue_value", "must not be negative")

    @property
    def active(self) -> bool:
        return self.status == "Active"

    def to_wire(self) -> dict[str, Any]:
        """The ``ConversionGoal`` object of ``AddConversionGoals``."""
        revenue: dict[str, Any] = {"Type": self.revenue_type}
        if self.revenue_type != "NoValue":
            revenue["CurrencyCode"] = self.currency
            revenue["Value"] = self.revenue_value
        wire: dict[str, Any] = {
            "Type": self.type,
            "Name": self.name,
            "Status": self.status,
            "Scope": self.scope,
            "CountType": self.count_type,
            "Revenue": revenue,
            "ConversionWindowInMinutes": self.conversion_window_minutes,
            "GoalCategory": self.category,
        }
        if self.enhanced is not None:
            wire["IsEnhancedConversionsEnabled"] = self.enhanced
        if self.externally_attributed is not None and self.type == "OfflineConversion":
            wire["IsExternallyAttributed"] = self.externally_attributed
        if self.tag_id is not None:
            wire["TagId"] = self.tag_id
        return wire

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> ConversionGoal:
        revenue = data.get("Revenue") if isinstance(data.get("Revenue"), Mapping) else {}
        assert isinstance(revenue, Mapping)  # noqa: S101 - narrowed above
        raw_type = revenue.get("Type") or "VariableValue"
        revenue_type: RevenueType = raw_type if raw_type in _REVENUE_TYPES else "NoValue"
        window = _int(data.get("ConversionWindowInMinutes")) or 43200
        flags = {k: v if isinstance(v := data.get(k), bool) else None for k in _FLAGS}
        view = data.get("ViewThroughConversionWindowInMinutes")
        return cls(
            name=str(data.get("Name") or "?"),
            type=str(data.get("Type") or "OfflineConversion"),
            id=_str(data.get("Id")),
            status=str(data.get("Status") or "Active"),
            scope=str(data.get("Scope") or "Account"),
            count_type=str(data.get("CountType") or "All") if data.get("CountType") in ("All", "Unique") else "All",
            revenue_type=revenue_type,
            revenue_value=_float(revenue.get("Value")),
            currency=_str(revenue.get("CurrencyCode")),
            conversion_window_minutes=min(max(window, 1), 129600),
            category=_str(data.get("GoalCategory")),
            enhanced=flags["IsEnhancedConversionsEnabled"],
            externally_attributed=flags["IsExternallyAttributed"],
            tag_id=_str(data.get("TagId")),
            tracking_status=_str(data.get("TrackingStatus")),
            exclude_from_bidding=flags["ExcludeFromBidding"],
            attribution_model=_str(data.get("AttributionModelType")),
            view_through_window_minutes=_int(view) if view is not None else None,
            is_auto_goal=flags["IsAutoGoal"],
        )


@dataclass(frozen=True, slots=True)
class GoalDay:
    """One upload day of one goal in Microsoft's diagnostics."""

    upload_date: date | None
    success: int
    unattributed: int
    alerts: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class GoalConversionSummary:
    """Microsoft's verdict on one goal's uploads: counted (``success``) and not counted, by reason."""

    goal_id: str
    conversion_name: str | None
    success: int
    unattributed: int
    alerts: Mapping[str, int] = field(default_factory=dict)
    days: tuple[GoalDay, ...] = ()

    @property
    def total(self) -> int:
        return self.success + self.unattributed

    @property
    def success_rate(self) -> float:
        return self.success / self.total if self.total else 0.0

    def merged(self, other: GoalConversionSummary) -> GoalConversionSummary:
        alerts: Counter[str] = Counter(self.alerts)
        alerts.update(other.alerts)
        return GoalConversionSummary(
            self.goal_id,
            self.conversion_name or other.conversion_name,
            self.success + other.success,
            self.unattributed + other.unattributed,
            dict(alerts),
            tuple(sorted((*self.days, *other.days), key=lambda d: d.upload_date or date.min)),
        )

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> GoalConversionSummary:
        days = []
        for day in data.get("DailySummaries") or ():
            if isinstance(day, Mapping):
                days.append(
                    GoalDay(
                        _date(day.get("UploadDate")),
                        _int(day.get("SuccessCount")),
                        _int(day.get("UnattributedCount")),
                        _alerts(day.get("Alerts")),
                    )
                )
        return cls(
            goal_id=str(data.get("GoalId") or ""),
            conversion_name=_str(data.get("ConversionName")),
            success=_int(data.get("OverallSuccessCount")),
            unattributed=_int(data.get("OverallUnattributedCount")),
            alerts=_alerts(data.get("OverallAlerts")),
            days=tuple(days),
        )


def _alerts(value: Any) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for alert in value or ():
        if isinstance(alert, Mapping) and alert.get("UnattributedReason"):
            counts[str(alert["UnattributedReason"])] += _int(alert.get("Count"))
    return dict(counts)


@dataclass(frozen=True, slots=True)
class DailyUploadSummary:
    """One day of ``GetOfflineConversionReports``.  ``has_file``: Microsoft offers a result file (its URL
    is a signed link, so it is kept out of printed output) until ``file_expires_at`` (``FileUrlExpiryTimeUtc``)."""

    upload_date: date | None
    success: int
    failure: int
    has_file: bool = False
    file_url: str | None = field(default=None, repr=False)
    file_expires_at: datetime | None = None


def report_windows(start: datetime, end: datetime) -> Iterator[tuple[datetime, datetime]]:
    """Whole UTC days from ``start``'s day to ``end``'s day, in windows of at most 7 days that never share a day.

    Microsoft reports per upload day; day-aligned windows make every day appear in exactly one answer.
    """
    if end < start:
        raise ValidationError("since", "the start of the report is after its end")
    first, last = start.astimezone(UTC).date(), end.astimezone(UTC).date()
    while first <= last:
        window_last = min(last, first + timedelta(days=MAX_REPORT_DAYS - 1))
        yield (
            datetime.combine(first, time(0, 0), UTC),
            datetime.combine(window_last, time(23, 59, 59), UTC),
        )
        first = window_last + timedelta(days=1)


def _chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for index in range(0, len(items), size):
        yield items[index : index + size]


class GoalsClient:
    """Conversion goals and diagnostics for the account of ``campaign`` (a :class:`CampaignManagementClient`)."""

    def __init__(self, campaign: object) -> None:
        # Checked once here: a tracker's client may be any object with the three Apply calls, but goals and
        # diagnostics need the built-in client's other operations.
        if not isinstance(campaign, CampaignManagementClient):
            raise ConfigError("goals and diagnostics need the built-in CampaignManagementClient", setting="microsoft")
        self.campaign = campaign

    def __repr__(self) -> str:
        return f"GoalsClient({self.campaign!r})"

    # -- plumbing ---------------------------------------------------------------------------------------------

    def _call(self, operation: str, payload: Mapping[str, Any], *, method: str = "POST") -> Mapping[str, Any]:
        status, body, tracking_id, wait = self.campaign.post_operation(operation, dict(payload), method=method)
        if status == 200 and isinstance(body, Mapping) and unwrap_fault(body) is None:
            return body
        raise error_from_fault(status, body, tracking_id=tracking_id, retry_after=wait, what=operation)

    # -- goals ------------------------------------------------------------------------------------------------

    def add_goals(self, goals: Iterable[ConversionGoal]) -> list[tuple[str | None, str | None]]:
        """Create goals; one ``(goal ID, error text)`` per goal in input order (one of the two is ``None``)."""
        wire = [g.to_wire() for g in goals]
        if not wire:
            return []
        body = self._call("ConversionGoals", {"ConversionGoals": wire})
        ids = body.get("ConversionGoalIds") or []
        errors = _errors_by_index(body.get("PartialErrors"))
        out: list[tuple[str | None, str | None]] = []
        for index in range(len(wire)):
            goal_id = _str(ids[index]) if index < len(ids) else None
            error = errors.get(index)
            out.append((None, error) if error is not None or goal_id is None else (goal_id, None))
            if error is None and goal_id is None:
                out[-1] = (None, "Microsoft returned no ID for this goal")
        return out

    def add_goal(self, goal: ConversionGoal) -> str:
        """Create one goal and return its ID (raises :class:`~msclkid_middleware.errors.ApiFault` with the reason)."""
        [(goal_id, error)] = self.add_goals([goal])
        if goal_id is None:
            raise ApiFault(f"Microsoft did not create goal {goal.name!r}: {error}")
        return goal_id

    def update_goals(self, updates: Iterable[GoalUpdate]) -> list[str | None]:
        """``UpdateConversionGoals`` (``PUT .../ConversionGoals``): one error text or ``None`` per update, in order."""
        wire = [u.to_wire() for u in updates]
        if not wire:
            return []
        body = self._call("ConversionGoals", {"ConversionGoals": wire}, method="PUT")
        errors = _errors_by_index(body.get("PartialErrors"))
        return [errors.get(index) for index in range(len(wire))]

    def list_goals(self, types: str = "OfflineConversion") -> list[ConversionGoal]:
        """Every goal of ``types`` (comma-separated ``ConversionGoalType`` flags) in the account."""
        return self.query_goals((), types=types)

    def query_goals(self, goal_ids: Iterable[str | int], *, types: str = "OfflineConversion") -> list[ConversionGoal]:
        """Goals by ID (an empty list asks for every goal of ``types``); unknown IDs are left out."""
        body = self._call(
            "ConversionGoals/QueryByIds",
            {
                "ConversionGoalIds": [str(i) for i in goal_ids] or None,
                "ConversionGoalTypes": types,
                "ReturnAdditionalFields": _ADDITIONAL_FIELDS,
            },
        )
        return [ConversionGoal.from_wire(g) for g in body.get("ConversionGoals") or () if isinstance(g, Mapping)]

    # -- diagnostics ------------------------------------------------------------------------------------------

    def offline_conversion_report(
        self,
        goal_ids: Iterable[str | int],
        start: datetime,
        end: datetime,
        *,
        upload_channel: str | None = None,
    ) -> dict[str, GoalConversionSummary]:
        """``GetOfflineConversionReportByGoalIds`` for any range and any number of goals, merged per goal ID.

        Calls are made per (window of at most 7 days) x (at most 20 goal IDs).  Goals Microsoft does not
        know are left out (logged); a whole-call failure raises.
        """
        ids = list(dict.fromkeys(str(i) for i in goal_ids))
        merged: dict[str, GoalConversionSummary] = {}
        for window_start, window_end in report_windows(start, end):
            for chunk in _chunks(ids, MAX_REPORT_GOALS):
                payload: dict[str, Any] = {
                    "StartDateUtc": _wire_time(window_start),
                    "EndDateUtc": _wire_time(window_end),
                    "GoalIds": list(chunk),
                }
                if upload_channel is not None:
                    payload["UploadChannelFilter"] = upload_channel
                body = self._call("OfflineConversionReport/QueryByGoalIds", payload)
                for error in body.get("PartialErrors") or ():
                    if isinstance(error, Mapping):
                        log.warning("goal report: %s (index %s)", error.get("Message"), error.get("Index"))
                for item in body.get("OfflineGoalConversionSummaries") or ():
                    if not isinstance(item, Mapping):
                        continue
                    summary = GoalConversionSummary.from_wire(item)
                    known = merged.get(summary.goal_id)
                    merged[summary.goal_id] = summary if known is None else known.merged(summary)
        return merged

    def daily_reports(self, start: datetime, end: datetime) -> list[DailyUploadSummary]:
        """``GetOfflineConversionReports``: per upload day, how many items succeeded and failed."""
        body = self._call(
            "OfflineConversionReports/Query", {"StartDateUtc": _wire_time(start), "EndDateUtc": _wire_time(end)}
        )
        days = []
        for day in body.get("DailySummaries") or ():
            if isinstance(day, Mapping):
                url = _str(day.get("FileUrl"))
                days.append(
                    DailyUploadSummary(
                        _date(day.get("UploadDate")),
                        _int(day.get("SuccessCount")),
                        _int(day.get("FailureCount")),
                        has_file=url is not None,
                        file_url=url,
                        file_expires_at=parse_utc(day.get("FileUrlExpiryTimeUtc")),
                    )
                )
        return sorted(days, key=lambda d: d.upload_date or date.min)

    # -- UET ---------------------------------------------------------------------------------------------------

    def uet_tag_auth_key(self, tag_id: str | int) -> str:
        """The UET Conversions API token of ``tag_id`` (``GetUetTagAuthKey``).

        Microsoft documents two response shapes: ``{"UetTagAuthKey": "..."}`` (service reference, REST SDK)
        and ``{"TagAuthKey": {"AuthKey": "..."}}`` (CAPI guide); both are read.
        """
        body = self._call("UetTagAuthKey/Query", {"UetTagId": str(tag_id)})
        key = _auth_key(body)
        if key is None:
            errors = _errors_by_index(body.get("PartialErrors"))
            reason = next(iter(errors.values()), "the response holds no key")
            raise ApiFault(f"no UET auth key for tag {tag_id}: {reason}")
        return key


def _auth_key(body: Mapping[str, Any]) -> str | None:
    for name in ("UetTagAuthKey", "TagAuthKey"):
        value = body.get(name)
        if isinstance(value, Mapping):
            value = value.get("AuthKey") or value.get("UetTagAuthKey")
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def _errors_by_index(errors: Any) -> dict[int, str]:
    found: dict[int, str] = {}
    for error in errors or ():
        if not isinstance(error, Mapping):
            continue
        index = error.get("Index")
        text = " ".join(
            str(p) for p in (error.get("Code"), error.get("ErrorCode"), error.get("Message"), error.get("Details")) if p
        )
        found.setdefault(index if isinstance(index, int) else 0, text or "error")
    return found
