"""The generic evaluator: the catalogue's measures over the facts, for one period grain and several segmentations.

It reads the columnar copy of the store (`columns.py`, DuckDB), where a grouped query reads only
the columns it names, on every core; the measures' SQL fragments are the catalogue's. DuckDB's
cost is mostly per query (planning), so the work is gathered into few of them:
- one query per anchor and run of periods computes every additive measure (counts, sums,
  shares, means), the percentiles (nearest rank over the sorted values) and, for contacts
  created, the distinct counts and repeat contacts;
- every plain segmentation is answered by that same query (GROUP BY GROUPING SETS);
- retention and backlog (opened minus closed contacts, counted inside the anchors' queries,
  plus the steps of contacts with a reopen history and the contacts open before the first
  period) have queries of their own, again one for all plain segmentations.
Tag segmentations are multi-valued (a contact counts once per tag), so they are never summed
up and get their own queries. Values are raw: targets and status are applied on reading.
The anchors' queries and retention's are independent: `start` submits them to a pool
(`columns.query_pool`: short ones side by side), `finish` waits for them and assembles.

Periods are local dates in `[kpis] timezone`: range conditions compare the UTC timestamps with
each boundary's UTC instant (`ctx.bound`), and outside UTC the period key compares them with the
same bounds in SQL (`periods.key_sql`): boundaries are converted once per period, never per row.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any

from kpi_core.kpis import periods as P
from kpi_core.kpis.catalogue import (
    BY_ID,
    CUSTOMER_WROTE,
    DAY_S,
    VALUE_DAYS,
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
    Sum,
)
from kpi_core.kpis.columns import Columns, open_columns, query_pool
from kpi_core.kpis.context import Context
from kpi_core.kpis.inputs import Inputs
from kpi_core.kpis.periods import Grain, Period
from kpi_core.kpis.scales import ces_sql, nps_sql, positive_sql
from kpi_core.kpis.segments import Segmentation, custom_value, fact_dims, fact_joins, survey_dims

Segment = tuple[tuple[str, Any], ...]
Key = tuple[str, tuple[Any, ...]]  # (period start, segment values)
Table = dict[Key, list[Any]]
# Per segmentation: the contacts open before a run of periods, and the reopen-history steps by period.
_BacklogRun = tuple[dict[str, dict[tuple[Any, ...], int]], dict[str, dict[Key, int]]]
_FACT_ANCHORS = {Anchor.CREATED: "f.created_at", Anchor.FIRST_RESOLVED: "f.first_resolved_at",
                 Anchor.LAST_RESOLVED: "f.last_resolved_at"}
# Backlog steps counted inside the created / first-resolved queries (contacts without a reopen history).
_OPENED = "sum(CASE WHEN f.transitions IS NULL THEN 1 ELSE 0 END)"
_CLOSED_AT_CREATION = ("sum(CASE WHEN f.transitions IS NULL AND f.first_resolved_at < f.created_at"
                       " THEN 1 ELSE 0 END)")
_CLOSED = "sum(CASE WHEN f.transitions IS NULL AND f.first_resolved_at >= f.created_at THEN 1 ELSE 0 END)"
_VOLUME = "count(*)"


# Periods of at most this many days in all make an evaluation's queries short: a month or two of rows.
SHORT_DAYS = 62


def _same(value: Any) -> Any:
    return value


@dataclass
class _Plan:
    exprs: dict[Anchor, list[str]] = field(default_factory=lambda: defaultdict(list))
    slots: dict[str, tuple[Anchor, tuple[int, ...]]] = field(default_factory=dict)
    ranks: dict[tuple[Anchor, str], list[tuple[int, int]]] = field(default_factory=lambda: defaultdict(list))
    retention: bool = False


@dataclass(frozen=True)
class _Pass:
    """An anchor's grouped query, submitted: what it computes (see `_Evaluation._pass`) and its answer to come."""

    anchor: Anchor
    exprs: list[str]
    ranks: dict[str, list[tuple[int, int]]]
    counts: bool  # with the contacts' requesters and distinct values
    job: Future[dict[str, Table]]


@dataclass(frozen=True)
class _Started:
    plan: _Plan
    distinct: list[tuple[Kpi, str]]
    repeat: list[Kpi]
    passes: list[_Pass]


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
    if evaluation is None:
        return []
    with open_columns(ctx) as cols:
        return evaluation.run(cols)


def prepare(ctx: Context, periods: list[Period], segs: list[Segmentation], kpis: list[Kpi]) -> _Evaluation | None:
    """An evaluation to `run` over an open columnar copy (several share one: `compute` opens it once)."""
    periods = sorted(p for p in set(periods) if p.start <= ctx.today)
    if not periods or not kpis or not segs:
        return None
    return _Evaluation(ctx, periods, segs, kpis)


