"""Quiet hours: a local time range of `[kpis] timezone` (it may wrap midnight) during which alerts are held."""

from __future__ import annotations

from datetime import datetime, time
from zoneinfo import ZoneInfo


def in_quiet_hours(quiet_hours: str, now: datetime, zone: ZoneInfo) -> bool:
    if not quiet_hours:
        return False
    start, end = (time.fromisoformat(part) for part in quiet_hours.split("-"))
    local = now.astimezone(zone).time()
    if start < end:
        return start <= local < end
    return local >= start or local < end  # "22:00-07:00": across midnight
