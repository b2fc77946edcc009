"""The SQLite schema: the dialect of the shared SQL, and migrations counted by ``PRAGMA user_version``."""

from __future__ import annotations

import sqlite3

from msclkid_middleware.outbox.base import OPEN_STATES, from_timestamp, schema_too_new, to_timestamp
from msclkid_middleware.outbox.sql import PRIMARY_IN, Dialect, Queries, in_list

__all__ = ["DIALECT", "MIGRATIONS", "OPEN_ROWS_ADD", "QUERIES", "migrate"]

DIALECT = Dialect(
    outbox="outbox",
    tokens="tokens",
    param=lambda name: f":{name}",
    id_column="INTEGER PRIMARY KEY AUTOINCREMENT",
    ref_type="INTEGER",
    time_type="REAL",
    big_int="INTEGER",
    write_time=to_timestamp,
    read_time=lambda value: from_timestamp(value),  # type: ignore[arg-type]
)
QUERIES = Queries(DIALECT)
_OPEN = in_list(OPEN_STATES)

#: Schema migrations, applied in order on open; ``PRAGMA user_version`` records how many ran.
MIGRATIONS: tuple[str, ...] = (
    # Interpolated values are module constants, never input.
    QUERIES.create_tables()  # noqa: S608
    + f"""
    CREATE UNIQUE INDEX outbox_idempotency_key ON outbox (idempotency_key);
    CREATE UNIQUE INDEX outbox_primary_event ON outbox (kind, account, event_id) WHERE kind IN {PRIMARY_IN};
    CREATE INDEX outbox_due ON outbox (state, next_attempt_at);
    CREATE INDEX outbox_event ON outbox (event_id);
    CREATE INDEX outbox_depends_on ON outbox (depends_on) WHERE depends_on IS NOT NULL;
    CREATE INDEX outbox_updated ON outbox (state, updated_at);
    -- open_rows is kept exact by triggers so the max_pending check is O(1) on every enqueue.
    CREATE TABLE outbox_meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
    INSERT INTO outbox_meta (name, value) VALUES ('open_rows', 0);
    CREATE TRIGGER outbox_open_insert AFTER INSERT ON outbox WHEN NEW.state IN {_OPEN}
    BEGIN UPDATE outbox_meta SET value = value + 1 WHERE name = 'open_rows'; END;
    CREATE TRIGGER outbox_open_delete AFTER DELETE ON outbox WHEN OLD.state IN {_OPEN}
    BEGIN UPDATE outbox_meta SET value = value - 1 WHERE name = 'open_rows'; END;
    CREATE TRIGGER outbox_open_update AFTER UPDATE OF state ON outbox
    WHEN (OLD.state IN {_OPEN}) <> (NEW.state IN {_OPEN})
    BEGIN UPDATE outbox_meta SET value = value + (CASE WHEN NEW.state IN {_OPEN} THEN 1 ELSE -1 END)
          WHERE name = 'open_rows'; END;
    """,  # noqa: S608
    # 2: the insert trigger cost a third of a bulk import (a trigger program per row); the store's two insert
    # paths (enqueue, enqueue_many) add the rows they insert in an open state to open_rows themselves, once
    # per statement, in the same transaction (SqliteOutbox.OPEN_ROWS_ADD).
    "DROP TRIGGER outbox_open_insert;",
)
#: Adds ``:n`` new open rows to the counter the insert trigger kept before migration 2.
OPEN_ROWS_ADD = "UPDATE outbox_meta SET value = value + :n WHERE name = 'open_rows'"


def migrate(conn: sqlite3.Connection) -> None:
    """Run the migrations this file lacks, inside the caller's write transaction."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > len(MIGRATIONS):
        raise schema_too_new(version, len(MIGRATIONS))
    for number in range(version, len(MIGRATIONS)):
        for statement in _split_sql(MIGRATIONS[number]):
            conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")


def _split_sql(script: str) -> list[str]:
    """Split a migration into statements (``sqlite3.complete_statement`` keeps triggers whole)."""
    statements: list[str] = []
    buffer = ""
    for line in script.splitlines(keepends=True):
        if line.strip().startswith("--"):
            continue
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                statements.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        statements.append(buffer.strip())
    return statements
