"""The trend charts of the report, as chart specifications built from the engine's rows per period."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any, Final

from kpi_core.kpis.periods import Grain
from kpi_core.report.charts import Band, ChartSpec, Series
from kpi_core.report.figures import segment_label
from kpi_core.report.gather import ReportData, index

X_LABELS: Final = {Grain.DAY: "day", Grain.WEEK: "ISO week, Monday to Sunday", Grain.MONTH: "month",
                   Grain.QUARTER: "quarter"}
# A spread wider than this between the fastest and slowest channel needs a log axis to show both.
_LOG_SPREAD: Final = 30.0

Index = dict[tuple[str, str, str], dict[str, Any]]


class _Source:
    """Values per trend period of one KPI and segment, from an index of rows."""

    def __init__(self, data: ReportData, rows: list[dict[str, Any]]) -> None:
        self.starts = [p.start.isoformat() for p in data.trends]
        self.by_key: Index = index(rows)

    def rows(self, kpi: str, segment: dict[str, Any] | None = None) -> list[dict[str, Any] | None]:
        seg = json.dumps(segment or {}, sort_keys=True)
        return [self.by_key.get((start, kpi, seg)) for start in self.starts]

    def series(self, kpi: str, label: str, segment: dict[str, Any] | None = None, *, target: bool = True) -> Series:
        rows = self.rows(kpi, segment)
        values = [r["value"] if r else None for r in rows]
        latest_target = next((r["target"] for r in reversed(rows) if r and r["target"] is not None), None)
        return Series(label, values, latest_target if target else None)


def trend_specs(data: ReportData) -> list[ChartSpec]:
    """Every trend chart of the report, in page order."""
    overall, channels = _Source(data, data.overall), _Source(data, data.by_channel)
    labels = [p.label() for p in data.trends]
    x_label = f"{X_LABELS[data.window.grain]} ({data.zone})"  # periods start at midnight in the account's zone
    specs = [
        _frt_by_channel(overall, channels, data, labels, x_label),
        ChartSpec("chart-resolution", "Resolution time (first resolution)", "hours", "hours from creation",
                  x_label, labels, [overall.series("resolution_time_median", "median"),
                                    overall.series("resolution_time_avg", "average")]),
        ChartSpec("chart-one-touch-fcr", "One-touch resolution and first contact resolution (FCR)", "%",
                  "% of resolved contacts", x_label, labels,
                  [overall.series("one_touch_resolution_pct", "one-touch"), overall.series("fcr_pct", "FCR")],
                  notes=["FCR counts a contact only once its repeat-contact window has passed, so the latest"
                         " periods fill in over the following days."]),
        ChartSpec("chart-csat", "Customer satisfaction (CSAT)", "%", "% positive ratings", x_label, labels,
                  [overall.series("csat_pct", "CSAT")], empty_note="No CSAT responses in these periods."),
        ChartSpec("chart-nps", "Net Promoter Score (NPS)", "score", "NPS (\u2212100 to +100)", x_label, labels,
                  [overall.series("nps", "NPS")],
                  empty_note="No NPS responses in these periods: NPS needs a survey source (see [surveys] in the"
                             " configuration or `helpdesk-kpi surveys import`)."),
        ChartSpec("chart-coverage", "CSAT coverage and response rate", "%", "% of contacts", x_label, labels,
                  [overall.series("csat_response_rate_pct", "CSAT coverage"),
                   overall.series("response_rate_pct", "response rate")],
                  notes=["CSAT coverage: resolved contacts with a rating / resolved contacts. Response rate:"
                         " contacts with an agent reply / contacts received."]),
        _volume_by_channel(overall, channels, data, labels, x_label),
        *(_value_charts(overall, labels, x_label) if data.order_feed else []),
    ]
    bands = event_bands(data)
    if not bands:
        return specs
    note = "Shaded: events of the event log \u2014 " + "; ".join(b.label for b in bands) + "."
    return [replace(spec, bands=bands, notes=[*spec.notes, note]) for spec in specs]


def _value_charts(overall: _Source, labels: list[str], x_label: str) -> list[ChartSpec]:
    """The value section's trends (an order feed): conversion of pre-sales contacts, repurchase after a contact."""
    filling = ("A contact counts once its window has passed (conversion: conversion_window_days after it;"
               " repurchase: 30 or 90 days after its resolution), so the latest periods fill in later.")
    return [
        ChartSpec("chart-conversion", "Consultation conversion (pre-sales contacts that led to an order)", "%",
                  "% of pre-sales contacts", x_label, labels,
                  [overall.series("consultation_conversion_pct", "conversion")], notes=[filling],
                  empty_note="No pre-sales contact has a passed conversion window in these periods."),
        ChartSpec("chart-repurchase", "Repurchase after a contact", "%", "% of resolved contacts of customers",
                  x_label, labels, [overall.series("repurchase_30d_pct", "within 30 days"),
                                    overall.series("repurchase_90d_pct", "within 90 days")],
                  notes=[filling, "Repurchase lift (in the scorecard) compares the 90-day figure with customers"
                                  " who had no contact around their order."],
                  empty_note="No resolved contact of a returning customer has a passed window in these periods."),
    ]


def event_bands(data: ReportData) -> list[Band]:
    """The logged events over the trend periods they touch (an event outside every period is not drawn)."""
    bands = []
    for event in data.events:
        touched = [i for i, p in enumerate(data.trends) if event.overlaps(p.start, p.end)]
        if touched:
            segment = f" ({event.segment_text})" if event.segment else ""
            bands.append(Band(touched[0], touched[-1], f"{event.title}{segment}, {event.dates}", event.title))
    return bands


def _channels_by_volume(data: ReportData) -> list[str]:
    totals: dict[str, float] = {}
    for row in data.by_channel:
        if row["kpi"] == "ticket_volume" and row["segment"].get("channel") is not None:
            name = row["segment"]["channel"]
            totals[name] = totals.get(name, 0) + (row["value"] or 0)
    return sorted(totals, key=lambda c: (-totals[c], c))


def _frt_by_channel(overall: _Source, channels: _Source, data: ReportData, labels: list[str],
                    x_label: str) -> ChartSpec:
    series = [channels.series("first_response_time_median", segment_label("channel", c), {"channel": c},
                              target=False) for c in _channels_by_volume(data)]
    series = [s for s in series if any(v is not None for v in s.values)]
    mixed = overall.series("first_response_time_median", "all channels", target=False)
    series.append(Series(mixed.label, mixed.values, overall=True))
    known = [v for s in series for v in s.values if v is not None and v > 0]
    log = bool(known) and max(known) / min(known) > _LOG_SPREAD
    return ChartSpec("chart-frt-by-channel", "Median first response time by channel", "minutes",
                     "median time to first reply" + (" (log scale)" if log else ""), x_label, labels, series,
                     log_scale=log, notes=["Each channel's target is in the first-response table of the scorecard."])


def _volume_by_channel(overall: _Source, channels: _Source, data: ReportData, labels: list[str],
                       x_label: str) -> ChartSpec:
    # A channel without contacts in a computed period has no row there: its count is 0, not missing.
    computed = [r is not None for r in overall.rows("ticket_volume")]
    series = []
    for c in _channels_by_volume(data):
        found = channels.series("ticket_volume", segment_label("channel", c), {"channel": c}, target=False)
        series.append(Series(found.label, [0 if v is None and ok else v
                                           for v, ok in zip(found.values, computed, strict=False)]))
    return ChartSpec("chart-volume", "Ticket volume by channel", "count", "contacts created", x_label, labels,
                     series, kind="stacked", empty_note="No contacts were created in these periods.")
