"""Catalogue 2c on Intercom: each reading on a small hand-built workspace, with values worked out by hand.

Every dataset is made the way a sync makes it: conversations, parts, contacts and admins written as API 2.14
documents them (the shapes of the spec's "conversation found" example), served over loopback by the sandbox's
fake Intercom (`HandBuilt` below serves these payloads instead of its generated world), read by the real
connector through `sync_source` into a real store, and every served answer is checked against the 2.14 schema
(tests/test_fake_conformance.py). KPIs come from `kpi_core.kpis.api` at a fixed `now`; the expected values
are computed by hand in each test, never by the engine.

Times: March 2026 unless said (`at(day, hour, minute)`), KPIs of March at NOW (2026-04-20 12:00 UTC).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Sequence
from datetime import date, datetime, timezone
from typing import Any

import pytest
from kpi_fixtures import row, rows, sync_cleanly, value
from pydantic import SecretStr
from test_fake_conformance import operation_of

from connectors.intercom.connector import IntercomConnector
from connectors.intercom.fake import TOKEN, FakeIntercom
from connectors.intercom.settings import IntercomSettings
from connectors.sandbox.server import FakeRequest, FakeResponse, HttpError
from connectors.sandbox.world import World
from kpi_core.store import Store

APRIL = (date(2026, 4, 1), date(2026, 5, 1))
Sync = Callable[..., Store]
People = list[dict[str, Any]]


def approx(expected: float) -> Any:
    """KPI values are stored rounded to 4 decimals."""
    return pytest.approx(expected, abs=1e-3)


def at(day: int, hour: int = 9, minute: int = 0, second: int = 0, month: int = 3) -> int:
    return int(datetime(2026, month, day, hour, minute, second, tzinfo=timezone.utc).timestamp())


# --- the payloads, as API 2.14 documents them ----------------------------------------------------------


def contact(n: int, locale: str) -> dict[str, Any]:
    """A contact (`POST /contacts/search` item): the language is its override, else its browser language."""
    ident = f"65e1aa01c0ffee{n:010d}"
    override = locale if n % 2 else None
    return {
        "type": "contact", "id": ident, "workspace_id": "ecahpwf5", "external_id": f"u-{n}", "role": "user",
        "email": f"customer{n}@example.org", "phone": None, "name": f"Customer {n}", "avatar": None,
        "owner_id": None, "social_profiles": {"type": "list", "data": []}, "has_hard_bounced": False,
        "marked_email_as_spam": False, "unsubscribed_from_emails": False, "created_at": at(1, 0),
        "updated_at": at(1, 0), "signed_up_at": at(1, 0), "last_seen_at": None, "last_replied_at": None,
        "last_contacted_at": None, "language_override": override, "browser_language": None if override else locale,
        "os": None, "browser": None,
        "location": {"type": "location", "country": "Germany", "region": None, "city": None},
        "custom_attributes": {},
        "tags": {"type": "list", "data": [], "url": f"/contacts/{ident}/tags", "total_count": 0, "has_more": False},
        "companies": {"type": "list", "data": [], "url": f"/contacts/{ident}/companies", "total_count": 0,
                      "has_more": False},
    }


def user(person: dict[str, Any]) -> dict[str, Any]:
    return {"type": "user", "id": person["id"], "name": person["name"], "email": person["email"]}


def admin(ident: str = "5512", name: str = "Lee") -> dict[str, Any]:
    return {"type": "admin", "id": ident, "name": name, "email": f"{name.lower()}@acme.example",
            "from_ai_agent": False, "is_ai_answer": False}


FIN = {"type": "bot", "id": "278", "name": "Fin", "email": "operator+abcd1234@intercom.io",
       "from_ai_agent": True, "is_ai_answer": True}
OPERATOR = {"type": "bot", "id": "279", "name": "Operator", "email": "operator+abcd1234@intercom.io",
            "from_ai_agent": False, "is_ai_answer": False}


def custom_bot(ident: str, name: str) -> dict[str, Any]:
    return {"type": "bot", "id": ident, "name": name, "email": "operator+abcd1234@intercom.io",
            "from_ai_agent": False, "is_ai_answer": False}


def part(pid: str, kind: str, when: int, author: dict[str, Any], body: str | None = None,
         state: str = "open") -> dict[str, Any]:
    """A conversation part; `state` is the conversation's state when the part was created (2.14)."""
    return {"type": "conversation_part", "id": pid, "part_type": kind, "body": body, "created_at": when,
            "updated_at": when, "notified_at": when, "assigned_to": None, "author": author, "attachments": [],
            "external_id": None, "redacted": False, "state": state, "tags": [], "event_details": {},
            "metadata": {}, "app_package_code": None}


def say(pid: str, when: int, author: dict[str, Any], text: str = "...", state: str = "open") -> dict[str, Any]:
    return part(pid, "comment", when, author, f"<p>{text}</p>", state)


def close(pid: str, when: int, author: dict[str, Any] | None = None) -> dict[str, Any]:
    return part(pid, "close", when, author or admin(), None, "closed")


