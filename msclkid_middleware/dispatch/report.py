"""What the dispatcher did: per-process counters (``Metrics``) and the value one drain returns (``DispatchReport``)."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

__all__ = ["DispatchReport", "Metrics"]

#: The report's fields that are not counts of rows or requests.
_NOT_COUNTED = ("remaining", "timed_out")


class Metrics:
    """Thread-safe counters keyed ``outcome`` or ``outcome.reason`` (``rejected.5604``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def add(self, name: str, n: int = 1, *, reason: str | None = None) -> None:
        if n <= 0:
            return
        with self._lock:
            self._counts[name] += n
            if reason:
                self._counts[f"{name}.{reason}"] += n

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(sorted(self._counts.items()))


@dataclass(frozen=True, slots=True)
class DispatchReport:
    """What one or more drain steps did.  ``remaining`` is the open-row count afterwards."""

    claimed: int = 0
    delivered: int = 0
    rejected: int = 0
    retried: int = 0
    dead: int = 0
    paused: int = 0
    released: int = 0
    stale: int = 0
    requests: int = 0
    resumed: int = 0
    remaining: int = 0
    timed_out: bool = False

    @classmethod
    def from_counts(cls, counts: Mapping[str, int], *, remaining: int) -> DispatchReport:
        """The report of ``counts`` keyed by field name (a missing one is 0)."""
        values: dict[str, Any] = {f.name: counts.get(f.name, 0) for f in fields(cls) if f.name not in _NOT_COUNTED}
        return cls(**values, remaining=remaining)

    def __add__(self, other: DispatchReport) -> DispatchReport:
        values = {f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)}
        values["remaining"] = other.remaining
        values["timed_out"] = self.timed_out or other.timed_out
        return DispatchReport(**values)

    @property
    def settled(self) -> int:
        return self.delivered + self.rejected + self.dead

    def summary(self) -> str:
        return (
            f"{self.delivered} delivered, {self.rejected} rejected, {self.dead} dead, {self.retried} to retry,"
            f" {self.paused} paused, {self.remaining} open, {self.requests} requests"
        )
