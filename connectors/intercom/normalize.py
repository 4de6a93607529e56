"""Intercom payloads as normalized rows: pure functions, no HTTP (API 2.14).

Each function takes records as the API documents them and returns rows, raising
`RecordError` (or a `KeyError`/`TypeError` of a payload of unexpected shape) for
`connectors.records.keep` to quarantine the record. See the connector's docstring for the
author roles, truncated parts and the facts taken from `statistics`.

Read as the 2.14 specification and the reference's errata say:
- Parts are taken in the order the API returns them, never re-sorted (part ids are
  strings and no order within a second is documented). A reopen is the first part after
  a closing whose `state` is not `closed` (an `open` or `assign_and_reopen` part, or a
  customer message that reopened it), once per closed spell (catalogue 2c).
- The assignee is `admin_assignee_id` (2.x; `0`/`"0"` is nobody); older payloads nest
  `assignee: {type, id}` (`admin`, `team`, `nobody_admin`).
- A 2.14 conversation has no `ticket` property: `ticket_type` is read from an older
  payload's `ticket.ticket_type.name` when present, else left empty.
- A state-changing part (`open`, `close`, `assignment`, `assign_and_reopen`) that carries a
  body is also a public message by its author: the 2.14 requests take an optional message,
  and the spec's "User reply" example is a customer's `open` part with a body.
- `platform` comes from `source.type` (catalogue 2c): the Messenger (`conversation`,
  `chat`) is `web_chat`; `whatsapp`, `instagram`, `facebook`, `twitter`, `sms` are
  themselves; anything else is its channel.
- Outbound (catalogue 1): `source.delivered_as` `admin_initiated`, `automated` or
  `campaigns_initiated`. `operator_initiated` is a custom bot greeting a visiting customer,
  so inbound, as `customer_initiated` is. A value the spec does not list (the search index
  also knows `channel_initiated`) is decided by who wrote the source: a teammate opened it.
- Bots (catalogue 2c): authors of type `bot` (Fin, custom bots, Operator), parts whose
  author is marked `from_ai_agent`/`is_ai_answer`, and the admin's `bot_agent_ids` (an
  integration posting through a teammate's seat) are the bot's.
- Handle time (catalogue 2c): `statistics.adjusted_handling_time` (active handling without
  idle periods), never `handling_time` (assignment to close, waiting included). A
  conversation with no human-agent reply has none (unknown, not 0), whatever is recorded.
- Merged (catalogue 2c): API 2.14 documents no conversation merge. Later versions
  (2.16, Preview) document `POST /conversations/{id}/merge`: "the secondary conversation is
  closed and linked to the primary". Real API data shows a `merged_secondary_conversation`
  part on the conversation merged away (and `merged_primary_conversation` on the one it went
  into). A closed conversation with that part is `merged`; `merged_into` is the linked
  conversation when `linked_objects` names exactly one (else unknown). The primary's merge
  part is no message, so it is never a reply.
- Group and assignee changes: the parts that assign (`assignment`, `assign_and_reopen`, and
  `default_assignment` as recorded data shows it) carry `assigned_to` (a reference: `admin` ->
  the assignee, `team` -> the group, id `0` or type `nobody_admin` -> nobody; null: no change in
  assignment, per the 2.14 schema). The part names no previous value: it is the one the last
  earlier assigning part of the same kind set, in the API's order (None for the first, and for
  the first returned of a conversation whose oldest parts are no longer returned). API 2.14
  documents no part for a priority change: only the current `priority` is known.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from connectors.base import PersonalKeys, Privacy, scrub
from connectors.records import epoch_time, is_number, opt_epoch_time, opt_id, record_id
from kpi_core.model import (
    Channel,
    RecordError,
    Role,
    Status,
    StatusEventKind,
    SurveyKind,
    is_positive_response,
    primary_language,
)

SOURCE = "intercom"
PARTS_CAP = 500

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
# source.type -> platform where it names an app or network; else the channel (catalogue 2c).
PLATFORMS: dict[str, str] = {
    "conversation": "web_chat", "chat": "web_chat", "whatsapp": "whatsapp", "instagram": "instagram",
    "facebook": "facebook", "twitter": "twitter", "sms": "sms",
}
STATES: dict[str, Status] = {"open": Status.OPEN, "snoozed": Status.PENDING, "closed": Status.CLOSED}
MESSAGE_PARTS: dict[str, bool] = {"comment": True, "quick_reply": True, "note": False}  # part_type -> public
# Part types that leave `closed` whatever their `state` says (the documented parts carry none).
REOPENING_PARTS = frozenset({"open", "assign_and_reopen", "snoozed"})
# State changes that may carry a message to the customer (the 2.14 requests' optional `body`;
# the spec's "User reply" example is a user's `open` part with a body): public when they do.
SPEAKING_PARTS = frozenset({"open", "close", "assignment", "assign_and_reopen"})
CUSTOMER_AUTHORS = frozenset({"user", "lead", "contact"})
AGENT_AUTHORS = frozenset({"admin", "team"})
BOT_AUTHORS = frozenset({"bot"})  # Fin, custom bots, Operator (catalogue 2c)
# `source.delivered_as` of a conversation a teammate or an automation opened (catalogue 1); the inbound ones.
OUTBOUND_DELIVERIES = frozenset({"admin_initiated", "automated", "campaigns_initiated"})
INBOUND_DELIVERIES = frozenset({"customer_initiated", "operator_initiated"})
# Parts that assign the conversation (see the module docstring), and what each kind of assignee changes.
ASSIGNING_PARTS = frozenset({"assignment", "assign_and_reopen", "default_assignment"})
ASSIGNED_FIELDS: dict[str, str] = {"admin": "assignee", "nobody_admin": "assignee", "team": "group"}
# The part Intercom adds to a conversation merged away into another (see the module docstring).
MERGED_AWAY_PART = "merged_secondary_conversation"
RATING_SCALE = "1-5"  # conversation_rating.rating (documented)
UNKNOWN_SCALE = "unknown"  # a rating outside 1-5: its scale is not known
NO_BOTS: frozenset[str] = frozenset()

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


@dataclass(frozen=True)
class ContactFacts:
    """What a conversation row takes from its requester."""

    locale: str | None
    language: str
    country: str | None
    organization_id: str | None


UNKNOWN_CONTACT = ContactFacts(None, primary_language(None), None, None)


def admin_row(admin: Mapping[str, Any], privacy: Privacy = DEFAULT_PRIVACY) -> dict[str, Any]:
    """An admin (a teammate) as a person: always an agent."""
    return {"source": SOURCE, "source_id": record_id(admin["id"]), "role": Role.AGENT.value,
            "raw": privacy.raw(admin), **privacy.staff(admin.get("name"), admin.get("email"), admin.get("phone"))}


def team_row(team: Mapping[str, Any]) -> dict[str, Any]:
    return {"source": SOURCE, "source_id": record_id(team["id"]), "name": _opt_str(team.get("name")),
            "raw": scrub(dict(team), PERSONAL_KEYS)}


def person_row(contact: Mapping[str, Any], privacy: Privacy = DEFAULT_PRIVACY) -> dict[str, Any]:
    """A contact (user or lead) as a person: always a customer."""
    facts = contact_facts(contact)
    return {
        "source": SOURCE, "source_id": record_id(contact["id"]), "role": Role.CUSTOMER.value,
        "locale": facts.locale, "language": facts.language, "country": facts.country,
        "organization_id": facts.organization_id,
        "custom": _dict_or_empty(contact.get("custom_attributes"), "custom_attributes"),
        "raw": privacy.raw(contact),
        **privacy.person(contact.get("name"), contact.get("email"), contact.get("phone")),
    }


def conversation_records(conversation: Mapping[str, Any], parts: list[dict[str, Any]] | None,
                         requester: ContactFacts, privacy: Privacy = DEFAULT_PRIVACY,
                         bot_agent_ids: frozenset[str] = NO_BOTS) -> Iterator[tuple[str, dict[str, Any]]]:
    """The normalized rows of one conversation: contact, messages, status events, rating.

    `bot_agent_ids` are the admin's bot accounts (`[connectors.intercom] bot_agent_ids`): their parts
    are the bot's, whatever their author type says."""
    cid = record_id(conversation["id"])
    stats = conversation.get("statistics")
    stats = stats if isinstance(stats, dict) else {}
    source = conversation["source"]
    if not isinstance(source, dict):
        raise RecordError("source should be an object")
    ordered = list(parts or [])  # the API's order: never re-sorted (see the module docstring)
    complete = not _truncated(len(ordered), stats.get("count_conversation_parts"))
    state = conversation["state"]
    if state not in STATES:
        raise RecordError(f"unknown state {state!r}")
    assignee_id, team_id = assignees(conversation)
    channel, platform = channel_and_platform(source)
    created_at = epoch_time(conversation["created_at"], "created_at")
    messages = [_source_message(cid, conversation, source, privacy, bot_agent_ids)]
    messages += [m for part in ordered if (m := _part_message(cid, part, privacy, bot_agent_ids)) is not None]
    outbound = is_outbound(source, messages[0]["author_role"])
    facts = None if complete else _facts_from_statistics(conversation, stats, messages, outbound, created_at)
    if facts is None:
        replied = bool(_replies(messages, _customer_start(messages, outbound, created_at)))
    else:
        replied = facts["first_agent_reply_at"] is not None
    merged, merged_into = merged_away(conversation, ordered)
    row: dict[str, Any] = {
        "source": SOURCE, "source_id": cid, "channel": channel, "platform": platform,
        "status": Status.MERGED.value if merged else STATES[state].value,
        "merged_into": merged_into,
        "priority": "high" if conversation.get("priority") == "priority" else "normal",
        "created_at": created_at,
        "updated_at": epoch_time(conversation["updated_at"], "updated_at"),
        "requester_id": first_contact_id(conversation),
        "assignee_id": assignee_id,
        "group_id": team_id,
        "organization_id": requester.organization_id,
        "language": requester.language, "locale": requester.locale, "country": requester.country,
        "ticket_type": _ticket_type(conversation.get("ticket")),
        "tags": _tag_names(conversation.get("tags")),
        "custom": _dict_or_empty(conversation.get("custom_attributes"), "custom_attributes"),
        "is_outbound": outbound,
        # Active handling only (catalogue 2c); none without a human-agent reply, even where Intercom records some.
        "handle_seconds": _opt_number(stats.get("adjusted_handling_time")) if replied else None,
        "facts_from_events": complete,
        "messages_truncated": not complete,
        "vendor": _vendor(conversation, stats),
        "raw": privacy.raw({k: v for k, v in conversation.items() if k != "conversation_parts"}),
    }
    if facts is not None:
        row.update(facts)
    yield "contacts", row
    for message in messages:
        yield "messages", message
    for change in change_rows(cid, ordered):
        yield "contact_changes", change
    if complete:
        for kind, event in status_history(ordered):
            yield "status_events", {"source": SOURCE, "source_id": record_id(event["id"]), "contact_id": cid,
                                    "kind": kind.value, "at": epoch_time(event["created_at"], "created_at")}
    rating = conversation.get("conversation_rating")
    if isinstance(rating, dict) and rating.get("rating") is not None:
        survey = _survey_row(cid, conversation, rating, privacy)
        if survey is not None:
            yield "survey_responses", survey


