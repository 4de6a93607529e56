"""Derive a contact's reply and resolution facts from its stored messages and status events.

One rule for every helpdesk (the reference's "single ordered message list"): a connector
that delivers a contact's whole history sets `facts_from_events`, and the facts below are
recomputed here, in SQL, whenever a page touches that contact. A connector that can only
give the vendor's own figures (a truncated conversation, say) leaves the flag off and fills
the facts itself. Until the first message of a flagged contact arrives, the vendor's
figures stay in place.

Role of a message author: the message's own `author_role` when the connector knew it,
else the role of the person in `people` (Zendesk tells roles only on users).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

_ROLE = "coalesce(m.author_role, p.role)"

_FACTS_SQL = f"""
WITH touched(source_id) AS (SELECT value FROM json_each(:ids)),
msgs AS (
  SELECT m.contact_id, m.created_at, m.public, {_ROLE} AS role
  FROM messages m
  LEFT JOIN people p ON p.source = m.source AND p.source_id = m.author_id
  WHERE m.source = :source AND m.contact_id IN (SELECT source_id FROM touched)
),
firsts AS (
  SELECT contact_id,
         min(CASE WHEN role = 'customer' THEN created_at END) AS first_customer_message_at,
         count(CASE WHEN role = 'customer' THEN 1 END) AS customer_messages,
         max(CASE WHEN role = 'bot' THEN 1 ELSE 0 END) AS has_bot_message,
         max(created_at) AS last_message_at
  FROM msgs GROUP BY contact_id
),
replies AS (
  SELECT f.contact_id,
         min(m.created_at) AS first_agent_reply_at,
         count(m.created_at) AS agent_replies
  FROM firsts f
  LEFT JOIN msgs m ON m.contact_id = f.contact_id AND m.role = 'agent' AND m.public = 1
       AND (f.first_customer_message_at IS NULL OR m.created_at >= f.first_customer_message_at)
  GROUP BY f.contact_id
),
resolutions AS (
  SELECT contact_id,
         min(CASE WHEN kind = 'resolved' THEN at END) AS first_resolved_at,
         max(CASE WHEN kind = 'resolved' THEN at END) AS last_resolved_at,
         count(CASE WHEN kind = 'reopened' THEN 1 END) AS reopens,
         max(at) AS last_event_at
  FROM status_events
  WHERE source = :source AND contact_id IN (SELECT source_id FROM touched)
  GROUP BY contact_id
)
UPDATE contacts SET
  first_customer_message_at = f.first_customer_message_at,
  customer_messages = f.customer_messages,
  has_bot_message = f.has_bot_message,
  first_agent_reply_at = r.first_agent_reply_at,
  agent_replies = r.agent_replies,
  first_resolved_at = s.first_resolved_at,
  last_resolved_at = s.last_resolved_at,
  reopens = coalesce(s.reopens, 0),
  last_activity_at = max(f.last_message_at, coalesce(s.last_event_at, ''), contacts.created_at),
  is_bot_only = (s.first_resolved_at IS NOT NULL AND r.agent_replies = 0 AND f.has_bot_message = 1)
FROM firsts f
JOIN replies r ON r.contact_id = f.contact_id
LEFT JOIN resolutions s ON s.contact_id = f.contact_id
WHERE contacts.source = :source AND contacts.source_id = f.contact_id AND contacts.facts_from_events = 1
"""


def touched_contacts(records: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[str]:
    """Contact ids whose facts a page may change: the page's contacts, messages and events."""
    ids: set[str] = {row["source_id"] for row in records.get("contacts", ())}
    for table in ("messages", "status_events"):
        ids.update(row["contact_id"] for row in records.get(table, ()))
    return sorted(ids)


def refresh_contacts(conn: sqlite3.Connection, source: str, contact_ids: Iterable[str]) -> None:
    """Recompute the derived facts of these contacts of `source` (inside the caller's transaction)."""
    import json

    conn.execute(_FACTS_SQL, {"source": source, "ids": json.dumps(list(contact_ids))})
