"""Fixtures for the PostgreSQL suite: a schema of our own per test, the emulator, a clock."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from msclkid_middleware.testing import EmulatorHandle, run_emulator
from tests.outbox.conftest import FakeClock
from tests.pg_helpers import Schemas, schema_fixture, session_schemas


@pytest.fixture(scope="session")
def pg_schemas() -> Iterator[Schemas]:
    yield from session_schemas()


@pytest.fixture
def pg_schema(pg_schemas: Schemas) -> Iterator[str]:
    yield from schema_fixture(pg_schemas)


@pytest.fixture
def pg_url(pg_schemas: Schemas, pg_schema: str) -> str:
    """The store URL of this test's own schema (small pools: the server's connections are shared)."""
    return pg_schemas.store_url(pg_schema, pool_max_size=4)


@pytest.fixture
def ms() -> Iterator[EmulatorHandle]:
    with run_emulator() as handle:
        yield handle


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
