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
  outbound e-mail, source 10, the agent's) at `created_at`. Reply facts are derived from the
  messages (`facts_from_events`), never from `stats.first_responded_at`: an outbound ticket
  the customer never answered has no reply, whatever `stats` say (catalogue 2c).
- `stats` give only the latest `resolved_at` / `reopened_at`: each time seen becomes a
  status event with an id made of its kind and time, so the store accumulates the history
  across syncs and derives first resolution and reopens from it (`facts_from_events`). A
  ticket no longer resolved although `stats` show no reopen after its resolution was
  reopened: that status change is an event too (`normalize.status_events`).
- Merges: the API marks no merged ticket; a closed ticket carrying Freshdesk's merge note
  ("This ticket is closed and merged into ticket #N", or the admin's `merge_note_texts`) is
  `merged` into N and counts nowhere (`normalize.merge_target`).
- Spam and deleted tickets are listed only under `filter=spam` / `filter=deleted`; each
  has its own stream and bookmark and marks the contact `deleted`.
- Handle time is the sum of a ticket's time entries (`time_spent_in_seconds`, else the
  "hh:mm" `time_spent`). A first or full read lists the account's time entries once (100 per
  call); an incremental read lists only those logged since the bookmark (`executed_after`)
  and sums again, one call each, just the changed tickets that have one (`TimeSheet`).
- Requesters' languages come from the contacts list (`_updated_since`): a second sync asks
  for no contact one at a time except the requester of a new ticket whom no list brought
  (`_requester_locale`). A second sync after N changed tickets thus costs the list pages of
  what changed plus one conversations call per changed ticket (bench/ingest.py --second-sync).
- Every record of every list (tickets, conversations, contacts, companies, agents, groups,
  time entries, satisfaction ratings) goes through `connectors.records.keep`: one of an
  unexpected shape, even an item that is not an object, is quarantined; the sync goes on.
- Satisfaction ratings: the default question is CSAT on Freshdesk's -103..103 codes;
  other questions are stored only when mapped (`survey_questions` of the settings, or of the
  constructor: question -> (kind, scale)); a custom question may be CSAT on the same codes.
- Bots (catalogue 2c): a ticket from source 12 (bot) holds the customer's conversation with
  the bot in its description, so it gets a bot message beside the customer's first one
  (`normalize.opening_messages`): resolved with no human reply, it is bot-only. Messages of
  the agent accounts listed in `bot_agent_ids` are the bot's on every source.
- Group, priority and agent changes: API v2 documents no history of them and a ticket shows only
  its current values (the contact row), so no change is stored (`contact_changes` stays empty: a
  value seen on an untouched ticket could not be read again once it changed, and the store must
  be rebuildable by a full read); see docs/freshdesk.md for what escalation Freshdesk can show.
- Channels: ticket `source` codes map as catalogue 2c says; `source_channels` and
  `source_platforms` map a code the account added (or override one).
