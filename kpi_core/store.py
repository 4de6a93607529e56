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
from kpi_core.model import CONTACT_CHANGE, MESSAGE, ORDER, RECORD_TYPES, RecordType, check_record, to_json

SCHEMA_NAME = "helpdesk_kpi"
migrations = Migrations(SCHEMA_NAME)

_SQL_TYPES: dict[type, str] = {str: "TEXT", int: "INTEGER", float: "REAL", bool: "INTEGER", list: "TEXT", dict: "TEXT"}

# None is bound as NULL either way; registered, it is found at once in sqlite3's adapters instead of after a
# search for an adaptation protocol on each parameter. A first sync binds millions of None values (a contact
# has a dozen empty columns): ~0.2 us less per value, ~0.4 s of a 50,000-ticket sync's store time.
_NOTHING: dict[None, None] = {}
sqlite3.register_adapter(type(None), _NOTHING.get)


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


@migrations()
def m023_backfill(db: Database) -> None:
    """A first sync's newest-first backfill: each stream's time windows (UTC, ISO), the position
    reached inside each (the connector's own cursor format) and whether it is read. Written in
    the transaction of the pages a position covers, as cursors are."""
    db.execute(
        "CREATE TABLE backfill_windows (source TEXT NOT NULL, stream TEXT NOT NULL, window_start TEXT NOT NULL,"
        " window_end TEXT NOT NULL, position TEXT, done INTEGER NOT NULL DEFAULT 0, updated_at TEXT NOT NULL,"
        " PRIMARY KEY (source, stream, window_start))")
    # Where each backfilled stream's incremental read began, and whether it has stored a change since.
    db.execute("CREATE TABLE backfill_heads (source TEXT NOT NULL, stream TEXT NOT NULL, head_start TEXT NOT NULL,"
               " seen INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (source, stream))")


@migrations()
def m024_alerts(db: Database) -> None:
    """Alerts: one row per alert decided (contact x stage, KPI x period x segment, or a summary of others), one
    per (alert, sink) delivery with its state, and when alerting first saw each source (older breaches are
    summarised). A unique key makes "decided" happen once; no URL, address or password is stored, only labels."""
    db.execute(
        "CREATE TABLE alert_events (id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, kind TEXT NOT NULL,"
        " source TEXT, contact_id TEXT, stage TEXT, kpi TEXT, grain TEXT, period_start TEXT, segment TEXT,"
        " channel TEXT, market TEXT, grp TEXT, crossed_at TEXT, elapsed_s INTEGER, target_s INTEGER, value REAL,"
        " target TEXT, decided_at TEXT NOT NULL, disposition TEXT NOT NULL, summary_id INTEGER, covers INTEGER)"
    )
    db.execute("CREATE INDEX alert_events_decided ON alert_events (decided_at)")
    db.execute("CREATE INDEX alert_events_unsummarised ON alert_events (disposition) WHERE summary_id IS NULL")
    db.execute(
        "CREATE TABLE alert_deliveries (event_id INTEGER NOT NULL, sink TEXT NOT NULL, status TEXT NOT NULL,"
        " attempts INTEGER NOT NULL DEFAULT 0, updated_at TEXT NOT NULL, error TEXT,"
        " PRIMARY KEY (event_id, sink)) WITHOUT ROWID"
    )
    db.execute("CREATE INDEX alert_deliveries_status ON alert_deliveries (status)")
    db.execute("CREATE TABLE alert_sources (source TEXT PRIMARY KEY, since TEXT NOT NULL) WITHOUT ROWID")


@migrations()
def m025_events(db: Database) -> None:
    """The event log (launches, outages, sales: what explains a spike) and the digests sent, one row per cadence
    and period, so a digest goes out once per period whatever restarts the daemon meets."""
    # Dates are local dates of [kpis] timezone; `ends` is inclusive and NULL for a one-day event; `segment` is
    # the JSON object of the segment it concerns ('{}': everything).
    db.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, starts TEXT NOT NULL, ends TEXT, title TEXT NOT NULL,"
               " segment TEXT NOT NULL DEFAULT '{}', created_at TEXT NOT NULL)")
    # The same event twice (an import read again) is one event.
    db.execute("CREATE UNIQUE INDEX events_same ON events (starts, coalesce(ends, ''), title, segment)")
    db.execute("CREATE TABLE digests_sent (cadence TEXT NOT NULL, period_start TEXT NOT NULL,"
               " period_end TEXT NOT NULL, sent_at TEXT NOT NULL, sinks TEXT NOT NULL,"
               " PRIMARY KEY (cadence, period_start)) WITHOUT ROWID")


