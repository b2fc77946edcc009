"""A small inline-SVG chart renderer: bars, stacked bars and histograms, self-contained and accessible.

Shared by the HTML report (``ops.html_report``) and the emulator's dashboard, so it lives in the foundation and
imports nothing but the standard library (the emulator may import only the foundation).

Why our own and not a charting library: the output has to be one file that works offline and under a strict
Content-Security-Policy (no script, no style attribute, only a hashed ``<style>`` element in the page).  pygal
(the well-kept pure-Python SVG library) links an external tooltip script by default (``js`` config) and styles
through CSS in the SVG; matplotlib pulls numpy and a font stack into a middleware package for a few bar
charts.  Three chart kinds are ~200 lines here.

Every chart is an ``<svg role="img">`` with a ``<title>`` and a ``<desc>`` (what screen readers read), axis
labels, a legend for stacked series, and a ``<title>`` on every bar (the browser's tooltip: no script).  Colours
are SVG presentation attributes, not ``style=`` (a CSP without ``'unsafe-inline'`` blocks style attributes but
not presentation attributes).  Every text goes through :func:`html.escape`: the values may be hostile.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["PALETTE", "Bar", "Series", "bar_chart", "histogram", "stacked_bar_chart"]

#: Colour-blind-safe (Okabe-Ito) colours, in the order series get them unless they name their own.
PALETTE = ("#0072b2", "#e69f00", "#009e73", "#d55e00", "#cc79a7", "#56b4e9", "#f0e442", "#000000")
_W = 480
_LEFT, _RIGHT, _TOP = 56, 12, 40


@dataclass(frozen=True, slots=True)
class Bar:
    """One bar: its category ``label``, ``value`` and (optional) ``tooltip`` text."""

    label: str
    value: float
    tooltip: str | None = None


@dataclass(frozen=True, slots=True)
class Series:
    """One stacked series: its ``name`` (the legend), a value per category and an optional colour."""

    name: str
    values: Sequence[float]
    colour: str | None = None


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _number(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def _nice_max(value: float) -> float:
    """The axis top: four ticks of 1, 2 or 5 times a power of ten (at least 1: the values are mostly counts)."""
    if value <= 0:
        return 4.0
    raw = value / 4
    power = 10 ** math.floor(math.log10(raw))
    for step in (1, 2, 5, 10):
        if raw <= step * power:
            return float(max(1.0, step * power) * 4)
    return float(max(1.0, 10 * power) * 4)  # pragma: no cover - the loop always returns


def _frame(
    title: str,
    description: str,
    x_label: str,
    y_label: str,
    top: float,
    plot_h: int,
    body: str,
    *,
    legend: str = "",
    legend_rows: int = 0,
    ident: str,
) -> str:
    height = _TOP + plot_h + 48 + (18 * legend_rows + 8 if legend_rows else 0)
    ticks = []
    for i in range(5):
        value = top * i / 4
        y = _TOP + plot_h - plot_h * i / 4
        ticks.append(
            f'<line x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd" stroke-width="1"/>'
            f'<text x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="12" fill="#444">'
            f"{_e(_number(value))}</text>"
        )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_W} {height}" width="100%" role="img"'
        f' aria-labelledby="{ident}-t {ident}-d" class="chart" font-family="system-ui, sans-serif">'
        f'<title id="{ident}-t">{_e(title)}</title><desc id="{ident}-d">{_e(description)}</desc>'
        f'<text x="{_W / 2}" y="18" text-anchor="middle" font-size="15" font-weight="bold" fill="#111">'
        f"{_e(title)}</text>"
        f"{''.join(ticks)}"
        f'<line x1="{_LEFT}" x2="{_LEFT}" y1="{_TOP}" y2="{_TOP + plot_h}" stroke="#444" stroke-width="1"/>'
        f'<line x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{_TOP + plot_h}" y2="{_TOP + plot_h}" stroke="#444"'
        ' stroke-width="1"/>'
        f"{body}"
        f'<text x="{(_LEFT + _W - _RIGHT) / 2}" y="{_TOP + plot_h + 38}" text-anchor="middle" font-size="12"'
        ' fill="#222">'
        f"{_e(x_label)}</text>"
        f'<text transform="translate(14 {_TOP + plot_h / 2}) rotate(-90)" text-anchor="middle" font-size="12"'
        f' fill="#222">{_e(y_label)}</text>'
        f"{legend}</svg>"
    )


def _category_labels(labels: Sequence[str], plot_h: int, slot: float) -> str:
    # Long or many labels would overlap: show every n-th and shorten them; each bar's tooltip has the full label.
    every = max(1, math.ceil(len(labels) * 44 / (_W - _LEFT - _RIGHT)))
    limit = max(4, int(slot * every / 7))
    out = []
    for i, label in enumerate(labels):
        if i % every:
            continue
        text = label if len(label) <= limit else label[: limit - 1] + "\u2026"
        x = _LEFT + slot * (i + 0.5)
        out.append(
            f'<text x="{x:.1f}" y="{_TOP + plot_h + 16}" text-anchor="middle" font-size="12" fill="#444">'
            f"{_e(text)}</text>"
        )
    return "".join(out)


def bar_chart(
    title: str,
    bars: Sequence[Bar],
    *,
    x_label: str,
    y_label: str,
    ident: str,
    colour: str = PALETTE[0],
    height: int = 300,
    empty: str = "nothing to show",
) -> str:
    """A bar per category; ``ident`` makes the ids of the title and description unique in the page."""
    plot_h = height - _TOP - 48
    top = _nice_max(max((b.value for b in bars), default=0))
    slot = (_W - _LEFT - _RIGHT) / max(1, len(bars))
    parts = []
    for i, b in enumerate(bars):
        h = plot_h * b.value / top
        x = _LEFT + slot * i + slot * 0.15
        tip = b.tooltip or f"{b.label}: {_number(b.value)}"
        parts.append(
            f'<rect x="{x:.1f}" y="{_TOP + plot_h - h:.1f}" width="{slot * 0.7:.1f}" height="{h:.1f}"'
            f' fill="{_e(colour)}"><title>{_e(tip)}</title></rect>'
        )
    parts.append(_category_labels([b.label for b in bars], plot_h, slot))
    if not bars:
        parts.append(_empty(plot_h, empty))
    description = "; ".join(f"{b.label}: {_number(b.value)}" for b in bars) or empty
    return _frame(title, description, x_label, y_label, top, plot_h, "".join(parts), ident=ident)


def histogram(
    title: str,
    bins: Sequence[tuple[str, int]],
    *,
    x_label: str,
    y_label: str = "events",
    ident: str,
    colour: str = PALETTE[2],
    height: int = 300,
    empty: str = "nothing to show",
) -> str:
    """Counts per (labelled) bin, drawn as touching bars."""
    total = sum(n for _, n in bins) or 1
    bars = [Bar(label, n, f"{label}: {n} ({n / total:.0%})") for label, n in bins]
    if not any(n for _, n in bins):
        bars = []
    return bar_chart(
        title, bars, x_label=x_label, y_label=y_label, ident=ident, colour=colour, height=height, empty=empty
    )


def stacked_bar_chart(
    title: str,
    categories: Sequence[str],
    series: Sequence[Series],
    *,
    x_label: str,
    y_label: str,
    ident: str,
    height: int = 320,
    empty: str = "nothing to show",
    unit: str = "",
) -> str:
    """One bar per category with a segment per series (a legend names the series)."""
    legend_rows = math.ceil(len(series) / 2)
    plot_h = height - _TOP - 48
    totals = [sum(s.values[i] for s in series) for i in range(len(categories))]
    top = _nice_max(max(totals, default=0))
    slot = (_W - _LEFT - _RIGHT) / max(1, len(categories))
    colours = [s.colour or PALETTE[i % len(PALETTE)] for i, s in enumerate(series)]
    parts = []
    for i, category in enumerate(categories):
        y = float(_TOP + plot_h)
        for s, colour in zip(series, colours, strict=True):
            value = s.values[i]
            if not value:
                continue
            h = plot_h * value / top
            y -= h
            tip = f"{category}: {s.name} {_number(value)}{unit} of {_number(totals[i])}{unit}"
            parts.append(
                f'<rect x="{_LEFT + slot * i + slot * 0.15:.1f}" y="{y:.1f}" width="{slot * 0.7:.1f}"'
                f' height="{h:.1f}" fill="{_e(colour)}"><title>{_e(tip)}</title></rect>'
            )
    parts.append(_category_labels(categories, plot_h, slot))
    if not categories or not any(totals):
        parts.append(_empty(plot_h, empty))
    legend = []
    for n, (s, colour) in enumerate(zip(series, colours, strict=True)):
        column = (_W - _LEFT) // 2
        x = _LEFT + (n % 2) * column
        y = _TOP + plot_h + 62 + 18 * (n // 2)
        # ~6.3 px per character at 12 px: cut a name that would run into the next column (its <title> is whole).
        name = s.name if len(s.name) * 6.3 < column - 20 else s.name[: int((column - 20) / 6.3) - 1] + "\u2026"
        legend.append(
            f'<rect x="{x}" y="{y - 10}" width="12" height="12" fill="{_e(colour)}"/>'
            f'<text x="{x + 17}" y="{y}" font-size="12" fill="#222">{_e(name)}<title>{_e(s.name)}</title></text>'
        )
    description = "; ".join(
        f"{category}: " + ", ".join(f"{s.name} {_number(s.values[i])}{unit}" for s in series if s.values[i])
        for i, category in enumerate(categories)
        if totals[i]
    )
    return _frame(
        title,
        description or empty,
        x_label,
        y_label,
        top,
        plot_h,
        "".join(parts),
        legend="".join(legend),
        legend_rows=legend_rows,
        ident=ident,
    )


def _empty(plot_h: int, text: str) -> str:
    return (
        f'<text x="{(_LEFT + _W - _RIGHT) / 2}" y="{_TOP + plot_h / 2}" text-anchor="middle" font-size="13"'
        f' fill="#666">{_e(text)}</text>'
    )
