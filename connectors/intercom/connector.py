"""Intercom connector: admins, teams, contacts, companies and conversations (API 2.14).

Streams, in sync order:
- `admins`: `GET /admins` and `GET /teams` -> people (role agent) and groups. Two calls,
  re-read on every sync (no incremental form exists).
- `contacts`: `POST /contacts/search` on `updated_at` -> people (role customer).
- `companies`: `POST /companies/list` (page/per_page) -> organizations, re-read at most
  once a day. Chosen over `GET /companies/scroll` because a scroll holds a workspace-wide
  lock (a second scroller gets 423) and its `scroll_param` expires after a minute, so a
  killed sync could never continue one; list pages are stateless.
- `conversations`: `POST /conversations/search` on `updated_at`, then
  `GET /conversations/{id}` for the parts -> contacts, messages, status_events and
  survey_responses.

The bookmark of a search stream (contacts, conversations) is a small JSON document:
`since` (the `updated_at` lower bound of the pass), `signpost` (when the pass started,
minus `LOOKBACK_SECONDS`), `after` (the `starting_after` token of the next page while a
pass is in progress) and `seen` (id -> `updated_at` of what was stored at or after the
signpost). Every page stores it with its records, so a sync killed at any moment resumes
from the next page with the same token and the same signpost; only the last page of a
pass promotes `since` to the signpost. Search order is not documented, so the signpost,
not the largest `updated_at` seen, is what moves forward; whatever changes during a pass
is re-read by the next one. `seen` drops a re-delivered (id, `updated_at`) of the
overlap without another parts fetch. A starting_after the pass has already used (Intercom
can hand one back while data changes) ends the pass at once, with `since` held at the
last `updated_at` delivered, so the next sync continues instead of looping.

Parts: a conversation's parts are fetched only when it is new or changed (its
(id, `updated_at`) is not in `seen`) and its statistics do not say it has none. Intercom
returns at most the 500 most recent parts; when `statistics.count_conversation_parts`
says more exist, the conversation keeps what was returned, is flagged
`messages_truncated`, and its reply/resolution facts come from `statistics` instead of
the parts. Deleted conversations vanish from search; one that answers 404 between the
search and the parts fetch is stored as `deleted`. A conversation deleted after it was
synced cannot be seen by an incremental read.

Author roles: `admin`/`team` -> agent; `user`/`lead`/`contact` -> customer; `bot` parts
with `from_ai_agent` or `is_ai_answer` (Fin's answers) -> bot; other `bot` parts are the
Operator's automated messages (acknowledgements, workflow texts) -> system, so that an
acknowledgement alone never makes a conversation "bot-only".
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time as dtime, timezone
from typing import Any, ClassVar

from connectors.base import (
    ConfigError,
    FatalApiError,
    MalformedResponse,
    Page,
    PersonalKeys,
    Privacy,
    StreamSpec,
    SyncError,
    scrub,
)
from connectors.http import HttpClient
from kpi_core.model import (
    Channel,
    RecordError,
    Role,
    Status,
    StatusEventKind,
    SurveyKind,
    iso_utc,
    is_positive_response,
    primary_language,
)
from connectors.intercom.settings import IntercomSettings

log = logging.getLogger(__name__)

SOURCE = "intercom"
REGION_HOSTS: dict[str, str] = {
    "us": "https://api.intercom.io",
    "eu": "https://api.eu.intercom.io",
    "au": "https://api.au.intercom.io",
}
MAX_PER_PAGE = 150
COMPANIES_PER_PAGE = 60
PARTS_CAP = 500
LOOKBACK_SECONDS = 300  # search may lag its writes and `>` may be strict: re-read this much
COMPANIES_EVERY_SECONDS = 86400
CONTACT_CACHE_LIMIT = 100_000

# Never kept in `raw` (unless a [privacy] switch keeps its group): who someone is, what
# anyone wrote, where they are exactly.
PERSONAL = PersonalKeys(
    names=frozenset({"name"}),
    emails=frozenset({"email", "email_domain"}),
    phones=frozenset({"phone"}),
    bodies=frozenset({"body", "subject", "title"}),
    comments=frozenset({"remark", "rating_remark"}),
    always=frozenset({"url", "attachments", "external_id", "avatar", "social_profiles", "city", "region", "notes",
                      "job_title", "browser", "os", "utm_content", "utm_term", "utm_source", "utm_medium",
                      "utm_campaign", "referrer"}),
)
PERSONAL_KEYS = PERSONAL.every()
DEFAULT_PRIVACY = Privacy.choose(PERSONAL)

CHANNELS: dict[str, Channel] = {
    "conversation": Channel.CHAT, "chat": Channel.CHAT,
    "whatsapp": Channel.MESSAGING, "sms": Channel.MESSAGING, "push": Channel.MESSAGING,
    "phone_call": Channel.PHONE, "phone_switch": Channel.PHONE,
    "twitter": Channel.SOCIAL, "facebook": Channel.SOCIAL, "instagram": Channel.SOCIAL,
    "email": Channel.EMAIL,
}
STATES: dict[str, Status] = {"open": Status.OPEN, "snoozed": Status.PENDING, "closed": Status.CLOSED}
MESSAGE_PARTS: dict[str, bool] = {"comment": True, "quick_reply": True, "note": False}  # part_type -> public
REOPENING_PARTS = frozenset({"open", "assign_and_reopen"})
CUSTOMER_AUTHORS = frozenset({"user", "lead", "contact"})
AGENT_AUTHORS = frozenset({"admin", "team"})

VENDOR_SECONDS = ("time_to_assignment", "time_to_admin_reply", "time_to_first_close", "time_to_last_close",
                  "median_time_to_reply", "handling_time", "adjusted_handling_time")
VENDOR_COUNTS = ("count_reopens", "count_assignments", "count_conversation_parts")
VENDOR_TIMES = ("first_contact_reply_at", "first_admin_reply_at", "first_close_at", "last_close_at",
                "last_admin_reply_at", "last_contact_reply_at")

# Intercom gives English country names; the store keeps ISO 3166 alpha-2 codes where known.
COUNTRY_CODES: dict[str, str] = {
    "united states": "US", "united states of america": "US", "united kingdom": "GB", "germany": "DE",
    "france": "FR", "spain": "ES", "portugal": "PT", "italy": "IT", "netherlands": "NL", "belgium": "BE",
    "luxembourg": "LU", "switzerland": "CH", "austria": "AT", "ireland": "IE", "denmark": "DK", "sweden": "SE",
    "norway": "NO", "finland": "FI", "iceland": "IS", "poland": "PL", "czechia": "CZ", "czech republic": "CZ",
    "slovakia": "SK", "hungary": "HU", "romania": "RO", "bulgaria": "BG", "greece": "GR", "croatia": "HR",
    "slovenia": "SI", "serbia": "RS", "ukraine": "UA", "russia": "RU", "turkey": "TR", "türkiye": "TR",
    "israel": "IL", "united arab emirates": "AE", "saudi arabia": "SA", "egypt": "EG", "morocco": "MA",
    "nigeria": "NG", "kenya": "KE", "south africa": "ZA", "india": "IN", "pakistan": "PK", "bangladesh": "BD",
    "china": "CN", "hong kong": "HK", "taiwan": "TW", "japan": "JP", "south korea": "KR", "korea, republic of": "KR",
    "singapore": "SG", "malaysia": "MY", "indonesia": "ID", "thailand": "TH", "vietnam": "VN", "philippines": "PH",
    "australia": "AU", "new zealand": "NZ", "canada": "CA", "mexico": "MX", "brazil": "BR", "argentina": "AR",
    "chile": "CL", "colombia": "CO", "peru": "PE", "uruguay": "UY", "estonia": "EE", "latvia": "LV",
    "lithuania": "LT", "cyprus": "CY", "malta": "MT",
}


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


@dataclass(frozen=True)
class ContactFacts:
    """What a conversation row takes from its requester."""

    locale: str | None
    language: str
    country: str | None
    organization_id: str | None


UNKNOWN_CONTACT = ContactFacts(None, primary_language(None), None, None)

PageHandler = Callable[[list[dict[str, Any]]], Page]


class IntercomConnector:
    """Reads one Intercom workspace into normalized pages."""

    name: ClassVar[str] = SOURCE

    STREAMS: ClassVar[tuple[StreamSpec, ...]] = (
        StreamSpec("admins", ("people", "groups"), "admins (agents) and teams"),
        StreamSpec("contacts", ("people",), "contacts (users and leads) changed since the bookmark"),
        StreamSpec("companies", ("organizations",), "companies, re-read once a day"),
        StreamSpec("conversations", ("contacts", "messages", "status_events", "survey_responses"),
                   "conversations changed since the bookmark, with parts and ratings"),
    )

    def __init__(self, settings: IntercomSettings, *, sleep: Callable[[float], None] = time.sleep) -> None:
        token = settings.access_token.get_secret_value() if settings.access_token else ""
        if not token:
            raise ConfigError(f"{SOURCE}: access_token is not set")
        self.settings = settings
        self.privacy = Privacy.choose(PERSONAL, settings.privacy)
        self.base_url = settings.base_url or REGION_HOSTS[settings.region]
        self.per_page = min(settings.page_size or MAX_PER_PAGE, MAX_PER_PAGE)
        self.start_epoch = int(datetime.combine(settings.start_date, dtime(0), tzinfo=timezone.utc).timestamp())
        self.client = HttpClient(
            SOURCE, self.base_url,
            headers={"Authorization": f"Bearer {token}", "Intercom-Version": settings.api_version},
            timeout=settings.timeout_seconds, max_attempts=settings.max_attempts, sleep=sleep,
        )
        self._contacts: dict[str, ContactFacts] = {}

    # --- the Connector contract -----------------------------------------------------------

    def streams(self) -> Sequence[StreamSpec]:
        return self.STREAMS

    def read(self, stream: StreamSpec, cursor: str | None, full: bool = False) -> Iterator[Page]:
        if full:
            cursor = None
        if stream.name == "admins":
            yield self._read_admins()
        elif stream.name == "contacts":
            state = PassState.loads(cursor, self.start_epoch, stream.name)
            yield from self._search_pass("/contacts/search", "data", state, stream.name, self._contacts_page)
        elif stream.name == "companies":
            yield from self._read_companies(cursor)
        elif stream.name == "conversations":
            state = PassState.loads(cursor, self.start_epoch, stream.name)
            yield from self._search_pass("/conversations/search", "conversations", state, stream.name,
                                         self._conversations_page)
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

    @property
    def api_calls(self) -> int:
        return self.client.calls

    def close(self) -> None:
        self.client.close()

    # --- search passes ----------------------------------------------------------------------

    def _search_pass(self, path: str, key: str, state: PassState, stream: str, handle: PageHandler) -> Iterator[Page]:
        """One pass of `updated_at` search from `state`, a page (and its bookmark) per API page."""
        if state.signpost is None:
            state.signpost = int(time.time()) - LOOKBACK_SECONDS
        signpost = state.signpost
        used_tokens: set[str] = {state.after} if state.after else set()
        handled: set[tuple[str, int]] = set()
        latest: int | None = None
        while True:
            data = self._search_page(path, state, stream)
            items = _list_field(data, key, path)
            fresh: list[dict[str, Any]] = []
            for item in items:
                ident, updated = _identity(item)
                if ident is None or updated is None:
                    fresh.append(item)  # the handler rejects it with a reason
                    continue
                latest = updated if latest is None else max(latest, updated)
                if state.seen.get(ident) == updated or (ident, updated) in handled:
                    continue
                handled.add((ident, updated))
                fresh.append(item)
            page = handle(fresh)
            for ident, updated in _stored_versions(page, fresh):
                if updated >= signpost:
                    state.seen[ident] = updated
            token = _next_token(data, path)
            if token is None:
                page.cursor = state.promoted(max(state.since, signpost)).dumps()
            elif token in used_tokens:
                held = state.since if latest is None else max(state.since, min(signpost, latest))
                log.warning("%s/%s: the API handed back a starting_after it already gave; ending this pass"
                            " (the next sync continues from %s)", SOURCE, stream, iso_utc(held))
                page.cursor = state.promoted(held).dumps()
                token = None
            else:
                used_tokens.add(token)
                state.after = token
                page.cursor = state.dumps()
            yield page
            if token is None:
                return

    def _search_page(self, path: str, state: PassState, stream: str) -> dict[str, Any]:
        # `since - 1` because the docs leave open whether `>` on a date is strict.
        query = {"operator": "AND", "value": [{"field": "updated_at", "operator": ">", "value": state.since - 1}]}
        pagination: dict[str, Any] = {"per_page": self.per_page}
        if state.after:
            pagination["starting_after"] = state.after
        body = {"query": query, "pagination": pagination, "sort": {"field": "updated_at", "order": "ascending"}}
        try:
            return _json_object(self.client.request("POST", path, json_body=body).data, path)
        except FatalApiError as exc:
            if exc.status != 400 or not state.after:
                raise
            # A stored resume token the API no longer accepts: restart this pass, same signpost.
            log.warning("%s/%s: the stored starting_after was refused (%s); restarting the pass", SOURCE, stream, exc)
            state.after = None
            return self._search_page(path, state, stream)

    # --- admins, teams, companies, contacts ----------------------------------------------------

    def _read_admins(self) -> Page:
        page = Page()
        admins = _list_field(_json_object(self.client.get("/admins").data, "/admins"), "admins", "/admins")
        teams = _list_field(_json_object(self.client.get("/teams").data, "/teams"), "teams", "/teams")
        for admin in admins:
            _guard(page, admin, lambda a: page.add("people", {
                "source": SOURCE, "source_id": _id(a["id"]), "role": Role.AGENT.value,
                "raw": self.privacy.raw(a), **self.privacy.person(a.get("name"), a.get("email"), a.get("phone"))}))
        for team in teams:
            _guard(page, team, lambda t: page.add("groups", {
                "source": SOURCE, "source_id": _id(t["id"]), "name": _opt_str(t.get("name")),
                "raw": scrub(t, PERSONAL_KEYS)}))
        return page

    def _read_companies(self, cursor: str | None) -> Iterator[Page]:
        now = int(time.time())
        if cursor and cursor.isdigit() and now - int(cursor) < COMPANIES_EVERY_SECONDS:
            return
        number = 1
        while True:
            params = {"page": number, "per_page": min(self.per_page, COMPANIES_PER_PAGE)}
            data = _json_object(self.client.request("POST", "/companies/list", params=params).data, "/companies/list")
            page = Page()
            for company in _list_field(data, "data", "/companies/list"):
                _guard(page, company, lambda c: page.add("organizations", _organization_row(c)))
            pages = _obj(data, "pages")
            total_pages = pages["total_pages"] if isinstance(pages.get("total_pages"), int) else number
            last = number >= total_pages or not pages.get("next")
            page.cursor = str(now) if last else None
            yield page
            if last:
                return
            number += 1

    def _contacts_page(self, items: list[dict[str, Any]]) -> Page:
        page = Page()
        for item in items:
            _guard(page, item, lambda c: page.add("people", self._person_row(c)))
        return page

    def _person_row(self, contact: Mapping[str, Any]) -> dict[str, Any]:
        facts = _contact_facts(contact)
        self._remember(_id(contact["id"]), facts)
        return {
            "source": SOURCE, "source_id": _id(contact["id"]), "role": Role.CUSTOMER.value,
            "locale": facts.locale, "language": facts.language, "country": facts.country,
            "organization_id": facts.organization_id,
            "custom": _dict_or_empty(contact.get("custom_attributes"), "custom_attributes"),
            "raw": self.privacy.raw(contact),
            **self.privacy.person(contact.get("name"), contact.get("email"), contact.get("phone")),
        }

    def _remember(self, contact_id: str, facts: ContactFacts) -> None:
        if len(self._contacts) >= CONTACT_CACHE_LIMIT:
            self._contacts.clear()
        self._contacts[contact_id] = facts

    def _requesters(self, conversations: Iterable[Mapping[str, Any]]) -> dict[str, ContactFacts]:
        """Facts of each conversation's first contact: cached, else one search per 150 ids."""
        wanted = {cid for c in conversations if (cid := _first_contact_id(c)) is not None}
        missing = sorted(wanted - self._contacts.keys())
        for start in range(0, len(missing), MAX_PER_PAGE):
            chunk = missing[start:start + MAX_PER_PAGE]
            body = {"query": {"field": "id", "operator": "IN", "value": chunk},
                    "pagination": {"per_page": MAX_PER_PAGE}}
            data = _json_object(self.client.request("POST", "/contacts/search", json_body=body).data, "/contacts/search")
            for contact in _list_field(data, "data", "/contacts/search"):
                try:
                    self._remember(_id(contact["id"]), _contact_facts(contact))
                except (KeyError, TypeError, ValueError, RecordError) as exc:
                    log.warning("%s: contact lookup: skipping a contact that cannot be read (%s)", SOURCE, exc)
            for cid in chunk:
                self._contacts.setdefault(cid, UNKNOWN_CONTACT)  # deleted or merged contact
        return {cid: self._contacts.get(cid, UNKNOWN_CONTACT) for cid in wanted}

    # --- conversations ---------------------------------------------------------------------

    def _conversations_page(self, items: list[dict[str, Any]]) -> Page:
        page = Page()
        requesters = self._requesters(i for i in items if isinstance(i, dict))
        for item in items:
            ident = _ident_or_unknown(item)
            try:
                conversation, parts = self._with_parts(item)
                one = Page()
                if conversation is None:
                    one.add("contacts", _deleted_row(item))
                else:
                    facts = requesters.get(_first_contact_id(conversation) or "", UNKNOWN_CONTACT)
                    for table, row in conversation_records(conversation, parts, facts, self.privacy):
                        one.add(table, row)
            except (KeyError, TypeError, ValueError, RecordError) as exc:
                page.reject(ident, f"conversation cannot be normalized: {_reason(exc)}")
                continue
            for table, rows in one.records.items():
                page.records.setdefault(table, []).extend(rows)
        return page

    def _with_parts(self, item: dict[str, Any]) -> tuple[dict[str, Any] | None, list[dict[str, Any]] | None]:
        """The conversation and its parts; parts None when it has none; (None, None) when deleted."""
        stats = item.get("statistics")
        if isinstance(stats, dict) and stats.get("count_conversation_parts") == 0:
            return item, []
        path = f"/conversations/{_id(item['id'])}"
        try:
            detail = _json_object(self.client.get(path).data, path)
        except FatalApiError as exc:
            if exc.status == 404:
                return None, None  # deleted between the search and this fetch
            raise
        parts_list = detail.get("conversation_parts")
        if not isinstance(parts_list, dict) or not isinstance(parts_list.get("conversation_parts"), list):
            raise TypeError(f"GET {path}: conversation_parts is not a list")
        return detail, parts_list["conversation_parts"]


