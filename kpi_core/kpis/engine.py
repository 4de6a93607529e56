"""The generic evaluator: the catalogue's measures over `kpi_facts`, for one period grain and several segmentations.

Work is shared as much as the arithmetic allows, because SQLite sorts every row it groups:
- additive measures (counts, sums, shares, means) of an anchor run as one GROUP BY per
  segmentation, and a segmentation whose dimensions are a subset of another's (the
  unsegmented one always is) is summed up from it in Python instead of queried;
- percentiles, distinct counts, repeat contacts and retention come from one fetch of the
  needed column per anchor, split by every segmentation at once in Python;
- backlog is opened minus closed contacts, counted inside the same grouped queries, plus
  the steps of contacts with a reopen history and the contacts open before the first period.
Tag segmentations are multi-valued (a contact counts once per tag), so they are never summed
up and get their own queries. Values are raw: targets and status are applied on reading.

Periods are local dates in `[kpis] timezone`: range conditions compare the UTC timestamps with
each boundary's UTC instant (`ctx.bound`), and outside UTC the period key compares them with the
same bounds in SQL (`periods.key_sql`): boundaries are converted once per period, never per row.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from kpi_core.kpis import periods as P
from kpi_core.kpis.catalogue import (
    CUSTOMER_WROTE,
    Anchor,
    Count,
    Distinct,
    InputRatio,
    Kpi,
    Mean,
    Percentile,
    Ratio,
    Repeat,
    Share,
    Special,
)
from kpi_core.kpis.context import Context
from kpi_core.kpis.inputs import Inputs
from kpi_core.kpis.periods import Grain, Period
from kpi_core.kpis.scales import ces_sql, nps_sql, positive_sql
from kpi_core.kpis.segments import Segmentation, fact_dims, fact_joins, survey_dims

Segment = tuple[tuple[str, Any], ...]
Key = tuple[str, tuple[Any, ...]]  # (period start, segment values)
Table = dict[Key, list[Any]]
_FACT_ANCHORS = {Anchor.CREATED: "f.created_at", Anchor.FIRST_RESOLVED: "f.first_resolved_at",
                 Anchor.LAST_RESOLVED: "f.last_resolved_at"}
# Backlog steps counted inside the created / first-resolved queries (contacts without a reopen history).
_OPENED = "sum(CASE WHEN f.transitions IS NULL THEN 1 ELSE 0 END)"
_CLOSED_AT_CREATION = ("sum(CASE WHEN f.transitions IS NULL AND f.first_resolved_at < f.created_at"
                       " THEN 1 ELSE 0 END)")
_CLOSED = "sum(CASE WHEN f.transitions IS NULL AND f.first_resolved_at >= f.created_at THEN 1 ELSE 0 END)"
_VOLUME = "count(*)"


@dataclass
class _Plan:
    exprs: dict[Anchor, list[str]] = field(default_factory=lambda: defaultdict(list))
    slots: dict[str, tuple[Anchor, tuple[int, ...]]] = field(default_factory=dict)
    ranks: dict[tuple[Anchor, str], list[tuple[int, int]]] = field(default_factory=lambda: defaultdict(list))
    retention: bool = False
    distinct: bool = False


@dataclass(frozen=True)
class Value:
    kpi: str
    period: Period
    by: str  # the segmentation's key ("channel,language"; "" unsegmented)
    segment: Segment
    value: float | None
    numerator: float | None = None
    denominator: float | None = None
    n: int | None = None


def evaluate(ctx: Context, periods: list[Period], segs: list[Segmentation], kpis: list[Kpi]) -> list[Value]:
    """Every KPI of `kpis` for every period (one grain, none in the future) and segmentation of `segs`."""
    evaluation = prepare(ctx, periods, segs, kpis)
    return evaluation.run() if evaluation else []


def prepare(ctx: Context, periods: list[Period], segs: list[Segmentation], kpis: list[Kpi]) -> _Evaluation | None:
    """An evaluation to run here (`run()`) or pass by pass elsewhere (`units`, `unit`, then `run(results)`)."""
    periods = sorted(p for p in set(periods) if p.start <= ctx.today)
    if not periods or not kpis or not segs:
        return None
    return _Evaluation(ctx, periods, segs, kpis)


class _Box:
    """One group's contacts for the distinct measures: counts and sets that merge into coarser groups."""

    __slots__ = ("requesters", "rows", "values", "with_requester")

    def __init__(self, extra: int) -> None:
        self.rows = 0
        self.with_requester = 0
        self.requesters: set[str] = set()  # everyone with a contact (repeat contacts, last period's base)
        self.values: list[set[Any]] = [set() for _ in range(extra)]

    def merge(self, other: _Box) -> _Box:
        self.rows += other.rows
        self.with_requester += other.with_requester
        self.requesters |= other.requesters
        for mine, theirs in zip(self.values, other.values, strict=True):
            mine |= theirs
        return self

    def copy(self) -> _Box:
        return _Box(len(self.values)).merge(self)


