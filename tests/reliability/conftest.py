"""Fixtures of the reliability suite: sizes, stores, the emulator, a fake clock, a recording tracker.

Sizes come from the environment so ``make test`` runs the fast size and ``make soak`` the long one:

- ``MSCLKID_SOAK_EVENTS``: events per fault scenario (default 1,000);
- ``MSCLKID_SOAK_EXAMPLES``: Hypothesis examples per hostile-input property (default 1,000);
- ``MSCLKID_SOAK_CRASH_ROUNDS``: how often each worker crash point is repeated (default 1);
- ``MSCLKID_SOAK_REPORT``: a file the fault soak appends its table rows to (``make soak`` prints it).

``store_url`` is parametrised by backend; every storage-fault and crash test runs against each store
in :data:`STORES` (SQLite today; the PostgreSQL store adds ``"postgresql"`` with a fresh schema).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from msclkid_middleware.config import Settings
from msclkid_middleware.dispatch.tracker import ConversionTracker, EventStatus
from msclkid_middleware.microsoft import RetryPolicy
from msclkid_middleware.testing import EmulatorHandle, run_emulator

EVENTS = int(os.environ.get("MSCLKID_SOAK_EVENTS", "1000"))
EXAMPLES = int(os.environ.get("MSCLKID_SOAK_EXAMPLES", "1000"))
CRASH_ROUNDS = int(os.environ.get("MSCLKID_SOAK_CRASH_ROUNDS", "1"))
REPORT = os.environ.get("MSCLKID_SOAK_REPORT")
REPO = Path(__file__).resolve().parents[2]

#: Backends the store-agnostic tests run against.
STORES = ("sqlite",)


#: The fault soak's table rows of this session (printed in the terminal summary).
SOAK_ROWS = pytest.StashKey[list[Any]]()


@pytest.fixture
def soak_rows(request: pytest.FixtureRequest) -> list[Any]:
    rows: list[Any] = request.config.stash.setdefault(SOAK_ROWS, [])
    return rows


#: Crash-recovery measurements of this session: (fault point, seconds after the lease expired).
RECOVERY = pytest.StashKey[list[tuple[str, float]]]()


@pytest.fixture
def recovery_log(request: pytest.FixtureRequest) -> list[tuple[str, float]]:
    log: list[tuple[str, float]] = request.config.stash.setdefault(RECOVERY, [])
    return log


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    recovery = config.stash.get(RECOVERY, [])
    if recovery:
        terminalreporter.write_sep("=", "crash recovery: first resend after the dead worker's lease expired")
        for point, lag in recovery:
            terminalreporter.write_line(f"{point:<20} {lag:6.2f} s")
    rows = config.stash.get(SOAK_ROWS, [])
    if rows:
        from .soak import format_table

        terminalreporter.write_sep("=", f"fault soak: {EVENTS} events per scenario")
        terminalreporter.write_line(format_table([r.row() for r in rows]))


@pytest.fixture(params=STORES)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'outbox.sqlite3'}"
    raise AssertionError(request.param)  # pragma: no cover - a new backend adds its branch here


class FakeClock:
    """The dispatcher's clock: starts now (the emulator checks event times against real time) and moves
    only when told, so backoffs of minutes pass instantly."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance_to(self, when: datetime) -> None:
        if when > self.now:
            self.now = when

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def ms() -> Iterator[EmulatorHandle]:
    with run_emulator() as handle:
        yield handle


def click_id(n: int) -> str:
    """A well-formed 32-hex msclkid, distinct per ``n``."""
    return f"{n:032x}"


def make_tracker(ms: EmulatorHandle, store_url: str, clock: Any = None, **options: Any) -> ConversionTracker:
    settings = Settings.from_env(ms.env)
    # A fixed jitter sample keeps runs reproducible; the delays still grow exponentially.
    options.setdefault("retry_policy", RetryPolicy(rng=lambda: 0.5))
    return ConversionTracker(settings=settings, store_url=store_url, clock=clock, **options)


def record(tracker: ConversionTracker, n: int, when: datetime | None = None) -> EventStatus:
    now = when or datetime.now(UTC)
    return tracker.record_offline(
        event_id=f"ord_{n}",
        conversion_name="Purchase",
        conversion_time=now - timedelta(minutes=30),
        value=10.0 + n,
        currency="USD",
        click=click_id(n),
    )
