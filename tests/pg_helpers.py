"""PostgreSQL for tests: find the server, isolate each test session in its own schemas.

``MSCLKID_TEST_POSTGRES_URL`` (default ``postgresql://postgres@127.0.0.1:5432/test``) names the
server.  Unreachable: the tests skip locally and fail under ``CI=true``.  Several people share the
server, so a session never touches anything it did not create: every store lives in a fresh
schema ``msclkid_t<pid>_<random>_<n>``, dropped afterwards (and all of the session's schemas again
at the end, in case a test died half-way).
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

POSTGRES_URL = os.environ.get("MSCLKID_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI") == "true"


def with_params(url: str, **params: object) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in params]
    query += [(k, str(v)) for k, v in params.items()]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


def unavailable_reason(url: str = POSTGRES_URL) -> str | None:
    try:
        with psycopg.connect(url, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return f"PostgreSQL at {urlsplit(url).hostname}:{urlsplit(url).port or 5432} unreachable: {exc}"
    return None


def require_postgres(url: str = POSTGRES_URL) -> None:
    reason = unavailable_reason(url)
    if reason is None:
        return
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: the PostgreSQL tests must run; .ci/run starts the server)")
    pytest.skip(reason)


class Schemas:
    """Fresh, uniquely named schemas for one test session on the shared server."""

    def __init__(self, url: str = POSTGRES_URL) -> None:
        self.url = url
        self.prefix = f"msclkid_t{os.getpid()}_{secrets.token_hex(3)}"
        self._n = 0

    def name(self) -> str:
        """A new schema name (the store creates the schema on open)."""
        self._n += 1
        return f"{self.prefix}_{self._n}"

    def store_url(self, schema: str, **params: object) -> str:
        return with_params(self.url, schema=schema, **params)

    def drop(self, schema: str) -> None:
        assert schema.startswith(self.prefix)  # never anything this session did not create
        with psycopg.connect(self.url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))

    def drop_all(self) -> None:
        with psycopg.connect(self.url, autocommit=True, connect_timeout=10) as conn:
            names = conn.execute(
                "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, %s)", (self.prefix + "_",)
            ).fetchall()
            for (name,) in names:
                conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def session_schemas() -> Iterator[Schemas]:
    """Body of the session fixture the conftests declare."""
    require_postgres()
    schemas = Schemas()
    yield schemas
    schemas.drop_all()


def schema_fixture(schemas: Schemas) -> Iterator[str]:
    """Body of a per-test fixture: a fresh schema name, dropped after the test."""
    name = schemas.name()
    yield name
    schemas.drop(name)


# -- restarting the server ---------------------------------------------------------------------------
def local_cluster(url: str = POSTGRES_URL) -> tuple[str, str] | None:
    """``(version, name)`` of the Debian cluster serving ``url`` when this process may restart it.

    ``MSCLKID_TEST_POSTGRES_RESTART=0`` declines locally (a server shared with other people's work);
    under ``CI=true`` it is ignored: the restart test must run there.
    """
    if os.environ.get("MSCLKID_TEST_POSTGRES_RESTART") == "0" and not IN_CI:
        return None
    parts = urlsplit(url)
    if parts.hostname not in ("127.0.0.1", "localhost", "::1") or os.geteuid() != 0:
        return None
    if shutil.which("pg_lsclusters") is None or shutil.which("pg_ctlcluster") is None:
        return None
    listing = subprocess.run(["pg_lsclusters", "--no-header"], capture_output=True, text=True, check=False)
    for line in listing.stdout.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[2] == str(parts.port or 5432) and fields[3].startswith("online"):
            return fields[0], fields[1]
    return None


def restart_server(cluster: tuple[str, str]) -> None:
    version, name = cluster
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", "--mode", "fast", version, name, "restart"],
        check=True,
        capture_output=True,
        timeout=60,
    )
