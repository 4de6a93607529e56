"""A fake Intercom REST API (version 2.14 shapes) over the world's `intercom` slice.

Endpoints: `POST /conversations/search`, `GET /conversations/{id}`, `GET /admins`,
`GET /teams`, `GET /contacts`, `POST /contacts/search`, `POST /companies/list`.

How the world is rendered, and the vendor behaviours it mimics:
- A world ticket is a conversation; its first message is the conversation's `source`
  (message #0), every later message and status change is a conversation part.
- Search orders by `created_at`, then id, whatever the request asks: `sort` is not part of
  the 2.14 search request schema, so it is ignored (the order is not documented; creation
  order is one a client must survive). Its `starting_after` cursor is the base64 JSON
  `[created_at, id]` of the last item handed out, the shape of the reference's example.
  Conversation search: `>` and `<` on dates are strict (the docs are ambiguous). Contact
  search matches timestamps **by calendar day** in the workspace's time zone (UTC here, as
  `GET /me` says), as the 2.14 description of `POST /contacts/search` documents: `=` is the
  whole day, `>` matches from the start of the next day, `<` before the start of that day.
  `repeat_cursor_once()` makes the next continued page hand back the cursor it was asked
  with: the documented "cursor already given" trap.
- `POST /companies/list` leaves out companies without users, orders by `last_request_at`
  descending (the documented default) and stops at `companies_cap` (10,000) companies:
  pages past it are empty, while `total_count` keeps the true number (**unconfirmed**: how
  Intercom answers past the cap is not documented).
- Conversations carry no `ticket` property (API 2.14 schema); the assignee is
  `admin_assignee_id` (an integer).
- `GET /conversations/{id}` returns at most `parts_cap` (500) most recent parts;
  `statistics.count_conversation_parts` keeps the true count.
- A ticket's assignments are `assignment` parts (`assigned_to` `{type: admin}`), the first one
  at the status change that opens it; a move to another team is an `assignment` part assigning
  the team (`assigned_to` `{type: team}`, as `POST /conversations/{id}/parts` takes
  `type: team`), after the routing part (the bot assigning the first team at creation) that
  such a conversation starts with. API 2.14 documents no part for a priority change, so the
  world's priority raises show only as the conversation's current `priority`.
- Deleted world tickets vanish: search never lists them and `GET` answers 404 (Intercom
  has no deleted state to search on).
- World messages of role `system` (automated acknowledgements) are the Operator's comments:
  bot-authored, without the AI flags; world `bot` messages carry `from_ai_agent` (Fin's
  answers). Both are the bot's for the catalogue (2c: every `bot` author is a bot), so an
  acknowledgement after the customer's message on a conversation nobody answered makes it
  bot-only on Intercom, as the catalogue reads Intercom's data.
- Statistics: `adjusted_handling_time` is the world ticket's logged handle time (the active
  time); `handling_time` runs from the first assignment to the last close, waiting included
  (never less than the active time). A conversation no contact wrote in leaves out
  `first_contact_reply_at` and `last_contact_reply_at` (not nullable in 2.14).
- Statistics are null for a conversation without parts created in the last ten minutes
  (Intercom computes them asynchronously).
- 429 answers carry `X-RateLimit-Reset` (epoch) and no `Retry-After`.
- Shapes follow the 2.14 schemas (checked by tests/test_fake_conformance.py): an admin's
  `avatar` is a URL string; custom attributes show only those with a value, typed by their
  data attribute (integers, floats, booleans as JSON numbers/booleans); a company without a
  website or industry leaves those keys out (as Intercom's documented payloads); statistics
  times of what has not happened yet and a rating without remark are null (see SPEC_GAPS in
  that test).
"""

from __future__ import annotations

import base64
import json
import math
import re
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any

from connectors.intercom.fake_writes import IntercomWrites
from connectors.sandbox.server import FakeApi, FakeRequest, FakeResponse, HttpError
from connectors.sandbox.world import FieldChange, Message, Organization, Person, StatusChange, Ticket, World

TOKEN = "sandbox-intercom-token"
API_VERSION = "2.14"
MAX_PER_PAGE = 150
MAX_COMPANIES_PER_PAGE = 60
MAX_FILTERS = 15
COMPANIES_CAP = 10_000  # POST /companies/list returns at most this many companies
DAY = 86400
FRESH_SECONDS = 600  # statistics of a part-less conversation younger than this are not computed yet
ROUTING_PART_BASE = 4 * 10**12  # the part assigning a conversation's first team, by ticket id

# World channel -> possible `source.type` values (picked by ticket id, so stable).
SOURCE_TYPES: dict[str, tuple[str, ...]] = {
    "chat": ("conversation",),
    "email": ("email",),
    "messaging": ("whatsapp", "sms"),
    "phone": ("phone_call",),
    "social": ("twitter", "facebook", "instagram"),
    "web_form": ("conversation",),
    "api": ("conversation",),
    "other": ("conversation",),
}

