"""One alerting pass (the daemon's `alerts` job, and `run --once`): look, decide, send.

1. Deliveries a crashed pass left `sending` become `uncertain` (see `state`).
2. What is at risk or breached now, and the KPIs in breach, are compared with the record; the new ones are
   decided in one transaction (see `decide`).
3. Every pending delivery is sent, each one marked `sending` before and `sent`/`failed` after. A stop
   (SIGTERM) ends the pass between two deliveries; the rest stay pending for the next pass.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

from kpi_core.alerts import routing, state
from kpi_core.alerts.decide import Decisions, decide
from kpi_core.alerts.kpi_watch import kpi_breaches
from kpi_core.alerts.messages import render
from kpi_core.alerts.sinks import Senders
from kpi_core.alerts.watch import crossings
from kpi_core.settings import Settings
from kpi_core.store import Store

log = logging.getLogger(__name__)


@dataclass
class AlertPass:
    decisions: Decisions = field(default_factory=Decisions)
    sent: int = 0
    failed: int = 0
    uncertain: int = 0
    interrupted: int = 0  # deliveries a crashed pass left half-done
    errors: list[str] = field(default_factory=list)
    stopped: bool = False

    @property
    def ok(self) -> bool:
        return not self.failed


def run_alerts(store: Store, settings: Settings, *, now: datetime | None = None,
               stop: threading.Event | None = None) -> AlertPass:
    """Decide what is new at `now` (default: the clock) and send every pending delivery."""
    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc).replace(microsecond=0)
    result = AlertPass()
    conn = store.db.conn
    result.interrupted = state.settle_interrupted(conn, now)
    if result.interrupted:
        log.warning("alerts: %d deliveries were cut off by a crash mid-request; marked uncertain, not resent",
                    result.interrupted)
    result.decisions = decide(store, settings, now, crossings(store, settings, now),
                              kpi_breaches(store, settings, now))
    _send_pending(store, settings, result, stop)
    counts = ", ".join(f"{n} {d}" for d, n in sorted(result.decisions.counts.items())) or "nothing new"
    log.info("alerts: decided %s (%d summaries); %d deliveries sent, %d failed", counts,
             result.decisions.summaries, result.sent, result.failed)
    return result


def _send_pending(store: Store, settings: Settings, result: AlertPass, stop: threading.Event | None) -> None:
    conn = store.db.conn
    zone = ZoneInfo(settings.kpis.timezone)
    senders = Senders(settings)
    try:
        for event_id, label in state.due(conn):
            if stop is not None and stop.is_set():
                result.stopped = True
                break
            event = state.event(conn, event_id)
            covered = state.covered(conn, event_id) if event["kind"] == "summary" else []
            sink = routing.resolve(settings.alerts, label)
            started = datetime.now(timezone.utc)
            state.start_delivery(conn, event_id, label, started)
            error: str | None
            if sink is None:
                status, error = state.FAILED, "no such sink in the settings any more"
            else:
                status, error = senders.send(sink, event, render(event, covered, zone), len(covered))
            state.finish_delivery(conn, event_id, label, status, error, datetime.now(timezone.utc))
            if status == state.SENT:
                result.sent += 1
            else:
                result.failed += status == state.FAILED
                result.uncertain += status == state.UNCERTAIN
                result.errors.append(f"{label}: {error}")
                log.error("alerts: %s: %s", label, error)
    finally:
        senders.close()
