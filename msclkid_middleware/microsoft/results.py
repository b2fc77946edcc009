"""Per-item outcomes of Microsoft calls: plain frozen values, free of the HTTP layer (the outbox stores them)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

__all__ = ["ApplyResult", "ItemResult", "UetEventResult", "UetIssue"]


@dataclass(frozen=True, slots=True)
class ItemResult:
    """The outcome of one item of a Campaign Management Apply call.

    ``accepted`` means Microsoft did not name the item in ``PartialErrors``; it does not prove attribution
    (a valid but unknown click ID is "accepted" too).  A rejected item carries Microsoft's numeric ``code``,
    symbolic ``error_code``, ``message``, ``field_path`` and ``details``.  ``tracking_id`` identifies the
    request that decided the outcome.
    """

    index: int
    accepted: bool
    code: int | None = None
    error_code: str | None = None
    message: str | None = None
    field_path: str | None = None
    details: str | None = None
    tracking_id: str | None = None


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """One :class:`ItemResult` per input item, in input order, plus the TrackingId of every request sent."""

    items: tuple[ItemResult, ...]
    tracking_ids: tuple[str, ...]

    def __iter__(self) -> Iterator[ItemResult]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> ItemResult:
        return self.items[index]

    @property
    def accepted(self) -> tuple[ItemResult, ...]:
        return tuple(item for item in self.items if item.accepted)

    @property
    def rejected(self) -> tuple[ItemResult, ...]:
        return tuple(item for item in self.items if not item.accepted)


@dataclass(frozen=True, slots=True)
class UetIssue:
    """One ``error.details[]`` entry of a UET CAPI response (an error or, with ``is_warning``, a warning)."""

    error_code: str | None
    property_name: str | None
    message: str | None
    is_warning: bool = False


@dataclass(frozen=True, slots=True)
class UetEventResult:
    """The outcome of one UET CAPI event, in input order.

    ``delivered`` events may carry ``warnings`` (Microsoft removed those fields and kept the event: partial
    data loss worth recording).  ``rejected`` events carry the first error's ``error_code``,
    ``property_name`` (relative to the event: ``userData.em``) and ``message``.
    """

    index: int
    event_id: str | None
    status: Literal["delivered", "rejected"]
    warnings: tuple[UetIssue, ...] = ()
    error_code: str | None = None
    property_name: str | None = None
    message: str | None = None

    @property
    def delivered(self) -> bool:
        return self.status == "delivered"