@migrations()
def m026_kpi_columns_log(db: Database) -> None:
    """The rows the KPI engine's columnar copy (kpi_core/kpis/columns.py) must take again: every insert, update and
    delete of a copied table logs its rowid here, whoever writes it (a sync, a facts refresh, a purge). A table
    listed in `kpi_columns_stale` is copied whole at the next compute, and meanwhile logs nothing (a facts rebuild
    would otherwise log every row twice)."""
    db.execute("CREATE TABLE kpi_columns_log (seq INTEGER PRIMARY KEY AUTOINCREMENT, tbl TEXT NOT NULL,"
               " rid INTEGER NOT NULL)")
    db.execute("CREATE TABLE kpi_columns_stale (tbl TEXT PRIMARY KEY) WITHOUT ROWID")
    for table in ("kpi_facts", "survey_responses", "people"):
        _follow_in_columns(db, table)


def _follow_in_columns(db: Database, table: str) -> None:
    """Have the KPI engine's columnar copy take `table` whole at the next compute, then follow its rows (m026)."""
    db.execute("INSERT INTO kpi_columns_stale VALUES (?)", [table])
    logging = f"NOT EXISTS (SELECT 1 FROM kpi_columns_stale WHERE tbl = '{table}')"
    log = f"INSERT INTO kpi_columns_log (tbl, rid) VALUES ('{table}', {{row}}.rowid);"
    db.execute(f"CREATE TRIGGER kpi_columns_{table}_ins AFTER INSERT ON {table} WHEN {logging}"
               f" BEGIN {log.format(row='NEW')} END")
    db.execute(f"CREATE TRIGGER kpi_columns_{table}_upd AFTER UPDATE ON {table} WHEN {logging}"
               f" BEGIN {log.format(row='NEW')} INSERT INTO kpi_columns_log (tbl, rid) SELECT '{table}', OLD.rowid"
               f" WHERE OLD.rowid != NEW.rowid; END")
    db.execute(f"CREATE TRIGGER kpi_columns_{table}_del AFTER DELETE ON {table} WHEN {logging}"
               f" BEGIN {log.format(row='OLD')} END")


@migrations()
def m027_orders(db: Database) -> None:
    """A shop's orders (Shopify, CSV imports), matched to helpdesk requesters by the keyed e-mail hash
    people.email_hash holds or by an explicit "source:requester_id". An order written, changed or deleted
    notes its customer's contacts and its day for the KPI engine, and logs its row for the columnar copy."""
    if not db["orders"].exists():  # a store created by this version has it from m001
        _create_record_table(db, ORDER)
    db.execute("CREATE INDEX IF NOT EXISTS orders_customer ON orders (customer_key)")
    db.execute("CREATE INDEX IF NOT EXISTS orders_requester ON orders (requester)")
    db.execute("CREATE INDEX IF NOT EXISTS orders_created ON orders (created_at)")
    db.execute("CREATE INDEX IF NOT EXISTS people_email_hash ON people (email_hash)")
    into = "INSERT INTO kpi_dirty_contacts SELECT c.source, c.source_id FROM contacts c"
    # Not "INSERT OR IGNORE" (see m011): an outer upsert's conflict rule would override it.
    absent = (" AND NOT EXISTS (SELECT 1 FROM kpi_dirty_contacts d"
              " WHERE d.source = c.source AND d.source_id = c.source_id);")

    def notes(r: str) -> str:
        by_hash = (f"{into} JOIN people p ON p.source = c.source AND p.source_id = c.requester_id"
                   f" WHERE {r}.customer_key IS NOT NULL AND p.email_hash = {r}.customer_key{absent}")
        # c.source || ':' || c.requester_id = requester, spelled so the contacts_requester index serves it.
        by_map = (f"{into} WHERE {r}.requester IS NOT NULL"
                  f" AND c.source = substr({r}.requester, 1, instr({r}.requester, ':') - 1)"
                  f" AND c.requester_id = substr({r}.requester, instr({r}.requester, ':') + 1){absent}")
        day = (f"INSERT INTO kpi_dirty_days SELECT substr({r}.created_at, 1, 10) WHERE NOT EXISTS"
               f" (SELECT 1 FROM kpi_dirty_days WHERE day = substr({r}.created_at, 1, 10));")
        return f" {by_hash} {by_map} {day}"

    inputs = ("customer_key", "requester", "created_at", "cancelled_at", "currency", "total", "refunds", "lines")
    changed = " OR ".join(f"OLD.[{c}] IS NOT NEW.[{c}]" for c in inputs)
    db.execute(f"CREATE TRIGGER kpi_orders_ins AFTER INSERT ON orders BEGIN{notes('NEW')} END")
    db.execute(f"CREATE TRIGGER kpi_orders_upd AFTER UPDATE ON orders WHEN {changed}"
               f" BEGIN{notes('OLD')}{notes('NEW')} END")
    db.execute(f"CREATE TRIGGER kpi_orders_del AFTER DELETE ON orders BEGIN{notes('OLD')} END")
    _follow_in_columns(db, "orders")  # the columnar copy follows orders as m026 has it follow its tables


