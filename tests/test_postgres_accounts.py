"""Two accounts of one PostgreSQL store read side by side: `kpis --account`, `report --account` and the
`all_accounts` views."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from chromium import DevTools
from store_compare import server_config

from connectors.sandbox import Sandbox
from kpi_core.cli import main

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
KPIS = '\n[kpis]\nperiods = ["month"]\nsegments = [[], ["channel"]]\nhistory_months = 2\n'


def _account(box: Sandbox, tmp_path: Path, url: str, account: str) -> Path:
    lite = tmp_path / f"{account}-sqlite.toml"
    lite.write_text(box.config_toml(str(tmp_path / f"{account}.sqlite")) + KPIS)
    config = server_config(lite, url, account)
    assert main(["sync", "--config", str(config)]) == 0
    assert main(["compute", "--config", str(config)]) == 0
    return config


def test_kpis_of_every_account_side_by_side(make_sandbox: Callable[..., Sandbox], tmp_path: Path, pg_url: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    one = _account(make_sandbox(seed=41, tickets=30, names=("zendesk",)), tmp_path, pg_url, "brand-a")
    _account(make_sandbox(seed=42, tickets=50, names=("zendesk",)), tmp_path, pg_url, "brand-b")
    capsys.readouterr()
    alone = []
    for account in ("brand-a", "brand-b"):  # each account's own reading, for the comparison
        config = tmp_path / f"{account}.toml"
        assert main(["kpis", "--config", str(config), "--kpi", "ticket_volume", "--format", "json"]) == 0
        alone.append(json.loads(capsys.readouterr().out))
    assert main(["kpis", "--config", str(one), "--account", "all", "--kpi", "ticket_volume", "--format", "json"]) == 0
    together = json.loads(capsys.readouterr().out)
    by_account = {r["segment"]["account"]: r["value"] for r in together}
    assert by_account == {"brand-a": alone[0][0]["value"], "brand-b": alone[1][0]["value"]}  # as configured
    assert by_account["brand-a"] != by_account["brand-b"]
    assert main(["kpis", "--config", str(one), "--account", "brand-b"]) == 0
    assert "|  account=brand-b" in capsys.readouterr().out
    assert main(["kpis", "--config", str(one), "--account", "brand-z"]) == 2
    assert "no account brand_z" in capsys.readouterr().err
    with psycopg.connect(pg_url) as bi:  # the same values, as a BI tool reads them
        volumes = dict(bi.execute("SELECT account, value FROM all_accounts.kpi_values WHERE kpi = 'ticket_volume'"
                                  " AND grain = 'month' AND by_key = '' AND period_start = %s",
                                  [together[0]["period_start"]]).fetchall())
    assert volumes == by_account


def test_account_is_refused_on_a_sqlite_store(module_sandbox: Sandbox, config_for: Callable[..., Path],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["kpis", "--config", str(config_for(module_sandbox)), "--account", "all"]) == 2
    assert "PostgreSQL store" in capsys.readouterr().err


def test_report_of_every_account_side_by_side(make_sandbox: Callable[..., Sandbox], tmp_path: Path, pg_url: str,
                                              capsys: pytest.CaptureFixture[str], browser: DevTools) -> None:
    one = _account(make_sandbox(seed=43, tickets=60, names=("zendesk",)), tmp_path, pg_url, "brand-a")
    _account(make_sandbox(seed=44, tickets=90, names=("zendesk",)), tmp_path, pg_url, "brand-b")
    capsys.readouterr()
    columns = ["ticket_volume", "first_response_time_median", "resolution_time_median", "csat_pct", "backlog"]
    assert main(["kpis", "--config", str(one), "--account", "all", "--period", "month", "--kpi", ",".join(columns),
                 "--format", "json"]) == 0
    stored = {(r["segment"]["account"], r["kpi"]): r["value"] for r in json.loads(capsys.readouterr().out)}
    out = tmp_path / "accounts.html"
    assert main(["report", "--config", str(one), "--account", "all", "--out", str(out)]) == 0
    assert "(2 accounts; month" in capsys.readouterr().out
    page = out.read_text(encoding="utf-8")
    shown = {}
    for account, row in re.findall(r'<tr data-account="([^"]+)">(.*?)</tr>', page, re.S):
        for kpi, value in re.findall(r'data-kpi="([^"]+)" data-value="([^"]*)"', row):
            shown[(account, kpi)] = json.loads(value.replace("&#34;", '"'))
    assert {a for a, _ in shown} == {"brand-a", "brand-b"}
    for key, value in stored.items():  # the page shows what each account's daemon stored
        assert shown[key] == (pytest.approx(value) if value is not None else None)
    busiest = max(("brand-a", "brand-b"), key=lambda a: stored.get((a, "ticket_volume")) or 0)
    assert page.index(f'<tr data-account="{busiest}">') < page.index('<tr data-account="brand-') + 30  # first row
    assert len(re.findall(r'<tr data-account="[^"]+" data-source="zendesk" data-state="ok">', page)) == 2

    session, url = browser.open_page(out)
    ARTIFACTS.mkdir(exist_ok=True)
    browser.screenshot(session, ARTIFACTS / "report-accounts.png")
    assert browser.problems(session) == []
    assert browser.requests(session) == [url]  # self-contained: the file and nothing else
    legends = browser.evaluate("[...document.querySelectorAll('svg.chart-svg')].map(s => s.textContent)", session)
    assert len(legends) == 5 and all("brand-a" in text and "brand-b" in text for text in legends)


def test_report_of_accounts_is_refused_on_a_sqlite_store(module_sandbox: Sandbox, config_for: Callable[..., Path],
                                                         tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "accounts.html"
    assert main(["report", "--config", str(config_for(module_sandbox)), "--account", "all", "--out", str(out)]) == 2
    assert "PostgreSQL store" in capsys.readouterr().err and not out.exists()
