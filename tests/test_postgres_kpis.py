"""The KPI engine on a PostgreSQL store (kpi_core/postgres/) gives what it gives on SQLite, value for value.

The sandbox's helpdesks and shop are synced into a SQLite store and into a PostgreSQL account; both are
computed at the same moment under settings with business hours, targets, markets and an order feed, and every
fact, value and diagnostic must be the same. Then the sandbox's helpdesks change, both stores sync again, and an
incremental compute must redo the same few contacts and periods on both and leave the same values.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from pg_server import PgServer
from store_compare import server_config, tables

from connectors.sandbox import Sandbox
from kpi_core.cli import main
from kpi_core.kpis.api import ComputeSummary, compute
from kpi_core.settings import Settings, load_settings
from kpi_core.store import open_store

ACCOUNT = "brand-k"
SETTINGS = """
[privacy]
hash_key = "a-test-key-of-thirty-two-characters!"

[kpis]
periods = ["day", "week", "month"]
segments = [[], ["channel"], ["market"], ["source"]]
history_months = 6
min_n = 1

[kpis.targets]
csat_pct = 90.0

[kpis.targets.channel.chat]
first_response_time_median = 2.0

[[kpis.markets]]
name = "DACH"
countries = ["DE", "AT", "CH"]

[kpis.business_hours.office]
time_zone = "Europe/Berlin"
hours.mon = ["09:00-17:00"]
hours.tue = ["09:00-17:00"]
hours.wed = ["09:00-17:00"]
hours.thu = ["09:00-17:00"]
hours.fri = ["08:30-12:00", "13:00-16:00"]
holidays = ["2026-12-24", "2026-12-25"]
"""
# What the engine writes, by table, with the columns compared (those holding the moment of computing aside).
ENGINE_TABLES = ("kpi_facts", "kpi_values", "kpi_diagnostics", "kpi_computed", "kpi_facts_changes", "kpi_dirty_days",
                 "kpi_dirty_contacts")


@dataclass
class Stores:
    sandbox: Sandbox
    lite: Settings
    server: Settings
    lite_config: Path
    server_config: Path
    url: str
    first: tuple[ComputeSummary, ComputeSummary]


def _compute_both(stores: Stores, now: datetime) -> tuple[ComputeSummary, ComputeSummary]:
    found = []
    for settings in (stores.lite, stores.server):
        store = open_store(settings.store.location, settings.store.account)
        try:
            found.append(compute(store, settings, now=now))
        finally:
            store.close()
    return found[0], found[1]


def _sync_both(stores: Stores) -> None:
    for config in (stores.lite_config, stores.server_config):
        assert main(["sync", "--config", str(config)]) == 0


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory, pg_server: PgServer) -> Iterator[Stores]:
    workdir = tmp_path_factory.mktemp("pg-kpis")
    sandbox = Sandbox.generate(seed=11, tickets=60)
    sandbox.start()
    try:
        with pg_server.database("kpis") as url:
            lite_config = workdir / "helpdesk-kpi.toml"
            lite_config.write_text(sandbox.config_toml(str(workdir / "store.sqlite"), start_date="2000-01-01")
                                   + SETTINGS)
            lite_config.chmod(0o600)
            config = server_config(lite_config, url, ACCOUNT)
            found = Stores(sandbox, load_settings(lite_config), load_settings(config), lite_config, config, url,
                           first=(ComputeSummary(), ComputeSummary()))
            _sync_both(found)
            found.first = _compute_both(found, datetime.now(timezone.utc).replace(microsecond=0))
            yield found
    finally:
        sandbox.stop()


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return bool(a == b)


def _assert_engine_tables_equal(stores: Stores) -> dict[str, int]:
    """Every row the engine wrote is on both stores (floats to 1e-9); returns the row count per table."""
    counted = {}
    for table, (on_lite, on_server) in tables(Path(str(stores.lite.store.path)), stores.url, ACCOUNT).items():
        if table not in ENGINE_TABLES:
            continue
        assert len(on_lite) == len(on_server), table
        for lite_row, server_row in zip(on_lite, on_server, strict=True):
            assert all(_same(a, b) for a, b in zip(lite_row, server_row, strict=True)), (table, lite_row, server_row)
        counted[table] = len(on_lite)
    return counted


def test_compute_stores_the_same_facts_values_and_diagnostics(stores: Stores) -> None:
    lite, server = stores.first
    assert (server.values_written, server.periods_computed, server.contacts_refreshed) == (
        lite.values_written, lite.periods_computed, lite.contacts_refreshed)
    counted = _assert_engine_tables_equal(stores)
    assert counted["kpi_facts"] > 50 and counted["kpi_values"] > 5000
    with sqlite3.connect(stores.lite.store.path) as lite_db:
        # What the comparison covered: business hours, markets, orders matched to contacts, diagnostics.
        scheduled, markets, matched = lite_db.execute(
            "SELECT count(frt_bh_s), count(DISTINCT market), sum(shop_matched) FROM kpi_facts").fetchone()
        bh_values = lite_db.execute("SELECT count(*) FROM kpi_values WHERE kpi LIKE '%\\_bh' ESCAPE '\\'"
                                    " AND value IS NOT NULL").fetchone()[0]
    assert scheduled > 20 and markets > 1 and matched > 0 and bh_values > 10
    # The account's columnar copy lives beside `[store] path`, named after the account (docs/postgresql.md).
    assert Path(f"{stores.server.store.path}.brand_k.columns").is_file()


def test_the_reading_commands_print_the_same(stores: Stores, capsys: pytest.CaptureFixture[str]) -> None:
    printed = {}
    for name, config in (("lite", stores.lite_config), ("server", stores.server_config)):
        capsys.readouterr()
        assert main(["kpis", "--config", str(config), "--format", "json", "--by", "channel"]) == 0
        rows = json.loads(capsys.readouterr().out)
        assert main(["diagnose", "--config", str(config), "--since", "2000-01-01", "--format", "json"]) == 0
        diagnosed = json.loads(capsys.readouterr().out)
        assert main(["reasons", "--config", str(config), "--since", "2000-01-01", "--format", "json"]) == 0
        reasons = json.loads(capsys.readouterr().out)
        assert main(["reasons", "--config", str(config), "--since", "2000-01-01", "--refunded-skus",
                     "--format", "json"]) == 0
        refunded = json.loads(capsys.readouterr().out)
        printed[name] = (rows, diagnosed, reasons, refunded)
    assert printed["server"] == printed["lite"]
    rows, diagnosed, reasons, refunded = printed["lite"]
    assert len(rows) > 20 and diagnosed and reasons and refunded
    # The report stores what it computes on the way (as reading does): made from both, so both stay alike.
    for config in (stores.lite_config, stores.server_config):
        report = config.with_suffix(".html")
        assert main(["report", "--config", str(config), "--out", str(report)]) == 0
        assert "First response" in report.read_text()


def test_an_incremental_compute_after_a_second_sync_redoes_the_same_on_both(stores: Stores) -> None:
    changed = stores.sandbox.world.mutate("zendesk", 4) + stores.sandbox.world.add_tickets("intercom", 2)
    _sync_both(stores)
    lite, server = _compute_both(stores, datetime.now(timezone.utc).replace(microsecond=0))
    assert not lite.rebuilt_everything and not server.rebuilt_everything
    # Only the changed contacts (and their requesters' others) were rebuilt, only the periods they touch redone.
    assert len(changed) <= lite.contacts_refreshed < stores.first[0].contacts_refreshed / 2
    assert lite.periods_computed == 0 and lite.periods_partly > 0
    assert 0 < lite.values_written < stores.first[0].values_written / 2
    assert (server.contacts_refreshed, server.contacts_changed, server.periods_computed, server.periods_partly,
            server.values_written) == (lite.contacts_refreshed, lite.contacts_changed, lite.periods_computed,
                                       lite.periods_partly, lite.values_written)
    _assert_engine_tables_equal(stores)


def test_the_date_arithmetic_and_scalar_max_read_the_same_on_a_server(pg_url: str) -> None:
    """The translations the facts and periods rely on (tests/test_postgres_translate.py), on a real server."""
    sql = ("SELECT date(?), date(?, '+90 days'), date(?, 'weekday 0', '-6 days'), date(?, 'weekday 3'),"
           " max(unixepoch(?), 0), min(?, NULL)")
    server = open_store(pg_url, ACCOUNT)
    lite = sqlite3.connect(":memory:")
    try:
        moments = [(date(2026, 2, 20) + timedelta(days=i)).isoformat() + clock
                   for i in range(21) for clock in ("", "T00:00:00Z", "T23:59:59Z")]
        for moment in moments:
            assert tuple(server.db.execute(sql, [moment] * 6).fetchone()) == lite.execute(sql, [moment] * 6).fetchone()
    finally:
        server.close()
        lite.close()


def test_without_business_hours_or_orders_both_stores_agree(pg_url: str, tmp_path: Path) -> None:
    """The facts' other branches: no schedule (the *_bh_s columns empty) and no order feed."""
    contacts = [{"source": "zendesk", "source_id": str(i), "channel": ("email", "chat")[i % 2], "status": "solved",
                 "created_at": f"2026-03-{2 + i:02d}T09:00:00Z", "agent_replies": 1, "requester_id": f"r{i % 3}",
                 "first_agent_reply_at": f"2026-03-{2 + i:02d}T09:30:00Z",
                 "first_resolved_at": f"2026-03-{3 + i:02d}T10:00:00Z",
                 "last_resolved_at": f"2026-03-{3 + i:02d}T10:00:00Z"} for i in range(9)]
    lite_path = tmp_path / "plain.sqlite"
    now = datetime(2026, 4, 2, tzinfo=timezone.utc)
    for store in (open_store(lite_path), open_store(pg_url, ACCOUNT)):
        try:
            store.write_page("zendesk", "tickets", {"contacts": contacts}, None)
            assert compute(store, _plain_settings(tmp_path), now=now).values_written > 100
        finally:
            store.close()
    found = tables(lite_path, pg_url, ACCOUNT)
    for table in ("kpi_facts", "kpi_values", "kpi_diagnostics"):
        on_lite, on_server = found[table]
        assert len(on_lite) == len(on_server) and all(
            _same(a, b) for x, y in zip(on_lite, on_server, strict=True) for a, b in zip(x, y, strict=True)), table
    assert all(row[-1] is None for row in found["kpi_facts"][1])  # full_res_bh_s: no schedule


def _plain_settings(folder: Path) -> Settings:
    config = folder / "plain.toml"
    config.write_text('[kpis]\nperiods = ["month"]\nsegments = [[], ["channel"]]\nmin_n = 1\n')
    return load_settings(config)
