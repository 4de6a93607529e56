"""`[kpis] timezone`: period boundaries at local midnight (catalogue 2), DST days of 23 and 25 hours,
command-line dates read in the zone, incremental computes that redo the right local day, and a
change of zone that recomputes everything but frozen history.

Each expected placement is worked out by hand in the comments: UTC instant -> local wall time -> period.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from kpi_fixtures import NOW, Data, make_store, rows

from kpi_core.kpis import periods as P
from kpi_core.kpis import values
from kpi_core.kpis.api import compute
from kpi_core.kpis.periods import Grain, Period
from kpi_core.settings import KpiSettings
from kpi_core.store import Store

ROOT = Path(__file__).resolve().parent.parent
BERLIN, TOKYO, LOS_ANGELES = "Europe/Berlin", "Asia/Tokyo", "America/Los_Angeles"


def _zone(name: str, **kw: Any) -> KpiSettings:
    return KpiSettings(timezone=name, **kw)


def _volumes(store: Store, settings: KpiSettings, grain: str, since: date, until: date,
             now: datetime = NOW) -> dict[str, int]:
    """Ticket volume per period start over [since, until) (local dates)."""
    found = rows(store, settings, period=grain, since=since, until=until, kpis=["ticket_volume"], now=now)
    return {r["period_start"]: r["value"] for r in found if r["segment"] == {}}


def _store(tmp_path: Path, stamps: list[str], name: str = "kpi.sqlite") -> Store:
    d = Data()
    for i, stamp in enumerate(stamps):
        d.contact(f"c{i}", stamp)
    return make_store(tmp_path, d, name)


# --- boundaries ------------------------------------------------------------------------------------

def test_local_midnights_and_dst_day_lengths() -> None:
    # Berlin springs forward on 2026-03-29 (02:00 CET -> 03:00 CEST) and falls back on 2026-10-25.
    assert P.midnight(date(2026, 3, 29), BERLIN) == datetime(2026, 3, 28, 23, tzinfo=timezone.utc)
    assert P.midnight(date(2026, 3, 30), BERLIN) == datetime(2026, 3, 29, 22, tzinfo=timezone.utc)
    spring = P.midnight(date(2026, 3, 30), BERLIN) - P.midnight(date(2026, 3, 29), BERLIN)
    autumn = P.midnight(date(2026, 10, 26), BERLIN) - P.midnight(date(2026, 10, 25), BERLIN)
    assert (spring, autumn) == (timedelta(hours=23), timedelta(hours=25))
    # SQL bounds: the bare date at UTC midnight (exactly as before the setting), else the UTC time.
    assert P.day_text(date(2026, 3, 29)) == "2026-03-29"
    assert P.day_text(date(2026, 3, 29), BERLIN) == "2026-03-28T23:00:00"
    assert P.day_text(date(2026, 4, 1), TOKYO) == "2026-03-31T15:00:00"
    assert P.instant_text(date(2026, 3, 10), LOS_ANGELES) == "2026-03-10T07:00:00Z"  # PDT since 2026-03-08
    # Santiago skips midnight (00:00 -> 01:00 on 2026-09-06): the day begins when the clocks land.
    assert P.midnight(date(2026, 9, 6), "America/Santiago") == datetime(2026, 9, 6, 4, tzinfo=timezone.utc)


@pytest.mark.parametrize("zone", [BERLIN, LOS_ANGELES, TOKYO, "Asia/Kolkata", "America/Santiago"])
def test_the_sql_period_key_agrees_with_zoneinfo(zone: str) -> None:
    # Instants a second either side of every local midnight of 2026 (and noon): the SQL key of each grain
    # must name the period its zoneinfo wall-clock date falls in.
    instants = []
    for i in range(365):
        start = P.midnight(date(2026, 1, 1) + timedelta(days=i), zone)
        instants += [start - timedelta(seconds=1), start, start + timedelta(hours=12)]
    texts = [t.strftime("%Y-%m-%dT%H:%M:%SZ") for t in instants]
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (at TEXT)")
    conn.executemany("INSERT INTO t VALUES (?)", [(t,) for t in texts])
    for grain in (Grain.DAY, Grain.WEEK, Grain.MONTH, Grain.QUARTER):
        within = (P.period_containing(date(2025, 12, 31), grain).start, date(2027, 1, 1))
        key = P.key_sql(grain, "at", zone=zone, within=within)
        got = [row[0] for row in conn.execute(f"SELECT {key} FROM t ORDER BY rowid")]
        want = [P.period_containing(t.astimezone(ZoneInfo(zone)).date(), grain).start.isoformat() for t in instants]
        assert got == want, grain


def test_a_utc_day_touches_one_or_two_local_days() -> None:
    days = [date(2026, 3, 11)]
    assert P.local_days(days, "UTC") == days
    assert P.local_days(days, LOS_ANGELES) == [date(2026, 3, 10), date(2026, 3, 11)]
    assert P.local_days(days, TOKYO) == [date(2026, 3, 11), date(2026, 3, 12)]


def test_today_and_the_running_period_are_the_zones() -> None:
    # 2026-03-31 22:30 UTC is already April 1 (00:30 CEST) in Berlin, still March 31 (15:30 PDT) in Los Angeles.
    now = datetime(2026, 3, 31, 22, 30, tzinfo=timezone.utc)
    april = Period(date(2026, 4, 1), date(2026, 5, 1), Grain.MONTH)
    march = Period(date(2026, 3, 1), date(2026, 4, 1), Grain.MONTH)
    assert P.resolve(None, None, None, now, BERLIN) == [april]
    assert P.resolve(None, None, None, now, LOS_ANGELES) == [march]
    assert P.resolve(None, None, None, now) == [march]
    assert P.resolve("day", None, None, now, BERLIN) == [Period(date(2026, 4, 1), date(2026, 4, 2), Grain.DAY)]


# --- placement of contacts around midnight ---------------------------------------------------------

BERLIN_STAMPS = [
    "2026-03-28T22:59:59Z",  # 23:59:59 CET Mar 28        -> Berlin 03-28 | UTC 03-28
    "2026-03-28T23:00:00Z",  # 00:00 CET Mar 29           -> Berlin 03-29 | UTC 03-28
    "2026-03-29T01:30:00Z",  # 03:30 CEST (after the jump) -> Berlin 03-29 | UTC 03-29
    "2026-03-29T21:59:59Z",  # 23:59:59 CEST Mar 29       -> Berlin 03-29 | UTC 03-29
    "2026-03-29T22:00:00Z",  # 00:00 CEST Mar 30          -> Berlin 03-30 | UTC 03-29
    "2026-03-29T23:30:00Z",  # 01:30 CEST Mar 30          -> Berlin 03-30 | UTC 03-29
    "2026-10-25T22:30:00Z",  # 23:30 CET Oct 25 (the 25-hour day) -> Berlin 10-25 | UTC 10-25
    "2026-10-25T23:30:00Z",  # 00:30 CET Oct 26           -> Berlin 10-26 | UTC 10-25
]


@pytest.fixture(scope="module")
def berlin_store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    return _store(tmp_path_factory.mktemp("berlin"), BERLIN_STAMPS)


def test_days_across_the_spring_dst_change(berlin_store: Store) -> None:
    span = (date(2026, 3, 28), date(2026, 3, 31))
    assert _volumes(berlin_store, _zone(BERLIN), "day", *span) == {
        "2026-03-28": 1, "2026-03-29": 3, "2026-03-30": 2}
    assert _volumes(berlin_store, _zone("UTC"), "day", *span) == {
        "2026-03-28": 2, "2026-03-29": 4, "2026-03-30": 0}


def test_the_25_hour_day(berlin_store: Store) -> None:
    now = datetime(2026, 11, 20, tzinfo=timezone.utc)
    span = (date(2026, 10, 25), date(2026, 10, 27))
    assert _volumes(berlin_store, _zone(BERLIN), "day", *span, now=now) == {"2026-10-25": 1, "2026-10-26": 1}
    assert _volumes(berlin_store, _zone("UTC"), "day", *span, now=now) == {"2026-10-25": 2, "2026-10-26": 0}


def test_weeks_and_custom_ranges_in_berlin(berlin_store: Store) -> None:
    # ISO weeks begin Monday 2026-03-23 and 2026-03-30: the contact at 23:59:59 CEST Sunday stays in the first.
    assert _volumes(berlin_store, _zone(BERLIN), "week", date(2026, 3, 23), date(2026, 4, 6)) == {
        "2026-03-23": 4, "2026-03-30": 2}
    assert _volumes(berlin_store, _zone("UTC"), "week", date(2026, 3, 23), date(2026, 4, 6)) == {
        "2026-03-23": 6, "2026-03-30": 0}
    # --since 2026-03-29 --until 2026-03-30 means the Berlin day: 23:00Z on the 28th up to 22:00Z on the 29th.
    found = rows(berlin_store, _zone(BERLIN), period=None, since=date(2026, 3, 29), until=date(2026, 3, 30),
                 kpis=["ticket_volume"])
    assert [(r["period_start"], r["period_end"], r["value"]) for r in found] == [("2026-03-29", "2026-03-30", 3)]


def test_months_and_quarters_in_tokyo_and_los_angeles(tmp_path: Path) -> None:
    store = _store(tmp_path, [
        "2026-03-31T14:59:59Z",  # 23:59:59 JST Mar 31 | 07:59:59 PDT Mar 31
        "2026-03-31T15:00:00Z",  # 00:00 JST Apr 1 (Q2)  | 08:00 PDT Mar 31
        "2026-04-01T06:00:00Z",  # 15:00 JST Apr 1       | 23:00 PDT Mar 31 (still Q1 there)
        "2026-04-01T07:00:00Z",  # 16:00 JST Apr 1       | 00:00 PDT Apr 1
        "2026-03-30T05:00:00Z",  # 14:00 JST Mon Mar 30  | 22:00 PDT Sun Mar 29 (the week of Mar 23)
        # (every other one is in the week of Mar 30 in both zones)
    ])
    now = datetime(2026, 7, 20, tzinfo=timezone.utc)
    months = (date(2026, 3, 1), date(2026, 5, 1))
    assert _volumes(store, _zone(TOKYO), "month", *months, now=now) == {"2026-03-01": 2, "2026-04-01": 3}
    assert _volumes(store, _zone(LOS_ANGELES), "month", *months, now=now) == {"2026-03-01": 4, "2026-04-01": 1}
    assert _volumes(store, _zone("UTC"), "month", *months, now=now) == {"2026-03-01": 3, "2026-04-01": 2}
    quarters = (date(2026, 1, 1), date(2026, 7, 1))
    assert _volumes(store, _zone(TOKYO), "quarter", *quarters, now=now) == {"2026-01-01": 2, "2026-04-01": 3}
    assert _volumes(store, _zone(LOS_ANGELES), "quarter", *quarters, now=now) == {"2026-01-01": 4, "2026-04-01": 1}
    weeks = (date(2026, 3, 23), date(2026, 4, 6))
    assert _volumes(store, _zone(LOS_ANGELES), "week", *weeks, now=now) == {"2026-03-23": 1, "2026-03-30": 4}
    assert _volumes(store, _zone(TOKYO), "week", *weeks, now=now) == {"2026-03-23": 0, "2026-03-30": 5}


def test_backlog_is_counted_at_local_midnight(tmp_path: Path) -> None:
    # Open since 00:30 CET on Mar 29 (23:30Z on the 28th): not open at the end of Berlin's Mar 28, open at UTC's.
    d = Data()
    d.contact("open", "2026-03-28T23:30:00Z")
    d.contact("done", "2026-03-28T10:00:00Z", resolved=12.5)  # resolved 22:30Z = 23:30 CET: before Berlin midnight
    store = make_store(tmp_path, d)
    span = (date(2026, 3, 28), date(2026, 3, 30))

    def backlog(zone: str) -> dict[str, int]:
        found = rows(store, _zone(zone), period="day", since=span[0], until=span[1], kpis=["backlog"])
        return {r["period_start"]: r["value"] for r in found}

    assert backlog(BERLIN) == {"2026-03-28": 0, "2026-03-29": 1}
    assert backlog("UTC") == {"2026-03-28": 1, "2026-03-29": 1}


def test_first_response_percentiles_follow_the_local_day(tmp_path: Path) -> None:
    # Percentiles come from a fetched column (not a GROUP BY): the same local key must place them.
    d = Data()
    d.contact("late", "2026-03-10T06:30:00Z", reply=10)   # 23:30 PDT Mar 9
    d.contact("early", "2026-03-10T07:30:00Z", reply=30)  # 00:30 PDT Mar 10
    store = make_store(tmp_path, d)
    found = rows(store, _zone(LOS_ANGELES), period="day", since=date(2026, 3, 9), until=date(2026, 3, 11),
                 kpis=["first_response_time_median"])
    assert {r["period_start"]: r["value"] for r in found} == {"2026-03-09": 10, "2026-03-10": 30}


# --- computing: incremental, and after a change of zone ---------------------------------------------

# Contacts at noon UTC on Mar 1-9 and 20-28 (the same local day in all three zones): enough that one new
# contact is a change to diff, not a reason to rebuild every fact.
FILLER = [f"2026-03-{day:02d}T12:00:00Z" for day in (*range(1, 10), *range(20, 29))]


def _compute(store: Store, settings: KpiSettings, now: datetime = NOW) -> Any:
    return compute(store, settings, date(2026, 3, 1), date(2026, 4, 1), grains=["day", "month"], segments=[[]],
                   now=now)


def test_an_incremental_compute_redoes_the_local_day_a_new_contact_lands_in(tmp_path: Path) -> None:
    la = _zone(LOS_ANGELES)
    store = _store(tmp_path, ["2026-03-10T12:00:00Z", "2026-03-11T12:00:00Z", *FILLER])
    _compute(store, la)
    # 03:00Z on Mar 11 (a UTC day key of 03-11) is 20:00 PDT on Mar 10: Los Angeles' Mar 10 must be redone.
    Data(contacts=[{"source": "zendesk", "source_id": "late", "channel": "email", "status": "open",
                    "created_at": "2026-03-11T03:00:00Z"}]).write(store)
    summary = _compute(store, la)
    assert not summary.rebuilt_everything and summary.periods_computed == 0 and summary.periods_partly > 0
    assert _volumes(store, la, "day", date(2026, 3, 10), date(2026, 3, 12)) == {"2026-03-10": 2, "2026-03-11": 1}
    # The same as computing it all from scratch.
    fresh = _store(tmp_path, ["2026-03-10T12:00:00Z", "2026-03-11T12:00:00Z", *FILLER, "2026-03-11T03:00:00Z"],
                   "fresh.sqlite")
    _compute(fresh, la)
    for grain, span in (("day", (date(2026, 3, 1), date(2026, 4, 1))), ("month", (date(2026, 3, 1), date(2026, 4, 1)))):
        assert (rows(store, la, period=grain, since=span[0], until=span[1])
                == rows(fresh, la, period=grain, since=span[0], until=span[1]))


def test_an_incremental_compute_east_of_utc(tmp_path: Path) -> None:
    berlin = _zone(BERLIN)
    store = _store(tmp_path, [*BERLIN_STAMPS[:6], *FILLER])
    _compute(store, berlin)
    # 22:30Z on Mar 29 (UTC day 03-29) is 00:30 CEST on Mar 30.
    Data(contacts=[{"source": "zendesk", "source_id": "new", "channel": "email", "status": "open",
                    "created_at": "2026-03-29T22:30:00Z"}]).write(store)
    assert not _compute(store, berlin).rebuilt_everything
    assert _volumes(store, berlin, "day", date(2026, 3, 28), date(2026, 3, 31)) == {
        "2026-03-28": 2, "2026-03-29": 3, "2026-03-30": 3}  # Mar 28 has a filler contact at noon


def test_changing_the_zone_recomputes_but_frozen_periods_stay(tmp_path: Path) -> None:
    store = _store(tmp_path, BERLIN_STAMPS[:6])
    _compute(store, _zone("UTC"))
    march = (date(2026, 3, 1), date(2026, 4, 1))
    # Freeze Mar 28 (as a purge would): its UTC count of 2 is history now.
    conn = store.db.conn
    assert values.freeze_before(conn, "2026-03-28T12:00:00Z", NOW.date()) > 0
    conn.commit()
    again = _compute(store, _zone("UTC"))
    assert again.periods_computed == 0  # same zone: nothing to redo
    berlin = _zone(BERLIN)
    summary = _compute(store, berlin)
    assert summary.periods_computed > 0 and summary.periods_frozen > 0
    days = _volumes(store, berlin, "day", date(2026, 3, 28), date(2026, 3, 31))
    assert days == {"2026-03-28": 2, "2026-03-29": 3, "2026-03-30": 2}  # 03-28 frozen at its UTC value
    assert _volumes(store, berlin, "month", *march) == {"2026-03-01": 6}  # frozen too (starts before the cutoff)
    # Back to UTC: recomputed again, the frozen day still as it was.
    _compute(store, _zone("UTC"))
    assert _volumes(store, _zone("UTC"), "day", date(2026, 3, 28), date(2026, 3, 31)) == {
        "2026-03-28": 2, "2026-03-29": 4, "2026-03-30": 0}


# --- the command line --------------------------------------------------------------------------------

def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HELPDESK_KPI_")}
    return subprocess.run([sys.executable, "-m", "kpi_core.cli", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=120)


def test_cli_dates_are_dates_in_the_zone(tmp_path: Path) -> None:
    _store(tmp_path, BERLIN_STAMPS, "store.sqlite").db.conn.close()
    config = tmp_path / "helpdesk-kpi.toml"
    config.write_text(f'[store]\npath = "{tmp_path / "store.sqlite"}"\n\n[kpis]\ntimezone = "{BERLIN}"\n')
    os.chmod(config, 0o600)
    done = _cli("kpis", "--period", "day", "--since", "2026-03-29", "--until", "2026-03-31", "--kpi", "ticket_volume",
                "--format", "json", "--config", str(config))
    assert done.returncode == 0, done.stderr
    found = [r for r in json.loads(done.stdout) if r["segment"] == {}]
    assert [(r["period_start"], r["value"]) for r in found] == [("2026-03-29", 3), ("2026-03-30", 2)]
    bad = tmp_path / "bad.toml"
    bad.write_text('[kpis]\ntimezone = "Mars/Olympus"\n')
    os.chmod(bad, 0o600)
    rejected = _cli("check-config", "--config", str(bad))
    assert rejected.returncode == 2
    assert "timezone" in rejected.stderr + rejected.stdout and "Traceback" not in rejected.stderr
