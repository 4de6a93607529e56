"""Freshdesk payloads as normalized rows: pure functions, no HTTP (reference §3).

Each function takes records as the API documents them and returns rows, raising
`RecordError` (or a `KeyError`/`TypeError` of a payload of unexpected shape) for
`connectors.records.keep` to quarantine the record. Field readers name the field, never
echo its value.

Freshdesk's satisfaction answers are codes, not points: -103..103, where 101-103 are the
positive answers, 100 neutral and -101..-103 negative. That scale is Freshdesk's own, so it
is declared here (`FRESHDESK_SCALE`), not among kpi_core's neutral scales: its answers are
stored with `scale = 'freshdesk'` and the `is_positive` this scale gives them, which the KPI
engine takes as it is for a scale it does not know. Being categorical, it is never rescaled
onto NPS or CES. Only the seven codes are answers: any other number (0, 50, 104) is stored
with `is_positive` unknown, so it counts in no CSAT figure (catalogue 2c) until the admin
says what it means.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from connectors.base import PersonalKeys, Privacy, scrub
from connectors.records import flag, opt_iso_time, record_id
from connectors.records import opt_str as _opt_text
from kpi_core.model import (
    RESOLVED_STATUSES,
    Channel,
    Priority,
    RecordError,
    Role,
    Scale,
    Status,
    StatusEventKind,
    SurveyKind,
    is_positive_response,
    primary_language,
)

SOURCE = "freshdesk"
OUTBOUND_EMAIL = 10
BOT_SOURCE = 12
CSAT_QUESTION = "default_question"
FRESHDESK_SCALE_NAME = "freshdesk"
FRESHDESK_SCALE = Scale(FRESHDESK_SCALE_NAME, -103, 103, positive_from=101, categorical=True)
CSAT_SCALE = FRESHDESK_SCALE.name
# The answer codes of Freshdesk's classic survey: extremely happy 103, very happy 102, happy 101,
# neutral 100, unhappy -101, very unhappy -102, extremely unhappy -103 (2- and 3-point surveys
# use subsets). Above neutral is positive (catalogue 2c).
FRESHDESK_CODES = frozenset({103, 102, 101, 100, -101, -102, -103})
# The note Freshdesk adds to each secondary ticket of a merge unless the agent writes another
# (the merge dialog's text, and Freshdesk's own merge tests); the primary's number follows it.
DEFAULT_MERGE_NOTE = "This ticket is closed and merged into ticket"

STATUSES: dict[int, Status] = {2: Status.OPEN, 3: Status.PENDING, 4: Status.RESOLVED, 5: Status.CLOSED}
PRIORITIES: dict[int, Priority] = {1: Priority.LOW, 2: Priority.NORMAL, 3: Priority.HIGH, 4: Priority.URGENT}
# Ticket `source` codes 1-13 as an account's ticket-field definition lists them (reference,
# Errata), mapped as catalogue 2c says; codes an account adds later are `other`.
CHANNELS: dict[int, Channel] = {
    1: Channel.EMAIL, 2: Channel.WEB_FORM, 3: Channel.PHONE, 4: Channel.SOCIAL, 5: Channel.SOCIAL,
    6: Channel.SOCIAL, 7: Channel.CHAT, 8: Channel.WEB_FORM, 9: Channel.WEB_FORM, 10: Channel.EMAIL,
    11: Channel.EMAIL, 12: Channel.CHAT, 13: Channel.MESSAGING,
}
# The app or network a source code names (catalogue 2c "Platform"); every other code: its channel.
PLATFORMS: dict[int, str] = {
    5: "twitter", 6: "facebook", 7: "web_chat", 8: "mobile_app", 11: "marketplace", 13: "whatsapp",
}

# Keys that carry names, addresses, phone numbers, subjects, bodies or survey comments, by
# the [privacy] switch that may keep them.
PERSONAL = PersonalKeys(
    names=frozenset({"name"}),
    emails=frozenset({"email", "other_emails", "support_email", "from_email", "to_emails", "cc_emails", "bcc_emails",
                      "fwd_emails", "reply_cc_emails", "ticket_cc_emails"}),
    phones=frozenset({"phone", "mobile", "other_phone_numbers"}),
    bodies=frozenset({"description", "description_text", "subject", "body", "body_text"}),
    comments=frozenset({"feedback"}),
    # `requester` (a sideload) holds name, address and phone number together.
    always=frozenset({"address", "twitter_id", "facebook_id", "unique_external_id", "avatar", "job_title", "signature",
                      "note", "requester", "attachments"}),
)
PERSONAL_KEYS: frozenset[str] = PERSONAL.every()


STATS_TIMES = ("first_responded_at", "agent_responded_at", "requester_responded_at", "resolved_at", "reopened_at",
               "closed_at", "status_updated_at", "pending_since")


def ticket_status(code: int) -> Status:
    """2 open, 3 pending, 4 resolved, 5 closed; custom statuses (6 and up) are on hold."""
    if code in STATUSES:
        return STATUSES[code]
    if code >= 6:
        return Status.ON_HOLD
    raise RecordError(f"unknown status code {code}")


def parse_time_spent(value: Any) -> float:
    """Freshdesk's "hh:mm" -> seconds."""
    if not isinstance(value, str) or not re.fullmatch(r"\d+:[0-5]\d", value):
        raise RecordError("time_spent should be 'hh:mm'")
    hours, minutes = value.split(":")
    return float(int(hours) * 3600 + int(minutes) * 60)


