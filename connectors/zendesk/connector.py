"""Zendesk Support connector: the incremental exports, normalized (reference §1, catalogue §1).

Streams, in order: users → groups → organizations → tickets → ticket_events → csat. People
come first because a comment does not say who wrote it: the store takes its author's role
from `people`. Two kinds of author show on the comment itself and are marked here:
`via.channel == "rule"` (a trigger or automation: role `system`) and
`via.channel == "answer_bot"` (the AI agent, whose user is an ordinary agent seat: role `bot`).

Where Zendesk surprises:
- Tickets and users use the cursor export; its `after_cursor` is the bookmark, also on the
  last page. Ticket pages sideload their users, whose roles are stored with the page, so a
  new requester's comments never wait for the next users pass to get their role.
- Ticket events and organizations only have the time-based export: a page ends on a whole
  second and the next one repeats that second (upserts by id absorb it); a page lying
  entirely inside one second is stepped over, since its whole second was delivered.
- Reply and resolution facts are derived by the store from the comments and status changes
  of the ticket events (`facts_from_events`); tickets created before `start_date`, whose early
  events are not read, take them from the ticket's `metric_set` instead (minute precision).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, time, timedelta, timezone
from typing import Any, ClassVar

from connectors.base import (ConfigError, FatalApiError, MalformedResponse, Page, PermissionDenied, PersonalKeys, Privacy,
                             StreamSpec, scrub)
from connectors.http import HttpClient
from kpi_core.model import Channel, RecordError, iso_utc, is_positive_response, primary_language
from connectors.zendesk.settings import ZendeskSettings

SOURCE = "zendesk"
EXPORT_MAX = 1000  # per_page of the incremental exports
LIST_MAX = 100  # page[size] of the cursor-paginated lists

# Keys whose values are personal (names, addresses, phone numbers, free text), by the
# [privacy] switch that may keep them; removed from every payload kept as `raw` otherwise.
PERSONAL = PersonalKeys(
    names=frozenset({"name", "alias"}),
    emails=frozenset({"email", "recipient"}),
    phones=frozenset({"phone", "shared_phone_number"}),
    bodies=frozenset({"subject", "raw_subject", "description", "body", "html_body", "plain_body"}),
    comments=frozenset({"comment"}),
    # `from`/`to` (via.source) mix names, addresses, phone numbers and social handles.
    always=frozenset({"signature", "details", "notes", "photo", "remote_photo_url", "external_id", "identities",
                      "from", "to", "address", "domain_names"}),
)
PERSONAL_KEYS = PERSONAL.every()
DEFAULT_PRIVACY = Privacy.choose(PERSONAL)

# A ticket's raw also leaves out its metric_set (kept in `vendor`) and `fields` (a copy of custom_fields).
TICKET_EXTRA_DROP = frozenset({"metric_set", "fields"})
TICKET_RAW_DROP = PERSONAL_KEYS | TICKET_EXTRA_DROP

CHANNELS: dict[str, Channel] = {
    "email": Channel.EMAIL, "web": Channel.WEB_FORM, "help_center": Channel.WEB_FORM, "api": Channel.API,
    "chat": Channel.CHAT, "native_messaging": Channel.MESSAGING, "whatsapp": Channel.MESSAGING,
    "line": Channel.MESSAGING, "wechat": Channel.MESSAGING, "sms": Channel.MESSAGING,
    "mobile_sdk": Channel.MESSAGING, "voice": Channel.PHONE, "twitter": Channel.SOCIAL,
    "facebook": Channel.SOCIAL, "instagram_dm": Channel.SOCIAL,
}
STATUSES = {"new": "new", "open": "open", "pending": "pending", "hold": "on_hold", "solved": "resolved",
            "closed": "closed", "deleted": "deleted"}
RESOLVED = frozenset({"solved", "closed"})
PRIORITIES = frozenset({"low", "normal", "high", "urgent"})
ROLES = {"end-user": "customer", "agent": "agent", "admin": "agent"}
SYSTEM_VIA = frozenset({"rule"})
BOT_VIA = frozenset({"answer_bot"})
COUNTRY_FIELD = "country"  # the user/organization field holding an ISO country code
METRICS = ("reply_time_in_minutes", "first_resolution_time_in_minutes", "full_resolution_time_in_minutes",
           "agent_wait_time_in_minutes", "requester_wait_time_in_minutes", "on_hold_time_in_minutes")

STREAMS = (
    StreamSpec("users", ("people",), "incremental user export (cursor)"),
    StreamSpec("groups", ("groups",), "all groups (cursor list)"),
    StreamSpec("organizations", ("organizations",), "incremental organization export (time-based)"),
    StreamSpec("tickets", ("contacts", "people"), "incremental ticket export (cursor)"),
    StreamSpec("ticket_events", ("messages", "status_events"), "comments and status changes (time-based)"),
    StreamSpec("csat", ("survey_responses",), "legacy satisfaction ratings or new CSAT survey responses"),
)

_ISO_Z = re.compile(r"\d{4}-[01]\d-[0-3]\dT[0-2]\d:[0-5]\d:[0-6]\dZ")
_BAD_RECORD = (RecordError, KeyError, TypeError, ValueError, AttributeError)
Row = dict[str, Any]


class ZendeskConnector:
    """Reads a Zendesk Support account through its incremental exports."""

    name: ClassVar[str] = SOURCE
    # A legacy survey can be answered until its ticket closes, and Zendesk closes solved
    # tickets 28 days after solving at the latest (its default automation: 4 days).
    csat_lookback: ClassVar[timedelta] = timedelta(days=28)

    def __init__(self, settings: ZendeskSettings) -> None:
        self.settings = settings
        self.client = _client(settings)
        self.privacy = Privacy.choose(PERSONAL, settings.privacy)
        self.ticket_drop = self.privacy.drop | TICKET_EXTRA_DROP
        self.start_epoch = int(datetime.combine(settings.start_date, time(), timezone.utc).timestamp())
        self.start_iso = f"{settings.start_date.isoformat()}T00:00:00Z"
        self.export_size = min(settings.page_size or EXPORT_MAX, EXPORT_MAX)
        self.list_size = min(settings.page_size or LIST_MAX, LIST_MAX)
        # (user id, role) already stored in this run: a sideloaded user seen again adds nothing.
        self._roles_sent: set[tuple[str, str]] = set()
        self._readers: dict[str, Callable[[str | None], Iterator[Page]]] = {
            "users": self._read_users, "groups": self._read_groups, "organizations": self._read_organizations,
            "tickets": self._read_tickets, "ticket_events": self._read_ticket_events, "csat": self._read_csat,
        }

    def streams(self) -> tuple[StreamSpec, ...]:
        return STREAMS

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
        if stream.name == "csat":
            mode, mark = _split_csat_cursor(cursor)
            if mode is None or mark is None:
                return None
            since_mark = epoch * 1000 if mode == "survey_responses" else epoch
            return cursor if mark <= since_mark else f"{mode}:{since_mark}"
        return str(min(_cursor_epoch(cursor, stream.name), epoch))

    @property
    def api_calls(self) -> int:
        return self.client.calls

    def close(self) -> None:
        self.client.close()

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
                _add(page, "groups", "group", group, group_row)
            yield page

    def _read_organizations(self, cursor: str | None) -> Iterator[Page]:
        return self._time_export("/api/v2/incremental/organizations", cursor, 0, {},
                                 self._organizations_page)

    def _read_tickets(self, cursor: str | None) -> Iterator[Page]:
        params = {"include": "metric_sets,users,groups,organizations"}
        if self.settings.include_ai_agent_tickets:
            params["support_type_scope"] = "all"
        return self._cursor_export("/api/v2/incremental/tickets/cursor", "tickets", _generated_epoch, cursor,
                                   self.start_epoch, params, self._tickets_page)

    def _read_ticket_events(self, cursor: str | None) -> Iterator[Page]:
        return self._time_export("/api/v2/incremental/ticket_events", cursor, self.start_epoch,
                                 {"include": "comment_events"}, self._events_page)

    def _read_csat(self, cursor: str | None) -> Iterator[Page]:
        """Legacy ratings or new CSAT responses, whichever the account has.

        With `csat = "auto"` the first sync asks the new endpoint once; an account without
        it answers 403/404 and the legacy list is read instead. The flavour found is kept
        in the cursor (`legacy:<epoch>` or `survey_responses:<epoch ms>`), so later syncs
        do not ask again.
        """
        choice = self.settings.csat
        if choice == "none":
            return
        mode, mark = _split_csat_cursor(cursor)
        if choice != "auto" and mode != choice:
            mark = None
        choice = mode if choice == "auto" and mode else choice
        if choice in ("auto", "survey_responses"):
            start_ms = mark if mark is not None else self.start_epoch * 1000
            params = {"filter[created_at_start]": start_ms, "page[size]": self.list_size, "sort": "id"}
            try:
                first = self._get(SURVEY_PATH, params)
            except (PermissionDenied, FatalApiError) as exc:
                if choice != "auto" or not (isinstance(exc, PermissionDenied) or exc.status == 404):
                    raise
                mark = None
            else:
                yield from self._survey_pages(params, first, start_ms)
                return
        yield from self._legacy_pages(mark)

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
                _add(page, "survey_responses", "satisfaction_rating", rating,
                     lambda r: legacy_rating_row(r, self.privacy))
            newest = max(newest, _newest_epoch(body["satisfaction_ratings"]))
            page.cursor = f"legacy:{newest}"
            yield page

    def _survey_pages(self, params: dict[str, Any], first: Mapping[str, Any], start_ms: int) -> Iterator[Page]:
        """New CSAT responses: created when answered, so their creation time is the bookmark."""
        newest = start_ms
        for body in self._list_pages(SURVEY_PATH, params, "survey_responses", first=first):
            page = Page()
            for response in body["survey_responses"]:
                _add(page, "survey_responses", "survey_response", response,
                     lambda r: survey_response_row(r, self.privacy))
            newest = max(newest, 1000 * _newest_epoch(body["survey_responses"]))
            page.cursor = f"survey_responses:{newest}"
            yield page

    # --- page normalizers -----------------------------------------------------------------

    def _users_page(self, body: Mapping[str, Any]) -> Page:
        page = Page()
        for user in _items(body, "users"):
            _add(page, "people", "user", user, lambda u: person_row(u, self.privacy))
        self._roles_sent.update((r["source_id"], r["role"]) for r in page.records.get("people", ()))
        return page

    def _organizations_page(self, body: Mapping[str, Any]) -> Page:
        page = Page()
        for org in _items(body, "organizations"):
            _add(page, "organizations", "organization", org, organization_row)
        return page

    def _tickets_page(self, body: Mapping[str, Any]) -> Page:
        page = Page()
        users = {u.get("id"): u for u in _items(body, "users", required=False) if isinstance(u, dict)}
        orgs = {o.get("id"): o for o in _items(body, "organizations", required=False) if isinstance(o, dict)}
        for user in users.values():
            if (_safe_id(user), ROLES.get(str(user.get("role")))) not in self._roles_sent:
                _add(page, "people", "user", user, person_role_row)
        self._roles_sent.update((r["source_id"], r["role"]) for r in page.records.get("people", ()))
        for ticket in _items(body, "tickets"):
            _add(page, "contacts", "ticket", ticket, lambda t: contact_row(t, users, orgs, self.start_iso, self.ticket_drop))
        return page

    def _events_page(self, body: Mapping[str, Any]) -> Page:
        page = Page()
        for event in _items(body, "ticket_events"):
            try:
                rows = list(event_rows(event, self.privacy))
                for table, row in rows:
                    page.add(table, row)
            except _BAD_RECORD as exc:
                page.reject(f"ticket_event:{_safe_id(event)}", _reason(exc))
        return page

    # --- pagination -----------------------------------------------------------------------

    def _get(self, path: str, params: Mapping[str, Any]) -> Mapping[str, Any]:
        data = self.client.get(path, params=params).data
        if not isinstance(data, dict):
            raise MalformedResponse(f"{SOURCE}: GET {path}: expected a JSON object, got {type(data).__name__}")
        return data

    def _cursor_export(self, path: str, key: str, stamp_of: Callable[[Any], int], cursor: str | None,
                       start_time: int, params: dict[str, Any],
                       normalize: Callable[[Mapping[str, Any]], Page]) -> Iterator[Page]:
        """A cursor export: `start_time` once, then Zendesk's `after_cursor`, also on the next poll.

        The stored cursor is `<epoch>:<after_cursor>`, the epoch being the change time of the
        last record read, so that `rewind_cursor` can tell how far back the bookmark is; a
        cursor with no token (`<epoch>:`) starts a new pass at that time.
        """
        position, token = _split_export_cursor(cursor, start_time)
        base = {**params, "per_page": self.export_size}
        query = {**base, "cursor": token} if token else {**base, "start_time": position}
        while True:
            body = self._get(path, query)
            page = normalize(body)
            items = _items(body, key)
            if items:
                position = max(position, _stamp_or(stamp_of, items[-1], position))
            after = body.get("after_cursor")
            token = after if isinstance(after, str) and after else None
            page.cursor = f"{position}:{token}" if token else None
            end_of_stream = _flag(body, "end_of_stream", path)
            yield page
            if end_of_stream or token is None:
                return
            if token == query.get("cursor"):
                raise MalformedResponse(f"{SOURCE}: GET {path}: the export returned the same cursor twice")
            query = {**base, "cursor": token}

    def _time_export(self, path: str, cursor: str | None, start_time: int, params: dict[str, Any],
                     normalize: Callable[[Mapping[str, Any]], Page]) -> Iterator[Page]:
        """A time-based export: each page's `end_time` is the next `start_time` (and the bookmark)."""
        start = _cursor_epoch(cursor, path) if cursor else start_time
        while True:
            body = self._get(path, {**params, "start_time": start, "per_page": self.export_size})
            page = normalize(body)
            end_time = body.get("end_time")
            if not isinstance(end_time, int) or isinstance(end_time, bool):
                raise MalformedResponse(f"{SOURCE}: GET {path}: end_time is missing or not an epoch")
            end_of_stream = _flag(body, "end_of_stream", path)
            following = max(end_time, start)
            if following == start and not end_of_stream:
                following = start + 1  # a page wholly inside one second: that second is done
            page.cursor = str(following)
            yield page
            if end_of_stream:
                return
            start = following

    def _list_pages(self, path: str, params: dict[str, Any], key: str,
                    first: Mapping[str, Any] | None = None) -> Iterator[Mapping[str, Any]]:
        """The pages of a cursor-paginated list (`page[after]`, `meta.has_more`)."""
        body = first if first is not None else self._get(path, params)
        while True:
            _items(body, key)
            yield body
            meta = body.get("meta")
            if not isinstance(meta, dict) or not meta.get("has_more"):
                return
            after = meta.get("after_cursor")
            if not isinstance(after, str) or not after or after == params.get("page[after]"):
                raise MalformedResponse(f"{SOURCE}: GET {path}: has_more without a new after_cursor")
            params = {**params, "page[after]": after}
            body = self._get(path, params)


