"""Two accounts of one PostgreSQL store read side by side: `kpis --account` and the `all_accounts` views."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from store_compare import server_config

from connectors.sandbox import Sandbox
from kpi_core.cli import main

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
    assert by_account == {"brand_a": alone[0][0]["value"], "brand_b": alone[1][0]["value"]}
    assert by_account["brand_a"] != by_account["brand_b"]
    assert main(["kpis", "--config", str(one), "--account", "brand-b"]) == 0
    assert "|  account=brand_b" in capsys.readouterr().out
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
