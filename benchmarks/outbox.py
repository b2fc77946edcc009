"""Outbox benchmark: ``flush()`` of N conversions against one conversion per request, and ``record_offline`` latency.

    PYTHONPATH=. python benchmarks/outbox.py                 # 20,000 conversions, 3 rounds
    PYTHONPATH=. python benchmarks/outbox.py --backends      # plus SQLite next to PostgreSQL, 1/2/4 workers
    PYTHONPATH=. python benchmarks/outbox.py --backends --postgres postgresql://user@host/db

All against the local emulator over real HTTP on 127.0.0.1, in this run:

1. The issue-21 ratio, in each of ``--rounds`` rounds (the median is printed): the time of one conversion per
   request (the same client, a keep-alive session, ``--baseline-n`` requests, extrapolated to N) divided by the
   time ``flush()`` takes to deliver N recorded conversions in batches of 1,000.  The rows are recorded in
   batches (``record_offline_rows``) so a round does not spend minutes on single commits.
2. ``record_offline`` latency: each call validates, hashes an email, and commits one row to a SQLite outbox
   (WAL, ``synchronous=NORMAL``, the default ``durability="crash"``).
3. With ``--backends``: SQLite next to PostgreSQL (``--postgres URL``, default ``MSCLKID_TEST_POSTGRES_URL`` or
   the local server; skipped when unreachable): ``record_offline`` latency (each call its own committed
   transaction) and delivery throughput of ``--workers-n`` conversions by 1, 2 and 4 worker processes
   (``flush()`` in each, started together once every process has opened its store).  PostgreSQL runs in a
   fresh schema, dropped afterwards.
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


#: Issue 21: flush of 20,000 conversions / one conversion per request must be at least this (goal 50x).
TARGET_RATIO = 30.0
GOAL_RATIO = 50.0


def seed_fast(tracker: ConversionTracker, when: datetime, count: int, offset: int) -> None:
    """Record ``count`` conversions 1,000 per batched insert (the import path), so a round is quick to prepare."""
    for begin in range(0, count, 1000):
        rows = [
            tracker.offline_row(
                event_id=f"ord_{offset + n}",
                conversion_name="Purchase",
                conversion_time=when,
                value=10.0,
                currency="USD",
                click=click(offset + n),
            )
            for n in range(begin, min(begin + 1000, count))
        ]
        with tracker.store.transaction() as connection:
            tracker.record_offline_rows(rows, connection=connection)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20_000, help="conversions flushed per round (default 20,000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the ratio printed is their median")
    parser.add_argument("--latency-n", type=int, default=1_000, help="record_offline calls timed one by one")
    parser.add_argument("--baseline-n", type=int, default=300, help="one-request-per-item sample per round")
    parser.add_argument("--backends", action="store_true", help="also compare SQLite and PostgreSQL workers")
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

        # 1. The issue-21 ratio: flush of N / one conversion per request, each round measuring both.
        rounds: list[tuple[float, float, int]] = []
        offset = 10_000_000
        for number in range(max(1, args.rounds)):
            tracker = ConversionTracker(settings=settings, store_url=f"sqlite:///{Path(tmp) / f'flush{number}.db'}")
            seed_fast(tracker, when, args.n, offset)
            offset += args.n
            before = len(ms.requests("offline"))
            start = time.perf_counter()
            report = tracker.flush(timeout=None)
            flushed = time.perf_counter() - start
            requests = len(ms.requests("offline")) - before
            if report.delivered != args.n:
                print(f"unexpected: delivered {report.delivered} of {args.n}", file=sys.stderr)
                return 1
            client = tracker.campaign
            items = [
                OfflineConversion(
                    conversion_name="Purchase",
                    conversion_time=when,
                    value=10.0,
                    currency="USD",
                    msclkid=click(offset + n),
                ).to_wire()
                for n in range(args.baseline_n + 1)
            ]
            offset += args.baseline_n + 1
            client.apply_offline_conversions([items[0]])  # the session's connection is open: keep-alive from here
            start = time.perf_counter()
            for item in items[1:]:
                result = client.apply_offline_conversions([item])
                assert result.items[0].accepted
            per_item = (time.perf_counter() - start) / args.baseline_n
            tracker.close()
            rounds.append((flushed, per_item, requests))

        # 2. Latency of record_offline (a fresh outbox, so the numbers are not flattered by caching).
        latency_tracker = ConversionTracker(settings=settings, store_url=f"sqlite:///{Path(tmp) / 'latency.db'}")
        samples = []
        for n in range(args.latency_n):
            start = time.perf_counter()
            latency_tracker.record_offline(
                f"lat_{n}", "Purchase", when, 10.0, "USD", click=click(n), email=f"buyer{n}@example.com"
            )
            samples.append((time.perf_counter() - start) * 1000)
        latency_tracker.close()

        comparison = compare_backends(args, ms, tmp, when) if args.backends else []

    ratios = [per_item * args.n / flushed for flushed, per_item, _ in rounds]
    ratio = statistics.median(ratios)
    flushed = statistics.median(f for f, _, _ in rounds)
    per_item = statistics.median(p for _, p, _ in rounds)
    print("msclkid-middleware outbox benchmark (SQLite outbox, emulator over HTTP on 127.0.0.1)")
    print(f"flush of {args.n:,} conversions, {len(rounds)} rounds (medians):")
    print(f"  flush    {flushed:8.2f} s  ({args.n / flushed:,.0f} conversions/s), {rounds[0][2]} requests")
    print(f"           (minimum possible: {math.ceil(args.n / 1000)})")
    print(f"  one conversion per request (keep-alive session): {per_item * 1000:.2f} ms per conversion")
    print(f"  per round: {', '.join(f'{r:.1f}x' for r in ratios)}")
    verdict = "goal met" if ratio >= GOAL_RATIO else "met" if ratio >= TARGET_RATIO else "NOT met"
    print(
        f"  flush of {args.n:,} / one conversion per request: {ratio:.1f}x"
        f" (target >= {TARGET_RATIO:g}x, goal {GOAL_RATIO:g}x: {verdict})"
    )
    print(f"record_offline latency ({args.latency_n} calls, each a committed row, email hashed):")
    print(f"  median {statistics.median(samples):.3f} ms   p99 {percentile(samples, 0.99):.3f} ms")
    for line in comparison:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
