"""Outbox benchmark: ``record_offline`` latency and end-to-end throughput through the emulator.

    PYTHONPATH=. python benchmarks/outbox.py            # 100,000 conversions (about a minute)
    PYTHONPATH=. python benchmarks/outbox.py --n 10000  # quicker

Three measurements, all in this run, against the local emulator over real HTTP on 127.0.0.1:

1. ``record_offline`` latency: each call validates, hashes an email, and commits one row to a
   SQLite outbox (WAL, ``synchronous=NORMAL``, the default ``durability="crash"``).
2. End to end: record N conversions, then ``flush()`` them to the emulator in batches of 1,000;
   reports the request count (the minimum is ceil(N / 1000)) and conversions per second.
3. Baseline: the same kind of items posted one request per conversion with the same client.  It
   is measured on a smaller sample (``--baseline-n``) and extrapolated linearly to N: say so.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from msclkid_middleware.config import Settings
from msclkid_middleware.models import OfflineConversion
from msclkid_middleware.testing import run_emulator
from msclkid_middleware.tracker import ConversionTracker


def click(n: int) -> str:
    return f"{n:032x}"


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
    return ordered[index]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000, help="conversions end to end (default 100,000)")
    parser.add_argument("--latency-n", type=int, default=5_000, help="record_offline calls timed one by one")
    parser.add_argument("--baseline-n", type=int, default=1_000, help="one-request-per-item sample size")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp, run_emulator() as ms:
        settings = Settings.from_env(ms.env)
        when = datetime.now(UTC) - timedelta(hours=1)

        # 1. Latency of record_offline (a fresh outbox, so the numbers are not flattered by caching).
        latency_tracker = ConversionTracker(settings=settings, store_url=f"sqlite:///{Path(tmp) / 'latency.db'}")
        samples = []
        for n in range(args.latency_n):
            start = time.perf_counter()
            latency_tracker.record_offline(
                f"lat_{n}", "Purchase", when, 10.0, "USD", click=click(n), email=f"buyer{n}@example.com"
            )
            samples.append((time.perf_counter() - start) * 1000)
        latency_tracker.close()

        # 2. End to end: record N, flush N.
        tracker = ConversionTracker(settings=settings, store_url=f"sqlite:///{Path(tmp) / 'outbox.db'}")
        start = time.perf_counter()
        for n in range(args.n):
            tracker.record_offline(f"ord_{n}", "Purchase", when, 10.0, "USD", click=click(10_000_000 + n))
        recorded = time.perf_counter() - start
        before = len(ms.requests("offline"))
        start = time.perf_counter()
        report = tracker.flush(timeout=None)
        flushed = time.perf_counter() - start
        requests = len(ms.requests("offline")) - before
        accepted = len(ms.received("offline", outcome="accepted"))
        tracker.close()
        if report.delivered != args.n or accepted != args.n:
            print(f"unexpected: delivered {report.delivered}, accepted {accepted}", file=sys.stderr)
            return 1

        # 3. Baseline: one HTTP request per conversion, same client, same emulator.
        baseline_tracker = ConversionTracker(settings=settings, store_url=f"sqlite:///{Path(tmp) / 'base.db'}")
        client = baseline_tracker.campaign
        items = [
            OfflineConversion(
                conversion_name="Purchase",
                conversion_time=when,
                value=10.0,
                currency="USD",
                msclkid=click(20_000_000 + n),
            ).to_wire()
            for n in range(args.baseline_n)
        ]
        start = time.perf_counter()
        for item in items:
            result = client.apply_offline_conversions([item])
            assert result.items[0].accepted
        baseline = time.perf_counter() - start
        baseline_tracker.close()

    per_item = baseline / args.baseline_n
    extrapolated = per_item * args.n
    total = recorded + flushed
    print("msclkid-middleware outbox benchmark (SQLite outbox, emulator over HTTP on 127.0.0.1)")
    print(f"record_offline latency ({args.latency_n} calls, each a committed row, email hashed):")
    print(f"  median {statistics.median(samples):.3f} ms   p99 {percentile(samples, 0.99):.3f} ms")
    print(f"end to end, {args.n:,} conversions:")
    print(f"  record   {recorded:8.2f} s  ({args.n / recorded:,.0f} records/s)")
    print(f"  flush    {flushed:8.2f} s  ({args.n / flushed:,.0f} conversions/s), {requests} requests")
    print(f"           (minimum possible: {math.ceil(args.n / 1000)}; delivered {report.delivered:,})")
    print(f"  total    {total:8.2f} s  ({args.n / total:,.0f} conversions/s)")
    print(f"baseline, one request per conversion (measured on {args.baseline_n:,}, extrapolated to {args.n:,}):")
    print(f"  {per_item * 1000:.2f} ms per conversion -> {extrapolated:,.1f} s for {args.n:,}, {args.n:,} requests")
    fewer = args.n / max(requests, 1)
    print(f"  the outbox's flush is {extrapolated / flushed:,.1f}x faster and sends {fewer:,.0f}x fewer requests")
    return 0


if __name__ == "__main__":
    sys.exit(main())
