"""WSGI adapter over the capture core: ``MsclkidMiddleware`` keeps every Microsoft Ads click ID for 90 days.

Shape after werkzeug's ``ProxyFix``: keyword-only options checked once (by the framework-free
:class:`~msclkid_middleware.capture.engine.Capture`), one cheap check per request, one namespaced
environ key.  The request path reads top to bottom: the WSGI environ becomes
:class:`~msclkid_middleware.capture.request.RequestFacts`, the engine decides, this adapter appends the
decision's ``Set-Cookie`` to whatever the app starts (200, redirects, errors), and only then runs the
writes the decision asks for (profile store, page-view hook).  A request that carries no ``msclkid``
and none of our cookies costs one dict lookup, two substring checks and one environ assignment.

Per-request state is ONE :class:`~msclkid_middleware.capture.decision.Decision` under the environ key
``"msclkid.state"``; read it with :func:`get_click` and :func:`get_consent`.  The middleware never reads
``wsgi.input`` (except on its own capture endpoint), never raises into the server (an internal failure is
logged at WARNING by the ``msclkid_middleware.middleware`` logger and the request goes on untouched),
never changes the app's response except for appending its own ``Set-Cookie``, and only emits header
values it generated itself.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, Unpack, cast

from msclkid_middleware.capture.adapter import settings_options
from msclkid_middleware.capture.clickid import UET_COOKIE_NAME, Click
from msclkid_middleware.capture.consent import Consent, ConsentDecider
from msclkid_middleware.capture.context import enter_request, leave_request
from msclkid_middleware.capture.cookie import ClickCookie
from msclkid_middleware.capture.decision import Decision
from msclkid_middleware.capture.endpoint import INTERNAL_ERROR, MAX_CAPTURE_BODY, Answer, read_body
from msclkid_middleware.capture.engine import QUERY_MARKER, Capture, CaptureOptions
from msclkid_middleware.capture.request import RequestFacts, facts_of
from msclkid_middleware.capture.visitor import VisitorCookie
from msclkid_middleware.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from msclkid_middleware.capture.pageview import PageViewHook
    from msclkid_middleware.config import Settings

__all__ = [
    "DEFAULT_SYNC_SCRIPT_SRC",
    "MAX_CAPTURE_BODY",
    "STATE_KEY",
    "ConsentDecider",
    "HasMeta",
    "MsclkidMiddleware",
    "PageTags",
    "get_anonymous_id",
    "get_click",
    "get_consent",
    "get_page_load_id",
    "render_page_tags",
    "set_page_title",
]

logger = logging.getLogger("msclkid_middleware.middleware")

#: The one environ key the middleware writes (and, for an ASGI adapter, the key in ``scope["state"]``).
STATE_KEY = "msclkid.state"
#: Where :class:`MsclkidMiddleware` serves the ID-sync script by default.
DEFAULT_SYNC_SCRIPT_SRC = "/_msclkid-sync.js"

_ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None]
StartResponse = Callable[..., Callable[[bytes], object]]
WSGIEnviron = dict[str, Any]
WSGIApplication = Callable[[WSGIEnviron, StartResponse], Iterable[bytes]]
_UET_MARKER = UET_COOKIE_NAME + "="


class _Plain:
    """Marker stored for requests that carried nothing of ours; upgraded to a Decision on first use."""

    __slots__ = ("capture",)

    def __init__(self, capture: Capture) -> None:
        self.capture = capture


class MsclkidMiddleware:
    """Capture ``msclkid`` into a signed, HttpOnly, first-party cookie, with consent respected.

    ``MsclkidMiddleware(app, secret_keys=[...])`` wraps any WSGI application.  All options are
    keyword-only and documented in ``docs/configuration.md`` (they are
    :class:`~msclkid_middleware.capture.engine.Capture`'s); misuse raises
    :class:`~msclkid_middleware.errors.ConfigError` here, never on the request path.
    """

    def __init__(self, app: WSGIApplication, **options: Unpack[CaptureOptions]) -> None:
        if not callable(app):
            raise ConfigError("app must be a WSGI application (a callable)", setting="app")
        self.app = app
        self.capture = Capture(log=logger, **options)
        self._plain = _Plain(self.capture)
        self._cookie_marker = self.capture.cookie.name + "="

    @classmethod
    def from_settings(cls, app: WSGIApplication, settings: Settings, **overrides: Any) -> MsclkidMiddleware:
        """Build from a :class:`~msclkid_middleware.config.Settings` (``MSCLKID_*`` variables).

        ``overrides`` are this constructor's keywords (``visitor_id=``, ``consent=``, ...) and win.
        """
        options = settings_options(settings, overrides)
        return cls(app, **options)

    # -- the configuration, as the engine holds it -------------------------------------------------
    @property
    def cookie(self) -> ClickCookie:
        return self.capture.cookie

    @property
    def capture_path(self) -> str | None:
        return self.capture.capture_path

    @property
    def snippet_path(self) -> str | None:
        return self.capture.snippet_path

    @property
    def sync_script_path(self) -> str | None:
        return self.capture.sync_script_path

    @property
    def on_page_view(self) -> PageViewHook | None:
        return self.capture.on_page_view

    @property
    def visitor_cookie(self) -> VisitorCookie | None:
        return self.capture.visitor_cookie

    @property
    def max_query_length(self) -> int:
        return self.capture.max_query_length

    @property
    def max_query_fields(self) -> int:
        return self.capture.max_query_fields

    # -- the WSGI entry point ------------------------------------------------------------------
    def __call__(self, environ: WSGIEnviron, start_response: StartResponse) -> Iterable[bytes]:
        capture = self.capture
        if environ.get("PATH_INFO") in capture.endpoint_paths:
            return self._serve_endpoint(environ, start_response)
        # record_* calls without consent= inside the app use this request's decision (capture/context.py):
        # the source is a closure, so a request whose app records nothing never decides its consent.
        token = enter_request(lambda: _consent_of(environ))
        try:
            # Capture.carries_ours, inline (the whole cost of a request carrying nothing of ours, on every request).
            query: Any = environ.get("QUERY_STRING")
            cookie_header: Any = environ.get("HTTP_COOKIE")
            try:
                lowered = query.lower() if query else ""
                ours = QUERY_MARKER in lowered or (
                    bool(cookie_header) and (self._cookie_marker in cookie_header or _UET_MARKER in cookie_header)
                )
            except Exception:  # a server handing over non-str values: not ours to judge
                lowered, ours = None, False
            tracking = capture.tracking
            if not ours and not tracking:
                environ[STATE_KEY] = self._plain
                return self.app(environ, start_response)
            try:
                # RequestFacts.from_environ, inline when every value is a str (as PEP 3333 has it): the cheap check
                # has read the query and the Cookie header already.
                gpc: Any = environ.get("HTTP_SEC_GPC")
                if (
                    (not query or query.__class__ is str)
                    and (cookie_header is None or cookie_header.__class__ is str)
                    and (gpc is None or gpc.__class__ is str)
                ):
                    facts = facts_of((query or "", cookie_header or "", gpc, False, environ.copy()))
                else:
                    facts = RequestFacts.from_environ(environ)
                decision = capture.decide(facts, lowered) if ours else capture.blank(facts)
                candidate = tracking and capture.page_view_candidate(facts)
            except Exception:
                logger.warning("click capture failed; request passed on untouched", exc_info=True)
                environ[STATE_KEY] = self._plain
                return self.app(environ, start_response)
            environ[STATE_KEY] = decision

            # Our start_response, built here rather than by a method: one call less on every request we handle.
            if not tracking:
                extra = decision.set_cookies
                if extra is not None:  # decided with the request (a plain landing or cookie request, decide_request)
                    if not extra:
                        return self.app(environ, start_response)  # nothing to add: the server's own start_response

                    def landed(
                        status: str, headers: list[tuple[str, str]], exc_info: _ExcInfo | None = None
                    ) -> Callable[[bytes], object]:
                        """The app's start_response, with the landing's click cookie appended."""
                        decision.sent = True
                        headers = [*headers, *extra]
                        return (
                            start_response(status, headers)
                            if exc_info is None
                            else start_response(status, headers, exc_info)
                        )

                    return self.app(environ, landed)

                # Only the click cookie: no page view to spot, no visitor cookie (most sites).
                def wrapped(
                    status: str, headers: list[tuple[str, str]], exc_info: _ExcInfo | None = None
                ) -> Callable[[bytes], object]:
                    """The app's start_response, with our click cookie appended."""
                    extra = decision.response_headers(environ)
                    decision.sent = True
                    if extra:
                        headers = [*headers, *extra]
                    write = (
                        start_response(status, headers)
                        if exc_info is None
                        else start_response(status, headers, exc_info)
                    )
                    if decision.profile_write is not None:
                        # The headers are out: now the write the decision asked for (never inside the decision).
                        capture.write_profile(decision, environ)
                    return write

                return self.app(environ, wrapped)

            def tracked(
                status: str, headers: list[tuple[str, str]], exc_info: _ExcInfo | None = None
            ) -> Callable[[bytes], object]:
                """The app's start_response, with page views spotted and our click and visitor cookies appended."""
                if exc_info is not None:
                    decision.page_view = False  # the app failed after starting: not a page anyone saw
                elif candidate and not decision.sent:
                    try:
                        decision.page_view = capture.is_page_view(decision.facts, status, headers)
                    except Exception:
                        logger.warning("page view detection failed; not reported", exc_info=True)
                extra = decision.response_headers(environ) + decision.visitor_headers(environ)
                decision.sent = True
                if extra:
                    headers = [*headers, *extra]
                write = (
                    start_response(status, headers) if exc_info is None else start_response(status, headers, exc_info)
                )
                if decision.profile_write is not None:
                    capture.write_profile(decision, environ)
                return write

            result = self.app(environ, tracked)
        finally:
            leave_request(token)
        if not candidate or (decision.sent and not decision.page_view):
            # Not a page view (known already, as for most apps, which call start_response before returning):
            # the app's own iterable goes back to the server, so close() and wsgi.file_wrapper keep working.
            return result
        return _PageViewBody(result, capture, decision, environ)

    # -- capture endpoint and shipped scripts ------------------------------------------------------
    def _serve_endpoint(self, environ: WSGIEnviron, start_response: StartResponse) -> Iterable[bytes]:
        capture = self.capture
        try:
            facts = RequestFacts.from_environ(environ)
            if facts.path == capture.capture_path:
                answer = self._capture(facts, environ)
            elif facts.path == capture.sync_script_path and capture.sync_script is not None:
                answer = capture.sync_script.serve(facts)
            elif capture.snippet is not None:
                answer = capture.snippet.serve(facts)
            else:  # pragma: no cover - endpoint_paths holds only configured paths
                answer = INTERNAL_ERROR
        except Exception:
            logger.warning("capture endpoint failed", exc_info=True)
            answer = INTERNAL_ERROR
        start_response(answer.status, [*answer.headers, ("Content-Length", str(len(answer.body)))])
        if answer.decision is not None:
            capture.write_profile(answer.decision, environ)
        if environ.get("REQUEST_METHOD") == "HEAD":
            return [b""]
        return [answer.body]

    def _capture(self, facts: RequestFacts, environ: WSGIEnviron) -> Answer:
        endpoint = self.capture.endpoint
        refused = endpoint.precheck(facts)
        if refused is not None:
            return refused
        stream = environ.get("wsgi.input")
        body = read_body(
            facts, stream.read if stream is not None else None, terminated=bool(environ.get("wsgi.input_terminated"))
        )
        if isinstance(body, Answer):
            return body
        return endpoint.answer(facts, body, environ)


class _PageViewBody:
    """The app's iterable, unchanged, with the page-view hook run when the server closes it (body sent)."""

    __slots__ = ("_capture", "_decision", "_environ", "_result")

    def __init__(self, result: Iterable[bytes], capture: Capture, decision: Decision, environ: WSGIEnviron) -> None:
        self._result = result
        self._capture = capture
        self._decision = decision
        self._environ = environ

    def __iter__(self) -> Any:
        return iter(self._result)

    def close(self) -> None:
        try:
            close = getattr(self._result, "close", None)
            if close is not None:
                close()
        finally:
            decision = self._decision
            if decision.page_view:
                decision.page_view = False  # a server calling close() twice reports the view once
                environ = self._environ
                address = environ.get("REMOTE_ADDR")
                url = self._capture.page_url(environ)
                if url is None:
                    logger.debug("page view not reported: the request's host is not one the site serves")
                else:
                    client_ip = address if isinstance(address, str) and address else None
                    self._capture.report_page_view(decision, environ, url=url, client_ip=client_ip)


# -- reading the decision from the app ------------------------------------------------------------


class HasMeta(Protocol):
    """A request with a CGI-style ``META`` dict (Django's ``HttpRequest``: its adapter stores the Decision there)."""

    @property
    def META(self) -> Mapping[str, Any]: ...  # Django's name


def _mapping(request: Mapping[str, Any] | HasMeta) -> Mapping[str, Any]:
    meta = getattr(request, "META", None)  # a dict has no such attribute: one failed lookup for WSGI and ASGI
    return meta if meta is not None else cast("Mapping[str, Any]", request)


def decision_of(request: Mapping[str, Any] | HasMeta) -> Decision | None:
    """The request's :class:`~msclkid_middleware.capture.decision.Decision`, or ``None`` without the middleware.

    ``request`` is a WSGI environ, or an ASGI scope (``"type": "http"``) whose adapter stored the same Decision in
    ``scope["state"][STATE_KEY]``, or a Django request (its ``META``): get_click and friends accept any of them.
    """
    request = _mapping(request)
    state = request.get(STATE_KEY)
    if state is None and request.get("type") == "http":
        scope_state = request.get("state")
        state = scope_state.get(STATE_KEY) if isinstance(scope_state, Mapping) else None
    if isinstance(state, Decision):
        return state
    if isinstance(state, _Plain) and isinstance(request, dict):
        # First use on a request that carried nothing of ours: decide now (its cookies are parsed on demand).
        upgraded = state.capture.blank(RequestFacts.from_environ(request))
        request[STATE_KEY] = upgraded
        return upgraded
    return None


def _consent_of(environ: Mapping[str, Any]) -> Consent:
    """The handled request's consent for ``record_*`` without ``consent=``; raises (a refusal, to the caller) when the
    decision is gone, so a broken request never falls back to a granting default."""
    decision = decision_of(environ)
    if decision is None:
        raise LookupError("the request's capture decision is missing")
    return decision.consent(environ)


def get_click(environ: Mapping[str, Any] | HasMeta) -> Click | None:
    """The request's Microsoft Ads click, or ``None``.

    Sources in order: a valid ``msclkid`` in the URL (``source="url"``), our signed cookie
    (``"cookie"``), UET's ``_uetmsclkid`` cookie (``"uet_cookie"``), the profile store for a
    known visitor (``"profile"``).  ``None`` when there is none, when consent is denied, or when
    the request did not pass through :class:`MsclkidMiddleware`.  Never raises.
    """
    try:
        if environ.__class__ is dict:  # a WSGI environ: the common case, without the general lookup below
            state = environ.get(STATE_KEY)
            if state.__class__ is Decision:
                return state.click(environ)
        environ = _mapping(environ)
        decision = decision_of(environ)
        return decision.click(environ) if decision is not None else None
    except Exception:
        logger.warning("get_click failed", exc_info=True)
        return None


def get_consent(environ: Mapping[str, Any] | HasMeta) -> Consent | None:
    """The consent decision for this request (decided once, on first use), or ``None`` without the middleware."""
    try:
        environ = _mapping(environ)
        decision = decision_of(environ)
        return decision.consent(environ) if decision is not None else None
    except Exception:
        logger.warning("get_consent failed", exc_info=True)
        return None


def get_anonymous_id(environ: Mapping[str, Any]) -> str | None:
    """The visitor's anonymous ID for UET (``userData.anonymousId`` and the ID-sync pixel's ``vid``), or ``None``.

    UET's own ``_uetvid`` (first 32 hex characters) when present, else our signed visitor cookie; with the
    visitor cookie on (``anonymous_id_cookie``, on by default with ``on_page_view``) a visitor without one gets
    a new random ID, stored by the ``Set-Cookie`` appended to this response, so call it before the response
    starts.  ``None`` when consent is denied, without the middleware, or when there is none.  Never raises.
    """
    try:
        decision = decision_of(environ)
        return decision.anonymous_id(environ) if decision is not None else None
    except Exception:
        logger.warning("get_anonymous_id failed", exc_info=True)
        return None


def get_page_load_id(environ: Mapping[str, Any]) -> str | None:
    """This page view's UET ``pageLoadId``: a v4 UUID, the same for the whole request (render it into the page's
    ``<meta name="msclkid-page-load-id">`` so browser and server events share it).  ``None`` without the
    middleware.  Never raises."""
    try:
        decision = decision_of(environ)
        return decision.page_load_id() if decision is not None else None
    except Exception:
        logger.warning("get_page_load_id failed", exc_info=True)
        return None


def set_page_title(environ: Mapping[str, Any], title: str | None) -> None:
    """Tell the middleware this page's title, for the page view's ``pageTitle``."""
    decision = decision_of(environ)
    if decision is not None and (title is None or isinstance(title, str)):
        decision.title = title[:512] if title else None


# -- page tags (server-side UET, docs/uet.md) ----------------------------------------------------------


class PageTags(str):
    """HTML we built and escaped ourselves: Jinja (``__html__``) inserts it as it is, without ``|safe``."""

    __slots__ = ()

    def __html__(self) -> str:
        return str(self)


def render_page_tags(
    environ: Mapping[str, Any],
    *,
    customer_id: str | int | None,
    title: str | None = None,
    script_src: str = DEFAULT_SYNC_SCRIPT_SRC,
    pixel_url: str | None = None,
    external_id: str | None = None,
    nonce: str | None = None,
) -> PageTags:
    """HTML for a page's ``<head>``: the page-load ID ``<meta>`` the snippet reads, and (with consent and an
    anonymous ID) the ID-sync script tag.  Put it before the snippet's ``<script>``.

    - ``customer_id``: the Microsoft Advertising *customer* ID (``MSADS_CUSTOMER_ID``) for ``Red3=BACID_...``;
      without it no sync tag is rendered.
    - ``title``: the page title for the server's ``pageLoad`` event (``pageTitle``).
    - ``pixel_url``: another pixel URL than ``https://c.bing.com/c.gif`` (tests point it at a local route).
    - ``external_id``: an anonymised signed-in user ID (never an email or a database key), sent as ``uid``.
    - ``nonce``: the page's Content-Security-Policy nonce, if it uses one.
    """
    if title is not None:
        set_page_title(environ, title)
    page_load_id = get_page_load_id(environ)
    parts: list[str] = []
    if page_load_id is not None:
        parts.append(f'<meta name="msclkid-page-load-id" content="{page_load_id}">')
    consent = get_consent(environ)
    vid = get_anonymous_id(environ) if consent is not None and consent.granted else None
    cid = str(customer_id).strip() if customer_id is not None else ""
    if vid and cid.isdigit():
        attrs = [f'src="{html.escape(script_src)}"', f'data-cid="{cid}"', f'data-vid="{vid}"']
        if pixel_url:
            attrs.append(f'data-pixel="{html.escape(pixel_url)}"')
        if external_id:
            attrs.append(f'data-uid="{html.escape(external_id)}"')
        if nonce:
            attrs.append(f'nonce="{html.escape(nonce)}"')
        parts.append(f"<script {' '.join(attrs)} async></script>")
    return PageTags("\n".join(parts))
