"""``msclkid import-csv`` benchmark: 100,000 CRM rows into a SQLite outbox, rows per second.

    PYTHONPATH=. python benchmarks/import_csv.py            # 100,000 rows
    PYTHONPATH=. python benchmarks/import_csv.py --n 20000  # quicker

Measured in this run, on the same generated file (half the rows carry a raw email that is normalised and
hashed, the other half a click ID; times in a named time zone):

1. Baseline: reading the file with the standard ``csv`` module and doing nothing else.
2. Validate: ``validate_file(...)``: parse, hash, every ``record_offline`` check, no writes.
3. Import: ``import_file(..., tracker=...)``: the same plus one outbox row per conversion, committed
   500 rows per transaction on SQLite.
4. Re-run: the same file again (idempotent: every row is found and skipped).

The ratios say what the toolkit costs on top of reading the CSV.  Wall time and this process's CPU time are both
printed: on a shared machine the wall time includes waiting for a core, the CPU time does not.
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from msclkid_middleware.config import Settings
from msclkid_middleware.dispatch.tracker import ConversionTracker
from msclkid_middleware.ops.csv_import import import_file, validate_file


def write_file(path: Path, n: int) -> None:
    base = datetime.now(UTC) - timedelta(days=2)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["order_id", "goal", "converted_at", "amount", "currency", "msclkid", "email"])
        for i in range(n):
            when = (base + timedelta(seconds=i)).astimezone().strftime("%Y-%m-%d %H:%M:%S")
            click = f"{i:032x}" if i % 2 == 0 else ""
            email = f"Customer.{i}+promo@Example.com" if i % 2 else ""
            writer.writerow([f"ord_{i}", "Purchase", when, f"{i % 500}.95", "USD", click, email])


def baseline(path: Path) -> int:
    with path.open(newline="", encoding="utf-8") as handle:
        return sum(1 for _ in csv.reader(handle)) - 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "crm.csv"
        write_file(source, args.n)
        zone = time.strftime("%z") or "UTC"
        timings: dict[str, tuple[float, float]] = {}

        def timed(name: str, started: tuple[float, float]) -> None:
            timings[name] = (time.perf_counter() - started[0], time.process_time() - started[1])

        def now() -> tuple[float, float]:
            return time.perf_counter(), time.process_time()

        started = now()
        assert baseline(source) == args.n
        timed("csv.reader only (baseline)", started)

        started = now()
        checked = validate_file(source, time_zone=zone)
        timed("validate (parse, hash, checks)", started)
        assert checked.valid == args.n, checked.errors[:3]

        settings = Settings(conversion_goals=("Purchase",))
        tracker = ConversionTracker(settings=settings, store_url=f"sqlite:///{tmp}/outbox.db", microsoft=False)
        try:
            started = now()
            imported = import_file(source, tracker=tracker, time_zone=zone)
            timed("import (validate + record, 500/commit)", started)
            assert imported.recorded == args.n, imported.errors[:3]
            started = now()
            again = import_file(source, tracker=tracker, time_zone=zone)
            timed("re-run (all rows already recorded)", started)
            assert again.existing == args.n
        finally:
            tracker.close()

    base_wall, base_cpu = timings["csv.reader only (baseline)"]
    print(f"import-csv benchmark: {args.n:,} rows")
    print(f"{'step':<40} {'wall s':>8} {'rows/s':>10} {'x base':>7} {'cpu s':>8} {'rows/cpu-s':>11} {'x base':>7}")
    for name, (wall, cpu) in timings.items():
        cpu = max(cpu, 1e-6)
        print(
            f"{name:<40} {wall:>8.2f} {args.n / wall:>10,.0f} {wall / base_wall:>7.1f}"
            f" {cpu:>8.2f} {args.n / cpu:>11,.0f} {cpu / max(base_cpu, 1e-6):>7.1f}"
        )


if __name__ == "__main__":
    main()
