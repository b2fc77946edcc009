"""CSV helpers: spreadsheet safety, time zones, Microsoft's time formats."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from msclkid_middleware.errors import ConfigError, ValidationError
from msclkid_middleware.ops.csv_format import parse_datetime_cell, parse_time_zone, safe_cell


@pytest.mark.parametrize(
    ("cell", "safe"),
    [
        pytest.param("=1+1", "'=1+1", id="equals"),
        pytest.param("+cmd", "'+cmd", id="plus"),
        pytest.param("-2", "'-2", id="minus"),
        pytest.param("@SUM(A1)", "'@SUM(A1)", id="at"),
        pytest.param("\tx", "'\tx", id="tab"),
        pytest.param("Purchase", "Purchase", id="plain"),
        pytest.param("", "", id="empty"),
    ],
)
def test_safe_cell(cell: str, safe: str) -> None:
    assert safe_cell(cell) == safe


def test_time_zones() -> None:
    assert parse_time_zone(None) is UTC
    assert parse_time_zone("utc") is UTC
    assert parse_time_zone("+0530").utcoffset(None) == timedelta(hours=5, minutes=30)
    assert parse_time_zone("-05:00").utcoffset(None) == timedelta(hours=-5)
    berlin = parse_time_zone("Europe/Berlin")
    assert datetime(2026, 7, 1, tzinfo=berlin).utcoffset() == timedelta(hours=2)
    for bad in ("+2500", "EasternTimeUSCanada", "../etc/passwd"):
        with pytest.raises(ConfigError):
            parse_time_zone(bad)


@pytest.mark.parametrize(
    "text",
    [
        "06/01/2017 1:00:00 PM",
        "Jun 01, 2017 1:00:00 PM",
        "06/01/2017 13:00:00",
        "2017-06-01 13:00:00",
        "2017-06-01T13:00:00",
        "2017-06-01 18:00:00+0500",
        "2017-06-01T12:00:00-0100",
        "2017-06-01T13:00:00Z",
    ],
)
def test_microsofts_time_formats(text: str) -> None:
    assert parse_datetime_cell(text, UTC, "t") == datetime(2017, 6, 1, 13, 0, tzinfo=UTC)


def test_naive_times_use_the_given_zone() -> None:
    zone = parse_time_zone("America/New_York")
    assert parse_datetime_cell("2026-01-15 08:00:00", zone, "t") == datetime(2026, 1, 15, 13, 0, tzinfo=UTC)
    with pytest.raises(ValidationError, match="supported format"):
        parse_datetime_cell("15.01.2026", UTC, "t")


def test_the_spaced_offset_pattern_is_skipped_only_where_it_cannot_match() -> None:
    """parse_datetime_cell runs ``_SPACED_OFFSET`` only when a sign can sit where the offset starts: every string the
    shortcut skips is one the pattern does not match."""
    import random
    import re

    pattern = re.compile(r"(.*\d)\s+([+-]\d{2}:?\d{2})")  # csv_format's pattern
    rng = random.Random(21)
    alphabet = "0123456789:+- \tT/APM,Zx"
    samples = ["2017-06-01 13:00:00 -0500", "2017-06-01 13:00:00 +05:00", "2017-06-01 13:00:00", "1 +0000", ""]
    samples += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 28))) for _ in range(20000)]
    for text in samples:
        if not text[-6:-4].strip("0123456789:"):
            assert pattern.fullmatch(text) is None, text
    assert parse_datetime_cell("2017-06-01 13:00:00 -0500", UTC, "t") == datetime(2017, 6, 1, 18, tzinfo=UTC)
