"""Stored values: `compute` keeps them, redoes only what a sync changed, and ends equal to a from-scratch compute."""

from __future__ import annotations

import random
import shutil
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from kpi_fixtures import Data, make_store, plus, ts, varied_facts

from kpi_core.kpis.api import compute, kpi_rows
from kpi_core.settings import KpiSettings
from kpi_core.store import Store, open_store

GRAINS = ["month", "week"]
SEGMENTS = [[], ["channel"], ["channel", "language"], ["tag"]]
SETTINGS = KpiSettings(periods=GRAINS, segments=SEGMENTS)
# T1 is after every event of the history (a store never holds events later than its last sync);
# the changes arrive between T1 and T2, some of them late news about older days.
T1 = datetime(2026, 4, 15, 12, 0, tzinfo=timezone.utc)
T2 = datetime(2026, 4, 17, 18, 0, tzinfo=timezone.utc)
RANGE = (date(2026, 1, 1), date(2026, 5, 1))


def _history(seed: int = 3) -> Data:
    """About 160 varied contacts from January to mid-April, with events, surveys and returning requesters."""
    rng = random.Random(seed)
    d = Data()
    for i in range(160):
        month = 1 + i % 4
        created = ts(1 + rng.randrange(9 if month == 4 else 27), rng.randrange(24), month=month)
        facts = varied_facts(rng)
        contact = d.contact(f"c{i}", created, **facts)
        if contact.get("first_resolved_at") and rng.random() < 0.25:
            d.survey(f"s{i}", "csat", rng.choice([1, 0, 1]), "good_bad", plus(contact["first_resolved_at"], hours=2),
                     contact=f"c{i}")
        if contact.get("first_resolved_at") and rng.random() < 0.1:
            reopened, again = plus(contact["first_resolved_at"], hours=5), plus(contact["first_resolved_at"], hours=30)
            contact.update(reopens=1, last_resolved_at=again)
            for kind, at in (("resolved", contact["first_resolved_at"]), ("reopened", reopened), ("resolved", again)):
                d.event(f"c{i}", kind, at)
    return d


def _changes(d: Data) -> Data:
    """A sync's worth of changes, old and new, touching several periods."""
    later = Data()
    by_id = {c["source_id"]: c for c in d.contacts}
    open_old = next(c for c in d.contacts if "first_resolved_at" not in c and c["created_at"] < "2026-02")
    later.contacts.append({**open_old, "status": "resolved", "first_resolved_at": ts(11, 9, month=4),
                           "last_resolved_at": ts(11, 9, month=4)})
    later.contacts.append({**by_id["c5"], "status": "deleted"})
    later.contacts.append({**by_id["c6"], "channel": "social", "tags": ["refund"]})
    resolved = next(c for c in d.contacts if c.get("first_resolved_at") and c.get("agent_replies") == 1
                    and c.get("reopens", 0) == 0 and "2026-03-1" < c["first_resolved_at"] < "2026-03-2")
    later.contact("returning", plus(resolved["first_resolved_at"], days=2), requester_id=resolved["requester_id"],
                  reply=5)  # undoes that contact's FCR
    later.contact("new-feb", ts(14, 10, month=2), channel="chat", language="de", reply=1, resolved=1)
    later.contact("new-apr", ts(12, 8, month=4), channel="chat", language="en")
    later.survey("late-survey", "csat", 0, "good_bad", ts(12, 9, month=4), contact=resolved["source_id"])
    return later


def _all_rows(store: Store, now: datetime) -> dict[tuple[str, str], list[dict[str, Any]]]:
    out = {}
    for grain in GRAINS:
        for by in SEGMENTS:
            out[(grain, ",".join(by))] = kpi_rows(store, SETTINGS, grain, *RANGE, by, now=now)
    return out


def _assert_same(incremental: dict[Any, list[dict[str, Any]]], scratch: dict[Any, list[dict[str, Any]]]) -> None:
    for key in scratch:
        a = {(r["kpi"], r["period_start"], str(r["segment"])): r for r in incremental[key]}
        b = {(r["kpi"], r["period_start"], str(r["segment"])): r for r in scratch[key]}
        assert a.keys() == b.keys(), (key, sorted(a.keys() ^ b.keys())[:5])
        for k in b:
            for field in ("value", "numerator", "denominator", "n"):
                want = b[k][field]
                got = a[k][field]
                assert got == (pytest.approx(want, rel=1e-9) if isinstance(want, float) else want), (key, k, field)


def test_an_incremental_compute_ends_where_a_fresh_one_does(tmp_path: Path) -> None:
    history = _history()
    store = make_store(tmp_path, history, "incremental.sqlite")
    compute(store, SETTINGS, *RANGE, now=T1)
    changes = _changes(history)
    changes.write(store)
    summary = compute(store, SETTINGS, *RANGE, now=T2)
    assert summary.contacts_refreshed > 0 and not summary.rebuilt_everything

    scratch = make_store(tmp_path, history, "scratch.sqlite")
    changes.write(scratch)
    compute(scratch, SETTINGS, *RANGE, now=T2)
    _assert_same(_all_rows(store, T2), _all_rows(scratch, T2))


