"""Freshdesk (API v2) connector: tickets with their conversations, ratings and people.

Where the Freshdesk API surprises (reference §3), and what this connector does about it:
- `GET /tickets` without `updated_since` returns only tickets created in the last 30 days,
  so every ticket list sends `updated_since` (the bookmark, or `start_date` on a first or
  `--full` sync), ordered by `updated_at` ascending, 100 per page, `include=stats`.
- Page numbers stop at 300, and they shift when a ticket already read changes (or is
  deleted) during a long read, so following them can skip a ticket. After each page the
  read asks again from page 1 with `updated_since` = the newest `updated_at` received
  (following page numbers only through a run of tickets that share one second).
  `updated_since` is inclusive, so boundary tickets come again; the bookmark "time|ids"
  (the newest `updated_at` and the ids already stored at that second) skips them, on a
  re-query as on a resumed sync. The bookmark moves with every stored page.
- The ticket's `description` is the first message and is not repeated in its
  conversations: message #0 is synthesized from the ticket (the requester's, or for an
  outbound e-mail, source 10, the agent's) at `created_at`.
- `stats` give only the latest `resolved_at` / `reopened_at`: each time seen becomes a
  status event with an id made of its kind and time, so the store accumulates the history
  across syncs and derives first resolution and reopens from it (`facts_from_events`).
- Spam and deleted tickets are listed only under `filter=spam` / `filter=deleted`; each
  has its own stream and bookmark and marks the contact `deleted`.
- Handle time is the sum of a ticket's time entries ("hh:mm"). A read that touches many
  tickets (a backfill, or more than a page of changes) lists the account's time entries
  once (100 per call) instead of one call per ticket; a small incremental read asks per
  changed ticket, because the account-wide list cannot be filtered by change time.
- Satisfaction ratings: the default question is CSAT on Freshdesk's -103..103 codes;
  other questions are stored only when mapped (`survey_questions`: question -> (kind, scale)).
- Freshdesk marks no bot: messages of the agent accounts listed in `bot_agent_ids` are
  the bot's.
"""

from __future__ import annotations

import email.utils
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from connectors.base import (
    ConfigError,
    FatalApiError,
    MalformedResponse,
    Page,
    PermissionDenied,
    Privacy,
    StreamSpec,
    SyncError,
)
from connectors.freshdesk.client import client
from connectors.freshdesk.normalize import CHANNELS as CHANNELS  # explicit re-export
from connectors.freshdesk.normalize import (
    CSAT_QUESTION,
    FRESHDESK_SCALE,
    PERSONAL,
    agent_row,
    company_row,
    first_message,
    group_row,
    message_row,
    parse_time_spent,
    person_row,
    row_time,
    stats_of,
    status_events,
    survey_rows,
    ticket_fields,
    vendor_times,
)
from connectors.freshdesk.normalize import ticket_status as ticket_status  # explicit re-export
from connectors.freshdesk.settings import FreshdeskSettings
from connectors.http import ApiResponse, ClientOwner
from connectors.paging import LinkHeader, PageCapReached
from connectors.records import Row, epoch_of, iso_of, keep, keep_row
from kpi_core.model import SCALES, RecordError, SurveyKind, iso_utc, primary_language

log = logging.getLogger(__name__)

API = "/api/v2"
MAX_PAGE = 300
MAX_PER_PAGE = 100
EPOCH = "1970-01-01T00:00:00Z"
# A second is "settled" once the server clock is this far past it: nothing new can still
# appear with that time, so the bookmark may step past it instead of re-listing it.
SETTLE_SECONDS = 60

TICKET_TABLES = ("contacts", "messages", "status_events")
STREAMS: tuple[StreamSpec, ...] = (
    StreamSpec("agents", ("people",), "agents and their languages (full list each sync)"),
    StreamSpec("groups", ("groups",), "groups (full list each sync)"),
    StreamSpec("companies", ("organizations",), "companies (full list each sync)"),
    StreamSpec("contacts", ("people",), "customers changed since the bookmark (_updated_since)"),
    StreamSpec("tickets", TICKET_TABLES, "tickets by updated_at, their conversations, stats and time entries"),
    StreamSpec("deleted_tickets", ("contacts",), "tickets deleted since the bookmark (filter=deleted)"),
    StreamSpec("spam_tickets", ("contacts",), "tickets marked spam since the bookmark (filter=spam)"),
    StreamSpec("satisfaction_ratings", ("survey_responses",), "answered satisfaction surveys (created_since)"),
)

