"""The report's figures, gathered from the KPI engine's public functions, the diagnostics and the sync log.

Nothing here computes a KPI: every value is a row of `kpi_rows` (the same objects as
`kpis --format json`), so the page and the exports always agree.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone, tzinfo
from typing import Any, Final
from zoneinfo import ZoneInfo

from kpi_core import events as event_log
from kpi_core import status as sync_status
from kpi_core.events import Event
from kpi_core.kpis.api import kpi_rows, previous_rows
from kpi_core.kpis.catalogue import VALUE_KPIS
from kpi_core.kpis.diagnostics import diagnose
from kpi_core.kpis.periods import Grain, Period, PeriodError, parse_grain, period_containing, periods_between
from kpi_core.kpis.scorecard import has_insight, has_order_feed
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
from kpi_core.report.formatting import change, zone_name
from kpi_core.settings import Settings
from kpi_core.store import Store

# How many periods the trend charts show when --since is not given.
TREND_PERIODS: Final = {Grain.DAY: 30, Grain.WEEK: 13, Grain.MONTH: 6, Grain.QUARTER: 4}
HIGHLIGHTS: Final = ("ticket_volume", "first_response_time_median", "resolution_time_median",
                     "one_touch_resolution_pct", "fcr_pct", "csat_pct", "response_rate_pct", "backlog")
GROUPS: Final = (("coverage", "Volume and coverage"), ("speed", "Speed"), ("resolution", "Resolution"),
                 ("satisfaction", "Satisfaction"), ("cost", "Cost and capacity"), ("value", "Value (order feed)"),
                 ("insight", "Conversation insight"))
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
    def days_elapsed(self) -> int:
        """Days of the current period up to and including today (all of them once it has ended)."""
        return max(0, min((self.today - self.current.start).days + 1, self.current.days))


def window(period: str | None, since: date | None, until: date | None, now: datetime,
           zone: tzinfo = timezone.utc) -> Window:
    """The report's periods: the grain's periods over [since, until), by default the last few up to today.

    "Today" is the date in the account's zone (`[kpis] timezone`), where the engine's periods start.
    """
    grain = parse_grain(period or "month")
    if grain is Grain.CUSTOM:
        raise PeriodError("the report needs a period grain: day, week, month or quarter")
    today = now.astimezone(zone).date()
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


@dataclass(frozen=True)
class Comparison:
    """What the changes on the page compare the current period with."""

    label: str  # names the compared span: "2026-11", or "2026-11-01 to 2026-11-06" when like-for-like
    like_for_like: bool = False  # the same days of the previous period (the engine's comparison of a running one)

    @staticmethod
    def of(current: Sequence[dict[str, Any]], win: Window) -> Comparison:
        """Read the comparison off the current period's rows: the engine's `compared_with` names the span
        (for a running period, the same days of the previous one: `to_date`)."""
        span = next((r["compared_with"] for r in current if r.get("compared_with")), None)
        if span and span.get("to_date"):
            last = date.fromisoformat(span["period_end"]) - timedelta(days=1)
            return Comparison(f"{span['period_start']} to {last.isoformat()}", like_for_like=True)
        return Comparison(win.previous.label())


@dataclass
class ReportData:
    """Everything the page shows; `empty` when the store holds no contact yet."""

    generated_at: str
    window: Window
    empty: bool
    zone: str = "UTC"  # the IANA zone of `[kpis] timezone`: period boundaries and every time shown
    trend_periods: tuple[Period, ...] = ()  # the window's periods from the first with data
    comparison: Comparison | None = None
    agent_names: str = "off"  # stored (some agents have a name) | missing (none stored yet) | off (not stored)
    data_first: str | None = None
    data_last: str | None = None
    contacts_in_range: int = 0
    highlights: list[Line] = field(default_factory=list)
    scorecard: list[LineGroup] = field(default_factory=list)
    order_feed: bool = False  # an order feed has data in the window: the value group and charts are shown
    insight: bool = False  # conversation-insight KPIs have values in the window: their group is shown
    channel_mix: list[Line] = field(default_factory=list)
    channel_frt: list[Line] = field(default_factory=list)
    overall: list[dict[str, Any]] = field(default_factory=list)
    # Periods computed after a retention purge from what it left (`"partial": true`), oldest first.
    partial_periods: list[str] = field(default_factory=list)
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
    events: list[Event] = field(default_factory=list)  # the event log's entries over the trend periods

    @property
    def tz(self) -> tzinfo:
        return ZoneInfo(self.zone)

    @property
    def compared(self) -> Comparison:
        return self.comparison or Comparison(self.window.previous.label())

    @property
    def trends(self) -> tuple[Period, ...]:
        return self.trend_periods or self.window.periods

    @property
    def has_business_hours(self) -> bool:
        return any(line.kpi.endswith("_bh") for group in self.scorecard for line in group.lines)


def gather(store: Store, settings: Settings, *, period: str | None = None, since: date | None = None,
           until: date | None = None, now: datetime | None = None) -> ReportData:
    """Collect every figure of the report (computing KPI periods the store does not hold yet)."""
    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc).replace(microsecond=0)
    zone = ZoneInfo(settings.kpis.timezone)
    win = window(period, since, until, now, zone)
    first, last = _data_span(store)
    data = ReportData(generated_at=now.strftime("%Y-%m-%dT%H:%M:%SZ"), window=win, empty=first is None,
                      zone=zone_name(zone), data_first=first, data_last=last)
    state = sync_status.collect(store, settings, now)
    data.sources = [health(name, s, settings) for name, s in state["sources"].items()]
    data.daemon = state["daemon"]
    if data.empty:
        return data

    def rows(by: str | None, kpi_ids: Sequence[str] | None, start: date) -> list[dict[str, Any]]:
        return kpi_rows(store, settings, win.grain.value, start, win.current.end, by,
                        list(kpi_ids) if kpi_ids else None, now=now)

    def earlier(by: str | None, kpi_ids: Sequence[str] | None) -> list[dict[str, Any]]:
        """The engine's comparison rows for the current period (like-for-like for a running one, where it has it)."""
        return previous_rows(store, settings, win.grain.value, win.current.start, win.current.end, by,
                             list(kpi_ids) if kpi_ids else None, now=now)

    data.overall = rows(None, None, win.periods[0].start)
    data.contacts_in_range = int(sum(r["value"] or 0 for r in data.overall if r["kpi"] == "ticket_volume"))
    data.partial_periods = sorted({f"{r['period_start']} .. {r['period_end']}"
                                   for r in data.overall if r.get("partial")})
    data.trend_periods = _trend_periods(win, data.overall)
    data.order_feed = has_order_feed(data.overall)
    data.insight = has_insight(data.overall)
    data.by_channel = rows("channel", CHANNEL_KPIS, data.trends[0].start)
    data.events = event_log.between(store.db.conn, data.trends[0].start, win.current.end)
    current = win.current.start.isoformat()
    data.comparison = Comparison.of([r for r in data.overall if r["period_start"] == current], win)
    _scorecard(data, win, earlier(None, None), earlier("channel", ["first_response_time_median"]))
    data.languages = _segment_table(rows("language", LANGUAGE_KPIS, win.current.start), "language", win)
    data.platforms = _segment_table(rows("platform", PLATFORM_KPIS, win.current.start), "platform", win)
    names, data.agent_names = _agent_names(store, settings)
    data.agents = _segment_table(rows("agent", AGENT_KPIS, win.current.start), "agent", win, names)
    data.agent_columns = [k for k in AGENT_KPIS if k != "agent_utilization_pct"
                          or any(a.cells.get(k) and a.cells[k].row["value"] is not None for a in data.agents)]
    data.diagnostics = _diagnostics(diagnose(store, settings, win.periods[0].start, win.current.end,
                                             win.grain.value, now=now))
    data.reasons_by = _reason_dimension(settings)
    data.reasons_configured = settings.kpis.reasons.by
    volume = next((ln.row["value"] for ln in data.highlights if ln.kpi == "ticket_volume"), 0)
    data.reasons = _reasons(rows(data.reasons_by, ["ticket_volume"], win.current.start),
                            earlier(data.reasons_by, ["ticket_volume"]), settings.kpis.reasons.top,
                            settings.kpis.reasons.exclude, int(volume or 0))
    return data


