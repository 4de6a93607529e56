"""An incremental compute ends where a compute from scratch does, after each kind of change a sync or the admin
makes: the same values, the same diagnostics, and a columnar copy whose survey answers link to the same contacts
and people as a copy made anew. On a SQLite file and on a PostgreSQL account (its copy on file too)."""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb
import pytest
from kpi_fixtures import SERVER, Data, make_store, plus, ts, varied_facts

from kpi_core.kpis import columns
from kpi_core.kpis.api import ComputeSummary, compute
from kpi_core.settings import KpiSettings, PeriodGrain, Settings, StoreSettings
from kpi_core.store import Store

pytestmark = pytest.mark.usefixtures("on_both_stores")

GRAINS: list[PeriodGrain] = ["month", "week"]
SEGMENTS = [[], ["channel"], ["language"], ["channel", "language"], ["tag"]]
BASE = KpiSettings(periods=GRAINS, segments=SEGMENTS, min_n=1, targets={"first_response_time_median": 30.0})
RANGE = (datetime(2026, 1, 1).date(), datetime(2026, 5, 1).date())
T0 = datetime(2026, 4, 15, 12, 0, tzinfo=timezone.utc)  # after every event of the history
# What each changed value may differ by (DuckDB sums floats in no fixed order).
REL = 1e-9


def _history(seed: int = 5) -> Data:
    """About 240 varied contacts from January to mid-April: replies, resolutions, reopenings, tags, returning
    requesters who are people of the store, CSAT and NPS answers with and without a contact."""
    rng = random.Random(seed)
    d = Data()
    for i in range(40):
        d.people.append({"source": "zendesk", "source_id": f"r{i}", "role": "customer",
                         "language": rng.choice(["en", "de", "fr"]), "country": rng.choice(["DE", "US", "FR"])})
    for i in range(240):
        month = 1 + i % 4
        created = ts(1 + rng.randrange(12 if month == 4 else 27), rng.randrange(24), month=month)
        facts = varied_facts(rng)
        contact = d.contact(f"c{i}", created, **facts)
        resolved = contact.get("first_resolved_at")
        if resolved and rng.random() < 0.3:
            d.survey(f"s{i}", "csat", rng.choice([1, 0, 1]), "good_bad", plus(resolved, hours=2), contact=f"c{i}")
        if resolved and rng.random() < 0.1:
            d.survey(f"n{i}", "nps", rng.randrange(11), "0-10", plus(resolved, hours=5), contact=f"c{i}")
        if resolved and rng.random() < 0.1:
            reopened, again = plus(resolved, hours=5), plus(resolved, hours=30)
            contact.update(reopens=1, last_resolved_at=again)
            for kind, at in (("resolved", resolved), ("reopened", reopened), ("resolved", again)):
                d.event(f"c{i}", kind, at)
    for i in range(12):  # answers of a requester only (a web form's rating), some of people not in the store
        d.survey(f"o{i}", "csat", i % 2, "good_bad", ts(2 + 2 * i, 10, month=1 + i % 4), requester=f"r{35 + i}")
    return d


class Steps:
    """The changes applied so far, replayable on a store made from scratch."""

    def __init__(self) -> None:
        self.done: list[Callable[[Store], None]] = []

    def apply(self, store: Store, change: Callable[[Store], None]) -> None:
        change(store)
        store.db.conn.commit()
        self.done.append(change)

    def replay(self, store: Store) -> None:
        for change in self.done:
            change(store)
            store.db.conn.commit()


def _a_changed_day(store: Store) -> None:
    """Late news of 10 March: its open contacts answered and resolved (with their status events), two new ones."""
    d = Data()
    rows = store.db.conn.execute(
        "SELECT source_id, channel, created_at FROM contacts WHERE created_at >= '2026-03-10'"
        " AND created_at < '2026-03-11' AND first_resolved_at IS NULL ORDER BY source_id").fetchall()
    for sid, channel, created in rows:
        d.contact(sid, created, channel=channel, reply=20, resolved=26)
        d.event(sid, "resolved", plus(created, hours=26))
    d.contact("day-1", ts(10, 8), channel="chat", language="de", requester_id="r3", reply=1, resolved=1)
    d.contact("day-2", ts(10, 9), channel="email", requester_id="r3")
    d.write(store)


def _a_deleted_contact(store: Store) -> None:
    """One contact marked deleted by its helpdesk, another removed from the store (an erasure's table rewrite)."""
    row = dict(zip(("source_id", "created_at", "channel"), store.db.conn.execute(
        "SELECT source_id, created_at, channel FROM contacts WHERE source_id = 'c7'").fetchone(), strict=True))
    store.upsert("contacts", [{"source": "zendesk", **row, "status": "deleted"}])
    store.db.conn.execute("DELETE FROM contacts WHERE source_id = 'c12'")


