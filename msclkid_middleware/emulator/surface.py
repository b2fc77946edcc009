"""The emulator's Python control surface: its world, configuration, and what arrived.

The JSON control API (:mod:`.control`), the dashboard (:mod:`.dashboard`) and the ``run_emulator`` handle all
go through these methods, so the HTTP and Python surfaces cannot drift apart.  :class:`~.app.Emulator` adds the
WSGI routing on top; keeping the two apart is what lets the control API and the dashboard take the surface
without importing the application that routes to them.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from msclkid_middleware.emulator import oauth
from msclkid_middleware.emulator.faults import FaultRule
from msclkid_middleware.emulator.settings import EmulatorConfig
from msclkid_middleware.emulator.state import Account, Goal, ReceivedItem, RequestRecord, TokenRecord, UetTag
from msclkid_middleware.emulator.world import World, utcnow
from msclkid_middleware.errors import ConfigError

__all__ = ["ControlError", "ControlSurface"]


class ControlError(ConfigError):
    """A control API request that cannot be carried out (bad input)."""


class ControlSurface:
    """Local Microsoft Advertising's state and the operations a test or a person performs on it."""

    def __init__(
        self, config: EmulatorConfig | Mapping[str, Any] | None = None, *, clock: Callable[[], datetime] = utcnow
    ) -> None:
        if config is None:
            config = EmulatorConfig()
        elif not isinstance(config, EmulatorConfig):
            config = EmulatorConfig.from_mapping(config)
        self.world = World(config, clock=clock)
        #: Sleep function used by ``delay`` faults (tests may replace it).
        self.sleep: Callable[[float], None] = time.sleep

    @property
    def config(self) -> EmulatorConfig:
        return self.world.config

    # -- Python control surface (mirrored by the JSON control API and the run_emulator handle) ----------------------

    def env(self, base_url: str) -> dict[str, str]:
        """The environment variables that point the toolkit at this emulator served at ``base_url``."""
        config = self.config
        base = base_url.rstrip("/")
        env = {
            "MSADS_API_URL": base,
            "MSADS_TOKEN_URL": f"{base}/common/oauth2/v2.0/token",
            "UET_API_URL": base,
            "MSADS_DEVELOPER_TOKEN": config.developer_token,
            "MSADS_CLIENT_ID": config.client_id,
            "MSADS_CLIENT_SECRET": config.client_secret or "",
            "MSADS_REFRESH_TOKEN": self.world.initial_refresh_token,
            "MSADS_CUSTOMER_ID": config.customer_id,
            "MSADS_ACCOUNT_ID": config.account_id,
            "UET_TAG_ID": config.uet_tag_id,
            "UET_API_TOKEN": config.uet_token,
        }
        if config.client_secret is None:
            del env["MSADS_CLIENT_SECRET"]
        return env

    def state(self) -> dict[str, Any]:
        world = self.world
        with world.lock:
            return {
                "config": self.config.to_json(),
                "accounts": [
                    {
                        "customer_id": a.customer_id,
                        "account_id": a.account_id,
                        "properties": dict(world.account_properties.get(a.account_id, {})),
                    }
                    for a in world.accounts.values()
                ],
                "goals": [g.to_json() for g in world.goals.values()],
                "clicks": {k: v.isoformat() for k, v in world.clicks.items()},
                "uet_tags": [
                    {"tag_id": t.tag_id, "account_id": t.account_id, "tracking_status": t.tracking_status}
                    for t in world.tags.values()
                ],
                "faults": world.faults.rules(),
                "refresh_tokens": {
                    "issued": len(world.refresh_tokens),
                    "revoked": sum(g.revoked for g in world.refresh_tokens.values()),
                    "latest_serial": max((g.serial for g in world.refresh_tokens.values()), default=0),
                },
                "counts": self.counts(),
            }

    def counts(self) -> dict[str, dict[str, int]]:
        result: dict[str, dict[str, int]] = {}
        for item in self.world.received():
            bucket = result.setdefault(item.kind, {"accepted": 0, "rejected": 0, "duplicate": 0})
            bucket[item.outcome] += 1
        return result

    def received(
        self, kind: str | None = None, *, account: str | None = None, outcome: str | None = None
    ) -> list[ReceivedItem]:
        return self.world.received(kind, account=account, outcome=outcome)

    def requests(self, endpoint: str | None = None) -> list[RequestRecord]:
        return self.world.requests(endpoint)

    def token_log(self) -> list[TokenRecord]:
        return self.world.token_log()

    def reset(self) -> None:
        """Back to the start configuration, forgetting everything received; the initial refresh token stays valid."""
        self.world.reset()

    def add_goal(self, name: str, **options: Any) -> Goal:
        return self.world.add_goal({"name": name, **options})

    def add_click(
        self, click_id: str, click_time: datetime | str | None = None, *, account_id: str | None = None
    ) -> datetime:
        return self.world.add_click(click_id, click_time, account_id=account_id)

    def add_uet_tag(
        self, tag_id: str, token: str | None = None, *, account_id: str | None = None, tracking_status: str = "Active"
    ) -> UetTag:
        return self.world.add_tag(tag_id, token, account_id=account_id, tracking_status=tracking_status)

    def add_account(self, customer_id: str, account_id: str) -> Account:
        return self.world.add_account(customer_id, account_id)

    def account_properties(self, account_id: str | None = None) -> dict[str, str]:
        """The account's ``GetAccountProperties`` values (default: the main account)."""
        with self.world.lock:
            account = account_id or self.config.account_id
            if account not in self.world.accounts:
                raise ControlError(f"no account {account!r} in the emulator")
            return dict(self.world.account_properties.get(account, {}))

    def set_account_properties(self, properties: Mapping[str, Any], *, account_id: str | None = None) -> dict[str, str]:
        """Set account properties as the Microsoft Advertising UI would (``{"MSCLKIDAutoTaggingEnabled": False}``)."""
        return self.world.set_account_properties(account_id or self.config.account_id, properties)

    def inject_fault(self, endpoint: str, kind: str, **options: Any) -> FaultRule:
        rule = FaultRule.from_mapping({"endpoint": endpoint, "kind": kind, **options})
        with self.world.lock:
            return self.world.faults.add(rule)

    def clear_faults(self, rule_id: int | None = None, *, endpoint: str | None = None) -> int:
        with self.world.lock:
            return self.world.faults.remove(rule_id, endpoint=endpoint)

    def faults(self) -> list[dict[str, Any]]:
        with self.world.lock:
            return self.world.faults.rules()

    def revoke_refresh_tokens(self, token: str | None = None) -> int:
        return self.world.revoke_refresh_tokens(token)

    def expire_access_tokens(self, token: str | None = None) -> int:
        return self.world.expire_access_tokens(token)

    def issue_refresh_token(self) -> str:
        with self.world.lock:
            return self.world.issue_refresh_token(self.config.client_id, oauth.DEFAULT_SCOPE)

    def configure(self, **changes: Any) -> EmulatorConfig:
        """Change run-time settings (e.g. ``unknown_goal``, ``access_token_lifetime``, ``empty_partial_errors``)."""
        with self.world.lock:
            fixed = {
                "goals", "clicks", "uet_tags", "faults", "accounts", "store", "refresh_token", "account_properties"
            } & set(changes)  # fmt: skip
            if fixed:
                raise ControlError(f"use the dedicated methods for: {', '.join(sorted(fixed))}")
            config = EmulatorConfig.from_mapping({**_plain(self.world.config), **changes})
            self.world.config = config
            if "seed" in changes:
                self.world.faults.reseed(config.seed)
            if "click_id_pattern" in changes:
                self.world.click_id_re = re.compile(config.click_id_pattern)
            return config

    def close(self) -> None:
        self.world.close()


def _plain(config: EmulatorConfig) -> dict[str, Any]:
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
