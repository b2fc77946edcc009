"""Microsoft identity platform OAuth: refresh token -> access token, cached, rotated, persisted, single-flight.

Microsoft returns a new refresh token on every refresh and expects the old one to be discarded, but does
not revoke it.  The hazards are therefore not reuse but *lost updates* (process B writes an older token
after process A wrote a newer one), *stampedes* (N workers refresh at the same expiry) and *silent drift*.
The defence, as in MSAL's token cache extensions:

- every refresh happens under the store's cross-process lock, after re-reading the store;
- if another process refreshed meanwhile, its token is used instead of refreshing again;
- a stored token carries a ``serial`` that only grows; a store refuses to save a token that is not newer,
  and never stores an empty refresh token (a response without ``refresh_token`` keeps the old one).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import requests

from msclkid_middleware.config import ENVIRONMENTS
from msclkid_middleware.errors import (
    AuthenticationError,
    ConfigError,
    OAuthClientError,
    ReconsentRequired,
    TransientError,
)
from msclkid_middleware.microsoft.http import (
    DEFAULT_TIMEOUT,
    SessionClient,
    Timeout,
    json_body,
    network_error,
    retry_after,
)
from msclkid_middleware.tokens import MemoryTokenStore, StoredToken, TokenStore

if TYPE_CHECKING:
    from msclkid_middleware.config import Settings

__all__ = ["RefreshTokenProvider"]

log = logging.getLogger("msclkid_middleware.microsoft.oauth")

#: Refresh this long before the access token expires (bounded to half the lifetime for short-lived tokens).
REFRESH_MARGIN = 300.0
_AADSTS = re.compile(r"AADSTS(\d+)")
_RECONSENT_ERRORS = frozenset({"interaction_required", "consent_required"})
#: The application itself is refused (wrong client ID or secret, or a registration that does not allow the flow):
#: a configuration error; a new consent cannot fix it (reference §6.2).
_CLIENT_ERRORS = frozenset({"invalid_client", "unauthorized_client"})
#: AADSTS700016 "application not found", AADSTS7000215 "invalid client secret", AADSTS7000218 "the request body
#: must contain client_secret", AADSTS700025 "public clients must not send a secret".
_SECRET_CODES = frozenset({7000215, 7000218, 700025})


class RefreshTokenProvider(SessionClient):
    """Access tokens for Campaign Management from a (rotating) refresh token.

    ``access_token()`` returns a cached token until :data:`REFRESH_MARGIN` before it expires, then
    refreshes, single-flight across threads (a lock) and processes (``token_store.lock()``).  Every
    refresh persists the rotated refresh token through ``token_store``.  The refresh token in the store
    wins over the ``refresh_token`` argument, which only seeds an empty store.
    """

    def __init__(
        self,
        client_id: str,
        client_secret: str | None = None,
        *,
        refresh_token: str | None = None,
        scope: str | None = None,
        token_url: str | None = None,
        authorize_url: str | None = None,
        environment: str = "production",
        token_store: TokenStore | None = None,
        session: requests.Session | None = None,
        timeout: Timeout = DEFAULT_TIMEOUT,
        refresh_margin: float = REFRESH_MARGIN,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not client_id:
            raise ConfigError("MSADS_CLIENT_ID is required for OAuth", setting="MSADS_CLIENT_ID")
        if environment not in ENVIRONMENTS:
            raise ConfigError("environment must be 'production' or 'sandbox'", setting="MSADS_ENVIRONMENT")
        super().__init__(timeout=timeout, session=session)
        hosts = ENVIRONMENTS[environment]
        self.client_id = client_id
        self._client_secret = client_secret or None
        self._seed = refresh_token or None
        self.scope = scope or hosts.scope
        self.token_url = token_url or hosts.token_url
        if authorize_url is None:
            # An overridden token endpoint (the emulator) serves /authorize next to /token.
            authorize_url = (
                self.token_url[: -len("/token")] + "/authorize"
                if token_url and self.token_url.endswith("/token")
                else hosts.authorize_url
            )
        self.authorize_endpoint = authorize_url
        self.token_store: TokenStore = token_store if token_store is not None else MemoryTokenStore()
        self.refresh_margin = refresh_margin
        self._clock = clock
        self._lock = threading.RLock()
        self._current: StoredToken | None = None

    @classmethod
    def from_settings(
        cls, settings: Settings, *, token_store: TokenStore | None = None, session: requests.Session | None = None
    ) -> RefreshTokenProvider:
        if not settings.client_id:
            raise ConfigError("MSADS_CLIENT_ID is required for OAuth", setting="MSADS_CLIENT_ID")
        return cls(
            settings.client_id,
            settings.client_secret,
            refresh_token=settings.refresh_token,
            scope=settings.oauth_scope,
            token_url=settings.effective_token_url,
            environment=settings.environment,
            token_store=token_store,
            session=session,
        )

    def __repr__(self) -> str:
        return f"RefreshTokenProvider(client_id={self.client_id!r}, token_url={self.token_url!r})"

    # -- public API -------------------------------------------------------------------------------------------

    def access_token(self) -> str:
        """A valid access token, refreshing (once, for everyone) when the cached one is about to expire."""
        with self._lock:
            current = self._current
            if current is not None and current.access_valid(self._clock(), self._margin(current)):
                assert current.access_token is not None  # noqa: S101 - access_valid checked it
                return current.access_token
            return self._refresh(rejected=None)

    def force_refresh(self) -> str:
        """Refresh now, because Microsoft refused the current access token (code 109 / HTTP 401).

        If another thread or process already replaced that token, its newer one is used instead.
        """
        with self._lock:
            rejected = self._current.access_token if self._current is not None else None
            return self._refresh(rejected=rejected, force=True)

    def authorize_url(self, redirect_uri: str, state: str, *, prompt: str | None = None) -> str:
        """The consent page URL for the first ``authorization_code`` grant (``msclkid auth``)."""
        params = {
            "client_id": self.client_id,
            "response_type": "code",
            "redirect_uri": redirect_uri,
            "response_mode": "query",
            "scope": self.scope,
            "state": state,
        }
        if prompt:
            params["prompt"] = prompt
        return f"{self.authorize_endpoint}?{urlencode(params)}"

    def exchange_code(self, code: str, redirect_uri: str) -> StoredToken:
        """Redeem an authorization code; the resulting refresh token is saved as the newest in the store."""
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
        with self._lock, self.token_store.lock():
            stored = self.token_store.load()
            token = self._request(form, previous=stored, fallback_refresh=None)
            self._persist(token)
            return token

    # -- internals --------------------------------------------------------------------------------------------

    def _margin(self, token: StoredToken) -> float:
        lifetime = (token.access_expires_at or 0.0) - token.issued_at
        return max(0.0, min(self.refresh_margin, lifetime / 2))

    def _refresh(self, *, rejected: str | None, force: bool = False) -> str:
        with self.token_store.lock():
            stored = self.token_store.load()
            now = self._clock()
            # Someone (maybe another process) refreshed already: adopt its access token, unless that is
            # exactly the one Microsoft just refused.
            if (
                stored is not None
                and stored.access_valid(now, self._margin(stored))
                and (not force or stored.access_token != rejected)
            ):
                self._current = stored
                assert stored.access_token is not None  # noqa: S101
                return stored.access_token
            refresh_token = stored.refresh_token if stored is not None else self._seed
            if not refresh_token:
                raise ReconsentRequired(
                    "no refresh token is configured or stored; run `msclkid auth` to grant access",
                    error_code="no_refresh_token",
                )
            form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
            token = self._request(form, previous=stored, fallback_refresh=refresh_token)
            self._persist(token)
            assert token.access_token is not None  # noqa: S101 - _request guarantees it
            return token.access_token

    def _persist(self, token: StoredToken) -> None:
        if not self.token_store.save(token):
            # Cannot happen under the store lock unless another writer ignores the lock; keep the newer one.
            log.warning("token store holds a newer token than the one just issued; keeping the stored one")
            newer = self.token_store.load()
            if newer is not None and newer.access_token:
                self._current = newer
                return
        self._current = token
        log.info("access token refreshed (serial %d)", token.serial)

    def _request(
        self, form: dict[str, str], *, previous: StoredToken | None, fallback_refresh: str | None
    ) -> StoredToken:
        payload = {"client_id": self.client_id, "scope": self.scope, **form}
        if self._client_secret:
            payload["client_secret"] = self._client_secret
        started = self._clock()
        try:
            # The secret and tokens ride in the form body, never in the URL (which urllib3 logs).
            response = self.session.post(
                self.token_url,
                data=payload,
                headers={"Content-Type": "application/x-www-form-urlencoded"},
                timeout=self.timeout,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            raise network_error("token endpoint", exc) from None
        body = json_body(response)
        if response.status_code != 200 or not isinstance(body, dict) or not body.get("access_token"):
            raise self._token_error(response, body)
        try:
            expires_in = float(body.get("expires_in", 3600))
        except (TypeError, ValueError):
            expires_in = 3600.0
        # Microsoft rotates the refresh token; a response without one keeps the old (never store None).
        new_refresh = body.get("refresh_token") or fallback_refresh
        if not new_refresh:
            raise AuthenticationError(
                "the token endpoint returned no refresh token; check that the scope includes offline_access",
                status=response.status_code,
            )
        return StoredToken(
            refresh_token=str(new_refresh),
            issued_at=started,
            serial=(previous.serial if previous is not None else 0) + 1,
            access_token=str(body["access_token"]),
            access_expires_at=started + expires_in,
            scope=str(body.get("scope") or self.scope),
        )

    def _token_error(self, response: requests.Response, body: Any) -> Exception:
        status = response.status_code
        error = str(body.get("error", "")) if isinstance(body, dict) else ""
        description = str(body.get("error_description", "")) if isinstance(body, dict) else ""
        match = _AADSTS.search(description)
        aadsts = int(match.group(1)) if match else None
        # First sentence only: the rest is trace and correlation IDs.  Entra never echoes the token, but be
        # certain: drop the description if it contains anything we sent as a secret.
        summary = description.split(" Trace ID:")[0].strip()
        for secret in (self._client_secret, self._seed, *self._known_secrets()):
            if secret and secret in summary:
                summary = ""
        where = f"{error}{f', AADSTS{aadsts}' if aadsts else ''}"
        if status >= 500 or status == 429 or error == "temporarily_unavailable":
            return TransientError(
                f"token endpoint unavailable ({where or 'no error body'})",
                status=status,
                code=aadsts,
                error_code=error or None,
                retry_after=retry_after(response),
            )
        if error in _CLIENT_ERRORS or aadsts == 700025:
            setting = "MSADS_CLIENT_SECRET" if aadsts in _SECRET_CODES else "MSADS_CLIENT_ID"
            return OAuthClientError(
                f"Microsoft refused the application ({where}): {summary or 'no description'}. "
                f"Check {setting} (and the app registration); a new `msclkid auth` cannot fix this.",
                setting=setting,
                status=status,
                code=aadsts,
                error_code=error or "invalid_request",
            )
        if error.startswith("invalid_") or error in _RECONSENT_ERRORS:
            return ReconsentRequired(
                f"Microsoft refused the OAuth grant ({where}): {summary or 'no description'}. "
                "Run `msclkid auth` to grant access again.",
                status=status,
                code=aadsts,
                error_code=error,
            )
        return AuthenticationError(
            f"token request failed ({where or 'HTTP ' + str(status)}): {summary or 'no description'}",
            status=status,
            code=aadsts,
            error_code=error or None,
        )

    def _known_secrets(self) -> tuple[str, ...]:
        current = self._current
        if current is None:
            return ()
        return tuple(s for s in (current.refresh_token, current.access_token) if s)