LEGACY_PATH = "/api/v2/satisfaction_ratings"
SURVEY_PATH = "/api/v2/guide/survey_responses"


def _client(settings: ZendeskSettings) -> HttpClient:
    base_url = settings.base_url or f"https://{settings.subdomain}.zendesk.com"
    options: dict[str, Any] = {"timeout": settings.timeout_seconds, "max_attempts": settings.max_attempts}
    if settings.oauth_token is not None and settings.oauth_token.get_secret_value():
        bearer = {"Authorization": f"Bearer {settings.oauth_token.get_secret_value()}"}
        return HttpClient(SOURCE, base_url, headers=bearer, **options)
    if settings.api_token is None or not settings.email:
        raise ConfigError(f"{SOURCE}: set api_token (with email) or oauth_token")
    return HttpClient(SOURCE, base_url, auth=(f"{settings.email}/token", settings.api_token.get_secret_value()),
                      **options)


# --- records ------------------------------------------------------------------------------


def _add(page: Page, table: str, kind: str, item: Any, build: Callable[[Any], Row | None]) -> None:
    """Normalize `item` into `table` (None: nothing to store), or quarantine it."""
    try:
        row = build(item)
        if row is not None:
            page.add(table, row)
    except _BAD_RECORD as exc:
        page.reject(f"{kind}:{_safe_id(item)}", _reason(exc))