def change_rows(cid: str, parts: Sequence[Mapping[str, Any]]) -> Iterator[dict[str, Any]]:
    """The group and assignee changes the assigning parts show, in the API's order (see the module docstring)."""
    current: dict[str, str | None] = {}
    for part in parts:
        assigned = part.get("assigned_to")
        if part.get("part_type") not in ASSIGNING_PARTS or not isinstance(assigned, dict):
            continue
        name = ASSIGNED_FIELDS.get(str(assigned.get("type")))
        if name is None:
            continue
        value = None if assigned.get("type") == "nobody_admin" else _assignee_id(assigned.get("id"))
        previous = current.get(name)
        current[name] = value
        if value == previous:
            continue
        yield {"source": SOURCE, "source_id": record_id(part["id"]), "contact_id": cid, "field": name,
               "value": value, "previous": previous, "at": epoch_time(part["created_at"], "created_at")}


def is_outbound(source: Mapping[str, Any], source_role: str) -> bool:
    """Opened by a teammate or an automation (catalogue 1): `delivered_as` `admin_initiated`, `automated`,
    `campaigns_initiated`; `customer_initiated` and `operator_initiated` (a custom bot greeting a visiting
    customer) are inbound. A value the 2.14 spec does not list, or none: a source a teammate wrote is outbound."""
    delivered = source.get("delivered_as")
    if delivered in OUTBOUND_DELIVERIES:
        return True
    if delivered in INBOUND_DELIVERIES:
        return False
    return source_role == Role.AGENT.value