"""

from __future__ import annotations

import email.utils
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, ClassVar

from connectors.base import (
    BackfillStart,
    CheckResult,
    ConfigError,
    FatalApiError,
    MalformedResponse,
    Page,
    PermissionDenied,
    Privacy,
    StreamSpec,
    SyncError,
)
from connectors.freshdesk.check import check
from connectors.freshdesk.client import client
from connectors.freshdesk.normalize import CHANNELS as CHANNELS  # explicit re-export
from connectors.freshdesk.normalize import (
    CSAT_QUESTION,
    DEFAULT_MERGE_NOTE,
    FRESHDESK_SCALE,
    PERSONAL,
    PLATFORMS,
    agent_row,
    company_row,
    group_row,
    merge_target,
    message_row,
    opening_messages,
    person_row,
    row_time,
    stats_of,
    status_events,
    survey_rows,
    ticket_fields,
    time_entry,
    vendor_times,
)
from connectors.freshdesk.normalize import ticket_status as ticket_status  # explicit re-export
from connectors.freshdesk.settings import FreshdeskSettings
from connectors.http import ApiResponse, ClientOwner, RatePacer
from connectors.paging import LinkHeader, PageCapReached
from connectors.records import BAD_RECORD, Row, epoch_of, iso_of, keep, keep_row, reason, rejected_id
from kpi_core.model import SCALES, RecordError, Status, SurveyKind, iso_utc, primary_language

log = logging.getLogger(__name__)

API = "/api/v2"
MAX_PAGE = 300
MAX_PER_PAGE = 100
EPOCH = "1970-01-01T00:00:00Z"
# A second is "settled" once the server clock is this far past it: nothing new can still
# appear with that time, so the bookmark may step past it instead of re-listing it.
SETTLE_SECONDS = 60
STEADY = "s"
# Tickets created this long before the bookmark count as new (not stored yet): their requester is looked up.
NEW_TICKET_MARGIN = 3600

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
    """The newest time read (ISO UTC) and the ids already stored at exactly that second.

    `steady`: a read has reached the end of the list since the first sync, so every record
    changed before `at` is stored (a backfill that was stopped half-way is not steady). It
    is written as a third part, "time|ids|s"; a cursor without it reads as not steady.
    """

    at: str
    ids: set[str] = field(default_factory=set)
    steady: bool = False

    @classmethod
    def parse(cls, cursor: str, stream: str) -> Watermark:
        at, _, rest = cursor.partition("|")
        ids, _, flag = rest.partition("|")
        try:
            normalized = iso_utc(at)
        except RecordError:
            normalized = None
        if normalized is None:
            raise SyncError(f"freshdesk/{stream}: the stored cursor {cursor[:40]!r} is not readable; run sync --full")
        return cls(normalized, {i for i in ids.split(",") if i}, flag == STEADY)

    def encode(self) -> str:
        ids = ",".join(sorted(self.ids, key=_id_order))
        if self.steady:
            return f"{self.at}|{ids}|{STEADY}"
        return self.at + ("|" + ids if ids else "")

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
            return Watermark(_iso(moment + 1), steady=self.steady)
        return self


def _id_order(ident: str) -> tuple[int, str]:
    return (int(ident), "") if ident.isdigit() else (0, ident)


def _epoch(at: str) -> float:
    return float(epoch_of(at))


def _iso(epoch: float) -> str:
    return iso_of(epoch)


@dataclass
class _SharedSheet:
    """A time sheet listed once and shared by the threads of a backfill."""

    sheet: TimeSheet | None = None
    read: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class WindowPage:
    """One list page of a windowed read: the rows not stored before, and what follows it."""

    rows: list[dict[str, Any]]
    cursor: str | None
    more: bool


@dataclass
class TimeSheet:
    """Time entries summed by ticket, with the entries that did not read (quarantined as `time_entry/<id>`).

    `complete`: every entry of the account was listed, so a ticket without one has no
    handle time. Otherwise the list holds only recent entries: a ticket with one of them
    (or any ticket, `every_ticket`, when the list could not be read) is summed from its own
    list (`fetch`), any other keeps what is stored.
    """

    complete: bool
    every_ticket: bool = False
    seconds: dict[str, float] = field(default_factory=dict)
    broken: set[str] = field(default_factory=set)
    rejected: list[tuple[str, str]] = field(default_factory=list)
    fetch: Callable[[str], list[Any] | None] | None = None

    def add(self, row: Any) -> None:
        try:
            if not isinstance(row, dict):
                raise RecordError(f"expected an object, got {type(row).__name__}")
            ticket, seconds = time_entry(row)
        except BAD_RECORD as exc:
            self.rejected.append((rejected_id("time_entry", row), reason(exc)))
            ticket_id = row.get("ticket_id") if isinstance(row, dict) else None
            if isinstance(ticket_id, (int, str)) and not isinstance(ticket_id, bool):
                self.broken.add(str(ticket_id))
            return
        self.seconds[ticket] = self.seconds.get(ticket, 0.0) + seconds

    def seconds_of(self, ticket_id: str, new_ticket: bool) -> tuple[bool, float | None]:
        """(known, handle seconds): unknown leaves the stored value as it is."""
        if not self.complete and (self.every_ticket or ticket_id in self.seconds or ticket_id in self.broken):
            entries = self.fetch(ticket_id) if self.fetch else None
            if entries is None:
                return False, None
            self.seconds.pop(ticket_id, None)
            self.broken.discard(ticket_id)
            for row in entries:
                self.add(row)
            self.rejected = list(dict.fromkeys(self.rejected))  # an entry listed twice is reported once
        elif not self.complete:
            return (True, None) if new_ticket else (False, None)
        if ticket_id in self.broken:
            return False, None  # one of its entries did not read: its handle time is not known
        return True, self.seconds.get(ticket_id)

    def take_rejected(self) -> list[tuple[str, str]]:
        out, self.rejected = self.rejected, []
        return out


def _ident(row: Any) -> str:
    return str(row.get("id")) if isinstance(row, dict) else "?"


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
        pacer: RatePacer | None = None,
    ) -> None:
        self.client = client(settings, sleep=sleep)
        if pacer is not None:
            self.client.pacer = pacer
        self.settings = settings
        self.privacy = Privacy.choose(PERSONAL, settings.privacy)
        self.max_page = max_page
        self._survey_override = survey_questions
        self._sleep = sleep
        # Every time entry, listed once for all the windows of a backfill (shared with spawned connectors).
        self._window_sheet = _SharedSheet()
        self._own_sheet: TimeSheet | None = None
        self.per_page = min(settings.page_size or MAX_PER_PAGE, MAX_PER_PAGE)
        self.start = f"{settings.start_date.isoformat()}T00:00:00Z"
        configured = {q: (a.kind.value, a.scale) for q, a in settings.survey_questions.items()}
        self.survey_questions = _checked_questions({**configured, **(survey_questions or {})})
        self.bot_ids = frozenset(settings.bot_agent_ids)
        self.channels = {**CHANNELS, **settings.source_channels}
        self.platforms = {**PLATFORMS, **settings.source_platforms}
        self.merge_notes = tuple(dict.fromkeys((DEFAULT_MERGE_NOTE, *settings.merge_note_texts)))
        self._agents: frozenset[str] | None = None
        self._languages: dict[str, str | None] = {}
        self._all_contacts_read = False
        self._time_sheet: TimeSheet | None = None
        self._new_since: str | None = None
        self._time_entries_available = True

    # --- the Connector protocol ---------------------------------------------------------

    def streams(self) -> Sequence[StreamSpec]:
        return STREAMS

    def check(self) -> CheckResult:
        """One call to `GET /api/v2/agents/me`: do the credentials work? (`check-config --online`)"""
        return check(self.client, self.settings)

    def rewind_cursor(self, stream: StreamSpec, cursor: str | None, since: datetime) -> str | None:
        """A bookmark from which `read` re-reads every change at or after `since` (None: full lists)."""
        if stream.name not in WINDOWED_STREAMS or cursor is None:
            return None
        moment = _iso(since.timestamp())
        mark = Watermark.parse(cursor, stream.name)
        return cursor if mark.at <= moment else Watermark(moment, steady=mark.steady).encode()

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

    def _get_list(self, path: str, params: Mapping[str, Any]) -> tuple[list[Any], ApiResponse]:
        """A list page's items as sent: an item that is not an object is quarantined by `keep`, never fatal."""
        resp = self.client.get(path, params)
        if not isinstance(resp.data, list):
            raise MalformedResponse(
                f"freshdesk: GET {resp.path}: expected a JSON array, got {type(resp.data).__name__}")
        return resp.data, resp

    def _all_pages(self, path: str, params: Mapping[str, Any] | None = None) -> Iterator[list[Any]]:
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
                at, ident = row_time(row, time_key), _ident(row)
                if at is not None and mark.seen(at, ident):
                    continue
                fresh.append(row)
                if at is not None:
                    mark.advance(at, ident)
            tail = sum(1 for row in rows if row_time(row, time_key) == mark.at)
            following = links.next_page(resp)
            if following is None:
                mark.steady = True  # the end of the list: everything changed before `at` is stored
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
                    agents.add(_ident(row))
            yield page
        self._agents = frozenset(agents)

    def _read_groups(self, cursor: str | None) -> Iterator[Page]:
        return self._read_directory("groups", "group", "groups", group_row)

    def _read_companies(self, cursor: str | None) -> Iterator[Page]:
        return self._read_directory("companies", "company", "organizations", company_row)

    def _read_directory(self, path: str, kind: str, table: str, build: Callable[[Row], Row | None]) -> Iterator[Page]:
        """A list read whole each sync, one page of rows per API page."""
        for rows in self._all_pages(f"{API}/{path}"):
            page = Page()
            for row in rows:
                keep_row(page, kind, row, table, build)
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
                language = row.get("language") if isinstance(row, dict) else None
                self._languages[_ident(row)] = language if isinstance(language, str) else None
        self._all_contacts_read = True

    def _person(self, row: Row) -> Row:
        person = person_row(row, self.privacy)
        self._languages[person["source_id"]] = person["locale"]  # the tickets' requesters' language
        return person

    def _agent_ids(self) -> frozenset[str]:
        if self._agents is None:
            self._agents = frozenset(_ident(row) for rows in self._all_pages(f"{API}/agents") for row in rows)
        return self._agents

    def _requester_locale(self, requester_id: str | None, new_ticket: bool) -> tuple[bool, str | None]:
        """(known, language code) of a ticket's requester.

        Tickets carry no language and `include=requester` omits it. This sync knows the
        contacts the contacts stream read (all of them on a first sync, else those changed
        since its bookmark, `_updated_since`), so a requester it has not met has not changed:
        a ticket stored before keeps the language stored with it (the row leaves it out), and
        only a new ticket's unmet requester is asked for, once per sync.
        """
        if requester_id is None:
            return True, None
        if requester_id not in self._languages:
            if not new_ticket:
                return False, None
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
        return True, self._languages[requester_id]

    # --- tickets ----------------------------------------------------------------------------

    def _read_tickets(self, cursor: str | None, until: str | None = None) -> Iterator[Page]:
        """Tickets changed since the bookmark; `until` (a backfill window's end) stops once past it."""
        # The description (the first message's text) costs 2 more credits per call: asked only to be stored or
        # read in memory (conversation insight).
        include = "stats,description" if self.privacy.bodies or self.privacy.read_bodies else "stats"
        params = {"order_by": "updated_at", "order_type": "asc", "include": include}
        agents = self._agent_ids()
        mark = Watermark.parse(cursor, "tickets") if cursor else None
        # Only after a read reached the end is every ticket changed before the bookmark stored; a
        # backfill stopped half-way (or a first sync) reads as a backfill: all requesters, all entries.
        since = mark.at if mark is not None and mark.steady else None
        # A ticket created this close before the bookmark may not have been stored by the last sync.
        self._new_since = None if since is None else _iso(_epoch(since) - NEW_TICKET_MARGIN)
        self._time_sheet = None
        first = True
        for window in self._windowed("tickets", f"{API}/tickets", params, "updated_since", "updated_at", cursor,
                                     cursor_every_page=True):
            page = Page(cursor=window.cursor)
            if first:
                if since is None:
                    self._learn_all_languages()
                self._time_sheet = self._read_time_sheet(since) if until is None else self._whole_time_sheet()
            first = False
            for row in window.rows:
                if until is not None and (row_time(row, "updated_at") or "") >= until:
                    continue  # the next window's (read there): no conversations call for it here
                keep(page, "ticket", row, lambda r: self._ticket_rows(r, agents))
            self._flush_rejected(page)
            yield page
            if until is not None and window.cursor and Watermark.parse(window.cursor, "tickets").at >= until:
                break  # ordered by updated_at: the window is read
        self._time_sheet = None

    def _whole_time_sheet(self) -> TimeSheet | None:
        """Every time entry, listed once for all the windows a backfill reads, whichever thread asks first.

        A sheet that could not list every entry reads them per ticket, with the client of the
        connector that made it: that one is not shared with other threads.
        """
        with self._window_sheet.lock:
            if not self._window_sheet.read:
                self._window_sheet.sheet, self._window_sheet.read = self._read_time_sheet(None), True
            sheet = self._window_sheet.sheet
        if sheet is None or sheet.complete:
            return sheet
        if self._own_sheet is None:
            self._own_sheet = self._read_time_sheet(None)
        return self._own_sheet

    # --- newest-first backfill (connectors.base.Backfillable) ---------------------------------

    def backfill_start(self, stream: StreamSpec) -> BackfillStart | None:
        """The first page of the oldest-first ticket list (ordered by `updated_at`); None for other streams."""
        if stream.name != "tickets":
            return None
        first = next(iter(self._read_tickets(None)), Page())
        stamps = [row["updated_at"] for row in first.records.get("contacts", ()) if row.get("updated_at")]
        oldest = datetime.fromtimestamp(_epoch(min(stamps)), timezone.utc) if stamps else None
        complete = first.cursor is None or Watermark.parse(first.cursor, "tickets").steady
        return BackfillStart(first=first, position=first.cursor, oldest=oldest, complete=complete)

    def head_cursor(self, stream: StreamSpec, since: datetime) -> str:
        """A bookmark reading every ticket changed from `since` on (not steady: read as a first sync)."""
        return Watermark(_iso(since.timestamp())).encode()

    def read_window(self, stream: StreamSpec, start: datetime, end: datetime, position: str | None) -> Iterator[Page]:
        """Tickets by `updated_since` = the window's start (or `position`), until they pass its end."""
        if stream.name != "tickets":
            raise ConfigError(f"freshdesk: stream {stream.name!r} has no time window to backfill")
        cursor = position or Watermark(_iso(start.timestamp())).encode()
        return self._read_tickets(cursor, until=_iso(end.timestamp()))

    def spawn(self) -> FreshdeskConnector:
        """A connector with its own session, pacing its calls with this one's (one budget per account)."""
        other = type(self)(self.settings, max_page=self.max_page, survey_questions=self._survey_override,
                           sleep=self._sleep, pacer=self.client.pacer)
        # What this connector has learnt already (the agents, every requester's language, the time
        # entries) holds for the windows too: spawned readers share it rather than list it again.
        other._agents, other._window_sheet = self._agents, self._window_sheet
        if self._all_contacts_read:
            other._languages, other._all_contacts_read = self._languages, True
        return other

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
        return ticket_fields(row, self.privacy, self.channels, self.platforms)

    def _ticket_rows(self, row: Row, agents: frozenset[str]) -> Iterator[tuple[str, Row]]:
        """A ticket with its messages and status events (`keep` stores all of them or none)."""
        contact = self._ticket_fields(row)
        ticket_id = contact["source_id"]
        stats = stats_of(row)
        new = self._new_since is None or contact["created_at"] >= self._new_since
        known, locale = self._requester_locale(contact["requester_id"], new)
        if known:
            contact.update({"locale": locale, "language": primary_language(locale)})
        contact.update({"facts_from_events": True, "messages_truncated": False, "vendor": vendor_times(stats)})
        if self._time_sheet is not None:
            known, seconds = self._time_sheet.seconds_of(ticket_id, new)
            if known:
                contact["handle_seconds"] = seconds
        status = contact["status"]
        conversations = self._conversations(ticket_id)
        merged, primary = merge_target(status, conversations, self.merge_notes)
        if merged:
            contact.update({"status": Status.MERGED, "merged_into": primary})
        yield "contacts", contact
        for message in opening_messages(contact, row["source"], row.get("description_text"), self.bot_ids,
                                        self.privacy):
            yield "messages", message
        for conversation in conversations:
            yield "messages", message_row(ticket_id, conversation, agents, self.bot_ids, self.privacy)
        for event in status_events(ticket_id, stats, status, contact["updated_at"]):
            yield "status_events", event

    def _conversations(self, ticket_id: str) -> list[dict[str, Any]]:
        try:
            return [row for rows in self._all_pages(f"{API}/tickets/{ticket_id}/conversations") for row in rows]
        except FatalApiError as exc:
            if exc.status == 404:  # deleted or marked spam since it was listed; its own stream says so
                return []
            raise

    # --- time entries -------------------------------------------------------------------------

    def _read_time_sheet(self, since: str | None) -> TimeSheet | None:
        """The time entries this read needs (None: not available to this key).

        A first or full read lists every entry of the account (100 per call). An incremental
        read lists only the entries logged since the bookmark (`executed_after`, less a
        margin): a changed ticket with one of them has its entries summed again (one call
        for that ticket), every other changed ticket keeps the handle time stored with it.
        An entry backdated to before the bookmark is therefore not seen until a full sync.
        """
        if not self._time_entries_available:
            return None
        params = {} if since is None else {"executed_after": _iso(_epoch(since) - SETTLE_SECONDS)}
        sheet = TimeSheet(complete=since is None)
        try:
            for rows in self._all_pages(f"{API}/time_entries", params):
                for row in rows:
                    sheet.add(row)
        except PermissionDenied:
            self._time_entries_disabled()
            return None
        except PageCapReached:
            log.info("freshdesk: too many time entries to list at once; reading them per ticket")
            sheet = TimeSheet(complete=False, every_ticket=True)
        sheet.fetch = self._ticket_time_entries
        return sheet

    def _ticket_time_entries(self, ticket_id: str) -> list[Any] | None:
        try:
            return [row for rows in self._all_pages(f"{API}/tickets/{ticket_id}/time_entries") for row in rows]
        except PermissionDenied:
            self._time_entries_disabled()
            return None

    def _flush_rejected(self, page: Page) -> None:
        if self._time_sheet is not None:
            for record_id, why in self._time_sheet.take_rejected():
                page.reject(record_id, why)

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




def _checked_questions(questions: SurveyQuestions) -> dict[str, tuple[str, str]]:
    out = {}
    for question, (kind, scale) in questions.items():
        if kind not in {k.value for k in SurveyKind}:
            raise ConfigError(f"freshdesk: survey question {question!r}: unknown kind {kind!r}")
        if scale == FRESHDESK_SCALE.name and kind != SurveyKind.CSAT:
            raise ConfigError(f"freshdesk: survey question {question!r}: the {scale} scale holds answer codes;"
                              f" only a csat question uses it")
        if scale not in SCALES and scale != FRESHDESK_SCALE.name:
            raise ConfigError(f"freshdesk: survey question {question!r}: unknown scale {scale!r}")
        if question == CSAT_QUESTION:
            raise ConfigError(f"freshdesk: {CSAT_QUESTION!r} is always CSAT on the {FRESHDESK_SCALE.name} scale")
        out[question] = (kind, scale)
    return out
