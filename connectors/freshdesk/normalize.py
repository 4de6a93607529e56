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
onto NPS or CES.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from connectors.base import PersonalKeys, Privacy, scrub
from connectors.records import flag, opt_iso_time, record_id
from connectors.records import opt_str as _opt_text
from kpi_core.model import (
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
CSAT_QUESTION = "default_question"
FRESHDESK_SCALE = Scale("freshdesk", -103, 103, positive_from=101, categorical=True)
CSAT_SCALE = FRESHDESK_SCALE.name

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


def platform_of(source: int, channel: Channel) -> str:
    return PLATFORMS.get(source, channel.value)


def is_positive(kind: str, score: float, scale: str) -> bool | None:
    """Positivity on Freshdesk's own scale, else on kpi_core's neutral scales."""
    if scale == FRESHDESK_SCALE.name:
        return FRESHDESK_SCALE.is_positive(score) if kind == SurveyKind.CSAT else None
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
        **privacy.person(contact.get("name"), contact.get("email"), contact.get("phone") or contact.get("mobile")),
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


def ticket_fields(row: Mapping[str, Any], privacy: Privacy) -> dict[str, Any]:
    """The columns of a ticket that need no other call."""
    source = _int(row, "source")
    channel = CHANNELS.get(source, Channel.OTHER)
    return {
        "source": SOURCE, "source_id": _id(row, "id"),
        "channel": channel, "platform": platform_of(source, channel), "status": ticket_status(_int(row, "status")),
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
    """Customer when it came from outside or from a non-agent; else agent (or a configured bot)."""
    if incoming or author is None:
        return Role.CUSTOMER
    if author in bot_ids:
        return Role.BOT
    return Role.AGENT if author in agents else Role.CUSTOMER


def status_events(ticket_id: str, stats: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Each resolution and reopen time `stats` shows; the store keeps those of earlier syncs."""
    resolved = _time(stats, "resolved_at") or _time(stats, "closed_at")
    reopened = _time(stats, "reopened_at")
    events = []
    for kind, at in ((StatusEventKind.RESOLVED, resolved), (StatusEventKind.REOPENED, reopened)):
        if at is not None:
            events.append({"source": SOURCE, "source_id": f"{ticket_id}:{kind.value}:{at}",
                           "contact_id": ticket_id, "kind": kind, "at": at})
    return events


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