def merged_away(conversation: Mapping[str, Any], parts: Sequence[Mapping[str, Any]]) -> tuple[bool, str | None]:
    """(merged, merged into): a closed conversation with a `merged_secondary_conversation` part (see the module
    docstring), and the conversation it is linked to when `linked_objects` names exactly one."""
    if conversation.get("state") != "closed" or not any(p.get("part_type") == MERGED_AWAY_PART for p in parts):
        return False, None
    listed = _obj(conversation, "linked_objects").get("data")
    linked = [opt_id(o.get("id")) for o in listed if isinstance(o, dict) and o.get("type") == "conversation"] \
        if isinstance(listed, list) else []
    return True, linked[0] if len(linked) == 1 else None


def _part_message(cid: str, part: Mapping[str, Any], privacy: Privacy,
                  bot_agent_ids: frozenset[str]) -> dict[str, Any] | None:
    public = _message_visibility(part)
    if public is None:
        return None
    author = _obj(part, "author")
    return {"source": SOURCE, "source_id": record_id(part["id"]), "contact_id": cid,
            "author_id": opt_id(author.get("id")), "author_role": author_role(author, bot_agent_ids).value,
            "public": public, "created_at": epoch_time(part["created_at"], "created_at"),
            "body": privacy.body(part.get("body"))}


