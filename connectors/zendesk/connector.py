"""Zendesk Support connector: the incremental exports, normalized (reference §1, catalogue §1).

Streams, in order: users → groups → organizations → tickets → ticket_events → csat →
csat_survey_responses. People
come first because a comment does not say who wrote it: the store takes its author's role
from `people`. Two kinds of author show on the comment itself and are marked here:
`via.channel == "rule"` (a trigger or automation: role `system`) and
`via.channel` `answer_bot`/`ai_agent` and their variants (the AI agent, whose user is an ordinary
agent seat: role `bot`), whatever form `via` takes (object, display name, via id; see
`normalize.via_channel`); so are authors the admin lists in `bot_agent_ids` (role `bot`). A Talk
voice comment is the customer's call, answered by the agent it names (`normalize._call_rows`).

Where Zendesk surprises:
- Tickets and users use the cursor export; its `after_cursor` is the bookmark, also on the
  last page. Ticket pages sideload their users, whose roles are stored with the page, so a
  new requester's comments never wait for the next users pass to get their role.
- Ticket events and organizations only have the time-based export: a page ends on a whole
  second and the next one repeats that second (upserts by id absorb it); a page lying
  entirely inside one second is stepped over, since its whole second was delivered.
- Group, priority and assignee changes come from the same ticket events as the status history
  (`Create`/`Change` child events keyed by the field's name, `normalize.field_change_row`).
- Reply and resolution facts are derived by the store from the comments and status changes
  of the ticket events (`facts_from_events`); tickets created before `start_date`, whose early
  events are not read, take them from the ticket's `metric_set` instead (minute precision).
"""

from __future__ import annotations

import logging
import time as clock
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, time, timedelta, timezone
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
)
from connectors.http import ApiResponse, ClientOwner, RatePacer
from connectors.paging import CursorExport, CursorList, TimeExport
from connectors.records import BAD_RECORD, epoch_of, iso_time, keep, keep_row
from connectors.zendesk.check import check
from connectors.zendesk.client import client
from connectors.zendesk.normalize import (
    PERSONAL,
    ROLES,
    TICKET_EXTRA_DROP,
    call_seconds,
    contact_row,
    event_rows,
    group_row,
    legacy_rating_row,
    organization_row,
    person_role_row,
    person_row,
    survey_response_row,
    survey_response_times,
)
from connectors.zendesk.settings import ZendeskSettings
from kpi_core.model import RecordError

log = logging.getLogger(__name__)

SOURCE = "zendesk"
EXPORT_MAX = 1000  # per_page of the incremental exports
LIST_MAX = 100  # page[size] of the cursor-paginated lists

STREAMS = (
    StreamSpec("users", ("people",), "incremental user export (cursor)"),
    StreamSpec("groups", ("groups",), "all groups (cursor list)"),
    StreamSpec("organizations", ("organizations",), "incremental organization export (time-based)"),
    StreamSpec("tickets", ("contacts", "people"), "incremental ticket export (cursor)"),
    StreamSpec("ticket_events", ("messages", "status_events", "contact_changes"),
               "comments, status changes and group/priority/assignee changes (time-based)"),
    StreamSpec("csat", ("survey_responses",), "legacy satisfaction ratings (cursor list, look-back)"),
    StreamSpec("csat_survey_responses", ("survey_responses",), "new CSAT survey responses (cursor list, look-back)"),
)
# Which CSAT flavour each CSAT stream reads, and the `csat` settings that read it.
CSAT_STREAMS = {"csat": "legacy", "csat_survey_responses": "survey_responses"}



