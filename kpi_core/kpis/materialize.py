"""Evaluating periods and storing their values: shared by `compute` and by the readers that
compute what was never stored (`kpi_rows`, the diagnostics)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from kpi_core.kpis import catalogue, facts, values
from kpi_core.kpis.context import Context
from kpi_core.kpis.engine import evaluate
from kpi_core.kpis.periods import Grain, Period
from kpi_core.kpis.segments import Segmentation

ALL = "all"  # "every KPI" in a plan of what to redo in a period
# kpi_meta key per grain: what its stored diagnostics were judged under (diagnostics.store_diagnostics).
DIAGNOSED = "diagnostics_fingerprint:"
# KPIs whose value moves with time alone (a contact passes a threshold without any change).
TIME_KPIS = frozenset({"service_level_pct", "service_level_pct_bh", "abandonment_rate_pct", "fcr_pct"}
                      | catalogue.VALUE_KPIS)


def chosen(ctx: Context, what: frozenset[str]) -> list[catalogue.Kpi]:
    everything = [k for k in catalogue.KPIS if ctx.hours.configured or not k.business_hours]
    return everything if ALL in what else [k for k in everything if k.id in what]


def write(ctx: Context, grain: Grain, segs: list[Segmentation], todo: list[Period], what: frozenset[str],
          found: list[Any], changes: values.Changes | None = None) -> int:
    by_seg: dict[str, list[Any]] = defaultdict(list)
    for value in found:
        by_seg[value.by].append(value)
    kpi_ids = None if ALL in what else [k.id for k in chosen(ctx, what)]
    touch = ALL in what or bool(TIME_KPIS & what)
    return sum(values.write(ctx, grain, seg.key, todo, by_seg[seg.key], kpi_ids, touch=touch, changes=changes)
               for seg in segs)


def ensure(ctx: Context, grain: Grain, seg: Segmentation, wanted: list[Period]) -> None:
    """Compute and store the periods of `wanted` that are missing or were computed under other settings;
    frozen periods stay as they are, whatever settings they were computed under (catalogue 2c).

    The facts are refreshed only when they were never built (or under other settings): otherwise the
    stored values and the ones computed here both reflect the last `compute` (the CLI's readers call
    `api.refresh` first, so that is the store as it is).
    """
    fingerprint = ctx.values_fingerprint()
    have = values.computed(ctx, grain, seg.key).get((grain, seg.key), {})
    fixed = values.frozen(ctx.conn, grain, seg.key).get((grain, seg.key), set())
    missing = [p for p in wanted if p not in fixed and (p not in have or have[p][1] != fingerprint)]
    if not missing:
        return
    with ctx.writing():
        if not facts.built(ctx):
            facts.refresh(ctx)
        for group in ([[p] for p in missing] if grain is Grain.CUSTOM else [missing]):
            todo = [p for p in group if p.start <= ctx.today]
            found = evaluate(ctx, todo, [seg], chosen(ctx, frozenset({ALL})))
            write(ctx, grain, [seg], todo, frozenset({ALL}), found)
        # Values written outside `compute`, which notes what the diagnostics judge again: they are judged whole.
        ctx.conn.execute("DELETE FROM kpi_meta WHERE key = ?", [DIAGNOSED + grain.value])
