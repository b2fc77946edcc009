"""The capture core: configured once, then one :class:`Decision` per request (framework-free).

Shape after WhiteNoise: every option is checked and every constant (cookie attributes, endpoint
paths, snippet bodies and ETags) is built once in :class:`Capture`'s ``__init__``; a request is
turned into a :class:`~msclkid_middleware.capture.decision.Decision` by :meth:`Capture.decide`,
and :meth:`Capture.carries_ours` is the one cheap check an adapter makes before anything is parsed.
Adapters (WSGI :mod:`msclkid_middleware.middleware`, later ASGI and Django) read the request into
:class:`~msclkid_middleware.capture.request.RequestFacts`, ask for the decision, write its headers,
and only then run the writes it asks for (:meth:`Capture.write_profile`, the page-view hook).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol, Required, TypedDict
from urllib.parse import quote
from wsgiref.util import request_uri

from msclkid_middleware.capture.clickid import (
    DEFAULT_MAX_FIELDS,
    DEFAULT_MAX_QUERY_LENGTH,
    QUERY_MARKER,
    UET_COOKIE_NAME,
)
from msclkid_middleware.capture.consent import Consent, ConsentDecider, ConsentPolicy
from msclkid_middleware.capture.cookie import DEFAULT_CLOCK_SKEW, ClickCookie
from msclkid_middleware.capture.decision import AppRequest, Decision, DecisionContext, VisitorId, decide_request
from msclkid_middleware.capture.endpoint import CaptureEndpoint, StaticFile, check_path
from msclkid_middleware.capture.pageview import (
    DEFAULT_BOT_PATTERN,
    PageView,
    PageViewHook,
    check_hosts,
    check_prefixes,
    compile_bot_pattern,
    is_asset_path,
    is_bot,
    is_document_request,
    is_html_document,
    served_host,
    web_referrer,
)
from msclkid_middleware.capture.ratelimit import DEFAULT_BURST, DEFAULT_MAX_CLIENTS, DEFAULT_RATE, RateLimiter
from msclkid_middleware.capture.request import RequestFacts
from msclkid_middleware.capture.signing import CookieOptions, SameSite, SecretKeys
from msclkid_middleware.capture.visitor import DEFAULT_VISITOR_MAX_AGE, VisitorCookie
from msclkid_middleware.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from msclkid_middleware.capture.profiles import ProfileStore

__all__ = ["QUERY_MARKER", "Capture", "CaptureOptions", "Decide"]

_UET_MARKER = UET_COOKIE_NAME + "="
#: Characters a URL may hold as they are (RFC 3986 reserved and unreserved, plus existing escapes).
_URL_SAFE = ":/?#[]@!$&'()*+,;=%~-._"


class CaptureOptions(TypedDict, total=False):
    """:class:`Capture`'s keywords, for adapters that pass them through (``MsclkidMiddleware(app, **options)``).

    Kept beside the signature (a deliberate repeat): the signature holds the defaults, this the names and
    types an adapter's callers are checked against.
    """

    secret_keys: Required[SecretKeys]
    consent: ConsentDecider | None
    cookie_name: str | None
    cookie_domain: str | None
    cookie_secure: bool
    allow_insecure_cookie: bool
    cookie_samesite: SameSite
    max_age: timedelta | int
    clock_skew: timedelta | int
    visitor_id: VisitorId | None
    profile_store: ProfileStore | None
    capture_path: str | None
    snippet_path: str | None
    max_query_length: int
    max_query_fields: int
    clock: Callable[[], float]
    on_page_view: PageViewHook | None
    anonymous_id_cookie: bool | None
    visitor_cookie_name: str | None
    visitor_max_age: timedelta | int
    bot_user_agents: str | re.Pattern[str] | None
    page_view_exclude: Iterable[str]
    sync_script_path: str | None
    allowed_hosts: Iterable[str]
    capture_rate: float | None
    capture_burst: int
    capture_rate_clients: int


class Decide(Protocol):
    """:attr:`Capture.decide`'s signature."""

    def __call__(self, facts: RequestFacts, lowered: str | None = None, /) -> Decision: ...


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _seconds(value: timedelta | int) -> int:
    return int(value.total_seconds()) if isinstance(value, timedelta) else value