class ZendeskConnector(ClientOwner):
    """Reads a Zendesk Support account through its incremental exports."""

    name: ClassVar[str] = SOURCE
    # A legacy survey can be answered until its ticket closes, and Zendesk closes solved
    # tickets 28 days after solving at the latest (its default automation: 4 days).
    csat_lookback: ClassVar[timedelta] = timedelta(days=28)

    def __init__(self, settings: ZendeskSettings, pacer: RatePacer | None = None) -> None:
        self.settings = settings
        self.client = client(settings)
        if pacer is not None:
            self.client.pacer = pacer
        self.privacy = Privacy.choose(PERSONAL, settings.privacy)
        self.ticket_drop = self.privacy.drop | TICKET_EXTRA_DROP
        self.start_epoch = int(datetime.combine(settings.start_date, time(), timezone.utc).timestamp())
        self.start_iso = f"{settings.start_date.isoformat()}T00:00:00Z"
        self.export_size = min(settings.page_size or EXPORT_MAX, EXPORT_MAX)
        self.list_size = min(settings.page_size or LIST_MAX, LIST_MAX)
        # Agent seats a bot posts through (catalogue 2c: bot_agent_ids applies to every source).
        self.bot_ids = frozenset(settings.bot_agent_ids)
        self.handle_field = None if settings.handle_time_field is None else str(settings.handle_time_field)
        # (user id, role) already stored in this run: a sideloaded user seen again adds nothing.
        self._roles_sent: set[tuple[str, str]] = set()
        self._readers: dict[str, Callable[[str | None], Iterator[Page]]] = {
            "users": self._read_users, "groups": self._read_groups, "organizations": self._read_organizations,
            "tickets": self._read_tickets, "ticket_events": self._read_ticket_events,
            "csat": self._read_legacy_csat, "csat_survey_responses": self._read_survey_responses,
        }

    def streams(self) -> tuple[StreamSpec, ...]:
        return STREAMS

    def check(self) -> CheckResult:
        """One call to `GET /api/v2/users/me`: are the credentials an admin's? (`check-config --online`)"""
        return check(self.client, self.settings)

    def read(self, stream: StreamSpec, cursor: str | None, full: bool = False) -> Iterator[Page]:
        """Pages changed since `cursor` (or since `start_date` when None or `full`)."""
        reader = self._readers.get(stream.name)
        if reader is None:
            raise ConfigError(f"{SOURCE}: unknown stream {stream.name!r}")
        return reader(None if full else cursor)

    def rewind_cursor(self, stream: StreamSpec, cursor: str | None, since: datetime) -> str | None:
        """A cursor that re-reads `stream` from `since` (never later than `cursor`); None for groups."""
        epoch = int(since.timestamp())
        if cursor is None or stream.name == "groups":
            return None
        if stream.name in ("users", "tickets"):
            position, _ = _split_export_cursor(cursor, epoch)
            return cursor if position <= epoch else f"{epoch}:"
        if stream.name in CSAT_STREAMS:
            mode = CSAT_STREAMS[stream.name]
            mark = _csat_mark(cursor, mode)
            if mark is None:
                return None
            since_mark = epoch * 1000 if mode == "survey_responses" else epoch
            return cursor if mark <= since_mark else f"{mode}:{since_mark}"
        return str(min(_cursor_epoch(cursor, stream.name), epoch))

    # --- streams ------------------------------------------------------------------------

    def _read_users(self, cursor: str | None) -> Iterator[Page]:
        # From the beginning of time: old customers open new tickets.
        return self._cursor_export("/api/v2/incremental/users/cursor", "users", _updated_epoch, cursor, 0, {},
                                   self._users_page)

    def _read_groups(self, cursor: str | None) -> Iterator[Page]:
        """Groups have no export; the whole (short) list is read each time, with no bookmark."""
        for body in self._list_pages("/api/v2/groups", {"page[size]": self.list_size}, "groups"):
            page = Page()
            for group in body["groups"]:
                keep_row(page, "group", group, "groups", group_row)
            yield page

    def _read_organizations(self, cursor: str | None) -> Iterator[Page]:
        return self._time_export("/api/v2/incremental/organizations", cursor, 0, {},
                                 self._organizations_page)

    def _read_tickets(self, cursor: str | None, start: int | None = None, until: int | None = None,
                      capture: Callable[[Mapping[str, Any]], None] | None = None) -> Iterator[Page]:
        params = {"include": "metric_sets,users,groups,organizations"}
        if self.settings.include_ai_agent_tickets:
            params["support_type_scope"] = "all"
        return self._cursor_export(TICKETS_PATH, "tickets", _generated_epoch, cursor,
                                   self.start_epoch if start is None else start, params,
                                   _captured(self._tickets_page, capture), until)

    def _read_ticket_events(self, cursor: str | None, start: int | None = None, until: int | None = None,
                            capture: Callable[[Mapping[str, Any]], None] | None = None) -> Iterator[Page]:
        # `support_type_scope` defaults to `agent`: AI-agent tickets' comments and status changes
        # are left out unless asked for, as the ticket export's tickets are.
        params = {"include": "comment_events"}
        if self.settings.include_ai_agent_tickets:
            params["support_type_scope"] = "all"
        return self._time_export(EVENTS_PATH, cursor, self.start_epoch if start is None else start, params,
                                 _captured(self._events_page, capture), until)

    # --- newest-first backfill (connectors.base.Backfillable) ---------------------------------

    def backfill_start(self, stream: StreamSpec) -> BackfillStart | None:
        """The first page of the oldest-first read of tickets or ticket events; None for other streams.

        Both exports are ordered by change time, so that page's first record is the oldest
        change the first sync reads.
        """
        if stream.name not in BACKFILL_STAMPS:
            return None
        key, stamp_of = BACKFILL_STAMPS[stream.name]
        bodies: list[Mapping[str, Any]] = []
        reader = self._read_tickets if stream.name == "tickets" else self._read_ticket_events
        first = next(iter(reader(None, capture=bodies.append)))
        items = _items(bodies[0], key)
        oldest = _stamp_or(stamp_of, items[0], self.start_epoch) if items else None
        return BackfillStart(first=first, position=first.cursor,
                             oldest=None if oldest is None else datetime.fromtimestamp(oldest, timezone.utc),
                             complete=bodies[0].get("end_of_stream") is True)

    def head_cursor(self, stream: StreamSpec, since: datetime) -> str:
        """A cursor reading every change from `since` on: a new export pass at that time."""
        epoch = int(since.timestamp())
        return f"{epoch}:" if stream.name == "tickets" else str(epoch)

    def read_window(self, stream: StreamSpec, start: datetime, end: datetime, position: str | None) -> Iterator[Page]:
        """The export from `start` (or `position`), until its records pass `end`."""
        if stream.name not in BACKFILL_STAMPS:
            raise ConfigError(f"{SOURCE}: stream {stream.name!r} has no time window to backfill")
        begin, until = int(start.timestamp()), int(end.timestamp())
        reader = self._read_tickets if stream.name == "tickets" else self._read_ticket_events
        return reader(position, start=begin, until=until)

    def spawn(self) -> ZendeskConnector:
        """A connector with its own session, pacing its calls with this one's (one budget per account)."""
        return type(self)(self.settings, pacer=self.client.pacer)

    def _read_legacy_csat(self, cursor: str | None) -> Iterator[Page]:
        """Legacy ratings (`csat` = "legacy" or "auto"), with their own bookmark.

        An account that moved to the new CSAT keeps its legacy history, so `auto` reads both
        flavours, each in its own stream; an endpoint the account or token does not have
        (403/404 under `auto`) is a warning, noted in the stream's cursor, not a failure.
        """
        if self.settings.csat not in ("auto", "legacy"):
            return
        mark = _csat_mark(cursor, "legacy")
        yield from self._unless_refused("legacy", mark, self._legacy_pages(mark))

    def _read_survey_responses(self, cursor: str | None) -> Iterator[Page]:
        """New CSAT responses (`csat` = "survey_responses" or "auto"), with their own bookmark."""
        if self.settings.csat not in ("auto", "survey_responses"):
            return
        mark = _csat_mark(cursor, "survey_responses")
        yield from self._unless_refused("survey_responses", mark, self._survey_pages(mark))

    def _unless_refused(self, mode: str, mark: int | None, pages: Iterator[Page]) -> Iterator[Page]:
        """`pages`, or under `csat = "auto"` a refusal (403/404) logged and noted in the cursor.

        The cursor keeps the mark reached before (`<mode>:<mark>:refused-<status>`), so that
        `status` shows what the endpoint answered and a later grant resumes where it stopped.
        """
        try:
            yield from pages
        except (PermissionDenied, FatalApiError) as exc:
            refused = isinstance(exc, PermissionDenied) or exc.status == 404
            if self.settings.csat != "auto" or not refused:
                raise
            status = exc.status or 403
            message = f"{mode} CSAT is not readable with these credentials (HTTP {status}); the other flavour is read"
            log.debug("%s: %s: %s", SOURCE, message, exc)  # the page's warning is what `sync` prints, once
            page = Page(cursor=f"{mode}:{'' if mark is None else mark}:refused-{status}")
            page.warn(message)  # shown by `sync`, kept in the run log, shown by `status`
            yield page

    # --- CSAT -----------------------------------------------------------------------------

    def _legacy_pages(self, mark: int | None) -> Iterator[Page]:
        """Legacy ratings, re-reading every offer made within `csat_lookback` of the newest seen.

        The list filters and sorts by creation, which is when the survey was *offered*; the
        answer (`updated_at`) may come days later, and a cursor on the list alone would miss
        it. The ticket's `satisfaction_rating` does show the answer, but not when it was given,
        and fetching each answered rating would cost a call per rating; re-reading a window of
        offers costs about one call per 100 offers of the window on each sync and keeps the
        answer time exact. Answers given more than `csat_lookback` after their offer (which a
        closed ticket no longer takes) are missed.
        """
        lookback = int(self.csat_lookback.total_seconds())
        start = self.start_epoch if mark is None else max(self.start_epoch, mark - lookback)
        newest = start if mark is None else mark
        params = {"start_time": start, "page[size]": self.list_size}
        for body in self._list_pages(LEGACY_PATH, params, "satisfaction_ratings"):
            page = Page()
            for rating in body["satisfaction_ratings"]:
                keep_row(page, "satisfaction_rating", rating, "survey_responses",
                         lambda r: legacy_rating_row(r, self.privacy))
            newest = max(newest, _newest_epoch(body["satisfaction_ratings"]))
            page.cursor = f"legacy:{newest}"
            yield page

    def _survey_pages(self, mark: int | None) -> Iterator[Page]:
        """New CSAT responses, re-reading every response offered within `csat_lookback` of the newest seen.

        A response is created when the survey is offered and `filter[created_at_start]` filters
        on that creation (epoch milliseconds); its answers arrive later. The documented object
        carries no time of its own, so the mark is the newest time a response shows: its id's
        creation time (a ULID: its first ten characters are milliseconds) or its answers'.
        Re-reading the look-back window, as for legacy ratings, picks up late answers.
        """
        lookback_ms = int(self.csat_lookback.total_seconds()) * 1000
        floor = self.start_epoch * 1000
        start = floor if mark is None else max(floor, mark - lookback_ms)
        newest = start if mark is None else mark
        params = {"filter[created_at_start]": start, "page[size]": self.list_size, "sort": "id"}
        for body in self._list_pages(SURVEY_PATH, params, "survey_responses"):
            page = Page()
            for response in body["survey_responses"]:
                keep_row(page, "survey_response", response, "survey_responses",
                         lambda r: survey_response_row(r, self.privacy))
                newest = max(newest, _response_mark(response))
            page.cursor = f"survey_responses:{newest}"
            yield page

    # --- page normalizers -----------------------------------------------------------------

    def _users_page(self, body: Mapping[str, Any]) -> Page:
        page = Page()
        for user in _items(body, "users"):
            keep_row(page, "user", user, "people", lambda u: person_row(u, self.privacy, self.bot_ids))
        self._roles_sent.update((r["source_id"], r["role"]) for r in page.records.get("people", ()))
        return page

    def _organizations_page(self, body: Mapping[str, Any]) -> Page:
        page = Page()
        for org in _items(body, "organizations"):
            keep_row(page, "organization", org, "organizations", organization_row)
        return page

    def _tickets_page(self, body: Mapping[str, Any]) -> Page:
        page = Page()
        users = {u.get("id"): u for u in _items(body, "users", required=False) if isinstance(u, dict)}
        orgs = {o.get("id"): o for o in _items(body, "organizations", required=False) if isinstance(o, dict)}
        for user in users.values():
            role = "bot" if str(user.get("id")) in self.bot_ids else ROLES.get(str(user.get("role")))
            if (str(user.get("id")), role) not in self._roles_sent:
                keep_row(page, "user", user, "people", lambda u: person_role_row(u, self.bot_ids))
        self._roles_sent.update((r["source_id"], r["role"]) for r in page.records.get("people", ()))
        # List endpoints sideload `metric_sets` top-level, keyed by ticket_id; the export puts a
        # `metric_set` on each ticket. Both are read.
        metric_sets = {m.get("ticket_id"): m for m in _items(body, "metric_sets", required=False)
                       if isinstance(m, dict)}
        for ticket in _items(body, "tickets"):
            keep_row(page, "ticket", ticket, "contacts",
                     lambda t: contact_row(t, users, orgs, self.start_iso, self.ticket_drop, metric_sets,
                                           self.handle_field, self.bot_ids))
        if self.settings.talk_call_durations:
            self._add_call_durations(page)
        return page

    def _add_call_durations(self, page: Page) -> None:
        """Talk handle time of the page's resolved voice tickets: their answered calls' summed duration.

        The duration is on each call's voice comment, which only the ticket's comments show with its
        `data` (the ticket and its metric set carry none), and a contact row is written whole from the
        ticket export: so each resolved voice ticket without a time-tracking value costs one
        `/tickets/{id}/comments` call (more past 100 comments) in the sync that sees it change. Open
        tickets wait until resolved (handle time is anchored on the first resolution); a ticket gone
        meanwhile (404) keeps what the store has.
        """
        for row in page.records.get("contacts", ()):
            if (row["channel"] != "phone" or row["status"] not in ("resolved", "closed")
                    or row.get("handle_seconds") is not None):
                continue
            path = f"/api/v2/tickets/{row['source_id']}/comments"
            comments: list[Any] = []
            try:
                for body in self._list_pages(path, {"page[size]": self.list_size}, "comments"):
                    comments.extend(body["comments"])
            except FatalApiError as exc:
                if exc.status != 404:
                    raise
                continue
            seconds = call_seconds(comments)
            if seconds is not None:
                row["handle_seconds"] = seconds

    def _events_page(self, body: Mapping[str, Any]) -> Page:
        page = Page()
        for event in _items(body, "ticket_events"):
            keep(page, "ticket_event", event, lambda e: event_rows(e, self.privacy, self.bot_ids))
        return page

    # --- pagination -----------------------------------------------------------------------

    def _get(self, path: str, params: Mapping[str, Any]) -> ApiResponse:
        response = self.client.get(path, params=params)
        if not isinstance(response.data, dict):
            raise MalformedResponse(f"{SOURCE}: GET {path}: expected a JSON object, got {type(response.data).__name__}")
        return response

    def _cursor_export(self, path: str, key: str, stamp_of: Callable[[Any], int], cursor: str | None,
                       start_time: int, params: dict[str, Any],
                       normalize: Callable[[Mapping[str, Any]], Page], until: int | None = None) -> Iterator[Page]:
        """A cursor export: `start_time` once, then Zendesk's `after_cursor`, also on the next poll.

        The stored cursor is `<epoch>:<after_cursor>`, the epoch being the change time of the
        last record read, so that `rewind_cursor` can tell how far back the bookmark is; a
        cursor with no token (`<epoch>:`) starts a new pass at that time. `until` (a backfill
        window's end) stops the read after the page whose last record changed at or after it.
        """
        position, token = _split_export_cursor(cursor, start_time)
        if until is not None and token and position >= until:
            return  # a window whose read has already passed its end
        pager = CursorExport(SOURCE, {**params, "per_page": self.export_size}, start_time=position, token=token)
        query: dict[str, Any] | None = pager.first_request()
        while query is not None:
            response = self._get(path, query)
            page = normalize(response.data)
            items = _items(response.data, key)
            if items:
                position = max(position, _stamp_or(stamp_of, items[-1], position))
            query = pager.next_request(response)
            page.cursor = f"{position}:{pager.token}" if pager.token else None
            yield page
            if until is not None and position >= until:
                return  # the export is ordered by change time: the window is read

    def _time_export(self, path: str, cursor: str | None, start_time: int, params: dict[str, Any],
                     normalize: Callable[[Mapping[str, Any]], Page], until: int | None = None) -> Iterator[Page]:
        """A time-based export: each page's `end_time` is the next `start_time` (and the bookmark).

        `until` (a backfill window's end) stops the read once the next start time reaches it.
        """
        start = _cursor_epoch(cursor, path) if cursor else start_time
        if until is not None and start >= until:
            return
        pager = TimeExport(SOURCE, {**params, "per_page": self.export_size}, start)
        query: dict[str, Any] | None = pager.first_request()
        while query is not None:
            response = self._get(path, query)
            page = normalize(response.data)
            query = pager.next_request(response)
            page.cursor = str(pager.start)
            yield page
            if until is not None and pager.start >= until:
                return

    def _list_pages(self, path: str, params: dict[str, Any], key: str,
                    first: ApiResponse | None = None) -> Iterator[Mapping[str, Any]]:
        """The pages of a cursor-paginated list (`page[after]`, `meta.has_more`)."""
        pager = CursorList(SOURCE, params)
        response = first if first is not None else self._get(path, pager.first_request())
        while True:
            _items(response.data, key)
            yield response.data
            query = pager.next_request(response)
            if query is None:
                return
            response = self._get(path, query)


