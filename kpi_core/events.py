"""The event log: launches, outages, holiday sales ... kept beside the metrics to explain unusual patterns.

An event covers local dates of `[kpis] timezone` from `starts` to `ends` inclusive (one day when
`ends` is not given) and may concern one segment ("market=de"); without one it concerns everything.
The report draws events on its trend charts, digests list those of their period, and a diagnostic
that fires while one runs names it (`kpi_core/kpis/diagnostics.py`).
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, TypeVar

from kpi_core.csv_files import CsvFileError, read_text
from kpi_core.store import Store, utc_now

# `dimension=value`: a segment dimension of the KPIs (market, channel, language ...) or a custom field.
_SEGMENT_PART = re.compile(r"^\s*([a-z][a-z0-9_.]*)\s*=\s*(\S(?:.*\S)?)\s*$")
TITLE_MAX = 200
T = TypeVar("T")
# CSV column names, with the names a spreadsheet export is likely to use for each.
COLUMNS: dict[str, tuple[str, ...]] = {
    "starts": ("starts", "start", "at", "date", "from"),
    "ends": ("ends", "end", "until", "to"),
    "title": ("title", "event", "name", "description"),
    "segment": ("segment",),
}


class EventError(ValueError):
    """An event that cannot be stored or a file that cannot be imported; the message names what and where."""


@dataclass(frozen=True)
class Event:
    id: int
    starts: date
    ends: date | None  # inclusive; None: the one day `starts`
    title: str
    segment: dict[str, str] = field(default_factory=dict)
    created_at: str = ""

    @property
    def last_day(self) -> date:
        return self.ends or self.starts

    def overlaps(self, start: date, end: date) -> bool:
        """Whether the event runs on any day of [start, end) (`end` exclusive, as periods are)."""
        return self.starts < end and self.last_day >= start

    def concerns(self, segment: Mapping[str, Any]) -> bool:
        """Whether the event can explain figures of `segment`: an event of market=de explains the overall figures
        and those of market=de, not those of market=fr."""
        return all(str(segment[dim]) == value for dim, value in self.segment.items() if dim in segment)

    @property
    def dates(self) -> str:
        return self.starts.isoformat() + (f" to {self.ends.isoformat()}" if self.ends else "")

    @property
    def segment_text(self) -> str:
        return format_segment(self.segment)

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "starts": self.starts.isoformat(), "ends": self.ends.isoformat() if self.ends else None,
                "title": self.title, "segment": dict(self.segment), "created_at": self.created_at}


def parse_segment(text: str | None) -> dict[str, str]:
    """ "market=de" or "market=de,channel=chat" -> {"market": "de", "channel": "chat"}; "" -> {} (everything)."""
    out: dict[str, str] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        match = _SEGMENT_PART.match(part)
        if not match:
            raise EventError(f"segment {part.strip()!r}: expected DIMENSION=VALUE such as market=de")
        out[match[1]] = match[2]
    return out


def format_segment(segment: Mapping[str, str]) -> str:
    return ",".join(f"{dim}={value}" for dim, value in segment.items())


def check(starts: date, ends: date | None, title: str) -> str:
    """The title, tidied, once the dates and title are usable; raises EventError saying what is wrong."""
    check_dates(starts, ends)
    return check_title(title)


def check_dates(starts: date, ends: date | None) -> None:
    if ends is not None and ends < starts:
        raise EventError(f"the event ends ({ends}) before it starts ({starts})")


def check_title(title: str) -> str:
    title = " ".join(title.split())
    if not title:
        raise EventError("the event needs a title")
    if len(title) > TITLE_MAX:
        raise EventError(f"the title is longer than {TITLE_MAX} characters")
    return title


def add(store: Store, starts: date, ends: date | None, title: str, segment: Mapping[str, str] | None = None
        ) -> tuple[Event, bool]:
    """Store an event; returns it and whether it is new (the same dates, title and segment are stored once)."""
    title = check(starts, ends, title)
    with store.db.atomic():
        event, new = _insert(store.db.conn, starts, ends, title, dict(segment or {}))
    return event, new


def _insert(conn: sqlite3.Connection, starts: date, ends: date | None, title: str, segment: dict[str, str]
            ) -> tuple[Event, bool]:
    seg = json.dumps(segment, sort_keys=True)
    end_text = ends.isoformat() if ends else None
    same = (f"SELECT {_COLUMNS} FROM events WHERE starts = ? AND coalesce(ends, '') = ? AND title = ? AND segment = ?",
            [starts.isoformat(), end_text or "", title, seg])
    # Looked up first: PostgreSQL spends an id on an insert it then ignores, and events are shown by id.
    row = conn.execute(*same).fetchone()
    if row is not None:
        return _event(row), False
    cur = conn.execute("INSERT OR IGNORE INTO events (starts, ends, title, segment, created_at) VALUES (?, ?, ?, ?, ?)",
                       [starts.isoformat(), end_text, title, seg, utc_now()])
    return _event(conn.execute(*same).fetchone()), cur.rowcount == 1


def remove(store: Store, event_id: int) -> Event | None:
    """Delete one event; returns it, or None when there is no such event."""
    with store.db.atomic():
        row = store.db.conn.execute(f"SELECT {_COLUMNS} FROM events WHERE id = ?", [event_id]).fetchone()
        if row is None:
            return None
        store.db.conn.execute("DELETE FROM events WHERE id = ?", [event_id])
    return _event(row)


def between(conn: sqlite3.Connection, start: date | None = None, end: date | None = None) -> list[Event]:
    """Events running on any day of [start, end) (either bound open), by start date."""
    sql, params = f"SELECT {_COLUMNS} FROM events WHERE 1 = 1", []
    if end is not None:
        sql += " AND starts < ?"
        params.append(end.isoformat())
    if start is not None:
        sql += " AND coalesce(ends, starts) >= ?"
        params.append(start.isoformat())
    return [_event(row) for row in conn.execute(sql + " ORDER BY starts, id", params)]


def during(events: Iterable[Event], start: date, end: date, segment: Mapping[str, Any] | None = None) -> list[Event]:
    """The events among `events` that overlap [start, end) and concern `segment`."""
    return [e for e in events if e.overlaps(start, end) and e.concerns(segment or {})]


# Named, in `_event`'s order: a PostgreSQL store's tables also have a `rowid` column.
_COLUMNS = "id, starts, ends, title, segment, created_at"


def _event(row: tuple[Any, ...]) -> Event:
    ident, starts, ends, title, segment, created_at = row
    return Event(int(ident), date.fromisoformat(starts), date.fromisoformat(ends) if ends else None, title,
                 json.loads(segment or "{}"), created_at)


@dataclass
class ImportResult:
    rows: int = 0
    stored: int = 0  # new events; the rest were in the log already


def import_csv(store: Store, path: Path) -> ImportResult:
    """Store the events of a CSV file (columns starts, ends, title, segment; UTF-8 or UTF-16, `,` `;` or tab).

    All or nothing: the first row that cannot be read raises EventError naming the file, line and column, and
    nothing of the file is stored. Reading a file again adds no duplicates."""
    try:
        text = read_text(path)
    except CsvFileError as exc:
        raise EventError(str(exc)) from None
    reader = text.reader()
    columns = _columns(path, list(reader.fieldnames or []))
    result = ImportResult()
    with store.db.atomic():
        for row in reader:
            line = reader.line_num
            if not any((value or "").strip() for value in row.values() if isinstance(value, str)):
                continue  # a blank line
            starts = _date(path, line, columns["starts"], row)
            ends = _date(path, line, columns["ends"], row, optional=True) if "ends" in columns else None
            title = _cell(path, line, columns["title"], check_title, row.get(columns["title"]) or "")
            if ends is not None:
                _cell(path, line, columns["ends"], check_dates, starts, ends)
            segment = (_cell(path, line, columns["segment"], parse_segment, row.get(columns["segment"]))
                       if "segment" in columns else {})
            result.rows += 1
            result.stored += _insert(store.db.conn, starts, ends, title, segment)[1]
    return result


def _columns(path: Path, header: list[str]) -> dict[str, str]:
    """Our column name -> the file's, matched without regard to case or spaces."""
    found: dict[str, str] = {}
    for name, aliases in COLUMNS.items():
        for column in header:
            if column and column.strip().lower() in aliases:
                found[name] = column
                break
    missing = [name for name in ("starts", "title") if name not in found]
    if missing:
        raise EventError(f"{path}: line 1: no column {' or '.join(missing)} (the header has:"
                         f" {', '.join(h for h in header if h) or 'nothing'}); expected starts, ends, title, segment")
    return found


def _cell(path: Path, line: int, column: str, read: Callable[..., T], *args: Any) -> T:
    """`read(*args)`, its EventError said with the file, line and column."""
    try:
        return read(*args)
    except EventError as exc:
        raise EventError(f"{path}: line {line}: column {column}: {exc}") from None


def _date(path: Path, line: int, column: str, row: Mapping[str, str | None], optional: bool = False) -> Any:
    value = (row.get(column) or "").strip()
    if not value and optional:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        shown = f"{value!r}" if value else "nothing"
        raise EventError(f"{path}: line {line}: column {column}: expected a date YYYY-MM-DD, got {shown}") from None