# The order feed's rows for the ORDER anchor: each order kept (not cancelled) at its creation, and each of its
# refunds at its own date as a negative amount; `influenced` when a contact of the same customer (matched by the
# keyed e-mail hash or an explicit requester) was created within conversion_window_days before the order.
# `who`, one customer however their orders name them: the keyed e-mail hash, else the hash of the requester an
# explicit map names (read off that requester's contacts), else that requester; so a customer whose shop orders
# carry the hash and whose imported ones a map names counts once in the lift's baseline.
_ORDERS_KEPT = ("kept AS (SELECT o.*, coalesce(o.customer_key, m.customer, o.requester) AS who,"
                " epoch(CAST(o.created_at AS TIMESTAMP)) AS e FROM orders o LEFT JOIN (SELECT f.requester,"
                " min(f.customer) AS customer FROM kpi_facts f WHERE f.customer IS NOT NULL AND f.requester IN"
                " (SELECT requester FROM orders WHERE customer_key IS NULL) GROUP BY f.requester) m"
                " ON m.requester = o.requester WHERE o.cancelled_at IS NULL)")
# Each contact the customer wrote, once per key it matches orders by.
_CONTACT_KEYS = ("SELECT f.customer AS who, f.created_epoch AS e FROM kpi_facts f WHERE f.customer IS NOT NULL"
                 f" AND f.is_deleted = 0 AND {CUSTOMER_WROTE} UNION ALL SELECT f.requester, f.created_epoch"
                 f" FROM kpi_facts f WHERE f.requester IS NOT NULL AND f.is_deleted = 0 AND {CUSTOMER_WROTE}")
# Only the orders that can place a row in [lo, hi): those created in it, and earlier ones with a refund.
_ORDER_ROWS = (
    f"WITH {_ORDERS_KEPT}, contact AS ({_CONTACT_KEYS}),"
    " scoped AS (SELECT * FROM kept WHERE created_at < :hi AND (created_at >= :lo"
    " OR coalesce(refunds, '[]') != '[]')),"
    " influenced AS (SELECT k.source, k.source_id FROM scoped k JOIN contact c ON c.who = k.customer_key"
    " WHERE k.e > c.e AND k.e <= c.e + :conv_s UNION SELECT k.source, k.source_id"
    " FROM scoped k JOIN contact c ON c.who = k.requester WHERE k.e > c.e AND k.e <= c.e + :conv_s),"
    " marked AS (SELECT k.*, i.source IS NOT NULL AS influenced FROM scoped k LEFT JOIN influenced i"
    " ON i.source = k.source AND i.source_id = k.source_id)"
    " SELECT 'order' AS kind, created_at AS at, total AS amount, influenced FROM marked WHERE created_at >= :lo"
    " UNION ALL SELECT 'refund', r.at, -r.amount, influenced FROM (SELECT influenced,"
    " unnest(json_extract_string(refunds, '$[*].at')) AS at,"
    " unnest(CAST(json_extract(refunds, '$[*].amount') AS DOUBLE[])) AS amount FROM marked"
    " WHERE refunds IS NOT NULL AND refunds != '[]') r WHERE r.at >= :lo AND r.at < :hi")


def _feed_start(ctx: Context) -> datetime | None:
    """The order feed's start: the creation of its earliest order (any state), in UTC, or None without orders."""
    first = ctx.conn.execute("SELECT min(created_at) FROM orders").fetchone()[0]
    if not first:
        return None
    return datetime.fromisoformat(first.replace("Z", "+00:00")).astimezone(timezone.utc)


def _sum_rows(target: list[Any], row: list[Any]) -> None:
    for i, value in enumerate(row):
        if value is not None:
            target[i] = (target[i] or 0) + value


def _decimal(den: int) -> bool:
    """Whether num/den is a decimal fraction (den = 2^a * 5^b). DuckDB's quantile_disc is then the nearest rank,
    the value at rank ceil(p*n) (checked for every n up to 5,000: tests/test_kpi_columns.py); for other
    fractions its float arithmetic can land one rank off, so the engine sorts and picks the rank itself."""
    for factor in (2, 5):
        while den % factor == 0:
            den //= factor
    return den == 1


def _roll_up(table: Table, parent: Segmentation, seg: Segmentation) -> Table:
    """A segmentation's figures summed up from those of one with more dimensions."""
    pick = [parent.dims.index(d) for d in seg.dims]
    out: Table = {}
    for (p, vals), row in table.items():
        key = (p, tuple(vals[i] for i in pick))
        if key in out:
            _sum_rows(out[key], row)
        else:
            out[key] = list(row)
    return out


