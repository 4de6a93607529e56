"""Business inputs (config and CSV, prorated, covered), contact reasons, and the scorecard/CSV/JSON output."""

from __future__ import annotations

import csv
import io
import json
from datetime import date
from pathlib import Path

import pytest
from kpi_fixtures import NOW, Data, make_store, rows, ts

from kpi_core import cli
from kpi_core.kpis.api import compute, import_inputs
from kpi_core.kpis.inputs import Input, Inputs, InputsError
from kpi_core.kpis.periods import Grain, Period
from kpi_core.kpis.reasons import top_reasons
from kpi_core.kpis.scorecard import format_scorecard, rows_to_csv
from kpi_core.settings import KpiSettings

MARCH = Period(date(2026, 3, 1), date(2026, 4, 1), Grain.MONTH)


def test_inputs_are_prorated_by_days_and_need_full_coverage() -> None:
    quarter = Input("orders", date(2026, 1, 1), date(2026, 4, 1), 900)
    assert Inputs([quarter]).amount("orders", MARCH, {}) == pytest.approx(900 * 31 / 90)
    half = Input("operating_cost", date(2026, 3, 1), date(2026, 3, 16), 100)
    assert Inputs([half]).amount("operating_cost", MARCH, {}) is None  # 15 of 31 days covered
    rest = Input("operating_cost", date(2026, 3, 16), date(2026, 4, 1), 200)
    assert Inputs([half, rest]).amount("operating_cost", MARCH, {}) == 300
    chat = Input("operating_cost", date(2026, 3, 1), date(2026, 4, 1), 50, segment="channel=chat")
    both = Inputs([half, rest, chat])
    assert both.amount("operating_cost", MARCH, {"channel": "chat"}) == 50
    assert both.amount("operating_cost", MARCH, {"channel": "email"}) is None  # no cost given for email
    orders = Inputs([quarter])
    assert orders.amount("orders", MARCH, {"channel": "email"}) == pytest.approx(310)  # orders apply to all
    hours = Inputs([Input("available_hours", date(2026, 3, 1), date(2026, 4, 1), 160, agent="zendesk:a1")])
    assert hours.available_seconds(MARCH) == {"zendesk:a1": 160 * 3600}


