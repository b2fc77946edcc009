"""One request's capture decision: read once, decided on first use, never touching the request again (pure).

A :class:`Decision` holds the request's :class:`~msclkid_middleware.capture.request.RequestFacts` and what
was read from them (the URL's click ID, our verified cookie, UET's cookie).  Everything else (consent, the
click, the anonymous ID, the ``Set-Cookie`` values) is worked out the first time it is asked for, and at
most once, so a request whose app never asks costs nothing.  The app's own callbacks (consent resolver,
``visitor_id``) take the framework's view of the request, ``app_request`` (the WSGI environ, an ASGI
scope): it is passed into each call, never kept, so a Decision never references its request.

Writes are not done here: :attr:`Decision.profile_write` says which click the profile store should get,
and the adapter has the engine write it once the response headers are out.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from msclkid_middleware.capture.clickid import (
    DEFAULT_MAX_FIELDS,
    DEFAULT_MAX_QUERY_LENGTH,
    QUERY_MARKER,
    UET_COOKIE_NAME,
    Click,
    ClickSource,
    click_id_from_query,
    click_id_from_uet_cookie,
)
from msclkid_middleware.capture.consent import Consent, ConsentDecider
from msclkid_middleware.capture.cookie import ClickCookie, LoadedCookie
from msclkid_middleware.capture.pageview import AnonymousIdSource
from msclkid_middleware.capture.request import RequestFacts, cookie_values, parse_cookies
from msclkid_middleware.capture.visitor import (
    UET_VISITOR_COOKIE,
    VISITOR_REFRESH_AFTER,
    LoadedVisitor,
    VisitorCookie,
    uet_visitor_id,
)

if TYPE_CHECKING:  # pragma: no cover
    from msclkid_middleware.capture.profiles import ProfileStore

__all__ = [
    "AppRequest",
    "Decision",
    "DecisionContext",
    "ProfileWrite",
    "VisitorId",
    "click_at",
    "decide_request",
]

#: The framework's view of the request, handed to the app's callbacks: a WSGI environ, an ASGI scope.
AppRequest = Mapping[str, Any]
VisitorId = Callable[[AppRequest], str | None]

_UNSET: Any = object()


def click_at(msclkid: str, timestamp: int, source: ClickSource) -> Click:
    """A :class:`Click` captured at ``timestamp`` (seconds since the epoch), from an ID capture has validated."""
    return Click.verified(msclkid, datetime.fromtimestamp(timestamp, UTC), source)


@dataclass(frozen=True, slots=True)
class DecisionContext:
    """The configured parts a decision uses (built once by :class:`~msclkid_middleware.capture.engine.Capture`)."""

    cookie: ClickCookie
    visitor_cookie: VisitorCookie | None
    consent: ConsentDecider
    visitor_id: VisitorId | None
    profile_store: ProfileStore | None
    clock: Callable[[], float]
    #: Failures are logged by the adapter's logger, so operators filter one name per integration.
    log: logging.Logger
    max_query_length: int = DEFAULT_MAX_QUERY_LENGTH
    max_query_fields: int = DEFAULT_MAX_FIELDS
    #: ``decide(facts)`` of a consent policy that needs no app callback (a ConsentPolicy without a resolver): a
    #: decision asks it up front.  ``None``: ``consent`` is asked lazily, with the app's request.
    settle: Callable[[RequestFacts], Consent] | None = None
    #: What that policy answers a request without Sec-GPC and without its consent cookies (its default).
    unsignalled: Consent | None = None
    #: The consent cookies that policy reads (a header without them gets ``unsignalled``).
    consent_cookies: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ProfileWrite:
    """A click the profile store should get for this request's visitor (``new``: not merely seen again)."""

    click: Click
    new: bool


