"""Flask extension: ``Msclkid(app)`` or ``Msclkid()`` + ``init_app(app)``.

Shaped after flask-wtf's ``CSRFProtect``: ``init_app`` fills every ``MSCLKID_*`` / ``MSADS_*`` /
``UET_*`` config default with ``setdefault`` (documented once, in ``docs/configuration.md``), wraps
``app.wsgi_app`` with :class:`~msclkid_middleware.middleware.MsclkidMiddleware` and registers the
app's state in ``app.extensions["msclkid"]``.  Nothing is stored on the extension object for one
app, so one ``Msclkid()`` serves any number of apps (the app-factory pattern).

This is the only module of the package that imports Flask at import time.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import click
from flask import Flask, current_app, g, has_request_context, request
from flask.cli import ScriptInfo
from markupsafe import Markup, escape

from msclkid_middleware.cli import LazyGroup as _LazyGroup
from msclkid_middleware.cli.common import ENVIRON_META_KEY
from msclkid_middleware.cli.environ import as_text, settings_environ
from msclkid_middleware.config import DEFAULT_STORE_FILENAME, Settings
from msclkid_middleware.errors import ConfigError
from msclkid_middleware.middleware import MsclkidMiddleware, get_click, get_consent, render_page_tags

if TYPE_CHECKING:  # pragma: no cover
    from msclkid_middleware.capture.clickid import Click
    from msclkid_middleware.capture.consent import Consent
    from msclkid_middleware.capture.pageview import PageView
    from msclkid_middleware.dispatch.page_loads import PageLoadRecorder
    from msclkid_middleware.dispatch.tracker import ConversionTracker

__all__ = [
    "CONFIG_DEFAULTS",
    "EXTENSION_KEY",
    "Msclkid",
    "MsclkidState",
    "app_environ",
    "cli_group",
    "current_click",
    "current_consent",
    "msclkid_page_tags",
    "msclkid_snippet",
]

logger = logging.getLogger("msclkid_middleware.flask")

#: Key in ``app.extensions``.
EXTENSION_KEY = "msclkid"
#: Config prefixes handed to ``flask msclkid`` commands as their settings.
_PREFIXES = ("MSCLKID_", "MSADS_", "UET_")
#: Settings whose Flask default differs from :class:`Settings`' own (``None`` = derived at init_app).
_FLASK_OVERRIDES: dict[str, Any] = {
    "secret_keys": None,  # SECRET_KEY (and SECRET_KEY_FALLBACKS) are reused
    "store_url": None,  # a SQLite file in the instance folder
    "cookie_name": None,  # __Host-msclkid, __Secure-msclkid with a domain, msclkid in development mode
}


def _config_defaults() -> dict[str, Any]:
    defaults: dict[str, Any] = {}
    names = Settings.setting_names()
    for f in dataclasses.fields(Settings):
        if f.name not in names:
            continue
        if f.name in _FLASK_OVERRIDES:
            value = _FLASK_OVERRIDES[f.name]
        elif f.default is not dataclasses.MISSING:
            value = f.default
        else:  # pragma: no cover - every named setting has a default
            value = None
        defaults[names[f.name]] = value
    return defaults


#: Every config key ``init_app`` sets with ``setdefault``, with its default (``docs/configuration.md``).
CONFIG_DEFAULTS: Mapping[str, Any] = _config_defaults()


def _secret_keys(config: Mapping[str, Any]) -> tuple[str | bytes, ...]:
    """``MSCLKID_SECRET_KEYS``, else Flask's own ``SECRET_KEY_FALLBACKS`` + ``SECRET_KEY`` (oldest first).

    Reusing the app's key is safe: the click cookie signs with its own salt, so neither token can be
    replayed as the other.
    """
    own = config.get("MSCLKID_SECRET_KEYS")
    if own:
        if isinstance(own, str | bytes):
            parts: Iterable[str | bytes] = own.split(",") if isinstance(own, str) else [own]
        else:
            parts = own
        keys = tuple(k.strip() if isinstance(k, str) else k for k in parts)
        return tuple(k for k in keys if k)
    fallbacks = config.get("SECRET_KEY_FALLBACKS") or ()
    main = config.get("SECRET_KEY")
    return tuple(k for k in (*fallbacks, main) if isinstance(k, str | bytes) and k)


def _default_store_url(app: Flask) -> str:
    return f"sqlite:///{os.path.join(app.instance_path, DEFAULT_STORE_FILENAME)}"


def app_environ(app: Flask) -> dict[str, str]:
    """The app's settings as the ``str -> str`` mapping the CLI commands read instead of ``os.environ``.

    Every ``MSCLKID_*`` / ``MSADS_*`` / ``UET_*`` config key that is set (also keys this version does
    not know, so commands added later see theirs), with ``SECRET_KEY`` reused and the store in the
    instance folder unless configured.
    """
    environ = settings_environ(
        ((key, value) for key, value in app.config.items() if key.startswith(_PREFIXES)),
        lambda: _secret_keys(app.config),
    )
    environ.setdefault("MSCLKID_STORE_URL", _default_store_url(app))
    return environ


class MsclkidState:
    """What the extension keeps for one app (``app.extensions["msclkid"]``).

    The tracker is built on first use, so ``flask routes`` or a test that never records opens no
    database; ``worker_pid`` is the process the background worker was last started in.
    """

    def __init__(
        self,
        extension: Msclkid,
        app: Flask,
        settings: Settings,
        middleware: MsclkidMiddleware,
        tracker_options: Mapping[str, Any],
    ) -> None:
        self.extension = extension
        self.settings = settings
        self.middleware = middleware
        self.store_url = settings.store_url or _default_store_url(app)
        self.instance_path = app.instance_path
        self.tracker_options = dict(tracker_options)
        self.worker_pid: int | None = None
        #: The page-load hook when ``MSCLKID_UET_PAGE_LOADS`` is ``landing`` or ``html``.
        self.page_loads: _PageLoads | None = None
        self._tracker: ConversionTracker | None = None
        self._lock = threading.Lock()

    @property
    def tracker(self) -> ConversionTracker:
        """The app's :class:`~msclkid_middleware.dispatch.tracker.ConversionTracker` (built on first use)."""
        tracker = self._tracker
        if tracker is not None:
            return tracker
        with self._lock:
            if self._tracker is None:
                from msclkid_middleware.dispatch.tracker import ConversionTracker

                if self.store_url.startswith("sqlite:") and self.settings.store_url is None:
                    os.makedirs(self.instance_path, exist_ok=True)
                self._tracker = ConversionTracker(
                    settings=self.settings, store_url=self.store_url, **self.tracker_options
                )
            return self._tracker

    def start_worker(self) -> None:
        """Start the tracker's background thread in this process (idempotent; again after ``fork``)."""
        pid = os.getpid()
        if self.worker_pid == pid:
            return
        with self._lock:
            if self.worker_pid == pid:
                return
            self.worker_pid = pid
        self.tracker.start()

    def close(self) -> None:
        """Stop the worker and close the tracker (tests; an app shutting down)."""
        with self._lock:
            tracker, self._tracker = self._tracker, None
            self.worker_pid = None
        if self.page_loads is not None:
            self.page_loads.close()
        if tracker is not None:
            tracker.close()


