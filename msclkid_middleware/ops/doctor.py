"""``msclkid doctor``: the whole account in one checklist (issue 20).

Each check is a :class:`Check` value (``ok`` / ``fail`` / ``warn``, what was found, what to do); rendering is the
command's business.  The checks follow the causes of "uploaded but not counted" on Microsoft's side: configuration,
OAuth refresh (and persistence of the rotated refresh token), the developer token / customer / account headers,
``MSCLKIDAutoTaggingEnabled``, every configured goal (exists, active, offline, scope, age), the UET tag, the outbox
store (reachable, writable, private to its owner), clock skew against Microsoft's ``Date`` header, and dead or
rejected events.  A check that cannot run because an earlier one failed says so as a warning.

Only two things are ever changed, and only through :func:`fix`, which the command calls after a confirmation:
auto-tagging (``SetAccountProperties``) and the permissions of a SQLite outbox file.
"""

from __future__ import annotations

import os
import stat
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from msclkid_middleware.errors import (
    AuthenticationError,
    MicrosoftError,
    MsclkidError,
    OAuthClientError,
    ReconsentRequired,
    StoreError,
)
from msclkid_middleware.outbox.base import TokenRecord

if TYPE_CHECKING:  # pragma: no cover
    from msclkid_middleware.config import Settings
    from msclkid_middleware.dispatch.goal_ages import GoalRegistry
    from msclkid_middleware.microsoft.campaign import CampaignManagementClient
    from msclkid_middleware.microsoft.goals import ConversionGoal
    from msclkid_middleware.outbox.base import OutboxStore

__all__ = [
    "CLOCK_FAIL",
    "CLOCK_WARN",
    "PROBE_TOKEN_NAME",
    "Check",
    "DoctorReport",
    "Fix",
    "Status",
    "fix",
    "run_checks",
    "sqlite_file",
]

Status = Literal["ok", "fail", "warn"]
#: What ``--fix`` may change (each after its own confirmation).
Fix = Literal["auto_tagging", "store_permissions"]
#: Skew beyond which Microsoft may read fresh conversion times as in the future (5614) or a token as not yet valid.
CLOCK_WARN = timedelta(seconds=60)
CLOCK_FAIL = timedelta(minutes=5)
#: The token-table row the store write probe writes (and rewrites); nothing reads it.
PROBE_TOKEN_NAME = "msclkid-doctor-probe"  # noqa: S105 - a row name, not a secret
_ALL_GOAL_TYPES = "Url,Duration,PagesViewedPerVisit,Event,AppInstall,OfflineConversion,InStoreTransaction"


@dataclass(frozen=True, slots=True)
class Check:
    """One line of the checklist: ``name`` (stable key), ``status``, what was found and what to do about it."""

    name: str
    status: Status
    summary: str
    action: str | None = None
    #: Set when ``msclkid doctor --fix`` can repair this check (after a confirmation).
    fix: Fix | None = None

    def to_json(self) -> dict[str, Any]:
        return {"check": self.name, "status": self.status, "summary": self.summary, "action": self.action}


@dataclass(frozen=True, slots=True)
class DoctorReport:
    checks: tuple[Check, ...]

    @property
    def failed(self) -> bool:
        return any(c.status == "fail" for c in self.checks)

    @property
    def fixable(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if c.fix is not None and c.status != "ok")

    def to_json(self) -> dict[str, Any]:
        return {"ok": not self.failed, "checks": [c.to_json() for c in self.checks]}


def _skipped(name: str, why: str) -> Check:
    return Check(name, "warn", f"not checked: {why}")


# -- configuration -----------------------------------------------------------------------------------------------


def _configuration(settings: Settings, store: OutboxStore | None, error: str | None) -> Check:
    if error is not None:
        return Check("configuration", "fail", error, "fix the setting named above (docs/configuration.md)")
    missing = [
        env
        for env, value in (
            ("MSADS_DEVELOPER_TOKEN", settings.developer_token),
            ("MSADS_CLIENT_ID", settings.client_id),
            ("MSADS_CUSTOMER_ID", settings.customer_id),
            ("MSADS_ACCOUNT_ID", settings.account_id),
        )
        if not value
    ]
    has_refresh = bool(settings.refresh_token) or _stored_refresh_token(store)
    if not has_refresh:
        missing.append("MSADS_REFRESH_TOKEN (or a token stored by `msclkid auth`)")
    if missing:
        return Check("configuration", "fail", f"missing: {', '.join(missing)}", "set them (docs/configuration.md)")
    if not settings.conversion_goals:
        return Check(
            "configuration",
            "warn",
            "complete, but MSADS_CONVERSION_GOALS is empty: goal names are not checked at record time",
            "set MSADS_CONVERSION_GOALS to the exact offline goal names",
        )
    environment = f"{settings.environment}, account {settings.account_id}"
    return Check("configuration", "ok", f"complete ({environment}, goals: {', '.join(settings.conversion_goals)})")