@migrations()
def m028_value_facts(db: Database) -> None:
    """kpi_facts gain the per-contact value facts of an order feed (catalogue 3b, kpi_core/kpis/facts.py): the
    customer's key, whether the shop knows the customer, whether they ordered before the contact, their next
    orders after the contact and after its first resolution, their order value in the 90 days around it and how
    near a refund came. Derived data: forgetting the fingerprint makes the next compute rebuild the facts. A
    requester whose e-mail hash changes has their contacts noted, as a country change does (m011)."""
    for column, kind in (("customer", "TEXT"), ("shop_known", "INTEGER"), ("shop_matched", "INTEGER"),
                         ("ordered_before", "INTEGER"), ("created_epoch", "INTEGER"),
                         ("next_order_epoch", "INTEGER"), ("reorder_epoch", "INTEGER"),
                         ("value_before", "REAL"), ("value_after", "REAL"), ("refund_gap_s", "INTEGER")):
        db.execute(f"ALTER TABLE kpi_facts ADD COLUMN {column} {kind}")
    db.execute("DELETE FROM kpi_meta WHERE key = 'facts_fingerprint'")
    db.execute("INSERT OR IGNORE INTO kpi_columns_stale VALUES ('kpi_facts')")  # the copy takes the new columns
    db.execute(
        "CREATE TRIGGER kpi_people_hash_upd AFTER UPDATE OF email_hash ON people WHEN OLD.email_hash IS NOT"
        " NEW.email_hash BEGIN INSERT INTO kpi_dirty_contacts SELECT c.source, c.source_id FROM contacts c"
        " WHERE c.source = NEW.source AND c.requester_id = NEW.source_id AND NOT EXISTS"
        " (SELECT 1 FROM kpi_dirty_contacts d WHERE d.source = c.source AND d.source_id = c.source_id); END")


@migrations()
def m029_insight_records(db: Database) -> None:
    """Conversation insight: each message's detected language, sentiment and topic (kept instead of its words),
    and the group, priority and assignee changes the escalation facts are derived from (`contact_changes`)."""
    if not db[CONTACT_CHANGE.table].exists():  # a store created by this version has it from m001
        _create_record_table(db, CONTACT_CHANGE)
    db.execute("CREATE INDEX IF NOT EXISTS contact_changes_contact ON contact_changes (source, contact_id)")
    have = set(db["messages"].columns_dict)
    for column in ("language", "sentiment", "topic"):
        if column not in have:
            db.execute(f"ALTER TABLE messages ADD COLUMN [{column}] {_SQL_TYPES[MESSAGE.columns[column]]}")


