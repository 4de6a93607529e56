"""Business inputs no helpdesk holds: operating cost, orders, and available hours per agent.

They come from `[[kpis.inputs]]` in the config or from `helpdesk-kpi inputs import FILE.csv`
and are stored as dated rows in `kpi_inputs` ([start, end), end exclusive). An input counts
toward a period in proportion to the days they share; a period only gets a value when its
inputs cover every one of its days (otherwise CPI of a quarter with one month of cost would
be a third of the truth). Inputs of the same kind add up. A CSV row and a config row for the
same kind, range, agent and segment are one input: the CSV row wins.

CSV columns: `kind,start,end,value` and optionally `agent` (available_hours: `source:id`)
and `segment` (a scope such as `channel=chat` or `market=DACH`; none = all contacts). The
file may be UTF-8 (with or without BOM) or UTF-16, separated by `,`, `;` or tab; in a
`;`-separated file a decimal comma is read as a decimal point.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from kpi_core.csv_files import CsvFileError, number_text, read_text
from kpi_core.kpis.periods import Period
from kpi_core.settings import BusinessInputSettings, KpiSettings
from kpi_core.store import utc_now

KINDS = ("operating_cost", "orders", "available_hours")
_KEY = ("kind", "start", "end", "agent", "segment")


class InputsError(ValueError):
    """A business-inputs file that cannot be imported; names the file, line and column."""


@dataclass(frozen=True)
class Input:
    kind: str
    start: date
    end: date
    value: float
    agent: str = ""
    segment: str = ""

    def share(self, period: Period) -> float:
        """This input's part of `period`, in proportion to shared days."""
        days = (min(self.end, period.end) - max(self.start, period.start)).days
        return self.value * max(days, 0) / (self.end - self.start).days

    def key(self) -> tuple[str, ...]:
        return (self.kind, self.start.isoformat(), self.end.isoformat(), self.agent, self.segment)


