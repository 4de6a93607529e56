"""The alert clock on business hours: a contact waits only while its schedule is open, against the `_bh` target;
contacts no schedule covers, and every contact without `[alerts] business_hours`, wait in calendar time. An alert
in business time says so (text, summary line, webhook body); one in calendar time reads as it always did."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from kpi_fixtures import Data, make_store, ts

from kpi_core import store as store_module
from kpi_core.alerts import state
from kpi_core.alerts.clock import WaitClock
from kpi_core.alerts.decide import decide
from kpi_core.alerts.listing import at_risk_now
from kpi_core.alerts.messages import render, webhook_json
from kpi_core.alerts.watch import crossings
from kpi_core.cli_alerts import _tables
from kpi_core.settings import ConfigProblem, Settings, load_settings
from kpi_core.store import Store, immediate, open_store

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
    assert de["business_time"] is True
    assert de["due_at"] == "2026-03-09T09:00:00Z"  # the 120th business minute: Monday 10:00 Berlin
    us = business["us-1"]  # no schedule covers the US: calendar time against the calendar target
    assert (us["stage"], us["elapsed_seconds"], us["target_seconds"]) == ("breached", 66 * 3600 + 900, 240 * 60)
    assert us["business_time"] is False
    assert calendar["de-1"]["elapsed_seconds"] == 66 * 3600 + 900 and calendar["de-1"]["target_seconds"] == 240 * 60
    assert calendar["de-1"]["business_time"] is False
    # The `alerts` table marks the business-time figures, and only those.
    table = _tables({"at_risk": [de, us], "kpis": [], "sent": []}, ZoneInfo("Europe/Berlin"), 10).splitlines()
    row_of = {name: next(line for line in table if f"#{name}" in line) for name in ("de-1", "us-1")}
    assert "2h 15m / 2h 00m business" in row_of["de-1"] and "business" not in row_of["us-1"]


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


def contact_events(store: Store) -> dict[str, dict[str, Any]]:
    ids = [i for (i,) in store.db.execute("SELECT id FROM alert_events WHERE kind = 'contact'")]
    return {str(e["contact_id"]): e for e in (state.event(store.db.conn, i) for i in ids)}


def test_business_time_alerts_say_so_in_text_summary_and_webhook_body(tmp_path: Path, on_both_stores: str) -> None:
    data = Data()
    data.contact("de-1", ts(6, 15), country="DE")  # Friday 16:00 Berlin: the DE schedule counts business time
    data.contact("us-1", ts(6, 15), country="US")  # no schedule covers the US: calendar time
    store = make_store(tmp_path, data)
    settings = settings_with(tmp_path, True)
    now = utc(ts(9, 9, 15))  # Monday 10:15 Berlin
    zone = ZoneInfo(settings.kpis.timezone)
    try:
        decide(store, settings, now, crossings(store, settings, now), [])
        events = contact_events(store)
        (summary_id,) = {e["summary_id"] for e in events.values()}  # first seen by alerting: one start summary
        summary = render(state.event(store.db.conn, summary_id), state.covered(store.db.conn, summary_id), zone)
    finally:
        store.close()
    de, us = events["de-1"], events["us-1"]
    assert (de["business"], us["business"]) == (1, 0)
    de_message, us_message = render(de, [], zone), render(us, [], zone)
    assert de_message.lines[0] == ("2h 15m of business time waiting for a first reply;"
                                   " target 2h 00m of business time")
    assert us_message.lines[0] == "2d 18h waiting for a first reply; target 4h 00m"  # as calendar alerts always read
    assert "business" not in us_message.text
    assert webhook_json(de, de_message, 0)["business_time"] is True
    assert webhook_json(us, us_message, 0)["business_time"] is False
    assert "zendesk #de-1 (email, DE): first response target missed, 2h 15m of 2h 00m business time" in summary.lines
    assert "zendesk #us-1 (email, other): first response target missed, 2d 18h of 4h 00m" in summary.lines


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_store_from_before_m033_gains_the_flag_and_its_old_alerts_read_as_before(
        kind: str, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    where = str(tmp_path / "old.sqlite") if kind == "sqlite" else request.getfixturevalue("pg_url")
    names = [m.name for m in store_module.migrations._migrations]
    earlier = store_module.migrations._migrations[:names.index("m033_alert_events_business_time")]
    with monkeypatch.context() as patched:  # a store as a release before m033 left it, with an alert of its time
        patched.setattr(store_module.migrations, "_migrations", earlier)
        old = open_store(where, "old")
        assert "business" not in old.db.table("alert_events").columns_dict
        with immediate(old.db.conn):
            old_id = state.insert_event(
                old.db.conn, key="contact:zendesk:7:breached", kind="contact", source="zendesk", contact_id="7",
                stage="breached", channel="chat", crossed_at="2026-03-06T15:00:00Z", elapsed_s=3900, target_s=7200,
                decided_at="2026-03-06T15:00:05Z", disposition=state.ALERT)
        old.close()
    store = open_store(where, "old")
    try:
        assert "business" in store.db.table("alert_events").columns_dict
        event = state.event(store.db.conn, old_id)
        with immediate(store.db.conn):
            new_id = state.insert_event(
                store.db.conn, key="contact:zendesk:8:breached", kind="contact", source="zendesk", contact_id="8",
                stage="breached", channel="chat", crossed_at="2026-03-09T09:00:00Z", elapsed_s=3900, target_s=7200,
                decided_at="2026-03-09T09:00:05Z", disposition=state.ALERT, business=1)
        new = state.event(store.db.conn, new_id)
    finally:
        store.close()
    assert event["business"] is None and new["business"] == 1
    message = render(event, [], ZoneInfo("UTC"))
    assert message.lines[0] == "1h 05m waiting for a first reply; target 2h 00m"
    assert webhook_json(event, message, 0)["business_time"] is False
    assert render(new, [], ZoneInfo("UTC")).lines[0] == ("1h 05m of business time waiting for a first reply;"
                                                         " target 2h 00m of business time")


def test_business_hours_alerts_need_a_schedule(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(f'[store]\npath = "{tmp_path / "s.sqlite"}"\n[alerts]\nbusiness_hours = true\n')
    with pytest.raises(ConfigProblem) as caught:
        load_settings(config)
    assert caught.value.problems == [("alerts.business_hours", "needs at least one [kpis.business_hours.NAME]"
                                                               " schedule to count business time by")]