@migrations()
def m030_insight_facts(db: Database) -> None:
    """Conversation insight's derived facts: on contacts (kpi_core/derive.py: detected and reply language, first,
    last and lowest sentiment, topic, the escalation inputs) and in kpi_facts (kpi_core/kpis/facts.py: reply
    language match, sentiment flags, escalated, topic). A store created after the model gained the contact
    columns has them from m001. The contacts with insight values or changes stored are derived again; the facts
    are rebuilt (their fingerprint forgotten) and the columnar copy takes the new columns whole."""
    have = set(db["contacts"].columns_dict)
    for column, kind in (("detected_language", "TEXT"), ("reply_language", "TEXT"), ("first_sentiment", "REAL"),
                         ("last_sentiment", "REAL"), ("min_sentiment", "REAL"), ("topic", "TEXT"),
                         ("regrouped_after_reply", "INTEGER"), ("priority_raised", "INTEGER"),
                         ("groups_seen", "TEXT")):
        if column not in have:
            db.execute(f"ALTER TABLE contacts ADD COLUMN [{column}] {kind}")
    for column, kind in (("reply_match", "INTEGER"), ("first_sentiment", "REAL"), ("last_sentiment", "REAL"),
                         ("min_sentiment", "REAL"), ("negative", "INTEGER"), ("started_negative", "INTEGER"),
                         ("recovered", "INTEGER"), ("escalated", "INTEGER"), ("topic", "TEXT")):
        db.execute(f"ALTER TABLE kpi_facts ADD COLUMN {column} {kind}")
    db.execute("DELETE FROM kpi_meta WHERE key = 'facts_fingerprint'")
    db.execute("INSERT OR IGNORE INTO kpi_columns_stale VALUES ('kpi_facts')")  # the copy takes the new columns
    db.execute("INSERT OR IGNORE INTO derive_pending (source, contact_id) SELECT source, contact_id FROM messages"
               " WHERE language IS NOT NULL OR sentiment IS NOT NULL OR topic IS NOT NULL"
               " UNION SELECT source, contact_id FROM contact_changes")


@migrations()
def m031_messages_index_covers_insight(db: Database) -> None:
    """The messages index the derivation reads (m013) holds the insight columns too (language, sentiment, topic,
    m029), so that deriving a contact again never visits the messages table. Without them every message's row
    was read as well: on 200,000 first-synced tickets the final derivation took 8.4 s instead of 7.6 s."""
    db.execute("DROP INDEX messages_contact")
    db.execute("CREATE INDEX messages_contact ON messages (source, contact_id, created_at, public, author_role,"
               " author_id, language, sentiment, topic)")


@migrations()
def m032_people_note_their_answers_days(db: Database) -> None:
    """A survey answer's language and market come from its requester when its contact has none (or it has no
    contact, a web form's rating): a person arriving, leaving or changing language, country, organization or tags
    notes the days of their answers for the engine, as a contact's change notes its own. The index makes that a
    look-up per person, not a scan of the answers."""
    db.execute("CREATE INDEX survey_requester ON survey_responses (source, requester_id)")

    def days(row: str) -> str:
        return (f"INSERT INTO kpi_dirty_days SELECT DISTINCT substr(s.created_at, 1, 10) FROM survey_responses s"
                f" WHERE s.source = {row}.source AND s.requester_id = {row}.source_id AND NOT EXISTS"
                f" (SELECT 1 FROM kpi_dirty_days d WHERE d.day = substr(s.created_at, 1, 10));")

    changed = " OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in ("language", "country", "organization_id", "tags"))
    db.execute(f"CREATE TRIGGER kpi_people_answers_ins AFTER INSERT ON people BEGIN {days('NEW')} END")
    db.execute(f"CREATE TRIGGER kpi_people_answers_upd AFTER UPDATE ON people WHEN {changed}"
               f" BEGIN {days('OLD')} {days('NEW')} END")
    db.execute(f"CREATE TRIGGER kpi_people_answers_del AFTER DELETE ON people BEGIN {days('OLD')} END")


@migrations()
def m033_alert_events_business_time(db: Database) -> None:
    """Whether a contact alert's figures are business time (`[alerts] business_hours` and a schedule covering the
    contact): 1 or 0, so that its texts, webhook body and listing say which clock they count by; an admin reading
    "1h 05m" on Monday for a ticket written on Friday evening must know it is business time. NULL for KPI alerts,
    summaries and the alerts decided before (their texts read as calendar time, as they did)."""
    db.execute("ALTER TABLE alert_events ADD COLUMN business INTEGER")


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


_SYNC_RUN_COLUMNS = ", ".join(SyncRun.__dataclass_fields__)  # named: a PostgreSQL table also has its `rowid`


@dataclass(frozen=True)
class BackfillWindow:
    """One time window of a stream's newest-first backfill (`backfill_windows`, m023)."""

    source: str
    stream: str
    start: str  # UTC, ISO 8601, inclusive
    end: str  # exclusive
    position: str | None  # where its read resumes (the connector's cursor format); None: at `start`
    done: bool


