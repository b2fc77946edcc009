"""R8 (fast size): eight dispatchers on one outbox, and S3's rule that every unsign passes ``max_age``.

Eight threads, each with its own dispatcher and clients (as eight worker threads or processes would
have), drain one store into the emulator: every event is sent exactly once, no two leases on an event
overlap, and an outcome written with a stale lease token changes nothing.
"""

from __future__ import annotations

import ast
import json
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from msclkid_middleware.dispatch.dispatcher import Dispatcher
from msclkid_middleware.microsoft import CampaignManagementClient, RetryPolicy
from msclkid_middleware.outbox import Outcome
from msclkid_middleware.testing import EmulatorHandle

from .conftest import REPO, make_tracker, record

pytestmark = pytest.mark.reliability

WORKERS = 8
EVENTS = 800


def test_eight_dispatchers_never_double_claim(ms: EmulatorHandle, store_url: str) -> None:
    tracker = make_tracker(ms, store_url, microsoft=False)
    for n in range(EVENTS):
        record(tracker, n)
    ms.inject_fault("offline", "delay", delay=0.01)  # keep the requests of the eight overlapping
    ms.inject_fault("offline", "http", status=503, probability=0.2)  # and some retries in the mix
    settings = tracker.settings
    claims: list[tuple[int, str, str]] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    class RecordingStore:
        """The shared store, with every claim noted (row, lease token, owner)."""

        def __getattr__(self, name: str) -> Any:
            return getattr(tracker.store, name)

        def claim_batch(self, **kwargs: Any) -> Any:
            rows = tracker.store.claim_batch(**kwargs)
            with lock:
                claims.extend((r.id, r.lease_token or "", kwargs["owner"]) for r in rows)
            return rows

    def work(index: int) -> None:
        campaign = CampaignManagementClient.from_settings(settings)
        try:
            dispatcher = Dispatcher(
                RecordingStore(),  # type: ignore[arg-type]
                campaign=campaign,
                batch_size=25,
                lease_seconds=60.0,
                retry_policy=RetryPolicy(backoff_base=0.001, backoff_max=0.01, rng=lambda: 0.5),
                owner=f"worker-{index}",
            )
            for _ in range(400):
                report = dispatcher.step()
                if report.claimed == 0 and tracker.store.open_count() == 0:
                    return
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            campaign.close()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(WORKERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    assert tracker.store.open_count() == 0
    accepted = Counter(json.dumps(i.payload, sort_keys=True) for i in ms.received("offline", outcome="accepted"))
    assert len(accepted) == EVENTS
    assert set(accepted.values()) == {1}
    # Had two workers held one row at once, both would have sent it: Microsoft would report a duplicate.
    assert ms.received("offline", outcome="duplicate") == []
    assert len({c[2] for c in claims}) > 1  # the work really was shared
    assert max(Counter(c[1] for c in claims).values()) <= 25  # one fresh lease token per claim

    # A stale lease token changes nothing.
    row = tracker.store.find("ord_0")[0]
    stale = next(c[1] for c in claims if c[0] == row.id)
    now = datetime.now(UTC) + timedelta(hours=1)
    assert tracker.store.settle([Outcome(row.id, stale, "dead", error_code="x")], now=now) == 0
    assert tracker.store.get(row.id).state == "delivered"  # type: ignore[union-attr]
    tracker.close()


def test_every_signature_check_passes_max_age() -> None:
    """S3: itsdangerous checks expiry (and future dates) only when ``max_age`` is given."""
    offenders = []
    for path in sorted((REPO / "msclkid_middleware").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("unsign", "loads", "loads_unsafe")
                and not (isinstance(node.func.value, ast.Name) and node.func.value.id in ("json", "tomllib"))
                and not any(k.arg == "max_age" for k in node.keywords)
            ):
                offenders.append(f"{Path(path).relative_to(REPO)}:{node.lineno}")
    assert offenders == []
