"""The Freshdesk connector against the fake Freshdesk API: real HTTP on loopback, a real SQLite store.

Expected values come from the world the fake renders, computed here from the world's own
tickets with Freshdesk's limits spelled out (notification e-mails are not conversations,
`stats` show only the latest resolution and reopen, time entries count whole minutes).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from connectors.freshdesk.connector import FreshdeskConnector
from connectors.freshdesk.fake import API_KEY, BOT_SOURCE, SOURCE_CODES, FakeFreshdesk, source_code
from connectors.freshdesk.normalize import CHANNELS
from connectors.freshdesk.settings import FreshdeskSettings
from connectors.sandbox.world import Ticket, World
from kpi_core.model import iso_utc, primary_language
from kpi_core.store import Store
from kpi_core.sync import sync_source

SEED = 11
TICKETS = 600  # 150 of them on Freshdesk
RECORD_TABLES = ("contacts", "messages", "status_events", "survey_responses", "people", "groups", "organizations")
STATUS = {"new": "open", "open": "open", "pending": "pending", "on_hold": "on_hold", "resolved": "resolved",
          "closed": "closed"}


# `sandbox`, `fake`, `store` and `make_sandbox` come from conftest.py; the 429, 401, quarantine, rewind
# and crash-resume contract of every connector is tests/test_connector_contract.py.
pytestmark = pytest.mark.sandbox(seed=SEED, tickets=TICKETS, names=("freshdesk",))


def connector(fake: FakeFreshdesk, *, page_size: int | None = None, api_key: str | None = None,
              **options: Any) -> FreshdeskConnector:
    settings = {**fake.connector_settings(), "page_size": page_size}
    if api_key is not None:
        settings["api_key"] = api_key
    return FreshdeskConnector(FreshdeskSettings(**settings), **options)


def sync(store: Store, fake: FakeFreshdesk, **options: Any):
    conn = connector(fake, **options)
    try:
        return sync_source(store, conn)
    finally:
        conn.close()


def rows(store: Store, sql: str, params: Any = ()) -> list[dict[str, Any]]:
    return list(store.db.query(sql, params))


def contact(store: Store, ticket_id: int) -> dict[str, Any]:
    return rows(store, "select * from contacts where source = 'freshdesk' and source_id = ?", [str(ticket_id)])[0]


def iso(epoch: int | None) -> str | None:
    return iso_utc(epoch) if epoch is not None else None


def set_status(world: World, ticket: Ticket, status: str) -> int:
    with world.lock:
        at = world.tick()
        world._status(ticket, at, status)  # type: ignore[arg-type]
        ticket.updated_at = at
        return at


# --- expectations from the world -------------------------------------------------------------


def removed(t: Ticket) -> bool:
    return t.deleted or t.spam


def served(t: Ticket):
    """The world messages Freshdesk shows: acknowledgement e-mails are notifications, not conversations."""
    return [m for m in t.messages if m.role != "system"]


def stored_messages(t: Ticket) -> int:
    """What the store holds of a ticket: the served messages, plus for a bot ticket (source 12) the bot's
    side of the conversation its description carries (normalize.opening_messages)."""
    return len(served(t)) + (source_code(t) == BOT_SOURCE)


def expected_facts(t: Ticket) -> dict[str, Any]:
    messages = served(t)
    customer = [m.created_at for m in messages if m.role == "customer"]
    first_customer = min(customer, default=None)
    # Catalogue 2c: replies follow a customer message; the customer's side of an inbound ticket starts at its
    # creation, and an outbound one nobody answered has no reply at all.
    start = first_customer if first_customer is not None else (None if t.outbound else t.created_at)
    after = [m for m in messages if start is not None and m.created_at >= start]
    replies = [m.created_at for m in after if m.role == "agent" and m.public]
    bot = any(m.role == "bot" for m in after) or source_code(t) == BOT_SOURCE
    # Freshdesk's stats show only the latest resolution and reopen before the first sync.
    latest_resolution = iso(max(t.resolved_times, default=None))
    return {
        "first_customer_message_at": iso(first_customer), "customer_messages": len(customer),
        "first_agent_reply_at": iso(min(replies, default=None)), "agent_replies": len(replies),
        "first_resolved_at": latest_resolution, "last_resolved_at": latest_resolution,
        "reopens": 1 if t.reopen_times else 0,
        "is_bot_only": int(bool(t.resolved_times) and not replies and bot),
        # time entries carry `time_spent_in_seconds`: the world's handle time to the second
        "handle_seconds": None if t.handle_seconds is None else float(t.handle_seconds),
    }


def world_tickets(fake: FakeFreshdesk) -> list[Ticket]:
    return list(fake.data.tickets.values())


# --- tests -------------------------------------------------------------------------------------


def test_catalogue_channel_codes_map_back_to_the_world_channel():
    for channel, codes in SOURCE_CODES.items():
        expected = "other" if channel == "api" else channel  # Freshdesk has no API source code
        assert {CHANNELS.get(code, "other") for code in codes} == {expected}, channel
    assert CHANNELS[BOT_SOURCE] == "chat"


# Platform of each source code, catalogue 2c: the app or network it names, else the channel.
PLATFORM = {4: "social", 5: "twitter", 6: "facebook", 7: "web_chat", 8: "mobile_app", 11: "marketplace",
            12: "chat", 13: "whatsapp", 14: "other"}


def test_every_source_code_is_served_and_stored_with_its_channel_and_platform(fake, store):
    served_codes = {source_code(t) for t in world_tickets(fake)}
    # Every documented code the world's Freshdesk channels give (it has no messaging tickets, so
    # 13 WhatsApp is covered by tests/test_normalize.py only), and 14, a code added later.
    assert {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14} <= served_codes
    assert sync(store, fake).ok
    for t in world_tickets(fake):
        code = source_code(t)
        row = contact(store, t.id)
        expected_channel = ("email" if code in (1, 10, 11) else "web_form" if code in (2, 8, 9) else "phone"
                            if code == 3 else "social" if code in (4, 5, 6) else "chat" if code in (7, 12)
                            else "messaging" if code == 13 else "other")
        assert (row["channel"], row["platform"]) == (expected_channel, PLATFORM.get(code, expected_channel)), code


def test_full_sync_equals_the_world(fake, store):
    result = sync(store, fake)
    assert result.ok, result.error
    tickets = world_tickets(fake)
    people = fake.data.people

    stored = {r["source_id"]: r for r in rows(store, "select * from contacts")}
    assert set(stored) == {str(t.id) for t in tickets}
    assert any(t.deleted for t in tickets) and any(t.spam for t in tickets)
    for t in tickets:
        row = stored[str(t.id)]
        assert row["status"] == ("deleted" if removed(t) else STATUS[t.status]), t.id
        assert row["channel"] == ("email" if t.outbound else t.channel), t.id
        assert (row["priority"], row["created_at"], row["is_outbound"]) == (t.priority, iso(t.created_at), t.outbound)
        assert row["requester_id"] == str(t.requester_id)
        assert row["assignee_id"] == (str(t.assignee_id) if t.assignee_id else None)
        if removed(t):
            continue
        assert row["language"] == primary_language(people[t.requester_id].locale), t.id
        facts = {key: row[key] for key in expected_facts(t)}
        assert facts == expected_facts(t), t.id

    messages = rows(store, "select * from messages order by contact_id, created_at, source_id")
    by_ticket: dict[str, list[tuple[Any, ...]]] = {}
    for m in messages:
        by_ticket.setdefault(m["contact_id"], []).append(
            (m["created_at"], m["author_id"], m["author_role"], m["public"]))
    for t in tickets:
        if removed(t):
            assert str(t.id) not in by_ticket  # their conversations 404; nothing is asked for them
            continue
        want: list[tuple[str | None, str | None, str, int]] = [
            (iso(m.created_at), str(m.author_id), m.role, int(m.public)) for m in served(t)]
        if source_code(t) == BOT_SOURCE:  # the bot's side of the conversation its description carries
            want.append((iso(t.created_at), None, "bot", 1))
        assert sorted(by_ticket[str(t.id)], key=str) == sorted(want, key=str), t.id
    firsts = rows(store, "select * from messages where source_id like '%:description'")
    assert len(firsts) == sum(1 for t in tickets if not removed(t))
    assert {m["author_role"] for m in firsts if contact(store, int(m["contact_id"]))["is_outbound"]} == {"agent"}

    answered = [t for t in tickets if t.rating and t.rating.answered_at is not None]
    responses = {r["source_id"]: r for r in rows(store, "select * from survey_responses")}
    assert set(responses) == {str(t.rating.id) for t in answered}
    for t in answered:
        r = responses[str(t.rating.id)]
        assert (r["kind"], r["scale"], r["score"], r["contact_id"], r["created_at"]) == (
            "csat", "freshdesk", float(t.rating.score), str(t.id), iso(t.rating.answered_at))
        assert r["is_positive"] == int(t.rating.score > 100)

    roles = {r["source_id"]: r["role"] for r in rows(store, "select * from people")}
    assert roles == {str(p.id): p.role for p in people.values()}
    assert rows(store, "select count(*) n from people where name is not null or email is not null"
                       " or phone is not null")[0]["n"] == 0
    assert store.count("groups") == len(fake.data.groups)
    assert {r["name"] for r in rows(store, "select name from organizations")} == {
        o.name for o in fake.data.organizations.values()}
    assert store.count("quarantine") == 0


def test_a_full_sync_makes_the_minimum_number_of_calls(fake, store):
    conn = connector(fake)
    assert sync_source(store, conn).ok
    tickets = world_tickets(fake)
    live = [t for t in tickets if not removed(t)]
    pages = lambda n: max(1, math.ceil(n / 100))  # noqa: E731
    # Ticket lists re-query from the newest time after each page, so each later page
    # carries the previous page's last ticket again: 99 new tickets per page after the first.
    requeried = lambda n: 1 if n <= 100 else 1 + math.ceil((n - 100) / 99)  # noqa: E731
    entries = sum(len(fake.render_time_entries(t)) for t in tickets)
    answered = sum(1 for t in tickets if t.rating and t.rating.answered_at is not None)
    minimum = (
        3  # agents, groups, companies
        + pages(len(fake.data.customers()))
        + requeried(len(live)) + sum(pages(len(served(t)) - 1) for t in live)  # ticket list + conversations
        + requeried(sum(t.deleted for t in tickets)) + requeried(sum(t.spam and not t.deleted for t in tickets))
        + pages(entries) + requeried(answered)
    )
    assert conn.api_calls == minimum
    assert len(fake.calls(path=r"/contacts/\d+$")) == 0  # every requester's language came from the list
    list_calls = fake.calls(path=r"/api/v2/tickets$")
    assert all(call.query["include"] == ["stats"] for call in list_calls if "filter" not in call.query)


def test_incremental_sync_fetches_only_what_changed(fake, store):
    assert sync(store, fake).ok
    world = fake.world
    changed = world.mutate("freshdesk", 6)
    added = world.add_tickets("freshdesk", 2)
    parked = next(t for t in world_tickets(fake) if t.status == "pending" and t.id not in changed and not removed(t))
    set_status(world, parked, "on_hold")
    fake.clear_log()

    result = sync(store, fake)

    assert result.ok, result.error
    touched = set(changed) | set(added) | {parked.id}
    asked = {int(call.path.split("/")[4]) for call in fake.calls(path="/conversations$")}
    assert asked == touched
    assert len(fake.calls(path=r"/api/v2/tickets$")) == 3  # tickets, deleted, spam: one page each
    assert len(fake.calls(path=r"/api/v2/contacts$")) == 1
    assert result.by_stream["contacts"] == 0
    for ticket_id in touched:
        t = fake.data.tickets[ticket_id]
        stored = rows(store, "select count(*) n from messages where contact_id = ?", [str(t.id)])
        assert stored[0]["n"] == stored_messages(t)
        assert contact(store, t.id)["status"] == STATUS[t.status]
    assert contact(store, parked.id)["status"] == "on_hold"  # a custom status (6 or 7)


def test_a_read_longer_than_the_page_cap_restarts_and_syncs_everything(store, make_sandbox):
    sandbox = make_sandbox(seed=SEED, tickets=TICKETS, names=("freshdesk",), max_page=3)
    fake = sandbox["freshdesk"]
    # The world stamps every contact with one time; more than a capped window (3 x 10) in one
    # second is a wall no page cap can pass (the connector says so), so spread them out.
    for offset, person in enumerate(fake.data.customers()):
        person.updated_at += offset
    result = sync(store, fake, page_size=10, max_page=3)
    assert result.ok, result.error
    assert store.count("contacts") == len(fake.data.tickets)
    live = [t for t in world_tickets(fake) if not removed(t)]
    assert store.count("messages") == sum(stored_messages(t) for t in live)

    main = [c for c in fake.calls(path=r"/api/v2/tickets$") if "filter" not in c.query]
    assert max(int(c.query["page"][0]) for c in main) <= 3  # re-queried by time, never past the cap
    assert all(c.status == 200 for c in fake.calls())
    windows = [c.query["updated_since"][0] for c in main if c.query["page"] == ["1"]]
    assert len(windows) >= 5 and windows == sorted(windows)  # 145 live tickets, 30 per window
    conversations = [c.path for c in fake.calls(path="/conversations$")]
    assert len(conversations) == len(set(conversations)) == len(live)  # boundary tickets not fetched twice
    # The account's time entries overflow the cap too: they are read per ticket instead.
    assert len(fake.calls(path=r"/tickets/\d+/time_entries$")) == len(live)
    stored = rows(store, "select * from contacts where status != 'deleted'")
    assert {r["source_id"]: r["handle_seconds"] for r in stored} \
        == {str(t.id): expected_facts(t)["handle_seconds"] for t in live}


def test_updated_since_is_always_sent_so_old_tickets_come_back(fake, store):
    month_ago = time.time() - 30 * 86400
    recent = [t for t in world_tickets(fake) if not removed(t) and t.created_at >= month_ago]
    older = [t for t in world_tickets(fake) if not removed(t) and t.created_at < month_ago]
    assert older, "the world should hold tickets older than 30 days"
    bare = requests.get(f"{fake.base_url}/api/v2/tickets", params={"per_page": 100}, auth=(API_KEY, "X"), timeout=5)
    assert {t["id"] for t in bare.json()} == {t.id for t in recent}  # what a client without updated_since gets
    fake.clear_log()

    assert sync(store, fake).ok

    lists = fake.calls(path=r"/api/v2/tickets$")
    assert lists and all("updated_since" in c.query for c in lists)
    stored = {r["source_id"] for r in rows(store, "select source_id from contacts where status != 'deleted'")}
    assert {str(t.id) for t in older} <= stored


def test_deleted_and_spam_tickets_come_through_their_filters(fake, store):
    assert sync(store, fake).ok
    world = fake.world
    live = [t for t in world_tickets(fake) if not removed(t)]
    doomed, junk = live[0], live[1]
    world.delete_ticket("freshdesk", doomed.id)
    with world.lock:
        junk.spam = True
        junk.updated_at = world.tick()
    fake.clear_log()

    assert sync(store, fake).ok

    assert contact(store, doomed.id)["status"] == "deleted"
    assert contact(store, junk.id)["status"] == "deleted"
    filters = {c.query["filter"][0] for c in fake.calls(path=r"/api/v2/tickets$") if "filter" in c.query}
    assert filters == {"deleted", "spam"}
    assert not fake.calls(path=rf"/tickets/({doomed.id}|{junk.id})/")
    cursors = store.cursors("freshdesk")
    assert cursors["deleted_tickets"] >= iso(doomed.updated_at)
    assert cursors["spam_tickets"] >= iso(junk.updated_at)


def test_a_burst_of_server_errors_is_survived(fake, store):
    fake.fail(503, times=3, path="/conversations$")
    fake.fail(500, path="/time_entries$")
    result = sync(store, fake)
    assert result.ok, result.error
    assert store.count("contacts") == len(fake.data.tickets)
    assert [c.status for c in fake.calls(path="/conversations$")][:4] == [503, 503, 503, 200]


def test_a_truncated_body_fails_clearly_and_keeps_the_cursor(fake, store):
    assert sync(store, fake).ok
    before = store.cursors("freshdesk")
    changed = fake.world.mutate("freshdesk", 4)
    fake.malformed(path="/conversations$")

    result = sync(store, fake)

    assert not result.ok
    assert "/conversations" in result.error and "not valid JSON" in result.error
    assert store.cursors("freshdesk") == before
    assert sync(store, fake).ok
    assert store.cursors("freshdesk")["tickets"] > before["tickets"]
    for ticket_id in changed:
        t = fake.data.tickets[ticket_id]
        assert contact(store, t.id)["updated_at"] == iso(t.updated_at)


def test_a_forbidden_endpoint_is_a_clear_error(fake, store):
    fake.fail(403, path="/surveys/satisfaction_ratings$")
    result = sync(store, fake)
    assert not result.ok
    assert "403" in result.error and "/api/v2/surveys/satisfaction_ratings" in result.error
    assert len(fake.calls(path="/surveys/")) == 1
    assert store.count("contacts") == len(fake.data.tickets)  # the streams before it are stored


def test_resolved_reopened_resolved_across_syncs_keeps_the_first_resolution(fake, store):
    world = fake.world
    ticket = next(t for t in world_tickets(fake) if t.status == "open" and not removed(t) and not t.resolved_times)
    assert sync(store, fake).ok
    first = set_status(world, ticket, "resolved")
    assert sync(store, fake).ok
    assert (contact(store, ticket.id)["first_resolved_at"], contact(store, ticket.id)["reopens"]) == (iso(first), 0)
    set_status(world, ticket, "open")
    assert sync(store, fake).ok
    assert contact(store, ticket.id)["reopens"] == 1
    second = set_status(world, ticket, "resolved")
    assert sync(store, fake).ok

    row = contact(store, ticket.id)
    assert (row["first_resolved_at"], row["last_resolved_at"], row["reopens"], row["status"]) == (
        iso(first), iso(second), 1, "resolved")


def test_a_mapped_custom_question_becomes_its_own_survey_response(fake, store):
    assert sync(store, fake, survey_questions={"question_nps": ("nps", "0-10")}).ok
    nps = rows(store, "select * from survey_responses where kind = 'nps'")
    assert nps, "some world ratings carry the custom question"
    assert all(r["scale"] == "0-10" and r["is_positive"] == int(r["score"] >= 9) for r in nps)
    assert all(r["source_id"].endswith(":question_nps") for r in nps)
    assert not rows(store, "select * from survey_responses where kind = 'csat' and question != 'default_question'")


def test_no_secret_or_personal_data_reaches_the_store(fake, store, tmp_path):
    assert sync(store, fake).ok
    tickets = world_tickets(fake)
    assert any(t.rating and t.rating.comment and t.rating.answered_at for t in tickets)
    secrets = {API_KEY}
    secrets |= {s for p in fake.data.people.values() for s in (p.name, p.email, p.phone) if s}
    secrets |= {m.body for t in tickets for m in t.messages} | {t.subject for t in tickets}
    secrets |= {t.rating.comment for t in tickets if t.rating and t.rating.comment}
    secrets |= {c["address"] for c in (fake.render_contact(p) for p in fake.data.customers()) if c["address"]}
    secrets |= {e["note"] for t in tickets for e in fake.render_time_entries(t)}
    path = Path(store.db.execute("PRAGMA database_list").fetchone()[2])
    blob = b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal")) if p.exists())
    leaked = sorted(s for s in secrets if s.encode() in blob)
    assert leaked == []



def test_the_fake_answers_as_freshdesk_does(fake):
    def get(path, auth=(API_KEY, "X"), **params):
        return requests.get(f"{fake.base_url}/api/v2/{path}", params=params, auth=auth, timeout=5)

    since = "2020-01-01T00:00:00Z"
    first = get("tickets", updated_since=since, per_page=100, include="stats")
    assert first.headers["X-RateLimit-Used-CurrentRequest"] == "3"
    assert 'rel="next"' in first.headers["Link"] and "page=2" in first.headers["Link"]
    last = get("tickets", updated_since=since, per_page=100, page=2)
    assert "Link" not in last.headers and last.headers["X-RateLimit-Used-CurrentRequest"] == "1"
    assert len(first.json()) + len(last.json()) == sum(not removed(t) for t in world_tickets(fake))
    for params, field in (({"per_page": 101}, "per_page"), ({"page": 301}, "page"),
                          ({"order_type": "up"}, "order_type")):
        refused = get("tickets", **params)
        assert refused.status_code == 400
        assert refused.json()["description"] == "Validation failed" and refused.json()["errors"][0]["field"] == field
    assert get("agents", auth=("wrong", "X")).json()["code"] == "invalid_credentials"
    gone = next(t for t in world_tickets(fake) if t.deleted)
    assert get(f"tickets/{gone.id}/conversations").status_code == 404
    assert all(t["deleted"] for t in get("tickets", filter="deleted", updated_since=since).json())
    assert fake.credits_used() == len(fake.calls()) + 2  # only the include=stats call cost extra


def test_a_ticket_changed_during_a_long_read_does_not_shift_another_out_of_sight(fake, store):
    # Page numbers shift when a ticket read on an earlier page changes: it moves to the end,
    # and the ticket that was first on the next page slides back onto the page already read.
    original = fake.dispatch
    changed: list[int] = []

    def dispatch(request):
        answer = original(request)
        is_first_list_page = (request.path == "/api/v2/tickets" and "filter" not in request.query
                              and request.query.get("page") == ["1"])
        if is_first_list_page and not changed:
            oldest = min((t for t in world_tickets(fake) if not removed(t)), key=lambda t: t.updated_at)
            with fake.world.lock:
                oldest.tags = [*oldest.tags, "touched"]
                oldest.updated_at = fake.world.tick()
            changed.append(oldest.id)
        return answer

    fake.dispatch = dispatch
    assert sync(store, fake, page_size=10).ok
    live = {str(t.id) for t in world_tickets(fake) if not removed(t)}
    stored = {r["source_id"] for r in rows(store, "select source_id from contacts where status != 'deleted'")}
    assert changed and stored == live


def test_a_ticket_of_unexpected_shape_is_quarantined_while_the_sync_completes(fake, store):
    good = next(t for t in world_tickets(fake) if not removed(t))
    # `stats` a list where an object belongs: a shape the field readers used to let through to a
    # TypeError/AttributeError, which aborted this connector's sync.
    bad = {**fake.render_ticket(good, {"stats"}), "id": 999_999_999, "tags": None, "stats": ["resolved"]}
    fake.fail(200, path=r"/api/v2/tickets$", body=[fake.render_ticket(good, {"stats"}), bad])
    result = sync(store, fake)
    assert result.ok, result.error
    quarantined = rows(store, "select * from quarantine")
    assert [(q["stream"], q["record_id"]) for q in quarantined] == [("tickets", "ticket/999999999")]
    assert "stats should be an object" in quarantined[0]["error"]
    assert contact(store, good.id)["status"] == STATUS[good.status]


def test_the_freshdesk_scale_is_declared_by_the_connector_not_by_kpi_core():
    from connectors.freshdesk.normalize import FRESHDESK_SCALE
    from kpi_core.model import SCALES

    assert FRESHDESK_SCALE.name not in SCALES
    assert [c for c in range(-103, 104) if FRESHDESK_SCALE.is_positive(c)] == [101, 102, 103]
    assert FRESHDESK_SCALE.categorical and FRESHDESK_SCALE.is_positive(104) is None



def test_a_record_of_unexpected_shape_on_any_list_is_quarantined_and_the_sync_completes(fake, store):
    live = [t for t in world_tickets(fake) if not removed(t)]
    with_entries = next(t for t in live if t.handle_seconds is not None)
    answered = next(t for t in live if t.rating and t.rating.answered_at is not None)
    customer = fake.data.customers()[0]
    org = next(iter(fake.data.organizations.values()))
    entry = fake.render_time_entries(with_entries)[0]
    entry.pop("_at")
    chat = next(t for t in live if len(served(t)) > 1 and t.id != with_entries.id)
    conversation = fake.render_conversation(chat, served(chat)[1])
    # Each list answers once with one good record, one of a wrong shape and one that is not an object.
    fake.fail(200, path=r"/api/v2/contacts$", body=[
        fake.render_contact(customer), {**fake.render_contact(customer), "id": 801, "tags": "vip"}, "contact"])
    fake.fail(200, path=r"/api/v2/companies$", body=[
        fake.render_company(org), {**fake.render_company(org), "id": 802, "custom_fields": []}, 7])
    fake.fail(200, path=r"/api/v2/time_entries$", body=[
        entry, {**entry, "id": 803, "time_spent_in_seconds": "an hour"}, None])
    fake.fail(200, path=r"/api/v2/surveys/satisfaction_ratings$", body=[
        fake.render_rating(answered), {**fake.render_rating(answered), "id": 804, "ratings": {"default_question": "x"}},
        []])
    fake.fail(200, path=rf"/api/v2/tickets/{chat.id}/conversations$", body=[conversation, "reply"])
    fake.fail(200, path=r"/api/v2/tickets$", body=[
        fake.render_ticket(with_entries, {"stats"}), fake.render_ticket(chat, {"stats"}), "ticket"])

    result = sync(store, fake)

    assert result.ok, result.error
    got = {(q["stream"], q["record_id"]) for q in rows(store, "select * from quarantine")}
    assert got == {("contacts", "contact/801"), ("contacts", "contact/?"), ("companies", "company/802"),
                   ("companies", "company/?"), ("tickets", "time_entry/803"), ("tickets", "time_entry/?"),
                   ("satisfaction_ratings", "rating/804"), ("satisfaction_ratings", "rating/?"),
                   ("tickets", f"ticket/{chat.id}"), ("tickets", "ticket/?")}
    assert contact(store, with_entries.id)["handle_seconds"] is None  # one entry unread: not known, not a sum


def test_time_entries_are_read_in_seconds_where_the_api_gives_them(fake):
    t = next(t for t in world_tickets(fake) if t.handle_seconds and t.handle_seconds % 60)
    entries = fake.render_time_entries(t)
    assert sum(e["time_spent_in_seconds"] for e in entries) == t.handle_seconds
    assert all(e["time_spent"] == "{:02d}:{:02d}".format(*divmod(e["time_spent_in_seconds"] // 60, 60))
               for e in entries)


def test_a_second_sync_after_many_changes_reads_requesters_by_list_not_one_by_one(fake, store):
    assert sync(store, fake).ok
    world = fake.world
    before = {r["source_id"]: r for r in rows(store, "select * from contacts")}
    changed = world.mutate("freshdesk", 60)
    fake.clear_log()

    result = sync(store, fake, page_size=10)  # more than a page of changes: the large-read path

    assert result.ok, result.error
    assert fake.calls(path=r"/contacts/\d+$") == []  # no requester changed; no ticket is new
    assert len(fake.calls(path=r"/api/v2/contacts$")) == 1
    assert len(fake.calls(path=r"/time_entries$")) == 1  # only entries logged since the bookmark
    assert [c.query.get("executed_after") is not None for c in fake.calls(path=r"/api/v2/time_entries$")] == [True]
    assert len(fake.calls(path="/conversations$")) == len(changed)
    for ticket_id in changed:
        row, old = contact(store, ticket_id), before[str(ticket_id)]
        t = fake.data.tickets[ticket_id]
        assert (row["language"], row["locale"]) == (old["language"], old["locale"])  # kept as stored
        assert row["language"] == primary_language(fake.data.people[t.requester_id].locale)
        assert row["handle_seconds"] == (None if t.handle_seconds is None else float(t.handle_seconds))


def test_the_admins_freshdesk_mappings_are_read_from_the_config(tmp_path):
    from kpi_core.settings import ConfigProblem, load_settings

    config = tmp_path / "helpdesk-kpi.toml"
    config.write_text(
        '[connectors.freshdesk]\ndomain = "acme"\napi_key = "k"\nbot_agent_ids = ["43999"]\n'
        'merge_note_texts = ["Dit ticket is gesloten en samengevoegd met ticket"]\n'
        '[connectors.freshdesk.source_channels]\n14 = "messaging"\n'
        '[connectors.freshdesk.source_platforms]\n14 = "telegram"\n'
        '[connectors.freshdesk.survey_questions.question_2]\nkind = "csat"\nscale = "freshdesk"\n'
        '[connectors.freshdesk.survey_questions.question_nps]\nkind = "nps"\nscale = "0-10"\n')
    settings = load_settings(config).enabled_connectors()["freshdesk"]
    connector = FreshdeskConnector(settings)  # type: ignore[arg-type]
    try:
        assert (connector.channels[14], connector.platforms[14], connector.bot_ids) == (
            "messaging", "telegram", frozenset({"43999"}))
        assert connector.survey_questions == {"question_2": ("csat", "freshdesk"), "question_nps": ("nps", "0-10")}
        assert connector.merge_notes == ("This ticket is closed and merged into ticket",  # Freshdesk's default
                                         "Dit ticket is gesloten en samengevoegd met ticket")
    finally:
        connector.close()
    for bad in ('[connectors.freshdesk.survey_questions.question_nps]\nkind = "nps"\nscale = "freshdesk"\n',
                '[connectors.freshdesk.survey_questions.default_question]\nkind = "csat"\nscale = "1-5"\n',
                '[connectors.freshdesk.source_channels]\n14 = "pigeon"\n'):
        config.write_text('[connectors.freshdesk]\ndomain = "acme"\napi_key = "k"\n' + bad)
        with pytest.raises(ConfigProblem):
            load_settings(config)
