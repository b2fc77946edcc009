"""Microsoft identity platform emulation: ``/{tenant}/oauth2/v2.0/token`` and ``.../authorize``.

Error bodies follow Entra's JSON shape (``error``, ``error_description`` starting with an AADSTS code,
``error_codes``, ``timestamp``, ``trace_id``, ``correlation_id``).  Refresh tokens rotate: every refresh
returns a new one with a larger serial (``rt-<serial>-<random>``); like Microsoft, the old one stays valid
unless ``invalidate_used_refresh_tokens`` is set or it was revoked through the control API.
"""

from __future__ import annotations

import html
import re
import uuid
from urllib.parse import urlencode, urlsplit, urlunsplit

from werkzeug.wrappers import Request, Response

from msclkid_middleware.emulator.settings import PRODUCTION_SCOPES
from msclkid_middleware.emulator.wire import CallContext, json_response
from msclkid_middleware.emulator.world import World

__all__ = ["DEFAULT_SCOPE", "authorize", "redirect_registered", "token", "token_error"]

DEFAULT_SCOPE = "https://ads.microsoft.com/msads.manage offline_access"


_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})
# host[:port] and nothing else: no user info ("localhost@evil.example"), no backslash, no percent-escapes.
_PLAIN_NETLOC = re.compile(r"(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?", re.ASCII)


def redirect_registered(redirect_uri: str, registered: tuple[str, ...]) -> bool:
    """Is ``redirect_uri`` one the application registered?  Exact match, or for an ``http`` loopback entry the
    same host with any port (as Entra ID ignores the port of loopback redirect URIs) and a path below the entry's."""
    if redirect_uri in registered:
        return True
    parts = urlsplit(redirect_uri)
    if parts.scheme != "http" or not _PLAIN_NETLOC.fullmatch(parts.netloc) or parts.hostname not in _LOOPBACK:
        return False
    for entry in registered:
        known = urlsplit(entry)
        same_host = known.scheme == "http" and known.hostname == parts.hostname and not known.query
        if same_host and parts.path.startswith(known.path or "/"):
            return True
    return False


def _scope_ok(scope: str) -> bool:
    parts = scope.split()
    # The Ads scope must be present; offline_access (refresh tokens) and OpenID scopes may ride along.
    return any(p in PRODUCTION_SCOPES for p in parts) and all(
        p in PRODUCTION_SCOPES or p in ("offline_access", "openid", "profile", "email") for p in parts
    )


