"""Subprocess entry points of the crash tests (run as ``python tests/reliability/procs.py ...``).

``record FIRST COUNT``: record offline conversions ``ord_FIRST`` .. with the settings in the environment
and print ``ok <event_id> <created>`` after each ``record_offline`` returned, so the parent knows
exactly which calls were acknowledged before a SIGKILL.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from msclkid_middleware.dispatch.tracker import ConversionTracker


def record(first: int, count: int) -> None:
    tracker = ConversionTracker.from_env(microsoft=False)
    now = datetime.now(UTC)
    for n in range(first, first + count):
        status = tracker.record_offline(
            event_id=f"ord_{n}",
            conversion_name="Purchase",
            conversion_time=now - timedelta(minutes=30),
            value=10.0 + n,
            currency="USD",
            click=f"{n:032x}",
        )
        print(f"ok ord_{n} {int(status.created)}", flush=True)
    tracker.close()


if __name__ == "__main__":
    if sys.argv[1] == "record":
        record(int(sys.argv[2]), int(sys.argv[3]))
    else:  # pragma: no cover
        raise SystemExit(f"unknown command {sys.argv[1]!r}")
