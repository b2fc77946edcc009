"""The emulator's mutable world behind one lock: configuration, OAuth grants, conversions, journal.

Handlers (``oauth``, ``campaign``, ``uet``, ``goals``) read and change it only while holding
``world.lock``; the journal, fault injector and token tables are not locked on their own.
"""

from __future__ import annotations

import dataclasses
import re
import secrets
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from msclkid_middleware.emulator.clock import parse_datetime
from msclkid_middleware.emulator.faults import FaultInjector, FaultRule
from msclkid_middleware.emulator.settings import DEFAULT_ACCOUNT_PROPERTIES, EmulatorConfig, account_property_value
from msclkid_middleware.emulator.state import Account, Goal, Journal, ReceivedItem, RequestRecord, TokenRecord, UetTag
from msclkid_middleware.errors import ConfigError

__all__ = ["AccessGrant", "Conversion", "RefreshGrant", "World", "utcnow"]


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class RefreshGrant:
    serial: int
    client_id: str
    scope: str
    issued_at: datetime
    expires_at: datetime
    parent_serial: int | None = None
    revoked: bool = False
    used: int = 0


@dataclass
class AccessGrant:
    serial: int
    client_id: str
    scope: str
    expires_at: datetime


@dataclass
class AuthCode:
    client_id: str
    redirect_uri: str
    scope: str
    expires_at: datetime
    redeemed: bool = False


@dataclass
class Conversion:
    """An accepted original (offline conversion or online conversion by transaction ID) and its history."""

    kind: str
    goal: str
    time: datetime | None
    value: float | None
    currency: str | None
    retracted: bool = False
    adjustments: list[dict[str, Any]] = field(default_factory=list)


def _created_at(spec: Mapping[str, Any], now: datetime) -> datetime:
    if "created_at" in spec:
        try:
            return parse_datetime(spec["created_at"])
        except ValueError:
            raise ConfigError(f"goal {spec.get('name')!r}: created_at is not an ISO date-time") from None
    return now - timedelta(hours=float(spec.get("created_hours_ago", 24)))