def time_entry_seconds(row: Mapping[str, Any]) -> float:
    """A time entry's length: `time_spent_in_seconds`, else the "hh:mm" `time_spent` text (whole minutes)."""
    seconds = row.get("time_spent_in_seconds")
    if seconds is None:
        return parse_time_spent(row.get("time_spent"))
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
        raise RecordError(f"time_spent_in_seconds should be a number of seconds, got {type(seconds).__name__}")
    return float(seconds)


def time_entry(row: Mapping[str, Any]) -> tuple[str, float]:
    """(ticket id, seconds) of a time entry; RecordError when it does not read."""
    return _id(row, "ticket_id"), time_entry_seconds(row)


def is_positive(kind: str, score: float, scale: str) -> bool | None:
    """Positivity on Freshdesk's own scale (None for a number that is not one of its codes), else on
    kpi_core's neutral scales."""
    if scale == FRESHDESK_SCALE.name:
        if kind != SurveyKind.CSAT or score not in FRESHDESK_CODES:
            return None
        return FRESHDESK_SCALE.is_positive(score)
    return is_positive_response(kind, score, scale)


def agent_row(row: Mapping[str, Any], bot_ids: frozenset[str], privacy: Privacy) -> dict[str, Any]:
    """An agent as a person: the bot when listed in `bot_agent_ids`."""
    ident = _id(row, "id")
    contact = _opt_dict(row, "contact")
    locale = _opt_str(contact, "language")
    return {
        "source": SOURCE, "source_id": ident, "role": Role.BOT if ident in bot_ids else Role.AGENT,
        "locale": locale, "language": primary_language(locale),
        "time_zone": _opt_str(contact, "time_zone"), "raw": privacy.raw(row),
        **privacy.staff(contact.get("name"), contact.get("email"), contact.get("phone") or contact.get("mobile")),
    }


def group_row(row: Mapping[str, Any]) -> dict[str, Any]:
    return {"source": SOURCE, "source_id": _id(row, "id"), "name": _opt_str(row, "name"),
            "raw": scrub(row, PERSONAL_KEYS - {"name"})}


def company_row(row: Mapping[str, Any]) -> dict[str, Any]:
    return {"source": SOURCE, "source_id": _id(row, "id"), "name": _opt_str(row, "name"),
            "custom": _opt_dict(row, "custom_fields"), "raw": scrub(row, PERSONAL_KEYS - {"name"})}


