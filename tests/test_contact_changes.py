"""Group, priority and assignee changes (`contact_changes`) as each connector reads them, and the sandbox's words.

The normalizers are tried on the vendors' documented payloads; the connectors against their fakes over
loopback into a real store, whose rows are compared with the sandbox world's history. What every connector
that reads changes must store is in tests/test_connector_contract.py; what differs by vendor is here.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors import registry
from connectors.intercom.normalize import change_rows
from connectors.sandbox import Sandbox
from connectors.sandbox.phrases import FALLBACK, PHRASES, language_of
from connectors.sandbox.world import Ticket, World
from connectors.zendesk.normalize import event_rows, field_change_row
from kpi_core.model import CONTACT_CHANGE, check_record, iso_utc
from kpi_core.store import Store, open_store
from kpi_core.sync import sync_source

EXAMPLES = Path(__file__).parent / "specs" / "examples"
SOURCES = ("zendesk", "intercom", "freshdesk")
SEED, TICKETS = 21, 240  # about 120 Zendesk tickets and 60 of each other helpdesk: enough moves of each kind


# --- the normalizers on documented payloads -----------------------------------------------------------------


def test_zendesk_reads_a_change_keyed_by_the_field_and_an_audit_naming_it() -> None:
    body = json.loads((EXAMPLES / "zendesk-ticket-events.json").read_text())["example"]
    [event] = body["ticket_events"]
    changes = [row for table, row in event_rows(event) if table == "contact_changes"]
    for row in changes:
        check_record(CONTACT_CHANGE, row)
    assert [(r["field"], r["value"], r["previous"]) for r in changes] == [
        ("group", "360001", None), ("priority", "normal", None),  # Create: set on the new ticket
        ("group", "360002", "360001"), ("priority", "urgent", "normal"), ("assignee", "7", "8")]
    assert {r["at"] for r in changes} == {"2020-09-29T05:31:43Z"} and {r["contact_id"] for r in changes} == {"155"}
    assert len({r["source_id"] for r in changes}) == len(changes)
    # The Ticket Audits form (Zendesk's audit example): the field in `field_name`, the new value in `value`.
    audit = {"field_name": "group_id", "id": 2127301165, "previous_value": "22472716", "type": "Change",
             "value": "360000123"}
    audited = field_change_row(audit, "666", "2011-09-25T22:35:44Z")
    assert audited is not None
    assert (audited["field"], audited["value"], audited["previous"]) == ("group", "360000123", "22472716")
    assert field_change_row({**audit, "field_name": "priority", "value": "urgent", "previous_value": "p9"},
                            "666", "2011-09-25T22:35:44Z") == {**audited, "field": "priority", "value": "urgent",
                                                               "previous": None}
    status = {"field_name": "status", "id": 2127301163, "previous_value": "new", "type": "Change", "value": "open"}
    assert field_change_row(status, "666", "2011-09-25T22:35:44Z") is None
    assert field_change_row({**audit, "value": "22472716"}, "666", "2011-09-25T22:35:44Z") is None  # no change


def test_intercom_assigning_parts_give_team_and_teammate_changes_in_the_api_order() -> None:
    def part(ident: str, part_type: str, assigned: Any, at: int) -> dict[str, Any]:
        return {"type": "conversation_part", "id": ident, "part_type": part_type, "body": None, "created_at": at,
                "assigned_to": assigned, "author": {"type": "admin", "id": "991267715"}}

    parts = [  # shapes of the 2.14 examples: an assignment, an assign_and_reopen, a comment assigned to a contact
        part("178", "default_assignment", {"type": "team", "id": "814"}, 1734537950),
        part("180", "assignment", {"type": "admin", "id": "991268013"}, 1734537954),
        part("181", "comment", {"type": "contact", "id": "1a2b3c"}, 1734537955),
        part("182", "snoozed", None, 1734537956),
        part("183", "assignment", {"type": "team", "id": "815"}, 1734537957),
        part("140", "assign_and_reopen", {"type": "admin", "id": "991267715"}, 1734537960),
        part("141", "assignment", {"type": "admin", "id": "991267715"}, 1734537961),  # the same teammate again
        part("142", "assignment", {"type": "admin", "id": "0"}, 1734537962),  # unassigned
        part("143", "assignment", None, 1734537963),  # no change in assignment (2.14 schema)
    ]
    rows = list(change_rows("5", parts))
    for row in rows:
        check_record(CONTACT_CHANGE, row)
    assert [(r["source_id"], r["field"], r["value"], r["previous"]) for r in rows] == [
        ("178", "group", "814", None), ("180", "assignee", "991268013", None), ("183", "group", "815", "814"),
        ("140", "assignee", "991267715", "991268013"), ("142", "assignee", None, "991267715")]
    assert rows[0]["at"] == iso_utc(1734537950)


# --- the connectors against the world -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def synced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Sandbox, Store]]:
    box = Sandbox.generate(seed=SEED, tickets=TICKETS)
    box.start()
    store = open_store(tmp_path_factory.mktemp("changes") / "kpi.sqlite")
    try:
        for name in SOURCES:
            result = _sync(box, store, name)
            assert result.ok, result.error
        yield box, store
    finally:
        store.close()
        box.stop()


def _sync(box: Sandbox, store: Store, name: str, full: bool = False) -> Any:
    connector = registry.build_connector(name, registry.plugin(name).settings(**box[name].connector_settings()))
    try:
        return sync_source(store, connector, full=full)
    finally:
        connector.close()


def _rows(store: Store, name: str, where: str = "1") -> set[tuple[Any, ...]]:
    return {tuple(r) for r in store.db.execute(
        f"SELECT contact_id, field, value, previous, at FROM contact_changes WHERE source = ? AND {where}", [name])}


def _live(box: Sandbox, name: str) -> list[Ticket]:
    return [t for t in box.world.sources[name].tickets.values() if not t.deleted and not t.spam]


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def test_zendesk_stores_every_change_and_each_tickets_first_group_and_priority(synced: tuple[Sandbox, Store]) -> None:
    box, store = synced
    tickets = list(box.world.sources["zendesk"].tickets.values())  # a deleted ticket's events stay in the export
    world = {(str(t.id), c.field, str(c.value), _text(c.previous), iso_utc(c.at)) for t in tickets for c in t.changes}
    assert {f for _, f, _, p, _ in world if p is not None} == {"group", "priority", "assignee"}
    created = {(str(t.id), name, str(t.initial(name)), None, iso_utc(t.created_at))
               for t in tickets for name in ("group", "priority")}
    assert _rows(store, "zendesk") == world | created


def test_intercom_stores_assignments_of_teammates_and_teams_but_no_priority(synced: tuple[Sandbox, Store]) -> None:
    box, store = synced
    tickets = _live(box, "intercom")
    moves = {(str(t.id), c.field, str(c.value), str(c.previous), iso_utc(c.at))
             for t in tickets for c in t.moves() if c.field != "priority"}
    assert {f for _, f, *_ in moves} == {"group", "assignee"}
    assert _rows(store, "intercom", "previous IS NOT NULL") == moves
    # First assignments: the teammate at the opening assignment part, the team routed to before a move.
    firsts = _rows(store, "intercom", "previous IS NULL")
    assert firsts == (
        {(str(t.id), "group", str(t.initial("group")), None, iso_utc(t.created_at))
         for t in tickets if t.initial("group") != t.group_id}
        | {(str(t.id), "assignee", str(c.value), None, iso_utc(c.at))
           for t in tickets for c in t.changes if c.field == "assignee" and c.previous is None})
    assert any(c.field == "priority" for t in tickets for c in t.moves()), "the world raised priorities here too"


def test_freshdesk_shows_no_history_so_none_is_stored(synced: tuple[Sandbox, Store]) -> None:
    box, store = synced
    assert any(t.moves() for t in _live(box, "freshdesk")), "the world moved Freshdesk tickets too"
    connector = registry.build_connector("freshdesk", registry.plugin("freshdesk").settings(
        **box["freshdesk"].connector_settings()))
    try:
        assert not [s.name for s in connector.streams() if "contact_changes" in s.tables]
    finally:
        connector.close()
    assert _rows(store, "freshdesk") == set()
    # What it does show: each ticket's current group and priority, on the contact row.
    current = {(str(t.id), str(t.group_id), t.priority) for t in _live(box, "freshdesk")}
    assert {tuple(r) for r in store.db.execute(
        "SELECT source_id, group_id, priority FROM contacts WHERE source = 'freshdesk' AND status != 'deleted'")
    } == current


@pytest.mark.parametrize("name", ["zendesk", "intercom"])
def test_reading_again_upserts_the_same_rows(synced: tuple[Sandbox, Store], name: str) -> None:
    box, store = synced
    before = store.db.execute("SELECT * FROM contact_changes WHERE source = ? ORDER BY source_id", [name]).fetchall()
    assert before
    assert _sync(box, store, name, full=True).ok
    after = store.db.execute("SELECT * FROM contact_changes WHERE source = ? ORDER BY source_id", [name]).fetchall()
    assert after == before


# --- the words of the messages -------------------------------------------------------------------------------


def test_bodies_are_not_stored_by_default_while_the_world_speaks_each_customers_language(
        synced: tuple[Sandbox, Store]) -> None:
    box, store = synced
    assert store.count("messages") > 0
    assert store.db.execute("SELECT count(*) FROM messages WHERE body IS NOT NULL").fetchone()[0] == 0
    in_language = replies = 0
    languages: set[str] = set()
    for data in box.world.sources.values():
        for t in data.tickets.values():
            language = language_of(data.people[t.requester_id].locale)
            phrases = PHRASES[language]
            customer = [m.body for m in t.messages if m.role == "customer"]
            assert all(any(b in texts for texts in phrases.values()) for b in customer), (t.id, customer)
            if customer:
                languages.add(language)
            if language == FALLBACK:
                continue
            answers = [m.body for m in t.messages if m.role == "agent" and m.public][1 if t.outbound else 0:]
            replies += bool(answers)
            in_language += bool(answers) and all(any(b in texts for texts in phrases.values()) for b in answers)
    assert {"en", "de", "fr", "es", "it", "pt", "nl"} <= languages
    assert 0.6 < in_language / replies < 0.95, "agents mostly, not always, answer in the customer's language"


def test_drawing_the_history_and_the_words_moves_nothing_the_world_had(monkeypatch: pytest.MonkeyPatch) -> None:
    def facts(world: World) -> list[Any]:
        out: list[Any] = [world._next_id, sorted((o.id, o.created_at, o.total) for o in world.orders.values())]
        for data in world.sources.values():
            for t in data.tickets.values():
                out.append((t.id, t.created_at, t.updated_at, t.assignee_id, t.group_id, t.priority, t.deleted,
                            [(m.id, m.author_id, m.role, m.public, m.created_at) for m in t.messages],
                            [(c.at, c.status, c.previous, c.id) for c in t.status_changes],
                            t.rating and (t.rating.id, t.rating.score, t.rating.offered_at, t.rating.answered_at)))
        world.mutate("zendesk", 5, random.Random(1))
        zendesk = world.sources["zendesk"].tickets.values()
        out.append([(t.id, t.status, t.assignee_id, len(t.messages)) for t in zendesk])
        return out

    drawn = World(seed=5, tickets=90, now=1_800_000_000)
    monkeypatch.setattr(World, "_populate_changes", lambda self, rng: None)
    monkeypatch.setattr(World, "_populate_words", lambda self, rng: None)
    plain = World(seed=5, tickets=90, now=1_800_000_000)
    assert any(t.moves() for t in drawn.sources["zendesk"].tickets.values())
    assert facts(drawn) == facts(plain)
