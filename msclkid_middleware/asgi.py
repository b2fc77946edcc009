"""ASGI adapter over the capture core: ``MsclkidASGIMiddleware`` for Starlette, FastAPI, Quart, Django's ASGI handler.

A pure ASGI 3 middleware in the shape of Starlette's own (``TrustedHostMiddleware``, ``SessionMiddleware``): a small
class, ``__call__(scope, receive, send)``, non-HTTP scopes (``lifespan``, ``websocket``) passed through untouched,
``send`` wrapped only when there is something to add.  No framework is imported: it runs under any ASGI server.

The request path reads top to bottom, as in the WSGI adapter (:mod:`msclkid_middleware.middleware`): the scope
becomes :class:`~msclkid_middleware.capture.request.RequestFacts` once, the engine decides, the
:class:`~msclkid_middleware.capture.decision.Decision` is stored in ``scope["state"]["msclkid.state"]`` (so
``get_click(request.scope)`` and ``get_consent(request.scope)`` from the package root answer from it), the app runs,
and the decision's ``Set-Cookie`` is appended to the app's ``http.response.start`` (200, redirects, errors,
streaming), the body passing through unbuffered and unaltered.  The writes the decision asks for (profile store,
page-view hook) run in a worker thread, off the event loop; a page view is reported once the last body chunk
(``more_body`` false) has been sent.  The middleware reads ``receive`` only on its own capture endpoint, never raises
into the server (an internal failure is logged at WARNING by the ``msclkid_middleware.asgi`` logger and the request
goes on untouched), and the cookie is the WSGI adapter's, byte for byte: one issued by either verifies under the
other with the same keys.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from functools import partial
from typing import TYPE_CHECKING, Any, Unpack
from urllib.parse import quote

from msclkid_middleware.capture.adapter import script_answer, settings_options
from msclkid_middleware.capture.clickid import UET_COOKIE_NAME
from msclkid_middleware.capture.consent import Consent
from msclkid_middleware.capture.context import ConsentSource, enter_request, leave_request
from msclkid_middleware.capture.decision import Decision, DecisionContext
from msclkid_middleware.capture.endpoint import INTERNAL_ERROR, MAX_CAPTURE_BODY, Answer, read_body, text_answer
from msclkid_middleware.capture.engine import QUERY_MARKER, Capture, CaptureOptions
from msclkid_middleware.capture.request import RequestFacts, route_path
from msclkid_middleware.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from msclkid_middleware.config import Settings

__all__ = ["STATE_KEY", "MsclkidASGIMiddleware"]

logger = logging.getLogger("msclkid_middleware.asgi")

#: The key of the Decision in ``scope["state"]``: the WSGI adapter's ``middleware.STATE_KEY`` (the two adapters are
#: peers in the layering, so the value is repeated here; a test checks they agree), read by ``decision_of``.
STATE_KEY = "msclkid.state"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Messages after which the response has been sent completely (when ``more_body`` is false).
_BODY_MESSAGES = frozenset({"http.response.body", "http.response.zerocopysend", "http.response.pathsend"})
_URL_SAFE = ":/?#[]@!$&'()*+,;=%~-._"


class MsclkidASGIMiddleware:
    """Capture ``msclkid`` into a signed, HttpOnly, first-party cookie, with consent respected (ASGI 3).

    ``app.add_middleware(MsclkidASGIMiddleware, secret_keys=[...])`` in Starlette/FastAPI, or
    ``MsclkidASGIMiddleware(asgi_app, secret_keys=[...])`` around any ASGI application.  The keywords are
    :class:`~msclkid_middleware.middleware.MsclkidMiddleware`'s (``docs/configuration.md``); misuse raises
    :class:`~msclkid_middleware.errors.ConfigError` here, never on the request path.
    """

    def __init__(self, app: ASGIApp, **options: Unpack[CaptureOptions]) -> None:
        if not callable(app):
            raise ConfigError("app must be an ASGI application (a callable)", setting="app")
        self.app = app
        self.capture = Capture(log=logger, **options)
        self._query_marker = QUERY_MARKER.encode("ascii")
        self._cookie_marker = (self.capture.cookie.name + "=").encode("latin-1")
        self._uet_marker = (UET_COOKIE_NAME + "=").encode("ascii")
        self._endpoint_paths = self.capture.endpoint_paths
        self._tracking = self.capture.tracking
        self._context = self.capture.context

    @classmethod
    def from_settings(cls, app: ASGIApp, settings: Settings, **overrides: Any) -> MsclkidASGIMiddleware:
        """Build from a :class:`~msclkid_middleware.config.Settings` (``MSCLKID_*`` variables), as
        ``MsclkidMiddleware.from_settings`` does; ``overrides`` are this constructor's keywords and win."""
        options = settings_options(settings, overrides)
        return cls(app, **options)

    # -- the ASGI entry point ----------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan, websocket: not ours
            await self.app(scope, receive, send)
            return
        if (route_path(scope) if scope.get("root_path") else scope.get("path")) in self._endpoint_paths:
            await self._serve_endpoint(scope, receive, send)
            return
        try:
            # The engine's cheap check (Capture.carries_ours) on the raw bytes, inline: this is the whole cost of a
            # request that carries nothing of ours, on every request the app serves.
            query = scope.get("query_string")
            ours = query is not None and self._query_marker in query.lower()
            if not ours:
                for name, value in scope.get("headers") or ():
                    if name == b"cookie" and (self._cookie_marker in value or self._uet_marker in value):
                        ours = True
                        break
            if ours or self._tracking:
                decision, respond, consent = self._decide(scope, send, ours)
                plain = None
            else:
                # Nothing of ours came in and nothing is tracked: no header can be added (send is not wrapped) and
                # the decision reads the scope only if the app asks (most never do).
                decision = plain = _PlainDecision(self._context, scope)
                respond, consent = send, plain.request_consent
            state = scope.get("state")
            if state is None:
                # Starlette's Request.state and uvicorn's lifespan state are this dict: create it as they would.
                state = scope["state"] = {}
            state[STATE_KEY] = decision
        except Exception:
            logger.warning("click capture failed; request passed on untouched", exc_info=True)
            await self.app(scope, receive, send)
            return
        token = enter_request(consent)
        try:
            await self.app(scope, receive, respond)
        finally:
            leave_request(token)
            if plain is not None:
                plain.release()

    def _decide(self, scope: Scope, send: Send, ours: bool) -> tuple[Decision, Send, ConsentSource]:
        """The request's decision, read from the scope now, the ``send`` that adds its headers, its consent source."""
        capture = self.capture
        facts = RequestFacts.from_scope(scope)
        decision = capture.decide(facts) if ours else capture.blank(facts)
        candidate = capture.tracking and capture.page_view_candidate(facts)
        return decision, _Responder(self, decision, scope, send, candidate).send, partial(decision.consent, scope)

    # -- capture endpoint and shipped scripts ------------------------------------------------------
    async def _serve_endpoint(self, scope: Scope, receive: Receive, send: Send) -> None:
        capture = self.capture
        try:
            facts = RequestFacts.from_scope(scope)
            if facts.path == capture.capture_path:
                answer = await self._capture(facts, scope, receive)
            else:
                answer = script_answer(capture, facts)
            headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in answer.headers]
        except Exception:
            logger.warning("capture endpoint failed", exc_info=True)
            answer = INTERNAL_ERROR
            headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in answer.headers]
        headers.append((b"content-length", str(len(answer.body)).encode("ascii")))
        await send({"type": "http.response.start", "status": int(answer.status.split(" ", 1)[0]), "headers": headers})
        body = b"" if scope.get("method") == "HEAD" else answer.body
        await send({"type": "http.response.body", "body": body, "more_body": False})
        if answer.decision is not None and answer.decision.profile_write is not None:
            await _off_the_loop(capture.write_profile, answer.decision, scope)

    async def _capture(self, facts: RequestFacts, scope: Scope, receive: Receive) -> Answer:
        endpoint = self.capture.endpoint
        refused = endpoint.precheck(facts)
        if refused is not None:
            return refused
        body = await _receive_body(facts, receive)
        if isinstance(body, Answer):
            return body
        return endpoint.answer(facts, body, scope)