def _stored_refresh_token(store: OutboxStore | None) -> bool:
    if store is None:
        return False
    try:
        record = store.load_token("microsoft")
    except StoreError:
        return False
    return record is not None and bool(record.refresh_token)


# -- Microsoft -----------------------------------------------------------------------------------------------------


def _oauth(campaign: CampaignManagementClient) -> Check:
    from msclkid_middleware.tokens import MemoryTokenStore

    provider = campaign.token_provider
    force = getattr(provider, "force_refresh", None)
    tokens = getattr(provider, "token_store", None)
    before = tokens.load() if tokens is not None else None
    try:
        # Take the current access token first, so that the forced refresh really asks the token endpoint (a
        # refresh right after another process's adopts that one's token instead).
        provider.access_token()
        if callable(force):
            force()
    except OAuthClientError as exc:
        return Check("oauth", "fail", f"the application was refused: {exc.message}", f"check {exc.setting}")
    except ReconsentRequired as exc:
        return Check("oauth", "fail", f"the grant is no longer valid: {exc.message}", "run `msclkid auth`")
    except MicrosoftError as exc:
        return Check("oauth", "fail", f"token refresh failed: {exc}", "check MSADS_TOKEN_URL and the network")
    after = tokens.load() if tokens is not None else None
    if tokens is None or after is None:
        return Check("oauth", "warn", "refresh works; the provider keeps no token store", "use the outbox token store")
    if isinstance(tokens, MemoryTokenStore):
        return Check(
            "oauth", "warn", "refresh works, but the rotated refresh token lives in memory only", "run `msclkid auth`"
        )
    if before is not None and after.serial <= before.serial:
        return Check("oauth", "fail", "refresh worked but the new refresh token was not persisted", "check the store")
    return Check("oauth", "ok", f"refresh works; the rotated refresh token is persisted (serial {after.serial})")


def _credentials(error: MsclkidError | None, account: str) -> Check:
    if error is None:
        return Check("credentials", "ok", f"developer token, customer and account {account} accepted")
    if isinstance(error, AuthenticationError):
        hint = {
            105: "the developer token is not valid for this environment (or the access token was refused)",
            106: "the signed-in user cannot access this customer/account: check MSADS_CUSTOMER_ID, MSADS_ACCOUNT_ID",
        }.get(error.code or 0, "credentials refused")
        return Check(
            "credentials", "fail", f"{hint} ({error})", "fix MSADS_DEVELOPER_TOKEN / _CUSTOMER_ID / _ACCOUNT_ID"
        )
    return Check("credentials", "fail", f"Campaign Management call failed: {error}", "try again; see the TrackingId")


def _auto_tagging(value: bool | None) -> Check:
    if value:
        return Check("auto_tagging", "ok", "MSCLKIDAutoTaggingEnabled is True: ad clicks carry msclkid")
    found = "False" if value is False else "not set"
    return Check(
        "auto_tagging",
        "fail",
        f"MSCLKIDAutoTaggingEnabled is {found}: landing pages get no msclkid, so no upload can match a click",
        "run `msclkid doctor --fix` (SetAccountProperties) or turn on auto-tagging in the account settings",
        fix="auto_tagging",
    )


