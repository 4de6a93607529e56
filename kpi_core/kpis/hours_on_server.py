"""The business-hours facts of a PostgreSQL store, computed in Python beside the SQL that builds the rest.

On SQLite the facts' statement calls the business clock (business_hours.py) as the SQL function
`kpi_bh`. A PostgreSQL server runs SQL where Python cannot be called, and a second clock written in
PL/pgSQL would be a second definition of business time to keep equal to the first. So on a server
the statement leaves the three `*_bh_s` columns empty, and `fill` reads the rows it built, asks the
same clock, and writes the seconds back: the values are those SQLite stores, by construction.

Each is the clock between two instants the row already holds: the reply is `start_epoch + frt_s`
(frt_s is the reply's distance from the start, 0 when the reply came first, which the clock also
counts as 0; NULL exactly when the SQL's reply or start is), the full resolution `created_epoch +
full_res_s` likewise, and the first resolution is `first_resolved_epoch` itself.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any

from kpi_core.kpis.business_hours import BusinessHours
from kpi_core.kpis.context import copy_rows, stream_rows

_CHUNK = 50_000  # rows read, turned into business seconds and written back at a time
BH_COLUMNS = ("frt_bh_s", "res_bh_s", "full_res_bh_s")


def fill(conn: sqlite3.Connection, hours: BusinessHours, table: str) -> None:
    """Set the business-hours columns of every scheduled row of `table` (a temp table of facts, one row per
    contact), on a PostgreSQL store's connection."""
    conn.execute("DROP TABLE IF EXISTS temp.kf_bh")
    conn.execute("CREATE TEMP TABLE kf_bh (source TEXT, source_id TEXT, frt_bh_s INTEGER, res_bh_s INTEGER,"
                 " full_res_bh_s INTEGER)")
    scheduled = (f"SELECT source, source_id, schedule, start_epoch, frt_s, created_epoch, first_resolved_epoch,"
                 f" full_res_s FROM {table} WHERE schedule IS NOT NULL")
    for rows in stream_rows(conn, scheduled, _CHUNK):
        copy_rows(conn, "pg_temp.kf_bh", ("source", "source_id", *BH_COLUMNS), _seconds(hours, rows))
    conn.execute(f"UPDATE {table} SET frt_bh_s = b.frt_bh_s, res_bh_s = b.res_bh_s,"
                 f" full_res_bh_s = b.full_res_bh_s FROM kf_bh b"
                 f" WHERE {table}.source = b.source AND {table}.source_id = b.source_id")
    conn.execute("DROP TABLE temp.kf_bh")


def _seconds(hours: BusinessHours, rows: Sequence[Sequence[Any]]) -> Iterator[tuple[Any, ...]]:
    for source, source_id, schedule, start, frt, created, first_resolved, full_res in rows:
        yield (source, source_id,
               hours.seconds(schedule, start, _plus(start, frt)),
               hours.seconds(schedule, created, first_resolved),
               hours.seconds(schedule, created, _plus(created, full_res)))


def _plus(epoch: int | None, seconds: int | None) -> int | None:
    return None if epoch is None or seconds is None else epoch + seconds
