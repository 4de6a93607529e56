"""The KPI engine's entry points: `compute` keeps stored values fresh, `refresh` runs it before a read when
the store changed since (the CLI's readers and `push` call it), `kpi_rows` reads them (computing what is
missing), `previous_rows` gives what each period is compared with (a running period: the same days of the
previous one).

`compute` refreshes the per-contact facts of the contacts a sync touched (and commits them),
then, for every stored (grain, segmentation) and the configured ones, redoes only what went
stale, KPI by KPI, over the columnar copy of the facts (columns.py):
- a period never computed, or computed under other settings: everything;
- a changed day inside the period: every KPI but backlog;
- a changed day in the previous period: retention;
- a period that can still change with time alone (FCR windows, unanswered contacts turning
  into service-level misses, idle chats): service level, abandonment and FCR;
- backlog of every stored period: moved by the changed contacts (see `backlog.py`).
Frozen periods (catalogue 2c, see `values.py`) are never redone, `--full` and a settings change
included; `rebuild_history` (the explicit `compute --full --rebuild-history`) unfreezes them
and recomputes them from what the store holds.
Then, in one transaction with the values, the read-together diagnostics whose figures changed
(or all, when what they judge by beside the values did: see `diagnostics.store_diagnostics`)
are evaluated again and stored.
"""

from __future__ import annotations

import json
import logging
import time
from bisect import bisect_left
from collections import defaultdict
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from kpi_core.kpis import backlog, catalogue, facts, inputs, values
from kpi_core.kpis import periods as P
from kpi_core.kpis.columns import Columns, open_columns, query_pool, side_by_side
from kpi_core.kpis.context import Context, context_for, get_meta, set_meta
from kpi_core.kpis.diagnostics import USED_KPIS, store_diagnostics
from kpi_core.kpis.engine import evaluate, prepare
from kpi_core.kpis.materialize import ALL, TIME_KPIS, chosen, ensure, write
from kpi_core.kpis.periods import Grain, Period
from kpi_core.kpis.segments import Segmentation, parse
from kpi_core.settings import KpiSettings, Settings
from kpi_core.store import Store

log = logging.getLogger(__name__)

RETENTION = frozenset({"customer_retention_pct"})


@dataclass
class ComputeSummary:
    contacts_refreshed: int = 0
    contacts_changed: int = 0
    rebuilt_everything: bool = False
    periods_computed: int = 0
    periods_partly: int = 0
    values_written: int = 0
    diagnostics: int = 0  # firing among the segments judged again (those whose figures changed)
    diagnostics_now: int = 0  # firing in the running month, any segment (what `diagnose` shows by default)
    periods_frozen: int = 0  # stored periods left as they are: their values are final
    periods_unfrozen: int = 0  # with rebuild_history: frozen periods recomputed
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def default_range(ctx: Context, since: date | None, until: date | None) -> tuple[date, date]:
    """[since, until): by default the last `history_months` months up to today."""
    today = ctx.today  # in [kpis] timezone
    first = P.period_containing(today, Grain.MONTH).start
    for _ in range(ctx.settings.history_months - 1):
        first = P.period_containing(first - timedelta(days=1), Grain.MONTH).start
    return since or first, until or today + timedelta(days=1)


def compute(store: Store, settings: Settings | KpiSettings, since: date | None = None, until: date | None = None,
            *, grains: list[str] | None = None, segments: list[list[str]] | None = None,
            now: datetime | None = None, full: bool = False, rebuild_history: bool = False) -> ComputeSummary:
    """Bring stored KPI values and diagnostics up to date; see the module docstring.

    `rebuild_history` (implies `full`) also recomputes the frozen periods, from what the store holds
    now, and forgets the purge boundary: meant for a store re-synced in full after a purge.

    Three steps: refresh the facts and take the changed days (committed), evaluate what went stale over
    the columnar copy (columns.py, brought up to date first), then write the values, move the backlog and
    store the diagnostics in one transaction. Interrupted between the first and the last, the next run
    takes over the days and changes the first step took.
    """
    started = time.perf_counter()
    ctx = context_for(store, settings, now)
    since, until = default_range(ctx, since, until)
    return _compute(ctx, since, until, grains, segments, full or rebuild_history, rebuild_history, started)