def person_row(row: Mapping[str, Any], privacy: Privacy) -> dict[str, Any]:
    """A contact as a person: always a customer."""
    locale = _opt_str(row, "language")
    return {
        "source": SOURCE, "source_id": _id(row, "id"), "role": Role.CUSTOMER,
        "locale": locale, "language": primary_language(locale), "time_zone": _opt_str(row, "time_zone"),
        "organization_id": _opt_id(row, "company_id"), "tags": _str_list(row, "tags"),
        "custom": _opt_dict(row, "custom_fields"), "raw": privacy.raw(row),
        **privacy.person(row.get("name"), row.get("email"), row.get("phone") or row.get("mobile")),
    }


def ticket_fields(row: Mapping[str, Any], privacy: Privacy, channels: Mapping[int, Channel] = CHANNELS,
                  platforms: Mapping[int, str] = PLATFORMS) -> dict[str, Any]:
    """The columns of a ticket that need no other call (`channels`/`platforms`: the defaults with the admin's)."""
    source = _int(row, "source")
    channel = channels.get(source, Channel.OTHER)
    return {
        "source": SOURCE, "source_id": _id(row, "id"),
        "channel": channel, "platform": platforms.get(source, channel.value),
        "status": ticket_status(_int(row, "status")),
        "priority": PRIORITIES.get(_int(row, "priority")) if row.get("priority") is not None else None,
        "created_at": _time(row, "created_at"), "updated_at": _time(row, "updated_at"),
        "requester_id": _opt_id(row, "requester_id"), "assignee_id": _opt_id(row, "responder_id"),
        "group_id": _opt_id(row, "group_id"), "organization_id": _opt_id(row, "company_id"),
        "ticket_type": _opt_str(row, "type"), "tags": _str_list(row, "tags"), "custom": _opt_dict(row, "custom_fields"),
        "is_outbound": source == OUTBOUND_EMAIL, "raw": privacy.raw(row),
    }


def stats_of(row: Mapping[str, Any]) -> dict[str, Any]:
    """A ticket's `stats` object (`include=stats`), empty when not sent."""
    return _opt_dict(row, "stats")


def vendor_times(stats: Mapping[str, Any]) -> dict[str, Any]:
    """The times `stats` gives, kept for comparison with our own facts."""
    return {key: _time(stats, key) for key in STATS_TIMES}


def first_message(contact: Mapping[str, Any], description: Any, bot_ids: frozenset[str],
                  privacy: Privacy) -> dict[str, Any]:
    """Message #0: the ticket's description, which its conversations do not repeat."""
    if contact["is_outbound"]:
        author = contact["assignee_id"]
        role = Role.BOT if author in bot_ids else Role.AGENT
    else:
        author, role = contact["requester_id"], Role.CUSTOMER
    return {
        "source": SOURCE, "source_id": f"{contact['source_id']}:description", "contact_id": contact["source_id"],
        "author_id": author, "author_role": role, "public": True, "created_at": contact["created_at"],
        "body": privacy.body(description),
    }


def opening_messages(contact: Mapping[str, Any], source: int, description: Any, bot_ids: frozenset[str],
                     privacy: Privacy) -> list[dict[str, Any]]:
    """The messages a ticket's own fields hold: the description, and for a bot ticket the bot's side of it.

    A ticket from source 12 (bot) carries the customer's conversation with the bot in its
    description until a human writes (reference, Errata): the customer wrote, and the bot
    answered, before the ticket existed. The description stays the customer's first message
    (so a human's later answer is a reply to it), and the bot's part of that conversation is a
    bot message at the same time, at/after the customer's first message: a bot ticket resolved
    with no human reply is bot-only (catalogue 2c). Its text is in the description already.
    """
    first = first_message(contact, description, bot_ids, privacy)
    if source != BOT_SOURCE or contact["is_outbound"]:
        return [first]
    bot = {**first, "source_id": f"{contact['source_id']}:bot", "author_id": None, "author_role": Role.BOT,
           "body": None}
    return [first, bot]


