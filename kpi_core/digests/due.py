"""The daemon's side of digests: each enabled cadence's digest, once per period, after the period ends."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone

from kpi_core.digests import deliver
from kpi_core.digests.gather import gather
from kpi_core.digests.periods import due
from kpi_core.kpis.periods import Period
from kpi_core.settings import Settings
from kpi_core.store import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    cadence: str
    period: Period
    sent: deliver.Sent


def send_due(store: Store, settings: Settings, now: datetime | None = None) -> list[Outcome]:
    """Send every digest that is due and has not reached all its sinks yet; returns what was attempted.

    Only the last complete period of each cadence is considered: a daemon that was down for three weeks
    sends last week's digest, not three."""
    now = now or datetime.now(timezone.utc)
    if not settings.digests.enabled:
        return []
    outcomes = []
    for cadence in settings.digests.cadences:
        sinks = deliver.configured(settings, cadence)
        period = due(cadence, now, settings.digests.send_at, settings.kpis.timezone)
        if period is None or not sinks:
            continue
        missing = [s for s in sinks if s not in deliver.sent_sinks(store, cadence, period)]
        if not missing:
            continue
        digest = gather(store, settings, cadence, period, now)
        outcomes.append(Outcome(cadence, period, deliver.deliver(store, settings, digest, missing)))
    return outcomes
