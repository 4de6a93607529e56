"""The Zendesk connector against the fake Zendesk over real HTTP, into a real SQLite store."""

from __future__ import annotations

import sqlite3
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from connectors.sandbox.world import Rating, Ticket, World
from connectors.zendesk.connector import STREAMS, ZendeskConnector
from connectors.zendesk.fake import FakeZendesk
from connectors.zendesk.settings import ZendeskSettings
from kpi_core.model import primary_language
from kpi_core.store import Store, store_at
from kpi_core.sync import SourceResult, sync_source

SEED = 3
TICKETS = 400  # the world's total; zendesk gets half
RECORD_TABLES = ("contacts", "messages", "status_events", "people", "groups", "organizations", "survey_responses")
STATUS = {"new": "new", "open": "open", "pending": "pending", "on_hold": "on_hold", "resolved": "resolved",
          "closed": "closed"}
ENDPOINTS = ("/api/v2/incremental/users/cursor", "/api/v2/groups", "/api/v2/incremental/organizations",
             "/api/v2/incremental/tickets/cursor", "/api/v2/incremental/ticket_events", "/api/v2/satisfaction_ratings",
             # csat = "auto" reads both CSAT flavours each sync (an account may have both histories).
             "/api/v2/guide/survey_responses")


# `sandbox`, `fake` and `store` come from conftest.py; the sync, 429, 401, quarantine, privacy and
# crash-resume contract of every connector is tests/test_connector_contract.py.
pytestmark = pytest.mark.sandbox(seed=SEED, tickets=TICKETS, names=("zendesk",))


def settings(fake: FakeZendesk, **overrides: Any) -> ZendeskSettings:
    return ZendeskSettings(**{**fake.connector_settings(), **overrides})


def sync(store: Store, fake: FakeZendesk, **overrides: Any) -> SourceResult:
    connector = ZendeskConnector(settings(fake, **overrides))
    try:
        return sync_source(store, connector)
    finally:
        connector.close()


def iso(epoch: int | None) -> str | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def rows(store: Store, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in store.db.execute(sql, params).fetchall()]


def zendesk_tickets(world: World) -> dict[int, Ticket]:
    return world.sources["zendesk"].tickets


def expected_facts(t: Ticket) -> tuple[Any, ...]:
    """The catalogue's facts computed from the world ticket, independently of connector and store."""
    customer = [m.created_at for m in t.messages if m.role == "customer"]
    start = min(customer) if customer else None
    # Catalogue 2c: replies follow a customer message; a ticket nobody but agents wrote on has none.
    replies = [m.created_at for m in t.messages
               if m.role == "agent" and m.public and start is not None and m.created_at >= start]
    resolved = t.resolved_times
    bot_only = bool(resolved) and not replies and any(m.role == "bot" for m in t.messages)
    return (iso(min(replies)) if replies else None, len(replies), iso(min(resolved)) if resolved else None,
            iso(max(resolved)) if resolved else None, len(t.reopen_times), int(bot_only))


def stored_facts(store: Store) -> dict[int, tuple[Any, ...]]:
    facts = rows(store, "SELECT source_id, first_agent_reply_at, agent_replies, first_resolved_at,"
                        " last_resolved_at, reopens, is_bot_only FROM contacts WHERE status != 'deleted'")
    return {int(r[0]): r[1:] for r in facts}


def answered_ratings(world: World) -> dict[str, tuple[Any, ...]]:
    return {str(t.rating.id): (float(t.rating.score), iso(t.rating.answered_at), str(t.id))
            for t in zendesk_tickets(world).values()
            if t.rating and t.rating.answered_at and t.rating.score is not None and not t.deleted}