class Decision:
    """Everything capture knows about one request; each value computed lazily, at most once.

    :func:`decide_request` reads a request carrying a click into one (what :attr:`Capture.decide
    <msclkid_middleware.capture.engine.Capture.decide>` returns); ``Decision(context, facts)`` reads nothing up
    front.
    """

    # Everything but the few values read from the request starts at a class-level default: a request that
    # never asks for consent, the click or the visitor ID pays only for what it carried.
    url_id: str | None = None
    #: Our newest verified cookie.
    cookie: LoadedCookie | None = None
    #: The request carried a value of our cookie (verified or not: a refusal deletes it).
    cookie_present = False
    uet_id: str | None = None
    _consent: Consent | None = None
    _click: Click | None = _UNSET
    _visitor: str | None = _UNSET
    #: Our click cookie's ``Set-Cookie`` headers once worked out: with the request for a plain landing or a plain
    #: cookie request under a consent policy that needs no app callback (see :func:`decide_request`), else by
    #: :meth:`response_headers`; ``None`` until then.  Not changed once worked out (adapters append a copy).
    set_cookies: list[tuple[str, str]] | None = None
    #: Set with the response headers: the click the profile store gets once they are out.
    profile_write: ProfileWrite | None = None
    # Page views and the anonymous visitor ID (issue 13): all lazy, so a request that never asks costs nothing.
    _anon: str | None = _UNSET
    _anon_new = False
    anonymous_id_source: AnonymousIdSource | None = None
    _vloaded: LoadedVisitor | None = None
    _page_load_id: str | None = None
    #: The response is a page view to report (set by the adapter when the response starts).
    page_view = False
    #: The response headers are out: too late for a Set-Cookie.
    sent = False
    title: str | None = None
    cookies: dict[str, str] | None = None

    def __init__(
        self,
        context: DecisionContext,
        facts: RequestFacts,
        cookies: dict[str, str] | None = None,
        consent: Consent | None = None,
    ) -> None:
        """A decision that reads nothing up front: for a request the cheap check found nothing of ours in (its
        cookies parsed on first use), or the capture endpoint's (which read the request itself).  A request
        carrying a click is read by :func:`decide_request`."""
        self.context = context
        self.facts = facts
        self.now = int(context.clock())
        if cookies is not None:
            self.cookies = cookies
        if consent is not None:
            self._consent = consent

    # -- lazily computed values ----------------------------------------------------------------
    def consent(self, app_request: AppRequest) -> Consent:
        consent = self._consent
        if consent is None:
            try:
                consent = self.context.consent.decide(self.facts, self.cookies, app_request=app_request)
                if not isinstance(consent, Consent):
                    raise TypeError("the consent policy did not return a Consent")
            except Exception:
                self.context.log.warning("consent policy failed; treating the request as denied", exc_info=True)
                consent = Consent.denied_by("default")
            self._consent = consent
        return consent

    def visitor(self, app_request: AppRequest) -> str | None:
        if self._visitor is _UNSET:
            self._visitor = None
            if self.context.visitor_id is not None:
                try:
                    vid = self.context.visitor_id(app_request)
                    self._visitor = vid if isinstance(vid, str) and vid else None
                except Exception:
                    self.context.log.warning(
                        "visitor_id callable failed; no profile used for this request", exc_info=True
                    )
        return self._visitor

    def click(self, app_request: AppRequest) -> Click | None:
        click = self._click
        if click is not _UNSET:
            return click
        click = None
        try:
            url_id = self.url_id
            cookie = self.cookie
            if (url_id or cookie or self.uet_id or self.context.profile_store is not None) and (
                self._consent or self.consent(app_request)
            ).granted:
                if url_id:
                    # Reloading the landing URL is not a new click: keep the time it was first captured.
                    same = cookie is not None and cookie.msclkid == url_id
                    ts = cookie.timestamp if same and cookie is not None else self.now
                    click = click_at(url_id, ts, "url")
                elif cookie is not None:
                    click = cookie.click
                elif self.uet_id:
                    # UET's cookie carries no click time: the time we saw it is the best we know.
                    click = click_at(self.uet_id, self.now, "uet_cookie")
                else:
                    click = self._profile_click(app_request)
        except Exception:
            self.context.log.warning("could not resolve the click for this request", exc_info=True)
        self._click = click
        return click

    def jar(self) -> dict[str, str]:
        """The request's cookies (parsed once; requests that carried nothing of ours parse them on first use)."""
        if self.cookies is None:
            self.cookies = parse_cookies(self.facts.cookie_header)[0]
        return self.cookies

    def page_load_id(self) -> str:
        if self._page_load_id is None:
            self._page_load_id = str(uuid.uuid4())
        return self._page_load_id

    def anonymous_id(self, app_request: AppRequest) -> str | None:
        if self._anon is _UNSET:
            self._anon = None
            try:
                self._anon = self._resolve_anonymous(app_request)
            except Exception:
                self.context.log.warning("could not resolve the anonymous visitor ID for this request", exc_info=True)
        return self._anon

    def _resolve_anonymous(self, app_request: AppRequest) -> str | None:
        jar = self.jar()
        if not self.consent(app_request).granted:
            return None  # as UET itself: no first-party cookie is read or written without consent
        uet = uet_visitor_id(jar.get(UET_VISITOR_COOKIE))
        if uet is not None:
            self.anonymous_id_source = "uet"
            return uet
        cookie = self.context.visitor_cookie
        if cookie is None:
            return None
        self._vloaded = cookie.decode(jar.get(cookie.name))
        if self._vloaded is not None:
            self.anonymous_id_source = "cookie"
            return self._vloaded.visitor_id
        if self.sent:
            return None  # too late for a Set-Cookie: an ID we could not keep would not match the next one
        self._anon_new = True
        self.anonymous_id_source = "cookie"
        return cookie.new_id()

    def _profile_click(self, app_request: AppRequest) -> Click | None:
        """The visitor's click from the profile store (the last source, for a request carrying none)."""
        context = self.context
        store = context.profile_store
        visitor = self.visitor(app_request)
        if store is None or visitor is None:
            return None
        try:
            saved = store.get(visitor)
        except Exception:
            context.log.warning("profile store read failed; no profile click for this request", exc_info=True)
            return None
        # A stored click lives exactly as long as its cookie would (max_age from the click, not sliding):
        # an older one is outside every conversion window Microsoft allows and must not be attributed.
        if saved is not None and saved.captured_at.timestamp() + context.cookie.max_age <= self.now:
            return None
        return saved

    # -- the response side ---------------------------------------------------------------------
    def response_headers(self, app_request: AppRequest) -> list[tuple[str, str]]:
        """Our click-cookie ``Set-Cookie`` header(s) for this response; computed once, never raises."""
        headers = self.set_cookies
        if headers is not None:
            return headers
        headers = self.set_cookies = []
        url_id = self.url_id
        if not (url_id or self.cookie_present or self.uet_id):
            return headers
        context = self.context
        try:
            if not (self._consent or self.consent(app_request)).granted:
                if self.cookie_present:
                    headers.append(("Set-Cookie", context.cookie.delete_cookie()))
                return headers
            loaded = self.cookie
            if url_id and (loaded is None or loaded.msclkid != url_id):
                now = self.now
                header: str | None = context.cookie.fresh(url_id, now)
                # As in decide_request (the click ID cut for logs, formatted only when debug logging is on).
                log = context.log
                if log.isEnabledFor(logging.DEBUG):
                    log.debug("captured click %.6s… from the landing URL", url_id)
                if context.profile_store is not None:
                    self.profile_write = ProfileWrite(click_at(url_id, now, "url"), True)
            elif loaded is not None:
                # Signed with an older key: re-issue under the newest key, same click time.
                header = context.cookie.issue(loaded.msclkid, loaded.timestamp, self.now) if loaded.stale_key else None
                if context.profile_store is not None:
                    self.profile_write = ProfileWrite(loaded.click, False)
            else:
                return headers
            if header:
                headers.append(("Set-Cookie", header))
        except Exception:
            headers.clear()
            context.log.warning("click cookie handling failed; response left untouched", exc_info=True)
        return headers

    def visitor_headers(self, app_request: AppRequest) -> list[tuple[str, str]]:
        """Our visitor-cookie ``Set-Cookie`` for this response (issue, refresh or delete); never raises."""
        cookie = self.context.visitor_cookie
        if cookie is None:
            return []
        # Only page views and requests whose app asked for the ID touch the cookie: assets, API calls and
        # the like cost nothing, and a refusal removes the cookie on the next page view.
        if not self.page_view and self._anon is _UNSET:
            return []
        try:
            self.anonymous_id(app_request)
            present = (cookie.name + "=") in self.facts.cookie_header
            if not self.consent(app_request).granted:
                return [("Set-Cookie", cookie.delete_cookie())] if present else []
            if self._anon_new and self._anon is not None:
                return [("Set-Cookie", cookie.set_cookie(self._anon, self.now))]
            loaded = self._vloaded
            if loaded is not None and (loaded.stale_key or self.now - loaded.timestamp >= VISITOR_REFRESH_AFTER):
                return [("Set-Cookie", cookie.set_cookie(loaded.visitor_id, self.now))]
        except Exception:
            self.context.log.warning("visitor cookie handling failed; response left untouched", exc_info=True)
        return []