class _PlainDecision(Decision):
    """The decision of a request that carried nothing of ours, made on first use (the WSGI adapter's ``_Plain``).

    Reading the scope's headers and setting up a Decision is most of what a plain request would cost, and most
    apps never ask.  ``decision_of`` wants a Decision in ``scope["state"]``, so this is one whose request values
    (context, facts, ...) stay unset until the first read of any of them (``__getattr__`` runs only for an unset
    attribute; every lazily computed value starts at a class default and reads one of them first), which sets them
    all from the scope as it is then.  :meth:`release` drops the scope when the request ends, so the cycle
    scope -> state -> decision -> scope does not outlive it.
    """

    __slots__ = ("_pending", "_scope")

    def __init__(self, context: DecisionContext, scope: Scope) -> None:  # Decision.__init__ runs on first use
        self._pending: DecisionContext | None = context
        self._scope: Scope | None = scope

    def __getattr__(self, name: str) -> Any:
        context, scope = self._pending, self._scope
        if context is None or name in ("_pending", "_scope"):
            raise AttributeError(name)
        if scope is None:
            raise AttributeError(f"{name}: the request has ended, its decision can no longer be read")
        self._pending = None
        try:
            # The one write an app makes before any read (set_page_title); the response-side flags are written
            # only on the tracking path, which never uses a plain decision.
            title = object.__getattribute__(self, "title")
        except AttributeError:
            title = None
        Decision.__init__(self, context, RequestFacts.from_scope(scope))
        self.title = title
        return getattr(self, name)

    def request_consent(self) -> Consent | None:
        """The consent source for ``capture.context`` while the request runs."""
        scope = self._scope
        return None if scope is None else self.consent(scope)

    def release(self) -> None:
        self._scope = None


