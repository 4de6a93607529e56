"""Deciding, in one transaction, which crossings and KPI breaches are new and how each goes out.

- Already past its threshold when alerting first saw its source (alerting started, or the source's first
  sync): `baseline`, summarised once ("42 contacts already past their first-response target when alerting
  started"), never alerted one by one; so is a crossing first seen more than `stale_after` after it happened
  (`late`: a backlog read long after). This is what keeps the first sync of an old backlog from a storm.
- In quiet hours: `held`; the first pass after they end sends one summary of everything held.
- Past `max_per_hour` single alerts in the last hour: `capped`; each pass sends one summary of its capped ones.
- Otherwise `alert`: one delivery per routed sink, `pending` until sent.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from kpi_core.alerts import routing, state
from kpi_core.alerts.kpi_watch import KpiBreach
from kpi_core.alerts.policy import in_quiet_hours
from kpi_core.alerts.watch import Crossing
from kpi_core.settings import Settings
from kpi_core.store import Store, immediate


@dataclass
class Decisions:
    """What one pass decided, by disposition, and the summaries it made."""

    counts: dict[str, int] = field(default_factory=dict)
    summaries: int = 0

    def add(self, disposition: str) -> None:
        self.counts[disposition] = self.counts.get(disposition, 0) + 1


def decide(store: Store, settings: Settings, now: datetime, crossings: Iterable[Crossing],
           breaches: Iterable[KpiBreach]) -> Decisions:
    alerts = settings.alerts
    conn = store.db.conn
    zone = ZoneInfo(settings.kpis.timezone)
    quiet = in_quiet_hours(alerts.quiet_hours, now, zone)
    result = Decisions()
    crossings = list(crossings)
    breaches = list(breaches)
    with immediate(conn):
        # A source counts as seen once it has contacts (its first sync stored some).
        sources = [name for name in settings.connectors
                   if conn.execute("SELECT 1 FROM contacts WHERE source = ? LIMIT 1", [name]).fetchone()]
        since = state.baselines(conn, sources, now)
        budget = alerts.max_per_hour - state.alerts_within(conn, state.hour_before(now))
        for crossing in crossings:
            if state.decided(conn, crossing.key):
                continue
            if crossing.crossed_at < since.get(crossing.source, now):
                disposition = state.BASELINE
            elif crossing.crossed_at < now - alerts.stale_after:
                disposition = state.LATE
            else:
                disposition, budget = _live(quiet, budget)
            _record(conn, settings, now, disposition, _contact_columns(crossing), notes=True)
            result.add(disposition)
        for breach in breaches:
            if state.decided(conn, breach.key):
                continue
            disposition, budget = _live(quiet, budget)
            _record(conn, settings, now, disposition, _kpi_columns(breach), notes=False)
            result.add(disposition)
        for disposition in (state.BASELINE, state.LATE, state.CAPPED) + (() if quiet else (state.HELD,)):
            result.summaries += _summarise(conn, settings, now, disposition)
    return result


def _live(quiet: bool, budget: int) -> tuple[str, int]:
    if quiet:
        return state.HELD, budget
    if budget <= 0:
        return state.CAPPED, budget
    return state.ALERT, budget - 1


def _dims(columns: Mapping[str, Any]) -> dict[str, str | None]:
    return {"channel": columns.get("channel"), "market": columns.get("market"), "group": columns.get("grp")}


def _record(conn: sqlite3.Connection, settings: Settings, now: datetime, disposition: str, columns: dict[str, Any],
            *, notes: bool) -> None:
    event_id = state.insert_event(conn, decided_at=state.iso(now), disposition=disposition, **columns)
    if disposition == state.ALERT:
        sinks = routing.route(settings.alerts, _dims(columns), notes=notes)
        state.add_deliveries(conn, event_id, [s.label for s in sinks], now)


def _contact_columns(c: Crossing) -> dict[str, Any]:
    return {"key": c.key, "kind": "contact", "source": c.source, "contact_id": c.contact_id, "stage": c.stage,
            "channel": c.channel, "market": c.market, "grp": c.group, "crossed_at": state.iso(c.crossed_at),
            "elapsed_s": c.elapsed_s, "target_s": c.target_s, "business": int(c.business)}


def _kpi_columns(b: KpiBreach) -> dict[str, Any]:
    segment = b.segment
    return {"key": b.key, "kind": "kpi", "stage": "kpi_breach", "kpi": b.kpi, "grain": b.grain,
            "period_start": b.period_start, "segment": b.segment_key, "channel": segment.get("channel"),
            "market": segment.get("market"), "grp": segment.get("group"), "value": b.value,
            "target": json.dumps(b.target)}


def _summarise(conn: sqlite3.Connection, settings: Settings, now: datetime, disposition: str) -> int:
    """One summary of every alert of `disposition` not yet summarised, to the sinks they would have gone to."""
    rows = state.unsummarised(conn, disposition)
    if not rows:
        return 0
    labels: dict[str, None] = {}
    for row in rows:
        for sink in routing.route(settings.alerts, _dims(row), notes=False):
            labels.setdefault(sink.label)
    key = f"summary:{disposition}:{state.iso(now)}:{rows[0]['id']}-{rows[-1]['id']}"
    summary_id = state.insert_event(conn, key=key, kind="summary", stage=disposition, decided_at=state.iso(now),
                                    disposition=state.SUMMARY, covers=len(rows))
    state.add_deliveries(conn, summary_id, list(labels), now)
    state.mark_summarised(conn, [r["id"] for r in rows], summary_id)
    return 1

