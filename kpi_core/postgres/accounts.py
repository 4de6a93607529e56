"""Every account of a PostgreSQL store side by side: the `all_accounts` schema of views for BI tools.

Each account's tables live in its own schema (database.py). A BI tool (Metabase, Superset, a warehouse
loader) that wants every brand at once reads `all_accounts.<table>`: one view per table below, the
union of that table in every account's schema, with the account's name as the first column
(`account`), so it is a segment like any other. The views are made again whenever a daemon opens an
account whose schema changed (a new account, an upgrade); they select the columns every account has,
so accounts on two versions during an upgrade still read together.
"""

from __future__ import annotations

from kpi_core.postgres.database import PgDatabase, as_dbapi_errors

VIEWS_SCHEMA = "all_accounts"
# What a BI tool reads: the contacts and what happened on them, the answers, the computed values.
SHARED_TABLES = ("contacts", "messages", "status_events", "survey_responses", "kpi_values", "kpi_diagnostics",
                 "kpi_facts", "events", "sync_runs", "orders")
VIEWS_LOCK = 0x686B_7669  # "hkvi": one daemon at a time redefines the views


def account_schemas(db: PgDatabase) -> list[str]:
    """The schemas holding an account's tables: those with a migrations table, by name."""
    rows = db.conn.raw.execute(
        "SELECT table_schema FROM information_schema.tables WHERE table_name = '_sqlite_migrations'"
        " ORDER BY table_schema").fetchall()
    return [r[0] for r in rows]


def refresh_views(db: PgDatabase) -> list[str]:
    """Define `all_accounts.<table>` over every account's schema again; returns the accounts included."""
    raw = db.conn.raw
    with as_dbapi_errors(), db.atomic():
        raw.execute("SELECT pg_advisory_xact_lock(%s)", [VIEWS_LOCK])
        schemas = account_schemas(db)
        raw.execute(f'CREATE SCHEMA IF NOT EXISTS "{VIEWS_SCHEMA}"')
        for table in SHARED_TABLES:
            columns = _common_columns(db, schemas, table)
            raw.execute(f'DROP VIEW IF EXISTS "{VIEWS_SCHEMA}"."{table}"')
            if not columns:
                continue
            listed = ", ".join(f'"{c}"' for c in columns)
            union = " UNION ALL ".join(f"SELECT '{s}'::text AS account, {listed} FROM \"{s}\".\"{table}\""
                                       for s in schemas)
            raw.execute(f'CREATE VIEW "{VIEWS_SCHEMA}"."{table}" AS {union}')
    return schemas


def _common_columns(db: PgDatabase, schemas: list[str], table: str) -> list[str]:
    """The columns of `table` that every account's schema has, in the first schema's order (`rowid` left out)."""
    if not schemas:
        return []
    rows = db.conn.raw.execute(
        "SELECT table_schema, column_name FROM information_schema.columns WHERE table_name = %s"
        " AND table_schema = ANY(%s) ORDER BY table_schema, ordinal_position", [table, schemas]).fetchall()
    by_schema: dict[str, list[str]] = {}
    for schema, column in rows:
        by_schema.setdefault(schema, []).append(column)
    if set(by_schema) != set(schemas):
        return []  # an account without the table (an older version): no view until all have it
    first = by_schema[schemas[0]]
    return [c for c in first if c != "rowid" and all(c in by_schema[s] for s in schemas)]
