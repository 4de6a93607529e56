"""The write-back ledger in the store: what was last written where, every attempt, runs, cached field definitions.

- `writeback_ledger`: one row per (record, field) and per (contact, note rule): the value
  last sent, what the last sync showed in the helpdesk when it was planned (`seen`), and the
  result (`ok`, `failed`: sent again next run; `uncertain`: a note that may exist, never
  sent again automatically).
- `writeback_log`: every attempt with its value and result, kept `LOG_DAYS` days.
- `writeback_runs`: one row per push, for `status`.
- `writeback_fields`: the helpdesks' field definitions, re-read after `FIELDS_MAX_AGE`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from connectors.base import FieldDef
from kpi_core.store import Store, utc_now

LOG_DAYS = 90
FIELDS_MAX_AGE = timedelta(days=1)
OK, FAILED, UNCERTAIN, SETTLED = "ok", "failed", "uncertain", "settled"
FIELD, NOTE = "field", "note"

Key = tuple[str, str, str, str]  # object, record id, kind, target (field key or rule)


@dataclass(frozen=True)
class Entry:
    value: Any
    seen: Any
    status: str
    error: str | None
    attempts: int


@dataclass(frozen=True)
class Attempt:
    """One write of one target, as the ledger records it."""

    object: str
    record_id: str
    kind: str
    target: str
    value: Any
    seen: Any
    status: str
    error: str | None = None


def load(store: Store, helpdesk: str) -> dict[Key, Entry]:
    rows = store.db.execute(
        "SELECT object, record_id, kind, target, value, seen, status, error, attempts FROM writeback_ledger"
        " WHERE helpdesk = ?", [helpdesk]).fetchall()
    return {(o, r, k, t): Entry(_loads(v), _loads(s), st, e, a) for o, r, k, t, v, s, st, e, a in rows}


def record(store: Store, run_id: int, helpdesk: str, attempts: Iterable[Attempt]) -> None:
    """Store attempts in the ledger and the log, in one transaction."""
    now = utc_now()
    with store.db.atomic():
        for a in attempts:
            value, seen = _dumps(a.value), _dumps(a.seen)
            # The stored row's columns are named by table: PostgreSQL would not tell them from `excluded`'s.
            store.db.execute(
                "INSERT INTO writeback_ledger VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?)"
                " ON CONFLICT (helpdesk, object, record_id, kind, target) DO UPDATE SET value = excluded.value,"
                " seen = excluded.seen, status = excluded.status, error = excluded.error,"
                " attempts = writeback_ledger.attempts + 1, last_attempt_at = excluded.last_attempt_at,"
                " written_at = coalesce(excluded.written_at, writeback_ledger.written_at), run_id = excluded.run_id",
                [helpdesk, a.object, a.record_id, a.kind, a.target, value, seen, a.status, a.error, now, now,
                 now if a.status == OK else None, run_id])
            store.db.execute(
                "INSERT INTO writeback_log (run_id, at, helpdesk, object, record_id, kind, target, value, status,"
                " error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [run_id, now, helpdesk, a.object, a.record_id, a.kind, a.target, value, a.status, a.error])


def settle(store: Store, helpdesk: str, keys: Iterable[Key]) -> None:
    """Failed writes no longer wanted: kept with their error, no longer pending."""
    with store.db.atomic():
        for object, record_id, kind, target in keys:
            store.db.execute(
                "UPDATE writeback_ledger SET status = ? WHERE helpdesk = ? AND object = ? AND record_id = ?"
                " AND kind = ? AND target = ? AND status = ?",
                [SETTLED, helpdesk, object, record_id, kind, target, FAILED])


# --- runs ---------------------------------------------------------------------------------------


def start_run(store: Store, dry_run: bool) -> int:
    with store.db.atomic():
        cur = store.db.execute("INSERT INTO writeback_runs (started_at, status, dry_run) VALUES (?, 'running', ?)",
                               [utc_now(), int(dry_run)])
    return int(cur.lastrowid or 0)


def finish_run(store: Store, run_id: int, status: str, totals: Mapping[str, int], outcome: Mapping[str, Any],
               error: str | None = None) -> None:
    cutoff = (datetime.now(timezone.utc) - timedelta(days=LOG_DAYS)).strftime("%Y-%m-%dT%H:%M:%SZ")
    with store.db.atomic():
        store.db.execute(
            "UPDATE writeback_runs SET ended_at = ?, status = ?, planned = ?, requests = ?, written = ?, failed = ?,"
            " deferred = ?, api_calls = ?, outcome = ?, error = ? WHERE id = ?",
            [utc_now(), status, totals.get("planned", 0), totals.get("requests", 0), totals.get("written", 0),
             totals.get("failed", 0), totals.get("deferred", 0), totals.get("api_calls", 0),
             json.dumps(outcome, sort_keys=True), error, run_id])
        store.db.execute("DELETE FROM writeback_log WHERE at < ?", [cutoff])


def close_unfinished_runs(store: Store) -> None:
    """A push killed mid-way leaves its run 'running'; the next one closes it."""
    with store.db.atomic():
        store.db.execute("UPDATE writeback_runs SET status = 'interrupted', ended_at = ? WHERE status = 'running'",
                         [utc_now()])


# --- field definitions -------------------------------------------------------------------------------


def cached_definitions(store: Store, helpdesk: str, object: str, now: datetime | None = None) -> list[FieldDef] | None:
    """The cached definitions, or None when missing or older than FIELDS_MAX_AGE."""
    row = store.db.execute("SELECT definitions, fetched_at FROM writeback_fields WHERE helpdesk = ? AND object = ?",
                           [helpdesk, object]).fetchone()
    if row is None:
        return None
    fetched = datetime.strptime(row[1], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    if (now or datetime.now(timezone.utc)) - fetched > FIELDS_MAX_AGE:
        return None
    return [FieldDef(**{**item, "options": tuple(item["options"])}) for item in json.loads(row[0])]


def cache_definitions(store: Store, helpdesk: str, object: str, definitions: list[FieldDef]) -> None:
    with store.db.atomic():
        store.db.execute(
            "INSERT INTO writeback_fields VALUES (?, ?, ?, ?) ON CONFLICT (helpdesk, object)"
            " DO UPDATE SET definitions = excluded.definitions, fetched_at = excluded.fetched_at",
            [helpdesk, object, json.dumps([asdict(d) for d in definitions]), utc_now()])


def forget_definitions(store: Store, helpdesk: str, object: str | None = None) -> None:
    """Drop cached definitions (a write named a field the helpdesk no longer has, say)."""
    with store.db.atomic():
        if object is None:
            store.db.execute("DELETE FROM writeback_fields WHERE helpdesk = ?", [helpdesk])
        else:
            store.db.execute("DELETE FROM writeback_fields WHERE helpdesk = ? AND object = ?", [helpdesk, object])


# --- status -----------------------------------------------------------------------------------------


def status(store: Store) -> dict[str, Any]:
    """The last push and what is waiting: failed writes (sent again next run) and uncertain notes."""
    last = store.db.execute(
        "SELECT id, started_at, ended_at, status, requests, written, failed, deferred, error, outcome"
        " FROM writeback_runs WHERE dry_run = 0 ORDER BY id DESC LIMIT 1").fetchone()
    pending: dict[str, Any] = {}
    for helpdesk, state, count in store.db.execute(
            "SELECT helpdesk, status, count(*) FROM writeback_ledger WHERE status IN ('failed', 'uncertain')"
            " GROUP BY helpdesk, status ORDER BY helpdesk, status").fetchall():
        pending.setdefault(helpdesk, {"failed": 0, "uncertain": 0, "last_error": None})[state] = count
    for helpdesk, entry in pending.items():
        row = store.db.execute("SELECT error FROM writeback_ledger WHERE helpdesk = ? AND status IN"
                               " ('failed', 'uncertain') ORDER BY last_attempt_at DESC LIMIT 1", [helpdesk]).fetchone()
        entry["last_error"] = row[0] if row else None
    keys = ("id", "started_at", "ended_at", "status", "requests", "written", "failed", "deferred", "error")
    last_push = dict(zip(keys, last, strict=False)) if last else None
    if last_push is not None:
        outcome = json.loads(last[-1]) if last[-1] else {}
        last_push["refused"] = {h: o["refused"] for h, o in outcome.items() if o.get("refused")}
    return {"last_push": last_push, "pending": pending}


def status_lines(report: Mapping[str, Any] | None) -> list[str]:
    """`status` lines for write-back (none when it never ran and nothing waits)."""
    if not report or (report.get("last_push") is None and not report.get("pending")):
        return []
    lines = [""]
    last = report.get("last_push")
    if last:
        lines.append(f"write-back: last push {last['started_at']} {last['status']}: {last['written']:,} written,"
                     f" {last['failed']:,} failed, {last['deferred']:,} over the budget"
                     f" ({last['requests']:,} requests)")
        for helpdesk, reason in sorted(last.get("refused", {}).items()):
            lines.append(f"  {helpdesk}: refused: {reason.splitlines()[0][:120]}")
    else:
        lines.append("write-back: no push yet")
    for helpdesk, entry in sorted(report.get("pending", {}).items()):
        if entry.get("failed"):
            lines.append(f"  {helpdesk}: {entry['failed']:,} failed writes, sent again next push"
                         f" (last error: {(entry.get('last_error') or '-')[:100]})")
        if entry.get("uncertain"):
            lines.append(f"  {helpdesk}: {entry['uncertain']:,} notes of unknown outcome (may exist; not sent again)")
    return lines


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)
