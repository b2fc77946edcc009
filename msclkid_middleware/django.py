"""Django adapter over the capture core: ``"msclkid_middleware.django.MsclkidMiddleware"`` in ``settings.MIDDLEWARE``.

Sync and async capable (Django's ``sync_and_async_middleware`` shape: ``sync_capable``/``async_capable`` and
``markcoroutinefunction`` when the chain below is async), so it runs under ``WSGIHandler`` and ``ASGIHandler``
without a thread hop.  The request path reads top to bottom as in :mod:`msclkid_middleware.middleware`:
``request.META`` becomes :class:`~msclkid_middleware.capture.request.RequestFacts`, the engine decides, the
Decision goes into ``request.META["msclkid.state"]`` (so ``get_click(request)``, ``get_click(request.META)`` and
the app's callbacks see what the WSGI adapter gives them) and ``request.msclkid`` is the ``Click`` or ``None``;
the view runs inside :func:`~msclkid_middleware.capture.context.enter_request`; our ``Set-Cookie`` values go into
``response.cookies`` (headers only: the body, streamed or not, is never touched); the page-view hook runs when
Django closes the response (after the body was sent).

Configuration comes from Django settings with the names of :class:`~msclkid_middleware.config.Settings`
(``MSCLKID_SECRET_KEYS``, ``MSCLKID_CONSENT_DEFAULT``, ...; ``SECRET_KEY`` and ``SECRET_KEY_FALLBACKS`` are reused
with the cookie's own salt when ``MSCLKID_SECRET_KEYS`` is unset), plus two dicts with no single-value form:
``MSCLKID_MIDDLEWARE_OPTIONS`` (``MsclkidMiddleware`` keywords such as ``consent=ConsentPolicy(resolver=...)``,
``allow_insecure_cookie=True``) and ``MSCLKID_TRACKER_OPTIONS`` (``ConversionTracker`` keywords).  The system
checks, the ``manage.py msclkid`` commands and the template tags live in the app :mod:`msclkid_middleware.djangoapp`.
This module and that app are the only ones importing Django.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Container, Iterable, Mapping
from http.cookies import Morsel
from typing import TYPE_CHECKING, Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse, HttpResponseBase

from msclkid_middleware.capture.adapter import script_answer, settings_options
from msclkid_middleware.capture.consent import Consent, ConsentPolicy
from msclkid_middleware.capture.context import enter_request, leave_request
from msclkid_middleware.capture.decision import Decision
from msclkid_middleware.capture.endpoint import INTERNAL_ERROR, Answer, read_body
from msclkid_middleware.capture.engine import Capture
from msclkid_middleware.capture.request import RequestFacts
from msclkid_middleware.cli.environ import as_text, settings_environ
from msclkid_middleware.config import DEFAULT_STORE_FILENAME, Settings
from msclkid_middleware.errors import ConfigError
from msclkid_middleware.middleware import STATE_KEY, decision_of

if TYPE_CHECKING:  # pragma: no cover
    from msclkid_middleware.capture.pageview import PageView
    from msclkid_middleware.dispatch.page_loads import PageLoadRecorder
    from msclkid_middleware.dispatch.tracker import ConversionTracker

__all__ = [
    "MIDDLEWARE_OPTIONS",
    "TRACKER_OPTIONS",
    "MsclkidMiddleware",
    "capture_options",
    "close_tracker",
    "command_environ",
    "get_tracker",
    "read_settings",
    "secret_keys",
]

logger = logging.getLogger("msclkid_middleware.django")

#: Django setting: ``MsclkidMiddleware`` keywords that have no single-value setting (they win over the settings).
MIDDLEWARE_OPTIONS = "MSCLKID_MIDDLEWARE_OPTIONS"
#: Django setting: ``ConversionTracker`` keywords (``poll_interval``, ``on_error``, ...).
TRACKER_OPTIONS = "MSCLKID_TRACKER_OPTIONS"
_PREFIXES = ("MSCLKID_", "MSADS_", "UET_")


# -- configuration from Django settings ------------------------------------------------------------------


def secret_keys() -> tuple[str | bytes, ...]:
    """``MSCLKID_SECRET_KEYS`` (a list, or a comma-separated string), else ``SECRET_KEY_FALLBACKS`` + ``SECRET_KEY``.

    Oldest first, newest last (the newest signs).  Reusing Django's key is safe: the click cookie signs with its
    own salt, so neither Django's signed values nor our cookie can be replayed as the other.
    """
    own = getattr(django_settings, "MSCLKID_SECRET_KEYS", None)
    if own:
        parts: Iterable[str | bytes] = own
        if isinstance(own, str | bytes):
            parts = own.split(",") if isinstance(own, str) else [own]
        keys = tuple(k.strip() if isinstance(k, str) else k for k in parts)
        return tuple(k for k in keys if k)
    fallbacks = getattr(django_settings, "SECRET_KEY_FALLBACKS", None) or ()
    try:
        main = getattr(django_settings, "SECRET_KEY", None)
    except ImproperlyConfigured:  # Django's own refusal of an empty SECRET_KEY: no key, said our way
        main = None
    return tuple(k for k in (*fallbacks, main) if isinstance(k, str | bytes) and k)


def _default_store_url() -> str | None:
    # Beside the project (BASE_DIR, as every startproject settings file defines it), else Settings' default.
    base = getattr(django_settings, "BASE_DIR", None)
    return f"sqlite:///{os.path.join(os.fspath(base), DEFAULT_STORE_FILENAME)}" if base else None


def read_settings() -> Settings:
    """The :class:`~msclkid_middleware.config.Settings` of the Django settings (validated: may raise ConfigError)."""
    mapping = {
        key: getattr(django_settings, key)
        for key in Settings.setting_names().values()
        if key != "MSCLKID_SECRET_KEYS" and hasattr(django_settings, key)
    }
    return Settings.from_mapping(
        mapping,
        secret_keys=tuple(as_text(k) for k in secret_keys()),
        store_url=getattr(django_settings, "MSCLKID_STORE_URL", None) or _default_store_url(),
    )


def _option_dict(name: str) -> dict[str, Any]:
    value = getattr(django_settings, name, None) or {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{name} must be a dict of keyword arguments", setting=name)
    return dict(value)


def capture_options(settings: Settings, **extra: Any) -> dict[str, Any]:
    """The ``Capture`` keywords the settings describe, then ``MSCLKID_MIDDLEWARE_OPTIONS``, then ``extra``."""
    overrides = {**_option_dict(MIDDLEWARE_OPTIONS), **extra}
    # Django reuses its own SECRET_KEY (and fallbacks) unless the options name the keys.
    options = settings_options(settings, {"secret_keys": secret_keys(), **overrides})
    if not options.get("secret_keys"):
        raise ConfigError(
            "set SECRET_KEY (reused, with its own salt) or MSCLKID_SECRET_KEYS to sign the click cookie",
            setting="MSCLKID_SECRET_KEYS",
        )
    if settings.uet_page_loads != "off" and "on_page_view" not in options:
        if not settings.uet_tag_id:
            raise ConfigError(
                "MSCLKID_UET_PAGE_LOADS needs UET_TAG_ID (and UET_API_TOKEN) to send page loads",
                setting="MSCLKID_UET_PAGE_LOADS",
            )
        options["on_page_view"] = _PageLoads(settings.uet_page_loads)
    return options


def command_environ() -> dict[str, str]:
    """The Django settings as the ``str -> str`` mapping the ``msclkid`` commands read instead of ``os.environ``.

    Every ``MSCLKID_*`` / ``MSADS_*`` / ``UET_*`` setting (also names this version does not know), ``SECRET_KEY``
    reused, the outbox beside the project (``BASE_DIR``) unless ``MSCLKID_STORE_URL`` says otherwise.
    """
    environ = settings_environ(
        (
            (key, getattr(django_settings, key, None))
            for key in dir(django_settings)
            if key.startswith(_PREFIXES) and key not in (MIDDLEWARE_OPTIONS, TRACKER_OPTIONS)
        ),
        secret_keys,
    )
    store = _default_store_url()
    if store is not None:
        environ.setdefault("MSCLKID_STORE_URL", store)
    return environ


# -- the process's tracker ------------------------------------------------------------------------------------


class _Shared:
    """The process's tracker (built on first use from the settings of that moment) and its worker thread."""

    lock = threading.Lock()
    tracker: ConversionTracker | None = None
    worker_pid: int | None = None