def _goal_checks(
    names: Sequence[str], found: Sequence[ConversionGoal], registry: GoalRegistry | None, account: str, now: datetime
) -> list[Check]:
    if not names:
        return [Check("goals", "warn", "no goal names configured: nothing to check", "set MSADS_CONVERSION_GOALS")]
    by_name = {g.name: g for g in found}
    checks = []
    for name in names:
        key = f"goal:{name}"
        goal = by_name.get(name)
        if goal is None:
            near = [n for n in by_name if n.strip().casefold() == name.strip().casefold()]
            hint = f"did you mean {near[0]!r}? names match exactly" if near else "create it: `msclkid goals create`"
            checks.append(Check(key, "fail", f"no goal named exactly {name!r} in the account", hint))
            continue
        details = f"id {goal.id}, {goal.type}, scope {goal.scope}, status {goal.status}"
        if goal.type != "OfflineConversion":
            checks.append(Check(key, "fail", f"{details}: not an offline goal", "create an offline goal of this name"))
        elif not goal.active:
            checks.append(Check(key, "fail", f"{details}: conversions will not count", "activate it in the UI"))
        elif goal.scope not in ("Account", "Customer"):
            checks.append(Check(key, "warn", f"{details}: unexpected scope", "use Account or Customer scope"))
        else:
            record = registry.get(account, name) if registry is not None else None
            if record is not None and record.ready_at > now:
                checks.append(
                    Check(
                        key,
                        "warn",
                        f"{details}: younger than 2 hours",
                        f"uploads wait until {record.ready_at:%H:%M} UTC",
                    )
                )
            else:
                age = "age unknown (created outside msclkid)" if record is None else "older than 2 hours"
                checks.append(Check(key, "ok", f"{details}, {age}"))
    return checks


def _uet(status: str | None, tag_id: str) -> Check:
    if status == "Active":
        return Check("uet_tag", "ok", f"UET tag {tag_id} exists and is active")
    if status is None:
        return Check("uet_tag", "fail", f"UET tag {tag_id} is not in this account", "check UET_TAG_ID")
    return Check("uet_tag", "fail", f"UET tag {tag_id} is {status}", "check the tag is on the site (UET Tag Helper)")


def _clock(campaign: CampaignManagementClient | None) -> Check:
    seen = campaign.last_server_clock if campaign is not None else None
    if seen is None:
        return _skipped("clock", "no answer from Microsoft carried a Date header")
    skew = seen.skew
    text = f"{abs(skew.total_seconds()):.0f} s {'behind' if skew.total_seconds() > 0 else 'ahead of'} Microsoft"
    if abs(skew) > CLOCK_FAIL:
        return Check("clock", "fail", f"this clock is {text}", "synchronise the clock (NTP)")
    if abs(skew) > CLOCK_WARN:
        return Check("clock", "warn", f"this clock is {text}", "synchronise the clock (NTP)")
    return Check("clock", "ok", f"within {CLOCK_WARN.total_seconds():.0f} s of Microsoft's clock ({text})")


# -- the store ---------------------------------------------------------------------------------------------------


def sqlite_file(url: str) -> str | None:
    """The file of a ``sqlite:///`` store URL (``None`` for other stores and ``:memory:``)."""
    if not url.startswith("sqlite:"):
        return None
    from msclkid_middleware.outbox.sqlite_connect import sqlite_path_from_url

    path = sqlite_path_from_url(url)
    return None if path in ("", ":memory:") else path


def _store(store: OutboxStore, now: datetime) -> Check:
    try:
        store.counts()
    except StoreError as exc:
        return Check("store", "fail", f"{store.url}: not reachable ({exc})", "check MSCLKID_STORE_URL")
    try:
        # A harmless write through the protocol: a newer row in the token table that nothing reads.
        store.save_token(PROBE_TOKEN_NAME, TokenRecord(refresh_token="probe", issued_at=now, serial=_serial(now)))  # noqa: S106
    except StoreError as exc:
        return Check("store", "fail", f"{store.url}: reachable but not writable ({exc})", "check disk and rights")
    path = sqlite_file(store.url)
    if path is None:
        return Check("store", "ok", f"{store.url}: reachable and writable (access as the database grants it)")
    loose = [p for p in (path, f"{path}-wal", f"{path}-shm") if os.path.exists(p) and _mode(p) & 0o077]
    if loose:
        modes = ", ".join(f"{os.path.basename(p)} {_mode(p):o}" for p in loose)
        return Check(
            "store",
            "fail",
            f"{path}: readable by others ({modes}); it holds click IDs, hashed identifiers and the refresh token",
            f"run `msclkid doctor --fix` or `chmod 600 {path}*`",
            fix="store_permissions",
        )
    return Check("store", "ok", f"{path}: reachable, writable, private to its owner (600)")