def conversation(cid: str, created: int, requester: dict[str, Any], parts: Sequence[dict[str, Any]], *,
                 source_type: str = "conversation", delivered_as: str = "customer_initiated",
                 source_author: dict[str, Any] | None = None, statistics: dict[str, Any] | None = None,
                 rating: dict[str, Any] | None = None, ai_agent: dict[str, Any] | None = None,
                 linked: Sequence[str] = ()) -> dict[str, Any]:
    """`GET /conversations/{id}` of a conversation: its list item plus `conversation_parts`.

    `statistics` are filled from the parts as Intercom fills them (the first contact and admin replies, closes,
    the part count); `statistics` given override them. The state is that of the last part."""
    author = source_author or user(requester)
    customer_times = [created] if author["type"] == "user" else []
    customer_times += [p["created_at"] for p in parts if p["author"]["type"] == "user"]
    first_contact = min(customer_times, default=None)
    admin_replies = [p["created_at"] for p in parts if p["author"]["type"] == "admin" and p["part_type"] == "comment"]
    closes = [p["created_at"] for p in parts if p["part_type"] == "close"]
    first_admin = min((t for t in admin_replies if first_contact is not None and t >= first_contact), default=None)
    state = parts[-1]["state"] if parts else "open"
    stats: dict[str, Any] = {
        "type": "conversation_statistics", "time_to_assignment": None,
        "time_to_admin_reply": first_admin - first_contact if first_admin and first_contact else None,
        "time_to_first_close": closes[0] - created if closes else None,
        "time_to_last_close": closes[-1] - created if closes else None,
        "median_time_to_reply": None, "first_contact_reply_at": first_contact, "first_assignment_at": None,
        "first_admin_reply_at": first_admin, "first_close_at": closes[0] if closes else None,
        "last_assignment_at": None, "last_assignment_admin_reply_at": None,
        "last_contact_reply_at": max(customer_times, default=None),
        "last_admin_reply_at": max(admin_replies, default=None), "last_close_at": closes[-1] if closes else None,
        "last_closed_by_id": "5512" if closes else None, "count_reopens": 0, "count_assignments": 0,
        "count_conversation_parts": len(parts), "assigned_team_first_response_time": [],
        "assigned_team_first_response_time_in_office_hours": [], "handling_time": None,
        "adjusted_handling_time": None, **(statistics or {})}
    # Not nullable in 2.14: a conversation no contact wrote in leaves them out.
    stats = {k: v for k, v in stats.items() if v is not None or k not in ("first_contact_reply_at",
                                                                          "last_contact_reply_at")}
    times = [created] + [p["created_at"] for p in parts] + ([rating["updated_at"]] if rating else [])
    item = {
        "type": "conversation", "id": cid, "title": None, "created_at": created, "updated_at": max(times),
        "waiting_since": None, "snoozed_until": None, "open": state != "closed", "state": state, "read": True,
        "priority": "not_priority", "admin_assignee_id": 5512, "team_assignee_id": 301,
        "source": {"type": source_type, "id": f"9{cid}", "delivered_as": delivered_as,
                   "subject": "Order" if source_type == "email" else "", "body": "<p>About my order</p>",
                   "author": author, "attachments": [], "url": None, "redacted": False},
        "contacts": {"type": "contact.list", "contacts": [{"type": "contact", "id": requester["id"],
                                                           "external_id": requester["external_id"]}]},
        "teammates": {"type": "admin.list", "teammates": [{"type": "admin", "id": "5512"}]},
        "tags": {"type": "tag.list", "tags": []}, "custom_attributes": {},
        "first_contact_reply": {"created_at": first_contact, "type": source_type, "url": None}
        if first_contact else None,
        "statistics": stats, "conversation_rating": rating,
        "ai_agent_participated": ai_agent is not None, "ai_agent": ai_agent, "sla_applied": None,
        "linked_objects": {"type": "list", "data": [{"type": "conversation", "id": i, "category": None}
                                                    for i in linked],
                           "total_count": len(linked), "has_more": False},
        "conversation_parts": {"type": "conversation_part.list", "conversation_parts": list(parts),
                               "total_count": len(parts)},
    }
    return item


def rated(score: int, asked: int, answered: int, requester: dict[str, Any]) -> dict[str, Any]:
    """`conversation_rating`: `created_at` is when the rating was requested, `updated_at` when it was given."""
    return {"rating": score, "remark": None, "created_at": asked, "updated_at": answered,
            "contact": {"type": "contact", "id": requester["id"]}, "teammate": {"type": "admin", "id": "5512"}}


# --- serving them, syncing them ----------------------------------------------------------------------