def _merge(box: Any, other: Any) -> Any:
    if isinstance(box, _Box):
        return box.merge(other)
    box.extend(other)
    return box


def _copy(box: Any) -> Any:
    return box.copy() if isinstance(box, _Box) else list(box)


def _sum_rows(target: list[Any], row: list[Any]) -> None:
    for i, value in enumerate(row):
        if value is not None:
            target[i] = (target[i] or 0) + value


class _Evaluation:
    def __init__(self, ctx: Context, periods: list[Period], segs: list[Segmentation], kpis: list[Kpi]) -> None:
        self.ctx, self.periods, self.kpis = ctx, periods, kpis
        self.segs = list({s.key: s for s in segs}.values())
        self.plain = sorted((s for s in self.segs if not s.has_tag), key=lambda s: -len(s.dims))
        self.grain = periods[0].grain
        self.by_start = {p.start.isoformat(): p for p in periods}
        self.inputs = Inputs.load(ctx.conn)
        self.runs = P.runs(periods)

    # --- SQL helpers ----------------------------------------------------------------------

    def _key(self, column: str, run: list[Period]) -> str:
        if self.grain is Grain.CUSTOM:
            start, prev = run[0].start, run[0].previous().start
            return (f"CASE WHEN {column} < '{self.ctx.bound(start)}'"
                    f" THEN '{prev.isoformat()}' ELSE '{start.isoformat()}' END")
        # From the period before the run: fetches with `back` and retention read it too.
        return P.key_sql(self.grain, column, zone=self.ctx.zone, within=(run[0].previous().start, run[-1].end))

    def _params(self, lo: date, hi: date, **extra: Any) -> dict[str, Any]:
        return {**self.ctx.params(), "lo": self.ctx.bound(lo), "hi": self.ctx.bound(hi), **extra}

    def _fill(self, sql: str) -> str:
        positive = positive_sql("s", self.ctx.settings.csat_scales)
        return (sql.replace("{sl}", self.ctx.targets.service_level_sql()).replace("{pos}", positive)
                .replace("{nps}", nps_sql("s")).replace("{ces}", ces_sql("s")))

    def _range(self, column: str, lo: date, hi: date) -> str:
        """The anchor's range condition; a range covering much of the data scans the table instead of
        walking the index (row-by-row lookups cost more than reading everything in order)."""
        first, last = self._span
        wide = first is not None and last is not None and (hi - lo).days > 0.2 * max((last - first).days, 1)
        col = f"+{column}" if wide else column
        return f"{col} >= :lo AND {col} < :hi"

    @property
    def _span(self) -> tuple[date | None, date | None]:
        if not hasattr(self, "_span_cache"):
            first = self.ctx.conn.execute("SELECT min(created_at) FROM kpi_facts").fetchone()[0]
            last = self.ctx.conn.execute("SELECT max(created_at) FROM kpi_facts").fetchone()[0]
            self._span_cache = ((date.fromisoformat(first[:10]), date.fromisoformat(last[:10])) if first
                                else (None, None))
        return self._span_cache

    def _source(self, anchor: Anchor, seg: Segmentation) -> tuple[str, str, str, list[str]]:
        """FROM clause, anchor column, row filter and dimension SQL of an anchor's rows."""
        if anchor is Anchor.RESPONSE:
            people = (" LEFT JOIN people rp ON rp.source = s.source AND rp.source_id = s.requester_id"
                      if {"language", "market"} & set(seg.dims) else "")
            src = ("survey_responses s LEFT JOIN kpi_facts f ON f.source = s.source AND f.source_id = s.contact_id"
                   + people + fact_joins(seg))
            dims = survey_dims(seg, self.ctx.market_of_person())
            # An answer goes with its contact: left out with a deleted or merged one, and with an outbound
            # contact nobody answered (catalogue 2c).
            keep = f"coalesce(f.is_deleted, 0) = 0 AND (f.id IS NULL OR {CUSTOMER_WROTE})"
            return src, "s.created_at", keep, dims
        return "kpi_facts f" + fact_joins(seg), _FACT_ANCHORS[anchor], "f.is_deleted = 0", fact_dims(seg)

    def _rows(self, anchor: Anchor, seg: Segmentation, columns: list[str], extra_where: str = ""
              ) -> Iterator[tuple[str, tuple[Any, ...], tuple[Any, ...]]]:
        """(period start, segment values, aggregate columns) per group, over every run of periods."""
        src, anchor_col, where, dims = self._source(anchor, seg)
        if extra_where:
            where += f" AND {extra_where}"
        n = len(dims)
        for run in self.runs:
            start, end = run[0].start, run[-1].end
            select = ", ".join([f"{self._key(anchor_col, run)} AS p"] + [f"{d} AS d{i}" for i, d in enumerate(dims)]
                               + [self._fill(c) for c in columns])
            group = ", ".join(["p"] + [f"d{i}" for i in range(n)])
            sql = f"SELECT {select} FROM {src} WHERE {where} AND {self._range(anchor_col, start, end)} GROUP BY {group}"
            for row in self.ctx.conn.execute(sql, self._params(start, end)):
                yield row[0], tuple(row[1:1 + n]), row[1 + n:]

    # --- additive aggregates --------------------------------------------------------------

    def _additive(self, anchor: Anchor, exprs: list[str]) -> dict[str, Table]:
        """{segmentation key: {(period, segment): [aggregates]}}, summing up where dimensions allow."""
        out: dict[str, Table] = {}
        done: list[Segmentation] = []
        for seg in self.plain:
            parent = next((t for t in done if set(seg.dims) <= set(t.dims)), None)
            out[seg.key] = self._roll_up(out[parent.key], parent, seg) if parent else self._grouped(anchor, seg, exprs)
            done.append(seg)
        for seg in self.segs:
            if seg.has_tag:
                out[seg.key] = self._grouped(anchor, seg, exprs)
        return out

    def _grouped(self, anchor: Anchor, seg: Segmentation, exprs: list[str]) -> Table:
        return {(p, vals): list(row) for p, vals, row in self._rows(anchor, seg, exprs)}

    @staticmethod
    def _roll_up(table: Table, parent: Segmentation, seg: Segmentation) -> Table:
        pick = [parent.dims.index(d) for d in seg.dims]
        out: Table = {}
        for (p, vals), row in table.items():
            key = (p, tuple(vals[i] for i in pick))
            if key in out:
                _sum_rows(out[key], row)
            else:
                out[key] = list(row)
        return out

    # --- values from a fetched column, split by every segmentation at once -----------------

    def _fetch(self, anchor: Anchor, seg: Segmentation, columns: list[str], where: str, back: bool,
               only_back: bool = False) -> Iterator[tuple[Any, ...]]:
        """Raw rows (period start, segment values..., columns...), one per contact (per tag): over the
        periods, from the period before each run when `back`, or over those earlier periods only."""
        src, anchor_col, base, dims = self._source(anchor, seg)
        if where:
            base += f" AND {where}"
        for run in self.runs:
            start = run[0].previous().start if back or only_back else run[0].start
            end = run[-1].start if only_back else run[-1].end
            select = ", ".join([self._key(anchor_col, run)] + dims + [self._fill(c) for c in columns])
            yield from self.ctx.conn.execute(
                f"SELECT {select} FROM {src} WHERE {base} AND {self._range(anchor_col, start, end)}",
                self._params(start, end))

    def _finest(self) -> Segmentation | None:
        """The union of the plain segmentations' dimensions: every plain one sums up from it."""
        if not self.plain:
            return None
        return Segmentation(tuple(dict.fromkeys(d for s in self.plain for d in s.dims)),
                            tuple(dict.fromkeys(c for s in self.plain for c in s.custom_keys)))

    def _collect(self, anchor: Anchor, columns: list[str], where: str, back: bool,
                 gather: Any, only_back: bool = False) -> Iterator[tuple[str, dict[Key, Any]]]:
        """Fetch once at the finest segmentation (and once per tag segmentation), `gather` rows into
        per-group containers, then merge them up to each plain segmentation in turn: yields
        (segmentation key, groups), one segmentation at a time, so the caller can count and let go."""
        finest = self._finest()
        if finest is not None:
            width = 1 + len(finest.dims)
            groups = gather(self._fetch(anchor, finest, columns, where, back, only_back), width)
            for seg in self.plain:
                pick = [1 + finest.dims.index(d) for d in seg.dims]
                if len(pick) == len(finest.dims):
                    yield seg.key, {(k[0], tuple(k[i] for i in pick)): box for k, box in groups.items()}
                    continue
                merged: dict[Key, Any] = {}
                for key, box in groups.items():
                    mkey = (key[0], tuple(key[i] for i in pick))
                    if mkey in merged:
                        merged[mkey] = _merge(merged[mkey], box)
                    else:
                        merged[mkey] = _copy(box)
                yield seg.key, merged
                del merged
        for seg in self.segs:
            if seg.has_tag:
                groups = gather(self._fetch(anchor, seg, columns, where, back, only_back), 1 + len(seg.dims))
                yield seg.key, {(k[0], tuple(k[1:])): box for k, box in groups.items()}

    def _percentiles(self, anchor: Anchor, expr: str, ranks: list[tuple[int, int]]) -> dict[str, Table]:
        """{segmentation: {key: [n, value at each rank]}}: nearest rank ceil(p*n) of the sorted values."""

        def gather(rows: Iterable[tuple[Any, ...]], width: int) -> dict[tuple[Any, ...], list[Any]]:
            groups: dict[tuple[Any, ...], list[Any]] = defaultdict(list)
            for row in rows:
                groups[row[:width]].append(row[width])
            return groups

        out: dict[str, Table] = {}
        for seg_key, groups in self._collect(anchor, [expr], f"{expr} IS NOT NULL", False, gather):
            table: Table = {}
            for key, found in groups.items():
                found.sort()
                n = len(found)
                table[key] = [n] + [found[-(-n * num // den) - 1] for num, den in ranks]
            out[seg_key] = table
        return out

    def _distinct(self, kpis: list[Kpi], retention: bool) -> dict[str, dict[str, Table]]:
        """{kpi: {segmentation: {key: figures}}} for Distinct and Repeat measures and retention, in one fetch.

        Per group it keeps the set of requesters (repeat contacts, and last period's requesters for
        retention) and one set per Distinct measure; per period, the requesters who started a contact
        themselves (the returning ones).
        """
        distinct = [k for k in kpis if isinstance(k.measure, Distinct)]
        columns = ["f.requester", "f.start_epoch IS NOT NULL"] + [k.measure.expr for k in distinct]  # type: ignore[union-attr]
        extra = len(distinct)
        # Retention alone needs last period's requesters by segment, and this period's returning ones only.
        only_retention = retention and not distinct and not any(isinstance(k.measure, Repeat) for k in kpis)
        starters: dict[str, set[str]] = defaultdict(set)

        def gather(rows: Iterable[tuple[Any, ...]], width: int) -> dict[tuple[Any, ...], _Box]:
            # The hot loop of the engine: one pass over every contact of the periods, kept lean.
            groups: dict[tuple[Any, ...], _Box] = {}
            get = groups.get
            first = not starters  # tag segmentations fetch again: their starters are the same
            for row in rows:
                key = row[:width]
                box = get(key)
                if box is None:
                    box = groups[key] = _Box(extra)
                box.rows += 1
                requester = row[width]
                if requester is not None:
                    box.with_requester += 1
                    box.requesters.add(requester)
                    if first and row[width + 1]:
                        starters[row[0]].add(requester)
                if extra:
                    for value, found in zip(row[width + 2:], box.values, strict=True):
                        if value is not None:
                            found.add(value)
            return groups

        out: dict[str, dict[str, Table]] = defaultdict(lambda: defaultdict(dict))
        following = self._following()
        active: dict[str, set[str]] | None = None
        # Outbound contacts nobody answered are no one's contact here (catalogue 2c).
        for seg_key, groups in self._collect(Anchor.CREATED, columns, CUSTOMER_WROTE, retention, gather,
                                             only_back=only_retention):
            if retention and active is None:
                active = self._active_requesters(None if only_retention else starters)
            for (p, vals), box in groups.items():
                if p in self.by_start:
                    out["repeat"][seg_key][(p, vals)] = [box.with_requester - len(box.requesters), box.rows]
                    for i, kpi in enumerate(distinct):
                        out[kpi.id][seg_key][(p, vals)] = [len(box.values[i])]
                nxt = following.get(p)
                if active is not None and nxt in self.by_start and box.requesters:
                    back = len(box.requesters & active.get(nxt, set()))
                    out["customer_retention_pct"][seg_key][(nxt, vals)] = [back, len(box.requesters)]
            del groups
        for kpi in kpis:
            if isinstance(kpi.measure, Repeat):
                out[kpi.id] = out["repeat"]
        return {k: dict(v) for k, v in out.items()}  # plain dicts: the result may cross a process boundary

    def _following(self) -> dict[str, str]:
        """Period start -> the start of the period after it, for the periods asked for and those before them."""
        out = {}
        for p in self.periods:
            out[p.previous().start.isoformat()] = p.start.isoformat()
            out[p.start.isoformat()] = p.next().start.isoformat()
        return out

    def _active_requesters(self, starters: dict[str, set[str]] | None) -> dict[str, set[str]]:
        """Requesters who started a contact themselves or answered a survey, per period (`starters` when
        the rows of the periods were fetched already, else fetched)."""
        out: dict[str, set[str]] = defaultdict(set)
        if starters is not None:
            out.update(starters)
        else:
            for p, requester in self._fetch(Anchor.CREATED, Segmentation(()), ["f.requester"],
                                            "f.requester IS NOT NULL AND f.start_epoch IS NOT NULL", False):
                out[p].add(requester)
        requester = ("coalesce(CASE WHEN s.requester_id IS NOT NULL THEN s.source || ':' || s.requester_id END,"
                     " f.requester)")
        for row in self._fetch(Anchor.RESPONSE, Segmentation(()), [requester], "", False):
            if row[1] is not None:
                out[row[0]].add(row[1])
        return out

    # --- the evaluation -------------------------------------------------------------------

    def plan(self) -> _Plan:
        """Which aggregate SQL each anchor's pass computes, where each KPI's figures sit, which percentiles."""
        plan = _Plan()

        def slot(anchor: Anchor, sql: str) -> int:
            if sql not in plan.exprs[anchor]:
                plan.exprs[anchor].append(sql)
            return plan.exprs[anchor].index(sql)

        for kpi in self.kpis:
            m, a = kpi.measure, kpi.anchor
            if isinstance(m, Count):
                plan.slots[kpi.id] = (a, (slot(a, m.sql),))
            elif isinstance(m, Share):
                plan.slots[kpi.id] = (a, (slot(a, f"sum(CASE WHEN ({m.den}) AND ({m.num}) THEN 1 ELSE 0 END)"),
                                          slot(a, f"sum(CASE WHEN {m.den} THEN 1 ELSE 0 END)")))
            elif isinstance(m, Ratio):
                plan.slots[kpi.id] = (a, (slot(a, m.num), slot(a, m.den)))
            elif isinstance(m, Mean):
                plan.slots[kpi.id] = (a, (slot(a, f"sum({m.expr})"), slot(a, f"count({m.expr})")))
            elif isinstance(m, InputRatio):
                plan.slots[kpi.id] = (a, (slot(a, m.aggregate),))
            elif isinstance(m, Percentile):
                plan.ranks[(a, m.expr)].append((m.num, m.den))
        ids = {k.id for k in self.kpis}
        if "backlog" in ids:
            plan.slots["backlog:created"] = (Anchor.CREATED, (slot(Anchor.CREATED, _OPENED),
                                                              slot(Anchor.CREATED, _CLOSED_AT_CREATION)))
            plan.slots["backlog:resolved"] = (Anchor.FIRST_RESOLVED, (slot(Anchor.FIRST_RESOLVED, _CLOSED),))
        if "channel_mix_pct" in ids:
            plan.slots["channel_mix_pct"] = (Anchor.CREATED, (slot(Anchor.CREATED, _VOLUME),))
        plan.retention = "customer_retention_pct" in ids
        plan.distinct = plan.retention or any(isinstance(k.measure, (Distinct, Repeat)) for k in self.kpis)
        return plan

    def units(self, plan: _Plan) -> list[tuple[Any, ...]]:
        """The independent passes of this evaluation, costliest first (they may run in parallel)."""
        out: list[tuple[Any, ...]] = []
        if plan.distinct:
            out.append(("distinct",))
        out += [("percentiles", a.value, expr) for (a, expr) in plan.ranks]
        out += [("additive", a.value) for a in plan.exprs]
        return out

    def unit(self, unit: tuple[Any, ...], plan: _Plan | None = None) -> Any:
        """Run one pass; the result is plain data (it may cross a process boundary)."""
        plan = plan or self.plan()
        if unit[0] == "additive":
            anchor = Anchor(unit[1])
            return self._additive(anchor, plan.exprs[anchor])
        if unit[0] == "percentiles":
            anchor = Anchor(unit[1])
            return self._percentiles(anchor, unit[2], plan.ranks[(anchor, unit[2])])
        return self._distinct(self.kpis, plan.retention)

    def run(self, results: dict[tuple[Any, ...], Any] | None = None) -> list[Value]:
        """Assemble the values from the passes' results (computed here when not given)."""
        plan = self.plan()
        if results is None:
            results = {u: self.unit(u, plan) for u in self.units(plan)}
        figures: dict[str, dict[str, Table]] = {}  # kpi -> segmentation -> key -> raw figures
        for kpi_id, (anchor, idx) in plan.slots.items():
            table = results[("additive", anchor.value)]
            figures[kpi_id] = {s: {k: [row[i] for i in idx] for k, row in t.items()} for s, t in table.items()}
        for (anchor, expr), wanted in plan.ranks.items():
            picked = results[("percentiles", anchor.value, expr)]
            for kpi in self.kpis:
                m = kpi.measure
                if isinstance(m, Percentile) and m.expr == expr and kpi.anchor is anchor:
                    i = wanted.index((m.num, m.den))
                    figures[kpi.id] = {s: {k: [r[0], r[1 + i]] for k, r in t.items()} for s, t in picked.items()}
        if plan.distinct:
            figures.update(results[("distinct",)])
        return self._assemble(figures)

    def _assemble(self, figures: dict[str, dict[str, Table]]) -> list[Value]:
        """Values per period and segment. A KPI has a row for a segment when its anchor event happened there in
        the period (KPIs of one anchor share their segments); backlog where it is not zero; the unsegmented
        view always has every KPI. So redoing some KPIs of a period gives the rows a full compute would."""
        values: list[Value] = []
        family = {k.id: (k.anchor.value if not isinstance(k.measure, Special) else k.id) for k in self.kpis}
        for seg in self.segs:
            keys: dict[tuple[str, str], set[tuple[Any, ...]]] = defaultdict(set)
            for kpi_id, per_seg in figures.items():
                if kpi_id in family:
                    for p, vals in per_seg.get(seg.key, {}):
                        keys[(family[kpi_id], p)].add(vals)
            backlog = self._backlog(seg, figures) if "backlog" in family else {}
            for (p, vals), count in backlog.items():
                if count:
                    keys[("backlog", p)].add(vals)
            utilization = self._utilization(seg) if "agent_utilization_pct" in family else {}
            for p, vals in utilization:
                keys[("agent_utilization_pct", p)].add(vals)
            for period in self.periods:
                start = period.start.isoformat()
                for kpi in self.kpis:
                    if kpi.id == "channel_mix_pct":
                        values.extend(self._channel_mix(kpi, seg, period, figures))
                        continue
                    segments = keys[(family[kpi.id], start)] | ({()} if not seg.dims else set())
                    for vals in segments:
                        segment = tuple(zip(seg.dims, vals, strict=False))
                        if kpi.id == "backlog":
                            count = backlog.get((start, vals), 0)
                            values.append(Value(kpi.id, period, seg.key, segment, count, n=count))
                        elif kpi.id == "agent_utilization_pct":
                            values.append(utilization.get((start, vals))
                                          or Value(kpi.id, period, seg.key, segment, None))
                        else:
                            raw = figures.get(kpi.id, {}).get(seg.key, {}).get((start, vals))
                            values.append(self._value(kpi, period, seg.key, segment, raw))
        return values

    def _value(self, kpi: Kpi, period: Period, by: str, segment: Segment, raw: list[Any] | None) -> Value:
        m = kpi.measure
        if isinstance(m, (Count, Distinct)):
            count = int(raw[0] or 0) if raw else 0
            return Value(kpi.id, period, by, segment, count, n=count)
        if isinstance(m, (Share, Ratio, Repeat)) or kpi.id == "customer_retention_pct":
            num, den = (raw[0] or 0, raw[1] or 0) if raw else (0, 0)
            scale = m.scale if isinstance(m, Ratio) else 100.0
            return Value(kpi.id, period, by, segment, scale * num / den if den else None, num, den, int(den))
        if isinstance(m, Mean):
            total: Any  # a stored aggregate: None only when there is no row (then n is 0)
            total, n = (raw[0], raw[1] or 0) if raw else (None, 0)
            return Value(kpi.id, period, by, segment, total * m.factor / n if n else None, n=n)
        if isinstance(m, Percentile):
            picked: Any  # a stored aggregate: None only when there is no row (then n is 0)
            n, picked = (raw[0] or 0, raw[1]) if raw else (0, None)
            return Value(kpi.id, period, by, segment, picked * m.factor if n else None, n=n)
        if isinstance(m, InputRatio):
            count = int(raw[0] or 0) if raw else 0
            amount = self.inputs.amount(m.input, period, dict(segment))
            top, bottom = (amount, count) if m.input_on_top else (count, amount)
            value = top / bottom if top is not None and bottom else None
            return Value(kpi.id, period, by, segment, value, top, bottom, count)
        raise TypeError(f"{kpi.id}: no evaluator for {m!r}")

    # --- special measures -----------------------------------------------------------------

    def _channel_mix(self, kpi: Kpi, seg: Segmentation, period: Period,
                     figures: dict[str, dict[str, Table]]) -> list[Value]:
        """Share of each channel in the volume of its segment (the segment plus `channel`)."""
        mix = seg if "channel" in seg.dims else Segmentation((*seg.dims, "channel"), seg.custom_keys)
        counts = self._mix_counts(mix, figures)
        at = mix.dims.index("channel")
        start = period.start.isoformat()
        totals: dict[tuple[Any, ...], float] = defaultdict(float)
        for (p, vals), row in counts.items():
            if p == start:
                totals[vals[:at] + vals[at + 1:]] += row[0] or 0
        out = []
        for (p, vals), row in sorted(counts.items(), key=lambda kv: json.dumps(kv[0], default=str)):
            if p != start or not row[0]:
                continue
            total = totals[vals[:at] + vals[at + 1:]]
            out.append(Value(kpi.id, period, seg.key, tuple(zip(mix.dims, vals, strict=False)), 100.0 * row[0] / total,
                             row[0], total, int(total)))
        return out

    def _mix_counts(self, mix: Segmentation, figures: dict[str, dict[str, Table]]) -> Table:
        cache: dict[str, Table] = getattr(self, "_mix_cache", {})
        self._mix_cache = cache
        if mix.key in cache:
            return cache[mix.key]
        have = figures["channel_mix_pct"]
        if mix.key in have:
            table = have[mix.key]
        else:
            parent = next((s for s in self.plain if not mix.has_tag and set(mix.dims) <= set(s.dims)), None)
            table = (self._roll_up(have[parent.key], parent, mix) if parent
                     else self._grouped(Anchor.CREATED, mix, [_VOLUME]))
        cache[mix.key] = table
        return table

    def _backlog(self, seg: Segmentation, figures: dict[str, dict[str, Table]]) -> dict[Key, int]:
        """Contacts open at each period's end (now for a running period), for every period asked for."""
        created = figures["backlog:created"].get(seg.key, {})
        resolved = figures["backlog:resolved"].get(seg.key, {})
        out: dict[Key, int] = {}
        for run in self.runs:
            steps: dict[tuple[Any, ...], dict[str, int]] = defaultdict(lambda: defaultdict(int))
            for vals, count in self._open_before(seg, run[0].start).items():
                steps[vals][""] += count
            for (p, vals), (opened, closed_at_creation) in created.items():
                steps[vals][p] += (opened or 0) - (closed_at_creation or 0)
            for (p, vals), (closed,) in resolved.items():
                steps[vals][p] -= closed or 0
            for (p, vals), step in self._history_steps(seg, run).items():
                steps[vals][p] += step
            for vals, by_period in steps.items():
                running = by_period.get("", 0)
                for period in run:
                    running += by_period.get(period.start.isoformat(), 0)
                    out[(period.start.isoformat(), vals)] = running
        return out

    def _open_before(self, seg: Segmentation, start: date) -> dict[tuple[Any, ...], int]:
        """Contacts without a reopen history created before `start` and not resolved before it."""
        dims = fact_dims(seg)
        group = f" GROUP BY {', '.join(f'd{i}' for i in range(len(dims)))}" if dims else ""
        sql = (f"SELECT {''.join(f'{d} AS d{i}, ' for i, d in enumerate(dims))}count(*) FROM kpi_facts f"
               f"{fact_joins(seg)} WHERE f.is_deleted = 0 AND f.transitions IS NULL AND f.created_at < :lo"
               f" AND (f.first_resolved_at IS NULL OR max(f.created_at, f.first_resolved_at) >= :lo){group}")
        return {tuple(row[:-1]): row[-1] for row in self.ctx.conn.execute(sql, {"lo": self.ctx.bound(start)})}

    def _history_steps(self, seg: Segmentation, run: list[Period]) -> dict[Key, int]:
        """+1 at creation and each reopening, -1 at each resolution, of contacts with a reopen history."""
        dims = fact_dims(seg)
        cap = min(self.ctx.bound(run[-1].end), self.ctx.now_iso)
        key = self._key("t", run)
        steps = (f"SELECT f.created_at AS t, 1 AS d{''.join(f', {x} AS d{i}' for i, x in enumerate(dims))}"
                 f" FROM kpi_facts f{fact_joins(seg)} WHERE f.is_deleted = 0 AND f.transitions IS NOT NULL"
                 f" AND f.created_at < :cap UNION ALL SELECT max(json_extract(j.value, '$[0]'), f.created_at),"
                 f" json_extract(j.value, '$[1]'){''.join(f', {x}' for x in dims)} FROM kpi_facts f"
                 f"{fact_joins(seg)}, json_each(f.transitions) j WHERE f.is_deleted = 0 AND f.transitions IS NOT NULL"
                 f" AND f.created_at < :cap")
        cols = "".join(f", d{i}" for i in range(len(dims)))
        sql = (f"SELECT CASE WHEN t < :lo THEN '' ELSE {key} END AS b{cols}, sum(d) FROM ({steps}) WHERE t < :cap"
               f" GROUP BY b{cols}")
        out: dict[Key, int] = {}
        for row in self.ctx.conn.execute(sql, {"lo": self.ctx.bound(run[0].start), "cap": cap}):
            out[(row[0], tuple(row[1:-1]))] = row[-1]
        return out

    def _utilization(self, seg: Segmentation) -> dict[Key, Value]:
        """Handle time of the agents' resolved contacts over the available time of those agents."""
        available = {p.start.isoformat(): self.inputs.available_seconds(p) for p in self.periods}
        if not any(available.values()):
            return {}
        with_agent = Segmentation(seg.dims + (() if "agent" in seg.dims else ("agent",)), seg.custom_keys)
        at = with_agent.dims.index("agent")
        handle: dict[Key, dict[str, float]] = defaultdict(dict)
        for p, vals, row in self._rows(Anchor.FIRST_RESOLVED, with_agent, ["sum(f.handle_s)"],
                                       f"f.agent IS NOT NULL AND {CUSTOMER_WROTE}"):
            own = vals if "agent" in seg.dims else vals[:at] + vals[at + 1:]
            handle[(p, own)][vals[at]] = row[0] or 0.0
        if not seg.dims:
            for period in self.periods:
                handle.setdefault((period.start.isoformat(), ()), {})
        out = {}
        for (start, vals), per_agent in handle.items():
            hours = available[start]
            agents = [vals[seg.dims.index("agent")]] if "agent" in seg.dims else list(hours)
            den = sum(hours[a] for a in agents if a in hours)
            num = sum(per_agent.get(a, 0.0) for a in agents if a in hours)
            out[(start, vals)] = Value("agent_utilization_pct", self.by_start[start], seg.key,
                                       tuple(zip(seg.dims, vals, strict=True)), 100.0 * num / den if den else None,
                                       num if den else None, den or None, None)
        return out

