"""Business hours: weekends, holidays and DST in the clock, and the `_bh` KPIs per group, market or default schedule."""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from kpi_fixtures import Data, make_store, row, rows, ts, value

from kpi_core.kpis.business_hours import BusinessClock, Schedule
from kpi_core.settings import BusinessHoursSettings, KpiSettings

# The hand-computed cases on a SQLite store and on a PostgreSQL account (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("on_both_stores")

BERLIN = ZoneInfo("Europe/Berlin")
WEEKDAYS = {d: ["09:00-17:00"] for d in ("mon", "tue", "wed", "thu", "fri")}


def epoch(y: int, m: int, d: int, h: int = 0, mi: int = 0, zone: ZoneInfo = BERLIN) -> int:
    return int(datetime(y, m, d, h, mi, tzinfo=zone).timestamp())


def clock(**kw: object) -> BusinessClock:
    settings = BusinessHoursSettings(**{"time_zone": "Europe/Berlin", "hours": WEEKDAYS, **kw})
    return BusinessClock(Schedule.from_settings("office", settings))


def test_a_weekend_counts_nothing() -> None:
    # Friday 16:00 -> Monday 10:00 (March 2026, before DST): 1 h Friday + 1 h Monday.
    assert clock().between(epoch(2026, 3, 13, 16), epoch(2026, 3, 16, 10)) == 2 * 3600
    assert clock().between(epoch(2026, 3, 14, 10), epoch(2026, 3, 15, 20)) == 0


def test_a_holiday_counts_nothing() -> None:
    c = clock(holidays=["2026-03-16"])
    assert c.between(epoch(2026, 3, 13, 16), epoch(2026, 3, 17, 10)) == 2 * 3600  # Mon is off


