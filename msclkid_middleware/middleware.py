"""WSGI middleware that keeps every Microsoft Ads click ID (``msclkid``) for 90 days.

Shape after WhiteNoise and werkzeug's ``ProxyFix``: every option is checked and every constant
(cookie attributes, deletion header, snippet body and ETag, endpoint paths) is built once in
``__init__``; a request that carries no ``msclkid`` and none of our cookies costs one dict
lookup, two substring checks and one environ assignment before the app runs.

Per-request state lives in ONE environ key, ``"msclkid.state"``; read it with :func:`get_click`
and :func:`get_consent`.  The middleware never reads ``wsgi.input`` (except on its own capture
endpoint), never raises into the server (an internal failure is logged at WARNING by the
``msclkid_middleware.middleware`` logger and the request goes on untouched), never changes the
app's response except for appending its own ``Set-Cookie``, and only emits header values it
generated itself.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Protocol
from urllib.parse import parse_qsl, quote
from wsgiref.util import request_uri

from msclkid_middleware.capture.clickid import (
    DEFAULT_MAX_FIELDS,
    DEFAULT_MAX_QUERY_LENGTH,
    UET_COOKIE_NAME,
    Click,
    ClickSource,
    click_id_from_query,
    click_id_from_uet_cookie,
    is_valid_click_id,
)
from msclkid_middleware.capture.consent import Consent
from msclkid_middleware.capture.cookie import DEFAULT_CLOCK_SKEW, ClickCookie, LoadedCookie, SameSite
from msclkid_middleware.capture.pageview import (
    DEFAULT_BOT_PATTERN,
    AnonymousIdSource,
    PageView,
    PageViewHook,
    check_prefixes,
    compile_bot_pattern,
    is_asset_path,
    is_bot,
    is_document_request,
    is_html_document,
)
from msclkid_middleware.capture.visitor import (
    DEFAULT_VISITOR_MAX_AGE,
    UET_VISITOR_COOKIE,
    VISITOR_REFRESH_AFTER,
    LoadedVisitor,
    VisitorCookie,
    uet_visitor_id,
)
from msclkid_middleware.errors import ConfigError
from msclkid_middleware.redact import shorten

if TYPE_CHECKING:  # pragma: no cover
    from msclkid_middleware.capture.profiles import ProfileStore
    from msclkid_middleware.config import Settings

__all__ = [
    "MAX_CAPTURE_BODY",
    "STATE_KEY",
    "ConsentDecider",
    "MsclkidMiddleware",
    "get_anonymous_id",
    "get_click",
    "get_consent",
    "get_page_load_id",
    "set_page_title",
]

logger = logging.getLogger("msclkid_middleware.middleware")

#: The one environ key the middleware writes.
STATE_KEY = "msclkid.state"
#: Largest capture-endpoint body read (bytes); a larger one is answered 413 unread.
MAX_CAPTURE_BODY = 4096

_ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None]
StartResponse = Callable[..., Callable[[bytes], object]]
WSGIEnviron = dict[str, Any]
WSGIApplication = Callable[[WSGIEnviron, StartResponse], Iterable[bytes]]
VisitorId = Callable[[Mapping[str, Any]], str | None]

_QUERY_MARKER = "msclkid"
_UET_MARKER = UET_COOKIE_NAME + "="
_REPORTED_STATES = frozenset({"granted", "denied", "pending"})
_MAX_TC_STRING = 2048
_NO_STORE = ("Cache-Control", "no-store")
_SNIPPET_CACHE = "public, max-age=3600"
#: Characters a URL may hold as they are (RFC 3986 reserved and unreserved, plus existing escapes).
_URL_SAFE = ":/?#[]@!$&'()*+,;=%~-._"


class ConsentDecider(Protocol):
    """What the middleware needs from a consent policy (:class:`~msclkid_middleware.capture.consent.ConsentPolicy`)."""

    def decide(self, environ: Mapping[str, Any], cookies: Mapping[str, str] | None = None) -> Consent: ...

    def decide_reported(
        self,
        environ: Mapping[str, Any],
        cookies: Mapping[str, str] | None = None,
        *,
        state: str | None = None,
        tc_string: str | None = None,
    ) -> Consent: ...


def _parse_cookies(header: str, name: str) -> tuple[dict[str, str], list[str]]:
    """All cookies (first value of each name wins, as in werkzeug) and every value named ``name``.

    Our own values are collected separately because a duplicate (a cookie tossed from a
    subdomain in ``__Secure-`` mode) must not hide the real one.
    """
    cookies: dict[str, str] = {}
    ours: list[str] = []
    for part in header.split(";"):
        key, sep, value = part.partition("=")
        if not sep:
            continue
        key = key.strip()
        value = value.strip()
        if len(value) > 1 and value[0] == value[-1] == '"':
            value = value[1:-1]
        if key == name:
            ours.append(value)
        if key and key not in cookies:
            cookies[key] = value
    return cookies, ours


def _denied_on_error() -> Consent:
    return Consent.denied_by("default")


class _Plain:
    """Marker stored for requests that carried nothing of ours; upgraded on first use."""

    __slots__ = ("middleware",)

    def __init__(self, middleware: MsclkidMiddleware) -> None:
        self.middleware = middleware


_UNSET: Any = object()


class _RequestState:
    """Everything the middleware knows about one request; computed lazily, at most once."""

    __slots__ = (
        "_anon",
        "_anon_new",
        "_anon_source",
        "_click",
        "_consent",
        "_headers",
        "_page_load_id",
        "_visitor",
        "_vloaded",
        "cookie",
        "cookie_present",
        "cookies",
        "mw",
        "now",
        "page_view",
        "sent",
        "title",
        "uet_id",
        "url_id",
    )

    def __init__(
        self,
        mw: MsclkidMiddleware,
        *,
        url_id: str | None = None,
        cookie: LoadedCookie | None = None,
        cookie_present: bool = False,
        uet_id: str | None = None,
        cookies: dict[str, str] | None = None,
    ) -> None:
        self.mw = mw
        self.now = int(mw._clock())
        self.url_id = url_id
        self.cookie = cookie
        self.cookie_present = cookie_present
        self.uet_id = uet_id
        self.cookies = cookies
        self._consent: Consent | None = None
        self._click: Click | None = _UNSET
        self._visitor: str | None = _UNSET
        self._headers: list[tuple[str, str]] | None = None
        # Page views and the anonymous visitor ID (issue 13): all lazy, so a request that never asks costs nothing.
        self._anon: str | None = _UNSET
        self._anon_new = False
        self._anon_source: AnonymousIdSource | None = None
        self._vloaded: LoadedVisitor | None = None
        self._page_load_id: str | None = None
        self.page_view = False
        self.sent = False
        self.title: str | None = None

    # -- lazily computed values ----------------------------------------------------------------
    def consent(self, environ: Mapping[str, Any]) -> Consent:
        if self._consent is None:
            try:
                self._consent = self.mw.consent.decide(environ, self.cookies)
                if not isinstance(self._consent, Consent):
                    raise TypeError("the consent policy did not return a Consent")
            except Exception:
                logger.warning("consent policy failed; treating the request as denied", exc_info=True)
                self._consent = _denied_on_error()
        return self._consent

    def visitor(self, environ: Mapping[str, Any]) -> str | None:
        if self._visitor is _UNSET:
            self._visitor = None
            if self.mw.visitor_id is not None:
                try:
                    vid = self.mw.visitor_id(environ)
                    self._visitor = vid if isinstance(vid, str) and vid else None
                except Exception:
                    logger.warning("visitor_id callable failed; no profile used for this request", exc_info=True)
        return self._visitor

    def click(self, environ: Mapping[str, Any]) -> Click | None:
        if self._click is _UNSET:
            self._click = None
            try:
                self._click = self._resolve_click(environ)
            except Exception:
                logger.warning("could not resolve the click for this request", exc_info=True)
        return self._click

    def jar(self, environ: Mapping[str, Any]) -> dict[str, str]:
        """The request's cookies (parsed once; requests that carried nothing of ours parse them on first use)."""
        if self.cookies is None:
            header = environ.get("HTTP_COOKIE")
            self.cookies = _parse_cookies(header, self.mw._cookie_name)[0] if isinstance(header, str) else {}
        return self.cookies

    def page_load_id(self) -> str:
        if self._page_load_id is None:
            self._page_load_id = str(uuid.uuid4())
        return self._page_load_id

    def anonymous_id(self, environ: Mapping[str, Any]) -> str | None:
        if self._anon is _UNSET:
            self._anon = None
            try:
                self._anon = self._resolve_anonymous(environ)
            except Exception:
                logger.warning("could not resolve the anonymous visitor ID for this request", exc_info=True)
        return self._anon

    def _resolve_anonymous(self, environ: Mapping[str, Any]) -> str | None:
        jar = self.jar(environ)
        if not self.consent(environ).granted:
            return None  # as UET itself: no first-party cookie is read or written without consent
        uet = uet_visitor_id(jar.get(UET_VISITOR_COOKIE))
        if uet is not None:
            self._anon_source = "uet"
            return uet
        cookie = self.mw.visitor_cookie
        if cookie is None:
            return None
        self._vloaded = cookie.decode(jar.get(cookie.name))
        if self._vloaded is not None:
            self._anon_source = "cookie"
            return self._vloaded.visitor_id
        if self.sent:
            return None  # too late for a Set-Cookie: an ID we could not keep would not match the next one
        self._anon_new = True
        self._anon_source = "cookie"
        return cookie.new_id()

    def visitor_headers(self, environ: Mapping[str, Any]) -> list[tuple[str, str]]:
        """Our visitor-cookie ``Set-Cookie`` for this response (issue, refresh or delete); never raises."""
        cookie = self.mw.visitor_cookie
        if cookie is None:
            return []
        # Only page views and requests whose app asked for the ID touch the cookie: assets, API calls and
        # the like cost nothing, and a refusal removes the cookie on the next page view.
        if not self.page_view and self._anon is _UNSET:
            return []
        try:
            self.anonymous_id(environ)
            header = environ.get("HTTP_COOKIE")
            present = isinstance(header, str) and self.mw._visitor_marker in header
            if not self.consent(environ).granted:
                return [("Set-Cookie", cookie.delete_cookie())] if present else []
            if self._anon_new and self._anon is not None:
                return [("Set-Cookie", cookie.set_cookie(self._anon, self.now))]
            loaded = self._vloaded
            if loaded is not None and (loaded.stale_key or self.now - loaded.timestamp >= VISITOR_REFRESH_AFTER):
                return [("Set-Cookie", cookie.set_cookie(loaded.visitor_id, self.now))]
        except Exception:
            logger.warning("visitor cookie handling failed; response left untouched", exc_info=True)
        return []

    def _resolve_click(self, environ: Mapping[str, Any]) -> Click | None:
        if not (self.url_id or self.cookie or self.uet_id or self.mw.profile_store is not None):
            return None
        if not self.consent(environ).granted:
            return None
        if self.url_id:
            # Reloading the landing URL is not a new click: keep the time it was first captured.
            same = self.cookie is not None and self.cookie.msclkid == self.url_id
            ts = self.cookie.timestamp if same and self.cookie is not None else self.now
            return self.mw._click(self.url_id, ts, "url")
        if self.cookie is not None:
            return Click(self.cookie.msclkid, self.cookie.captured_at, "cookie")
        if self.uet_id:
            # UET's cookie carries no click time: the time we saw it is the best we know.
            return self.mw._click(self.uet_id, self.now, "uet_cookie")
        store = self.mw.profile_store
        visitor = self.visitor(environ)
        if store is None or visitor is None:
            return None
        try:
            saved = store.get(visitor)
        except Exception:
            logger.warning("profile store read failed; no profile click for this request", exc_info=True)
            return None
        # A stored click lives exactly as long as its cookie would (max_age from the click, not sliding):
        # an older one is outside every conversion window Microsoft allows and must not be attributed.
        if saved is not None and saved.captured_at.timestamp() + self.mw.cookie.max_age <= self.now:
            return None
        return saved

    # -- the response side ---------------------------------------------------------------------
    def response_headers(self, environ: Mapping[str, Any]) -> list[tuple[str, str]]:
        """Our ``Set-Cookie`` header(s) for this response; computed once, never raises."""
        if self._headers is None:
            self._headers = []
            try:
                self._headers = self._decide_headers(environ)
            except Exception:
                logger.warning("click cookie handling failed; response left untouched", exc_info=True)
        return self._headers

    def _decide_headers(self, environ: Mapping[str, Any]) -> list[tuple[str, str]]:
        mw = self.mw
        if not (self.url_id or self.cookie_present or self.uet_id):
            return []
        if not self.consent(environ).granted:
            return [("Set-Cookie", mw.cookie.delete_cookie())] if self.cookie_present else []
        header: str | None = None
        if self.url_id and (self.cookie is None or self.cookie.msclkid != self.url_id):
            header = mw.cookie.set_cookie(self.url_id, self.now)
            logger.debug("captured click %s from the landing URL", shorten(self.url_id))
            if mw.profile_store is not None:
                mw._save_profile(self, environ, mw._click(self.url_id, self.now, "url"), new=True)
        elif self.cookie is not None:
            if self.cookie.stale_key:
                # Signed with an older key: re-issue under the newest key, same click time.
                header = mw.cookie.set_cookie(self.cookie.msclkid, self.cookie.timestamp)
            if mw.profile_store is not None:
                saved = Click(self.cookie.msclkid, self.cookie.captured_at, "cookie")
                mw._save_profile(self, environ, saved, new=False)
        return [("Set-Cookie", header)] if header else []