def token_error(
    world: World, status: int, error: str, code: int, text: str, *, grant_type: str = "", client_id: str | None = None
) -> Response:
    now = world.clock()
    trace_id, correlation_id = str(uuid.uuid4()), str(uuid.uuid4())
    timestamp = now.strftime("%Y-%m-%d %H:%M:%SZ")
    description = f"AADSTS{code}: {text} Trace ID: {trace_id} Correlation ID: {correlation_id} Timestamp: {timestamp}"
    world.record_token(grant_type=grant_type, outcome=error, client_id=client_id, error_codes=(code,))
    return json_response(
        {
            "error": error,
            "error_description": description,
            "error_codes": [code],
            "timestamp": timestamp,
            "trace_id": trace_id,
            "correlation_id": correlation_id,
            "error_uri": f"https://login.microsoftonline.com/error?code={code}",
        },
        status,
        {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"},
    )


def _missing_grant_type(world: World) -> Response:
    # Entra ID answers a body it cannot read as form data as if grant_type were missing.
    return token_error(
        world, 400, "invalid_request", 900144, "The request body must contain the following parameter: 'grant_type'."
    )


def token(world: World, request: Request, ctx: CallContext) -> Response:
    config = world.config
    if request.mimetype != "application/x-www-form-urlencoded":
        return _missing_grant_type(world)
    form = request.form
    grant_type = form.get("grant_type", "")
    client_id = form.get("client_id")
    with world.lock:
        if not grant_type:
            return _missing_grant_type(world)
        if grant_type not in ("refresh_token", "authorization_code"):
            return token_error(
                world,
                400,
                "unsupported_grant_type",
                70003,
                f"The app requested an unsupported grant type '{grant_type}'.",
                grant_type=grant_type,
            )
        if not client_id:
            return token_error(
                world,
                400,
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'client_id'.",
                grant_type=grant_type,
            )
        if client_id != config.client_id:
            return token_error(
                world,
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the directory.",
                grant_type=grant_type,
                client_id=client_id,
            )
        secret = form.get("client_secret")
        if config.client_secret is None and secret:
            return token_error(
                world,
                400,
                "invalid_request",
                700025,
                "Client is public so neither 'client_assertion' nor 'client_secret' should be presented.",
                grant_type=grant_type,
                client_id=client_id,
            )
        if config.client_secret is not None and not secret:
            return token_error(
                world,
                401,
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
                grant_type=grant_type,
                client_id=client_id,
            )
        if config.client_secret is not None and secret != config.client_secret:
            return token_error(
                world,
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is the "
                "client secret value, not the client secret ID.",
                grant_type=grant_type,
                client_id=client_id,
            )
        scope = form.get("scope", "")
        # A code redemption may leave the scope out (it defaults to what the code was granted for): Microsoft's
        # own SDK redeems codes without one.  A refresh must name it.
        if not scope and grant_type == "refresh_token":
            return token_error(
                world,
                400,
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'scope'.",
                grant_type=grant_type,
                client_id=client_id,
            )
        if scope and not _scope_ok(scope):
            return token_error(
                world,
                400,
                "invalid_scope",
                70011,
                f"The provided value for the input parameter 'scope' is not valid. The scope {scope} is not valid.",
                grant_type=grant_type,
                client_id=client_id,
            )
        now = world.clock()
        parent = None
        if grant_type == "refresh_token":
            presented = form.get("refresh_token", "")
            if not presented:
                return token_error(
                    world,
                    400,
                    "invalid_request",
                    900144,
                    "The request body must contain the following parameter: 'refresh_token'.",
                    grant_type=grant_type,
                    client_id=client_id,
                )
            parent = world.refresh_tokens.get(presented)
            if parent is None or parent.client_id != client_id:
                return token_error(
                    world,
                    400,
                    "invalid_grant",
                    9002313,
                    "Invalid request. Request is malformed or invalid.",
                    grant_type=grant_type,
                    client_id=client_id,
                )
            if parent.revoked:
                return token_error(
                    world,
                    400,
                    "invalid_grant",
                    50173,
                    "The provided grant has expired due to it being revoked, a fresh auth token is "
                    "needed. The user might have changed or reset their password.",
                    grant_type=grant_type,
                    client_id=client_id,
                )
            if parent.expires_at <= now:
                return token_error(
                    world,
                    400,
                    "invalid_grant",
                    700082,
                    "The refresh token has expired due to inactivity.",
                    grant_type=grant_type,
                    client_id=client_id,
                )
            parent.used += 1
            if config.invalidate_used_refresh_tokens:
                parent.revoked = True
        else:
            code = form.get("code", "")
            grant = world.auth_codes.get(code)
            if grant is None or grant.client_id != client_id or grant.expires_at <= now:
                return token_error(
                    world,
                    400,
                    "invalid_grant",
                    70000,
                    "The provided value for the 'code' parameter is not valid.",
                    grant_type=grant_type,
                    client_id=client_id,
                )
            if grant.redeemed:
                return token_error(
                    world,
                    400,
                    "invalid_grant",
                    54005,
                    "OAuth2 Authorization code was already redeemed, please retry with a new valid "
                    "code or use an existing refresh token.",
                    grant_type=grant_type,
                    client_id=client_id,
                )
            if form.get("redirect_uri", "") != grant.redirect_uri:
                return token_error(
                    world,
                    400,
                    "invalid_grant",
                    50148,
                    "The redirect_uri specified in the token request does not match the redirect_uri "
                    "used when acquiring the authorization code.",
                    grant_type=grant_type,
                    client_id=client_id,
                )
            grant.redeemed = True
            scope = scope or grant.scope
        access, lifetime = world.issue_access_token(client_id, scope)
        refresh = world.issue_refresh_token(client_id, scope, parent)
        serial = world.refresh_tokens[refresh].serial
        world.record_token(
            grant_type=grant_type,
            outcome="issued",
            serial=serial,
            parent_serial=parent.serial if parent else None,
            refresh_token=refresh,
            client_id=client_id,
        )
    return json_response(
        {
            "token_type": "Bearer",
            "scope": scope,
            "expires_in": lifetime,
            "ext_expires_in": lifetime,
            "access_token": access,
            "refresh_token": refresh,
        },
        200,
        {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"},
    )


def _page(title: str, body: str, status: int = 200) -> Response:
    document = (
        f"<!doctype html><html lang=en><meta charset=utf-8><title>{html.escape(title)}</title>"
        "<body style='font-family:sans-serif;max-width:40em;margin:3em auto'>"
        f"<h1>{html.escape(title)}</h1>{body}</body></html>"
    )
    return Response(
        document, status=status, content_type="text/html; charset=utf-8", headers={"Cache-Control": "no-store"}
    )


def authorize(world: World, request: Request, ctx: CallContext) -> Response:
    """Auto-approve: redirect to ``redirect_uri`` with ``code`` and ``state`` (Microsoft's consent, minus the UI).

    The native-client redirect (``.../oauth2/nativeclient``) cannot be followed locally, so for it the page
    shows the code and the full redirect URL the user would otherwise copy from the address bar.
    """
    args = request.values
    client_id = args.get("client_id", "")
    redirect_uri = args.get("redirect_uri", "")
    scope = args.get("scope", "")
    state = args.get("state")
    config = world.config
    if client_id != config.client_id:
        return _page(
            "Sign in error",
            f"<p>AADSTS700016: Application with identifier '{html.escape(client_id)}' was not found.</p>",
            400,
        )
    if args.get("response_type", "code") != "code":
        return _page("Sign in error", "<p>AADSTS900144: response_type must be 'code'.</p>", 400)
    parts = urlsplit(redirect_uri)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return _page("Sign in error", "<p>AADSTS900144: a valid 'redirect_uri' is required.</p>", 400)
    if not redirect_registered(redirect_uri, config.redirect_uris):
        return _page(
            "Sign in error",
            "<p>AADSTS50011: The redirect URI specified in the request does not "
            "match the redirect URIs configured for the application.</p>",
            400,
        )
    if not _scope_ok(scope):
        return _page(
            "Sign in error", "<p>AADSTS70011: The provided value for the input parameter 'scope' is not valid.</p>", 400
        )
    with world.lock:
        code = world.new_auth_code(client_id, redirect_uri, scope)
    query = urlencode({"code": code, **({"state": state} if state is not None else {})})
    target = urlunsplit((parts.scheme, parts.netloc, parts.path, "&".join(filter(None, [parts.query, query])), ""))
    if parts.path.endswith("/oauth2/nativeclient"):
        return _page(
            "Signed in (emulator)",
            f"<p>Copy this address into the waiting program:</p><p><code>{html.escape(target)}</code></p>"
            f"<p>Code: <code>{html.escape(code)}</code></p>",
        )
    return Response("", status=302, headers={"Location": target, "Cache-Control": "no-store"})
