"""Periods (day, ISO week, month, quarter, custom) and segments (every dimension, combined, markets)."""

from __future__ import annotations

from datetime import date, datetime, timezone
from pathlib import Path

import pytest
from kpi_fixtures import NOW, Data, make_store, rows, ts, value

from kpi_core.kpis.periods import Grain, Period, PeriodError, period_containing, periods_between, resolve
from kpi_core.kpis.segments import SegmentError
from kpi_core.settings import KpiSettings

# The hand-computed cases on a SQLite store and on a PostgreSQL account (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("on_both_stores")


def test_period_arithmetic() -> None:
    assert period_containing(date(2026, 3, 1), Grain.WEEK) == Period(date(2026, 2, 23), date(2026, 3, 2), Grain.WEEK)
    assert period_containing(date(2026, 11, 15), Grain.QUARTER).start == date(2026, 10, 1)
    assert period_containing(date(2026, 12, 31), Grain.MONTH).end == date(2027, 1, 1)
    assert period_containing(date(2026, 1, 1), Grain.WEEK).label() == "2026-W01"
    assert [p.label() for p in periods_between(Grain.MONTH, date(2026, 1, 15), date(2026, 3, 2))] == \
        ["2026-01", "2026-02", "2026-03"]
    custom = Period(date(2026, 3, 10), date(2026, 3, 20), Grain.CUSTOM)
    assert custom.previous() == Period(date(2026, 2, 28), date(2026, 3, 10), Grain.CUSTOM)
    now = datetime(2026, 5, 17, tzinfo=timezone.utc)
    assert resolve(None, None, None, now) == [Period(date(2026, 5, 1), date(2026, 6, 1), Grain.MONTH)]
    assert resolve(None, date(2026, 3, 10), date(2026, 3, 20), now) == [custom]
    with pytest.raises(PeriodError):
        resolve("fortnight", None, None, now)
    with pytest.raises(PeriodError):
        periods_between(Grain.DAY, date(2026, 3, 2), date(2026, 3, 1))


def _spread() -> Data:
    d = Data()
    for day in (1, 2, 8, 9, 31):  # Sun 1, Mon 2, Sun 8, Mon 9, Tue 31 March 2026
        d.contact(f"c{day}", ts(day), reply=day)
    return d


def test_each_grain_places_contacts_by_their_anchor(tmp_path: Path) -> None:
    store = make_store(tmp_path, _spread())
    days = {r["period_start"]: r["value"] for r in rows(store, period="day", since=date(2026, 3, 1),
                                                        until=date(2026, 3, 3), kpis=["ticket_volume"])}
    assert days == {"2026-03-01": 1, "2026-03-02": 1}
    weeks = {r["period_start"]: r["value"] for r in rows(store, period="week", since=date(2026, 2, 23),
                                                         until=date(2026, 4, 1), kpis=["ticket_volume"])}
    assert weeks == {"2026-02-23": 1, "2026-03-02": 2, "2026-03-09": 1, "2026-03-16": 0, "2026-03-23": 0,
                     "2026-03-30": 1}
    quarter = rows(store, period="quarter", since=date(2026, 1, 1), until=date(2026, 4, 1), kpis=["ticket_volume"])
    assert [(r["period_start"], r["period_end"], r["value"]) for r in quarter] == [("2026-01-01", "2026-04-01", 5)]
    custom = rows(store, period=None, since=date(2026, 3, 2), until=date(2026, 3, 9),
                  kpis=["ticket_volume", "first_response_time_median"])
    assert {r["kpi"]: r["value"] for r in custom} == {"ticket_volume": 2, "first_response_time_median": 2.0}


def _segmented() -> Data:
    d = Data()
    d.people.append({"source": "zendesk", "source_id": "r-fr", "role": "customer", "country": "FR"})
    d.contact("1", ts(2), channel="chat", language="de", country="DE", priority="high", assignee_id="a1",
              group_id="g1", tags=["billing", "vip"], custom={"sku": "SKU-1"}, reply=1)
    d.contact("2", ts(3), channel="chat", language="en", country="AT", priority="low", assignee_id="a2",
              group_id="g1", tags=["billing"], custom={"sku": "SKU-2"}, reply=3)
    d.contact("3", ts(4), channel="email", language="en", requester_id="r-fr", assignee_id="a1", group_id="g2",
              tags=[], reply=60)
    d.contact("4", ts(5), channel="email", language="en", country="US", brand_id="b9", reply=120)
    return d


def test_every_dimension_and_their_combination(tmp_path: Path) -> None:
    store = make_store(tmp_path, _segmented())

    def by(*dims: str, kpi: str = "ticket_volume") -> dict[tuple[object, ...], object]:
        return {tuple(r["segment"].values()): r["value"] for r in rows(store, by=list(dims), kpis=[kpi])}

    assert by("source") == {("zendesk",): 4}
    assert by("channel") == {("chat",): 2, ("email",): 2}
    assert by("agent") == {("zendesk:a1",): 2, ("zendesk:a2",): 1, (None,): 1}
    assert by("group") == {("zendesk:g1",): 2, ("zendesk:g2",): 1, (None,): 1}
    assert by("language") == {("de",): 1, ("en",): 3}
    assert by("priority") == {("high",): 1, ("low",): 1, (None,): 2}
    assert by("tag") == {("billing",): 2, ("vip",): 1, (None,): 1 + 1}  # one contact per tag; untagged: None
    assert by("custom.sku") == {("SKU-1",): 1, ("SKU-2",): 1, (None,): 2}
    assert by("channel", "language") == {("chat", "de"): 1, ("chat", "en"): 1, ("email", "en"): 2}
    assert by("channel", "language", kpi="first_response_time_median") == {
        ("chat", "de"): 1.0, ("chat", "en"): 3.0, ("email", "en"): 60.0}
    # Without market rules a contact's market is its (requester's) country.
    assert by("market") == {("DE",): 1, ("AT",): 1, ("FR",): 1, ("US",): 1}


def test_markets_come_from_configured_rules_in_order(tmp_path: Path) -> None:
    settings = KpiSettings(markets=[{"name": "VIP", "tags": ["vip"]},
                                    {"name": "DACH", "countries": ["de", "AT", "CH"]},
                                    {"name": "Brand 9", "brands": ["zendesk:b9"]}],
                           default_market="rest of world")
    store = make_store(tmp_path, _segmented())
    markets = {r["segment"]["market"]: r["value"] for r in rows(store, settings, by=["market"],
                                                                kpis=["ticket_volume"])}
    assert markets == {"VIP": 1, "DACH": 1, "Brand 9": 1, "rest of world": 1}


def test_custom_segments_name_a_custom_field(tmp_path: Path) -> None:
    settings = KpiSettings(custom_segments={"sku": "sku"}, segments=[[], ["sku"]])
    store = make_store(tmp_path, _segmented())
    assert value(store, "ticket_volume", settings, {"sku": "SKU-2"}, by=["sku"]) == 1


def test_unknown_segments_are_refused(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    with pytest.raises(SegmentError, match="unknown segment 'colour'"):
        rows(store, by=["colour"])
    with pytest.raises(SegmentError, match="twice"):
        rows(store, by=["channel", "channel"])
    with pytest.raises(ValueError, match="unknown segment"):
        KpiSettings(segments=[["channel", "colour"]])


def test_future_periods_are_not_computed(tmp_path: Path) -> None:
    store = make_store(tmp_path, _spread())
    found = rows(store, period="month", since=date(2026, 4, 1), until=date(2026, 7, 1), kpis=["ticket_volume"],
                 now=NOW)
    assert [r["period_start"] for r in found] == ["2026-04-01"]