def _compute(ctx: Context, since: date, until: date, grains: list[str] | None, segments: list[list[str]] | None,
             full: bool, rebuild_history: bool, started: float) -> ComputeSummary:
    summary = ComputeSummary()
    wanted_grains = [Grain(g) for g in (grains or ctx.settings.periods)]
    wanted_segs = [parse(s, ctx.settings) for s in (segments if segments is not None else ctx.settings.segments)]
    with ctx.writing():
        inputs.sync_config(ctx.conn, ctx.settings)
        fingerprint = ctx.values_fingerprint()
        refreshed = facts.refresh(ctx, force_full=full)
        redo_all = full or refreshed.everything or get_meta(ctx.conn, "values_fingerprint") != fingerprint
        summary.contacts_refreshed, summary.rebuilt_everything = refreshed.contacts, refreshed.everything
        summary.contacts_changed = refreshed.changed
        dirty = P.local_days(_take_dirty_days(ctx), ctx.zone)  # noted as UTC days: the local days they touch
        seq = values.changes_seq(ctx)
    log.debug("kpis: facts refreshed (%s contacts) after %.2fs", refreshed.contacts, time.perf_counter() - started)
    stored = values.computed(ctx)
    fixed = {} if rebuild_history else values.frozen(ctx.conn)
    summary.periods_frozen = sum(len(periods) for periods in fixed.values())
    combos: dict[Grain, dict[str, Segmentation]] = defaultdict(dict)
    for grain in wanted_grains:
        for seg in wanted_segs:
            combos[grain][seg.key] = seg
    for grain, by_key in stored:
        combos[grain].setdefault(by_key, parse(by_key or None, ctx.settings))
    plans: dict[Grain, dict[tuple[Period, frozenset[str]], list[Segmentation]]] = {}
    for grain, segs in combos.items():
        plan: dict[tuple[Period, frozenset[str]], list[Segmentation]] = defaultdict(list)
        for seg in segs.values():
            have = stored.get((grain, seg.key), {})
            kept = fixed.get((grain, seg.key), set())
            work = _stale(ctx, {p: at for p, at in have.items() if p not in kept}, dirty, redo_all, fingerprint)
            if grain in wanted_grains and seg.key in {s.key for s in wanted_segs}:
                for period in P.periods_between(grain, since, until):
                    if period not in have:
                        work[period] = frozenset({ALL})
            for period, what in work.items():
                plan[(period, what)].append(seg)
        plans[grain] = plan
    found = _evaluate_plans(ctx, plans, summary)
    log.debug("kpis: %s periods evaluated after %.2fs", summary.periods_computed + summary.periods_partly,
              time.perf_counter() - started)
    with ctx.writing():
        if rebuild_history:
            summary.periods_unfrozen = values.unfreeze(ctx.conn)
        changes = values.Changes(frozenset(USED_KPIS))  # what the diagnostics read
        for grain, batches in found.items():
            for segs_of_batch, todo, what, evaluated in batches:
                summary.values_written += write(ctx, grain, segs_of_batch, todo, what, evaluated, changes)
            plan = plans[grain]
            for seg in combos[grain].values():
                redone = {p for (p, what), segs_of in plan.items() if ALL in what and seg in segs_of}
                kept = fixed.get((grain, seg.key), set())
                untouched = [p for p in stored.get((grain, seg.key), {}) if p not in redone and p not in kept]
                summary.values_written += backlog.apply_changes(ctx, grain, seg, untouched, seq)

        log.debug("kpis: values written after %.2fs", time.perf_counter() - started)
        summary.diagnostics = store_diagnostics(ctx, wanted_grains, wanted_segs, changes)
        set_meta(ctx.conn, DAYS_IN_PROGRESS, "[]")
        backlog.clear(ctx, seq)
        set_meta(ctx.conn, "values_fingerprint", fingerprint)
        set_meta(ctx.conn, "computed_at", ctx.now_iso)
        summary.diagnostics_now = ctx.conn.execute(
            "SELECT count(*) FROM kpi_diagnostics WHERE grain = 'month' AND period_start <= ? AND period_end > ?",
            [ctx.today.isoformat()] * 2).fetchone()[0]
    summary.seconds = round(time.perf_counter() - started, 3)
    log.info("kpis: computed %s periods (%s partly) in %.2fs", summary.periods_computed, summary.periods_partly,
             summary.seconds)
    return summary


