"""Running evaluations' independent passes (per-anchor aggregates, percentiles, distinct counts) on several cores.

SQLite sorts each grouped pass on one core, and the passes that split rows by segment in
Python hold the GIL (threads were tried: slower than one core). So `compute` on a large
store starts worker processes before it refreshes the facts (their start-up overlaps that
work), then hands them every pass of every stale period batch at once. Each worker
(`worker.py`) has its own read connection to the store, which holds committed facts by
then; tasks and results travel pickled over its pipes, one thread per worker feeding it.
"""

from __future__ import annotations

import itertools
import os
import pickle
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import IO, Any

# Below this many contacts in the store, starting processes costs more than it saves.
MIN_CONTACTS = 300_000
_NUMBERS = itertools.count(1)


class WorkerError(RuntimeError):
    """A worker process failed a pass (its error message) or died."""


def store_path(conn: Any) -> str | None:
    """The store's file, or None for an in-memory or temporary database."""
    for _, name, path in conn.execute("PRAGMA database_list").fetchall():
        if name == "main":
            return path or None
    return None


class Workers:
    """Worker processes evaluating passes; `submit` returns a future per pass of an evaluation."""

    def __init__(self, path: str, count: int) -> None:
        self.path = path
        self.tasks: queue.Queue[tuple[Any, ...] | None] = queue.Queue()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        self.procs = [subprocess.Popen([sys.executable, "-m", "kpi_core.kpis.worker"], stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, env=env) for _ in range(count)]
        self.threads = [threading.Thread(target=self._feed, args=(p,), daemon=True) for p in self.procs]
        for thread in self.threads:
            thread.start()

    def _feed(self, proc: subprocess.Popen[bytes]) -> None:
        stdin: IO[bytes] = proc.stdin  # type: ignore[assignment]
        stdout: IO[bytes] = proc.stdout  # type: ignore[assignment]
        while (item := self.tasks.get()) is not None:
            spec, unit, future = item
            try:
                pickle.dump((spec, unit), stdin, protocol=pickle.HIGHEST_PROTOCOL)
                stdin.flush()
                status, result = pickle.load(stdout)
            except (EOFError, OSError, pickle.UnpicklingError) as exc:
                future.set_exception(WorkerError(f"a KPI worker process stopped: {exc!r}"))
                continue
            if status == "ok":
                future.set_result(result)
            else:
                future.set_exception(WorkerError(f"a KPI worker failed: {result}"))

    def submit(self, evaluation: Any) -> dict[tuple[Any, ...], Future[Any]]:
        spec = (next(_NUMBERS), self.path, evaluation.ctx.settings, evaluation.ctx.now, evaluation.periods,
                evaluation.segs, [k.id for k in evaluation.kpis])
        futures: dict[tuple[Any, ...], Future[Any]] = {}
        for unit in evaluation.units(evaluation.plan()):
            futures[unit] = Future()
            self.tasks.put((spec, unit, futures[unit]))
        return futures

    def close(self) -> None:
        for _ in self.threads:
            self.tasks.put(None)
        for proc in self.procs:
            if proc.stdin:
                proc.stdin.close()
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout:
                proc.stdout.close()


@contextmanager
def workers_for(conn: Any, count: int) -> Iterator[Workers | None]:
    """Worker processes when the store is large enough and more than one core is wanted; else None."""
    path = store_path(conn)
    if count < 2 or path is None:
        yield None
        return
    contacts = conn.execute("SELECT coalesce(max(rowid), 0) FROM contacts").fetchone()[0]  # instant, an upper bound
    if contacts < MIN_CONTACTS:
        yield None
        return
    workers = Workers(path, count)
    try:
        yield workers
    finally:
        workers.close()