LEGACY_PATH = "/api/v2/satisfaction_ratings"
TICKETS_PATH = "/api/v2/incremental/tickets/cursor"
EVENTS_PATH = "/api/v2/incremental/ticket_events"
SURVEY_PATH = "/api/v2/guide/survey_responses"


# --- small helpers ----------------------------------------------------------------------


def _items(body: Mapping[str, Any], key: str, required: bool = True) -> list[Any]:
    value = body.get(key)
    if value is None and not required:
        return []
    if not isinstance(value, list):
        raise MalformedResponse(f"{SOURCE}: the response has no {key!r} list")
    return value


def _newest_epoch(records: list[Any]) -> int:
    """The latest `created_at` among the records (unreadable ones are quarantined elsewhere)."""
    newest = 0
    for record in records:
        try:
            newest = max(newest, epoch_of(iso_time(record["created_at"], "created_at")))
        except BAD_RECORD:
            continue
    return newest


def _cursor_epoch(cursor: str, path: str) -> int:
    try:
        return int(cursor)
    except ValueError:
        raise ConfigError(f"{SOURCE}: stored cursor for {path} is not an epoch; re-sync with --full") from None


def _split_export_cursor(cursor: str | None, default: int) -> tuple[int, str | None]:
    """`<epoch>:<token>` -> (epoch, token or None); no cursor -> (default, None)."""
    if not cursor:
        return default, None
    stamp, sep, token = cursor.partition(":")
    if not sep or not stamp.isdigit():
        raise ConfigError(f"{SOURCE}: stored cursor {cursor[:40]!r} is not this connector's; re-sync with --full")
    return int(stamp), token or None