DAYS_IN_PROGRESS = "changed_days_in_progress"
Batch = tuple[list[Segmentation], list[Period], frozenset[str], list[Any]]


def _take_dirty_days(ctx: Context) -> list[date]:
    """The changed days to process now: those noted since, plus any a run interrupted mid-way had taken."""
    days = set(_dirty_days(ctx))
    for day in json.loads(get_meta(ctx.conn, DAYS_IN_PROGRESS) or "[]"):
        days.add(date.fromisoformat(day))
    set_meta(ctx.conn, DAYS_IN_PROGRESS, json.dumps(sorted(d.isoformat() for d in days)))
    ctx.conn.execute("DELETE FROM kpi_dirty_days")
    return sorted(days)


def _evaluate_plans(ctx: Context, plans: dict[Grain, dict[tuple[Period, frozenset[str]], list[Segmentation]]],
                    summary: ComputeSummary) -> dict[Grain, list[Batch]]:
    """Evaluate the planned periods, batching those that need the same KPIs for the same segmentations,
    all over one opening of the columnar copy."""
    prepared: list[tuple[Grain, list[Segmentation], list[Period], frozenset[str], Any]] = []
    for grain, plan in plans.items():
        batches: dict[tuple[frozenset[str], tuple[str, ...]], list[Period]] = defaultdict(list)
        segs_by_key: dict[str, Segmentation] = {}
        for (period, what), segs in plan.items():
            for seg in segs:
                segs_by_key[seg.key] = seg
            batches[(what, tuple(sorted(s.key for s in segs)))].append(period)
        for (what, seg_keys), periods in batches.items():
            segs = [segs_by_key[k] for k in seg_keys]
            for group in ([[p] for p in periods] if grain is Grain.CUSTOM else [periods]):
                evaluation = prepare(ctx, group, segs, chosen(ctx, what))
                if evaluation is None:
                    continue
                prepared.append((grain, segs, evaluation.periods, what, evaluation))
                if ALL in what:
                    summary.periods_computed += len(evaluation.periods)
                else:
                    summary.periods_partly += len(evaluation.periods)
    out: dict[Grain, list[Batch]] = defaultdict(list)
    if not prepared:
        return out
    short = all(evaluation.short for *_, evaluation in prepared)
    with open_columns(ctx) as cols, query_pool(cols, short) as pool:
        # Every evaluation's queries are submitted before any answer is waited for, so they run side by side.
        if not side_by_side(cols, short):
            _share_retention(ctx, [evaluation for grain, _, _, _, evaluation in prepared
                                   if grain is not Grain.CUSTOM], cols, pool)
        for *_, evaluation in prepared:
            evaluation.start(cols, pool)
        for grain, segs, todo, what, evaluation in prepared:
            out[grain].append((segs, todo, what, evaluation.finish()))
    return out


