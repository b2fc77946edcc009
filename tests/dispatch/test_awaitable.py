"""``await tracker.arecord_*``: the durable write runs in a worker thread while the event loop goes on."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import threading
import time
from collections.abc import Coroutine
from datetime import timedelta
from typing import Any, TypeVar

import pytest

from msclkid_middleware.capture.clickid import Click
from msclkid_middleware.dispatch.tracker import ConversionTracker
from msclkid_middleware.errors import UnknownEvent
from msclkid_middleware.testing import EmulatorHandle
from tests.outbox.conftest import FakeClock, click_id

T = TypeVar("T")
REQUEST_TAG: contextvars.ContextVar[str] = contextvars.ContextVar("request_tag", default="none")


def run_in_own_loop(coroutine: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` in a thread of its own: a session fixture (Playwright's sync API) may hold a running loop in
    the main thread, and a shop's async handler runs on a loop of its own anyway."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result(timeout=60)


class SlowStore:
    """The tracker's own store, with a slow commit, noting the thread and context each enqueue ran in."""

    def __init__(self, inner: Any, delay: float) -> None:
        self.inner = inner
        self.delay = delay
        self.calls: list[tuple[int, str]] = []

    def enqueue(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append((threading.get_ident(), REQUEST_TAG.get()))
        time.sleep(self.delay)
        return self.inner.enqueue(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_every_awaitable_call_records_and_delivers(
    tracker: ConversionTracker, ms: EmulatorHandle, clock: FakeClock
) -> None:
    click = Click(click_id(1), clock() - timedelta(hours=2))
    ms.add_click(click.msclkid, click.captured_at)

    async def checkout() -> None:
        first = await tracker.arecord_offline(
            event_id="ord_1",
            conversion_name="Purchase",
            conversion_time=clock() - timedelta(minutes=5),
            value=20.0,
            currency="USD",
            click=click,
        )
        assert (first.state, first.created) == ("pending", True)
        again = await tracker.arecord_offline(
            event_id="ord_1", conversion_name="Purchase", conversion_time=clock() - timedelta(minutes=5), click=click
        )
        assert again.created is False
        await tracker.arecord_uet_event(
            event_id="evt_1", event_name="checkout_complete", event_time=clock() - timedelta(minutes=1), click=click
        )
        await tracker.aadjust_online("T-1", "Purchase", "Restate", value=5.0, currency="USD")
        report = await tracker.aflush()
        assert report.delivered == 3
        await tracker.arestate("ord_1", value=15.0)
        await tracker.aretract("ord_1")
        assert (await tracker.aflush()).delivered == 2
        assert (await tracker.astatus("ord_1")).state == "delivered"
        with pytest.raises(UnknownEvent):
            await tracker.astatus("nope")

    run_in_own_loop(checkout())
    assert [i.payload["ConversionName"] for i in ms.received("offline")] == ["Purchase"]
    kinds = sorted(i.payload["AdjustmentType"] for i in ms.received("offline_adjustments"))
    assert kinds == ["Restate", "Retract"]
    assert len(ms.received("uet")) == 1
    assert len(ms.received("online_adjustments")) == 1


def test_the_loop_keeps_running_while_the_write_commits(tracker: ConversionTracker, clock: FakeClock) -> None:
    slow = SlowStore(tracker.store, delay=0.3)
    tracker.store = slow  # type: ignore[assignment]
    ticks: list[float] = []

    async def heartbeat(stop: asyncio.Event) -> None:
        while not stop.is_set():
            ticks.append(time.monotonic())
            await asyncio.sleep(0.01)

    async def handler() -> tuple[int, str]:
        stop = asyncio.Event()
        beat = asyncio.create_task(heartbeat(stop))
        await asyncio.sleep(0.02)
        REQUEST_TAG.set("request-42")
        started = time.monotonic()
        status = await tracker.arecord_offline(
            event_id="ord_9",
            conversion_name="Purchase",
            conversion_time=clock() - timedelta(minutes=5),
            click=click_id(9),
        )
        during = [t for t in ticks if t >= started]
        stop.set()
        await beat
        assert status.created
        return len(during), threading.get_ident().__str__()

    beats_during_write, loop_thread = run_in_own_loop(handler())
    # A blocking write would have frozen the heartbeat for the whole 0.3 s; it went on beating.
    assert beats_during_write >= 10
    ((write_thread, tag),) = slow.calls
    assert str(write_thread) != loop_thread
    # The caller's context (where adapters keep the request's consent) travels into the worker thread.
    assert tag == "request-42"
    assert tracker.status("ord_9").state == "pending"