def table_dump(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    with sqlite3.connect(path) as db:
        return {table: db.execute(f"SELECT * FROM {table} ORDER BY source, source_id").fetchall()
                for table in RECORD_TABLES}


# --- a full sync ----------------------------------------------------------------------------


def test_full_sync_stores_every_ticket_comment_rating_and_person_of_the_world(fake: FakeZendesk, store: Store) -> None:
    world = fake.world
    result = sync(store, fake)
    assert result.ok, result.error
    tickets = zendesk_tickets(world)
    assert any(t.deleted for t in tickets.values()) and any(expected_facts(t)[5] for t in tickets.values())

    stored = {int(r[0]): r[1:]
              for r in rows(store, "SELECT source_id, status, channel, is_outbound, language FROM contacts")}
    assert set(stored) == set(tickets)
    data = world.sources["zendesk"]
    for tid, t in tickets.items():
        status, channel, outbound, language = stored[tid]
        if t.deleted:
            assert status == "deleted"
            continue
        # Catalogue 2c: a voice ticket is never outbound (the call is the customer's contact).
        assert (status, channel, bool(outbound)) == (STATUS[t.status], t.channel, t.outbound and t.channel != "phone")
        assert language == primary_language(data.people[t.requester_id].locale)

    assert stored_facts(store) == {tid: expected_facts(t) for tid, t in tickets.items() if not t.deleted}

    messages = rows(store, "SELECT m.source_id, m.contact_id, m.author_id, m.public, m.created_at,"
                           " coalesce(m.author_role, p.role) FROM messages m"
                           " LEFT JOIN people p ON p.source = m.source AND p.source_id = m.author_id")
    assert sorted(messages) == sorted((str(m.id), str(t.id), str(m.author_id), int(m.public), iso(m.created_at), m.role)
                                      for t in tickets.values() for m in t.messages)

    events = rows(store, "SELECT contact_id, kind, at FROM status_events")
    assert Counter(events) == Counter(
        [(str(t.id), "resolved", iso(at)) for t in tickets.values() for at in t.resolved_times]
        + [(str(t.id), "reopened", iso(at)) for t in tickets.values() for at in t.reopen_times])

    ratings = {r[0]: r[1:]
               for r in rows(store, "SELECT source_id, score, created_at, contact_id FROM survey_responses")}
    assert ratings == answered_ratings(world)
    assert rows(store, "SELECT DISTINCT scale, kind FROM survey_responses") == [("good_bad", "csat")]

    people = {int(r[0]): r[1:] for r in rows(store, "SELECT source_id, role, locale, language FROM people")}
    role = {"customer": "customer", "agent": "agent", "bot": "agent"}
    assert people == {p.id: (role[p.role], p.locale, primary_language(p.locale)) for p in data.people.values()}
    assert rows(store, "SELECT count(*) FROM people"
                       " WHERE name IS NOT NULL OR email IS NOT NULL OR phone IS NOT NULL") == [(0,)]
    assert {int(r[0]): r[1] for r in rows(store, "SELECT source_id, name FROM groups")} == {
        g.id: g.name for g in data.groups.values()}
    assert {int(r[0]) for r in rows(store, "SELECT source_id FROM organizations")} == set(data.organizations)
    assert store.count("quarantine") == 0


def test_ticket_pages_bring_the_roles_of_their_users(fake: FakeZendesk, store: Store) -> None:
    """A requester created after the users pass still gets their comments' role right."""
    connector = ZendeskConnector(settings(fake))
    try:
        for spec in (s for s in STREAMS if s.name in ("tickets", "ticket_events")):
            for page in connector.read(spec, None):
                store.write_page("zendesk", spec.name, page.records, page.cursor)
    finally:
        connector.close()
    store.settle()
    tickets = zendesk_tickets(fake.world)
    assert stored_facts(store) == {tid: expected_facts(t) for tid, t in tickets.items() if not t.deleted}


def test_ai_agent_tickets_are_left_out_when_not_asked_for(fake: FakeZendesk, store: Store) -> None:
    assert sync(store, fake, include_ai_agent_tickets=False).ok
    tickets = zendesk_tickets(fake.world)
    ai_only = {t.id for t in tickets.values() if not t.deleted and any(m.role == "bot" for m in t.messages)
               and not any(m.role == "agent" for m in t.messages)}
    assert ai_only
    assert {int(r[0]) for r in rows(store, "SELECT source_id FROM contacts")} == set(tickets) - ai_only


# --- incremental syncs ----------------------------------------------------------------------


def test_second_sync_fetches_only_the_changes_in_one_call_per_endpoint(fake: FakeZendesk, store: Store) -> None:
    assert sync(store, fake).ok
    fake.clear_log()
    changed = fake.world.mutate("zendesk", 20)
    result = sync(store, fake)
    assert result.ok, result.error
    # One call per export, plus one per changed voice ticket now resolved (its Talk call durations).
    comments = Counter(r.path for r in fake.calls() if r.path.endswith("/comments"))
    assert Counter(r.path for r in fake.calls() if not r.path.endswith("/comments")) == Counter(ENDPOINTS)
    tickets = zendesk_tickets(fake.world)
    assert comments == Counter(f"/api/v2/tickets/{tid}/comments" for tid in changed
                               if tickets[tid].channel == "phone" and not tickets[tid].deleted
                               and tickets[tid].status in ("resolved", "closed"))
    assert result.by_stream["tickets"] >= 20
    updated = {int(r[0]): r[1] for r in rows(store, "SELECT source_id, updated_at FROM contacts")}
    assert all(updated[tid] == iso(tickets[tid].updated_at) for tid in changed)
    facts = stored_facts(store)
    assert {tid: facts[tid] for tid in changed} == {tid: expected_facts(tickets[tid]) for tid in changed}


def test_small_pages_give_the_same_store_as_large_ones(fake: FakeZendesk, tmp_path: Path) -> None:
    """Every pagination path (cursor, time-based with repeated seconds, lists) with pages of 7."""
    with store_at(tmp_path / "large.sqlite") as large_store, store_at(tmp_path / "small.sqlite") as small_store:
        assert sync(large_store, fake).ok
        fake.clear_log()
        assert sync(small_store, fake, page_size=7).ok
    assert len(fake.calls(path="ticket_events")) > 10
    # All organizations share one second: one page however small the page size.
    assert len(fake.calls(path="organizations")) == 1
    assert table_dump(tmp_path / "small.sqlite") == table_dump(tmp_path / "large.sqlite")


def test_late_csat_answer_is_picked_up_days_after_the_offer(fake: FakeZendesk, store: Store) -> None:
    world = fake.world
    ticket = next(t for t in zendesk_tickets(world).values() if t.status == "resolved" and not t.deleted)
    with world.lock:
        ticket.rating = Rating(world.next_id(), None, world.clock() - 3 * 86400, None, None)
        ticket.updated_at = world.tick()
    assert sync(store, fake).ok
    assert rows(store, "SELECT count(*) FROM survey_responses WHERE source_id = ?", str(ticket.rating.id)) == [(0,)]
    with world.lock:
        answered = world.tick()
        ticket.rating.score, ticket.rating.answered_at, ticket.rating.updated_at = 0, answered, answered
        ticket.updated_at = answered
    assert sync(store, fake).ok
    assert rows(store, "SELECT score, is_positive, created_at, contact_id FROM survey_responses WHERE source_id = ?",
                str(ticket.rating.id)) == [(0.0, 0, iso(answered), str(ticket.id))]


def test_holdback_hides_a_change_until_it_is_old_enough(fake: FakeZendesk, store: Store) -> None:
    fake.holdback_seconds = 60
    assert sync(store, fake).ok
    [tid] = fake.world.mutate("zendesk", 1)
    before = rows(store, "SELECT updated_at FROM contacts WHERE source_id = ?", str(tid))
    result = sync(store, fake)
    assert result.ok and result.by_stream["tickets"] == 0
    assert rows(store, "SELECT updated_at FROM contacts WHERE source_id = ?", str(tid)) == before
    fake.holdback_seconds = 0  # as if the minute had passed
    assert sync(store, fake).ok
    assert rows(store, "SELECT updated_at FROM contacts WHERE source_id = ?", str(tid)) == [
        (iso(zendesk_tickets(fake.world)[tid].updated_at),)]


# --- CSAT flavours --------------------------------------------------------------------------


def test_auto_csat_reads_both_flavours_each_with_its_own_bookmark(fake: FakeZendesk, store: Store) -> None:
    """An account that moved from legacy ratings to the new CSAT has both histories (errata)."""
    fake.csat_mode = "both"
    try:
        result = sync(store, fake)
    finally:
        fake.csat_mode = "legacy"
    assert result.ok, result.error
    expected = answered_ratings(fake.world)
    stored = rows(store, "SELECT scale, created_at, contact_id FROM survey_responses")
    scales = Counter(scale for scale, _, _ in stored)
    assert scales["good_bad"] and scales["1-5"] and len(stored) == len(expected)
    assert {(at, tid) for _, at, tid in stored} == {(at, tid) for _, at, tid in expected.values()}
    assert result.by_stream["csat"] == scales["good_bad"]
    assert result.by_stream["csat_survey_responses"] == scales["1-5"]
    cursors = store.cursors("zendesk")
    assert cursors["csat"].startswith("legacy:") and cursors["csat_survey_responses"].startswith("survey_responses:")


def test_auto_csat_on_a_legacy_only_account_notes_the_refusal_and_reads_the_legacy_list(
        fake: FakeZendesk, store: Store, caplog: pytest.LogCaptureFixture) -> None:
    result = sync(store, fake)
    assert result.ok, result.error
    assert result.by_stream["csat"] == len(answered_ratings(fake.world))
    assert result.by_stream["csat_survey_responses"] == 0
    assert store.get_cursor("zendesk", "csat_survey_responses") == "survey_responses::refused-403"
    assert "survey_responses CSAT is not readable" in caplog.text
    assert any("survey_responses CSAT is not readable" in w for w in getattr(result, "warnings", []))
    fake.clear_log()
    assert sync(store, fake).ok  # asked again each sync: the account may move to the new CSAT
    assert len(fake.calls(path="survey_responses")) == 1 and len(fake.calls(path="satisfaction_ratings")) == 1


def test_new_csat_survey_responses_are_read_on_their_own_scale(fake: FakeZendesk, store: Store) -> None:
    fake.csat_mode = "survey_responses"
    try:
        assert sync(store, fake).ok
    finally:
        fake.csat_mode = "legacy"
    stored = rows(store, "SELECT score, scale, is_positive, created_at, contact_id, comment FROM survey_responses")
    expected = answered_ratings(fake.world)
    assert len(stored) == len(expected)  # offered, unanswered responses are no response
    assert {(r[3], r[4]) for r in stored} == {(at, tid) for _, at, tid in expected.values()}
    assert all(scale == "1-5" and positive == (score >= 4) and comment is None
               for score, scale, positive, _, _, comment in stored)
    assert store.get_cursor("zendesk", "csat_survey_responses").startswith("survey_responses:")
    assert store.count("quarantine") == 0


def test_a_new_csat_answer_given_days_after_the_offer_is_picked_up(fake: FakeZendesk, store: Store) -> None:
    """A response exists from the offer on; its answer arrives later and must not be skipped."""
    world = fake.world
    fake.csat_mode = "survey_responses"
    try:
        ticket = next(t for t in zendesk_tickets(world).values() if t.status == "resolved" and not t.deleted)
        with world.lock:
            ticket.rating = Rating(world.next_id(), None, world.clock() - 3 * 86400, None, None)
            ticket.updated_at = world.tick()
        assert sync(store, fake).ok
        before = store.get_cursor("zendesk", "csat_survey_responses")
        with world.lock:
            answered = world.tick()
            ticket.rating.score, ticket.rating.answered_at, ticket.rating.updated_at = 1, answered, answered
            ticket.updated_at = answered
        assert sync(store, fake).ok
    finally:
        fake.csat_mode = "legacy"
    [(score, at, contact)] = rows(store, "SELECT score, created_at, contact_id FROM survey_responses s"
                                         " WHERE contact_id = ?", str(ticket.id))
    assert (score >= 4, at, contact) == (True, iso(answered), str(ticket.id))
    assert before.startswith("survey_responses:")


# --- AI-agent tickets, via forms, metric sets -------------------------------------------------


def test_ai_agent_tickets_get_their_comments_and_status_changes(fake: FakeZendesk, store: Store) -> None:
    assert sync(store, fake).ok
    assert all(q["support_type_scope"] == ["all"] for q in (c.query for c in fake.calls(path="ticket_events")))
    tickets = zendesk_tickets(fake.world)
    ai_only = [t for t in tickets.values() if not t.deleted and any(m.role == "bot" for m in t.messages)
               and not any(m.role == "agent" for m in t.messages)]
    assert ai_only
    for t in ai_only:
        assert rows(store, "SELECT count(*) FROM messages WHERE contact_id = ?", str(t.id)) == [(len(t.messages),)]
        assert rows(store, "SELECT count(*) FROM status_events WHERE contact_id = ?", str(t.id)) == [
            (len(t.resolved_times) + len(t.reopen_times),)]


def test_trigger_comments_under_a_display_name_via_are_system_messages(fake: FakeZendesk, store: Store) -> None:
    """Update events give `via` as "Rule"; their comments inherit it and are not agent replies."""
    assert sync(store, fake).ok
    system = [m for t in zendesk_tickets(fake.world).values() for m in t.messages if m.role == "system"]
    assert system
    stored = dict(rows(store, "SELECT source_id, author_role FROM messages WHERE author_role IS NOT NULL"))
    assert {str(m.id) for m in system} <= {k for k, v in stored.items() if v == "system"}


def test_metric_sets_sideloaded_top_level_are_read(fake: FakeZendesk, store: Store) -> None:
    fake.metric_sets_form = "top_level"
    try:
        assert sync(store, fake).ok
    finally:
        fake.metric_sets_form = "per_ticket"
    vendor = rows(store, "SELECT count(*) FROM contacts WHERE status != 'deleted'"
                         " AND json_extract(vendor, '$.reply_time_minutes') IS NOT NULL")
    assert vendor[0][0] > 0


def test_platform_follows_the_ticket_via_channel(fake: FakeZendesk, store: Store) -> None:
    assert sync(store, fake).ok
    platforms = dict(rows(store, "SELECT channel, group_concat(DISTINCT platform) FROM contacts GROUP BY channel"))
    assert set(platforms["social"].split(",")) <= {"twitter", "facebook", "instagram"}
    assert platforms["email"] == "email" and platforms["chat"] == "web_chat"


# --- failures -------------------------------------------------------------------------------


def test_a_burst_of_503_is_survived(fake: FakeZendesk, store: Store) -> None:
    fake.fail(503, times=3, path="ticket_events")
    connector = ZendeskConnector(settings(fake))
    connector.client.backoff_base = 0.05  # keep the test fast; the retry path is the same
    result = sync_source(store, connector)
    assert result.ok, result.error
    assert [r.status for r in fake.calls(path="ticket_events")][:4] == [503, 503, 503, 200]
    assert store.count("messages") == sum(len(t.messages) for t in zendesk_tickets(fake.world).values())


def test_truncated_page_is_a_malformed_response_and_leaves_the_cursor(fake: FakeZendesk, store: Store) -> None:
    fake.malformed(path="ticket_events", skip=1)
    result = sync(store, fake, page_size=50)
    assert not result.ok
    assert "/api/v2/incremental/ticket_events" in result.error and "not valid JSON" in result.error
    first_page = fake.calls(path="ticket_events")[0]
    first_end = _end_time_of(fake, first_page.query)
    assert store.get_cursor("zendesk", "ticket_events") == str(first_end)
    assert sync(store, fake, page_size=50).ok
    assert store.count("messages") == sum(len(t.messages) for t in zendesk_tickets(fake.world).values())


def _end_time_of(fake: FakeZendesk, query: dict[str, list[str]]) -> int:
    import requests

    params = {k: v[0] for k, v in query.items()}
    s = fake.connector_settings()
    body = requests.get(f"{fake.base_url}/api/v2/incremental/ticket_events", params=params,
                        auth=(f"{s['email']}/token", s["api_token"]), timeout=10).json()
    return int(body["end_time"])


def test_403_names_the_endpoint(fake: FakeZendesk, store: Store) -> None:
    fake.fail(403, path="tickets/cursor")
    result = sync(store, fake)
    assert not result.ok and "403" in result.error and "/api/v2/incremental/tickets/cursor" in result.error
    assert len(fake.calls(path="tickets/cursor")) == 1


def test_a_record_of_unexpected_shape_is_quarantined_while_the_sync_completes(
        fake: FakeZendesk, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    victim = next(t for t in zendesk_tickets(fake.world).values() if not t.deleted)
    render = fake.render_ticket

    def corrupt(t: Ticket, with_metrics: bool) -> dict[str, Any]:
        body = render(t, with_metrics)
        if t.id == victim.id:
            body["status"] = ["open"]  # a list where a word belongs: the status lookup raises TypeError
        return body

    monkeypatch.setattr(fake, "render_ticket", corrupt)
    result = sync(store, fake)
    assert result.ok, result.error
    reasons = dict((r[0], r[1]) for r in rows(store, "SELECT record_id, error FROM quarantine"))
    assert list(reasons) == [f"ticket/{victim.id}"]
    assert store.count("contacts") == len(zendesk_tickets(fake.world)) - 1


def test_oauth_token_works_instead_of_an_api_token(fake: FakeZendesk, store: Store) -> None:
    base = fake.connector_settings()
    oauth = ZendeskSettings(base_url=base["base_url"], start_date=base["start_date"], oauth_token=fake.oauth_token)
    connector = ZendeskConnector(oauth)
    try:
        assert sync_source(store, connector).ok
    finally:
        connector.close()
    assert store.count("contacts") == len(zendesk_tickets(fake.world))


# --- privacy --------------------------------------------------------------------------------


# --- reconciliation -------------------------------------------------------------------------


def test_rewound_cursors_reread_the_window_and_never_move_forward(fake: FakeZendesk, store: Store) -> None:
    assert sync(store, fake).ok
    connector = ZendeskConnector(settings(fake))
    try:
        cursors = store.cursors("zendesk")
        since = datetime.fromtimestamp(fake.world.clock() - 7 * 86400, tz=timezone.utc)
        rewound = {s.name: connector.rewind_cursor(s, cursors.get(s.name), since) for s in STREAMS}
        epoch = int(since.timestamp())
        assert rewound["tickets"] == f"{epoch}:" and rewound["ticket_events"] == str(epoch)
        assert rewound["groups"] is None and rewound["csat"].startswith("legacy:")
        long_ago = datetime(2000, 1, 1, tzinfo=timezone.utc)
        assert connector.rewind_cursor(STREAMS[3], cursors["tickets"], long_ago) == f"{int(long_ago.timestamp())}:"
        future = datetime.fromtimestamp(fake.world.clock() + 86400, tz=timezone.utc)
        assert connector.rewind_cursor(STREAMS[3], cursors["tickets"], future) == cursors["tickets"]
        fake.clear_log()
        pages = list(connector.read(STREAMS[3], rewound["tickets"]))
    finally:
        connector.close()
    recent = {t.id for t in zendesk_tickets(fake.world).values() if t.updated_at >= epoch}
    read = {r["source_id"] for p in pages for r in p.records.get("contacts", [])}
    assert read == {str(i) for i in recent}