def _mode(path: str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _serial(now: datetime) -> int:
    return int(now.timestamp() * 1000)


def _events(store: OutboxStore) -> Check:
    try:
        counts = store.counts()
    except StoreError as exc:
        return _skipped("events", str(exc))
    dead: Counter[str] = Counter()
    rejected: Counter[str] = Counter()
    for c in counts:
        if c.state == "dead":
            dead[c.error_code or "unknown"] += c.count
        elif c.state == "rejected":
            rejected[c.error_code or "unknown"] += c.count
    if not dead and not rejected:
        return Check("events", "ok", "no dead or rejected events")

    def top(counter: Counter[str]) -> str:
        return ", ".join(f"{code} x{n}" for code, n in counter.most_common(3))

    parts = [f"{sum(dead.values())} dead ({top(dead)})"] if dead else []
    parts += [f"{sum(rejected.values())} rejected ({top(rejected)})"] if rejected else []
    action = "`msclkid report` for the reasons; after fixing the cause, `msclkid retry-dead`"
    return Check("events", "fail" if dead else "warn", "; ".join(parts), action)


# -- the run -----------------------------------------------------------------------------------------------------


def run_checks(
    *,
    settings: Settings,
    store: OutboxStore | None,
    campaign: CampaignManagementClient | None,
    registry: GoalRegistry | None = None,
    config_error: str | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> DoctorReport:
    """Run every check in order; Microsoft is called read-only (one token refresh aside)."""
    from msclkid_middleware.microsoft.account import AccountClient
    from msclkid_middleware.microsoft.goals import GoalsClient

    checks: list[Check] = [_configuration(settings, store, config_error)]
    names = list(settings.conversion_goals)
    account = campaign.account_id if campaign is not None else str(settings.account_id or "-")
    microsoft_names = ("oauth", "credentials", "auto_tagging", "goals", "uet_tag", "clock")
    if campaign is None:
        why = "Microsoft Advertising is not configured" if config_error is None else "the configuration failed"
        checks += [_skipped(n, why) for n in microsoft_names if n != "uet_tag" or settings.uet_tag_id]
    else:
        oauth = _oauth(campaign)
        checks.append(oauth)
        if oauth.status == "fail":
            checks += [
                _skipped(n, "no access token") for n in microsoft_names[1:] if n != "uet_tag" or settings.uet_tag_id
            ]
        else:
            client = AccountClient(campaign)
            error: MsclkidError | None = None
            auto: bool | None = None
            try:
                auto = client.auto_tagging_enabled()
            except MsclkidError as exc:
                error = exc
            checks.append(_credentials(error, account))
            if error is not None:
                checks += [_skipped(n, "credentials refused") for n in ("auto_tagging", "goals")]
            else:
                checks.append(_auto_tagging(auto))
                try:
                    found = GoalsClient(campaign).query_goals((), types=_ALL_GOAL_TYPES)
                    checks += _goal_checks(names, found, registry, account, clock())
                except MsclkidError as exc:
                    checks.append(Check("goals", "fail", f"listing the goals failed: {exc}"))
                if settings.uet_tag_id:
                    try:
                        checks.append(_uet(client.uet_tag_status(settings.uet_tag_id), settings.uet_tag_id))
                    except MsclkidError as exc:
                        checks.append(Check("uet_tag", "fail", f"reading the UET tag failed: {exc}"))
            checks.append(_clock(campaign))
    if store is None:
        checks += [_skipped("store", "no outbox store could be opened"), _skipped("events", "no outbox store")]
    else:
        checks += [_store(store, clock()), _events(store)]
    return DoctorReport(tuple(checks))


def fix(which: Fix, *, campaign: CampaignManagementClient | None, store: OutboxStore | None) -> Check:
    """Repair one fixable check (the caller asked first) and check it again."""
    if which == "auto_tagging":
        from msclkid_middleware.microsoft.account import AccountClient

        if campaign is None:
            return _skipped("auto_tagging", "Microsoft Advertising is not configured")
        client = AccountClient(campaign)
        try:
            client.enable_auto_tagging()
            return _auto_tagging(client.auto_tagging_enabled())
        except MsclkidError as exc:
            return Check("auto_tagging", "fail", f"SetAccountProperties failed: {exc}", "turn it on in the UI")
    path = sqlite_file(store.url) if store is not None else None
    if store is None or path is None:
        return _skipped("store", "not a SQLite file")
    for name in _existing((path, f"{path}-wal", f"{path}-shm")):
        os.chmod(name, 0o600)
    return _store(store, datetime.now(UTC))


def _existing(paths: Iterable[str]) -> list[str]:
    return [p for p in paths if os.path.exists(p)]
