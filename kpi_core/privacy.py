"""Erasing one person (`forget`) and the retention purge (`purge`); history is kept (catalogue 2c).

Where a person's records live (`PERSON_TABLES`, checked by the tests against the schema):
their contacts (as requester) and what hangs off them (messages, status events, group and
priority changes, survey responses, the KPI engine's per-contact facts), their own row in
`people`, the messages and survey answers they left elsewhere, write-back rows about their contacts or
themselves, and quarantine entries of those records.

Deleting a contact fires the KPI engine's change triggers, which would have the next
`compute` redo the periods the contact was in from what is left, and so change values
that must stay (they are aggregates). Both operations therefore compute first, then, in the
transaction that deletes, freeze the ended periods the contacts fall in (`purge` also every
ended period that starts before its cutoff) so that no later compute, `--full` or a settings
change included, can move them; they delete the engine's facts of those contacts themselves
and withdraw the change marks the deletion added. What still moves is recomputed at once from
what is left: the running periods they fall in (their days are marked changed again) and the
backlog of later periods (the contacts' last facts go to the engine's change log as removed).

The store runs with `secure_delete`, so deleted rows are overwritten in place; at the end
the WAL is checkpointed and truncated, so no copy of a deleted page lingers there either.
A PostgreSQL store has no such setting: a deleted row's bytes stay in its table's pages until
they are reused, so the tables that lost rows are rewritten without them (`VACUUM FULL`) instead
(what PostgreSQL's own WAL, archives and backups keep is the server's: docs/privacy.md).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import TYPE_CHECKING, cast

from connectors import registry
from connectors.plugin import WriteLevel
from kpi_core.kpis import columns, facts, values
from kpi_core.kpis import periods as P
from kpi_core.kpis.api import compute
from kpi_core.kpis.context import get_meta, set_meta
from kpi_core.model import email_hash
from kpi_core.settings import Settings
from kpi_core.store import Store, immediate, utc_now

if TYPE_CHECKING:
    from kpi_core.postgres.database import PgConnection

# Every table that holds a trace of a person, in deletion order: children before parents.
PERSON_TABLES = (
    "messages", "status_events", "contact_changes", "survey_responses", "kpi_facts", "contacts", "people",
    "writeback_ledger", "writeback_log", "quarantine", "derive_pending", "alert_events", "orders",
)
# Write-back rows (migration m020_writeback) name a record by (helpdesk, object, record_id).
WRITEBACK_TABLES = ("writeback_ledger", "writeback_log")


@dataclass(frozen=True)
class Person:
    source: str
    id: str
    role: str | None = None  # None when the store has no people row for this id


@dataclass
class Deletion:
    """Rows deleted per table, and whether the WAL could be emptied afterwards (on PostgreSQL: whether the tables
    that lost rows were rewritten without them; `busy` names those another session kept locked)."""

    counts: dict[str, int] = field(default_factory=lambda: {t: 0 for t in PERSON_TABLES})
    wal_truncated: bool = False
    busy: list[str] = field(default_factory=list)
    frozen: int = 0  # stored periods whose KPI values became final
    notes: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass
class Purge(Deletion):
    cutoff: str = ""
    computed_since: date | None = None


class PrivacyError(ValueError):
    """An erasure request that cannot be carried out as asked."""


# --- finding a person ------------------------------------------------------------------------


def person(store: Store, source: str, person_id: str) -> Person:
    row = store.db.execute("SELECT role FROM people WHERE source = ? AND source_id = ?", [source, person_id]).fetchone()
    return Person(source, person_id, row[0] if row else None)


def people_by_email(store: Store, address: str, hash_key: bytes | None, source: str | None = None) -> list[Person]:
    """Everyone whose e-mail address is `address`, in every helpdesk: by keyed hash, or by stored address."""
    normalized = address.strip().lower()
    if not normalized:
        raise PrivacyError("--email: empty address")
    stored_addresses = store.db.execute("SELECT 1 FROM people WHERE email IS NOT NULL LIMIT 1").fetchone()
    if hash_key is None and not stored_addresses:
        raise PrivacyError(
            "--email needs [privacy] hash_key (set HELPDESK_KPI_PRIVACY__HASH_KEY to the key the syncs used):"
            " the store keeps only the keyed hash of an address, never the address"
        )
    sql = "SELECT source, source_id, role FROM people WHERE (email_hash = ? OR lower(trim(email)) = ?)"
    params: list[str | None] = [email_hash(normalized, hash_key) if hash_key else None, normalized]
    if source is not None:
        sql += " AND source = ?"
        params.append(source)
    return [Person(*row) for row in store.db.execute(sql + " ORDER BY source, source_id", params).fetchall()]


# --- erasure ---------------------------------------------------------------------------------


def forget(store: Store, settings: Settings, people: Sequence[Person], now: datetime | None = None,
           customer_keys: Sequence[str] = ()) -> Deletion:
    """Delete every record of these people (see the module docstring); the ended periods they fall in are frozen.

    `customer_keys` (keyed e-mail hashes) also erase the shop orders of a customer no helpdesk knows."""
    deletion = Deletion()
    if not people and not customer_keys:
        deletion.wal_truncated = checkpoint(store, deletion)
        return deletion
    moment = now or datetime.now(timezone.utc)
    conn = store.db.conn
    keys = json.dumps(list(customer_keys))
    ordered = conn.execute("SELECT min(created_at) FROM orders WHERE customer_key IN (SELECT value FROM json_each(?))",
                           [keys]).fetchone()[0]
    first = min((d for d in (_first_day_of(conn, people),
                             date.fromisoformat(ordered[:10]) if ordered else None) if d is not None), default=None)
    if first is not None:
        compute(store, settings, since=first, now=moment)
    with immediate(conn), _scratch(conn):
        conn.executemany("INSERT OR IGNORE INTO temp.gone_people VALUES (?, ?, ?)",
                         [(p.source, p.id, int(p.role in (None, "customer"))) for p in people])
        conn.execute("INSERT OR IGNORE INTO temp.gone_contacts SELECT c.source, c.source_id FROM contacts c"
                     " JOIN temp.gone_people g ON g.source = c.source AND g.source_id = c.requester_id")
        _note_gone_days(conn, settings.kpis.timezone)
        deletion.frozen = values.freeze_containing(conn, "temp.gone_days", _today(moment, settings))
        _delete_traces(conn, deletion, keys)
    # The engine's columnar copy is rebuilt from what is left rather than edited: no byte of theirs outlives it.
    columns.remove(conn, settings.store.path)  # a PostgreSQL account's copy lives beside [store] path
    if first is not None:
        compute(store, settings, since=first, now=moment)  # the running periods, without them
    deletion.wal_truncated = checkpoint(store, deletion)
    deletion.notes.extend(_staff_notes(people))
    return deletion


def _staff_notes(people: Sequence[Person]) -> list[str]:
    return [f"{p.source} {p.id} is {'an' if p.role == 'agent' else 'a'} {p.role}: their messages on other"
            " people's contacts were kept (they carry no text unless bodies are stored, and the reply facts"
            " of those contacts rest on them)" for p in people if p.role not in (None, "customer")]


def _first_day_of(conn: sqlite3.Connection, people: Sequence[Person]) -> date | None:
    """The first day any KPI value rests on these people: their first contact or survey answer."""
    found = conn.execute(
        "WITH p(source, id) AS (SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(?))"
        " SELECT min(t) FROM (SELECT c.created_at AS t FROM contacts c JOIN p ON p.source = c.source"
        " AND p.id = c.requester_id UNION ALL SELECT s.created_at FROM survey_responses s JOIN p"
        " ON p.source = s.source AND p.id = s.requester_id)",
        [json.dumps([[p.source, p.id] for p in people])]).fetchone()[0]
    return date.fromisoformat(found[:10]) if found else None


def _note_gone_days(conn: sqlite3.Connection, zone: str, loose_before: str | None = None) -> None:
    """temp.gone_days: the days the KPI values of the gone records are anchored on (creation, first and last
    resolution, survey answers; with `loose_before`, also unattached answers older than it, which go too), as
    dates in `[kpis] timezone`, the dates periods are stored by (a UTC day can touch two local ones)."""
    gone = "(c.source, c.source_id) IN (SELECT source, source_id FROM temp.gone_contacts)"
    anchors = " UNION ".join(f"SELECT substr(c.{column}, 1, 10) FROM contacts c WHERE {gone} AND c.{column} IS NOT NULL"
                             for column in facts.ANCHOR_COLUMNS)
    answers = ("SELECT substr(s.created_at, 1, 10) FROM survey_responses s WHERE (s.source, s.contact_id) IN"
               " (SELECT source, source_id FROM temp.gone_contacts) OR (s.source, s.requester_id) IN"
               " (SELECT source, source_id FROM temp.gone_people)")
    if loose_before is not None:
        answers += " OR (s.contact_id IS NULL AND s.created_at < :loose)"
    conn.execute(f"INSERT OR IGNORE INTO temp.gone_days {anchors} UNION {answers}", {"loose": loose_before})
    utc_days = [date.fromisoformat(day) for (day,) in conn.execute("SELECT day FROM temp.gone_days")]
    conn.executemany("INSERT OR IGNORE INTO temp.gone_days VALUES (?)",
                     [(day.isoformat(),) for day in P.local_days(utc_days, zone)])


def _delete_traces(conn: sqlite3.Connection, deletion: Deletion, customer_keys: str = "[]") -> None:
    """Delete what temp.gone_contacts and temp.gone_people name, in every table of PERSON_TABLES, and the orders of
    `customer_keys` (a JSON list of keyed e-mail hashes)."""
    in_contacts = "(source, {col}) IN (SELECT source, source_id FROM temp.gone_contacts)"
    in_people = "(source, {col}) IN (SELECT source, source_id FROM temp.gone_people)"
    authored = "(source, author_id) IN (SELECT source, source_id FROM temp.gone_people WHERE authored = 1)"
    _delete(conn, deletion, "messages", f"{in_contacts.format(col='contact_id')} OR {authored}")
    _delete(conn, deletion, "status_events", in_contacts.format(col="contact_id"))
    _delete(conn, deletion, "contact_changes", in_contacts.format(col="contact_id"))
    _delete(conn, deletion, "survey_responses",
            f"{in_contacts.format(col='contact_id')} OR {in_people.format(col='requester_id')}")
    _leave_backlog(conn)
    _delete(conn, deletion, "kpi_facts", in_contacts.format(col="source_id"))
    _delete(conn, deletion, "derive_pending", in_contacts.format(col="contact_id"))
    # The alerts sent about their contacts (kpi_core/alerts): the deliveries first, then the alerts.
    conn.execute("DELETE FROM alert_deliveries WHERE event_id IN (SELECT id FROM alert_events WHERE"
                 f" {in_contacts.format(col='contact_id')})")
    _delete(conn, deletion, "alert_events", in_contacts.format(col="contact_id"))
    _delete(conn, deletion, "contacts", in_contacts.format(col="source_id"))
    # Their shop orders: by the keyed e-mail hash their people rows hold, or by an explicit customer-id map.
    _delete(conn, deletion, "orders",
            "customer_key IN (SELECT p.email_hash FROM people p JOIN temp.gone_people g ON g.source = p.source"
            " AND g.source_id = p.source_id WHERE p.email_hash IS NOT NULL)"
            " OR requester IN (SELECT source || ':' || source_id FROM temp.gone_people)"
            " OR customer_key IN (SELECT value FROM json_each(?))", [customer_keys])
    _delete(conn, deletion, "people", in_people.format(col="source_id"))
    _writeback_records(conn)
    for table in WRITEBACK_TABLES:
        _delete(conn, deletion, table,
                "(helpdesk, object, record_id) IN (SELECT helpdesk, object, record_id FROM temp.gone_records)")
    # Connectors name quarantined records "<kind>:<id>" or "<kind> <id>" (or the bare id).
    _delete(conn, deletion, "quarantine",
            "EXISTS (SELECT 1 FROM (SELECT source, source_id FROM temp.gone_contacts UNION ALL"
            " SELECT source, source_id FROM temp.gone_people) g WHERE g.source = quarantine.source"
            " AND (quarantine.record_id = g.source_id OR substr(quarantine.record_id, -length(g.source_id) - 1)"
            " IN (':' || g.source_id, ' ' || g.source_id)))")
    _keep_kpi_values(conn)
    _redo_running_periods(conn)


def _delete(conn: sqlite3.Connection, deletion: Deletion, table: str, where: str, params: Sequence[str] = ()) -> None:
    deletion.counts[table] += conn.execute(f"DELETE FROM [{table}] WHERE {where}", params).rowcount


def _writeback_records(conn: sqlite3.Connection) -> None:
    """temp.gone_records: the write-back (helpdesk, object, record_id) of the gone contacts and people."""
    for helpdesk, found in registry.plugins().items():
        for obj, level in (found.write_facts.objects.items() if found.write_facts else ()):
            source_table = {WriteLevel.CONTACT: "gone_contacts", WriteLevel.REQUESTER: "gone_people"}.get(level)
            if source_table is not None:
                conn.execute(f"INSERT OR IGNORE INTO temp.gone_records SELECT source, ?, source_id"
                             f" FROM temp.{source_table} WHERE source = ?", [obj, helpdesk])


def _leave_backlog(conn: sqlite3.Connection) -> None:
    """Log the gone contacts' facts as removed, so that the next compute takes them out of the backlog of the
    later periods (backlog.py). They are logged under a number, not the contact's id: nothing names them."""
    gone = conn.execute("SELECT count(*) FROM kpi_facts WHERE (source, source_id) IN"
                        " (SELECT source, source_id FROM temp.gone_contacts)").fetchone()[0]
    if not gone:
        return
    seq = int(get_meta(conn, "facts_changes_seq") or 0) + 1
    set_meta(conn, "facts_changes_seq", str(seq))
    columns = [c for c in facts.CHANGE_COLUMNS if c != "source_id"]
    conn.execute(
        f"INSERT INTO kpi_facts_changes (seq, recorded_at, sign, source_id, {', '.join(columns)})"
        f" SELECT ?, ?, -1, 'gone-' || id, {', '.join(columns)} FROM kpi_facts"
        " WHERE (source, source_id) IN (SELECT source, source_id FROM temp.gone_contacts)", [seq, utc_now()])