def contact_row(t: Mapping[str, Any], users: Mapping[Any, Any], orgs: Mapping[Any, Any], start_iso: str,
                drop: frozenset[str] = TICKET_RAW_DROP) -> Row:
    """A ticket as a contact; keys the payload lacks (a deleted ticket's) are left out, so stored values stay."""
    created_at = _ts(t["created_at"])
    status = STATUSES.get(t.get("status"))  # type: ignore[arg-type]
    if status is None:
        raise RecordError(f"unknown status {t.get('status')!r}")
    row: Row = {
        "source": SOURCE, "source_id": _id(t["id"]), "channel": _channel(t.get("via")), "status": status,
        "created_at": created_at, "updated_at": _ts(t.get("updated_at")), "tags": _tags(t),
        "custom": _custom_fields(t.get("custom_fields")), "raw": _compact(t, drop),
    }
    if status == "deleted":
        return row
    requester = users.get(t.get("requester_id"))
    submitter = users.get(t.get("submitter_id"))
    org = orgs.get(t.get("organization_id"))
    priority = t.get("priority")
    row.update({
        "priority": priority if priority in PRIORITIES else None, "ticket_type": _opt_str(t.get("type")),
        "requester_id": _opt_id(t.get("requester_id")), "assignee_id": _opt_id(t.get("assignee_id")),
        "group_id": _opt_id(t.get("group_id")), "organization_id": _opt_id(t.get("organization_id")),
        "brand_id": _opt_id(t.get("brand_id")), "vendor": _vendor(t),
    })
    if requester is not None:
        locale = _opt_str(requester.get("locale"))
        row.update(locale=locale, language=primary_language(locale),
                   country=_country(requester.get("user_fields")) or _country((org or {}).get("organization_fields")))
    if submitter is not None:
        row["is_outbound"] = submitter.get("role") in ("agent", "admin") and t.get("submitter_id") != t.get("requester_id")
    from_events = created_at >= start_iso  # ISO UTC text sorts as time does
    row["facts_from_events"] = from_events
    if not from_events:
        row.update(_vendor_facts(created_at, t.get("metric_set")))
    return row