class HandBuilt(FakeIntercom):
    """The sandbox's fake Intercom serving hand-built payloads (`serve`): conversation search and fetch, contact
    search, admins, an empty company list (its teams come from an empty world)."""

    def __init__(self) -> None:
        self.conversations: dict[str, dict[str, Any]] = {}
        self.contacts: list[dict[str, Any]] = []
        super().__init__(World(seed=1, tickets=0))

    def serve(self, conversations: Sequence[dict[str, Any]], contacts: Sequence[dict[str, Any]]) -> None:
        with self.lock:
            self.conversations = {c["id"]: c for c in conversations}
            self.contacts = list(contacts)
        self.record_responses()  # from now on (and only what follows)

    def _search_conversations(self, request: FakeRequest, match: Any) -> FakeResponse:
        items = [{k: v for k, v in c.items() if k != "conversation_parts"} for c in self.conversations.values()]
        return FakeResponse(200, {"type": "conversation.list", "pages": _one_page(),
                                  "total_count": len(items), "conversations": copy.deepcopy(items)})

    def _get_conversation(self, request: FakeRequest, match: Any) -> FakeResponse:
        found = self.conversations.get(match.group("id"))
        if found is None:
            raise HttpError(404, "Resource Not Found", "not_found")
        return FakeResponse(200, copy.deepcopy(found))

    def _search_contacts(self, request: FakeRequest, match: Any) -> FakeResponse:
        query = request.body.get("query", {}) if isinstance(request.body, dict) else {}
        wanted = set(query["value"]) if query.get("field") == "id" and query.get("operator") == "IN" else None
        data = [c for c in self.contacts if wanted is None or c["id"] in wanted]
        return FakeResponse(200, {"type": "list", "data": copy.deepcopy(data), "total_count": len(data),
                                  "pages": _one_page()})

    def _admins(self, request: FakeRequest, match: Any) -> FakeResponse:
        admins = [{"type": "admin", "id": ident, "name": name, "email": f"{name.lower()}@acme.example",
                   "job_title": "Support", "away_mode_enabled": False, "away_mode_reassign": False,
                   "has_inbox_seat": True, "team_ids": [301], "avatar": None, "email_verified": True}
                  for ident, name in (("5512", "Lee"), ("5513", "Ana"), ("7001", "Shop integration"))]
        return FakeResponse(200, {"type": "admin.list", "admins": admins})

    def _list_companies(self, request: FakeRequest, match: Any) -> FakeResponse:
        return FakeResponse(200, {"type": "list", "data": [], "total_count": 0, "pages": {
            "type": "pages", "page": 1, "per_page": 15, "total_pages": 1, "next": None}})


def _one_page() -> dict[str, Any]:
    """`pages` of the only page (no `next`): every hand-built workspace fits in one."""
    return {"type": "pages", "page": 1, "per_page": 150, "total_pages": 1}


@pytest.fixture(scope="module")
def served_by() -> Iterator[HandBuilt]:
    """One loopback fake for the module (stopping a server waits for its poll: once is enough)."""
    fake = HandBuilt()
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def sync(store: Store, served_by: HandBuilt) -> Sync:
    """`sync(conversations, contacts, bot_agent_ids=())`: the real sync of the hand-built workspace into `store`;
    every answer served conforms to API 2.14 (with the gaps tests/test_fake_conformance.py documents)."""

    def run(conversations: Sequence[dict[str, Any]], contacts: Sequence[dict[str, Any]],
            bot_agent_ids: Sequence[str] = ()) -> Store:
        served_by.serve(conversations, contacts)
        settings = IntercomSettings(base_url=served_by.base_url, access_token=SecretStr(TOKEN),
                                    start_date=date(2026, 1, 1), bot_agent_ids=list(bot_agent_ids))
        sync_cleanly(store, IntercomConnector(settings))
        assert served_by.served
        for served in served_by.served:
            op = operation_of("intercom", served.method, served.path)
            assert op is not None, f"{served.method} {served.path}"
            problems = op.check(served.status, served.body)
            assert problems == [], f"{served.method} {served.path}: {problems}"
        return store

    return run


def contact_rows(store: Store) -> dict[str, dict[str, Any]]:
    return {r["source_id"]: r for r in store.db.query("SELECT * FROM contacts WHERE source = 'intercom'")}


@pytest.fixture
def people() -> list[dict[str, Any]]:
    locales = ["de", "fr-FR", "es", "es-MX", "pt-BR", "pt-PT", "it", "nl", "ja", "en-GB"]
    return [contact(n, locale) for n, locale in enumerate(locales, start=1)]


# --- replies follow a customer message; outbound nobody answered --------------------------------------


