"""A sample of recent contacts' first customer messages, read live from a helpdesk (`topics suggest`).

The read goes through the connector's window reads (`connectors.base.Backfillable.read_window`),
the newest day first, so the most recent contacts come first and the read stops once the sample
is full. A window read hands back the position it reached with each page; that position is
dropped here: no store is opened, no cursor or backfill position moves, and each message's text
stays in memory (prepared by `kpi_core.insight.text`, at most a thousand characters) until the
caller has counted its phrases.

The first customer message is the earliest message a customer wrote on a contact created in the
sampled days. Its text may be missing (a helpdesk that does not serve it): then the contact gives no
text rather than a later message's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from connectors.base import Backfillable, ConfigError, Connector, Page, StreamSpec
from connectors.settings import ConnectorSettings
from kpi_core import backfill
from kpi_core.insight.text import prepare
from kpi_core.model import iso_utc

# The first window is the last day; each window after one that left the sample short is twice as long. A busy
# helpdesk fills the sample within the day; a quiet fortnight costs four windows (1, 2, 4, 7 days), not
# fourteen: Zendesk allows 10 incremental-export calls a minute, and each window costs one per stream at least.
WINDOW = timedelta(days=1)
CUSTOMER = "customer"


class CannotSample(Exception):
    """The connector cannot read a time window of contacts and messages; the message says which source."""


@dataclass(frozen=True)
class FirstMessage:
    """The text of one contact's first customer message (in memory only) and when the contact was created."""

    source: str
    created_at: str
    text: str


@dataclass(frozen=True)
class Sample:
    """The first messages read, newest contact first, and how many sampled contacts had no text to read."""

    messages: list[FirstMessage]
    without_text: int  # first customer messages the helpdesk served without their text


@dataclass(frozen=True)
class SampleProgress:
    source: str
    days_read: int
    days: int
    messages: int  # first customer messages with text found so far
    api_calls: int


@dataclass
class _Contact:
    created_at: str
    requester: str | None
    first_at: str | None = None  # the earliest customer message seen so far
    text: str | None = None  # its prepared text, when the helpdesk served one


@dataclass
class _Gathered:
    """What the pages told so far: contacts created in the sampled days, people's roles."""

    since: str
    contacts: dict[str, _Contact] = field(default_factory=dict)
    roles: dict[str, str] = field(default_factory=dict)

    def absorb(self, page: Page) -> None:
        for row in page.records.get("people", ()):
            if row.get("role"):
                self.roles[str(row["source_id"])] = str(row["role"])
        for row in page.records.get("contacts", ()):
            created = iso_utc(row.get("created_at"))
            if created is None or created < self.since or row.get("status") == "deleted":
                continue
            known = self.contacts.get(str(row["source_id"]))
            if known is None:
                self.contacts[str(row["source_id"])] = _Contact(created, _text_or_none(row.get("requester_id")))
            elif known.requester is None:
                known.requester = _text_or_none(row.get("requester_id"))
        for row in page.records.get("messages", ()):
            self._message(row)

    def _message(self, row: dict[str, Any]) -> None:
        contact = self.contacts.get(str(row.get("contact_id")))
        at = iso_utc(row.get("created_at"))
        if contact is None or at is None or self._role(row, contact) != CUSTOMER:
            return
        if contact.first_at is None or at < contact.first_at:
            body = row.get("body")
            contact.first_at = at
            contact.text = (prepare(body) or None) if isinstance(body, str) else None

    def _role(self, row: dict[str, Any], contact: _Contact) -> str | None:
        """The author's role as the message says, else as the people read say (Zendesk), else the requester's."""
        author = _text_or_none(row.get("author_id"))
        role = row.get("author_role") or (self.roles.get(author) if author else None)
        if role is None and author is not None and author == contact.requester:
            return CUSTOMER
        return str(role) if role else None

    def sampled(self, complete_from: str | None) -> list[tuple[str, str]]:
        """(created_at, text) of the contacts whose first customer message is known for sure: all of them when
        pages carry whole contacts, else those created since `complete_from` (every later window read whole)."""
        return [(c.created_at, c.text) for c in self.contacts.values()
                if c.text and (complete_from is None or c.created_at >= complete_from)]

    def result(self, source: str, complete_from: str | None, sample: int) -> Sample:
        found = sorted(self.sampled(complete_from), key=lambda item: item[0], reverse=True)[:sample]
        lacking = sum(1 for c in self.contacts.values() if c.first_at is not None and c.text is None
                      and (complete_from is None or c.created_at >= complete_from))
        return Sample([FirstMessage(source, created, text) for created, text in found], lacking)


