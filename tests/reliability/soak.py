"""The fault-soak harness: drive N events through the dispatcher against a faulty Microsoft, reconcile.

Used by ``test_fault_soak.py`` (fast size) and ``make soak`` (long size).  Nothing here sleeps on the
dispatcher's clock: a :class:`FakeClock` jumps to the next due row, so backoffs of minutes pass at once,
while the HTTP traffic (and its timeouts) is real.
"""

from __future__ import annotations

import json
import random
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import requests

from msclkid_middleware.dispatch.tracker import ConversionTracker
from msclkid_middleware.testing import EmulatorHandle

from .conftest import FakeClock, click_id

BATCH = 100
#: Connect fails fast on loopback; the read timeout is far above a normal 100-item Apply.
CONNECT_TIMEOUT = 0.3
READ_TIMEOUT = 1.0
#: A ``delay`` fault this long makes the client time out after Microsoft processed the request.
LOST_RESPONSE_DELAY = READ_TIMEOUT + 0.3


@dataclass
class SoakResult:
    """One table row plus the per-event facts the assertions need."""

    scenario: str
    events: int
    delivered: int = 0
    rejected: int = 0
    dead: int = 0
    lost: int = 0
    duplicates: int = 0
    double_counted: int = 0
    requests: int = 0
    #: Item sends whose answer the client never read (read timeouts).
    lost_responses: int = 0
    wall: float = 0.0
    reasons: Counter[str] = field(default_factory=Counter)

    def row(self) -> tuple[str, int, int, int, int, int, int, int, str]:
        return (
            self.scenario,
            self.events,
            self.delivered,
            self.rejected,
            self.dead,
            self.lost,
            self.duplicates,
            self.lost_responses,
            f"{self.wall:.1f} s",
        )


#: ``unanswered``: item sends whose answer was lost (read timeouts); only these can come back as duplicates.
HEADER = ("scenario", "events", "delivered", "rejected", "dead", "lost", "duplicates", "unanswered", "wall time")