def test_one_touch_fcr_touches_and_language_leave_an_unanswered_outbound_out(
        store: Store, sync: Sync, people: People) -> None:
    u1, u2, _, u4, u5, _, _, _, u9, _ = people
    lee = admin()
    sync([
        # C1 (u1, de): one reply, closed: one touch.
        conversation("101", at(2, 9), u1, [say("1011", at(2, 9, 30), lee), close("1012", at(2, 10))],
                     source_type="email"),
        # O1: an outbound message to u1 inside C1's FCR window, never answered and closed: not the "new contact".
        conversation("102", at(4, 9), u1, [close("1021", at(4, 9, 5))], source_type="email",
                     delivered_as="admin_initiated", source_author=lee),
        # C2 (u2, fr): two replies.
        conversation("103", at(3, 10), u2, [say("1031", at(3, 10, 5), lee), say("1032", at(3, 10, 10), user(u2)),
                                            say("1033", at(3, 10, 15), lee), close("1034", at(3, 10, 20))]),
        # C3 (u4, es): one reply, then the customer reopened it and an admin closed it again without a word.
        conversation("104", at(6, 9), u4, [say("1041", at(6, 9, 10), lee), close("1042", at(6, 9, 20)),
                                           say("1043", at(6, 11), user(u4)), close("1044", at(6, 11, 30))],
                     source_type="email", statistics={"count_reopens": 1}),
        # C5 (u5, pt): one touch, but u5 writes again two days later (C6): no FCR.
        conversation("105", at(10, 9), u5, [say("1051", at(10, 9, 30), lee), close("1052", at(10, 10))],
                     source_type="email"),
        conversation("106", at(12, 14), u5, [say("1061", at(12, 14, 2), lee), close("1062", at(12, 14, 10))]),
        # O2 (u9, ja): a series message nobody answered, still open.
        conversation("107", at(15, 8), u9, [], delivered_as="automated", source_author=lee),
    ], people)
    # Outbound contacts count in the volume: 5 inbound + 2 outbound = 7.
    assert value(store, "ticket_volume") == 7
    # Resolved with >= 1 reply: C1, C2, C3, C5, C6 (O1 has no reply and counts nowhere else).
    # One touch = exactly 1 reply and 0 reopens: C1, C5, C6 -> 3 / 5 = 60 %.
    assert value(store, "one_touch_resolution_pct") == approx(60.0)
    # FCR: C1 (O1 is no new contact), C6; not C5 (C6 came within 7 days) -> 2 / 5 = 40 %.
    assert value(store, "fcr_pct") == approx(40.0)
    # Touches over resolved contacts, O1 left out: (1 + 2 + 1 + 1 + 1) / 5 = 1.2 (with O1: 6 / 6 = 1.0).
    assert value(store, "agent_touches_avg") == approx(1.2)
    # Reopen rate: C3 of the 5 resolved (O1 left out) = 20 %.
    assert value(store, "reopen_rate_pct") == approx(20.0)
    # Languages of contacts whose customer got a reply: de, fr, es, pt = 4 (ja: O2's message is no reply).
    assert value(store, "language_coverage") == 4
    facts = contact_rows(store)
    assert (facts["102"]["agent_replies"], facts["102"]["first_agent_reply_at"]) == (0, None)
    assert (facts["107"]["agent_replies"], facts["107"]["first_agent_reply_at"]) == (0, None)


def test_outbound_is_admin_automated_or_campaign_and_operator_initiated_is_inbound(
        store: Store, sync: Sync, people: People) -> None:
    u1, u2, _, u4, _, _, _, _, u9, _ = people
    lee = admin()
    greeter = custom_bot("280", "Custom Bot 1")
    sync([
        # A1: an admin's e-mail; the customer answers at 11:00, the admin replies at 11:30.
        conversation("201", at(2, 9), u1, [say("2011", at(2, 11), user(u1)), say("2012", at(2, 11, 30), lee),
                                           close("2013", at(2, 12))], source_type="email",
                     delivered_as="admin_initiated", source_author=lee),
        # A2: a series message nobody answered; A3: a legacy campaign nobody answered, closed.
        conversation("202", at(3, 9), u2, [], delivered_as="automated", source_author=lee),
        conversation("203", at(3, 10), u4, [close("2031", at(4, 10))], delivered_as="campaigns_initiated",
                     source_author=lee),
        # A4: a custom bot greets a visitor, who writes at 09:02; an admin replies at 09:12.
        conversation("204", at(4, 9), u9, [say("2041", at(4, 9, 2), user(u9)), say("2042", at(4, 9, 12), lee),
                                           close("2043", at(4, 9, 30))],
                     delivered_as="operator_initiated", source_author=greeter),
        # A5: a customer's chat nobody answered.
        conversation("205", at(5, 9), people[9], []),
    ], people)
    facts = contact_rows(store)
    assert {cid: facts[cid]["is_outbound"] for cid in facts} == {"201": 1, "202": 1, "203": 1, "204": 0, "205": 0}
    # Volume counts all 5; channel mix: chat 4 of 5 = 80 %, e-mail 1 of 5 = 20 %.
    assert value(store, "ticket_volume") == 5
    mix = {tuple(r["segment"].values()): r["value"] for r in rows(store, kpis=["channel_mix_pct"], by=["channel"])}
    assert mix == {("chat",): approx(80.0), ("email",): approx(20.0)}
    # Response rate: A1, A4, A5 can be answered (A2, A3: nobody answered) and A1, A4 were -> 2 / 3 = 66.7 %.
    assert value(store, "response_rate_pct") == approx(200 / 3)
    # A1's first response runs from the customer's message (11:00 -> 11:30 = 30 min), not from 09:00.
    assert value(store, "first_response_time_avg", segment={"channel": "email"}, by=["channel"]) == \
        approx(30.0)
    # Abandonment: customer-initiated live contacts A4 (reply after 10 min) and A5 (none) -> 1 / 2 = 50 %.
    assert value(store, "abandonment_rate_pct") == approx(50.0)


# --- merged contacts -------------------------------------------------------------------------------------