# --- normalization (pure functions over payloads) ----------------------------------------------


def conversation_records(conversation: Mapping[str, Any], parts: list[dict[str, Any]] | None,
                         requester: ContactFacts, privacy: Privacy = DEFAULT_PRIVACY
                         ) -> Iterator[tuple[str, dict[str, Any]]]:
    """The normalized rows of one conversation: contact, messages, status events, rating."""
    cid = _id(conversation["id"])
    stats = conversation.get("statistics")
    stats = stats if isinstance(stats, dict) else {}
    source = conversation["source"]
    if not isinstance(source, dict):
        raise TypeError("source should be an object")
    ordered = sorted(parts or [], key=lambda p: (int(p["created_at"]), str(p.get("id"))))
    complete = not _truncated(len(ordered), stats.get("count_conversation_parts"))
    state = conversation["state"]
    if state not in STATES:
        raise ValueError(f"unknown state {state!r}")
    row: dict[str, Any] = {
        "source": SOURCE, "source_id": cid,
        "channel": CHANNELS.get(str(source.get("type")), Channel.OTHER).value,
        "status": STATES[state].value,
        "priority": "high" if conversation.get("priority") == "priority" else "normal",
        "created_at": _time(conversation["created_at"]),
        "updated_at": _time(conversation["updated_at"]),
        "requester_id": _first_contact_id(conversation),
        "assignee_id": _opt_id(conversation.get("admin_assignee_id")),
        "group_id": _opt_id(conversation.get("team_assignee_id")),
        "organization_id": requester.organization_id,
        "language": requester.language, "locale": requester.locale, "country": requester.country,
        "ticket_type": _ticket_type(conversation.get("ticket")),
        "tags": _tag_names(conversation.get("tags")),
        "custom": _dict_or_empty(conversation.get("custom_attributes"), "custom_attributes"),
        "is_outbound": source.get("delivered_as", "customer_initiated") != "customer_initiated",
        "handle_seconds": _opt_number(stats.get("handling_time")),
        "facts_from_events": complete,
        "messages_truncated": not complete,
        "vendor": _vendor(conversation, stats),
        "raw": privacy.raw({k: v for k, v in conversation.items() if k != "conversation_parts"}),
    }
    if not complete:
        row.update(_facts_from_statistics(conversation, stats))
    yield "contacts", row
    yield "messages", _source_message(cid, conversation, source, privacy)
    for part in ordered:
        public = MESSAGE_PARTS.get(str(part.get("part_type")))
        if public is None:
            continue
        author = _obj(part, "author")
        yield "messages", {"source": SOURCE, "source_id": _id(part["id"]), "contact_id": cid,
                           "author_id": _opt_id(author.get("id")), "author_role": author_role(author).value,
                           "public": public, "created_at": _time(part["created_at"]),
                           "body": privacy.body(part.get("body"))}
    if complete:
        for kind, event in status_history(ordered):
            yield "status_events", {"source": SOURCE, "source_id": _id(event["id"]), "contact_id": cid,
                                    "kind": kind.value, "at": _time(event["created_at"])}
    rating = conversation.get("conversation_rating")
    if isinstance(rating, dict) and rating.get("rating") is not None:
        yield "survey_responses", _survey_row(cid, conversation, rating, privacy)


