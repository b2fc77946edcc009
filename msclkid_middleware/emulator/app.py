"""The emulator WSGI application: routing, TrackingId, fault injection, and the Python control surface.

``Emulator`` is a plain WSGI callable; :mod:`.server` runs it on a threaded werkzeug server.  Every
response carries a ``TrackingId`` header (a fresh UUID per request, also written into fault bodies and
the journal), so a test can correlate what a client logged with what the emulator received.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import socket
import struct
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from msclkid_middleware.emulator import campaign, control, dashboard, goals, oauth, uet
from msclkid_middleware.emulator._http import CallContext, json_response
from msclkid_middleware.emulator.codes import CODES
from msclkid_middleware.emulator.faults import FaultRule
from msclkid_middleware.emulator.settings import EmulatorConfig
from msclkid_middleware.emulator.state import Account, Goal, ReceivedItem, RequestRecord, TokenRecord, UetTag
from msclkid_middleware.emulator.world import World, utcnow

if TYPE_CHECKING:  # pragma: no cover
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = ["Emulator"]

_log = logging.getLogger(__name__)

_CM = "/CampaignManagement/v13"

_URLS = Map(
    [
        Rule("/", endpoint="dashboard", methods=["GET"]),
        Rule("/<tenant>/oauth2/v2.0/token", endpoint="token", methods=["POST"]),
        Rule("/<tenant>/oauth2/v2.0/authorize", endpoint="authorize", methods=["GET", "POST"]),
        Rule(f"{_CM}/OfflineConversions/Apply", endpoint="offline", methods=["POST"]),
        Rule(f"{_CM}/OfflineConversionAdjustments/Apply", endpoint="offline_adjustments", methods=["POST"]),
        Rule(f"{_CM}/OnlineConversionAdjustments/Apply", endpoint="online_adjustments", methods=["POST"]),
        Rule(f"{_CM}/ConversionGoals", endpoint="goals", methods=["POST"]),
        Rule(f"{_CM}/ConversionGoals/QueryByIds", endpoint="goals", methods=["POST"]),
        Rule(f"{_CM}/ConversionGoals/QueryByTagIds", endpoint="goals", methods=["POST"]),
        Rule(f"{_CM}/OfflineConversionReport/QueryByGoalIds", endpoint="reports", methods=["POST"]),
        Rule(f"{_CM}/OfflineConversionReports/Query", endpoint="reports", methods=["POST"]),
        Rule(f"{_CM}/UetTagAuthKey/Query", endpoint="uet_auth_key", methods=["POST"]),
        Rule("/v1/<tag_id>/events", endpoint="uet", methods=["POST"]),
        Rule("/_emulator/<path:path>", endpoint="control", methods=["GET", "POST", "PATCH", "DELETE"]),
    ],
    strict_slashes=False,
)


def _drop_connection(environ: WSGIEnvironment) -> None:
    """Close the client's socket without an answer; the client sees a reset/EOF (``requests.ConnectionError``)."""
    sock = environ.get("werkzeug.socket")
    if isinstance(sock, socket.socket):
        try:
            # Linger 0 turns close() into a TCP RST, so the client cannot mistake it for a slow answer.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    # werkzeug's request handler treats ConnectionError from the app as "client went away": it writes nothing.
    raise ConnectionAbortedError("connection dropped by the emulator's fault injection")