def _message_visibility(part: Mapping[str, Any]) -> bool | None:
    """True for a public message, False for a note, None for a part that is no message."""
    part_type = str(part.get("part_type"))
    if part_type in MESSAGE_PARTS:
        return MESSAGE_PARTS[part_type]
    body = part.get("body")
    return True if part_type in SPEAKING_PARTS and isinstance(body, str) and body.strip() else None


def author_role(author: Mapping[str, Any], bot_agent_ids: frozenset[str] = NO_BOTS) -> Role:
    """Who wrote a part (catalogue 2c): the AI agent's marks, a `bot` author (Fin, custom bots, Operator) or one
    of the admin's `bot_agent_ids` -> bot; contacts -> customer; teammates -> agent; anything else -> system."""
    kind = author.get("type")
    if author.get("from_ai_agent") or author.get("is_ai_answer") or kind in BOT_AUTHORS:
        return Role.BOT
    if kind in CUSTOMER_AUTHORS:
        return Role.CUSTOMER
    if bot_agent_ids and str(author.get("id")) in bot_agent_ids:
        return Role.BOT  # a bot posting through a teammate's seat (never a contact: their ids are another space)
    if kind in AGENT_AUTHORS:
        return Role.AGENT
    return Role.SYSTEM


def status_history(parts: Sequence[Mapping[str, Any]]) -> Iterator[tuple[StatusEventKind, Mapping[str, Any]]]:
    """Entries into and exits from `closed`, from the parts in the API's order.

    A closed spell starts at a `close` part (or the first part that shows the conversation
    `closed`); it ends at the first later part whose `state` is not `closed`, or that is an
    `open`, `assign_and_reopen` or `snoozed` part (a state other than closed, when the part
    carries no `state`): one reopen per spell (catalogue 2c)."""
    closed = False
    for part in parts:
        part_type, state = part.get("part_type"), part.get("state")
        if not closed:
            if part_type == "close" or state == "closed":
                closed = True
                yield StatusEventKind.RESOLVED, part
        elif part_type in REOPENING_PARTS or (isinstance(state, str) and state != "closed"):
            closed = False
            yield StatusEventKind.REOPENED, part


def _truncated(returned: int, count: Any) -> bool:
    if not isinstance(count, int) or isinstance(count, bool):
        return False
    # Whether the count includes the source is not documented: allow one extra, except at the cap.
    return count > returned + 1 or (returned >= PARTS_CAP and count > returned)


def _customer_start(messages: Sequence[Mapping[str, Any]], outbound: bool, created_at: str) -> str | None:
    """Where replies may start (catalogue 2c, as kpi_core.derive reads it): the first customer message; an
    inbound conversation with none stored started at its creation; an outbound one nobody answered, never."""
    first = min((m["created_at"] for m in messages if m["author_role"] == Role.CUSTOMER.value), default=None)
    return first or (None if outbound else created_at)


def _replies(messages: Sequence[Mapping[str, Any]], start: str | None) -> list[str]:
    """Times of the public human-agent messages at or after `start`, earliest first (ISO UTC text sorts as time)."""
    if start is None:
        return []
    return sorted(m["created_at"] for m in messages
                  if m["author_role"] == Role.AGENT.value and m["public"] and m["created_at"] >= start)


