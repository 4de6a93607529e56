"""The report's figures, gathered from the KPI engine's public functions, the diagnostics and the sync log.

Nothing here computes a KPI: every value is a row of `kpi_rows` (the same objects as
`kpis --format json`), so the page and the exports always agree.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any, Final

from kpi_core import status as sync_status
from kpi_core.kpis.api import kpi_rows
from kpi_core.kpis.diagnostics import diagnose
from kpi_core.kpis.periods import Grain, Period, PeriodError, parse_grain, period_containing, periods_between
from kpi_core.report.figures import (
    DIAGNOSTIC_TITLES,
    META,
    Diagnostic,
    Line,
    LineGroup,
    Reason,
    SegmentRow,
    SourceHealth,
    segment_label,
)
from kpi_core.report.formatting import change
from kpi_core.settings import Settings
from kpi_core.store import Store

# How many periods the trend charts show when --since is not given.
TREND_PERIODS: Final = {Grain.DAY: 30, Grain.WEEK: 13, Grain.MONTH: 6, Grain.QUARTER: 4}
HIGHLIGHTS: Final = ("ticket_volume", "first_response_time_median", "resolution_time_median",
                     "one_touch_resolution_pct", "fcr_pct", "csat_pct", "response_rate_pct", "backlog")
GROUPS: Final = (("coverage", "Volume and coverage"), ("speed", "Speed"), ("resolution", "Resolution"),
                 ("satisfaction", "Satisfaction"), ("cost", "Cost and capacity"))
LANGUAGE_KPIS: Final = ("ticket_volume", "response_rate_pct", "first_response_time_median", "csat_pct",
                        "csat_responses")
# Per platform (WhatsApp, Instagram, web chat ...): how fast and how well each app or network is served.
PLATFORM_KPIS: Final = ("ticket_volume", "response_rate_pct", "first_response_time_median", "abandonment_rate_pct",
                        "csat_pct")
AGENT_KPIS: Final = ("ticket_volume", "first_response_time_median", "one_touch_resolution_pct", "csat_pct",
                     "csat_responses", "agent_utilization_pct")
CHANNEL_KPIS: Final = ("ticket_volume", "first_response_time_median", "response_rate_pct")


@dataclass(frozen=True)
class Window:
    """The periods the report covers, oldest first; the last one is the scorecard's."""

    grain: Grain
    periods: tuple[Period, ...]
    today: date

    @property
    def current(self) -> Period:
        return self.periods[-1]

    @property
    def previous(self) -> Period:
        return self.current.previous()

    @property
    def in_progress(self) -> bool:
        return self.today < self.current.end

    @property
    def first_start(self) -> date:
        return min(self.periods[0].start, self.previous.start)


def window(period: str | None, since: date | None, until: date | None, now: datetime) -> Window:
    """The report's periods: the grain's periods over [since, until), by default the last few up to today."""
    grain = parse_grain(period or "month")
    if grain is Grain.CUSTOM:
        raise PeriodError("the report needs a period grain: day, week, month or quarter")
    today = now.astimezone(timezone.utc).date()
    until = until or today + timedelta(days=1)
    if since is not None and until <= since:
        raise PeriodError(f"empty range: until {until} is not after since {since}")
    last = period_containing(until - timedelta(days=1), grain)
    if since is None:
        first = last
        for _ in range(TREND_PERIODS[grain] - 1):
            first = first.previous()
        since = first.start
    return Window(grain, tuple(periods_between(grain, since, last.end)), today)


@dataclass
class ReportData:
    """Everything the page shows; `empty` when the store holds no contact yet."""

    generated_at: str
    window: Window
    empty: bool
    data_first: str | None = None
    data_last: str | None = None
    contacts_in_range: int = 0
    highlights: list[Line] = field(default_factory=list)
    scorecard: list[LineGroup] = field(default_factory=list)
    channel_mix: list[Line] = field(default_factory=list)
    channel_frt: list[Line] = field(default_factory=list)
    overall: list[dict[str, Any]] = field(default_factory=list)
    by_channel: list[dict[str, Any]] = field(default_factory=list)
    languages: list[SegmentRow] = field(default_factory=list)
    platforms: list[SegmentRow] = field(default_factory=list)
    agents: list[SegmentRow] = field(default_factory=list)
    agent_columns: list[str] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    reasons: list[Reason] = field(default_factory=list)
    reasons_by: str = "tag"  # the segment dimension the reasons were counted by
    reasons_configured: str = "tag"  # what [kpis.reasons] asks for (a ticket type is not a segment dimension)
    sources: list[SourceHealth] = field(default_factory=list)
    daemon: dict[str, Any] = field(default_factory=dict)

    @property
    def has_business_hours(self) -> bool:
        return any(line.kpi.endswith("_bh") for group in self.scorecard for line in group.lines)


