"""Stored KPI values: writing computed periods, knowing which are stale, reading them as interface rows.

`kpi_values` holds raw values (with numerator, denominator, n and computed_at) per grain,
segmentation, period, KPI and segment; `kpi_computed` records each (grain, segmentation,
period) that was computed, when, and under which settings fingerprint. Targets and status
are applied on reading, so changing a target needs no recompute.

History is kept (catalogue 2c): a `frozen` period is final. `write` skips it, and triggers of
migration m022 skip any other write to it, so no compute, settings change or reader can move
it; only `unfreeze` (the explicit `compute --rebuild-history`) reopens it. `purge` and
`forget` freeze (see privacy.py). A period that starts before the latest purge's cutoff and is
computed afterwards rests on what the purge left: it is marked `partial`.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache
from typing import Any

from kpi_core.kpis.catalogue import BY_ID, COUNT_KPIS, KPIS, VALUE_SETTLE_DAYS, Kpi
from kpi_core.kpis.context import Context, copy_rows, get_meta, set_meta
from kpi_core.kpis.engine import Segment, Value
from kpi_core.kpis.periods import Grain, Period
from kpi_core.kpis.targets import status, target_json

_ORDER = {kpi.id: i for i, kpi in enumerate(KPIS)}
VALUE_COLUMNS = ("grain", "by_key", "period_start", "period_end", "kpi", "segment", "value", "numerator",
                 "denominator", "n", "computed_at")


def segment_json(segment: Segment | Mapping[str, Any]) -> str:
    return _segment_text(tuple(segment.items()) if isinstance(segment, Mapping) else segment)


def _dumps(segment: dict[str, Any]) -> str:
    return json.dumps(segment, separators=(",", ":"), ensure_ascii=False)


@lru_cache(maxsize=65536)
def _segment_text(segment: Segment) -> str:
    """A segment's stored text; a computation writes the same few segments tens of thousands of times."""
    return _dumps(dict(segment))


@lru_cache(maxsize=65536)
def _segment_read(text: str) -> tuple[dict[str, Any], str]:
    """A stored segment as a dict, and the text rows are ordered by (parsed once per segment)."""
    segment = json.loads(text)
    return segment, json.dumps(segment)


# (grain, segmentation key, period start, period end, segment's stored text, KPI)
ValueKey = tuple[str, str, str, str, str, str]
# A stored value of one segmentation by (period start, period end, KPI, segment's text): value, numerator,
# denominator, n.
_Stored = dict[tuple[str, str, str, str], tuple[Any, Any, Any, Any]]


@dataclass
class Changes:
    """The values of `kpis` a computation changed (or made appear or vanish), by segment of a period: what the
    diagnostics, which read only those KPIs, judge again (diagnostics.store_diagnostics)."""

    kpis: frozenset[str]
    keys: set[ValueKey] = field(default_factory=set)

    def note(self, grain: Grain, by_key: str, old: _Stored, new: _Stored) -> None:
        for key in old.keys() | new.keys():
            if key[2] in self.kpis and old.get(key) != new.get(key):
                start, end, kpi, segment = key
                self.keys.add((grain.value, by_key, start, end, segment, kpi))


