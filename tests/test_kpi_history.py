"""History is kept (catalogue 2c, issue 15): KPI values of the periods a purge or a forget reaches are frozen,
and neither an incremental compute nor `compute --full`, a settings change or a reader moves them; what is
asked for afterwards is computed from what is left and marked partial; `compute --full --rebuild-history`
is the one way back. Over real HTTP against the sandbox into a real SQLite file, through the CLI."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from connectors.sandbox import Sandbox
from kpi_core.cli import main
from kpi_core.kpis import values
from kpi_core.settings import load_settings
from kpi_core.store import Store, open_store

WORLD = {"seed": 11, "tickets": 150}
RETENTION = 60
# Every grain and four segmentations: the freeze must hold for each combination compute stores.
KPIS = '[kpis]\nperiods = ["day", "week", "month", "quarter"]\nsegments = [[], ["channel"], ["source"], ["language"]]\n'
PRIVACY = f"[privacy]\nretention_days = {RETENTION}\n"
WRITEBACK = """[writeback]
enabled = true

[[writeback.mappings]]
helpdesk = "zendesk"
object = "ticket"
metric = "first_response_minutes"
field = "kpi_frt"
"""
FROZEN = ("EXISTS (SELECT 1 FROM kpi_computed k WHERE k.frozen = 1 AND k.grain = v.grain AND k.by_key = v.by_key"
          " AND k.period_start = v.period_start AND k.period_end = v.period_end)")

Row = tuple[Any, ...]


def today() -> date:
    return datetime.now(timezone.utc).date()


def cutoff() -> str:
    return (datetime.now(timezone.utc) - timedelta(days=RETENTION)).strftime("%Y-%m-%dT%H:%M:%SZ")


def cli(config: Path, *args: str) -> None:
    assert main([args[0], "--config", str(config), *args[1:]]) == 0, args


def rows(store: Store, sql: str, *params: Any) -> list[Row]:
    return [tuple(r) for r in store.db.execute(sql, params).fetchall()]


def stored(store: Store, where: str = "1") -> dict[Row, Row]:
    """Every stored KPI value, {(grain, by_key, start, end, kpi, segment): (value, numerator, denominator, n)}."""
    return {r[:6]: r[6:] for r in rows(
        store, "SELECT grain, by_key, period_start, period_end, kpi, segment, value, numerator, denominator, n"
               f" FROM kpi_values v WHERE {where}")}


def periods(store: Store, where: str) -> set[Row]:
    return set(rows(store, f"SELECT grain, by_key, period_start, period_end FROM kpi_computed WHERE {where}"))


def volume(store: Store, start: str, grain: str = "month") -> float:
    return float(rows(store, "SELECT value FROM kpi_values WHERE grain = ? AND by_key = '' AND period_start = ?"
                             " AND kpi = 'ticket_volume'", grain, start)[0][0])


def assert_unchanged(store: Store, frozen: dict[Row, Row], when: str) -> None:
    now = stored(store, FROZEN)
    changed = sorted(k for k in frozen if now.get(k) != frozen[k])
    assert not changed, f"{when}: {len(changed)} frozen values moved, e.g. {changed[:3]}"
    assert set(now) == set(frozen), f"{when}: frozen periods gained or lost values"


@pytest.fixture
def synced(make_sandbox: Callable[..., Sandbox], config_for: Callable[..., Path]) -> tuple[Sandbox, Path, Store]:
    """A sandbox synced and computed once, with retention 60 days."""
    box = make_sandbox(**WORLD)
    config = config_for(box, KPIS + PRIVACY + WRITEBACK)
    cli(config, "sync")
    cli(config, "compute")
    return box, config, open_store(load_settings(config).store.path)


# --- the sequence of issue 15 ---------------------------------------------------------------------------------


def test_purge_freezes_history_through_push_sync_compute_full_and_a_settings_change(
        synced: tuple[Sandbox, Path, Store], capsys: pytest.CaptureFixture[str]) -> None:
    _, config, store = synced
    before = stored(store)
    kept = periods(store, "1")
    # The month the cutoff falls in straddles it (the October): computed before the purge, then frozen.
    straddling = cutoff()[:8] + "01"

    cli(config, "purge")
    assert "are now frozen (final)" in capsys.readouterr().out
    frozen = stored(store, FROZEN)
    frozen_periods = periods(store, "frozen = 1")
    # Every stored period of every grain and segmentation that contains or precedes the cutoff and has ended.
    expected = {p for p in kept if p[2] + "T00:00:00Z" < cutoff() and p[3] <= today().isoformat()}
    assert expected and expected <= frozen_periods
    assert {g for g, *_ in frozen_periods} == {"day", "week", "month", "quarter"}
    assert {b for _, b, *_ in frozen_periods} == {"", "channel", "source", "language"}
    assert all(end <= today().isoformat() for *_, end in frozen_periods), "a running period was frozen"
    # The values are those computed before the purge, all of them.
    assert frozen == {k: before[k] for k in frozen}
    assert len({k[4] for k in frozen}) > 20, "every KPI of the frozen periods"
    assert ("month", "", straddling) in {p[:3] for p in frozen_periods}
    october = volume(store, straddling)
    assert october == next(v[0] for k, v in before.items() if k[:3] == ("month", "", straddling)
                           and k[4] == "ticket_volume")
    moved_backlog = stored(store, f"kpi = 'backlog' AND NOT {FROZEN} AND period_end <= date('now')")
    assert any(v != before[k] for k, v in moved_backlog.items() if k in before), "open contacts were purged"

    cli(config, "fields", "--create", "--yes")
    cli(config, "push")
    cli(config, "sync")
    cli(config, "compute")
    assert_unchanged(store, frozen, "sync, compute after a push")
    cli(config, "compute", "--full")
    assert_unchanged(store, frozen, "compute --full")
    # The purged contacts left the backlog of the later periods as a full recount from what is left counts it.
    recounted = stored(store, f"kpi = 'backlog' AND NOT {FROZEN} AND period_end <= date('now')")
    assert {k: v for k, v in recounted.items() if k in moved_backlog} == moved_backlog

    config.write_text(config.read_text().replace("[kpis]\n", "[kpis]\nfcr_window_days = 3\n"))
    cli(config, "compute")
    assert_unchanged(store, frozen, "a settings change")
    assert volume(store, straddling) == october
    # Readers get the frozen values.
    capsys.readouterr()
    since = (date.fromisoformat(straddling) - timedelta(days=40)).replace(day=1).isoformat()
    cli(config, "kpis", "--period", "month", "--since", since, "--until", straddling[:8] + "28", "--format", "json")
    read = [r for r in json.loads(capsys.readouterr().out) if r["value"] is not None]
    keys = [("month", "", r["period_start"], r["period_end"], r["kpi"], values.segment_json(r["segment"]))
            for r in read]
    assert len({k[2] for k in keys}) >= 2 and all(k in frozen for k in keys)
    assert [r["value"] for r in read] == [pytest.approx(frozen[k][0], abs=1e-4) for k in keys]
    assert not [r for r in read if "partial" in r]
    store.close()


def test_no_code_path_writes_a_frozen_period(synced: tuple[Sandbox, Path, Store]) -> None:
    _, _, store = synced
    conn = store.db.conn
    month = rows(store, "SELECT grain, by_key, period_start, period_end FROM kpi_computed WHERE grain = 'month'"
                        " AND by_key = '' ORDER BY period_start LIMIT 1")[0]
    conn.execute("UPDATE kpi_computed SET frozen = 1 WHERE grain = ? AND by_key = ? AND period_start = ?"
                 " AND period_end = ?", month)
    key = "grain = ? AND by_key = ? AND period_start = ? AND period_end = ?"
    before = rows(store, f"SELECT * FROM kpi_values WHERE {key} ORDER BY kpi, segment", *month)
    computed = rows(store, f"SELECT * FROM kpi_computed WHERE {key}", *month)
    conn.execute(f"UPDATE kpi_values SET value = -1 WHERE {key}", month)
    conn.execute(f"DELETE FROM kpi_values WHERE {key}", month)
    conn.execute("INSERT INTO kpi_values VALUES (?, ?, ?, ?, 'nps', '{\"x\":1}', 1, NULL, NULL, 1, 'now')", month)
    conn.execute(f"UPDATE kpi_computed SET fingerprint = 'other', partial = 1 WHERE {key}", month)
    conn.execute(f"DELETE FROM kpi_computed WHERE {key}", month)
    assert rows(store, f"SELECT * FROM kpi_values WHERE {key} ORDER BY kpi, segment", *month) == before
    assert rows(store, f"SELECT * FROM kpi_computed WHERE {key}", *month) == computed
    store.close()


# --- forget ---------------------------------------------------------------------------------------------------


def test_forget_freezes_the_ended_periods_it_touches_and_recomputes_the_running_one(
        synced: tuple[Sandbox, Path, Store], capsys: pytest.CaptureFixture[str]) -> None:
    box, config, store = synced
    month = today().replace(day=1).isoformat()
    box.world.add_tickets("zendesk", 5)  # new questions now, so the running month holds some whatever the day
    cli(config, "sync")
    cli(config, "compute")
    # A customer with contacts this month and before it.
    source, pid = rows(store, "SELECT source, requester_id FROM contacts WHERE requester_id IS NOT NULL"
                              " AND status NOT IN ('deleted', 'merged') GROUP BY 1, 2"
                              " HAVING max(created_at) >= ? AND min(created_at) < ? ORDER BY count(*) DESC, 2 LIMIT 1",
                       month, month)[0]
    anchors = {d[:10] for r in rows(store, "SELECT created_at, first_resolved_at, last_resolved_at FROM contacts"
                                           " WHERE source = ? AND requester_id = ?", source, pid)
               for d in r if d}
    anchors |= {d[:10] for (d,) in rows(store, "SELECT s.created_at FROM survey_responses s LEFT JOIN contacts c"
                                               " ON c.source = s.source AND c.source_id = s.contact_id"
                                               " WHERE s.source = ? AND ? IN (s.requester_id, c.requester_id)",
                                        source, pid)}
    running_volume = volume(store, month)
    touched = {p for p in periods(store, "1") if p[3] <= today().isoformat() and any(p[2] <= d < p[3] for d in anchors)}
    before = stored(store)

    cli(config, "forget", "--source", source, "--requester", pid)
    assert "the running periods were recomputed without them" in capsys.readouterr().out
    frozen_periods = periods(store, "frozen = 1")
    assert touched and frozen_periods == touched
    frozen = stored(store, FROZEN)
    assert frozen == {k: before[k] for k in frozen}
    # The running month no longer counts them, as a full recount from what is left agrees. (Not its backlog,
    # counted at the moment of computing: the sandbox stamps new tickets a few seconds ahead of the clock.)
    assert volume(store, month) < running_volume
    running = f"period_start = '{month}' AND grain = 'month' AND kpi != 'backlog'"
    recomputed = stored(store, running)
    cli(config, "compute", "--full")
    assert_unchanged(store, frozen, "compute --full after forget")
    assert stored(store, running) == recomputed
    store.close()


# --- partial ---------------------------------------------------------------------------------------------------


def test_what_is_first_asked_for_after_a_purge_is_marked_partial(
        synced: tuple[Sandbox, Path, Store], capsys: pytest.CaptureFixture[str]) -> None:
    _, config, store = synced
    cli(config, "purge")
    capsys.readouterr()
    boundary = values.purge_boundary(store.db.conn)
    assert boundary is not None and boundary[:10] == cutoff()[:10]
    # By priority was never computed: weeks starting before the boundary rest on what the purge left.
    since = (today() - timedelta(days=RETENTION + 21)).isoformat()
    cli(config, "kpis", "--period", "week", "--by", "priority", "--since", since, "--format", "json")
    read = json.loads(capsys.readouterr().out)
    flagged = {r["period_start"] for r in read if r.get("partial")}
    assert flagged and all(start + "T00:00:00Z" < boundary for start in flagged)
    assert {r["period_start"] for r in read if r["period_start"] + "T00:00:00Z" < boundary} == flagged
    assert all(r["partial"] is True for r in read if "partial" in r)
    assert any("partial" not in r for r in read), "later weeks are whole: no key"
    # A stored and frozen combination is whole: not partial.
    cli(config, "kpis", "--period", "week", "--since", since, "--format", "json")
    assert not [r for r in json.loads(capsys.readouterr().out) if r.get("partial")]
    # The table flags the block and says why.
    first = min(flagged)
    cli(config, "kpis", "--period", "week", "--by", "priority", "--since", first, "--until",
        (date.fromisoformat(first) + timedelta(days=7)).isoformat())
    table = capsys.readouterr().out
    assert f"KPIs by priority  {first} .." in table and "PARTIAL*" in table and "* partial: computed after" in table
    store.close()


# --- the way back ----------------------------------------------------------------------------------------------


def test_rebuild_history_recomputes_frozen_periods_from_re_synced_data(
        synced: tuple[Sandbox, Path, Store], capsys: pytest.CaptureFixture[str]) -> None:
    _, config, store = synced
    before = stored(store)
    cli(config, "purge")
    frozen = stored(store, FROZEN)
    count = len(periods(store, "frozen = 1"))
    capsys.readouterr()
    assert main(["compute", "--config", str(config), "--rebuild-history"]) == 2
    assert "give it with --full" in capsys.readouterr().err
    assert_unchanged(store, frozen, "a refused rebuild")

    cli(config, "sync", "--full")  # the helpdesks still hold the purged tickets
    cli(config, "compute", "--full", "--rebuild-history")
    printed = capsys.readouterr().out
    assert f"rebuild-history: unfreezing {count:,} stored periods" in printed
    assert "month" in printed and "by channel" in printed
    assert periods(store, "frozen = 1") == set() and periods(store, "partial = 1") == set()
    assert values.purge_boundary(store.db.conn) is None
    # From the re-synced store the purged history is whole again: the values computed before the purge.
    after = stored(store, "v.period_end <= date('now', '-14 days')")
    assert {k: after[k] for k in frozen if k in after} == {k: before[k] for k in frozen if k in after}
    assert set(frozen) <= set(after)
    store.close()
