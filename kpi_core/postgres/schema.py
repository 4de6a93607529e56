"""The store's schema on PostgreSQL: the same migrations, their tables and triggers written PostgreSQL's way.

The migrations in kpi_core/store.py are the one description of the schema. On PostgreSQL they run
unchanged through `PgDatabase`, and the statements whose meaning SQLite's dialect carries in ways
a translation of expressions cannot reach are rewritten here:

- `CREATE TABLE`: an `INTEGER PRIMARY KEY` is SQLite's row number, so it becomes an identity column;
  every table gets a `rowid` the statements can read as they read SQLite's (the identity itself where
  the table has one, else a column of its own numbering, indexed); `WITHOUT ROWID` is dropped.
- `CREATE TRIGGER name {BEFORE|AFTER} event ON table [WHEN condition] BEGIN ...; END`: a PL/pgSQL
  function holding the body (under `IF condition`; SQLite's `SELECT RAISE(IGNORE)` is
  `RETURN NULL`, which skips the row) and a row trigger running it. `DROP TRIGGER` drops both.

Migrations are recorded in the account's `_sqlite_migrations` table, the table sqlite-utils keeps in
a SQLite store, so both stores name their schema steps alike; they run one at a time under an
advisory lock, each in its own transaction (PostgreSQL's DDL is transactional), so daemons starting
together on a new account never run one twice.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import sqlglot
from sqlglot import exp

from kpi_core.postgres.translate import rewrite

if TYPE_CHECKING:
    from kpi_core.postgres.database import PgConnection, PgCursor, PgDatabase

MIGRATIONS_TABLE = "_sqlite_migrations"
_CREATE_TABLE = re.compile(r"^\s*CREATE\s+(TEMP\s+|TEMPORARY\s+)?TABLE\b", re.IGNORECASE)
_WITHOUT_ROWID = re.compile(r"\)\s*WITHOUT\s+ROWID\s*$", re.IGNORECASE)
_TRIGGER = re.compile(
    r"^\s*CREATE\s+TRIGGER\s+(?:IF\s+NOT\s+EXISTS\s+)?(?P<name>\w+)\s+(?P<timing>BEFORE|AFTER)\s+"
    r"(?P<event>INSERT|DELETE|UPDATE(?:\s+OF\s+[\w\s,\[\]]+?)?)\s+ON\s+\[?(?P<table>\w+)\]?\s+"
    r"(?:FOR\s+EACH\s+ROW\s+)?(?:WHEN\s+(?P<when>.+?)\s+)?BEGIN\s+(?P<body>.*)\bEND\s*;?\s*$",
    re.IGNORECASE | re.DOTALL)
_DROP_TRIGGER = re.compile(r"^\s*DROP\s+TRIGGER\s+(IF\s+EXISTS\s+)?(?P<name>\w+)\s*;?\s*$", re.IGNORECASE)
_RAISE_IGNORE = re.compile(r"^\s*SELECT\s+RAISE\s*\(\s*IGNORE\s*\)\s*$", re.IGNORECASE)
# An advisory lock key of its own for schema changes (the daemons' locks use others: kpi_core/lock.py).
MIGRATION_LOCK = 0x686B_6D69  # "hkmi"


def special_statement(conn: PgConnection, sql: str) -> PgCursor | None:
    """Run a schema statement SQLite's dialect cannot carry over by translation alone; None for any other."""
    from kpi_core.postgres.database import PgCursor

    if _CREATE_TABLE.match(sql):
        conn.run_ddl(create_table(sql))
    elif (trigger := _TRIGGER.match(sql)) is not None:
        for statement in create_trigger(trigger, conn.primary_key):
            conn.run_ddl(statement)
    elif (dropped := _DROP_TRIGGER.match(sql)) is not None:
        name = dropped.group("name")
        row = conn.raw.execute("SELECT c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
                               " WHERE t.tgname = %s AND c.relnamespace = to_regnamespace(%s)",
                               [name, f'"{conn.schema}"']).fetchone()
        if row is not None:
            conn.run_ddl(f'DROP TRIGGER {name} ON "{row[0]}"')
            conn.run_ddl(f"DROP FUNCTION IF EXISTS {name}_fn()")
    else:
        return None
    return PgCursor(conn.raw.cursor())