def _literal(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise TypeError(f"no SQL literal for {value!r}")
    return "'" + value.replace("'", "''") + "'" if isinstance(value, str) else repr(value)


def bind(sql: str, params: dict[str, Any]) -> str:
    """`sql` with each `:name` of `params` replaced by its literal, outside quoted text (ids such as
    'zendesk:lo' stay as they are). The values are the engine's own: numbers and ISO dates."""
    parts = sql.split("'")
    for i in range(0, len(parts), 2):  # even parts lie outside quotes ('' inside text splits into two)
        parts[i] = _PARAM.sub(lambda m: _literal(params[m[1]]) if m[1] in params else m[0], parts[i])
    return "'".join(parts)


_PARAM = re.compile(r":([A-Za-z_]\w*)")


@dataclass(frozen=True)
class _Sets:
    """Segmentations one grouped query answers (GROUP BY GROUPING SETS: DuckDB plans and reads once for all):
    their union's dimensions and, per segmentation, its grouping id and where its values sit in the union's."""

    union: Segmentation
    members: tuple[tuple[Segmentation, int, tuple[int, ...]], ...]

    @classmethod
    def of(cls, segs: list[Segmentation]) -> _Sets:
        union = Segmentation(tuple(dict.fromkeys(d for s in segs for d in s.dims)),
                             tuple(dict.fromkeys(c for s in segs for c in s.custom_keys)))
        n = len(union.dims)
        members = []
        for seg in segs:
            at = tuple(union.dims.index(d) for d in seg.dims)
            members.append((seg, sum(1 << (n - 1 - i) for i in range(n) if i not in at), at))
        return cls(union, tuple(members))

    @property
    def width(self) -> int:
        return len(self.union.dims)

    def select(self, dims: list[str]) -> list[str]:
        """The union's dimensions (d0, d1, ...) and the grouping id (g) as select columns."""
        grouping = f"GROUPING({', '.join(f'd{i}' for i in range(self.width))})" if self.width else "0"
        return [f"{d} AS d{i}" for i, d in enumerate(dims)] + [f"{grouping} AS g"]

    def group_by(self, head: list[str]) -> str:
        sets = list(dict.fromkeys(tuple(head + [f"d{i}" for i in sorted(at)]) for _, _, at in self.members))
        if len(sets) == 1:
            return f" GROUP BY {', '.join(sets[0])}" if sets[0] else ""
        return " GROUP BY GROUPING SETS (" + ", ".join("(" + ", ".join(s) + ")" for s in sets) + ")"

    def split(self, rows: list[tuple[Any, ...]], heads: int
              ) -> Iterator[tuple[str, tuple[Any, ...], tuple[Any, ...], tuple[Any, ...]]]:
        """(segmentation key, head values, segment values, the rest) per row, for each segmentation it answers."""
        n = self.width
        custom = dict(self.union.custom_keys)
        read = [custom_value if d in custom else _same for d in self.union.dims]
        for row in rows:
            gid, dims = row[heads + n], row[heads:heads + n]
            for seg, g, at in self.members:
                if g == gid:
                    yield seg.key, row[:heads], tuple(read[i](dims[i]) for i in at), row[heads + n + 1:]


class _Evaluation:
    def __init__(self, ctx: Context, periods: list[Period], segs: list[Segmentation], kpis: list[Kpi]) -> None:
        self.ctx, self.periods, self.kpis = ctx, periods, kpis
        self.segs = list({s.key: s for s in segs}.values())
        self.plain = sorted((s for s in self.segs if not s.has_tag), key=lambda s: -len(s.dims))
        self.grain = periods[0].grain
        self.by_start = {p.start.isoformat(): p for p in periods}
        self.inputs = Inputs.load(ctx.conn)
        self.runs = P.runs(periods)
        self.cols: Columns | None = None
        self.feed_start = _feed_start(ctx)
        self._feed_orders: dict[str, Table] | None = None
        # Retention figures for these periods (and maybe more), computed by a query of its own: `retention_job`.
        self.retention: Future[dict[str, Table]] | None = None
        self._started: _Started | None = None

    # --- SQL helpers ----------------------------------------------------------------------

    def _query(self, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        assert self.cols is not None, "run() opens the columnar copy"
        return self.cols.rows(bind(sql, params))

    def _key(self, column: str, run: list[Period]) -> str:
        if self.grain is Grain.CUSTOM:
            start, prev = run[0].start, run[0].previous().start
            return (f"CASE WHEN {column} < '{self.ctx.bound(start)}'"
                    f" THEN '{prev.isoformat()}' ELSE '{start.isoformat()}' END")
        # From the period before the run: retention reads it too.
        return P.key_sql(self.grain, column, zone=self.ctx.zone, within=(run[0].previous().start, run[-1].end),
                         duck=True)

    def _params(self, lo: date, hi: date, **extra: Any) -> dict[str, Any]:
        return {**self.ctx.params(), **self._value_params(), "lo": self.ctx.bound(lo), "hi": self.ctx.bound(hi),
                **extra}

    def _value_params(self) -> dict[str, Any]:
        """The value KPIs' windows, and the first contact creation that has VALUE_DAYS of orders before it."""
        settings = self.ctx.settings
        covers = ((self.feed_start + timedelta(days=VALUE_DAYS)).strftime("%Y-%m-%dT%H:%M:%SZ")
                  if self.feed_start else "9999-12-31T00:00:00Z")
        return {"conv_s": settings.conversion_window_days * DAY_S, "refund_s": settings.refund_window_days * DAY_S,
                "orders_from": covers}

    def _fill(self, sql: str) -> str:
        """The catalogue's placeholders: the answer's scores come computed once per row (`_SCORED`)."""
        return (sql.replace("{sl}", self.ctx.targets.service_level_sql()).replace("{pos}", "s.pos")
                .replace("{nps}", "s.nps").replace("{ces}", "s.ces"))

    def _scored(self) -> str:
        """The survey answers with their positivity, NPS and CES scores as columns: each long CASE once per row,
        not once per aggregate that reads it (DuckDB's planning time grows with every copy)."""
        return (f"(SELECT *, {positive_sql('s', self.ctx.settings.csat_scales)} AS pos, {nps_sql('s')} AS nps,"
                f" {ces_sql('s')} AS ces FROM survey_responses s) s")

    @staticmethod
    def _range(column: str) -> str:
        return f"{column} >= :lo AND {column} < :hi"

    def _source(self, anchor: Anchor, seg: Segmentation) -> tuple[str, str, str, list[str]]:
        """FROM clause, anchor column, row filter and dimension SQL of an anchor's rows."""
        if anchor is Anchor.ORDER:
            return f"({_ORDER_ROWS}) o", "o.at", "1 = 1", []
        if anchor is Anchor.RESPONSE:
            # Through the links the copy keeps (columns.py): an integer join, not one over every contact's keys.
            people = " LEFT JOIN people rp ON rp._rid = s._person" if {"language", "market"} & set(seg.dims) else ""
            src = f"{self._scored()} LEFT JOIN kpi_facts f ON f._rid = s._fact" + people + fact_joins(seg, duck=True)
            dims = survey_dims(seg, self.ctx.market_of_person(duck=True), duck=True)
            # An answer goes with its contact: left out with a deleted or merged one, and with an outbound
            # contact nobody answered (catalogue 2c).
            keep = f"coalesce(f.is_deleted, 0) = 0 AND (f.id IS NULL OR {CUSTOMER_WROTE})"
            return src, "s.created_at", keep, dims
        return "kpi_facts f" + fact_joins(seg, duck=True), _FACT_ANCHORS[anchor], "f.is_deleted = 0", \
            fact_dims(seg, duck=True)

    @staticmethod
    def _readers(seg: Segmentation) -> list[Callable[[Any], Any]]:
        """Per dimension, how its value reads (a custom field's comes as JSON text)."""
        return [custom_value if d in dict(seg.custom_keys) else _same for d in seg.dims]

    def _sets(self, segs: list[Segmentation] | None = None) -> list[_Sets]:
        """One query's worth of segmentations: the plain ones together, each tag segmentation alone (a contact
        counts once per tag, so its rows are not the others')."""
        segs = self.segs if segs is None else segs
        plain = [s for s in segs if not s.has_tag]
        return ([_Sets.of(plain)] if plain else []) + [_Sets.of([s]) for s in segs if s.has_tag]

    def _groups(self, anchor: Anchor, columns: list[str], where: str = "", segs: list[Segmentation] | None = None,
                outer: Callable[[str, str], str] | None = None) -> dict[str, Table]:
        """{segmentation key: {(period start, segment values): [columns]}}, one grouped query per run of periods
        and `_sets`. `outer(sql, dims)` may wrap the query: it keeps p, the dimensions and g first."""
        if anchor is Anchor.ORDER:  # an order has none of the contacts' segments: unsegmented only
            segs = [s for s in (self.segs if segs is None else segs) if not s.dims]
        out: dict[str, Table] = {s.key: {} for s in (self.segs if segs is None else segs)}
        if anchor is Anchor.ORDER and self.feed_start is None:
            return out  # no order feed: nothing to read (its queries scan every contact's keys all the same)
        for sets in self._sets(segs):
            src, anchor_col, base, dims = self._source(anchor, sets.union)
            if where:
                base += f" AND {where}"
            names = "".join(f", d{i}" for i in range(sets.width))
            for run in self.runs:
                select = ", ".join([f"{self._key(anchor_col, run)} AS p", *sets.select(dims),
                                    *(self._fill(c) for c in columns)])
                sql = (f"SELECT {select} FROM {src} WHERE {base} AND {self._range(anchor_col)}"
                       f"{sets.group_by(['p'])}")
                if outer:
                    sql = outer(sql, names)
                for seg_key, head, vals, row in sets.split(self._query(sql, self._params(run[0].start, run[-1].end)),
                                                           1):
                    out[seg_key][(head[0], vals)] = list(row)
        return out

    def _pass(self, anchor: Anchor, exprs: list[str], ranks: dict[str, list[tuple[int, int]]],
              distinct: list[str] | None) -> dict[str, Table]:
        """One grouped query per run (and `_sets`) for everything an anchor's KPIs need, so DuckDB reads the
        rows once: {segmentation: {key: row}}, the row holding in order the additive aggregates `exprs`; for each
        percentile expression of `ranks`, n and the value at each rank (nearest rank: ceil(p*n) of the n sorted
        values); and, when `distinct` lists expressions, the contacts the customer wrote, those with a requester,
        the distinct requesters, and the distinct values of each expression (over the same contacts)."""
        inner = [f"{self._fill(e)} AS c{i}" for i, e in enumerate(exprs)]
        outer = [f"c{i}" for i in range(len(exprs))]
        for j, (expr, wanted) in enumerate(ranks.items()):
            x = self._fill(expr)
            inner.append(f"count({x}) AS n{j}")
            outer.append(f"n{j}")
            if all(_decimal(den) for _, den in wanted):
                inner.append(f"quantile_disc({x}, [{', '.join(repr(num / den) for num, den in wanted)}]) AS q{j}")
                outer += [f"q{j}[{i + 1}]" for i in range(len(wanted))]
            else:
                inner.append(f"list_sort(list({x}) FILTER (WHERE {x} IS NOT NULL)) AS v{j}")
                outer += [f"v{j}[(n{j} * {num} + {den - 1}) // {den}]" for num, den in wanted]
        if distinct is not None:
            wrote = [f"CASE WHEN {CUSTOMER_WROTE} THEN {e} END" for e in ["1", "f.requester"]]
            inner += [f"count({wrote[0]}) AS k0", f"count({wrote[1]}) AS k1", f"count(DISTINCT {wrote[1]}) AS k2"]
            inner += [f"count(DISTINCT CASE WHEN {CUSTOMER_WROTE} THEN {e} END) AS k{3 + i}"
                      for i, e in enumerate(distinct)]
            outer += [f"k{i}" for i in range(3 + len(distinct))]
        picks = ", ".join(outer)
        return self._groups(anchor, inner, outer=lambda sql, dims: f"SELECT p{dims}, g, {picks} FROM ({sql})")

    def _retention(self) -> dict[str, Table]:
        """{segmentation: {(period, segment): [returning, base]}}: the requesters of the period before, by segment,
        and how many of them started a contact themselves or answered a survey in the period (in any segment).

        Per run and `_sets`: the requesters of each (period, union segment) once, flagged when they came back;
        each segmentation counts its distinct requesters (a requester of several segments of the union counts once
        in a coarser one). Outbound contacts nobody answered are no one's contact here (catalogue 2c)."""
        out: dict[str, Table] = {s.key: {} for s in self.segs}
        answered = ("coalesce(CASE WHEN s.requester_id IS NOT NULL THEN s.source || ':' || s.requester_id END,"
                    " f.requester)")
        for sets in self._sets():
            src, anchor_col, base_where, dims = self._source(Anchor.CREATED, sets.union)
            picked = "".join(f", {d} AS d{i}" for i, d in enumerate(dims))
            names = "".join(f", d{i}" for i in range(sets.width))
            for run in self.runs:
                key = self._key(anchor_col, run)
                steps = " UNION ALL ".join(f"SELECT '{p.previous().start.isoformat()}' AS p, '{p.start.isoformat()}'"
                                           f" AS nxt" for p in run)
                # Each requester of a (period before, union segment) once, keyed by the period it may come back in.
                base = (f"SELECT st.nxt AS p{names}, b.r FROM (SELECT DISTINCT {key} AS p{picked}, f.requester AS r"
                        f" FROM {src} WHERE {base_where} AND {CUSTOMER_WROTE} AND f.requester IS NOT NULL"
                        f" AND f.created_at >= :back AND f.created_at < :last) b JOIN steps st ON st.p = b.p")
                active = (f"SELECT DISTINCT p, r FROM (SELECT {key} AS p, f.requester AS r FROM kpi_facts f"
                          f" WHERE f.is_deleted = 0 AND {CUSTOMER_WROTE} AND f.requester IS NOT NULL"
                          f" AND {self._range('f.created_at')} UNION ALL SELECT {self._key('s.created_at', run)},"
                          f" {answered} FROM survey_responses s LEFT JOIN kpi_facts f ON f._rid = s._fact"
                          f" WHERE coalesce(f.is_deleted, 0) = 0 AND (f.id IS NULL OR {CUSTOMER_WROTE})"
                          f" AND {answered} IS NOT NULL AND {self._range('s.created_at')})")
                flagged = ("SELECT b.*, a.r IS NOT NULL AS back FROM base b"
                           " LEFT JOIN active a ON a.p = b.p AND a.r = b.r")
                counted = " UNION ALL ".join(self._counted(sets, at, gid) for _, gid, at in sets.members)
                sql = (f"WITH steps AS ({steps}), base AS ({base}), active AS ({active}),"
                       f" flagged AS MATERIALIZED ({flagged}) {counted}")
                params = self._params(run[0].start, run[-1].end, back=self.ctx.bound(run[0].previous().start),
                                      last=self.ctx.bound(run[-1].start))
                for seg_key, head, vals, row in sets.split(self._query(sql, params), 1):
                    out[seg_key][(head[0], vals)] = list(row)
        return out

    def retention_job(self, cols: Columns, pool: Executor) -> Future[dict[str, Table]]:
        """Retention alone, over the open copy, submitted to `pool`: computed once for the periods of several
        evaluations that need it (their `retention`), so adjacent periods share one query per run. This
        evaluation serves only that."""
        self.cols = cols
        return pool.submit(self._retention)

    @staticmethod
    def _counted(sets: _Sets, at: tuple[int, ...], gid: int) -> str:
        """One segmentation's returning and base requesters from `flagged` (distinct per period, union segment and
        requester), as rows shaped like a grouping-sets query's: a requester of several union segments counts once
        in a coarser segment (without a GROUP BY over grouping sets and distinct counts, which DuckDB holds in
        memory per set)."""
        dims = [f"d{i}" if i in at else f"NULL AS d{i}" for i in range(sets.width)]
        kept = "".join(f", d{i}" for i in sorted(at))
        rows = "flagged" if len(at) == sets.width else f"(SELECT DISTINCT p{kept}, r, back FROM flagged)"
        return (f"SELECT p{''.join(', ' + d for d in dims)}, {gid} AS g, count(*) FILTER (WHERE back), count(*)"
                f" FROM {rows} GROUP BY p{kept}")

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
            if isinstance(m, (Count, Sum)):
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
        if "repurchase_lift_90d_pp" in ids:
            m = BY_ID[f"repurchase_{VALUE_DAYS}d_pct"].measure
            assert isinstance(m, Share)
            a = Anchor.FIRST_RESOLVED
            plan.slots["repurchase_lift_90d_pp"] = (a, (
                slot(a, f"sum(CASE WHEN ({m.den}) AND ({m.num}) THEN 1 ELSE 0 END)"),
                slot(a, f"sum(CASE WHEN {m.den} THEN 1 ELSE 0 END)")))
        return plan

    @property
    def short(self) -> bool:
        """Whether the queries read a month or two of rows (see `columns.query_pool`)."""
        return sum(p.days for p in self.periods) <= SHORT_DAYS

    def run(self, cols: Columns) -> list[Value]:
        """The values, computed over the open columnar copy `cols`."""
        with query_pool(cols, self.short) as pool:
            self.start(cols, pool)
            return self.finish()

    def start(self, cols: Columns, pool: Executor) -> None:
        """Submit the grouped queries to `pool`: one pass per anchor, and retention unless it was given
        (`retention_job`). They are independent, so several evaluations' queries can run side by side;
        `finish` waits for them and assembles the values."""
        self.cols = cols
        plan = self.plan()
        distinct = [(k, k.measure.expr) for k in self.kpis if isinstance(k.measure, Distinct)]
        repeat = [k for k in self.kpis if isinstance(k.measure, Repeat)]
        counting = bool(distinct or repeat)  # the contacts' requesters and distinct values, in the created pass
        anchors = dict.fromkeys([*plan.exprs, *(a for a, _ in plan.ranks)] + ([Anchor.CREATED] if counting else []))
        passes = []
        for anchor in anchors:
            exprs = plan.exprs.get(anchor, [])
            ranks = {expr: wanted for (a, expr), wanted in plan.ranks.items() if a is anchor}
            counts = anchor is Anchor.CREATED and counting
            job = pool.submit(self._pass, anchor, exprs, ranks, [e for _, e in distinct] if counts else None)
            passes.append(_Pass(anchor, exprs, ranks, counts, job))
        if plan.retention and self.retention is None:
            self.retention = pool.submit(self._retention)
        self._started = _Started(plan, distinct, repeat, passes)

    def finish(self) -> list[Value]:
        """The values, once the queries `start` submitted have answered."""
        started = self._started
        assert started is not None, "start() submits the queries"
        try:
            figures: dict[str, dict[str, Table]] = {}  # kpi -> segmentation -> key -> raw figures
            for done in started.passes:
                self._slot(done, done.job.result(), started, figures)
            if started.plan.retention:
                assert self.retention is not None
                figures["customer_retention_pct"] = self.retention.result()
            if "repurchase_lift_90d_pp" in figures:
                self._add_baseline(figures["repurchase_lift_90d_pp"])
            return self._assemble(figures)
        finally:
            self.cols, self._started = None, None

    def _slot(self, done: _Pass, found: dict[str, Table], started: _Started,
              figures: dict[str, dict[str, Table]]) -> None:
        """Each KPI's figures out of an anchor's pass (the columns `_pass` lays out)."""
        anchor = done.anchor
        for kpi_id, (slot_anchor, idx) in started.plan.slots.items():
            if slot_anchor is anchor:
                figures[kpi_id] = {s: {k: [row[i] for i in idx] for k, row in t.items()} for s, t in found.items()}
        at = len(done.exprs)
        for expr, wanted in done.ranks.items():
            for kpi in self.kpis:
                m = kpi.measure
                if isinstance(m, Percentile) and m.expr == expr and kpi.anchor is anchor:
                    i = at + 1 + wanted.index((m.num, m.den))
                    figures[kpi.id] = {s: {k: [r[at], r[i]] for k, r in t.items()} for s, t in found.items()}
            at += 1 + len(wanted)
        if done.counts:
            for kpi in started.repeat:
                figures[kpi.id] = {s: {k: [r[at + 1] - r[at + 2], r[at]] for k, r in t.items()}
                                   for s, t in found.items()}
            for i, (kpi, _) in enumerate(started.distinct):
                figures[kpi.id] = {s: {k: [r[at + 3 + i]] for k, r in t.items()} for s, t in found.items()}

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
        if kpi.id == "repurchase_lift_90d_pp":
            return self._lift(period, by, segment, raw)
        if kpi.id == "orders" and self._orders_of_feed(period) is None:  # catalogue 3b: input or order feed
            given = self.inputs.amount("orders", period, dict(segment))
            if given is not None:
                return Value(kpi.id, period, by, segment, given, n=None)
        if isinstance(m, Sum):  # no data without an order feed; 0 when it has nothing to sum
            amount = float(raw[0] or 0) if raw else 0.0
            return Value(kpi.id, period, by, segment, amount if self.feed_start is not None else None)
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
            feed = self._orders_of_feed(period) if m.input == "orders" else None
            given = feed if feed is not None else self.inputs.amount(m.input, period, dict(segment))
            top, bottom = (given, count) if m.input_on_top else (count, given)
            value = top / bottom if top is not None and bottom else None
            return Value(kpi.id, period, by, segment, value, top, bottom, count)
        raise TypeError(f"{kpi.id}: no evaluator for {m!r}")

    # --- special measures -----------------------------------------------------------------

    def _orders_of_feed(self, period: Period) -> float | None:
        """The feed's orders in the period when the feed covers it (its earliest order is not after the period's
        start), else None (the business input applies). Unsegmented, they apply to every segment as global
        business inputs do."""
        if self.feed_start is None or self.feed_start.strftime("%Y-%m-%dT%H:%M:%SZ") > self.ctx.instant(period.start):
            return None
        if self._feed_orders is None:
            self._feed_orders = self._groups(Anchor.ORDER, ["count(CASE WHEN o.kind = 'order' THEN 1 END)"],
                                             segs=[Segmentation(())])
        row = self._feed_orders.get("", {}).get((period.start.isoformat(), ()))
        return float(row[0] or 0) if row else 0.0

    def _add_baseline(self, table: dict[str, Table]) -> None:
        """The lift's baseline (catalogue 3b), the same for every segment: per period, among the orders placed in
        it by customers with no contact in the VALUE_DAYS before or after the order (each customer's first such
        order of the period, its window passed), those followed by another order within VALUE_DAYS; appended to
        each row (and the unsegmented row made) as two more figures."""
        window = VALUE_DAYS * DAY_S

        def near(by: str) -> str:  # no contact of the customer matched by this key around the order
            return (f" AND NOT EXISTS (SELECT 1 FROM contact c WHERE c.who = k.{by} AND c.e >= k.e - {window}"
                    f" AND c.e <= k.e + {window})")

        base: dict[str, tuple[int, int]] = {}
        for run in self.runs if self.feed_start is not None else []:
            key = self._key("b.created_at", run)
            sql = (f"WITH {_ORDERS_KEPT}, contact AS ({_CONTACT_KEYS}),"
                   f" alone AS (SELECT * FROM kept k WHERE k.created_at >= :lo AND k.created_at < :hi"
                   f" AND k.e + {window} <= :now{near('customer_key')}{near('requester')}),"
                   f" firsts AS (SELECT who, min(created_at) AS created_at, min(e) AS e FROM alone"
                   f" GROUP BY who, {self._key('created_at', run)})"
                   f" SELECT {key} AS p, count(*) FILTER (WHERE EXISTS (SELECT 1 FROM kept n WHERE n.who = b.who"
                   f" AND n.created_at >= :lo"
                   f" AND n.e > b.e AND n.e <= b.e + {window})), count(*) FROM firsts b GROUP BY p")
            for p, followed, orders in self._query(sql, self._params(run[0].start, run[-1].end)):
                base[p] = (int(followed), int(orders))
        for seg in self.segs:
            rows = table.setdefault(seg.key, {})
            if not seg.dims:
                for period in self.periods:
                    rows.setdefault((period.start.isoformat(), ()), [0, 0])
            for (p, _), row in rows.items():
                row.extend(base.get(p, (0, 0)))

    def _lift(self, period: Period, by: str, segment: Segment, raw: list[Any] | None) -> Value:
        """repurchase_90d_pct minus the baseline, in percentage points; numerator and denominator are the two
        percentages, n the contacts of the repurchase figure."""
        num, den, followed, orders = ((raw or []) + [0, 0, 0, 0])[:4]
        num, den = num or 0, den or 0
        ours = 100.0 * num / den if den else None
        baseline = 100.0 * followed / orders if orders else None
        value = ours - baseline if ours is not None and baseline is not None else None
        return Value("repurchase_lift_90d_pp", period, by, segment, value, ours, baseline, int(den or 0))

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
            table = (_roll_up(have[parent.key], parent, mix) if parent
                     else self._groups(Anchor.CREATED, [_VOLUME], segs=[mix])[mix.key])
        cache[mix.key] = table
        return table

    def _backlog(self, seg: Segmentation, figures: dict[str, dict[str, Table]]) -> dict[Key, int]:
        """Contacts open at each period's end (now for a running period), for every period asked for."""
        created = figures["backlog:created"].get(seg.key, {})
        resolved = figures["backlog:resolved"].get(seg.key, {})
        out: dict[Key, int] = {}
        for i, run in enumerate(self.runs):
            before, history = self._backlog_parts()[i]
            steps: dict[tuple[Any, ...], dict[str, int]] = defaultdict(lambda: defaultdict(int))
            for vals, count in before.get(seg.key, {}).items():
                steps[vals][""] += count
            for (p, vals), (opened, closed_at_creation) in created.items():
                steps[vals][p] += (opened or 0) - (closed_at_creation or 0)
            for (p, vals), (closed,) in resolved.items():
                steps[vals][p] -= closed or 0
            for (p, vals), step in history.get(seg.key, {}).items():
                steps[vals][p] += step
            for vals, by_period in steps.items():
                running = by_period.get("", 0)
                for period in run:
                    running += by_period.get(period.start.isoformat(), 0)
                    out[(period.start.isoformat(), vals)] = running
        return out

    def _backlog_parts(self) -> list[_BacklogRun]:
        """Per run, for every segmentation: the contacts without a reopen history open before the run, and the
        steps of those with one (+1 at creation and each reopening, -1 at each resolution) by period."""
        if not hasattr(self, "_parts"):
            self._parts = [self._backlog_run(run) for run in self.runs]
        return self._parts

    def _backlog_run(self, run: list[Period]) -> _BacklogRun:
        before: dict[str, dict[tuple[Any, ...], int]] = defaultdict(dict)
        history: dict[str, dict[Key, int]] = defaultdict(dict)
        lo, cap = self.ctx.bound(run[0].start), min(self.ctx.bound(run[-1].end), self.ctx.now_iso)
        for sets in self._sets():
            dims = fact_dims(sets.union, duck=True)
            joins = fact_joins(sets.union, duck=True)
            names = "".join(f", d{i}" for i in range(sets.width))
            sql = (f"SELECT {', '.join(sets.select(dims))}, count(*) FROM kpi_facts f{joins}"
                   f" WHERE f.is_deleted = 0 AND f.transitions IS NULL AND f.created_at < :lo"
                   f" AND (f.first_resolved_at IS NULL OR greatest(f.created_at, f.first_resolved_at) >= :lo)"
                   f"{sets.group_by([])}")
            for seg_key, _, vals, row in sets.split(self._query(sql, {"lo": lo}), 0):
                before[seg_key][vals] = row[0]
            scope = "f.is_deleted = 0 AND f.transitions IS NOT NULL AND f.created_at < :cap"
            picked = "".join(f", {x} AS d{i}" for i, x in enumerate(dims))
            steps = (f"SELECT f.created_at AS t, 1 AS step{picked} FROM kpi_facts f{joins} WHERE {scope} UNION ALL"
                     f" SELECT greatest(unnest(json_extract_string(f.transitions, '$[*][0]')), f.created_at),"
                     f" unnest(CAST(json_extract(f.transitions, '$[*][1]') AS BIGINT[])){picked}"
                     f" FROM kpi_facts f{joins} WHERE {scope}")
            grouping = f"GROUPING({', '.join(f'd{i}' for i in range(sets.width))})" if sets.width else "0"
            sql = (f"SELECT CASE WHEN t < :lo THEN '' ELSE {self._key('t', run)} END AS b{names}, {grouping} AS g,"
                   f" sum(step) FROM ({steps}) WHERE t < :cap{sets.group_by(['b'])}")
            for seg_key, head, vals, row in sets.split(self._query(sql, {"lo": lo, "cap": cap}), 1):
                history[seg_key][(head[0], vals)] = int(row[0])
        return before, history

    def _utilization(self, seg: Segmentation) -> dict[Key, Value]:
        """Handle time of the agents' resolved contacts over the available time of those agents."""
        available = {p.start.isoformat(): self.inputs.available_seconds(p) for p in self.periods}
        if not any(available.values()):
            return {}
        with_agent = Segmentation(seg.dims + (() if "agent" in seg.dims else ("agent",)), seg.custom_keys)
        at = with_agent.dims.index("agent")
        handle: dict[Key, dict[str, float]] = defaultdict(dict)
        resolved = self._groups(Anchor.FIRST_RESOLVED, ["sum(f.handle_s)"], f"f.agent IS NOT NULL AND {CUSTOMER_WROTE}",
                                [with_agent])[with_agent.key]
        for (p, vals), row in resolved.items():
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