def gather(store: Store, settings: Settings, *, period: str | None = None, since: date | None = None,
           until: date | None = None, now: datetime | None = None) -> ReportData:
    """Collect every figure of the report (computing KPI periods the store does not hold yet)."""
    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc).replace(microsecond=0)
    win = window(period, since, until, now)
    first, last = _data_span(store)
    data = ReportData(generated_at=now.strftime("%Y-%m-%dT%H:%M:%SZ"), window=win, empty=first is None,
                      data_first=first, data_last=last)
    health = sync_status.collect(store, settings, now)
    data.sources = [_health(name, s, settings) for name, s in health["sources"].items()]
    data.daemon = health["daemon"]
    if data.empty:
        return data

    def rows(by: str | None, kpi_ids: Sequence[str] | None, start: date) -> list[dict[str, Any]]:
        return kpi_rows(store, settings, win.grain.value, start, win.current.end, by,
                        list(kpi_ids) if kpi_ids else None, now=now)

    data.overall = rows(None, None, win.first_start)
    first_shown = win.periods[0].start.isoformat()
    data.contacts_in_range = int(sum(r["value"] or 0 for r in data.overall
                                     if r["kpi"] == "ticket_volume" and r["period_start"] >= first_shown))
    data.by_channel = rows("channel", CHANNEL_KPIS, win.first_start)
    _scorecard(data, win)
    data.languages = _segment_table(rows("language", LANGUAGE_KPIS, win.current.start), "language", win)
    data.platforms = _segment_table(rows("platform", PLATFORM_KPIS, win.current.start), "platform", win)
    data.agents = _segment_table(rows("agent", AGENT_KPIS, win.current.start), "agent", win)
    data.agent_columns = [k for k in AGENT_KPIS if k != "agent_utilization_pct"
                          or any(a.cells.get(k) and a.cells[k].row["value"] is not None for a in data.agents)]
    data.diagnostics = _diagnostics(diagnose(store, settings, win.periods[0].start, win.current.end,
                                             win.grain.value, now=now))
    data.reasons_by = _reason_dimension(settings)
    data.reasons_configured = settings.kpis.reasons.by
    volume = next((ln.row["value"] for ln in data.highlights if ln.kpi == "ticket_volume"), 0)
    data.reasons = _reasons(rows(_reason_dimension(settings), ["ticket_volume"], win.previous.start), win,
                            settings.kpis.reasons.top, settings.kpis.reasons.exclude, int(volume or 0))
    return data


def _data_span(store: Store) -> tuple[str | None, str | None]:
    first, last = store.db.execute(
        "SELECT min(created_at), max(created_at) FROM contacts WHERE status NOT IN ('deleted', 'merged')").fetchone()
    return first, last


def _key(row: dict[str, Any]) -> tuple[str, str, str]:
    return (row["period_start"], row["kpi"], json.dumps(row["segment"], sort_keys=True))


