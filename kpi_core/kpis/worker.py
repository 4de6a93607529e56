"""A worker process of the KPI engine: reads pickled passes on stdin, writes their pickled results on stdout.

Started by `parallel.Workers` as `python -m kpi_core.kpis.worker`, so it never imports the
caller's own script (as multiprocessing's spawn would). Anything else printed goes to stderr.
"""

from __future__ import annotations

import os
import pickle
import sys
from pathlib import Path
from typing import Any

_CACHE: dict[int, tuple[Any, Any]] = {}  # evaluation number -> (evaluation, plan)
_STORE: list[Any] = []  # this worker's one connection to the store


def run(spec: tuple[Any, ...], unit: tuple[Any, ...]) -> Any:
    """One pass of the evaluation `spec` describes (each evaluation is built once, on one store)."""
    from kpi_core.kpis.catalogue import BY_ID
    from kpi_core.kpis.context import Context
    from kpi_core.kpis.engine import _Evaluation
    from kpi_core.store import open_store

    number, path, settings, now, periods, segs, kpi_ids = spec
    if number not in _CACHE:
        if not _STORE:
            _STORE.append(open_store(Path(path)))
        evaluation = _Evaluation(Context(_STORE[0], settings, now), periods, segs, [BY_ID[k] for k in kpi_ids])
        _CACHE[number] = (evaluation, evaluation.plan())
    evaluation, plan = _CACHE[number]
    return evaluation.unit(unit, plan)


def main() -> None:
    results = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stray prints must not corrupt the results
    import kpi_core.kpis.engine  # noqa: F401 - warm up before the first task

    tasks = sys.stdin.buffer
    while True:
        try:
            spec, unit = pickle.load(tasks)
        except EOFError:
            return
        try:
            answer: tuple[str, Any] = ("ok", run(spec, unit))
        except Exception as exc:  # reported to the parent, which raises it there
            answer = ("error", f"{type(exc).__name__}: {exc}")
        pickle.dump(answer, results, protocol=pickle.HIGHEST_PROTOCOL)
        results.flush()


if __name__ == "__main__":
    main()