WINDOWED_STREAMS = frozenset({"contacts", "tickets", "deleted_tickets", "spam_tickets", "satisfaction_ratings"})

SurveyQuestions = Mapping[str, tuple[str, str]]


# --- the bookmark -------------------------------------------------------------------------


@dataclass
class Watermark:
    """The newest time read (ISO UTC) and the ids already stored at exactly that second."""

    at: str
    ids: set[str] = field(default_factory=set)

    @classmethod
    def parse(cls, cursor: str, stream: str) -> Watermark:
        at, _, ids = cursor.partition("|")
        try:
            normalized = iso_utc(at)
        except RecordError:
            normalized = None
        if normalized is None:
            raise SyncError(f"freshdesk/{stream}: the stored cursor {cursor[:40]!r} is not readable; run sync --full")
        return cls(normalized, {i for i in ids.split(",") if i})

    def encode(self) -> str:
        return self.at + ("|" + ",".join(sorted(self.ids, key=_id_order)) if self.ids else "")

    def seen(self, at: str, ident: str) -> bool:
        """Stored already: the same record at the bookmark's own second (inclusive `since`)."""
        return at == self.at and ident in self.ids

    def advance(self, at: str, ident: str) -> None:
        if at > self.at:
            self.at, self.ids = at, {ident}
        elif at == self.at:
            self.ids.add(ident)

    def settled(self, server_now: float) -> Watermark:
        """Step past `at` when that second is long over: its records are all stored."""
        moment = _epoch(self.at)
        if self.ids and moment + 1 <= server_now - SETTLE_SECONDS:
            return Watermark(_iso(moment + 1))
        return self


def _id_order(ident: str) -> tuple[int, str]:
    return (int(ident), "") if ident.isdigit() else (0, ident)


def _epoch(at: str) -> float:
    return float(epoch_of(at))


def _iso(epoch: float) -> str:
    return iso_of(epoch)


@dataclass
class WindowPage:
    """One list page of a windowed read: the rows not stored before, and what follows it."""

    rows: list[dict[str, Any]]
    cursor: str | None
    more: bool


# --- the connector -------------------------------------------------------------------------