def _redo_running_periods(conn: sqlite3.Connection) -> None:
    """Mark the gone records' days changed again: the next compute redoes the periods holding them that are
    still running (ended ones are frozen by now, and no compute redoes a frozen period)."""
    conn.execute("INSERT INTO kpi_dirty_days SELECT day FROM temp.gone_days"
                 " WHERE day NOT IN (SELECT day FROM kpi_dirty_days)")


def _keep_kpi_values(conn: sqlite3.Connection) -> None:
    """Withdraw the change marks the deletion added, so the next compute does not redo those periods."""
    conn.execute("DELETE FROM kpi_dirty_days WHERE day NOT IN (SELECT day FROM temp.dirty_days_before)")
    conn.execute(
        "DELETE FROM kpi_dirty_contacts WHERE (source, source_id) IN (SELECT source, source_id FROM temp.gone_contacts)"
        " OR (source, source_id) NOT IN (SELECT source, source_id FROM temp.dirty_contacts_before)")


# --- retention -------------------------------------------------------------------------------


def retention_cutoff(settings: Settings, now: datetime | None = None) -> str:
    moment = (now or datetime.now(timezone.utc)) - timedelta(days=settings.privacy.retention_days)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class PurgePlan:
    """What a purge would delete now (`purge --dry-run`): nothing is computed, frozen or deleted."""

    cutoff: str
    contacts: int
    loose_answers: int
    oldest: str | None