def _captured(normalize: Callable[[Mapping[str, Any]], Page],
              capture: Callable[[Mapping[str, Any]], None] | None) -> Callable[[Mapping[str, Any]], Page]:
    """`normalize`, handing each body to `capture` first (the backfill's look at the first page)."""
    if capture is None:
        return normalize

    def both(body: Mapping[str, Any]) -> Page:
        capture(body)
        return normalize(body)

    return both


def _event_epoch(event: Any) -> int:
    value = event.get("timestamp") if isinstance(event, dict) else None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return epoch_of(iso_time(event["created_at"], "created_at"))


def _generated_epoch(ticket: Any) -> int:
    value = ticket["generated_timestamp"]
    if not isinstance(value, int) or isinstance(value, bool):
        raise RecordError("generated_timestamp is not an epoch")
    return value


def _updated_epoch(record: Any) -> int:
    return epoch_of(iso_time(record["updated_at"], "updated_at"))


def _stamp_or(stamp_of: Callable[[Any], int], record: Any, default: int) -> int:
    try:
        return stamp_of(record)
    except BAD_RECORD:
        return default


def _csat_mark(cursor: str | None, mode: str) -> int | None:
    """The mark of a CSAT cursor of `mode` (`<mode>:<mark>[:refused-<status>]`); None for any other cursor."""
    parts = (cursor or "").split(":")
    if len(parts) >= 2 and parts[0] == mode and parts[1].isdigit():
        return int(parts[1])
    return None


def _response_mark(response: Any) -> int:
    """Milliseconds: the creation time in a response's ULID id, or its answers' newest time (0 if none)."""
    newest = 0
    ident = response.get("id") if isinstance(response, dict) else None
    if isinstance(ident, str) and len(ident) == 26:
        try:
            newest = sum(CROCKFORD.index(c) << (5 * (9 - i)) for i, c in enumerate(ident[:10].upper()))
        except ValueError:
            newest = 0
        if newest > 1000 * (clock.time() + 86400):  # not a time: the id is no ULID after all
            newest = 0
    if isinstance(response, dict):
        for stamp in survey_response_times(response):
            try:
                newest = max(newest, 1000 * epoch_of(iso_time(stamp, "created_at")))
            except BAD_RECORD:
                continue
    return newest


CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

# The streams a first sync fills newest first: the list key of their export and each record's change time.
BACKFILL_STAMPS: dict[str, tuple[str, Callable[[Any], int]]] = {
    "tickets": ("tickets", _generated_epoch), "ticket_events": ("ticket_events", _event_epoch),
}
