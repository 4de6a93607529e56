"""A columnar copy of what the KPI engine reads, in DuckDB, kept in step with the store.

The engine's grouped queries, percentiles and distinct counts read `kpi_facts` (one row per
contact), `survey_responses` and `people`. SQLite reads a table row by row and sorts every
group on one core; DuckDB reads only the columns a query names, a vector at a time, on every
core (measured on 1,000,000 contacts in bench/kpis.py). The store stays the system of record:
the copy is derived, lives beside it (`<store>.columns`, DuckDB's own format; for a PostgreSQL
store, beside `[store] path` as `<path>.<account>.columns`, or in memory when the caller gave only
the `[kpis]` settings), holds no personal data the store does not (ids, dates, codes; no names,
addresses or text) and is safe to delete: the next computation copies everything again.

Kept in step by the store's triggers (migration m026), so every writer is covered (a sync, a
facts refresh, a purge): each insert, update and delete of a copied table logs its rowid in
`kpi_columns_log`. `open_columns` takes those rows again before the engine reads (deletes them
by rowid, inserts their current version); a table marked stale (`kpi_columns_stale`: new, or
rebuilt as a whole) is copied whole. It does so inside one write transaction of the store, so
nothing is written meanwhile, and commits the copy before it clears the log: a crash in
between makes the next run take some rows twice (idempotent), never lose one. A stamp written
to both sides at every update tells a copy that no longer matches its store (a store restored
from a backup, a copy left by a crash mid-way) and has it copied whole.

Each survey answer carries the rowid of its contact's facts and of its requester's person
(`LINKS`, looked up in the store by key when the answer is copied), so the engine joins them on
an integer: a join on the text keys would read every contact's row for one month's answers.
When a linked-to row is logged, the answers linked to it, and the unlinked ones of its key, are
copied again (their links looked up anew); a linked-to table copied whole has the answers copied
whole too.

DuckDB lets one process at a time open a file for writing: a second one waits for the first
(a computation holds the copy for seconds), and after `LOCK_WAIT` builds a private copy in
memory, which is slower but gives the same values. The copy is checkpointed when it is closed,
so each computation opens a copy whose changed rows sit in compressed row groups with their
statistics. Left in the write-ahead log (replayed at every opening until DuckDB checkpoints it
at 16 MB, some 37 incremental computations at 1,000,000 contacts), they made the opening and
every query slower: incremental computations took 0.77-0.88 s with 0.4-2 MB of log, 0.54-0.67 s
with the checkpoint (0.02-0.05 s of it) paid at each close.
"""

from __future__ import annotations

import logging
import os
import secrets
import sqlite3
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import duckdb
import numpy as np
from duckdb.func import FunctionNullHandling  # duckdb >= 2 (pyproject pins it)

from kpi_core.kpis.context import Context, get_meta, set_meta

log = logging.getLogger(__name__)
_P = ParamSpec("_P")
_T = TypeVar("_T")

# What is copied of each table: every column of the facts; of the others, what the engine reads.
COPIED: dict[str, tuple[str, ...] | None] = {
    "kpi_facts": None,
    "survey_responses": ("source", "source_id", "kind", "score", "scale", "is_positive", "created_at", "contact_id",
                         "requester_id", "agent_id"),
    "people": ("source", "source_id", "role", "language", "country", "organization_id", "tags", "email_hash"),
    "orders": ("source", "source_id", "customer_key", "requester", "created_at", "cancelled_at", "currency", "total",
               "refunds", "lines"),
}
_TYPES = {"INTEGER": "BIGINT", "REAL": "DOUBLE"}  # anything else is text
# The copy's layout: another value has every table copied whole (a copy made by an earlier version lacks the links).
FORMAT = "2"
STAMP = "columns_stamp"
SUFFIX = ".columns"
LOCK_WAIT = 60.0  # seconds to wait for another process's computation before copying into memory
_CHUNK = 50_000  # rows per copy step: bounds the memory a whole copy takes
SMALL = 100_000  # contacts
COPY_MEMORY = "96MB"  # DuckDB's cache while a whole table is copied
_SETTINGS: dict[str, str | int | float | list[str]] = {"threads": 1, "memory_limit": "256MB",
                                                       "preserve_insertion_order": False}


@dataclass(frozen=True)
class Link:
    """A copied row's partner in another copied table (keyed by source and source_id): the partner's rowid, in the
    copy's column `column`, looked up in the store (through its key's index) when the row is copied."""

    column: str
    table: str
    key: str  # this row's column holding the partner's source_id; the source is the row's own

    def sql(self) -> str:
        return f"(SELECT x.rowid FROM {self.table} x WHERE x.source = t.source AND x.source_id = t.{self.key})"