class Capture:
    """The capture configuration and its per-request decisions.

    The keywords are :class:`~msclkid_middleware.middleware.MsclkidMiddleware`'s (documented in
    ``docs/configuration.md``); misuse raises :class:`~msclkid_middleware.errors.ConfigError` here,
    never on the request path.  ``log`` is the adapter's logger: failures are logged there.
    """

    def __init__(
        self,
        *,
        secret_keys: SecretKeys,
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
        allowed_hosts: Iterable[str] = (),
        capture_rate: float | None = DEFAULT_RATE,
        capture_burst: int = DEFAULT_BURST,
        capture_rate_clients: int = DEFAULT_MAX_CLIENTS,
        log: logging.Logger | None = None,
    ) -> None:
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
        # The attributes the click and the visitor cookie share.
        shared = CookieOptions(
            domain=cookie_domain,
            secure=cookie_secure,
            samesite=cookie_samesite,
            clock_skew=_seconds(clock_skew),
            clock=clock,
        )
        self.cookie = ClickCookie(secret_keys, name=cookie_name, max_age=_seconds(max_age), **shared)
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
        self.capture_path = check_path("capture_path", capture_path)
        self.snippet_path = check_path("snippet_path", snippet_path)
        self.sync_script_path = check_path("sync_script_path", sync_script_path)
        paths = [p for p in (self.capture_path, self.snippet_path, self.sync_script_path) if p is not None]
        if len(set(paths)) != len(paths):
            raise ConfigError("capture_path, snippet_path and sync_script_path must differ", setting="snippet_path")
        if on_page_view is not None and not callable(on_page_view):
            raise ConfigError("on_page_view must be a callable taking a PageView", setting="on_page_view")
        if anonymous_id_cookie is None:
            # The 390-day visitor cookie exists for server-side UET: on with page-view tracking, else opt-in.
            anonymous_id_cookie = on_page_view is not None
        self.visitor_cookie: VisitorCookie | None = None
        if anonymous_id_cookie:
            name = visitor_cookie_name or f"{cookie_name}_vid"
            self.visitor_cookie = VisitorCookie(secret_keys, name=name, max_age=_seconds(visitor_max_age), **shared)
        self.on_page_view = on_page_view
        self.bot_user_agents = compile_bot_pattern(bot_user_agents)
        self._bot_cache: dict[str, bool] = {}
        self.page_view_exclude = check_prefixes(page_view_exclude)
        #: Hosts the site serves: a page view's URL is built only from one of these (empty: any valid name).
        self.allowed_hosts = check_hosts(allowed_hosts)
        #: Page views and the visitor cookie need to see every response, not only those carrying our marks.
        self.tracking = on_page_view is not None or self.visitor_cookie is not None
        if consent is None:
            consent = ConsentPolicy()
        if not callable(getattr(consent, "decide", None)):
            raise ConfigError("consent must be a ConsentPolicy (or have its decide() method)", setting="consent")
        self.consent: ConsentDecider = consent
        # A ConsentPolicy without a resolver decides from the request's own headers (no app callback): a decision
        # asks it up front, so the Set-Cookie and the click find the answer made instead of asking through two
        # more calls.  Any other decider is asked lazily, with the app's request, as before.
        settle: Callable[[RequestFacts], Consent] | None = None
        unsignalled: Consent | None = None
        consent_cookies: tuple[str, ...] = ()
        if type(consent) is ConsentPolicy and consent.resolver is None:
            settle = consent.decide
            # What it answers a request without Sec-GPC and without its consent cookies (a first visit's landing,
            # most cookie requests): its default (rule 7 of ConsentPolicy), known without asking.
            unsignalled = Consent(consent.default, "default")
            consent_cookies = tuple(n for n in (consent.cookie_name, consent.tcf_cookie_name) if n is not None)
        self.visitor_id = visitor_id
        self.profile_store = profile_store
        self.max_query_length = max_query_length
        self.max_query_fields = max_query_fields
        self.clock = clock
        self.log = log or logging.getLogger("msclkid_middleware.capture")
        self.context = DecisionContext(
            cookie=self.cookie,
            visitor_cookie=self.visitor_cookie,
            consent=consent,
            visitor_id=visitor_id,
            profile_store=profile_store,
            clock=clock,
            log=self.log,
            max_query_length=max_query_length,
            max_query_fields=max_query_fields,
            settle=settle,
            unsignalled=unsignalled,
            consent_cookies=consent_cookies,
        )
        #: ``decide(facts, lowered=None)``: the request's decision (the URL's click ID, our newest verified cookie
        #: and UET's are read now).  ``lowered``: the query lower-cased, when the adapter's cheap check made it.
        #: capture.decision.decide_request, bound to this configuration: one call per request carrying a click.
        self.decide: Decide = partial(decide_request, self.context)
        self._cookie_marker = cookie_name + "="
        #: The paths the engine answers itself (the adapter hands those requests to :meth:`serve`).
        self.endpoint_paths = frozenset(paths)
        # The capture endpoint's per-client token bucket (issue 19): None or 0 turns it off.
        limiter = RateLimiter(capture_rate, capture_burst, max_clients=capture_rate_clients) if capture_rate else None
        self.endpoint = CaptureEndpoint(self.context, limiter)
        self.snippet = StaticFile.load("msclkid.min.js", "snippet", self.log) if self.snippet_path else None
        self.sync_script = (
            StaticFile.load("msclkid-sync.js", "ID-sync script", self.log) if self.sync_script_path else None
        )
        self._recent_lock = threading.Lock()
        self._recent_profiles: OrderedDict[tuple[str, str], None] = OrderedDict()

    # -- reading a request ---------------------------------------------------------------------------
    def carries_ours(self, query: object, cookie_header: object) -> bool:
        """The whole cost of a request that carries nothing of ours: two substring checks on the raw values."""
        try:
            if query and QUERY_MARKER in query.lower():  # type: ignore[attr-defined]
                return True
            return bool(cookie_header) and (self._cookie_marker in cookie_header or _UET_MARKER in cookie_header)  # type: ignore[operator]
        except Exception:  # a server handing over non-str values: not ours to judge
            return False

    def blank(self, facts: RequestFacts) -> Decision:
        """The decision for a request the cheap check found nothing of ours in (cookies parsed on first use)."""
        return Decision(self.context, facts)

    # -- writes, after the response headers ------------------------------------------------------
    def write_profile(self, decision: Decision, app_request: AppRequest) -> None:
        """Save the click the decision asked to save for the visitor; never raises."""
        write = decision.profile_write
        store = self.profile_store
        if write is None or store is None:
            return
        decision.profile_write = None  # written at most once
        visitor = decision.visitor(app_request)
        if visitor is None:
            return
        key = (visitor, write.click.msclkid)
        if not write.new:
            # The same cookie click arrives on every request: write it once per visitor and process.
            with self._recent_lock:
                if key in self._recent_profiles:
                    self._recent_profiles.move_to_end(key)
                    return
        try:
            store.put(visitor, write.click)
        except Exception:
            self.log.warning("profile store write failed; the click is still in the cookie", exc_info=True)
            return
        with self._recent_lock:
            self._recent_profiles[key] = None
            while len(self._recent_profiles) > 4096:
                self._recent_profiles.popitem(last=False)

    # -- page views (issue 13) -------------------------------------------------------------------
    def page_view_candidate(self, facts: RequestFacts) -> bool:
        """A request whose answer may be a page view (``GET``, not an asset, not excluded)."""
        path = facts.path
        return (
            facts.method == "GET"
            and not is_asset_path(path)
            and not (self.page_view_exclude and path.startswith(self.page_view_exclude))
        )

    def is_page_view(self, facts: RequestFacts, status: str, headers: Iterable[tuple[str, str]]) -> bool:
        """Called when a candidate's response starts: is it a page view we report?"""
        return is_html_document(status, headers) and is_document_request(facts) and not self._is_bot(facts.user_agent)

    def _is_bot(self, agent: str | None) -> bool:
        # A bot pattern is dozens of alternatives, tens of microseconds per search; a site sees few distinct
        # user agents, so verdicts are remembered (a bounded dict: lookups and stores are atomic in CPython).
        if agent is None or len(agent) > 1024:
            return is_bot(self.bot_user_agents, agent)
        cache = self._bot_cache
        verdict = cache.get(agent)
        if verdict is None:
            verdict = is_bot(self.bot_user_agents, agent)
            if len(cache) >= 4096:
                cache.clear()
            cache[agent] = verdict
        return verdict

    def page_host(self, host: str | None, scheme: str, server_name: str | None, server_port: str | None) -> str | None:
        """The host a page view's URL is built from: the request's ``Host`` when it is a valid host name the site
        serves (:attr:`allowed_hosts`), else the server's own name when that is one, else ``None`` (no page view
        is reported: a made-up ``Host`` must not put someone else's site into the site's UET data)."""
        found = served_host(host, self.allowed_hosts)
        if found is not None or not server_name:
            return found
        port = server_port or ""
        default = {"http": "80", "https": "443"}.get(scheme)
        fallback = server_name if (not port or port == default) else f"{server_name}:{port}"
        return served_host(fallback, self.allowed_hosts)

    def page_url(self, cgi: Mapping[str, Any]) -> str | None:
        """A CGI-style request's full URL (a WSGI environ, Django's ``META``), on a host the site serves
        (:meth:`page_host`), or ``None``; a raw query holding spaces or non-ASCII bytes a browser did not encode is
        escaped (WSGI strings carry bytes as latin-1, so they are escaped as the bytes they stand for)."""
        get = cgi.get
        scheme = get("wsgi.url_scheme") or "http"
        host = self.page_host(
            _text(get("HTTP_HOST")), _text(scheme) or "http", _text(get("SERVER_NAME")), _text(get("SERVER_PORT"))
        )
        if host is None:
            return None
        parts = {
            "wsgi.url_scheme": scheme,
            "HTTP_HOST": host,
            "SCRIPT_NAME": get("SCRIPT_NAME") or "",
            "PATH_INFO": get("PATH_INFO") or "",
            "QUERY_STRING": get("QUERY_STRING") or "",
        }
        url = request_uri(parts, include_query=True)
        try:
            return quote(url, safe=_URL_SAFE, encoding="latin-1")
        except UnicodeEncodeError:  # a server breaking the WSGI string rule: escape as UTF-8
            return quote(url, safe=_URL_SAFE)

    def report_page_view(self, decision: Decision, app_request: AppRequest, *, url: str, client_ip: str | None) -> None:
        """Build the PageView and hand it to the hook; after the body was sent, never raises.

        ``url`` and ``client_ip`` are read by the adapter once the app ran: a proxy fix-up inside the
        middleware (werkzeug's ``ProxyFix`` wrapping the app) sets them on the way in.
        """
        hook = self.on_page_view
        if hook is None:
            return
        try:
            facts = decision.facts
            view = PageView(
                url=url,
                page_load_id=decision.page_load_id(),
                time=datetime.fromtimestamp(decision.now, UTC),
                consent=decision.consent(app_request),
                referrer=web_referrer(facts.referer),  # http(s) only: no javascript:, data: or file: URLs
                title=decision.title,
                click=decision.click(app_request),
                anonymous_id=decision.anonymous_id(app_request),
                anonymous_id_source=decision.anonymous_id_source,
                client_ip=client_ip,
                user_agent=facts.user_agent or None,
                landing=decision.url_id is not None,
            )
            hook(view)
        except Exception:
            self.log.warning("on_page_view hook failed; the page view is not reported", exc_info=True)
