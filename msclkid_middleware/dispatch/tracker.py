"""``ConversionTracker``: the one object a shop talks to.  Record in the request, deliver later.

Every ``record_*`` (``recording.py``) validates, hashes, applies the consent snapshot, fixes the
idempotency key and commits one outbox row, then returns: it never waits on Microsoft.  Delivery is the
dispatcher's job, run by :meth:`ConversionTracker.flush`, the background thread (:meth:`start`) or
``msclkid worker``.  Guarantees and states are in ``docs/dispatch.md``.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, Literal

from msclkid_middleware.config import Settings
from msclkid_middleware.dispatch.awaitable import AwaitableRecording, off_the_loop
from msclkid_middleware.dispatch.clients import UET_TOKEN_PREFIX, Clients, build_clients
from msclkid_middleware.dispatch.dispatcher import Dispatcher, utcnow
from msclkid_middleware.dispatch.goal_ages import GoalRegistry
from msclkid_middleware.dispatch.protocols import CampaignClient, UetSender
from msclkid_middleware.dispatch.report import DispatchReport, Metrics
from msclkid_middleware.dispatch.status import EventStatus
from msclkid_middleware.dispatch.subject import offline_key
from msclkid_middleware.dispatch.worker import BackgroundWorker, ErrorCallback, run_until_signalled
from msclkid_middleware.errors import ClosedError, UnknownEvent
from msclkid_middleware.microsoft.retry import RetryPolicy
from msclkid_middleware.outbox import OutboxStore, open_store
from msclkid_middleware.outbox.sqlite import Durability
from msclkid_middleware.redact import RedactingFilter

__all__ = ["UET_TOKEN_PREFIX", "ConversionTracker", "EventStatus", "offline_key"]

logger = logging.getLogger("msclkid_middleware.dispatch.tracker")

#: Loggers that may see Microsoft's answers; the tracker masks its secrets (by value) on all of them.
_LOGGERS = (
    "msclkid_middleware.dispatch.tracker",
    "msclkid_middleware.dispatch.dispatcher",
    "msclkid_middleware.dispatch.outcomes",
    "msclkid_middleware.dispatch.worker",
    "msclkid_middleware.microsoft.campaign",
    "msclkid_middleware.microsoft.uet",
    "msclkid_middleware.microsoft.oauth",
)


class ConversionTracker(AwaitableRecording):
    """Record conversions durably and deliver them to Microsoft Advertising.

    Construction opens the store (``store`` or ``store_url``, default ``settings.effective_store_url``)
    and builds the clients; it starts no thread (call :meth:`start`).

    - ``microsoft``: ``None`` builds a ``CampaignManagementClient`` from ``settings`` when every
      ``MSADS_*`` credential is set (the refresh token then lives in this store, seeded from
      ``MSADS_REFRESH_TOKEN`` once); a client instance is used as it is; ``False`` disables
      Campaign Management delivery (rows are recorded and wait).
    - ``uet``: the same for a ``UetClient`` (``UET_TAG_ID`` / ``UET_API_TOKEN``); the tag ID comes
      from ``uet_tag_id`` or ``settings.uet_tag_id``.
    - ``goals``: known conversion goal names (default ``settings.conversion_goals``); when non-empty,
      other names raise :class:`~msclkid_middleware.errors.UnknownGoal` at record time.
    - ``clock``: returns an aware UTC ``datetime``; inject one in tests (nothing here sleeps on it).
    - ``on_error``: called with exceptions the background worker meets; never raises into you.
    """

    def __init__(
        self,
        *,
        store_url: str | None = None,
        store: OutboxStore | None = None,
        microsoft: CampaignClient | Literal[False] | None = None,
        uet: UetSender | Literal[False] | None = None,
        goals: Iterable[str] | None = None,
        settings: Settings | None = None,
        clock: Callable[[], datetime] | None = None,
        retry_policy: RetryPolicy | None = None,
        on_error: ErrorCallback | None = None,
        durability: Durability = "crash",
        max_pending: int = 1_000_000,
        retention: timedelta = timedelta(days=90),
        batch_size: int = 1000,
        lease_seconds: float = 300.0,
        poll_interval: float = 1.0,
        uet_tag_id: str | None = None,
        default_region: str | None = None,
    ) -> None:
        self.settings = settings if settings is not None else Settings()
        self.clock: Callable[[], datetime] = clock or utcnow
        self.goals: tuple[str, ...] = tuple(goals) if goals is not None else self.settings.conversion_goals
        self.retention = retention
        self.poll_interval = poll_interval
        self.default_region = default_region
        self.on_error = on_error
        self._store_options: dict[str, Any] = {"durability": durability, "max_pending": max_pending}
        self._owns_store = store is None
        self.store: OutboxStore = (
            store
            if store is not None
            else open_store(store_url or self.settings.effective_store_url, **self._store_options)
        )
        self._microsoft_arg = microsoft
        self._uet_arg = uet
        self._retry_policy = retry_policy
        self._batch_size = batch_size
        self._lease_seconds = lease_seconds
        self.uet_tag_id = uet_tag_id or self.settings.uet_tag_id
        self.metrics_registry = Metrics()
        #: Goal creation times (``msclkid goals create``): conversions for younger goals are held 2 hours.
        self.goal_registry = GoalRegistry(self.store)
        # Secrets are redacted by value in every record our loggers emit, including tokens that
        # rotate later (the token store teaches the filter each new one).
        self.redactor = RedactingFilter(self.settings.secrets())
        for name in _LOGGERS:
            logging.getLogger(name).addFilter(self.redactor)
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._closed = False
        self._started = False
        self._atexit_registered = False
        self._worker: BackgroundWorker | None = None
        try:
            self._build_dispatch()
        except BaseException:
            for name in _LOGGERS:
                logging.getLogger(name).removeFilter(self.redactor)
            if self._owns_store:
                self.store.close()
            raise

    # -- construction -----------------------------------------------------------------------------
    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **options: Any) -> ConversionTracker:
        """Everything from ``MSCLKID_*`` / ``MSADS_*`` / ``UET_*`` (``config.Settings.from_env``).

        ``options`` are this class's keyword arguments; ``None`` values are ignored.
        """
        options = {k: v for k, v in options.items() if v is not None}
        settings = options.pop("settings", None) or Settings.from_env(environ)
        return cls(settings=settings, **options)

    def _build_dispatch(self) -> None:
        self.clients: Clients = build_clients(
            self.settings, self.store, self.redactor, microsoft=self._microsoft_arg, uet=self._uet_arg
        )
        self.campaign = self.clients.campaign
        self.uet = self.clients.uet
        # The built-in client names its account; a custom one may, else the settings do.
        self.account = str(getattr(self.campaign, "account_id", None) or self.settings.account_id or "-")
        self.dispatcher = Dispatcher(
            self.store,
            campaign=self.campaign,
            uet=self.uet,
            retry_policy=self._retry_policy,
            clock=self.clock,
            batch_size=self._batch_size,
            lease_seconds=self._lease_seconds,
            metrics=self.metrics_registry,
            goal_ages=self.goal_registry,
        )

    def __repr__(self) -> str:
        return f"ConversionTracker(store={self.store.url!r}, kinds={self.dispatcher.kinds!r})"

    def __enter__(self) -> ConversionTracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- fork safety (PostHog's model) ------------------------------------------------------------
    def _before_record(self) -> None:
        if self._closed:
            raise ClosedError("tracker")
        self._check_fork()

    def _recorded(self) -> None:
        worker = self._worker
        if worker is not None:
            worker.wake()

    def _check_fork(self) -> None:
        """After ``fork()`` the parent's thread is gone and its HTTP sessions must not be shared."""
        if os.getpid() == self._pid:
            return
        with self._lock:
            if os.getpid() == self._pid:
                return
            self._pid = os.getpid()
            self._worker = None
            if self._microsoft_arg is None or self._uet_arg is None:
                self._build_dispatch()  # fresh clients (and sessions) for this process
            if self._started:
                self._start_worker()

    # -- delivery ---------------------------------------------------------------------------------
    def flush(
        self, timeout: float | None = 30.0, *, on_step: Callable[[DispatchReport], None] | None = None
    ) -> DispatchReport:
        """Deliver everything that is due now, in this thread; returns what happened.

        Rows waiting for a later retry stay pending (see ``report.remaining``).  ``timeout`` is
        measured with the tracker's clock.
        """
        if self._closed:
            raise ClosedError("tracker")
        self._check_fork()
        report = self.dispatcher.drain(timeout=timeout, on_step=on_step)
        self.dispatcher.maintain(retention=self.retention)
        return report

    aflush = off_the_loop(flush)

    def start(self) -> None:
        """Start the background delivery thread in this process (idempotent, fork-aware)."""
        self._check_fork()
        with self._lock:
            if not self._started and not self._atexit_registered:
                # At interpreter exit, finish the request in flight and release the rest instead of
                # leaving leases to expire (shutdown never raises).
                atexit.register(self.shutdown, 5.0)
                self._atexit_registered = True
            self._started = True
            self._start_worker()

    def _start_worker(self) -> None:
        if self._worker is not None and self._worker.alive:
            return
        self._worker = BackgroundWorker(
            self.dispatcher, poll_interval=self.poll_interval, on_error=self.on_error, retention=self.retention
        )
        self._worker.start()

    def shutdown(self, timeout: float | None = 10.0) -> bool:
        """Stop the background thread: it finishes the request in flight, records the outcome and
        releases rows it had not sent yet.  Returns True when the thread has ended."""
        with self._lock:
            self._started = False
            worker, self._worker = self._worker, None
        if worker is None:
            return True
        try:
            return worker.stop(timeout)
        except Exception:  # never raise into the caller (often an atexit hook)
            logger.exception("error while stopping the dispatch thread")
            return False

    def run_worker(self) -> DispatchReport:
        """Run the delivery loop in this thread until SIGTERM/SIGINT (``msclkid worker``)."""
        worker = BackgroundWorker(
            self.dispatcher, poll_interval=self.poll_interval, on_error=self.on_error, retention=self.retention
        )
        return run_until_signalled(worker)

    def close(self) -> None:
        """Stop the thread and close connections and HTTP sessions this tracker opened.

        Safe while other threads record or deliver: a write in progress finishes (and is kept), later
        ``record_*`` and ``flush`` calls raise :class:`~msclkid_middleware.errors.ClosedError`.  Idempotent.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self.shutdown()
        self.clients.close()
        if self._atexit_registered:
            atexit.unregister(self.shutdown)
            self._atexit_registered = False
        if self._owns_store:
            self.store.close()
        for name in _LOGGERS:
            logging.getLogger(name).removeFilter(self.redactor)

    # -- inspection -------------------------------------------------------------------------------
    def status(self, event_id: str) -> EventStatus:
        """The delivery status of an event (raises :class:`~msclkid_middleware.errors.UnknownEvent`)."""
        rows = self.store.find(event_id)
        if not rows:
            raise UnknownEvent(event_id)
        primary = next((r for r in rows if r.kind in ("offline", "uet")), rows[0])
        return self._status_of(primary, rows=rows)

    astatus = off_the_loop(status)

    def metrics(self) -> dict[str, int]:
        """Counters per outcome and reason (``delivered``, ``rejected.5604 ...``, ``suppressed.consent_denied``,
        ``store_errors.storage_full`` ...) for this process, plus the store's own counters."""
        counts = self.metrics_registry.snapshot()
        for name, value in self.store.metrics().items():
            counts[f"store.{name}"] = value
        return counts

    def retry_dead(self, *, include_rejected: bool = False, event_id: str | None = None) -> int:
        """Give dead (and optionally rejected) events another try; returns how many were requeued."""
        return self.store.retry_dead(now=self.clock(), include_rejected=include_rejected, event_id=event_id)

    def resume(self) -> int:
        """Resume every paused row now (after fixing credentials); returns how many."""
        return self.store.resume(now=self.clock())