def author_role(author: Mapping[str, Any]) -> Role:
    """Who wrote a part (see the module docstring for the bot/Operator split)."""
    if author.get("from_ai_agent") or author.get("is_ai_answer"):
        return Role.BOT
    kind = author.get("type")
    if kind in CUSTOMER_AUTHORS:
        return Role.CUSTOMER
    if kind in AGENT_AUTHORS:
        return Role.AGENT
    return Role.SYSTEM


def status_history(parts: Sequence[Mapping[str, Any]]) -> Iterator[tuple[StatusEventKind, Mapping[str, Any]]]:
    """Entries into and exits from `closed`, from the parts' types and the state they left."""
    closed = False
    for part in parts:
        part_type, state = part.get("part_type"), part.get("state")
        if not closed and (part_type == "close" or state == "closed"):
            closed = True
            yield StatusEventKind.RESOLVED, part
        elif closed and (part_type in REOPENING_PARTS or state in ("open", "snoozed")):
            closed = False
            yield StatusEventKind.REOPENED, part


def _truncated(returned: int, count: Any) -> bool:
    if not isinstance(count, int) or isinstance(count, bool):
        return False
    # Whether the count includes the source is not documented: allow one extra, except at the cap.
    return count > returned + 1 or (returned >= PARTS_CAP and count > returned)


