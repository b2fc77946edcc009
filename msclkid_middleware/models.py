"""Values that travel from capture to Microsoft: frozen, slotted, validated on construction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from .errors import ValidationError

__all__ = ["Click", "ClickSource"]

#: Where a click came from: the landing URL, the browser snippet, our own signed cookie,
#: UET's ``_uetmsclkid`` cookie, or the server-side profile store.
ClickSource = Literal["url", "snippet", "cookie", "uet_cookie", "profile"]
_SOURCES = frozenset({"url", "snippet", "cookie", "uet_cookie", "profile"})


@dataclass(frozen=True, slots=True)
class Click:
    """A Microsoft Ads click: its ``msclkid``, when we captured it (aware UTC) and from where."""

    msclkid: str
    captured_at: datetime
    source: ClickSource = "url"

    def __post_init__(self) -> None:
        # Imported here so ``models`` and ``clickid`` can refer to each other without a cycle.
        from .clickid import validate_click_id

        validate_click_id(self.msclkid)
        if not isinstance(self.captured_at, datetime) or self.captured_at.utcoffset() is None:
            raise ValidationError("captured_at", "must be a timezone-aware datetime")
        if self.captured_at.utcoffset():
            object.__setattr__(self, "captured_at", self.captured_at.astimezone(UTC))
        if self.source not in _SOURCES:
            raise ValidationError("source", f"must be one of {sorted(_SOURCES)}")
