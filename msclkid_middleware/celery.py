"""Deliver the outbox from the shop's own Celery workers (the optional ``[celery]`` extra).

::

    from celery import Celery
    from msclkid_middleware.celery import beat_schedule, register_tasks

    app = Celery("shop", broker="redis://127.0.0.1:6379/0")
    drain_outbox = register_tasks(app)  # ConversionTracker.from_env(), once per worker process
    app.conf.beat_schedule = {**app.conf.beat_schedule, **beat_schedule(every=10)}

Each run of the task is one bounded drain (``ConversionTracker.flush(timeout)``): the same claims, leases,
fenced acknowledgements and idempotency keys as ``msclkid worker``, so any number of drains may run at once
in any number of worker processes and no event is sent twice.  Nothing else in the package imports this
module (or Celery).  See ``docs/celery.md``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from celery.signals import worker_process_shutdown, worker_shutdown

from msclkid_middleware.dispatch.tracker import ConversionTracker
from msclkid_middleware.errors import MsclkidError

__all__ = ["BEAT_ENTRY", "DRAIN_TASK", "DrainFailed", "TrackerFactory", "beat_schedule", "register_tasks"]

logger = logging.getLogger("msclkid_middleware.celery")

#: The drain task's default name (``register_tasks(name=...)`` to change it).
DRAIN_TASK = "msclkid_middleware.drain_outbox"
#: The default key of the entry :func:`beat_schedule` returns.
BEAT_ENTRY = "msclkid-drain-outbox"
#: Builds the worker process's tracker; called once per process, on its first drain (after the fork).
TrackerFactory = Callable[[], ConversionTracker]

#: Safe for at-least-once delivery: the message is acknowledged after the drain (a worker lost mid-drain
#: leaves rows to their lease, the next drain takes them); no Celery retries (a failed drain changes nothing
#: that the next scheduled run would not redo).  Any of these can be overridden through ``register_tasks``.
_TASK_DEFAULTS: dict[str, Any] = {
    "acks_late": True,
    "reject_on_worker_lost": False,
    "max_retries": 0,
    "autoretry_for": (),
}


class DrainFailed(MsclkidError):
    """A drain could not run (store unreachable, configuration missing ...).

    The message names the cause with every configured secret masked; the original exception is not
    chained, so neither the task result nor Celery's log of the failure carries it.
    """


class _PerProcess:
    """One tracker per worker process: built on the first drain in that process, closed at its shutdown."""

    def __init__(self, factory: TrackerFactory) -> None:
        self._factory = factory
        self._lock = threading.Lock()
        self._tracker: ConversionTracker | None = None
        self._pid = 0

    def get(self) -> ConversionTracker:
        with self._lock:
            if self._tracker is None or self._pid != os.getpid():
                # A tracker inherited through fork belongs to the parent: leave it alone, build our own.
                self._tracker = self._factory()
                self._pid = os.getpid()
                logger.addFilter(self._tracker.redactor)
            return self._tracker

    def close(self, *args: Any, **kwargs: Any) -> None:
        """Connected to ``worker_process_shutdown`` (prefork children) and ``worker_shutdown`` (solo pool)."""
        with self._lock:
            tracker, self._tracker = self._tracker, None
            if tracker is None or self._pid != os.getpid():
                return
        logger.removeFilter(tracker.redactor)
        try:
            tracker.close()
        except Exception as exc:  # shutting down: never raise into Celery
            logger.warning("closing the outbox tracker failed: %s", type(exc).__name__)


def register_tasks(
    app: Any,
    *,
    tracker_factory: TrackerFactory | None = None,
    timeout: float = 25.0,
    name: str = DRAIN_TASK,
    **task_options: Any,
) -> Any:
    """Register the outbox drain task on the Celery ``app`` and return it.

    - ``tracker_factory``: builds this worker process's ``ConversionTracker`` (default
      ``ConversionTracker.from_env``: ``MSCLKID_*`` / ``MSADS_*`` / ``UET_*`` from the environment).  It is
      called once per worker process, on the first drain there, so after the prefork pool's fork.
    - ``timeout``: seconds after which a drain stops claiming new batches (the request in flight finishes
      and is recorded); a call may pass ``timeout=`` to shorten or lengthen one run.
    - ``task_options``: Celery task options (``ignore_result``, ``rate_limit``, ``time_limit`` ...); they override
      the defaults (``acks_late=True``, ``reject_on_worker_lost=False``, no retries).

    The task returns the drain's counts (``delivered``, ``rejected``, ``retried``, ``remaining`` ...,
    ``timed_out``) and ``worker``, the lease owner (``host:pid:id``) of the process that ran it.
    """
    if timeout <= 0:
        raise ValueError("timeout must be positive (seconds)")
    holder = _PerProcess(tracker_factory or ConversionTracker.from_env)
    worker_process_shutdown.connect(holder.close, weak=False)
    worker_shutdown.connect(holder.close, weak=False)
    default_timeout = float(timeout)

    def drain_outbox(timeout: float | None = None) -> dict[str, Any]:
        """Deliver what is due in the msclkid outbox (one bounded drain)."""
        limit = default_timeout if timeout is None else float(timeout)
        try:
            tracker = holder.get()
        except Exception as exc:
            raise DrainFailed(_describe(exc, None)) from None
        try:
            report = tracker.flush(limit)
        except Exception as exc:
            raise DrainFailed(_describe(exc, tracker)) from None
        if report.claimed:
            logger.info("outbox drain: %s", report.summary())
        return {**dataclasses.asdict(report), "worker": tracker.dispatcher.owner}

    # shared=False: the task belongs to this app only (a shared task would be added to every app made later).
    options = {**_TASK_DEFAULTS, **task_options, "name": name, "shared": False}
    return app.task(**options)(drain_outbox)


def beat_schedule(
    every: float | timedelta = 10.0,
    *,
    task: str = DRAIN_TASK,
    key: str = BEAT_ENTRY,
    timeout: float | None = None,
    queue: str | None = None,
) -> dict[str, dict[str, Any]]:
    """A ``beat_schedule`` entry running the drain every ``every`` seconds; merge it into ``app.conf.beat_schedule``.

    A drain still waiting in the queue after one period expires unrun (the next one is already on its way), so
    a stopped worker does not come back to a pile of drains.  ``timeout`` is passed to each run; ``queue``
    routes the drain to the workers that should deliver.
    """
    seconds = every.total_seconds() if isinstance(every, timedelta) else float(every)
    if seconds <= 0:
        raise ValueError("every must be positive (seconds)")
    options: dict[str, Any] = {"expires": seconds}
    if queue is not None:
        options["queue"] = queue
    entry: dict[str, Any] = {"task": task, "schedule": timedelta(seconds=seconds), "options": options}
    if timeout is not None:
        entry["kwargs"] = {"timeout": float(timeout)}
    return {key: entry}


def _describe(exc: Exception, tracker: ConversionTracker | None) -> str:
    """The failure, safe to show: secrets masked by the tracker's redactor; without a tracker (it could not be
    built), only the toolkit's own error messages, which never contain secret values."""
    if tracker is not None:
        text = f"{type(exc).__name__}: {tracker.redactor.redact(str(exc))}"
    elif isinstance(exc, MsclkidError):
        text = f"{type(exc).__name__}: {exc}"
    else:
        text = f"{type(exc).__name__} while building the outbox tracker (details not shown: they may hold secrets)"
    logger.error("outbox drain failed: %s", text)
    return text
