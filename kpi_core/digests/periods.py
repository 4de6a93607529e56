"""Which period a digest covers and when it is due, in the account's time zone (`[kpis] timezone`).

A digest covers the last *complete* period of its cadence: on Tuesday 2026-12-08 the weekly digest is
about Monday 2026-11-30 to Sunday 2026-12-06, the monthly one about November, the daily one about
Monday. It is due from `[digests] send_at` local time on the first day after that period, so the
daemon never reports on a period that still runs and gives late syncs the night to arrive.
"""

from __future__ import annotations

from datetime import datetime, time
from typing import Final

from kpi_core.kpis.periods import Grain, Period, period_containing, today_in, zone_of

CADENCES: Final = ("daily", "weekly", "monthly", "quarterly")
GRAINS: Final = {"daily": Grain.DAY, "weekly": Grain.WEEK, "monthly": Grain.MONTH, "quarterly": Grain.QUARTER}
# `digest --period week` names the grain, as `kpis --period` does.
BY_PERIOD: Final = {grain.value: cadence for cadence, grain in GRAINS.items()}


def last_complete(cadence: str, now: datetime, zone: str) -> Period:
    """The last period of `cadence` that has ended by `now`, in local dates of `zone`."""
    return period_containing(today_in(now, zone), GRAINS[cadence]).previous()


def due_at(period: Period, send_at: str, zone: str) -> datetime:
    """When the digest of `period` is due: `send_at` local time on the day after the period (a UTC instant)."""
    hour, minute = (int(part) for part in send_at.split(":"))
    return datetime.combine(period.end, time(hour, minute), zone_of(zone))


def due(cadence: str, now: datetime, send_at: str, zone: str) -> Period | None:
    """The period whose digest is due at `now`, or None before `send_at` on the day after it."""
    period = last_complete(cadence, now, zone)
    return period if now >= due_at(period, send_at, zone) else None
