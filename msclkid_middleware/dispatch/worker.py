"""Run the dispatcher continuously: a background thread in the web process, or ``msclkid worker``.

Both share one loop: step while there is work, otherwise sleep until the next row is due (at most
``poll_interval``), wake early when ``record_*`` enqueues.  Stopping is graceful: the loop stops
claiming, the request in progress is finished and recorded, and rows claimed but not yet sent are
released at once (their attempt refunded) instead of waiting for their lease to expire.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from types import FrameType
from typing import Any

from msclkid_middleware.dispatch.dispatcher import Dispatcher
from msclkid_middleware.dispatch.report import DispatchReport

__all__ = ["BackgroundWorker", "ErrorCallback", "run_until_signalled"]

logger = logging.getLogger("msclkid_middleware.dispatch.worker")

ErrorCallback = Callable[[BaseException], object]

_MAX_ERROR_BACKOFF = 60.0


class BackgroundWorker:
    """A daemon thread around :meth:`Dispatcher.step`.  Never raises into its owner.

    ``on_error`` is called with any exception a step raised (a store or network failure); an
    exception raised by ``on_error`` itself is logged and ignored.  After an error the loop backs
    off (1 s doubling to 60 s) so a broken database does not spin.
    """

    def __init__(
        self,
        dispatcher: Dispatcher,
        *,
        poll_interval: float = 1.0,
        on_error: ErrorCallback | None = None,
        maintenance_interval: float = 60.0,
        retention: timedelta | None = None,
        name: str = "msclkid-dispatch",
    ) -> None:
        # What it runs and what that did so far; then when it runs and what it does besides.
        self.dispatcher = dispatcher
        self.report = DispatchReport()
        self.name = name
        self.poll_interval = poll_interval
        self.maintenance_interval = maintenance_interval
        self.retention = retention
        self.on_error = on_error
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_maintenance = float("-inf")

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self.alive:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self.run, name=self.name, daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Ask the loop to look for work now (called after an enqueue)."""
        self._wake.set()

    def stop(self, timeout: float | None = None) -> bool:
        """Stop claiming, finish or release what is in flight; True when the thread has ended."""
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is None or thread is threading.current_thread():
            return True
        thread.join(timeout)
        return not thread.is_alive()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def request_stop(self) -> None:
        """Signal-handler safe: only sets events."""
        self._stop.set()
        self._wake.set()

    def run(self) -> DispatchReport:
        """The loop itself (the thread's target; ``msclkid worker`` calls it in the main thread)."""
        backoff = 1.0
        while not self._stop.is_set():
            try:
                report = self.dispatcher.step(should_stop=self._stop.is_set)
                self.report = self.report + report
                self._maybe_maintain()
            except Exception as exc:
                self._report_error(exc)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, _MAX_ERROR_BACKOFF)
                continue
            backoff = 1.0
            if report.claimed:
                continue
            self._wake.wait(self._idle_seconds())
            self._wake.clear()
        return self.report

    def _idle_seconds(self) -> float:
        try:
            due = self.dispatcher.store.next_due()
        except Exception as exc:
            self._report_error(exc)
            return self.poll_interval
        if due is None:
            return self.poll_interval
        wait = (due - self.dispatcher.clock()).total_seconds()
        return min(self.poll_interval, max(wait, 0.01))

    def _maybe_maintain(self) -> None:
        now = time.monotonic()
        if now - self._last_maintenance < self.maintenance_interval:
            return
        self._last_maintenance = now
        self.dispatcher.maintain(retention=self.retention)

    def _report_error(self, exc: BaseException) -> None:
        self.dispatcher.metrics.add("worker_errors", reason=type(exc).__name__)
        logger.error("dispatch step failed: %s", exc, exc_info=exc)
        if self.on_error is None:
            return
        try:
            self.on_error(exc)
        except Exception:
            logger.exception("the on_error callback raised; ignored")


def run_until_signalled(worker: BackgroundWorker) -> DispatchReport:
    """Run ``worker`` in this (main) thread until SIGTERM or SIGINT, then stop gracefully.

    A second signal while stopping is not escalated: the in-flight request is bounded by the
    client's timeout, and killing it would only leave rows to their lease.
    """
    previous: dict[signal.Signals, Any] = {}

    def handle(signum: int, frame: FrameType | None) -> None:
        logger.info("received signal %d: stopping after the current request", signum)
        worker.request_stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        previous[sig] = signal.signal(sig, handle)
    try:
        return worker.run()
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
