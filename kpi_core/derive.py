"""Derive a contact's reply and resolution facts from its stored messages and status events.

One rule for every helpdesk (the reference's "single ordered message list"): a connector
that delivers a contact's whole history sets `facts_from_events`, and the facts below are
recomputed here, in SQL, from everything stored for that contact. A connector that can only
give the vendor's own figures (a truncated conversation, say) leaves the flag off and fills
the facts itself. Until the first message of a flagged contact arrives, the vendor's
figures stay in place.

What counts (catalogue 2c): replies and bot messages follow the customer's side of the
contact — its first customer message, or its creation for an inbound contact with none
stored. An agent message that opens an outbound contact, or any sent before the customer
wrote, is no reply; a bot's greeting or private note does not make a contact bot-only.

When: a stored page only notes the contacts it touched in `derive_pending`, in the page's
own transaction; `settle` derives the noted contacts in batches and clears them, each batch
in one transaction. A sync settles when it ends (and along the way once many are noted), the
KPI engine before it reads. A contact's comments and status changes arrive spread over many
pages of the events export; deriving per page redid the same contact several times per sync
(half the store's time on a first sync). Nothing is lost by waiting: the note is committed
with the rows, so a crash leaves it for the next settle.

Role of a message author: the message's own `author_role` when the connector knew it,
else the role of the person in `people` (Zendesk tells roles only on users).

Conversation insight's facts (the languages, sentiment scores and topics the sync stored on
messages, kpi_core/insight_pass.py; the group and priority changes of `contact_changes`) are
derived for every touched contact, whether or not its connector delivered its whole history:
they describe what was stored, and need no vendor figure to fall back on. They stay free of
settings; the admin's escalation groups are applied by the KPI facts (kpi_core/kpis/facts.py).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

from kpi_core.model import to_json

# Contacts derived per transaction: large enough that a batch reads its messages in few index
# runs, small enough that a batch's commit stays short.
SETTLE_BATCH = 5000
# A sync settles along the way once this many distinct contacts wait: this bounds how stale
# facts get during a very long first sync, and the list of ids a settle reads. A first sync of
# up to 250,000 tickets settles once, at its end (settling every 50,000 noted derived each
# contact two or three times).
SETTLE_AT = 250_000

_ROLE = "coalesce(m.author_role, p.role)"


def _after_bar(expr: str) -> str:
    """What follows the first '|' of `expr` (NULL stays NULL)."""
    return f"substr({expr}, instr({expr}, '|') + 1)"


def _earliest(value: str, when: str, pick: str = "min") -> str:
    """`value` of the earliest (`pick` max: the latest) message meeting `when`, in the one pass of the grouped
    rows: time and value are joined into one text, compared as text (ISO times sort as text), and split after
    the separator (a time never holds '|'). Cheaper than a window per contact, which the settle of a first sync
    would pay for every contact."""
    return _after_bar(f"{pick}(CASE WHEN {when} THEN created_at || '|' || {value} END)")


_CUSTOMER = "role = 'customer'"
_REPLY = "m.role = 'agent' AND m.public = 1"
_PRIORITY_RANK = "CASE {col} WHEN 'low' THEN 1 WHEN 'normal' THEN 2 WHEN 'high' THEN 3 WHEN 'urgent' THEN 4 ELSE 0 END"
# The facts below follow the messages and events only for contacts whose connector delivered them whole
# (`facts_from_events`); the others keep the connector's own figures.
_OWN = "contacts.facts_from_events = 1 AND f.contact_id IS NOT NULL"


def _own(column: str, new: str) -> str:
    return f"{column} = CASE WHEN {_OWN} THEN {new} ELSE contacts.{column} END"


_FACTS_SQL = f"""
WITH touched(source_id) AS (SELECT value FROM json_each(:ids)),
msgs AS (
  SELECT m.contact_id, m.created_at, m.public, {_ROLE} AS role, m.language, m.sentiment, m.topic
  FROM messages m
  LEFT JOIN people p ON p.source = m.source AND p.source_id = m.author_id
  WHERE m.source = :source AND m.contact_id IN (SELECT source_id FROM touched)
),
customers AS (
  SELECT contact_id,
         min(CASE WHEN role = 'customer' THEN created_at END) AS first_customer_message_at,
         count(CASE WHEN role = 'customer' THEN 1 END) AS customer_messages,
         max(created_at) AS last_message_at,
         -- Conversation insight (kpi_core/insight_pass.py). The language of the first customer message whose
         -- language was detected (a greeting too short to tell does not hide the language of what follows).
         nullif({_earliest("language", f"{_CUSTOMER} AND language IS NOT NULL AND language != 'und'")}, '')
           AS detected_language,
         -- Sentiment of the first and the last customer message with a score, and the lowest of any.
         CAST({_earliest("sentiment", f"{_CUSTOMER} AND sentiment IS NOT NULL")} AS REAL) AS first_sentiment,
         CAST({_earliest("sentiment", f"{_CUSTOMER} AND sentiment IS NOT NULL", "max")} AS REAL) AS last_sentiment,
         min(CASE WHEN role = 'customer' THEN sentiment END) AS min_sentiment,
         -- The topic of the first customer message itself (topic rules are written for opening messages).
         nullif({_earliest("coalesce(topic, '')", _CUSTOMER)}, '') AS topic
  FROM msgs GROUP BY contact_id
),
firsts AS (
  -- Where the customer's side starts (catalogue 2c): the first customer message; an inbound contact with none
  -- stored (a call logged by the agent who took it) started at its creation; an outbound one nobody answered
  -- has no start, so nothing on it is a reply.
  SELECT u.*, coalesce(u.first_customer_message_at,
                       CASE WHEN coalesce(c.is_outbound, 0) = 0 THEN c.created_at END) AS customer_start
  FROM customers u JOIN contacts c ON c.source = :source AND c.source_id = u.contact_id
),
replies AS (
  SELECT f.contact_id,
         min(CASE WHEN {_REPLY} THEN m.created_at END) AS first_agent_reply_at,
         count(CASE WHEN {_REPLY} THEN 1 END) AS agent_replies,
         -- A bot's greeting sent before the customer wrote does not make a contact bot-only, nor does a bot's
         -- private note (a hand-over summary): the bot must have answered the customer.
         max(CASE WHEN m.role = 'bot' AND m.public = 1 THEN 1 ELSE 0 END) AS has_bot_message,
         -- The language of that first reply (None when it could not be told).
         nullif({_after_bar(f"min(CASE WHEN {_REPLY} THEN m.created_at || '|' || coalesce(m.language, '') END)")},
                '') AS reply_language
  FROM firsts f
  -- Only what the figures above read (public agent and bot messages): the customer's own are not joined at all.
  LEFT JOIN msgs m ON m.contact_id = f.contact_id AND m.created_at >= f.customer_start AND m.public = 1
                   AND m.role IN ('agent', 'bot')
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
),
changed AS (
  -- A change's former value where the source did not say: the value of the same field's change before it (looked
  -- up only then: a window over every change cost a sort of them all).
  SELECT ch.contact_id, ch.field, ch.value, ch.at,
         coalesce(ch.previous, (SELECT x.value FROM contact_changes x WHERE x.source = :source
                                AND x.contact_id = ch.contact_id AND x.field = ch.field
                                AND (x.at < ch.at OR (x.at = ch.at AND x.rowid < ch.rowid))
                                ORDER BY x.at DESC, x.rowid DESC LIMIT 1)) AS before
  FROM contact_changes ch
  WHERE ch.source = :source AND ch.contact_id IN (SELECT source_id FROM touched) AND ch.field IN ('group', 'priority')
),
escalations AS (
  -- The escalation inputs (the escalation-group rule needs the admin's list: the KPI facts apply it):
  -- the last move from one group to another, the last rise of the priority to high or urgent, and every
  -- group the contact was put in.
  SELECT contact_id,
         max(CASE WHEN field = 'group' AND value IS NOT NULL AND before IS NOT NULL AND value != before
                  THEN at END) AS last_regroup_at,
         max(CASE WHEN field = 'priority' AND value IN ('high', 'urgent')
                  AND {_PRIORITY_RANK.format(col="value")} > {_PRIORITY_RANK.format(col="before")}
                  THEN at END) AS last_raise_at,
         nullif(json_group_array(DISTINCT value) FILTER (WHERE field = 'group' AND value IS NOT NULL), '[]')
           AS groups_seen
  FROM changed GROUP BY contact_id
)
UPDATE contacts SET
  {_own("first_customer_message_at", "f.first_customer_message_at")},
  {_own("customer_messages", "f.customer_messages")},
  {_own("has_bot_message", "r.has_bot_message")},
  {_own("first_agent_reply_at", "r.first_agent_reply_at")},
  {_own("agent_replies", "r.agent_replies")},
  {_own("first_resolved_at", "s.first_resolved_at")},
  {_own("last_resolved_at", "s.last_resolved_at")},
  {_own("reopens", "coalesce(s.reopens, 0)")},
  {_own("last_activity_at", "max(f.last_message_at, coalesce(s.last_event_at, ''), contacts.created_at)")},
  {_own("is_bot_only", "(s.first_resolved_at IS NOT NULL AND r.agent_replies = 0 AND r.has_bot_message = 1)")},
  detected_language = f.detected_language,
  reply_language = r.reply_language,
  first_sentiment = f.first_sentiment,
  last_sentiment = f.last_sentiment,
  min_sentiment = f.min_sentiment,
  topic = f.topic,
  -- Moved to another group after the first agent reply (that of the messages, or the connector's own figure).
  regrouped_after_reply = coalesce(e.last_regroup_at > CASE WHEN {_OWN} THEN r.first_agent_reply_at
                                   ELSE contacts.first_agent_reply_at END, 0),
  -- Raised to high or urgent after the contact was created (a contact opened as urgent was not raised).
  priority_raised = coalesce(e.last_raise_at > contacts.created_at, 0),
  groups_seen = e.groups_seen
FROM touched t
LEFT JOIN firsts f ON f.contact_id = t.source_id
LEFT JOIN replies r ON r.contact_id = t.source_id
LEFT JOIN resolutions s ON s.contact_id = t.source_id
LEFT JOIN escalations e ON e.contact_id = t.source_id
WHERE contacts.source = :source AND contacts.source_id = t.source_id
"""


def touched_contacts(records: Mapping[str, Sequence[Mapping[str, Any]]]) -> set[str]:
    """Contact ids whose facts a page may change: the page's contacts, messages and events."""
    ids: set[str] = {row["source_id"] for row in records.get("contacts", ())}
    for table in ("messages", "status_events", "contact_changes"):
        ids.update(row["contact_id"] for row in records.get(table, ()))
    return ids


def note(conn: sqlite3.Connection, source: str, contact_ids: set[str]) -> int:
    """Note these contacts for the next `settle` (inside the caller's transaction).

    One statement over the ids as a JSON array, not one bound execution per id (with the KPI marks,
    which go the same way: ~0.8 s less store CPU on a 200,000-ticket first sync)."""
    if contact_ids:
        conn.execute("INSERT OR IGNORE INTO derive_pending (source, contact_id) SELECT ?, value FROM json_each(?)",
                     [source, to_json(list(contact_ids))])
    return len(contact_ids)


def pending(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM derive_pending").fetchone()[0])


def settle(conn: sqlite3.Connection, source: str | None = None, batch: int = SETTLE_BATCH) -> int:
    """Derive the facts of every noted contact (of `source`, or all) and clear the notes; returns how many.

    Contacts go in the order they lie in the table, so a batch's updates touch neighbouring pages
    (measured on 200,000 first-synced tickets: 11.5 s in note order, 9.0 s in table order).
    Each batch is one savepoint, so this works inside a caller's transaction as well as on its own.
    """
    done = 0
    sources = [source] if source else [row[0] for row in conn.execute("SELECT DISTINCT source FROM derive_pending")]
    for name in sources:
        ids = [row[0] for row in conn.execute(
            "SELECT p.contact_id FROM derive_pending p LEFT JOIN contacts c ON c.source = p.source"
            " AND c.source_id = p.contact_id WHERE p.source = ? ORDER BY c.rowid", [name])]
        for start in range(0, len(ids), batch):
            listed = to_json(ids[start:start + batch])
            conn.execute("SAVEPOINT derive_settle")
            try:
                conn.execute(_FACTS_SQL, {"source": name, "ids": listed})
                conn.execute("DELETE FROM derive_pending WHERE source = ? AND contact_id IN"
                             " (SELECT value FROM json_each(?))", [name, listed])
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK TO derive_settle")
                    conn.execute("RELEASE derive_settle")
                raise
            conn.execute("RELEASE derive_settle")
        done += len(ids)
    return done