def _trend_periods(win: Window, overall: Sequence[dict[str, Any]]) -> tuple[Period, ...]:
    """The window's periods from the first one with data: a leading month before the data began shows nothing."""
    # The helpdesks' data: an order feed usually reaches further back than the contacts.
    with_data = {r["period_start"] for r in overall if r["value"] is not None and r["value"] != 0
                 and r["kpi"] not in VALUE_KPIS}
    for i, period in enumerate(win.periods):
        if period.start.isoformat() in with_data:
            return win.periods[i:]
    return win.periods


def _agent_names(store: Store, settings: Settings) -> tuple[dict[str, str], str]:
    """Agents' display names by their segment value (`zendesk:123`), and which of the three cases holds.

    Names are the account's own staff; they are shown only while `[privacy] store_agent_names` is on,
    so turning it off hides names an earlier sync kept.
    """
    if not settings.privacy.store_agent_names:
        return {}, "off"
    names = {f"{source}:{ident}": str(name) for source, ident, name in store.db.execute(
        "SELECT source, source_id, name FROM people WHERE role IN ('agent', 'bot') AND trim(coalesce(name, '')) != ''")}
    return names, "stored" if names else "missing"


def _data_span(store: Store) -> tuple[str | None, str | None]:
    first, last = store.db.execute(
        "SELECT min(created_at), max(created_at) FROM contacts WHERE status NOT IN ('deleted', 'merged')").fetchone()
    return first, last


