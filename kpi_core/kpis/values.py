"""Stored KPI values: writing computed periods, knowing which are stale, reading them as interface rows.

`kpi_values` holds raw values (with numerator, denominator, n and computed_at) per grain,
segmentation, period, KPI and segment; `kpi_computed` records each (grain, segmentation,
period) that was computed, when, and under which settings fingerprint. Targets and status
are applied on reading, so changing a target needs no recompute.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import date, datetime, timedelta, timezone
from typing import Any

from kpi_core.kpis.catalogue import BY_ID, COUNT_KPIS, KPIS, Kpi
from kpi_core.kpis.context import Context, get_meta
from kpi_core.kpis.engine import Segment, Value
from kpi_core.kpis.periods import Grain, Period
from kpi_core.kpis.targets import status, target_json

_ORDER = {kpi.id: i for i, kpi in enumerate(KPIS)}


def segment_json(segment: Segment | Mapping[str, Any]) -> str:
    items = segment.items() if isinstance(segment, Mapping) else segment
    return json.dumps(dict(items), separators=(",", ":"), ensure_ascii=False)


def write(ctx: Context, grain: Grain, by_key: str, periods: Iterable[Period], values: list[Value],
          kpi_ids: list[str] | None = None, touch: bool = True) -> int:
    """Replace the stored values of these periods (all KPIs, or only `kpi_ids`) with `values`.

    A full write records the period as computed under the current settings; `touch` also moves
    its computed_at (the clock that decides when a period has settled).
    """
    conn, now = ctx.conn, ctx.now_iso
    periods = list(periods)
    only = f" AND kpi IN ({', '.join('?' for _ in kpi_ids)})" if kpi_ids else ""
    for p in periods:
        conn.execute(
            f"DELETE FROM kpi_values WHERE grain = ? AND by_key = ? AND period_start = ? AND period_end = ?{only}",
            [grain.value, by_key, p.start.isoformat(), p.end.isoformat(), *(kpi_ids or [])])
    conn.executemany(
        "INSERT INTO kpi_values VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(grain.value, by_key, v.period.start.isoformat(), v.period.end.isoformat(), v.kpi, segment_json(v.segment),
          v.value, v.numerator, v.denominator, v.n, now) for v in values])
    keys = [(grain.value, by_key, p.start.isoformat(), p.end.isoformat()) for p in periods]
    if not kpi_ids:
        fingerprint, seq = ctx.values_fingerprint(), changes_seq(ctx)
        conn.executemany(
            "INSERT INTO kpi_computed VALUES (?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (grain, by_key, period_start, period_end)"
            " DO UPDATE SET computed_at = excluded.computed_at, fingerprint = excluded.fingerprint,"
            " backlog_seq = excluded.backlog_seq", [(*k, now, fingerprint, seq) for k in keys])
    elif touch:
        conn.executemany("UPDATE kpi_computed SET computed_at = ? WHERE grain = ? AND by_key = ? AND period_start = ?"
                         " AND period_end = ?", [(now, *k) for k in keys])
    return len(values)


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
    waits abandon_after.
    """
    thresholds = max(ctx.targets.channel_frt_minutes(c) for c in ("chat", "email", "phone", "other")) / 1440
    slack = 7 if ctx.hours.configured else 0
    return int(max(ctx.settings.fcr_window_days, thresholds + slack, ctx.settings.abandon_after.days)) + 1


def is_settled(ctx: Context, period: Period, computed_at: datetime) -> bool:
    end = datetime.combine(period.end, datetime.min.time(), timezone.utc)
    return computed_at >= end + timedelta(days=settle_days(ctx))


def read(ctx: Context, grain: Grain, by_key: str, periods: list[Period], kpi_ids: list[str] | None,
         business_hours: bool) -> list[dict[str, Any]]:
    """Stored values as the interface's JSON objects, with target and status applied now."""
    wanted = (set(kpi_ids) if kpi_ids
              else {k.id for k in KPIS if not k.hidden and (business_hours or not k.business_hours)})
    rows: list[dict[str, Any]] = []
    marks = ", ".join("?" for _ in wanted)
    for p in sorted(periods):
        for kpi_id, segment, value, num, den, n in ctx.conn.execute(
            "SELECT kpi, segment, value, numerator, denominator, n FROM kpi_values WHERE grain = ? AND by_key = ?"
            f" AND period_start = ? AND period_end = ? AND kpi IN ({marks})",
            [grain.value, by_key, p.start.isoformat(), p.end.isoformat(), *sorted(wanted)]
        ):
            rows.append(as_row(ctx, BY_ID[kpi_id], p, json.loads(segment), value, num, den, n))
    rows.sort(key=lambda r: (r["period_start"], r["period_end"], _ORDER[r["kpi"]], json.dumps(r["segment"])))
    return rows


def as_row(ctx: Context, kpi: Kpi, period: Period, segment: dict[str, Any], value: float | None,
           numerator: float | None, denominator: float | None, n: int | None) -> dict[str, Any]:
    target = ctx.targets.for_value(kpi, segment)
    unit = ctx.settings.currency or kpi.unit if kpi.unit == "currency" else kpi.unit
    return {
        "kpi": kpi.id, "period_start": period.start.isoformat(), "period_end": period.end.isoformat(),
        "segment": segment, "value": _tidy(value, kpi.id in COUNT_KPIS), "unit": unit, "numerator": _tidy(numerator),
        "denominator": _tidy(denominator), "n": n, "target": target_json(target), "status": status(kpi, value, target),
    }


def _tidy(number: float | None, whole: bool = True) -> float | int | None:
    """Counts as integers, other figures rounded to 4 decimals."""
    if number is None:
        return None
    if whole and float(number).is_integer():
        return int(number)
    return round(float(number), 4)

