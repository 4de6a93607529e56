"""Running an evaluation's independent passes (per-anchor aggregates, percentiles, distinct counts) on several cores.

SQLite sorts each grouped pass on one core; a year of a million contacts takes several such
passes, so a large evaluation hands them to worker processes, each with its own read
connection to the store (which must hold committed facts: `compute` commits them first).
Workers are spawned, not forked: an SQLite connection must not cross a fork.
"""

from __future__ import annotations

import multiprocessing
from datetime import datetime
from pathlib import Path
from typing import Any

from kpi_core.settings import KpiSettings

from kpi_core.kpis import periods as P
from kpi_core.kpis.catalogue import BY_ID
from kpi_core.kpis.periods import Period
from kpi_core.kpis.segments import Segmentation

# Below this many contacts in the evaluated ranges, starting processes costs more than it saves.
MIN_CONTACTS = 200_000
_WORKER: dict[str, Any] = {}


def store_path(evaluation: Any) -> str | None:
    """The store's file, or None for an in-memory or temporary database."""
    for _, name, path in evaluation.ctx.conn.execute("PRAGMA database_list").fetchall():
        if name == "main":
            return path or None
    return None


def worth_it(evaluation: Any) -> bool:
    if store_path(evaluation) is None:
        return False
    total = 0
    for run in evaluation.runs:
        lo, hi = P.day_text(run[0].previous().start), P.day_text(run[-1].end)
        total += evaluation.ctx.conn.execute(
            "SELECT count(*) FROM kpi_facts WHERE created_at >= ? AND created_at < ?", [lo, hi]).fetchone()[0]
    return total >= MIN_CONTACTS


def _start(path: str, settings: KpiSettings, now: datetime, periods: list[Period], segs: list[Segmentation],
           kpi_ids: list[str]) -> None:
    from kpi_core.kpis.context import Context
    from kpi_core.kpis.engine import _Evaluation
    from kpi_core.store import open_store

    ctx = Context(open_store(Path(path)), settings, now)
    evaluation = _Evaluation(ctx, periods, segs, [BY_ID[k] for k in kpi_ids])
    _WORKER["evaluation"], _WORKER["plan"] = evaluation, evaluation.plan()


def _run(unit: tuple[Any, ...]) -> tuple[tuple[Any, ...], Any]:
    return unit, _WORKER["evaluation"].unit(unit, _WORKER["plan"])


def run_units(evaluation: Any, workers: int) -> dict[tuple[Any, ...], Any]:
    """Every pass of `evaluation`, run by `workers` processes; {unit: result}."""
    units = evaluation.units(evaluation.plan())
    args = (store_path(evaluation), evaluation.ctx.settings, evaluation.ctx.now, evaluation.periods,
            evaluation.segs, [k.id for k in evaluation.kpis])
    spawn = multiprocessing.get_context("spawn")
    with spawn.Pool(min(workers, len(units)), initializer=_start, initargs=args) as pool:
        return dict(pool.imap_unordered(_run, units))
