"""Trend charts as static, self-contained SVG drawn by matplotlib's SVG backend, ready to inline in the page.

Each chart carries a title, axis labels with units and a text alternative (`<title>` and
`<desc>` inside the SVG, plus the figures table the page prints beside it). Missing values
are gaps in a line, never zeros.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import matplotlib
from markupsafe import Markup, escape
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator, NullLocator

from kpi_core.report.formatting import NO_DATA, value_text

# Okabe-Ito: distinguishable with the common colour-vision deficiencies; markers and line
# styles differ too, so series stay apart in greyscale print.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#999933", "#882255")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
LINESTYLES = ("-", "--", "-.", ":", "-", "--", "-.", ":")
HATCHES = ("", "//", "\\\\", "--", "||", "xx", "++", "")  # line hatches only: dots and circles bloat the SVG
EVENT_COLOUR = "#C98A00"  # amber bands behind the series: read as "something happened here", apart from the palette
EVENT_TEXT = "#6B4A00"
_EVENT_LABEL = 22  # characters of an event's title drawn on the chart; the notes below give it whole

_RC: dict[Any, Any] = {  # matplotlib types its keys as literals; these are checked by matplotlib itself
    "svg.fonttype": "none",  # text stays text: smaller, selectable, read by screen readers
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Liberation Sans", "Arial", "Helvetica"],
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.edgecolor": "#888888",
    "axes.grid": True,
    "axes.grid.axis": "y",
    "grid.color": "#e3e3e3",
    "grid.linewidth": 0.6,
    "axes.titlesize": 10,
    "legend.frameon": False,
    "legend.fontsize": 8,
    "xtick.color": "#444444",
    "ytick.color": "#444444",
}


@dataclass(frozen=True)
class Series:
    label: str
    values: list[float | None]
    target: float | list[float] | None = None  # drawn as a dotted line (or a band) in the series' colour
    overall: bool = False  # the all-segments line among per-segment ones: thick and black


@dataclass(frozen=True)
class Band:
    """An event of the event log over the periods it touches: x positions `first` to `last`, drawn shaded."""

    first: int
    last: int
    label: str  # the event in full: title, segment and dates (the chart's text alternative and notes)
    title: str  # drawn at the top of the band, shortened when long


@dataclass(frozen=True)
class ChartSpec:
    id: str
    title: str
    unit: str  # a catalogue unit: %, minutes, hours, count, score
    y_label: str
    x_label: str
    x_labels: list[str]
    series: list[Series]
    kind: Literal["line", "stacked"] = "line"
    log_scale: bool = False
    empty_note: str = "No data in these periods."
    notes: list[str] = field(default_factory=list)
    bands: list[Band] = field(default_factory=list)

    @property
    def has_data(self) -> bool:
        return any(v is not None for s in self.series for v in s.values)


@dataclass(frozen=True)
class Chart:
    spec: ChartSpec
    svg: Markup | None  # None when there is nothing to draw
    description: str


def render(spec: ChartSpec) -> Chart:
    """Draw the chart (or nothing, when every value is missing) and describe it in words."""
    description = describe(spec)
    if not spec.has_data:
        return Chart(spec, None, description)
    with matplotlib.rc_context({**_RC, "svg.hashsalt": spec.id}):
        figure = Figure(figsize=(6.4, 3.4), layout="constrained")
        axes = figure.add_subplot()
        if spec.kind == "stacked":
            _stacked(axes, spec)
        else:
            _lines(axes, spec)
        _decorate(axes, spec)
        _bands(axes, spec)
        buffer = io.StringIO()
        figure.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    return Chart(spec, Markup(_inline(buffer.getvalue(), spec, description)), description)


def _positions(spec: ChartSpec) -> list[int]:
    return list(range(len(spec.x_labels)))


def _lines(axes: Any, spec: ChartSpec) -> None:
    x = _positions(spec)
    for i, series in enumerate(spec.series):
        colour = "#000000" if series.overall else PALETTE[i % len(PALETTE)]
        y = [math.nan if v is None else v for v in series.values]
        axes.plot(x, y, color=colour, marker="o" if series.overall else MARKERS[i % len(MARKERS)],
                  markersize=4, linewidth=2.6 if series.overall else 1.6,
                  linestyle="-" if series.overall else LINESTYLES[i % len(LINESTYLES)], label=series.label,
                  zorder=3 if series.overall else 2)
        if isinstance(series.target, list):
            axes.axhspan(series.target[0], series.target[1], color=colour, alpha=0.08, linewidth=0)
        elif series.target is not None:
            axes.axhline(series.target, color=colour, linestyle=(0, (1, 2)), linewidth=1.2,
                         label=f"target: {series.label} {value_text(series.target, spec.unit)}")
    if spec.log_scale:
        axes.set_yscale("log")
        low, high = axes.get_ylim()
        axes.yaxis.set_major_locator(FixedLocator([t for t in _LOG_TICKS_MINUTES if low <= t <= high]))
        axes.yaxis.set_major_formatter(FuncFormatter(lambda v, _: _round_duration(v)))
        axes.yaxis.set_minor_locator(NullLocator())
    else:
        axes.yaxis.set_major_formatter(FuncFormatter(_tick_formatter(spec.unit)))
        # From 0, always: an axis starting at 40 % turns a 3-point dip into a cliff.
        if spec.unit == "%":
            axes.set_ylim(0, 100.5)
        elif spec.unit in ("minutes", "hours", "count"):
            axes.set_ylim(bottom=0)


def _stacked(axes: Any, spec: ChartSpec) -> None:
    x = _positions(spec)
    bottom = [0.0] * len(x)
    for i, series in enumerate(spec.series):
        heights = [v or 0.0 for v in series.values]  # a count with nothing counted is 0, not missing
        axes.bar(x, heights, bottom=bottom, width=0.7, color=PALETTE[i % len(PALETTE)], label=series.label,
                 hatch=HATCHES[i % len(HATCHES)], edgecolor="white", linewidth=0.6)
        bottom = [b + h for b, h in zip(bottom, heights, strict=False)]
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))


def _decorate(axes: Any, spec: ChartSpec) -> None:
    x = _positions(spec)
    step = max(1, math.ceil(len(x) / 8))  # at most ~8 labels, so they never overlap
    axes.set_xticks(x[::step], [spec.x_labels[i] for i in x[::step]])
    axes.set_xlim(-0.6, len(x) - 0.4)
    axes.set_xlabel(spec.x_label)
    axes.set_ylabel(spec.y_label)
    if len(spec.series) > 1 or any(s.target is not None for s in spec.series):
        # Below the plot, so every chart keeps the same plotting width whatever its labels.
        labels = axes.get_legend_handles_labels()[1]
        columns = max(1, min(4, len(labels), 84 // (max(len(label) for label in labels) + 6)))
        axes.figure.legend(loc="outside lower center", ncols=columns)


def _bands(axes: Any, spec: ChartSpec) -> None:
    """Each event as a shaded band behind the series, its title (shortened) at the top, staggered so that
    neighbouring events do not print over each other."""
    for n, band in enumerate(spec.bands):
        axes.axvspan(band.first - 0.45, band.last + 0.45, color=EVENT_COLOUR, alpha=0.14, linewidth=0, zorder=0)
        label = band.title if len(band.title) <= _EVENT_LABEL else band.title[:_EVENT_LABEL - 1] + "\u2026"
        axes.text(band.first - 0.4, 0.98 - 0.085 * (n % 3), label, transform=axes.get_xaxis_transform(),
                  fontsize=7, color=EVENT_TEXT, ha="left", va="top", zorder=4, clip_on=True)


# Log-axis ticks for durations in minutes, at values people use: 10 s, 1 min, 15 min, 1 h, 1 day...
_LOG_TICKS_MINUTES = (1 / 6, 1, 5, 30, 120, 480, 1440, 10080, 43200)


def _round_duration(minutes: float) -> str:
    if minutes < 1:
        return f"{minutes * 60:.0f} s"
    if minutes < 60:
        return f"{minutes:.0f} min"
    if minutes < 1440:
        return f"{minutes / 60:.0f} h"
    return f"{minutes / 1440:.0f} d"


def _tick_formatter(unit: str) -> Callable[[float, Any], str]:
    if unit in ("minutes", "hours"):  # one unit along a linear axis, never "40 h" next to "2.1 days"
        short = "min" if unit == "minutes" else "h"
        return lambda v, _: f"{v:g} {short}" if v else "0"
    if unit == "%":
        return lambda v, _: f"{v:.0f} %"
    return lambda v, _: f"{v:,.0f}" if float(v).is_integer() else f"{v:,.1f}"


def describe(spec: ChartSpec) -> str:
    """The chart in words: what it shows and the latest figures; the full figures are in the table."""
    if not spec.has_data:
        return f"{spec.title}: {spec.empty_note}"
    span = f"{spec.x_labels[0]} to {spec.x_labels[-1]}" if len(spec.x_labels) > 1 else spec.x_labels[0]
    latest = []
    for series in spec.series:
        known = [(label, v) for label, v in zip(spec.x_labels, series.values, strict=False) if v is not None]
        if known:
            label, value = known[-1]
            latest.append(f"{series.label} {value_text(value, spec.unit)} ({label})")
        else:
            latest.append(f"{series.label} {NO_DATA}")
    kind = "stacked bars" if spec.kind == "stacked" else "lines"
    marked = f" Shaded: {'; '.join(b.label for b in spec.bands)}." if spec.bands else ""
    return f"{spec.title}, {kind} per period from {span}. Latest: {'; '.join(latest)}.{marked}"


_HEADER = re.compile(r"^.*?(?=<svg)", re.DOTALL)
_METADATA = re.compile(r"<metadata>.*?</metadata>\s*", re.DOTALL)
# Group ids such as figure_1 or axes_1 repeat in every chart; only the hashed ids of
# markers, clip paths and hatches (salted per chart) are referenced, so the rest go.
_UNUSED_ID = re.compile(r' id="(?![mph][0-9a-f]{10}")[^"]*"')
_SIZE = re.compile(r'<svg([^>]*?) width="[^"]*" height="[^"]*"')


def _inline(svg: str, spec: ChartSpec, description: str) -> str:
    """Make matplotlib's SVG document an inline element: no XML header, scalable, titled and described."""
    svg = _HEADER.sub("", svg, count=1)
    svg = _METADATA.sub("", svg, count=1)
    svg = _UNUSED_ID.sub("", svg)
    svg = _SIZE.sub(r"<svg\1", svg, count=1)
    title_id, desc_id = f"{spec.id}-title", f"{spec.id}-desc"
    opening = svg.index(">") + 1
    accessible = (f'<title id="{title_id}">{escape(spec.title)}</title>'
                  f'<desc id="{desc_id}">{escape(description)}</desc>')
    head = svg[:opening - 1] + f' role="img" aria-labelledby="{title_id} {desc_id}" class="chart-svg">'
    return head + accessible + svg[opening:]