def _write_csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_csv_import_is_idempotent_and_names_bad_lines(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    good = _write_csv(tmp_path / "inputs.csv", "kind,start,end,value,agent,segment\n"
                      "operating_cost,2026-03-01,2026-04-01,1000,,\n"
                      "available_hours,2026-03-01,2026-04-01,160,zendesk:a1,\n")
    assert import_inputs(store, good) == 2
    assert import_inputs(store, good) == 2  # re-importing updates, never duplicates
    assert store.db.execute("SELECT count(*) FROM kpi_inputs").fetchone()[0] == 2
    bad = _write_csv(tmp_path / "bad.csv", "kind,start,end,value\noperating_cost,2026-03-01,2026-04-01,12\n"
                                           "salaries,2026-03-01,2026-04-01,5\n")
    with pytest.raises(InputsError, match=r"bad.csv: line 3: kind"):
        import_inputs(store, bad)
    backwards = _write_csv(tmp_path / "back.csv", "kind,start,end,value\norders,2026-04-01,2026-03-01,5\n")
    with pytest.raises(InputsError, match=r"line 2: .*end must be after start"):
        import_inputs(store, backwards)
    with pytest.raises(InputsError, match="missing column"):
        import_inputs(store, _write_csv(tmp_path / "cols.csv", "kind,value\norders,5\n"))


def test_csv_inputs_win_over_config_ones_and_feed_the_kpis(tmp_path: Path) -> None:
    d = Data()
    for i in range(4):
        d.contact(str(i), ts(2 + i))
    store = make_store(tmp_path, d)
    settings = KpiSettings(segments=[[]], periods=["month"],
                           inputs=[{"kind": "operating_cost", "start": "2026-03-01", "end": "2026-04-01",
                                    "value": 400}])
    compute(store, settings, date(2026, 3, 1), date(2026, 4, 1), now=NOW)
    assert rows(store, settings, kpis=["cost_per_interaction"])[0]["value"] == 100.0
    import_inputs(store, _write_csv(tmp_path / "i.csv", "kind,start,end,value\n"
                                                        "operating_cost,2026-03-01,2026-04-01,800\n"))
    compute(store, settings, date(2026, 3, 1), date(2026, 4, 1), now=NOW)
    assert rows(store, settings, kpis=["cost_per_interaction"])[0]["value"] == 200.0


def _reasons() -> Data:
    d = Data()
    for i, (tags, kind, sku) in enumerate([(["refund", "vip"], "incident", "A"), (["refund"], "question", "A"),
                                           (["shipping"], "question", "B"), ([], None, None)]):
        d.contact(f"m{i}", ts(5 + i), tags=tags, ticket_type=kind, custom={"sku": sku} if sku else {})
    d.contact("f0", ts(10, month=2), tags=["shipping"], ticket_type="question")
    d.contact("f1", ts(11, month=2), tags=["shipping", "refund"], ticket_type="question")
    return d


def test_top_reasons_by_tag_type_and_custom_field(tmp_path: Path) -> None:
    store = make_store(tmp_path, _reasons())
    settings = KpiSettings(reasons={"exclude": ["vip"]})
    by_tag = top_reasons(store, settings, date(2026, 3, 1), date(2026, 4, 1), now=NOW)
    # The previous period has March's length: 29 January to 1 March.
    assert [(r["reason"], r["volume"], r["share_pct"], r["previous_volume"], r["change_pct"]) for r in by_tag] == [
        ("refund", 2, 50.0, 1, 100.0), ("shipping", 1, 25.0, 2, -50.0)]
    by_type = top_reasons(store, settings, date(2026, 3, 1), date(2026, 4, 1), by="ticket_type", now=NOW)
    assert [(r["reason"], r["volume"]) for r in by_type] == [("question", 2), ("incident", 1)]
    by_sku = top_reasons(store, settings, date(2026, 3, 1), date(2026, 4, 1), by="custom.sku", limit=1, now=NOW)
    assert [(r["reason"], r["volume"], r["change_pct"]) for r in by_sku] == [("A", 2, None)]


def test_scorecard_groups_targets_status_and_change(tmp_path: Path) -> None:
    d = Data()
    d.contact("feb", ts(10, month=2), channel="chat", reply=4)
    d.contact("mar", ts(10), channel="chat", reply=1)
    d.survey("s", "csat", 0, "good_bad", ts(11), contact="mar")
    store = make_store(tmp_path, d)
    march = rows(store, by=["channel"])
    february = rows(store, by=["channel"], since=date(2026, 2, 1), until=date(2026, 3, 1))
    text = format_scorecard(march, february)
    assert text.index("SPEED") < text.index("RESOLUTION") < text.index("SATISFACTION") < text.index("COVERAGE")
    frt = next(line for line in text.splitlines() if line.strip().startswith("Median first response time"))
    assert "1.0 min" in frt and "<= 2.0 min" in frt and " ok " in frt and "-3.0 min (better)" in frt
    assert "channel=chat" in text
    assert format_scorecard([]).startswith("No KPI values")
    parsed = list(csv.DictReader(io.StringIO(rows_to_csv(march))))
    assert parsed[0].keys() == {"kpi", "period_start", "period_end", "segment", "value", "unit", "numerator",
                                "denominator", "n", "target", "status", "partial", "compared_start", "compared_end",
                                "to_date"}
    assert {r["partial"] for r in parsed} == {""}  # no purge: nothing is partial
    assert any(r["segment"] == "channel=chat" and r["kpi"] == "first_response_time_median" for r in parsed)


def _config(tmp_path: Path, store: Path) -> Path:
    path = tmp_path / "helpdesk-kpi.toml"
    path.write_text(f'[store]\npath = "{store}"\n\n[kpis]\nperiods = ["month"]\nsegments = [[], ["channel"]]\n')
    return path


def test_cli_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = Data()
    d.contact("a", ts(10), channel="chat", reply=1, tags=["refund"])
    make_store(tmp_path, d).close()
    config = str(_config(tmp_path, tmp_path / "kpi.sqlite"))
    assert cli.main(["compute", "--config", config, "--since", "2026-03-01", "--until", "2026-04-01"]) == 0
    assert "computed" in capsys.readouterr().out
    assert cli.main(["kpis", "--config", config, "--period", "month", "--since", "2026-03-01", "--until",
                     "2026-04-01", "--by", "channel", "--kpi", "first_response_time_median", "--format",
                     "json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found == [{"kpi": "first_response_time_median", "period_start": "2026-03-01", "period_end": "2026-04-01",
                      "segment": {"channel": "chat"}, "value": 1.0, "unit": "minutes", "numerator": None,
                      "denominator": None, "n": 1, "target": 2.0, "status": "low_n",  # 1 contact < min_n 20
                      "compared_with": {"period_start": "2026-02-01", "period_end": "2026-03-01", "to_date": False,
                                        "value": None}}]
    assert cli.main(["kpis", "--config", config, "--since", "2026-03-01", "--until", "2026-04-01"]) == 0
    assert "KPI scorecard" in capsys.readouterr().out
    assert cli.main(["kpis", "--config", config, "--kpi", "csat_percent"]) == 2
    assert "unknown KPI 'csat_percent'" in capsys.readouterr().err
    assert cli.main(["kpis", "--config", config, "--by", "colour"]) == 2
    assert cli.main(["diagnose", "--config", config, "--since", "2026-03-01", "--until", "2026-04-01",
                     "--format", "json"]) == 0
    assert isinstance(json.loads(capsys.readouterr().out), list)
    assert cli.main(["reasons", "--config", config, "--since", "2026-03-01", "--until", "2026-04-01"]) == 0
    assert "refund" in capsys.readouterr().out
    inputs = _write_csv(tmp_path / "inputs.csv", "kind,start,end,value\norders,2026-03-01,2026-04-01,10\n")
    assert cli.main(["inputs", "import", str(inputs), "--config", config]) == 0
    bad = _write_csv(tmp_path / "bad.csv", "kind,start,end,value\norders,2026-03-01,2026-04-01,ten\n")
    assert cli.main(["inputs", "import", str(bad), "--config", config]) == 2
    assert "line 2: value" in capsys.readouterr().err