def _facts_from_statistics(conversation: Mapping[str, Any], stats: Mapping[str, Any],
                           messages: Sequence[Mapping[str, Any]], outbound: bool, created_at: str) -> dict[str, Any]:
    """A truncated conversation's facts (only its last 500 parts are returned): `statistics` where it has them,
    bound by the same readings as a whole history (catalogue 2c), and the parts that were returned where not.

    - Replies follow a customer message: no customer message, no reply; a `first_admin_reply_at` before the
      first customer message is dropped (the spec says it comes after `first_contact_reply_at`).
    - `agent_replies` and `customer_messages` are what the returned parts show, plus the first reply (or the
      first customer message) when it lies among the parts no longer returned: exact when the first reply is
      returned (every earlier admin message preceded the customer), else a floor (never 0 for a reply seen).
    - Bot-only needs a bot message at/after the customer's first message: one among the returned parts, or Fin's
      own record of an answer (`ai_agent.last_answer_type`; Fin answers a customer, it does not greet one). A
      bot greeting before the customer wrote never makes it bot-only.
    """
    customers = sorted(m["created_at"] for m in messages if m["author_role"] == Role.CUSTOMER.value)
    first_contact = _obj(conversation, "first_contact_reply").get("created_at")
    first_customer = (opt_epoch_time(stats.get("first_contact_reply_at"), "statistics.first_contact_reply_at")
                      or (epoch_time(first_contact, "first_contact_reply.created_at") if is_number(first_contact)
                          else None)
                      or (customers[0] if customers else None))
    start = first_customer or (None if outbound else created_at)
    seen = _replies(messages, start)
    vendor_reply = opt_epoch_time(stats.get("first_admin_reply_at"), "statistics.first_admin_reply_at")
    if start is None or (vendor_reply is not None and vendor_reply < start):
        vendor_reply = None
    first_reply = vendor_reply or (seen[0] if seen else None)
    if first_reply is not None and seen and seen[0] < first_reply:
        first_reply = seen[0]
    reply_hidden = first_reply is not None and (not seen or first_reply < seen[0])
    customer_hidden = first_customer is not None and (not customers or first_customer < customers[0])
    first_close = opt_epoch_time(stats.get("first_close_at"), "statistics.first_close_at")
    bot = _bot_answered(conversation, messages, start)
    reopens = stats.get("count_reopens")
    return {
        "first_customer_message_at": first_customer,
        "first_agent_reply_at": first_reply,
        "first_resolved_at": first_close,
        "last_resolved_at": opt_epoch_time(stats.get("last_close_at"), "statistics.last_close_at"),
        "reopens": reopens if isinstance(reopens, int) and not isinstance(reopens, bool) else None,
        "agent_replies": len(seen) + reply_hidden,
        "customer_messages": len(customers) + customer_hidden,
        "has_bot_message": bot,
        "is_bot_only": bool(first_close and first_reply is None and bot),
        "last_activity_at": epoch_time(conversation["updated_at"], "updated_at"),
    }


def _bot_answered(conversation: Mapping[str, Any], messages: Sequence[Mapping[str, Any]], start: str | None) -> bool:
    """A bot message at or after the customer's start, among the returned parts or by Fin's own record."""
    if start is None:
        return False
    if any(m["author_role"] == Role.BOT.value and m["created_at"] >= start for m in messages):
        return True
    if not conversation.get("ai_agent_participated"):
        return False
    ai_agent = conversation.get("ai_agent")
    return not isinstance(ai_agent, dict) or ai_agent.get("last_answer_type") is not None


def _source_message(cid: str, conversation: Mapping[str, Any], source: Mapping[str, Any],
                    privacy: Privacy = DEFAULT_PRIVACY, bot_agent_ids: frozenset[str] = NO_BOTS) -> dict[str, Any]:
    author = _obj(source, "author")
    return {"source": SOURCE, "source_id": f"{cid}:source", "contact_id": cid,
            "author_id": opt_id(author.get("id")), "author_role": author_role(author, bot_agent_ids).value,
            "public": True, "created_at": epoch_time(conversation["created_at"], "created_at"),
            "body": privacy.body(source.get("body"))}


def _survey_row(cid: str, conversation: Mapping[str, Any], rating: Mapping[str, Any],
                privacy: Privacy = DEFAULT_PRIVACY) -> dict[str, Any] | None:
    """The conversation rating as a CSAT response, answered at `updated_at` (`created_at` is the request).

    Documented ratings are 1-5. A number outside 1-5 is kept on the scale `unknown` (nobody can tell whether it
    is positive: it counts in no CSAT KPI and `status` lists it until the admin states its scale) rather than
    quarantining the whole conversation; a rating that is no number at all is no response."""
    score = rating["rating"]
    if not is_number(score):
        return None
    scale = RATING_SCALE if 1 <= score <= 5 else UNKNOWN_SCALE
    answered = rating.get("updated_at") or rating.get("created_at")
    contact = _obj(rating, "contact")
    teammate = _obj(rating, "teammate")
    return {
        "source": SOURCE, "source_id": cid, "kind": SurveyKind.CSAT.value, "score": float(score), "scale": scale,
        "is_positive": is_positive_response(SurveyKind.CSAT, score, scale),
        "created_at": epoch_time(answered, "conversation_rating.updated_at"), "contact_id": cid,
        "requester_id": opt_id(contact.get("id")) or first_contact_id(conversation),
        "agent_id": opt_id(teammate.get("id")) or assignees(conversation)[0],
        "comment": privacy.comment(rating.get("remark")), "raw": privacy.raw(dict(rating)),
    }