def _facts_from_statistics(conversation: Mapping[str, Any], stats: Mapping[str, Any]) -> dict[str, Any]:
    first_reply = _opt_time(stats.get("first_admin_reply_at"))
    first_close = _opt_time(stats.get("first_close_at"))
    bot = bool(conversation.get("ai_agent_participated"))
    reopens = stats.get("count_reopens")
    return {
        "first_customer_message_at": _opt_time(stats.get("first_contact_reply_at")),
        "first_agent_reply_at": first_reply,
        "first_resolved_at": first_close,
        "last_resolved_at": _opt_time(stats.get("last_close_at")),
        "reopens": reopens if isinstance(reopens, int) and not isinstance(reopens, bool) else None,
        "agent_replies": None,  # only the last 500 parts are visible: a count would be a guess
        "customer_messages": None,
        "has_bot_message": bot,
        "is_bot_only": bool(first_close and not first_reply and bot),
        "last_activity_at": _time(conversation["updated_at"]),
    }


def _source_message(cid: str, conversation: Mapping[str, Any], source: Mapping[str, Any],
                    privacy: Privacy = DEFAULT_PRIVACY) -> dict[str, Any]:
    author = _obj(source, "author")
    return {"source": SOURCE, "source_id": f"{cid}:source", "contact_id": cid,
            "author_id": _opt_id(author.get("id")), "author_role": author_role(author).value,
            "public": True, "created_at": _time(conversation["created_at"]), "body": privacy.body(source.get("body"))}


