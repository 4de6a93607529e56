"""Intercom connector: admins, teams, contacts, companies and conversations (API 2.14).

Streams, in sync order:
- `admins`: `GET /admins` and `GET /teams` -> people (role agent) and groups. Two calls,
  re-read on every sync (no incremental form exists).
- `contacts`: `POST /contacts/search` on `updated_at` -> people (role customer). Contact
  search matches timestamps by calendar day in the workspace's time zone (`>` starts at
  the next day), so the query asks `>` a moment more than a day (25 hours, for days
  lengthened by a clock change) before the bookmark: it re-reads the changes since the
  start of the bookmark's day, and those already stored are upserted again (same key, same
  values), never duplicated.
- `companies`: `POST /companies/list` (page/per_page) -> organizations, re-read at most
  once a day. Chosen over `GET /companies/scroll` because a scroll holds a workspace-wide
  lock (a second scroller gets 423) and its `scroll_param` expires after a minute, so a
  killed sync could never continue one; list pages are stateless. The list leaves out
  companies without users (no contact names them, so no conversation's organization is
  lost) and stops at 10,000 companies: when `total_count` says more exist, the page carries
  a warning naming how many were not read. A token without access to companies (403/404)
  is a warning too, not a failure: the companies are skipped and the conversations still
  sync; the daily bookmark does not move, so each sync tries once more (one request) and
  warns again until the token can read them.
- `conversations`: `POST /conversations/search` on `updated_at`, then
  `GET /conversations/{id}` for the parts -> contacts, messages, status_events, the group and
  assignee changes of the assigning parts (contact_changes) and survey_responses.

The bookmark of a search stream (contacts, conversations) is a small JSON document:
`since` (the `updated_at` lower bound of the pass), `signpost` (when the pass started,
minus `LOOKBACK_SECONDS`), `after` (the `starting_after` token of the next page while a
pass is in progress) and `seen` (id -> `updated_at` of what was stored at or after the
signpost). Every page stores it with its records, so a sync killed at any moment resumes
from the next page with the same token and the same signpost; only the last page of a
pass promotes `since` to the signpost. Search order is not documented and `sort` is not
part of the 2.14 search request, so none is asked for and none is assumed: the signpost,
not the largest `updated_at` seen, is what moves forward; whatever changes during a pass
is re-read by the next one. `seen` drops a re-delivered (id, `updated_at`) of the
overlap without another parts fetch. A starting_after the pass has already used (Intercom
can hand one back while data changes) ends the pass at once, with `since` held where the
pass started (what was not delivered yet may lie anywhere in the unordered results), so
the next sync reads the window again, skipping by `seen` what this pass stored.

Parts: a conversation's parts are fetched only when it is new or changed (its
(id, `updated_at`) is not in `seen`) and its statistics do not say it has none. Intercom
returns at most the 500 most recent parts; when `statistics.count_conversation_parts`
says more exist, the conversation keeps what was returned, is flagged
`messages_truncated`, and its reply/resolution facts come from `statistics` (and the parts
that were returned) instead of the whole history. Deleted conversations vanish from
search; one that answers 404 between the search and the parts fetch is stored as
`deleted`. A conversation deleted after it was synced cannot be seen by an incremental read.

Author roles (catalogue 2c): `user`/`lead`/`contact` -> customer; `admin`/`team` ->
agent; `bot` authors (Fin, custom bots, Operator), parts whose author is marked
`from_ai_agent` or `is_ai_answer`, and the admin's `bot_agent_ids` (an integration posting
through a teammate's seat) -> bot. A bot's greeting before the customer's first message
never makes a conversation bot-only (the store derives bot-only from what follows the
customer's first message; a truncated conversation's facts follow the same reading, see
`normalize._facts_from_statistics`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from datetime import time as dtime
from typing import Any, ClassVar

from connectors.base import (
    BackfillStart,
    CheckResult,
    ConfigError,
    FatalApiError,
    MalformedResponse,
    Page,
    Privacy,
    StreamSpec,
    SyncError,
)
from connectors.http import ApiResponse, ClientOwner, RatePacer
from connectors.intercom.check import check
from connectors.intercom.client import REGION_HOSTS, SOURCE, client
from connectors.intercom.normalize import (
    PERSONAL,
    UNKNOWN_CONTACT,
    ContactFacts,
    admin_row,
    contact_facts,
    conversation_records,
    deleted_row,
    first_contact_id,
    organization_row,
    person_row,
    team_row,
)
from connectors.intercom.settings import IntercomSettings
from connectors.paging import PageNumber, StartingAfter
from connectors.records import BAD_RECORD, Row, keep, keep_row, record_id, rejected_id
from kpi_core.model import RecordError, iso_utc

log = logging.getLogger(__name__)

MAX_PER_PAGE = 150
COMPANIES_PER_PAGE = 60
LOOKBACK_SECONDS = 300  # search may lag its writes and `>` may be strict: re-read this much
# Contact search truncates timestamps to the workspace's day and `>` starts at the next day:
# ask `>` a day before, plus an hour for a day lengthened by a clock change, plus a second.
CONTACT_DAY_SLACK = 25 * 3600 + 1
COMPANIES_EVERY_SECONDS = 86400
COMPANIES_LIST_CAP = 10_000  # POST /companies/list returns at most this many companies (2.14 description)
CONTACT_CACHE_LIMIT = 100_000

@dataclass
class PassState:
    """The bookmark of a search stream (see the module docstring)."""

    since: int
    signpost: int | None = None
    after: str | None = None
    seen: dict[str, int] = field(default_factory=dict)

    def dumps(self) -> str:
        return json.dumps({"v": 1, "since": self.since, "signpost": self.signpost, "after": self.after,
                           "seen": self.seen}, separators=(",", ":"), sort_keys=True)

    @classmethod
    def loads(cls, text: str | None, default_since: int, stream: str) -> PassState:
        if not text:
            return cls(default_since)
        try:
            data = json.loads(text)
            seen = {str(k): int(v) for k, v in (data.get("seen") or {}).items()}
            signpost = None if data.get("signpost") is None else int(data["signpost"])
            after = data.get("after")
            if after is not None and not isinstance(after, str):
                raise ValueError("after is not a string")
            return cls(int(data["since"]), signpost, after, seen)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise SyncError(f"{SOURCE}/{stream}: the stored cursor is not valid ({exc}); run `sync --full`") from None

    def promoted(self, since: int) -> PassState:
        """The bookmark of the next pass: from `since`, remembering only what it will re-read."""
        return PassState(since, None, None, {k: v for k, v in self.seen.items() if v >= since})


PageHandler = Callable[[list[dict[str, Any]]], Page]


class IntercomConnector(ClientOwner):
    """Reads one Intercom workspace into normalized pages."""

    name: ClassVar[str] = SOURCE

    STREAMS: ClassVar[tuple[StreamSpec, ...]] = (
        StreamSpec("admins", ("people", "groups"), "admins (agents) and teams"),
        StreamSpec("contacts", ("people",), "contacts (users and leads) changed since the bookmark"),
        StreamSpec("companies", ("organizations",), "companies, re-read once a day"),
        StreamSpec("conversations", ("contacts", "messages", "status_events", "contact_changes", "survey_responses"),
                   "conversations changed since the bookmark, with parts, assignments and ratings"),
    )

    def __init__(self, settings: IntercomSettings, *, sleep: Callable[[float], None] = time.sleep,
                 pacer: RatePacer | None = None) -> None:
        self.client = client(settings, sleep=sleep)
        if pacer is not None:
            self.client.pacer = pacer
        self._sleep = sleep
        self.settings = settings
        self.privacy = Privacy.choose(PERSONAL, settings.privacy)
        self.base_url = settings.base_url or REGION_HOSTS[settings.region]
        self.per_page = min(settings.page_size or MAX_PER_PAGE, MAX_PER_PAGE)
        self.start_epoch = int(datetime.combine(settings.start_date, dtime(0), tzinfo=timezone.utc).timestamp())
        self._contacts: dict[str, ContactFacts] = {}
        # The admin's bot accounts (catalogue 2c: on every source): their parts are the bot's.
        self.bot_agent_ids = frozenset(str(ident) for ident in settings.bot_agent_ids)

    # --- the Connector contract -----------------------------------------------------------

    def streams(self) -> Sequence[StreamSpec]:
        return self.STREAMS

    def check(self) -> CheckResult:
        """One call to `GET /me`: do the credentials work? (`check-config --online`)"""
        return check(self.client, self.settings)

    def read(self, stream: StreamSpec, cursor: str | None, full: bool = False) -> Iterator[Page]:
        if full:
            cursor = None
        if stream.name == "admins":
            yield self._read_admins()
        elif stream.name == "contacts":
            state = PassState.loads(cursor, self.start_epoch, stream.name)
            yield from self._search_pass("/contacts/search", "data", state, stream.name, "contact",
                                         self._contacts_page, slack=CONTACT_DAY_SLACK)
        elif stream.name == "companies":
            yield from self._read_companies(cursor)
        elif stream.name == "conversations":
            state = PassState.loads(cursor, self.start_epoch, stream.name)
            yield from self._search_pass("/conversations/search", "conversations", state, stream.name,
                                         "conversation", self._conversations_page)
        else:
            raise ConfigError(f"{SOURCE}: unknown stream {stream.name!r}")

    def rewind_cursor(self, stream: StreamSpec, cursor: str | None, since: datetime) -> str | None:
        """A bookmark that re-reads changes since `since` (nightly reconciliation); None for
        the streams that are re-read whole anyway (admins, companies)."""
        if stream.name not in ("contacts", "conversations") or cursor is None:
            return None  # re-read whole, or already reading from the start date
        state = PassState.loads(cursor, self.start_epoch, stream.name)
        wanted = int(since.timestamp())
        if state.since <= wanted and state.after is None:
            return cursor
        # A fresh pass from the earlier bound; `seen` is dropped so the window is really re-read.
        return PassState(min(state.since, wanted)).dumps()

    # --- newest-first backfill (connectors.base.Backfillable) ---------------------------------

    def backfill_start(self, stream: StreamSpec) -> BackfillStart | None:
        """Conversations only; no call is made.

        Search results come in no documented order, so no first page tells the oldest
        conversation: the windows go back to `start_date`, an empty month costing one call.
        """
        if stream.name != "conversations":
            return None
        return BackfillStart(first=Page(), position=None, oldest=datetime.fromtimestamp(self.start_epoch, timezone.utc),
                             complete=False)

    def head_cursor(self, stream: StreamSpec, since: datetime) -> str:
        """A fresh pass from `since`: every conversation changed from then on."""
        return PassState(int(since.timestamp())).dumps()

    def read_window(self, stream: StreamSpec, start: datetime, end: datetime, position: str | None) -> Iterator[Page]:
        """One search pass over `start <= updated_at < end` (resumed from `position`'s token)."""
        if stream.name != "conversations":
            raise ConfigError(f"{SOURCE}: stream {stream.name!r} has no time window to backfill")
        state = PassState.loads(position, int(start.timestamp()), stream.name)
        return self._search_pass("/conversations/search", "conversations", state, stream.name, "conversation",
                                 self._conversations_page, upper=int(end.timestamp()))

    def spawn(self) -> IntercomConnector:
        """A connector with its own session, pacing its calls with this one's (one budget per workspace)."""
        other = type(self)(self.settings, sleep=self._sleep, pacer=self.client.pacer)
        other._contacts = dict(self._contacts)  # requesters looked up already hold for the windows (a copy: threads)
        return other

    # --- search passes ----------------------------------------------------------------------

    def _search_pass(self, path: str, key: str, state: PassState, stream: str, kind: str,
                     handle: PageHandler, slack: int = 1, upper: int | None = None) -> Iterator[Page]:
        """One pass of `updated_at` search from `state`, a page (and its bookmark) per API page.

        `upper` bounds the pass (`updated_at < upper`: a backfill window); such a pass cannot
        end on a repeated token without having read its window, so that is an error there, and
        the window is read again from its start by the next sync.
        """
        if state.signpost is None:
            state.signpost = int(time.time()) - LOOKBACK_SECONDS
        signpost = state.signpost
        pager = StartingAfter(SOURCE, {"per_page": self.per_page}, token=state.after)
        handled: set[tuple[str, int]] = set()
        pagination: dict[str, Any] | None = pager.first_request()
        while pagination is not None:
            response = self._search_page(path, state, stream, pager, pagination, slack, upper)
            items = _list_field(response.data, key, path)
            fresh: list[dict[str, Any]] = []
            for item in items:
                ident, updated = _identity(item)
                if ident is None or updated is None:
                    fresh.append(item)  # the handler rejects it with a reason
                    continue
                if state.seen.get(ident) == updated or (ident, updated) in handled:
                    continue
                handled.add((ident, updated))
                fresh.append(item)
            page = handle(fresh)
            for ident, updated in _stored_versions(page, fresh, kind):
                if updated >= signpost:
                    state.seen[ident] = updated
            pagination = pager.next_request(response)
            if pager.repeated and upper is not None:
                raise SyncError(f"{SOURCE}/{stream}: the API handed back a starting_after it already gave while"
                                f" filling the month before {iso_utc(upper)}; the next sync reads that month again")
            if pager.repeated:
                held = state.since  # the results have no known order: what is missing may be older than anything seen
                log.warning("%s/%s: the API handed back a starting_after it already gave; ending this pass"
                            " (the next sync continues from %s)", SOURCE, stream, iso_utc(held))
                page.cursor = state.promoted(held).dumps()
            elif pagination is None:
                page.cursor = state.promoted(max(state.since, signpost)).dumps()
            else:
                state.after = pager.token
                page.cursor = state.dumps()
            yield page

    def _search_page(self, path: str, state: PassState, stream: str, pager: StartingAfter,
                     pagination: dict[str, Any], slack: int = 1, upper: int | None = None) -> ApiResponse:
        # `since - slack`: 1 second on conversations, whose docs leave open whether `>` on a date is
        # strict; more than a day on contacts, whose search compares calendar days. No `sort`: it is
        # not part of the 2.14 search request, and nothing here depends on an order.
        bounds: list[dict[str, Any]] = [{"field": "updated_at", "operator": ">", "value": state.since - slack}]
        if upper is not None:
            bounds.append({"field": "updated_at", "operator": "<", "value": upper})
        query = {"operator": "AND", "value": bounds}
        body = {"query": query, "pagination": pagination}
        try:
            return _checked(self.client.request("POST", path, json_body=body), path)
        except FatalApiError as exc:
            if exc.status != 400 or "starting_after" not in pagination:
                raise
            # A stored resume token the API no longer accepts: restart this pass, same signpost.
            log.warning("%s/%s: the stored starting_after was refused (%s); restarting the pass", SOURCE, stream, exc)
            state.after = None
            return self._search_page(path, state, stream, pager, pager.restart(), slack, upper)

    # --- admins, teams, companies, contacts ----------------------------------------------------

    def _read_admins(self) -> Page:
        page = Page()
        admins = _list_field(_checked(self.client.get("/admins"), "/admins").data, "admins", "/admins")
        teams = _list_field(_checked(self.client.get("/teams"), "/teams").data, "teams", "/teams")
        for admin in admins:
            keep_row(page, "admin", admin, "people", lambda a: admin_row(a, self.privacy))
        for team in teams:
            keep_row(page, "team", team, "groups", team_row)
        return page

    def _read_companies(self, cursor: str | None) -> Iterator[Page]:
        now = int(time.time())
        if cursor and cursor.isdigit() and now - int(cursor) < COMPANIES_EVERY_SECONDS:
            return
        pager = PageNumber({"per_page": min(self.per_page, COMPANIES_PER_PAGE)})
        params: dict[str, Any] | None = pager.first_request()
        read = 0
        while params is not None:
            page = Page()
            try:
                response = _checked(self.client.request("POST", "/companies/list", params=params), "/companies/list")
            except FatalApiError as exc:
                if exc.status not in (403, 404) or read:
                    raise
                # A token without access to companies: the other streams go on, the bookmark stays.
                page.warn(f"POST /companies/list refused ({exc.status}): companies are not read, so contacts"
                          " and conversations carry no organization names or countries; give the token"
                          " access to companies to read them")
                yield page
                return
            listed = _list_field(response.data, "data", "/companies/list")
            for company in listed:
                keep_row(page, "company", company, "organizations", organization_row)
            read += len(listed)
            params = pager.next_request(response)
            if params is None:
                page.cursor = str(now)
                total = response.data.get("total_count")
                if isinstance(total, int) and not isinstance(total, bool) and total > read:
                    page.warn(f"POST /companies/list returned {read:,} of {total:,} companies (it stops at"
                              f" {COMPANIES_LIST_CAP:,}); the other {total - read:,} are not stored")
            yield page

    def _contacts_page(self, items: list[dict[str, Any]]) -> Page:
        page = Page()
        for item in items:
            keep_row(page, "contact", item, "people", self._person_row)
        return page

    def _person_row(self, contact: Row) -> Row:
        row = person_row(contact, self.privacy)
        # Conversations read later in this sync take their requester's language and country from here.
        self._remember(row["source_id"], contact_facts(contact))
        return row

    def _remember(self, contact_id: str, facts: ContactFacts) -> None:
        if len(self._contacts) >= CONTACT_CACHE_LIMIT:
            self._contacts.clear()
        self._contacts[contact_id] = facts

    def _requesters(self, conversations: Iterable[Mapping[str, Any]]) -> dict[str, ContactFacts]:
        """Facts of each conversation's first contact: cached, else one search per 150 ids."""
        wanted = {cid for c in conversations if (cid := first_contact_id(c)) is not None}
        missing = sorted(wanted - self._contacts.keys())
        for start in range(0, len(missing), MAX_PER_PAGE):
            chunk = missing[start:start + MAX_PER_PAGE]
            body = {"query": {"field": "id", "operator": "IN", "value": chunk},
                    "pagination": {"per_page": MAX_PER_PAGE}}
            data = _checked(self.client.request("POST", "/contacts/search", json_body=body), "/contacts/search").data
            for contact in _list_field(data, "data", "/contacts/search"):
                try:
                    self._remember(record_id(contact["id"]), contact_facts(contact))
                except BAD_RECORD as exc:
                    log.warning("%s: contact lookup: skipping a contact that cannot be read (%s)", SOURCE, exc)
            for cid in chunk:
                self._contacts.setdefault(cid, UNKNOWN_CONTACT)  # deleted or merged contact
        return {cid: self._contacts.get(cid, UNKNOWN_CONTACT) for cid in wanted}

    # --- conversations ---------------------------------------------------------------------

    def _conversations_page(self, items: list[dict[str, Any]]) -> Page:
        page = Page()
        requesters = self._requesters(i for i in items if isinstance(i, dict))
        for item in items:
            keep(page, "conversation", item, lambda c: self._conversation_rows(c, requesters))
        return page

    def _conversation_rows(self, item: Row, requesters: Mapping[str, ContactFacts]) -> Iterator[tuple[str, Row]]:
        conversation, parts = self._with_parts(item)
        if conversation is None:
            return iter([("contacts", deleted_row(item))])
        facts = requesters.get(first_contact_id(conversation) or "", UNKNOWN_CONTACT)
        return conversation_records(conversation, parts, facts, self.privacy, self.bot_agent_ids)

    def _with_parts(self, item: dict[str, Any]) -> tuple[dict[str, Any] | None, list[dict[str, Any]] | None]:
        """The conversation and its parts; parts None when it has none; (None, None) when deleted."""
        stats = item.get("statistics")
        if isinstance(stats, dict) and stats.get("count_conversation_parts") == 0:
            return item, []
        path = f"/conversations/{record_id(item['id'])}"
        try:
            detail = _checked(self.client.get(path), path).data
        except FatalApiError as exc:
            if exc.status == 404:
                return None, None  # deleted between the search and this fetch
            raise
        parts_list = detail.get("conversation_parts")
        if not isinstance(parts_list, dict) or not isinstance(parts_list.get("conversation_parts"), list):
            raise RecordError(f"GET {path}: conversation_parts is not a list")
        return detail, parts_list["conversation_parts"]


# --- response helpers ------------------------------------------------------------------------


def _checked(response: ApiResponse, path: str) -> ApiResponse:
    if not isinstance(response.data, dict):
        raise MalformedResponse(f"{SOURCE}: {path}: expected a JSON object, got {type(response.data).__name__}")
    return response


def _list_field(data: Mapping[str, Any], key: str, path: str) -> list[Any]:
    value = data.get(key)
    if not isinstance(value, list):
        raise MalformedResponse(f"{SOURCE}: {path}: the response has no {key!r} list")
    return value


def _identity(item: Any) -> tuple[str | None, int | None]:
    if not isinstance(item, dict):
        return None, None
    ident, updated = item.get("id"), item.get("updated_at")
    ok_id = isinstance(ident, (str, int)) and not isinstance(ident, bool)
    ok_time = isinstance(updated, int) and not isinstance(updated, bool)
    return (str(ident) if ok_id else None), (updated if ok_time else None)


def _stored_versions(page: Page, items: list[dict[str, Any]], kind: str) -> Iterator[tuple[str, int]]:
    """(id, updated_at) of the items whose records made it into the page (not quarantined)."""
    rejected = {ident for ident, _ in page.rejected}
    for item in items:
        ident, updated = _identity(item)
        if ident is not None and updated is not None and rejected_id(kind, item) not in rejected:
            yield ident, updated
