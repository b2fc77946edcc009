"""What the shop sees of an event (``EventStatus``) and the outcome codes the toolkit itself writes.

Readers compare codes (``status.last_error_code == Code.ATTEMPTS_EXHAUSTED``), never message text.
Microsoft's own codes (``"5604 OfflineConversionMicrosoftClickIdInvalid"``) travel in the same field.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from enum import StrEnum

from msclkid_middleware.outbox.base import Kind, OutboxRow, State

__all__ = ["Code", "EventStatus"]


class Code(StrEnum):
    """``last_error_code`` values the toolkit writes (a ``str``: rows store and compare them as text)."""

    #: Every attempt (or the policy's retry horizon) was spent on a retryable failure.
    ATTEMPTS_EXHAUSTED = "attempts_exhausted"
    #: Microsoft's window closed (offline older than 90 days, UET older than 7 days).
    EXPIRED = "expired"
    #: Held: the event time is ahead of our clock.
    FUTURE_TIME = "future_time"
    #: Held: the conversion goal is younger than two hours.
    GOAL_TOO_NEW = "goal_too_new"
    #: Paused: the refresh token was refused; ``msclkid auth`` resumes.
    RECONSENT_REQUIRED = "reconsent_required"
    #: A whole request failed on our side: a configuration gap, or a custom client's own exception.
    CONFIG_ERROR = "config_error"
    CLIENT_ERROR = "client_error"
    #: An adjustment whose original was never delivered.
    ORIGINAL_NOT_DELIVERED = "original_not_delivered"
    #: Suppressed at record time: consent denied, or nothing to match the event on.
    CONSENT_DENIED = "consent_denied"
    NO_IDENTIFIER = "no_identifier"


@dataclass(frozen=True, slots=True)
class EventStatus:
    """Where an event stands.  ``adjustments`` lists restates/retracts recorded for it, oldest first.

    ``created`` is False when the ``record_*`` call that returned this found the event already recorded
    (a no-op).  ``next_attempt_at`` is set only while the event is pending.
    """

    event_id: str
    kind: Kind
    state: State
    attempts: int
    last_error_code: str | None
    last_error_message: str | None
    tracking_id: str | None
    next_attempt_at: datetime | None
    paused_reason: str | None
    warnings: tuple[str, ...]
    idempotency_key: str
    created_at: datetime
    updated_at: datetime
    delivered_at: datetime | None
    adjustments: tuple[EventStatus, ...] = ()
    created: bool = True

    @property
    def delivered(self) -> bool:
        return self.state == "delivered"

    @property
    def final(self) -> bool:
        return self.state in ("delivered", "rejected", "dead", "suppressed")

    @property
    def exhausted(self) -> bool:
        """Dead because retries ran out (not because Microsoft refused the event)."""
        return self.state == "dead" and self.last_error_code == Code.ATTEMPTS_EXHAUSTED

    @classmethod
    def from_row(
        cls, row: OutboxRow, *, adjustments: tuple[EventStatus, ...] = (), created: bool = True
    ) -> EventStatus:
        copied = {name: getattr(row, name) for name in _FROM_ROW}
        # A retry time means something only while the event waits for it.
        copied["next_attempt_at"] = row.next_attempt_at if row.state == "pending" else None
        return cls(**copied, adjustments=adjustments, created=created)


#: The fields an EventStatus takes from its outbox row as they are (OutboxRow has each: tests/dispatch/test_status.py).
_FROM_ROW = tuple(f.name for f in fields(EventStatus) if f.name not in ("next_attempt_at", "adjustments", "created"))