def message_row(ticket_id: str, row: Mapping[str, Any], agents: frozenset[str], bot_ids: frozenset[str],
                privacy: Privacy) -> dict[str, Any]:
    """A conversation (reply or note) of a ticket as a message."""
    author = _opt_id(row, "user_id")
    private = _bool(row, "private")
    return {
        "source": SOURCE, "source_id": _id(row, "id"), "contact_id": ticket_id, "author_id": author,
        "author_role": author_role(author, _bool(row, "incoming"), agents, bot_ids),
        "public": not private, "created_at": _time(row, "created_at"),
        "body": privacy.body(row.get("body_text", row.get("body"))),
    }


def author_role(author: str | None, incoming: bool, agents: frozenset[str], bot_ids: frozenset[str]) -> Role:
    """A configured bot's (whatever the flags say); else customer when it came from outside or from a non-agent."""
    if author is not None and author in bot_ids:
        return Role.BOT  # `bot_agent_ids` marks a bot on every source (catalogue 2c)
    if incoming or author is None:
        return Role.CUSTOMER
    return Role.AGENT if author in agents else Role.CUSTOMER


def status_events(ticket_id: str, stats: Mapping[str, Any], status: Status | None = None,
                  updated_at: str | None = None) -> list[dict[str, Any]]:
    """Each resolution and reopen the ticket shows now; the store keeps those of earlier syncs.

    `stats` hold only the latest `resolved_at` / `reopened_at`, so each becomes an event whose
    id is its kind and time, and the store accumulates the history sync after sync (catalogue
    §1: the first resolution is the earliest resolved time the store has seen). The ticket's
    own `status` (when given) fills what `stats` leave out:
    - resolved or closed with no resolution time in `stats`: resolved when its status last
      changed (`status_updated_at`, else `updated_at`), so a resolved ticket is never unresolved;
    - neither resolved nor closed although `stats` show a resolution and no reopen after it: it
      left the resolved state since, a reopen, at `status_updated_at` (the latest status
      change, which is that reopen or later), else `updated_at`. Freshdesk documents no rule
      for when it sets `reopened_at`; this reads a status change the snapshot proves instead of
      losing it.
    """
    resolved = _time(stats, "resolved_at") or _time(stats, "closed_at")
    reopened = _time(stats, "reopened_at")
    changed = _time(stats, "status_updated_at") or updated_at
    times: list[tuple[StatusEventKind, str | None]] = []
    if status in RESOLVED_STATUSES and resolved is None:
        resolved = changed
    times += [(StatusEventKind.RESOLVED, resolved), (StatusEventKind.REOPENED, reopened)]
    left = status is not None and status not in RESOLVED_STATUSES
    if left and resolved is not None and (reopened is None or reopened < resolved):
        times.append((StatusEventKind.REOPENED, changed if changed is not None and changed > resolved else None))
    return [{"source": SOURCE, "source_id": f"{ticket_id}:{kind.value}:{at}", "contact_id": ticket_id,
             "kind": kind, "at": at} for kind, at in times if at is not None]


_TAGS = re.compile(r"<[^>]*>")
_SPACES = re.compile(r"\s+")


def note_text(row: Mapping[str, Any]) -> str:
    """A conversation's text (`body_text`, else `body` without its HTML), spaces collapsed."""
    text = row.get("body_text")
    if not isinstance(text, str):
        body = row.get("body")
        text = _TAGS.sub(" ", body) if isinstance(body, str) else ""
    return _SPACES.sub(" ", text).strip()