# Intercom's contact location carries English country names, not codes.
COUNTRY_NAMES: dict[str, str] = {
    "US": "United States", "GB": "United Kingdom", "DE": "Germany", "FR": "France", "ES": "Spain",
    "BR": "Brazil", "JP": "Japan", "NL": "Netherlands", "IT": "Italy", "CN": "China",
}
CITIES: dict[str, str] = {
    "US": "Austin", "GB": "Leeds", "DE": "Köln", "FR": "Lyon", "ES": "Sevilla", "BR": "Recife",
    "JP": "Osaka", "NL": "Utrecht", "IT": "Torino", "CN": "Chengdu",
}

_STATE = {"new": "open", "open": "open", "pending": "snoozed", "on_hold": "snoozed", "resolved": "closed",
          "closed": "closed"}
_RESOLVED = ("resolved", "closed")
_DATE_FIELDS = frozenset({"updated_at", "created_at"})
_STRING_FIELDS = frozenset({"id", "state", "source.type"})
_CONTACT_TIMES = frozenset({"first_contact_reply_at", "last_contact_reply_at"})

Hook = Callable[[int], None]


def contact_ref(person_id: int) -> str:
    """The Intercom contact id of a world person (24 hex digits, like Intercom's own)."""
    return f"{person_id:024x}"


def company_ref(org_id: int) -> str:
    """The Intercom company id of a world organization."""
    return f"c{org_id:023x}"


def contact_role(person_id: int) -> str:
    """`lead` for every fifth customer, else `user`."""
    return "lead" if person_id % 5 == 0 else "user"


def encode_cursor(key: tuple[int, str]) -> str:
    return base64.b64encode(json.dumps([key[0], key[1]], separators=(",", ":")).encode()).decode()


def decode_cursor(token: str) -> tuple[int, str]:
    try:
        updated, ident = json.loads(base64.b64decode(token.encode(), validate=True))
        return int(updated), str(ident)
    except (ValueError, TypeError) as exc:
        raise HttpError(400, "starting_after is not a valid cursor", "parameter_invalid") from exc