def event_rows(event: Mapping[str, Any], privacy: Privacy = DEFAULT_PRIVACY) -> Iterator[tuple[str, Row]]:
    """The messages and resolution events of one ticket event (an audit and its children)."""
    contact_id = _id(event["ticket_id"])
    at = _ts(event.get("created_at") or event["timestamp"])
    for child in event.get("child_events") or ():
        kind = child.get("event_type")
        if kind == "Comment":
            yield "messages", {
                "source": SOURCE, "source_id": _id(child["id"]), "contact_id": contact_id,
                "author_id": _opt_id(child.get("author_id")), "author_role": _author_role(child.get("via")),
                "public": _bool(child["public"]), "created_at": _ts(child.get("created_at") or at),
                "body": privacy.body(child.get("plain_body", child.get("body"))),
            }
        elif kind in ("Create", "Change") and child.get("field_name", "status") == "status" and "status" in child:
            transition = _transition(child.get("previous_value"), child["status"])
            if transition:
                yield "status_events", {"source": SOURCE, "source_id": _id(child["id"]), "contact_id": contact_id,
                                        "kind": transition, "at": at}


def person_row(u: Mapping[str, Any], privacy: Privacy = DEFAULT_PRIVACY) -> Row:
    role = ROLES.get(u.get("role"))  # type: ignore[arg-type]
    if role is None:
        raise RecordError(f"unknown role {u.get('role')!r}")
    locale = _opt_str(u.get("locale"))
    fields = u.get("user_fields") or {}
    if not isinstance(fields, dict):
        raise RecordError("user_fields is not an object")
    return {
        "source": SOURCE, "source_id": _id(u["id"]), "role": role, "locale": locale,
        "language": primary_language(locale), "country": _country(fields),
        "organization_id": _opt_id(u.get("organization_id")),
        "time_zone": _opt_str(u.get("iana_time_zone") or u.get("time_zone")), "tags": _tags(u),
        "custom": fields, "raw": _compact(u, privacy.drop),
        **privacy.person(u.get("name"), u.get("email"), u.get("phone")),
    }