async def _receive_body(facts: RequestFacts, receive: Receive) -> bytes | Answer:
    """The capture request's body from ``receive``, never more than the cap (a declared larger one is not read)."""
    declared = facts.content_length
    if declared and declared.strip().isdigit() and int(declared) > MAX_CAPTURE_BODY:
        return text_answer("413 Content Too Large", "body too large")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message.get("type") != "http.request":  # http.disconnect: the client went away mid-body
            break
        chunk = message.get("body") or b""
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_CAPTURE_BODY or not message.get("more_body", False):
            break
    data = b"".join(chunks)
    # The core's checks (declared length, incomplete body, cap) over what arrived; an ASGI body is terminated.
    offset = 0

    def read(n: int) -> bytes:
        nonlocal offset
        part = data[offset : offset + n]
        offset += len(part)
        return part

    return read_body(facts, read, terminated=True)


class _Responder:
    """The ``send`` the app gets: appends our cookies to the response start, reports the page view at the end."""

    __slots__ = ("candidate", "decision", "middleware", "scope", "server_send")

    def __init__(
        self, middleware: MsclkidASGIMiddleware, decision: Decision, scope: Scope, send: Send, candidate: bool
    ) -> None:
        self.middleware = middleware
        self.decision = decision
        self.scope = scope
        self.server_send = send
        self.candidate = candidate

    async def send(self, message: Message) -> None:
        kind = message.get("type")
        decision = self.decision
        if kind == "http.response.start" and not decision.sent:
            await self.server_send(self._with_cookies(message))
            if decision.profile_write is not None:
                # The headers are out: now the write the decision asked for, off the event loop.
                await _off_the_loop(self.middleware.capture.write_profile, decision, self.scope)
            return
        await self.server_send(message)
        if decision.page_view and kind in _BODY_MESSAGES and not message.get("more_body", False):
            decision.page_view = False  # reported once
            await self._report_page_view()

    def _with_cookies(self, message: Message) -> Message:
        """The app's response start plus our ``Set-Cookie`` headers (a new message: the app's is not mutated)."""
        decision = self.decision
        capture = self.middleware.capture
        try:
            headers = list(message.get("headers") or ())
            if self.candidate:
                try:
                    text = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers]
                    decision.page_view = capture.is_page_view(decision.facts, str(message.get("status", 200)), text)
                except Exception:
                    logger.warning("page view detection failed; not reported", exc_info=True)
            extra = decision.response_headers(self.scope)
            if capture.tracking:
                extra = extra + decision.visitor_headers(self.scope)
            decision.sent = True
            if not extra:
                return message
            headers.extend((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in extra)
            return {**message, "headers": headers}
        except Exception:
            decision.sent = True
            logger.warning("click cookie handling failed; response left untouched", exc_info=True)
            return message

    async def _report_page_view(self) -> None:
        scope = self.scope
        try:
            client = scope.get("client")
            url = _page_url(scope, self.decision.facts.host, self.middleware.capture)
        except Exception:
            logger.warning("page view reporting failed; not reported", exc_info=True)
            return
        if url is None:
            return  # a Host the site does not serve: no page view (as under WSGI)
        await _off_the_loop(
            self.middleware.capture.report_page_view,
            self.decision,
            scope,
            url=url,
            client_ip=client[0] if client and isinstance(client[0], str) and client[0] else None,
        )


async def _off_the_loop(function: Callable[..., None], *args: Any, **kwargs: Any) -> None:
    """Run a write that may block (a profile store, the app's page-view hook) in a worker thread; never raises.

    ``asyncio.to_thread`` copies the context, so the hook still sees the request's consent (capture.context).
    """
    try:
        await asyncio.to_thread(function, *args, **kwargs)
    except Exception:
        logger.warning("%s failed after the response", getattr(function, "__name__", "a write"), exc_info=True)


def _page_url(scope: Scope, host: str, capture: Capture) -> str | None:
    """The request's full URL on a host the site serves (``allowed_hosts``), or ``None`` (no page view), read once
    the app ran (a proxy-headers fix-up may have set the scheme): escaped as the WSGI adapter escapes it, so both
    report the same URL for the same request."""
    scheme = scope.get("scheme") or "http"
    server = scope.get("server")
    server_name = str(server[0]) if server and server[0] is not None else None
    server_port = str(server[1]) if server and server[1] is not None else None
    served = capture.page_host(host or None, scheme, server_name, server_port)
    if served is None:
        return None
    host = served
    # ASGI's path is decoded text (UTF-8), the query raw bytes (latin-1 here, so escaped as the bytes they are).
    # Servers differ on whether ``path`` holds the ``root_path``: the URL holds it once.
    root = scope.get("root_path") or ""
    full = scope.get("path") or "/"
    path = quote(full if route_path(scope) != full or not root else root + full, safe=_URL_SAFE)
    query = quote((scope.get("query_string") or b"").decode("latin-1"), safe=_URL_SAFE, encoding="latin-1")
    return quote(f"{scheme}://{host}", safe=_URL_SAFE) + path + (f"?{query}" if query else "")