class FakeIntercom(IntercomWrites, FakeApi):
    demo_mappings = (
        ("conversation", "first_response_minutes", "kpi_first_response_minutes"),
        ("conversation", "one_touch", "kpi_one_touch"),
        ("contact", "contacts_30d", "kpi_contacts_30d"),
        ("company", "repeat_contacts_30d", "kpi_repeat_contacts_30d"),
    )
    demo_notes = (("sla_breached", "First reply missed its target (first response: {first_response_minutes} min)."),)
    """Intercom's conversations, contacts, admins, teams and companies, rendered from the world."""

    name = "intercom"
    # What API 2.14 shows of a conversation's history: assignments of teammates and teams (no priority changes).
    change_fields = frozenset({"group", "assignee"})

    def __init__(self, world: World, *, page_size_cap: int | None = None, parts_cap: int = 500,
                 companies_cap: int = COMPANIES_CAP) -> None:
        self.parts_cap = parts_cap
        self.companies_cap = companies_cap
        self._repeat_cursor = False
        self._search_hooks: list[Hook] = []
        self._searches = 0
        self._hook_lock = threading.Lock()
        super().__init__(world, page_size_cap=page_size_cap)
        self.window = 10.0  # Intercom spreads its quota over 10-second windows
        self.nominal_limit = 1666  # 10,000 calls a minute per app

    # --- test API ---------------------------------------------------------------------

    def repeat_cursor_once(self) -> None:
        """The next conversation search that continues a pass hands back the cursor it got."""
        with self.lock:
            self._repeat_cursor = True

    def on_search(self, hook: Hook) -> None:
        """Call `hook(n)` before answering the n-th conversation search (n from 1)."""
        with self._hook_lock:
            self._search_hooks.append(hook)

    # --- FakeApi ----------------------------------------------------------------------

    def register_routes(self) -> None:
        self.route("POST", "/conversations/search", self._search_conversations)
        self.route("GET", r"/conversations/(?P<id>[^/]+)", self._get_conversation)
        self.route("GET", "/admins", self._admins)
        self.route("GET", "/teams", self._teams)
        self.route("GET", "/contacts", self._list_contacts)
        self.route("POST", "/contacts/search", self._search_contacts)
        self.route("POST", "/companies/list", self._list_companies)
        self.register_write_routes()  # connectors/sandbox/intercom_writes.py

    def authorized(self, request: FakeRequest) -> bool:
        auth = {k.lower(): v for k, v in request.headers.items()}.get("authorization", "")
        return auth == f"Bearer {TOKEN}"

    def connector_settings(self) -> dict[str, Any]:
        start = datetime.fromtimestamp(self.world.start, tz=timezone.utc).date().isoformat()
        return {"base_url": self.base_url, "access_token": TOKEN, "start_date": start}

    def prepare_demo_field(self, object: str, field: str, kind: str) -> None:
        # Intercom's API cannot create conversation attributes: an admin makes them in the app.
        if object == "conversation":
            self.world.define_field(self.name, "ticket", field, "decimal" if kind == "number" else kind, field)

    def error_response(self, status: int, message: str, code: str | None = None) -> FakeResponse:
        default = {400: "parameter_invalid", 401: "unauthorized", 403: "api_plan_restricted", 404: "not_found",
                   429: "rate_limit_exceeded"}.get(status, "server_error" if status >= 500 else "bad_request")
        if status == 401:
            message = "Access Token Invalid"
        elif status == 403 and message.startswith("injected"):
            message = "Active subscription needed."
        return FakeResponse(status, {"type": "error.list", "request_id": str(uuid.uuid4()),
                                     "errors": [{"code": code or default, "message": message}]})

    def rate_limit_headers(self, limit: int, remaining: int, reset_in: float) -> dict[str, str]:
        return {"X-RateLimit-Limit": str(limit), "X-RateLimit-Remaining": str(remaining),
                "X-RateLimit-Reset": str(int(time.time() + math.ceil(reset_in)))}

    def throttle_headers(self, wait: float) -> dict[str, str]:
        return {"X-RateLimit-Reset": str(int(time.time() + max(1, math.ceil(wait))))}

    # --- conversations ----------------------------------------------------------------

    def _search_conversations(self, request: FakeRequest, match: re.Match[str]) -> FakeResponse:
        with self._hook_lock:
            self._searches += 1
            hooks, number = list(self._search_hooks), self._searches
        for hook in hooks:
            hook(number)
        body = _body(request)
        matches = _compile_query(body.get("query"), _conversation_field)
        tickets = [t for t in self._live_tickets() if matches(t)]
        items, pages, total = self._page(tickets, body.get("pagination"), _conversation_key, may_repeat=True)
        return FakeResponse(200, {"type": "conversation.list", "pages": pages, "total_count": total,
                                  "conversations": [self.render_conversation(t) for t in items]})

    def _get_conversation(self, request: FakeRequest, match: re.Match[str]) -> FakeResponse:
        ident = match.group("id")
        ticket = self.world.sources["intercom"].tickets.get(int(ident)) if ident.isdigit() else None
        if ticket is None or ticket.deleted:
            raise HttpError(404, "Resource Not Found", "not_found")
        plain = request.arg("display_as") == "plaintext"
        conversation = self.render_conversation(ticket, plaintext=plain)
        parts = self.render_parts(ticket, plaintext=plain)
        shown = parts[-self.parts_cap:] if self.parts_cap else []
        conversation["conversation_parts"] = {"type": "conversation_part.list", "conversation_parts": shown,
                                              "total_count": len(shown)}
        return FakeResponse(200, conversation)

    def _live_tickets(self) -> list[Ticket]:
        return [t for t in self.world.sources["intercom"].tickets.values() if not t.deleted]

    def _page(self, rows: list[Any], pagination: Any, key: Callable[[Any], tuple[int, str]],
              may_repeat: bool = False) -> tuple[list[Any], dict[str, Any], int]:
        """One keyset page over `rows` ordered by `key`, and Intercom's `pages` object."""
        pagination = pagination if isinstance(pagination, dict) else {}
        per_page = _per_page(pagination.get("per_page"), default=20, cap=MAX_PER_PAGE)
        if self.page_size_cap:
            per_page = min(per_page, self.page_size_cap)
        ordered = sorted(rows, key=lambda r: _sort_key(key(r)))
        after = pagination.get("starting_after")
        start = 0
        if after:
            if not isinstance(after, str):
                raise HttpError(400, "starting_after must be a string", "parameter_invalid")
            last = _sort_key(decode_cursor(after))
            start = next((i for i, r in enumerate(ordered) if _sort_key(key(r)) > last), len(ordered))
        items = ordered[start:start + per_page]
        total = len(ordered)
        pages: dict[str, Any] = {"type": "pages", "page": start // per_page + 1, "per_page": per_page,
                                 "total_pages": max(1, math.ceil(total / per_page))}
        if start + per_page < total and items:
            token = encode_cursor(key(items[-1]))
            with self.lock:
                if after and may_repeat and self._repeat_cursor:
                    token, self._repeat_cursor = after, False
            pages["next"] = {"page": pages["page"] + 1, "starting_after": token}
        return items, pages, total

    def render_conversation(self, ticket: Ticket, *, plaintext: bool = False) -> dict[str, Any]:
        """The conversation list item (no parts) of a world ticket."""
        data = self.world.sources["intercom"]
        first = ticket.messages[0]
        requester = data.people[ticket.requester_id]
        parts = self.render_parts(ticket)
        agents_who_wrote = sorted({m.author_id for m in ticket.messages if m.role == "agent"})
        state = _STATE[ticket.status]
        last_customer = max((m.created_at for m in ticket.messages if m.role == "customer"), default=None)
        last_any = max(m.created_at for m in ticket.messages)
        source_type = _pick(SOURCE_TYPES[ticket.channel], ticket.id)
        return {
            "type": "conversation",
            "id": str(ticket.id),
            "title": ticket.subject if ticket.channel == "email" else None,
            "created_at": ticket.created_at,
            "updated_at": ticket.updated_at,
            "waiting_since": last_customer if state != "closed" and last_customer == last_any else None,
            "snoozed_until": ticket.status_changes[-1].at + 86400 if state == "snoozed" else None,
            "open": state != "closed",
            "state": state,
            "read": True,
            "priority": "priority" if ticket.priority in ("high", "urgent") else "not_priority",
            "admin_assignee_id": ticket.assignee_id,
            "team_assignee_id": ticket.group_id,
            "source": {
                "type": source_type,
                "id": str(first.id),
                "delivered_as": _delivered_as(ticket),
                "subject": ticket.subject if source_type == "email" else "",
                "body": _body_text(first.body, plaintext),
                "author": self._author(first),
                "attachments": [],
                "url": None,
                "redacted": False,
            },
            "contacts": {"type": "contact.list", "contacts": [
                {"type": "contact", "id": contact_ref(requester.id), "external_id": f"u-{requester.id}"}]},
            "teammates": {"type": "admin.list", "admins": [{"type": "admin", "id": str(a)} for a in agents_who_wrote]},
            "tags": {"type": "tag.list", "tags": [
                {"type": "tag", "id": str(_tag_id(name)), "name": name, "applied_at": ticket.created_at,
                 "applied_by": {"type": "admin", "id": str(ticket.assignee_id)} if ticket.assignee_id else None}
                for name in ticket.tags]},
            "custom_attributes": _set_only({"ticket_type": ticket.type, "sku": ticket.sku, **ticket.custom}),
            "first_contact_reply": _first_contact_reply(ticket, source_type),
            "statistics": self._statistics(ticket, parts),
            "conversation_rating": self._rating(ticket),
            "ai_agent_participated": any(m.role == "bot" for m in ticket.messages),
            "ai_agent": _ai_agent(ticket),
            "sla_applied": None,
            "linked_objects": {"type": "list", "data": [], "total_count": 0, "has_more": False},
        }

    def render_parts(self, ticket: Ticket, *, plaintext: bool = False) -> list[dict[str, Any]]:
        """Every conversation part after the source, oldest first."""
        events: list[tuple[int, int, int, Message | StatusChange | FieldChange]] = [
            (m.created_at, 0, m.id, m) for m in ticket.messages[1:]]
        events += [(c.at, 1, c.id, c) for c in ticket.status_changes if c.previous is not None]
        # The first assignment is the part of the status change opening the conversation, when it has one.
        opening = next((c for c in ticket.status_changes if _status_part_type(c) == "assignment"), None)
        first = next((f for f in ticket.changes if f.field == "assignee" and f.previous is None), None)
        shown_first = first is not None and opening is not None and first.at == opening.at
        events += [(f.at, 2, f.id, f) for f in ticket.changes
                   if f.field == "group" or (f.field == "assignee" and not (f is first and shown_first))]
        events.sort(key=lambda e: e[:3])
        state = "open"
        parts: list[dict[str, Any]] = self._routing_part(ticket)
        for at, _, ident, event in events:
            if isinstance(event, FieldChange):
                kind = "team" if event.field == "group" else "admin"
                parts.append(self._part(ident, "assignment", at, None, self._assigner(ticket, event), state,
                                        assigned_to=int(event.value), assignee_type=kind))
            elif isinstance(event, StatusChange):
                part_type = _status_part_type(event)
                state = _STATE[event.status]
                if part_type is None:
                    continue
                assignee = (first.value if shown_first and first else ticket.assignee_id)
                parts.append(self._part(ident, part_type, at, None, self._status_author(ticket, event), state,
                                        assigned_to=int(assignee) if part_type == "assignment" and assignee else None))
            else:
                part_type = _message_part_type(event)
                parts.append(self._part(ident, part_type, at, _body_text(event.body, plaintext), self._author(event),
                                        state))
        return parts

    def _routing_part(self, ticket: Ticket) -> list[dict[str, Any]]:
        """The bot's part assigning the first team, for a conversation later moved to another team."""
        team = ticket.initial("group")
        if team is None or team == ticket.group_id:
            return []
        bot = self.world.sources["intercom"].bots()[0]
        author = {"type": "bot", "id": str(bot.id), "name": "Operator", "email": bot.email,
                  "from_ai_agent": False, "is_ai_answer": False}
        return [self._part(ROUTING_PART_BASE + ticket.id, "assignment", ticket.created_at, None, author, "open",
                           assigned_to=int(team), assignee_type="team")]

    def _assigner(self, ticket: Ticket, change: FieldChange) -> dict[str, Any]:
        """The teammate who made an assignment: the one assigned until then (else the first agent)."""
        data = self.world.sources["intercom"]
        before = [f.value for f in ticket.changes if f.field == "assignee" and f.at <= change.at and f is not change]
        admin = data.people.get(int(before[-1])) if before else None
        admin = admin or data.agents()[0]
        return {"type": "admin", "id": str(admin.id), "name": admin.name, "email": admin.email,
                "from_ai_agent": False, "is_ai_answer": False}

    def _part(self, ident: int, part_type: str, at: int, body: str | None, author: dict[str, Any], state: str,
              assigned_to: int | None = None, assignee_type: str = "admin") -> dict[str, Any]:
        return {
            "type": "conversation_part", "id": str(ident), "part_type": part_type, "body": body,
            "created_at": at, "updated_at": at, "notified_at": at,
            "assigned_to": {"type": assignee_type, "id": str(assigned_to)} if assigned_to else None,
            "author": author, "attachments": [], "external_id": None, "redacted": False, "state": state,
            "tags": [], "event_details": {}, "metadata": {}, "app_package_code": None,
        }

    def _author(self, message: Message) -> dict[str, Any]:
        person = self.world.sources["intercom"].people[message.author_id]
        if message.role == "customer":
            kind, ident = contact_role(person.id), contact_ref(person.id)
        elif message.role == "agent":
            kind, ident = "admin", str(person.id)
        else:
            kind, ident = "bot", str(person.id)
        ai = message.role == "bot"
        name = "Fin" if ai else ("Operator" if message.role == "system" else person.name)
        return {"type": kind, "id": ident, "name": name, "email": person.email,
                "from_ai_agent": ai, "is_ai_answer": ai and message.id % 2 == 0}

    def _status_author(self, ticket: Ticket, change: StatusChange) -> dict[str, Any]:
        data = self.world.sources["intercom"]
        bot_only = not any(m.role == "agent" for m in ticket.messages if m.created_at <= change.at)
        if bot_only and any(m.role == "bot" for m in ticket.messages):
            bot = data.bots()[0]
            return {"type": "bot", "id": str(bot.id), "name": "Fin", "email": bot.email,
                    "from_ai_agent": True, "is_ai_answer": False}
        admin = data.people.get(ticket.assignee_id or 0) or data.agents()[0]
        return {"type": "admin", "id": str(admin.id), "name": admin.name, "email": admin.email,
                "from_ai_agent": False, "is_ai_answer": False}

    def _statistics(self, ticket: Ticket, parts: list[dict[str, Any]]) -> dict[str, Any] | None:
        if not parts and ticket.created_at > time.time() - FRESH_SECONDS:
            return None
        customer = [m.created_at for m in ticket.messages if m.role == "customer"]
        first_contact = min(customer, default=None)
        admin_replies = [m.created_at for m in ticket.messages if m.role == "agent" and m.public]
        first_admin = min((t for t in admin_replies if first_contact is not None and t >= first_contact), default=None)
        closes, reopens = ticket.resolved_times, _reopen_count(ticket)
        assignments = [c.at for c in ticket.status_changes if c.previous == "new" and c.status == "open"]
        first_close, last_close = (closes[0], closes[-1]) if closes else (None, None)
        stats: dict[str, Any] = {
            "type": "conversation_statistics",
            "time_to_assignment": _since(assignments[0] if assignments else None, ticket.created_at),
            "time_to_admin_reply": _since(first_admin, first_contact),
            "time_to_first_close": _since(first_close, ticket.created_at),
            "time_to_last_close": _since(last_close, ticket.created_at),
            "median_time_to_reply": _since(first_admin, first_contact),
            "first_contact_reply_at": first_contact,
            "first_assignment_at": assignments[0] if assignments else None,
            "first_admin_reply_at": first_admin,
            "first_close_at": first_close,
            "last_assignment_at": assignments[-1] if assignments else None,
            "last_assignment_admin_reply_at": first_admin,
            "last_contact_reply_at": max(customer, default=None),
            "last_admin_reply_at": max(admin_replies, default=None),
            "last_close_at": last_close,
            "last_closed_by_id": str(ticket.assignee_id) if last_close and ticket.assignee_id else None,
            "count_reopens": reopens,
            "count_assignments": len(assignments),
            "count_conversation_parts": len(parts),
            "assigned_team_first_response_time_by_team": [],
            "assigned_team_first_response_time_in_office_hours": [],
            "handling_time": _handling_time(ticket, assignments, last_close),
            "adjusted_handling_time": ticket.handle_seconds,
        }
        # The contact times are not nullable in 2.14: a conversation no contact wrote in (an outbound message
        # nobody answered) leaves them out.
        return {k: v for k, v in stats.items() if v is not None or k not in _CONTACT_TIMES}

    def _rating(self, ticket: Ticket) -> dict[str, Any] | None:
        rating = ticket.rating
        if rating is None or rating.answered_at is None or rating.score is None:
            return None
        # The teammate rated: the assignee, else the last admin who replied (2.14: never null).
        repliers = [m.author_id for m in ticket.messages if m.role == "agent" and m.public]
        teammate = ticket.assignee_id or (repliers[-1] if repliers else None)
        return {"rating": rating.score, "remark": rating.comment, "created_at": rating.offered_at,
                "updated_at": max(rating.answered_at, rating.updated_at),
                "contact": {"type": "contact", "id": contact_ref(ticket.requester_id)},
                **({"teammate": {"type": "admin", "id": str(teammate)}} if teammate else {})}

    # --- admins, teams, contacts, companies ---------------------------------------------

    def _admins(self, request: FakeRequest, match: re.Match[str]) -> FakeResponse:
        data = self.world.sources["intercom"]
        teams = sorted(data.groups)
        admins = [{"type": "admin", "id": str(p.id), "name": p.name, "email": p.email, "job_title": "Support",
                   "away_mode_enabled": False, "away_mode_reassign": False, "has_inbox_seat": True,
                   "team_ids": [teams[i % len(teams)]] if teams else [],
                   "avatar": f"https://static.sandbox.example/avatars/admins/{p.id}.png",  # 2.14 `admin`: a URL
                   "email_verified": True}
                  for i, p in enumerate(sorted(data.agents(), key=lambda a: a.id))]
        return FakeResponse(200, {"type": "admin.list", "admins": admins})

    def _teams(self, request: FakeRequest, match: re.Match[str]) -> FakeResponse:
        data = self.world.sources["intercom"]
        agents = sorted(a.id for a in data.agents())
        teams = [{"type": "team", "id": str(g.id), "name": g.name,
                  "admin_ids": [a for i, a in enumerate(agents) if i % len(data.groups) == n],
                  "admin_priority_level": None}
                 for n, g in enumerate(sorted(data.groups.values(), key=lambda g: g.id))]
        return FakeResponse(200, {"type": "team.list", "teams": teams})

    def _customers(self) -> list[Person]:
        return self.world.sources["intercom"].customers()

    def _list_contacts(self, request: FakeRequest, match: re.Match[str]) -> FakeResponse:
        pagination = {"per_page": request.arg("per_page"), "starting_after": request.arg("starting_after")}
        items, pages, total = self._page(self._customers(), pagination, _contact_key)
        return FakeResponse(200, {"type": "list", "data": [self.render_contact(p) for p in items],
                                  "total_count": total, "pages": pages})

    def _search_contacts(self, request: FakeRequest, match: re.Match[str]) -> FakeResponse:
        body = _body(request)
        matches = _compile_query(body.get("query"), _contact_field, by_day=True)
        people = [p for p in self._customers() if matches(p)]
        items, pages, total = self._page(people, body.get("pagination"), _contact_key)
        return FakeResponse(200, {"type": "list", "data": [self.render_contact(p) for p in items],
                                  "total_count": total, "pages": pages})

    def render_contact(self, person: Person) -> dict[str, Any]:
        """A world customer as an Intercom contact."""
        override = person.locale.split("-")[0] if person.locale and person.id % 3 == 0 else None
        company = person.organization_id
        return {
            "type": "contact", "id": contact_ref(person.id), "workspace_id": "sandbox", "external_id": f"u-{person.id}",
            "role": contact_role(person.id), "email": person.email, "phone": person.phone, "name": person.name,
            "avatar": None, "owner_id": None, "social_profiles": {"type": "list", "data": []},
            "has_hard_bounced": False, "marked_email_as_spam": False, "unsubscribed_from_emails": False,
            "created_at": person.created_at, "updated_at": person.updated_at, "signed_up_at": person.created_at,
            "last_seen_at": None, "last_replied_at": None, "last_contacted_at": None,
            "language_override": override, "browser_language": None if override else person.locale,
            "os": None, "browser": None,
            "location": {"type": "location", "country": COUNTRY_NAMES.get(person.country or ""),
                         "region": None, "city": CITIES.get(person.country or "")},
            "custom_attributes": _set_only(person.custom),
            "tags": {"type": "list", "data": [], "url": f"/contacts/{contact_ref(person.id)}/tags",
                     "total_count": 0, "has_more": False},
            "companies": {"type": "list",
                          "data": [{"type": "company", "id": company_ref(company),
                                    "url": f"/companies/{company_ref(company)}"}] if company else [],
                          "url": f"/contacts/{contact_ref(person.id)}/companies",
                          "total_count": 1 if company else 0, "has_more": False},
        }

    def _list_companies(self, request: FakeRequest, match: re.Match[str]) -> FakeResponse:
        per_page = _per_page(request.arg("per_page"), default=15, cap=MAX_COMPANIES_PER_PAGE)
        if self.page_size_cap:
            per_page = min(per_page, self.page_size_cap)
        try:
            page = int(request.arg("page") or 1)
        except ValueError:
            raise HttpError(400, "page must be an integer", "parameter_invalid") from None
        users = self._user_counts()
        listed = [o for o in self.world.sources["intercom"].organizations.values() if users.get(o.id)]
        ascending = request.arg("order") == "asc"
        listed.sort(key=lambda o: (o.updated_at, o.id), reverse=not ascending)
        reachable = listed[:self.companies_cap]
        total_pages = max(1, math.ceil(len(reachable) / per_page))
        chunk = reachable[(page - 1) * per_page: page * per_page]
        data = [self.render_company(o, users.get(o.id, 0)) for o in chunk]
        pages = {"type": "pages", "page": page, "per_page": per_page, "total_pages": total_pages,
                 "next": None if page >= total_pages else {"page": page + 1}}
        return FakeResponse(200, {"type": "list", "data": data, "pages": pages, "total_count": len(listed)})

    def _user_counts(self) -> dict[int, int]:
        counts: dict[int, int] = {}
        for person in self._customers():
            if person.organization_id is not None:
                counts[person.organization_id] = counts.get(person.organization_id, 0) + 1
        return counts

    def render_company(self, o: Organization, user_count: int | None = None) -> dict[str, Any]:
        users = self._user_counts().get(o.id, 0) if user_count is None else user_count
        return {"type": "company", "id": company_ref(o.id), "company_id": f"org-{o.id}", "name": o.name,
                "app_id": "sandbox", "created_at": o.created_at, "updated_at": o.updated_at,
                # No website or industry: left out, as in Intercom's documented company payloads.
                "remote_created_at": o.created_at, "last_request_at": o.updated_at, "size": 0,
                "monthly_spend": 0, "session_count": 0, "user_count": users,
                "plan": {}, "custom_attributes": _set_only({"country": o.country, **o.custom}),
                "tags": {"type": "tag.list",
                         "tags": [{"type": "tag", "id": str(_tag_id(t)), "name": t} for t in o.tags]},
                "segments": {"type": "segment.list", "segments": []}}