def create_table(sql: str) -> str:
    """A SQLite CREATE TABLE as PostgreSQL's, with an identity for its row number (module docstring)."""
    tree = sqlglot.parse_one(_WITHOUT_ROWID.sub(")", sql.strip().rstrip(";")), read="sqlite")
    assert isinstance(tree, exp.Create)
    table = tree.find(exp.Table)
    assert table is not None
    schema_node = tree.this
    temporary = any(isinstance(p, exp.TemporaryProperty) for p in tree.find_all(exp.TemporaryProperty))
    row_number: str | None = None
    if isinstance(schema_node, exp.Schema):
        for column in schema_node.expressions:
            if not isinstance(column, exp.ColumnDef):
                continue
            kind = column.args.get("kind")
            constraints = column.args.get("constraints") or []
            is_key = any(isinstance(c.args.get("kind"), exp.PrimaryKeyColumnConstraint) for c in constraints)
            if is_key and isinstance(kind, exp.DataType) and kind.this == exp.DataType.Type.INT:
                column.set("kind", exp.DataType.build("BIGINT"))
                kept = [c for c in constraints if not isinstance(c.args.get("kind"), exp.AutoIncrementColumnConstraint)]
                kept.insert(0, exp.ColumnConstraint(kind=exp.GeneratedAsIdentityColumnConstraint(this=False)))
                column.set("constraints", kept)
                row_number = column.name
    out = rewrite(tree, lambda _: ()).sql(dialect="postgres")
    if temporary or not isinstance(schema_node, exp.Schema):
        return out
    name = table.name
    if row_number is None:
        rowid = "rowid BIGINT GENERATED BY DEFAULT AS IDENTITY"
        index = f'; CREATE UNIQUE INDEX "{name}_rowid" ON "{name}" (rowid)'
    elif row_number != "rowid":
        rowid = f"rowid BIGINT GENERATED ALWAYS AS ({row_number}) STORED"
        index = f'; CREATE UNIQUE INDEX "{name}_rowid" ON "{name}" (rowid)'
    else:
        return out
    assert out.endswith(")")
    return out[:-1] + f", {rowid})" + index


def create_trigger(match: re.Match[str], primary_keys: Any) -> list[str]:
    """A SQLite trigger as a PL/pgSQL function and the row trigger that runs it."""
    name, timing, event, table = match["name"], match["timing"].upper(), match["event"], match["table"]
    event_sql = re.sub(r"\[(\w+)\]", r"\1", " ".join(event.split())).upper()
    statements = [s.strip() for s in _split_statements(match["body"]) if s.strip()]
    ignore = timing == "BEFORE" and any(_RAISE_IGNORE.match(s) for s in statements)
    body = [] if ignore else [_plpgsql(s, primary_keys) + ";" for s in statements]
    if ignore:
        body = ["RETURN NULL;"]
    passing = "NULL" if timing == "AFTER" else ("OLD" if event_sql.startswith("DELETE") else "NEW")
    code = " ".join(body)
    if match["when"]:
        code = f"IF {_plpgsql_condition(match['when'], primary_keys)} THEN {code} END IF;"
    function = (f"CREATE OR REPLACE FUNCTION {name}_fn() RETURNS trigger LANGUAGE plpgsql AS $fn$"
                f" BEGIN {code} RETURN {passing}; END $fn$")
    trigger = f'CREATE TRIGGER {name} {timing} {event_sql} ON "{table}" FOR EACH ROW EXECUTE FUNCTION {name}_fn()'
    return [function, trigger]


def _split_statements(body: str) -> Iterable[str]:
    """The statements of a trigger body, split at semicolons outside quoted text."""
    current: list[str] = []
    quoted = False
    for ch in body:
        if ch == "'":
            quoted = not quoted
        if ch == ";" and not quoted:
            yield "".join(current)
            current = []
        else:
            current.append(ch)
    yield "".join(current)


def _plpgsql(statement: str, primary_keys: Any) -> str:
    tree = sqlglot.parse_one(statement, read="sqlite")
    return rewrite(tree, primary_keys).sql(dialect="postgres")


def _plpgsql_condition(condition: str, primary_keys: Any) -> str:
    tree = sqlglot.parse_one(f"SELECT 1 WHERE {condition}", read="sqlite")
    where = rewrite(tree, primary_keys).find(exp.Where)
    assert where is not None
    return str(where.this.sql(dialect="postgres"))


def apply_migrations(db: PgDatabase, migrations: Any) -> int:
    """Run the migrations not yet applied to this account's schema, one transaction each; returns how many."""
    conn = db.conn
    conn.raw.execute(f'CREATE TABLE IF NOT EXISTS "{MIGRATIONS_TABLE}" (migration_set TEXT NOT NULL,'
                     " name TEXT NOT NULL, applied_at TEXT NOT NULL, PRIMARY KEY (migration_set, name))")
    ran = 0
    for migration in migrations._migrations:
        with db.atomic():
            conn.raw.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", [MIGRATION_LOCK, conn.schema])
            done = conn.raw.execute(f'SELECT 1 FROM "{MIGRATIONS_TABLE}" WHERE migration_set = %s AND name = %s',
                                    [migrations.name, migration.name]).fetchone()
            if done:
                continue
            migration.fn(db)
            conn.raw.execute(f'INSERT INTO "{MIGRATIONS_TABLE}" VALUES (%s, %s, %s)',
                             [migrations.name, migration.name, str(datetime.now(timezone.utc))])
            ran += 1
    return ran


def applied(db: PgDatabase, migration_set: str) -> set[str]:
    if not db.table(MIGRATIONS_TABLE).exists():
        return set()
    rows = db.conn.raw.execute(f'SELECT name FROM "{MIGRATIONS_TABLE}" WHERE migration_set = %s',
                               [migration_set]).fetchall()
    return {r[0] for r in rows}