def index(rows: Iterable[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """Rows by (period start, KPI id, segment)."""
    return {_key(r): r for r in rows}


def _with_previous(rows: Iterable[dict[str, Any]], by_key: dict[tuple[str, str, str], dict[str, Any]],
                   previous: Period) -> list[Line]:
    out = []
    for row in rows:
        earlier = by_key.get((previous.start.isoformat(), row["kpi"], json.dumps(row["segment"], sort_keys=True)))
        out.append(Line(row, earlier))
    return out


def _scorecard(data: ReportData, win: Window) -> None:
    current = win.current.start.isoformat()
    by_key = index(data.overall)
    lines = _with_previous((r for r in data.overall if r["period_start"] == current), by_key, win.previous)
    data.channel_mix = sorted((ln for ln in lines if ln.kpi == "channel_mix_pct"),
                              key=lambda ln: -(ln.row["value"] or 0))
    plain = [ln for ln in lines if ln.kpi != "channel_mix_pct"]
    found = {ln.kpi: ln for ln in plain}
    data.highlights = [found[k] for k in HIGHLIGHTS if k in found]
    for group, title in GROUPS:
        members = [ln for ln in plain if META.get(ln.kpi) is not None and META[ln.kpi].group.value == group]
        if members:
            data.scorecard.append(LineGroup(title, members))
    others = [ln for ln in plain if META.get(ln.kpi) is None or META[ln.kpi].group.value not in dict(GROUPS)]
    if others:
        data.scorecard.append(LineGroup("Other", others))
    channel_key = index(data.by_channel)
    frt = [r for r in data.by_channel if r["period_start"] == current and r["kpi"] == "first_response_time_median"]
    data.channel_frt = _with_previous(frt, channel_key, win.previous)


def _segment_table(rows: list[dict[str, Any]], dimension: str, win: Window) -> list[SegmentRow]:
    """One row per segment value of the current period, the busiest first."""
    current = win.current.start.isoformat()
    table: dict[str | None, dict[str, Line]] = {}
    for row in rows:
        if row["period_start"] != current or list(row["segment"]) != [dimension]:
            continue
        table.setdefault(row["segment"][dimension], {})[row["kpi"]] = Line(row)
    out = [SegmentRow(value, segment_label(dimension, value), cells) for value, cells in table.items()]
    return sorted(out, key=lambda r: (-_volume(r), r.label))


def _volume(row: SegmentRow) -> float:
    line = row.cells.get("ticket_volume")
    return float(line.row["value"] or 0) if line else 0.0


def _diagnostics(found: list[dict[str, Any]]) -> list[Diagnostic]:
    """Diagnostics grouped by period and id: newest period first, overall figures before segments."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for d in found:
        groups.setdefault((d["period_start"], d["diagnostic"]), []).append(d)
    out = []
    for (start, diagnostic), items in groups.items():
        items.sort(key=lambda d: (len(d["segment"]), json.dumps(d["segment"], sort_keys=True)))
        period = Period(date.fromisoformat(start), date.fromisoformat(items[0]["period_end"]), Grain.CUSTOM)
        title = DIAGNOSTIC_TITLES.get(diagnostic, diagnostic.replace("_", " ").capitalize())
        out.append(Diagnostic(diagnostic, title, period, items[0]["message"],
                              [(d["segment"], d["evidence"]) for d in items]))
    return sorted(out, key=lambda d: (-d.period.start.toordinal(), d.id))


def _reason_dimension(settings: Settings) -> str:
    """The segment dimension that holds contact reasons (a tag or a custom field; a ticket type is not one)."""
    by = settings.kpis.reasons.by
    return by if by == "tag" or by.startswith("custom.") else "tag"


def _reasons(rows: list[dict[str, Any]], win: Window, top: int, exclude: Sequence[str], total: int) -> list[Reason]:
    """The top reasons of the current period with their share of all contacts and change against the previous."""
    current, previous = win.current.start.isoformat(), win.previous.start.isoformat()
    now: dict[str, int] = {}
    before: dict[str, int] = {}
    for row in rows:
        (value,) = row["segment"].values() if len(row["segment"]) == 1 else (None,)
        if value is None or value in exclude or row["value"] is None:
            continue
        target = now if row["period_start"] == current else before if row["period_start"] == previous else None
        if target is not None:
            target[str(value)] = int(row["value"])
    ranked = sorted(now.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    return [Reason(name, volume, 100.0 * volume / total if total else None, before.get(name, 0),
                   change(float(volume), float(before.get(name, 0)), None)) for name, volume in ranked if volume]


def _health(name: str, s: dict[str, Any], settings: Settings) -> SourceHealth:
    if s["last_success_at"] is None:
        state = "failing" if s.get("failures_since_success") else "never"
    elif s.get("failures_since_success"):
        state = "failing"
    elif s["lag_seconds"] is not None and s["lag_seconds"] > 3 * settings.schedule.sync_every.total_seconds():
        state = "late"
    else:
        state = "ok"
    return SourceHealth(name, state, s["last_success_at"], s["lag_seconds"], s["records"], s["api_calls_last_run"],
                        s.get("failures_since_success", 0), s.get("quarantined", 0), s["last_error"],
                        s.get("next_sync_at"))