# --- query language -------------------------------------------------------------------

Predicate = Callable[[Any], bool]


def _compile_query(query: Any, field_of: Callable[[Any, str], Any], *, by_day: bool = False) -> Predicate:
    """Intercom's search query: a filter, or AND/OR of filters, at most two levels deep.

    `by_day`: timestamps are compared by calendar day (UTC, the sandbox workspace's zone),
    as `POST /contacts/search` documents."""
    if query is None:
        return lambda _: True
    return _compile_node(query, field_of, depth=0, by_day=by_day)


def _compile_node(node: Any, field_of: Callable[[Any, str], Any], depth: int, by_day: bool = False) -> Predicate:
    if not isinstance(node, dict):
        raise HttpError(400, "query must be an object", "parameter_invalid")
    operator = node.get("operator")
    if operator in ("AND", "OR"):
        children = node.get("value")
        if not isinstance(children, list) or not children:
            raise HttpError(400, f"{operator} needs a list of filters", "parameter_invalid")
        if depth >= 2:
            raise HttpError(400, "queries may nest at most two levels", "parameter_invalid")
        if len(children) > MAX_FILTERS:
            raise HttpError(400, f"at most {MAX_FILTERS} filters per group", "parameter_invalid")
        compiled = [_compile_node(child, field_of, depth + 1, by_day) for child in children]
        combine = all if operator == "AND" else any
        return lambda item: combine(p(item) for p in compiled)
    return _compile_filter(node, field_of, by_day)


