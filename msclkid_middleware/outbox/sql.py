"""The SQL both outbox stores run, written once over a small :class:`Dialect`.

SQLite and PostgreSQL differ here only in table names (PostgreSQL's are schema-qualified), the
placeholder style, the column types of ids and times, and how a time is bound.  What really differs
(claims with ``SKIP LOCKED``, the open-row counter, the enqueue's single statement, indexes) stays in
each store.  Every query takes named parameters; interpolated values are module constants or kind
and state names validated against :data:`~msclkid_middleware.outbox.base.KINDS` / ``STATES``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime

from msclkid_middleware.outbox.base import KINDS, PRIMARY_KINDS, STATES

__all__ = ["COLUMNS", "Dialect", "Queries", "in_list", "known_kinds", "one_of"]

#: The columns an enqueue writes, in the order of :attr:`Queries.insert_values`.
COLUMNS = (
    "kind, account, event_id, idempotency_key, payload, conversion_name, consent, state, attempts,"
    " next_attempt_at, expires_at, last_error_code, last_error_message, depends_on, created_at, updated_at"
)
#: The values of :data:`COLUMNS`, by the names of :func:`~msclkid_middleware.outbox.rows.insert_values`
#: (``None``: a new row has made no attempt yet).
_INSERT_NAMES = (
    "kind", "account", "event_id", "key", "payload", "conversion_name", "consent", "state", None,
    "now", "expires_at", "error_code", "error_message", "depends_on", "now", "now",
)  # fmt: skip


def in_list(values: Collection[str]) -> str:
    """``('a', 'b')`` for validated constants (kind and state names), never for input."""
    return "(" + ", ".join(f"'{v}'" for v in values) + ")"


def one_of(column: str, values: Collection[str]) -> str:
    """``column = 'a' OR column = 'b'``: :func:`in_list`'s test as comparisons (validated constants only)."""
    return " OR ".join(f"{column} = '{v}'" for v in values)


#: The kinds recorded once per shop event, as an SQL list (the unique index and the duplicate check).
PRIMARY_IN = in_list(sorted(PRIMARY_KINDS))


def known_kinds(kinds: Collection[str]) -> list[str]:
    """The names in ``kinds`` that are real kinds (a filter with none of them matches nothing)."""
    return [k for k in kinds if k in KINDS]


@dataclass(frozen=True, slots=True)
class Dialect:
    """What one database needs spelled its own way."""

    #: The outbox and token tables as statements name them.
    outbox: str
    tokens: str
    #: ``name`` -> a named placeholder (``:name`` / ``%(name)s``).
    param: Callable[[str], str]
    #: Column types: the row id, a reference to it, a point in time, a 64-bit counter.
    id_column: str
    ref_type: str
    time_type: str
    big_int: str
    #: An aware datetime -> the value bound for a time column (validates awareness).
    write_time: Callable[[datetime], object]
    #: A time column's value -> an aware UTC datetime (``None`` stays ``None``).
    read_time: Callable[[object], datetime | None]
    #: ``{`` / ``}`` as the statement text must spell them (PostgreSQL's templates are formatted).
    open_brace: str = "{"
    close_brace: str = "}"