class FreshdeskConnector(ClientOwner):
    """Reads a Freshdesk account into normalized records, one stream at a time."""

    name: ClassVar[str] = "freshdesk"

    def __init__(
        self,
        settings: FreshdeskSettings,
        *,
        max_page: int = MAX_PAGE,
        survey_questions: SurveyQuestions | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client(settings, sleep=sleep)
        self.settings = settings
        self.privacy = Privacy.choose(PERSONAL, settings.privacy)
        self.max_page = max_page
        self.per_page = min(settings.page_size or MAX_PER_PAGE, MAX_PER_PAGE)
        self.start = f"{settings.start_date.isoformat()}T00:00:00Z"
        self.survey_questions = _checked_questions(survey_questions or {})
        self.bot_ids = frozenset(settings.bot_agent_ids)
        self._agents: frozenset[str] | None = None
        self._languages: dict[str, str | None] = {}
        self._all_contacts_read = False
        self._time_index: dict[str, float] | None = None
        self._time_entries_available = True

    # --- the Connector protocol ---------------------------------------------------------

    def streams(self) -> Sequence[StreamSpec]:
        return STREAMS

    def rewind_cursor(self, stream: StreamSpec, cursor: str | None, since: datetime) -> str | None:
        """A bookmark from which `read` re-reads every change at or after `since` (None: full lists)."""
        if stream.name not in WINDOWED_STREAMS or cursor is None:
            return None
        moment = _iso(since.timestamp())
        return cursor if Watermark.parse(cursor, stream.name).at <= moment else Watermark(moment).encode()

    def read(self, stream: StreamSpec, cursor: str | None, full: bool = False) -> Iterator[Page]:
        """Yield pages of `stream` changed since `cursor` (None or `full`: since start_date)."""
        readers: dict[str, Callable[[str | None], Iterator[Page]]] = {
            "agents": self._read_agents,
            "groups": self._read_groups,
            "companies": self._read_companies,
            "contacts": self._read_contacts,
            "tickets": self._read_tickets,
            "deleted_tickets": lambda c: self._read_removed_tickets("deleted_tickets", "deleted", c),
            "spam_tickets": lambda c: self._read_removed_tickets("spam_tickets", "spam", c),
            "satisfaction_ratings": self._read_ratings,
        }
        reader = readers.get(stream.name)
        if reader is None:
            raise ConfigError(f"freshdesk: unknown stream {stream.name!r}")
        return reader(None if full else cursor)

    # --- HTTP helpers ---------------------------------------------------------------------

    def _get_list(self, path: str, params: Mapping[str, Any]) -> tuple[list[dict[str, Any]], ApiResponse]:
        resp = self.client.get(path, params)
        if not isinstance(resp.data, list):
            raise MalformedResponse(
                f"freshdesk: GET {resp.path}: expected a JSON array, got {type(resp.data).__name__}")
        rows = [row for row in resp.data if isinstance(row, dict)]
        if len(rows) != len(resp.data):
            raise MalformedResponse(f"freshdesk: GET {resp.path}: the array holds items that are not objects")
        return rows, resp

    def _all_pages(self, path: str, params: Mapping[str, Any] | None = None) -> Iterator[list[dict[str, Any]]]:
        """Every page of a list that has no time filter (agents, groups, a ticket's conversations)."""
        pager = LinkHeader(self.name, {**(params or {}), "per_page": self.per_page}, max_page=self.max_page)
        query: dict[str, Any] | None = pager.first_request()
        while query is not None:
            rows, resp = self._get_list(path, query)
            yield rows
            query = pager.next_request(resp)

    def _windowed(
        self, stream: str, path: str, params: Mapping[str, Any], since_param: str, time_key: str,
        cursor: str | None, *, cursor_every_page: bool,
    ) -> Iterator[WindowPage]:
        """Pages of a list ordered by `time_key` ascending, from the bookmark to the end.

        Past the page cap the read restarts at page 1 from the newest time received;
        rows already stored at the bookmark's second are left out.
        """
        mark = Watermark.parse(cursor, stream) if cursor else Watermark(self.start)
        since, page, server_start = mark.at, 1, None
        links = LinkHeader(self.name, params)  # only read: this loop chooses the next page itself
        while True:
            rows, resp = self._get_list(path, {**params, since_param: since, "per_page": self.per_page, "page": page})
            server_start = server_start if server_start is not None else server_time(resp)
            fresh = []
            for row in rows:
                at, ident = row_time(row, time_key), str(row.get("id"))
                if at is not None and mark.seen(at, ident):
                    continue
                fresh.append(row)
                if at is not None:
                    mark.advance(at, ident)
            tail = sum(1 for row in rows if row_time(row, time_key) == mark.at)
            following = links.next_page(resp)
            if following is None:
                yield WindowPage(fresh, mark.settled(server_start).encode(), False)
                return
            yield WindowPage(fresh, mark.encode() if cursor_every_page else None, True)
            if mark.at != since and (tail <= self.per_page // 2 or following > self.max_page):
                # Re-query from the newest time rather than follow page numbers: a ticket read
                # earlier that changes meanwhile moves to the end and shifts every later page
                # by one, so the next page number would skip a ticket. This also keeps far
                # below the page cap, at the cost of re-reading the boundary second (~1 %).
                since, page = mark.at, 1
            elif following > self.max_page:
                raise SyncError(
                    f"freshdesk/{stream}: more than {self.max_page * self.per_page} records share the time"
                    f" {since}; Freshdesk's page cap leaves no way past them"
                )
            else:
                page = following  # most of the page shares one second: page through that run

    # --- reference lists ------------------------------------------------------------------

    def _read_agents(self, cursor: str | None) -> Iterator[Page]:
        agents: set[str] = set()
        for rows in self._all_pages(f"{API}/agents"):
            page = Page()
            for row in rows:
                if keep_row(page, "agent", row, "people", lambda r: agent_row(r, self.bot_ids, self.privacy)):
                    agents.add(str(row.get("id")))
            yield page
        self._agents = frozenset(agents)

    def _read_groups(self, cursor: str | None) -> Iterator[Page]:
        for rows in self._all_pages(f"{API}/groups"):
            page = Page()
            for row in rows:
                keep_row(page, "group", row, "groups", group_row)
            yield page

    def _read_companies(self, cursor: str | None) -> Iterator[Page]:
        for rows in self._all_pages(f"{API}/companies"):
            page = Page()
            for row in rows:
                keep_row(page, "company", row, "organizations", company_row)
            yield page

    def _read_contacts(self, cursor: str | None) -> Iterator[Page]:
        # The order of the contact list is not documented: the bookmark moves only at the end.
        for window in self._windowed("contacts", f"{API}/contacts", {}, "_updated_since", "updated_at", cursor,
                                     cursor_every_page=False):
            page = Page(cursor=window.cursor)
            for row in window.rows:
                keep_row(page, "contact", row, "people", self._person)
            yield page
        self._all_contacts_read = self._all_contacts_read or cursor is None

    def _learn_all_languages(self) -> None:
        """Every contact's language, for a read that touches many tickets (one call per 100 contacts)."""
        if self._all_contacts_read:
            return
        for window in self._windowed("contacts", f"{API}/contacts", {}, "_updated_since", "updated_at", EPOCH,
                                     cursor_every_page=False):
            for row in window.rows:
                language = row.get("language")
                self._languages[str(row.get("id"))] = language if isinstance(language, str) else None
        self._all_contacts_read = True

    def _person(self, row: Row) -> Row:
        person = person_row(row, self.privacy)
        self._languages[person["source_id"]] = person["locale"]  # the tickets' requesters' language
        return person

    def _agent_ids(self) -> frozenset[str]:
        if self._agents is None:
            self._agents = frozenset(str(row.get("id")) for rows in self._all_pages(f"{API}/agents") for row in rows)
        return self._agents

    def _requester_locale(self, requester_id: str | None) -> str | None:
        """The requester's language code; asks for the contact when this sync has not seen it.

        Tickets carry no language and `include=requester` omits it, so a small read looks up
        the requesters it has not met (at most one call each per sync).
        """
        if requester_id is None:
            return None
        if requester_id not in self._languages:
            try:
                resp = self.client.get(f"{API}/contacts/{requester_id}")
            except FatalApiError as exc:
                if exc.status != 404:
                    raise
                self._languages[requester_id] = None  # deleted contact, or an agent
            else:
                data = resp.data if isinstance(resp.data, dict) else {}
                language = data.get("language")
                self._languages[requester_id] = language if isinstance(language, str) else None
        return self._languages[requester_id]

    # --- tickets ----------------------------------------------------------------------------

    def _read_tickets(self, cursor: str | None) -> Iterator[Page]:
        # The description (the first message's text) costs 2 more credits per call: asked only to be stored.
        include = "stats,description" if self.privacy.bodies else "stats"
        params = {"order_by": "updated_at", "order_type": "asc", "include": include}
        agents = self._agent_ids()
        self._time_index = None
        first = True
        for window in self._windowed("tickets", f"{API}/tickets", params, "updated_since", "updated_at", cursor,
                                     cursor_every_page=True):
            if first and (cursor is None or window.more):
                self._load_time_index()
                self._learn_all_languages()
            first = False
            page = Page(cursor=window.cursor)
            for row in window.rows:
                keep(page, "ticket", row, lambda r: self._ticket_rows(r, agents))
            yield page
        self._time_index = None

    def _read_removed_tickets(self, stream: str, kind: str, cursor: str | None) -> Iterator[Page]:
        params = {"filter": kind, "order_by": "updated_at", "order_type": "asc"}
        for window in self._windowed(stream, f"{API}/tickets", params, "updated_since", "updated_at", cursor,
                                     cursor_every_page=True):
            page = Page(cursor=window.cursor)
            for row in window.rows:
                keep_row(page, "ticket", row, "contacts", lambda r: {**self._ticket_fields(r), "status": "deleted"})
            yield page

    def _ticket_fields(self, row: Mapping[str, Any]) -> Row:
        """The columns of a ticket that need no other call."""
        return ticket_fields(row, self.privacy)

    def _ticket_rows(self, row: Row, agents: frozenset[str]) -> Iterator[tuple[str, Row]]:
        """A ticket with its messages and status events (`keep` stores all of them or none)."""
        contact = self._ticket_fields(row)
        ticket_id = contact["source_id"]
        stats = stats_of(row)
        locale = self._requester_locale(contact["requester_id"])
        contact.update({
            "locale": locale, "language": primary_language(locale),
            "facts_from_events": True, "messages_truncated": False,
            "vendor": vendor_times(stats),
        })
        seconds = self._handle_seconds(ticket_id)
        if seconds is not None or self._time_entries_available:
            contact["handle_seconds"] = seconds
        yield "contacts", contact
        yield "messages", first_message(contact, row.get("description_text"), self.bot_ids, self.privacy)
        for conversation in self._conversations(ticket_id):
            yield "messages", message_row(ticket_id, conversation, agents, self.bot_ids, self.privacy)
        for event in status_events(ticket_id, stats):
            yield "status_events", event

    def _conversations(self, ticket_id: str) -> list[dict[str, Any]]:
        try:
            return [row for rows in self._all_pages(f"{API}/tickets/{ticket_id}/conversations") for row in rows]
        except FatalApiError as exc:
            if exc.status == 404:  # deleted or marked spam since it was listed; its own stream says so
                return []
            raise

    # --- time entries -------------------------------------------------------------------------

    def _load_time_index(self) -> None:
        """Sum every time entry of the account by ticket (the cheap way for a large read).

        The account-wide list has no documented order to move a time window along, so an
        account with more entries than the page cap allows is read per ticket instead.
        """
        index: dict[str, float] = {}
        try:
            for rows in self._all_pages(f"{API}/time_entries"):
                for row in rows:
                    _add_entry(index, row)
        except PermissionDenied:
            self._time_entries_disabled()
            return
        except PageCapReached:
            log.info("freshdesk: too many time entries to list at once; reading them per ticket")
            return
        self._time_index = index

    def _handle_seconds(self, ticket_id: str) -> float | None:
        if not self._time_entries_available:
            return None
        if self._time_index is not None:
            return self._time_index.get(ticket_id)
        index: dict[str, float] = {}
        try:
            for rows in self._all_pages(f"{API}/tickets/{ticket_id}/time_entries"):
                for row in rows:
                    _add_entry(index, row)
        except PermissionDenied:
            self._time_entries_disabled()
        return index.get(ticket_id)

    def _time_entries_disabled(self) -> None:
        log.warning("freshdesk: time entries are not available to this API key (plan or permission); "
                    "handle time is left as it was")
        self._time_entries_available = False

    # --- satisfaction ratings -------------------------------------------------------------------

    def _read_ratings(self, cursor: str | None) -> Iterator[Page]:
        # Order not documented: the bookmark moves only at the end of the read.
        for window in self._windowed("satisfaction_ratings", f"{API}/surveys/satisfaction_ratings", {},
                                     "created_since", "created_at", cursor, cursor_every_page=False):
            page = Page(cursor=window.cursor)
            for row in window.rows:
                keep(page, "rating", row, lambda r: (("survey_responses", response) for response in self._responses(r)))
            yield page

    def _responses(self, row: Mapping[str, Any]) -> list[Row]:
        return survey_rows(row, self.survey_questions, self.privacy)


# --- vendor vocabulary ------------------------------------------------------------------------


def server_time(resp: ApiResponse) -> float:
    """The server's clock from the `Date` header (ours when absent)."""
    value = resp.headers.get("Date")
    if value:
        try:
            return email.utils.parsedate_to_datetime(value).timestamp()
        except (TypeError, ValueError):
            pass
    return time.time()


def _add_entry(index: dict[str, float], row: Mapping[str, Any]) -> None:
    ticket = row.get("ticket_id")
    if ticket is None:
        return
    try:
        seconds = parse_time_spent(row.get("time_spent"))
    except RecordError as exc:
        log.warning("freshdesk: time entry %s of ticket %s skipped: %s", row.get("id"), ticket, exc)
        return
    index[str(ticket)] = index.get(str(ticket), 0.0) + seconds


def _checked_questions(questions: SurveyQuestions) -> dict[str, tuple[str, str]]:
    out = {}
    for question, (kind, scale) in questions.items():
        if kind not in {k.value for k in SurveyKind}:
            raise ConfigError(f"freshdesk: survey question {question!r}: unknown kind {kind!r}")
        if scale not in SCALES:
            raise ConfigError(f"freshdesk: survey question {question!r}: unknown scale {scale!r}")
        if question == CSAT_QUESTION:
            raise ConfigError(f"freshdesk: {CSAT_QUESTION!r} is always CSAT on the {FRESHDESK_SCALE.name} scale")
        out[question] = (kind, scale)
    return out
