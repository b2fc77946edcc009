"""Outbox benchmark: ``record_offline`` latency and end-to-end throughput through the emulator.

    PYTHONPATH=. python benchmarks/outbox.py            # 100,000 conversions (a few minutes)
    PYTHONPATH=. python benchmarks/outbox.py --n 10000 --workers-n 5000  # quicker
    PYTHONPATH=. python benchmarks/outbox.py --postgres postgresql://user@host/db   # another server

Three measurements, all in this run, against the local emulator over real HTTP on 127.0.0.1:

1. ``record_offline`` latency: each call validates, hashes an email, and commits one row to a
   SQLite outbox (WAL, ``synchronous=NORMAL``, the default ``durability="crash"``).
2. End to end: record N conversions, then ``flush()`` them to the emulator in batches of 1,000;
   reports the request count (the minimum is ceil(N / 1000)) and conversions per second.
3. Baseline: the same kind of items posted one request per conversion with the same client.  It
   is measured on a smaller sample (``--baseline-n``) and extrapolated linearly to N: say so.
4. SQLite next to PostgreSQL (``--postgres URL``, default ``MSCLKID_TEST_POSTGRES_URL`` or the local
   server; skipped when unreachable): ``record_offline`` latency (each call its own committed
   transaction) and delivery throughput of ``--workers-n`` conversions by 1, 2 and 4 worker processes
   (``flush()`` in each, started together once every process has opened its store).  PostgreSQL
   runs in a fresh schema, dropped afterwards.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from msclkid_middleware.config import Settings
from msclkid_middleware.conversions import OfflineConversion
from msclkid_middleware.dispatch.tracker import ConversionTracker
from msclkid_middleware.testing import run_emulator


def click(n: int) -> str:
    return f"{n:032x}"


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
    return ordered[index]


def _flush_worker(store_url: str, env: dict[str, str], start: Any, results: Any) -> None:
    """One worker process: open the store and the clients, wait for the others, drain."""
    tracker = ConversionTracker(settings=Settings.from_env(env), store_url=store_url)
    try:
        start.wait()
        report = tracker.flush(timeout=None)
        results.put((report.delivered, report.requests))
    finally:
        tracker.close()


def run_workers(store_url: str, env: dict[str, str], workers: int) -> float:
    """Seconds from the common start until ``workers`` processes drained the outbox."""
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(workers + 1)
    results = ctx.Queue()
    procs = [ctx.Process(target=_flush_worker, args=(store_url, env, start, results)) for _ in range(workers)]
    for proc in procs:
        proc.start()
    start.wait()
    began = time.perf_counter()
    outcomes = [results.get(timeout=600) for _ in procs]
    elapsed = time.perf_counter() - began
    for proc in procs:
        proc.join(60)
    if any(proc.exitcode != 0 for proc in procs):
        raise RuntimeError("a worker process failed")
    return elapsed if sum(d for d, _ in outcomes) else float("nan")


def latency_ms(store_url: str, settings: Settings, when: datetime, calls: int, offset: int) -> list[float]:
    tracker = ConversionTracker(settings=settings, store_url=store_url)
    samples = []
    for n in range(calls):
        begin = time.perf_counter()
        tracker.record_offline(
            f"lat_{n}", "Purchase", when, 10.0, "USD", click=click(offset + n), email=f"buyer{n}@example.com"
        )
        samples.append((time.perf_counter() - begin) * 1000)
    tracker.close()
    return samples


def postgres_schema_url(base: str) -> tuple[str, Callable[[], None]] | None:
    """A fresh schema on ``base`` (None when the server is unreachable or psycopg is missing)."""
    try:
        import psycopg
        from psycopg import sql
    except ImportError:
        return None
    schema = f"msclkid_bench_{os.getpid()}_{secrets.token_hex(3)}"
    try:
        with psycopg.connect(base, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error:
        return None

    def drop() -> None:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))

    separator = "&" if "?" in base else "?"
    return f"{base}{separator}schema={schema}&pool_max_size=4", drop


def seed(store_url: str, settings: Settings, when: datetime, count: int, offset: int) -> None:
    """Record ``count`` conversions (PostgreSQL: in the shop's own transactions, 2,000 per commit,
    so preparing a run does not take a commit per row; SQLite commits each)."""
    tracker = ConversionTracker(settings=settings, store_url=store_url)
    try:
        if store_url.startswith("postgres"):
            import psycopg

            base = store_url.split("?", 1)[0]
            with psycopg.connect(base) as app:
                for begin in range(0, count, 2000):
                    with app.transaction():
                        for n in range(begin, min(begin + 2000, count)):
                            tracker.record_offline(
                                f"w{offset + n}", "Purchase", when, 10.0, "USD", click=click(offset + n), connection=app
                            )
        else:
            for n in range(count):
                tracker.record_offline(f"w{offset + n}", "Purchase", when, 10.0, "USD", click=click(offset + n))
        if tracker.store.open_count() != count:
            raise RuntimeError("seeding failed")
    finally:
        tracker.close()


def compare_backends(args: argparse.Namespace, ms: Any, tmp: str, when: datetime) -> list[str]:
    settings = Settings.from_env(ms.env)
    backends: list[tuple[str, Callable[[str], str], Callable[[], None]]] = [
        ("SQLite", lambda tag: f"sqlite:///{Path(tmp) / f'{tag}.db'}", lambda: None)
    ]
    lines: list[str] = []
    if args.postgres:
        found = postgres_schema_url(args.postgres)
        if found is None:
            lines.append(f"PostgreSQL skipped: {args.postgres.split('@')[-1]} unreachable or psycopg missing")
        else:
            url, drop = found
            backends.append(("PostgreSQL", lambda tag, url=url: url.replace("schema=", f"schema={tag}_", 1), drop))
    offset = 30_000_000
    results: dict[str, dict[str, float]] = {}
    try:
        for name, url_for, _ in backends:
            samples = latency_ms(url_for("lat"), settings, when, args.latency_n, offset)
            offset += args.latency_n
            figures = {"median": statistics.median(samples), "p99": percentile(samples, 0.99)}
            for workers in (1, 2, 4):
                url = url_for(f"w{workers}")
                seed(url, settings, when, args.workers_n, offset)
                offset += args.workers_n
                figures[f"w{workers}"] = args.workers_n / run_workers(url, ms.env, workers)
            results[name] = figures
    finally:
        for _, _, drop in backends:
            drop()
    lines.append(
        f"backends: record_offline latency ({args.latency_n} calls, each its own commit) and delivery of"
        f" {args.workers_n:,} conversions by worker processes (conversions/s)"
    )
    lines.append(f"  {'':10} {'median':>9} {'p99':>9} {'1 worker':>10} {'2 workers':>10} {'4 workers':>10}")
    for name, f in results.items():
        lines.append(
            f"  {name:10} {f['median']:6.3f} ms {f['p99']:6.3f} ms {f['w1']:10,.0f} {f['w2']:10,.0f} {f['w4']:10,.0f}"
        )
    for name, f in results.items():
        lines.append(f"  {name}: 2 workers {f['w2'] / f['w1']:.2f}x, 4 workers {f['w4'] / f['w1']:.2f}x one worker")
    if "PostgreSQL" in results:
        pg, lite = results["PostgreSQL"], results["SQLite"]
        lines.append(
            f"  PostgreSQL vs SQLite: latency median {pg['median'] / lite['median']:.1f}x,"
            f" 1-worker throughput {pg['w1'] / lite['w1']:.2f}x, 4-worker throughput {pg['w4'] / lite['w4']:.2f}x"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000, help="conversions end to end (default 100,000)")
    parser.add_argument("--latency-n", type=int, default=5_000, help="record_offline calls timed one by one")
    parser.add_argument("--baseline-n", type=int, default=1_000, help="one-request-per-item sample size")
    parser.add_argument("--workers-n", type=int, default=20_000, help="conversions per 1/2/4-worker run")
    parser.add_argument(
        "--postgres",
        default=os.environ.get("MSCLKID_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"),
        help="PostgreSQL server for the comparison ('' to skip)",
    )
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

        comparison = compare_backends(args, ms, tmp, when)

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
    for line in comparison:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