def test_response_rate_leaves_a_merged_duplicate_out(store: Store, sync: Sync, people: People) -> None:
    u1, u2, u3 = people[:3]
    lee = admin()
    sync([
        # M1: u1's chat, answered, then the duplicate M2 is merged into it (its merge part is no reply).
        conversation("301", at(5, 10), u1, [
            say("3011", at(5, 10, 4), lee),
            part("3012", "merged_primary_conversation", at(5, 10, 6), lee, "<p>Merged conversation 302</p>"),
            close("3013", at(5, 10, 30))]),
        # M2: the same customer wrote by e-mail a minute later; merged into M1, which closed it.
        conversation("302", at(5, 10, 1), u1, [
            part("3021", "merged_secondary_conversation", at(5, 10, 6), lee, None, "closed"),
            close("3022", at(5, 10, 6))], source_type="email", linked=["301"],
            rating=rated(1, at(5, 10, 7), at(5, 10, 20), u1)),
        conversation("303", at(6, 9), u2, [say("3031", at(6, 9, 30), lee)], source_type="email"),
        conversation("304", at(7, 9), u3, [], source_type="email"),
    ], people)
    facts = contact_rows(store)
    assert (facts["302"]["status"], facts["302"]["merged_into"]) == ("merged", "301")
    assert facts["301"]["agent_replies"] == 1
    # Volume: M1, 303, 304 = 3 (M2 counts nowhere).
    assert value(store, "ticket_volume") == 3
    # Response rate: M1 and 303 answered of M1, 303, 304 -> 2 / 3 = 66.7 % (with M2: 2 / 4 = 50 %).
    assert value(store, "response_rate_pct") == approx(200 / 3)
    # Repeat contacts: (3 contacts - 3 requesters) / 3 = 0 % (M2 is no repeat contact of u1).
    assert value(store, "repeat_contact_rate_pct") == approx(0.0)
    # One touch: M1 has exactly 1 reply (the merge part is none) -> 1 / 1 = 100 %.
    assert value(store, "one_touch_resolution_pct") == approx(100.0)
    # M2's rating goes with it: no CSAT response in March.
    assert value(store, "csat_responses") == 0


# --- abandonment --------------------------------------------------------------------------------------------


def test_abandonment_is_decided_within_abandon_after_of_the_first_message(
        store: Store, sync: Sync, people: People) -> None:
    u1, u2, u3, u4, u5, u6, u7, u8 = people[:8]
    lee = admin()
    sync([
        conversation("401", at(2, 10), u1, [say("4011", at(2, 10, 10), lee), close("4012", at(2, 10, 30))]),
        # Answered after 45 minutes: abandoned all the same.
        conversation("402", at(2, 11), u2, [say("4021", at(2, 11, 45), lee), close("4022", at(2, 12))]),
        # WhatsApp, never answered, closed after 50 minutes.
        conversation("403", at(3, 9), u3, [close("4031", at(3, 9, 50))], source_type="whatsapp"),
        # Outbound: the customer answered an admin's chat and nobody replied; not customer-initiated.
        conversation("404", at(3, 10), u4, [say("4041", at(3, 10, 30), user(u4))], delivered_as="admin_initiated",
                     source_author=lee),
        # Bot-only: Fin answered and closed it.
        conversation("405", at(4, 9), u5, [say("4051", at(4, 9, 1), FIN), close("4052", at(4, 9, 5), FIN)]),
        # E-mail is no live channel.
        conversation("406", at(4, 10), u6, [], source_type="email"),
        # April 20: 15 minutes old at NOW, unanswered (undecided); a call answered within 5 minutes.
        conversation("407", at(20, 11, 45, month=4), u7, []),
        conversation("408", at(20, 10, month=4), u8, [say("4081", at(20, 10, 5, month=4), lee),
                                                      close("4082", at(20, 10, 20, month=4))],
                     source_type="phone_call"),
    ], people)
    # March: 401 (reply in 10 min), 402 (reply in 45 min: abandoned), 403 (none: abandoned) -> 2 / 3 = 66.7 %.
    march = row(store, "abandonment_rate_pct")
    assert (march["numerator"], march["denominator"]) == (2, 3)
    assert march["value"] == approx(200 / 3)
    # April at NOW: 407 is still inside its 30 minutes, left out; 408 answered in time -> 0 / 1.
    april = row(store, "abandonment_rate_pct", since=APRIL[0], until=APRIL[1])
    assert (april["numerator"], april["denominator"]) == (0, 1)


# --- handle time ---------------------------------------------------------------------------------------------


