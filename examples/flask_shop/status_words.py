"""What happened to an order's report to Microsoft, in words a shop owner reads at a glance.

The tracker's :class:`~msclkid_middleware.dispatch.tracker.EventStatus` says where an event stands (``state``,
``last_error_code``, ``attempts``, ``paused_reason``) and lists the restatements/retractions recorded for it.
The shop keeps what it asked for in each adjustment (the restated value), so a line reads
"restated to 8.50: delivered" rather than "offline_adjustment delivered", and a sale the visitor did not allow
to be reported reads "not sent: visitor refused consent".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Protocol

__all__ = ["StatusLike", "describe", "event_words"]

#: Why the tracker suppressed an event (EventStatus.last_error_code), as the visitor or the owner would say it.
SUPPRESSED = {
    "consent_denied": "not sent: visitor refused consent",
    "no_identifier": "not sent: no ad click, email or phone to match it on",
}


class StatusLike(Protocol):
    """The fields of EventStatus these words use (a Protocol keeps the shop off the tracker's internals)."""

    @property
    def state(self) -> str: ...
    @property
    def attempts(self) -> int: ...
    @property
    def last_error_code(self) -> str | None: ...
    @property
    def paused_reason(self) -> str | None: ...
    @property
    def idempotency_key(self) -> str: ...


def event_words(status: StatusLike) -> str:
    """One event's state: "delivered", "waiting to be sent", "rejected by Microsoft (code 1234)" ..."""
    state, code = status.state, status.last_error_code
    if state == "delivered":
        return "delivered"
    if state == "suppressed":
        return SUPPRESSED.get(code or "", f"not sent ({code or 'suppressed'})")
    if state == "pending":
        if status.attempts and code:
            return f"waiting to retry (last try: {code})"
        return "waiting to be sent"
    if state == "in_flight":
        return "being sent"
    if state == "rejected":
        return f"rejected by Microsoft (code {code})" if code else "rejected by Microsoft"
    if state == "dead":
        return f"gave up after {status.attempts} tries ({code})" if code else f"gave up after {status.attempts} tries"
    if state == "paused":
        return f"paused: {status.paused_reason or code or 'waiting for the operator'}"
    return state


def describe(
    sale: StatusLike | None,
    adjustments: Sequence[StatusLike] = (),
    asked: Mapping[str, Decimal | None] | None = None,
) -> list[str]:
    """Lines for an order: the sale's state, then each adjustment oldest first ("restated to 8.50: delivered").

    ``asked`` is the shop's own record of its adjustments: idempotency key -> the value the sale was restated to,
    or None for a retraction.
    """
    if sale is None:
        return ["not recorded"]
    lines = [event_words(sale)]
    known = asked or {}
    for adjustment in adjustments:
        key = adjustment.idempotency_key
        if key not in known:
            what = "adjusted"
        else:
            value = known[key]
            what = "retracted" if value is None else f"restated to {value:.2f}"
        lines.append(f"{what}: {event_words(adjustment)}")
    return lines