def _survey_row(cid: str, conversation: Mapping[str, Any], rating: Mapping[str, Any],
                privacy: Privacy = DEFAULT_PRIVACY) -> dict[str, Any]:
    score = rating["rating"]
    if not isinstance(score, int) or isinstance(score, bool) or not 1 <= score <= 5:
        raise ValueError(f"conversation_rating.rating should be 1..5, got {score!r}")
    answered = rating.get("updated_at") or rating.get("created_at")
    contact = _obj(rating, "contact")
    teammate = _obj(rating, "teammate")
    return {
        "source": SOURCE, "source_id": cid, "kind": SurveyKind.CSAT.value, "score": float(score), "scale": "1-5",
        "is_positive": is_positive_response(SurveyKind.CSAT, score, "1-5"),
        "created_at": _time(answered), "contact_id": cid,
        "requester_id": _opt_id(contact.get("id")) or _first_contact_id(conversation),
        "agent_id": _opt_id(teammate.get("id")) or _opt_id(conversation.get("admin_assignee_id")),
        "comment": privacy.comment(rating.get("remark")), "raw": privacy.raw(dict(rating)),
    }


def _vendor(conversation: Mapping[str, Any], stats: Mapping[str, Any]) -> dict[str, Any]:
    vendor: dict[str, Any] = {k: stats[k] for k in VENDOR_SECONDS + VENDOR_COUNTS if _is_number(stats.get(k))}
    vendor.update({k: _opt_time(stats[k]) for k in VENDOR_TIMES if _is_number(stats.get(k))})
    ai_agent = conversation.get("ai_agent")
    if isinstance(ai_agent, dict):
        vendor["ai_agent_resolution_state"] = ai_agent.get("resolution_state")
    vendor["ai_agent_participated"] = bool(conversation.get("ai_agent_participated"))
    return vendor


