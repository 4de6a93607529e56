"""Business hours: elapsed time counted only inside a schedule's local weekly hours, minus holidays.

A schedule's open intervals are laid out once in UTC epoch seconds over the dates the data
spans (each local day converted with its own UTC offset, so a DST change shortens or
lengthens exactly the hours it touches). Then F(t), the business seconds from the first
interval up to t, is a binary search plus an addition, and business time between a and b
is F(b) - F(a). SQL calls it as `kpi_bh(schedule, a_epoch, b_epoch)`.

A contact takes the schedule of its group, else of its market, else the schedule that lists
neither (if any); contacts with no schedule have no business-hours values.
"""

from __future__ import annotations

import sqlite3
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from functools import cached_property
from zoneinfo import ZoneInfo

from kpi_core.kpis.segments import matches_id, sql_text
from kpi_core.settings import WEEKDAYS, BusinessHoursSettings, KpiSettings

_MARGIN_DAYS = 7


@dataclass(frozen=True)
class Schedule:
    name: str
    time_zone: str
    hours: tuple[tuple[tuple[int, int], ...], ...]  # per weekday (Monday first): (start, end) minutes
    holidays: frozenset[date]
    groups: tuple[str, ...] = ()
    markets: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, name: str, s: BusinessHoursSettings) -> Schedule:
        week = []
        for day in WEEKDAYS:
            ranges = []
            for item in s.hours.get(day, []):
                start, end = item.split("-")
                ranges.append((_minutes(start), _minutes(end)))
            week.append(tuple(sorted(ranges)))
        return cls(name, s.time_zone, tuple(week), frozenset(s.holidays), tuple(s.groups), tuple(s.markets))


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


@dataclass(frozen=True)
class _Span:
    """A schedule's intervals laid out over [first, last]: each start, length and the business seconds before it."""

    first: date
    last: date
    starts: list[int]
    lengths: list[int]
    before: list[int]

    @cached_property
    def ends(self) -> list[int]:
        """The business seconds at the end of each interval."""
        return [b + n for b, n in zip(self.before, self.lengths, strict=True)]

    def holds(self, day: date) -> bool:
        return self.first < day < self.last

    def elapsed(self, epoch: int) -> int:
        i = bisect_right(self.starts, epoch) - 1
        if i < 0:
            return 0
        return self.before[i] + min(epoch - self.starts[i], self.lengths[i])


class BusinessClock:
    """Business seconds of one schedule, on demand over any span of dates.

    Safe to call from several threads (DuckDB calls `kpi_bh` from its own): a wider span is laid out
    whole and then replaces the old one in one step, and each answer reads one span throughout.
    """

    def __init__(self, schedule: Schedule) -> None:
        self.schedule = schedule
        self.zone = ZoneInfo(schedule.time_zone)
        self._span: _Span | None = None

    def prepare(self, first: int, last: int) -> None:
        """Lay out the intervals for [first, last] at once (epoch seconds), before a bulk run."""
        self._cover(first, last)

    def _cover(self, a: int, b: int) -> _Span:
        """A span holding both instants: the current one, or a wider one laid out now."""
        span = self._span
        lo = datetime.fromtimestamp(a, timezone.utc).date()
        hi = datetime.fromtimestamp(b, timezone.utc).date()
        if span is not None and span.holds(lo) and span.holds(hi):
            return span
        first = min(lo, span.first if span else lo) - timedelta(days=_MARGIN_DAYS)
        last = max(hi, span.last if span else hi) + timedelta(days=_MARGIN_DAYS + 366)
        span = self._span = self._layout(first, last)
        return span

    def _layout(self, first: date, last: date) -> _Span:
        starts, lengths, before, total = [], [], [], 0
        day = first
        while day <= last:
            if day not in self.schedule.holidays:
                for start_min, end_min in self.schedule.hours[day.weekday()]:
                    a = self._epoch(day, start_min)
                    b = self._epoch(day, end_min)
                    if b > a:
                        starts.append(a)
                        lengths.append(b - a)
                        before.append(total)
                        total += b - a
            day += timedelta(days=1)
        return _Span(first, last, starts, lengths, before)

    def _epoch(self, day: date, minutes: int) -> int:
        if minutes >= 24 * 60:
            local = datetime.combine(day + timedelta(days=1), time(0), self.zone)
        else:
            local = datetime.combine(day, time(minutes // 60, minutes % 60), self.zone)
        return int(local.timestamp())

    def elapsed(self, epoch: int) -> int:
        """Business seconds from the start of the laid-out span up to `epoch`."""
        return self._cover(epoch, epoch).elapsed(epoch)

    def between(self, a: int, b: int) -> int:
        if b <= a:
            return 0
        span = self._cover(a, b)
        return span.elapsed(b) - span.elapsed(a)

    def reached(self, begin: int, seconds: float, horizon: int) -> float | None:
        """The instant (epoch seconds) at which `seconds` of business time have passed since `begin`, or None when
        that is later than the span laid out up to `horizon` holds."""
        span = self._cover(begin, horizon)
        wanted = span.elapsed(begin) + seconds
        i = bisect_left(span.ends, wanted)  # the first interval whose end reaches it: the moment falls inside
        if i == len(span.ends):
            return None
        return max(span.starts[i] + (wanted - span.before[i]), begin)


class BusinessHours:
    """The configured schedules, their SQL assignment to contacts and the `kpi_bh` SQL function."""

    def __init__(self, schedules: Sequence[Schedule]) -> None:
        self.schedules = list(schedules)
        self.clocks = [BusinessClock(s) for s in self.schedules]

    @classmethod
    def from_settings(cls, settings: KpiSettings) -> BusinessHours:
        return cls([Schedule.from_settings(name, s) for name, s in sorted(settings.business_hours.items())])

    @property
    def configured(self) -> bool:
        return bool(self.schedules)

    def seconds(self, index: int | None, a: int | None, b: int | None) -> int | None:
        if index is None or a is None or b is None:
            return None
        return self.clocks[index].between(a, b)

    def prepare(self, first: int, last: int) -> None:
        for clock in self.clocks:
            clock.prepare(first, last)

    def register(self, conn: sqlite3.Connection) -> None:
        conn.create_function("kpi_bh", 3, self.seconds, deterministic=True)

    def schedule_for(self, group: str | None, market: str | None) -> int | None:
        """A contact's schedule index by `assignment_sql`'s rule, for one contact at a time (the alert watcher): its
        group's (the qualified `source:id` or the bare id listed), else its market's, else the catch-all."""
        for i, s in enumerate(self.schedules):
            if group and (group in s.groups or group.split(":", 1)[-1] in s.groups):
                return i
        for i, s in enumerate(self.schedules):
            if market is not None and market in s.markets:
                return i
        return next((i for i, s in enumerate(self.schedules) if not s.groups and not s.markets), None)

    def assignment_sql(self, group: str, market: str) -> str:
        """SQL giving a contact's schedule index: its group's, else its market's, else the catch-all."""
        if not self.schedules:
            return "NULL"
        cases = [f"WHEN {matches_id(group, s.groups)} THEN {i}" for i, s in enumerate(self.schedules) if s.groups]
        cases += [f"WHEN {market} IN ({', '.join(sql_text(m) for m in s.markets)}) THEN {i}"
                  for i, s in enumerate(self.schedules) if s.markets]
        fallback = next((str(i) for i, s in enumerate(self.schedules) if not s.groups and not s.markets), "NULL")
        return f"(CASE {' '.join(cases)} ELSE {fallback} END)" if cases else fallback
