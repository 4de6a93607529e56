"""Conversation insight during the sync: each page's message bodies are analysed in memory, then dropped.

With `[insight] enabled`, connectors put a message's text into its row's `body` (in memory
only, `Privacy.read_bodies`). Before a page is stored, `InsightPass.apply` reads those bodies
once: a customer's message gets its language, sentiment score and topic; an agent's or a
bot's reply only its language (what `reply_language` needs). Then the body is set to None,
unless `[privacy] store_message_bodies` keeps it, as before insight existed. So what reaches
the store is a language code, a score and a topic name, never the words.

A message whose author's role the connector does not know (Zendesk tells roles only on users)
takes its author's role from the people already stored (the users stream is read before the
events); an author not stored yet is analysed fully, and the derivation decides later, from
`people`, whether the message was the customer's. Messages of the helpdesk's own automations
(role `system`) are not analysed: no fact reads them.

The text never goes anywhere else: analysis failures are logged and warned about by count and
kind only, never with the text or an exception message that might quote it.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from connectors.base import Page
from kpi_core.insight.analyzer import Analyzer
from kpi_core.model import to_json
from kpi_core.settings import Settings

log = logging.getLogger(__name__)

# Roles whose messages only need their language: the reply-language fact reads nothing else of them.
_REPLY_ROLES = frozenset({"agent", "bot"})
_UNREAD_ROLES = frozenset({"system"})  # triggers and automations: their text says nothing of the conversation

PagePrep = Callable[[Page], None]
# (source, author ids) -> the stored role of each author known
RoleLookup = Callable[[str, set[str]], dict[str, str]]


def stored_roles(conn: sqlite3.Connection) -> RoleLookup:
    """The roles of authors already in `people`, one query per page (on the storing thread's connection)."""
    def lookup(source: str, ids: set[str]) -> dict[str, str]:
        return dict(conn.execute("SELECT source_id, role FROM people WHERE source = ? AND source_id IN"
                                 " (SELECT value FROM json_each(?))", [source, to_json(sorted(ids))]).fetchall())
    return lookup


@dataclass
class InsightPass:
    """One sync run's analyser and the choice whether bodies are kept after it has read them."""

    analyzer: Analyzer
    keep_bodies: bool = False
    analysed: int = 0  # messages analysed this run (for the bench and the log)

    @classmethod
    def from_settings(cls, settings: Settings) -> InsightPass | None:
        """The pass for a sync run, or None when insight is off (then nothing is analysed or changed)."""
        if not settings.insight.enabled:
            return None
        return cls(Analyzer.from_settings(settings.insight), settings.privacy.store_message_bodies)

    def apply(self, page: Page, roles: RoleLookup | None = None) -> None:
        """Set language, sentiment and topic of the page's messages that carry a body; drop the bodies.

        `roles`: where authors' roles are looked up when the messages do not carry them."""
        messages = page.records.get("messages")
        if not messages:
            return
        try:
            self._read(page, [row for row in messages if isinstance(row.get("body"), str) and row["body"].strip()],
                       roles)
        finally:  # whatever happened, no body leaves this page unless the admin keeps them
            if not self.keep_bodies:
                for row in messages:
                    if row.get("body") is not None:
                        row["body"] = None

    def _read(self, page: Page, read: list[dict[str, Any]], roles: RoleLookup | None) -> None:
        known = self._authors(read, roles)
        full: list[dict[str, Any]] = []
        replies: list[dict[str, Any]] = []
        for row in read:
            role = row.get("author_role") or known.get((row["source"], row.get("author_id")))
            if role in _REPLY_ROLES:
                replies.append(row)
            elif role not in _UNREAD_ROLES:
                full.append(row)
        try:
            self._analyse(full, replies)
        except Exception as exc:  # the page is stored without insight rather than failing the sync
            # The exception's message may quote the text it choked on: only its kind is logged.
            log.error("conversation insight could not analyse %d messages (%s); stored without insight",
                      len(full) + len(replies), type(exc).__name__)
            page.warn(f"conversation insight could not analyse {len(full) + len(replies)} messages;"
                      " they are stored without language, sentiment or topic")
            for row in full + replies:
                for column in ("language", "sentiment", "topic"):
                    row.pop(column, None)

    @staticmethod
    def _authors(rows: list[dict[str, Any]], roles: RoleLookup | None) -> dict[tuple[str, str | None], str]:
        """The stored roles of the authors of `rows` whose role the connector left unknown."""
        unknown: dict[str, set[str]] = {}
        for row in rows:
            if row.get("author_role") is None and row.get("author_id") is not None:
                unknown.setdefault(row["source"], set()).add(str(row["author_id"]))
        if roles is None or not unknown:
            return {}
        return {(source, author): role
                for source, ids in unknown.items() for author, role in roles(source, ids).items()}

    def _analyse(self, full: list[dict[str, Any]], replies: list[dict[str, Any]]) -> None:
        if full:
            found = self.analyzer.analyze_many([row["body"] for row in full])
            for row, insight in zip(full, found, strict=True):
                score = insight.sentiment
                row["language"], row["topic"] = insight.language, insight.topic
                row["sentiment"] = None if score is None else float(score)
        for row in replies:
            row["language"] = self.analyzer.language(row["body"])
        self.analysed += len(full) + len(replies)


def prepare(insight: InsightPass | None, conn: sqlite3.Connection | None = None) -> PagePrep | None:
    """What the sync and the backfill call on each page before storing it (None: nothing to do); `conn`: the
    store's connection, for authors' roles (used on the thread that stores the pages)."""
    if insight is None:
        return None
    roles = None if conn is None else stored_roles(conn)
    return lambda page: insight.apply(page, roles)
