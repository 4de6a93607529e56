"""Every account of a PostgreSQL store side by side: the `all_accounts` schema of views for BI tools.

Each account's tables live in its own schema (database.py). A BI tool (Metabase, Superset, a warehouse
loader) that wants every brand at once reads `all_accounts.<table>`: one view per table below, the
union of that table in every account's schema, with the account's name as the first column
(`account`), so it is a segment like any other. The views are made again whenever a daemon opens an
account whose schema changed (a new account, an upgrade); they select the columns every account has,
so accounts on two versions during an upgrade still read together.

An account's schema name is its `[store] account` folded to an identifier (brand-a: brand_a); the name
as configured is kept in the account's `kpi_meta` (key `account`), and that is what the views, `kpis
--account` and the report across accounts show.
"""

from __future__ import annotations

from kpi_core.postgres.database import PgDatabase, as_dbapi_errors

VIEWS_SCHEMA = "all_accounts"
# What a BI tool reads: the contacts and what happened on them, the answers, the computed values.
SHARED_TABLES = ("contacts", "messages", "status_events", "survey_responses", "kpi_values", "kpi_diagnostics",
                 "kpi_facts", "events", "sync_runs", "orders")
VIEWS_LOCK = 0x686B_7669  # "hkvi": one daemon at a time redefines the views
NAME_KEY = "account"  # kpi_meta key: the account's name as configured


def remember_name(db: PgDatabase, name: str) -> bool:
    """Keep the account's configured name in its own schema (the schema name has lost its dashes); True when
    it was not kept yet (the views then need making again)."""
    with db.atomic():
        kept = db.execute("SELECT value FROM kpi_meta WHERE key = ?", [NAME_KEY]).fetchone()
        if kept is not None and kept[0] == name:
            return False
        db.execute("INSERT INTO kpi_meta (key, value) VALUES (?, ?)"
                   " ON CONFLICT (key) DO UPDATE SET value = excluded.value", [NAME_KEY, name])
    return True


def account_names(db: PgDatabase, schemas: list[str] | None = None) -> dict[str, str]:
    """Each account schema's configured name (the schema name for an account not opened since names were kept)."""
    schemas = account_schemas(db) if schemas is None else schemas
    if not schemas:
        return {}
    union = " UNION ALL ".join(f"SELECT '{s}'::text, value FROM \"{s}\".kpi_meta WHERE key = %s" for s in schemas)
    with as_dbapi_errors():
        named = dict(db.conn.raw.execute(union, [NAME_KEY] * len(schemas)).fetchall())
    return {s: named.get(s, s) for s in schemas}


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
        names = account_names(db, schemas)
        raw.execute(f'CREATE SCHEMA IF NOT EXISTS "{VIEWS_SCHEMA}"')
        for table in SHARED_TABLES:
            columns = _common_columns(db, schemas, table)
            raw.execute(f'DROP VIEW IF EXISTS "{VIEWS_SCHEMA}"."{table}"')
            if not columns:
                continue
            listed = ", ".join(f'"{c}"' for c in columns)
            union = " UNION ALL ".join(
                f"SELECT {_literal(names[s])}::text AS account, {listed} FROM \"{s}\".\"{table}\"" for s in schemas)
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


def _literal(text: str) -> str:
    """A name as an SQL string literal (account names are letters, digits, '-' and '_'; quotes doubled anyway)."""
    return "'" + text.replace("'", "''") + "'"