def _store_rows(conn: sqlite3.Connection, origin: str, rows: Iterable[Input]) -> set[date]:
    """Upsert rows of one origin; return the days whose inputs changed."""
    changed: set[date] = set()
    now = utc_now()
    for row in rows:
        old = conn.execute(
            "SELECT value FROM kpi_inputs WHERE origin = ? AND kind = ? AND start = ? AND [end] = ? AND agent = ?"
            " AND segment = ?", [origin, *row.key()]).fetchone()
        if old is not None and old[0] == row.value:
            continue
        conn.execute(
            "INSERT INTO kpi_inputs (origin, kind, start, [end], value, agent, segment, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (origin, kind, start, [end], agent, segment)"
            " DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            [origin, *row.key()[:3], row.value, row.agent, row.segment, now])
        changed.update(_days(row.start, row.end))
    return changed


def _days(start: date, end: date) -> Iterable[date]:
    day = start
    while day < end:
        yield day
        day += timedelta(days=1)


def mark_days(conn: sqlite3.Connection, days: Iterable[date]) -> None:
    conn.executemany("INSERT OR IGNORE INTO kpi_dirty_days VALUES (?)", [(d.isoformat(),) for d in days])


def sync_config(conn: sqlite3.Connection, settings: KpiSettings) -> None:
    """Make the stored config inputs equal `[[kpis.inputs]]`, marking the days that changed."""
    wanted = [Input(s.kind, s.start, s.end, s.value, s.agent, s.segment) for s in settings.inputs]
    keys = {w.key() for w in wanted}
    changed = _store_rows(conn, "config", wanted)
    for row in conn.execute("SELECT id, kind, start, [end], agent, segment FROM kpi_inputs WHERE origin = 'config'"
                            ).fetchall():
        if (row[1], row[2], row[3], row[4], row[5]) not in keys:
            conn.execute("DELETE FROM kpi_inputs WHERE id = ?", [row[0]])
            changed.update(_days(date.fromisoformat(row[2]), date.fromisoformat(row[3])))
    mark_days(conn, changed)


def read_csv(path: str | Path) -> list[Input]:
    """Parse an inputs CSV; every problem names the file, the line and the column."""
    path = Path(path)
    try:
        table = read_text(path)
    except CsvFileError as exc:
        raise InputsError(str(exc)) from None
    reader = table.reader()
    reader.fieldnames = [name.strip() for name in reader.fieldnames or ()]
    missing = {"kind", "start", "end", "value"} - set(reader.fieldnames)
    if missing:
        raise InputsError(f"{path}: line 1: missing column(s) {', '.join(sorted(missing))}")
    unknown = set(reader.fieldnames) - {"kind", "start", "end", "value", "agent", "segment"}
    if unknown:
        raise InputsError(f"{path}: line 1: unknown column(s) {', '.join(sorted(unknown))}")
    rows = []
    for raw in reader:
        if raw.get("value"):
            raw["value"] = number_text(raw["value"].strip(), table.separator)
        rows.append(_parse_row(path, reader.line_num, raw))
    return rows


def _parse_row(path: Path, line: int, raw: Mapping[str, Any]) -> Input:
    values = {k: (v or "").strip() for k, v in raw.items() if k is not None}
    try:
        checked = BusinessInputSettings.model_validate(
            {k: v for k, v in values.items() if v != "" or k in ("agent", "segment")})
    except ValidationError as exc:
        first = exc.errors()[0]
        column = ".".join(str(p) for p in first["loc"]) or "row"
        raise InputsError(f"{path}: line {line}: {column}: {first['msg']}") from None
    _check_segment(path, line, checked.segment)
    return Input(checked.kind, checked.start, checked.end, checked.value, checked.agent, checked.segment)


def _check_segment(path: Path, line: int, segment: str) -> None:
    if segment and (segment.count("=") != 1 or not all(segment.split("="))):
        raise InputsError(f"{path}: line {line}: segment: expected DIMENSION=VALUE such as channel=chat")


def import_csv(conn: sqlite3.Connection, path: str | Path) -> int:
    """Store the inputs of a CSV file (re-importing a row updates it); returns the rows read."""
    rows = read_csv(path)
    mark_days(conn, _store_rows(conn, "csv", rows))
    return len(rows)


class Inputs:
    """The stored inputs, asked per period and segment."""

    def __init__(self, rows: Iterable[Input]) -> None:
        self.rows = list(rows)

    @classmethod
    def load(cls, conn: sqlite3.Connection) -> Inputs:
        chosen: dict[tuple[str, ...], Input] = {}
        for kind, start, end, value, agent, segment in conn.execute(
            "SELECT kind, start, [end], value, agent, segment FROM kpi_inputs ORDER BY origin = 'csv'"
        ):
            row = Input(kind, date.fromisoformat(start), date.fromisoformat(end), value, agent, segment)
            chosen[row.key()] = row  # csv rows come last and win
        return cls(chosen.values())

    def _covered(self, rows: list[Input], period: Period) -> float | None:
        days: set[date] = set()
        for row in rows:
            days.update(_days(max(row.start, period.start), min(row.end, period.end)))
        if not rows or len(days) < period.days:
            return None
        return sum(row.share(period) for row in rows)

    def amount(self, kind: str, period: Period, segment: Mapping[str, Any]) -> float | None:
        """The input for a period and segment: one scoped to the segment, else the global one where it applies.

        Global orders apply to every segment (interactions per order of a channel = its contacts
        per order); global cost applies only unsegmented (a segment's cost must be given for it).
        """
        rows = [r for r in self.rows
                if r.kind == kind and not r.agent and r.start < period.end and r.end > period.start]
        if len(segment) == 1:
            dim, value = next(iter(segment.items()))
            scoped = [r for r in rows if r.segment == f"{dim}={value}"]
            if scoped:
                return self._covered(scoped, period)
        if segment and kind == "operating_cost":
            return None
        return self._covered([r for r in rows if not r.segment], period)

    def available_seconds(self, period: Period) -> dict[str, float]:
        """Each agent's available seconds in the period, for agents whose inputs cover it."""
        by_agent: dict[str, list[Input]] = {}
        for row in self.rows:
            if row.kind == "available_hours" and row.start < period.end and row.end > period.start:
                by_agent.setdefault(row.agent, []).append(row)
        out = {}
        for agent, rows in by_agent.items():
            hours = self._covered(rows, period)
            if hours is not None:
                out[agent] = hours * 3600
        return out
