"""The store's record of alerts (tables of migration m024): each alert decided once, each delivery tracked.

How an alert survives a crash (kill -9) without being lost or sent twice:
1. Deciding: the new alerts of a pass and one `pending` delivery per sink are inserted in ONE transaction,
   keyed uniquely by contact and stage (or KPI, period and segment). A pass that dies before the commit
   decided nothing, and the next pass decides the same alerts again; one that dies after it has them all.
2. Sending: each delivery is marked `sending` (committed) before its request goes out, and `sent` or `failed`
   (committed) after. A pass finds a delivery still `sending` only if the process died during that very request:
   the sink may or may not have it, so it becomes `uncertain` and is not sent again (a duplicate is the worse
   failure for a page or a mail); `helpdesk-kpi alerts` shows it. Everything `pending` is sent by the next pass.
   `failed` deliveries (the sink said no, or could not be reached) are tried again, up to MAX_ATTEMPTS.
Only the daemon (one per store, by its lock) and `run --once` send, and one pass runs at a time.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from kpi_core.store import immediate

PENDING, SENDING, SENT, FAILED, UNCERTAIN = "pending", "sending", "sent", "failed", "uncertain"
MAX_ATTEMPTS = 3

# How an alert was decided to go out.
ALERT = "alert"  # on its own
HELD = "held"  # decided in quiet hours: in the summary sent when they end
CAPPED = "capped"  # past the hourly cap: in the summary of the pass
BASELINE = "baseline"  # already past when alerting started (or before the source's first sync): summarised
LATE = "late"  # first seen long after it crossed (a backlog read late): summarised
SUMMARY = "summary"  # a summary of others


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# alert_events' columns, named: a PostgreSQL store's tables also have a `rowid`, which is no part of an alert.
_EVENT = ("id, key, kind, source, contact_id, stage, kpi, grain, period_start, segment, channel, market, grp,"
          " crossed_at, elapsed_s, target_s, value, target, decided_at, disposition, summary_id, covers, business")


def _rows(cursor: sqlite3.Cursor) -> list[dict[str, Any]]:
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def baselines(conn: sqlite3.Connection, sources: Iterable[str], now: datetime) -> dict[str, datetime]:
    """When alerting first saw each source (now for one it sees first)."""
    for source in sources:
        conn.execute("INSERT OR IGNORE INTO alert_sources (source, since) VALUES (?, ?)", [source, iso(now)])
    return {source: datetime.fromisoformat(since) for source, since in conn.execute(
        "SELECT source, since FROM alert_sources")}


def decided(conn: sqlite3.Connection, key: str) -> bool:
    return conn.execute("SELECT 1 FROM alert_events WHERE key = ?", [key]).fetchone() is not None


def insert_event(conn: sqlite3.Connection, **columns: Any) -> int:
    names = ", ".join(columns)
    marks = ", ".join("?" for _ in columns)
    cursor = conn.execute(f"INSERT INTO alert_events ({names}) VALUES ({marks})", list(columns.values()))
    assert cursor.lastrowid is not None
    return cursor.lastrowid


def add_deliveries(conn: sqlite3.Connection, event_id: int, labels: Sequence[str], now: datetime) -> None:
    conn.executemany("INSERT INTO alert_deliveries (event_id, sink, status, updated_at) VALUES (?, ?, ?, ?)",
                     [(event_id, label, PENDING, iso(now)) for label in labels])


def alerts_within(conn: sqlite3.Connection, since: datetime) -> int:
    """Single alerts decided since `since` (what the hourly cap counts)."""
    row = conn.execute("SELECT count(*) FROM alert_events WHERE disposition = ? AND decided_at >= ?",
                       [ALERT, iso(since)]).fetchone()
    return int(row[0])


def unsummarised(conn: sqlite3.Connection, disposition: str) -> list[dict[str, Any]]:
    return _rows(conn.execute(f"SELECT {_EVENT} FROM alert_events WHERE disposition = ? AND summary_id IS NULL"
                              " ORDER BY id", [disposition]))


def mark_summarised(conn: sqlite3.Connection, ids: Sequence[int], summary_id: int) -> None:
    conn.executemany("UPDATE alert_events SET summary_id = ? WHERE id = ?", [(summary_id, i) for i in ids])


def settle_interrupted(conn: sqlite3.Connection, now: datetime) -> int:
    """Deliveries left `sending` by a process that died mid-request become `uncertain` (not sent again)."""
    with immediate(conn):
        cursor = conn.execute(
            "UPDATE alert_deliveries SET status = ?, updated_at = ?,"
            " error = 'the process stopped while sending: the sink may or may not have it; not sent again'"
            " WHERE status = ?", [UNCERTAIN, iso(now), SENDING])
    return cursor.rowcount


def due(conn: sqlite3.Connection) -> list[tuple[int, str]]:
    """Deliveries to attempt, oldest alert first: pending ones, and failed ones with attempts left."""
    return [(int(e), str(s)) for e, s in conn.execute(
        "SELECT event_id, sink FROM alert_deliveries WHERE status = ? OR (status = ? AND attempts < ?)"
        " ORDER BY event_id, sink", [PENDING, FAILED, MAX_ATTEMPTS])]


def start_delivery(conn: sqlite3.Connection, event_id: int, sink: str, now: datetime) -> None:
    with immediate(conn):
        conn.execute("UPDATE alert_deliveries SET status = ?, attempts = attempts + 1, updated_at = ?, error = NULL"
                     " WHERE event_id = ? AND sink = ?", [SENDING, iso(now), event_id, sink])


def finish_delivery(conn: sqlite3.Connection, event_id: int, sink: str, status: str, error: str | None,
                    now: datetime) -> None:
    with immediate(conn):
        conn.execute("UPDATE alert_deliveries SET status = ?, updated_at = ?, error = ?"
                     " WHERE event_id = ? AND sink = ?", [status, iso(now), error, event_id, sink])


def event(conn: sqlite3.Connection, event_id: int) -> dict[str, Any]:
    return _rows(conn.execute(f"SELECT {_EVENT} FROM alert_events WHERE id = ?", [event_id]))[0]


def covered(conn: sqlite3.Connection, summary_id: int) -> list[dict[str, Any]]:
    return _rows(conn.execute(f"SELECT {_EVENT} FROM alert_events WHERE summary_id = ? ORDER BY id", [summary_id]))


def recent(conn: sqlite3.Connection, since: datetime) -> list[dict[str, Any]]:
    """Alerts decided since `since` that went (or go) out themselves, newest first, with their deliveries."""
    events = _rows(conn.execute(
        f"SELECT {_EVENT} FROM alert_events WHERE decided_at >= ? AND disposition IN (?, ?) ORDER BY id DESC",
        [iso(since), ALERT, SUMMARY]))
    for row in events:
        row["deliveries"] = _rows(conn.execute(
            "SELECT sink, status, attempts, updated_at, error FROM alert_deliveries WHERE event_id = ? ORDER BY sink",
            [row["id"]]))
    return events


def contact_stages(conn: sqlite3.Connection) -> dict[tuple[str, str, str], str]:
    """(source, contact, stage) -> how it was decided, for every contact alert on record."""
    return {(s, c, st): d for s, c, st, d in conn.execute(
        "SELECT source, contact_id, stage, disposition FROM alert_events WHERE kind = 'contact'")}


def hour_before(now: datetime) -> datetime:
    return now - timedelta(hours=1)