def _share_retention(ctx: Context, evaluations: list[Any], cols: Columns, pool: Executor) -> None:
    """Retention of the evaluations of one grain and set of segmentations, computed in one go: a changed day
    redoes every KPI of its period and retention of the next, and both are then one run of periods (one query
    rather than two, each reading the same months). Not when short queries run side by side: there the two,
    each on a core of its own, end sooner than the one."""
    groups: dict[tuple[Grain, tuple[str, ...]], list[Any]] = defaultdict(list)
    for evaluation in evaluations:
        if any(k.id in RETENTION for k in evaluation.kpis):
            groups[(evaluation.grain, tuple(s.key for s in evaluation.segs))].append(evaluation)
    for group in groups.values():
        if len(group) < 2:
            continue
        periods = sorted({p for evaluation in group for p in evaluation.periods})
        shared = prepare(ctx, periods, group[0].segs, [catalogue.BY_ID[k] for k in sorted(RETENTION)])
        assert shared is not None
        figures = shared.retention_job(cols, pool)
        for evaluation in group:
            evaluation.retention = figures


def _dirty_days(ctx: Context) -> list[date]:
    out = []
    for (day,) in ctx.conn.execute("SELECT day FROM kpi_dirty_days ORDER BY day"):
        try:
            out.append(date.fromisoformat(day))
        except (TypeError, ValueError):
            log.warning("kpis: ignoring a malformed changed day %r", day)
    return out


def _stale(ctx: Context, have: dict[Period, tuple[datetime, str]], dirty: list[date], redo_all: bool,
           fingerprint: str) -> dict[Period, frozenset[str]]:
    """Stored periods to redo and what to redo in each (ALL, or a set of KPI ids)."""
    out: dict[Period, frozenset[str]] = {}
    for period, (computed_at, stamp) in have.items():
        if redo_all or stamp != fingerprint:
            out[period] = frozenset({ALL})
            continue
        what: set[str] = set()
        if _touches(dirty, period.start, period.end):
            what |= {k.id for k in catalogue.KPIS} - {"backlog"}
        elif _touches(dirty, period.previous().start, period.start):
            what |= RETENTION
        if not values.is_settled(ctx, period, computed_at):
            what |= TIME_KPIS
        if what:
            out[period] = frozenset(what)
    return out


def _touches(days: list[date], start: date, end: date) -> bool:
    i = bisect_left(days, start)
    return i < len(days) and days[i] < end


def refresh(store: Store, settings: Settings, now: datetime | None = None) -> bool:
    """Bring the stored values up to date before they are read, when the store changed since the last `compute`;
    True when it recomputed.

    Cheap when nothing changed: a few reads of the change marks the store keeps (see `stale_reasons`). When
    something did, it is `compute` with its defaults, which redoes only what those marks touch.
    """
    ctx = context_for(store, settings, now)
    if not stale_reasons(ctx):
        return False
    compute(store, settings, now=now)
    return True


def stale_reasons(ctx: Context) -> list[str]:
    """Why the stored values may not reflect the store (empty when they do): the marks a sync, an import or a
    settings change leave for the next `compute`."""
    conn = ctx.conn
    reasons = []
    if get_meta(conn, "values_fingerprint") != ctx.values_fingerprint():
        reasons.append("never computed, or computed under other settings")
    marks = {"contacts changed": "SELECT 1 FROM kpi_dirty_contacts LIMIT 1",
             "days changed": "SELECT 1 FROM kpi_dirty_days LIMIT 1",
             "contacts waiting for their reply and resolution facts": "SELECT 1 FROM derive_pending LIMIT 1"}
    reasons += [why for why, sql in marks.items() if conn.execute(sql).fetchone()]
    if (get_meta(conn, DAYS_IN_PROGRESS) or "[]") != "[]":
        reasons.append("an interrupted compute")
    if _config_inputs_differ(ctx):
        reasons.append("business inputs of the config changed")
    return reasons


def _config_inputs_differ(ctx: Context) -> bool:
    """Whether `[[kpis.inputs]]` differs from the config inputs stored by the last compute (`inputs.sync_config`)."""
    wanted = {(*inputs.Input(s.kind, s.start, s.end, s.value, s.agent, s.segment).key(), s.value)
              for s in ctx.settings.inputs}
    stored = {(kind, start, end, agent, segment, value) for kind, start, end, agent, segment, value in ctx.conn.execute(
        "SELECT kind, start, [end], agent, segment, value FROM kpi_inputs WHERE origin = 'config'")}
    return wanted != stored


