"""The alert clock on business hours: a contact waits only while its schedule is open, against the `_bh` target;
contacts no schedule covers, and every contact without `[alerts] business_hours`, wait in calendar time."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest
from kpi_fixtures import Data, make_store, ts

from kpi_core.alerts.clock import WaitClock
from kpi_core.alerts.listing import at_risk_now
from kpi_core.settings import ConfigProblem, Settings, load_settings

# Weekdays 09:00-17:00 in Berlin (UTC+1 in March), the market DE; Friday 2026-03-06 to Monday 2026-03-09.
HOURS = """
[kpis.business_hours.berlin]
time_zone = "Europe/Berlin"
markets = ["DE"]

[kpis.business_hours.berlin.hours]
mon = ["09:00-17:00"]
tue = ["09:00-17:00"]
wed = ["09:00-17:00"]
thu = ["09:00-17:00"]
fri = ["09:00-17:00"]

[[kpis.markets]]
name = "DE"
countries = ["DE"]

[kpis.targets.channel.email]
first_response_time_median = 240.0
first_response_time_median_bh = 120.0
"""


def settings_with(tmp_path: Path, business: bool) -> Settings:
    config = tmp_path / "alerts.toml"
    config.write_text(f'[store]\npath = "{tmp_path / "s.sqlite"}"\n[alerts]\nbusiness_hours = {str(business).lower()}\n'
                      + HOURS)
    return load_settings(config)


def utc(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


def test_business_time_stops_overnight_and_over_the_weekend(tmp_path: Path) -> None:
    clock = WaitClock(settings_with(tmp_path, business=True))
    berlin = clock.schedule_of(None, "DE")
    assert berlin is not None and clock.schedule_of(None, "US") is None  # no catch-all schedule: calendar time
    friday_4pm = utc(ts(6, 15))  # 16:00 in Berlin: one business hour left that day
    assert clock.elapsed_s(berlin, friday_4pm, utc(ts(9, 9))) == 2 * 3600  # to Monday 10:00 Berlin
    assert clock.elapsed_s(None, friday_4pm, utc(ts(9, 9))) == 66 * 3600
    # Two business hours are reached on Monday at 10:00 Berlin (09:00 UTC), not on Friday evening.
    assert clock.reached_at(berlin, friday_4pm, 2 * 3600) == utc(ts(9, 9))
    assert clock.reached_at(berlin, utc(ts(7, 12)), 60) == utc(ts(9, 8, 1))  # written on Saturday
    assert clock.reached_at(None, friday_4pm, 3600) == utc(ts(6, 16))


def test_open_contacts_are_at_risk_by_business_time_against_the_bh_target(tmp_path: Path) -> None:
    data = Data()
    # Both written on Friday at 16:00 Berlin; it is now Monday 10:15 Berlin: 2 h 15 min of business time.
    data.contact("de-1", ts(6, 15), country="DE")
    data.contact("us-1", ts(6, 15), country="US")
    store = make_store(tmp_path, data)
    now = utc(ts(9, 9, 15))
    try:
        business = {r["contact_id"]: r for r in at_risk_now(store, settings_with(tmp_path, True), now)}
        calendar = {r["contact_id"]: r for r in at_risk_now(store, settings_with(tmp_path, False), now)}
    finally:
        store.close()
    de = business["de-1"]  # 135 business minutes against the 120-minute business-hours target
    assert (de["stage"], de["elapsed_seconds"], de["target_seconds"]) == ("breached", 135 * 60, 120 * 60)
    assert de["due_at"] == "2026-03-09T09:00:00Z"  # the 120th business minute: Monday 10:00 Berlin
    us = business["us-1"]  # no schedule covers the US: calendar time against the calendar target
    assert (us["stage"], us["elapsed_seconds"], us["target_seconds"]) == ("breached", 66 * 3600 + 900, 240 * 60)
    assert calendar["de-1"]["elapsed_seconds"] == 66 * 3600 + 900 and calendar["de-1"]["target_seconds"] == 240 * 60


def test_a_contact_in_its_first_business_minutes_is_not_at_risk(tmp_path: Path) -> None:
    data = Data()
    data.contact("de-2", ts(6, 15, 30), country="DE")  # Friday 16:30 Berlin: 30 business minutes before closing
    store = make_store(tmp_path, data)
    try:
        # Monday 09:30 Berlin: 60 business minutes of 120, under the 75 % at-risk share; by calendar, 65 hours.
        assert at_risk_now(store, settings_with(tmp_path, True), utc(ts(9, 8, 30))) == []
        (found,) = at_risk_now(store, settings_with(tmp_path, True), utc(ts(9, 9)))  # 90 of 120: at risk
        assert found["stage"] == "at_risk" and found["due_in_seconds"] == 30 * 60
    finally:
        store.close()


def test_business_hours_alerts_need_a_schedule(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(f'[store]\npath = "{tmp_path / "s.sqlite"}"\n[alerts]\nbusiness_hours = true\n')
    with pytest.raises(ConfigProblem) as caught:
        load_settings(config)
    assert caught.value.problems == [("alerts.business_hours", "needs at least one [kpis.business_hours.NAME]"
                                                               " schedule to count business time by")]