class Queries:
    """The shared statements of one dialect (built once per store)."""

    def __init__(self, d: Dialect) -> None:
        self.d = d
        p = d.param
        t = d.outbox
        #: The VALUES of an enqueue, in the order of :data:`COLUMNS`.
        self.insert_values = ", ".join("0" if name is None else p(name) for name in _INSERT_NAMES)
        self.get = f"SELECT * FROM {t} WHERE id = {p('id')}"  # noqa: S608 (module constants only)
        self.counts = (
            f"SELECT kind, conversion_name, state, last_error_code, COUNT(*) AS n FROM {t}"  # noqa: S608
            " GROUP BY kind, conversion_name, state, last_error_code ORDER BY kind, conversion_name, state"
        )
        self.paused_accounts = f"SELECT DISTINCT account, kind, paused_reason FROM {t} WHERE state = 'paused'"  # noqa: S608
        # MIN over a union, not LEAST/MIN(a, b): either side may be NULL and must not hide the other.
        self.next_due = (
            f"SELECT MIN(due) AS due FROM (SELECT MIN(next_attempt_at) AS due FROM {t} WHERE state = 'pending'"  # noqa: S608
            f" UNION ALL SELECT MIN(lease_expires_at) FROM {t} WHERE state = 'in_flight') AS d"
        )
        self.existing = (
            f"SELECT * FROM {t} WHERE idempotency_key = {p('key')}"  # noqa: S608
            f" OR (kind = {p('kind')} AND account = {p('account')} AND event_id = {p('event_id')}"
            f" AND kind IN {PRIMARY_IN}) ORDER BY id LIMIT 1"
        )
        self.fail_orphans = (
            f"UPDATE {t} AS a SET state = 'dead', last_error_code = 'original_not_delivered',"  # noqa: S608
            " last_error_message = 'the original event ended ' || o.state || '; the adjustment cannot apply',"
            f" paused_reason = NULL, updated_at = {p('now')}"
            f" FROM {t} AS o"
            " WHERE o.id = a.depends_on AND a.state IN ('pending', 'paused')"
            " AND o.state IN ('rejected', 'dead', 'suppressed')"
        )
        self.prune = (
            f"DELETE FROM {t} AS t WHERE state IN ('delivered', 'rejected', 'dead', 'suppressed')"  # noqa: S608
            f" AND updated_at < {p('before')}"
            f" AND NOT EXISTS (SELECT 1 FROM {t} AS a WHERE a.depends_on = t.id)"
        )
        self.load_token = f"SELECT refresh_token, issued_at, serial, data FROM {d.tokens} WHERE name = {p('name')}"  # noqa: S608
        # Never regress: an older token (a slow process finishing late) does not overwrite a newer one.
        self.save_token = (
            f"INSERT INTO {d.tokens} AS t (name, refresh_token, issued_at, serial, data, updated_at)"  # noqa: S608
            f" VALUES ({p('name')}, {p('refresh_token')}, {p('issued_at')}, {p('serial')}, {p('data')}, {p('now')})"
            " ON CONFLICT (name) DO UPDATE SET refresh_token = excluded.refresh_token,"
            " issued_at = excluded.issued_at, serial = excluded.serial, data = excluded.data,"
            " updated_at = excluded.updated_at"
            " WHERE (excluded.serial, excluded.issued_at) > (t.serial, t.issued_at)"
        )

    def find(self, *, kind: bool, account: bool) -> str:
        p = self.d.param
        query = f"SELECT * FROM {self.d.outbox} WHERE event_id = {p('event_id')}"  # noqa: S608
        if kind:
            query += f" AND kind = {p('kind')}"
        if account:
            query += f" AND account = {p('account')}"
        return query + " ORDER BY id"

    def scan(self, *, since: bool, kinds: Collection[str] | None) -> str:
        """Keyset pages (``id > :last``): no transaction or cursor is held between pages."""
        p = self.d.param
        query = f"SELECT * FROM {self.d.outbox} WHERE id > {p('last')}"  # noqa: S608
        if since:
            query += f" AND created_at >= {p('since')}"
        if kinds is not None:
            query += f" AND kind IN {in_list(known_kinds(kinds) or ['-'])}"
        return query + f" ORDER BY id LIMIT {p('limit')}"

    def pause(self, kinds: Collection[str]) -> str:
        p = self.d.param
        return (
            f"UPDATE {self.d.outbox} SET state = 'paused', paused_reason = {p('reason')}, updated_at = {p('now')}"  # noqa: S608
            f" WHERE state = 'pending' AND account = {p('account')} AND kind IN {in_list(known_kinds(kinds))}"
        )

    def resume(self, *, account: bool, kinds: Collection[str] | None) -> str:
        p = self.d.param
        query = (
            f"UPDATE {self.d.outbox} SET state = 'pending', paused_reason = NULL,"  # noqa: S608
            f" next_attempt_at = {p('now')}, updated_at = {p('now')} WHERE state = 'paused'"
        )
        if account:
            query += f" AND account = {p('account')}"
        if kinds is not None:
            query += f" AND kind IN {in_list(known_kinds(kinds) or ['-'])}"
        return query

    def retry_dead(self, *, include_rejected: bool, event_id: bool, reset_attempts: bool) -> str:
        p = self.d.param
        states = ("dead", "rejected") if include_rejected else ("dead",)
        query = (
            f"UPDATE {self.d.outbox} SET state = 'pending', next_attempt_at = {p('now')}, updated_at = {p('now')}"  # noqa: S608
            + (", attempts = 0" if reset_attempts else "")
            + f" WHERE state IN {in_list(states)}"
        )
        if event_id:
            query += f" AND event_id = {p('event_id')}"
        return query

    def settle_assignments(self, value: Callable[[str], str]) -> str:
        """The ``SET`` list of a settle of the row aliased ``t``; ``value(field)`` names an outcome field.

        Fields: state, next_at, refund, code, message, tracking, warnings, paused_reason, now.
        """
        v = value
        return (
            f"state = {v('state')}, next_attempt_at = {v('next_at')},"
            f" attempts = CASE WHEN t.attempts > {v('refund')} THEN t.attempts - {v('refund')} ELSE 0 END,"
            " lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL,"
            # A retry or release keeps the previous error visible unless a new one is given.
            f" last_error_code = CASE WHEN {v('state')} = 'delivered' THEN NULL"
            f" ELSE COALESCE({v('code')}, t.last_error_code) END,"
            f" last_error_message = CASE WHEN {v('state')} = 'delivered' THEN NULL"
            f" ELSE COALESCE({v('message')}, t.last_error_message) END,"
            f" tracking_id = COALESCE({v('tracking')}, t.tracking_id),"
            f" warnings = CASE WHEN {v('state')} = 'delivered' THEN {v('warnings')} ELSE t.warnings END,"
            f" paused_reason = {v('paused_reason')},"
            f" delivered_at = CASE WHEN {v('state')} = 'delivered' THEN {v('now')} ELSE t.delivered_at END,"
            f" updated_at = {v('now')}"
        )

    def create_tables(self) -> str:
        """The outbox and token tables of schema version 1 (each store adds its own indexes)."""
        d = self.d
        return f"""
    CREATE TABLE {d.outbox} (
        id {d.id_column},
        kind TEXT NOT NULL CHECK (kind IN {in_list(KINDS)}),
        account TEXT NOT NULL,
        event_id TEXT NOT NULL,
        idempotency_key TEXT NOT NULL,
        payload TEXT NOT NULL,
        conversion_name TEXT,
        consent TEXT,
        state TEXT NOT NULL CHECK (state IN {in_list(STATES)}),
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at {d.time_type} NOT NULL,
        expires_at {d.time_type},
        lease_owner TEXT,
        lease_token TEXT,
        lease_expires_at {d.time_type},
        last_error_code TEXT,
        last_error_message TEXT,
        tracking_id TEXT,
        warnings TEXT NOT NULL DEFAULT '[]',
        paused_reason TEXT,
        depends_on {d.ref_type} REFERENCES {d.outbox} (id),
        created_at {d.time_type} NOT NULL,
        updated_at {d.time_type} NOT NULL,
        delivered_at {d.time_type}
    );
    CREATE TABLE {d.tokens} (
        name TEXT PRIMARY KEY,
        refresh_token TEXT NOT NULL,
        issued_at {d.time_type} NOT NULL,
        serial {d.big_int} NOT NULL DEFAULT 0,
        data TEXT NOT NULL DEFAULT '{d.open_brace}{d.close_brace}',
        updated_at {d.time_type} NOT NULL
    );
    """