def kpi_rows(store: Store, settings: Settings | KpiSettings, period: str | None, since: date | None,
             until: date | None, by: list[str] | str | None = None, kpi_ids: list[str] | None = None,
             *, now: datetime | None = None) -> list[dict[str, Any]]:
    """Stored KPI values as the interface's JSON objects; periods never computed (or computed under other
    settings) are computed and stored first, from the facts as of the last `compute`."""
    ctx = context_for(store, settings, now)
    wanted = P.resolve(period, since, until, ctx.now, ctx.zone)
    seg = parse(by, ctx.settings)
    if kpi_ids:
        catalogue.selected(kpi_ids, True)  # validates the ids
    grain = wanted[0].grain
    ensure(ctx, grain, seg, wanted)
    rows = values.read(ctx, grain, seg.key, wanted, kpi_ids, ctx.hours.configured)
    spans = {p.start.isoformat(): values.compared_with(p, ctx.today) for p in wanted}
    for row in rows:
        span, to_date = spans[row["period_start"]]
        row["compared_with"] = {"period_start": span.start.isoformat(), "period_end": span.end.isoformat(),
                                "to_date": to_date}
    return rows


def previous_rows(store: Store, settings: Settings | KpiSettings, period: str | None, since: date | None,
                  until: date | None, by: list[str] | str | None = None, kpi_ids: list[str] | None = None,
                  *, now: datetime | None = None) -> list[dict[str, Any]]:
    """The rows each period of the same `kpi_rows` request is compared with (the change column): the previous
    period, or for a running period the same days of the previous one (see `compared_with`).

    A row matches the current row whose `compared_with` names its period_start and period_end. Rows of a
    to-date span carry `"to_date": true`; they are evaluated here, not stored (the span moves every day).
    """
    ctx = context_for(store, settings, now)
    wanted = P.resolve(period, since, until, ctx.now, ctx.zone)
    seg = parse(by, ctx.settings)
    spans = [values.compared_with(p, ctx.today) for p in wanted]
    whole = sorted({span for span, to_date in spans if not to_date})
    rows: list[dict[str, Any]] = []
    if whole:
        grain = whole[0].grain
        ensure(ctx, grain, seg, whole)
        rows += values.read(ctx, grain, seg.key, whole, kpi_ids, ctx.hours.configured)
    for span in sorted({span for span, to_date in spans if to_date}):
        rows += _to_date_rows(ctx, span, seg, kpi_ids)
    return rows


def _to_date_rows(ctx: Context, span: Period, seg: Segmentation, kpi_ids: list[str] | None) -> list[dict[str, Any]]:
    """The interface rows of a to-date span of a previous period, evaluated from the facts."""
    wanted = [k for k in chosen(ctx, frozenset({ALL}))
              if (k.id in kpi_ids if kpi_ids else not k.hidden)]
    if not facts.built(ctx):
        with ctx.writing():
            facts.refresh(ctx)
    rows = [values.as_row(ctx, catalogue.BY_ID[v.kpi], span, dict(v.segment), v.value, v.numerator, v.denominator,
                          v.n) for v in evaluate(ctx, [span], [seg], wanted)]
    for row in rows:
        row["to_date"] = True
    return rows


def frozen_history(store: Store) -> list[tuple[str, str, int, str, str]]:
    """Per stored (grain, segmentation): how many periods are frozen, the first start and the last end."""
    return values.frozen_summary(store.db.conn)


def import_inputs(store: Store, csv_path: str | Path) -> int:
    """Store the business inputs of a CSV file (see inputs.py); returns the rows read. Raises InputsError."""
    conn = store.db.conn
    with store.db.atomic():
        return inputs.import_csv(conn, csv_path)