class Msclkid:
    """The Flask extension.  ``Msclkid(app)``, or ``msclkid = Msclkid()`` then ``msclkid.init_app(app)``.

    ``middleware_options`` are :class:`MsclkidMiddleware` keywords that have no config key on purpose
    (``allow_insecure_cookie=True`` for local plain-http development, ``consent=ConsentPolicy(...)``
    with a resolver, ``visitor_id`` + ``profile_store``, ``capture_path=None``); they win over config.
    ``tracker_options`` are :class:`ConversionTracker` keywords (``poll_interval``, ``on_error``, ...).
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        tracker_options: Mapping[str, Any] | None = None,
        **middleware_options: Any,
    ) -> None:
        self.middleware_options = dict(middleware_options)
        self.tracker_options = dict(tracker_options or {})
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Set config defaults, validate the settings, wrap ``app.wsgi_app``, register hooks and the CLI."""
        if EXTENSION_KEY in app.extensions:
            raise ConfigError("Msclkid is already initialised on this app", setting="app")
        for key, value in CONFIG_DEFAULTS.items():
            app.config.setdefault(key, value)
        keys = _secret_keys(app.config)
        if not keys and "secret_keys" not in self.middleware_options:
            raise ConfigError(
                "set SECRET_KEY (reused, with its own salt) or MSCLKID_SECRET_KEYS to sign the click cookie",
                setting="MSCLKID_SECRET_KEYS",
            )
        settings = Settings.from_mapping(
            app.config,
            secret_keys=tuple(as_text(k) for k in keys),
            store_url=app.config.get("MSCLKID_STORE_URL") or None,
        )
        options: dict[str, Any] = {"secret_keys": keys, **self.middleware_options}
        page_loads: _PageLoads | None = None
        if settings.uet_page_loads != "off" and "on_page_view" not in options:
            if not settings.uet_tag_id:
                raise ConfigError(
                    "MSCLKID_UET_PAGE_LOADS needs UET_TAG_ID (and UET_API_TOKEN) to send page loads",
                    setting="MSCLKID_UET_PAGE_LOADS",
                )
            page_loads = _PageLoads(settings.uet_page_loads)
            options["on_page_view"] = page_loads
        middleware = MsclkidMiddleware.from_settings(app.wsgi_app, settings, **options)
        app.wsgi_app = middleware  # type: ignore[method-assign]
        state = MsclkidState(self, app, settings, middleware, self.tracker_options)
        if page_loads is not None:
            page_loads.state = state
            state.page_loads = page_loads
        app.extensions[EXTENSION_KEY] = state
        app.jinja_env.globals.setdefault("msclkid_snippet", msclkid_snippet)
        app.jinja_env.globals.setdefault("msclkid_page_tags", msclkid_page_tags)
        app.jinja_env.globals.setdefault("current_click", current_click)
        app.jinja_env.globals.setdefault("current_consent", current_consent)
        if settings.worker == "thread":
            # Started by the first request, in the process that serves it: never in the reloader's
            # watching parent (it serves nothing) nor in a pre-fork master (the pid check re-starts it
            # in each worker process).
            app.before_request(_start_worker_hook)
        if "msclkid" not in app.cli.commands:
            app.cli.add_command(cli_group, "msclkid")

    # -- access from views ------------------------------------------------------------------------
    @staticmethod
    def state(app: Flask | None = None) -> MsclkidState:
        """The extension state of ``app`` (default: the current app)."""
        target = app if app is not None else current_app
        state = target.extensions.get(EXTENSION_KEY)
        if not isinstance(state, MsclkidState):
            raise ConfigError("Msclkid is not initialised on this app: call Msclkid(app) or init_app(app)")
        return state

    @property
    def tracker(self) -> ConversionTracker:
        """The current app's tracker: ``msclkid.tracker.record_offline(...)`` in a view."""
        return self.state().tracker

    def start_worker(self, app: Flask | None = None) -> None:
        """Start the background delivery thread now (``MSCLKID_WORKER="thread"`` does it on first request)."""
        self.state(app).start_worker()

    def close(self, app: Flask | None = None) -> None:
        """Stop the worker thread and close the app's tracker."""
        self.state(app).close()