def _deleted_row(item: Mapping[str, Any]) -> dict[str, Any]:
    source = _obj(item, "source")
    return {"source": SOURCE, "source_id": _id(item["id"]), "status": Status.DELETED.value,
            "channel": CHANNELS.get(str(source.get("type")), Channel.OTHER).value,
            "created_at": _time(item["created_at"]), "updated_at": _time(item["updated_at"])}


def _organization_row(company: Mapping[str, Any]) -> dict[str, Any]:
    custom = _dict_or_empty(company.get("custom_attributes"), "custom_attributes")
    country = custom.get("country")
    return {"source": SOURCE, "source_id": _id(company["id"]), "name": _opt_str(company.get("name")),
            "country": _country(country) if isinstance(country, str) else None,
            "tags": _tag_names(company.get("tags")), "custom": custom, "raw": scrub(dict(company), PERSONAL_KEYS)}


def _contact_facts(contact: Mapping[str, Any]) -> ContactFacts:
    locale = _opt_str(contact.get("language_override")) or _opt_str(contact.get("browser_language"))
    location = _obj(contact, "location")
    country = location.get("country")
    companies = _obj(contact, "companies")
    data = companies.get("data") if isinstance(companies.get("data"), list) else []
    first = data[0] if data and isinstance(data[0], dict) else {}
    return ContactFacts(locale, primary_language(locale), _country(country) if isinstance(country, str) else None,
                        _opt_id(first.get("id")))


