"""What the PostgreSQL tests compare: a SQLite store and a PostgreSQL account, table by table, row by row.

The SQLite store is the reference: the same program, synced from the same sandbox, must leave the same
rows in a PostgreSQL account (columns holding the moment of the run or a row's number aside).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import psycopg

from kpi_core.store import account_schema

# Columns whose values are the moment of the run (or a row's number), not what was read or computed.
RUN_TIME = frozenset({"id", "rowid", "seq", "updated_at", "started_at", "ended_at", "applied_at", "seen_at",
                      "computed_at", "recorded_at", "fetched_at", "rid"})
# Cursors and backfill positions of time-based reads hold the moment of the run: only which streams have one.
BY_RUN_TIME = frozenset({"cursors", "backfill_windows"})
# Bookkeeping of the KPI engine's columnar copy and of the run log, which differ by when and how often it ran.
BOOKKEEPING = frozenset({"kpi_columns_log", "kpi_columns_stale", "kpi_meta", "sync_runs"})


def server_config(config: Path, url: str, account: str, extra: str = "") -> Path:
    """A copy of a SQLite config (tests/conftest.py `config_for`) that stores in `account` at `url` instead."""
    text = config.read_text().replace("[store]\n", f'[store]\nurl = "{url}"\naccount = "{account}"\n', 1)
    server = config.with_name(f"{account}.toml")
    server.write_text(text + extra)
    server.chmod(0o600)
    return server


def tables(lite: Path, url: str, account: str, skip: frozenset[str] = BOOKKEEPING
           ) -> dict[str, tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]]:
    """Per table of the SQLite store: (its rows, the account's rows), sorted, run-time columns left out."""
    found: dict[str, tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]] = {}
    with sqlite3.connect(lite) as on_lite, psycopg.connect(url) as on_server:
        on_server.execute(f'SET search_path TO "{account_schema(account)}"')
        names = [r[0] for r in on_lite.execute("SELECT name FROM sqlite_master WHERE type = 'table'"
                                               " AND name NOT LIKE 'sqlite_%' ORDER BY name")]
        for table in names:
            if table in skip:
                continue
            columns = [r[1] for r in on_lite.execute(f"PRAGMA table_info([{table}])") if r[1] not in RUN_TIME]
            if table in BY_RUN_TIME:
                columns = columns[:2]
            listed = ", ".join(f'"{c}"' for c in columns)
            found[table] = (sorted(on_lite.execute(f"SELECT {listed} FROM [{table}]").fetchall(), key=repr),
                            sorted((tuple(r) for r in on_server.execute(f'SELECT {listed} FROM "{table}"')),
                                   key=repr))
    return found


def assert_same_tables(lite: Path, url: str, account: str, skip: frozenset[str] = BOOKKEEPING) -> int:
    """Every table holds the same rows on both stores; returns how many rows were compared."""
    compared = 0
    for table, (on_lite, on_server) in tables(lite, url, account, skip).items():
        missing = [r for r in on_lite if r not in on_server][:3]
        extra = [r for r in on_server if r not in on_lite][:3]
        twice = sorted({repr(r) for rows in (on_lite, on_server) for r in rows if rows.count(r) > 1})[:3]
        assert on_lite == on_server, (f"{table}: only in SQLite {missing}; only in PostgreSQL {extra};"
                                      f" held more than once {twice}; {len(on_lite)} rows against {len(on_server)}")
        compared += len(on_lite)
    return compared
