"""The local SQLite store: schema migrations, idempotent upserts, cursors and the run log.

One file, WAL mode, readable by its owner only. A page of normalized records and the
cursor that follows it are written in one transaction (`write_page`), so a crash at any
moment leaves either both or neither.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
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


# Contact columns the KPI facts read: a change to any of them marks the contact for a refresh.
KPI_FACT_INPUTS = (
    "channel", "status", "priority", "created_at", "first_customer_message_at", "first_agent_reply_at",
    "first_resolved_at", "last_resolved_at", "reopens", "agent_replies", "handle_seconds", "requester_id",
    "assignee_id", "group_id", "organization_id", "brand_id", "language", "country", "ticket_type", "tags",
    "custom", "is_bot_only", "has_bot_message", "is_outbound", "last_activity_at",
)


@migrations()
def m010_kpi_values(db: Database) -> None:
    """Computed KPI values and diagnostics, which periods they cover, business inputs and engine state."""
    db.execute(
        "CREATE TABLE kpi_values (grain TEXT NOT NULL, by_key TEXT NOT NULL, period_start TEXT NOT NULL,"
        " period_end TEXT NOT NULL, kpi TEXT NOT NULL, segment TEXT NOT NULL, value REAL, numerator REAL,"
        " denominator REAL, n INTEGER, computed_at TEXT NOT NULL,"
        " PRIMARY KEY (grain, by_key, period_start, period_end, kpi, segment)) WITHOUT ROWID"
    )
    db.execute(
        "CREATE TABLE kpi_computed (grain TEXT NOT NULL, by_key TEXT NOT NULL, period_start TEXT NOT NULL,"
        " period_end TEXT NOT NULL, computed_at TEXT NOT NULL, fingerprint TEXT NOT NULL,"
        " backlog_seq INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (grain, by_key, period_start, period_end)) WITHOUT ROWID"
    )
    db.execute(
        "CREATE TABLE kpi_diagnostics (grain TEXT NOT NULL, by_key TEXT NOT NULL, period_start TEXT NOT NULL,"
        " period_end TEXT NOT NULL, diagnostic TEXT NOT NULL, segment TEXT NOT NULL, evidence TEXT NOT NULL,"
        " message TEXT NOT NULL, computed_at TEXT NOT NULL,"
        " PRIMARY KEY (grain, by_key, period_start, period_end, diagnostic, segment)) WITHOUT ROWID"
    )
    db.execute(
        "CREATE TABLE kpi_inputs (id INTEGER PRIMARY KEY, origin TEXT NOT NULL, kind TEXT NOT NULL,"
        " start TEXT NOT NULL, [end] TEXT NOT NULL, value REAL NOT NULL, agent TEXT NOT NULL DEFAULT '',"
        " segment TEXT NOT NULL DEFAULT '', updated_at TEXT NOT NULL,"
        " UNIQUE (origin, kind, start, [end], agent, segment))"
    )
    db.execute("CREATE TABLE kpi_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")


@migrations()
def m011_kpi_facts(db: Database) -> None:
    """One narrow row of derived facts per contact, and triggers that note what a sync changed."""
    db.execute(
        "CREATE TABLE kpi_facts (id INTEGER PRIMARY KEY, source TEXT NOT NULL, source_id TEXT NOT NULL,"
        " is_deleted INTEGER NOT NULL, channel TEXT, agent TEXT, grp TEXT, language TEXT, market TEXT,"
        " priority TEXT, ticket_type TEXT, tags TEXT, custom TEXT, requester TEXT, created_at TEXT NOT NULL,"
        " first_resolved_at TEXT, last_resolved_at TEXT, replied INTEGER NOT NULL, start_epoch INTEGER,"
        " first_resolved_epoch INTEGER, activity_epoch INTEGER, frt_s INTEGER, res_s INTEGER,"
        " full_res_s INTEGER, handle_s REAL, agent_replies INTEGER NOT NULL, reopens INTEGER NOT NULL,"
        " bot_only INTEGER NOT NULL, csat_n INTEGER NOT NULL, csat_classified INTEGER NOT NULL,"
        " csat_pos INTEGER NOT NULL, transitions TEXT, next_contact_epoch INTEGER, schedule INTEGER,"
        " frt_bh_s INTEGER, res_bh_s INTEGER, full_res_bh_s INTEGER)"
    )
    db.execute("CREATE UNIQUE INDEX kpi_facts_contact ON kpi_facts (source, source_id)")
    db.execute("CREATE INDEX kpi_facts_created ON kpi_facts (created_at)")
    db.execute("CREATE INDEX kpi_facts_first_resolved ON kpi_facts (first_resolved_at)")
    db.execute("CREATE INDEX kpi_facts_last_resolved ON kpi_facts (last_resolved_at)")
    db.execute("CREATE INDEX kpi_facts_history ON kpi_facts (created_at) WHERE transitions IS NOT NULL")
    db.execute("CREATE TABLE kpi_dirty_contacts (source TEXT, source_id TEXT, PRIMARY KEY (source, source_id))"
               " WITHOUT ROWID")
    db.execute("CREATE TABLE kpi_dirty_days (day TEXT PRIMARY KEY) WITHOUT ROWID")
    # Not "INSERT OR IGNORE": an outer upsert's conflict rule overrides a trigger's OR IGNORE,
    # so a contact written twice would fail on the dirty table's key. WHERE NOT EXISTS does not.
    into = "INSERT INTO kpi_dirty_contacts"
    mark = into + " SELECT"
    changed = " OR ".join(f"OLD.[{c}] IS NOT NEW.[{c}]" for c in KPI_FACT_INPUTS)
    def absent(row: str, key: str = "source_id") -> str:
        return (f" {row}.source, {row}.{key} WHERE NOT EXISTS (SELECT 1 FROM kpi_dirty_contacts d"
                f" WHERE d.source = {row}.source AND d.source_id = {row}.{key});")

    db.execute(f"CREATE TRIGGER kpi_contacts_ins AFTER INSERT ON contacts BEGIN {mark}{absent('NEW')} END")
    db.execute(f"CREATE TRIGGER kpi_contacts_upd AFTER UPDATE ON contacts WHEN {changed}"
               f" BEGIN {mark}{absent('NEW')} END")
    db.execute(f"CREATE TRIGGER kpi_contacts_del AFTER DELETE ON contacts BEGIN {mark}{absent('OLD')} END")
    for event in ("INSERT", "UPDATE", "DELETE"):
        row = "OLD" if event == "DELETE" else "NEW"
        day = (f" INSERT INTO kpi_dirty_days SELECT substr({row}.at, 1, 10) WHERE NOT EXISTS"
               f" (SELECT 1 FROM kpi_dirty_days WHERE day = substr({row}.at, 1, 10));")
        db.execute(
            f"CREATE TRIGGER kpi_events_{event.lower()[:3]} AFTER {event} ON status_events"
            f" BEGIN {mark}{absent(row, 'contact_id')}{day} END"
        )
        rows = ("OLD", "NEW") if event == "UPDATE" else (row,)
        body = " ".join(
            f"INSERT INTO kpi_dirty_days SELECT substr({r}.created_at, 1, 10) WHERE NOT EXISTS"
            f" (SELECT 1 FROM kpi_dirty_days WHERE day = substr({r}.created_at, 1, 10));"
            f" {into} SELECT {r}.source, {r}.contact_id WHERE {r}.contact_id IS NOT NULL AND NOT EXISTS"
            f" (SELECT 1 FROM kpi_dirty_contacts d WHERE d.source = {r}.source AND d.source_id = {r}.contact_id);"
            for r in rows
        )
        db.execute(f"CREATE TRIGGER kpi_surveys_{event.lower()[:3]} AFTER {event} ON survey_responses BEGIN {body} END")
    requester = (f"{into} SELECT c.source, c.source_id FROM contacts c"
                 " WHERE c.source = NEW.source AND c.requester_id = NEW.source_id AND NOT EXISTS"
                 " (SELECT 1 FROM kpi_dirty_contacts d WHERE d.source = c.source AND d.source_id = c.source_id);")
    db.execute(f"CREATE TRIGGER kpi_people_ins AFTER INSERT ON people BEGIN {requester} END")
    db.execute(
        "CREATE TRIGGER kpi_people_upd AFTER UPDATE OF country, organization_id ON people"
        f" WHEN OLD.country IS NOT NEW.country OR OLD.organization_id IS NOT NEW.organization_id BEGIN {requester} END"
    )



@migrations()
def m012_kpi_facts_changes(db: Database) -> None:
    """Old (-1) and new (+1) versions of the facts rows each refresh changed, kept until `compute` moves the
    stored backlog by them (a refresh outside `compute`, such as write-back's, must not lose them)."""
    db.execute(
        "CREATE TABLE kpi_facts_changes (seq INTEGER NOT NULL, recorded_at TEXT NOT NULL, sign INTEGER NOT NULL,"
        " source TEXT NOT NULL,"
        " source_id TEXT NOT NULL, is_deleted INTEGER NOT NULL, channel TEXT, agent TEXT, grp TEXT, language TEXT,"
        " market TEXT, priority TEXT, tags TEXT, custom TEXT, created_at TEXT NOT NULL, first_resolved_at TEXT,"
        " transitions TEXT)"
    )
    db.execute("CREATE INDEX kpi_facts_changes_contact ON kpi_facts_changes (source, source_id, seq)")


@migrations()
def m013_derive_in_batches(db: Database) -> None:
    """Contacts whose reply/resolution facts wait for `derive.settle` (noted by each stored page), and
    a messages index that holds every column the derivation reads, so it never visits the table."""
    db.execute("CREATE TABLE derive_pending (source TEXT NOT NULL, contact_id TEXT NOT NULL,"
               " PRIMARY KEY (source, contact_id)) WITHOUT ROWID")
    # Facts of a store written before this step were derived page by page: nothing waits.
    db.execute("DROP INDEX messages_contact")
    db.execute("CREATE INDEX messages_contact ON messages (source, contact_id, created_at, public, author_role,"
               " author_id)")


@migrations()
def m014_contacts_marked_by_the_store(db: Database) -> None:
    """The store marks the contacts it writes for the KPI engine (`mark_for_kpis`), one statement per
    transaction, instead of two triggers that ran per contact row: on a 200,000-ticket first sync the
    triggers cost ~5 s of the store's ~38 s (the insert, and every update settle makes)."""
    db.execute("DROP TRIGGER kpi_contacts_ins")
    db.execute("DROP TRIGGER kpi_contacts_upd")


@migrations()
def m015_status_event_triggers_note_days_only(db: Database) -> None:
    """A status event's contact is marked by the store with the rest of its page (m014); the triggers on
    insert and update keep noting the event's day, which only they see. (Deleting one still marks both.)"""
    for event in ("INSERT", "UPDATE"):
        name = f"kpi_events_{event.lower()[:3]}"
        db.execute(f"DROP TRIGGER {name}")
        db.execute(f"CREATE TRIGGER {name} AFTER {event} ON status_events BEGIN INSERT INTO kpi_dirty_days"
                   " SELECT substr(NEW.at, 1, 10) WHERE NOT EXISTS"
                   " (SELECT 1 FROM kpi_dirty_days WHERE day = substr(NEW.at, 1, 10)); END")


@migrations()
def m016_contacts_platform_and_merges(db: Database) -> None:
    """contacts.platform (the app or network a contact came through) and contacts.merged_into (a merged
    contact's survivor). A store created after the model gained them already has both (m001 reads the model)."""
    have = set(db["contacts"].columns_dict)
    for column in ("platform", "merged_into"):
        if column not in have:
            db.execute(f"ALTER TABLE contacts ADD COLUMN [{column}] TEXT")


@migrations()
def m017_sync_run_warnings(db: Database) -> None:
    """sync_runs.warnings: what a connector warned about in a run that went on (one per line)."""
    db.execute("ALTER TABLE sync_runs ADD COLUMN warnings TEXT")


@migrations()
def m020_writeback(db: Database) -> None:
    """Write-back: its runs, the ledger of what was last written where, every attempt, cached field definitions."""
    db.execute(
        "CREATE TABLE writeback_runs (id INTEGER PRIMARY KEY, started_at TEXT NOT NULL, ended_at TEXT,"
        " status TEXT NOT NULL, dry_run INTEGER NOT NULL DEFAULT 0, planned INTEGER NOT NULL DEFAULT 0,"
        " requests INTEGER NOT NULL DEFAULT 0, written INTEGER NOT NULL DEFAULT 0, failed INTEGER NOT NULL DEFAULT 0,"
        " deferred INTEGER NOT NULL DEFAULT 0, api_calls INTEGER NOT NULL DEFAULT 0, outcome TEXT, error TEXT)"
    )
    # One row per (record, field) or (contact, note rule): the latest attempt and its result.
    db.execute(
        "CREATE TABLE writeback_ledger (helpdesk TEXT NOT NULL, object TEXT NOT NULL, record_id TEXT NOT NULL,"
        " kind TEXT NOT NULL, target TEXT NOT NULL, value TEXT, seen TEXT, status TEXT NOT NULL, error TEXT,"
        " attempts INTEGER NOT NULL, first_attempt_at TEXT NOT NULL, last_attempt_at TEXT NOT NULL,"
        " written_at TEXT, run_id INTEGER, PRIMARY KEY (helpdesk, object, record_id, kind, target)) WITHOUT ROWID"
    )
    db.execute("CREATE INDEX writeback_ledger_status ON writeback_ledger (status, helpdesk)")
    db.execute(
        "CREATE TABLE writeback_log (id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL, at TEXT NOT NULL,"
        " helpdesk TEXT NOT NULL, object TEXT NOT NULL, record_id TEXT NOT NULL, kind TEXT NOT NULL,"
        " target TEXT NOT NULL, value TEXT, status TEXT NOT NULL, error TEXT)"
    )
    db.execute("CREATE INDEX writeback_log_record ON writeback_log (helpdesk, object, record_id)")
    db.execute("CREATE INDEX writeback_log_at ON writeback_log (at)")
    db.execute(
        "CREATE TABLE writeback_fields (helpdesk TEXT NOT NULL, object TEXT NOT NULL, definitions TEXT NOT NULL,"
        " fetched_at TEXT NOT NULL, PRIMARY KEY (helpdesk, object)) WITHOUT ROWID"
    )


@migrations()
def m021_kpi_facts_platform_and_direction(db: Database) -> None:
    """kpi_facts (and its change log) gain `platform`, a segment, and `outbound` (catalogue 2c). The facts are
    derived data: forgetting their fingerprint makes the next compute rebuild them under the new readings."""
    db.execute("ALTER TABLE kpi_facts ADD COLUMN platform TEXT")
    db.execute("ALTER TABLE kpi_facts ADD COLUMN outbound INTEGER")
    db.execute("ALTER TABLE kpi_facts_changes ADD COLUMN platform TEXT")
    db.execute("DELETE FROM kpi_meta WHERE key = 'facts_fingerprint'")
    # Replies and bot messages now follow the customer's first message: derive every such contact again.
    db.execute("INSERT OR IGNORE INTO derive_pending (source, contact_id) SELECT source, source_id FROM contacts"
               " WHERE facts_from_events = 1")


@migrations()
def m022_kpi_history(db: Database) -> None:
    """History is kept (catalogue 2c): `frozen` periods are final, `partial` ones were computed after a purge
    from what was left. The triggers make a frozen period's values unwritable by any code path (a write to
    one is skipped, not failed, so a compute that meets one goes on); only clearing `frozen` reopens it."""
    db.execute("ALTER TABLE kpi_computed ADD COLUMN frozen INTEGER NOT NULL DEFAULT 0")
    db.execute("ALTER TABLE kpi_computed ADD COLUMN partial INTEGER NOT NULL DEFAULT 0")
    frozen = ("EXISTS (SELECT 1 FROM kpi_computed k WHERE k.frozen = 1 AND k.grain = {r}.grain"
              " AND k.by_key = {r}.by_key AND k.period_start = {r}.period_start AND k.period_end = {r}.period_end)")
    for event, row in (("INSERT", "NEW"), ("UPDATE", "OLD"), ("DELETE", "OLD")):
        db.execute(f"CREATE TRIGGER kpi_values_frozen_{event.lower()[:3]} BEFORE {event} ON kpi_values"
                   f" WHEN {frozen.format(r=row)} BEGIN SELECT RAISE(IGNORE); END")
    db.execute("CREATE TRIGGER kpi_computed_frozen_upd BEFORE UPDATE ON kpi_computed"
               " WHEN OLD.frozen = 1 AND NEW.frozen = 1 BEGIN SELECT RAISE(IGNORE); END")
    db.execute("CREATE TRIGGER kpi_computed_frozen_del BEFORE DELETE ON kpi_computed"
               " WHEN OLD.frozen = 1 BEGIN SELECT RAISE(IGNORE); END")


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
    warnings: str | None = None  # one per line (m017)


class Store:
    """The project's SQLite file and every read and write the rest of the code needs."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._noted = 0  # contacts noted since the last settle, an upper bound (one transaction's repeats aside)

    # --- records --------------------------------------------------------------------

    def upsert(self, table: str, rows: Iterable[Mapping[str, Any]]) -> int:
        """Insert or update rows by (source, source_id); keys absent from a row keep their value.

        Raises RecordError naming the record and key when a row does not fit its table. The
        contacts written, and those of the status events written, are marked for the KPI engine.
        """
        rows = list(rows)
        count = self._write_rows(table, rows)
        if table in _CONTACT_KEY:
            for source, ids in _ids_by_source(rows, _CONTACT_KEY[table]).items():
                mark_for_kpis(self.db.conn, source, ids)
        return count

    def _write_rows(self, table: str, rows: Iterable[Mapping[str, Any]], checked: bool = False) -> int:
        kind = RECORD_TYPES[table]
        by_columns: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
        count = 0
        for row in rows:
            if not checked:
                check_record(kind, row)
            by_columns.setdefault(tuple(row), []).append(_sql_values(kind, row))
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
        return self.write_pages(source, stream, [(records, cursor)], run_id, api_calls)

    def write_pages(
        self,
        source: str,
        stream: str,
        pages: Sequence[tuple[Mapping[str, Sequence[Mapping[str, Any]]], str | None]],
        run_id: int | None = None,
        api_calls: int = 0,
        checked: bool = False,
    ) -> int:
        """Store consecutive pages of one stream, each followed by its cursor, in one transaction.

        Returns the number of records. The contacts the pages touched are marked for the KPI engine
        and noted for derivation (`settle`); once many are noted, they are settled here, after the commit.
        `checked`: every row has passed `check_record` already (a connector's `Page.add` checks each).
        """
        count = 0
        touched: set[str] = set()  # one note per contact, however many of the pages touch it
        with self.db.atomic():
            for records, cursor in pages:
                for table in _WRITE_ORDER:
                    rows = records.get(table)
                    if rows:
                        count += self._write_rows(table, rows, checked)
                touched |= derive.touched_contacts(records)
                if cursor is not None:
                    self.set_cursor(source, stream, cursor)
            mark_for_kpis(self.db.conn, source, touched)
            self._noted += derive.note(self.db.conn, source, touched)
            if run_id is not None:
                self.db.execute(
                    "UPDATE sync_runs SET pages = pages + ?, records = records + ?, api_calls = ? WHERE id = ?",
                    [len(pages), count, api_calls, run_id],
                )
        if self._noted >= derive.SETTLE_AT:
            self._noted = derive.pending(self.db.conn)
            if self._noted >= derive.SETTLE_AT:
                self.settle(source)
        return count

    def settle(self, source: str | None = None) -> int:
        """Derive the facts of the contacts stored pages have noted (see kpi_core/derive.py)."""
        settled = derive.settle(self.db.conn, source)
        self._noted = derive.pending(self.db.conn) if source else 0
        return settled

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

    def finish_run(self, run_id: int, status: str, api_calls: int, error: str | None = None,
                   warnings: Sequence[str] = ()) -> None:
        with self.db.atomic():
            self.db.execute(
                "UPDATE sync_runs SET ended_at = ?, status = ?, api_calls = ?, error = ?, warnings = ? WHERE id = ?",
                [utc_now(), status, api_calls, error, "\n".join(warnings) or None, run_id],
            )

    def close_unfinished_runs(self, status: str, error: str, source: str | None = None) -> int:
        """Close run-log rows left 'running' by a process that died or abandoned them."""
        sql = "UPDATE sync_runs SET ended_at = ?, status = ?, error = ? WHERE status = 'running'"
        params: list[Any] = [utc_now(), status, error]
        if source is not None:
            sql += " AND source = ?"
            params.append(source)
        with self.db.atomic():
            return self.db.execute(sql, params).rowcount

    def last_run(self, source: str, status: str | None = None) -> SyncRun | None:
        sql = "SELECT * FROM sync_runs WHERE source = ?" + (" AND status = ?" if status else "")
        params: list[Any] = [source] + ([status] if status else [])
        row = self.db.execute(sql + " ORDER BY id DESC LIMIT 1", params).fetchone()
        return SyncRun(*row) if row else None

    def close(self) -> None:
        self.db.close()


# Parents before children, so a page's contacts exist before their messages refresh them.
_WRITE_ORDER = ("groups", "organizations", "people", "contacts", "messages", "status_events", "survey_responses")


def mark_for_kpis(conn: sqlite3.Connection, source: str, contact_ids: Iterable[str]) -> None:
    """Have the KPI engine rebuild these contacts' facts (kpi_core/kpis/facts.py) at its next refresh.

    Marks every contact written, changed or not (triggers marked only changed KPI inputs, at a cost
    per row): a refresh compares the rebuilt facts with the old ones, so an unchanged contact costs
    it one rebuild and redoes no period.
    """
    ids = list(contact_ids)
    if ids:
        conn.execute("INSERT OR IGNORE INTO kpi_dirty_contacts (source, source_id) SELECT ?, value FROM json_each(?)",
                     [source, to_json(ids)])


# Record tables whose writes the store marks for the KPI engine, and the column naming the contact.
_CONTACT_KEY = {"contacts": "source_id", "status_events": "contact_id"}


def _ids_by_source(rows: Iterable[Mapping[str, Any]], key: str) -> dict[str, set[str]]:
    ids: dict[str, set[str]] = {}
    for row in rows:
        ids.setdefault(row["source"], set()).add(row[key])
    return ids


# How each column's value goes to SQL, by table: JSON text for lists and objects, 0/1 for
# booleans, None for "as it is".
_CONVERTERS: dict[str, dict[str, Callable[[Any], Any] | None]] = {
    kind.table: {name: to_json if typ in (list, dict) else int if typ is bool else None
                 for name, typ in kind.columns.items()}
    for kind in RECORD_TYPES.values()
}


def _sql_values(kind: RecordType, row: Mapping[str, Any]) -> tuple[Any, ...]:
    """The row's values in SQL form, once `check_record` has accepted it."""
    converters = _CONVERTERS[kind.table]
    return tuple(value if value is None or (convert := converters[key]) is None else convert(value)
                 for key, value in row.items())


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
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"{path}: cannot create its folder {path.parent}: {exc.strerror}") from None
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
            # A 64 MiB page cache and fewer, larger WAL checkpoints: measured on a 200k-ticket
            # sync, local time 447 s -> 172 s, peak RSS 128 -> 193 MB.
            db.execute("PRAGMA cache_size=-65536")
            db.execute("PRAGMA wal_autocheckpoint=10000")
            # Deleted rows (forget, purge, updates) are overwritten with zeros, not left in free space.
            db.execute("PRAGMA secure_delete=ON")
            db.execute("PRAGMA foreign_keys=OFF")
            _refuse_newer_schema(db, path)
            migrations.apply(db)
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise StoreError(_open_problem(path, exc)) from exc
    finally:
        os.umask(old_umask)
    _restrict_permissions(path)
    return Store(db)


def _open_problem(path: Path, exc: sqlite3.DatabaseError) -> str:
    """Why a store could not be opened, in words an admin can act on."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    if name.startswith("SQLITE_READONLY") or "readonly" in str(exc):
        # SQLite writes the WAL and its index beside the file even to read, and migrates on open.
        return (f"{path}: the store is read-only: helpdesk-kpi needs to write the file and create files in"
                f" {path.parent} (its journal); check their permissions and that the disk is not mounted read-only")
    if name.startswith("SQLITE_CANTOPEN"):
        return f"{path}: the store cannot be opened: check that {path.parent} exists and can be written"
    if name in ("SQLITE_FULL", "SQLITE_IOERR") or name.startswith("SQLITE_IOERR"):
        return f"{path}: the store cannot be written ({exc}): check the disk"
    return f"{path}: not a helpdesk-kpi store, or damaged ({exc})"


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
