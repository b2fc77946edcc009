"""The Microsoft clients a tracker delivers with: the caller's own, built from settings, or none.

Each client is checked once, here, against the protocol the dispatcher needs (``protocols.py``), so a
wrong argument fails at construction instead of at the first flush with rows stuck in flight.  Building
from settings imports the HTTP layer (``requests``) only then, never for recording alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from msclkid_middleware.config import Settings
from msclkid_middleware.dispatch.protocols import CampaignClient, UetSender
from msclkid_middleware.errors import ConfigError, StoreError
from msclkid_middleware.outbox import OutboxStore
from msclkid_middleware.redact import RedactingFilter

__all__ = ["UET_TOKEN_PREFIX", "Clients", "build_clients", "stored_secret"]

#: Token-table name prefix of a UET CAPI token stored by ``msclkid uet token`` (``uet:<tag ID>``).
UET_TOKEN_PREFIX = "uet:"  # noqa: S105 - a key prefix, not a secret


@dataclass(frozen=True, slots=True)
class Clients:
    """The clients in use and which of them were built here (and are therefore closed by the tracker)."""

    campaign: CampaignClient | None
    uet: UetSender | None
    owned: tuple[object, ...] = ()

    def close(self) -> None:
        """Close the HTTP sessions (and the OAuth provider) of the clients built here."""
        for client in self.owned:
            close = getattr(client, "close", None)
            if callable(close):
                close()
            provider = getattr(client, "token_provider", None)
            if provider is not None and callable(getattr(provider, "close", None)):
                provider.close()


def build_clients(
    settings: Settings, store: OutboxStore, redactor: RedactingFilter, *, microsoft: object, uet: object
) -> Clients:
    """``microsoft``/``uet``: ``None`` builds from settings, ``False`` disables that kind, else the client itself."""
    campaign = _campaign(settings, store, redactor, microsoft)
    sender = _uet(settings, store, redactor, uet)
    owned = tuple(c for c, arg in ((campaign, microsoft), (sender, uet)) if c is not None and arg is None)
    return Clients(campaign, sender, owned)


def _campaign(settings: Settings, store: OutboxStore, redactor: RedactingFilter, arg: object) -> CampaignClient | None:
    if arg is False:
        return None
    if arg is not None:
        if not isinstance(arg, CampaignClient):
            raise ConfigError(
                "microsoft= takes a CampaignManagementClient, None (build one from the MSADS_* settings) or "
                "False (no Campaign Management delivery)",
                setting="microsoft",
            )
        return arg
    if not settings.microsoft_configured and not _has_stored_refresh_token(settings, store, redactor):
        return None
    from msclkid_middleware.microsoft.campaign import CampaignManagementClient
    from msclkid_middleware.microsoft.oauth import RefreshTokenProvider
    from msclkid_middleware.outbox.tokens import OutboxTokenStore

    tokens = OutboxTokenStore(store, redactor=redactor)
    provider = RefreshTokenProvider.from_settings(settings, token_store=tokens)
    return CampaignManagementClient.from_settings(settings, token_provider=provider)


def _uet(settings: Settings, store: OutboxStore, redactor: RedactingFilter, arg: object) -> UetSender | None:
    if arg is False:
        return None
    if arg is not None:
        if not isinstance(arg, UetSender):
            raise ConfigError(
                "uet= takes a UetClient, None (build one from UET_TAG_ID / UET_API_TOKEN) or False", setting="uet"
            )
        return arg
    stored_name = f"{UET_TOKEN_PREFIX}{settings.uet_tag_id}" if settings.uet_tag_id else None
    token = settings.uet_api_token or stored_secret(store, redactor, stored_name)
    if not (settings.uet_tag_id and token):
        return None
    from msclkid_middleware.microsoft.uet import UetClient

    return UetClient(api_url=settings.uet_api_url, api_token=token)


def _has_stored_refresh_token(settings: Settings, store: OutboxStore, redactor: RedactingFilter) -> bool:
    """A refresh token stored by ``msclkid auth`` stands in for ``MSADS_REFRESH_TOKEN``."""
    s = settings
    if not all((s.developer_token, s.client_id, s.customer_id, s.account_id)):
        return False
    return stored_secret(store, redactor, "microsoft") is not None


def stored_secret(store: OutboxStore, redactor: RedactingFilter, name: str | None) -> str | None:
    """A secret from the store's token table (``msclkid auth``, ``msclkid uet token``); the redactor learns it."""
    if name is None:
        return None
    try:
        record = store.load_token(name)
    except StoreError:
        return None
    if record is None or not record.refresh_token:
        return None
    redactor.add(record.refresh_token)
    return record.refresh_token