def _new_survey_answers(store: Store) -> None:
    """A CSAT answer on a February contact, one on a contact that arrives later, one of a requester only."""
    d = Data()
    d.survey("late-1", "csat", 0, "good_bad", ts(3, 11, month=4), contact="c5")
    d.survey("late-2", "csat", 1, "good_bad", ts(4, 11, month=4), contact="later")
    d.survey("late-3", "nps", 3, "0-10", ts(4, 12, month=4), requester="r60")
    d.write(store)


def _a_contact_moves(store: Store) -> None:
    """A contact moved to another month and to other segments; the contact the earlier answer waited for."""
    d = Data()
    d.contact("c9", ts(20, 14, month=2), channel="phone", language="fr", requester_id="r8", reply=3, resolved=2)
    d.contact("later", ts(2, 9, month=4), channel="web_form", requester_id="r11", reply=45, resolved=30)
    d.write(store)


def _people_change(store: Store) -> None:
    """A requester of earlier answers becomes a person of the store and another person is removed: the language and
    market of their answers without a contact change, and the store notes those answers' days (m032)."""
    store.upsert("people", [{"source": "zendesk", "source_id": "r41", "role": "customer", "language": "fr",
                             "country": "FR"}])
    store.db.conn.execute("DELETE FROM people WHERE source_id = 'r38'")
    assert store.db.conn.execute("SELECT count(*) FROM survey_responses WHERE requester_id IN ('r38', 'r41')"
                                 " AND contact_id IS NULL").fetchone()[0]


def _settings(store: Store, tmp_path: Path, kpis: KpiSettings) -> Settings | KpiSettings:
    """On a PostgreSQL account, the whole settings: its columnar copy then lives on file as in production."""
    if not SERVER:
        return kpis
    account = store.db.conn.schema  # type: ignore[attr-defined]
    return Settings(store=StoreSettings(path=tmp_path / f"{account}.sqlite", url=SERVER["url"], account=account),
                    kpis=kpis)


def _rows(store: Store, table: str, columns_: str, key: int) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    return {tuple(r[:key]): tuple(r[key:]) for r in store.db.conn.execute(f"SELECT {columns_} FROM {table}")}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=REL, abs_tol=1e-12)
    return bool(a == b)


def _assert_same_results(incremental: Store, scratch: Store) -> None:
    values = "grain, by_key, period_start, period_end, kpi, segment, value, numerator, denominator, n"
    mine, theirs = _rows(incremental, "kpi_values", values, 6), _rows(scratch, "kpi_values", values, 6)
    assert mine.keys() == theirs.keys(), sorted(mine.keys() ^ theirs.keys())[:5]
    wrong = [k for k in theirs if not all(_same(a, b) for a, b in zip(mine[k], theirs[k], strict=True))]
    assert not wrong, [(k, mine[k], theirs[k]) for k in wrong[:5]]
    diagnostics = "grain, by_key, period_start, period_end, diagnostic, segment, evidence, message"
    mine, theirs = _rows(incremental, "kpi_diagnostics", diagnostics, 6), _rows(scratch, "kpi_diagnostics",
                                                                                 diagnostics, 6)
    assert theirs, "the history makes some diagnostics fire"
    assert mine == theirs
    periods = "grain, by_key, period_start, period_end, fingerprint, partial, frozen"
    assert _rows(incremental, "kpi_computed", periods, 4) == _rows(scratch, "kpi_computed", periods, 4)


def _assert_links_current(store: Store, copy: Path) -> None:
    """The copy's survey answers point at the rowids of their contact's facts and of their requester's person."""
    want = {r[0]: (r[1], r[2]) for r in store.db.conn.execute(
        "SELECT s.rowid, (SELECT f.rowid FROM kpi_facts f WHERE f.source = s.source AND f.source_id = s.contact_id),"
        " (SELECT p.rowid FROM people p WHERE p.source = s.source AND p.source_id = s.requester_id)"
        " FROM survey_responses s")}
    db = duckdb.connect(str(copy), read_only=True)
    try:
        have = {r[0]: (r[1], r[2]) for r in db.execute("SELECT _rid, _fact, _person FROM survey_responses").fetchall()}
    finally:
        db.close()
    assert have == want
    assert any(fact is not None for fact, _ in want.values()) and any(p is not None for _, p in want.values())


