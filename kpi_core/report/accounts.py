"""The report across accounts: every account of a PostgreSQL store on one page (`report --account all`).

An outsourcer reads its brands side by side: one row per account with the period's headline KPIs,
trend charts with a line per account, and each account's sync health. Like `kpis --account`, it
reads the values each account's daemon stored (its own time zone, business hours and facts) and
computes or writes nothing in the other accounts. Targets and statuses are this configuration's
`[kpis.targets]`, one yardstick for every brand on the page (docs/report.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from functools import cached_property
from typing import Any, Final
from zoneinfo import ZoneInfo

from kpi_core import status as sync_status
from kpi_core.kpis.accounts import stored_rows
from kpi_core.kpis.periods import Period
from kpi_core.report.charts import PALETTE, Chart, ChartSpec, Series
from kpi_core.report.charts import render as render_chart
from kpi_core.report.figures import META, Line, SegmentRow, SourceHealth
from kpi_core.report.formatting import zone_name
from kpi_core.report.gather import Window, health, window
from kpi_core.report.render import environment
from kpi_core.report.trends import X_LABELS
from kpi_core.settings import Settings
from kpi_core.store import Store, open_store

# The table's columns: what a lead compares brands by (volume, speed, resolution, satisfaction, workload).
COLUMNS: Final = (("ticket_volume", "Contacts"), ("response_rate_pct", "Response rate"),
                  ("first_response_time_median", "Median first response"),
                  ("resolution_time_median", "Median resolution"), ("fcr_pct", "FCR"), ("csat_pct", "CSAT"),
                  ("nps", "NPS"), ("backlog", "Backlog"))
# One chart each, a line per account.
TRENDS: Final = (("ticket_volume", "Contacts created", "contacts"),
                 ("first_response_time_median", "Median first response time", "median time to first reply"),
                 ("resolution_time_median", "Median resolution time", "hours from creation"),
                 ("csat_pct", "Customer satisfaction (CSAT)", "% positive ratings"),
                 ("fcr_pct", "First contact resolution (FCR)", "% of resolved contacts"))
LINES_PER_CHART: Final = len(PALETTE)  # more lines than colours cannot be told apart: the busiest are drawn


@dataclass(frozen=True)
class Account:
    """One account on the page: its row of the table, its rows per period and its sources' health."""

    name: str
    row: SegmentRow
    rows: list[dict[str, Any]]
    sources: list[SourceHealth]

    @property
    def volume(self) -> float:
        line = self.row.cells.get("ticket_volume")
        return float(line.row["value"] or 0) if line else 0.0


@dataclass
class AccountsData:
    generated_at: str
    window: Window
    zone: str
    accounts: list[Account] = field(default_factory=list)

    @property
    def previous_label(self) -> str:
        return self.window.previous.label()

    @cached_property
    def trends(self) -> tuple[Period, ...]:
        """The window's periods from the first in which some account has a value (none stored before: not drawn)."""
        with_data = {r["period_start"] for a in self.accounts for r in a.rows
                     if r["value"] not in (None, 0) and not r["segment"]}
        for i, period in enumerate(self.window.periods):
            if period.start.isoformat() in with_data:
                return self.window.periods[i:]
        return self.window.periods


def gather_accounts(url: str, accounts: dict[str, str], settings: Settings, *, period: str | None = None,
                    since: date | None = None, until: date | None = None,
                    now: datetime | None = None) -> AccountsData:
    """Each account's stored values over the report's periods, busiest account first."""
    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc).replace(microsecond=0)
    zone = ZoneInfo(settings.kpis.timezone)
    win = window(period, since, until, now, zone)
    data = AccountsData(now.strftime("%Y-%m-%dT%H:%M:%SZ"), win, zone_name(zone))
    kpi_ids = sorted({k for k, _ in COLUMNS} | {k for k, _, _ in TRENDS})
    first = min(win.periods[0].start, win.previous.start)
    for name in accounts.values():
        store = open_store(url, name)
        try:
            rows = stored_rows(store, settings, win.grain.value, first, win.current.end, None, kpi_ids, now)
            sources = [health(source, found, settings) for source, found in _sources(store, now).items()]
        finally:
            store.close()
        data.accounts.append(Account(name, _table_row(name, rows, win), rows, sources))
    data.accounts.sort(key=lambda a: (-a.volume, a.name))
    return data


def _sources(store: Store, now: datetime) -> dict[str, dict[str, Any]]:
    """Every source the account's run log knows, as `status` reports it (without the daemon's plans: the
    other accounts' daemons run elsewhere)."""
    names = [r[0] for r in store.db.execute("SELECT DISTINCT source FROM sync_runs ORDER BY source")]
    return {name: sync_status.source_health(store, name, now) for name in names}


def _table_row(name: str, rows: Sequence[dict[str, Any]], win: Window) -> SegmentRow:
    """The account's figures of the current period, each with the previous period's for the change."""
    def of(start: date) -> dict[str, dict[str, Any]]:
        return {r["kpi"]: r for r in rows if r["period_start"] == start.isoformat() and not r["segment"]}

    current, previous = of(win.current.start), of(win.previous.start)
    cells = {kpi: Line(row, previous.get(kpi)) for kpi, row in current.items()}
    return SegmentRow(name, name, cells)


def trend_specs(data: AccountsData) -> list[ChartSpec]:
    """A chart per TRENDS entry with the busiest accounts' lines (the page lists the rest)."""
    starts = [p.start.isoformat() for p in data.trends]
    labels = [p.label() for p in data.trends]
    x_label = f"{X_LABELS[data.window.grain]} ({data.zone})"
    drawn = data.accounts[:LINES_PER_CHART]
    specs = []
    for kpi, title, y_label in TRENDS:
        series = []
        for account in drawn:
            by_start = {r["period_start"]: r for r in account.rows if r["kpi"] == kpi and not r["segment"]}
            series.append(Series(account.name, [by_start[s]["value"] if s in by_start else None for s in starts]))
        notes = []
        if len(data.accounts) > len(drawn):
            notes.append(f"The {len(drawn)} accounts with the most contacts are drawn; the table above has all"
                         f" {len(data.accounts)}.")
        specs.append(ChartSpec(f"chart-accounts-{kpi}", title, META[kpi].unit, y_label, x_label, labels, series,
                               notes=notes, empty_note="No account has a stored value in these periods."))
    return specs


def render_accounts(data: AccountsData) -> str:
    """The page as one self-contained HTML document."""
    charts: list[Chart] = [render_chart(spec) for spec in trend_specs(data)]
    template = environment(ZoneInfo(data.zone)).get_template("accounts.html.j2")
    return template.render(data=data, win=data.window, charts=charts, columns=COLUMNS).lstrip() + "\n"
