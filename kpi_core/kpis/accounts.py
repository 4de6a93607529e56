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
from kpi_core.store import Store, account_schema, open_store


class AccountError(ValueError):
    """An `--account` request this store cannot answer: a SQLite file, or an account it does not hold."""


def chosen_accounts(store: Store, settings: Settings, wanted: str) -> dict[str, str]:
    """`--account NAME[,NAME] | all` as {schema: configured name}, in the order asked (all: by name)."""
    if settings.store.url is None:
        raise AccountError("--account reads the accounts of a PostgreSQL store ([store] url); this store is a file")
    from kpi_core.postgres.accounts import account_names  # the driver loads only for a PostgreSQL store

    known = account_names(store.db)  # type: ignore[arg-type]  # a PostgreSQL store's database
    if wanted.strip() == "all":
        return dict(sorted(known.items(), key=lambda kv: kv[1]))
    asked = [account_schema(a.strip()) for a in wanted.split(",") if a.strip()]
    unknown = [a for a in asked if a not in known]
    if unknown or not asked:
        raise AccountError(f"--account: no account {', '.join(unknown) or repr(wanted)} in this database"
                           f" (accounts: {', '.join(sorted(known.values())) or 'none'})")
    return {a: known[a] for a in asked}


def stored_rows(store: Store, settings: Settings, period: str | None, since: date | None, until: date | None,
                by: list[str] | None, kpi_ids: list[str] | None, now: datetime | None = None
                ) -> list[dict[str, Any]]:
    """The values `store` holds for the request, as the interface's rows; nothing computed or written."""
    ctx = Context(store, kpi_settings(settings), now or datetime.now().astimezone())
    wanted = P.resolve(period, since, until, ctx.now, ctx.zone)
    seg = parse(by, ctx.settings)
    return values.read(ctx, wanted[0].grain, seg.key, wanted, kpi_ids, ctx.hours.configured)


def across(url: str, accounts: dict[str, str], settings: Settings, period: str | None, since: date | None,
           until: date | None, by: list[str] | None, kpi_ids: list[str] | None,
           now: datetime | None = None) -> list[dict[str, Any]]:
    """Every named account's stored rows ({schema: name}), each row's segment led by its `account`."""
    rows: list[dict[str, Any]] = []
    for name in accounts.values():
        store = open_store(url, name)
        try:
            for row in stored_rows(store, settings, period, since, until, by, kpi_ids, now):
                row["segment"] = {"account": name, **row["segment"]}
                rows.append(row)
        finally:
            store.close()
    return rows
