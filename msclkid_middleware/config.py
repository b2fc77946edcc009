"""One validated settings object, built from keywords, environment variables or Flask config.

Every name below is documented in ``docs/configuration.md``.  Settings are validated once, when
they are built, with errors that say what to do; secrets never appear in ``repr`` or errors.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from msclkid_middleware.errors import ConfigError

__all__ = [
    "DEFAULT_API_URL",
    "DEFAULT_STORE_FILENAME",
    "DEFAULT_UET_API_URL",
    "ENVIRONMENTS",
    "Environment",
    "Settings",
]

#: Campaign Management REST hosts; the client appends ``/CampaignManagement/v13/...``.
DEFAULT_API_URL = "https://campaign.api.bingads.microsoft.com"
SANDBOX_API_URL = "https://campaign.api.sandbox.bingads.microsoft.com"
#: Microsoft identity platform token endpoint (the same host serves production and sandbox).
DEFAULT_TOKEN_URL = "https://login.microsoftonline.com/common/oauth2/v2.0/token"  # noqa: S105
DEFAULT_AUTHORIZE_URL = "https://login.microsoftonline.com/common/oauth2/v2.0/authorize"
PRODUCTION_SCOPE = "https://ads.microsoft.com/msads.manage offline_access"
SANDBOX_SCOPE = "https://si.ads.microsoft.com/msads.manage offline_access"
#: UET Conversions API host; the client appends ``/v1/{tagId}/events``.
DEFAULT_UET_API_URL = "https://capi.uet.microsoft.com"
DEFAULT_STORE_FILENAME = "msclkid-outbox.sqlite3"


Environment = Literal["production", "sandbox"]


@dataclass(frozen=True, slots=True)
class EnvironmentHosts:
    """Where one Microsoft environment (production or sandbox) is reached, and the OAuth scope it grants."""

    api_url: str
    token_url: str
    authorize_url: str
    scope: str


ENVIRONMENTS: Mapping[str, EnvironmentHosts] = {
    "production": EnvironmentHosts(DEFAULT_API_URL, DEFAULT_TOKEN_URL, DEFAULT_AUTHORIZE_URL, PRODUCTION_SCOPE),
    "sandbox": EnvironmentHosts(SANDBOX_API_URL, DEFAULT_TOKEN_URL, DEFAULT_AUTHORIZE_URL, SANDBOX_SCOPE),
}

#: Field name -> environment variable / Flask config key.
_ENV_NAMES: dict[str, str] = {
    "secret_keys": "MSCLKID_SECRET_KEYS",
    "store_url": "MSCLKID_STORE_URL",
    "cookie_name": "MSCLKID_COOKIE_NAME",
    "cookie_domain": "MSCLKID_COOKIE_DOMAIN",
    "cookie_secure": "MSCLKID_COOKIE_SECURE",
    "cookie_max_age": "MSCLKID_COOKIE_MAX_AGE",
    "consent_default": "MSCLKID_CONSENT_DEFAULT",
    "consent_cookie_name": "MSCLKID_CONSENT_COOKIE",
    "consent_granted_values": "MSCLKID_CONSENT_GRANTED_VALUES",
    "consent_denied_values": "MSCLKID_CONSENT_DENIED_VALUES",
    "consent_honor_gpc": "MSCLKID_CONSENT_HONOR_GPC",
    "consent_tcf_cookie_name": "MSCLKID_CONSENT_TCF_COOKIE",
    "capture_path": "MSCLKID_CAPTURE_PATH",
    "snippet_path": "MSCLKID_SNIPPET_PATH",
    "worker": "MSCLKID_WORKER",
    "uet_page_loads": "MSCLKID_UET_PAGE_LOADS",
    "uet_denied_client_info": "MSCLKID_UET_DENIED_SEND_CLIENT_INFO",
    "allowed_hosts": "MSCLKID_ALLOWED_HOSTS",
    "capture_rate": "MSCLKID_CAPTURE_RATE",
    "capture_burst": "MSCLKID_CAPTURE_BURST",
    "developer_token": "MSADS_DEVELOPER_TOKEN",
    "client_id": "MSADS_CLIENT_ID",
    "client_secret": "MSADS_CLIENT_SECRET",
    "refresh_token": "MSADS_REFRESH_TOKEN",
    "customer_id": "MSADS_CUSTOMER_ID",
    "account_id": "MSADS_ACCOUNT_ID",
    "environment": "MSADS_ENVIRONMENT",
    "conversion_goals": "MSADS_CONVERSION_GOALS",
    "api_url": "MSADS_API_URL",
    "token_url": "MSADS_TOKEN_URL",
    "uet_tag_id": "UET_TAG_ID",
    "uet_api_token": "UET_API_TOKEN",
    "uet_api_url": "UET_API_URL",
}

#: Fields whose values are secrets: masked in ``repr`` and registered for log redaction.
SECRET_FIELDS = frozenset({"secret_keys", "client_secret", "refresh_token", "developer_token", "uet_api_token"})

_NINETY_DAYS = 90 * 24 * 3600
_FOUR_HUNDRED_DAYS = 400 * 24 * 3600


def _split_list(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _parse_bool(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name} must be true or false, not {value!r}", setting=name)


@dataclass(frozen=True, slots=True)
class Settings:
    """The toolkit's configuration.  Build it with keywords, :meth:`from_env` or :meth:`from_mapping`."""

    # Capture
    secret_keys: tuple[str, ...] = ()
    cookie_name: str = "__Host-msclkid"
    cookie_domain: str | None = None
    cookie_secure: bool = True
    cookie_max_age: int = _NINETY_DAYS
    consent_default: Literal["granted", "denied"] = "granted"
    consent_cookie_name: str | None = None
    consent_granted_values: tuple[str, ...] = ("granted", "true", "1", "yes", "allow", "accepted")
    consent_denied_values: tuple[str, ...] = ("denied", "false", "0", "no", "deny", "rejected")
    consent_honor_gpc: bool = True
    consent_tcf_cookie_name: str | None = "euconsent-v2"
    capture_path: str = "/_msclkid"
    snippet_path: str = "/_msclkid.js"
    #: Hosts the site serves (page-view URLs are built only from these); empty: any valid host name.
    allowed_hosts: tuple[str, ...] = ()
    #: Capture endpoint requests per second per client (token bucket); 0 turns the limit off.
    capture_rate: float = 1.0
    #: Capture endpoint requests a client may make at once before the rate applies.
    capture_burst: int = 20
    # Dispatch
    store_url: str | None = None
    worker: Literal["off", "thread"] = "off"
    uet_page_loads: Literal["off", "landing", "html"] = "off"
    #: Send the client IP and user agent with UET events whose consent is denied (default: not sent).
    uet_denied_client_info: bool = False
    developer_token: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    refresh_token: str | None = None
    customer_id: str | None = None
    account_id: str | None = None
    environment: Environment = "production"
    conversion_goals: tuple[str, ...] = ()
    api_url: str | None = None
    token_url: str | None = None
    uet_tag_id: str | None = None
    uet_api_token: str | None = None
    uet_api_url: str = DEFAULT_UET_API_URL
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        # Accept "a,b" strings from callers who pass a raw environment value by keyword.
        keys: object = self.secret_keys
        if isinstance(keys, str):
            object.__setattr__(self, "secret_keys", _split_list(keys))
        goals: object = self.conversion_goals
        if isinstance(goals, str):
            object.__setattr__(self, "conversion_goals", _split_list(goals))
        if self.environment not in ENVIRONMENTS:
            raise ConfigError(
                f"MSADS_ENVIRONMENT must be 'production' or 'sandbox', not {self.environment!r}",
                setting="MSADS_ENVIRONMENT",
            )
        if self.consent_default not in ("granted", "denied"):
            raise ConfigError(
                "MSCLKID_CONSENT_DEFAULT must be 'granted' (opt-out regions) or 'denied' (opt-in regions)",
                setting="MSCLKID_CONSENT_DEFAULT",
            )
        if not 0 < self.cookie_max_age <= _FOUR_HUNDRED_DAYS:
            raise ConfigError(
                "MSCLKID_COOKIE_MAX_AGE must be between 1 second and 400 days (browsers cap cookies at 400 days)",
                setting="MSCLKID_COOKIE_MAX_AGE",
            )
        if self.worker not in ("off", "thread"):
            raise ConfigError("MSCLKID_WORKER must be 'off' or 'thread'", setting="MSCLKID_WORKER")
        if self.uet_page_loads not in ("off", "landing", "html"):
            raise ConfigError(
                "MSCLKID_UET_PAGE_LOADS must be 'off', 'landing' or 'html'", setting="MSCLKID_UET_PAGE_LOADS"
            )
        hosts: object = self.allowed_hosts
        if isinstance(hosts, str):
            object.__setattr__(self, "allowed_hosts", _split_list(hosts))
        rate: object = self.capture_rate
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate < float("inf"):
            raise ConfigError(
                "MSCLKID_CAPTURE_RATE must be a number of requests per second (0 turns the limit off)",
                setting="MSCLKID_CAPTURE_RATE",
            )
        if isinstance(self.capture_burst, bool) or not isinstance(self.capture_burst, int) or self.capture_burst < 1:
            raise ConfigError(
                "MSCLKID_CAPTURE_BURST must be a whole number of at least 1", setting="MSCLKID_CAPTURE_BURST"
            )
        for goal in self.conversion_goals:
            if len(goal) > 100:
                raise ConfigError(
                    "MSADS_CONVERSION_GOALS: goal names are at most 100 characters",
                    setting="MSADS_CONVERSION_GOALS",
                )

    # -- derived values ---------------------------------------------------------------------------
    @property
    def hosts(self) -> EnvironmentHosts:
        return ENVIRONMENTS[self.environment]

    @property
    def effective_api_url(self) -> str:
        return (self.api_url or self.hosts.api_url).rstrip("/")

    @property
    def effective_token_url(self) -> str:
        return self.token_url or self.hosts.token_url

    @property
    def oauth_scope(self) -> str:
        return self.hosts.scope

    @property
    def effective_store_url(self) -> str:
        return self.store_url or f"sqlite:///{os.path.abspath(DEFAULT_STORE_FILENAME)}"

    @property
    def microsoft_configured(self) -> bool:
        """True when every value needed to call Campaign Management is present."""
        return all((self.developer_token, self.client_id, self.refresh_token, self.customer_id, self.account_id))

    @property
    def uet_configured(self) -> bool:
        return bool(self.uet_tag_id and self.uet_api_token)

    def secrets(self) -> tuple[str, ...]:
        """Every secret value configured, for log redaction."""
        values: list[str] = list(self.secret_keys)
        for name in SECRET_FIELDS - {"secret_keys"}:
            value = getattr(self, name)
            if value:
                values.append(value)
        return tuple(values)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    def __repr__(self) -> str:
        shown = []
        for f in dataclasses.fields(self):
            if f.name == "extra":
                continue
            value = getattr(self, f.name)
            if f.name in SECRET_FIELDS and value:
                value = "<redacted>"
            shown.append(f"{f.name}={value!r}")
        return f"Settings({', '.join(shown)})"

    # -- constructors -----------------------------------------------------------------------------
    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any], **overrides: Any) -> Settings:
        """Build from a mapping keyed by the documented names (``MSADS_CLIENT_ID``, ...).

        Works for ``os.environ`` and Flask's ``app.config``.  Strings are parsed; other values
        (a list of secret keys in Flask config, a bool) are taken as they are.  Unset and empty
        values keep the defaults.  ``overrides`` are field names and win over the mapping.
        """
        kwargs: dict[str, Any] = {}
        for name, key in _ENV_NAMES.items():
            if key not in mapping:
                continue
            raw = mapping[key]
            if raw is None or raw == "":
                continue
            kwargs[name] = _coerce(name, key, raw)
        kwargs.update(overrides)
        return cls(**kwargs)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        return cls.from_mapping(os.environ if environ is None else environ, **overrides)

    @staticmethod
    def setting_names() -> Mapping[str, str]:
        """Field name -> environment variable name, for documentation and the Flask extension."""
        return dict(_ENV_NAMES)


def _coerce(name: str, key: str, raw: Any) -> Any:
    if name in {"secret_keys", "conversion_goals", "consent_granted_values", "consent_denied_values", "allowed_hosts"}:
        if isinstance(raw, str):
            return _split_list(raw)
        return tuple(str(v) for v in raw)
    if name in {"cookie_secure", "consent_honor_gpc", "uet_denied_client_info"}:
        return raw if isinstance(raw, bool) else _parse_bool(key, str(raw))
    if name in {"cookie_max_age", "capture_burst"}:
        try:
            return int(raw)
        except (TypeError, ValueError):
            raise ConfigError(f"{key} must be a whole number", setting=key) from None
    if name == "capture_rate":
        try:
            return float(raw)
        except (TypeError, ValueError):
            raise ConfigError(f"{key} must be a number of requests per second", setting=key) from None
    if name in {"customer_id", "account_id", "uet_tag_id"}:
        return str(raw).strip()
    return raw.strip() if isinstance(raw, str) else raw