def purge_plan(store: Store, settings: Settings, now: datetime | None = None) -> PurgePlan:
    cutoff = retention_cutoff(settings, now)
    contacts, oldest = store.db.execute(f"SELECT count(*), min(created_at) FROM contacts WHERE {_EXPIRED}",
                                        [cutoff]).fetchone()
    loose = store.db.execute("SELECT count(*) FROM survey_responses WHERE contact_id IS NULL AND created_at < ?",
                             [cutoff]).fetchone()[0]
    return PurgePlan(cutoff, int(contacts), int(loose), oldest)


def purge(store: Store, settings: Settings, now: datetime | None = None) -> Purge:
    """Delete contacts idle for longer than retention_days (after computing their KPI values), and their records.

    Also goes: survey answers tied to no contact and older than the cutoff, and customers
    whose every contact went (their people row). Every stored period that contains or precedes
    the cutoff and has ended is frozen, and so is every ended period the gone records fall in;
    the running periods and the backlog of later periods are recomputed from what is left.
    """
    moment = now or datetime.now(timezone.utc)
    result = Purge(cutoff=retention_cutoff(settings, moment))
    conn = store.db.conn
    oldest = conn.execute(f"SELECT min(created_at) FROM contacts WHERE {_EXPIRED}", [result.cutoff]).fetchone()[0]
    loose = conn.execute("SELECT min(created_at) FROM survey_responses WHERE contact_id IS NULL AND created_at < ?",
                         [result.cutoff]).fetchone()[0]
    first = min(filter(None, (oldest, loose)), default=None)
    if first is None:
        result.wal_truncated = checkpoint(store, result)
        return result

    result.computed_since = date.fromisoformat(first[:10])
    compute(store, settings, since=result.computed_since, now=moment)
    with immediate(conn), _scratch(conn):
        conn.execute(f"INSERT INTO temp.gone_contacts SELECT source, source_id FROM contacts WHERE {_EXPIRED}",
                     [result.cutoff])
        # Customers left with no contact: their people row goes too.
        conn.execute(
            "INSERT INTO temp.gone_people SELECT DISTINCT c.source, c.requester_id, 0 FROM contacts c"
            " JOIN temp.gone_contacts g ON g.source = c.source AND g.source_id = c.source_id"
            " JOIN people p ON p.source = c.source AND p.source_id = c.requester_id AND p.role = 'customer'"
            " WHERE NOT EXISTS (SELECT 1 FROM contacts o WHERE o.source = c.source AND o.requester_id = c.requester_id"
            " AND (o.source, o.source_id) NOT IN (SELECT source, source_id FROM temp.gone_contacts))")
        _note_gone_days(conn, settings.kpis.timezone, loose_before=result.cutoff)
        result.frozen = _freeze_for_purge(conn, _local_text(result.cutoff, settings), _today(moment, settings))
        values.move_purge_boundary(conn, result.cutoff)
        _delete(conn, result, "survey_responses", "contact_id IS NULL AND created_at < ?", [result.cutoff])
        _delete_traces(conn, result)
    compute(store, settings, since=result.computed_since, now=moment)  # the running periods, from what is left
    result.wal_truncated = checkpoint(store, result)
    return result