class _PageLoads:
    """The middleware's ``on_page_view`` for ``MSCLKID_UET_PAGE_LOADS``: a :class:`PageLoadRecorder` built on
    the first page view, so an app that serves no page opens no outbox (the tracker is lazy too)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.state: MsclkidState | None = None
        self._recorder: PageLoadRecorder | None = None
        self._lock = threading.Lock()

    def recorder(self) -> PageLoadRecorder | None:
        recorder = self._recorder
        if recorder is None and self.state is not None:
            from msclkid_middleware.dispatch.page_loads import PageLoadRecorder

            with self._lock:
                if self._recorder is None:
                    self._recorder = PageLoadRecorder.for_mode(self.state.tracker, self.mode)
                recorder = self._recorder
        return recorder

    def __call__(self, view: PageView) -> None:
        recorder = self.recorder()
        if recorder is not None:
            recorder(view)

    def close(self) -> None:
        with self._lock:
            recorder, self._recorder = self._recorder, None
        if recorder is not None:
            recorder.close()


def _start_worker_hook() -> None:
    state = current_app.extensions.get(EXTENSION_KEY)
    if isinstance(state, MsclkidState) and state.worker_pid != os.getpid():
        try:
            state.start_worker()
        except Exception:
            # Delivery trouble must never cost the visitor their page: log, and try again next request.
            state.worker_pid = None
            logger.warning("could not start the msclkid delivery thread; retrying on the next request", exc_info=True)


def current_click() -> Click | None:
    """The request's Microsoft Ads click (``get_click(request.environ)``); ``None`` outside a request."""
    if not has_request_context():
        return None
    return get_click(request.environ)


def current_consent() -> Consent | None:
    """The request's consent decision (``get_consent(request.environ)``); ``None`` outside a request."""
    if not has_request_context():
        return None
    return get_consent(request.environ)


