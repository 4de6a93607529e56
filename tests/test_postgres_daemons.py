"""Four daemons, four accounts, one PostgreSQL database: one is SIGKILLed mid-sync and restarted.

Each account's helpdesks are a sandbox of their own. At the end, every account holds exactly the rows
and KPI values of a separate SQLite run of the same sandbox: the kill lost and duplicated nothing, and
no daemon disturbed another.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import psycopg
from store_compare import BOOKKEEPING, assert_same_tables, server_config
from test_daemon import clean_env
from waiting import wait_until

from connectors.sandbox import Sandbox
from kpi_core.kpis.api import compute
from kpi_core.settings import load_settings
from kpi_core.store import account_schema, store_at
from kpi_core.sync import sync_all

CLI = [sys.executable, "-c", "import sys; from kpi_core.cli import main; sys.exit(main())"]
ACCOUNTS = ("brand-a", "brand-b", "brand-c", "brand-d")
# The daemon computes after each sync: this month's and last month's overall values keep it short.
KPIS = '\n[kpis]\nperiods = ["month"]\nsegments = [[], ["channel"]]\nhistory_months = 2\n'
NOW = datetime.now(timezone.utc).replace(microsecond=0)  # one moment for both stores' KPI values


def _pages_in(url: str, account: str) -> int:
    """Pages the account's running sync has stored so far (0 when none runs yet)."""
    with psycopg.connect(url) as conn:
        row = conn.execute(f'SELECT max(pages) FROM "{account_schema(account)}".sync_runs'
                           " WHERE status = 'running'").fetchone() if _has_runs(conn, account) else None
    return int(row[0] or 0) if row else 0


def _has_runs(conn: psycopg.Connection[tuple[object, ...]], account: str) -> bool:
    row = conn.execute("SELECT to_regclass(%s)", [f'"{account_schema(account)}".sync_runs']).fetchone()
    return row is not None and row[0] is not None


def test_four_daemons_write_one_database_and_a_killed_one_loses_nothing(
        make_sandbox: Callable[..., Sandbox], tmp_path: Path, pg_url: str) -> None:
    boxes = [make_sandbox(seed=31 + i, tickets=40, names=("zendesk", "intercom")) for i in range(len(ACCOUNTS))]
    lite, server = [], []
    for box, account in zip(boxes, ACCOUNTS, strict=True):
        config = tmp_path / f"{account}-sqlite.toml"
        config.write_text(box.config_toml(str(tmp_path / f"{account}.sqlite")) + KPIS)
        lite.append(config)
        server.append(server_config(config, pg_url, account))
    boxes[0]["zendesk"].slow(0.05, times=10_000)  # the first account's sync is slow: the kill lands mid-sync

    killed = subprocess.Popen([*CLI, "run", "--config", str(server[0])], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, env=clean_env())
    others = [subprocess.Popen([*CLI, "run", "--once", "--config", str(c)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True, env=clean_env()) for c in server[1:]]
    try:
        wait_until(lambda: _pages_in(pg_url, ACCOUNTS[0]) >= 3, 60, "the first daemon's sync three pages in")
        killed.send_signal(signal.SIGKILL)
        assert killed.wait(10) == -signal.SIGKILL
        for proc in others:
            _, errors = proc.communicate(timeout=120)
            assert proc.returncode == 0, errors
    finally:
        for proc in (killed, *others):
            if proc.poll() is None:
                proc.kill()
    boxes[0]["zendesk"].faults.clear()
    again = subprocess.run([*CLI, "run", "--once", "--config", str(server[0])], capture_output=True, text=True,
                           env=clean_env(), timeout=120)
    assert again.returncode == 0, again.stderr
    assert "interrupted" in _statuses(pg_url, ACCOUNTS[0])

    for account, lite_config, server_config_path in zip(ACCOUNTS, lite, server, strict=True):
        reference = load_settings(lite_config)
        with store_at(reference.store.location) as store:
            sync_all(store, reference)
        for config in (lite_config, server_config_path):  # both stores' KPI values at the same moment
            settings = load_settings(config)
            with store_at(settings.store.location, settings.store.account) as store:
                compute(store, settings, now=NOW, full=True)
        compared = assert_same_tables(tmp_path / f"{account}.sqlite", pg_url, account,
                                      skip=BOOKKEEPING | {"kpi_dirty_days", "kpi_dirty_contacts"})
        assert compared > 200, account


def _statuses(url: str, account: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(f'SELECT status FROM "{account_schema(account)}".sync_runs').fetchall()
    return {r[0] for r in rows}
