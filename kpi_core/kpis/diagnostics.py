"""Reading KPIs together: the catalogue's section 5 pairs, evaluated per period and segment from stored values.

Each diagnostic is a function of the rows of one segment in one period (and, for trends,
the same segment's previous periods, or for language gaps the segment without language);
it returns its evidence when it fires and None when it does not.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, cast

from kpi_core import events as event_log
from kpi_core.kpis import periods as P
from kpi_core.kpis import values
from kpi_core.kpis.context import Context, context_for, get_meta, set_meta
from kpi_core.kpis.materialize import DIAGNOSED, ensure
from kpi_core.kpis.periods import Grain, Period
from kpi_core.kpis.segments import Segmentation, parse
from kpi_core.settings import KpiSettings, Settings
from kpi_core.store import Store

Rows = dict[str, dict[str, Any]]  # kpi id -> interface row, for one period and segment
Evidence = dict[str, Any]

MESSAGES = {
    "fast_reply_slow_resolution": "First replies meet target but one-touch resolution or FCR breaches:"
                                  " quick acknowledgements, many touches to resolve.",
    "csat_hides_unanswered": "CSAT meets target but response rate or CSAT coverage breaches:"
                             " CSAT only measures the contacts that were answered and rated.",
    "nps_lags_csat": "CSAT and NPS moved apart over the last three periods: NPS lags real-time issues.",
    "closed_but_unhappy": "Resolution time meets target but the CSAT of contacts resolved in the period"
                          " breaches: closed fast, customer unhappy.",
    "coverage_gap_by_language": "This language's response rate or first response time breaches while the"
                                " overall figure meets target: customers in this language are left behind.",
    "volume_spike": "Ticket volume is far above the previous periods: look for a product or logistics issue,"
                    " not agent performance.",
}
DIAGNOSTIC_IDS = tuple(MESSAGES)
USED_KPIS = ("first_response_time_median", "one_touch_resolution_pct", "fcr_pct", "csat_pct", "response_rate_pct",
             "csat_response_rate_pct", "nps", "resolution_time_median", "csat_of_resolved_pct", "ticket_volume")
_SPIKE_HISTORY = 4
# What the diagnostics of a period read of the periods before it: volume_spike the volume of the _SPIKE_HISTORY
# before, nps_lags_csat CSAT and NPS of the two before. A change of one of them is judged again that many periods on.
_TRENDS = {"ticket_volume": _SPIKE_HISTORY, "csat_pct": 2, "nps": 2}
# What coverage_gap_by_language reads of the segment without language, in the same period.
_GAP_KPIS = frozenset({"response_rate_pct", "first_response_time_median"})


def _status(rows: Rows, kpi_id: str) -> str | None:
    row = rows.get(kpi_id)
    return row["status"] if row else None


def _values(rows: Rows, *kpi_ids: str) -> Evidence:
    return {k: rows[k]["value"] for k in kpi_ids if k in rows}


def fast_reply_slow_resolution(rows: Rows) -> Evidence | None:
    if _status(rows, "first_response_time_median") != "ok":
        return None
    if "breach" not in (_status(rows, "one_touch_resolution_pct"), _status(rows, "fcr_pct")):
        return None
    return _values(rows, "first_response_time_median", "one_touch_resolution_pct", "fcr_pct")


def csat_hides_unanswered(rows: Rows) -> Evidence | None:
    if _status(rows, "csat_pct") != "ok":
        return None
    if "breach" not in (_status(rows, "response_rate_pct"), _status(rows, "csat_response_rate_pct")):
        return None
    return _values(rows, "csat_pct", "response_rate_pct", "csat_response_rate_pct")


def closed_but_unhappy(rows: Rows) -> Evidence | None:
    if _status(rows, "resolution_time_median") != "ok" or _status(rows, "csat_of_resolved_pct") != "breach":
        return None
    return _values(rows, "resolution_time_median", "csat_of_resolved_pct", "csat_pct")


def nps_lags_csat(history: list[Rows]) -> Evidence | None:
    """CSAT fell at each of the last two steps by >= 2 points in all while NPS moved < 2 (or the reverse);
    silent when any of those values rests on too few answers (status low_n)."""
    if len(history) < 3:
        return None
    if any(h.get(k, {}).get("status") == "low_n" for h in history[-3:] for k in ("csat_pct", "nps")):
        return None
    csat_values = [h.get("csat_pct", {}).get("value") for h in history[-3:]]
    nps_values = [h.get("nps", {}).get("value") for h in history[-3:]]
    if None in csat_values or None in nps_values:
        return None
    csat = cast(list[float], csat_values)  # no None left: checked just above
    nps = cast(list[float], nps_values)

    def fell(series: list[float]) -> bool:
        return series[1] < series[0] and series[2] < series[1] and series[0] - series[2] >= 2

    if (fell(csat) and abs(nps[2] - nps[0]) < 2) or (fell(nps) and abs(csat[2] - csat[0]) < 2):
        return {"csat_pct": csat, "nps": nps}
    return None


def volume_spike(history: list[Rows], usable: int, min_n: int = 1) -> Evidence | None:
    """Volume above mean + 3 population sd of the previous 4 periods (1-3 periods: above 1.5 x mean); a volume
    under `min_n` contacts is no spike (two contacts after one is noise, not a product issue)."""
    current = history[-1].get("ticket_volume", {}).get("value")
    previous = [h.get("ticket_volume", {}).get("value") or 0 for h in history[:-1]][-min(usable, _SPIKE_HISTORY):]
    if current is None or not previous or usable <= 0 or current < min_n:
        return None
    mean = statistics.fmean(previous)
    if current <= mean:  # at or under every threshold below (each is at least the mean): the exact sd is not needed
        return None
    if len(previous) == _SPIKE_HISTORY:
        spread = statistics.pstdev(previous)
        threshold = mean + 3 * spread
    else:
        spread, threshold = None, mean * 1.5
    if current <= threshold:
        return None
    return {"ticket_volume": current, "previous_ticket_volume": previous, "previous_mean": round(mean, 4),
            "previous_sd": None if spread is None else round(spread, 4), "threshold": round(threshold, 4)}


def coverage_gap_by_language(rows: Rows, overall: Rows) -> Evidence | None:
    fired = {}
    for kpi_id in ("response_rate_pct", "first_response_time_median"):
        if _status(rows, kpi_id) == "breach" and _status(overall, kpi_id) == "ok":
            fired[kpi_id] = rows[kpi_id]["value"]
            fired[f"overall_{kpi_id}"] = overall[kpi_id]["value"]
    return fired or None


@dataclass(frozen=True)
class _Table:
    """Stored rows of one segmentation: {(period, segment json): {kpi: row}}."""

    seg: Segmentation
    rows: dict[tuple[Period, str], Rows]

    def get(self, period: Period, segment: str) -> Rows:
        return self.rows.get((period, segment), {})


def _table(ctx: Context, grain: Grain, seg: Segmentation, periods: list[Period], compute_missing: bool,
           segments: set[str] | None = None) -> _Table:
    """The rows of `periods` (of `segments` only, if given) as the diagnostics read them (values.judged)."""
    if compute_missing:
        ensure(ctx, grain, seg, periods)
    return _Table(seg, values.judged(ctx, grain, seg.key, seg.dims, periods, USED_KPIS, segments))


def _chain(period: Period) -> list[Period]:
    """The period and the _SPIKE_HISTORY periods before it, oldest first: what its trends read."""
    chain = [period]
    for _ in range(_SPIKE_HISTORY):
        chain.insert(0, chain[0].previous())
    return chain


def _wanted(ctx: Context, segs: Iterable[Segmentation]) -> dict[str, Segmentation]:
    """The segmentations judged: the overall figures, `segs`, and the parent of each split by language (the
    figures its coverage gap compares with)."""
    wanted = {"": parse([], ctx.settings)}
    for seg in segs:
        wanted[seg.key] = seg
        if "language" in seg.dims:
            parent = parse([d for d in seg.dims if d != "language"], ctx.settings)
            wanted.setdefault(parent.key, parent)
    return wanted


def evaluate(ctx: Context, grain: Grain, segs: Iterable[Segmentation], periods: list[Period],
             compute_missing: bool = True) -> list[dict[str, Any]]:
    """Every diagnostic that fires in `periods` for each segmentation (and the overall figures).

    With `compute_missing` the stored values they need are computed first where missing; without,
    a diagnostic whose figures are not stored stays silent.
    """
    periods = sorted(p for p in periods if p.start <= ctx.today)
    if not periods:
        return []
    span = sorted({p for period in periods for p in _chain(period)})
    tables = {key: _table(ctx, grain, seg, span, compute_missing) for key, seg in _wanted(ctx, segs).items()}
    data_start = _data_start(ctx)  # after the tables: computing them may build the facts
    found: list[dict[str, Any]] = []
    for table in tables.values():
        segments = sorted({s for (p, s) in table.rows if p in periods})
        for period in periods:
            for segment in segments:
                found.extend(_evaluate_one(ctx, tables, table, period, segment, data_start))
    found.sort(key=lambda d: (d["period_start"], d["diagnostic"], json.dumps(d["segment"])))
    return found


def _data_start(ctx: Context) -> date | None:
    first = ctx.conn.execute("SELECT min(created_at) FROM kpi_facts WHERE is_deleted = 0").fetchone()[0]
    return date.fromisoformat(first[:10]) if first else None


def _usable_history(previous: list[Period], data_start: date | None) -> int:
    """How many previous periods lie after the data begins (earlier ones are empty, not quiet)."""
    if data_start is None:
        return 0
    grain = previous[0].grain
    first = data_start if grain is Grain.CUSTOM else P.period_containing(data_start, grain).start
    return sum(1 for p in previous if p.start >= first)


def _evaluate_one(ctx: Context, parents: dict[str, _Table], table: _Table, period: Period, segment: str,
                  data_start: date | None) -> list[dict[str, Any]]:
    """The diagnostics that fire for one segment of `table` in `period`; `parents` holds, by key, the table of the
    segmentation without language (every segment of the period), which a coverage gap compares with."""
    rows = table.get(period, segment)
    if not rows:
        return []
    chain = _chain(period)
    history = [table.get(p, segment) for p in chain]
    usable = _usable_history(chain[:-1], data_start)
    fired: dict[str, Evidence | None] = {
        "fast_reply_slow_resolution": fast_reply_slow_resolution(rows),
        "csat_hides_unanswered": csat_hides_unanswered(rows),
        "nps_lags_csat": nps_lags_csat(history),
        "closed_but_unhappy": closed_but_unhappy(rows),
        "volume_spike": volume_spike(history, usable, ctx.settings.min_n),
    }
    seg_dict = json.loads(segment)
    if seg_dict.get("language") not in (None, "und"):
        parent_dims = [d for d in table.seg.dims if d != "language"]
        parent = parents[",".join(parent_dims)]
        parent_segment = values.segment_json({d: seg_dict[d] for d in parent_dims})
        fired["coverage_gap_by_language"] = coverage_gap_by_language(rows, parent.get(period, parent_segment))
    return [
        {"diagnostic": name, "period_start": period.start.isoformat(), "period_end": period.end.isoformat(),
         "segment": seg_dict, "evidence": evidence, "message": MESSAGES[name]}
        for name, evidence in fired.items() if evidence
    ]


# Per segmentation key: the periods to judge again and, in each, the segments (None: every segment).
_Redo = dict[str, dict[Period, set[str] | None]]


def store_diagnostics(ctx: Context, grains: list[Grain], segs: list[Segmentation], changes: values.Changes) -> int:
    """Judge again and store the diagnostics whose inputs changed; returns how many of those fire.

    A diagnostic of a segment in a period reads that segment's USED_KPIS values in the period and the
    _SPIKE_HISTORY before it, its parent segment's in the period (coverage gaps), and beside the values the
    targets, `min_n` and the first day of data. So when only values changed (`changes`), the segments whose
    values changed are judged again in their period and the periods after it that read them, and their children by
    language in their period (see _TRENDS and _GAP_KPIS for which values reach how far); when anything else
    changed (or the segmentations judged did), every stored period of the grain is. Either way the stored
    diagnostics end as judging everything anew would leave them. A grain not asked for keeps its diagnostics,
    and is judged whole when next asked for if its values changed.
    """
    wanted = _wanted(ctx, segs)
    fingerprint = _fingerprint(ctx, wanted)
    count = 0
    for grain in {Grain(key[0]) for key in changes.keys} - set(grains):
        ctx.conn.execute("DELETE FROM kpi_meta WHERE key = ?", [DIAGNOSED + grain.value])
    for grain in grains:
        if grain is Grain.CUSTOM:
            continue
        stored = {p for p in values.computed(ctx, grain, "").get((grain, ""), {}) if p.start <= ctx.today}
        if get_meta(ctx.conn, DIAGNOSED + grain.value) != fingerprint:
            ctx.conn.executemany(
                "DELETE FROM kpi_diagnostics WHERE grain = ? AND period_start = ? AND period_end = ?",
                [(grain.value, p.start.isoformat(), p.end.isoformat()) for p in sorted(stored)])
            count += _judge(ctx, grain, wanted, {key: dict.fromkeys(stored) for key in wanted})
        else:
            count += _judge(ctx, grain, wanted, _targets(grain, wanted, stored, changes))
        set_meta(ctx.conn, DIAGNOSED + grain.value, fingerprint)
    return count


def _fingerprint(ctx: Context, wanted: dict[str, Segmentation]) -> str:
    """What the diagnostics judge by beside the stored values."""
    start = _data_start(ctx)
    shaping = [sorted(wanted), ctx.settings.targets, ctx.settings.min_n, start.isoformat() if start else None]
    return hashlib.sha256(json.dumps(shaping, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _targets(grain: Grain, wanted: dict[str, Segmentation], stored: set[Period], changes: values.Changes) -> _Redo:
    """What the changed values make to judge again (see `store_diagnostics`)."""
    children: dict[str, list[str]] = defaultdict(list)
    for key, seg in wanted.items():
        if "language" in seg.dims:
            children[",".join(d for d in seg.dims if d != "language")].append(key)
    targets: _Redo = defaultdict(dict)

    def add(key: str, period: Period, segment: str | None) -> None:
        if period not in stored:
            return
        have = targets[key].get(period, set())
        if have is None or segment is None:
            targets[key][period] = None
        else:
            have.add(segment)
            targets[key][period] = have

    for g, key, start, end, segment, kpi in changes.keys:
        if g != grain.value or key not in wanted:
            continue
        period = Period(date.fromisoformat(start), date.fromisoformat(end), grain)
        if kpi in _GAP_KPIS:
            for child in children[key]:
                add(child, period, None)
        for _ in range(_TRENDS.get(kpi, 0) + 1):
            add(key, period, segment)
            period = period.next()
    return targets


def _judge(ctx: Context, grain: Grain, wanted: dict[str, Segmentation], targets: _Redo) -> int:
    """Judge the targets again: their stored diagnostics replaced by those that fire now."""
    targets = {key: periods for key, periods in targets.items() if periods}
    if not targets:
        return 0
    data_start = _data_start(ctx)
    tables: dict[str, _Table] = {}
    parent_periods: dict[str, set[Period]] = defaultdict(set)
    for key, periods in targets.items():
        # Each period read for the segments judged in it or in a period whose trends read it; of a period only
        # read for trends, only what they read.
        read: dict[Period, set[str] | None] = {}
        for period, chosen in periods.items():
            for p in _chain(period):
                have = read.get(p, set())
                read[p] = None if have is None or chosen is None else have | chosen
        seg = wanted[key]
        rows: dict[tuple[Period, str], Rows] = {}
        for p, segments in sorted(read.items(), key=lambda item: item[0]):
            rows.update(values.judged(ctx, grain, key, seg.dims, [p], USED_KPIS if p in periods else _TRENDS,
                                      segments))
        tables[key] = _Table(seg, rows)
        parent = ",".join(d for d in wanted[key].dims if d != "language")
        if parent != key:
            parent_periods[parent] |= set(periods)
    parents = {key: _table(ctx, grain, wanted[key], sorted(periods), False) for key, periods in parent_periods.items()}
    found: list[dict[str, Any]] = []
    gone: list[tuple[Any, ...]] = []
    for key, periods in targets.items():
        table = tables[key]
        for period, chosen in sorted(periods.items(), key=lambda item: item[0]):
            span = (grain.value, key, period.start.isoformat(), period.end.isoformat())
            if chosen is None:
                gone.append(span)
                chosen = {s for (p, s) in table.rows if p == period}
            else:
                gone.extend((*span, segment) for segment in chosen)
            for segment in sorted(chosen):
                found.extend(_evaluate_one(ctx, parents, table, period, segment, data_start))
    conn = ctx.conn
    conn.executemany("DELETE FROM kpi_diagnostics WHERE grain = ? AND by_key = ? AND period_start = ?"
                     " AND period_end = ?", [g for g in gone if len(g) == 4])
    conn.executemany("DELETE FROM kpi_diagnostics WHERE grain = ? AND by_key = ? AND period_start = ?"
                     " AND period_end = ? AND segment = ?", [g for g in gone if len(g) == 5])
    conn.executemany(
        "INSERT OR REPLACE INTO kpi_diagnostics (grain, by_key, period_start, period_end, diagnostic, segment,"
        " evidence, message, computed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",  # named: PostgreSQL's upsert
        [(grain.value, ",".join(d["segment"]), d["period_start"], d["period_end"], d["diagnostic"],
          values.segment_json(d["segment"]), json.dumps(d["evidence"]), d["message"], ctx.now_iso) for d in found])
    return len(found)


def diagnose(store: Store, settings: Settings | KpiSettings, since: date | None = None, until: date | None = None,
             period: str | None = "month", *, now: datetime | None = None) -> list[dict[str, Any]]:
    """The diagnostics that fire in the periods of `period` over [since, until) (default: this month)."""
    ctx = context_for(store, settings, now)
    wanted = P.resolve(period, since, until, ctx.now, ctx.zone)
    segs = [parse(s, ctx.settings) for s in ctx.settings.segments] + [parse(["channel"], ctx.settings),
                                                                       parse(["language"], ctx.settings)]
    return name_events(ctx.conn, evaluate(ctx, wanted[0].grain, {s.key: s for s in segs}.values(), wanted))


def name_events(conn: sqlite3.Connection, found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each diagnostic with the events of the event log that ran during its period and concern its segment: in
    `events` (their JSON) and at the end of its message ("... (during: Black Friday sale)"). Evidence is left as
    it is. Done when diagnostics are read, not stored, so an event logged after a compute is named too."""
    if not found:
        return found
    starts = [date.fromisoformat(d["period_start"]) for d in found]
    ends = [date.fromisoformat(d["period_end"]) for d in found]
    logged = event_log.between(conn, min(starts), max(ends))
    out = []
    for d in found:
        overlapping = event_log.during(logged, date.fromisoformat(d["period_start"]),
                                       date.fromisoformat(d["period_end"]), d["segment"])
        if overlapping:
            titles = "; ".join(e.title for e in overlapping)
            d = {**d, "message": f"{d['message']} (during: {titles})", "events": [e.as_json() for e in overlapping]}
        out.append(d)
    return out
