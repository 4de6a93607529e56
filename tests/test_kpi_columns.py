"""The KPI engine's columnar copy (kpi_core/kpis/columns.py): kept in step with the store by every writer, copied
anew when it no longer matches, never the reason for a wrong value; and DuckDB's percentiles are the nearest rank."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pytest
from kpi_fixtures import MARCH, NOW, Data, make_store, plus, ts

from kpi_core.kpis import columns, engine
from kpi_core.kpis.api import compute
from kpi_core.settings import KpiSettings
from kpi_core.store import Store, open_store

SETTINGS = KpiSettings(segments=[[], ["channel"], ["tag"], ["channel", "language"]], periods=["month", "week"],
                       min_n=1)


def _history() -> Data:
    d = Data()
    for i in range(24):
        channel = ("email", "chat", "phone")[i % 3]
        d.contact(f"c{i}", ts(1 + i, 9 + i % 5), channel=channel, language=("en", "de")[i % 2], reply=5 + i,
                  resolved=2 + i, agent_replies=1 + i % 2, requester_id=f"r{i % 7}",
                  tags=[["vip"], ["refund"], []][i % 3])
        if i % 4 == 0:
            d.survey(f"s{i}", "csat", 1 + i % 5, "1-5", plus(ts(1 + i, 9), hours=30), contact=f"c{i}",
                     requester=f"r{i % 7}")
    d.event("c3", "resolved", ts(6, 10))
    d.event("c3", "reopened", ts(7, 10))
    d.event("c3", "resolved", ts(9, 10))
    return d


def _values(store: Store) -> dict[tuple[Any, ...], Any]:
    return {tuple(r[:6]): tuple(r[6:]) for r in store.db.conn.execute(
        "SELECT grain, by_key, period_start, period_end, kpi, segment, value, numerator, denominator, n"
        " FROM kpi_values")}


def _recompute(store: Store, stamp: str) -> None:
    """Every value again (an unused custom segment changes only the values' fingerprint)."""
    compute(store, SETTINGS.model_copy(update={"custom_segments": {"unused": stamp}}), *MARCH, now=NOW)


def test_the_copy_follows_every_writer_and_gives_what_a_fresh_copy_gives(tmp_path: Path) -> None:
    store = make_store(tmp_path, _history())
    compute(store, SETTINGS, *MARCH, now=NOW)
    assert columns.columns_path(store.db.conn) == tmp_path / "kpi.sqlite.columns"
    assert (tmp_path / "kpi.sqlite.columns").exists()
    # A sync's changes: contacts changed and new, a survey answer, a person, a deletion.
    later = Data()
    later.contact("c1", ts(2, 10), channel="chat", language="fr", reply=1, resolved=1, requester_id="r1")
    later.contact("n1", ts(20, 8), channel="email", language="de", reply=90, requester_id="r3", tags=["vip"])
    later.survey("s-new", "csat", 5, "1-5", ts(21, 9), contact="n1", requester="r3")
    later.people.append({"source": "zendesk", "source_id": "r9", "role": "customer", "language": "it"})
    later.survey("s-orphan", "csat", 2, "1-5", ts(22, 9), requester="r9")
    later.write(store)
    store.db.conn.execute("DELETE FROM contacts WHERE source_id = 'c5'")
    compute(store, SETTINGS, *MARCH, now=NOW)
    assert store.db.conn.execute("SELECT count(*) FROM kpi_columns_log").fetchone()[0] == 0
    _recompute(store, "a")
    kept_in_step = _values(store)
    columns.remove(store.db.conn)
    assert not (tmp_path / "kpi.sqlite.columns").exists()
    _recompute(store, "b")
    assert _values(store) == kept_in_step
    fresh = make_store(tmp_path, _history(), "fresh.sqlite")
    later.write(fresh)
    fresh.db.conn.execute("DELETE FROM contacts WHERE source_id = 'c5'")
    _recompute(fresh, "a")
    assert _values(fresh) == kept_in_step


def test_a_copy_that_no_longer_matches_its_store_is_copied_anew(tmp_path: Path) -> None:
    store = make_store(tmp_path, _history())
    compute(store, SETTINGS, *MARCH, now=NOW)
    store.close()
    shutil.copy(tmp_path / "kpi.sqlite", tmp_path / "backup.sqlite")
    store = open_store(tmp_path / "kpi.sqlite")
    more = Data()
    for i in range(5):
        more.contact(f"x{i}", ts(25, 9 + i), channel="chat", reply=2)
    more.write(store)
    compute(store, SETTINGS, *MARCH, now=NOW)  # the copy now holds x0-x4
    store.close()
    # The store restored from its backup, the newer copy left beside it: the stamps differ.
    shutil.copy(tmp_path / "backup.sqlite", tmp_path / "kpi.sqlite")
    store = open_store(tmp_path / "kpi.sqlite")
    _recompute(store, "c")
    volume = store.db.conn.execute("SELECT value FROM kpi_values WHERE grain = 'month' AND by_key = ''"
                                   " AND kpi = 'ticket_volume'").fetchone()[0]
    assert volume == 24


def test_a_crash_before_the_log_is_cleared_loses_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = make_store(tmp_path, _history())
    compute(store, SETTINGS, *MARCH, now=NOW)
    extra = Data()
    extra.contact("late", ts(28, 9), channel="phone", reply=1)
    extra.write(store)

    def crash(*_: Any) -> None:
        raise RuntimeError("power cut")

    # The copy commits, then the process dies before the store learns it: the log stays.
    monkeypatch.setattr(columns, "set_meta", crash)
    with pytest.raises(RuntimeError):
        compute(store, SETTINGS, *MARCH, now=NOW)
    monkeypatch.undo()
    assert store.db.conn.execute("SELECT count(*) FROM kpi_columns_log").fetchone()[0] > 0
    _recompute(store, "d")
    volume = store.db.conn.execute("SELECT value FROM kpi_values WHERE grain = 'month' AND by_key = ''"
                                   " AND kpi = 'ticket_volume'").fetchone()[0]
    assert volume == 25


def test_a_copy_held_by_another_process_is_waited_for_then_made_in_memory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    store = make_store(tmp_path, _history())
    compute(store, SETTINGS, *MARCH, now=NOW)
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import duckdb, sys, time
        db = duckdb.connect({str(tmp_path / 'kpi.sqlite.columns')!r})
        print("held", flush=True)
        time.sleep(30)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        monkeypatch.setattr(columns, "LOCK_WAIT", 0.5)
        with caplog.at_level("WARNING"):
            _recompute(store, "e")
        assert "is held by another process" in caplog.text
    finally:
        holder.kill()
        holder.wait()
    volume = store.db.conn.execute("SELECT value FROM kpi_values WHERE grain = 'month' AND by_key = ''"
                                   " AND kpi = 'ticket_volume'").fetchone()[0]
    assert volume == 24


def test_an_erasure_removes_the_copy(tmp_path: Path) -> None:
    from kpi_core import privacy
    from kpi_core.settings import Settings

    store = make_store(tmp_path, _history())
    settings = Settings(kpis=SETTINGS)
    compute(store, settings, *MARCH, now=NOW)
    before = (tmp_path / "kpi.sqlite.columns").stat().st_mtime_ns
    privacy.forget(store, settings, [privacy.person(store, "zendesk", "r1")], now=NOW)
    copy = duckdb.connect(str(tmp_path / "kpi.sqlite.columns"), read_only=True)
    try:
        assert copy.execute("SELECT count(*) FROM kpi_facts WHERE requester = 'zendesk:r1'").fetchone() == (0,)
    finally:
        copy.close()
    assert (tmp_path / "kpi.sqlite.columns").stat().st_mtime_ns != before


@pytest.mark.parametrize(("num", "den"), [(1, 2), (9, 10), (1, 4), (95, 100), (99, 100), (1, 20)])
def test_duckdbs_discrete_quantile_is_the_nearest_rank_for_decimal_fractions(num: int, den: int) -> None:
    assert engine._decimal(den)
    found = duckdb.connect().execute(
        f"SELECT n, quantile_disc(x, {num / den!r}) FROM (SELECT n, unnest(range(n)) AS x FROM range(1, 5001) t(n))"
        " GROUP BY n").fetchall()
    assert all(q == -(-n * num // den) - 1 for n, q in found)


def test_other_fractions_take_the_exact_rank() -> None:
    assert not engine._decimal(7)
    assert not engine._decimal(3)


def test_parameters_are_bound_outside_quoted_text() -> None:
    sql = engine.bind("SELECT ':lo', x FROM t WHERE a >= :lo AND b = 'zendesk:lo''s' AND c < :now", {"lo": "2026-03-01",
                                                                                                  "now": 12})
    assert sql == "SELECT ':lo', x FROM t WHERE a >= '2026-03-01' AND b = 'zendesk:lo''s' AND c < 12"


def test_weeks_in_duckdb_start_on_the_monday_sqlite_gives(tmp_path: Path) -> None:
    from kpi_core.kpis.periods import Grain, key_sql

    store = make_store(tmp_path)
    days = [date(2025, 12, 28), date(2025, 12, 29), date(2026, 1, 4), date(2026, 3, 1), date(2026, 3, 7)]
    duck = duckdb.connect()
    for day in days:
        stamp = f"{day.isoformat()}T23:59:59Z"
        lite = store.db.conn.execute(f"SELECT {key_sql(Grain.WEEK, '?')}", [stamp]).fetchone()[0]
        assert duck.execute(f"SELECT {key_sql(Grain.WEEK, '$1', duck=True)}", [stamp]).fetchone()[0] == lite


def test_a_damaged_copy_is_said_once_and_the_values_still_come_out(tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    store = make_store(tmp_path, _history())
    (tmp_path / "kpi.sqlite.columns").write_bytes(b"not a database at all" * 100)
    with caplog.at_level("WARNING"):
        compute(store, SETTINGS, *MARCH, now=NOW)
    assert "cannot be opened" in caplog.text and "kpi.sqlite.columns" in caplog.text
    volume = store.db.conn.execute("SELECT value FROM kpi_values WHERE grain = 'month' AND by_key = ''"
                                   " AND kpi = 'ticket_volume'").fetchone()[0]
    assert volume == 24