def _key(row: dict[str, Any]) -> tuple[str, str, str]:
    return (row["period_start"], row["kpi"], json.dumps(row["segment"], sort_keys=True))


def index(rows: Iterable[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """Rows by (period start, KPI id, segment)."""
    return {_key(r): r for r in rows}


def _by_kpi_and_segment(rows: Iterable[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["kpi"], json.dumps(r["segment"], sort_keys=True)): r for r in rows}


def _with_previous(rows: Iterable[dict[str, Any]], previous: Iterable[dict[str, Any]]) -> list[Line]:
    """Each row with the same KPI and segment of the comparison rows (one period's worth)."""
    by_key = _by_kpi_and_segment(previous)
    return [Line(row, by_key.get((row["kpi"], json.dumps(row["segment"], sort_keys=True)))) for row in rows]


def _scorecard(data: ReportData, win: Window, previous: list[dict[str, Any]],
               previous_channel_frt: list[dict[str, Any]]) -> None:
    current = win.current.start.isoformat()
    lines = _with_previous((r for r in data.overall if r["period_start"] == current), previous)
    data.channel_mix = sorted((ln for ln in lines if ln.kpi == "channel_mix_pct"),
                              key=lambda ln: -(ln.row["value"] or 0))
    plain = [ln for ln in lines if ln.kpi != "channel_mix_pct"]
    found = {ln.kpi: ln for ln in plain}
    data.highlights = [found[k] for k in HIGHLIGHTS if k in found]
    for group, title in GROUPS:
        if group == "value" and not data.order_feed:  # without an order feed: a block of "no data"
            continue
        if group == "insight" and not data.insight:  # insight off: a block of "no data"
            continue
        members = [ln for ln in plain if META.get(ln.kpi) is not None and META[ln.kpi].group.value == group]
        if members:
            data.scorecard.append(LineGroup(title, members))
    others = [ln for ln in plain if META.get(ln.kpi) is None or META[ln.kpi].group.value not in dict(GROUPS)]
    if others:
        data.scorecard.append(LineGroup("Other", others))
    frt = [r for r in data.by_channel if r["period_start"] == current and r["kpi"] == "first_response_time_median"]
    data.channel_frt = _with_previous(frt, previous_channel_frt)


def _segment_table(rows: list[dict[str, Any]], dimension: str, win: Window,
                   names: dict[str, str] | None = None) -> list[SegmentRow]:
    """One row per segment value of the current period, the busiest first; a named value keeps its id beside."""
    current = win.current.start.isoformat()
    table: dict[str | None, dict[str, Line]] = {}
    for row in rows:
        if row["period_start"] != current or list(row["segment"]) != [dimension]:
            continue
        table.setdefault(row["segment"][dimension], {})[row["kpi"]] = Line(row)
    out = []
    for value, cells in table.items():
        name = (names or {}).get(str(value)) if value is not None else None
        label = name or segment_label(dimension, value)
        out.append(SegmentRow(value, label, cells, detail=str(value) if name else None))
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


def _reason_counts(rows: list[dict[str, Any]], exclude: Sequence[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in rows:
        (value,) = row["segment"].values() if len(row["segment"]) == 1 else (None,)
        if value is not None and value not in exclude and row["value"] is not None:
            counts[str(value)] = int(row["value"])
    return counts


def _reasons(rows: list[dict[str, Any]], previous: list[dict[str, Any]], top: int, exclude: Sequence[str],
             total: int) -> list[Reason]:
    """The top reasons of the current period with their share of all contacts and change against the comparison."""
    now, before = _reason_counts(rows, exclude), _reason_counts(previous, exclude)
    ranked = sorted(now.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    return [Reason(name, volume, 100.0 * volume / total if total else None, before.get(name, 0),
                   change(float(volume), float(before.get(name, 0)), None)) for name, volume in ranked if volume]


def health(name: str, s: dict[str, Any], settings: Settings) -> SourceHealth:
    """A source's `status` figures as the page shows them: ok, late (three sync intervals), failing or never."""
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