class Emulator:
    """Local Microsoft Advertising: OAuth, Campaign Management Apply, UET CAPI, faults, dashboard."""

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

    # -- WSGI ------------------------------------------------------------------------------------------------------

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        request = Request(environ)
        tracking_id = str(uuid.uuid4())
        try:
            endpoint, args = _URLS.bind_to_environ(environ).match()
        except HTTPException as exc:
            response: Response = json_response({"error": exc.name, "message": exc.description}, exc.code or 404)
            if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
                response.headers["Allow"] = ", ".join(exc.valid_methods)
            response.headers["TrackingId"] = tracking_id
            return response(environ, start_response)
        if endpoint in ("control", "dashboard"):
            response = self._inspect(endpoint, request, args)
            response.headers["TrackingId"] = tracking_id
            return response(environ, start_response)
        name = str(endpoint)
        ctx = CallContext(endpoint=name, tracking_id=tracking_id)
        with self.world.lock:
            ctx.faults = [] if name == "authorize" else self.world.faults.draw(name)
        fault_name = ",".join(rule.kind for rule in ctx.faults) or None
        for rule in ctx.faults:
            if rule.kind == "delay" and rule.delay > 0:
                self.sleep(rule.delay)
        replacing = next((r for r in ctx.faults if r.kind not in ("delay", "partial_errors")), None)
        if replacing is not None and replacing.kind == "drop":
            self.world.record_request(
                endpoint=name,
                method=request.method,
                path=request.path,
                status=None,
                tracking_id=tracking_id,
                fault="drop",
            )
            _drop_connection(environ)
        if replacing is not None and replacing.kind != "expired_token":
            response = self._fault_response(replacing, ctx)
        else:
            try:
                response = self._handle(endpoint, request, ctx, args, token_expired=replacing is not None)
            except Exception:
                # An emulator bug must still look like Microsoft's internal error, with a TrackingId to find it by.
                _log.exception("emulator error on %s %s (TrackingId %s)", request.method, request.path, tracking_id)
                response = campaign.ad_api_fault(ctx, 0, 500)
        response.headers["TrackingId"] = tracking_id
        self.world.record_request(
            endpoint=name,
            method=request.method,
            path=request.path,
            status=response.status_code,
            tracking_id=tracking_id,
            fault=fault_name,
            items=ctx.items,
        )
        return response(environ, start_response)

    def _handle(
        self, endpoint: str, request: Request, ctx: CallContext, args: Mapping[str, Any], *, token_expired: bool
    ) -> Response:
        world = self.world
        if endpoint == "token":
            if token_expired:
                return oauth.token_error(
                    world, 400, "invalid_grant", 700082, "The refresh token has expired due to inactivity."
                )
            return oauth.token(world, request, ctx)
        if endpoint == "authorize":
            return oauth.authorize(world, request, ctx)
        if endpoint == "uet":
            return uet.events_endpoint(world, request, ctx, str(args["tag_id"]), token_expired=token_expired)
        if endpoint in ("offline", "offline_adjustments", "online_adjustments"):
            return campaign.apply_endpoint(world, request, ctx, token_expired=token_expired)
        return goals.dispatch(world, request, ctx, token_expired=token_expired)

    def _fault_response(self, rule: FaultRule, ctx: CallContext) -> Response:
        endpoint = ctx.endpoint
        if rule.kind == "malformed":
            return Response(
                "<html><body>Service Unavailable</body></html>", status=rule.status or 200, content_type="text/html"
            )
        if rule.kind == "throttle":
            retry_after = rule.retry_after if rule.retry_after is not None else 60
            status = rule.status or 429
            if endpoint == "token":
                response = oauth.token_error(
                    self.world,
                    status,
                    "temporarily_unavailable",
                    50196,
                    "The server temporarily throttled the request.",
                )
            elif endpoint == "uet":
                response = json_response(
                    {"error": {"code": "TooManyRequests", "message": "Rate limit is exceeded."}}, status
                )
            else:
                response = campaign.ad_api_fault(ctx, 117, status)
            response.headers["Retry-After"] = str(retry_after)
            return response
        if rule.kind == "call_rate" and endpoint not in ("token", "uet"):
            return campaign.ad_api_fault(ctx, 117, rule.status or self.config.call_rate_status)
        status = rule.status or 500
        if endpoint == "token":
            return oauth.token_error(
                self.world, status, "temporarily_unavailable", 50001, "The service is temporarily unavailable."
            )
        if endpoint == "uet":
            return json_response(
                {"error": {"code": "InternalServerError", "message": "An internal error has occurred."}}, status
            )
        if status >= 500 and rule.kind == "http" and status != 500:
            # Gateways (502/503/504) answer with HTML, not with a service fault.
            return Response(f"<html><body><h1>{status}</h1></body></html>", status=status, content_type="text/html")
        return campaign.ad_api_fault(ctx, rule.code if rule.code in CODES else 0, status)

    def _inspect(self, endpoint: str, request: Request, args: Mapping[str, Any]) -> Response:
        try:
            if endpoint == "dashboard":
                return dashboard.render(self, request)
            return control.dispatch(self, request, str(args["path"]))
        except NotFound as exc:
            return json_response({"error": "not_found", "message": exc.description}, 404)

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
                    {"customer_id": a.customer_id, "account_id": a.account_id} for a in world.accounts.values()
                ],
                "goals": [g.to_json() for g in world.goals.values()],
                "clicks": {k: v.isoformat() for k, v in world.clicks.items()},
                "uet_tags": [{"tag_id": t.tag_id, "account_id": t.account_id} for t in world.tags.values()],
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

    def add_uet_tag(self, tag_id: str, token: str | None = None, *, account_id: str | None = None) -> UetTag:
        return self.world.add_tag(tag_id, token, account_id=account_id)

    def add_account(self, customer_id: str, account_id: str) -> Account:
        return self.world.add_account(customer_id, account_id)

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
            fixed = {"goals", "clicks", "uet_tags", "faults", "accounts", "store", "refresh_token"} & set(changes)
            if fixed:
                raise control.ControlError(f"use the dedicated methods for: {', '.join(sorted(fixed))}")
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