def _freeze_for_purge(conn: sqlite3.Connection, cutoff: str, today: date) -> int:
    """Freeze the ended periods up to the cutoff, and the ended ones after it that a gone survey answer is in."""
    return values.freeze_before(conn, cutoff, today) + values.freeze_containing(conn, "temp.gone_days", today)


def _today(moment: datetime, settings: Settings) -> date:
    return P.today_in(moment, settings.kpis.timezone)


def _local_text(instant: str, settings: Settings) -> str:
    """A UTC timestamp as the wall-clock time of `[kpis] timezone`, in the same text form: stored periods start at
    local midnights, so "starts before the cutoff" compares local times."""
    moment = datetime.strptime(instant, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    return moment.astimezone(P.zone_of(settings.kpis.timezone)).strftime("%Y-%m-%dT%H:%M:%SZ")


# A contact's last sign of life: its last activity, else its last update, else its creation.
_EXPIRED = "coalesce(last_activity_at, updated_at, created_at) < ?"


# --- plumbing --------------------------------------------------------------------------------


def checkpoint(store: Store, deletion: Deletion) -> bool:
    """Copy the WAL into the main file and truncate it; False when another connection kept it busy.

    On PostgreSQL, rewrite the tables `deletion` took rows from instead (see `rewrite_tables`)."""
    if store.on_server:
        return rewrite_tables(store, deletion)
    row: tuple[int, int, int] = store.db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    busy, _, _ = row
    return busy == 0


# How long a rewrite waits for a table another session (a syncing daemon) holds; a sync's page is far shorter.
REWRITE_LOCK_WAIT = "30s"


def rewrite_tables(store: Store, deletion: Deletion) -> bool:
    """PostgreSQL keeps a deleted row's bytes in its table's pages (and the indexes' entries) until the space is
    reused; `VACUUM FULL` writes each table that lost rows anew without them and drops the old files, as
    `secure_delete` overwrites them on SQLite. A table locked by another session past REWRITE_LOCK_WAIT is
    left as it is and named in `deletion.busy`; False then."""
    tables = [t for t in PERSON_TABLES if deletion.counts.get(t)]
    if deletion.counts.get("alert_events"):
        tables.append("alert_deliveries")  # deleted with their alerts, not counted apart
    run = cast("PgConnection", store.db.conn).run_ddl  # a statement of PostgreSQL's own, outside any transaction
    run(f"SET lock_timeout = '{REWRITE_LOCK_WAIT}'")
    try:
        for table in tables:
            try:
                run(f'VACUUM (FULL) "{table}"')
            except sqlite3.OperationalError:  # the lock was not granted in time
                deletion.busy.append(table)
    finally:
        run("RESET lock_timeout")
    return not deletion.busy


@contextmanager
def _scratch(conn: sqlite3.Connection) -> Iterator[None]:
    """Temp tables naming what goes, and the KPI engine's change marks as they were before."""
    for name in _TEMP_TABLES:
        conn.execute(f"DROP TABLE IF EXISTS temp.{name}")
    conn.execute("CREATE TEMP TABLE gone_contacts (source TEXT, source_id TEXT, PRIMARY KEY (source, source_id))")
    conn.execute("CREATE TEMP TABLE gone_people (source TEXT, source_id TEXT, authored INTEGER,"
                 " PRIMARY KEY (source, source_id))")
    conn.execute("CREATE TEMP TABLE gone_records (helpdesk TEXT, object TEXT, record_id TEXT,"
                 " PRIMARY KEY (helpdesk, object, record_id))")
    conn.execute("CREATE TEMP TABLE gone_days (day TEXT PRIMARY KEY)")
    conn.execute("CREATE TEMP TABLE dirty_days_before AS SELECT day FROM kpi_dirty_days")
    conn.execute("CREATE TEMP TABLE dirty_contacts_before AS SELECT source, source_id FROM kpi_dirty_contacts")
    try:
        yield
    finally:
        for name in _TEMP_TABLES:
            conn.execute(f"DROP TABLE IF EXISTS temp.{name}")


_TEMP_TABLES = ("gone_contacts", "gone_people", "gone_records", "gone_days", "dirty_days_before",
                "dirty_contacts_before")