class World:
    def __init__(self, config: EmulatorConfig, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.lock = threading.RLock()
        self.config = config
        self._initial_config = config
        self.clock = clock
        self.journal = Journal(config.store)
        self.journal.open()
        self.click_id_re = re.compile(config.click_id_pattern)
        self.initial_refresh_token = config.refresh_token or f"rt-1-{secrets.token_urlsafe(24)}"
        #: Signs the result-file links (``FileUrl``), as a storage service signs its download links.
        self.file_secret = secrets.token_bytes(32)
        self._load()

    # -- loading / reset -------------------------------------------------------------------------------------------

    def _load(self) -> None:
        config = self.config
        now = self.clock()
        self.accounts: dict[str, Account] = {config.account_id: Account(config.customer_id, config.account_id)}
        #: Account ID -> ``AccountPropertyName`` -> value (``GetAccountProperties`` / ``SetAccountProperties``).
        self.account_properties: dict[str, dict[str, str]] = {config.account_id: dict(config.account_properties)}
        for spec in config.accounts:
            account = Account(str(spec["customer_id"]), str(spec["account_id"]))
            self.accounts[account.account_id] = account
            self.account_properties[account.account_id] = dict(spec.get("properties", DEFAULT_ACCOUNT_PROPERTIES))
        self.goals: dict[tuple[str, str], Goal] = {}
        self.goals_by_id: dict[int, Goal] = {}
        self._next_goal_id = 1001
        for spec in config.goals:
            self.add_goal(spec, now=now)
        self.clicks: dict[str, datetime] = {}
        self.click_accounts: dict[str, str] = {}
        for spec in config.clicks:
            self.add_click(str(spec["click_id"]), spec.get("click_time"), account_id=spec.get("account_id"))
        self.tags: dict[str, UetTag] = {
            config.uet_tag_id: UetTag(config.uet_tag_id, config.uet_token, config.account_id)
        }
        for spec in config.uet_tags:
            self.add_tag(
                str(spec["tag_id"]),
                spec.get("token"),
                account_id=spec.get("account_id"),
                tracking_status=str(spec.get("tracking_status", "Active")),
            )
        self.refresh_tokens: dict[str, RefreshGrant] = {}
        self.access_tokens: dict[str, AccessGrant] = {}
        self.auth_codes: dict[str, AuthCode] = {}
        self._token_serial = 1
        self._access_serial = 0
        self.refresh_tokens[self.initial_refresh_token] = RefreshGrant(
            serial=1,
            client_id=config.client_id,
            scope="https://ads.microsoft.com/msads.manage offline_access",
            issued_at=now,
            expires_at=now + timedelta(days=config.refresh_token_lifetime_days),
        )
        self.faults = FaultInjector(config.seed)
        self.conversions: dict[tuple[Any, ...], Conversion] = {}
        self.online_conversions: dict[tuple[str, str], Conversion] = {}
        self.uet_seen: set[tuple[str, str, str]] = set()
        for fault in config.faults:
            self.faults.add(FaultRule.from_mapping(fault))

    def reset(self) -> None:
        """Back to the start configuration: journal, runtime goals/clicks/tags, faults, tokens, configure() changes."""
        with self.lock:
            self.journal.clear()
            self.config = self._initial_config
            self.click_id_re = re.compile(self.config.click_id_pattern)
            self._load()

    def close(self) -> None:
        with self.lock:
            self.journal.close()

    # -- configuration ---------------------------------------------------------------------------------------------

    def add_goal(self, spec: Mapping[str, Any], *, now: datetime | None = None) -> Goal:
        with self.lock:
            now = now or self.clock()
            name = spec.get("name")
            if not isinstance(name, str) or not name or len(name) > 100:
                raise ConfigError("a goal needs a name of 1-100 characters")
            account_id = str(spec.get("account_id", self.config.account_id))
            existing = self.goals.get((account_id, name))
            goal_id = existing.id if existing else int(spec.get("id", self._next_goal_id))
            if existing is None:
                self._next_goal_id = max(self._next_goal_id, goal_id) + 1
            window = int(spec.get("conversion_window_minutes", 43200))
            if not 1 <= window <= 129600:
                raise ConfigError("conversion_window_minutes must be between 1 and 129600 (90 days)")
            goal = Goal(
                name=name,
                id=goal_id,
                account_id=account_id,
                created_at=_created_at(spec, now),
                type=str(spec.get("type", "OfflineConversion")),
                conversion_window_minutes=window,
                currency=spec.get("currency", "USD"),
                revenue_value=spec.get("revenue_value"),
                count_type=str(spec.get("count_type", "All")),
                status=str(spec.get("status", "Active")),
                enhanced=bool(spec.get("enhanced", False)),
                adjustments_supported=bool(spec.get("adjustments_supported", True)),
                category=str(spec.get("category", "Purchase")),
                tag_id=spec.get("tag_id"),
                scope=str(spec.get("scope", "Account")),
                revenue_type=spec.get("revenue_type"),
                exclude_from_bidding=bool(spec.get("exclude_from_bidding", False)),
                attribution_model=spec.get("attribution_model"),
                view_through_window_minutes=spec.get("view_through_window_minutes"),
                is_auto_goal=bool(spec.get("is_auto_goal", False)),
            )
            self.goals[(account_id, name)] = goal
            self.goals_by_id[goal.id] = goal
            return goal

    def replace_goal(self, goal: Goal, **changes: Any) -> Goal:
        """Apply an update (``UpdateConversionGoals``) to ``goal``; a new name re-keys it."""
        with self.lock:
            updated = dataclasses.replace(goal, **changes)
            self.goals.pop((goal.account_id, goal.name), None)
            self.goals[(updated.account_id, updated.name)] = updated
            self.goals_by_id[updated.id] = updated
            return updated

    def set_account_properties(self, account_id: str, properties: Mapping[str, Any]) -> dict[str, str]:
        """Set properties of ``account_id`` (all or nothing); returns the account's properties afterwards."""
        with self.lock:
            if account_id not in self.accounts:
                raise ConfigError(f"no account {account_id!r} in the emulator")
            try:
                values = {str(k): account_property_value(str(k), v) for k, v in properties.items()}
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
            current = self.account_properties.setdefault(account_id, dict(DEFAULT_ACCOUNT_PROPERTIES))
            current.update(values)
            return dict(current)

    def add_click(
        self, click_id: str, click_time: datetime | str | None = None, *, account_id: str | None = None
    ) -> datetime:
        """Register a click; ``account_id`` (optional) is the account that owns it (else: any account)."""
        with self.lock:
            if isinstance(click_time, str):
                try:
                    click_time = parse_datetime(click_time)
                except ValueError:
                    raise ConfigError(f"click_time {click_time!r} is not an ISO date-time") from None
            when = click_time or self.clock()
            if when.tzinfo is None:
                raise ConfigError("click_time must be timezone-aware")
            self.clicks[click_id] = when.astimezone(UTC)
            if account_id is not None:
                self.click_accounts[click_id] = str(account_id)
            return self.clicks[click_id]

    def add_tag(
        self, tag_id: str, token: str | None = None, *, account_id: str | None = None, tracking_status: str = "Active"
    ) -> UetTag:
        if tracking_status not in ("Unverified", "Active", "Inactive"):
            raise ConfigError("tracking_status must be Unverified, Active or Inactive")
        with self.lock:
            token = token or f"uet-{secrets.token_urlsafe(18)}"
            tag = UetTag(tag_id, token, account_id or self.config.account_id, tracking_status=tracking_status)
            self.tags[tag_id] = tag
            return tag

    def add_account(self, customer_id: str, account_id: str) -> Account:
        with self.lock:
            account = Account(str(customer_id), str(account_id))
            self.accounts[account.account_id] = account
            self.account_properties.setdefault(account.account_id, dict(DEFAULT_ACCOUNT_PROPERTIES))
            return account

    def goal(self, account_id: str, name: str) -> Goal | None:
        return self.goals.get((account_id, name))

    # -- OAuth -----------------------------------------------------------------------------------------------------

    def issue_refresh_token(self, client_id: str, scope: str, parent: RefreshGrant | None = None) -> str:
        now = self.clock()
        self._token_serial += 1
        token = f"rt-{self._token_serial}-{secrets.token_urlsafe(24)}"
        self.refresh_tokens[token] = RefreshGrant(
            serial=self._token_serial,
            client_id=client_id,
            scope=scope,
            issued_at=now,
            expires_at=now + timedelta(days=self.config.refresh_token_lifetime_days),
            parent_serial=parent.serial if parent else None,
        )
        return token

    def issue_access_token(self, client_id: str, scope: str) -> tuple[str, int]:
        self._access_serial += 1
        token = f"at-{self._access_serial}-{secrets.token_urlsafe(24)}"
        lifetime = self.config.access_token_lifetime
        self.access_tokens[token] = AccessGrant(
            self._access_serial, client_id, scope, self.clock() + timedelta(seconds=lifetime)
        )
        return token, lifetime

    def new_auth_code(self, client_id: str, redirect_uri: str, scope: str) -> str:
        code = f"code-{secrets.token_urlsafe(24)}"
        self.auth_codes[code] = AuthCode(client_id, redirect_uri, scope, self.clock() + timedelta(minutes=10))
        return code

    def revoke_refresh_tokens(self, token: str | None = None) -> int:
        with self.lock:
            grants = [self.refresh_tokens[token]] if token in self.refresh_tokens else []
            if token is None:
                grants = list(self.refresh_tokens.values())
            for grant in grants:
                grant.revoked = True
            return len(grants)

    def expire_access_tokens(self, token: str | None = None) -> int:
        with self.lock:
            past = self.clock() - timedelta(seconds=1)
            grants = list(self.access_tokens.values()) if token is None else [self.access_tokens[token]]
            for grant in grants:
                grant.expires_at = past
            return len(grants)

    # -- journal ---------------------------------------------------------------------------------------------------

    def record_request(self, **values: Any) -> RequestRecord:
        with self.lock:
            record = RequestRecord(seq=self.journal.next_seq(), at=self.clock(), **values)
            self.journal.append("requests", record)
            return record

    def record_items(self, items: Iterable[Mapping[str, Any]]) -> list[ReceivedItem]:
        with self.lock:
            now = self.clock()
            records = [ReceivedItem(seq=self.journal.next_seq(), received_at=now, **item) for item in items]
            self.journal.extend("received", records)
            return records

    def record_token(self, **values: Any) -> TokenRecord:
        with self.lock:
            record = TokenRecord(seq=self.journal.next_seq(), at=self.clock(), **values)
            self.journal.append("tokens", record)
            return record

    def received(
        self, kind: str | None = None, *, account: str | None = None, outcome: str | None = None
    ) -> list[ReceivedItem]:
        with self.lock:
            return [
                r
                for r in self.journal.iter("received")
                if (kind is None or r.kind == kind)
                and (account is None or r.account == account)
                and (outcome is None or r.outcome == outcome)
            ]

    def requests(self, endpoint: str | None = None) -> list[RequestRecord]:
        with self.lock:
            return [r for r in self.journal.iter("requests") if endpoint is None or r.endpoint == endpoint]

    def token_log(self) -> list[TokenRecord]:
        with self.lock:
            return list(self.journal.iter("tokens"))
