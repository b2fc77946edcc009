"""``await tracker.arecord_offline(...)``: the recording calls for async handlers.

A durable write is a blocking database commit (an fsync on SQLite, a round trip on PostgreSQL); on an
event loop it would stall every other request.  Each ``a…`` method runs its synchronous twin in a worker
thread (``asyncio.to_thread``), which copies the caller's context, so a request's consent decision set by
an adapter travels with it.  The signatures are the synchronous ones, so type checkers see the same
keywords.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

from msclkid_middleware.dispatch.recording import Recording

__all__ = ["AwaitableRecording"]

P = ParamSpec("P")
R = TypeVar("R")


def off_the_loop(method: Callable[P, R]) -> Callable[P, Coroutine[Any, Any, R]]:
    """An async method that runs ``method`` in a worker thread (one recipe for every ``a…`` call)."""

    async def run(*args: P.args, **kwargs: P.kwargs) -> R:
        return await asyncio.to_thread(method, *args, **kwargs)

    run.__name__ = "a" + method.__name__
    run.__qualname__ = method.__qualname__.rsplit(".", 1)[0] + ".a" + method.__name__
    run.__doc__ = f"Awaitable :meth:`{method.__name__}`: the same call, run off the event loop."
    return run


class AwaitableRecording(Recording):
    """The ``a…`` twins of the recording calls; ``ConversionTracker`` adds ``aflush`` and ``astatus``."""

    arecord_offline = off_the_loop(Recording.record_offline)
    arestate = off_the_loop(Recording.restate)
    aretract = off_the_loop(Recording.retract)
    aadjust_online = off_the_loop(Recording.adjust_online)
    arecord_uet_event = off_the_loop(Recording.record_uet_event)