def format_table(rows: list[tuple[Any, ...]]) -> str:
    table = [tuple(str(c) for c in HEADER), *(tuple(str(c) for c in r) for r in rows)]
    widths = [max(len(r[i]) for r in table) for i in range(len(HEADER))]
    lines = [
        "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
        for r in table
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


@contextmanager
def refused_url() -> Iterator[str]:
    """A loopback URL where nothing listens: every connect gets ECONNREFUSED."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    yield f"http://127.0.0.1:{port}"


@contextmanager
def blackhole_url() -> Iterator[str]:
    """A loopback URL whose accept queue is full: SYNs are dropped, so connects time out."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(3):
            filler = socket.socket()
            filler.setblocking(False)
            with suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
            fillers.append(filler)
        time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


Chaos = Callable[[int], str | None]


def url_chaos(good: str, bad: str, probability: float, seed: int = 0) -> Chaos:
    """Per dispatch step: the bad URL with ``probability`` (seeded), else the emulator."""
    rng = random.Random(seed)

    def choose(step: int) -> str:
        return bad if rng.random() < probability else good

    return choose


def _key(payload: Any) -> str:
    return json.dumps([payload.get("MicrosoftClickId"), payload["ConversionName"], payload["ConversionTime"]])


def run_soak(
    scenario: str,
    ms: EmulatorHandle,
    tracker: ConversionTracker,
    clock: FakeClock,
    events: int,
    *,
    chaos: Chaos | None = None,
) -> SoakResult:
    """Record ``events`` conversions, dispatch until nothing is open, reconcile with what Microsoft saw."""
    started = time.monotonic()
    campaign = tracker.campaign
    good_url = campaign.api_url
    campaign.timeout = (CONNECT_TIMEOUT, READ_TIMEOUT)
    timed_out = _watch_read_timeouts(campaign)
    recorded: dict[str, tuple[str, dict[str, Any]]] = {}
    conversion_time = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)
    for n in range(events):
        status = tracker.record_offline(
            event_id=f"ord_{n}",
            conversion_name="Purchase",
            conversion_time=conversion_time,
            value=10.0 + n % 100,
            currency="USD",
            click=click_id(n),
        )
        assert status.created
        assert status.state == "pending"
        row = tracker.store.find(f"ord_{n}")[0]
        recorded[status.event_id] = (status.idempotency_key, dict(row.payload))

    steps = 0
    max_steps = 50 * (events // BATCH + 1)
    while True:
        campaign.api_url = chaos(steps) if chaos is not None else good_url
        report = tracker.dispatcher.step()
        steps += 1
        assert steps < max_steps, f"{scenario}: no progress after {steps} steps"
        if report.claimed:
            continue
        if tracker.store.open_count() == 0:
            break
        due = tracker.store.next_due()
        assert due is not None, f"{scenario}: rows open but none due (paused?)"
        clock.advance_to(due + timedelta(seconds=1))
    campaign.api_url = good_url
    time.sleep(LOST_RESPONSE_DELAY if _has_delay(ms) else 0.0)  # a delayed request may still be processing
    result = reconcile(scenario, ms, tracker, recorded, timed_out)
    result.wall = time.monotonic() - started
    return result


def _watch_read_timeouts(campaign: Any) -> Counter[str]:
    """Count, per event key, the requests whose answer the client never read (a read timeout).

    Such a request may have been processed by Microsoft, so a later resend may be a duplicate: that is
    the lost response the reconciliation allows for.  Injected ``delay`` faults cause them on purpose; a
    loaded machine may cause one more now and then, and it is accounted the same way.
    """
    lost: Counter[str] = Counter()
    session = campaign.session
    post = session.post

    def watched(url: str, **kwargs: Any) -> Any:
        try:
            return post(url, **kwargs)
        except requests.ReadTimeout:
            # The client sends an encoded body (stored items are spliced in as they are).
            body = kwargs["json"] if "json" in kwargs else json.loads(kwargs["data"])
            items = next(iter(body.values()))
            lost.update(_key(item) for item in items)
            raise

    session.post = watched
    return lost


def _has_delay(ms: EmulatorHandle) -> bool:
    return any((r.fault or "").find("delay") >= 0 for r in ms.requests("offline"))


def reconcile(
    scenario: str,
    ms: EmulatorHandle,
    tracker: ConversionTracker,
    recorded: dict[str, tuple[str, dict[str, Any]]],
    timed_out: Counter[str],
) -> SoakResult:
    """``enqueued = delivered + rejected + dead`` with a reason each, and every claim checked against Microsoft."""
    result = SoakResult(scenario, len(recorded))
    result.requests = len(ms.requests("offline"))
    result.lost_responses = sum(timed_out.values())
    received = ms.received("offline")
    by_key: dict[str, list[Any]] = {}
    for item in received:
        by_key.setdefault(_key(item.payload), []).append(item)

    for event_id, (key, payload) in recorded.items():
        rows = tracker.store.find(event_id)
        assert len(rows) == 1, f"{event_id}: {len(rows)} rows"
        row = rows[0]
        # The key and the payload (ConversionTime included) were fixed at record time, never rebuilt.
        assert row.idempotency_key == key
        assert dict(row.payload) == payload
        items = by_key.get(_key(payload), [])
        for item in items:
            assert item.payload == payload, f"{event_id}: a resend differed from the recorded payload"
        accepted = [i for i in items if i.outcome == "accepted"]
        duplicates = [i for i in items if i.outcome == "duplicate"]
        result.double_counted += max(0, len(accepted) - 1)
        result.duplicates += len(duplicates)
        # A resend of an accepted event is explained only by a response lost after Microsoft processed it.
        explained = timed_out[_key(payload)]
        assert len(duplicates) <= explained, f"{event_id}: {len(duplicates)} duplicates, {explained} lost responses"
        if row.state == "delivered":
            result.delivered += 1
            assert len(accepted) == 1, f"{event_id}: delivered but Microsoft accepted it {len(accepted)} times"
        elif row.state in ("rejected", "dead"):
            assert row.last_error_code, f"{event_id}: {row.state} without a reason"
            result.reasons[f"{row.state}:{row.last_error_code}"] += 1
            if row.state == "rejected":
                result.rejected += 1
                assert not accepted
                assert items
                assert items[-1].outcome == "rejected"
            else:
                result.dead += 1
        else:
            result.lost += 1
    return result
