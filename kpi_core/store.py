"""The local SQLite store: schema migrations, idempotent upserts, cursors and the run log.

One file, WAL mode, readable by its owner only. A page of normalized records and the
cursor that follows it are written in one transaction (`write_page`), so a crash at any
moment leaves either both or neither.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from kpi_core import derive
from kpi_core.model import RECORD_TYPES, RecordType, check_record, to_json

SCHEMA_NAME = "helpdesk_kpi"
migrations = Migrations(SCHEMA_NAME)

_SQL_TYPES: dict[type, str] = {str: "TEXT", int: "INTEGER", float: "REAL", bool: "INTEGER", list: "TEXT", dict: "TEXT"}
_JSON_TYPES = (list, dict)


class StoreError(Exception):
    """The store cannot be opened or is of a newer schema than this program knows."""


def _create_record_table(db: Database, kind: RecordType) -> None:
    columns = ", ".join(f"[{name}] {_SQL_TYPES[typ]}" for name, typ in kind.columns.items())
    db.execute(f"CREATE TABLE [{kind.table}] ({columns}, PRIMARY KEY (source, source_id))")


@migrations()
def m001_records(db: Database) -> None:
    for kind in RECORD_TYPES.values():
        _create_record_table(db, kind)
    db.execute("CREATE INDEX contacts_created ON contacts (created_at)")
    db.execute("CREATE INDEX contacts_first_resolved ON contacts (first_resolved_at)")
    db.execute("CREATE INDEX contacts_requester ON contacts (source, requester_id, created_at)")
    db.execute("CREATE INDEX messages_contact ON messages (source, contact_id)")
    db.execute("CREATE INDEX status_events_contact ON status_events (source, contact_id)")
    db.execute("CREATE INDEX survey_created ON survey_responses (kind, created_at)")
    db.execute("CREATE INDEX survey_contact ON survey_responses (source, contact_id)")


@migrations()
def m002_sync_state(db: Database) -> None:
    db.execute(
        "CREATE TABLE cursors (source TEXT NOT NULL, stream TEXT NOT NULL, cursor TEXT,"
        " updated_at TEXT NOT NULL, PRIMARY KEY (source, stream))"
    )
    db.execute(
        "CREATE TABLE sync_runs (id INTEGER PRIMARY KEY, source TEXT NOT NULL, kind TEXT NOT NULL,"
        " started_at TEXT NOT NULL, ended_at TEXT, status TEXT NOT NULL, pages INTEGER NOT NULL DEFAULT 0,"
        " records INTEGER NOT NULL DEFAULT 0, api_calls INTEGER NOT NULL DEFAULT 0, error TEXT)"
    )
    db.execute("CREATE INDEX sync_runs_source ON sync_runs (source, started_at)")
    db.execute(
        "CREATE TABLE quarantine (source TEXT NOT NULL, stream TEXT NOT NULL, record_id TEXT NOT NULL,"
        " error TEXT NOT NULL, seen_at TEXT NOT NULL, PRIMARY KEY (source, stream, record_id))"
    )


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class SyncRun:
    id: int
    source: str
    kind: str
    started_at: str
    ended_at: str | None
    status: str
    pages: int
    records: int
    api_calls: int
    error: str | None


class Store:
    """The project's SQLite file and every read and write the rest of the code needs."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # --- records --------------------------------------------------------------------

    def upsert(self, table: str, rows: Iterable[Mapping[str, Any]]) -> int:
        """Insert or update rows by (source, source_id); keys absent from a row keep their value."""
        kind = RECORD_TYPES[table]
        by_columns: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
        count = 0
        for row in rows:
            check_record(kind, row)
            cols = tuple(row)
            by_columns.setdefault(cols, []).append(tuple(_to_sql(row[c]) for c in cols))
            count += 1
        for cols, values in by_columns.items():
            self.db.conn.executemany(_upsert_sql(table, cols), values)
        return count

    def write_page(
        self,
        source: str,
        stream: str,
        records: Mapping[str, Sequence[Mapping[str, Any]]],
        cursor: str | None,
        run_id: int | None = None,
        api_calls: int = 0,
    ) -> int:
        """Store one page and move its cursor, atomically. Returns the number of records."""
        with self.db.atomic():
            count = 0
            for table in _WRITE_ORDER:
                rows = records.get(table)
                if rows:
                    count += self.upsert(table, rows)
            touched = derive.touched_contacts(records)
            if touched:
                derive.refresh_contacts(self.db.conn, source, touched)
            if cursor is not None:
                self.set_cursor(source, stream, cursor)
            if run_id is not None:
                self.db.execute(
                    "UPDATE sync_runs SET pages = pages + 1, records = records + ?, api_calls = ? WHERE id = ?",
                    [count, api_calls, run_id],
                )
        return count

    def quarantine(self, source: str, stream: str, record_id: str, error: str) -> None:
        with self.db.atomic():
            self.db.execute(
                "INSERT INTO quarantine VALUES (?, ?, ?, ?, ?) ON CONFLICT (source, stream, record_id)"
                " DO UPDATE SET error = excluded.error, seen_at = excluded.seen_at",
                [source, stream, record_id, error, utc_now()],
            )

    def count(self, table: str, source: str | None = None) -> int:
        if source is None:
            return int(self.db.execute(f"SELECT count(*) FROM [{table}]").fetchone()[0])
        return int(self.db.execute(f"SELECT count(*) FROM [{table}] WHERE source = ?", [source]).fetchone()[0])

    # --- cursors --------------------------------------------------------------------

    def get_cursor(self, source: str, stream: str) -> str | None:
        row = self.db.execute("SELECT cursor FROM cursors WHERE source = ? AND stream = ?", [source, stream]).fetchone()
        return row[0] if row else None

    def set_cursor(self, source: str, stream: str, cursor: str) -> None:
        self.db.execute(
            "INSERT INTO cursors VALUES (?, ?, ?, ?) ON CONFLICT (source, stream)"
            " DO UPDATE SET cursor = excluded.cursor, updated_at = excluded.updated_at",
            [source, stream, cursor, utc_now()],
        )

    def clear_cursors(self, source: str) -> None:
        with self.db.atomic():
            self.db.execute("DELETE FROM cursors WHERE source = ?", [source])

    def cursors(self, source: str) -> dict[str, str]:
        rows = self.db.execute("SELECT stream, cursor FROM cursors WHERE source = ?", [source]).fetchall()
        return {stream: cursor for stream, cursor in rows}

    # --- run log --------------------------------------------------------------------

    def start_run(self, source: str, kind: str = "sync") -> int:
        with self.db.atomic():
            cur = self.db.execute(
                "INSERT INTO sync_runs (source, kind, started_at, status) VALUES (?, ?, ?, 'running')",
                [source, kind, utc_now()],
            )
        return int(cur.lastrowid or 0)

    def finish_run(self, run_id: int, status: str, api_calls: int, error: str | None = None) -> None:
        with self.db.atomic():
            self.db.execute(
                "UPDATE sync_runs SET ended_at = ?, status = ?, api_calls = ?, error = ? WHERE id = ?",
                [utc_now(), status, api_calls, error, run_id],
            )

    def last_run(self, source: str, status: str | None = None) -> SyncRun | None:
        sql = "SELECT * FROM sync_runs WHERE source = ?" + (" AND status = ?" if status else "")
        params: list[Any] = [source] + ([status] if status else [])
        row = self.db.execute(sql + " ORDER BY id DESC LIMIT 1", params).fetchone()
        return SyncRun(*row) if row else None

    def close(self) -> None:
        self.db.close()