def _vendor(conversation: Mapping[str, Any], stats: Mapping[str, Any]) -> dict[str, Any]:
    vendor: dict[str, Any] = {k: stats[k] for k in VENDOR_SECONDS + VENDOR_COUNTS if is_number(stats.get(k))}
    vendor.update({k: opt_epoch_time(stats[k], f"statistics.{k}") for k in VENDOR_TIMES if is_number(stats.get(k))})
    ai_agent = conversation.get("ai_agent")
    if isinstance(ai_agent, dict):
        vendor["ai_agent_resolution_state"] = ai_agent.get("resolution_state")
    vendor["ai_agent_participated"] = bool(conversation.get("ai_agent_participated"))
    return vendor


def deleted_row(item: Mapping[str, Any]) -> dict[str, Any]:
    channel, platform = channel_and_platform(_obj(item, "source"))
    return {"source": SOURCE, "source_id": record_id(item["id"]), "status": Status.DELETED.value,
            "channel": channel, "platform": platform,
            "created_at": epoch_time(item["created_at"], "created_at"),
            "updated_at": epoch_time(item["updated_at"], "updated_at")}


def channel_and_platform(source: Mapping[str, Any]) -> tuple[str, str]:
    """The channel and the platform of a conversation's `source.type` (catalogue 1 and 2c)."""
    kind = str(source.get("type"))
    channel = CHANNELS.get(kind, Channel.OTHER).value
    return channel, PLATFORMS.get(kind, channel)


def assignees(conversation: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(admin, team) the conversation is assigned to: `admin_assignee_id`/`team_assignee_id`
    (2.x), else an older payload's nested `assignee` ({type: admin|team|nobody_admin, id})."""
    admin = _assignee_id(conversation.get("admin_assignee_id"))
    team = _assignee_id(conversation.get("team_assignee_id"))
    nested = conversation.get("assignee")
    if isinstance(nested, dict) and "admin_assignee_id" not in conversation:
        kind, ident = nested.get("type"), _assignee_id(nested.get("id"))
        if kind == "admin":
            admin = ident
        elif kind == "team" and team is None:
            team = ident
    return admin, team


def _assignee_id(value: Any) -> str | None:
    ident = opt_id(value)
    return None if ident == "0" else ident  # `0` is nobody (the 2.14 ticket examples)


def organization_row(company: Mapping[str, Any]) -> dict[str, Any]:
    custom = _dict_or_empty(company.get("custom_attributes"), "custom_attributes")
    country = custom.get("country")
    return {"source": SOURCE, "source_id": record_id(company["id"]), "name": _opt_str(company.get("name")),
            "country": _country(country) if isinstance(country, str) else None,
            "tags": _tag_names(company.get("tags")), "custom": custom, "raw": scrub(dict(company), PERSONAL_KEYS)}


def contact_facts(contact: Mapping[str, Any]) -> ContactFacts:
    locale = _opt_str(contact.get("language_override")) or _opt_str(contact.get("browser_language"))
    location = _obj(contact, "location")
    country = location.get("country")
    companies = _obj(contact, "companies")
    data = companies.get("data") if isinstance(companies.get("data"), list) else []
    first = data[0] if data and isinstance(data[0], dict) else {}
    return ContactFacts(locale, primary_language(locale), _country(country) if isinstance(country, str) else None,
                        opt_id(first.get("id")))


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


def _opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _opt_number(value: Any) -> float | None:
    return float(value) if is_number(value) else None


def first_contact_id(conversation: Mapping[str, Any]) -> str | None:
    contacts = conversation.get("contacts")
    listed = contacts.get("contacts") if isinstance(contacts, dict) else None
    if isinstance(listed, list) and listed and isinstance(listed[0], dict):
        return opt_id(listed[0].get("id"))
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
        raise RecordError(f"{key} should be an object, got {type(value).__name__}")
    return value
