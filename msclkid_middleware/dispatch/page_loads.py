"""Server-side UET page loads: connect ``MsclkidMiddleware(on_page_view=...)`` to the tracker.

The middleware imports no outbox; this module is the bridge (``docs/uet.md``)::

    tracker = ConversionTracker.from_env()
    recorder = PageLoadRecorder(tracker, mode="html")     # or PageLoadRecorder.for_mode(tracker, "landing")
    application = MsclkidMiddleware(app, secret_keys=[...], on_page_view=recorder)

The hook runs when the server closes the response, after the body was sent; it only puts the
:class:`~msclkid_middleware.capture.pageview.PageView` on an in-memory queue.  A thread of this recorder
turns each view into ``tracker.record_uet_event(event_type="pageLoad", ...)`` (one outbox row; the
tracker's worker delivers it), so neither the response nor the server thread waits on the database
or the network.  A full queue makes the hook record in the calling thread instead of dropping.

Modes: ``"html"`` records every page view; ``"landing"`` only ad landings (a valid ``msclkid`` in
the URL); ``"off"`` (``for_mode`` only) records nothing.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any, Literal

from msclkid_middleware.capture.pageview import PageView
from msclkid_middleware.errors import ConfigError, ValidationError

if TYPE_CHECKING:  # pragma: no cover
    from msclkid_middleware.dispatch.tracker import ConversionTracker

__all__ = [
    "DEFAULT_PIXEL_URL",
    "PageLoadMode",
    "PageLoadRecorder",
    "page_load_event_id",
]

logger = logging.getLogger("msclkid_middleware.dispatch.page_loads")

PageLoadMode = Literal["landing", "html"]
_MODES = ("off", "landing", "html")
#: Microsoft's ID-sync pixel (reference: UET CAPI guide, "client-side ID sync").
DEFAULT_PIXEL_URL = "https://c.bing.com/c.gif"
_STOP: Any = object()


def page_load_event_id(page_load_id: str) -> str:
    """The UET ``eventId`` of a page view's ``pageLoad`` event: derived from its page-load ID, so a retry or a
    second recorder for the same view is the same event (the outbox keeps one)."""
    return f"pl-{page_load_id}"


class PageLoadRecorder:
    """The ``on_page_view`` hook that records UET ``pageLoad`` events through a :class:`ConversionTracker`.

    - ``mode``: ``"html"`` (every HTML page view) or ``"landing"`` (page views whose URL carried a click ID).
    - Consent: the page view's snapshot becomes ``adStorageConsent``; the click (only with consent) goes on
      every event.  ``userData.anonymousId`` is the visitor's anonymous ID; a visitor who refused has none, so
      the event carries a *transient* one (random, used for this event only, never stored or reused) because
      UET CAPI needs one identifier per event; the client IP is left out for such visitors too.
    - ``max_queue``: views waiting for the recording thread; beyond it the hook records in the caller.
    - ``linger``: seconds the thread waits after a view arrives before writing (it then writes all that came):
      the server finishes sending the response without competing with the write for the GIL.
    """

    def __init__(
        self,
        tracker: ConversionTracker,
        *,
        mode: PageLoadMode = "html",
        max_queue: int = 10_000,
        linger: float = 0.05,
        transient_id_when_denied: bool = True,
    ) -> None:
        if mode not in ("landing", "html"):
            raise ConfigError("PageLoadRecorder mode must be 'landing' or 'html'", setting="MSCLKID_UET_PAGE_LOADS")
        if isinstance(max_queue, bool) or not isinstance(max_queue, int) or max_queue < 1:
            raise ConfigError("max_queue must be a positive whole number", setting="max_queue")
        if not getattr(tracker, "uet_tag_id", None):
            raise ConfigError(
                "server-side UET page loads need UET_TAG_ID (the tracker's uet_tag_id)", setting="UET_TAG_ID"
            )
        self.tracker = tracker
        self.mode: PageLoadMode = mode
        self.max_queue = max_queue
        if isinstance(linger, bool) or not isinstance(linger, int | float) or not 0 <= linger <= 5:
            raise ConfigError("linger must be between 0 and 5 seconds", setting="linger")
        self.linger = float(linger)
        self.transient_id_when_denied = transient_id_when_denied
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._pending = 0
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_queue)
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._closed = False
        self._atexit = False
        #: Views recorded, skipped by mode, and failed (logged), for this process.
        self.counts: dict[str, int] = {"recorded": 0, "skipped": 0, "failed": 0, "inline": 0}

    @classmethod
    def for_mode(cls, tracker: ConversionTracker, mode: str, **options: Any) -> PageLoadRecorder | None:
        """The recorder for a configuration value (``MSCLKID_UET_PAGE_LOADS``): ``None`` for ``"off"``."""
        value = (mode or "off").strip().lower() if isinstance(mode, str) else mode
        if value not in _MODES:
            raise ConfigError(
                f"MSCLKID_UET_PAGE_LOADS must be one of {', '.join(_MODES)}", setting="MSCLKID_UET_PAGE_LOADS"
            )
        if value == "off":
            return None
        return cls(tracker, mode="landing" if value == "landing" else "html", **options)

    def __repr__(self) -> str:
        return f"PageLoadRecorder(mode={self.mode!r}, pending={self._pending})"

    # -- the hook -----------------------------------------------------------------------------------
    def __call__(self, view: PageView) -> None:
        """Queue one page view; called by the middleware once the response was sent.  Never raises."""
        try:
            if not self.wants(view):
                self._count("skipped")
                return
            self._check_fork()
            with self._lock:
                if self._closed:
                    inline = True
                else:
                    inline = False
                    self._pending += 1
                    if self._thread is None:
                        self._start()
            if not inline:
                try:
                    self._queue.put_nowait(view)
                    return
                except queue.Full:
                    self._done()
            # Back-pressure rather than loss: the database is slower than the site right now.
            self._count("inline")
            self.record(view)
        except Exception:
            logger.warning("could not queue a page view", exc_info=True)

    def wants(self, view: PageView) -> bool:
        return self.mode == "html" or view.landing

    def record(self, view: PageView) -> None:
        """Record ``view`` as a UET ``pageLoad`` event now, in this thread.  Never raises (failures are logged)."""
        fields = self._fields(view)
        try:
            try:
                self.tracker.record_uet_event(**fields)
            except ValidationError as exc:
                # A header the browser sent (referrer, user agent, address) did not pass the model's checks:
                # the page load still counts, without the optional fields.
                logger.info("page load recorded without optional fields (%s)", exc.field)
                for name in ("referrer_url", "page_title", "client_ip_address", "client_user_agent"):
                    fields.pop(name, None)
                self.tracker.record_uet_event(**fields)
            self._count("recorded")
        except Exception:
            self._count("failed")
            logger.warning("could not record a UET page load", exc_info=True)

    def _count(self, name: str) -> None:
        with self._lock:  # the hook (request threads) and the recording thread both count
            self.counts[name] += 1

    def _fields(self, view: PageView) -> dict[str, Any]:
        granted = view.consent.granted
        anonymous_id = view.anonymous_id
        if anonymous_id is None and self.transient_id_when_denied and not granted:
            anonymous_id = uuid.uuid4().hex
        fields: dict[str, Any] = {
            "event_id": page_load_event_id(view.page_load_id),
            "event_name": None,
            "event_time": view.time,
            "event_type": "pageLoad",
            "click": view.click,
            "anonymous_id": anonymous_id,
            "event_source_url": view.url,
            "page_load_id": view.page_load_id,
            "consent": view.consent,
        }
        optional = {
            "referrer_url": view.referrer,
            "page_title": view.title,
            "client_user_agent": view.user_agent,
            "client_ip_address": view.client_ip if granted else None,
        }
        fields.update({k: v for k, v in optional.items() if v is not None})
        return fields

    # -- the recording thread -----------------------------------------------------------------------
    def _start(self) -> None:
        # Under self._lock.
        self._thread = threading.Thread(target=self._run, name="msclkid-uet-page-loads", daemon=True)
        self._thread.start()
        if not self._atexit:
            # Queued views are recorded (into the durable outbox) before the interpreter exits.
            atexit.register(self.close, 5.0)
            self._atexit = True

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            if self.linger and batch[0] is not _STOP:
                # The hook ran in close(); many servers (werkzeug among them) flush the response right after.
                # Starting the outbox write now would take the GIL from that thread: wait, sleeping, and take
                # whatever else arrived meanwhile in one go.
                time.sleep(self.linger)
            while len(batch) < 1000:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            for view in batch:
                if view is _STOP:
                    continue
                try:
                    self.record(view)
                finally:
                    self._done()
                time.sleep(0)  # hand the GIL to a request thread between writes instead of at the switch interval
            if _STOP in batch:
                return

    def _done(self) -> None:
        with self._lock:
            self._pending -= 1
            if self._pending <= 0:
                self._idle.notify_all()

    def _check_fork(self) -> None:
        if os.getpid() == self._pid:
            return
        with self._lock:
            if os.getpid() != self._pid:
                # The parent's thread does not exist in a forked child; its queue's views belong to the parent.
                self._pid = os.getpid()
                self._queue = queue.Queue(maxsize=self.max_queue)
                self._thread = None
                self._pending = 0

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Wait until every queued page view is recorded in the outbox; True when none is left."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while self._pending > 0:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._idle.wait(remaining)
            return True

    def close(self, timeout: float | None = 10.0) -> bool:
        """Record what is queued and stop the thread (later views are recorded inline).  True when done."""
        with self._lock:
            self._closed = True
            thread, self._thread = self._thread, None
            if self._atexit:
                atexit.unregister(self.close)
                self._atexit = False
        if thread is None:
            return True
        self._queue.put(_STOP)
        thread.join(timeout)
        if thread.is_alive():
            return False
        # A view queued by a request thread just as the stop marker went in: record it here.
        while True:
            try:
                view = self._queue.get_nowait()
            except queue.Empty:
                return True
            if view is not _STOP:
                try:
                    self.record(view)
                finally:
                    self._done()
