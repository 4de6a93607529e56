"""`bench/kpis.py --compare duckdb` on a small store: the hand-written DuckDB KPIs agree with the engine's
stored values, after a full compute and after an incremental one that follows a sync-like change.

Skipped when duckdb is not installed (it comes with the `test` and `bench` extras)."""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path

import pytest

pytest.importorskip("duckdb")

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import duckdb_reference as ref  # noqa: E402
import kpis as bench  # noqa: E402

from kpi_core.kpis.api import compute  # noqa: E402
from kpi_core.store import open_store  # noqa: E402

LO, HI, BEFORE = bench.YEAR_START, bench.NOW.date(), date(2024, 12, 1)


def _engine(path: Path) -> dict[str, int]:
    store = open_store(path)
    try:
        done = compute(store, bench.settings(False), LO, HI, grains=["month"], segments=bench.SEGMENTS,
                       now=bench.NOW)
    finally:
        store.close()
    return done.as_dict()


def _check(path: Path) -> tuple[int, int]:
    db, _ = ref.load(path)
    try:
        found, _ = ref.reference(db, bench.settings(False), int(bench.NOW.timestamp()), LO, HI, BEFORE)
    finally:
        db.close()
    n, both, wrong = ref.compare(ref.stored(path, LO, HI), found)
    assert not wrong, "\n".join(f"{k}: engine {a!r}, duckdb {b!r}" for k, a, b in wrong[:20])
    return n, both


def test_duckdb_reference_agrees_with_the_engine(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    bench.generate(path, 3000, seed=5)
    _engine(path)
    n, both = _check(path)
    assert both > 5000  # 28 KPIs over 12 months and their channel x language segments
    assert n >= both

    changed = bench.change_one_day(path, date(2025, 6, 17), seed=5)
    assert changed["contacts_marked"] == changed["contacts_resolved"] + changed["contacts_new"]
    done = _engine(path)
    assert not done["rebuilt_everything"]
    assert done["contacts_refreshed"] == changed["contacts_marked"]  # marked as a sync marks them
    assert done["contacts_changed"] >= changed["contacts_new"]
    n_after, _ = _check(path)
    assert n_after >= n


def test_a_disagreement_is_reported() -> None:
    key = ("ticket_volume", "", "2025-01-01", "{}")
    n, both, wrong = ref.compare({key: 10.0}, {key: 10.000001})
    assert (n, both, wrong) == (1, 0, [(key, 10.0, 10.000001)])
    assert ref.compare({key: 10.0}, {key: 10.0 + 1e-12})[2] == []
    assert ref.compare({key: None}, {})[2] == []
