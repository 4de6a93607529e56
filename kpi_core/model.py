"""The normalized vocabulary every connector speaks and the KPI engine reads.

Connectors turn vendor payloads into these rows; nothing else about a vendor reaches the
store or the KPIs. Each row is a plain dict (cheap to build by the hundred thousand) whose
keys are the columns of the table named by its record type; `RECORD_TYPES` says which keys
a type carries, and `check_record` enforces it at the boundary.

Timestamps are ISO-8601 UTC text ending in `Z` (`2026-03-01T09:00:05Z`), so that text
order is time order in SQL. Durations carry their unit in the name (`handle_seconds`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import StrEnum
from typing import Any, Final

import orjson


class Channel(StrEnum):
    EMAIL = "email"
    CHAT = "chat"
    MESSAGING = "messaging"
    PHONE = "phone"
    SOCIAL = "social"
    WEB_FORM = "web_form"
    API = "api"
    OTHER = "other"


LIVE_CHANNELS: Final = frozenset({Channel.CHAT, Channel.MESSAGING, Channel.PHONE})


class Status(StrEnum):
    NEW = "new"
    OPEN = "open"
    PENDING = "pending"
    ON_HOLD = "on_hold"
    RESOLVED = "resolved"
    CLOSED = "closed"
    DELETED = "deleted"
    MERGED = "merged"  # closed by being merged into another contact (`merged_into`): counts nowhere


# Contacts that count in no KPI: deleted in the source, or merged away into another contact.
GONE_STATUSES: Final = frozenset({Status.DELETED, Status.MERGED})


RESOLVED_STATUSES: Final = frozenset({Status.RESOLVED, Status.CLOSED})


class Priority(StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"


class Role(StrEnum):
    """Who wrote a message or who a person is."""

    CUSTOMER = "customer"
    AGENT = "agent"
    BOT = "bot"
    SYSTEM = "system"  # triggers, automations, workflows


class SurveyKind(StrEnum):
    CSAT = "csat"
    NPS = "nps"
    CES = "ces"


class StatusEventKind(StrEnum):
    RESOLVED = "resolved"
    REOPENED = "reopened"


@dataclass(frozen=True)
class Scale:
    """A survey answer scale: its range and which answers count as positive.

    `positive_from` is the lowest positive score. A `categorical` scale holds codes, not
    points (good/bad, or a vendor's own answer codes): it is never rescaled onto NPS's 0-10
    or CES's 1-7. The Python rule (`is_positive`) and the engine's SQL
    (`kpi_core.kpis.scales`) are both generated from these fields. A connector whose vendor
    answers on a scale of its own declares a `Scale` in its package and stores the answer's
    `is_positive`; the engine trusts that stored flag for scales not in `SCALES`.
    """

    name: str
    low: int
    high: int
    positive_from: float
    categorical: bool = False

    def contains(self, score: float) -> bool:
        return self.low <= score <= self.high

    def is_positive(self, score: float) -> bool | None:
        """Whether the answer is positive; None for a score outside the scale (unclassified)."""
        return score >= self.positive_from if self.contains(score) else None

    def __iter__(self) -> Iterator[int]:
        # `low, high = SCALES[name]`, as callers read the scales before they were objects.
        return iter((self.low, self.high))


def points_scale(name: str, low: int, high: int) -> Scale:
    """A scale of points whose top 20 % of the span, rounded up, is positive (1-7 -> 6 and 7, 0-10 -> 9 and 10)."""
    top = -(-(high - low) * 20 // 100)
    return Scale(name, low, high, positive_from=high - top + 1)


# The neutral scales, by name. Good/bad and 1-5 have the catalogue's own rules (good; the
# top two points); the others, the top 20 % of their points.
SCALES: Final[dict[str, Scale]] = {s.name: s for s in (
    Scale("good_bad", 0, 1, positive_from=1, categorical=True),
    Scale("1-5", 1, 5, positive_from=4),
    points_scale("0-10", 0, 10),
    points_scale("1-7", 1, 7),
    points_scale("1-3", 1, 3),
    points_scale("1-10", 1, 10),
)}


class RecordError(ValueError):
    """A normalized record is missing a key or carries a value of the wrong type."""


@dataclass(frozen=True)
class RecordType:
    """A normalized table: its name, its key columns and its typed columns."""

    table: str
    columns: Mapping[str, type]
    required: frozenset[str]

    @property
    def pk(self) -> tuple[str, ...]:
        return ("source", "source_id")


def _record_type(table: str, columns: dict[str, type], required: set[str]) -> RecordType:
    return RecordType(table, {"source": str, "source_id": str, **columns},
                      frozenset({"source", "source_id", *required}))


CONTACT = _record_type(
    "contacts",
    {
        "channel": str,
        # The app or network the source names, spelled once across vendors (catalogue 2c):
        # whatsapp, instagram, facebook, web_chat, mobile_app, marketplace, ...; else the channel.
        "platform": str,
        "status": str,
        "priority": str,
        "created_at": str,
        "updated_at": str,
        "first_customer_message_at": str,
        "first_agent_reply_at": str,
        "first_resolved_at": str,
        "last_resolved_at": str,
        "reopens": int,
        "agent_replies": int,
        "customer_messages": int,
        "handle_seconds": float,
        "requester_id": str,
        "assignee_id": str,
        "group_id": str,
        "organization_id": str,
        "brand_id": str,
        "language": str,
        "locale": str,
        "country": str,
        "ticket_type": str,
        "tags": list,
        "custom": dict,
        "is_bot_only": bool,
        "has_bot_message": bool,
        "is_outbound": bool,
        "merged_into": str,  # the surviving contact's source_id, for a merged contact (when the source says)
        "last_activity_at": str,
        # 1 when the connector delivered the contact's whole message and status history,
        # so the store may derive reply/resolution facts from them (see kpi_core/derive.py).
        "facts_from_events": bool,
        "messages_truncated": bool,
        # Conversation insight, derived from the messages' language, sentiment and topic and from the contact's
        # changes (kpi_core/derive.py); never set by a connector.
        "detected_language": str,  # of the first customer message whose language was detected
        "reply_language": str,  # of the first agent reply
        "first_sentiment": float,  # of the first customer message with a score (-1 .. 1)
        "last_sentiment": float,  # of the last customer message with a score
        "min_sentiment": float,  # the lowest score of any customer message
        "topic": str,  # the first customer message's topic
        "regrouped_after_reply": bool,  # moved from one group to another after the first agent reply
        "priority_raised": bool,  # priority raised to high or urgent after the contact was created
        "groups_seen": list,  # every group id the contact's changes put it in (the escalation-group rule)
        "vendor": dict,  # the vendor's own metrics, kept for comparison (`*_vendor` values)
        "raw": dict,  # the payload with personal fields removed
    },
    {"channel", "status", "created_at"},
)

MESSAGE = _record_type(
    "messages",
    {
        "contact_id": str,
        "author_id": str,
        "author_role": str,  # None when only the people table knows the role (Zendesk)
        "public": bool,
        "created_at": str,
        "body": str,  # None unless the admin stores message bodies
        # Conversation insight ([insight] enabled), read from the body in memory during the sync:
        "language": str,  # ISO 639-1 code of the detected language; None when unsure or not analysed
        "sentiment": float,  # -1 (negative) .. 1 (positive); None where no method covers the language
        "topic": str,  # the first admin topic rule the text matches; None when none does
    },
    {"contact_id", "created_at", "public"},
)

STATUS_EVENT = _record_type(
    "status_events",
    {"contact_id": str, "kind": str, "at": str},
    {"contact_id", "kind", "at"},
)

SURVEY_RESPONSE = _record_type(
    "survey_responses",
    {
        "kind": str,
        "score": float,
        "scale": str,
        "is_positive": bool,
        "created_at": str,
        "contact_id": str,
        "requester_id": str,
        "agent_id": str,
        "question": str,
        "comment": str,
        "raw": dict,
    },
    {"kind", "score", "scale", "created_at"},
)

PERSON = _record_type(
    "people",
    {
        "role": str,
        "locale": str,
        "language": str,
        "country": str,
        "organization_id": str,
        "time_zone": str,
        "tags": list,
        "custom": dict,
        "name": str,
        "email": str,
        "phone": str,
        "email_hash": str,
        "raw": dict,
    },
    {"role"},
)

GROUP = _record_type("groups", {"name": str, "raw": dict}, set())

ORGANIZATION = _record_type(
    "organizations",
    {"name": str, "country": str, "tags": list, "custom": dict, "raw": dict},
    set(),
)

# A shop's order (Shopify, or a CSV import). `source` names the shop ("shopify", "csv", an import's
# --source), `source_id` the order id. No names, addresses, e-mails or phones: the customer is
# the keyed hash of their e-mail, the one `people.email_hash` holds, so a customer is matched
# to helpdesk requesters across every helpdesk.
ORDER = _record_type(
    "orders",
    {
        "customer_key": str,  # email_hash(e-mail, [privacy] hash_key); None without a key or an e-mail
        "requester": str,  # a helpdesk requester "source:id" named by an explicit customer-id map
        "shop_customer_id": str,  # the shop's own customer id
        "created_at": str,
        "updated_at": str,
        "cancelled_at": str,
        "currency": str,  # the shop's currency (shop money)
        "total": float,  # the order's total price, in `currency`
        "refunds": list,  # [{"at": ISO UTC, "amount": float}], each refund at its own date, positive amounts
        "lines": list,  # [{"sku": str, "quantity": int}]
        "raw": dict,  # the payload without names, addresses, e-mails, phones and notes
    },
    {"created_at", "total"},
)

# A change of a contact's group, priority or assignee, from the same event streams as the status history:
# the escalation facts (moved to another group after the first reply, raised to high/urgent, assigned to an
# escalation tier) are derived from these. `value`/`previous`: the group or assignee id, or the priority
# spelled as in CONTACT.priority (low, normal, high, urgent); None when the field was emptied or unknown.
CONTACT_CHANGE = _record_type(
    "contact_changes",
    {"contact_id": str, "field": str, "value": str, "previous": str, "at": str},
    {"contact_id", "field", "at"},
)

RECORD_TYPES: Final[dict[str, RecordType]] = {
    t.table: t for t in (CONTACT, MESSAGE, STATUS_EVENT, SURVEY_RESPONSE, PERSON, GROUP, ORGANIZATION, ORDER,
                         CONTACT_CHANGE)
}

_NUMERIC = (int, float)


def check_record(kind: RecordType, row: Mapping[str, Any]) -> None:
    """Raise RecordError naming the record and key when `row` does not fit `kind`."""
    columns = kind.columns
    for key, value in row.items():
        # The common cases, None or a value of exactly its column's type, cost a look-up; the
        # rest (an int in a float column, a non-finite float, anything wrong) gets the full check.
        expected = columns.get(key)
        if value is None:
            if expected is None:
                _check_fully(kind, row)
        elif type(value) is not expected or (type(value) is float and not math.isfinite(value)):
            _check_fully(kind, row)
    for key in kind.required:
        if row.get(key) is None:
            _check_fully(kind, row)


def _check_fully(kind: RecordType, row: Mapping[str, Any]) -> None:
    missing = [k for k in kind.required if row.get(k) is None]
    if missing:
        raise RecordError(f"{kind.table} {_ident(row)}: missing {', '.join(sorted(missing))}")
    for key, value in row.items():
        expected = kind.columns.get(key)
        if expected is None:
            raise RecordError(f"{kind.table} {_ident(row)}: unknown key {key!r}")
        if value is None:
            continue
        if expected is float:
            ok = isinstance(value, _NUMERIC) and not isinstance(value, bool) and math.isfinite(value)
        elif expected is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        else:
            ok = isinstance(value, expected)
        if not ok:
            raise RecordError(
                f"{kind.table} {_ident(row)}: {key} should be {expected.__name__}, got {type(value).__name__}"
            )


def _ident(row: Mapping[str, Any]) -> str:
    return f"{row.get('source')}:{row.get('source_id')}"


# --- small helpers shared by connectors ------------------------------------------------


def iso_utc(value: str | int | float | None) -> str | None:
    """Normalize an ISO string or epoch seconds to `YYYY-MM-DDTHH:MM:SSZ` (UTC)."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise RecordError(f"not a timestamp: {value!r}")
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    if not isinstance(value, str):
        raise RecordError(f"not a timestamp: {value!r}")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise RecordError(f"not a timestamp: {value!r}") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def primary_language(locale: str | None) -> str:
    """`pt-BR` -> `pt`; unknown -> `und` (the catalogue's language rule)."""
    if not locale or not isinstance(locale, str):
        return "und"
    primary = locale.replace("_", "-").split("-")[0].strip().lower()
    return primary if primary.isalpha() and 2 <= len(primary) <= 3 else "und"


def is_positive_response(kind: str, score: float, scale: str) -> bool | None:
    """The catalogue's positive answer on a neutral scale (`SCALES`); None for a scale it does not know.

    NPS has its own rule (promoters, 9-10 on 0-10). A connector whose vendor has a scale of
    its own asks that `Scale` instead.
    """
    if kind == SurveyKind.NPS:
        return score >= 9 if scale == "0-10" else None
    known = SCALES.get(scale)
    return None if known is None else known.is_positive(score)


_JSON_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS


def to_json(value: Any) -> str:
    """Compact JSON text with sorted keys, so that the same payload always gives the same text."""
    try:
        return orjson.dumps(value, default=str, option=_JSON_OPTIONS).decode()
    except TypeError:  # what orjson does not take (an integer beyond 64 bits): the slower encoder
        return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)


def email_hash(address: str, key: bytes) -> str:
    """A keyed hash that stands in for an e-mail address (same customer across helpdesks)."""
    import hashlib
    import hmac

    return hmac.new(key, address.strip().lower().encode("utf-8"), hashlib.sha256).hexdigest()