def test_handle_time_is_the_adjusted_record_else_the_first_live_session(
        store: Store, sync: Sync, people: People) -> None:
    u1, u2, u3, u4, u5 = people[:5]
    lee = admin()
    sync([
        # H1: recorded; adjusted_handling_time 240 s, not handling_time 780 s (assignment to close, waiting too).
        conversation("501", at(10, 9), u1, [say("5011", at(10, 9, 2), lee), say("5012", at(10, 9, 5), user(u1)),
                                            say("5013", at(10, 9, 8), lee), close("5014", at(10, 9, 15))],
                     statistics={"handling_time": 780, "adjusted_handling_time": 240}),
        # H2: no adjusted record. Live session from the first reply 10:05: 10:12 customer, 10:20 admin, (an
        # Operator message at 10:45 and a note at 10:50 do not count) then the customer only at 11:30, a gap of
        # 70 min > 30 min: the session is 10:05 -> 10:20 = 900 s, whatever follows (a reopen the next day).
        conversation("502", at(10, 10), u2, [
            say("5021", at(10, 10, 5), lee), say("5022", at(10, 10, 12), user(u2)), say("5023", at(10, 10, 20), lee),
            say("5024", at(10, 10, 45), OPERATOR, "Our team is away"),
            part("5025", "note", at(10, 10, 50), lee, "<p>waiting for the warehouse</p>"),
            say("5026", at(10, 11, 30), user(u2)), say("5027", at(10, 11, 35), lee), close("5028", at(10, 11, 40)),
            say("5029", at(11, 9), user(u2)), say("5030", at(11, 9, 5), lee), close("5031", at(11, 9, 10))],
            statistics={"handling_time": 83_400, "count_reopens": 1}),
        # H3: no human reply; Intercom recorded 45 s of handling: unknown all the same.
        conversation("503", at(11, 12), u3, [close("5031b", at(11, 12, 40))],
                     statistics={"handling_time": 2400, "adjusted_handling_time": 45}),
        # H4: a phone call without a record: unknown (no live-session fallback for phone).
        conversation("504", at(12, 9), u4, [say("5041", at(12, 9, 1), lee), close("5042", at(12, 9, 20))],
                     source_type="phone_call"),
        # H5: e-mail without a record: unknown.
        conversation("505", at(12, 10), u5, [say("5051", at(12, 10, 30), lee), close("5052", at(12, 11))],
                     source_type="email"),
    ], people)
    facts = contact_rows(store)
    assert {cid: facts[cid]["handle_seconds"] for cid in facts} == {
        "501": 240.0, "502": None, "503": None, "504": None, "505": None}
    # Mean over the known handle times of contacts first resolved in March: (240 + 900) / 2 = 570 s = 9.5 min.
    found = row(store, "handle_time_avg")
    assert found["value"] == approx(9.5)
    assert found["n"] == 2


# --- bots ----------------------------------------------------------------------------------------------------


def test_a_bot_greeting_is_not_bot_only_a_bot_answer_is(store: Store, sync: Sync, people: People) -> None:
    u1, u2, u3, u4, u5 = people[:5]
    lee = admin()
    integration = admin("7001", "Shop integration")  # a bot posting through a teammate's seat (bot_agent_ids)
    sync([
        # G1: a custom bot greets (the conversation's source), the visitor writes, an admin closes unanswered.
        conversation("601", at(5, 9), u1, [say("6011", at(5, 9, 3), user(u1)), close("6012", at(5, 9, 40))],
                     delivered_as="operator_initiated", source_author=custom_bot("280", "Custom Bot 1")),
        # G2: Fin answers and closes.
        conversation("602", at(6, 10), u2, [say("6021", at(6, 10, 1), FIN), say("6022", at(6, 10, 2), user(u2)),
                                            close("6023", at(6, 10, 3), {**FIN, "is_ai_answer": False})],
                     ai_agent={"source_type": "workflow", "source_title": "Inbound triage",
                               "last_answer_type": "ai_answer", "resolution_state": "assumed_resolution",
                               "rating": None, "rating_remark": None}),
        # G3: a custom bot (no AI marks) answers with quick replies and closes.
        conversation("603", at(7, 10), u3, [
            part("6031", "quick_reply", at(7, 10, 0, 10), custom_bot("281", "Order status bot"), "<p>Shipped</p>"),
            close("6032", at(7, 10, 1), custom_bot("281", "Order status bot"))]),
        # G4: the shop integration answers through admin seat 7001 and closes.
        conversation("604", at(8, 10), u4, [say("6041", at(8, 10, 0, 30), integration),
                                            close("6042", at(8, 10, 2), integration)], source_type="whatsapp"),
        # G5: Fin answers, the customer asks for a person, an admin replies after 10 min.
        conversation("605", at(9, 10), u5, [say("6051", at(9, 10, 1), FIN), say("6052", at(9, 10, 2), user(u5)),
                                            say("6053", at(9, 10, 10), lee), close("6054", at(9, 10, 20))]),
    ], people, bot_agent_ids=["7001"])
    roles = {r["source_id"]: r["author_role"] for r in store.db.query(
        "SELECT source_id, author_role FROM messages WHERE source = 'intercom'")}
    assert (roles["601:source"], roles["6021"], roles["6031"], roles["6041"], roles["6053"]) == (
        "bot", "bot", "bot", "bot", "agent")
    # Resolved: all 5; bot-only: G2, G3, G4 (G1's bot spoke only before the customer) -> 3 / 5 = 60 %.
    assert value(store, "bot_deflection_rate_pct") == approx(60.0)
    # Response rate, bot-only left out: G1 (unanswered), G5 (answered) -> 1 / 2 = 50 %.
    assert value(store, "response_rate_pct") == approx(50.0)
    # Abandonment, bot-only left out: G1 (no reply), G5 (reply after 10 min) -> 1 / 2 = 50 %.
    assert value(store, "abandonment_rate_pct") == approx(50.0)


# --- conversations whose parts were truncated ---------------------------------------------------------