def test_a_second_compute_only_redoes_what_changed(tmp_path: Path) -> None:
    settings = KpiSettings(periods=["day", "month"], segments=[[]])
    d = Data()
    for day in range(1, 29):
        d.contact(f"c{day}", ts(day, month=2), reply=5, resolved=2)
    store = make_store(tmp_path, d)
    now = datetime(2026, 4, 20, tzinfo=timezone.utc)
    first = compute(store, settings, date(2026, 2, 1), date(2026, 3, 1), now=now)
    assert first.periods_computed == 28 + 1 and first.rebuilt_everything
    stamps = dict(store.db.execute("SELECT period_start, computed_at FROM kpi_computed WHERE grain = 'day'").fetchall())

    nothing = compute(store, settings, date(2026, 2, 1), date(2026, 3, 1),
                      now=datetime(2026, 4, 21, tzinfo=timezone.utc))
    assert (nothing.periods_computed, nothing.periods_partly, nothing.contacts_refreshed) == (0, 0, 0)

    store.upsert("contacts", [{"source": "zendesk", "source_id": "c10", "channel": "chat", "status": "open",
                               "created_at": ts(10, month=2), "first_agent_reply_at": None, "agent_replies": 0,
                               "first_resolved_at": None, "last_resolved_at": None}])
    store.db.conn.commit()
    later = datetime(2026, 4, 22, tzinfo=timezone.utc)
    again = compute(store, settings, date(2026, 2, 1), date(2026, 3, 1), now=later)
    assert again.periods_computed == 0
    # Day 10 (created, and formerly resolved there), day 11 (its retention) and February: the rest keeps its values.
    assert again.periods_partly == 3
    after = dict(store.db.execute("SELECT period_start, computed_at FROM kpi_computed WHERE grain = 'day'").fetchall())
    assert {d for d in after if after[d] != stamps[d]} == {"2026-02-10"}
    assert kpi_rows(store, settings, "day", date(2026, 2, 10), date(2026, 2, 11), None, ["response_rate_pct"],
                    now=later)[0]["value"] == 0.0
    # Backlog moved on every later day: open from 10 February on.
    backlog = {r["period_start"]: r["value"] for r in kpi_rows(store, settings, "day", date(2026, 2, 8),
                                                              date(2026, 2, 14), None, ["backlog"], now=later)}
    assert backlog == {"2026-02-08": 0, "2026-02-09": 0, "2026-02-10": 1, "2026-02-11": 1, "2026-02-12": 1,
                       "2026-02-13": 1}


def test_reading_does_not_recompute_and_settings_changes_redo_everything(tmp_path: Path) -> None:
    d = Data()
    d.contact("a", ts(2), channel="chat", reply=1)
    store = make_store(tmp_path, d)
    now = datetime(2026, 4, 20, tzinfo=timezone.utc)
    compute(store, KpiSettings(segments=[[]], periods=["month"]), date(2026, 3, 1), date(2026, 4, 1), now=now)
    before = store.db.execute("SELECT kpi, computed_at FROM kpi_values ORDER BY kpi").fetchall()
    store.upsert("contacts", [{"source": "zendesk", "source_id": "b", "channel": "chat", "status": "open",
                               "created_at": ts(3)}])
    store.db.conn.commit()
    rows = kpi_rows(store, KpiSettings(), "month", date(2026, 3, 1), date(2026, 4, 1), None, ["ticket_volume"], now=now)
    assert rows[0]["value"] == 1  # the stored value, until the next compute
    assert store.db.execute("SELECT kpi, computed_at FROM kpi_values ORDER BY kpi").fetchall() == before
    changed = KpiSettings(segments=[[]], periods=["month"], abandon_after="45m")
    summary = compute(store, changed, date(2026, 3, 1), date(2026, 4, 1), now=now)
    assert summary.periods_computed >= 1
    assert kpi_rows(store, changed, "month", date(2026, 3, 1), date(2026, 4, 1), None, ["ticket_volume"],
                    now=now)[0]["value"] == 2


def test_writing_the_same_contact_twice_marks_it_once(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    row = {"source": "zendesk", "source_id": "x", "channel": "chat", "status": "open", "created_at": ts(2)}
    store.write_page("zendesk", "tickets", {"contacts": [row]}, "c1")
    store.write_page("zendesk", "tickets", {"contacts": [{**row, "status": "resolved"}]}, "c2")
    store.write_page("zendesk", "tickets", {"contacts": [{**row, "status": "resolved"}]}, "c3")  # unchanged
    assert store.db.execute("SELECT source, source_id FROM kpi_dirty_contacts").fetchall() == [("zendesk", "x")]


def test_compute_full_rebuilds(tmp_path: Path) -> None:
    d = Data()
    d.contact("a", ts(2), reply=1)
    store = make_store(tmp_path, d)
    settings = KpiSettings(segments=[[]], periods=["month"])
    now = datetime(2026, 4, 20, tzinfo=timezone.utc)
    compute(store, settings, date(2026, 3, 1), date(2026, 4, 1), now=now)
    again = compute(store, settings, date(2026, 3, 1), date(2026, 4, 1), now=now, full=True)
    assert again.rebuilt_everything and again.periods_computed == 1


def test_a_copy_of_a_store_carries_its_values(tmp_path: Path) -> None:
    d = Data()
    d.contact("a", ts(2), reply=1)
    store = make_store(tmp_path, d)
    now = datetime(2026, 4, 20, tzinfo=timezone.utc)
    compute(store, KpiSettings(segments=[[]], periods=["month"]), date(2026, 3, 1), date(2026, 4, 1), now=now)
    store.close()
    shutil.copy(tmp_path / "kpi.sqlite", tmp_path / "copy.sqlite")
    copy = open_store(tmp_path / "copy.sqlite")
    assert kpi_rows(copy, KpiSettings(), "month", date(2026, 3, 1), date(2026, 4, 1), None, ["ticket_volume"],
                    now=now)[0]["value"] == 1
