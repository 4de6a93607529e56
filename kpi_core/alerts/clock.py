"""How long an open contact has waited: calendar time, or with `[alerts] business_hours` the business time of
its schedule (`[kpis.business_hours]`), the clock the `_bh` KPIs measure by.

A contact takes the schedule the KPI engine gives it: its group's, else its market's, else the schedule that
names neither; a contact no schedule covers keeps calendar time. Business time stops outside the schedule's
hours and on its holidays, so a chat written at 23:00 is not at risk before the team starts at 08:00.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from kpi_core.kpis.business_hours import BusinessHours
from kpi_core.settings import Settings

_YEAR = 366 * 86400


@dataclass
class WaitClock:
    """Elapsed time and the moment a wait reaches a length, per contact, on its own clock."""

    settings: Settings
    _hours: BusinessHours | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.settings.alerts.business_hours:  # the engine's schedules and clocks, in the engine's order
            hours = BusinessHours.from_settings(self.settings.kpis)
            self._hours = hours if hours.schedules else None

    @property
    def business(self) -> bool:
        return self._hours is not None

    def schedule_of(self, group: str | None, market: str | None) -> int | None:
        """The contact's schedule, as the engine assigns the facts theirs (BusinessHours.schedule_for)."""
        return self._hours.schedule_for(group, market) if self._hours else None

    def elapsed_s(self, schedule: int | None, started: datetime, now: datetime) -> float:
        if schedule is None or self._hours is None:
            return (now - started).total_seconds()
        return float(self._hours.clocks[schedule].between(int(started.timestamp()), int(now.timestamp())))

    def reached_at(self, schedule: int | None, started: datetime, seconds: float) -> datetime:
        """When a wait that began at `started` has lasted `seconds` on the contact's clock."""
        if schedule is None or self._hours is None:
            return started + timedelta(seconds=seconds)
        clock = self._hours.clocks[schedule]
        begin = int(started.timestamp())
        horizon = begin + _YEAR
        while (moment := clock.reached(begin, seconds, horizon)) is None:
            if horizon - begin > 10 * _YEAR:  # a schedule without hours: the wait never ends
                return datetime.max.replace(tzinfo=timezone.utc)
            horizon += _YEAR
        return datetime.fromtimestamp(moment, timezone.utc)