def _country(value: str) -> str | None:
    text = value.strip()
    if not text:
        return None
    if len(text) == 2 and text.isalpha():
        return text.upper()
    return COUNTRY_CODES.get(text.lower(), text)


# --- payload helpers -----------------------------------------------------------------------


def _obj(mapping: Mapping[str, Any], key: str) -> dict[str, Any]:
    """`mapping[key]` when it is an object, else an empty one (optional sub-objects)."""
    value = mapping.get(key)
    return value if isinstance(value, dict) else {}


def _json_object(data: Any, path: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise MalformedResponse(f"{SOURCE}: {path}: expected a JSON object, got {type(data).__name__}")
    return data


def _list_field(data: Mapping[str, Any], key: str, path: str) -> list[Any]:
    value = data.get(key)
    if not isinstance(value, list):
        raise MalformedResponse(f"{SOURCE}: {path}: the response has no {key!r} list")
    return value


def _next_token(data: Mapping[str, Any], path: str) -> str | None:
    pages = data.get("pages")
    nxt = pages.get("next") if isinstance(pages, dict) else None
    if not nxt:
        return None
    token = nxt.get("starting_after") if isinstance(nxt, dict) else None
    if not isinstance(token, str) or not token:
        raise MalformedResponse(f"{SOURCE}: {path}: pages.next has no starting_after")
    return token


def _identity(item: Any) -> tuple[str | None, int | None]:
    if not isinstance(item, dict):
        return None, None
    ident, updated = item.get("id"), item.get("updated_at")
    ok_id = isinstance(ident, (str, int)) and not isinstance(ident, bool)
    ok_time = isinstance(updated, int) and not isinstance(updated, bool)
    return (str(ident) if ok_id else None), (updated if ok_time else None)


def _stored_versions(page: Page, items: list[dict[str, Any]]) -> Iterator[tuple[str, int]]:
    """(id, updated_at) of the items whose records made it into the page (not rejected)."""
    rejected = {ident for ident, _ in page.rejected}
    for item in items:
        ident, updated = _identity(item)
        if ident is not None and updated is not None and ident not in rejected:
            yield ident, updated


def _guard(page: Page, item: Any, add: Callable[[Any], None]) -> None:
    """Add a record built from `item`, or quarantine it with the reason it failed."""
    try:
        if not isinstance(item, dict):
            raise TypeError(f"expected an object, got {type(item).__name__}")
        add(item)
    except (KeyError, TypeError, ValueError, RecordError) as exc:
        page.reject(_ident_or_unknown(item), _reason(exc))


def _ident_or_unknown(item: Any) -> str:
    ident = item.get("id") if isinstance(item, dict) else None
    return str(ident) if isinstance(ident, (str, int)) and not isinstance(ident, bool) else "(no id)"


def _reason(exc: Exception) -> str:
    return f"missing key {exc}" if isinstance(exc, KeyError) else str(exc)


def _id(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)) or value == "":
        raise ValueError(f"not an id: {value!r}")
    return str(value)