def _compile_filter(node: dict[str, Any], field_of: Callable[[Any, str], Any], by_day: bool = False) -> Predicate:
    name, operator, value = node.get("field"), node.get("operator"), node.get("value")
    if name in _DATE_FIELDS:
        if operator not in ("=", "<", ">") or isinstance(value, bool):
            raise HttpError(400, f"{name}: operator {operator!r} is not valid for a date", "parameter_invalid")
        try:
            bound = int(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise HttpError(400, f"{name}: value must be a Unix timestamp", "parameter_invalid") from None
        compare: dict[str, Callable[[int], bool]]
        if by_day:
            day = bound - bound % DAY  # the value is truncated to its day
            compare = {"=": lambda v: day <= v < day + DAY, "<": lambda v: v < day, ">": lambda v: v >= day + DAY}
        else:
            compare = {"=": lambda v: v == bound, "<": lambda v: v < bound, ">": lambda v: v > bound}
        check = compare[operator]
        return lambda item: check(int(field_of(item, name)))
    if name in _STRING_FIELDS:
        if operator in ("=", "!="):
            wanted = str(value)
            return (lambda item: str(field_of(item, name)) == wanted) if operator == "=" else \
                (lambda item: str(field_of(item, name)) != wanted)
        if operator in ("IN", "NIN") and isinstance(value, list):
            values = {str(v) for v in value}
            return (lambda item: str(field_of(item, name)) in values) if operator == "IN" else \
                (lambda item: str(field_of(item, name)) not in values)
        raise HttpError(400, f"{name}: operator {operator!r} is not valid here", "parameter_invalid")
    raise HttpError(400, f"field {name!r} cannot be searched in the sandbox", "parameter_invalid")


def _conversation_field(ticket: Ticket, name: str) -> Any:
    if name == "state":
        return _STATE[ticket.status]
    if name == "source.type":
        return _pick(SOURCE_TYPES[ticket.channel], ticket.id)
    return {"id": str(ticket.id), "updated_at": ticket.updated_at, "created_at": ticket.created_at}[name]


def _contact_field(person: Person, name: str) -> Any:
    if name in ("state", "source.type"):
        raise HttpError(400, f"field {name!r} does not exist on contacts", "parameter_invalid")
    return {"id": contact_ref(person.id), "updated_at": person.updated_at, "created_at": person.created_at}[name]


def _conversation_key(ticket: Ticket) -> tuple[int, str]:
    return ticket.created_at, str(ticket.id)


def _contact_key(person: Person) -> tuple[int, str]:
    return person.created_at, contact_ref(person.id)


# --- small helpers ----------------------------------------------------------------------


def _body(request: FakeRequest) -> dict[str, Any]:
    if request.body is None:
        return {}
    if not isinstance(request.body, dict):
        raise HttpError(400, "the request body must be a JSON object", "bad_request")
    return request.body


def _per_page(value: Any, *, default: int, cap: int) -> int:
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise HttpError(400, "per_page must be an integer", "parameter_invalid") from None
    if not 1 <= number <= cap:
        raise HttpError(400, f"per_page must be between 1 and {cap}", "parameter_invalid")
    return number


def _sort_key(key: tuple[int, str]) -> tuple[int, int, str]:
    # Numeric ids of any length and fixed-length hex ids both order correctly by (length, text).
    return key[0], len(key[1]), key[1]


def _pick(options: tuple[str, ...], ident: int) -> str:
    return options[ident % len(options)]


def _delivered_as(ticket: Ticket) -> str:
    if not ticket.outbound:
        return "customer_initiated"
    return "admin_initiated" if ticket.id % 2 == 0 else "automated"


def _body_text(text: str, plaintext: bool) -> str:
    return text if plaintext else f"<p>{text}</p>"


def _message_part_type(message: Message) -> str:
    if message.role == "agent" and not message.public:
        return "note"
    if message.role == "bot" and message.id % 3 == 0:
        return "quick_reply"
    return "comment"


def _status_part_type(change: StatusChange) -> str | None:
    was_resolved = change.previous in _RESOLVED
    if change.status in _RESOLVED:
        return None if was_resolved else "close"
    if change.status in ("pending", "on_hold"):
        return "snoozed"
    if change.status == "open":
        return "assignment" if change.previous == "new" else "open"
    return None


def _handling_time(ticket: Ticket, assignments: list[int], last_close: int | None) -> int | None:
    """`handling_time`: first assignment to last close (waiting included), at least the active time."""
    if ticket.handle_seconds is None:
        return None
    span = last_close - assignments[0] if assignments and last_close is not None else 0
    return max(span, ticket.handle_seconds)


def _reopen_count(ticket: Ticket) -> int:
    return sum(1 for c in ticket.status_changes if c.previous in _RESOLVED and c.status not in _RESOLVED)


def _since(later: int | None, earlier: int | None) -> int | None:
    return later - earlier if later is not None and earlier is not None else None


def _first_contact_reply(ticket: Ticket, source_type: str) -> dict[str, Any] | None:
    first = min((m.created_at for m in ticket.messages if m.role == "customer"), default=None)
    return None if first is None else {"created_at": first, "type": source_type, "url": None}


def _ai_agent(ticket: Ticket) -> dict[str, Any] | None:
    if not any(m.role == "bot" for m in ticket.messages):
        return None
    human = any(m.role == "agent" and m.public for m in ticket.messages)
    state = "routed_to_team" if human else ("assumed_resolution" if ticket.resolved_times else None)
    return {"source_type": "workflow", "source_title": "Inbound triage", "last_answer_type": "ai_answer",
            "resolution_state": state, "rating": None, "rating_remark": None}


def _set_only(values: Mapping[str, Any]) -> dict[str, Any]:
    """Custom attributes as Intercom shows them: those with a value (2.14 allows no null value)."""
    return {k: v for k, v in values.items() if v is not None}


def _tag_id(name: str) -> int:
    return 40 + zlib.crc32(name.encode()) % 100_000

