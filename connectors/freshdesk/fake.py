"""A fake Freshdesk API v2 over the world's `freshdesk` slice.

Endpoints (all under `/api/v2`): `GET /tickets`, `/tickets/{id}/conversations`,
`/tickets/{id}/time_entries`, `/time_entries`, `/surveys/satisfaction_ratings`, `/agents`, `/agents/me`,
`/groups`, `/companies`, `/contacts`, `/contacts/{id}`.

How the world is rendered, and the vendor behaviours it mimics (reference §3):
- Every list is a bare JSON array paged by `page`/`per_page` (≤ 100, else 400); a
  `Link: <...page=N+1...>; rel="next"` header only when more exists; `page` above
  `max_page` (Freshdesk: 300) is a 400, so long reads must move their `updated_since`.
- `GET /tickets` without `updated_since` lists only tickets created in the last 30 days;
  spam and deleted tickets appear only under `filter=spam` / `filter=deleted`.
  `updated_since` is inclusive. Order `updated_at`/`created_at` ties break on id.
- A ticket's first world message is its `description` (`include=description` only) and is
  not repeated in its conversations. World messages of role `system` (acknowledgements)
  are Freshdesk's notification e-mails, which are not conversations: they are not served.
  The world's bot is an agent account ("Answer Bot"); Freshdesk has no bot marker, so
  `connector_settings()` names it in `bot_agent_ids`.
- `stats` carry only the latest `resolved_at` / `reopened_at` / `closed_at`, as Freshdesk
  does; world `on_hold` is one of two custom statuses (6, 7).
- World channels map to `source` codes the catalogue maps back to the same channel
  (`SOURCE_CODES`, every code 1-13 an account lists, and 14 for a code added later);
  outbound tickets are source 10 (outbound e-mail), chats a bot answered source 12 (bot).
- Satisfaction ratings exist once answered (`created_at` = the answer); some carry a
  custom 0-10 question `question_nps` beside `default_question`.
- Time entries: the world's handle time in one or two entries, each with
  `time_spent_in_seconds` beside the `time_spent` "hh:mm" text (whole minutes), as the
  reference's Errata says; `executed_at` is when the work was logged and never moves.
  `GET /time_entries` takes `executed_after` / `executed_before`.
- Each call costs 1 credit plus 2 per `include` (`X-RateLimit-Used-CurrentRequest`).
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Callable, Sequence
from datetime import date, datetime, timezone
from typing import Any
from urllib.parse import urlencode

from connectors.freshdesk.fake_writes import FreshdeskWrites
from connectors.sandbox.server import FakeApi, FakeRequest, FakeResponse, HttpError
from connectors.sandbox.world import Message, Organization, Person, SourceData, Ticket, World

API_KEY = "sandbox-freshdesk-key"
API = "/api/v2"
MAX_PER_PAGE = 100
DEFAULT_PER_PAGE = 30
RECENT_SECONDS = 30 * 86400
SUPPORT_EMAIL = "support@sandbox-freshdesk.example.com"

STATUS_CODES: dict[str, tuple[int, ...]] = {
    "new": (2,), "open": (2,), "pending": (3,), "resolved": (4,), "closed": (5,), "on_hold": (6, 7),
}
PRIORITY_CODES = {"low": 1, "normal": 2, "high": 3, "urgent": 4}
# World channel -> `source` codes (picked by ticket id), the codes 1-13 an account's ticket-field
# definition lists (reference, Errata): 4 forum, 5 twitter, 6 facebook; 8 MobiHelp, 9 feedback
# widget; 11 e-commerce; 13 WhatsApp. 10 is reserved for outbound tickets, 12 (bot) for chats a
# bot answered (`BOT_SOURCE`); 14 stands for a source an account adds later.
SOURCE_CODES: dict[str, tuple[int, ...]] = {
    "email": (1, 1, 1, 11), "web_form": (2, 9, 8), "phone": (3,), "chat": (7,), "social": (4, 5, 6),
    "messaging": (13,), "other": (14,), "api": (14,),
}
OUTBOUND_EMAIL = 10
BOT_SOURCE = 12
CONVERSATION_REPLY, CONVERSATION_NOTE = 0, 2
# Freshdesk's own language codes for the world's locales.
LANGUAGES = {"en-US": "en", "en-GB": "en", "de-DE": "de", "fr-FR": "fr", "es-ES": "es", "pt-BR": "pt-BR",
             "ja": "ja-JP", "nl-NL": "nl", "it": "it", "zh-CN": "zh-CN"}
TICKET_INCLUDES = frozenset({"stats", "requester", "description", "company"})
TICKET_ORDER = frozenset({"created_at", "updated_at", "due_by", "status"})
FIRST_RESPONSE_SLA = {"urgent": 3600, "high": 4 * 3600, "normal": 8 * 3600, "low": 24 * 3600}
RESOLUTION_SLA = {"urgent": 4 * 3600, "high": 24 * 3600, "normal": 3 * 86400, "low": 5 * 86400}
NPS_QUESTION = "question_nps"


class _Invalid(Exception):
    """A request parameter Freshdesk would refuse with its 'Validation failed' body."""

    def __init__(self, field: str, message: str, code: str = "invalid_value") -> None:
        super().__init__(message)
        self.field, self.message, self.code = field, message, code


Route = Callable[[FakeRequest, "re.Match[str]"], FakeResponse]


def iso(epoch: int | None) -> str | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def pick(options: Sequence[int], ident: int) -> int:
    return options[ident % len(options)]


def source_code(ticket: Ticket) -> int:
    if ticket.outbound:
        return OUTBOUND_EMAIL
    if ticket.channel == "chat" and any(m.role == "bot" for m in ticket.messages):
        return BOT_SOURCE
    return pick(SOURCE_CODES[ticket.channel], ticket.id)


def status_code(ticket: Ticket) -> int:
    return pick(STATUS_CODES[ticket.status], ticket.id)


def served_messages(ticket: Ticket) -> list[Message]:
    """The world messages Freshdesk shows: the description plus conversations (no notifications)."""
    return [m for m in ticket.messages if m.role != "system"]


def time_entry_seconds(ticket: Ticket) -> list[int]:
    """The ticket's handle time as Freshdesk time entries, in seconds each (one or two entries)."""
    if ticket.handle_seconds is None:
        return []
    seconds = ticket.handle_seconds
    if seconds < 1200 or ticket.id % 2:
        return [seconds]
    return [seconds // 2, seconds - seconds // 2]


def hh_mm(seconds: int) -> str:
    """`time_spent` as the API shows it beside the seconds: "hh:mm", whole minutes (seconds dropped)."""
    minutes = seconds // 60
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def nps_answer(rating_id: int, score: int) -> int | None:
    """The custom 0-10 question some surveys carry, consistent with the CSAT answer."""
    if rating_id % 3:
        return None
    if score > 100:
        return 9 + rating_id % 2
    return 7 if score == 100 else 2 + rating_id % 5


def _parse_time(value: str, field: str) -> int:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise _Invalid(field, "It should be in the 'valid date time format' format") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return int(parsed.timestamp())


class FakeFreshdesk(FreshdeskWrites, FakeApi):
    demo_mappings = (
        ("ticket", "first_response_minutes", "cf_kpi_frt_minutes"),
        ("ticket", "sla_met", "cf_kpi_sla_met"),
        ("contact", "csat_pct_90d", "cf_kpi_csat_pct_90d"),
        ("company", "contacts_30d", "cf_kpi_contacts_30d"),
    )
    demo_notes = (("repeat_contact", "Repeat contact: this customer's previous contact {previous_contact_id} was opened"
                                     " {previous_contact_ago} before this one."),)
    """Freshdesk v2 over `world.sources["freshdesk"]`; `max_page` lowers the 300-page cap for tests."""

    name = "freshdesk"

    def __init__(self, world: World, *, page_size_cap: int | None = None, max_page: int = 300) -> None:
        self.max_page = max_page
        super().__init__(world, page_size_cap=page_size_cap)

    @property
    def data(self) -> SourceData:
        return self.world.sources["freshdesk"]

    # --- FakeApi hooks --------------------------------------------------------------

    def register_routes(self) -> None:
        self.route("GET", f"{API}/tickets", self._validated(self._list_tickets))
        self.route("GET", rf"{API}/tickets/(\d+)/conversations", self._validated(self._conversations))
        self.route("GET", rf"{API}/tickets/(\d+)/time_entries", self._validated(self._ticket_time_entries))
        self.route("GET", f"{API}/time_entries", self._validated(self._time_entries))
        self.route("GET", f"{API}/surveys/satisfaction_ratings", self._validated(self._ratings))
        self.route("GET", f"{API}/agents", self._validated(self._agents))
        self.route("GET", f"{API}/agents/me", self._validated(self._agent_me))
        self.route("GET", f"{API}/groups", self._validated(self._groups))
        self.route("GET", f"{API}/companies", self._validated(self._companies))
        self.route("GET", f"{API}/contacts", self._validated(self._contacts))
        self.route("GET", rf"{API}/contacts/(\d+)", self._validated(self._contact))
        self.register_write_routes()  # connectors/sandbox/freshdesk_writes.py

    def authorized(self, request: FakeRequest) -> bool:
        header = request.headers.get("Authorization") or request.headers.get("authorization") or ""
        if not header.startswith("Basic "):
            return False
        try:
            user = base64.b64decode(header[6:]).decode().split(":", 1)[0]
        except (ValueError, UnicodeDecodeError):
            return False
        return user == API_KEY  # Freshdesk ignores the password ("X" by convention)

    def connector_settings(self) -> dict[str, Any]:
        first_day = date.fromtimestamp(min(self.world.start, *(t.created_at for t in self.data.tickets.values())))
        bots = [str(p.id) for p in self.data.bots()]
        return {"base_url": self.base_url, "api_key": API_KEY, "start_date": first_day.isoformat(),
                "bot_agent_ids": bots}

    def error_response(self, status: int, message: str, code: str | None = None) -> FakeResponse:
        if status == 400:
            return FakeResponse(400, {"description": "Validation failed",
                                      "errors": [{"field": "", "message": message, "code": code or "invalid_value"}]})
        if status == 401:
            return FakeResponse(401, {"code": "invalid_credentials",
                                      "message": "You have to be logged in to perform this action."})
        if status == 403:
            return FakeResponse(403, {"code": "access_denied",
                                      "message": "You are not authorized to perform this action."})
        if status == 429:
            return FakeResponse(429, {"message": "You have exceeded the limit of requests per minute"})
        return FakeResponse(status, {"code": code or "error", "message": message})

    def rate_limit_headers(self, limit: int, remaining: int, reset_in: float) -> dict[str, str]:
        return {"X-RateLimit-Total": str(limit), "X-RateLimit-Remaining": str(remaining)}

    def request_cost(self, path: str, query: dict[str, list[str]]) -> int:
        """Credits a call uses: 1, plus 2 per `include` on the ticket list."""
        if path != f"{API}/tickets":
            return 1
        includes = [i for v in query.get("include", []) for i in v.split(",") if i]
        return 1 + 2 * len(includes)

    def credits_used(self) -> int:
        """Credits charged for every logged request so far."""
        return sum(self.request_cost(r.path, r.query) for r in self.calls())

    def _validated(self, handler: Route) -> Route:
        def run(request: FakeRequest, match: re.Match[str]) -> FakeResponse:
            try:
                response = handler(request, match)
            except _Invalid as exc:
                error = {"field": exc.field, "message": exc.message, "code": exc.code}
                response = FakeResponse(400, {"description": "Validation failed", "errors": [error]})
            response.headers.setdefault("X-RateLimit-Used-CurrentRequest",
                                        str(self.request_cost(request.path, request.query)))
            return response
        return run

    # --- paging -----------------------------------------------------------------------

    def _page(self, request: FakeRequest, rows: list[Any]) -> FakeResponse:
        per_page = self._int_arg(request, "per_page", DEFAULT_PER_PAGE, MAX_PER_PAGE)
        page = self._int_arg(request, "page", 1, self.max_page)
        size = min(per_page, self.page_size_cap) if self.page_size_cap else per_page
        start = (page - 1) * size
        headers: dict[str, str] = {}
        if start + size < len(rows):
            query = {**request.query, "page": [str(page + 1)]}
            headers["Link"] = f'<{self.base_url}{request.path}?{urlencode(query, doseq=True)}>; rel="next"'
        return FakeResponse(200, rows[start:start + size], headers)

    @staticmethod
    def _int_arg(request: FakeRequest, name: str, default: int, maximum: int) -> int:
        raw = request.arg(name)
        if raw is None:
            return default
        if not raw.isdigit() or int(raw) < 1:
            raise _Invalid(name, "It should be a/an Positive Integer", "datatype_mismatch")
        if int(raw) > maximum:
            raise _Invalid(name, f"Has to be less than or equal to {maximum}")
        return int(raw)

    def _since(self, request: FakeRequest, name: str) -> int | None:
        raw = request.arg(name)
        return None if raw is None else _parse_time(raw, name)

    # --- tickets ----------------------------------------------------------------------

    def _list_tickets(self, request: FakeRequest, match: re.Match[str]) -> FakeResponse:
        includes = {i for v in request.query.get("include", []) for i in v.split(",") if i}
        unknown = includes - TICKET_INCLUDES
        if unknown:
            raise _Invalid("include", f"It should be one of these values: '{','.join(sorted(TICKET_INCLUDES))}'")
        order_by = request.arg("order_by", "created_at") or "created_at"
        order_type = request.arg("order_type", "desc") or "desc"
        if order_by not in TICKET_ORDER:
            raise _Invalid("order_by", f"It should be one of these values: '{','.join(sorted(TICKET_ORDER))}'")
        if order_type not in ("asc", "desc"):
            raise _Invalid("order_type", "It should be one of these values: 'asc,desc'")
        tickets = self._filtered(request)
        tickets.sort(key=lambda t: (self._order_value(t, order_by), t.id), reverse=order_type == "desc")
        response = self._page(request, tickets)
        deleted = request.arg("filter") == "deleted"
        response.body = [self.render_ticket(t, includes, deleted=deleted) for t in response.body]
        return response

    def _filtered(self, request: FakeRequest) -> list[Ticket]:
        wanted = request.arg("filter")
        if wanted not in (None, "spam", "deleted"):
            raise _Invalid("filter", "It should be one of these values: 'new_and_my_open,watching,spam,deleted'")
        since = self._since(request, "updated_since")
        recent = time.time() - RECENT_SECONDS
        out = []
        for t in self.data.tickets.values():
            kind = "deleted" if t.deleted else ("spam" if t.spam else None)
            if kind != wanted:
                continue
            if since is None and t.created_at < recent:
                continue  # Freshdesk's default view: created in the last 30 days
            if since is not None and t.updated_at < since:
                continue
            out.append(t)
        return out

    @staticmethod
    def _order_value(ticket: Ticket, order_by: str) -> int:
        if order_by == "updated_at":
            return ticket.updated_at
        if order_by == "due_by":
            return ticket.created_at + RESOLUTION_SLA[ticket.priority]
        if order_by == "status":
            return status_code(ticket)
        return ticket.created_at

    def render_ticket(self, t: Ticket, includes: set[str] | frozenset[str] = frozenset(), *,
                      deleted: bool = False) -> dict[str, Any]:
        stats = self._stats(t)
        fr_due = t.created_at + FIRST_RESPONSE_SLA[t.priority]
        due = t.created_at + RESOLUTION_SLA[t.priority]
        first_response = stats["first_responded_at"]
        resolved = stats["resolved_at"]
        body: dict[str, Any] = {
            "id": t.id, "subject": t.subject, "status": status_code(t), "priority": PRIORITY_CODES[t.priority],
            "source": source_code(t), "type": t.type.title() if t.type else None,
            "requester_id": t.requester_id, "responder_id": t.assignee_id, "group_id": t.group_id,
            "company_id": t.organization_id, "product_id": None, "email_config_id": None,
            "tags": list(t.tags),
            "custom_fields": self.ticket_field_values(t),
            "cc_emails": [], "fwd_emails": [], "reply_cc_emails": [],
            "to_emails": [SUPPORT_EMAIL] if not t.outbound else None,
            "due_by": iso(due), "fr_due_by": iso(fr_due),
            "is_escalated": (resolved or self.world.now) > due,
            "fr_escalated": (first_response or self.world.now) > fr_due,
            "spam": t.spam, "created_at": iso(t.created_at), "updated_at": iso(t.updated_at),
            "attachments": [],
        }
        if deleted:
            body["deleted"] = True
        if "stats" in includes:
            body["stats"] = {k: iso(v) for k, v in stats.items()}
        if "description" in includes:
            first = t.messages[0].body if t.messages else ""
            body["description"], body["description_text"] = f"<div>{first}</div>", first
        if "requester" in includes:
            person = self.data.people.get(t.requester_id)
            body["requester"] = None if person is None else {
                "id": person.id, "name": person.name, "email": person.email,
                "mobile": person.phone if person.id % 2 else None, "phone": None if person.id % 2 else person.phone}
        if "company" in includes:
            org = self.data.organizations.get(t.organization_id or 0)
            body["company"] = None if org is None else {"id": org.id, "name": org.name}
        return body

    def _stats(self, t: Ticket) -> dict[str, int | None]:
        """Freshdesk's `stats`: the first and latest of each event, never the history."""
        agents = self._agent_ids()
        later = served_messages(t)[1:]
        agent_replies = [m.created_at for m in later if m.public and m.author_id in agents]
        customer_replies = [m.created_at for m in later if m.author_id not in agents]
        closes = [c.at for c in t.status_changes if c.status == "closed"]
        last_change = t.status_changes[-1] if t.status_changes else None
        return {
            "first_responded_at": min(agent_replies, default=None),
            "agent_responded_at": max(agent_replies, default=None),
            "requester_responded_at": max(customer_replies, default=None),
            "resolved_at": max(t.resolved_times, default=None),
            "reopened_at": max(t.reopen_times, default=None),
            "closed_at": max(closes, default=None),
            "status_updated_at": last_change.at if last_change else None,
            "pending_since": last_change.at if last_change and last_change.status == "pending" else None,
        }

    def _agent_ids(self) -> set[int]:
        return {p.id for p in self.data.people.values() if p.role in ("agent", "bot")}

    def _ticket(self, match: re.Match[str], *, live: bool) -> Ticket:
        ticket = self.data.tickets.get(int(match.group(1)))
        if ticket is None or (live and (ticket.deleted or ticket.spam)):
            raise HttpError(404, "The requested resource could not be found", "not_found")
        return ticket

    # --- conversations ------------------------------------------------------------------

    def _conversations(self, request: FakeRequest, match: re.Match[str]) -> FakeResponse:
        ticket = self._ticket(match, live=True)
        response = self._page(request, served_messages(ticket)[1:])
        response.body = [self.render_conversation(ticket, m) for m in response.body]
        return response

    def render_conversation(self, t: Ticket, m: Message) -> dict[str, Any]:
        author = self.data.people.get(m.author_id)
        requester = self.data.people.get(t.requester_id)
        incoming = m.role == "customer"
        return {
            "id": m.id, "ticket_id": t.id, "user_id": m.author_id, "incoming": incoming, "private": not m.public,
            "source": CONVERSATION_REPLY if m.public else CONVERSATION_NOTE, "category": 2 if incoming else 3,
            "body": f"<div>{m.body}</div>", "body_text": m.body, "support_email": SUPPORT_EMAIL,
            "from_email": author.email if author else None,
            "to_emails": ([] if not m.public
                          else [SUPPORT_EMAIL] if incoming else [requester.email if requester else ""]),
            "cc_emails": [], "bcc_emails": [], "attachments": [],
            "created_at": iso(m.created_at), "updated_at": iso(m.created_at),
            "last_edited_at": None, "last_edited_user_id": None,
        }

    # --- time entries ---------------------------------------------------------------------

    def _time_entries(self, request: FakeRequest, match: re.Match[str]) -> FakeResponse:
        after, before = self._since(request, "executed_after"), self._since(request, "executed_before")
        entries = [e for t in sorted(self.data.tickets.values(), key=lambda t: t.id)
                   for e in self.render_time_entries(t)]
        entries = [e for e in entries
                   if (after is None or e["_at"] >= after) and (before is None or e["_at"] <= before)]
        return self._strip(self._page(request, entries))

    def _ticket_time_entries(self, request: FakeRequest, match: re.Match[str]) -> FakeResponse:
        ticket = self._ticket(match, live=False)
        return self._strip(self._page(request, self.render_time_entries(ticket)))

    @staticmethod
    def _strip(response: FakeResponse) -> FakeResponse:
        response.body = [{k: v for k, v in e.items() if k != "_at"} for e in response.body]
        return response

    def render_time_entries(self, t: Ticket) -> list[dict[str, Any]]:
        """A ticket's time entries, logged once the work was done: their times never move afterwards
        (a later change of the ticket adds no entry and moves none)."""
        at = max(t.created_at, min(t.created_at + (t.handle_seconds or 0), self.world.now))
        agent = t.assignee_id or min(p.id for p in self.data.agents())
        entries = []
        for k, seconds in enumerate(time_entry_seconds(t)):
            when = at - 60 * k
            entries.append({
                "id": t.id * 10 + k, "ticket_id": t.id, "agent_id": agent, "billable": True,
                "note": "Looked into the order", "time_spent": hh_mm(seconds), "time_spent_in_seconds": seconds,
                "timer_running": False, "executed_at": iso(when), "start_time": iso(when),
                "created_at": iso(when), "updated_at": iso(when), "_at": when,
            })
        return entries

    # --- satisfaction ratings ---------------------------------------------------------------

    def _ratings(self, request: FakeRequest, match: re.Match[str]) -> FakeResponse:
        since = self._since(request, "created_since")
        answered = [t for t in self.data.tickets.values()
                    if t.rating and t.rating.answered_at is not None and t.rating.score is not None]
        rows = [t for t in answered if since is None or (t.rating and (t.rating.answered_at or 0) >= since)]
        rows.sort(key=lambda t: (t.rating.answered_at if t.rating else 0, t.rating.id if t.rating else 0))
        response = self._page(request, rows)
        response.body = [self.render_rating(t) for t in response.body]
        return response

    def render_rating(self, t: Ticket) -> dict[str, Any]:
        rating = t.rating
        assert rating is not None and rating.answered_at is not None and rating.score is not None
        answers: dict[str, int] = {"default_question": rating.score}
        nps = nps_answer(rating.id, rating.score)
        if nps is not None:
            answers[NPS_QUESTION] = nps
        return {
            "id": rating.id, "survey_id": 2 if nps is not None else 1, "user_id": t.requester_id,
            "agent_id": t.assignee_id, "group_id": t.group_id, "ticket_id": t.id, "feedback": rating.comment,
            "ratings": answers, "created_at": iso(rating.answered_at),
            "updated_at": iso(max(rating.answered_at, rating.updated_at)),
        }

    # --- agents, groups, companies, contacts -------------------------------------------------

    def _agents(self, request: FakeRequest, match: re.Match[str]) -> FakeResponse:
        agents = sorted((p for p in self.data.people.values() if p.role in ("agent", "bot")), key=lambda p: p.id)
        response = self._page(request, agents)
        response.body = [self.render_agent(p) for p in response.body]
        return response

    def _agent_me(self, request: FakeRequest, match: re.Match[str]) -> FakeResponse:
        """`GET /agents/me`: the agent whose API key it is (the account's first agent, as notes are written by)."""
        return FakeResponse(200, self.render_agent(min(self.data.agents(), key=lambda p: p.id)))

    def render_agent(self, p: Person) -> dict[str, Any]:
        groups = sorted(self.data.groups)
        return {
            "id": p.id, "available": True, "occasional": False, "signature": None, "ticket_scope": 1,
            "group_ids": [g for i, g in enumerate(groups) if (i + p.id) % 2 == 0], "skill_ids": [], "role_ids": [1],
            "type": "support_agent", "created_at": iso(p.created_at), "updated_at": iso(p.updated_at),
            "last_active_at": iso(p.updated_at),
            "contact": {"active": True, "email": p.email, "job_title": None, "language": self.language(p),
                        "last_login_at": iso(p.updated_at), "mobile": None, "name": p.name, "phone": p.phone,
                        "time_zone": p.time_zone, "created_at": iso(p.created_at), "updated_at": iso(p.updated_at)},
        }

    def _groups(self, request: FakeRequest, match: re.Match[str]) -> FakeResponse:
        agents = sorted(p.id for p in self.data.people.values() if p.role in ("agent", "bot"))
        response = self._page(request, sorted(self.data.groups.values(), key=lambda g: g.id))
        response.body = [{
            "id": g.id, "name": g.name, "description": None, "escalate_to": None, "unassigned_for": None,
            "business_hour_id": None, "group_type": "support_agent_group", "auto_ticket_assign": False,
            "agent_ids": [a for a in agents if a % 2 == g.id % 2],
            "created_at": iso(g.created_at), "updated_at": iso(g.created_at),
        } for g in response.body]
        return response

    def _companies(self, request: FakeRequest, match: re.Match[str]) -> FakeResponse:
        response = self._page(request, sorted(self.data.organizations.values(), key=lambda o: o.id))
        response.body = [self.render_company(o) for o in response.body]
        return response

    def render_company(self, o: Organization) -> dict[str, Any]:
        return {
            "id": o.id, "name": o.name, "description": None, "note": None, "domains": [],
            "health_score": None, "account_tier": None, "renewal_date": None, "industry": None,
            "custom_fields": self.company_field_values(o),
            "created_at": iso(o.created_at), "updated_at": iso(o.updated_at),
        }

    def _contacts(self, request: FakeRequest, match: re.Match[str]) -> FakeResponse:
        since = self._since(request, "_updated_since")
        people = sorted((p for p in self.data.customers() if since is None or p.updated_at >= since),
                        key=lambda p: (p.updated_at, p.id))
        response = self._page(request, people)
        response.body = [self.render_contact(p) for p in response.body]
        return response

    def _contact(self, request: FakeRequest, match: re.Match[str]) -> FakeResponse:
        person = self.data.people.get(int(match.group(1)))
        if person is None or person.role != "customer":
            raise HttpError(404, "The requested resource could not be found", "not_found")
        return FakeResponse(200, self.render_contact(person))

    def render_contact(self, p: Person) -> dict[str, Any]:
        return {
            "id": p.id, "name": p.name, "email": p.email, "active": True, "deleted": False,
            "phone": None if p.id % 2 else p.phone, "mobile": p.phone if p.id % 2 else None,
            "address": f"{p.id % 97 + 1} Market Street" if p.country else None,
            "company_id": p.organization_id, "description": None, "job_title": None,
            "language": self.language(p), "time_zone": p.time_zone, "tags": [], "twitter_id": None,
            "unique_external_id": None, "other_emails": [], "other_companies": [], "view_all_tickets": False,
            "custom_fields": self.contact_field_values(p), "avatar": None, "created_at": iso(p.created_at),
            "updated_at": iso(p.updated_at),
        }

    @staticmethod
    def language(p: Person) -> str | None:
        return LANGUAGES.get(p.locale, p.locale) if p.locale else None
