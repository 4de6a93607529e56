"""KPI values of many accounts of a PostgreSQL store, side by side (`kpis --account all`).

Each account's daemon computes its own values, under its own settings (targets, time zone, business
hours), into its own schema. Reading them together computes nothing and writes nothing in the other
accounts: it reads what each stored, as its daemon left it, and adds the account to each row's
segment, so the scorecard shows one block per account and a pivot a row per account.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from kpi_core.kpis import periods as P
from kpi_core.kpis import values
from kpi_core.kpis.context import Context, kpi_settings
from kpi_core.kpis.segments import parse
from kpi_core.settings import Settings
from kpi_core.store import Store, open_store


def stored_rows(store: Store, settings: Settings, period: str | None, since: date | None, until: date | None,
                by: list[str] | None, kpi_ids: list[str] | None, now: datetime | None = None
                ) -> list[dict[str, Any]]:
    """The values `store` holds for the request, as the interface's rows; nothing computed or written."""
    ctx = Context(store, kpi_settings(settings), now or datetime.now().astimezone())
    wanted = P.resolve(period, since, until, ctx.now, ctx.zone)
    seg = parse(by, ctx.settings)
    return values.read(ctx, wanted[0].grain, seg.key, wanted, kpi_ids, ctx.hours.configured)


def across(url: str, schemas: list[str], settings: Settings, period: str | None, since: date | None,
           until: date | None, by: list[str] | None, kpi_ids: list[str] | None) -> list[dict[str, Any]]:
    """Every named account's stored rows, each row's segment led by its `account`."""
    rows: list[dict[str, Any]] = []
    for schema in schemas:
        store = open_store(url, schema)
        try:
            for row in stored_rows(store, settings, period, since, until, by, kpi_ids):
                row["segment"] = {"account": schema, **row["segment"]}
                rows.append(row)
        finally:
            store.close()
    return rows
