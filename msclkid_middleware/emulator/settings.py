"""The emulator's configuration: defaults that work out of the box, loadable from JSON or TOML.

Every key is documented in ``docs/emulator.md``.  Unknown keys are errors (a typo must not silently
leave a default in place).
"""

from __future__ import annotations

import dataclasses
import json
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from msclkid_middleware.errors import ConfigError

__all__ = [
    "ACCOUNT_PROPERTY_NAMES",
    "BOOLEAN_ACCOUNT_PROPERTIES",
    "DEFAULT_ACCOUNT_PROPERTIES",
    "DEFAULT_GOALS",
    "DEFAULT_REDIRECT_URIS",
    "PRODUCTION_SCOPES",
    "EmulatorConfig",
    "account_property_value",
    "load_config_file",
]

#: Scopes the token endpoint accepts (production, the SDK's sandbox scope, the SDK's ADS_MANAGE alias).
PRODUCTION_SCOPES = (
    "https://ads.microsoft.com/msads.manage",
    "https://si.ads.microsoft.com/msads.manage",
    "https://ads.microsoft.com/ads.manage",
)

DEFAULT_GOALS: tuple[Mapping[str, Any], ...] = (
    # Purchase has enhanced conversions on (hashed-only uploads accepted), Lead has not: both behaviours out of the box.
    {"name": "Purchase", "created_hours_ago": 24, "category": "Purchase", "enhanced": True},
    {"name": "Lead", "created_hours_ago": 24, "category": "SubmitLeadForm", "currency": None},
)

#: Microsoft's ``AccountPropertyName`` values (the msads 13.0.30.1 enum, ``None`` aside).
ACCOUNT_PROPERTY_NAMES = (
    "TrackingUrlTemplate", "MSCLKIDAutoTaggingEnabled", "AdClickParallelTracking", "FinalUrlSuffix",
    "IncludeViewThroughConversions", "ProfileExpansionEnabled", "AllowImageAutoRetrieve", "AutoApplyRecommendations",
    "IncludeAutoBiddingViewThroughConversions", "AutoBiddingViewThroughConversionsValueAttributionWeight",
    "LoopBackWindowForViewThroughConversions", "BusinessAttributes", "EnableMMAUnderDSAAdgroups", "OptOutFromMCM",
    "NetflixTCAccepted", "BlockedContentSegments", "AssetAIEnhancementOptout", "AcceptNielsenTermsAndConditions",
    "ImageMissingWarningOptout", "OptOutFromSystemSourcedImagesInSWF",
)  # fmt: skip
#: Properties whose value is a .NET boolean ("True"/"False"; the parser takes any letter case).
BOOLEAN_ACCOUNT_PROPERTIES = frozenset(
    {"MSCLKIDAutoTaggingEnabled", "AdClickParallelTracking", "IncludeViewThroughConversions",
     "ProfileExpansionEnabled", "AllowImageAutoRetrieve", "IncludeAutoBiddingViewThroughConversions",
     "EnableMMAUnderDSAAdgroups", "OptOutFromMCM", "NetflixTCAccepted", "AssetAIEnhancementOptout",
     "AcceptNielsenTermsAndConditions", "ImageMissingWarningOptout", "OptOutFromSystemSourcedImagesInSWF"}
)  # fmt: skip
DEFAULT_ACCOUNT_PROPERTIES: Mapping[str, str] = {"MSCLKIDAutoTaggingEnabled": "True"}


def account_property_value(name: str, value: Any) -> str:
    """A property value as Microsoft holds it (a string; booleans as ``True``/``False``), or ``ValueError``."""
    if name not in ACCOUNT_PROPERTY_NAMES:
        raise ValueError(f"{name!r} is not an AccountPropertyName")
    if name in BOOLEAN_ACCOUNT_PROPERTIES:
        if isinstance(value, bool):
            return "True" if value else "False"
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().capitalize()
        raise ValueError(f"{name} must be True or False")
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string")
    return value


def _properties(value: Any, setting: str) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{setting} must be a table/object of property name -> value", setting=setting)
    try:
        return {str(k): account_property_value(str(k), v) for k, v in value.items()}
    except ValueError as exc:
        raise ConfigError(f"{setting}: {exc}", setting=setting) from None


#: What ``redirect_uris`` registers by default: the native-client page and the loopback addresses.
DEFAULT_REDIRECT_URIS: tuple[str, ...] = (
    "https://login.microsoftonline.com/common/oauth2/nativeclient",
    "http://localhost/",
    "http://127.0.0.1/",
    "http://[::1]/",
)

