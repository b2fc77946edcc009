"""The shared recipe: wire times, module exports, doctests and the documented examples."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from msclkid_middleware import conversions
from msclkid_middleware.conversions import (
    adjustments,
    base,
    format_time,
    identifiers,
    offline,
    parse_time,
    uet,
)
from msclkid_middleware.errors import ValidationError
from tests.conversions.conversions_helpers import CLICK

# --- time helpers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(datetime(2026, 11, 28, 12, 0, 5, tzinfo=UTC), "2026-11-28T12:00:05Z", id="utc"),
        pytest.param(datetime(2026, 11, 28, 12, 0, 5, 999999, tzinfo=UTC), "2026-11-28T12:00:05Z", id="truncates"),
        pytest.param(
            datetime(2026, 11, 28, 13, 0, 5, tzinfo=timezone(timedelta(hours=1))), "2026-11-28T12:00:05Z", id="cet"
        ),
        pytest.param(
            datetime(2026, 11, 27, 19, 0, 0, tzinfo=timezone(timedelta(hours=-8))),
            "2026-11-28T03:00:00Z",
            id="pst-crosses-midnight",
        ),
    ],
)
def test_format_time(value: datetime, expected: str) -> None:
    assert format_time(value) == expected
    assert format_time(parse_time(expected)) == expected


@settings(deadline=None)
@given(
    st.datetimes(
        timezones=st.sampled_from([UTC, timezone(timedelta(hours=14)), timezone(timedelta(hours=-12, minutes=-30))])
    )
)
def test_format_time_round_trips_any_aware_datetime(value: datetime) -> None:
    try:
        text = format_time(value)
    except ValidationError as exc:
        # Only instants that do not exist in UTC (before year 1 or after year 9999) are refused.
        assert exc.field == "time"  # noqa: PT017 - the property needs both outcomes
        return
    assert len(text) == 20
    assert parse_time(text) == value.replace(microsecond=0)
    assert format_time(parse_time(text)) == text


def test_format_time_refuses_naive() -> None:
    with pytest.raises(ValidationError, match="timezone-aware"):
        format_time(datetime(2026, 11, 28, 12, 0))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("2026-11-28T12:00:05Z", datetime(2026, 11, 28, 12, 0, 5, tzinfo=UTC), id="z"),
        pytest.param("2026-11-28T13:00:05+01:00", datetime(2026, 11, 28, 12, 0, 5, tzinfo=UTC), id="offset"),
        pytest.param("2026-11-28T12:00:05.1234567Z", datetime(2026, 11, 28, 12, 0, 5, tzinfo=UTC), id="dotnet-ticks"),
    ],
)
def test_parse_time(text: str, expected: datetime) -> None:
    assert parse_time(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("2026-11-28T12:00:05", id="no-zone"),
        pytest.param("2026-11-28", id="date-only"),
        pytest.param("2026-02-30T12:00:00Z", id="impossible-date"),
        pytest.param(1795869788, id="number"),
        pytest.param("yesterday", id="words"),
    ],
)
def test_parse_time_rejects(text: object) -> None:
    with pytest.raises(ValidationError) as info:
        parse_time(text, "ConversionTime")
    assert info.value.field == "ConversionTime"


def _parse_time_in_full(value: object) -> datetime | str:
    """parse_time as it was before its fast path (the general reading), or the ValidationError's message."""
    try:
        if not isinstance(value, str) or base._WIRE_TIME.fullmatch(value) is None:
            raise ValidationError("time", "must be an ISO 8601 date-time with a zone, such as 2026-11-28T12:00:00Z")
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise ValidationError("time", "is not a valid calendar date-time") from None
        return base.utc_time(parsed, "time")
    except ValidationError as exc:
        return str(exc)


def _parsed(value: object) -> datetime | str:
    try:
        return parse_time(value)
    except ValidationError as exc:
        return str(exc)


_DIGITS = st.text(st.sampled_from("0123456789"), min_size=2, max_size=2)


@settings(max_examples=500, deadline=None)
@given(
    st.one_of(
        # format_time's own shape with any digits (impossible dates and times included), and near misses.
        st.builds(
            lambda y, mo, d, h, mi, s, sep, zone: f"{y}-{mo}-{d}{sep}{h}:{mi}:{s}{zone}",
            st.text(st.sampled_from("0123456789"), min_size=4, max_size=4),
            _DIGITS,
            _DIGITS,
            _DIGITS,
            _DIGITS,
            _DIGITS,
            st.sampled_from(["T", "T", "T", " ", "t"]),
            st.sampled_from(["Z", "Z", "Z", "z", "+00:00", "-05:30", ".5Z", ""]),
        ),
        st.datetimes(timezones=st.just(UTC)).map(format_time),
        st.text(max_size=24),
    )
)
def test_parse_time_fast_path_reads_like_the_full_reading(text: str) -> None:
    """format_time's own form (UTC, whole seconds, Z) is read directly; the answer, or the refusal, is the same."""
    assert _parsed(text) == _parse_time_in_full(text)
    if not isinstance(_parsed(text), str):
        assert _parsed(text).tzinfo is UTC  # type: ignore[union-attr]


def test_module_exports_exist() -> None:
    for module in (conversions, base, identifiers, offline, adjustments, uet):
        for name in module.__all__:
            assert hasattr(module, name), name


def test_doctests() -> None:
    import doctest

    result = doctest.testmod(base)
    assert result.attempted >= 2
    assert result.failed == 0


def test_docs_examples_run() -> None:
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "models.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```python\n(.*?)^```", text, re.S | re.M)
    assert len(blocks) == 2
    namespace: dict[str, Any] = {}
    for block in blocks:
        exec(compile(block, "docs/models.md", "exec"), namespace)  # noqa: S102 - our own documentation
    assert namespace["refund"].value == 99.95
    assert namespace["event"].to_wire()["adStorageConsent"] == "G"
    assert namespace["loaded"] == namespace["sale"]


def test_money_as_decimal_is_accepted_and_sent_as_a_double() -> None:
    """Shops keep order totals as Decimal (Django's DecimalField, SQL NUMERIC); Microsoft wants a JSON double."""
    from datetime import timedelta
    from decimal import Decimal

    import pytest

    from msclkid_middleware.conversions import OfflineConversion, OfflineConversionAdjustment
    from msclkid_middleware.errors import ValidationError

    when = datetime.now(UTC) - timedelta(hours=1)
    wire = OfflineConversion(
        conversion_name="Purchase", conversion_time=when, value=Decimal("149.95"), currency="USD", msclkid=CLICK
    ).to_wire()
    assert wire["ConversionValue"] == 149.95
    assert type(wire["ConversionValue"]) is float
    restate = OfflineConversionAdjustment(
        adjustment_type="Restate",
        conversion_name="Purchase",
        conversion_time=when,
        adjustment_time=when + timedelta(minutes=5),
        value=Decimal("99.5"),
        currency="USD",
        msclkid=CLICK,
    ).to_wire()
    assert restate["AdjustmentValue"] == 99.5
    for bad in (Decimal("NaN"), Decimal("sNaN"), Decimal("Infinity"), Decimal("-1")):
        with pytest.raises(ValidationError):
            OfflineConversion(conversion_name="Purchase", conversion_time=when, value=bad, msclkid=CLICK)
