"""The store: migrations, idempotent upserts, page + cursor atomicity, derived facts, file modes."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path
from typing import Any

import pytest

from kpi_core import derive
from kpi_core.model import RecordError
from kpi_core.store import Store, StoreError, open_store


def contact(source_id: str, **extra: Any) -> dict[str, Any]:
    return {"source": "zendesk", "source_id": source_id, "channel": "email", "status": "open",
            "created_at": "2026-03-01T09:00:00Z", **extra}


def message(source_id: str, contact_id: str, at: str, role: str | None, public: bool = True,
            author: str = "1") -> dict[str, Any]:
    return {"source": "zendesk", "source_id": source_id, "contact_id": contact_id, "author_id": author,
            "author_role": role, "public": public, "created_at": at}


def test_upsert_is_idempotent_and_keeps_absent_columns(store: Store) -> None:
    store.write_page("zendesk", "tickets", {"contacts": [contact("1", priority="high", tags=["a", "b"])]}, "c1")
    store.write_page("zendesk", "tickets", {"contacts": [contact("1", status="resolved")]}, "c2")
    store.write_page("zendesk", "tickets", {"contacts": [contact("1", status="resolved")]}, "c2")
    rows = store.db.execute("SELECT status, priority, tags FROM contacts").fetchall()
    assert rows == [("resolved", "high", '["a","b"]')]
    assert store.get_cursor("zendesk", "tickets") == "c2"


def test_a_bad_record_names_itself_and_the_page_is_not_stored(store: Store) -> None:
    bad = contact("2", reopens="three")
    with pytest.raises(RecordError, match=r"contacts zendesk:2: reopens should be int"):
        store.write_page("zendesk", "tickets", {"contacts": [contact("1"), bad]}, "c9")
    assert store.count("contacts") == 0
    assert store.get_cursor("zendesk", "tickets") is None


def test_unknown_keys_are_refused(store: Store) -> None:
    with pytest.raises(RecordError, match="unknown key 'subject'"):
        store.upsert("contacts", [contact("1", subject="hello")])


def test_facts_are_derived_from_messages_and_status_events(store: Store) -> None:
    people = [{"source": "zendesk", "source_id": "9", "role": "agent"},
              {"source": "zendesk", "source_id": "5", "role": "customer"}]
    msgs = [
        message("m1", "1", "2026-03-01T09:00:00Z", None, author="5"),
        message("m2", "1", "2026-03-01T09:01:00Z", "system"),
        message("m3", "1", "2026-03-01T09:10:00Z", None, public=False, author="9"),
        message("m4", "1", "2026-03-01T09:30:00Z", None, author="9"),
        message("m5", "1", "2026-03-01T10:00:00Z", None, author="5"),
        message("m6", "1", "2026-03-01T10:30:00Z", None, author="9"),
    ]
    events = [
        {"source": "zendesk", "source_id": "e1", "contact_id": "1", "kind": "resolved", "at": "2026-03-01T11:00:00Z"},
        {"source": "zendesk", "source_id": "e2", "contact_id": "1", "kind": "reopened", "at": "2026-03-02T08:00:00Z"},
        {"source": "zendesk", "source_id": "e3", "contact_id": "1", "kind": "resolved", "at": "2026-03-02T09:00:00Z"},
    ]
    store.write_page("zendesk", "tickets", {"people": people, "contacts": [contact("1", facts_from_events=True)]}, None)
    store.write_page("zendesk", "events", {"messages": msgs, "status_events": events}, "t1")
    assert store.db.execute("SELECT first_agent_reply_at FROM contacts").fetchone() == (None,)  # noted, not yet derived
    assert store.settle() == 1
    row = store.db.execute(
        "SELECT first_customer_message_at, first_agent_reply_at, agent_replies, customer_messages,"
        " first_resolved_at, last_resolved_at, reopens, is_bot_only, last_activity_at FROM contacts").fetchone()
    assert row == ("2026-03-01T09:00:00Z", "2026-03-01T09:30:00Z", 2, 2, "2026-03-01T11:00:00Z",
                   "2026-03-02T09:00:00Z", 1, 0, "2026-03-02T09:00:00Z")


def test_vendor_facts_stay_until_messages_arrive_and_unflagged_contacts_are_left_alone(store: Store) -> None:
    store.write_page("zendesk", "tickets", {"contacts": [
        contact("1", facts_from_events=True, first_agent_reply_at="2026-03-01T09:05:00Z", agent_replies=1),
        contact("2", facts_from_events=False, first_agent_reply_at="2026-03-01T09:07:00Z", agent_replies=4),
    ]}, None)
    store.write_page("zendesk", "events", {"messages": [message("m1", "2", "2026-03-01T09:00:00Z", "agent")]}, None)
    store.settle()
    rows = store.db.execute("SELECT source_id, first_agent_reply_at, agent_replies FROM contacts ORDER BY 1").fetchall()
    assert rows == [("1", "2026-03-01T09:05:00Z", 1), ("2", "2026-03-01T09:07:00Z", 4)]


def test_bot_only_resolution(store: Store) -> None:
    store.write_page("zendesk", "t", {
        "contacts": [contact("1", channel="chat", facts_from_events=True)],
        "messages": [message("m1", "1", "2026-03-01T09:00:00Z", "customer"),
                     message("m2", "1", "2026-03-01T09:00:20Z", "bot")],
        "status_events": [{"source": "zendesk", "source_id": "e", "contact_id": "1", "kind": "resolved",
                           "at": "2026-03-01T09:05:00Z"}],
    }, None)
    store.settle()
    assert store.db.execute("SELECT is_bot_only, agent_replies FROM contacts").fetchone() == (1, 0)


def test_files_are_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "kpi.sqlite"
    s = open_store(path)
    s.write_page("zendesk", "tickets", {"contacts": [contact("1")]}, "c1")
    for suffix in ("", "-wal", "-shm"):
        candidate = Path(str(path) + suffix)
        if candidate.exists():
            assert stat.S_IMODE(candidate.stat().st_mode) == 0o600, candidate
    s.close()


def test_migrations_are_safe_to_repeat_and_a_newer_store_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "kpi.sqlite"
    open_store(path).close()
    open_store(path).close()
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO _sqlite_migrations (migration_set, name, applied_at)"
                 " VALUES ('helpdesk_kpi', 'm999_future', 'x')")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="newer helpdesk-kpi"):
        open_store(path)


def test_not_a_store(tmp_path: Path) -> None:
    path = tmp_path / "junk.sqlite"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(StoreError, match=r"junk\.sqlite"):
        open_store(path)


def test_run_log(store: Store) -> None:
    run = store.start_run("zendesk")
    store.write_page("zendesk", "tickets", {"contacts": [contact("1")]}, "c1", run_id=run, api_calls=3)
    store.finish_run(run, "ok", api_calls=4)
    last = store.last_run("zendesk", status="ok")
    assert last is not None and (last.pages, last.records, last.api_calls, last.status) == (1, 1, 4, "ok")


def test_noted_contacts_survive_a_crash_and_are_derived_later(tmp_path: Path) -> None:
    path = tmp_path / "kpi.sqlite"
    first = open_store(path)
    first.write_page("zendesk", "tickets", {"contacts": [contact("1", facts_from_events=True)]}, "c1")
    first.write_page("zendesk", "events", {"messages": [message("m1", "1", "2026-03-01T09:00:00Z", "customer"),
                                                        message("m2", "1", "2026-03-01T09:07:00Z", "agent")]}, "t1")
    first.db.conn.close()  # gone before settling, as after a kill -9
    again = open_store(path)
    assert again.db.execute("SELECT count(*) FROM derive_pending").fetchone() == (1,)
    assert again.settle() == 1
    assert again.db.execute("SELECT first_agent_reply_at, agent_replies FROM contacts").fetchone() == (
        "2026-03-01T09:07:00Z", 1)
    assert again.db.execute("SELECT count(*) FROM derive_pending").fetchone() == (0,)
    again.close()


def test_pages_written_together_keep_their_order_and_the_last_cursor(store: Store) -> None:
    run = store.start_run("zendesk")
    count = store.write_pages("zendesk", "tickets", [
        ({"contacts": [contact("1", priority="high")]}, "c1"),
        ({"contacts": [contact("1", priority="low"), contact("2")]}, None),
        ({"contacts": [contact("3")]}, "c3"),
    ], run_id=run, api_calls=3)
    assert count == 4
    assert store.db.execute("SELECT priority FROM contacts WHERE source_id = '1'").fetchone() == ("low",)
    assert store.get_cursor("zendesk", "tickets") == "c3"
    assert store.db.execute("SELECT pages, records, api_calls FROM sync_runs WHERE id = ?",
                            [run]).fetchone() == (3, 4, 3)


def test_values_go_to_sql_in_their_column_forms_whatever_keys_each_row_has(store: Store) -> None:
    """Rows of one table with different keys, in one page: each keeps its order, and its values their SQL form."""
    store.write_page("zendesk", "tickets", {"contacts": [
        contact("1", tags=["b", "a"], custom={"z": 1, "a": None}, is_outbound=True, handle_seconds=1.5),
        contact("2", is_outbound=False, priority=None),
        contact("3", tags=[], reopens=2, raw={"id": 3, "via": {"channel": "web"}}),
    ]}, "c1")
    rows = store.db.execute(
        "SELECT source_id, tags, custom, is_outbound, typeof(is_outbound), handle_seconds, priority,"
        " typeof(priority), reopens, raw FROM contacts ORDER BY rowid").fetchall()
    assert rows == [
        ("1", '["b","a"]', '{"a":null,"z":1}', 1, "integer", 1.5, None, "null", None, None),
        ("2", None, None, 0, "integer", None, None, "null", None, None),
        ("3", "[]", None, None, "null", None, None, "null", 2, '{"id":3,"via":{"channel":"web"}}'),
    ]


def test_deriving_facts_reads_the_messages_index_alone(store: Store) -> None:
    """Every messages column the derivation reads is in its index (m031): deriving never visits the table."""
    plan = " ".join(row[3] for row in store.db.execute("EXPLAIN QUERY PLAN " + derive._FACTS_SQL,
                                                       {"source": "zendesk", "ids": "[]"}).fetchall())
    assert "SEARCH m USING COVERING INDEX messages_contact" in plan
