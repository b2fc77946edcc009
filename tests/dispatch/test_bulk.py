"""``dispatch.bulk.OfflineRows`` against the model path: a row it builds is the row ``record_offline`` stores.

The import builds its rows without the models; the models stay the rule set because the builder only builds a row
the model path accepts, and builds it byte for byte as that path stores it.  Thousands of rows mixing ordinary and
hostile values check both halves of that promise.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from msclkid_middleware.capture.clickid import Click
from msclkid_middleware.capture.consent import Consent
from msclkid_middleware.config import Settings
from msclkid_middleware.dispatch.bulk import OfflineRows
from msclkid_middleware.dispatch.tracker import ConversionTracker
from msclkid_middleware.errors import MsclkidError
from msclkid_middleware.ops.csv_import import ImportRow, check_row
from msclkid_middleware.outbox.rows import encode_row

GOALS = ("Purchase", 'Kauf "Ä" \\ ✓/ü')
HEX = "AB" * 32


def _values(now: datetime) -> dict[str, list[Any]]:
    hour = now - timedelta(hours=1, microseconds=-123456)
    return {
        "event_id": ["ord_1", "ord_2", 'é-ü "q" \\', "", "   ", "x" * 255, "x" * 256, None],
        "conversion_name": [*GOALS, "Lead", " Purchase", "Pur\x00chase", "x" * 101, 7],
        "conversion_time": [
            hour,
            now - timedelta(days=89, hours=23),
            now - timedelta(days=90),
            now - timedelta(days=90, seconds=1),
            now + timedelta(minutes=4, seconds=59),
            now + timedelta(minutes=5, seconds=1),
            hour.replace(tzinfo=None),
            hour.astimezone(timezone(timedelta(hours=2))),
            datetime(1, 1, 1, tzinfo=UTC),
        ],
        "value": [
            None,
            0.0,
            -0.0,
            10.5,
            1e-7,
            999_999_999_999.0,
            1e12,
            float("nan"),
            float("inf"),
            -1.0,
            5,
            Decimal("1.5"),
        ],
        "currency": [None, "USD", "usd", "EUR", "XXX", "US", "U$D"],
        "click": [None, "a" * 32, "Ab-_9", "bad id!", "a" * 65, "", Click("c" * 32, hour, "profile"), 12],
        "email": [None, "Customer.1+promo@Example.com", " ÄÖ@exämple.com ", "no-at", HEX, "a@b.c\x01"],
        "phone": [None, "+14255551234", "+1 (425) 555-1234", "12345", "0044 20 7946 0958"],
        "hashed_email": [None, HEX, HEX.lower(), "not-hex"],
        "hashed_phone": [None, "cd" * 32, "xyz"],
    }


def _model(tracker: ConversionTracker, arguments: dict[str, Any]) -> Any:
    try:
        return tracker.offline_row(**arguments)
    except (MsclkidError, ValueError, TypeError) as exc:
        return exc


@pytest.fixture
def bulk_tracker(tmp_path: Path, clock: Any) -> Any:
    settings = Settings(conversion_goals=GOALS, account_id="123", customer_id="456")
    tracker = ConversionTracker(
        settings=settings, store_url=f"sqlite:///{tmp_path / 'o.db'}", microsoft=False, uet=False, clock=clock
    )
    yield tracker
    tracker.close()


def test_a_built_row_is_the_row_record_offline_stores(bulk_tracker: ConversionTracker, clock: Any) -> None:
    rows = OfflineRows.of(bulk_tracker)
    values = _values(clock())
    rng = random.Random(21)
    built = 0
    for n in range(4000):
        # Mostly ordinary rows, each field hostile now and then.
        arguments = {
            name: (choices[0] if rng.random() < 0.85 else rng.choice(choices)) for name, choices in values.items()
        }
        if n % 3 == 0:
            arguments["click"] = None
            arguments["email"] = rng.choice(values["email"][1:])
        fast = rows.row(**arguments)
        model = _model(bulk_tracker, arguments)
        if fast is None:
            continue
        built += 1
        assert not isinstance(model, Exception), (arguments, model)
        assert fast == encode_row(model), arguments  # payload and consent JSON byte for byte, key, expiry, state
        # validate's checks (what import-csv runs before record_offline on the model path) pass too.
        check_row(ImportRow(n, **arguments), goals=GOALS, now=clock(), default_region=None)
    assert built > 500  # hundreds of rows built, each compared


def test_ordinary_rows_are_built_and_the_rest_left_to_the_models(bulk_tracker: ConversionTracker, clock: Any) -> None:
    rows = OfflineRows.of(bulk_tracker)
    when = clock() - timedelta(hours=1)
    ordinary: dict[str, Any] = {
        "event_id": "ord_1",
        "conversion_name": "Purchase",
        "conversion_time": when,
        "value": 10.0,
        "currency": "usd",
        "click": "a" * 32,
        "email": None,
        "phone": None,
        "hashed_email": None,
        "hashed_phone": None,
    }
    assert rows.row(**ordinary) is not None
    assert rows.row(**{**ordinary, "click": None, "email": "john@contoso.com"}) is not None
    assert rows.row(**{**ordinary, "click": Click("b" * 32, when, "profile")}) is not None
    for hostile in (
        {"conversion_name": "Lead"},
        {"click": None},
        {"value": float("nan")},
        {"currency": "XXX"},
        {"conversion_time": when.replace(tzinfo=None)},
        {"conversion_time": clock() - timedelta(days=91)},
        {"event_id": "x" * 256},
        {"email": "a@b.c", "hashed_email": HEX},
    ):
        assert rows.row(**{**ordinary, **hostile}) is None, hostile
    denied = OfflineRows(account="1", goals=GOALS, consent=Consent("denied", "default"), clock=clock)
    assert denied.row(**ordinary) is None  # consent drops what it must: the model path stores it suppressed
