"""When a conversion goal was created, so conversions for a goal younger than two hours are held back.

Microsoft: "After creating an OfflineConversionGoal, you'll need to wait two hours before sending Microsoft
Advertising any offline conversions. If you do not wait two hours, then your offline conversion data might not
be applied" (and error 5615).  The Campaign Management API does not return a goal's creation time, so the
toolkit remembers the goals it creates (``msclkid goals create``) or is told about, in the outbox database
(the store's named-record table that also keeps the refresh token), so every worker process sees the same
answer.  The dispatcher asks :meth:`GoalRegistry.ready_at` before sending and keeps rows for a young goal
pending until it is old enough; nothing is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from msclkid_middleware.microsoft.limits import GOAL_MIN_AGE
from msclkid_middleware.outbox.base import OutboxStore, TokenRecord

__all__ = ["GOAL_MIN_AGE", "GoalRecord", "GoalRegistry"]

_PREFIX = "goal:"


# Alike in shape to ops.doctor's Check (a small frozen record, one optional field last): coincidence, nothing to share.
@dataclass(frozen=True, slots=True)
class GoalRecord:
    """What the toolkit knows about a goal it created: name, Microsoft's ID and creation time (UTC)."""

    account: str
    name: str
    created_at: datetime
    goal_id: str | None = None

    @property
    def ready_at(self) -> datetime:
        return self.created_at + GOAL_MIN_AGE

    def age(self, now: datetime) -> timedelta:
        return now - self.created_at


class GoalRegistry:
    """Goal creation times per ``(account, goal name)`` in ``store``; the first record of a goal wins."""

    def __init__(self, store: OutboxStore) -> None:
        self.store = store

    def __repr__(self) -> str:
        return f"GoalRegistry({self.store.url!r})"

    @staticmethod
    def _key(account: str, name: str) -> str:
        return f"{_PREFIX}{account}:{name}"

    def record(self, account: str, name: str, created_at: datetime, goal_id: str | None = None) -> GoalRecord:
        """Remember that ``name`` was created at ``created_at``; returns the stored record (an earlier one wins)."""
        existing = self.get(account, name)
        if existing is not None:
            return existing
        when = created_at.astimezone(UTC)
        data = {"goal_id": goal_id, "account": account, "name": name}
        # The record table never regresses; serial 1 and the creation time make the first write final.
        self.store.save_token(self._key(account, name), TokenRecord("-", when, 1, data))
        return self.get(account, name) or GoalRecord(account, name, when, goal_id)

    def get(self, account: str, name: str) -> GoalRecord | None:
        record = self.store.load_token(self._key(account, name))
        if record is None:
            return None
        goal_id = record.data.get("goal_id")
        return GoalRecord(account, name, record.issued_at.astimezone(UTC), str(goal_id) if goal_id else None)

    def ready_at(self, account: str, name: str) -> datetime | None:
        """When conversions for this goal may be sent; ``None`` when the goal's creation time is unknown."""
        record = self.get(account, name)
        return None if record is None else record.ready_at
