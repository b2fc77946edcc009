"""The emulator WSGI application: routing, TrackingId and fault injection over the control surface.

``Emulator`` is a plain WSGI callable; :mod:`.server` runs it on a threaded werkzeug server.  Every
response carries a ``TrackingId`` header (a fresh UUID per request, also written into fault bodies and
the journal), so a test can correlate what a client logged with what the emulator received.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import struct
import uuid
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from msclkid_middleware.emulator import account, campaign, control, dashboard, goals, oauth, results, uet
from msclkid_middleware.emulator.codes import CODES
from msclkid_middleware.emulator.faults import FaultRule
from msclkid_middleware.emulator.surface import ControlSurface
from msclkid_middleware.emulator.wire import CallContext, json_response

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
        Rule(f"{_CM}/ConversionGoals", endpoint="goals", methods=["POST", "PUT"]),
        Rule(f"{_CM}/AccountProperties/Query", endpoint="account_properties", methods=["POST"]),
        Rule(f"{_CM}/AccountProperties/Set", endpoint="account_properties", methods=["POST"]),
        Rule(f"{_CM}/UetTags/QueryByIds", endpoint="account_properties", methods=["POST"]),
        Rule(f"{_CM}/ConversionGoals/QueryByIds", endpoint="goals", methods=["POST"]),
        Rule(f"{_CM}/ConversionGoals/QueryByTagIds", endpoint="goals", methods=["POST"]),
        Rule(f"{_CM}/OfflineConversionReport/QueryByGoalIds", endpoint="reports", methods=["POST"]),
        Rule(f"{_CM}/OfflineConversionReports/Query", endpoint="reports", methods=["POST"]),
        Rule(f"{_CM}/UetTagAuthKey/Query", endpoint="uet_auth_key", methods=["POST"]),
        Rule("/v1/<tag_id>/events", endpoint="uet", methods=["POST"]),
        Rule("/_emulator/<path:path>", endpoint="control", methods=["GET", "POST", "PATCH", "DELETE"]),
        Rule("/_results/<account>/<day>.csv", endpoint="result_file", methods=["GET"]),
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


class Emulator(ControlSurface):
    """Local Microsoft Advertising: OAuth, Campaign Management Apply, UET CAPI, faults, dashboard."""

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
        if endpoint == "result_file":
            # A download link (Microsoft's FileUrl points at storage, outside the API): no faults, no journal.
            response = results.serve_file(self.world, request, str(args["account"]), str(args["day"]))
            response.headers["TrackingId"] = tracking_id
            return response(environ, start_response)
        if endpoint in ("control", "dashboard"):
            if not self._own_host(request.host):
                # DNS rebinding: a web page on a name that resolves to 127.0.0.1 must not drive the emulator.
                response = json_response({"error": "forbidden", "message": "Host is not this emulator's address"}, 403)
            else:
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
        if endpoint == "account_properties":
            return account.dispatch(world, request, ctx, token_expired=token_expired)
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

    def _own_host(self, host: str) -> bool:
        """``localhost``, an IP literal (a rebinding page can only bring a name) or a ``control_hosts`` name."""
        if host.startswith("["):
            end = host.find("]")
            name = host[1:end] if end > 0 else ""
        else:
            name = host.partition(":")[0]
        name = name.lower()
        if name == "localhost" or name in self.config.control_hosts:
            return True
        try:
            ipaddress.ip_address(name)
        except ValueError:
            return False
        return True

    def _inspect(self, endpoint: str, request: Request, args: Mapping[str, Any]) -> Response:
        try:
            if endpoint == "dashboard":
                return dashboard.render(self, request)
            return control.dispatch(self, request, str(args["path"]))
        except NotFound as exc:
            return json_response({"error": "not_found", "message": exc.description}, 404)
