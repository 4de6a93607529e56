"""The Intercom connector over real HTTP against the sandbox's fake Intercom."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from connectors.intercom.connector import IntercomConnector
from connectors.intercom.fake import TOKEN, FakeIntercom, company_ref, contact_ref
from connectors.intercom.settings import IntercomSettings
from connectors.intercom.writer import IntercomWriter
from connectors.sandbox import Sandbox
from connectors.sandbox.server import FakeResponse
from connectors.sandbox.world import Message, Organization, Ticket, World
from kpi_core.cli import main
from kpi_core.model import iso_utc, primary_language
from kpi_core.store import Store, store_at
from kpi_core.sync import sync_source
from kpi_core.writeback.convert import mismatch
from kpi_core.writeback.mappings import METRICS

RECORD_TABLES = ("contacts", "messages", "status_events", "survey_responses", "people", "groups", "organizations")
STATUS = {"new": "open", "open": "open", "pending": "pending", "on_hold": "pending", "resolved": "closed",
          "closed": "closed"}


# `sandbox`, `fake` and `store` come from conftest.py; the incremental, quarantine, privacy, rewind and
# crash-resume contract of every connector is tests/test_connector_contract.py.
pytestmark = pytest.mark.sandbox(seed=11, tickets=400, names=("intercom",))


def connector(fake: FakeIntercom, **overrides: Any) -> IntercomConnector:
    return IntercomConnector(IntercomSettings(**{**fake.connector_settings(), **overrides}))


def sync(store: Store, fake: FakeIntercom, **overrides: Any) -> Any:
    conn = connector(fake, **overrides)
    try:
        return sync_source(store, conn)
    finally:
        conn.close()


def live_tickets(world: World) -> list[Ticket]:
    return [t for t in world.sources["intercom"].tickets.values() if not t.deleted]


def rows(store: Store, table: str) -> dict[str, dict[str, Any]]:
    return {r["source_id"]: r for r in store.db.query(f"SELECT * FROM [{table}] WHERE source = 'intercom'")}


def dump(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    return {t: sorted(store.db.execute(f"SELECT * FROM [{t}]").fetchall(), key=repr) for t in RECORD_TABLES}


def expected_contact(world: World, ticket: Ticket) -> dict[str, Any]:
    """The normalized contact the world implies, computed without the connector or the store.

    Read as catalogue 2c reads Intercom: replies follow the customer's first message (an outbound conversation
    nobody answered has none); world `bot` and `system` messages are both the bot's (Fin, and the Operator's
    acknowledgements: `bot` authors); bot-only needs a bot message at or after the customer's first message;
    handle time is the active time (`adjusted_handling_time`), none without a human reply."""
    requester = world.sources["intercom"].people[ticket.requester_id]
    customer = [m.created_at for m in ticket.messages if m.role == "customer"]
    first_customer = min(customer, default=None)
    start = first_customer if first_customer is not None or ticket.outbound else ticket.created_at
    replies = [m.created_at for m in ticket.messages if m.role == "agent" and m.public
               and start is not None and m.created_at >= start]
    resolved, reopens = ticket.resolved_times, ticket.reopen_times
    has_bot = any(m.role in ("bot", "system") and start is not None and m.created_at >= start
                  for m in ticket.messages)
    events = resolved + reopens
    return {
        "channel": ticket.channel, "status": STATUS[ticket.status],
        "priority": "high" if ticket.priority in ("high", "urgent") else "normal",
        "created_at": iso_utc(ticket.created_at), "updated_at": iso_utc(ticket.updated_at),
        "requester_id": contact_ref(ticket.requester_id),
        "assignee_id": str(ticket.assignee_id) if ticket.assignee_id else None,
        "group_id": str(ticket.group_id), "tags": json.dumps(sorted(ticket.tags)),
        "is_outbound": int(ticket.outbound), "language": primary_language(requester.locale),
        "country": requester.country,
        "handle_seconds": float(ticket.handle_seconds) if ticket.handle_seconds is not None and replies else None,
        "first_customer_message_at": iso_utc(first_customer),
        "first_agent_reply_at": iso_utc(min(replies, default=None)),
        "agent_replies": len(replies), "customer_messages": len(customer),
        "first_resolved_at": iso_utc(resolved[0]) if resolved else None,
        "last_resolved_at": iso_utc(resolved[-1]) if resolved else None,
        "reopens": len(reopens), "has_bot_message": int(has_bot),
        "is_bot_only": int(bool(resolved) and not replies and has_bot),
        "last_activity_at": iso_utc(max([m.created_at for m in ticket.messages] + events)),
        "facts_from_events": 1, "messages_truncated": 0,
    }


def assert_store_matches_world(store: Store, world: World) -> None:
    contacts, messages = rows(store, "contacts"), rows(store, "messages")
    tickets = live_tickets(world)
    assert set(contacts) >= {str(t.id) for t in tickets}
    per_contact: dict[str, int] = {}
    for m in messages.values():
        per_contact[m["contact_id"]] = per_contact.get(m["contact_id"], 0) + 1
    for ticket in tickets:
        row = contacts[str(ticket.id)]
        row = {**row, "tags": json.dumps(sorted(json.loads(row["tags"])))}
        expected = expected_contact(world, ticket)
        assert {k: row[k] for k in expected} == expected, f"conversation {ticket.id}"
        assert per_contact[str(ticket.id)] == len(ticket.messages)
    surveys = rows(store, "survey_responses")
    rated = [t for t in tickets if t.rating and t.rating.answered_at]
    assert {str(t.id) for t in rated} == set(surveys)
    for t in rated:
        assert t.rating is not None and t.rating.answered_at is not None
        survey = surveys[str(t.id)]
        assert (survey["score"], survey["scale"], survey["kind"]) == (float(t.rating.score or 0), "1-5", "csat")
        assert survey["created_at"] == iso_utc(max(t.rating.answered_at, t.rating.updated_at))
        assert survey["requester_id"] == contact_ref(t.requester_id) and survey["comment"] is None


def test_full_sync_equals_the_worlds_intercom_slice(sandbox: Sandbox, fake: FakeIntercom, store: Store) -> None:
    result = sync(store, fake)
    assert result.ok, result.error
    assert_store_matches_world(store, sandbox.world)
    data = sandbox.world.sources["intercom"]
    people = rows(store, "people")
    agents = {k for k, p in people.items() if p["role"] == "agent"}
    customers = {k: p for k, p in people.items() if p["role"] == "customer"}
    assert agents == {str(a.id) for a in data.agents()}
    assert set(customers) == {contact_ref(c.id) for c in data.customers()}
    for person in data.customers():
        row = customers[contact_ref(person.id)]
        assert (row["language"], row["country"]) == (primary_language(person.locale), person.country)
        assert row["name"] is row["email"] is row["phone"] is None
    assert set(rows(store, "groups")) == {str(g) for g in data.groups}
    with_users = {p.organization_id for p in data.customers() if p.organization_id is not None}
    assert set(rows(store, "organizations")) == {company_ref(o) for o in with_users}
    assert store.count("quarantine") == 0
    # Calls: one search page per 150 conversations, one parts fetch per conversation with parts.
    searches = len(fake.calls("POST", "/conversations/search"))
    fetched = len(fake.calls("GET", "/conversations/"))
    with_parts = sum(1 for t in live_tickets(sandbox.world) if fake.render_parts(t))
    assert searches == -(-len(live_tickets(sandbox.world)) // 150)
    assert fetched == with_parts


def test_429_waits_until_the_rate_limit_reset(fake: FakeIntercom, store: Store) -> None:
    reset = int(time.time()) + 3
    fake.fail(429, path="/conversations/search", headers={"X-RateLimit-Reset": str(reset)})
    assert sync(store, fake).ok
    searches = fake.calls("POST", "/conversations/search")
    assert [c.status for c in searches[:2]] == [429, 200]
    assert searches[1].at - searches[0].at >= 1.9
    # The fake's own throttle speaks like Intercom: a reset epoch, no Retry-After.
    fake.rate_limit(1, window=10)
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {TOKEN}"
    session.get(fake.base_url + "/admins")
    throttled = session.get(fake.base_url + "/admins")
    assert throttled.status_code == 429 and "Retry-After" not in throttled.headers
    assert int(throttled.headers["X-RateLimit-Reset"]) > time.time()
    assert throttled.json()["errors"][0]["code"] == "rate_limit_exceeded"


def test_server_error_burst_is_survived(sandbox: Sandbox, fake: FakeIntercom, store: Store) -> None:
    fake.fail(503, times=3, path="/conversations/")
    started = time.monotonic()
    result = sync(store, fake)
    assert result.ok, result.error
    # Backoff, not the rate-limit reset epoch every Intercom answer carries (up to 10 s each).
    assert time.monotonic() - started < 8
    assert sum(1 for c in fake.calls(path="/conversations") if c.status == 503) == 3
    assert_store_matches_world(store, sandbox.world)


def test_truncated_body_is_a_clear_error_and_keeps_the_cursor(sandbox: Sandbox, fake: FakeIntercom,
                                                              store: Store) -> None:
    assert sync(store, fake).ok
    before = store.get_cursor("intercom", "conversations")
    sandbox.world.mutate("intercom", 3)
    fake.malformed(path="/conversations/search")
    result = sync(store, fake)
    assert not result.ok
    assert "/conversations/search" in (result.error or "") and "not valid JSON" in (result.error or "")
    assert store.get_cursor("intercom", "conversations") == before


def test_bad_token_and_missing_plan_are_clear_and_401_is_not_retried(fake: FakeIntercom, store: Store) -> None:
    result = sync(store, fake, access_token="wrong-token")
    assert not result.ok and "401" in (result.error or "") and "wrong-token" not in (result.error or "")
    assert len(fake.calls()) == 1
    fake.clear_log()
    fake.fail(403, path="/conversations/search")
    result = sync(store, fake)
    assert not result.ok and "403" in (result.error or "") and "Active subscription needed" in (result.error or "")
    assert len(fake.calls("POST", "/conversations/search")) == 1


def _add_messages(world: World, ticket: Ticket, count: int) -> None:
    """Append an alternating customer/agent exchange of `count` messages, all in the past."""
    agent = next(iter(world.sources["intercom"].agents()))
    with world.lock:
        at = max([m.created_at for m in ticket.messages] + [c.at for c in ticket.status_changes]) + 1
        for i in range(count):
            customer = i % 2 == 0
            ticket.messages.append(Message(world.next_id(), ticket.requester_id if customer else agent.id,
                                           "customer" if customer else "agent", True, at + i, "Thread message."))
        ticket.updated_at = world.tick()


def _old_open_tickets(world: World) -> list[Ticket]:
    cutoff = time.time() - 86400
    return [t for t in live_tickets(world)
            if t.updated_at < cutoff and not t.outbound and t.status in ("open", "pending")]


def test_long_conversations_complete_up_to_500_parts_then_statistics(sandbox: Sandbox, fake: FakeIntercom,
                                                                      store: Store) -> None:
    long_one, too_long = _old_open_tickets(sandbox.world)[:2]
    _add_messages(sandbox.world, long_one, 300)
    _add_messages(sandbox.world, too_long, 620)
    assert sync(store, fake).ok
    contacts, messages = rows(store, "contacts"), rows(store, "messages")
    complete = contacts[str(long_one.id)]
    expected = expected_contact(sandbox.world, long_one)
    assert {k: complete[k] for k in expected} == expected
    assert complete["agent_replies"] > 150
    truncated = contacts[str(too_long.id)]
    parts = fake.render_parts(too_long)
    assert len(parts) > 500
    shown = [p for p in parts[-500:] if p["part_type"] in ("comment", "quick_reply", "note")]
    stored = [m for m in messages.values() if m["contact_id"] == str(too_long.id)]
    assert len(stored) == len(shown) + 1  # the source and what the API gave
    assert (truncated["messages_truncated"], truncated["facts_from_events"]) == (1, 0)
    world_view = expected_contact(sandbox.world, too_long)
    for key in ("first_agent_reply_at", "first_resolved_at", "last_resolved_at", "reopens",
                "first_customer_message_at"):
        assert truncated[key] == world_view[key], key
    # Replies: those the returned parts show after the first customer message, plus the first reply, which lies
    # among the parts no longer returned: a floor of the true count, never above it.
    first_customer = world_view["first_customer_message_at"]
    seen = [p for p in parts[-500:] if p["part_type"] == "comment" and p["author"]["type"] == "admin"
            and iso_utc(p["created_at"]) >= first_customer]
    hidden_first = iso_utc(min(p["created_at"] for p in seen)) != world_view["first_agent_reply_at"]
    assert truncated["agent_replies"] == len(seen) + hidden_first <= world_view["agent_replies"]
    assert (truncated["is_bot_only"], truncated["handle_seconds"]) == (0, world_view["handle_seconds"])
    assert json.loads(truncated["vendor"])["count_conversation_parts"] == len(parts)


def test_a_repeated_starting_after_ends_the_pass_and_the_next_sync_completes(sandbox: Sandbox, fake: FakeIntercom,
                                                                              store: Store) -> None:
    fake.repeat_cursor_once()
    result = sync(store, fake, page_size=10)
    assert result.ok, result.error
    conversations = len(live_tickets(sandbox.world))
    searches = fake.calls("POST", "/conversations/search")
    assert len(searches) == 2  # page 2 handed back page 1's cursor: stop, no loop
    assert len(rows(store, "contacts")) < conversations
    fake.clear_log()
    assert sync(store, fake, page_size=10).ok
    assert_store_matches_world(store, sandbox.world)


def test_a_conversation_changed_behind_the_pass_is_caught_by_the_next_sync(sandbox: Sandbox, fake: FakeIntercom,
                                                                           store: Store) -> None:
    ordered = sorted(live_tickets(sandbox.world), key=lambda t: (t.created_at, t.id))  # the fake's search order
    early, last = _old_open_tickets(sandbox.world)[0], ordered[-1]
    _wrap_get(fake, lambda ident: _add_messages(sandbox.world, early, 2) if ident == str(last.id) else None)
    assert sync(store, fake, page_size=20).ok
    assert rows(store, "contacts")[str(early.id)]["updated_at"] != iso_utc(early.updated_at)  # missed by that pass
    fake.clear_log()
    assert sync(store, fake, page_size=20).ok
    assert [c.path for c in fake.calls("GET", "/conversations/")] == [f"/conversations/{early.id}"]
    assert_store_matches_world(store, sandbox.world)


def test_deleted_between_search_and_fetch_is_stored_as_deleted(sandbox: Sandbox, fake: FakeIntercom,
                                                              store: Store) -> None:
    victim = _old_open_tickets(sandbox.world)[0]
    _wrap_get(fake,
              lambda ident: sandbox.world.delete_ticket("intercom", victim.id) if ident == str(victim.id) else None)
    assert sync(store, fake).ok
    assert rows(store, "contacts")[str(victim.id)]["status"] == "deleted"
    assert_store_matches_world(store, sandbox.world)


def test_region_hosts_version_header_and_fake_search_shapes(fake: FakeIntercom) -> None:
    eu = IntercomConnector(IntercomSettings(access_token="t", region="eu"))
    assert eu.base_url == "https://api.eu.intercom.io"
    assert eu.client.session.headers["Intercom-Version"] == "2.14"
    au = IntercomConnector(IntercomSettings(access_token="t", region="au", api_version="2.11"))
    assert au.base_url == "https://api.au.intercom.io" and au.client.session.headers["Intercom-Version"] == "2.11"
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {TOKEN}"
    too_big = session.post(fake.base_url + "/conversations/search", json={"pagination": {"per_page": 151}})
    assert too_big.status_code == 400 and too_big.json()["errors"][0]["code"] == "parameter_invalid"
    query = {"operator": "AND", "value": [{"field": "updated_at", "operator": ">", "value": 0}]}
    first = session.post(fake.base_url + "/conversations/search",
                         json={"query": query, "pagination": {"per_page": 150}})
    body = first.json()
    assert body["type"] == "conversation.list" and "next" not in body["pages"]
    assert body["total_count"] == len(body["conversations"])
    assert all("conversation_parts" not in c and c["statistics"] for c in body["conversations"])


def _wrap_get(fake: FakeIntercom, before: Any) -> None:
    """Run `before(conversation_id)` ahead of every GET /conversations/{id}."""
    for index, (method, pattern, handler) in enumerate(fake.routes):
        if method == "GET" and pattern.pattern.startswith("^/conversations/"):
            def wrapped(request: Any, match: Any, handler: Any = handler) -> FakeResponse:
                before(match.group("id"))
                return handler(request, match)
            fake.routes[index] = (method, pattern, wrapped)




def test_a_conversation_whose_field_has_the_wrong_type_is_quarantined(sandbox: Sandbox, fake: FakeIntercom,
                                                                       store: Store) -> None:
    victim = live_tickets(sandbox.world)[0]
    render = fake.render_conversation

    def corrupt(ticket: Ticket, **options: Any) -> dict[str, Any]:
        conversation = render(ticket, **options)
        if ticket.id == victim.id:
            conversation["state"] = {"open": True}  # an object where a word belongs: the lookup raises TypeError
        return conversation

    fake.render_conversation = corrupt  # type: ignore[method-assign]
    result = sync(store, fake)
    assert result.ok, result.error
    reasons = dict(store.db.execute("SELECT record_id, error FROM quarantine").fetchall())
    assert list(reasons) == [f"conversation/{victim.id}"]
    assert "unhashable" in reasons[f"conversation/{victim.id}"]
    assert str(victim.id) not in rows(store, "contacts")
    assert len(rows(store, "contacts")) == len(live_tickets(sandbox.world)) - 1


# --- issue 14, items 8-12: the sandbox as the 2.14 specification describes Intercom -------------------------


def _api(fake: FakeIntercom) -> requests.Session:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {TOKEN}"
    return session


def test_contact_search_compares_days_and_a_contact_changed_later_that_day_is_read(sandbox: Sandbox,
                                                                                  fake: FakeIntercom,
                                                                                  store: Store) -> None:
    assert sync(store, fake).ok
    person = sandbox.world.sources["intercom"].customers()[0]
    with sandbox.world.lock:
        person.locale, person.updated_at = "pt-BR", sandbox.world.tick()
    # The fake, as the 2.14 description of POST /contacts/search says: `>` starts at the next day.
    day = person.updated_at - person.updated_at % 86400
    session, ref = _api(fake), contact_ref(person.id)

    def found(operator: str, value: int) -> bool:
        query: dict[str, Any] = {"operator": "AND",
                                 "value": [{"field": "updated_at", "operator": operator, "value": value}]}
        answer = session.post(fake.base_url + "/contacts/search", json={"query": query}).json()
        return ref in {c["id"] for c in answer["data"]}

    assert not found(">", person.updated_at - 60) and not found(">", day)
    assert found(">", day - 1) and found("=", person.updated_at) and not found("<", person.updated_at + 60)
    fake.clear_log()
    assert sync(store, fake).ok
    people = rows(store, "people")
    assert people[ref]["language"] == "pt"  # changed after the last sync, on the same day: read
    data = sandbox.world.sources["intercom"]
    assert len(people) == len(data.customers()) + len(data.agents())  # re-read, never duplicated
    [search] = [c for c in fake.calls("POST", "/contacts/search") if "id" not in json.dumps(c.body["query"])]
    assert "sort" not in search.body


@pytest.mark.parametrize("status", [403, 404])
def test_companies_refused_is_a_warning_and_the_conversations_still_sync(sandbox: Sandbox, fake: FakeIntercom,
                                                                         tmp_path: Path, status: int,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "c.toml"
    config.write_text(sandbox.config_toml(str(tmp_path / "s.sqlite")))
    os.chmod(config, 0o600)
    fake.fail(status, times=2, path="/companies/list")
    assert main(["sync", "--config", str(config)]) == 0
    output = capsys.readouterr()
    assert f"intercom: warning: companies: POST /companies/list refused ({status})" in output.err
    assert main(["status", "--config", str(config)]) == 0
    assert f"intercom: warning: companies: POST /companies/list refused ({status})" in capsys.readouterr().out
    with store_at(tmp_path / "s.sqlite") as store:
        assert_store_matches_world(store, sandbox.world)
        assert rows(store, "organizations") == {}
        assert store.get_cursor("intercom", "companies") is None  # tried again next time
    assert len(fake.calls("POST", "/companies/list")) == 1
    assert main(["sync", "--config", str(config)]) == 0  # refused again: one request, one warning
    assert "refused" in capsys.readouterr().err
    assert main(["sync", "--config", str(config)]) == 0  # the token can read them now
    assert "warning" not in capsys.readouterr().err
    assert main(["status", "--config", str(config)]) == 0
    assert "warning" not in capsys.readouterr().out


def test_companies_list_leaves_out_companies_without_users_and_stops_at_its_cap(sandbox: Sandbox,
                                                                                fake: FakeIntercom,
                                                                                store: Store) -> None:
    data = sandbox.world.sources["intercom"]
    lonely = sandbox.world.next_id()
    data.organizations[lonely] = Organization(lonely, "No users Ltd", "DE", [], sandbox.world.start,
                                              sandbox.world.start)
    with_users = {p.organization_id for p in data.customers() if p.organization_id is not None}
    fake.companies_cap = 2
    result = sync(store, fake, page_size=1)
    assert result.ok, result.error
    assert len(rows(store, "organizations")) == 2 and company_ref(lonely) not in rows(store, "organizations")
    assert result.warnings == [f"companies: POST /companies/list returned 2 of {len(with_users)} companies (it"
                               f" stops at 10,000); the other {len(with_users) - 2} are not stored"]
    assert store.last_run("intercom").warnings == result.warnings[0]  # type: ignore[union-attr]
    listed = fake.calls("POST", "/companies/list")
    assert len(listed) == 2 and all(c.status == 200 for c in listed)


def test_a_dropdown_attribute_reads_as_a_dropdown_with_its_options(sandbox: Sandbox, fake: FakeIntercom) -> None:
    sandbox.world.define_field("intercom", "person", "kpi_nps_band", "dropdown", "NPS band",
                               ("promoter", "passive"))
    answer = _api(fake).get(fake.base_url + "/data_attributes", params={"model": "contact"}).json()
    [vendor] = [a for a in answer["data"] if a["name"] == "kpi_nps_band"]
    assert (vendor["data_type"], vendor["options"]) == ("string", ["promoter", "passive"])  # 2.14: strings
    writer = IntercomWriter(IntercomSettings(**fake.connector_settings()))
    try:
        [field] = [f for f in writer.field_definitions("contact") if f.key == "kpi_nps_band"]
    finally:
        writer.close()
    assert (field.type, field.options, field.writable) == ("dropdown", ("promoter", "passive"), True)
    # So write-back checks the values against the options (detractor is missing).
    assert mismatch(METRICS["nps_category"], field) == "the dropdown lacks the option(s) detractor"


def test_search_order_and_sort_are_not_relied_on_when_a_starting_after_repeats(sandbox: Sandbox,
                                                                               fake: FakeIntercom,
                                                                               store: Store) -> None:
    # The fake ignores `sort` and hands results out in creation order; a repeated cursor ends
    # the first pass after its first page, whose oldest conversation changed just now: the
    # next sync must still find every conversation, not only those changed after that one.
    oldest = min(live_tickets(sandbox.world), key=lambda t: (t.created_at, t.id))
    with sandbox.world.lock:
        oldest.updated_at = sandbox.world.tick()
    session = _api(fake)
    body: dict[str, Any] = {"query": {"field": "updated_at", "operator": ">", "value": 0},
                            "pagination": {"per_page": 5}, "sort": {"field": "updated_at", "order": "descending"}}
    first = session.post(fake.base_url + "/conversations/search", json=body).json()["conversations"]
    created = [c["created_at"] for c in first]
    assert created == sorted(created)  # `sort` is not in the 2.14 schema: not honoured
    fake.clear_log()
    fake.repeat_cursor_once()
    assert sync(store, fake, page_size=10).ok
    assert sync(store, fake, page_size=10).ok
    assert_store_matches_world(store, sandbox.world)
    assert all("sort" not in c.body for c in fake.calls("POST", "/conversations/search"))


def test_conversations_carry_no_ticket_and_the_platform_is_stored(sandbox: Sandbox, fake: FakeIntercom,
                                                                  store: Store) -> None:
    answer = _api(fake).post(fake.base_url + "/conversations/search", json={"query": {
        "field": "updated_at", "operator": ">", "value": 0}, "pagination": {"per_page": 150}}).json()
    assert all("ticket" not in c and isinstance(c["admin_assignee_id"], (int, type(None)))
               for c in answer["conversations"])
    assert sync(store, fake).ok
    expected = {"conversation": "web_chat", "email": "email", "whatsapp": "whatsapp", "sms": "sms",
                "phone_call": "phone", "twitter": "twitter", "facebook": "facebook", "instagram": "instagram"}
    kinds = {c["id"]: c["source"]["type"] for c in answer["conversations"]}
    contacts = rows(store, "contacts")
    assert {ident: contacts[ident]["platform"] for ident in kinds} == {i: expected[k] for i, k in kinds.items()}


def test_parts_keep_the_apis_order_within_a_second(sandbox: Sandbox, fake: FakeIntercom, store: Store) -> None:
    ticket = next(t for t in live_tickets(sandbox.world) if fake.render_parts(t) and t.status in ("resolved", "closed")
                  and not t.reopen_times)
    render = fake.render_parts
    at = max(p["created_at"] for p in render(ticket)) + 1

    def parts(t: Ticket, **options: Any) -> list[dict[str, Any]]:
        shown = render(t, **options)
        if t.id != ticket.id:
            return shown
        # Closed at `at`, reopened by the customer in the same second, closed again: ids "999" < "1000"
        # as numbers but not as text. The API's order is the order of events.
        base = {"type": "conversation_part", "body": None, "updated_at": at, "notified_at": at,
                "assigned_to": None, "attachments": [], "external_id": None, "redacted": False, "tags": []}
        author = {"type": "admin", "id": str(ticket.assignee_id or 1), "from_ai_agent": False, "is_ai_answer": False}
        customer = {"type": "user", "id": contact_ref(ticket.requester_id)}
        return [
            *(p for p in shown if p["part_type"] != "close"),
            {**base, "id": "999", "part_type": "close", "created_at": at, "author": author, "state": "closed"},
            {**base, "id": "1000", "part_type": "comment", "created_at": at, "author": customer, "state": "open",
             "body": "<p>Still broken</p>"},
            {**base, "id": "1001", "part_type": "close", "created_at": at + 5, "author": author, "state": "closed"},
        ]

    fake.render_parts = parts  # type: ignore[method-assign,assignment]
    assert sync(store, fake).ok
    events = [(e["kind"], e["at"]) for e in store.db.query(
        "SELECT kind, at FROM status_events WHERE source = 'intercom' AND contact_id = ? ORDER BY at, source_id",
        [str(ticket.id)])]
    assert sorted(events) == sorted([("resolved", iso_utc(at)), ("reopened", iso_utc(at)),
                                     ("resolved", iso_utc(at + 5))])
    assert rows(store, "contacts")[str(ticket.id)]["reopens"] == 1