# A survey answer's contact (its facts) and its requester (a person): the engine's survey queries join on these.
LINKS: dict[str, tuple[Link, ...]] = {
    "survey_responses": (Link("_fact", "kpi_facts", "contact_id"), Link("_person", "people", "requester_id")),
}
# Tables that rows of another copied table link to.
_PARTNERS = frozenset(link.table for links in LINKS.values() for link in links)
# Tables a whole copy sorts by a column the engine reads ranges of (the store holds survey answers as they came;
# the facts are rebuilt in creation order).
_CLUSTERED = {"survey_responses": "created_at"}


@dataclass(frozen=True)
class _Table:
    name: str
    columns: tuple[str, ...]
    types: tuple[str, ...]  # DuckDB types
    links: tuple[Link, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        """The copy's columns after `_rid`: the store's, then the links."""
        return (*self.columns, *(link.column for link in self.links))

    @property
    def kinds(self) -> tuple[str, ...]:
        return (*self.types, *("BIGINT" for _ in self.links))

    def create_sql(self) -> str:
        cols = ", ".join(f'"{c}" {t}' for c, t in zip(self.names, self.kinds, strict=True))
        return f'CREATE OR REPLACE TABLE {self.name} (_rid BIGINT, {cols})'

    def select_sql(self) -> str:
        picked = [f"t.[{c}]" for c in self.columns] + [link.sql() for link in self.links]
        return f"SELECT t.rowid, {', '.join(picked)} FROM {self.name} t"


def columns_path(conn: sqlite3.Connection) -> Path | None:
    """The copy's file beside the store's, or None for a store in memory (then the copy is in memory too)."""
    for _, name, path in conn.execute("PRAGMA database_list").fetchall():
        if name == "main" and path:
            return Path(path + SUFFIX)
    return None


def server_columns_path(ctx: Context) -> Path | None:
    """A PostgreSQL store's copy: beside `[store] path` when the settings gave it, else in memory."""
    return None if ctx.beside is None else _beside(ctx.beside, ctx.conn)


def _beside(path: Path, conn: sqlite3.Connection) -> Path:
    """`<[store] path>.<account's schema>.columns`: the accounts kept on one machine never share a copy."""
    return Path(f"{path}.{getattr(conn, 'schema', 'public')}{SUFFIX}")


def remove(conn: sqlite3.Connection, beside: Path | None = None) -> None:
    """Delete the copy (after an erasure, so no byte of it outlives the store's rows); the next run copies anew.
    For a PostgreSQL store's connection, `beside` is `[store] path` (the copy's place, see server_columns_path)."""
    path = _beside(beside, conn) if beside is not None and hasattr(conn, "schema") else columns_path(conn)
    if path is None:
        return
    for candidate in (path, Path(str(path) + ".wal")):
        candidate.unlink(missing_ok=True)  # without its stamp, the next run copies every table


class Columns:
    """An open copy: `rows(sql)` runs a query over it (tables named as in the store), from any thread.

    A DuckDB connection answers one call at a time, so each thread but the opener's queries through a
    connection of its own to the same database (`cursor()`: same tables, settings and functions).
    `cores` is how many threads DuckDB may use (one below SMALL facts).
    """

    def __init__(self, db: duckdb.DuckDBPyConnection, cores: int = 1) -> None:
        self.db, self.cores = db, cores
        self._opener = threading.get_ident()
        self._local = threading.local()
        self._others: list[duckdb.DuckDBPyConnection] = []
        self._lock = threading.Lock()

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        return self._connection().execute(sql).fetchall()

    def threads(self, n: int) -> None:
        """How many threads each query may use (a setting of the whole copy, every connection's)."""
        _run(self.db, f"SET threads = {n}")

    def _connection(self) -> duckdb.DuckDBPyConnection:
        if threading.get_ident() == self._opener:
            return self.db
        own: duckdb.DuckDBPyConnection | None = getattr(self._local, "db", None)
        if own is None:
            own = self._local.db = self.db.cursor()
            with self._lock:
                self._others.append(own)
        return own

    def close_others(self) -> None:
        """Close the threads' connections (before the copy itself is closed)."""
        with self._lock:
            others, self._others = self._others, []
        for other in others:
            other.close()


@contextmanager
def query_pool(cols: Columns, short: bool) -> Iterator[Executor]:
    """Where the engine's independent queries run.

    DuckDB spreads a query over its row groups (122,880 rows each), one core per group: a query of
    a month or two (`short`) reads one or two of them and leaves the other cores idle, so such queries
    run side by side, one core each (measured on 1,000,000 contacts: an incremental compute's queries
    0.30 s one after another, 0.19 s side by side). Longer ones run one after another in the caller's
    thread as they are submitted, each on every core: side by side they contend for memory and caches
    (a full recompute took 10 % longer). Leaving waits for what still runs and drops what has not
    started (after an error).
    """
    if not side_by_side(cols, short):
        yield _Inline()
        return
    cols.threads(1)
    pool = ThreadPoolExecutor(max_workers=cols.cores, thread_name_prefix="kpi-query")
    try:
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        cols.threads(cols.cores)


def side_by_side(cols: Columns, short: bool) -> bool:
    """Whether `query_pool` runs queries side by side: short ones, with more than one core to spread them over."""
    return short and cols.cores > 1


class _Inline(Executor):
    """An executor that runs each call when it is submitted, in the caller's thread."""

    def submit(self, fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> Future[_T]:
        future: Future[_T] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # handed to whoever reads the result, as a pool would
            future.set_exception(exc)
        return future


@contextmanager
def open_columns(ctx: Context) -> Iterator[Columns]:
    """The copy, brought up to date with the store, open for the engine's queries; closed afterwards."""
    conn = ctx.conn
    db, in_memory = _connect(server_columns_path(ctx) if ctx.store.on_server else columns_path(conn))
    try:
        try:
            _bring_up_to_date(ctx, db, in_memory)
        except sqlite3.OperationalError as exc:
            if "readonly" not in str(exc) and "read-only" not in str(exc):
                raise
            db.close()  # a store we may not write: a private copy, whole, in memory
            db, _ = _connect(None)
            for table in _tables(conn):
                _copy_table(conn, db, table)
        cores = cores_for(_run(db, "SELECT count(*) FROM kpi_facts")[0][0])
        _run(db, f"SET threads = {cores}")
        if ctx.hours.configured:
            db.create_function("kpi_bh", ctx.hours.seconds, ["BIGINT", "BIGINT", "BIGINT"], "BIGINT",
                               null_handling=FunctionNullHandling.SPECIAL, side_effects=False)
        cols = Columns(db, cores)
        try:
            yield cols
        finally:
            cols.close_others()
    finally:
        db.close()  # checkpoints the copy's write-ahead log: see the module's docstring


def cores_for(contacts: int) -> int:
    """The threads DuckDB may use: below SMALL facts a query is mostly planning (a second thread costs more than it
    saves), else the machine's cores, up to four."""
    return 1 if contacts < SMALL else max(1, min(os.cpu_count() or 1, 4))


def _connect(path: Path | None) -> tuple[duckdb.DuckDBPyConnection, bool]:
    """The copy's connection and whether it lives in memory only: for a store in memory, a file another process
    holds for longer than LOCK_WAIT, or a file that cannot be opened (unwritable, damaged), which is said once
    in the log and left as it is: the values come out the same, only slower."""
    if path is None:
        return duckdb.connect(":memory:", config=dict(_SETTINGS)), True
    deadline = time.monotonic() + LOCK_WAIT
    while True:
        try:
            return duckdb.connect(str(path), config=dict(_SETTINGS)), False
        except duckdb.Error as exc:
            held = isinstance(exc, duckdb.IOException) and "lock" in str(exc).lower()
            if held and time.monotonic() < deadline:
                time.sleep(0.2)
                continue
            why = "is held by another process" if held else f"cannot be opened ({_first_line(exc)})"
            log.warning("kpis: the columnar copy %s %s; computing from a copy in memory"
                        " (deleting the file makes the next computation copy the store again)", path, why)
            return duckdb.connect(":memory:", config=dict(_SETTINGS)), True


def _run(db: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    """Run a statement to its end (DuckDB keeps a result open, and the connection busy, until it is read)."""
    return db.execute(sql, params).fetchall()


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else "no detail"


def _tables(conn: sqlite3.Connection) -> list[_Table]:
    out = []
    for name, wanted in COPIED.items():
        declared = _declared(conn, name)
        cols = tuple(declared) if wanted is None else wanted
        out.append(_Table(name, cols, tuple(_TYPES.get(declared[c], "VARCHAR") for c in cols), LINKS.get(name, ())))
    return out


def _declared(conn: sqlite3.Connection, name: str) -> dict[str, str]:
    """The columns of table `name` and their declared types (upper case), in order."""
    rows = conn.execute(f"PRAGMA table_info({name})").fetchall()
    if rows or not hasattr(conn, "schema"):
        return {row[1]: (row[2] or "").upper() for row in rows}
    # A PostgreSQL store (PRAGMA is SQLite's): the catalogue's types by SQLite's names, without the `rowid` it adds.
    kinds = {"bigint": "INTEGER", "integer": "INTEGER", "double precision": "REAL", "real": "REAL"}
    found = conn.execute("SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = ?"
                         " AND table_name = ? AND column_name != 'rowid' ORDER BY ordinal_position",
                         [conn.schema, name]).fetchall()
    return {column: kinds.get(kind, "TEXT") for column, kind in found}


def _bring_up_to_date(ctx: Context, db: duckdb.DuckDBPyConnection, in_memory: bool) -> None:
    """Take the logged rows again, copy stale tables whole, in one write transaction of the store."""
    conn = ctx.conn
    with ctx.writing():
        stamp = get_meta(conn, STAMP)
        existing = {row[0] for row in _run(db, "SELECT table_name FROM duckdb_tables()")}
        meta = dict(_run(db, "SELECT key, value FROM columns_meta")) if "columns_meta" in existing else {}
        stale = {row[0] for row in conn.execute("SELECT tbl FROM kpi_columns_stale")}
        if in_memory or stamp is None or meta.get("stamp") != stamp or meta.get("format") != FORMAT:
            stale = set(COPIED)
        last = conn.execute("SELECT max(seq) FROM kpi_columns_log").fetchone()[0]
        if not stale and last is None:
            return
        tables = _tables(conn)
        whole = {t.name for t in tables if t.name in stale or t.name not in existing}
        if last is not None:  # most of a table logged (its facts rebuilt): copied whole, which reads it in order
            sizes = dict(_run(db, "SELECT table_name, estimated_size FROM duckdb_tables()"))
            whole |= {tbl for tbl, n in conn.execute("SELECT tbl, count(DISTINCT rid) FROM kpi_columns_log"
                                                     " WHERE seq <= ? GROUP BY tbl", [last])
                      if n > max(_CHUNK, int(sizes.get(tbl) or 0) // 4)}
        # A partner copied whole has new rowids: the rows linking to it are looked up anew.
        whole |= {t.name for t in tables if any(link.table in whole for link in t.links)}
        if whole:
            # Whole copies commit chunk by chunk (one transaction would hold every row in memory until its end):
            # until the stamp below is written, a copy cut short counts as not matching, and is made again.
            _run(db, "DROP TABLE IF EXISTS columns_meta")
            _run(db, f"SET memory_limit = '{COPY_MEMORY}'")  # a copy streams to disk: less cache, less RSS
            for table in tables:
                if table.name in whole:
                    _copy_table(conn, db, table)
            _run(db, f"SET memory_limit = '{_SETTINGS['memory_limit']}'")
        db.begin()
        try:
            if last is not None:
                _apply_log(conn, db, [t for t in tables if t.name not in whole], last)
            new = secrets.token_hex(8)
            _run(db, "CREATE TABLE IF NOT EXISTS columns_meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
            _run(db, "INSERT OR REPLACE INTO columns_meta VALUES ('stamp', ?), ('format', ?)", [new, FORMAT])
            db.commit()
        except BaseException:
            db.rollback()
            raise
        if last is not None:
            conn.execute("DELETE FROM kpi_columns_log WHERE seq <= ?", [last])
        conn.execute("DELETE FROM kpi_columns_stale")
        set_meta(conn, STAMP, new)


def _copy_table(conn: sqlite3.Connection, db: duckdb.DuckDBPyConnection, table: _Table) -> None:
    started = time.perf_counter()
    _run(db, table.create_sql())
    copied = 0
    for rows in _chunks(conn, table):
        _insert(db, table, rows)
        copied += len(rows)
    if table.name in _CLUSTERED:  # a month's rows together: a range scan skips the row groups of other months
        _run(db, f"CREATE OR REPLACE TABLE {table.name} AS SELECT * FROM {table.name}"
                 f" ORDER BY {_CLUSTERED[table.name]}")
    log.info("kpis: copied %s rows of %s into the columnar copy in %.1fs", copied, table.name,
             time.perf_counter() - started)


def _chunks(conn: sqlite3.Connection, table: _Table) -> Iterator[list[tuple[Any, ...]]]:
    """The table's rows, _CHUNK at a time. A PostgreSQL connection hands over a query's whole result at once
    (580 MB at 100,000 facts), so there the rows are read by ranges of rowid instead."""
    if not hasattr(conn, "schema"):
        cursor = conn.execute(table.select_sql())
        while rows := cursor.fetchmany(_CHUNK):
            yield rows
        return
    last = -(2**63)
    while rows := conn.execute(f"{table.select_sql()} WHERE t.rowid > ? ORDER BY t.rowid LIMIT {_CHUNK}",
                               [last]).fetchall():
        yield rows
        last = rows[-1][0]


def _apply_log(conn: sqlite3.Connection, db: duckdb.DuckDBPyConnection, tables: list[_Table], last: int) -> None:
    """Take again the rows of `tables` logged up to `last`, partners before the rows linking to them: a linking row
    whose partner was logged (or that is unlinked, and of a key a logged partner has now) is taken again too."""
    logged: dict[str, set[int]] = defaultdict(set)
    for tbl, rid in conn.execute("SELECT DISTINCT tbl, rid FROM kpi_columns_log WHERE seq <= ?", [last]):
        logged[tbl].add(int(rid))
    for table in sorted(tables, key=lambda t: bool(t.links)):
        rids = logged.get(table.name)
        if not rids:
            continue
        keys = np.array(sorted(rids), dtype=np.int64)
        db.register("columns_keys", {"rid": keys})
        _run(db, f"DELETE FROM {table.name} WHERE _rid IN (SELECT rid FROM columns_keys)")
        db.unregister("columns_keys")
        fetched: list[tuple[str, str]] = []  # a partner's keys, which unlinked rows may now link to
        for start in range(0, len(keys), _CHUNK):
            part = keys[start:start + _CHUNK].tolist()
            # CAST: PostgreSQL reads a JSON array's elements as text (SQLite as the integers they are).
            rows = conn.execute(f"{table.select_sql()} WHERE t.rowid IN (SELECT CAST(value AS INTEGER)"
                                f" FROM json_each(?))", ["[" + ",".join(map(str, part)) + "]"]).fetchall()
            if rows:
                _insert(db, table, rows)
                if table.name in _PARTNERS:
                    fetched.extend(_keys(table, rows))
        for linking in tables:
            for link in linking.links:
                if link.table == table.name:
                    logged[linking.name] |= _relinked(db, linking, link, keys, fetched)


def _keys(table: _Table, rows: Iterable[tuple[Any, ...]]) -> list[tuple[str, str]]:
    """(source, source_id) of fetched rows of a partner table (each row: rowid, then the table's columns)."""
    at_source, at_id = 1 + table.columns.index("source"), 1 + table.columns.index("source_id")
    return [(row[at_source], row[at_id]) for row in rows]


def _relinked(db: duckdb.DuckDBPyConnection, table: _Table, link: Link, rids: np.ndarray,
              keys: list[tuple[str, str]]) -> set[int]:
    """The rows of `table` whose `link` may now point elsewhere: those linked to a logged partner rowid, and the
    unlinked ones of a key a logged partner row has now."""
    db.register("columns_keys", {"rid": rids})
    found = {int(r[0]) for r in _run(db, f'SELECT _rid FROM {table.name} WHERE "{link.column}" IN'
                                         " (SELECT rid FROM columns_keys)")}
    db.unregister("columns_keys")
    if keys:
        db.register("columns_partners", {"source": np.array([k[0] for k in keys], dtype=object),
                                         "source_id": np.array([k[1] for k in keys], dtype=object)})
        found |= {int(r[0]) for r in _run(
            db, f'SELECT t._rid FROM {table.name} t SEMI JOIN columns_partners k ON k.source = t.source'
                f' AND k.source_id = t."{link.key}" WHERE t."{link.column}" IS NULL AND t."{link.key}" IS NOT NULL')}
        db.unregister("columns_partners")
    return found


def _insert(db: duckdb.DuckDBPyConnection, table: _Table, rows: Sequence[tuple[Any, ...]]) -> None:
    """Rows of the store into the copy: column arrays (numbers as float64 with NaN for NULL, exact below 2**53;
    text as objects), scanned by DuckDB and cast to the table's types."""
    names = ("_rid", *table.names)
    types = ("BIGINT", *table.kinds)
    arrays: dict[str, np.ndarray] = {}
    for name, kind, values in zip(names, types, zip(*rows, strict=True), strict=True):
        arrays[name] = np.array(values, dtype=np.float64 if kind != "VARCHAR" else object)
    db.register("columns_rows", arrays)
    casts = ", ".join(f'CAST("{n}" AS {t})' if t != "VARCHAR" else f'"{n}"' for n, t in zip(names, types, strict=True))
    _run(db, f"INSERT INTO {table.name} SELECT {casts} FROM columns_rows")
    db.unregister("columns_rows")