def _copy_path(store: Store, tmp_path: Path) -> Path:
    if SERVER:
        return columns._beside(tmp_path / f"{store.db.conn.schema}.sqlite", store.db.conn)  # type: ignore[attr-defined]
    path = columns.columns_path(store.db.conn)
    assert path is not None
    return path


CHANGES = [_a_changed_day, _a_deleted_contact, _new_survey_answers, _a_contact_moves, _people_change]


@pytest.fixture(params=["one after another", "side by side"])
def query_threads(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """How the engine's queries run: on a small store, one after another in the computing thread; "side by side"
    gives the copy two cores, as on a large store, so an incremental compute's short queries run on two threads.
    Returns the names of the threads the queries ran on."""
    if request.param == "side by side":
        monkeypatch.setattr(columns, "cores_for", lambda contacts: 2)
    names: list[str] = []
    rows = columns.Columns.rows

    def noted(self: columns.Columns, sql: str) -> list[tuple[Any, ...]]:
        names.append(threading.current_thread().name)
        return rows(self, sql)

    monkeypatch.setattr(columns.Columns, "rows", noted)
    return names


def test_after_each_change_incremental_equals_from_scratch(tmp_path: Path, query_threads: list[str]) -> None:
    history = _history()
    store = make_store(tmp_path, history, "incremental.sqlite")
    settings = _settings(store, tmp_path, BASE)
    compute(store, settings, *RANGE, now=T0)
    steps = Steps()
    for hour, change in enumerate(CHANGES, start=1):
        now = T0.replace(hour=12 + hour)
        steps.apply(store, change)
        summary: ComputeSummary = compute(store, settings, *RANGE, now=now)
        assert not summary.rebuilt_everything and summary.periods_computed == 0, change.__name__
        scratch = make_store(tmp_path, history, f"scratch-{hour}.sqlite")
        steps.replay(scratch)
        compute(scratch, _settings(scratch, tmp_path, BASE), *RANGE, now=now)
        _assert_same_results(store, scratch)
        _assert_links_current(store, _copy_path(store, tmp_path))
    workers = {name for name in query_threads if name.startswith("kpi-query")}
    assert len(workers) == (2 if columns.cores_for(0) == 2 else 0), set(query_threads)


def test_changed_targets_redo_the_diagnostics_they_judge(tmp_path: Path) -> None:
    """Targets apply on reading, so no value is computed again; the stored diagnostics, which judge by them, are."""
    history = _history()
    store = make_store(tmp_path, history, "targets.sqlite")
    compute(store, _settings(store, tmp_path, BASE), *RANGE, now=T0)
    stricter = BASE.model_copy(update={"targets": {"first_response_time_median": 1.0, "one_touch_resolution_pct": 95.0,
                                                   "fcr_pct": 95.0}})
    summary = compute(store, _settings(store, tmp_path, stricter), *RANGE, now=T0)
    assert summary.periods_computed == 0
    scratch = make_store(tmp_path, history, "targets-scratch.sqlite")
    compute(scratch, _settings(scratch, tmp_path, stricter), *RANGE, now=T0)
    _assert_same_results(store, scratch)


def test_a_query_failing_beside_others_fails_the_compute_and_the_next_compute_recovers(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A query that fails on a worker thread fails the compute with its own error, leaves no worker behind, and
    the next compute takes over the changed days and ends where a compute from scratch does."""
    history = _history()
    store = make_store(tmp_path, history, "failing.sqlite")
    settings = _settings(store, tmp_path, BASE)
    compute(store, settings, *RANGE, now=T0)
    monkeypatch.setattr(columns, "cores_for", lambda contacts: 2)
    steps = Steps()
    steps.apply(store, _a_changed_day)
    rows = columns.Columns.rows

    def failing(self: columns.Columns, sql: str) -> list[tuple[Any, ...]]:
        if threading.current_thread().name.startswith("kpi-query") and "GROUPING" in sql:
            raise duckdb.IOException("the disk went away")
        return rows(self, sql)

    monkeypatch.setattr(columns.Columns, "rows", failing)
    now = T0.replace(hour=13)
    with pytest.raises(duckdb.IOException, match="the disk went away"):
        compute(store, settings, *RANGE, now=now)
    assert not [t for t in threading.enumerate() if t.name.startswith("kpi-query")]
    monkeypatch.setattr(columns.Columns, "rows", rows)
    summary = compute(store, settings, *RANGE, now=now)
    assert summary.periods_partly and not summary.rebuilt_everything
    scratch = make_store(tmp_path, history, "failing-scratch.sqlite")
    steps.replay(scratch)
    compute(scratch, _settings(scratch, tmp_path, BASE), *RANGE, now=now)
    _assert_same_results(store, scratch)
