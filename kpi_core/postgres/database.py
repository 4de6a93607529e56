"""A PostgreSQL database behind the same small surface the store uses of SQLite.

The rest of the program reaches the store's database through three things: `db.execute(sql, params)`,
`db.atomic()` (a transaction, or a savepoint inside one) and `db.conn` (a DB-API connection:
`execute`, `executemany`, `in_transaction`, `commit`, `rollback`). `PgDatabase` and `PgConnection`
offer exactly that over psycopg 3, translating each statement (translate.py) and creating each
trigger as PostgreSQL writes triggers (schema.py), so every module works on either store without
knowing which.

One account is one PostgreSQL schema (`[store] account`): a connection's `search_path` is that
schema, so the statements name tables as they do in SQLite and accounts never see each other's rows
or lock each other's tables. Errors come out as the DB-API classes of Python's sqlite3 module (an
IntegrityError is an IntegrityError on both stores), their text PostgreSQL's message, never a
password (the URL is shown without it).
"""

from __future__ import annotations

import itertools
import re
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import pq
from psycopg.types.numeric import IntDumper

from kpi_core.postgres import schema
from kpi_core.postgres.translate import UntranslatableSql, translate

_INSERT_INTO = re.compile(r'^\s*INSERT\s+INTO\s+"?(\w+)"?', re.IGNORECASE)
_SAVEPOINT = 0
_STREAMS = itertools.count(1)  # names of server-side cursors, unique per process
_SAVEPOINT_STATEMENT = re.compile(r"^\s*(SAVEPOINT|RELEASE|ROLLBACK\s+TO)\s+(?:SAVEPOINT\s+)?(\w+)\s*;?\s*$",
                                  re.IGNORECASE)


def safe_url(url: str) -> str:
    """The URL without its password, for messages and `status`."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}@{host}" if parts.username else host
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


class PgCursor:
    """What a statement gave back, read as sqlite3's cursor is."""

    def __init__(self, cursor: psycopg.Cursor[Any], lastrowid: int | None = None) -> None:
        self._cursor = cursor
        self.lastrowid = lastrowid
        self.rowcount = cursor.rowcount

    @property
    def description(self) -> Any:
        return self._cursor.description

    def fetchone(self) -> Any:
        return self._cursor.fetchone() if self._cursor.description else None

    def fetchall(self) -> list[Any]:
        return self._cursor.fetchall() if self._cursor.description else []

    def fetchmany(self, size: int) -> list[Any]:
        return self._cursor.fetchmany(size) if self._cursor.description else []

    def __iter__(self) -> Iterator[Any]:
        return iter(self.fetchall())


