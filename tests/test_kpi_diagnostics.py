"""Each read-together diagnostic fires on a dataset built for it, with its evidence, and stays silent on its mirror."""

from __future__ import annotations

import itertools
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from kpi_fixtures import NOW, Data, make_store, ts

from kpi_core.kpis.api import compute
from kpi_core.kpis.diagnostics import DIAGNOSTIC_IDS, diagnose
from kpi_core.settings import KpiSettings

# The hand-computed cases on a SQLite store and on a PostgreSQL account (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("on_both_stores")

SETTINGS = KpiSettings(min_n=1)  # a handful of contacts: judged as if they were many (low_n: test_cli_reading)


_STORES = itertools.count()


def fired(tmp_path: Path, d: Data, name: str, since: date = date(2026, 3, 1), until: date = date(2026, 4, 1),
          now: datetime = NOW) -> list[dict[str, Any]]:
    # A fresh file per call: counting the folder's files could name an existing store again
    # (its -wal and -shm files come and go as connections close).
    store = make_store(tmp_path, d, f"{name}-{next(_STORES)}.sqlite")
    return [x for x in diagnose(store, SETTINGS, since, until, "month", now=now) if x["diagnostic"] == name]


def test_fast_reply_slow_resolution(tmp_path: Path) -> None:
    def data(replies: int) -> Data:
        d = Data()
        for i in range(4):
            d.contact(f"c{i}", ts(2 + i), channel="chat", reply=1, resolved=2, agent_replies=replies)
        return d

    found = fired(tmp_path, data(2), "fast_reply_slow_resolution")
    assert [(x["segment"], x["evidence"]) for x in found] == [
        ({"channel": "chat"}, {"first_response_time_median": 1.0, "one_touch_resolution_pct": 0.0, "fcr_pct": 0.0})]
    assert fired(tmp_path, data(1), "fast_reply_slow_resolution") == []


def test_csat_hides_unanswered(tmp_path: Path) -> None:
    def data(answered: int) -> Data:
        d = Data()
        for i in range(10):
            d.contact(f"c{i}", ts(2 + i), **({"reply": 30} if i < answered else {}))
            if i < 5:
                d.survey(f"s{i}", "csat", 1, "good_bad", ts(20), contact=f"c{i}")
        return d

    found = [x for x in fired(tmp_path, data(5), "csat_hides_unanswered") if x["segment"] == {}]
    assert found and found[0]["evidence"]["csat_pct"] == 100.0 and found[0]["evidence"]["response_rate_pct"] == 50.0
    assert fired(tmp_path, data(10), "csat_hides_unanswered") == []


def _trend(csat_good: list[int], nps_scores: list[list[int]]) -> Data:
    d = Data()
    for month, (good, scores) in enumerate(zip(csat_good, nps_scores, strict=True), start=1):
        for i in range(10):
            d.survey(f"c{month}-{i}", "csat", 1 if i < good else 0, "good_bad", ts(10, month=month))
        for i, score in enumerate(scores):
            d.survey(f"n{month}-{i}", "nps", score, "0-10", ts(11, month=month))
    return d


def test_nps_lags_csat_and_the_reverse(tmp_path: Path) -> None:
    since = date(2026, 1, 1)
    found = fired(tmp_path, _trend([10, 9, 8], [[10, 9]] * 3), "nps_lags_csat", since)
    assert [(x["period_start"], x["evidence"]) for x in found if x["segment"] == {}] == [
        ("2026-03-01", {"csat_pct": [100.0, 90.0, 80.0], "nps": [100.0, 100.0, 100.0]})]
    reverse = fired(tmp_path, _trend([10, 10, 10], [[10, 9], [10, 5], [0, 5]]), "nps_lags_csat", since)
    assert [x["period_start"] for x in reverse if x["segment"] == {}] == ["2026-03-01"]
    assert fired(tmp_path, _trend([10, 10, 10], [[10, 9]] * 3), "nps_lags_csat", since) == []
    assert fired(tmp_path, _trend([10, 10, 9], [[10, 9]] * 3), "nps_lags_csat", since) == []  # fell once only


def test_closed_but_unhappy(tmp_path: Path) -> None:
    def data(score: int) -> Data:
        d = Data()
        for i in range(4):
            d.contact(f"c{i}", ts(2 + i), reply=10, resolved=1)
            d.survey(f"s{i}", "csat", score, "good_bad", ts(10, month=4), contact=f"c{i}")  # answered in April
        return d

    found = [x for x in fired(tmp_path, data(0), "closed_but_unhappy") if x["segment"] == {}]
    assert found and found[0]["evidence"]["csat_of_resolved_pct"] == 0.0
    assert found[0]["evidence"]["resolution_time_median"] == 1.0
    assert fired(tmp_path, data(1), "closed_but_unhappy") == []


def test_coverage_gap_by_language(tmp_path: Path) -> None:
    def data(german_answered: bool) -> Data:
        d = Data()
        for i in range(100):
            d.contact(f"en{i}", ts(2 + i % 20), language="en", reply=30)
        d.contact("de1", ts(5), language="de", reply=30)
        d.contact("de2", ts(6), language="de", **({"reply": 30} if german_answered else {}))
        return d

    found = fired(tmp_path, data(False), "coverage_gap_by_language")
    assert [(x["segment"], x["evidence"]) for x in found] == [
        ({"language": "de"}, {"response_rate_pct": 50.0, "overall_response_rate_pct": 99.0196})]
    assert fired(tmp_path, data(True), "coverage_gap_by_language") == []


def _volumes(per_month: dict[int, int]) -> Data:
    d = Data()
    for month, count in per_month.items():
        for i in range(count):
            d.contact(f"m{month}-{i}", ts(10, month=month))
    return d


def test_volume_spike_against_four_periods_or_fewer(tmp_path: Path) -> None:
    june = datetime(2026, 6, 10, tzinfo=timezone.utc)
    history = {1: 10, 2: 12, 3: 8, 4: 10}  # mean 10, population sd sqrt(2): threshold 14.24
    found = fired(tmp_path, _volumes({**history, 5: 20}), "volume_spike", date(2026, 5, 1), date(2026, 6, 1), june)
    unsegmented = [x for x in found if x["segment"] == {}]
    assert unsegmented and unsegmented[0]["evidence"]["previous_ticket_volume"] == [10, 12, 8, 10]
    assert unsegmented[0]["evidence"]["threshold"] == 14.2426
    assert fired(tmp_path, _volumes({**history, 5: 14}), "volume_spike", date(2026, 5, 1), date(2026, 6, 1), june) == []
    # With one earlier period: more than 50 % above it; with none (the data starts here): never.
    assert fired(tmp_path, _volumes({2: 10, 3: 16}), "volume_spike")
    assert fired(tmp_path, _volumes({2: 10, 3: 15}), "volume_spike") == []
    assert fired(tmp_path, _volumes({3: 100}), "volume_spike") == []


def test_compute_stores_the_diagnostics(tmp_path: Path) -> None:
    store = make_store(tmp_path, _volumes({2: 10, 3: 16}))
    compute(store, SETTINGS, date(2026, 2, 1), date(2026, 4, 1), grains=["month"], segments=[[]], now=NOW)
    stored = store.db.execute("SELECT diagnostic, period_start, segment FROM kpi_diagnostics").fetchall()
    assert ("volume_spike", "2026-03-01", "{}") in stored
    assert set(DIAGNOSTIC_IDS) == {"fast_reply_slow_resolution", "csat_hides_unanswered", "nps_lags_csat",
                                   "closed_but_unhappy", "coverage_gap_by_language", "volume_spike"}
