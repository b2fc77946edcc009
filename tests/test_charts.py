"""The inline-SVG renderer: self-contained, labelled, accessible, and safe with hostile labels."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from msclkid_middleware.charts import Bar, Series, bar_chart, histogram, stacked_bar_chart

SVG = "{http://www.w3.org/2000/svg}"


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)  # noqa: S314 - our own output, parsed to prove it is well-formed XML


def test_a_bar_chart_is_titled_described_and_has_a_tooltip_per_bar() -> None:
    svg = bar_chart(
        "Codes",
        [Bar("5604", 3), Bar("5606", 1, "5606 OfflineConversionNameInvalid: 1")],
        x_label="code",
        y_label="events",
        ident="c",
    )
    root = parse(svg)
    assert root.get("role") == "img"
    assert root.get("aria-labelledby") == "c-t c-d"
    assert root.find(f"{SVG}title").text == "Codes"  # type: ignore[union-attr]
    assert root.find(f"{SVG}desc").text == "5604: 3; 5606: 1"  # type: ignore[union-attr]
    tips = [t.text for rect in root.iter(f"{SVG}rect") for t in rect.iter(f"{SVG}title")]
    assert tips == ["5604: 3", "5606 OfflineConversionNameInvalid: 1"]
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert "code" in texts
    assert "events" in texts
    assert "5604" in texts  # category labels


def test_no_script_no_style_attribute_nothing_external() -> None:
    svg = stacked_bar_chart(
        "Per day",
        ["Dec 01", "Dec 02"],
        [Series("delivered", [3, 4]), Series("rejected", [1, 0], "#d55e00")],
        x_label="day",
        y_label="events",
        ident="d",
    )
    assert "<script" not in svg
    assert "style=" not in svg
    assert not re.search(r"(href|src)=", svg)
    root = parse(svg)
    assert root.get("width") == "100%"
    assert root.get("viewBox", "").startswith("0 0 ")


def test_stacked_bars_sum_to_the_total_and_name_each_segment() -> None:
    svg = stacked_bar_chart(
        "Mix", ["Purchase"], [Series("click", [3]), Series("hashed", [1])], x_label="goal", y_label="n", ident="m"
    )
    tips = [t.text for rect in parse(svg).iter(f"{SVG}rect") for t in rect.iter(f"{SVG}title")]
    assert tips == ["Purchase: click 3 of 4", "Purchase: hashed 1 of 4"]
    assert "click" in [t.text for t in parse(svg).iter(f"{SVG}text")]  # the legend


def test_histogram_shares_and_the_empty_state() -> None:
    svg = histogram("Latency", [("< 1 min", 3), ("1-5 min", 1)], x_label="time", ident="h")
    tips = [t.text for rect in parse(svg).iter(f"{SVG}rect") for t in rect.iter(f"{SVG}title")]
    assert tips == ["< 1 min: 3 (75%)", "1-5 min: 1 (25%)"]
    empty = histogram("Latency", [("< 1 min", 0)], x_label="time", ident="e", empty="nothing delivered")
    assert "nothing delivered" in [t.text for t in parse(empty).iter(f"{SVG}text")]
    assert parse(empty).find(f"{SVG}desc").text == "nothing delivered"  # type: ignore[union-attr]


def test_hostile_labels_are_escaped() -> None:
    hostile = '<script>alert("x")</script>'
    svg = bar_chart(hostile, [Bar(hostile, 1)], x_label=hostile, y_label="n", ident="x")
    assert "<script>" not in svg
    assert parse(svg).find(f"{SVG}title").text == hostile  # type: ignore[union-attr]


def test_axis_ticks_are_whole_numbers_for_small_counts() -> None:
    svg = bar_chart("n", [Bar("a", 3)], x_label="x", y_label="y", ident="t")
    ticks = [t.text for t in parse(svg).iter(f"{SVG}text") if t.get("text-anchor") == "end"]
    assert ticks == ["0", "1", "2", "3", "4"]