class PgConnection:
    """The DB-API connection the store's modules use, over one psycopg connection in autocommit mode:
    transactions are the statements' own BEGIN/COMMIT, as with the store's SQLite connection."""

    def __init__(self, conn: psycopg.Connection[Any], account_schema: str) -> None:
        self.raw = conn
        self.schema = account_schema
        self._keys: dict[str, list[str]] = {}
        self._identity: dict[str, bool] = {}
        self._outer_savepoints: set[str] = set()
        self.python_functions: dict[str, Any] = {}

    @property
    def in_transaction(self) -> bool:
        return self.raw.info.transaction_status != pq.TransactionStatus.IDLE

    def execute(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> PgCursor:
        special = schema.special_statement(self, sql)
        if special is not None:
            return special
        savepoint = _SAVEPOINT_STATEMENT.match(sql)
        if savepoint is not None:
            return self._savepoint(savepoint.group(1).upper(), savepoint.group(2))
        try:
            statement = translate(sql, self.primary_key)
        except UntranslatableSql as exc:
            raise sqlite3.ProgrammingError(str(exc)) from None
        if not statement:
            return PgCursor(self.raw.cursor())
        returning = self._returning_id(statement)
        with as_dbapi_errors():
            cursor = self.raw.cursor()
            # Parameters always given (an empty list too): psycopg then reads the translation's doubled `%%` as `%`.
            cursor.execute(statement + (" RETURNING id" if returning else ""), _params(params))
            lastrowid = None
            if returning:
                rows = cursor.fetchall()
                lastrowid = int(rows[-1][0]) if rows else None
            return PgCursor(cursor, lastrowid)

    def _savepoint(self, verb: str, name: str) -> PgCursor:
        """SQLite's savepoints: outside a transaction, SAVEPOINT begins one and its RELEASE commits it."""
        with as_dbapi_errors():
            if verb == "SAVEPOINT":
                if not self.in_transaction:
                    self.raw.execute("BEGIN")
                    self._outer_savepoints.add(name)
                self.raw.execute(f"SAVEPOINT {name}")
            elif verb == "RELEASE":
                self.raw.execute(f"RELEASE SAVEPOINT {name}")
                if name in self._outer_savepoints:
                    self._outer_savepoints.discard(name)
                    self.raw.execute("COMMIT")
            else:
                self.raw.execute(f"ROLLBACK TO SAVEPOINT {name}")
            return PgCursor(self.raw.cursor())

    def copy_rows(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        """Rows into `table` (a name, as SQLite's statements give it) by COPY: a bulk load in one stream, where
        an INSERT per row would make a round trip each."""
        listed = ", ".join(f'"{c}"' for c in columns)
        with as_dbapi_errors(), self.raw.cursor().copy(f"COPY {table} ({listed}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)

    def stream(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = (), size: int = 10_000
               ) -> Iterator[list[Any]]:
        """A query's rows `size` at a time through a server-side cursor (inside the caller's transaction): a plain
        cursor's result arrives whole, a million rows at once. Other statements may run between two batches."""
        statement = translate(sql, self.primary_key)
        with as_dbapi_errors(), self.raw.cursor(name=f"stream_{next(_STREAMS)}") as cursor:
            cursor.execute(statement, _params(params))
            while rows := cursor.fetchmany(size):
                yield rows

    def executemany(self, sql: str, rows: Sequence[Sequence[Any] | Mapping[str, Any]]) -> PgCursor:
        statement = translate(sql, self.primary_key)
        with as_dbapi_errors():
            cursor = self.raw.cursor()
            cursor.executemany(statement, [_params(r) for r in rows])
            return PgCursor(cursor)

    def run_ddl(self, statement: str) -> None:
        """A statement already in PostgreSQL's dialect (schema.py's triggers and tables)."""
        with as_dbapi_errors():
            self.raw.execute(statement.encode(), prepare=False)
        self._keys.clear()
        self._identity.clear()

    def create_function(self, name: str, arity: int, function: Any, deterministic: bool = False) -> None:
        """SQLite calls Python functions from SQL; PostgreSQL runs SQL in the server, where Python cannot
        be reached. Registered functions are remembered so a statement calling one fails with a clear error."""
        self.python_functions[name] = function

    def __enter__(self) -> PgConnection:
        return self

    def __exit__(self, kind: object, *rest: object) -> None:
        """As sqlite3's connection: the transaction in hand (if any) is committed, or rolled back on an error."""
        if kind is None:
            self.commit()
        else:
            self.rollback()

    def commit(self) -> None:
        self._outer_savepoints.clear()
        if self.in_transaction:
            self.raw.execute("COMMIT")

    def rollback(self) -> None:
        self._outer_savepoints.clear()
        if self.in_transaction:
            self.raw.execute("ROLLBACK")

    def close(self) -> None:
        self.raw.close()

    def primary_key(self, table: str) -> list[str]:
        """The primary key columns of `table` in this account's schema, from the catalogue."""
        if table not in self._keys:
            rows = self.raw.execute(
                "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid"
                " AND a.attnum = ANY(i.indkey) WHERE i.indisprimary AND i.indrelid = to_regclass(%s)"
                " ORDER BY array_position(i.indkey, a.attnum)", [f'"{self.schema}"."{table}"']).fetchall()
            self._keys[table] = [r[0] for r in rows]
        return self._keys[table]

    def _returning_id(self, statement: str) -> bool:
        """An INSERT into a table keyed by an `id` it numbers: return it, as sqlite3's lastrowid does."""
        match = _INSERT_INTO.match(statement)
        if match is None or " RETURNING " in statement.upper():
            return False
        table = match.group(1)
        if table not in self._identity:
            row = self.raw.execute(
                "SELECT 1 FROM information_schema.columns WHERE table_schema = %s AND table_name = %s"
                " AND column_name = 'id' AND is_identity = 'YES'", [self.schema, table]).fetchone()
            self._identity[table] = row is not None
        return self._identity[table]


def _params(params: Sequence[Any] | Mapping[str, Any]) -> Sequence[Any] | Mapping[str, Any]:
    return params if isinstance(params, Mapping) else list(params)


@contextmanager
def as_dbapi_errors() -> Iterator[None]:
    """psycopg's errors as the DB-API classes the store's callers already catch."""
    try:
        yield
    except psycopg.errors.IntegrityError as exc:
        raise sqlite3.IntegrityError(_message(exc)) from None
    except psycopg.OperationalError as exc:
        raise sqlite3.OperationalError(_message(exc)) from None
    except psycopg.Error as exc:
        raise sqlite3.DatabaseError(_message(exc)) from None


def _message(exc: psycopg.Error) -> str:
    diag = exc.diag
    return (diag.message_primary or str(exc)).strip() if diag is not None else str(exc).strip()


class PgTable:
    """What the migrations ask of a table: whether it exists and its columns."""

    def __init__(self, conn: PgConnection, name: str) -> None:
        self.conn = conn
        self.name = name

    def exists(self) -> bool:
        row = self.conn.raw.execute("SELECT to_regclass(%s)", [f'"{self.conn.schema}"."{self.name}"']).fetchone()
        return row is not None and row[0] is not None

    @property
    def columns_dict(self) -> dict[str, type]:
        rows = self.conn.raw.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = %s"
            " AND table_name = %s ORDER BY ordinal_position", [self.conn.schema, self.name]).fetchall()
        kinds = {"bigint": int, "integer": int, "double precision": float, "text": str}
        return {name: kinds.get(kind, str) for name, kind in rows}


class PgDatabase:
    """The sqlite-utils `Database` surface the store uses (execute, atomic, conn, tables), on PostgreSQL."""

    dialect = "postgresql"

    def __init__(self, conn: PgConnection, url: str) -> None:
        self.conn = conn
        self.url = url

    def execute(self, sql: str, params: Sequence[Any] | Mapping[str, Any] | None = None) -> PgCursor:
        return self.conn.execute(sql, params or ())

    @contextmanager
    def atomic(self) -> Iterator[PgDatabase]:
        """A transaction, or a savepoint inside the caller's, as sqlite-utils' `atomic` does."""
        global _SAVEPOINT
        if self.conn.in_transaction:
            _SAVEPOINT += 1
            name = f"atomic_{_SAVEPOINT}"
            self.conn.raw.execute(f"SAVEPOINT {name}")
            try:
                yield self
            except BaseException:
                if self.conn.in_transaction:
                    self.conn.raw.execute(f"ROLLBACK TO SAVEPOINT {name}")
                    self.conn.raw.execute(f"RELEASE SAVEPOINT {name}")
                raise
            self.conn.raw.execute(f"RELEASE SAVEPOINT {name}")
            return
        self.conn.raw.execute("BEGIN")
        try:
            yield self
        except BaseException:
            self.conn.rollback()
            raise
        self.conn.commit()

    def __getitem__(self, name: str) -> PgTable:
        return PgTable(self.conn, name)

    def table(self, name: str) -> PgTable:
        return PgTable(self.conn, name)

    def close(self) -> None:
        self.conn.close()


def connect(url: str, account_schema: str) -> PgDatabase:
    """A connection to `url` working in the account's schema (created when missing)."""
    try:
        raw = psycopg.connect(url, autocommit=True, connect_timeout=15,
                              application_name="helpdesk-kpi")
    except psycopg.Error as exc:
        raise ConnectionError(f"{safe_url(url)}: cannot connect to the PostgreSQL store: {_message(exc)}") from None
    # Booleans are stored as 0/1 integers on both stores.
    raw.adapters.register_dumper(bool, IntDumper)
    raw.execute(f'CREATE SCHEMA IF NOT EXISTS "{account_schema}"')
    raw.execute(f'SET search_path TO "{account_schema}"')
    # SQLite reads a timestamp without an offset as UTC: so do the translated date and epoch functions.
    raw.execute("SET TimeZone TO 'UTC'")
    # No JIT: the KPI facts' statement is one wide expression whose compilation (over 1,000 functions) took 14.5 s
    # of its 15.4 s on 2,000 contacts; the store's other statements are short, where JIT never pays either.
    raw.execute("SET jit = off")
    return PgDatabase(PgConnection(raw, account_schema), url)