class Store:
    """The project's SQLite file and every read and write the rest of the code needs."""

    def __init__(self, db: Database) -> None:
        self.db = db
        # A PostgreSQL store (kpi_core/postgres/) rather than a SQLite file.
        self.on_server = getattr(db, "dialect", "sqlite") == "postgresql"
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
        by_columns: dict[tuple[str, ...], list[Mapping[str, Any]]] = {}  # rows of the same keys: one statement
        count = 0
        for row in rows:
            if not checked:
                check_record(kind, row)
            cols = tuple(row)
            same = by_columns.get(cols)
            if same is None:
                same = by_columns[cols] = []
            same.append(row)
            count += 1
        for cols, same in by_columns.items():
            self.db.conn.executemany(_upsert_sql(table, cols), _sql_rows(table, cols, same))
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
        sql = f"SELECT {_SYNC_RUN_COLUMNS} FROM sync_runs WHERE source = ?" + (" AND status = ?" if status else "")
        params: list[Any] = [source] + ([status] if status else [])
        row = self.db.execute(sql + " ORDER BY id DESC LIMIT 1", params).fetchone()
        return SyncRun(*row) if row else None


    # --- newest-first backfill (m023; kpi_core/backfill.py) ------------------------------

    def backfill_windows(self, source: str | None = None) -> list[BackfillWindow]:
        """Every backfill window (of `source`, or all), newest first."""
        sql = "SELECT source, stream, window_start, window_end, position, done FROM backfill_windows"
        rows = self.db.execute(sql + (" WHERE source = ?" if source else "") + " ORDER BY window_end DESC, stream",
                               [source] if source else []).fetchall()
        return [BackfillWindow(r[0], r[1], r[2], r[3], r[4], bool(r[5])) for r in rows]

    def save_backfill_window(self, window: BackfillWindow) -> None:
        """Insert or update one window (its position and state); callers hold the pages' transaction."""
        self.db.execute(
            "INSERT INTO backfill_windows VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (source, stream, window_start)"
            " DO UPDATE SET window_end = excluded.window_end, position = excluded.position, done = excluded.done,"
            " updated_at = excluded.updated_at",
            [window.source, window.stream, window.start, window.end, window.position, int(window.done), utc_now()])

    def delete_backfill_window(self, window: BackfillWindow) -> None:
        self.db.execute("DELETE FROM backfill_windows WHERE source = ? AND stream = ? AND window_start = ?",
                        [window.source, window.stream, window.start])

    def clear_backfill(self, source: str) -> None:
        with self.db.atomic():
            self.db.execute("DELETE FROM backfill_windows WHERE source = ?", [source])
            self.db.execute("DELETE FROM backfill_heads WHERE source = ?", [source])

    def save_backfill_head(self, source: str, stream: str, start: str, seen: bool = False) -> None:
        self.db.execute("INSERT INTO backfill_heads VALUES (?, ?, ?, ?) ON CONFLICT (source, stream)"
                        " DO UPDATE SET head_start = excluded.head_start, seen = excluded.seen",
                        [source, stream, start, int(seen)])

    def backfill_head(self, source: str, stream: str) -> tuple[str, bool] | None:
        """(where the stream's incremental read began, whether it has stored a change since); None: no backfill."""
        row = self.db.execute("SELECT head_start, seen FROM backfill_heads WHERE source = ? AND stream = ?",
                              [source, stream]).fetchone()
        return (row[0], bool(row[1])) if row else None

    def newer_contacts(self, source: str, rows: Sequence[Mapping[str, Any]]) -> set[str]:
        """Ids of `rows` (contacts) whose stored state changed later than the row's `updated_at`."""
        stamps = {str(r["source_id"]): r.get("updated_at") for r in rows}
        found = self.db.execute(
            "SELECT source_id, updated_at FROM contacts WHERE source = ?"
            " AND source_id IN (SELECT value FROM json_each(?))",
            [source, to_json(list(stamps))]).fetchall()
        return {sid for sid, stored in found
                if stored is not None and stamps.get(sid) is not None and stored > str(stamps[sid])}

    def close(self) -> None:
        self.db.close()


# Parents before children, so a page's contacts exist before their messages refresh them.
_WRITE_ORDER = ("groups", "organizations", "people", "orders", "contacts", "messages", "status_events",
                "contact_changes", "survey_responses")