def write(ctx: Context, grain: Grain, by_key: str, periods: Iterable[Period], values: list[Value],
          kpi_ids: list[str] | None = None, touch: bool = True, changes: Changes | None = None) -> int:
    """Replace the stored values of these periods (all KPIs, or only `kpi_ids`) with `values`; frozen
    periods are skipped (their values are final). `changes` notes which values it changed.

    Only the rows that change are written: a value computed again as it was keeps its row (its
    computed_at, read for backlog alone, whose rows are always written anew: see backlog.py).
    A full write records the period as computed under the current settings; `touch` also moves
    its computed_at (the clock that decides when a period has settled).
    """
    conn, now = ctx.conn, ctx.now_iso
    fixed = frozen(conn, grain, by_key).get((grain, by_key), set())
    periods = [p for p in periods if p not in fixed]
    values = [v for v in values if v.period not in fixed]
    old = _stored(ctx, grain, by_key, periods, kpi_ids)
    new: _Stored = {(v.period.start.isoformat(), v.period.end.isoformat(), v.kpi, segment_json(v.segment)):
                    (v.value, v.numerator, v.denominator, v.n) for v in values}
    if changes is not None:
        changes.note(grain, by_key, old, new)
    gone = [(grain.value, by_key, *key) for key, row in old.items() if new.get(key) != row or key[2] == "backlog"]
    rows = [(grain.value, by_key, *key, *row, now) for key, row in new.items()
            if old.get(key) != row or key[2] == "backlog"]
    conn.executemany("DELETE FROM kpi_values WHERE grain = ? AND by_key = ? AND period_start = ? AND period_end = ?"
                     " AND kpi = ? AND segment = ?", gone)
    if ctx.store.on_server:
        # One COPY stream: an INSERT per value is a round trip each (6 of 12 s of a full compute of 2,000 contacts).
        copy_rows(conn, "kpi_values", VALUE_COLUMNS, rows)
    else:
        conn.executemany("INSERT INTO kpi_values VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    _record(ctx, [(grain.value, by_key, p.start.isoformat(), p.end.isoformat()) for p in periods], not kpi_ids, touch)
    return len(values)


def _stored(ctx: Context, grain: Grain, by_key: str, periods: list[Period], kpi_ids: list[str] | None) -> _Stored:
    """What is stored of these periods (all KPIs, or `kpi_ids`)."""
    spans = {(p.start.isoformat(), p.end.isoformat()) for p in periods}
    if not spans:
        return {}
    starts = sorted({start for start, _ in spans})
    only = f" AND kpi IN ({', '.join('?' for _ in kpi_ids)})" if kpi_ids else ""
    out: _Stored = {}
    for start, end, kpi, segment, value, numerator, denominator, n in ctx.conn.execute(
        f"SELECT period_start, period_end, kpi, segment, value, numerator, denominator, n FROM kpi_values"
        f" WHERE grain = ? AND by_key = ? AND period_start IN ({', '.join('?' for _ in starts)}){only}",
        [grain.value, by_key, *starts, *(kpi_ids or [])],
    ):
        if (start, end) in spans:
            out[(start, end, kpi, segment)] = (value, numerator, denominator, n)
    return out


def _record(ctx: Context, keys: list[tuple[str, str, str, str]], full: bool, touch: bool) -> None:
    """Note the written periods in kpi_computed: when, under which settings, and whether they are partial."""
    conn, now = ctx.conn, ctx.now_iso
    boundary = purge_boundary(conn)
    if full:
        fingerprint, seq = ctx.values_fingerprint(), changes_seq(ctx)
        conn.executemany(
            "INSERT INTO kpi_computed (grain, by_key, period_start, period_end, computed_at, fingerprint, backlog_seq,"
            " partial) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (grain, by_key, period_start, period_end)"
            " DO UPDATE SET computed_at = excluded.computed_at, fingerprint = excluded.fingerprint,"
            " backlog_seq = excluded.backlog_seq, partial = excluded.partial",
            [(*k, now, fingerprint, seq, int(_before(k[2], boundary))) for k in keys])
        return
    if touch:
        conn.executemany("UPDATE kpi_computed SET computed_at = ? WHERE grain = ? AND by_key = ? AND period_start = ?"
                         " AND period_end = ?", [(now, *k) for k in keys])
    # Some KPIs redone from what a purge left make the period partial; a later full write keeps it so.
    conn.executemany("UPDATE kpi_computed SET partial = 1 WHERE grain = ? AND by_key = ? AND period_start = ?"
                     " AND period_end = ?", [k for k in keys if _before(k[2], boundary)])


# --- history: frozen and partial periods --------------------------------------------------------

# kpi_meta key: the latest cutoff (ISO timestamp) before which a purge deleted contacts.
PURGE_BOUNDARY = "purge_boundary"
# A period "starts before" a cutoff timestamp when its first midnight does.
_STARTS_BEFORE = "period_start || 'T00:00:00Z' < ?"


def _before(period_start: str, boundary: str | None) -> bool:
    return boundary is not None and period_start + "T00:00:00Z" < boundary


def purge_boundary(conn: sqlite3.Connection) -> str | None:
    return get_meta(conn, PURGE_BOUNDARY)


def move_purge_boundary(conn: sqlite3.Connection, cutoff: str) -> None:
    """Record a purge's cutoff (the boundary only moves forward: earlier purges left older periods partial too)."""
    current = purge_boundary(conn)
    if current is None or cutoff > current:
        set_meta(conn, PURGE_BOUNDARY, cutoff)


def frozen(conn: sqlite3.Connection, grain: Grain | None = None, by_key: str | None = None
           ) -> dict[tuple[Grain, str], set[Period]]:
    """The frozen periods of every stored (grain, segmentation), or of one."""
    sql = "SELECT grain, by_key, period_start, period_end FROM kpi_computed WHERE frozen = 1"
    args: list[Any] = []
    if grain is not None:
        sql += " AND grain = ? AND by_key = ?"
        args = [grain.value, by_key]
    out: dict[tuple[Grain, str], set[Period]] = {}
    for g, by, start, end in conn.execute(sql, args):
        out.setdefault((Grain(g), by), set()).add(Period(date.fromisoformat(start), date.fromisoformat(end), Grain(g)))
    return out


def freeze_before(conn: sqlite3.Connection, cutoff: str, today: date) -> int:
    """Freeze the stored periods that contain or precede `cutoff` and have ended; returns how many."""
    return conn.execute(f"UPDATE kpi_computed SET frozen = 1 WHERE frozen = 0 AND {_STARTS_BEFORE}"
                        " AND period_end <= ?", [cutoff, today.isoformat()]).rowcount


def freeze_containing(conn: sqlite3.Connection, days_table: str, today: date) -> int:
    """Freeze the stored periods that have ended and contain one of the days ('YYYY-MM-DD') in `days_table`."""
    return conn.execute(
        f"UPDATE kpi_computed SET frozen = 1 WHERE frozen = 0 AND period_end <= ? AND EXISTS"
        f" (SELECT 1 FROM {days_table} d WHERE d.day >= kpi_computed.period_start AND d.day < kpi_computed.period_end)",
        [today.isoformat()]).rowcount


def frozen_summary(conn: sqlite3.Connection) -> list[tuple[str, str, int, str, str]]:
    """Per stored (grain, segmentation): how many periods are frozen, the first start and the last end."""
    return [tuple(row) for row in conn.execute(
        "SELECT grain, by_key, count(*), min(period_start), max(period_end) FROM kpi_computed WHERE frozen = 1"
        " GROUP BY grain, by_key ORDER BY grain, by_key")]


def unfreeze(conn: sqlite3.Connection) -> int:
    """Reopen every frozen period and forget the purge boundary (the store is taken to hold everything again)."""
    conn.execute("DELETE FROM kpi_meta WHERE key = ?", [PURGE_BOUNDARY])
    return conn.execute("UPDATE kpi_computed SET frozen = 0 WHERE frozen = 1").rowcount


def partial(conn: sqlite3.Connection, grain: Grain, by_key: str) -> set[tuple[str, str]]:
    """(period_start, period_end) of the partial periods of one stored (grain, segmentation)."""
    return {(s, e) for s, e in conn.execute(
        "SELECT period_start, period_end FROM kpi_computed WHERE grain = ? AND by_key = ? AND partial = 1",
        [grain.value, by_key])}


def changes_seq(ctx: Context) -> int:
    """The number of the latest facts refresh that recorded changes (see facts.py)."""
    return int(get_meta(ctx.conn, "facts_changes_seq") or 0)


def computed(ctx: Context, grain: Grain | None = None, by_key: str | None = None
             ) -> dict[tuple[Grain, str], dict[Period, tuple[datetime, str]]]:
    """The stored (grain, segmentation) combinations and their periods: {period: (computed_at, fingerprint)}."""
    sql = "SELECT grain, by_key, period_start, period_end, computed_at, fingerprint FROM kpi_computed"
    args: list[Any] = []
    if grain is not None:
        sql += " WHERE grain = ? AND by_key = ?"
        args = [grain.value, by_key]
    out: dict[tuple[Grain, str], dict[Period, tuple[datetime, str]]] = {}
    for g, by, start, end, at, fingerprint in ctx.conn.execute(sql, args):
        period = Period(date.fromisoformat(start), date.fromisoformat(end), Grain(g))
        stamp = datetime.fromisoformat(at.replace("Z", "+00:00"))
        out.setdefault((Grain(g), by), {})[period] = (stamp, fingerprint)
    return out


def settle_days(ctx: Context) -> int:
    """Days after a period's end during which its values can still change with time alone.

    FCR waits fcr_window_days; an unanswered contact turns into a service-level miss after its
    channel's threshold (in business time that can span a weekend and holidays); abandonment
    waits abandon_after; the value KPIs (an order feed) wait their 90-day windows.
    """
    thresholds = max(ctx.targets.channel_frt_minutes(c) for c in ("chat", "email", "phone", "other")) / 1440
    slack = 7 if ctx.hours.configured else 0
    feed = ctx.conn.execute("SELECT 1 FROM orders LIMIT 1").fetchone() is not None
    return int(max(ctx.settings.fcr_window_days, thresholds + slack, ctx.settings.abandon_after.days,
                   VALUE_SETTLE_DAYS if feed else 0)) + 1


def is_settled(ctx: Context, period: Period, computed_at: datetime) -> bool:
    # The period's end is a local midnight of `[kpis] timezone`.
    end = datetime.strptime(ctx.instant(period.end), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    return computed_at >= end + timedelta(days=settle_days(ctx))


def read(ctx: Context, grain: Grain, by_key: str, periods: list[Period], kpi_ids: list[str] | None,
         business_hours: bool) -> list[dict[str, Any]]:
    """Stored values as the interface's JSON objects, with target and status applied now; rows of a partial
    period carry `"partial": true`."""
    wanted = (set(kpi_ids) if kpi_ids
              else {k.id for k in KPIS if not k.hidden and (business_hours or not k.business_hours)})
    rows: list[dict[str, Any]] = []
    keys: list[str] = []  # each row's segment as ordered
    marks = ", ".join("?" for _ in wanted)
    for p in sorted(periods):
        for kpi_id, segment, value, num, den, n in ctx.conn.execute(
            "SELECT kpi, segment, value, numerator, denominator, n FROM kpi_values WHERE grain = ? AND by_key = ?"
            f" AND period_start = ? AND period_end = ? AND kpi IN ({marks})",
            [grain.value, by_key, p.start.isoformat(), p.end.isoformat(), *sorted(wanted)]
        ):
            parsed, order = _segment_read(segment)
            rows.append(as_row(ctx, BY_ID[kpi_id], p, dict(parsed), value, num, den, n))
            keys.append(order)
    marked = partial(ctx.conn, grain, by_key)
    for row in rows:
        if (row["period_start"], row["period_end"]) in marked:
            row["partial"] = True  # only when true: the interface changes only by adding
    ranked = sorted(range(len(rows)), key=lambda i: (rows[i]["period_start"], rows[i]["period_end"],
                                                     _ORDER[rows[i]["kpi"]], keys[i]))
    return [rows[i] for i in ranked]


def judged(ctx: Context, grain: Grain, seg_key: str, dims: tuple[str, ...], periods: Iterable[Period],
           kpi_ids: Iterable[str], segments: Iterable[str] | None = None) -> dict[tuple[Period, str], dict[str, Any]]:
    """The stored values of `kpi_ids` as `as_row` shows them and judges them (only "value" and "status"), by
    (period, segment's stored text): what the diagnostics read, without building whole interface rows. Only
    segments of the segmentation's own dimensions (channel mix rows carry one more), and of `segments` if given.
    No KPI read here is prorated (those on business inputs are not asked for)."""
    wanted = sorted(set(kpi_ids))
    if INPUT_KPIS & set(wanted):
        raise ValueError(f"{sorted(INPUT_KPIS & set(wanted))} are prorated: read them with as_row")
    by_span = {(p.start.isoformat(), p.end.isoformat()): p for p in periods}
    starts = sorted({start for start, _ in by_span})
    if not starts or not wanted:
        return {}
    picked = sorted(set(segments)) if segments is not None else None
    only = f" AND segment IN ({', '.join('?' for _ in picked)})" if picked is not None else ""
    targets: dict[tuple[str, str], Any] = {}
    out: dict[tuple[Period, str], dict[str, Any]] = {}
    min_n, columns = ctx.settings.min_n, list(dims)
    for start, end, text, kpi_id, value, n in ctx.conn.execute(
        f"SELECT period_start, period_end, segment, kpi, value, n FROM kpi_values WHERE grain = ? AND by_key = ?"
        f" AND period_start IN ({', '.join('?' for _ in starts)}) AND kpi IN ({', '.join('?' for _ in wanted)}){only}",
        [grain.value, seg_key, *starts, *wanted, *(picked or [])],
    ):
        period = by_span.get((start, end))
        if period is None:
            continue
        segment, _ = _segment_read(text)
        if list(segment) != columns:
            continue
        kpi = BY_ID[kpi_id]
        if (kpi_id, text) not in targets:
            targets[(kpi_id, text)] = ctx.targets.for_value(kpi, segment)
        out.setdefault((period, text), {})[kpi_id] = {
            "value": _tidy(value, kpi_id in COUNT_KPIS),
            "status": status(kpi, value, targets[(kpi_id, text)], n, min_n)}
    return out


def as_row(ctx: Context, kpi: Kpi, period: Period, segment: dict[str, Any], value: float | None,
           numerator: float | None, denominator: float | None, n: int | None) -> dict[str, Any]:
    """One interface row; status applied now (targets, `[kpis] min_n`). In a running period a KPI on a business
    input takes the input's share of the days so far (see `prorate`) and carries `"prorated": true`."""
    prorated = False
    days = days_so_far(period, ctx.today)
    if days is not None and kpi.id in INPUT_KPIS:
        value, numerator, denominator = prorate(kpi, days / period.days, numerator, denominator)
        prorated = value is not None
    target = ctx.targets.for_value(kpi, segment)
    unit = ctx.settings.currency or kpi.unit if kpi.unit == "currency" else kpi.unit
    row = {
        "kpi": kpi.id, "period_start": period.start.isoformat(), "period_end": period.end.isoformat(),
        "segment": segment, "value": _tidy(value, kpi.id in COUNT_KPIS), "unit": unit, "numerator": _tidy(numerator),
        "denominator": _tidy(denominator), "n": n, "target": target_json(target),
        "status": status(kpi, value, target, n, ctx.settings.min_n),
    }
    if prorated:
        row["prorated"] = True  # only when true: the interface changes only by adding
    return row


# KPIs on a business input given for whole periods (catalogue 2b: inputs apply in proportion to days).
INPUT_KPIS = frozenset({"interactions_per_order", "cost_per_interaction", "cost_per_resolution",
                        "agent_utilization_pct"})


def days_so_far(period: Period, today: date) -> int | None:
    """Days of a running period up to and including today; None when the period is over (or not begun, or ends
    tomorrow, so that every one of its days has begun)."""
    if not period.start <= today or today + timedelta(days=1) >= period.end:
        return None
    return (today - period.start).days + 1


def compared_with(period: Period, today: date) -> tuple[Period, bool]:
    """What a period's change is measured against, and whether that is only the previous period's first days.

    A running period is compared like for like: with as many days of the previous period as it has had so far,
    today counted as a whole day (six days into December against 1-6 November, not all of November). Once over,
    or when the previous period is no longer than the days so far, with the whole previous period.
    """
    previous = period.previous()
    days = days_so_far(period, today)
    if days is None or days >= previous.days:
        return previous, False
    return Period(previous.start, previous.start + timedelta(days=days), Grain.CUSTOM), True


def prorate(kpi: Kpi, share: float, numerator: float | None, denominator: float | None
            ) -> tuple[float | None, float | None, float | None]:
    """A running period's input KPI with the input cut to the days so far: the month's cost over the month's
    contacts so far would overstate cost per interaction by the days still to come."""
    if numerator is None or not denominator:
        return None, numerator, denominator
    if kpi.id == "cost_per_interaction" or kpi.id == "cost_per_resolution":
        numerator *= share  # cost / contacts
    else:
        denominator *= share  # contacts / orders, handle time / available time
    scale = 100.0 if kpi.id == "agent_utilization_pct" else 1.0
    return scale * numerator / denominator, numerator, denominator


def _tidy(number: float | None, whole: bool = True) -> float | int | None:
    """Counts as integers, other figures rounded to 4 decimals."""
    if number is None:
        return None
    if whole and float(number).is_integer():
        return int(number)
    return round(float(number), 4)