def get_tracker() -> ConversionTracker:
    """The project's :class:`~msclkid_middleware.dispatch.tracker.ConversionTracker`, built on first use.

    ``tracker.record_offline(...)`` in a sync view, ``await tracker.arecord_offline(...)`` in an async one.
    """
    tracker = _Shared.tracker
    if tracker is not None:
        return tracker
    with _Shared.lock:
        if _Shared.tracker is None:
            from msclkid_middleware.dispatch.tracker import ConversionTracker

            settings = read_settings()
            _Shared.tracker = ConversionTracker(
                settings=settings, store_url=settings.store_url, **_option_dict(TRACKER_OPTIONS)
            )
        return _Shared.tracker


def close_tracker() -> None:
    """Stop the worker thread and close the tracker; the next :func:`get_tracker` builds a new one (tests)."""
    with _Shared.lock:
        tracker, _Shared.tracker = _Shared.tracker, None
        _Shared.worker_pid = None
    if tracker is not None:
        tracker.close()


def _start_worker() -> None:
    """``MSCLKID_WORKER="thread"``: start delivery in this process on its first request (again after a fork)."""
    pid = os.getpid()
    if _Shared.worker_pid == pid:
        return
    with _Shared.lock:
        if _Shared.worker_pid == pid:
            return
        _Shared.worker_pid = pid
    try:
        get_tracker().start()
    except Exception:
        # Delivery trouble must never cost the visitor their page: log, and try again next request.
        _Shared.worker_pid = None
        logger.warning("could not start the msclkid delivery thread; retrying on the next request", exc_info=True)