def test_truncated_conversations_follow_the_same_readings(store: Store, sync: Sync, people: People) -> None:
    u1, u2, u3, u4 = people[:4]
    lee, ana = admin(), admin("5513", "Ana")
    fin_answered = {"source_type": "workflow", "source_title": "Inbound triage", "last_answer_type": "ai_answer",
                    "resolution_state": "assumed_resolution", "rating": None, "rating_remark": None}
    # Each has more parts than Intercom returns (count_conversation_parts); only the latest are served.
    sync([
        # T1: first reply 09:05 lies among the parts no longer returned; two later replies are returned.
        conversation("701", at(20, 9), u1, [
            say("7011", at(21, 9), user(u1)), say("7012", at(21, 9, 30), lee), say("7013", at(21, 9, 40), ana),
            close("7014", at(21, 10))], statistics={
                "count_conversation_parts": 620, "first_admin_reply_at": at(20, 9, 5), "first_close_at": at(20, 12),
                "last_close_at": at(21, 10), "count_reopens": 1, "adjusted_handling_time": 1200}),
        # T2: an admin's e-mail and many follow-ups, the customer never wrote: no reply at all.
        conversation("702", at(20, 8), u2, [say("7021", at(23, 8), lee), say("7022", at(24, 8), lee),
                                            close("7023", at(24, 9))], source_type="email",
                     delivered_as="admin_initiated", source_author=lee,
                     statistics={"count_conversation_parts": 600, "adjusted_handling_time": 300}),
        # T3: a custom bot's greeting (the source) and a visitor's question 09:01; closed unanswered.
        conversation("703", at(22, 9), u3, [part("7031", "conversation_attribute_updated_by_workflow",
                                                 at(22, 9, 20), OPERATOR), close("7032", at(22, 9, 30))],
                     delivered_as="operator_initiated", source_author=custom_bot("280", "Custom Bot 1"),
                     statistics={"count_conversation_parts": 540, "first_contact_reply_at": at(22, 9, 1)}),
        # T4: Fin answered (its own record says so) and closed it.
        conversation("704", at(23, 9), u4, [close("7041", at(23, 9, 10), {**FIN, "is_ai_answer": False})],
                     ai_agent=fin_answered, statistics={"count_conversation_parts": 510}),
    ], people)
    facts = contact_rows(store)
    assert all(facts[c]["messages_truncated"] == 1 for c in ("701", "702", "703", "704"))
    # T1: the returned replies (09:30, 09:40) and the hidden first one -> 3; T2: none; T3, T4: none.
    assert {c: (facts[c]["agent_replies"], facts[c]["first_agent_reply_at"]) for c in facts} == {
        "701": (3, "2026-03-20T09:05:00Z"), "702": (0, None), "703": (0, None), "704": (0, None)}
    assert {c: facts[c]["is_bot_only"] for c in facts} == {"701": 0, "702": 0, "703": 0, "704": 1}
    # Response rate: T1 and T3 can be answered (T2: nobody answered it; T4: bot-only), T1 was -> 1 / 2 = 50 %.
    assert value(store, "response_rate_pct") == approx(50.0)
    # Bot deflection: T4 of the resolved T1, T3, T4 (T2 left out) -> 1 / 3 = 33.3 %.
    assert value(store, "bot_deflection_rate_pct") == approx(100 / 3)
    # Touches: (3 + 0 + 0) / 3 = 1.0; reopens: T1 of 3 = 33.3 %.
    assert value(store, "agent_touches_avg") == approx(1.0)
    assert value(store, "reopen_rate_pct") == approx(100 / 3)
    # Handle time: T1's 1200 s = 20 min (T2: no reply, so none; T3, T4: no human reply).
    assert value(store, "handle_time_avg") == approx(20.0)
    # Abandonment: T1 (answered at 09:05, 5 min) and T3 (never) -> 1 / 2 = 50 %.
    assert value(store, "abandonment_rate_pct") == approx(50.0)


# --- CSAT -------------------------------------------------------------------------------------------------------


def test_csat_is_dated_by_the_answer_and_an_undecidable_rating_counts_nowhere(
        store: Store, sync: Sync, people: People) -> None:
    lee = admin()

    def answered(cid: str, day: int, requester: dict[str, Any], rating: dict[str, Any] | None, **kw: Any
                 ) -> dict[str, Any]:
        return conversation(cid, at(day, 9), requester, [say(f"{cid}1", at(day, 9, 10), lee),
                                                         close(f"{cid}2", at(day, 9, 30))],
                            source_type="email", rating=rating, **kw)

    u = people
    sync([
        answered("801", 2, u[0], rated(5, at(2, 9, 31), at(2, 10, 30), u[0])),
        # Requested on March 31, answered on April 1: an April response.
        conversation("802", at(31, 22), u[1], [say("8021", at(31, 22, 10), lee), close("8022", at(31, 22, 50))],
                     source_type="email", rating=rated(4, at(31, 22, 55), at(1, 9, month=4), u[1])),
        answered("803", 10, u[2], rated(3, at(10, 9, 31), at(10, 12), u[2])),
        answered("804", 11, u[3], rated(1, at(11, 9, 31), at(11, 12), u[3])),
        # A rating outside the documented 1-5: its positivity cannot be decided.
        answered("805", 12, u[4], rated(0, at(12, 9, 31), at(12, 12), u[4])),
        # Not rated (the rating is null until the customer answers).
        answered("806", 13, u[5], None),
    ], people)
    scales = {r["source_id"]: (r["scale"], r["is_positive"]) for r in store.db.query(
        "SELECT source_id, scale, is_positive FROM survey_responses WHERE source = 'intercom'")}
    assert scales == {"801": ("1-5", 1), "802": ("1-5", 1), "803": ("1-5", 0), "804": ("1-5", 0),
                      "805": ("unknown", None)}
    # March: 801 (5, positive), 803 (3), 804 (1); 805 counted nowhere -> CSAT 1 / 3 = 33.3 %, 3 responses.
    assert value(store, "csat_pct") == approx(100 / 3)
    assert value(store, "csat_responses") == 3
    # Coverage: resolved in March 801-806 = 6, with a (decidable) response 801-804 = 4 -> 66.7 %.
    assert value(store, "csat_response_rate_pct") == approx(200 / 3)
    # April: 802's answer (4 of 1-5: positive) -> 100 %, 1 response.
    assert value(store, "csat_pct", since=APRIL[0], until=APRIL[1]) == approx(100.0)
    assert value(store, "csat_responses", since=APRIL[0], until=APRIL[1]) == 1


