"""Reading the KPIs as an operator does (issue 16): numbers never stale, a running period compared like for like,
a scorecard that reads at a glance, segments as a pivot with a minimum sample, diagnostics as sentences.

The CLI runs as a subprocess against a sandbox synced over loopback, or against a hand-built store whose dates
are placed around today (the CLI reads the real clock).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from kpi_fixtures import Data, make_store, ts

from connectors.sandbox import Sandbox
from kpi_core import surveys
from kpi_core.kpis.api import kpi_rows, refresh, stale_reasons
from kpi_core.kpis.context import Context
from kpi_core.kpis.diagnostics import diagnose
from kpi_core.kpis.periods import Grain, period_containing
from kpi_core.kpis.scorecard import format_diagnostics, format_scorecard
from kpi_core.settings import KpiSettings, load_settings
from kpi_core.store import open_store

pytestmark = pytest.mark.sandbox(seed=5, tickets=120, names=("zendesk",))
ROOT = Path(__file__).resolve().parent.parent
# What `compute` (and so each refresh) keeps up to date, kept small so that the tests stay fast.
SMALL = '[kpis]\nperiods = ["month"]\nsegments = [[]]\nhistory_months = 2\n'


def run(config: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("HELPDESK_KPI_")}
    full_env.update(env or {})
    result = subprocess.run([sys.executable, "-m", "kpi_core.cli", *args, "--config", str(config)],
                            capture_output=True, text=True, env=full_env, cwd=ROOT, timeout=120)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def as_json(config: Path, *args: str, env: dict[str, str] | None = None) -> list[dict[str, Any]]:
    result = run(config, *args, "--format", "json", env=env)
    assert result.returncode == 0, result.stderr
    found: list[dict[str, Any]] = json.loads(result.stdout)
    return found


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


# --- 1. numbers never stale ----------------------------------------------------------------------

WIDE = ("--since", "2000-01-01", "--kpi", "ticket_volume,nps_responses")


@pytest.fixture(scope="module")
def synced(module_sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory
           ) -> tuple[Path, dict[str, Any]]:
    """A config for the sandbox, read once before the first sync (its values then), then synced."""
    tmp = tmp_path_factory.mktemp("synced")
    config = tmp / "helpdesk-kpi.toml"
    config.write_text(module_sandbox.config_toml(str(tmp / "store.sqlite")) + "\n" + SMALL)
    config.chmod(0o600)
    before = {r["kpi"]: r["value"] for r in as_json(config, "kpis", *WIDE)}
    assert run(config, "sync").returncode == 0
    return config, before


def _import_nps(config: Path, scores: tuple[int, ...]) -> None:
    """Answers of today through the survey import itself (the CLI's own path, without a subprocess)."""
    path = config.parent / "more.csv"
    today = datetime.now(timezone.utc).date().isoformat()
    path.write_text("score,responded_at\n" + "".join(f"{s},{today}\n" for s in scores))
    store = open_store(load_settings(config).store.path)
    try:
        surveys.import_csv(store, path, kind="nps", scale="0-10")
    finally:
        store.close()


def test_kpis_reasons_diagnose_and_report_read_fresh_numbers_without_compute(
        synced: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    config, before = synced
    assert before == {"ticket_volume": 0, "nps_responses": 0}  # before the first sync: nothing yet
    after = {r["kpi"]: r["value"] for r in as_json(config, "kpis", *WIDE)}  # after `sync`, no `compute`
    settings = load_settings(config)
    store = open_store(settings.store.path)
    contacts = store.db.execute("SELECT count(*) FROM contacts WHERE status NOT IN ('deleted', 'merged')"
                                ).fetchone()[0]
    assert after["ticket_volume"] == contacts > 0
    # A survey import fires the change marks too: the next read counts its answers.
    today = datetime.now(timezone.utc).date()
    answers = tmp_path / "nps.csv"
    answers.write_text("score,responded_at\n" + "".join(f"{s},{today.isoformat()}\n" for s in (10, 9, 7, 3, 0)))
    assert run(config, "surveys", "import", str(answers), "--kind", "nps", "--scale", "0-10").returncode == 0
    assert stale_reasons(Context(store, settings.kpis)) == ["days changed"]
    assert {r["kpi"]: r["value"] for r in as_json(config, "kpis", *WIDE)}["nps_responses"] == 5
    assert stale_reasons(Context(store, settings.kpis)) == []
    assert refresh(store, settings) is False  # nothing changed since: cheap, no compute
    # reasons, diagnose and report bring the values up to date as well.
    for score, command in enumerate((("reasons",), ("diagnose",), ("report", "--out", str(tmp_path / "r.html")))):
        _import_nps(config, (score + 4,))
        assert stale_reasons(Context(store, settings.kpis))
        assert run(config, *command).returncode == 0, command
        assert stale_reasons(Context(store, settings.kpis)) == [], command
    store.close()


# --- 2. a running period compared like for like -----------------------------------------------------

@pytest.fixture(scope="module")
def around_today(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A store with contacts in this month and the previous one, placed by today's date, and an operating cost
    for both months; with the expectations of a like-for-like comparison."""
    tmp = tmp_path_factory.mktemp("around_today")
    now = datetime.now(timezone.utc)
    month = period_containing(now.date(), Grain.MONTH)
    previous = month.previous()
    so_far = (now.date() - month.start).days + 1
    d = Data()
    at = datetime.combine(month.start, datetime.min.time(), timezone.utc)
    for i in range(3):
        d.contact(f"now{i}", _stamp(at + timedelta(minutes=i)), channel="chat", reply=1)
    earlier = datetime.combine(previous.start, datetime.min.time(), timezone.utc)
    offsets = [0, 0, 27, 27, 27]  # days into the previous month
    for i, offset in enumerate(offsets):
        d.contact(f"before{i}", _stamp(earlier + timedelta(days=offset, hours=1)), channel="chat", reply=1)
    make_store(tmp, d).close()
    config = tmp / "helpdesk-kpi.toml"
    config.write_text(
        f'[store]\npath = "{tmp / "kpi.sqlite"}"\n\n[kpis]\nperiods = ["month"]\nsegments = [[]]\nmin_n = 1\n\n'
        + "".join(f'[[kpis.inputs]]\nkind = "operating_cost"\nstart = "{p.start}"\nend = "{p.end}"\n'
                  f"value = {100.0 * p.days}\n\n" for p in (previous, month)))
    expected = {"month": month, "previous": previous, "so_far": so_far,
                "to_date": so_far < previous.days,
                "previous_volume": sum(1 for o in offsets if o < so_far) if so_far < previous.days else 5}
    return config, expected


def test_a_running_month_is_compared_with_the_same_days_of_the_previous_one(
        around_today: tuple[Path, dict[str, Any]]) -> None:
    config, expected = around_today
    month, previous, so_far = expected["month"], expected["previous"], expected["so_far"]
    if not expected["to_date"]:
        pytest.skip("today is past the previous month's length: the whole previous month is the comparison")
    rows = {r["kpi"]: r for r in as_json(config, "kpis", "--kpi", "ticket_volume,cost_per_interaction")}
    span = {"period_start": previous.start.isoformat(),
            "period_end": (previous.start + timedelta(days=so_far)).isoformat(), "to_date": True}
    volume = rows["ticket_volume"]
    assert volume["period_start"] == month.start.isoformat() and volume["value"] == 3
    assert volume["compared_with"] == {**span, "value": expected["previous_volume"]}
    # The month's cost cut to the days so far: 100 a day.
    cost = rows["cost_per_interaction"]
    assert cost["prorated"] is True and cost["value"] == pytest.approx(100.0 * so_far / 3, abs=1e-3)
    table = run(config, "kpis").stdout
    assert f"running: {so_far} of {month.days} days so far" in table
    assert f"vs first {so_far} days before" in table
    assert "Cost per interaction (prorated)" in table and "counts for the days so far only" in table
    change = expected["previous_volume"] and 3 - expected["previous_volume"]
    volume_line = next(line for line in table.splitlines() if line.strip().startswith("Ticket volume"))
    assert volume_line.rstrip().endswith(f"{change:+d}" if change else "0")
    csv_text = run(config, "kpis", "--format", "csv").stdout
    assert f"{span['period_start']},{span['period_end']},true" in csv_text
    reasons = run(config, "reasons").stdout
    assert "running:" in reasons or "No contact reasons" in reasons


def test_a_closed_month_is_compared_with_the_whole_previous_month(around_today: tuple[Path, dict[str, Any]]
                                                                  ) -> None:
    config, expected = around_today
    previous = expected["previous"]
    rows = as_json(config, "kpis", "--period", "month", "--since", previous.start.isoformat(), "--until",
                   previous.end.isoformat(), "--kpi", "ticket_volume")
    assert rows[0]["value"] == 5 and "prorated" not in rows[0]
    assert rows[0]["compared_with"]["to_date"] is False
    assert rows[0]["compared_with"]["period_end"] == previous.start.isoformat()


# --- 4. a scorecard that reads at a glance -------------------------------------------------------------

def _row(kpi: str, value: float | None, unit: str, target: Any = None, status: str = "info",
         segment: dict[str, Any] | None = None, n: int = 100) -> dict[str, Any]:
    return {"kpi": kpi, "period_start": "2026-11-01", "period_end": "2026-12-01", "segment": segment or {},
            "value": value, "unit": unit, "numerator": None, "denominator": None, "n": n, "target": target,
            "status": status}


def _previous(row: dict[str, Any], value: float) -> dict[str, Any]:
    return {**row, "period_start": "2026-10-01", "period_end": "2026-11-01", "value": value}


def test_scorecard_decimals_units_wrapping_and_the_channel_summary() -> None:
    touches = _row("agent_touches_avg", 1.66, "count")
    frt_bh = _row("first_response_time_p90_bh", 0.2, "minutes")
    resolution = _row("resolution_time_median", 2.9, "hours", 12.0, "ok")
    csat = _row("csat_pct", 91.234, "%", 90.0, "ok")
    mixed = _row("first_response_time_avg", 174.0, "minutes")
    channels = [_row("first_response_time_median", v, "minutes", t, s, {"channel": c}) for c, v, t, s in (
        ("chat", 1.2, 2.0, "ok"), ("messaging", 1.9, 2.0, "ok"), ("phone", 37 / 60, 0.5, "breach"),
        ("email", 300.0, 1440.0, "ok"), ("web_form", 200.0, 1440.0, "ok"), ("social", 60.0, 1440.0, "ok"),
        ("api", 10.0, 1440.0, "low_n"))]
    rows = [touches, frt_bh, resolution, csat, mixed, _row("first_response_time_median", 71.8, "minutes")]
    before = [_previous(touches, 1.85), _previous(resolution, 4.2), _previous(csat, 90.0), _previous(mixed, 90.0)]
    text = format_scorecard(rows, before, channels)
    lines = text.splitlines()
    assert all(len(line) <= 100 for line in lines)
    line = next(x for x in lines if "Touches per resolution" in x)
    assert "1.66" in line and "-0.19 (better)" in line
    assert "91.2 %" in next(x for x in lines if x.strip().startswith("CSAT"))
    # The full label, wrapped: nothing cut off.
    assert "(business" in text and "hours)" in text and "12 s" in text
    # One unit per row: value, target and change of resolution time all in hours; minutes above 90 in hours.
    res = next(x for x in lines if "Median resolution time" in x)
    assert "2.9 h" in res and "<= 12.0 h" in res and "-1.3 h (better)" in res
    avg = next(x for x in lines if "Average first response time" in x)
    assert "2.9 h" in avg and "+1.4 h (worse)" in avg and "min" not in avg
    summary = next(x for x in lines if "First response by channel" in x)
    assert "5 of 6 on target - phone 37 s > 30 s" in summary and "too few contacts to judge: api" in summary


def test_business_hours_rows_only_with_a_schedule(tmp_path: Path) -> None:
    d = Data()
    d.contact("a", ts(10), channel="chat", reply=1, resolved=2)
    store = make_store(tmp_path, d)
    now = datetime(2026, 4, 20, tzinfo=timezone.utc)
    plain = kpi_rows(store, KpiSettings(), "month", date(2026, 3, 1), date(2026, 4, 1), now=now)
    assert plain and not [r for r in plain if r["kpi"].endswith("_bh")]
    hours = {"office": {"hours": {d: ["09:00-17:00"] for d in ("mon", "tue", "wed", "thu", "fri")}}}
    scheduled = kpi_rows(store, KpiSettings(business_hours=hours), "month", date(2026, 3, 1), date(2026, 4, 1),
                         now=now)
    assert [r for r in scheduled if r["kpi"].endswith("_bh")]
    store.close()


# --- 5. segments as a pivot, min_n, diagnostics as sentences --------------------------------------------

def test_segments_pivot_with_n_low_n_and_empty_segments_hidden(synced: tuple[Path, dict[str, Any]]) -> None:
    config, _ = synced
    since = ("--since", "2000-01-01")
    table = run(config, "kpis", *since, "--by", "channel,language")
    assert table.returncode == 0
    lines = table.stdout.splitlines()
    assert "KPI scorecard" not in table.stdout and len(lines) < 150
    assert lines[0].startswith("KPIs by channel, language") and "empty left out" in lines[0]
    assert "CSAT" in table.stdout and lines[3].split()[:4] == ["channel", "/", "language", "n"]
    only_csat = run(config, "kpis", *since, "--by", "channel,language", "--kpi", "csat_pct").stdout.splitlines()
    body = [line for line in only_csat[3:] if line.startswith("  ") and "/" in line]
    assert body and all(not line.rstrip().endswith(" -") for line in body)  # segments without CSAT hidden
    rows = as_json(config, "kpis", *since, "--by", "channel")
    for r in rows:
        if r["value"] is not None and r["n"] is not None and r["n"] < 20 and r["kpi"] not in (
                "ticket_volume", "backlog", "csat_responses", "nps_responses", "language_coverage"):
            assert r["status"] == "low_n", r
    assert any(r["status"] == "low_n" for r in rows)
    judged = as_json(config, "kpis", *since, "--by", "channel", env={"HELPDESK_KPI_KPIS__MIN_N": "1"})
    assert not any(r["status"] == "low_n" for r in judged)
    csv_text = run(config, "kpis", *since, "--by", "channel", "--format", "csv").stdout
    assert ",low_n," in csv_text
    computed = run(config, "compute")
    assert "diagnostics firing this month" in computed.stdout


def _closed_but_unhappy() -> Data:
    d = Data()
    for i in range(3):  # resolved fast, rated bad: closed_but_unhappy fires at min_n 1
        d.contact(f"c{i}", ts(3 + i), channel="chat", reply=1, resolved=1)
        d.survey(f"s{i}", "csat", 0 if i else 1, "good_bad", ts(4 + i), contact=f"c{i}")
    return d


def test_no_diagnostic_fires_on_too_few_contacts_and_the_rest_read_as_sentences(tmp_path: Path) -> None:
    store = make_store(tmp_path, _closed_but_unhappy())
    now = datetime(2026, 4, 20, tzinfo=timezone.utc)
    found = diagnose(store, KpiSettings(min_n=1), date(2026, 3, 1), date(2026, 4, 1), now=now)
    unhappy = [x for x in found if x["diagnostic"] == "closed_but_unhappy" and not x["segment"]]
    assert unhappy
    assert diagnose(store, KpiSettings(), date(2026, 3, 1), date(2026, 4, 1), now=now) == []  # min_n 20
    text = format_diagnostics(unhappy)
    assert "2026-03-01 .. 2026-04-01, all contacts: Resolution time meets target" in text
    assert "Figures: Median resolution time 60.0 min; CSAT of contacts resolved in the period 33.3 %" in text
    assert "None" not in text and "33.3333" not in text and "=" not in text
    store.close()