def test_dst_changes_are_local_time() -> None:
    # Berlin moves to summer time on Sunday 29 March 2026: a 09-17 day is still 8 h either side.
    c = clock()
    assert c.between(epoch(2026, 3, 27, 9), epoch(2026, 3, 30, 17)) == 16 * 3600
    # A round-the-clock schedule: the DST Sunday has 23 hours, the autumn one (25 Oct) 25.
    always = clock(hours={d: ["00:00-24:00"] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")})
    assert always.between(epoch(2026, 3, 29), epoch(2026, 3, 30)) == 23 * 3600
    assert always.between(epoch(2026, 10, 25), epoch(2026, 10, 26)) == 25 * 3600


def test_split_days_and_out_of_hours_moments() -> None:
    c = clock(hours={"mon": ["09:00-12:00", "13:00-17:00"]})
    assert c.between(epoch(2026, 3, 16, 8), epoch(2026, 3, 16, 18)) == 7 * 3600
    assert c.between(epoch(2026, 3, 16, 12, 15), epoch(2026, 3, 16, 12, 45)) == 0
    assert c.between(epoch(2026, 3, 16, 11), epoch(2026, 3, 16, 9)) == 0  # reversed: nothing


def test_threads_asking_while_the_layout_widens_get_the_single_threaded_answers() -> None:
    """DuckDB calls the clock from its own threads; a thread asking while another lays out a wider span reads one
    span throughout (the business seconds before an interval differ between spans)."""
    weeks = [(epoch(2010 + i % 30, 1 + i % 12, 5, 10), epoch(2010 + i % 30, 1 + i % 12, 19, 15)) for i in range(400)]
    want = [clock().between(a, b) for a, b in weeks]
    switching = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads take turns often, as DuckDB's do in a long query
    try:
        for _ in range(5):
            shared = clock()
            with ThreadPoolExecutor(4) as pool:
                got = list(pool.map(shared.between, *zip(*weeks, strict=True)))
            assert got == want
    finally:
        sys.setswitchinterval(switching)


def test_far_dates_extend_the_layout() -> None:
    c = clock()
    assert c.between(epoch(2020, 1, 6, 9), epoch(2020, 1, 6, 10)) == 3600
    assert c.between(epoch(2030, 1, 7, 9), epoch(2030, 1, 7, 10)) == 3600


def test_invalid_schedules_are_refused() -> None:
    with pytest.raises(ValueError, match="time zone"):
        BusinessHoursSettings(time_zone="Mars/Olympus")
    with pytest.raises(ValueError, match="weekday"):
        BusinessHoursSettings(hours={"monday": ["09:00-17:00"]})
    with pytest.raises(ValueError, match="ends before"):
        BusinessHoursSettings(hours={"mon": ["17:00-09:00"]})
    with pytest.raises(ValueError, match="only one schedule"):
        KpiSettings(business_hours={"a": {"hours": WEEKDAYS}, "b": {"hours": WEEKDAYS}})


def _weekend_contacts() -> Data:
    d = Data()
    friday_16 = datetime(2026, 3, 13, 15, 0, tzinfo=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")  # 16:00 Berlin
    # Replied Monday 10:00 Berlin (09:00 UTC): 66 calendar hours, 2 business hours.
    d.contact("weekend", friday_16, channel="email", group_id="g1", reply=66 * 60)
    d.contact("weekday", ts(17, 8), channel="email", group_id="g2", reply=30)  # Tue 09:00 -> 09:30 Berlin
    return d


def test_bh_kpis_exist_only_with_a_schedule_and_measure_business_time(tmp_path: Path) -> None:
    store = make_store(tmp_path, _weekend_contacts())
    assert not [r for r in rows(store) if r["kpi"].endswith("_bh")]
    settings = KpiSettings(business_hours={"office": {"time_zone": "Europe/Berlin", "hours": WEEKDAYS}})
    assert value(store, "first_response_time_avg", settings) == pytest.approx((66 * 60 + 30) / 2)
    assert value(store, "first_response_time_avg_bh", settings) == pytest.approx((120 + 30) / 2)
    assert value(store, "first_response_time_p90_bh", settings) == 120.0
    bh = {r["kpi"] for r in rows(store, settings) if r["kpi"].endswith("_bh")}
    assert bh == {"first_response_time_avg_bh", "first_response_time_median_bh", "first_response_time_p90_bh",
                  "service_level_pct_bh", "resolution_time_avg_bh", "resolution_time_median_bh",
                  "full_resolution_time_avg_bh"}


def test_a_group_schedule_beats_the_market_one_and_the_default(tmp_path: Path) -> None:
    settings = KpiSettings(
        markets=[{"name": "DACH", "countries": ["DE"]}],
        business_hours={
            "round-the-clock": {"time_zone": "UTC", "hours": {d: ["00:00-24:00"] for d in
                                                               ("mon", "tue", "wed", "thu", "fri", "sat", "sun")},
                                "groups": ["zendesk:g1"]},
            "dach": {"time_zone": "Europe/Berlin", "hours": WEEKDAYS, "markets": ["DACH"]},
            "default": {"time_zone": "America/New_York", "hours": {"mon": ["09:00-10:00"]}},
        })
    d = _weekend_contacts()
    d.contacts[0]["country"] = "DE"  # group g1 wins over market DACH: calendar time
    d.contacts[1]["country"] = "DE"  # group g2 has no schedule: the DACH one
    d.contact("us", ts(16, 13), channel="email", country="US", reply=120)  # Mon 09:00-11:00 New York: 60 min
    store = make_store(tmp_path, d)
    medians = {r["segment"]["group"]: r["value"] for r in rows(store, settings, by=["group"],
                                                               kpis=["first_response_time_median_bh"])}
    assert medians == {"zendesk:g1": 66 * 60.0, "zendesk:g2": 30.0, None: 60.0}


def test_service_level_bh_waits_in_business_time(tmp_path: Path) -> None:
    settings = KpiSettings(business_hours={"office": {"time_zone": "Europe/Berlin", "hours": WEEKDAYS}})
    now = datetime(2026, 3, 16, 8, 30, tzinfo=timezone.utc)  # Monday 09:30 Berlin
    d = Data()
    friday_16 = datetime(2026, 3, 13, 15, 0, tzinfo=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    d.contact("waiting", friday_16)  # 1.5 business hours so far: within 24 h, left out of the bh level
    d.contact("answered", friday_16, reply=10)
    store = make_store(tmp_path, d)
    bh = row(store, "service_level_pct_bh", settings, now=now)
    calendar = row(store, "service_level_pct", settings, now=now)
    assert (bh["numerator"], bh["denominator"]) == (1, 1)
    assert (calendar["numerator"], calendar["denominator"]) == (1, 2)  # 65.5 calendar hours: missed