def person_role_row(u: Mapping[str, Any]) -> Row:
    """Just who a sideloaded user is: enough for the store to tell their comments' role.

    The users stream, read before the tickets, brings the full row; this covers a user
    created since, whose ticket's comments would otherwise wait a whole sync for a role.
    """
    role = ROLES.get(u.get("role"))  # type: ignore[arg-type]
    if role is None:
        raise RecordError(f"unknown role {u.get('role')!r}")
    return {"source": SOURCE, "source_id": _id(u["id"]), "role": role}


def group_row(g: Mapping[str, Any]) -> Row:
    return {"source": SOURCE, "source_id": _id(g["id"]), "name": _opt_str(g.get("name")),
            "raw": scrub(g, PERSONAL_KEYS)}


def organization_row(o: Mapping[str, Any]) -> Row:
    fields = o.get("organization_fields") or {}
    if not isinstance(fields, dict):
        raise RecordError("organization_fields is not an object")
    return {"source": SOURCE, "source_id": _id(o["id"]), "name": _opt_str(o.get("name")),
            "country": _country(fields), "tags": _tags(o), "custom": fields, "raw": scrub(o, PERSONAL_KEYS)}


def legacy_rating_row(r: Mapping[str, Any], privacy: Privacy = DEFAULT_PRIVACY) -> Row | None:
    """A legacy rating (good 1 / bad 0), dated when answered; offers without answer are no response."""
    score = r.get("score")
    if score not in ("good", "bad"):
        return None
    value = 1.0 if score == "good" else 0.0
    return {
        "source": SOURCE, "source_id": _id(r["id"]), "kind": "csat", "score": value, "scale": "good_bad",
        "is_positive": is_positive_response("csat", value, "good_bad"), "created_at": _ts(r["updated_at"]),
        "contact_id": _opt_id(r.get("ticket_id")), "requester_id": _opt_id(r.get("requester_id")),
        "agent_id": _opt_id(r.get("assignee_id")), "question": "satisfaction_rating",
        "comment": privacy.comment(r.get("comment")), "raw": privacy.raw(r),
    }


