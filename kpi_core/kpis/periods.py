"""Periods: day, ISO week (Monday first), month, quarter or a custom range, all [start, end) in UTC dates.

Besides date arithmetic this module gives the SQL that maps an ISO timestamp column to the
start date of its period, so one grouped query covers many periods at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from enum import StrEnum


class Grain(StrEnum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"
    QUARTER = "quarter"
    CUSTOM = "custom"


class PeriodError(ValueError):
    """A period request that cannot be answered (unknown grain, empty range)."""


@dataclass(frozen=True, order=True)
class Period:
    start: date
    end: date  # exclusive
    grain: Grain

    @property
    def days(self) -> int:
        return (self.end - self.start).days

    def previous(self) -> Period:
        if self.grain is Grain.CUSTOM:
            return Period(self.start - timedelta(days=self.days), self.start, self.grain)
        return period_containing(self.start - timedelta(days=1), self.grain)

    def next(self) -> Period:
        if self.grain is Grain.CUSTOM:
            return Period(self.end, self.end + timedelta(days=self.days), self.grain)
        return period_containing(self.end, self.grain)

    def contains(self, day: date) -> bool:
        return self.start <= day < self.end

    def label(self) -> str:
        if self.grain is Grain.MONTH:
            return self.start.strftime("%Y-%m")
        if self.grain is Grain.QUARTER:
            return f"{self.start.year}-Q{(self.start.month - 1) // 3 + 1}"
        if self.grain is Grain.WEEK:
            year, week, _ = self.start.isocalendar()
            return f"{year}-W{week:02d}"
        if self.grain is Grain.DAY:
            return self.start.isoformat()
        return f"{self.start.isoformat()}..{self.end.isoformat()}"


def _add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def period_containing(day: date, grain: Grain) -> Period:
    if grain is Grain.DAY:
        return Period(day, day + timedelta(days=1), grain)
    if grain is Grain.WEEK:
        start = day - timedelta(days=day.weekday())
        return Period(start, start + timedelta(days=7), grain)
    if grain is Grain.MONTH:
        start = day.replace(day=1)
        return Period(start, _add_months(start, 1), grain)
    if grain is Grain.QUARTER:
        start = date(day.year, (day.month - 1) // 3 * 3 + 1, 1)
        return Period(start, _add_months(start, 3), grain)
    raise PeriodError("a custom period needs --since and --until")


def periods_between(grain: Grain, since: date, until: date) -> list[Period]:
    """The periods of `grain` that intersect [since, until), in order."""
    if until <= since:
        raise PeriodError(f"empty range: until {until} is not after since {since}")
    if grain is Grain.CUSTOM:
        return [Period(since, until, grain)]
    out = [period_containing(since, grain)]
    while out[-1].end < until:
        out.append(out[-1].next())
    return out


def parse_grain(value: str) -> Grain:
    try:
        return Grain(value)
    except ValueError:
        raise PeriodError(f"unknown period {value!r}; use day, week, month, quarter or custom") from None


def today_utc(now: datetime | None = None) -> date:
    return (now or datetime.now(timezone.utc)).astimezone(timezone.utc).date()


def resolve(period: str | None, since: date | None, until: date | None, now: datetime | None = None) -> list[Period]:
    """What a `kpis` request means: the grain's periods over [since, until), a custom range, or this month."""
    today = today_utc(now)
    if period is None:
        if since is None and until is None:
            return [period_containing(today, Grain.MONTH)]
        if since is None:
            raise PeriodError("--until needs --since (or a --period)")
        return [Period(since, until or today + timedelta(days=1), Grain.CUSTOM)]
    grain = parse_grain(period)
    if grain is Grain.CUSTOM:
        if since is None or until is None:
            raise PeriodError("a custom period needs --since and --until")
        return periods_between(grain, since, until)
    if since is None and until is None:
        return [period_containing(today, grain)]
    start = since or period_containing(today, grain).start
    return periods_between(grain, start, until or today + timedelta(days=1))


def runs(periods: list[Period]) -> list[list[Period]]:
    """Split sorted periods into runs of adjacent ones (one SQL range each)."""
    out: list[list[Period]] = []
    for p in sorted(set(periods)):
        if out and out[-1][-1].end == p.start and p.grain is not Grain.CUSTOM:
            out[-1].append(p)
        else:
            out.append([p])
    return out


def key_sql(grain: Grain, column: str, custom_start: date | None = None) -> str:
    """SQL mapping the ISO timestamp `column` to the start date ('YYYY-MM-DD') of its period."""
    if grain is Grain.DAY:
        return f"substr({column}, 1, 10)"
    if grain is Grain.WEEK:
        return f"date({column}, 'weekday 0', '-6 days')"
    if grain is Grain.MONTH:
        return f"(substr({column}, 1, 7) || '-01')"
    if grain is Grain.QUARTER:
        month = f"substr({column}, 6, 2)"
        return (f"(substr({column}, 1, 5) || CASE WHEN {month} < '04' THEN '01' WHEN {month} < '07' THEN '04'"
                f" WHEN {month} < '10' THEN '07' ELSE '10' END || '-01')")
    assert custom_start is not None
    return f"'{custom_start.isoformat()}'"


def day_text(day: date) -> str:
    """A date as a bound for ISO timestamp text: ts >= '2026-01-01' and ts < '2026-02-01' select January."""
    return day.isoformat()