class _PageLoads:
    """``on_page_view`` for ``MSCLKID_UET_PAGE_LOADS``: a PageLoadRecorder on the shared tracker, built lazily."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self._recorder: PageLoadRecorder | None = None
        self._lock = threading.Lock()

    def __call__(self, view: PageView) -> None:
        recorder = self._recorder
        if recorder is None:
            from msclkid_middleware.dispatch.page_loads import PageLoadRecorder

            with self._lock:
                if self._recorder is None:
                    self._recorder = PageLoadRecorder.for_mode(get_tracker(), self.mode)
                recorder = self._recorder
        if recorder is not None:
            recorder(view)


# -- the middleware -------------------------------------------------------------------------------------------


class _HeaderMorsel(Morsel[str]):
    """A cookie for ``response.cookies`` whose ``Set-Cookie`` is exactly the header the core built.

    Django writes every ``response.cookies`` value as a ``Set-Cookie`` header (``morsel.output(header="")``) and
    its test client reads them back as morsels, so the parsed name, value and attributes are kept as well.
    """

    def __init__(self, header: str) -> None:
        super().__init__()
        # Our own header, "name=value; Attr=v; Flag": our token alphabet needs no quoting, and a split costs a
        # tenth of SimpleCookie.load.
        pair, *attributes = header.split("; ")
        name, _, value = pair.partition("=")
        self.set(name, value, value)
        for attribute in attributes:
            key, sep, attr_value = attribute.partition("=")
            self[key] = attr_value if sep else True
        self.header = header

    def OutputString(self, attrs: Container[str] | None = None) -> str:  # Morsel's own name
        # A morsel restored from a pickle (the cache framework) has lost ``header``: Morsel's own rendering then.
        header = self.__dict__.get("header")
        return header if isinstance(header, str) else super().OutputString(attrs)


def _add_cookie(response: HttpResponseBase, header: str) -> None:
    morsel = _HeaderMorsel(header)
    response.cookies[morsel.key] = morsel


class MsclkidMiddleware:
    """Capture ``msclkid`` into a signed, HttpOnly, first-party cookie, with consent respected (Django).

    Configured from Django settings when Django builds the middleware chain (a bad setting raises
    :class:`~msclkid_middleware.errors.ConfigError` then, never on a request; ``manage.py check`` reports it first).
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)
        self.settings = read_settings()
        self.capture = Capture(log=logger, **capture_options(self.settings))
        consent = self.capture.consent
        # App callbacks and stores may touch the database: under ASGI they run in Django's sync thread, not on
        # the event loop.  The built-in policy without a resolver is pure and stays on the loop (no thread hop).
        self.blocking = (
            self.capture.profile_store is not None
            or self.capture.visitor_id is not None
            or not isinstance(consent, ConsentPolicy)
            or consent.resolver is not None
        )
        self.worker = self.settings.worker == "thread"

    # -- sync and async entry points ---------------------------------------------------------------------
    def __call__(self, request: HttpRequest) -> Any:
        if self.async_mode:
            return self.__acall__(request)
        if self.worker:
            _start_worker()
        if request.path_info in self.capture.endpoint_paths:
            return self.serve_endpoint(request)
        decision = self.before(request)
        token = enter_request(_ConsentSource(request.META))
        try:
            response = self.get_response(request)
        finally:
            leave_request(token)
        self.after(request, decision, response)
        return response

    async def __acall__(self, request: HttpRequest) -> Any:
        if self.worker:
            _start_worker()
        blocking = self.blocking
        if request.path_info in self.capture.endpoint_paths:
            return await sync_to_async(self.serve_endpoint)(request) if blocking else self.serve_endpoint(request)
        decision = await sync_to_async(self.before)(request) if blocking else self.before(request)
        token = enter_request(_ConsentSource(request.META))
        try:
            response = await self.get_response(request)
        finally:
            leave_request(token)
        if blocking:
            await sync_to_async(self.after)(request, decision, response)
        else:
            self.after(request, decision, response)
        return response

    # -- the request path ---------------------------------------------------------------------------------
    def facts(self, request: HttpRequest) -> RequestFacts:
        """``request.META`` as RequestFacts, with Django's view of the scheme and host (proxy settings honoured), for
        the capture endpoint's same-origin rule."""
        facts = RequestFacts.from_environ(request.META)
        scheme = request.scheme or facts.scheme
        try:
            host = request.get_host()
        except Exception:  # DisallowedHost: the raw Host header, as the WSGI adapter reads it
            host = facts.host
        if scheme != facts.scheme or host != facts.host:
            facts = facts.replace(scheme=scheme, host=host)
        return facts

    def before(self, request: HttpRequest) -> Decision | None:
        """Decide, store the Decision in ``request.META`` and the click on ``request.msclkid``; never raises."""
        meta = request.META
        capture = self.capture
        try:
            # Scheme and host matter only to the capture endpoint's origin rule (self.facts): not read here.
            facts = RequestFacts.from_environ(meta)
            ours = capture.carries_ours(facts.query, facts.cookie_header)
            decision = capture.decide(facts) if ours else capture.blank(facts)
        except Exception:
            logger.warning("click capture failed; request passed on untouched", exc_info=True)
            request.msclkid = None
            return None
        meta[STATE_KEY] = decision
        request.msclkid = decision.click(meta)
        return decision

    def after(self, request: HttpRequest, decision: Decision | None, response: HttpResponseBase) -> None:
        """Add our cookies to the response's headers, then the writes the decision asks for; never raises."""
        if decision is None:
            return
        capture = self.capture
        meta = request.META
        try:
            if capture.tracking and capture.page_view_candidate(decision.facts):
                status = f"{response.status_code} {response.reason_phrase}"
                decision.page_view = capture.is_page_view(decision.facts, status, response.items())
            extra = decision.response_headers(meta)
            if capture.tracking:
                extra = extra + decision.visitor_headers(meta)
            decision.sent = True
            for _, header in extra:
                _add_cookie(response, header)
        except Exception:
            logger.warning("click cookie handling failed; response left untouched", exc_info=True)
            return
        if decision.profile_write is not None:
            capture.write_profile(decision, meta)
        if decision.page_view:
            _report_on_close(response, capture, decision, request)

    # -- capture endpoint and shipped scripts -----------------------------------------------------------
    def serve_endpoint(self, request: HttpRequest) -> HttpResponse:
        capture = self.capture
        try:
            facts = self.facts(request)
            if facts.path == capture.capture_path:
                answer = self._capture(facts, request)
            else:
                answer = script_answer(capture, facts)
        except Exception:
            logger.warning("capture endpoint failed", exc_info=True)
            answer = INTERNAL_ERROR
        code, _, reason = answer.status.partition(" ")
        body = b"" if request.method == "HEAD" else answer.body
        response = HttpResponse(body, status=int(code), reason=reason or None)
        if not any(name.lower() == "content-type" for name, _ in answer.headers):
            del response.headers["Content-Type"]  # HttpResponse's text/html default is not ours to send
        for name, value in answer.headers:
            if name.lower() == "set-cookie":
                _add_cookie(response, value)
            else:
                response.headers[name] = value
        response.headers["Content-Length"] = str(len(answer.body))
        if answer.decision is not None:
            capture.write_profile(answer.decision, request.META)
        return response

    def _capture(self, facts: RequestFacts, request: HttpRequest) -> Answer:
        endpoint = self.capture.endpoint
        refused = endpoint.precheck(facts)
        if refused is not None:
            return refused
        # Under ASGI Django has read the body into a file of exactly that size, so one without Content-Length
        # may be read up to the cap; under WSGI the stream is cut at Content-Length (no length: nothing to read).
        body = read_body(facts, request.read, terminated="wsgi.input" not in request.META)
        if isinstance(body, Answer):
            return body
        return endpoint.answer(facts, body, request.META)


