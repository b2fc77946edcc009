"""What dispatch needs from its collaborators, as small protocols the Microsoft clients satisfy.

The dispatcher and tracker accept any object with these methods (a custom or fake client), so ``dispatch/``
never depends on the HTTP layer: the built-in clients are only imported when the tracker builds them from
settings.  The tracker checks a client against its protocol once, at construction (never per item).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Protocol, runtime_checkable

from msclkid_middleware.microsoft.results import ApplyResult, UetEventResult

__all__ = ["CampaignClient", "GoalAges", "TokenRefresher", "UetSender", "WirePayload"]

#: One wire item as stored in the outbox and sent as it is.
WirePayload = Mapping[str, object]


@runtime_checkable
class CampaignClient(Protocol):
    """The three Campaign Management Apply calls (``CampaignManagementClient``): one result per item, in order."""

    def apply_offline_conversions(self, items: Sequence[WirePayload], /) -> ApplyResult: ...

    def apply_offline_conversion_adjustments(self, items: Sequence[WirePayload], /) -> ApplyResult: ...

    def apply_online_conversion_adjustments(self, items: Sequence[WirePayload], /) -> ApplyResult: ...


@runtime_checkable
class UetSender(Protocol):
    """UET CAPI (``UetClient``): one result per event, in order."""

    def send_events(self, tag_id: str, events: Sequence[WirePayload], /) -> list[UetEventResult]: ...


class TokenRefresher(Protocol):
    """Probed to resume accounts paused for re-consent (``RefreshTokenProvider``); raises while still refused."""

    def force_refresh(self) -> object: ...


class GoalAges(Protocol):
    """When a goal becomes old enough for uploads (``goal_ages.GoalRegistry``); ``None``: unknown."""

    def ready_at(self, account: str, name: str) -> datetime | None: ...
