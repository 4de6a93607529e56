"""Catalogue 2c ("Readings settled against real data") on Freshdesk, one small hand-built account per reading.

Each test writes a few tickets, conversations, time entries and satisfaction ratings as Freshdesk's API v2
documents them (reference §3.2/§3.7 and its Errata), serves them over loopback with the fake's own HTTP
machinery (paging, `Link` headers, auth, `updated_since`), runs the real sync into a real store, and reads the
KPIs through `kpi_core.kpis.api`. Every expected value is worked out by hand in the test, with its arithmetic.
All times are March 2026 (UTC); KPIs are read for March at `kpi_fixtures.NOW` (2026-04-20 12:00) unless a test
says otherwise.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Any

import pytest
from kpi_fixtures import rows, sync_cleanly, ts, value
from pydantic import SecretStr

from connectors.freshdesk.connector import FreshdeskConnector
from connectors.freshdesk.fake import API, API_KEY, FakeFreshdesk
from connectors.freshdesk.settings import FreshdeskSettings
from connectors.sandbox.server import FakeRequest, FakeResponse, HttpError
from connectors.sandbox.world import World
from kpi_core.store import Store

# --- the account: agents and customers ------------------------------------------------------------------

ANA, BEN = 43900, 43901  # human agents
BOT = 43999  # the agent account a bot posts as, listed in `bot_agent_ids`
# Customers and their Freshdesk `language` (primary subtag: en, de, fr, pt, und, es, ja).
EN, DE, FR, PT, UND, ES, JA = 43001, 43002, 43003, 43004, 43005, 43006, 43007
LANGUAGES: dict[int, str | None] = {EN: "en", DE: "de", FR: "fr", PT: "pt-BR", UND: None, ES: "es", JA: "ja-JP"}
SUPPORT = "help@acme.example.com"

# Ticket `source` codes (reference Errata): 1 email, 2 portal, 3 phone, 7 chat, 10 outbound email, 12 bot, 13 WhatsApp.
EMAIL, PORTAL, PHONE, CHAT, OUTBOUND, BOT_TICKET, WHATSAPP = 1, 2, 3, 7, 10, 12, 13
OPEN, PENDING, RESOLVED, CLOSED = 2, 3, 4, 5

STATS_KEYS = ("agent_responded_at", "requester_responded_at", "first_responded_at", "status_updated_at",
              "reopened_at", "resolved_at", "closed_at", "pending_since")


def agent(ident: int, name: str) -> dict[str, Any]:
    """An agent as `GET /api/v2/agents` lists it."""
    return {"id": ident, "available": True, "occasional": False, "signature": None, "ticket_scope": 1,
            "group_ids": [7001], "skill_ids": [], "role_ids": [1], "type": "support_agent",
            "created_at": "2025-06-01T08:00:00Z", "updated_at": "2026-01-05T08:00:00Z",
            "last_active_at": "2026-03-01T08:00:00Z",
            "contact": {"active": True, "email": f"{name.lower()}@acme.example.com", "job_title": None,
                        "language": "en", "last_login_at": "2026-03-01T08:00:00Z", "mobile": None, "name": name,
                        "phone": None, "time_zone": "Amsterdam", "created_at": "2025-06-01T08:00:00Z",
                        "updated_at": "2026-01-05T08:00:00Z"}}


def customer(ident: int) -> dict[str, Any]:
    """A contact as `GET /api/v2/contacts` lists it (reference §3.2)."""
    return {"id": ident, "name": f"Customer {ident}", "email": f"c{ident}@example.org", "active": True,
            "deleted": False, "phone": None, "mobile": None, "address": None, "company_id": None,
            "description": None, "job_title": None, "language": LANGUAGES[ident],
            "time_zone": "Eastern Time (US & Canada)",
            "tags": [], "twitter_id": None, "unique_external_id": None, "other_emails": [], "other_companies": [],
            "view_all_tickets": False, "custom_fields": {}, "avatar": None,
            "created_at": "2025-11-02T10:00:00Z", "updated_at": "2025-11-02T10:00:00Z"}


def ticket(ident: int, created: str, requester: int, *, source: int = EMAIL, status: int = OPEN,
           responder: int | None = ANA, updated: str | None = None, **stats: str | None) -> dict[str, Any]:
    """A ticket as `GET /api/v2/tickets?include=stats` lists it (reference §3.7); `stats` by keyword."""
    times = {key: stats.get(key) for key in STATS_KEYS}
    unknown = set(stats) - set(STATS_KEYS)
    assert not unknown, unknown
    # The latest status change, unless given: the latest resolution, reopen or close (or the creation).
    changes = [t for k in ("resolved_at", "reopened_at", "closed_at") if (t := times[k])]
    times["status_updated_at"] = times["status_updated_at"] or max([created, *changes])
    latest = max([created, *(t for t in times.values() if t)])
    return {
        "id": ident, "subject": f"Ticket {ident}", "status": status, "priority": 2, "source": source, "type": None,
        "requester_id": requester, "responder_id": responder, "group_id": 7001, "company_id": None,
        "product_id": None, "email_config_id": 12, "tags": [], "custom_fields": {"cf_plan": None},
        "cc_emails": [], "fwd_emails": [], "reply_cc_emails": [], "to_emails": None,
        "due_by": "2026-04-30T09:00:00Z", "fr_due_by": "2026-04-30T09:00:00Z", "is_escalated": False,
        "fr_escalated": False, "spam": False, "created_at": created, "updated_at": updated or latest,
        "stats": times,
    }


def conversation(ident: int, ticket_id: int, user: int, at: str, *, incoming: bool = False, private: bool = False,
                 text: str = "Thanks for writing in.", html: str | None = None) -> dict[str, Any]:
    """A reply or note as `GET /api/v2/tickets/{id}/conversations` lists it (reference §3.2: `incoming` true =
    from the customer; `private` true = a note; `source` 0 reply, 2 note)."""
    return {"id": ident, "ticket_id": ticket_id, "user_id": user, "incoming": incoming, "private": private,
            "source": 2 if private else 0, "category": 2 if incoming else 3,
            "body": html or f"<div>{text}</div>", "body_text": text, "support_email": SUPPORT,
            "from_email": None, "to_emails": [] if private else [SUPPORT], "cc_emails": [], "bcc_emails": [],
            "attachments": [], "created_at": at, "updated_at": at, "last_edited_at": None,
            "last_edited_user_id": None}


def time_entry(ident: int, ticket_id: int, spent: str, seconds: int | None, at: str) -> dict[str, Any]:
    """A time entry; `time_spent_in_seconds` only when given (the API reference's own example has none)."""
    entry = {"id": ident, "ticket_id": ticket_id, "agent_id": ANA, "billable": True, "note": "Call and follow-up",
             "time_spent": spent, "timer_running": False, "executed_at": at, "start_time": at,
             "created_at": at, "updated_at": at}
    if seconds is not None:
        entry["time_spent_in_seconds"] = seconds
    return entry


def rating(ident: int, ticket_id: int, requester: int, at: str, **ratings: int) -> dict[str, Any]:
    """A satisfaction rating as `GET /api/v2/surveys/satisfaction_ratings` lists it (reference §3.2)."""
    return {"id": ident, "survey_id": 1, "user_id": requester, "agent_id": ANA, "group_id": 7001,
            "ticket_id": ticket_id, "feedback": None, "ratings": ratings, "created_at": at, "updated_at": at}


# --- the server: the fake's HTTP machinery over these payloads -------------------------------------------------


@dataclass
class Account:
    """What the hand-built Freshdesk account holds, as its API lists it."""

    tickets: dict[int, dict[str, Any]] = field(default_factory=dict)
    conversations: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    time_entries: list[dict[str, Any]] = field(default_factory=list)
    ratings: list[dict[str, Any]] = field(default_factory=list)

    def add(self, row: dict[str, Any], *conversations: dict[str, Any]) -> None:
        self.tickets[row["id"]] = row
        self.conversations[row["id"]] = list(conversations)


class HandBuiltFreshdesk(FakeFreshdesk):
    """`FakeFreshdesk`'s paging, `Link` headers, auth and validation, serving an `Account` instead of a world."""

    def __init__(self, account: Account) -> None:
        self.account = account
        super().__init__(World(seed=1, tickets=1, days=1))

    def register_routes(self) -> None:
        self.route("GET", f"{API}/tickets", self._validated(self._hand_tickets))
        self.route("GET", rf"{API}/tickets/(\d+)/conversations", self._validated(self._hand_conversations))
        self.route("GET", rf"{API}/tickets/(\d+)/time_entries", self._validated(self._hand_ticket_entries))
        self.route("GET", f"{API}/time_entries", self._validated(self._hand_entries))
        self.route("GET", f"{API}/surveys/satisfaction_ratings", self._validated(self._hand_ratings))
        self.route("GET", f"{API}/agents", self._validated(
            lambda r, m: self._page(r, [agent(ANA, "Ana"), agent(BEN, "Ben"), agent(BOT, "Freddy")])))
        self.route("GET", f"{API}/groups", self._validated(lambda r, m: self._page(r, [])))
        self.route("GET", f"{API}/companies", self._validated(lambda r, m: self._page(r, [])))
        self.route("GET", f"{API}/contacts", self._validated(
            lambda r, m: self._page(r, [customer(c) for c in LANGUAGES])))

    def _hand_tickets(self, request: FakeRequest, match: re.Match[str]) -> FakeResponse:
        since = request.arg("updated_since") or ""
        listed = [] if request.arg("filter") in ("deleted", "spam") else list(self.account.tickets.values())
        listed = sorted((t for t in listed if t["updated_at"] >= since), key=lambda t: (t["updated_at"], t["id"]))
        return self._page(request, listed)

    def _hand_conversations(self, request: FakeRequest, match: re.Match[str]) -> FakeResponse:
        if int(match.group(1)) not in self.account.tickets:
            raise HttpError(404, "The requested resource could not be found", "not_found")
        return self._page(request, self.account.conversations[int(match.group(1))])

    def _hand_entries(self, request: FakeRequest, match: re.Match[str]) -> FakeResponse:
        after = request.arg("executed_after") or ""
        return self._page(request, [e for e in self.account.time_entries if e["executed_at"] >= after])

    def _hand_ticket_entries(self, request: FakeRequest, match: re.Match[str]) -> FakeResponse:
        return self._page(request, [e for e in self.account.time_entries if e["ticket_id"] == int(match.group(1))])

    def _hand_ratings(self, request: FakeRequest, match: re.Match[str]) -> FakeResponse:
        since = request.arg("created_since") or ""
        return self._page(request, sorted((r for r in self.account.ratings if r["created_at"] >= since),
                                          key=lambda r: (r["created_at"], r["id"])))


@pytest.fixture(scope="module")
def served_freshdesk() -> Iterator[HandBuiltFreshdesk]:
    api = HandBuiltFreshdesk(Account())
    api.start()
    yield api
    api.stop()  # waits for the server's half-second poll: once per module, not per test


@pytest.fixture
def freshdesk(served_freshdesk: HandBuiltFreshdesk) -> HandBuiltFreshdesk:
    """The module's server with an empty account of the test's own."""
    served_freshdesk.account = Account()
    served_freshdesk.clear_log()
    return served_freshdesk


def sync(store: Store, api: HandBuiltFreshdesk, **options: Any) -> Store:
    """The real sync of the served account into `store` (bots are the `BOT` agent account)."""
    settings = FreshdeskSettings(base_url=api.base_url, api_key=SecretStr(API_KEY), start_date=date(2026, 2, 1),
                                 bot_agent_ids=[str(BOT)], **options)
    return sync_cleanly(store, FreshdeskConnector(settings))


def contact(store: Store, ticket_id: int) -> dict[str, Any]:
    found = list(store.db.query("select * from contacts where source = 'freshdesk' and source_id = ?",
                                [str(ticket_id)]))
    assert len(found) == 1, ticket_id
    return found[0]


# --- replies follow a customer message; outbound contacts nobody answered --------------------------------------


def test_outbound_tickets_nobody_answered_count_only_in_volume(store: Store, freshdesk: HandBuiltFreshdesk) -> None:
    a = freshdesk.account
    # 3101: e-mail, one reply, resolved.
    a.add(ticket(3101, ts(2, 9), EN, status=RESOLVED, first_responded_at=ts(2, 10), resolved_at=ts(2, 11)),
          conversation(90101, 3101, ANA, ts(2, 10)))
    # 3102: portal, two replies around a customer message, resolved then closed.
    a.add(ticket(3102, ts(3, 9), DE, source=PORTAL, status=CLOSED, first_responded_at=ts(3, 9, 30),
                 resolved_at=ts(3, 12), closed_at=ts(5, 12)),
          conversation(90102, 3102, ANA, ts(3, 9, 30)),
          conversation(90103, 3102, DE, ts(3, 10), incoming=True, text="Still broken."),
          conversation(90104, 3102, ANA, ts(3, 10, 30)))
    # 3103: outbound e-mail (source 10) to EN two days after 3101 was resolved, followed up by the agent, never
    # answered, closed. Freshdesk may carry a first_responded_at for the follow-up: Freshdesk itself reports no
    # response, and neither do we.
    a.add(ticket(3103, ts(4, 9), EN, source=OUTBOUND, status=CLOSED, first_responded_at=ts(6, 9),
                 resolved_at=ts(10, 9), closed_at=ts(10, 9)),
          conversation(90105, 3103, ANA, ts(6, 9), text="Following up on our offer."))
    # 3104: another unanswered outbound e-mail, to the only French-speaking customer.
    a.add(ticket(3104, ts(11, 9), FR, source=OUTBOUND, status=CLOSED, first_responded_at=ts(12, 9),
                 resolved_at=ts(18, 9), closed_at=ts(18, 9)),
          conversation(90106, 3104, ANA, ts(12, 9), text="Any news?"))
    # 3105 and 3106: PT writes again 3 days after 3105 was resolved (inside the 7-day FCR window).
    a.add(ticket(3105, ts(9, 9), PT, status=RESOLVED, resolved_at=ts(9, 10)),
          conversation(90107, 3105, ANA, ts(9, 9, 20)))
    a.add(ticket(3106, ts(12, 9), PT, status=RESOLVED, resolved_at=ts(12, 10)),
          conversation(90108, 3106, BEN, ts(12, 9, 15)))
    # 3107: never answered, still open.
    a.add(ticket(3107, ts(20, 9), ES))
    # 3108: outbound e-mail the customer answered at 12:00; the agent replied at 13:00.
    a.add(ticket(3108, ts(16, 9), JA, source=OUTBOUND, status=RESOLVED, resolved_at=ts(16, 14)),
          conversation(90109, 3108, JA, ts(16, 12), incoming=True, text="Yes, please call me."),
          conversation(90110, 3108, ANA, ts(16, 13)))
    sync(store, freshdesk)

    assert (contact(store, 3103)["agent_replies"], contact(store, 3103)["first_agent_reply_at"]) == (0, None)
    assert contact(store, 3108)["first_agent_reply_at"] == ts(16, 13)
    # Every ticket is created in March, the two unanswered outbound ones included: 8.
    assert value(store, "ticket_volume") == 8
    # Resolved with >= 1 reply, unanswered outbound left out: 3101 (1), 3102 (2), 3105 (1), 3106 (1), 3108 (1).
    # One touch: 1 reply, 0 reopens: 3101, 3105, 3106, 3108 = 4 of 5 = 80 %.
    assert value(store, "one_touch_resolution_pct") == 80.0
    # FCR: 3102 has 2 replies; 3105 is followed by PT's 3106 inside 7 days; 3101 is followed only by the
    # outbound 3103, which is not a new contact: 3101, 3106, 3108 = 3 of 5 = 60 %.
    assert value(store, "fcr_pct") == 60.0
    # Touches over the same 5 resolved contacts: (1 + 2 + 1 + 1 + 1) / 5 = 1.2.
    assert value(store, "agent_touches_avg") == 1.2
    # First response, from the customer's first message: 60 + 30 + 20 + 15 min, and 3108 from 12:00 to
    # 13:00 = 60 min (not from its creation at 09:00): 185 / 5 = 37 min.
    assert value(store, "first_response_time_avg") == 37.0
    # Languages of contacts that got a reply: en (3101), de (3102), pt (3105, 3106), ja (3108) = 4; fr only has
    # the unanswered outbound 3104, es only the unanswered 3107.
    assert value(store, "language_coverage") == 4


# --- merged contacts -----------------------------------------------------------------------------------------


def test_a_ticket_merged_into_another_counts_nowhere(store: Store, freshdesk: HandBuiltFreshdesk) -> None:
    a = freshdesk.account
    a.add(ticket(3201, ts(2, 9), EN, status=RESOLVED, resolved_at=ts(2, 10)),
          conversation(90201, 3201, ANA, ts(2, 9, 40)))
    # FR writes twice; the agent merges 3204 into 3203 (PUT /api/v2/tickets/merge): 3204 is closed with
    # Freshdesk's default note, its description moves into 3203 as a conversation.
    a.add(ticket(3203, ts(5, 9), FR, status=RESOLVED, resolved_at=ts(5, 11)),
          conversation(90202, 3203, FR, ts(5, 9, 5), incoming=True, text="Me again, same problem."),
          conversation(90203, 3203, ANA, ts(5, 9, 20), private=True,
                       text="Tickets with ids 3204 are merged into this ticket."),
          conversation(90204, 3203, ANA, ts(5, 10)))
    a.add(ticket(3204, ts(5, 9, 5), FR, status=CLOSED, resolved_at=ts(5, 9, 20), closed_at=ts(5, 9, 20)),
          conversation(90205, 3204, ANA, ts(5, 9, 20), private=True,
                       text="This ticket is closed and merged into ticket #3203",
                       html='<div>This ticket is closed and merged into ticket '
                            '<a href="https://acme.freshdesk.com/a/tickets/3203">#3203</a></div>'))
    a.add(ticket(3205, ts(6, 9), DE))  # unanswered
    a.add(ticket(3206, ts(7, 10), PT, source=BOT_TICKET, status=RESOLVED, resolved_at=ts(7, 10, 3)))  # bot-only
    a.ratings += [rating(82001, 3201, EN, ts(2, 12), default_question=103),
                  rating(82002, 3204, FR, ts(5, 12), default_question=-103)]  # on the merged duplicate
    sync(store, freshdesk)

    merged = contact(store, 3204)
    assert (merged["status"], merged["merged_into"]) == ("merged", "3203")
    # 3201, 3203, 3205, 3206; the merged 3204 is no contact: 4.
    assert value(store, "ticket_volume") == 4
    # Answered of the contacts that are not bot-only: 3201, 3203 of 3201, 3203, 3205 = 2 / 3 = 66.67 %
    # (with the duplicate it would be 2 / 4).
    assert value(store, "response_rate_pct") == pytest.approx(66.6667, abs=1e-4)
    # 4 contacts from 4 requesters: 0 % (FR's duplicate is not a repeat contact).
    assert value(store, "repeat_contact_rate_pct") == 0.0
    # The duplicate's -103 goes with it: 1 response, positive: 100 %.
    assert value(store, "csat_responses") == 1
    assert value(store, "csat_pct") == 100.0
    # Resolved in March: 3201, 3203, 3206; with a CSAT response: 3201 = 1 / 3.
    assert value(store, "csat_response_rate_pct") == pytest.approx(33.3333, abs=1e-4)


# --- abandonment -----------------------------------------------------------------------------------------------

ABANDON_NOW = datetime(2026, 3, 31, 12, 0, tzinfo=timezone.utc)


def test_abandonment_is_decided_in_the_first_30_minutes(store: Store, freshdesk: HandBuiltFreshdesk) -> None:
    a = freshdesk.account
    # 3301 chat answered after 5 min: kept.
    a.add(ticket(3301, ts(2, 10), EN, source=CHAT, status=RESOLVED, resolved_at=ts(2, 10, 20)),
          conversation(90301, 3301, ANA, ts(2, 10, 5)))
    # 3302 WhatsApp answered after 60 min: abandoned, the late reply notwithstanding.
    a.add(ticket(3302, ts(3, 10), DE, source=WHATSAPP, status=RESOLVED, resolved_at=ts(3, 11, 10)),
          conversation(90302, 3302, ANA, ts(3, 11)))
    # 3303 phone, closed with no reply: abandoned.
    a.add(ticket(3303, ts(4, 10), FR, source=PHONE, status=CLOSED, resolved_at=ts(4, 10, 10), closed_at=ts(4, 10, 10)))
    # 3304 outbound e-mail nobody answered: not customer-initiated (and not a live channel).
    a.add(ticket(3304, ts(5, 10), PT, source=OUTBOUND))
    # 3305 bot ticket resolved with no human reply: bot-only, left out.
    a.add(ticket(3305, ts(6, 10), UND, source=BOT_TICKET, status=RESOLVED, resolved_at=ts(6, 10, 2)))
    # 3306 bot ticket handed over, a human answered after 10 min: kept.
    a.add(ticket(3306, ts(7, 10), ES, source=BOT_TICKET, status=RESOLVED, resolved_at=ts(7, 10, 30)),
          conversation(90303, 3306, BEN, ts(7, 10, 10)))
    # 3307 bot ticket handed over, nobody answered, still open: abandoned (not resolved, so not bot-only).
    a.add(ticket(3307, ts(8, 10), JA, source=BOT_TICKET))
    # 3308 chat 15 minutes old at the time of computing, unanswered: undecided, left out.
    a.add(ticket(3308, ts(31, 11, 45), EN, source=CHAT))
    sync(store, freshdesk)

    # Decided customer-initiated live contacts: 3301, 3302, 3303, 3306, 3307; abandoned 3302, 3303, 3307:
    # 3 / 5 = 60 %.
    assert value(store, "abandonment_rate_pct", now=ABANDON_NOW) == 60.0


# --- handle time -----------------------------------------------------------------------------------------------


def test_handle_time_is_the_time_entries_else_the_first_live_session(store: Store,
                                                                     freshdesk: HandBuiltFreshdesk) -> None:
    a = freshdesk.account
    # 3401 e-mail with two time entries: 754 s (`time_spent_in_seconds`) and "00:30" without seconds = 1800 s.
    a.add(ticket(3401, ts(2, 9), EN, status=RESOLVED, resolved_at=ts(2, 10)),
          conversation(90401, 3401, ANA, ts(2, 9, 30)))
    a.time_entries += [time_entry(5001, 3401, "00:12", 754, ts(2, 9, 45)),
                       time_entry(5002, 3401, "00:30", None, ts(2, 9, 50))]
    # 3402 chat with a time entry of 300 s: the record, not its session (10:01-10:04).
    a.add(ticket(3402, ts(3, 10), DE, source=CHAT, status=RESOLVED, resolved_at=ts(3, 10, 6)),
          conversation(90402, 3402, ANA, ts(3, 10, 1)),
          conversation(90403, 3402, DE, ts(3, 10, 3), incoming=True),
          conversation(90404, 3402, ANA, ts(3, 10, 4)))
    a.time_entries.append(time_entry(5003, 3402, "00:05", 300, ts(3, 10, 6)))
    # 3403 chat without an entry: reply 10:02, customer 10:05, reply 10:10, a private note 10:40, customer
    # 11:00 (50 min after 10:10, the note not counting), reply 11:05, resolved 11:10. Session 10:02-10:10.
    a.add(ticket(3403, ts(4, 10), FR, source=CHAT, status=RESOLVED, resolved_at=ts(4, 11, 10)),
          conversation(90405, 3403, ANA, ts(4, 10, 2)),
          conversation(90406, 3403, FR, ts(4, 10, 5), incoming=True),
          conversation(90407, 3403, ANA, ts(4, 10, 10)),
          conversation(90408, 3403, ANA, ts(4, 10, 40), private=True, text="Waiting on the warehouse."),
          conversation(90409, 3403, FR, ts(4, 11), incoming=True),
          conversation(90410, 3403, ANA, ts(4, 11, 5)))
    # 3404 WhatsApp without an entry, first resolved at 09:10 (seen by the first sync), reopened at 12:00.
    first_3404 = [conversation(90411, 3404, ANA, ts(8, 9, 1)),
                  conversation(90412, 3404, PT, ts(8, 9, 3), incoming=True),
                  conversation(90413, 3404, ANA, ts(8, 9, 6))]
    a.add(ticket(3404, ts(8, 9), PT, source=WHATSAPP, status=RESOLVED, resolved_at=ts(8, 9, 10)), *first_3404)
    # 3405 chat answered by the bot only: no handle time.
    a.add(ticket(3405, ts(6, 10), ES, source=CHAT, status=RESOLVED, resolved_at=ts(6, 10, 5)),
          conversation(90414, 3405, BOT, ts(6, 10, 1), text="Here is how to reset it."))
    # 3406 phone answered by an agent, no entry: unknown (no live-session fallback for phone).
    a.add(ticket(3406, ts(7, 10), JA, source=PHONE, status=RESOLVED, resolved_at=ts(7, 10, 10)),
          conversation(90415, 3406, ANA, ts(7, 10, 3)))
    sync(store, freshdesk)
    # The customer writes again; resolved again at 12:10.
    a.add(ticket(3404, ts(8, 9), PT, source=WHATSAPP, status=RESOLVED, reopened_at=ts(8, 12),
                 resolved_at=ts(8, 12, 10)),
          *first_3404, conversation(90416, 3404, PT, ts(8, 12), incoming=True),
          conversation(90417, 3404, ANA, ts(8, 12, 5)))
    sync(store, freshdesk)

    assert (contact(store, 3404)["first_resolved_at"], contact(store, 3404)["reopens"]) == (ts(8, 9, 10), 1)
    assert [contact(store, t)["handle_seconds"] for t in (3401, 3402)] == [2554.0, 300.0]
    # Known: 3401 754 + 1800 = 2554 s; 3402 300 s; 3403 10:02-10:10 = 480 s; 3404 09:01-09:06 (before the first
    # resolution) = 300 s. 3405 (no human reply) and 3406 (phone, no record) are unknown.
    # (2554 + 300 + 480 + 300) / 4 = 908.5 s = 15.1417 min.
    assert value(store, "handle_time_avg") == pytest.approx(908.5 / 60, abs=1e-4)


# --- bots --------------------------------------------------------------------------------------------------------


def test_bot_only_needs_a_bot_answer_not_a_greeting(store: Store, freshdesk: HandBuiltFreshdesk) -> None:
    a = freshdesk.account
    # 3501: a proactive e-mail sent as the bot's agent account (a greeting before the customer wrote); the
    # customer answered; closed with no human reply: not bot-only.
    a.add(ticket(3501, ts(2, 9), EN, source=OUTBOUND, responder=BOT, status=RESOLVED, resolved_at=ts(3, 9)),
          conversation(90501, 3501, EN, ts(2, 11), incoming=True, text="How do I sign up?"))
    # 3502: chat answered by the bot's agent account (`bot_agent_ids`), resolved: bot-only.
    a.add(ticket(3502, ts(3, 10), DE, source=CHAT, status=RESOLVED, resolved_at=ts(3, 10, 5)),
          conversation(90502, 3502, BOT, ts(3, 10, 1), text="Here is the link."))
    # 3503: a bot ticket (source 12) resolved with no human reply: bot-only.
    a.add(ticket(3503, ts(4, 10), FR, source=BOT_TICKET, responder=None, status=RESOLVED, resolved_at=ts(4, 10, 3)))
    # 3504: a bot ticket a human then answered: not bot-only.
    a.add(ticket(3504, ts(5, 10), PT, source=BOT_TICKET, status=RESOLVED, resolved_at=ts(5, 10, 20)),
          conversation(90503, 3504, ANA, ts(5, 10, 4)))
    # 3505: an ordinary e-mail.
    a.add(ticket(3505, ts(6, 9), ES, status=RESOLVED, resolved_at=ts(6, 11)), conversation(90504, 3505, ANA, ts(6, 10)))
    sync(store, freshdesk)

    assert {t: contact(store, t)["is_bot_only"] for t in (3501, 3502, 3503, 3504, 3505)} == {
        3501: 0, 3502: 1, 3503: 1, 3504: 0, 3505: 0}
    # Bot-only 3502, 3503 of the 5 resolved: 40 %.
    assert value(store, "bot_deflection_rate_pct") == 40.0
    # Bot-only ones left out: answered 3504, 3505 of 3501, 3504, 3505 = 66.67 %.
    assert value(store, "response_rate_pct") == pytest.approx(66.6667, abs=1e-4)


# --- CSAT --------------------------------------------------------------------------------------------------------


def test_csat_on_freshdesk_codes_and_mapped_questions(store: Store, freshdesk: HandBuiltFreshdesk) -> None:
    a = freshdesk.account
    requesters = (EN, DE, FR, PT, UND, ES, JA, EN)
    for n, requester in enumerate(requesters):
        a.add(ticket(3601 + n, ts(2 + n, 9), requester, status=RESOLVED, resolved_at=ts(2 + n, 10)),
              conversation(90601 + n, 3601 + n, ANA, ts(2 + n, 9, 30)))
    a.ratings += [
        rating(82101, 3601, EN, ts(2, 12), default_question=103),  # extremely happy: positive
        rating(82102, 3602, DE, ts(3, 12), default_question=100),  # neutral: not positive
        rating(82103, 3603, FR, ts(4, 12), default_question=-102),  # very unhappy
        # happy (101), the mapped custom question very happy (102), an unmapped question (not stored)
        rating(82104, 3604, PT, ts(5, 12), default_question=101, question_2=102, question_3=103),
        rating(82105, 3605, UND, ts(6, 12), default_question=50),  # not a Freshdesk code: undecidable
        rating(82106, 3606, ES, ts(7, 12), question_5=4),  # a custom 1-5 question: 4 is positive
        rating(82107, 3607, JA, ts(8, 12), question_5=7),  # outside 1-5: undecidable
    ]
    sync(store, freshdesk, survey_questions={"question_2": {"kind": "csat", "scale": "freshdesk"},
                                             "question_5": {"kind": "csat", "scale": "1-5"}})

    stored = {r["source_id"]: r["is_positive"] for r in store.db.query("select * from survey_responses")}
    assert stored == {"82101": 1, "82102": 0, "82103": 0, "82104": 1, "82104:question_2": 1, "82105": None,
                      "82106:question_5": 1, "82107:question_5": None}
    # Decidable: 82101, 82102, 82103, 82104, 82104:question_2, 82106:question_5 = 6 (50 and 7 count nowhere).
    assert value(store, "csat_responses") == 6
    # Positive 103, 101, 102 and 4 of 1-5 = 4 of 6 = 66.67 %.
    assert value(store, "csat_pct") == pytest.approx(66.6667, abs=1e-4)
    # Resolved: 3601-3608 = 8; with a decidable response: 3601, 3602, 3603, 3604, 3606 = 5 / 8 = 62.5 %.
    assert value(store, "csat_response_rate_pct") == 62.5


# --- status history and reopens ------------------------------------------------------------------------------------


def test_reopens_come_from_reopened_at_and_from_status_changes_between_syncs(store: Store,
                                                                              freshdesk: HandBuiltFreshdesk) -> None:
    a = freshdesk.account

    def answered(row: dict[str, Any], reply_at: str) -> None:
        a.add(row, conversation(row["id"] * 10, row["id"], ANA, reply_at))

    answered(ticket(3701, ts(1, 9), EN, status=RESOLVED, resolved_at=ts(2, 12)), ts(1, 10))
    answered(ticket(3702, ts(5, 9), DE, status=RESOLVED, resolved_at=ts(5, 12)), ts(5, 10))
    answered(ticket(3703, ts(7, 9), FR, status=RESOLVED, resolved_at=ts(7, 12)), ts(7, 10))
    # 3704 is first seen already reopened (10:00) and resolved again (15:00).
    answered(ticket(3704, ts(8, 9), PT, status=RESOLVED, reopened_at=ts(9, 10), resolved_at=ts(9, 15)), ts(8, 10))
    # 3705 resolved, then closed: closing is no reopen.
    answered(ticket(3705, ts(10, 9), ES, status=CLOSED, resolved_at=ts(10, 12), closed_at=ts(12, 12)), ts(10, 10))
    sync(store, freshdesk)  # on the 12th, after 3705 was closed
    # 3701: the customer replies on the 13th, Freshdesk reopens it and shows `reopened_at`.
    answered(ticket(3701, ts(1, 9), EN, status=OPEN, resolved_at=ts(2, 12), reopened_at=ts(13, 9)), ts(1, 10))
    # 3702: an agent sets it back to pending on the 13th; `stats` show no reopen, only the status change.
    answered(ticket(3702, ts(5, 9), DE, status=PENDING, resolved_at=ts(5, 12), status_updated_at=ts(13, 10),
                    pending_since=ts(13, 10)), ts(5, 10))
    sync(store, freshdesk)
    # 3701 is resolved again on the 14th.
    answered(ticket(3701, ts(1, 9), EN, status=RESOLVED, reopened_at=ts(13, 9), resolved_at=ts(14, 12)), ts(1, 10))
    sync(store, freshdesk)

    facts = {t: (contact(store, t)["first_resolved_at"], contact(store, t)["last_resolved_at"],
                 contact(store, t)["reopens"]) for t in (3701, 3702, 3703, 3704, 3705)}
    assert facts == {
        3701: (ts(2, 12), ts(14, 12), 1),  # resolved 2nd, reopened 13th, resolved 14th
        3702: (ts(5, 12), ts(5, 12), 1),  # resolved 5th, pending since the 13th
        3703: (ts(7, 12), ts(7, 12), 0),
        3704: (ts(9, 15), ts(9, 15), 1),  # the earliest resolution the store has seen
        3705: (ts(10, 12), ts(10, 12), 0),
    }
    # First resolved in March: all 5; reopened 3701, 3702, 3704: 3 / 5 = 60 %.
    assert value(store, "reopen_rate_pct") == 60.0
    # Not resolved at the end of March by the status history: 3702 only.
    assert value(store, "backlog") == 1


# --- platform -------------------------------------------------------------------------------------------------------


def test_every_source_code_lands_on_its_channel_and_platform(store: Store, freshdesk: HandBuiltFreshdesk) -> None:
    requesters = list(LANGUAGES)
    for code in range(1, 16):  # 1-13 as an account lists them; 14 and 15 added by the account later
        freshdesk.account.add(ticket(3800 + code, ts(code + 1, 9), requesters[code % len(requesters)], source=code))
    # The admin maps code 15 (say, Telegram); 14 stays unmapped.
    sync(store, freshdesk, source_channels={15: "messaging"}, source_platforms={15: "telegram"})

    by_platform = {r["segment"]["platform"]: r["value"]
                   for r in rows(store, by=["platform"], kpis=["ticket_volume"]) if r["segment"]}
    # 1 and 10 e-mail; 2 and 9 web_form; 3 phone; 4 forum -> social; 5 twitter; 6 facebook; 7 web_chat;
    # 8 MobiHelp -> mobile_app; 11 marketplace; 12 bot -> chat; 13 whatsapp; 14 other; 15 telegram.
    assert by_platform == {"email": 2, "web_form": 2, "phone": 1, "social": 1, "twitter": 1, "facebook": 1,
                           "web_chat": 1, "mobile_app": 1, "marketplace": 1, "chat": 1, "whatsapp": 1, "other": 1,
                           "telegram": 1}
    mix = {r["segment"]["channel"]: r["value"] for r in rows(store, by=["channel"], kpis=["channel_mix_pct"])
           if r["segment"]}
    # Of 15: email 1, 10, 11 = 3 (20 %); web_form 2, 8, 9 = 3 (20 %); social 4, 5, 6 = 3 (20 %); chat 7, 12 = 2
    # (13.33 %); messaging 13, 15 = 2 (13.33 %); phone 3 = 1 (6.67 %); other 14 = 1 (6.67 %).
    assert mix == pytest.approx({"email": 20.0, "web_form": 20.0, "social": 20.0, "chat": 13.3333,
                                 "messaging": 13.3333, "phone": 6.6667, "other": 6.6667}, abs=1e-4)
