"""Rows in and out of the database, for both stores: values bound to statements, records decoded.

JSON columns (payload, consent, warnings, token data) are written compact with sorted keys.  Times
go through the store's :class:`~msclkid_middleware.outbox.sql.Dialect` (POSIX seconds in SQLite,
``timestamptz`` in PostgreSQL); what comes back is always an aware UTC datetime.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from msclkid_middleware.conversions import parse_time
from msclkid_middleware.outbox.base import ClaimedRow, EncodedRow, NewRow, OutboxRow, Outcome, StateCount, TokenRecord

__all__ = [
    "Record",
    "claimed_of",
    "decode_claimed",
    "decode_row",
    "decode_token",
    "dumps",
    "encode_row",
    "event_time",
    "insert_values",
    "loads",
    "settle_groups",
    "settle_values",
    "state_count",
    "token_values",
]


class Record(Protocol):
    """A fetched record read by column name (``sqlite3.Row``, or a dict row from the PostgreSQL driver)."""

    def __getitem__(self, column: str, /) -> Any: ...


ReadTime = Callable[[Any], datetime | None]
WriteTime = Callable[[datetime], object]


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _required(read_time: ReadTime, value: Any) -> datetime:
    found = read_time(value)
    if found is None:  # pragma: no cover - the column is NOT NULL
        raise ValueError("a NOT NULL time column was NULL")
    return found


def decode_row(r: Record, read_time: ReadTime) -> OutboxRow:
    """A record of ``SELECT *`` (any mapping by column name) -> :class:`OutboxRow`."""
    return OutboxRow(
        id=r["id"],
        kind=r["kind"],
        account=r["account"],
        event_id=r["event_id"],
        idempotency_key=r["idempotency_key"],
        payload=json.loads(r["payload"]),
        conversion_name=r["conversion_name"],
        consent=loads(r["consent"]),
        state=r["state"],
        attempts=r["attempts"],
        next_attempt_at=_required(read_time, r["next_attempt_at"]),
        expires_at=read_time(r["expires_at"]),
        lease_owner=r["lease_owner"],
        lease_token=r["lease_token"],
        lease_expires_at=read_time(r["lease_expires_at"]),
        last_error_code=r["last_error_code"],
        last_error_message=r["last_error_message"],
        tracking_id=r["tracking_id"],
        warnings=tuple(json.loads(r["warnings"] or "[]")),
        paused_reason=r["paused_reason"],
        depends_on=r["depends_on"],
        created_at=_required(read_time, r["created_at"]),
        updated_at=_required(read_time, r["updated_at"]),
        delivered_at=read_time(r["delivered_at"]),
    )


def event_time(kind: str, conversion_time: object, adjustment_time: object, uet_time: object) -> datetime | None:
    """The latest time Microsoft checks against "not in the future", from the payload's own fields.

    UET: ``eventTime`` (whole seconds); an offline conversion: ``ConversionTime`` (it has no ``AdjustmentTime``,
    so the SQLite claim does not read one); an adjustment: the later of ``ConversionTime`` and ``AdjustmentTime``.
    ``None`` when the payload has none (or an unreadable one: Microsoft decides).
    """
    if kind == "offline":
        adjustment_time = None
    try:
        if kind == "uet":
            ok = isinstance(uet_time, int)
            return datetime.fromtimestamp(uet_time, UTC) if ok else None  # type: ignore[arg-type]
        times = [parse_time(value, "time") for value in (conversion_time, adjustment_time) if value is not None]
    except (ValueError, OverflowError, OSError):
        return None
    return max(times) if times else None


def decode_claimed(r: Record, read_time: ReadTime) -> ClaimedRow:
    """A record of a delivery claim (the columns of ``claim_batch``) -> :class:`ClaimedRow`."""
    kind = r["kind"]
    return ClaimedRow(
        r["id"],
        kind,
        r["account"],
        r["event_id"],
        r["lease_token"],
        r["attempts"],
        r["conversion_name"],
        _required(read_time, r["created_at"]),
        read_time(r["expires_at"]),
        event_time(kind, r["conversion_time"], r["adjustment_time"], r["uet_time"]),
        r["payload"],
    )


def claimed_of(row: OutboxRow) -> ClaimedRow:
    """The delivery view of a row read in full (rows claimed with ``claim()``, as ``msclkid send-test`` does)."""
    p = row.payload
    return ClaimedRow(
        row.id,
        row.kind,
        row.account,
        row.event_id,
        row.lease_token or "",
        row.attempts,
        row.conversion_name,
        row.created_at,
        row.expires_at,
        event_time(row.kind, p.get("ConversionTime"), p.get("AdjustmentTime"), p.get("eventTime")),
        dumps(dict(p)),
    )


def encode_row(row: NewRow | EncodedRow) -> EncodedRow:
    """``row`` as a bulk insert binds it (an :class:`EncodedRow` is returned as it is)."""
    if isinstance(row, EncodedRow):
        return row
    consent = None if row.consent is None else dumps(dict(row.consent))
    return EncodedRow(
        row.kind, row.account, row.event_id, row.idempotency_key, dumps(dict(row.payload)), row.conversion_name,
        consent, row.state, row.expires_at, row.error_code, row.error_message, row.depends_on,
    )  # fmt: skip


def insert_values(row: NewRow, now: datetime, write_time: WriteTime) -> dict[str, Any]:
    """The named values of an enqueue (``now`` is both the first due time and the creation time)."""
    return {
        "kind": row.kind,
        "account": row.account,
        "event_id": row.event_id,
        "key": row.idempotency_key,
        "payload": dumps(dict(row.payload)),
        "conversion_name": row.conversion_name,
        "consent": None if row.consent is None else dumps(dict(row.consent)),
        "state": row.state,
        "now": write_time(now),
        "expires_at": None if row.expires_at is None else write_time(row.expires_at),
        "error_code": row.error_code,
        "error_message": row.error_message,
        "depends_on": row.depends_on,
    }


def settle_values(outcome: Outcome, now: datetime, write_time: WriteTime) -> dict[str, Any]:
    """The named values of one outcome (the fields ``Queries.settle_assignments`` names)."""
    return {
        "id": outcome.row_id,
        "token": outcome.lease_token,
        "state": outcome.state,
        # No next attempt time: release the row at once.
        "next_at": write_time(now if outcome.next_attempt_at is None else outcome.next_attempt_at),
        "code": outcome.error_code,
        "message": outcome.error_message,
        "tracking": outcome.tracking_id,
        "warnings": dumps(list(outcome.warnings)),
        "refund": 1 if outcome.refund_attempt else 0,
        "paused_reason": outcome.error_message if outcome.state == "paused" else None,
        "now": write_time(now),
    }


def settle_groups(outcomes: Sequence[Outcome], now: datetime, write_time: WriteTime) -> list[dict[str, Any]]:
    """Outcomes with the same values but for the row, as one set of values each with the rows' ``ids``.

    A batch's deliveries share their state, time and TrackingId (and the claim's lease token): they are
    settled by one statement, not one per row.
    """
    groups: dict[tuple[Any, ...], tuple[Outcome, list[int]]] = {}
    for o in outcomes:
        key: tuple[Any, ...] = (o.lease_token, o.state, o.next_attempt_at, o.error_code, o.error_message)
        key += (o.tracking_id, o.warnings, o.refund_attempt)
        found = groups.get(key)
        if found is None:
            groups[key] = (o, [o.row_id])
        else:
            found[1].append(o.row_id)
    settled = []
    for first, ids in groups.values():
        values = settle_values(first, now, write_time)
        del values["id"]
        values["ids"] = ids
        settled.append(values)
    return settled


def state_count(r: Record) -> StateCount:
    return StateCount(r["kind"], r["conversion_name"], r["state"], r["last_error_code"], int(r["n"]))


def decode_token(r: Record, read_time: ReadTime) -> TokenRecord:
    return TokenRecord(
        r["refresh_token"], _required(read_time, r["issued_at"]), int(r["serial"]), json.loads(r["data"])
    )


def token_values(name: str, record: TokenRecord, now: datetime, write_time: WriteTime) -> dict[str, Any]:
    return {
        "name": name,
        "refresh_token": record.refresh_token,
        "issued_at": write_time(record.issued_at),
        "serial": record.serial,
        "data": dumps(dict(record.data)),
        "now": write_time(now),
    }
