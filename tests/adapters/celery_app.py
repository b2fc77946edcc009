"""The Celery app of the Celery adapter's tests (``celery -A tests.adapters.celery_app worker``).

Broker and result backend are the local Redis in its own database number (``MSCLKID_TEST_CELERY_URL``,
default DB 15), every key under a per-run prefix and every task on a per-run queue, so parallel test runs
never see each other's messages.  The tracker comes from the environment, as in a shop.
"""

from __future__ import annotations

import os

from celery import Celery

from msclkid_middleware.celery import beat_schedule, register_tasks
from msclkid_middleware.dispatch.tracker import ConversionTracker

URL = os.environ.get("MSCLKID_TEST_CELERY_URL", "redis://127.0.0.1:6379/15")
PREFIX = os.environ.get("MSCLKID_TEST_CELERY_PREFIX", "msclkid-test:")
QUEUE = os.environ.get("MSCLKID_TEST_CELERY_QUEUE", "msclkid-test")


def make_app(url: str = URL, prefix: str = PREFIX, queue: str = QUEUE) -> Celery:
    """The workers' app; the tests build a client with the same settings for their run's prefix and queue."""
    app = Celery("msclkid_test", broker=url, backend=url)
    app.conf.update(
        task_default_queue=queue,
        broker_transport_options={"global_keyprefix": prefix},
        result_backend_transport_options={"global_keyprefix": prefix},
        broker_connection_retry_on_startup=True,
        # One message per free process: the drains spread over every worker process.
        worker_prefetch_multiplier=1,
        # Remote control uses broadcast channels the key prefix does not cover: off, so runs stay apart.
        worker_enable_remote_control=False,
        result_expires=600,
    )
    return app


app = make_app()


def tracker() -> ConversionTracker:
    # Small batches: a drain takes several claims, so concurrent drains interleave on the same rows.
    return ConversionTracker.from_env(batch_size=int(os.environ.get("MSCLKID_TEST_CELERY_BATCH", "1000")))


drain_outbox = register_tasks(app, tracker_factory=tracker, timeout=20.0)

if os.environ.get("MSCLKID_TEST_CELERY_BEAT"):
    app.conf.beat_schedule = beat_schedule(every=float(os.environ["MSCLKID_TEST_CELERY_BEAT"]))
