"""How long an open contact has waited: calendar time, or with `[alerts] business_hours` the business time of
its schedule (`[kpis.business_hours]`), the clock the `_bh` KPIs measure by.

A contact takes the schedule the KPI engine gives it: its group's, else its market's, else the schedule that
names neither; a contact no schedule covers keeps calendar time. Business time stops outside the schedule's
hours and on its holidays, so a chat written at 23:00 is not at risk before the team starts at 08:00.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from kpi_core.kpis.business_hours import BusinessClock, BusinessHours
from kpi_core.settings import Settings

_YEAR = 366 * 86400


@dataclass
class WaitClock:
    """Elapsed time and the moment a wait reaches a length, per contact, on its own clock."""

    settings: Settings
    _clocks: list[BusinessClock] = field(default_factory=list, init=False)
    _ends: dict[int, tuple[list[int], list[int]]] = field(default_factory=dict, init=False)  # per laid-out span

    def __post_init__(self) -> None:
        if self.settings.alerts.business_hours:  # the engine's schedules and clocks, in the engine's order
            self._clocks = BusinessHours.from_settings(self.settings.kpis).clocks

    @property
    def business(self) -> bool:
        return bool(self._clocks)

    def schedule_of(self, group: str | None, market: str | None) -> int | None:
        """The contact's schedule: its group's, its market's, the catch-all; the rule of
        BusinessHours.assignment_sql, which gives the facts theirs in SQL, here for one contact at a time."""
        for i, clock in enumerate(self._clocks):
            groups = clock.schedule.groups
            if group and (group in groups or group.split(":", 1)[-1] in groups):
                return i
        for i, clock in enumerate(self._clocks):
            if market is not None and market in clock.schedule.markets:
                return i
        return next((i for i, c in enumerate(self._clocks) if not c.schedule.groups and not c.schedule.markets),
                    None)

    def elapsed_s(self, schedule: int | None, started: datetime, now: datetime) -> float:
        if schedule is None:
            return (now - started).total_seconds()
        return float(self._clocks[schedule].between(int(started.timestamp()), int(now.timestamp())))

    def reached_at(self, schedule: int | None, started: datetime, seconds: float) -> datetime:
        """When a wait that began at `started` has lasted `seconds` on the contact's clock."""
        if schedule is None:
            return started + timedelta(seconds=seconds)
        clock = self._clocks[schedule]
        begin = int(started.timestamp())
        horizon = begin + _YEAR
        while True:
            clock.prepare(begin, horizon)
            wanted = clock.elapsed(begin) + seconds
            # The first interval whose end reaches the wanted total; the moment falls inside it.
            ends = self._interval_ends(schedule, clock)
            i = bisect_left(ends, wanted)
            if i < len(ends):
                moment = clock.starts[i] + (wanted - clock.before[i])
                return datetime.fromtimestamp(max(moment, begin), timezone.utc)
            if horizon - begin > 10 * _YEAR:  # a schedule without hours: the wait never ends
                return datetime.max.replace(tzinfo=timezone.utc)
            horizon += _YEAR

    def _interval_ends(self, schedule: int, clock: BusinessClock) -> list[int]:
        """Business seconds at the end of each laid-out interval (made again when the clock lays out a new span)."""
        kept = self._ends.get(schedule)
        if kept is None or kept[0] is not clock.before:
            kept = (clock.before, [b + n for b, n in zip(clock.before, clock.lengths, strict=True)])
            self._ends[schedule] = kept
        return kept[1]