def _text_or_none(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


class _ReadingBodiesOnly:
    """The privacy choices of a read that keeps nothing: no personal field, message bodies in memory only.

    `topics suggest` reads message text whatever `[insight] enabled` says: an admin runs it by hand, it
    stores nothing, and it prints only phrases that several messages share."""

    store_names = False
    store_emails = False
    store_phones = False
    store_message_bodies = False
    store_survey_comments = False
    store_agent_names = False

    def hash_key_bytes(self) -> bytes | None:
        return None

    @property
    def read_message_bodies(self) -> bool:
        return True


def reading_bodies(section: ConnectorSettings) -> ConnectorSettings:
    """A copy of a connector's table whose connector reads message bodies into memory and keeps no personal field."""
    copy = section.model_copy()
    copy.with_privacy(_ReadingBodiesOnly())
    return copy


def sample_streams(streams: Sequence[StreamSpec]) -> tuple[list[StreamSpec], bool]:
    """The streams that carry contacts and messages, and whether one page holds whole contacts (each contact
    with its messages: a read may stop after any page) rather than contacts and messages in separate streams."""
    whole = [s for s in streams if {"contacts", "messages"} <= set(s.tables)]
    if whole:
        return whole, True
    return [s for s in streams if {"contacts", "messages"} & set(s.tables)], False


def read_first_messages(connector: Connector, source: str, *, since: datetime, until: datetime, sample: int,
                        on_progress: Callable[[SampleProgress], None] | None = None) -> Sample:
    """Up to `sample` first customer messages of the contacts created in [since, until), the newest first."""
    reader = backfill.capable(connector)
    streams, whole = sample_streams(connector.streams())
    if reader is None or not streams:
        raise CannotSample(f"{source}: its connector cannot read a time window of contacts and messages,"
                           " which a sample of recent messages needs")
    gathered = _Gathered(iso_utc(since.timestamp()) or "")
    days = max(1, _days(until - since))
    end, days_read, complete_from, size = until, 0, None, WINDOW
    while end > since:
        start = max(since, end - size)
        for stream in streams:
            for page in _window(reader, source, stream, start, end):
                gathered.absorb(page)
                if whole and len(gathered.sampled(None)) >= sample:
                    return gathered.result(source, None, sample)
        days_read = min(days, _days(until - start))
        complete_from = None if whole else iso_utc(start.timestamp())
        found = gathered.sampled(complete_from)
        if on_progress is not None:
            on_progress(SampleProgress(source, days_read, days, len(found), connector.api_calls))
        if len(found) >= sample:
            break
        end, size = start, size * 2
    return gathered.result(source, complete_from, sample)


def _days(span: timedelta) -> int:
    """Days begun in `span` (a window of 25 hours has read two days)."""
    return -(-int(span.total_seconds()) // 86400)


def _window(reader: Backfillable, source: str, stream: StreamSpec, start: datetime, end: datetime
            ) -> Iterable[Page]:
    try:
        return reader.read_window(stream, start, end, None)
    except ConfigError:
        raise CannotSample(f"{source}: its {stream.name} stream cannot be read by time window, which a sample of"
                           " recent messages needs") from None
