"""Fake Zendesk Support API: the zendesk slice of the sandbox world in Zendesk's own shapes.

Served under `/api/v2`, every path also with a `.json` suffix (reference §1):

- `GET /incremental/tickets/cursor` and `GET /incremental/users/cursor`: cursor exports
  ordered by (generated_timestamp, id), `start_time` on the first call and the opaque
  `cursor` (base64 "timestamp|id") afterwards, `per_page` ≤ 1000. A ticket's
  generated_timestamp is its last change (`world.tick()` keeps changes unique). Tickets take
  `include=metric_sets,users,groups,organizations`, `exclude_deleted` and
  `support_type_scope` (`agent` by default hides AI-agent tickets: those with a bot
  message and no message by a human agent). A ticket's metric set comes on the ticket
  (`metric_set`, as the export is described) or, with `metric_sets_form="top_level"`, in a
  top-level `metric_sets` array keyed by `ticket_id` (as list endpoints sideload it).
- `GET /incremental/ticket_events` and `GET /incremental/organizations`: time-based
  exports (`start_time`, `end_time`, `next_page`, `end_of_stream`); a page is never cut
  inside one second, so it may exceed `per_page`, and the boundary second comes again on
  the next page (clients dedupe by id). Ticket events are audits, one per ticket and
  second, whose `child_events` hold `Create`/`Change` status events and, with
  `include=comment_events`, `Comment` events. `support_type_scope` applies as on the ticket
  export (`agent` by default: AI-agent tickets' events are left out). As the export's documented
  payload (tests/specs/examples/zendesk-ticket-events.json): an audit's `via` is a display name
  ("Web form", "Rule"; `VIA_DISPLAY`), and so is its status events'; every child event carries
  `via` and `via_reference_id`. Without `include=comment_events` comments show only as one
  `Comment` child event with `comment_present`/`comment_public`; with it, each comment is a
  child event of its own (the comment object: `via` an object, `audit_id`). A ticket's group,
  priority and assignee history (the world's `Ticket.changes`) shows as documented for the
  export: a child event keyed by the field's name (`group_id`, `priority`, `assignee_id`)
  with `previous_value`, `Create` in the ticket's first audit (which also sets its first
  group and priority), `Change` later; a change in a second of its own is an audit of its own.
- `GET /users/me`: the user the credentials act as (the sandbox's admin, role `admin`,
  `ADMIN_ID`); without credentials, Zendesk's anonymous user (`id` null, role `end-user`) with
  200, as Zendesk answers; wrong credentials: 401. `check-config --online` calls it.
- `GET /tickets/{id}/comments`: a ticket's comments, oldest first (cursor list), which the connector
  reads for the Talk call durations of resolved voice tickets (the sandbox's calls record none).
- `GET /groups`, `GET /satisfaction_ratings` (legacy CSAT) and `GET /guide/survey_responses`
  (new CSAT): cursor lists (`page[size]` ≤ 100, `page[after]`, `meta.has_more`). An account
  has legacy ratings, new responses, or both (`csat_mode="both"`: ratings offered before
  `csat_cutover` are legacy, later ones new, as after a move); an endpoint the account does
  not have answers 403. A new-CSAT response is created when the survey is offered (its ULID
  id and `filter[created_at_start]` are that time) and has no top-level time; its answers
  (`answers[].created_at`, the rating on a 1-5 question) arrive when the customer answers.

How authors show: a comment by the AI agent (the world's bot) carries
`via.channel == "answer_bot"`; its author is an ordinary agent-seat user, so the user's
role does not tell it. A trigger or automation comment carries `via.channel == "rule"`.
Changes younger than `holdback_seconds` are held back, as Zendesk holds back the last minute.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import sys
import time
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from itertools import pairwise
from typing import Any, Literal

from connectors.sandbox.server import FakeApi, FakeRequest, FakeResponse, HttpError
from connectors.sandbox.world import (
    ChangeField,
    FieldChange,
    Group,
    Message,
    Organization,
    Person,
    Rating,
    SourceData,
    StatusChange,
    Ticket,
    World,
)
from connectors.zendesk.fake_writes import ZendeskWrites

J = r"(?:\.json)?"
EXPORT_MAX = 1000
LIST_MAX = 100
AI_AGENT_VIA = "answer_bot"
SYSTEM_VIA = "rule"
AGENT_VIA = "web"
AUDIT_ID_BASE = 10**12
METRIC_ID_BASE = 10**11
CREATE_ID_BASE = 3 * 10**12  # the Create events setting a ticket's first group and priority (2 per ticket)
# The world's change fields as the ticket names them (the key of a change event in the export).
CHANGE_KEYS = {"group": "group_id", "priority": "priority", "assignee": "assignee_id"}
CREATED_FIELDS: tuple[ChangeField, ...] = ("group", "priority")  # set on every new ticket
# What one audit holds: its comments, status changes and group/priority/assignee changes.
Children = tuple[list[Message], list[StatusChange], list[FieldChange]]

STATUS = {"new": "new", "open": "open", "pending": "pending", "on_hold": "hold", "resolved": "solved",
          "closed": "closed"}
VIA_BY_CHANNEL: dict[str, tuple[str, ...]] = {
    "email": ("email",),
    "web_form": ("web", "help_center"),
    "chat": ("chat",),
    "messaging": ("native_messaging", "whatsapp", "sms"),
    "phone": ("voice",),
    "social": ("twitter", "facebook", "instagram_dm"),
    "api": ("api",),
    "other": ("sample_ticket", "any_channel"),
}
LIVE_VIAS = frozenset({"chat", "native_messaging", "whatsapp", "sms", "voice"})
USER_ROLE = {"customer": "end-user", "agent": "agent", "bot": "agent"}
CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
NO_SOURCE: dict[str, Any] = {"from": {}, "to": {}, "rel": None}

# `GET /api/v2/users/me`: the token's admin (an account's first user; not among the world's people, so
# it changes no KPI) and, for a request without credentials, Zendesk's anonymous user (no id, an end user).
ME_PATH = re.compile(rf"/api/v2/users/me{J}")
ADMIN_ID = 1
ANONYMOUS_USER: dict[str, Any] = {"id": None, "url": None, "name": "Anonymous user", "email": "invalid@example.com",
                                  "role": "end-user", "locale": "en-US", "time_zone": "UTC", "verified": False,
                                  "active": True, "tags": [], "user_fields": {}}

CsatMode = Literal["legacy", "survey_responses", "both"]
MetricSetsForm = Literal["per_ticket", "top_level"]
# `via` as the ticket-events export shows it on an audit and its update events: a display name.
# "Web form" and "Rule" are documented (example payload, errata); the others are the names of the
# via types, chosen so that `connectors.zendesk.normalize.via_channel` reads each back to its channel.
VIA_DISPLAY = {"web": "Web form", "rule": "Rule", "email": "Mail", "api": "Web service", "chat": "Chat",
               "voice": "Phone call (inbound)", "help_center": "Help Center", "native_messaging": "Native messaging",
               "whatsapp": "WhatsApp", "sms": "SMS", "twitter": "Twitter", "facebook": "Facebook",
               "instagram_dm": "Instagram Direct", "sample_ticket": "Sample ticket", "any_channel": "Any channel",
               "answer_bot": "Answer Bot"}


def iso(epoch: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def encode_cursor(stamp: int, record_id: int) -> str:
    return base64.b64encode(f"{stamp}|{record_id}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[int, int]:
    try:
        stamp, record_id = base64.b64decode(cursor, validate=True).decode().split("|")
        return int(stamp), int(record_id)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise HttpError(400, "The cursor is invalid", "InvalidCursor") from None


def ulid(millis: int, entropy: int) -> str:
    """A ULID-shaped id (10 time chars + 16 entropy chars): text order is creation order."""
    value = (millis << 80) | (entropy & ((1 << 80) - 1))
    return "".join(CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


@dataclass
class _Index:
    """Sorted keys of everything the exports page through; rebuilt when the world changes."""

    version: tuple[int, int]
    tickets: list[tuple[int, int]]  # (generated_timestamp, ticket id)
    events: list[tuple[int, int, int]]  # (timestamp, audit id, ticket id)
    audits: dict[int, Children]
    users: list[tuple[int, int]]  # (updated_at, user id)
    organizations: list[tuple[int, int]]
    ratings: list[tuple[int, int, int]]  # (offered_at, rating id, ticket id)
    responses: list[tuple[str, int]]  # (response id, ticket id): id order is offer order
    csat: tuple[str, int]  # the CSAT mode and cutover the two lists were built for


class FakeZendesk(ZendeskWrites, FakeApi):
    demo_mappings = (
        ("ticket", "first_response_minutes", "kpi_first_response_minutes"),
        ("ticket", "sla_met", "kpi_sla_met"),
        ("ticket", "repeat_contact", "kpi_repeat_contact"),
        ("user", "contacts_30d", "kpi_contacts_30d"),
        ("user", "last_csat", "kpi_last_csat"),
        ("organization", "csat_pct_90d", "kpi_csat_pct_90d"),
    )
    demo_notes = (("repeat_contact", "Repeat contact: this customer's previous contact {previous_contact_id} was opened"
                                     " {previous_contact_ago} before this one. Their latest CSAT: {last_csat}."),)
    """Zendesk Support over the world's zendesk slice."""

    name = "zendesk"
    change_fields = frozenset({"group", "priority", "assignee"})  # the ticket-events export shows all three
    email = "admin@sandbox.example"
    api_token = "sandbox-zendesk-token"
    oauth_token = "sandbox-zendesk-oauth-token"

    def __init__(self, world: World, *, holdback_seconds: int = 0, csat_mode: CsatMode = "legacy",
                 page_size_cap: int | None = None, csat_cutover: int | None = None,
                 metric_sets_form: MetricSetsForm = "per_ticket") -> None:
        self.holdback_seconds = holdback_seconds
        self.csat_mode: CsatMode = csat_mode
        self.csat_cutover = csat_cutover  # "both": offers before it are legacy (None: the median offer)
        self.metric_sets_form: MetricSetsForm = metric_sets_form
        self._index: _Index | None = None
        super().__init__(world, page_size_cap=page_size_cap)

    @property
    def data(self) -> SourceData:
        return self.world.sources["zendesk"]

    # --- FakeApi hooks ------------------------------------------------------------------

    def register_routes(self) -> None:
        routes: list[tuple[str, Callable[[FakeRequest, Any], FakeResponse]]] = [
            (f"/api/v2/incremental/tickets/cursor{J}", self.incremental_tickets),
            (f"/api/v2/incremental/ticket_events{J}", self.incremental_ticket_events),
            (f"/api/v2/incremental/users/cursor{J}", self.incremental_users),
            (f"/api/v2/incremental/organizations{J}", self.incremental_organizations),
            (f"/api/v2/groups{J}", self.list_groups),
            (f"/api/v2/satisfaction_ratings{J}", self.list_satisfaction_ratings),
            (f"/api/v2/guide/survey_responses{J}", self.list_survey_responses),
            (rf"/api/v2/tickets/(?P<id>\d+)/comments{J}", self.list_ticket_comments),
            (f"/api/v2/users/me{J}", self.show_self),
        ]
        for pattern, handler in routes:
            self.route("GET", pattern, handler)
        self.register_write_routes()  # connectors/sandbox/zendesk_writes.py

    def authorized(self, request: FakeRequest) -> bool:
        header = request.headers.get("Authorization") or request.headers.get("authorization") or ""
        if not header and ME_PATH.fullmatch(request.path):
            return True  # Zendesk shows who is signed in, the anonymous user included
        scheme, _, value = header.partition(" ")
        if scheme == "Bearer":
            return value == self.oauth_token
        if scheme != "Basic":
            return False
        try:
            decoded = base64.b64decode(value, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        return decoded == f"{self.email}/token:{self.api_token}"

    def connector_settings(self) -> dict[str, Any]:
        start = datetime.fromtimestamp(self.world.start, tz=timezone.utc).date().isoformat()
        return {"base_url": self.base_url, "email": self.email, "api_token": self.api_token, "start_date": start}

    def error_response(self, status: int, message: str, code: str | None = None) -> FakeResponse:
        if status == 401:
            return FakeResponse(401, {"error": "Couldn't authenticate you"})
        if status == 429:
            return FakeResponse(429, b"Number of allowed API requests per minute exceeded",
                                {"Content-Type": "text/plain; charset=utf-8"})
        default_code = {400: "InvalidValue", 403: "Forbidden", 404: "RecordNotFound"}.get(status, "ServerError")
        return FakeResponse(status, {"error": code or default_code, "description": message})

    def rate_limit_headers(self, limit: int, remaining: int, reset_in: float) -> dict[str, str]:
        return {
            "X-Rate-Limit": str(limit), "X-Rate-Limit-Remaining": str(remaining),
            "ratelimit-limit": str(limit), "ratelimit-remaining": str(remaining),
            "ratelimit-reset": str(max(1, math.ceil(reset_in))),
        }

    # --- who am I ---------------------------------------------------------------------

    def show_self(self, request: FakeRequest, _: Any) -> FakeResponse:
        """`GET /api/v2/users/me`: the admin the token acts as; without credentials, the anonymous user."""
        if not (request.headers.get("Authorization") or request.headers.get("authorization")):
            return FakeResponse(200, {"user": ANONYMOUS_USER})
        admin = Person(ADMIN_ID, "agent", "Sandbox Admin", self.email, None, "en-US", None, None,
                       created_at=self.world.start, updated_at=self.world.start)
        return FakeResponse(200, {"user": {**self.render_user(admin), "role": "admin", "role_type": None}})

    # --- the index ----------------------------------------------------------------------

    def index(self) -> _Index:
        if (self._index is None or self._index.version != self.world.version
                or self._index.csat[0] != self.csat_mode or (self.csat_cutover is not None
                                                             and self._index.csat[1] != self.csat_cutover)):
            self._index = self._build_index()
        return self._index

    def _build_index(self) -> _Index:
        data = self.data
        events: list[tuple[int, int, int]] = []
        audits: dict[int, Children] = {}
        ratings: list[tuple[int, int, int]] = []
        responses: list[tuple[str, int]] = []
        offers = sorted(t.rating.offered_at for t in data.tickets.values() if t.rating is not None and not t.deleted)
        cutover = self.csat_cutover if self.csat_cutover is not None else (offers[len(offers) // 2] if offers else 0)
        for t in data.tickets.values():
            for stamp, audit_id, children in _audits_of(t):
                events.append((stamp, audit_id, t.id))
                audits[audit_id] = children
            r = t.rating
            if r is not None and not t.deleted:
                if self._flavour(r, cutover) == "legacy":
                    ratings.append((r.offered_at, r.id, t.id))
                else:
                    responses.append((_response_id(r), t.id))
        return _Index(
            version=self.world.version,
            tickets=sorted((t.updated_at, t.id) for t in data.tickets.values()),
            events=sorted(events), audits=audits,
            users=sorted((p.updated_at, p.id) for p in data.people.values()),
            organizations=sorted((o.updated_at, o.id) for o in data.organizations.values()),
            ratings=sorted(ratings), responses=sorted(responses), csat=(self.csat_mode, cutover),
        )

    def _flavour(self, r: Rating, cutover: int) -> str:
        if self.csat_mode == "both":
            return "legacy" if r.offered_at < cutover else "survey_responses"
        return self.csat_mode

    def visible_until(self) -> int:
        return self.world.clock() - self.holdback_seconds

    # --- request helpers ----------------------------------------------------------------

    def _int_arg(self, request: FakeRequest, name: str, default: int | None = None) -> int | None:
        value = request.arg(name)
        if value is None or value == "":
            return default
        try:
            return int(value)
        except ValueError:
            raise HttpError(400, f"{name} must be an integer", "InvalidValue") from None

    def _page_size(self, request: FakeRequest, name: str, maximum: int, default: int) -> int:
        size = self._int_arg(request, name, default) or default
        if size < 1 or size > maximum:
            raise HttpError(400, f"{name} must be between 1 and {maximum}", "InvalidPaginationParameter")
        return min(size, self.page_size_cap) if self.page_size_cap else size

    def _start_time(self, request: FakeRequest) -> int:
        start = self._int_arg(request, "start_time")
        if start is None:
            raise HttpError(400, "start_time is required", "InvalidValue")
        if start > self.visible_until():
            raise HttpError(400, "Too recent start_time. Use a start_time older than the export's hold-back",
                            "InvalidValue")
        return start

    def _url(self, path: str, **params: Any) -> str:
        query = "&".join(f"{k}={v}" for k, v in params.items() if v is not None)
        return f"{self.base_url}/api/v2/{path}.json" + (f"?{query}" if query else "")

    # --- cursor exports -----------------------------------------------------------------

    def incremental_tickets(self, request: FakeRequest, _: Any) -> FakeResponse:
        per_page = self._page_size(request, "per_page", EXPORT_MAX, EXPORT_MAX)
        includes = set(filter(None, (request.arg("include") or "").split(",")))
        scope = request.arg("support_type_scope", "agent")
        if scope not in ("agent", "ai_agent", "all"):
            raise HttpError(400, "support_type_scope must be agent, ai_agent or all", "InvalidValue")
        exclude_deleted = request.arg("exclude_deleted") in ("true", "1")

        def wanted(ticket_id: int) -> bool:
            t = self.data.tickets[ticket_id]
            if t.deleted:
                return not exclude_deleted
            return scope == "all" or (scope == "ai_agent") == _is_ai_agent_ticket(t)

        keys, end_of_stream, position = self._cursor_page(request, self.index().tickets, per_page, wanted)
        tickets = [self.data.tickets[i] for _, i in keys]
        metrics = "metric_sets" in includes
        per_ticket = metrics and self.metric_sets_form == "per_ticket"
        body: dict[str, Any] = {"tickets": [self.render_ticket(t, per_ticket) for t in tickets]}
        if metrics and not per_ticket:
            body["metric_sets"] = [_metric_set(t, _ticket_via_channel(t)) for t in tickets if not t.deleted]
        body.update(self._sideloads(tickets, includes))
        body.update(self._cursor_keys("incremental/tickets/cursor", position, end_of_stream, per_page,
                                      include=request.arg("include"),
                                      support_type_scope=request.arg("support_type_scope")))
        return FakeResponse(200, body)

    def incremental_users(self, request: FakeRequest, _: Any) -> FakeResponse:
        per_page = self._page_size(request, "per_page", EXPORT_MAX, EXPORT_MAX)
        keys, end_of_stream, position = self._cursor_page(request, self.index().users, per_page, lambda _: True)
        body: dict[str, Any] = {"users": [self.render_user(self.data.people[i]) for _, i in keys]}
        body.update(self._cursor_keys("incremental/users/cursor", position, end_of_stream, per_page))
        return FakeResponse(200, body)

    def _cursor_page(self, request: FakeRequest, keys: list[tuple[int, int]], per_page: int,
                     wanted: Callable[[int], bool]) -> tuple[list[tuple[int, int]], bool, tuple[int, int]]:
        """The next `per_page` wanted keys after the request's position, whether the export is
        drained, and the position after this page (which the next poll starts from)."""
        cursor = request.arg("cursor")
        position = decode_cursor(cursor) if cursor else (self._start_time(request), 0)
        # (timestamp, id) > (start_time, 0) selects every change at or after start_time.
        lo = bisect_right(keys, position)
        hi = bisect_right(keys, (self.visible_until(), sys.maxsize))
        page: list[tuple[int, int]] = []
        i = lo
        while i < hi and len(page) < per_page:
            if wanted(keys[i][1]):
                page.append(keys[i])
            i += 1
        more = any(wanted(keys[j][1]) for j in range(i, hi))
        return page, not more, page[-1] if page else position

    def _cursor_keys(self, path: str, position: tuple[int, int], end_of_stream: bool, per_page: int,
                     **params: Any) -> dict[str, Any]:
        after = encode_cursor(*position)
        return {
            "after_url": self._url(path, cursor=after, per_page=per_page, **params),
            "after_cursor": after, "before_url": None, "before_cursor": None, "end_of_stream": end_of_stream,
        }

    def _sideloads(self, tickets: list[Ticket], includes: set[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        live = [t for t in tickets if not t.deleted]
        if "users" in includes:
            ids = {i for t in live for i in (t.requester_id, _submitter_id(t), t.assignee_id) if i is not None}
            out["users"] = [self.render_user(self.data.people[i]) for i in sorted(ids)]
        if "groups" in includes:
            ids = {t.group_id for t in live if t.group_id is not None}
            out["groups"] = [self.render_group(self.data.groups[i]) for i in sorted(ids)]
        if "organizations" in includes:
            ids = {t.organization_id for t in live if t.organization_id is not None}
            out["organizations"] = [self.render_organization(self.data.organizations[i]) for i in sorted(ids)]
        return out

    # --- time-based exports -------------------------------------------------------------

    def incremental_ticket_events(self, request: FakeRequest, _: Any) -> FakeResponse:
        start = self._start_time(request)
        per_page = self._page_size(request, "per_page", EXPORT_MAX, EXPORT_MAX)
        with_comments = "comment_events" in (request.arg("include") or "").split(",")
        scope = request.arg("support_type_scope", "agent")
        if scope not in ("agent", "ai_agent", "all"):
            raise HttpError(400, "support_type_scope must be agent, ai_agent or all", "InvalidValue")
        index = self.index()
        lo, hi, end_of_stream = self._time_window(index.events, start, per_page)
        events = [self.render_audit(stamp, audit_id, self.data.tickets[tid], index.audits[audit_id][:2], with_comments,
                                    index.audits[audit_id][2])
                  for stamp, audit_id, tid in index.events[lo:hi]
                  if scope == "all" or (scope == "ai_agent") == _is_ai_agent_ticket(self.data.tickets[tid])]
        return FakeResponse(200, self._time_body("ticket_events", events, index.events, lo, hi, start, end_of_stream,
                                                 "incremental/ticket_events", include=request.arg("include"),
                                                 support_type_scope=request.arg("support_type_scope")))

    def incremental_organizations(self, request: FakeRequest, _: Any) -> FakeResponse:
        start = self._start_time(request)
        per_page = self._page_size(request, "per_page", EXPORT_MAX, EXPORT_MAX)
        keys = self.index().organizations
        lo, hi, end_of_stream = self._time_window(keys, start, per_page)
        orgs = [self.render_organization(self.data.organizations[i]) for _, i in keys[lo:hi]]
        return FakeResponse(200, self._time_body("organizations", orgs, keys, lo, hi, start, end_of_stream,
                                                 "incremental/organizations"))

    def _time_window(self, keys: list[Any], start: int, per_page: int) -> tuple[int, int, bool]:
        """Slice of `keys` (timestamp first) for one page: `per_page` items, extended to the
        end of the last second so no second is ever split across pages."""
        lo = bisect_left(keys, (start,))
        end = bisect_right(keys, (self.visible_until(), sys.maxsize))
        hi = min(lo + per_page, end)
        if lo < hi < end:
            hi = min(bisect_right(keys, (keys[hi - 1][0], sys.maxsize)), end)
        return lo, hi, hi >= end

    def _time_body(self, key: str, items: list[dict[str, Any]], keys: list[Any], lo: int, hi: int, start: int,
                   end_of_stream: bool, path: str, **params: Any) -> dict[str, Any]:
        end_time = keys[hi - 1][0] if hi > lo else start
        return {key: items, "count": len(items), "end_time": end_time, "end_of_stream": end_of_stream,
                "next_page": self._url(path, start_time=end_time, **params)}

    # --- cursor lists -------------------------------------------------------------------

    def list_groups(self, request: FakeRequest, _: Any) -> FakeResponse:
        size = self._page_size(request, "page[size]", LIST_MAX, LIST_MAX)
        ids = sorted(self.data.groups)
        after = request.arg("page[after]")
        lo = bisect_right(ids, decode_cursor(after)[1]) if after else 0
        chunk = ids[lo:lo + size]
        groups = [self.render_group(self.data.groups[i]) for i in chunk]
        cursor = encode_cursor(0, chunk[-1]) if chunk else None
        return FakeResponse(200, {"groups": groups, **self._list_meta("groups", cursor, lo + size < len(ids), size)})

    def list_satisfaction_ratings(self, request: FakeRequest, _: Any) -> FakeResponse:
        if self.csat_mode == "survey_responses":
            raise HttpError(403, "Legacy satisfaction ratings are not active on this account", "Forbidden")
        size = self._page_size(request, "page[size]", LIST_MAX, LIST_MAX)
        start = self._int_arg(request, "start_time", 0) or 0
        end = self._int_arg(request, "end_time", sys.maxsize) or sys.maxsize
        keys = self.index().ratings
        after = request.arg("page[after]")
        lo = bisect_right(keys, (*decode_cursor(after), sys.maxsize)) if after else bisect_left(keys, (start,))
        hi = bisect_left(keys, (end,))
        chunk = keys[lo:min(lo + size, hi)]
        ratings = [self.render_rating(self.data.tickets[tid]) for _, _, tid in chunk]
        cursor = encode_cursor(chunk[-1][0], chunk[-1][1]) if chunk else None
        return FakeResponse(200, {"satisfaction_ratings": ratings,
                                  **self._list_meta("satisfaction_ratings", cursor, lo + size < hi, size)})

    def list_survey_responses(self, request: FakeRequest, _: Any) -> FakeResponse:
        if self.csat_mode == "legacy":
            return FakeResponse(403, {"errors": [{"code": "Forbidden", "status": "403", "title": "Forbidden",
                                                  "detail": "CSAT survey responses are not enabled on this account"}]})
        size = self._page_size(request, "page[size]", LIST_MAX, LIST_MAX)
        start_ms = self._int_arg(request, "filter[created_at_start]", 0) or 0
        end_ms = self._int_arg(request, "filter[created_at_end]")
        keys = self.index().responses
        after = request.arg("page[after]")
        lo = bisect_right(keys, (after, sys.maxsize)) if after else bisect_left(keys, (ulid(start_ms, 0), 0))
        hi = bisect_left(keys, (ulid(end_ms, 0), 0)) if end_ms is not None else len(keys)
        chunk = keys[lo:min(lo + size, hi)]
        responses = [self.render_survey_response(self.data.tickets[tid]) for _, tid in chunk]
        cursor = chunk[-1][0] if chunk else None
        return FakeResponse(200, {"survey_responses": responses,
                                  **self._list_meta("guide/survey_responses", cursor, lo + size < hi, size)})

    def list_ticket_comments(self, request: FakeRequest, match: Any) -> FakeResponse:
        """A ticket's comments, oldest first (cursor pagination); 404 for a ticket deleted or unknown."""
        t = self.data.tickets.get(int(match.group("id")))
        if t is None or t.deleted:
            raise HttpError(404, "Not found", "RecordNotFound")
        size = self._page_size(request, "page[size]", LIST_MAX, LIST_MAX)
        after = request.arg("page[after]")
        lo = decode_cursor(after)[1] + 1 if after else 0
        chunk = t.messages[lo:lo + size]
        requester = self.data.people[t.requester_id]
        audit_of = {stamp: audit_id for stamp, audit_id, _ in _audits_of(t)}
        comments = [_comment(m, t, requester, audit_of[m.created_at]) for m in chunk]
        cursor = encode_cursor(0, lo + len(chunk) - 1) if chunk else None
        return FakeResponse(200, {"comments": comments, "count": len(t.messages),
                                  **self._list_meta(f"tickets/{t.id}/comments", cursor,
                                                    lo + size < len(t.messages), size)})

    def _list_meta(self, path: str, after: str | None, has_more: bool, size: int) -> dict[str, Any]:
        next_url = self._url(path, **{"page[size]": size, "page[after]": after}) if has_more else None
        return {"meta": {"has_more": has_more, "after_cursor": after, "before_cursor": None},
                "links": {"prev": None, "next": next_url}}

    # --- rendering ----------------------------------------------------------------------

    def render_ticket(self, t: Ticket, with_metrics: bool) -> dict[str, Any]:
        via = _ticket_via(t, self.data.people[t.requester_id])
        custom = self.ticket_custom_fields(t)
        stamps = {"created_at": iso(t.created_at), "updated_at": iso(t.updated_at), "generated_timestamp": t.updated_at}
        url = f"{self.base_url}/api/v2/tickets/{t.id}.json"
        if t.deleted:
            return {"id": t.id, "url": url, "status": "deleted", "subject": t.subject, "tags": list(t.tags),
                    "custom_fields": custom, "via": via, **stamps}
        first = t.messages[0] if t.messages else None
        body: dict[str, Any] = {
            "id": t.id, "url": url, "external_id": None, "subject": t.subject, "raw_subject": t.subject,
            "description": first.body if first else "", "type": t.type, "priority": t.priority,
            "status": STATUS[t.status], "recipient": "support@sandbox.example" if via["channel"] == "email" else None,
            "requester_id": t.requester_id, "submitter_id": _submitter_id(t), "assignee_id": t.assignee_id,
            "organization_id": t.organization_id, "group_id": t.group_id, "brand_id": 1, "ticket_form_id": 1,
            "collaborator_ids": [], "follower_ids": [], "email_cc_ids": [], "problem_id": None,
            "has_incidents": False, "is_public": True, "due_at": None, "tags": list(t.tags),
            "custom_fields": custom, "fields": custom, "via": via,
            "satisfaction_rating": self._rating_summary(t.rating), "sharing_agreement_ids": [], "followup_ids": [],
            "allow_channelback": False, "allow_attachments": True, **stamps,
        }
        if with_metrics:
            body["metric_set"] = _metric_set(t, via["channel"])
        return body

    def _rating_summary(self, rating: Rating | None) -> dict[str, Any] | None:
        if self.csat_mode == "survey_responses" or (
                rating is not None and self._flavour(rating, self.index().csat[1]) != "legacy"):
            return None
        if rating is None:
            return {"score": "unoffered"}
        if rating.answered_at is None or rating.score is None:
            return {"id": rating.id, "score": "offered"}
        return {"id": rating.id, "score": "good" if rating.score else "bad", "comment": rating.comment}

    def render_user(self, p: Person) -> dict[str, Any]:
        role = USER_ROLE[p.role]
        return {
            "id": p.id, "url": f"{self.base_url}/api/v2/users/{p.id}.json", "name": p.name, "email": p.email,
            "phone": p.phone, "shared_phone_number": None, "alias": "", "signature": "", "details": "",
            "notes": "", "photo": None, "external_id": None, "role": role, "role_type": None, "custom_role_id": None,
            "moderator": role != "end-user", "ticket_restriction": "requested" if role == "end-user" else None,
            "only_private_comments": False, "restricted_agent": False, "locale": p.locale,
            "locale_id": None if p.locale is None else 1000 + sum(map(ord, p.locale)),
            "time_zone": p.time_zone, "iana_time_zone": "Etc/UTC" if p.time_zone == "UTC" else p.time_zone,
            "organization_id": p.organization_id, "tags": [],
            # Agents always belong to a default group; end users to none.
            "default_group_id": min(self.data.groups, default=None) if role != "end-user" else None,
            "user_fields": self.user_field_values(p), "active": True, "suspended": False, "verified": True,
            "shared": False, "shared_agent": False, "two_factor_auth_enabled": False,
            "created_at": iso(p.created_at), "updated_at": iso(p.updated_at), "last_login_at": None,
        }

    def render_group(self, g: Group) -> dict[str, Any]:
        return {"id": g.id, "url": f"{self.base_url}/api/v2/groups/{g.id}.json", "name": g.name, "description": "",
                "default": g.id == min(self.data.groups), "deleted": False, "is_public": True,
                "created_at": iso(g.created_at), "updated_at": iso(g.created_at)}

    def render_organization(self, o: Organization) -> dict[str, Any]:
        return {"id": o.id, "url": f"{self.base_url}/api/v2/organizations/{o.id}.json", "name": o.name,
                "shared_tickets": False, "shared_comments": False, "external_id": None, "domain_names": [],
                "details": "", "notes": "", "group_id": None, "tags": list(o.tags),
                "organization_fields": self.organization_field_values(o), "created_at": iso(o.created_at),
                "updated_at": iso(o.updated_at), "deleted_at": None}

    def render_audit(self, stamp: int, audit_id: int, t: Ticket,
                     children: tuple[list[Message], list[StatusChange]], with_comments: bool,
                     field_changes: Sequence[FieldChange] = ()) -> dict[str, Any]:
        messages, changes = children
        requester = self.data.people[t.requester_id]
        via = _comment_via(messages[0], t, requester) if messages else _status_via(changes)
        shown = VIA_DISPLAY[via["channel"]]
        child_events = [_status_event(c, shown) for c in changes]
        if any(c.previous is None for c in changes):  # the ticket's creation: its first group and priority
            child_events.extend(_created_fields(t, shown))
        child_events.extend(_field_event(c, t, shown) for c in field_changes)
        if with_comments:
            child_events.extend(_comment_event(m, t, requester, audit_id) for m in messages)
        elif messages:
            child_events.append({"id": messages[0].id, "event_type": "Comment", "via": shown, "via_reference_id": None,
                                 "comment_present": True, "comment_public": any(m.public for m in messages)})
        return {
            "id": audit_id, "ticket_id": t.id, "timestamp": stamp, "created_at": iso(stamp),
            "updater_id": messages[0].author_id if messages else -1, "via": shown, "event_type": "Audit",
            "system": {"client": "sandbox", "ip_address": None, "location": None}, "metadata": {},
            "merged_ticket_ids": [], "child_events": child_events,
        }

    def render_rating(self, t: Ticket) -> dict[str, Any]:
        r = t.rating
        assert r is not None
        answered = r.answered_at is not None and r.score is not None
        return {
            "url": f"{self.base_url}/api/v2/satisfaction_ratings/{r.id}.json", "id": r.id,
            "assignee_id": t.assignee_id, "group_id": t.group_id, "requester_id": t.requester_id, "ticket_id": t.id,
            "score": ("good" if r.score else "bad") if answered else "offered",
            "comment": r.comment if answered else None, "reason": "No reason provided", "reason_id": None,
            "reason_code": 0, "created_at": iso(r.offered_at), "updated_at": iso(_rating_updated_at(r)),
        }

    def render_survey_response(self, t: Ticket) -> dict[str, Any]:
        """The documented response object: no time of its own; answers arrive after the offer."""
        r = t.rating
        assert r is not None
        answers: list[dict[str, Any]] = []
        if r.answered_at is not None and r.score is not None:
            rating = _five_point(r)
            answered = iso(r.answered_at)
            answers.append({
                "type": "rating_scale", "rating": rating,
                "rating_category": "good" if rating >= 4 else ("neutral" if rating == 3 else "bad"),
                "question": {"id": "01HQCSATQUESTION0000000001", "type": "rating_scale_numeric",
                             "sub_type": "customer_satisfaction", "alias": "csat",
                             "headline": {"type": "static", "value": "How would you rate the support you received?"},
                             "options": [{"id": f"01HQCSATOPTION000000000{v}", "rating": v,
                                          "label": {"type": "static", "value": str(v)}} for v in range(1, 6)]},
                "created_at": answered, "updated_at": iso(max(r.answered_at, r.updated_at or 0)),
            })
            question = {"id": "01HQCSATQUESTION0000000002", "type": "open_ended", "alias": "comment",
                        "headline": {"type": "static", "value": "Anything else you would like to share?"}}
            if r.comment:
                answers.append({"type": "open_ended", "value": r.comment, "question": question,
                                "created_at": answered, "updated_at": answered})
            else:
                answers.append({"type": "skipped", "question": question, "created_at": answered,
                                "updated_at": answered})
        zrn = f"zen:ticket:{t.id}"
        return {
            "id": _response_id(r), "responder_id": t.requester_id, "subject_zrns": [zrn],
            "subjects": [{"id": str(t.id), "type": "ticket", "zrn": zrn}],
            "survey": {"id": "01HQCSATSURVEY000000000001", "version": 1, "state": "enabled"},
            "expires_at": iso(r.offered_at + 28 * 86400), "answers": answers,
        }


# --- world → Zendesk helpers -----------------------------------------------------------


def _is_ai_agent_ticket(t: Ticket) -> bool:
    """Handled by the AI agent alone: a bot message and none by a human agent."""
    return any(m.role == "bot" for m in t.messages) and not any(m.role == "agent" for m in t.messages)


def _submitter_id(t: Ticket) -> int:
    return t.messages[0].author_id if t.messages else t.requester_id


def _ticket_via_channel(t: Ticket) -> str:
    options = VIA_BY_CHANNEL[t.channel]
    return options[t.id % len(options)]


def _ticket_via(t: Ticket, requester: Person) -> dict[str, Any]:
    channel = _ticket_via_channel(t)
    sender = {"address": requester.email, "name": requester.name}
    if channel == "voice" and requester.phone:
        sender = {"phone": requester.phone, "name": requester.name}
    return {"channel": channel, "source": {"from": sender, "to": {"address": "support@sandbox.example",
                                                                   "name": "Sandbox Support"}, "rel": None}}


def _comment_via(m: Message, t: Ticket, requester: Person) -> dict[str, Any]:
    if m.role == "customer":
        return _ticket_via(t, requester)
    if m.role == "bot":
        return {"channel": AI_AGENT_VIA, "source": NO_SOURCE}
    if m.role == "system":
        return {"channel": SYSTEM_VIA, "source": {"from": {"id": 360000000001, "title": "Notify requester of request"},
                                                  "to": {}, "rel": "trigger"}}
    channel = _ticket_via_channel(t)
    return {"channel": channel if channel in LIVE_VIAS else AGENT_VIA, "source": NO_SOURCE}


def _status_via(changes: list[StatusChange]) -> dict[str, Any]:
    if any(c.status == "closed" for c in changes):
        return {"channel": SYSTEM_VIA, "source": {"from": {"id": 360000000002, "title": "Close ticket 4 days after"},
                                                  "to": {}, "rel": "automation"}}
    return {"channel": AGENT_VIA, "source": NO_SOURCE}


def _audits_of(t: Ticket) -> Iterable[tuple[int, int, Children]]:
    """One audit per second of the ticket's history: its comments, status changes and field changes.

    The audit's id comes from its comments and status changes, else from its field changes.
    """
    by_second: dict[int, Children] = {}
    for m in t.messages:
        by_second.setdefault(m.created_at, ([], [], []))[0].append(m)
    for c in t.status_changes:
        by_second.setdefault(c.at, ([], [], []))[1].append(c)
    for f in t.changes:
        by_second.setdefault(f.at, ([], [], []))[2].append(f)
    for stamp, children in by_second.items():
        first_id = min([m.id for m in children[0]] + [c.id for c in children[1]] or [f.id for f in children[2]])
        yield stamp, AUDIT_ID_BASE + first_id, children


def _created_fields(t: Ticket, via: str) -> list[dict[str, Any]]:
    """The Create events of a new ticket's group and priority (its values before any change)."""
    events = []
    for offset, name in enumerate(CREATED_FIELDS):
        value = t.initial(name)
        if value is not None:
            key = CHANGE_KEYS[name]
            events.append({"id": CREATE_ID_BASE + 2 * t.id + offset, "event_type": "Create", "field_name": key,
                           key: value, "via": via, "via_reference_id": None})
    return events


def _field_event(c: FieldChange, t: Ticket, via: str) -> dict[str, Any]:
    """A group, priority or assignee change, keyed by the field's name as the export's status changes are."""
    key = CHANGE_KEYS[c.field]
    created = c.at == t.created_at and c.previous is None
    event: dict[str, Any] = {"id": c.id, "event_type": "Create" if created else "Change", "field_name": key,
                             key: c.value, "via": via, "via_reference_id": None}
    if not created:
        event["previous_value"] = c.previous
    return event


def _status_event(c: StatusChange, via: str) -> dict[str, Any]:
    return {"id": c.id, "event_type": "Create" if c.previous is None else "Change", "field_name": "status",
            "status": STATUS[c.status], "previous_value": STATUS[c.previous] if c.previous else None, "via": via,
            "via_reference_id": None}


def _comment_event(m: Message, t: Ticket, requester: Person, audit_id: int) -> dict[str, Any]:
    """With include=comment_events the child event is the comment itself (its `via` an object)."""
    return {**_comment(m, t, requester, audit_id), "event_type": "Comment", "via_reference_id": None}


def _comment(m: Message, t: Ticket, requester: Person, audit_id: int) -> dict[str, Any]:
    """A comment as the Ticket Comments API shows it (the world's messages are written comments, none a
    Talk `VoiceComment`: the sandbox's voice tickets record no call, hence no Talk handle time)."""
    return {"id": m.id, "type": "Comment", "author_id": m.author_id, "body": m.body,
            "html_body": f"<p>{m.body}</p>", "plain_body": m.body, "public": m.public, "attachments": [],
            "audit_id": audit_id, "via": _comment_via(m, t, requester), "created_at": iso(m.created_at)}


def _minutes(seconds: int | None) -> dict[str, int | None]:
    value = None if seconds is None else (seconds + 30) // 60
    return {"calendar": value, "business": value}


def _metric_set(t: Ticket, via_channel: str) -> dict[str, Any]:
    """Zendesk's ticket metrics computed from the world ticket (no schedule: business = calendar)."""
    customer = [m.created_at for m in t.messages if m.role == "customer"]
    start = customer[0] if customer else t.created_at
    replies = [m.created_at for m in t.messages if m.role == "agent" and m.public and m.created_at >= start]
    resolved = t.resolved_times
    waits = _status_durations(t.status_changes)
    opened = next((c.at for c in t.status_changes if c.status == "open"), None)
    agent_times = [m.created_at for m in t.messages if m.role == "agent"]
    metric: dict[str, Any] = {
        "id": METRIC_ID_BASE + t.id, "ticket_id": t.id, "reopens": len(t.reopen_times), "replies": len(replies),
        "assignee_stations": 1 if t.assignee_id else 0, "group_stations": 1,
        "reply_time_in_minutes": _minutes(replies[0] - start if replies else None),
        "first_resolution_time_in_minutes": _minutes(resolved[0] - t.created_at if resolved else None),
        "full_resolution_time_in_minutes": _minutes(resolved[-1] - t.created_at if resolved else None),
        "agent_wait_time_in_minutes": _minutes(waits["pending"]),
        "requester_wait_time_in_minutes": _minutes(waits["new"] + waits["open"] + waits["on_hold"]),
        "on_hold_time_in_minutes": _minutes(waits["on_hold"]),
        "solved_at": iso(resolved[-1]) if resolved else None,
        "initially_assigned_at": iso(opened) if opened else None, "assigned_at": iso(opened) if opened else None,
        "assignee_updated_at": iso(agent_times[-1]) if agent_times else None,
        "requester_updated_at": iso(customer[-1]) if customer else None,
        "status_updated_at": iso(t.status_changes[-1].at) if t.status_changes else None,
        "latest_comment_added_at": iso(max(m.created_at for m in t.messages)) if t.messages else None,
        "created_at": iso(t.created_at), "updated_at": iso(t.updated_at),
    }
    if via_channel in ("native_messaging", "whatsapp", "sms"):
        metric["reply_time_in_seconds"] = {"calendar": replies[0] - start if replies else None}
    return metric


def _status_durations(changes: list[StatusChange]) -> dict[str, int]:
    spent = {"new": 0, "open": 0, "pending": 0, "on_hold": 0, "resolved": 0, "closed": 0}
    for current, following in pairwise(changes):
        spent[current.status] += following.at - current.at
    return spent


def _rating_updated_at(r: Rating) -> int:
    return max(r.offered_at, r.answered_at or 0, r.updated_at or 0)


def _response_id(r: Rating) -> str:
    """Created when the survey is offered: the ULID's time is the offer."""
    return ulid(r.offered_at * 1000, r.id)


def _five_point(r: Rating) -> int:
    """The new-CSAT answer behind a world rating: good → 4 or 5, bad → 1 to 3."""
    return (4 + r.id % 2) if r.score else (1 + r.id % 3)
