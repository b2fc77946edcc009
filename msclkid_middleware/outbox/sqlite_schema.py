"""The SQLite schema: the dialect of the shared SQL, and migrations counted by ``PRAGMA user_version``."""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable

from msclkid_middleware.outbox.base import KINDS, OPEN_STATES, STATES, from_timestamp, schema_too_new, to_timestamp
from msclkid_middleware.outbox.sql import COLUMNS, PRIMARY_IN, Dialect, Queries, in_list, one_of

__all__ = [
    "BULK_CACHE_KIB",
    "CLAIMED_COLUMNS",
    "DEPENDENCY_MET",
    "DIALECT",
    "INSERT_ONE",
    "MIGRATIONS",
    "OPEN_ROWS_ADD",
    "QUERIES",
    "ROWS_PER_INSERT",
    "SETTLE_MANY",
    "insert_many",
    "migrate",
]

# Alike in shape to postgres_schema.DIALECT on purpose: one Dialect value per database is what the shared SQL reads.
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


def _checks_as_comparisons(conn: sqlite3.Connection) -> None:
    """Migration 3: the CHECKs on ``kind`` and ``state`` as OR-ed comparisons, allowing exactly the same values.

    SQLite builds the lookup table of an ``IN (...)`` list again for every row a statement inserts: a quarter of
    the cost of a bulk insert.  Only the constraint's text changes, never the stored data, so the table's SQL is
    rewritten in place (SQLite's documented ``writable_schema`` procedure for changing a CHECK constraint, with the
    schema version bumped so every connection reloads it).  Where that is refused (a build in defensive mode) the
    IN lists stay: the same rule, only slower.
    """
    found = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'outbox'").fetchone()
    sql = found[0]
    for column, values in (("kind", KINDS), ("state", STATES)):
        sql = sql.replace(f"CHECK ({column} IN {in_list(values)})", f"CHECK ({one_of(column, values)})")
    if sql == found[0]:
        return
    version = conn.execute("PRAGMA schema_version").fetchone()[0]
    conn.execute("SAVEPOINT checks")
    try:
        conn.execute("PRAGMA writable_schema = ON")
        conn.execute("UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND name = 'outbox'", (sql,))
        conn.execute(f"PRAGMA schema_version = {int(version) + 1}")
    except sqlite3.DatabaseError:
        conn.execute("ROLLBACK TO checks")
    finally:
        conn.execute("PRAGMA writable_schema = OFF")
        conn.execute("RELEASE checks")


#: Schema migrations, applied in order on open (SQL, or a function run on the connection); ``PRAGMA user_version``
#: records how many ran.
MIGRATIONS: tuple[str | Callable[[sqlite3.Connection], None], ...] = (
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
    _checks_as_comparisons,
    # 4: the update trigger ran its program (a WHEN over two IN lists) for every row a claim or a settle changed,
    # and an UPDATE of the counter for every row a settle closed: half of a drain's SQLite time.  The store's
    # statements that move rows between open and closed states (settle, fail_orphans, retry_dead) add their row
    # counts to open_rows themselves, in the same transaction (OPEN_ROWS_ADD); the delete trigger stays.
    "DROP TRIGGER outbox_open_update;",
)
# -- the store's statements (SQLite spelling) ------------------------------------------------------------

INSERT_ONE = f"INSERT INTO outbox ({COLUMNS}) VALUES ({QUERIES.insert_values}) RETURNING *"  # noqa: S608
#: Rows per INSERT of a bulk insert (fewer where the build allows fewer bound parameters).
ROWS_PER_INSERT = 250


@functools.cache
def insert_many(rows: int) -> str:
    """``rows`` rows in one INSERT (a statement per row costs its setup and its CHECKs' setup again), each bound as
    the 15 values of :func:`bulk_values`; a row matching a stored one (either unique index) is skipped, no lookup."""
    row = "(?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?, ?, ?)"
    return f"INSERT INTO outbox ({COLUMNS}) VALUES {', '.join([row] * rows)} ON CONFLICT DO NOTHING"  # noqa: S608


#: Page cache of a bulk-write connection (KiB): an import's random-key inserts touch pages all over three
#: indexes, and SQLite's default 2 MiB cache would re-read them from the file for every batch.
BULK_CACHE_KIB = 64 * 1024
DEPENDENCY_MET = (
    "(r.depends_on IS NULL OR EXISTS (SELECT 1 FROM outbox AS o WHERE o.id = r.depends_on AND o.state = 'delivered'))"
)
# Every row of one outcome shape (a batch's deliveries, say) in one statement, fenced by the lease token.
SETTLE_MANY = (
    f"UPDATE outbox AS t SET {QUERIES.settle_assignments(lambda field: ':' + field)}"  # noqa: S608
    # "+t.state": found by the primary key, not by scanning every in-flight row of the state index.
    " WHERE t.id IN (SELECT value FROM json_each(:ids)) AND t.lease_token = :token AND +t.state = 'in_flight'"
)
# What a delivery request needs of a claimed row; the payload's times are read by SQLite, not decoded here.  Each
# json_extract parses the whole payload, so only the times the row's kind has are read (rows.event_time reads the
# same ones): an offline conversion has no AdjustmentTime, and UET counts only its eventTime.
CLAIMED_COLUMNS = (
    "id, kind, account, event_id, lease_token, attempts, conversion_name, created_at, expires_at, payload,"
    " CASE WHEN kind <> 'uet' THEN json_extract(payload, '$.ConversionTime') END AS conversion_time,"
    " CASE WHEN kind <> 'uet' AND kind <> 'offline' THEN json_extract(payload, '$.AdjustmentTime') END"
    " AS adjustment_time,"
    " CASE WHEN kind = 'uet' THEN json_extract(payload, '$.eventTime') END AS uet_time"
)


#: Adds ``:n`` (negative: takes) open rows to the counter the insert and update triggers kept before migrations 2
#: and 4: every statement that opens or closes rows runs it in its own transaction.
OPEN_ROWS_ADD = "UPDATE outbox_meta SET value = value + :n WHERE name = 'open_rows'"


def migrate(conn: sqlite3.Connection) -> None:
    """Run the migrations this file lacks, inside the caller's write transaction."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > len(MIGRATIONS):
        raise schema_too_new(version, len(MIGRATIONS))
    for number in range(version, len(MIGRATIONS)):
        migration = MIGRATIONS[number]
        if callable(migration):
            migration(conn)
            continue
        for statement in _split_sql(migration):
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