@contextmanager
def immediate(conn: sqlite3.Connection) -> Iterator[None]:
    """One write transaction taken at once: reading what to change and changing it race no other writer."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.rollback()
        raise
    conn.commit()


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


# How a column's value goes to SQL: JSON text for lists and objects, 0/1 for booleans; other
# values go as they are.
_CONVERTERS: dict[str, dict[str, Callable[[Any], Any]]] = {
    kind.table: {name: to_json if typ in (list, dict) else int for name, typ in kind.columns.items()
                 if typ in (list, dict, bool)}
    for kind in RECORD_TYPES.values()
}
# (table, columns of a row in order) -> the positions whose values need converting, and how.
_CONVERSIONS: dict[tuple[str, tuple[str, ...]], tuple[tuple[int, Callable[[Any], Any]], ...]] = {}


def _conversions(table: str, cols: tuple[str, ...]) -> tuple[tuple[int, Callable[[Any], Any]], ...]:
    found = _CONVERSIONS.get((table, cols))
    if found is None:
        converters = _CONVERTERS[table]
        found = _CONVERSIONS[(table, cols)] = tuple(
            (i, converters[name]) for i, name in enumerate(cols) if name in converters)
    return found


def _sql_rows(table: str, cols: tuple[str, ...], rows: Sequence[Mapping[str, Any]]) -> list[Sequence[Any]]:
    """The rows' values in SQL form, once `check_record` has accepted them; every row has the columns `cols`.

    Only the few columns that need it are converted (a contact has ~40 columns, 8 of them JSON or
    booleans); the rest are taken in one step, not looked at one by one (the rows of a 50,000-ticket
    first sync: 1.2 s -> 1.0 s; most of what is left is encoding JSON)."""
    convert = _conversions(table, cols)
    if not convert:
        return [tuple(row.values()) for row in rows]
    out: list[Sequence[Any]] = []
    for row in rows:
        values = list(row.values())
        for i, to_sql in convert:
            value = values[i]
            if value is not None:
                values[i] = to_sql(value)
        out.append(values)
    return out


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


def is_server_url(location: str | Path) -> bool:
    """Whether the store's location names a PostgreSQL server rather than a SQLite file."""
    return isinstance(location, str) and location.startswith(POSTGRES_SCHEMES)


POSTGRES_SCHEMES = ("postgresql://", "postgres://")
DEFAULT_ACCOUNT = "main"


def open_store(path: str | Path, account: str = DEFAULT_ACCOUNT) -> Store:
    """Open (creating if needed) the store at `path`, owner-only, WAL, schema up to date.

    A `postgresql://` URL opens that server's database instead, in the schema of `account`
    (kpi_core/postgres/): the same tables, migrations and statements."""
    if is_server_url(path):
        return _open_server(str(path), account)
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


def account_schema(account: str) -> str:
    """The PostgreSQL schema holding an account's tables: its name in lower case, `-` as `_`."""
    return account.lower().replace("-", "_")


def _open_server(url: str, account: str) -> Store:
    from kpi_core.postgres import accounts, database, schema  # psycopg loads only for a PostgreSQL store

    try:
        db = database.connect(url, account_schema(account))
    except ConnectionError as exc:
        raise StoreError(str(exc)) from None
    where = f"{database.safe_url(url)} (account {account})"
    unknown = sorted(schema.applied(db, SCHEMA_NAME) - {m.name for m in migrations._migrations})
    if unknown:
        db.close()
        raise StoreError(f"{where}: the store was written by a newer helpdesk-kpi (schema steps"
                         f" {', '.join(unknown)}); upgrade helpdesk-kpi instead of downgrading")
    try:
        upgraded = schema.apply_migrations(db, migrations)
        if accounts.remember_name(db, account) or upgraded:
            accounts.refresh_views(db)  # a new account or a new schema step: all_accounts shows it
    except sqlite3.DatabaseError as exc:
        db.close()
        raise StoreError(f"{where}: cannot bring the schema up to date: {exc}") from exc
    return Store(db)  # type: ignore[arg-type]  # the same surface as sqlite-utils' Database


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
def store_at(path: str | Path, account: str = DEFAULT_ACCOUNT) -> Iterator[Store]:
    store = open_store(path, account)
    try:
        yield store
    finally:
        store.close()
