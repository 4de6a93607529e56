"""Targets: catalogue defaults, overrides globally / per channel / market / group, bands, and status."""

from __future__ import annotations

from pathlib import Path

import pytest
from kpi_fixtures import Data, make_store, row, rows, ts

from kpi_core.kpis.catalogue import BY_ID, UnknownKpi
from kpi_core.kpis.targets import Targets, check_targets, status
from kpi_core.settings import KpiSettings

# The hand-computed cases on a SQLite store and on a PostgreSQL account (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("on_both_stores")


def test_catalogue_defaults() -> None:
    t = Targets({})
    frt = BY_ID["first_response_time_median"]
    assert [t.for_value(frt, {"channel": c}) for c in ("chat", "messaging", "phone", "email", "web_form", "api",
                                                       "social", "other")] == [2, 2, 0.5] + [1440] * 5
    assert t.for_value(frt, {}) is None  # mixed channels: no target unless the admin sets one
    assert t.for_value(frt, {"language": "de"}) is None
    expected = {"csat_pct": 90, "nps": 50, "fcr_pct": 75, "one_touch_resolution_pct": 70, "reopen_rate_pct": 5,
                "abandonment_rate_pct": 5, "resolution_time_median": 12, "response_rate_pct": 98}
    assert {k: t.for_value(BY_ID[k], {}) for k in expected} == expected
    assert t.for_value(BY_ID["ticket_volume"], {}) is None


def test_overrides_from_most_specific_to_global() -> None:
    t = Targets({
        "csat_pct": 92.0, "first_response_time_median": 30.0,
        "channel": {"chat": {"first_response_time_median": 1.0, "csat_pct": 85.0}},
        "market": {"DACH": {"csat_pct": 95.0}},
        "group": {"zendesk:g1": {"csat_pct": 80.0}, "g2": {"csat_pct": 70.0}},
    })
    csat, frt = BY_ID["csat_pct"], BY_ID["first_response_time_median"]
    assert t.for_value(csat, {}) == 92.0
    assert t.for_value(csat, {"channel": "chat"}) == 85.0
    assert t.for_value(csat, {"channel": "chat", "market": "DACH"}) == 95.0
    assert t.for_value(csat, {"market": "DACH", "group": "zendesk:g1"}) == 80.0
    assert t.for_value(csat, {"group": "freshdesk:g2"}) == 70.0  # a bare group id matches any source
    assert t.for_value(frt, {"channel": "chat"}) == 1.0
    assert t.for_value(frt, {"channel": "email"}) == 1440.0  # the catalogue's channel target beats the global one
    assert t.for_value(frt, {}) == 30.0
    assert t.service_level_sql().count("WHEN 'chat' THEN 60 ") == 1  # the chat threshold follows the override


def test_status() -> None:
    csat, reopen, util = BY_ID["csat_pct"], BY_ID["reopen_rate_pct"], BY_ID["agent_utilization_pct"]
    assert status(csat, 90.0, 90.0) == "ok" and status(csat, 89.9, 90.0) == "breach"
    assert status(reopen, 5.0, 5.0) == "ok" and status(reopen, 5.1, 5.0) == "breach"
    assert status(util, 80.0, (70.0, 85.0)) == "ok" and status(util, 90.0, (70.0, 85.0)) == "breach"
    assert status(csat, None, 90.0) == "no_data" and status(csat, 50.0, None) == "info"


def test_bad_targets_are_refused_naming_the_key() -> None:
    with pytest.raises(ValueError, match="csat_percent: unknown KPI id"):
        KpiSettings(targets={"csat_percent": 90})
    with pytest.raises(UnknownKpi, match=r"market\.DACH\.nope: unknown KPI id"):
        check_targets({"market": {"DACH": {"nope": 1}}})
    with pytest.raises(ValueError, match=r"market\.DACH\.nope: unknown KPI id"):
        KpiSettings(targets={"market": {"DACH": {"nope": 1}}})
    with pytest.raises(ValueError, match=r"channel\.fax: unknown channel"):
        KpiSettings(targets={"channel": {"fax": {"csat_pct": 90}}})
    with pytest.raises(ValueError, match="no better direction"):
        KpiSettings(targets={"agent_utilization_pct": 80})
    with pytest.raises(ValueError, match="band"):
        KpiSettings(targets={"csat_pct": [95, 90]})


def test_values_carry_target_and_status_applied_on_reading(tmp_path: Path) -> None:
    d = Data()
    d.contact("1", ts(2), channel="chat", reply=1.5)
    d.contact("2", ts(3), channel="email", reply=30 * 60)
    store = make_store(tmp_path, d)
    chat = row(store, "first_response_time_median", segment={"channel": "chat"}, by=["channel"])
    assert (chat["value"], chat["target"], chat["status"]) == (1.5, 2.0, "ok")
    strict = KpiSettings(targets={"channel": {"chat": {"first_response_time_median": 1.0}}})
    chat = row(store, "first_response_time_median", strict, segment={"channel": "chat"}, by=["channel"])
    assert (chat["target"], chat["status"]) == (1.0, "breach")
    email = row(store, "first_response_time_median", segment={"channel": "email"}, by=["channel"])
    assert (email["target"], email["status"]) == (1440.0, "breach")  # 30 h > 24 h
    assert all(r["status"] in ("ok", "breach", "no_data", "info") for r in rows(store))