# --- status history -------------------------------------------------------------------------------------------


def test_reopens_follow_the_parts_in_the_apis_order_once_per_closed_spell(
        store: Store, sync: Sync, people: People) -> None:
    u1, u2, u3 = people[:3]
    lee = admin()
    sync([
        # S1: closed "999", reopened by the customer's "1000" in the same second, closed "1001": as text the ids
        # sort "1000" < "1001" < "999", which would hide the reopen. 1 reopen.
        conversation("901", at(2, 9), u1, [say("998", at(2, 9, 10), lee), close("999", at(2, 9, 20)),
                                           say("1000", at(2, 9, 20), user(u1)), close("1001", at(2, 9, 25))],
                     source_type="email"),
        # S2: closed; opened by an admin (reopen 1); assign_and_reopen while open (none); closed; an attribute
        # update while closed (none); the customer writes (reopen 2); snoozed while open (none); closed. 2 reopens.
        conversation("902", at(3, 9), u2, [
            say("2001", at(3, 9, 5), lee), close("2002", at(3, 9, 10)),
            part("2003", "open", at(3, 12), lee), part("2004", "assign_and_reopen", at(3, 12, 1), lee),
            say("2005", at(3, 12, 5), lee), close("2006", at(3, 12, 10)),
            part("2007", "conversation_attribute_updated_by_admin", at(3, 12, 11), lee, None, "closed"),
            say("2008", at(4, 8), user(u2)), part("2009", "snoozed", at(4, 8, 5), lee, None, "snoozed"),
            close("2010", at(4, 9))]),
        # S3: a note after the close leaves it closed. 0 reopens.
        conversation("903", at(5, 9), u3, [say("3001", at(5, 9, 5), lee), close("3002", at(5, 9, 10)),
                                           part("3003", "note", at(5, 9, 15), lee, "<p>done</p>", "closed")],
                     source_type="email"),
    ], people)
    facts = contact_rows(store)
    assert {c: facts[c]["reopens"] for c in facts} == {"901": 1, "902": 2, "903": 0}
    # Reopen rate: 901, 902 of 3 resolved = 66.7 %; one touch: only 903 (1 reply, no reopen) -> 1 / 3 = 33.3 %.
    assert value(store, "reopen_rate_pct") == approx(200 / 3)
    assert value(store, "one_touch_resolution_pct") == approx(100 / 3)
    # Full resolution time (anchor: the last close): 901 09:00 -> 09:25 = 25 min, 902 3/3 09:00 -> 3/4 09:00
    # = 24 h, 903 09:00 -> 09:10 = 10 min; mean = (25/60 + 24 + 10/60) / 3 = 8.194 h.
    assert value(store, "full_resolution_time_avg") == approx((25 / 60 + 24 + 10 / 60) / 3)


# --- platform -----------------------------------------------------------------------------------------------


def test_platform_segment_names_the_app_or_network(store: Store, sync: Sync, people: People) -> None:
    kinds = ["conversation", "conversation", "whatsapp", "instagram", "facebook", "email", "phone_call", "sms",
             "twitter"]
    sync([conversation(f"95{i}", at(2 + i, 9), people[i], [], source_type=kind)
                 for i, kind in enumerate(kinds)], people)
    by_platform = {r["segment"]["platform"]: r["value"] for r in rows(store, kpis=["ticket_volume"],
                                                                        by=["platform"])}
    # The Messenger is web_chat; networks by name; e-mail and phone are their channels.
    assert by_platform == {"web_chat": 2, "whatsapp": 1, "instagram": 1, "facebook": 1, "email": 1, "phone": 1,
                           "sms": 1, "twitter": 1}
    by_channel = {r["segment"]["channel"]: r["value"] for r in rows(store, kpis=["ticket_volume"], by=["channel"])}
    # Channels: chat 2; messaging 2 (whatsapp, sms); social 3 (instagram, facebook, twitter); email 1; phone 1.
    assert by_channel == {"chat": 2, "messaging": 2, "social": 3, "email": 1, "phone": 1}
