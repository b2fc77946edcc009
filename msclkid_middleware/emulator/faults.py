"""Fault injection: rules that make an endpoint misbehave, by script ("the next 3 calls") or by chance.

A rule matches an endpoint name (``token``, ``offline``, ``offline_adjustments``, ``online_adjustments``,
``uet``, ``goals``, ``reports``, ``uet_auth_key``; ``campaign`` = every Campaign Management endpoint;
``*`` = everything).  The injector draws from its own seeded :class:`random.Random`, so a probability rule
replays identically with the same seed and the same call sequence.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from msclkid_middleware.errors import ConfigError

__all__ = ["CAMPAIGN_ENDPOINTS", "ENDPOINTS", "KINDS", "FaultInjector", "FaultRule"]

CAMPAIGN_ENDPOINTS = frozenset(
    {"offline", "offline_adjustments", "online_adjustments", "goals", "reports", "uet_auth_key"}
)
ENDPOINTS = frozenset({"token", "uet", *CAMPAIGN_ENDPOINTS})

#: kind -> what the emulator does instead of (or before) answering normally.
KINDS = {
    "http": "answer with `status` (default 500) and a JSON fault body (Microsoft's shape for that endpoint)",
    "throttle": "HTTP 429 with a Retry-After header (`retry_after`: seconds or an HTTP date)",
    "call_rate": "Campaign Management fault code 117 CallRateExceeded (HTTP `status`, default 400)",
    "delay": "sleep `delay` seconds, then answer normally",
    "drop": "close the connection without sending a response",
    "expired_token": "treat the access token as expired: 109 AuthenticationTokenExpired / UET 401",
    "malformed": "HTTP 200 (or `status`) with a body that is not JSON",
    "partial_errors": "answer normally but add BatchErrors (`code`, default 5612) at `indexes`",
    "internal": "Campaign Management fault code 0 InternalError (HTTP 500)",
}


@dataclass(frozen=True, slots=True)
class FaultRule:
    endpoint: str
    kind: str
    status: int | None = None
    retry_after: int | str | None = None
    delay: float = 0.0
    times: int | None = None  # None: every matching call (subject to probability)
    probability: float = 1.0
    skip: int = 0  # let this many matching calls through first
    indexes: tuple[int, ...] = ()
    code: int | None = None
    id: int = 0

    def __post_init__(self) -> None:
        if self.endpoint not in ENDPOINTS and self.endpoint not in ("campaign", "*"):
            raise ConfigError(f"unknown fault endpoint {self.endpoint!r}; use one of {sorted(ENDPOINTS)}")
        if self.kind not in KINDS:
            raise ConfigError(f"unknown fault kind {self.kind!r}; use one of {sorted(KINDS)}")
        if not 0.0 <= self.probability <= 1.0:
            raise ConfigError("fault probability must be between 0 and 1")
        if self.times is not None and self.times < 0:
            raise ConfigError("fault times must be >= 0")
        if self.status is not None and not 200 <= self.status <= 599:
            raise ConfigError("fault status must be an HTTP status code")

    def matches(self, endpoint: str) -> bool:
        if self.endpoint == "*":
            return True
        if self.endpoint == "campaign":
            return endpoint in CAMPAIGN_ENDPOINTS
        return self.endpoint == endpoint

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["indexes"] = list(self.indexes)
        return data

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> FaultRule:
        known = {f.name for f in dataclasses.fields(cls)} - {"id"}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown fault option(s): {', '.join(sorted(unknown))}")
        values = dict(data)
        if "indexes" in values:
            values["indexes"] = tuple(int(i) for i in values["indexes"])
        return cls(**values)


@dataclass
class _Active:
    rule: FaultRule
    seen: int = 0
    fired: int = 0


class FaultInjector:
    """Holds the active rules; not locked itself (the emulator calls it under its lock)."""

    def __init__(self, seed: int | None = 0) -> None:
        self._random = random.Random(seed)  # noqa: S311 - test behaviour, not security
        self._rules: list[_Active] = []
        self._next_id = 1

    def add(self, rule: FaultRule) -> FaultRule:
        rule = dataclasses.replace(rule, id=self._next_id)
        self._next_id += 1
        self._rules.append(_Active(rule))
        return rule

    def remove(self, rule_id: int | None = None, *, endpoint: str | None = None) -> int:
        before = len(self._rules)
        self._rules = [
            a
            for a in self._rules
            if not ((rule_id is None or a.rule.id == rule_id) and (endpoint is None or a.rule.endpoint == endpoint))
        ]
        return before - len(self._rules)

    def reseed(self, seed: int | None) -> None:
        self._random = random.Random(seed)  # noqa: S311

    def rules(self) -> list[dict[str, Any]]:
        return [{**a.rule.to_json(), "seen": a.seen, "fired": a.fired} for a in self._rules]

    def draw(self, endpoint: str) -> list[FaultRule]:
        """Return the rules that fire for this call (at most one response-replacing rule plus any delays)."""
        fired: list[FaultRule] = []
        replacing = False
        for active in list(self._rules):
            rule = active.rule
            if not rule.matches(endpoint):
                continue
            active.seen += 1
            if active.seen <= rule.skip:
                continue
            if rule.times is not None and active.fired >= rule.times:
                continue
            if rule.probability < 1.0 and self._random.random() >= rule.probability:
                continue
            is_replacing = rule.kind not in ("delay", "partial_errors")
            if is_replacing and replacing:
                continue
            replacing = replacing or is_replacing
            active.fired += 1
            fired.append(rule)
            if rule.times is not None and active.fired >= rule.times:
                self._rules.remove(active)  # a spent script leaves the list so state() stays readable
        return fired
