"""The PostgreSQL schema: migrations applied on open under an advisory lock (concurrent openers are safe).

``{s}`` in a migration is the quoted schema name; other interpolated values are module constants.
``msclkid_outbox_meta.schema_version`` records how many migrations ran.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import psycopg

from msclkid_middleware.outbox.base import OPEN_STATES, schema_too_new, to_timestamp
from msclkid_middleware.outbox.postgres_connect import Database, lock_key
from msclkid_middleware.outbox.sql import PRIMARY_IN, Dialect, Queries, in_list

__all__ = ["DIALECT", "MIGRATIONS", "QUERIES", "migrate"]


def _aware(value: datetime) -> datetime:
    to_timestamp(value)  # raises ValidationError for a naive datetime, as the SQLite store does
    return value


def _utc(value: object) -> datetime | None:
    return value.astimezone(UTC) if isinstance(value, datetime) else None


#: Every name schema-qualified (``{s}``, filled in by ``Database.q``): the tables are found from any
#: connection whatever its ``search_path`` (the application's own connection included).
# Alike in shape to sqlite_schema.DIALECT on purpose: one Dialect value per database is the table the shared SQL reads.
DIALECT = Dialect(
    outbox="{s}.msclkid_outbox",
    tokens="{s}.msclkid_tokens",
    param=lambda name: f"%({name})s",
    id_column="BIGSERIAL PRIMARY KEY",
    ref_type="BIGINT",
    time_type="TIMESTAMPTZ",
    big_int="BIGINT",
    write_time=_aware,
    read_time=_utc,
    open_brace="{{",
    close_brace="}}",
)
QUERIES = Queries(DIALECT)

#: Open-row counter stripes: enqueues and settles of different sessions rarely touch the same row.
_COUNTER_SLOTS = 16
_OPEN = in_list(OPEN_STATES)


#: Schema migrations, applied in order on open.
MIGRATIONS: tuple[str, ...] = (
    QUERIES.create_tables()  # noqa: S608 (only module constants are interpolated)
    + f"""
    CREATE UNIQUE INDEX msclkid_outbox_idempotency_key ON {{s}}.msclkid_outbox (idempotency_key);
    CREATE UNIQUE INDEX msclkid_outbox_primary_event ON {{s}}.msclkid_outbox (kind, account, event_id)
        WHERE kind IN {PRIMARY_IN};
    CREATE INDEX msclkid_outbox_pending_due ON {{s}}.msclkid_outbox (next_attempt_at, id) WHERE state = 'pending';
    CREATE INDEX msclkid_outbox_lease_due ON {{s}}.msclkid_outbox (lease_expires_at) WHERE state = 'in_flight';
    CREATE INDEX msclkid_outbox_event ON {{s}}.msclkid_outbox (event_id);
    CREATE INDEX msclkid_outbox_depends_on ON {{s}}.msclkid_outbox (depends_on) WHERE depends_on IS NOT NULL;
    CREATE INDEX msclkid_outbox_updated ON {{s}}.msclkid_outbox (state, updated_at);
    CREATE INDEX msclkid_outbox_paused ON {{s}}.msclkid_outbox (account, kind) WHERE state = 'paused';
    -- The open-row count (what max_pending bounds) is kept exact by statement triggers, striped over
    -- {_COUNTER_SLOTS} rows so concurrent writers rarely wait for each other on the counter.
    CREATE TABLE {{s}}.msclkid_outbox_open (slot INTEGER PRIMARY KEY, n BIGINT NOT NULL);
    INSERT INTO {{s}}.msclkid_outbox_open (slot, n) SELECT g, 0 FROM generate_series(0, {_COUNTER_SLOTS - 1}) AS g;
    CREATE FUNCTION {{s}}.msclkid_outbox_count_open() RETURNS trigger LANGUAGE plpgsql AS $fn$
    DECLARE
        delta BIGINT := 0;
    BEGIN
        IF TG_OP IN ('INSERT', 'UPDATE') THEN
            delta := delta + (SELECT count(*) FROM new_rows WHERE state IN {_OPEN});
        END IF;
        IF TG_OP IN ('UPDATE', 'DELETE') THEN
            delta := delta - (SELECT count(*) FROM old_rows WHERE state IN {_OPEN});
        END IF;
        IF delta <> 0 THEN
            UPDATE {{s}}.msclkid_outbox_open SET n = n + delta WHERE slot = pg_backend_pid() % {_COUNTER_SLOTS};
        END IF;
        RETURN NULL;
    END
    $fn$;
    CREATE TRIGGER msclkid_outbox_open_insert AFTER INSERT ON {{s}}.msclkid_outbox
        REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION {{s}}.msclkid_outbox_count_open();
    CREATE TRIGGER msclkid_outbox_open_update AFTER UPDATE ON {{s}}.msclkid_outbox
        REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
        FOR EACH STATEMENT EXECUTE FUNCTION {{s}}.msclkid_outbox_count_open();
    CREATE TRIGGER msclkid_outbox_open_delete AFTER DELETE ON {{s}}.msclkid_outbox
        REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION {{s}}.msclkid_outbox_count_open();
    CREATE TABLE {{s}}.msclkid_profiles (
        visitor_id TEXT PRIMARY KEY,
        msclkid TEXT NOT NULL,
        captured_at TIMESTAMPTZ NOT NULL
    );
    """,  # noqa: S608
)


def migrate(db: Database) -> int:
    """Bring ``db``'s schema to the newest version (creating the schema when the URL names one)."""

    def run(conn: psycopg.Connection[Any]) -> int:
        db.resolve_schema(conn)
        with conn.transaction():
            # Serialises concurrent openers (several hosts starting at once) for this schema.
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key("migrate", db.schema),))
            if db.config.schema is not None:
                conn.execute(db.q("CREATE SCHEMA IF NOT EXISTS {s}"))
            exists = conn.execute(
                "SELECT 1 FROM pg_tables WHERE schemaname = %s AND tablename = 'msclkid_outbox_meta'", (db.schema,)
            ).fetchone()
            if exists is None:
                conn.execute(
                    db.q("CREATE TABLE {s}.msclkid_outbox_meta (name TEXT PRIMARY KEY, value BIGINT NOT NULL)")
                )
                conn.execute(db.q("INSERT INTO {s}.msclkid_outbox_meta VALUES ('schema_version', 0)"))
            found = conn.execute(
                db.q("SELECT value FROM {s}.msclkid_outbox_meta WHERE name = 'schema_version' FOR UPDATE")
            ).fetchone()
            version = int(found[0]) if found is not None else 0
            if version > len(MIGRATIONS):
                raise _SchemaTooNew(version)
            for number in range(version, len(MIGRATIONS)):
                conn.execute(db.q(MIGRATIONS[number]))
            conn.execute(
                db.q("UPDATE {s}.msclkid_outbox_meta SET value = %s WHERE name = 'schema_version'"),
                (len(MIGRATIONS),),
            )
            return len(MIGRATIONS)

    try:
        return db.run("migration", run, on_error=lambda: None)
    except _SchemaTooNew as exc:
        # Raised inside run() so the transaction rolls back, then reported outside its retry loop.
        raise schema_too_new(exc.version, len(MIGRATIONS)) from None


class _SchemaTooNew(Exception):
    def __init__(self, version: int) -> None:
        super().__init__(version)
        self.version = version