def _csp_nonce() -> str | None:
    # flask-talisman puts its nonce on the request; many apps keep their own in g.csp_nonce.
    for holder in (g, request):
        nonce = getattr(holder, "csp_nonce", None)
        if isinstance(nonce, str) and nonce:
            return nonce
    return None


def msclkid_snippet(consent: str | None = None, *, nonce: str | None = None, queue: bool = False) -> Markup:
    """The ``<script>`` include of the browser snippet (Jinja global ``msclkid_snippet()``).

    ``consent`` becomes ``data-consent`` (``granted``, ``denied`` or ``pending``; omitted: the server's
    policy decides).  The CSP nonce is ``nonce`` or the request's (``g.csp_nonce``, flask-talisman's
    ``request.csp_nonce``).  ``queue=True`` adds the one-line pre-load queue inline (with the nonce), for
    pages that call ``msclkid(...)`` before the snippet has loaded.
    """
    state = Msclkid.state()
    middleware = state.middleware
    if middleware.snippet_path is None:
        return Markup("")
    if consent is not None and consent not in ("granted", "denied", "pending"):
        raise ConfigError("msclkid_snippet(consent=...) must be 'granted', 'denied' or 'pending'", setting="consent")
    root = request.script_root if has_request_context() else ""
    nonce = nonce if nonce is not None else (_csp_nonce() if has_request_context() else None)
    nonce_attr = f' nonce="{escape(nonce)}"' if nonce else ""
    attrs = f' src="{escape(root + middleware.snippet_path)}"'
    if consent is not None:
        attrs += f' data-consent="{consent}"'
    if middleware.capture_path is not None and (root or middleware.capture_path != "/_msclkid"):
        attrs += f' data-endpoint="{escape(root + middleware.capture_path)}"'
    tag = f"<script{attrs} async{nonce_attr}></script>"
    if queue:
        stub = "window.msclkid=window.msclkid||function(){(msclkid.q=msclkid.q||[]).push(arguments)};"
        tag = f"<script{nonce_attr}>{stub}</script>\n{tag}"
    return Markup(tag)  # noqa: S704 - built from escaped values and our own constants only


def msclkid_page_tags(
    title: str | None = None,
    *,
    external_id: str | None = None,
    nonce: str | None = None,
    pixel_url: str | None = None,
) -> Markup:
    """The ``<head>`` tags of server-side UET (Jinja global ``msclkid_page_tags()``), before ``msclkid_snippet()``.

    The page-load ID ``<meta>`` the snippet reads (so browser events reference the server's ``pageLoad``) and,
    with consent and a customer ID (``MSADS_CUSTOMER_ID``), the ID-sync pixel script; ``title`` becomes the
    server event's ``pageTitle``.  Empty outside a request.  See ``docs/uet.md``.
    """
    if not has_request_context():
        return Markup("")

    state = Msclkid.state()
    middleware = state.middleware
    options: dict[str, Any] = {}
    if middleware.sync_script_path is not None:
        options["script_src"] = request.script_root + middleware.sync_script_path
    tags = render_page_tags(
        request.environ,
        customer_id=state.settings.customer_id,
        title=title,
        external_id=external_id,
        pixel_url=pixel_url,
        nonce=nonce if nonce is not None else _csp_nonce(),
        **options,
    )
    return Markup(str(tags))  # noqa: S704 - render_page_tags escapes every value it inserts


class _FlaskCommandGroup(_LazyGroup):
    """``flask msclkid``: the ``msclkid`` commands, run inside the app context with the app's config."""

    def invoke(self, ctx: click.Context) -> Any:
        # Only reached with a sub-command (without one, click shows the group's help while parsing).
        app = ctx.ensure_object(ScriptInfo).load_app()
        with app.app_context():
            environ = app_environ(app)
            if environ["MSCLKID_STORE_URL"] == _default_store_url(app):
                os.makedirs(app.instance_path, exist_ok=True)
            ctx.meta[ENVIRON_META_KEY] = environ
            return super().invoke(ctx)


#: The ``flask msclkid`` group (entry point ``flask.commands``; also added to ``app.cli`` by ``init_app``).
cli_group = _FlaskCommandGroup(
    name="msclkid",
    help="Microsoft Advertising conversion tracking (the msclkid commands, with this app's config).",
    context_settings={"help_option_names": ["-h", "--help"]},
)
