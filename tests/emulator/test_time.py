"""The emulator's own ISO 8601 parser (independent of the toolkit's models)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from msclkid_middleware.emulator.clock import iso, parse_datetime


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("2026-01-15T17:02:35Z", datetime(2026, 1, 15, 17, 2, 35, tzinfo=UTC), id="z"),
        pytest.param("2026-01-15T17:02:35z", datetime(2026, 1, 15, 17, 2, 35, tzinfo=UTC), id="lower-z"),
        pytest.param(
            "2026-01-15T17:02:35.6853793Z", datetime(2026, 1, 15, 17, 2, 35, 685379, tzinfo=UTC), id="seven-digits"
        ),
        pytest.param(
            "2026-01-15T17:02:35.1234567+01:00",
            datetime(2026, 1, 15, 16, 2, 35, 123456, tzinfo=UTC),
            id="seven-digits-offset",
        ),
        pytest.param("2026-01-15 17:02:35+0500", datetime(2026, 1, 15, 12, 2, 35, tzinfo=UTC), id="compact-offset"),
        pytest.param("2026-01-15T17:02:35-01:00", datetime(2026, 1, 15, 18, 2, 35, tzinfo=UTC), id="negative"),
        pytest.param("2026-01-15T17:02:35", datetime(2026, 1, 15, 17, 2, 35, tzinfo=UTC), id="naive-is-utc"),
        pytest.param("2026-01-15T17:02", datetime(2026, 1, 15, 17, 2, tzinfo=UTC), id="no-seconds"),
    ],
)
def test_accepted_forms(text: str, expected: datetime) -> None:
    assert parse_datetime(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "2026-01-15",
        "15/01/2026 17:02:35",
        "2026-01-15T17:02:35.12345678Z",
        "2026-13-01T00:00:00Z",
        "2026-01-15T25:00:00Z",
        "20260115T170235Z",
        "2026-W03-4T17:02:35Z",
        1767793837,
        None,
    ],
)
def test_rejected_forms(text: object) -> None:
    with pytest.raises(ValueError):
        parse_datetime(text)


def test_iso_round_trip() -> None:
    value = datetime(2026, 1, 15, 17, 2, 35, 123456, tzinfo=UTC)
    assert iso(value) == "2026-01-15T17:02:35.123456Z"
    assert parse_datetime(iso(value)) == value