#: Microsoft's docs call the msclkid "a 32-character GUID"; the dashed GUID form is accepted too.
DEFAULT_CLICK_ID_PATTERN = (
    r"[0-9a-fA-F]{32}|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)


@dataclass(frozen=True, slots=True)
class EmulatorConfig:
    developer_token: str = "EMULATOR-DEV-TOKEN"  # noqa: S105 - a fixed test credential
    client_id: str = "00000000-0000-4000-8000-0000000c11e7"
    #: ``None`` makes the emulator a *public* client (which must not send a secret), as Microsoft does.
    client_secret: str | None = "emulator-client-secret"  # noqa: S105 - a fixed test credential
    customer_id: str = "1000001"
    account_id: str = "2000001"
    #: Extra ``{customer_id, account_id}`` pairs the same user may access (optionally with ``properties``).
    accounts: tuple[Mapping[str, Any], ...] = ()
    #: ``GetAccountProperties`` values of the main account (names as Microsoft's ``AccountPropertyName``,
    #: values as strings).  Auto-tagging of msclkid starts on, as for an account that has an offline goal.
    account_properties: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_ACCOUNT_PROPERTIES))
    #: The initial refresh token; ``None`` mints ``rt-1-<random>``.
    refresh_token: str | None = None
    access_token_lifetime: int = 3600
    refresh_token_lifetime_days: float = 90.0
    #: Microsoft keeps old refresh tokens valid after a refresh; set True to emulate strict rotation.
    invalidate_used_refresh_tokens: bool = False
    #: Redirect URIs registered for the application: ``/authorize`` redirects only to these (an ``http`` loopback
    #: entry matches any port, as Entra's do, and any path below its own).
    redirect_uris: tuple[str, ...] = DEFAULT_REDIRECT_URIS
    #: Host names (besides ``localhost`` and IP literals) the dashboard and control API answer to (DNS rebinding).
    control_hosts: tuple[str, ...] = ()
    goals: tuple[Mapping[str, Any], ...] = DEFAULT_GOALS
    clicks: tuple[Mapping[str, Any], ...] = ()
    uet_tag_id: str = "343001234"
    uet_token: str = "emulator-uet-token"  # noqa: S105 - a fixed test credential
    uet_tags: tuple[Mapping[str, Any], ...] = ()
    faults: tuple[Mapping[str, Any], ...] = ()
    seed: int | None = 0
    #: ``"reject"``: unknown ConversionName -> 5606.  ``"accept"``: silently accepted (Microsoft's examples).
    unknown_goal: Literal["reject", "accept"] = "reject"
    #: What a clean Apply response carries: ``"list"`` ``[]``, ``"null"`` or ``"absent"`` (all seen in the wild).
    empty_partial_errors: Literal["list", "null", "absent"] = "list"
    click_id_pattern: str = DEFAULT_CLICK_ID_PATTERN
    #: Diagnostics: count accepted conversions for click IDs nobody registered as ``NoMatchingClickFound``.
    strict_click_matching: bool = False
    #: ``UetTagAuthKey/Query`` answer: ``"service"`` ``{"UetTagAuthKey": "..."}`` (service reference, REST SDK)
    #: or ``"guide"`` ``{"TagAuthKey": {"AuthKey": "..."}}`` (the CAPI guide); Microsoft documents both.
    uet_auth_key_shape: Literal["service", "guide"] = "service"
    #: Clock skew tolerated before a time counts as "in the future".
    future_tolerance_seconds: float = 60.0
    uet_future_tolerance_seconds: float = 300.0
    max_batch_items: int = 1000
    #: Status used for the 117 CallRateExceeded fault (Microsoft documents the code, not the HTTP status).
    call_rate_status: int = 400
    #: SQLite file for the journal (received items, request and token logs); ``None`` = memory only.
    store: str | None = None
    dashboard_refresh_seconds: int = 5

    def __post_init__(self) -> None:
        # Normalised once here ("true" -> "True"), however the config was built.
        object.__setattr__(self, "account_properties", _properties(self.account_properties, "account_properties"))
        if self.unknown_goal not in ("reject", "accept"):
            raise ConfigError("unknown_goal must be 'reject' or 'accept'", setting="unknown_goal")
        if self.empty_partial_errors not in ("list", "null", "absent"):
            raise ConfigError("empty_partial_errors must be 'list', 'null' or 'absent'", setting="empty_partial_errors")
        if self.uet_auth_key_shape not in ("service", "guide"):
            raise ConfigError("uet_auth_key_shape must be 'service' or 'guide'", setting="uet_auth_key_shape")
        if self.access_token_lifetime < 1:
            raise ConfigError("access_token_lifetime must be >= 1 second", setting="access_token_lifetime")
        if not 1 <= self.max_batch_items <= 100_000:
            raise ConfigError("max_batch_items must be between 1 and 100000", setting="max_batch_items")
        try:
            re.compile(self.click_id_pattern)
        except re.error as exc:
            raise ConfigError(
                f"click_id_pattern is not a regular expression: {exc}", setting="click_id_pattern"
            ) from None

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> EmulatorConfig:
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise ConfigError(f"unknown emulator setting(s): {', '.join(unknown)}")
        values: dict[str, Any] = {}
        for name, value in data.items():
            if name in ("accounts", "goals", "clicks", "uet_tags", "faults"):
                if not isinstance(value, list | tuple) or not all(isinstance(v, Mapping) for v in value):
                    raise ConfigError(f"{name} must be a list of tables/objects", setting=name)
                value = tuple(dict(v) for v in value)
                if name == "accounts":
                    for spec in value:
                        if "properties" in spec:
                            spec["properties"] = _properties(spec["properties"], "accounts.properties")
            elif name in ("redirect_uris", "control_hosts"):
                if isinstance(value, str) or not isinstance(value, list | tuple):
                    raise ConfigError(f"{name} must be a list of strings", setting=name)
                value = tuple(str(v) for v in value)
            values[name] = value
        return cls(**values)

    def replace(self, **changes: Any) -> EmulatorConfig:
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in ("client_secret", "refresh_token")}


def load_config_file(path: str | Path) -> EmulatorConfig:
    """Read a ``.json`` or ``.toml`` file into an :class:`EmulatorConfig`."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read emulator config {path}: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode()) if path.suffix.lower() == ".toml" else json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"emulator config {path} is not valid {path.suffix.lstrip('.') or 'JSON'}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"emulator config {path} must hold an object/table at the top level")
    return EmulatorConfig.from_mapping(data)