def survey_response_row(resp: Mapping[str, Any], privacy: Privacy = DEFAULT_PRIVACY) -> Row | None:
    """A new-CSAT response: its customer-satisfaction rating on the question's own scale."""
    created_at = _ts(resp["created_at"])
    answer = next((a for a in resp.get("answers") or () if a.get("type") == "rating_scale"
                   and (a.get("question") or {}).get("sub_type") == "customer_satisfaction"), None)
    if answer is None or answer.get("rating") is None:
        return None
    score = float(answer["rating"])
    scale = _question_scale(answer["question"])
    ticket = next((s for s in resp.get("subjects") or () if s.get("type") == "ticket"), None)
    remarks = [a.get("value") for a in resp.get("answers") or () if a.get("type") == "open_ended"]
    kept = {k: v for k, v in resp.items() if k != "answers"}
    # Open-ended answers are the customer's own words: kept only with store_survey_comments.
    kept["answers"] = resp.get("answers") if privacy.comments else [answer]
    return {
        "source": SOURCE, "source_id": _opt_str(resp["id"]), "kind": "csat", "score": score, "scale": scale,
        "is_positive": is_positive_response("csat", score, scale), "created_at": created_at,
        "contact_id": _opt_id(ticket.get("id")) if ticket else None,
        "requester_id": _opt_id(resp.get("responder_id")), "question": "customer_satisfaction",
        "comment": privacy.comment(next((r for r in remarks if isinstance(r, str) and r), None)),
        "raw": privacy.raw(kept),
    }


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
            newest = max(newest, _epoch(_ts(record["created_at"])))
        except _BAD_RECORD:
            continue
    return newest


def _flag(body: Mapping[str, Any], key: str, path: str) -> bool:
    value = body.get(key)
    if not isinstance(value, bool):
        raise MalformedResponse(f"{SOURCE}: GET {path}: {key} is missing or not a boolean")
    return value


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


def _generated_epoch(ticket: Any) -> int:
    value = ticket["generated_timestamp"]
    if not isinstance(value, int) or isinstance(value, bool):
        raise RecordError("generated_timestamp is not an epoch")
    return value


def _updated_epoch(record: Any) -> int:
    return _epoch(_ts(record["updated_at"]))


def _stamp_or(stamp_of: Callable[[Any], int], record: Any, default: int) -> int:
    try:
        return stamp_of(record)
    except _BAD_RECORD:
        return default


def _split_csat_cursor(cursor: str | None) -> tuple[str | None, int | None]:
    mode, _, mark = (cursor or "").partition(":")
    if mode in ("legacy", "survey_responses") and mark.isdigit():
        return mode, int(mark)
    return None, None


def _id(value: Any) -> str:
    if type(value) is int:  # the hot path: Zendesk ids are integers (bool is not int here)
        return str(value)
    if not isinstance(value, str) or value == "":
        raise RecordError(f"id {value!r} is not an integer or string")
    return value


def _opt_id(value: Any) -> str | None:
    return None if value is None else _id(value)