class _ConsentSource:
    """``record_*`` without ``consent=`` inside the view uses this request's decision (capture/context.py); the
    source is lazy, so a request whose view records nothing never decides.  A lost decision answers a refusal."""

    __slots__ = ("meta",)

    def __init__(self, meta: dict[str, Any]) -> None:
        self.meta = meta

    def __call__(self) -> Consent | None:
        decision = decision_of(self.meta)
        return decision.consent(self.meta) if decision is not None else Consent.denied_by("default")


def _report_on_close(response: HttpResponseBase, capture: Capture, decision: Decision, request: HttpRequest) -> None:
    """Report the page view when Django closes the response: after the last byte, also of a streamed body."""
    close = response.close

    def closing() -> None:
        try:
            close()
        finally:
            if decision.page_view:
                decision.page_view = False  # a server closing twice reports the view once
                try:
                    host = request.get_host()
                except Exception:  # DisallowedHost: the raw Host, which page_host accepts only if the site serves it
                    host = decision.facts.host
                meta, scheme = request.META, request.scheme or "http"
                served = capture.page_host(host, scheme, meta.get("SERVER_NAME"), str(meta.get("SERVER_PORT") or ""))
                if served is not None:  # else a made-up Host: no page view (issue 19 item 9)
                    url, address = f"{scheme}://{served}{request.get_full_path()}", meta.get("REMOTE_ADDR")
                    capture.report_page_view(
                        decision, meta, url=url, client_ip=address if isinstance(address, str) and address else None
                    )

    response.close = closing