def _opt_id(value: Any) -> str | None:
    return None if value is None or value == "" else _id(value)


def _opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _opt_number(value: Any) -> float | None:
    return float(value) if _is_number(value) else None


def _time(value: Any) -> str:
    if not _is_number(value):
        raise ValueError(f"not an epoch timestamp: {value!r}")
    stamp = iso_utc(value)
    assert stamp is not None
    return stamp


def _opt_time(value: Any) -> str | None:
    return _time(value) if value is not None else None


def _first_contact_id(conversation: Mapping[str, Any]) -> str | None:
    contacts = conversation.get("contacts")
    listed = contacts.get("contacts") if isinstance(contacts, dict) else None
    if isinstance(listed, list) and listed and isinstance(listed[0], dict):
        return _opt_id(listed[0].get("id"))
    return None


def _tag_names(tags: Any) -> list[str]:
    listed = tags.get("tags") if isinstance(tags, dict) else None
    return [t["name"] for t in listed or [] if isinstance(t, dict) and isinstance(t.get("name"), str)]


def _ticket_type(ticket: Any) -> str | None:
    kind = ticket.get("ticket_type") if isinstance(ticket, dict) else None
    return _opt_str(kind.get("name")) if isinstance(kind, dict) else None


def _dict_or_empty(value: Any, key: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise TypeError(f"{key} should be an object, got {type(value).__name__}")
    return value