def merge_target(status: Status, conversations: Sequence[Any],
                 merge_notes: tuple[str, ...] = (DEFAULT_MERGE_NOTE,)) -> tuple[bool, str | None]:
    """(merged, the primary ticket's id when the note names it) of a ticket closed by a merge.

    What the API shows of a merge (`PUT /api/v2/tickets/merge`, which answers 204 with no body):
    each secondary ticket is closed and gets a note, the caller's `note_in_secondary` or
    Freshdesk's default, public or private; the conversations move to the primary. The ticket
    object carries no merged flag and no link to the primary. So a closed ticket is `merged`
    when an agent's (not incoming) conversation reads as a merge note: one of `merge_notes`
    (Freshdesk's default text unless the admin lists theirs), followed by the primary's number.
    A merge note written in other words is not recognised: that ticket counts as a closed one.
    """
    if status != Status.CLOSED:
        return False, None  # a merged ticket is closed; one reopened since is a ticket again
    wanted = [text.lower() for text in merge_notes]
    for row in conversations:
        if not isinstance(row, Mapping) or _bool(row, "incoming"):
            continue  # an item of another shape is quarantined with its ticket (`message_row`)
        lowered = note_text(row).lower()
        for phrase in wanted:
            at = lowered.find(phrase)
            if at >= 0:
                number = re.match(r"\s*#?\s*(\d+)", lowered[at + len(phrase):])
                return True, number.group(1) if number else None
    return False, None


def survey_rows(row: Mapping[str, Any], questions: Mapping[str, tuple[str, str]],
                privacy: Privacy) -> list[dict[str, Any]]:
    """A satisfaction rating's answers: the default question (CSAT on Freshdesk's scale) and the mapped ones."""
    rating_id = _id(row, "id")
    answers = _opt_dict(row, "ratings")
    wanted = {CSAT_QUESTION: (SurveyKind.CSAT.value, CSAT_SCALE), **questions}
    base = {
        "source": SOURCE, "created_at": _time(row, "created_at"), "contact_id": _opt_id(row, "ticket_id"),
        "requester_id": _opt_id(row, "user_id"), "agent_id": _opt_id(row, "agent_id"),
        "comment": privacy.comment(row.get("feedback")), "raw": privacy.raw(row),
    }
    out = []
    for question, (kind, scale) in wanted.items():
        value = answers.get(question)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RecordError(f"ratings.{question} should be a number, got {type(value).__name__}")
        score = float(value)
        out.append({
            **base, "source_id": rating_id if question == CSAT_QUESTION else f"{rating_id}:{question}",
            "kind": kind, "score": score, "scale": scale, "question": question,
            "is_positive": is_positive(kind, score, scale),
        })
    return out


# --- field readers: raise RecordError naming the field, never echoing personal values --------------


def _id(row: Mapping[str, Any], key: str) -> str:
    value = row.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, str)) or value == "":
        raise RecordError(f"{key} should be an id, got {type(value).__name__}")
    return record_id(value, key)


def _opt_id(row: Mapping[str, Any], key: str) -> str | None:
    return None if row.get(key) is None else _id(row, key)


def _int(row: Mapping[str, Any], key: str) -> int:
    value = row.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise RecordError(f"{key} should be an integer, got {type(value).__name__}")
    return value


def _bool(row: Mapping[str, Any], key: str) -> bool:
    return flag(row.get(key, False), key)


def _time(row: Mapping[str, Any], key: str) -> str | None:
    value = row.get(key)
    if value is not None and not isinstance(value, str):
        raise RecordError(f"{key} should be an ISO time, got {type(value).__name__}")
    return opt_iso_time(value, key)


def row_time(row: Any, key: str) -> str | None:
    """A row's time for paging, None when unreadable (the record is quarantined when it is normalized)."""
    if not isinstance(row, Mapping):
        return None
    try:
        return _time(row, key)
    except RecordError:
        return None


def _opt_str(row: Mapping[str, Any], key: str) -> str | None:
    return _opt_text(row.get(key), key)


def _opt_dict(row: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = row.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise RecordError(f"{key} should be an object, got {type(value).__name__}")
    return value


def _str_list(row: Mapping[str, Any], key: str) -> list[str]:
    value = row.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RecordError(f"{key} should be a list of strings")
    return value