# Parents before children, so a page's contacts exist before their messages refresh them.
_WRITE_ORDER = ("groups", "organizations", "people", "contacts", "messages", "status_events", "survey_responses")


def _to_sql(value: Any) -> Any:
    if isinstance(value, _JSON_TYPES):
        return to_json(value)
    if isinstance(value, bool):
        return int(value)
    return value


_UPSERT_SQL_CACHE: dict[tuple[str, tuple[str, ...]], str] = {}


def _upsert_sql(table: str, cols: tuple[str, ...]) -> str:
    key = (table, cols)
    sql = _UPSERT_SQL_CACHE.get(key)
    if sql is None:
        names = ", ".join(f"[{c}]" for c in cols)
        marks = ", ".join("?" for _ in cols)
        updates = ", ".join(f"[{c}] = excluded.[{c}]" for c in cols if c not in ("source", "source_id"))
        conflict = f"DO UPDATE SET {updates}" if updates else "DO NOTHING"
        sql = f"INSERT INTO [{table}] ({names}) VALUES ({marks}) ON CONFLICT (source, source_id) {conflict}"
        _UPSERT_SQL_CACHE[key] = sql
    return sql


def _restrict_permissions(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        candidate = Path(str(path) + suffix)
        if candidate.exists():
            os.chmod(candidate, 0o600)


def open_store(path: str | Path) -> Store:
    """Open (creating if needed) the store at `path`, owner-only, WAL, schema up to date."""
    path = Path(path)
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    old_umask = os.umask(0o077)  # WAL and SHM files are created later by SQLite itself
    try:
        try:
            # Autocommit outside explicit transactions: every write path uses db.atomic(),
            # and nothing may sit in an implicit transaction holding the write lock.
            conn = sqlite3.connect(str(path), timeout=30, check_same_thread=False, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"{path}: cannot open the store: {exc}") from exc
        db = Database(conn)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA foreign_keys=OFF")
            _refuse_newer_schema(db, path)
            migrations.apply(db)
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise StoreError(f"{path}: not a helpdesk-kpi store or damaged: {exc}") from exc
    finally:
        os.umask(old_umask)
    _restrict_permissions(path)
    return Store(db)


def _refuse_newer_schema(db: Database, path: Path) -> None:
    """A store written by a newer version must not be opened by an older one (downgrade)."""
    if not db.table(Migrations.migrations_table).exists():
        return
    known = {m.name for m in migrations._migrations}
    applied = {row[0] for row in db.execute(
        f"SELECT name FROM [{Migrations.migrations_table}] WHERE migration_set = ?", [SCHEMA_NAME]
    ).fetchall()}
    unknown = sorted(applied - known)
    if unknown:
        raise StoreError(
            f"{path}: the store was written by a newer helpdesk-kpi (schema steps {', '.join(unknown)});"
            " upgrade helpdesk-kpi instead of downgrading"
        )


@contextmanager
def store_at(path: str | Path) -> Iterator[Store]:
    store = open_store(path)
    try:
        yield store
    finally:
        store.close()