class MsclkidMiddleware:
    """Capture ``msclkid`` into a signed, HttpOnly, first-party cookie, with consent respected.

    ``MsclkidMiddleware(app, secret_keys=[...])`` wraps any WSGI application.  All options are
    keyword-only and documented in ``docs/configuration.md``; misuse raises
    :class:`~msclkid_middleware.errors.ConfigError` here, never on the request path.
    """

    def __init__(
        self,
        app: WSGIApplication,
        *,
        secret_keys: str | bytes | Iterable[str | bytes] | None,
        consent: ConsentDecider | None = None,
        cookie_name: str | None = None,
        cookie_domain: str | None = None,
        cookie_secure: bool = True,
        allow_insecure_cookie: bool = False,
        cookie_samesite: SameSite = "Lax",
        max_age: timedelta | int = timedelta(days=90),
        clock_skew: timedelta | int = DEFAULT_CLOCK_SKEW,
        visitor_id: VisitorId | None = None,
        profile_store: ProfileStore | None = None,
        capture_path: str | None = "/_msclkid",
        snippet_path: str | None = "/_msclkid.js",
        max_query_length: int = DEFAULT_MAX_QUERY_LENGTH,
        max_query_fields: int = DEFAULT_MAX_FIELDS,
        clock: Callable[[], float] = time.time,
        on_page_view: PageViewHook | None = None,
        anonymous_id_cookie: bool | None = None,
        visitor_cookie_name: str | None = None,
        visitor_max_age: timedelta | int = DEFAULT_VISITOR_MAX_AGE,
        bot_user_agents: str | re.Pattern[str] | None = DEFAULT_BOT_PATTERN,
        page_view_exclude: Iterable[str] = (),
        sync_script_path: str | None = "/_msclkid-sync.js",
    ) -> None:
        if not callable(app):
            raise ConfigError("app must be a WSGI application (a callable)", setting="app")
        if not cookie_secure and not allow_insecure_cookie:
            raise ConfigError(
                "cookie_secure=False sends the click cookie over plain http; it is for local development only: "
                "pass allow_insecure_cookie=True as well to say so",
                setting="MSCLKID_COOKIE_SECURE",
            )
        if cookie_name is None:
            if not cookie_secure:
                # Browsers drop __Host-/__Secure- cookies that are not Secure: use a plain name.
                cookie_name = "msclkid"
            elif cookie_domain is not None:
                cookie_name = "__Secure-msclkid"
            else:
                cookie_name = "__Host-msclkid"
        if cookie_domain is not None and cookie_secure and not cookie_name.startswith(("__Secure-", "__Host-")):
            # (A __Host- name with a Domain gets ClickCookie's more specific message.)
            raise ConfigError(
                "a click cookie shared across subdomains (cookie_domain) must use a '__Secure-' name, for example "
                "cookie_name='__Secure-msclkid', so it is only ever set over https",
                setting="MSCLKID_COOKIE_NAME",
            )
        max_age_s = int(max_age.total_seconds()) if isinstance(max_age, timedelta) else max_age
        skew_s = int(clock_skew.total_seconds()) if isinstance(clock_skew, timedelta) else clock_skew
        self.cookie = ClickCookie(
            secret_keys,
            name=cookie_name,
            domain=cookie_domain,
            secure=cookie_secure,
            samesite=cookie_samesite,
            max_age=max_age_s,
            clock_skew=skew_s,
            clock=clock,
        )
        if (visitor_id is None) != (profile_store is None):
            raise ConfigError(
                "visitor_id and profile_store go together: visitor_id(environ) names the visitor whose newest "
                "click the profile_store keeps",
                setting="profile_store",
            )
        if visitor_id is not None and not callable(visitor_id):
            raise ConfigError("visitor_id must be a callable taking the WSGI environ", setting="visitor_id")
        if profile_store is not None and not (
            callable(getattr(profile_store, "get", None)) and callable(getattr(profile_store, "put", None))
        ):
            raise ConfigError(
                "profile_store must have get(visitor_id) and put(visitor_id, click)", setting="profile_store"
            )
        for label, value in (("max_query_length", max_query_length), ("max_query_fields", max_query_fields)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{label} must be a positive whole number", setting=label)
        self.capture_path = _check_path("capture_path", capture_path)
        self.snippet_path = _check_path("snippet_path", snippet_path)
        self.sync_script_path = _check_path("sync_script_path", sync_script_path)
        paths = [p for p in (self.capture_path, self.snippet_path, self.sync_script_path) if p is not None]
        if len(set(paths)) != len(paths):
            raise ConfigError("capture_path, snippet_path and sync_script_path must differ", setting="snippet_path")
        if on_page_view is not None and not callable(on_page_view):
            raise ConfigError("on_page_view must be a callable taking a PageView", setting="on_page_view")
        if anonymous_id_cookie is None:
            # The 390-day visitor cookie exists for server-side UET: on with page-view tracking, else opt-in.
            anonymous_id_cookie = on_page_view is not None
        visitor_age_s = (
            int(visitor_max_age.total_seconds()) if isinstance(visitor_max_age, timedelta) else visitor_max_age
        )
        self.visitor_cookie: VisitorCookie | None = None
        if anonymous_id_cookie:
            self.visitor_cookie = VisitorCookie(
                secret_keys,
                name=visitor_cookie_name or f"{cookie_name}_vid",
                domain=cookie_domain,
                secure=cookie_secure,
                samesite=cookie_samesite,
                max_age=visitor_age_s,
                clock_skew=skew_s,
                clock=clock,
            )
        self.on_page_view = on_page_view
        self.bot_user_agents = compile_bot_pattern(bot_user_agents)
        self._bot_cache: dict[str, bool] = {}
        self.page_view_exclude = check_prefixes(page_view_exclude)
        # Page views and the visitor cookie need to see every response: only then is start_response wrapped
        # for requests that carry nothing of ours (the default configuration keeps its two-substring path).
        self._tracking = on_page_view is not None or self.visitor_cookie is not None
        self._visitor_marker = (self.visitor_cookie.name + "=") if self.visitor_cookie is not None else "\0"
        if consent is None:
            from msclkid_middleware.capture.consent import ConsentPolicy

            consent = ConsentPolicy()
        if not callable(getattr(consent, "decide", None)):
            raise ConfigError("consent must be a ConsentPolicy (or have its decide() method)", setting="consent")

        self.app = app
        self.consent: ConsentDecider = consent
        self.visitor_id = visitor_id
        self.profile_store = profile_store
        self.max_query_length = max_query_length
        self.max_query_fields = max_query_fields
        self._clock = clock
        self._cookie_name = cookie_name
        self._cookie_marker = cookie_name + "="
        self._plain = _Plain(self)
        self._endpoints = frozenset(paths)
        self._recent_lock = threading.Lock()
        self._recent_profiles: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._snippet: bytes | None = None
        self._snippet_etag = ""
        if self.snippet_path is not None:
            self._snippet = _load_snippet()
            if self._snippet is not None:
                self._snippet_etag = '"' + hashlib.sha256(self._snippet).hexdigest()[:32] + '"'
        self._sync_script: bytes | None = None
        self._sync_script_etag = ""
        if self.sync_script_path is not None:
            self._sync_script = _load_snippet("msclkid-sync.js", "ID-sync script")
            if self._sync_script is not None:
                self._sync_script_etag = '"' + hashlib.sha256(self._sync_script).hexdigest()[:32] + '"'

    @classmethod
    def from_settings(cls, app: WSGIApplication, settings: Settings, **overrides: Any) -> MsclkidMiddleware:
        """Build from a :class:`~msclkid_middleware.config.Settings` (``MSCLKID_*`` variables).

        ``overrides`` are this constructor's keywords (``visitor_id=``, ``consent=``, ...) and win.
        """
        options: dict[str, Any] = {
            "secret_keys": settings.secret_keys,
            "cookie_domain": settings.cookie_domain,
            "cookie_secure": settings.cookie_secure,
            "max_age": settings.cookie_max_age,
            "capture_path": settings.capture_path or None,
            "snippet_path": settings.snippet_path or None,
        }
        if settings.cookie_name != "__Host-msclkid":
            options["cookie_name"] = settings.cookie_name
        if "consent" not in overrides:
            from msclkid_middleware.capture.consent import ConsentPolicy

            options["consent"] = ConsentPolicy.from_settings(settings)
        options.update(overrides)
        return cls(app, **options)

    # -- the WSGI entry point ------------------------------------------------------------------
    def __call__(self, environ: WSGIEnviron, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") in self._endpoints:
            return self._serve_endpoint(environ, start_response)
        query = environ.get("QUERY_STRING")
        cookie = environ.get("HTTP_COOKIE")
        try:
            # The whole cost of a request that carries nothing of ours: two substring checks.
            plain = not (
                (query and _QUERY_MARKER in query.lower())
                or (cookie and (self._cookie_marker in cookie or _UET_MARKER in cookie))
            )
        except Exception:  # a server handing over non-str values: not ours to judge
            plain = True
        if self._tracking:
            return self._call_tracking(environ, start_response, plain, query, cookie)
        if plain:
            environ[STATE_KEY] = self._plain
            return self.app(environ, start_response)
        try:
            state = self._begin(query, cookie)
        except Exception:
            logger.warning("click capture failed; request passed on untouched", exc_info=True)
            environ[STATE_KEY] = self._plain
            return self.app(environ, start_response)
        environ[STATE_KEY] = state
        return self.app(environ, _wrap_start_response(state, environ, start_response))

    # -- page views (issue 13) ---------------------------------------------------------------------
    def _call_tracking(
        self, environ: WSGIEnviron, start_response: StartResponse, plain: bool, query: Any, cookie: Any
    ) -> Iterable[bytes]:
        """The request path with page-view tracking or the visitor cookie on: every response is seen."""
        try:
            state = _RequestState(self) if plain else self._begin(query, cookie)
            path = environ.get("PATH_INFO") or "/"
            candidate = (
                environ.get("REQUEST_METHOD") == "GET"
                and not is_asset_path(path)
                and not (self.page_view_exclude and path.startswith(self.page_view_exclude))
            )
        except Exception:
            logger.warning("click capture failed; request passed on untouched", exc_info=True)
            environ[STATE_KEY] = self._plain
            return self.app(environ, start_response)
        environ[STATE_KEY] = state
        result = self.app(environ, _wrap_tracking(state, environ, start_response, candidate))
        if not candidate or (state.sent and not state.page_view):
            # Not a page view (known already, as for most apps, which call start_response before returning):
            # the app's own iterable goes back to the server, so wsgi.file_wrapper keeps working.
            return result
        return _PageViewBody(result, state, environ)

    def _page_view_starts(self, state: _RequestState, environ: Mapping[str, Any], status: str, headers: Any) -> bool:
        """Called from start_response of a candidate request: is this response a page view we report?"""
        return is_html_document(status, headers) and is_document_request(environ) and not self._is_bot(environ)

    def _is_bot(self, environ: Mapping[str, Any]) -> bool:
        # A bot pattern is dozens of alternatives, tens of microseconds per search; a site sees few distinct
        # user agents, so verdicts are remembered (a bounded dict: lookups and stores are atomic in CPython).
        agent = environ.get("HTTP_USER_AGENT")
        if not isinstance(agent, str) or len(agent) > 1024:
            return is_bot(self.bot_user_agents, agent if isinstance(agent, str) else None)
        cache = self._bot_cache
        verdict = cache.get(agent)
        if verdict is None:
            verdict = is_bot(self.bot_user_agents, agent)
            if len(cache) >= 4096:
                cache.clear()
            cache[agent] = verdict
        return verdict

    def _emit(self, state: _RequestState, environ: Mapping[str, Any]) -> None:
        """Build the PageView and hand it to the hook; after the body was sent, never raises."""
        hook = self.on_page_view
        if hook is None:
            return
        try:
            view = PageView(
                url=_page_url(environ),
                page_load_id=state.page_load_id(),
                time=datetime.fromtimestamp(state.now, UTC),
                consent=state.consent(environ),
                referrer=environ.get("HTTP_REFERER") or None,
                title=state.title,
                click=state.click(environ),
                anonymous_id=state.anonymous_id(environ),
                anonymous_id_source=state._anon_source,
                client_ip=environ.get("REMOTE_ADDR") or None,
                user_agent=environ.get("HTTP_USER_AGENT") or None,
                landing=state.url_id is not None,
            )
            hook(view)
        except Exception:
            logger.warning("on_page_view hook failed; the page view is not reported", exc_info=True)

    def _begin(self, query: str | None, cookie_header: str | None) -> _RequestState:
        url_id = None
        if query and _QUERY_MARKER in query.lower():
            url_id = click_id_from_query(query, max_length=self.max_query_length, max_fields=self.max_query_fields)
        cookies: dict[str, str] | None = None
        loaded: LoadedCookie | None = None
        ours: list[str] = []
        uet_id = None
        if cookie_header:
            cookies, ours = _parse_cookies(cookie_header, self._cookie_name)
            loaded = self._best_cookie(ours)
            uet_id = click_id_from_uet_cookie(cookies.get(UET_COOKIE_NAME))
        return _RequestState(
            self, url_id=url_id, cookie=loaded, cookie_present=bool(ours), uet_id=uet_id, cookies=cookies
        )

    def _best_cookie(self, values: list[str]) -> LoadedCookie | None:
        """The newest verified click among our cookie's values (duplicates are possible)."""
        best: LoadedCookie | None = None
        for value in values[:8]:
            loaded = self.cookie.decode(value)
            if loaded is not None and (
                best is None
                or loaded.timestamp > best.timestamp
                or (loaded.timestamp == best.timestamp and best.stale_key and not loaded.stale_key)
            ):
                best = loaded
        return best

    def _click(self, msclkid: str, timestamp: int, source: ClickSource) -> Click:
        return Click(msclkid, datetime.fromtimestamp(timestamp, UTC), source)

    def _save_profile(self, state: _RequestState, environ: Mapping[str, Any], click: Click, *, new: bool) -> None:
        store = self.profile_store
        visitor = state.visitor(environ)
        if store is None or visitor is None:
            return
        key = (visitor, click.msclkid)
        if not new:
            # The same cookie click arrives on every request: write it once per visitor and process.
            with self._recent_lock:
                if key in self._recent_profiles:
                    self._recent_profiles.move_to_end(key)
                    return
        try:
            store.put(visitor, click)
        except Exception:
            logger.warning("profile store write failed; the click is still in the cookie", exc_info=True)
            return
        with self._recent_lock:
            self._recent_profiles[key] = None
            while len(self._recent_profiles) > 4096:
                self._recent_profiles.popitem(last=False)

    # -- capture endpoint and snippet ------------------------------------------------------------
    def _serve_endpoint(self, environ: WSGIEnviron, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO")
        try:
            if path == self.capture_path:
                status, headers, body = self._capture(environ)
            elif path == self.sync_script_path:
                status, headers, body = _serve_static(environ, self._sync_script, self._sync_script_etag)
            else:
                status, headers, body = self._serve_snippet(environ)
        except Exception:
            logger.warning("capture endpoint failed", exc_info=True)
            status, headers, body = "500 Internal Server Error", [_NO_STORE], b"internal error\n"
            headers = [*headers, ("Content-Type", "text/plain; charset=utf-8")]
        headers = [*headers, ("Content-Length", str(len(body)))]
        start_response(status, headers)
        if environ.get("REQUEST_METHOD") == "HEAD":
            return [b""]
        return [body]

    def _serve_snippet(self, environ: WSGIEnviron) -> tuple[str, list[tuple[str, str]], bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        if method not in ("GET", "HEAD"):
            return "405 Method Not Allowed", [("Allow", "GET, HEAD"), ("Content-Type", "text/plain")], b""
        if self._snippet is None:
            return "404 Not Found", [("Content-Type", "text/plain; charset=utf-8")], b"not found\n"
        headers = [("ETag", self._snippet_etag), ("Cache-Control", _SNIPPET_CACHE)]
        if _etag_matches(environ.get("HTTP_IF_NONE_MATCH"), self._snippet_etag):
            return "304 Not Modified", headers, b""
        headers += [("Content-Type", "text/javascript; charset=utf-8"), ("X-Content-Type-Options", "nosniff")]
        return "200 OK", headers, self._snippet

    def _capture(self, environ: WSGIEnviron) -> tuple[str, list[tuple[str, str]], bytes]:
        if environ.get("REQUEST_METHOD") != "POST":
            return "405 Method Not Allowed", [("Allow", "POST"), _NO_STORE, ("Content-Type", "text/plain")], b""
        if not _same_origin(environ):
            return _text("403 Forbidden", "cross-origin request refused")
        body = _read_body(environ)
        if isinstance(body, tuple):
            return body
        fields = _parse_capture_body(environ.get("CONTENT_TYPE", ""), body)
        if isinstance(fields, str):
            return _text("400 Bad Request", fields)
        reported, msclkid, tc_string = fields
        cookie_header = environ.get("HTTP_COOKIE") or ""
        cookies, ours = _parse_cookies(cookie_header, self._cookie_name)
        if reported == "denied":
            # A refusal is honoured whatever else the body holds.
            return "204 No Content", [_NO_STORE, ("Set-Cookie", self.cookie.delete_cookie())], b""
        if msclkid is not None and not is_valid_click_id(msclkid):
            return _text("400 Bad Request", "msclkid invalid")
        if reported == "pending":
            return "204 No Content", [_NO_STORE], b""
        if msclkid is None:
            return _text("400 Bad Request", "msclkid missing")
        try:
            decision = self.consent.decide_reported(environ, cookies, state=reported, tc_string=tc_string)
            if not isinstance(decision, Consent):
                raise TypeError("the consent policy did not return a Consent")
        except Exception:
            logger.warning("consent policy failed on the capture endpoint; treated as denied", exc_info=True)
            decision = _denied_on_error()
        if not decision.granted:
            return "204 No Content", [_NO_STORE, ("Set-Cookie", self.cookie.delete_cookie())], b""
        state = _RequestState(self, cookies=cookies)
        state._consent = decision
        existing = self._best_cookie(ours)
        headers = [_NO_STORE]
        if existing is not None and existing.msclkid == msclkid:
            saved = Click(existing.msclkid, existing.captured_at, "snippet")
            if existing.stale_key:
                reissued = self.cookie.set_cookie(existing.msclkid, existing.timestamp)
                if reissued:
                    headers.append(("Set-Cookie", reissued))
        else:
            header = self.cookie.set_cookie(msclkid, state.now)
            if header:
                headers.append(("Set-Cookie", header))
            saved = self._click(msclkid, state.now, "snippet")
            logger.debug("captured click %s through the capture endpoint", shorten(msclkid))
        if self.profile_store is not None:
            self._save_profile(state, environ, saved, new=True)
        return "204 No Content", headers, b""


# -- helpers ----------------------------------------------------------------------------------------


def _wrap_start_response(state: _RequestState, environ: WSGIEnviron, start_response: StartResponse) -> StartResponse:
    """A ``start_response`` that appends our ``Set-Cookie`` to whatever the app sends.

    The app's iterable is returned to the server unwrapped, so its ``close()`` and
    ``wsgi.file_wrapper`` keep working exactly as without us; ``write()`` is the server's own.
    """

    def wrapped(
        status: str, headers: list[tuple[str, str]], exc_info: _ExcInfo | None = None
    ) -> Callable[[bytes], object]:
        extra = state.response_headers(environ)
        if extra:
            headers = [*headers, *extra]
        if exc_info is None:
            return start_response(status, headers)
        return start_response(status, headers, exc_info)

    return wrapped


def _wrap_tracking(
    state: _RequestState, environ: WSGIEnviron, start_response: StartResponse, candidate: bool
) -> StartResponse:
    """``start_response`` for tracked requests: spots page views, appends our click and visitor cookies."""

    def wrapped(
        status: str, headers: list[tuple[str, str]], exc_info: _ExcInfo | None = None
    ) -> Callable[[bytes], object]:
        if exc_info is not None:
            state.page_view = False  # the app failed after starting: not a page anyone saw
        elif candidate and not state.sent:
            try:
                state.page_view = state.mw._page_view_starts(state, environ, status, headers)
            except Exception:
                logger.warning("page view detection failed; not reported", exc_info=True)
        extra = state.response_headers(environ) + state.visitor_headers(environ)
        state.sent = True
        if extra:
            headers = [*headers, *extra]
        if exc_info is None:
            return start_response(status, headers)
        return start_response(status, headers, exc_info)

    return wrapped


class _PageViewBody:
    """The app's iterable, unchanged, with the page-view hook run when the server closes it (body sent)."""

    __slots__ = ("_environ", "_result", "_state")

    def __init__(self, result: Iterable[bytes], state: _RequestState, environ: WSGIEnviron) -> None:
        self._result = result
        self._state = state
        self._environ = environ

    def __iter__(self) -> Any:
        return iter(self._result)

    def close(self) -> None:
        try:
            close = getattr(self._result, "close", None)
            if close is not None:
                close()
        finally:
            state = self._state
            if state.page_view:
                state.page_view = False  # a server calling close() twice reports the view once
                state.mw._emit(state, self._environ)


def _page_url(environ: Mapping[str, Any]) -> str:
    """The request's full URL; a raw query holding spaces or non-ASCII bytes a browser did not encode is escaped
    (WSGI strings carry bytes as latin-1, so they are escaped as the bytes they stand for)."""
    url = request_uri(environ, include_query=True)  # type: ignore[arg-type]
    try:
        return quote(url, safe=_URL_SAFE, encoding="latin-1")
    except UnicodeEncodeError:  # a server breaking the WSGI string rule: escape as UTF-8
        return quote(url, safe=_URL_SAFE)


def _check_path(label: str, value: str | None) -> str | None:
    if value is None:
        return None
    if (
        not isinstance(value, str)
        or not value.startswith("/")
        or value.startswith("//")
        or any(c in value for c in "?#;\\ \t\r\n")
        or not value.isascii()
        or len(value) > 200
    ):
        raise ConfigError(
            f"{label} must be an absolute URL path such as '/_msclkid' (no query, fragment or spaces), or None "
            "to turn it off",
            setting=label,
        )
    return value


def _load_snippet(name: str = "msclkid.min.js", label: str = "snippet") -> bytes | None:
    from importlib.resources import files

    try:
        return (files("msclkid_middleware") / "static" / name).read_bytes()
    except (OSError, ModuleNotFoundError):
        logger.warning("%s file msclkid_middleware/static/%s not found; its path answers 404", label, name)
        return None


def _serve_static(environ: WSGIEnviron, body: bytes | None, etag: str) -> tuple[str, list[tuple[str, str]], bytes]:
    """A script the middleware ships (the ID-sync script), with the snippet's caching rules."""
    if environ.get("REQUEST_METHOD", "GET") not in ("GET", "HEAD"):
        return "405 Method Not Allowed", [("Allow", "GET, HEAD"), ("Content-Type", "text/plain")], b""
    if body is None:
        return "404 Not Found", [("Content-Type", "text/plain; charset=utf-8")], b"not found\n"
    headers = [("ETag", etag), ("Cache-Control", _SNIPPET_CACHE)]
    if _etag_matches(environ.get("HTTP_IF_NONE_MATCH"), etag):
        return "304 Not Modified", headers, b""
    headers += [("Content-Type", "text/javascript; charset=utf-8"), ("X-Content-Type-Options", "nosniff")]
    return "200 OK", headers, body


def _etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    for candidate in header.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") == etag:
            return True
    return False


def _text(status: str, reason: str) -> tuple[str, list[tuple[str, str]], bytes]:
    # ``reason`` is always one of our constant strings: request data is never echoed.
    return status, [_NO_STORE, ("Content-Type", "text/plain; charset=utf-8")], (reason + "\n").encode("ascii")


_DEFAULT_PORTS = {"http": "80", "https": "443"}


def _origin_of(scheme: str, host: str) -> str | None:
    scheme = scheme.lower()
    host = host.strip().lower()
    if not host or scheme not in _DEFAULT_PORTS:
        return None
    if host.startswith("["):  # IPv6 literal
        end = host.find("]")
        if end < 0:
            return None
        name, port = host[: end + 1], host[end + 2 :] if host[end + 1 : end + 2] == ":" else ""
    else:
        name, _, port = host.partition(":")
    if port == _DEFAULT_PORTS[scheme]:
        port = ""
    return f"{scheme}://{name}:{port}" if port else f"{scheme}://{name}"


def _same_origin(environ: Mapping[str, Any]) -> bool:
    """``Sec-Fetch-Site: same-origin``; without that header, an ``Origin`` equal to our own."""
    fetch_site = environ.get("HTTP_SEC_FETCH_SITE")
    if fetch_site is not None:
        return bool(fetch_site.strip().lower() == "same-origin")
    origin = environ.get("HTTP_ORIGIN")
    if not origin or origin == "null":
        return False
    scheme, sep, rest = origin.partition("://")
    if not sep or "/" in rest:
        return False
    theirs = _origin_of(scheme, rest)
    url_scheme = str(environ.get("wsgi.url_scheme", "http"))
    host = environ.get("HTTP_HOST")
    if not host:
        host = f"{environ.get('SERVER_NAME', '')}:{environ.get('SERVER_PORT', '')}".rstrip(":")
    ours = _origin_of(url_scheme, str(host))
    return theirs is not None and theirs == ours


def _read_body(environ: WSGIEnviron) -> bytes | tuple[str, list[tuple[str, str]], bytes]:
    raw_length = environ.get("CONTENT_LENGTH")
    stream = environ.get("wsgi.input")
    if raw_length:
        try:
            length = int(raw_length)
        except ValueError:
            return _text("400 Bad Request", "bad content length")
        if length < 0:
            return _text("400 Bad Request", "bad content length")
        if length > MAX_CAPTURE_BODY:
            return _text("413 Content Too Large", "body too large")
        body = stream.read(length) if (stream is not None and length) else b""
        if len(body) != length:
            return _text("400 Bad Request", "incomplete body")
        return bytes(body)
    if environ.get("wsgi.input_terminated") and stream is not None:
        body = stream.read(MAX_CAPTURE_BODY + 1)
        if len(body) > MAX_CAPTURE_BODY:
            return _text("413 Content Too Large", "body too large")
        return bytes(body)
    return b""


_FORM = "application/x-www-form-urlencoded"
_JSON_TYPES = frozenset({"application/json", "text/plain"})
_ReportedState = Literal["granted", "denied", "pending"] | None


def _parse_capture_body(content_type: str, body: bytes) -> tuple[_ReportedState, str | None, str | None] | str:
    """``(consent, msclkid, tcf)`` from the body, or a short reason for a 400."""
    media_type = content_type.split(";", 1)[0].strip().lower()
    if not body:
        return "empty body"
    data: Mapping[str, Any]
    if media_type == _FORM:
        try:
            pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=16)
        except (UnicodeDecodeError, ValueError):
            return "malformed form body"
        form: dict[str, str] = {}
        for key, value in pairs:
            form.setdefault(key, value)
        data = form
    elif media_type in _JSON_TYPES:
        try:
            parsed = json.loads(body)
        except (ValueError, RecursionError):
            return "malformed JSON body"
        if not isinstance(parsed, dict):
            return "JSON body must be an object"
        data = parsed
    else:
        return "unsupported content type"
    reported = data.get("consent")
    if reported is not None and (not isinstance(reported, str) or reported not in _REPORTED_STATES):
        return "consent must be granted, denied or pending"
    msclkid = data.get("msclkid")
    if msclkid is not None and not isinstance(msclkid, str):
        return "msclkid invalid"
    tc_string = data.get("tcf")
    if tc_string is not None and (not isinstance(tc_string, str) or len(tc_string) > _MAX_TC_STRING):
        return "tcf invalid"
    if msclkid == "":
        msclkid = None
    state: _ReportedState = reported  # type: ignore[assignment]
    return state, msclkid, tc_string or None


def _state_of(environ: Mapping[str, Any]) -> _RequestState | None:
    state = environ.get(STATE_KEY)
    if isinstance(state, _RequestState):
        return state
    if isinstance(state, _Plain) and isinstance(environ, dict):
        # First use on a request that carried nothing of ours: build the real state now.
        upgraded = _RequestState(state.middleware)
        environ[STATE_KEY] = upgraded
        return upgraded
    return None


def get_click(environ: Mapping[str, Any]) -> Click | None:
    """The request's Microsoft Ads click, or ``None``.

    Sources in order: a valid ``msclkid`` in the URL (``source="url"``), our signed cookie
    (``"cookie"``), UET's ``_uetmsclkid`` cookie (``"uet_cookie"``), the profile store for a
    known visitor (``"profile"``).  ``None`` when there is none, when consent is denied, or when
    the request did not pass through :class:`MsclkidMiddleware`.  Never raises.
    """
    try:
        state = _state_of(environ)
        return state.click(environ) if state is not None else None
    except Exception:
        logger.warning("get_click failed", exc_info=True)
        return None


def get_consent(environ: Mapping[str, Any]) -> Consent | None:
    """The consent decision for this request (decided once, on first use), or ``None`` without the middleware."""
    try:
        state = _state_of(environ)
        return state.consent(environ) if state is not None else None
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
        state = _state_of(environ)
        return state.anonymous_id(environ) if state is not None else None
    except Exception:
        logger.warning("get_anonymous_id failed", exc_info=True)
        return None


def get_page_load_id(environ: Mapping[str, Any]) -> str | None:
    """This page view's UET ``pageLoadId``: a v4 UUID, the same for the whole request (render it into the page's
    ``<meta name="msclkid-page-load-id">`` so browser and server events share it).  ``None`` without the
    middleware.  Never raises."""
    try:
        state = _state_of(environ)
        return state.page_load_id() if state is not None else None
    except Exception:
        logger.warning("get_page_load_id failed", exc_info=True)
        return None


def set_page_title(environ: Mapping[str, Any], title: str | None) -> None:
    """Tell the middleware this page's title, for the page view's ``pageTitle``."""
    state = _state_of(environ)
    if state is not None and (title is None or isinstance(title, str)):
        state.title = title[:512] if title else None