_new_decision = object.__new__


def decide_request(context: DecisionContext, facts: RequestFacts, lowered: str | None = None) -> Decision:
    """The decision of a request carrying a click: the URL's click ID, our newest verified cookie and UET's are read
    now (and, with a policy that needs no app callback, the consent).  ``lowered``: the query lower-cased, when the
    adapter's cheap check made it.

    The Decision is allocated here and its fields stored directly, without a constructor call: on CPython a class
    call runs ``__init__`` through a slower path than a plain function call, and this runs on every such request.
    """
    decision: Decision = _new_decision(Decision)
    decision.context = context
    decision.facts = facts
    decision.now = now = int(context.clock())
    # facts[0], facts[1]: the query and the Cookie header, by index (RequestFacts is a tuple): no property call.
    query = facts[0]
    if lowered is None:
        lowered = query.lower()
    if QUERY_MARKER in lowered:
        decision.url_id = click_id_from_query(query, context.max_query_length, context.max_query_fields, lowered)
    header = facts[1]
    if header:
        # Only our two cookies are looked for here; the whole jar is parsed later, if consent or the
        # anonymous ID needs it (most cookie requests never do).
        cookie = context.cookie
        ours = cookie_values(header, cookie.name)
        if ours:
            decision.cookie_present = True
            # One value (a browser sends one cookie of a name): verified in one call.
            decision.cookie = cookie.load(ours[0], now) if len(ours) == 1 else cookie.decode_newest(ours, now)
        # UET's cookie counts only without a click in the URL or our cookie (the click's and the Set-Cookie's last
        # source): a request carrying ours does not look for it.
        if decision.url_id is None and decision.cookie is None and UET_COOKIE_NAME in header:
            uet = cookie_values(header, UET_COOKIE_NAME, first=True)
            if uet:
                decision.uet_id = click_id_from_uet_cookie(uet[0])
    settle = context.settle
    if settle is not None:
        if facts[2] is not None or facts[3]:
            decision._consent = settle(facts)
        else:
            # No Sec-GPC and a header without the policy's consent cookies: its default (the policy's own first
            # check, made here so most requests skip the call).
            decision._consent = context.unsignalled
            for name in context.consent_cookies:
                if name in header:
                    decision._consent = settle(facts)
                    break
        # The two commonest requests, answered now (the rest, and any request under a consent decider that needs the
        # app's request, by click() and response_headers() when asked): a landing without a valid cookie of ours
        # gets its Set-Cookie, a cookie signed by the newest key gets nothing and its click.  Without a profile
        # store (its write goes through response_headers()).  What the lazy methods would answer, property-tested.
        if decision._consent.granted and context.profile_store is None:  # type: ignore[union-attr]
            url_id = decision.url_id
            loaded = decision.cookie
            if url_id:
                if loaded is None:
                    decision.set_cookies = [("Set-Cookie", context.cookie.fresh(url_id, now))]
                    # "%.6s…": the click ID cut for logs as redact.shorten does (capture imports only the foundation's
                    # errors and config), and only formatted when debug logging is on (asked first).
                    log = context.log
                    if log.isEnabledFor(logging.DEBUG):
                        log.debug("captured click %.6s… from the landing URL", url_id)
            elif loaded is not None and not loaded.stale_key:
                decision.set_cookies = []
                decision._click = loaded.click
    return decision
