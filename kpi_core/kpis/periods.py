"""Periods: day, ISO week (Monday first), month, quarter or a custom range, all [start, end) in local dates.

A period's dates are dates in `[kpis] timezone` (catalogue 2: boundaries fall at local
midnight, UTC by default), so a local day lasts 23 or 25 hours across a DST change. Stored
timestamps are UTC ISO text; SQL compares them with the UTC instant of each boundary
(`bound_text`), converted once per period, never per row.

Besides date arithmetic this module gives the SQL that maps an ISO timestamp column to the
start date of its (local) period, so one grouped query covers many periods at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from enum import StrEnum
from functools import lru_cache
from zoneinfo import ZoneInfo


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
    return today_in(now, timezone.utc)


def today_in(now: datetime | None, zone: tzinfo | str) -> date:
    """The local date at `now` (default: the present) in `zone`."""
    return (now or datetime.now(timezone.utc)).astimezone(zone_of(zone)).date()


def resolve(period: str | None, since: date | None, until: date | None, now: datetime | None = None,
            zone: tzinfo | str = timezone.utc) -> list[Period]:
    """What a `kpis` request means: the grain's periods over [since, until), a custom range, or this month.

    `since` and `until` are dates in `zone`, and "this month" is the month of today there."""
    today = today_in(now, zone)
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


def key_sql(grain: Grain, column: str, custom_start: date | None = None, zone: tzinfo | str = timezone.utc,
            within: tuple[date, date] | None = None, duck: bool = False) -> str:
    """SQL mapping the ISO timestamp `column` to the start date ('YYYY-MM-DD') of its period in `zone`.

    In UTC the date is read off the text. Elsewhere the periods of `grain` over the local dates
    `within` are told apart by their boundaries' UTC bounds (converted here, once per period)
    in a CASE nested as a binary search: about log2(periods) text comparisons per row, cheaper
    than date arithmetic. Instants before the first boundary get the first period, after the
    last the last: callers limit rows to `within`. `duck`: in DuckDB's dialect (the KPI engine's, see columns.py)."""
    if grain is Grain.CUSTOM:
        assert custom_start is not None
        return f"'{custom_start.isoformat()}'"
    if within is not None and not _is_utc(zone_of(zone)):
        found = periods_between(grain, *within)
        return _search_sql(column, [day_text(p.start, zone) for p in found[1:]], [p.start.isoformat() for p in found])
    if grain is Grain.DAY:
        return f"substr({column}, 1, 10)"
    if grain is Grain.WEEK:  # the Monday of the week; SQLite: the next Sunday (or the day itself), 6 days back
        if duck:
            return f"strftime(date_trunc('week', CAST(substr({column}, 1, 10) AS DATE)), '%Y-%m-%d')"
        return f"date({column}, 'weekday 0', '-6 days')"
    if grain is Grain.MONTH:
        return f"(substr({column}, 1, 7) || '-01')"
    month = f"substr({column}, 6, 2)"
    return (f"(substr({column}, 1, 5) || CASE WHEN {month} < '04' THEN '01' WHEN {month} < '07' THEN '04'"
            f" WHEN {month} < '10' THEN '07' ELSE '10' END || '-01')")


def _search_sql(column: str, bounds: list[str], keys: list[str]) -> str:
    """keys[i] for bounds[i-1] <= column < bounds[i] (keys has one more entry than bounds), as nested CASEs."""

    def between(lo: int, hi: int) -> str:  # the key among keys[lo..hi]
        if lo == hi:
            return f"'{keys[lo]}'"
        mid = (lo + hi + 1) // 2
        return f"CASE WHEN {column} < '{bounds[mid - 1]}' THEN {between(lo, mid - 1)} ELSE {between(mid, hi)} END"

    return between(0, len(keys) - 1)


def day_text(day: date, zone: tzinfo | str = timezone.utc) -> str:
    """A local date's first instant as a bound for UTC ISO timestamp text: ts >= lo AND ts < hi.

    At UTC midnight it is the bare date ('2026-01-01': every timestamp of that day sorts after it);
    elsewhere the UTC time without 'Z' ('2025-12-31T23:00:00', which '2025-12-31T23:00:00Z' is not below)."""
    moment = midnight(day, zone)
    if moment.time() == time(0):
        return moment.date().isoformat()
    return moment.strftime("%Y-%m-%dT%H:%M:%S")



def instant_text(day: date, zone: tzinfo | str = timezone.utc) -> str:
    """A local date's first instant in the store's format ('YYYY-MM-DDTHH:MM:SSZ')."""
    return midnight(day, zone).strftime("%Y-%m-%dT%H:%M:%SZ")


def midnight(day: date, zone: tzinfo | str = timezone.utc) -> datetime:
    """The UTC instant at which the local date `day` begins in `zone`.

    zoneinfo's fold=0 reads a skipped midnight (clocks jumping 00:00 -> 01:00) with the offset before the
    jump, which is the instant they land, and a repeated midnight as the first one."""
    return datetime.combine(day, time(0), zone_of(zone)).astimezone(timezone.utc)


def local_days(utc_days: list[date], zone: tzinfo | str) -> list[date]:
    """The local dates that the UTC dates `utc_days` overlap (one or two each), sorted."""
    tz = zone_of(zone)
    if _is_utc(tz):
        return sorted(set(utc_days))
    out: set[date] = set()
    for day in utc_days:
        first = datetime.combine(day, time(0), timezone.utc)
        out.add(first.astimezone(tz).date())
        out.add((first + timedelta(days=1, seconds=-1)).astimezone(tz).date())
    return sorted(out)


def zone_of(zone: tzinfo | str) -> tzinfo:
    """A zone given as a tzinfo or an IANA name (the setting `[kpis] timezone`, validated there)."""
    return _zone(zone) if isinstance(zone, str) else zone


@lru_cache(maxsize=32)
def _zone(name: str) -> tzinfo:
    return timezone.utc if name == "UTC" else ZoneInfo(name)


def _is_utc(zone: tzinfo) -> bool:
    return zone is timezone.utc or getattr(zone, "key", None) in ("UTC", "Etc/UTC")