def _opt_str(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise RecordError(f"expected text, got {type(value).__name__}")


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise RecordError(f"expected true/false, got {value!r}")
    return value


def _ts(value: Any) -> str:
    """An ISO UTC timestamp; Zendesk's own `...Z` form passes as it is (the hot path)."""
    if isinstance(value, str) and _ISO_Z.fullmatch(value):
        return value
    result = iso_utc(value)
    if result is None:
        raise RecordError("timestamp missing")
    return result


def _epoch(iso: str) -> int:
    return int(datetime.strptime(iso, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp())


def _tags(record: Mapping[str, Any]) -> list[str]:
    tags = record.get("tags") or []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise RecordError("tags is not a list of strings")
    return tags


def _custom_fields(fields: Any) -> dict[str, Any]:
    if fields is None:
        return {}
    if not isinstance(fields, list) or not all(isinstance(f, dict) for f in fields):
        raise RecordError("custom_fields is not a list of {id, value}")
    return {_id(f["id"]): f.get("value") for f in fields}


def _channel(via: Any) -> str:
    channel = via.get("channel") if isinstance(via, dict) else None
    return CHANNELS.get(channel, Channel.OTHER).value  # type: ignore[arg-type]


def _author_role(via: Any) -> str | None:
    """`system` for triggers/automations, `bot` for the AI agent, else None (people decide)."""
    channel = via.get("channel") if isinstance(via, dict) else via
    if channel in SYSTEM_VIA:
        return "system"
    if channel in BOT_VIA:
        return "bot"
    return None


def _transition(previous: Any, status: Any) -> str | None:
    if status in RESOLVED and previous not in RESOLVED:
        return "resolved"
    if previous in RESOLVED and status not in RESOLVED and status != "deleted":
        return "reopened"
    return None


def _country(fields: Any) -> str | None:
    value = fields.get(COUNTRY_FIELD) if isinstance(fields, dict) else None
    if isinstance(value, str) and len(value) == 2 and value.isalpha():
        return value.upper()
    return None


def _question_scale(question: Mapping[str, Any]) -> str:
    values = [o.get("value") for o in question.get("options") or () if isinstance(o.get("value"), int)]
    return f"{min(values)}-{max(values)}" if values else "1-5"


def _vendor(t: Mapping[str, Any]) -> dict[str, Any]:
    """The ticket's own metric_set figures (minutes; `_bh` = business hours), for comparison."""
    metric = t.get("metric_set")
    if not isinstance(metric, dict):
        return {}
    out: dict[str, Any] = {"reopens": metric.get("reopens"), "replies": metric.get("replies"),
                           "solved_at": metric.get("solved_at")}
    for key in METRICS:
        value = metric.get(key)
        if isinstance(value, dict):
            name = key.removesuffix("_in_minutes") + "_minutes"
            out[name], out[name + "_bh"] = value.get("calendar"), value.get("business")
    return out


def _vendor_facts(created_at: str, metric: Any) -> Row:
    """Reply and resolution facts from the metric_set, for tickets whose events are not read."""
    if not isinstance(metric, dict):
        return {}
    created = _epoch(created_at)

    def after(key: str) -> str | None:
        minutes = (metric.get(key) or {}).get("calendar")
        return iso_utc(created + 60 * minutes) if isinstance(minutes, int) else None

    return {"first_agent_reply_at": after("reply_time_in_minutes"),
            "first_resolved_at": after("first_resolution_time_in_minutes"),
            "last_resolved_at": after("full_resolution_time_in_minutes"),
            "reopens": metric.get("reopens"), "agent_replies": metric.get("replies")}


def _compact(payload: Mapping[str, Any], drop: frozenset[str]) -> dict[str, Any]:
    """`scrub(payload, drop)` without its empty top-level fields (a third of a ticket's bytes; absent reads as empty).

    One pass instead of scrubbing, then filtering a copy: this runs on every ticket and user.
    """
    kept: dict[str, Any] = {}
    for key, value in payload.items():
        if key in drop or value is None or value == "":
            continue
        if type(value) in (dict, list):
            if not value or not (value := scrub(value, drop)):
                continue
        kept[key] = value
    return kept


def _safe_id(item: Any) -> str:
    value = item.get("id") if isinstance(item, dict) else None
    return str(value) if isinstance(value, (int, str)) else "?"


def _reason(exc: BaseException) -> str:
    if isinstance(exc, KeyError):
        return f"missing {exc.args[0]!r}"
    return str(exc) or type(exc).__name__
