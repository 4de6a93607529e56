"""How figures read in the report: values in their unit, changes, statuses and times, all as short text."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone, tzinfo
from typing import Final
from zoneinfo import ZoneInfo

NO_DATA: Final = "no data"

# Each status carries an icon and a word as well as a colour, so it reads in greyscale and to screen readers.
STATUS_LABELS: Final[dict[str, tuple[str, str]]] = {
    "ok": ("\u2714", "On target"),
    "breach": ("\u2716", "Breach"),
    "no_data": ("\u2205", "No data"),
    "info": ("\u2022", "No target"),
    "low_n": ("\u2248", "Small sample"),  # fewer contacts than [kpis] min_n: shown, judged by no target
}


def status_icon(status: str) -> str:
    return STATUS_LABELS.get(status, ("?", status))[0]


def status_label(status: str) -> str:
    return STATUS_LABELS.get(status, ("?", status))[1]


def duration(seconds: float) -> str:
    """A duration in the unit a person would say: seconds, minutes, hours or days."""
    sign = "-" if seconds < 0 else ""
    s = abs(seconds)
    if s < 90:
        return f"{sign}{s:.0f} s"
    if s < 90 * 60:
        return f"{sign}{s / 60:.1f} min"
    if s < 48 * 3600:
        return f"{sign}{s / 3600:.1f} h"
    return f"{sign}{s / 86400:.1f} days"


def _number(value: float, decimals: int = 2) -> str:
    if float(value).is_integer():
        return f"{value:,.0f}"
    return f"{value:,.{decimals}f}"


def value_text(value: float | None, unit: str) -> str:
    """A KPI value in its unit; `no data` for a missing value, never 0."""
    if value is None:
        return NO_DATA
    if unit == "%":
        return f"{value:.1f} %"
    if unit == "minutes":
        return duration(value * 60)
    if unit == "hours":
        return duration(value * 3600)
    if unit == "count":
        return _number(value)
    if unit == "score":
        return f"{value:+.0f}" if float(value).is_integer() else f"{value:+.1f}"
    if unit == "1-7":
        return f"{value:.2f} / 7"
    if unit == "ratio":
        return f"{value:.2f}"
    return f"{value:,.2f} {unit}"  # a currency code


def exact_text(value: float | None, unit: str) -> str:
    """The stored value with its unit, for tooltips beside the rounded figure."""
    if value is None:
        return NO_DATA
    return f"{value:g} {unit}"


@dataclass(frozen=True)
class Change:
    """A value against the previous period's: the difference and whether that is better."""

    delta: float
    previous: float
    verdict: str  # better | worse | same | neutral (no better direction)

    def text(self, unit: str) -> str:
        arrow = "\u25b2" if self.delta > 0 else "\u25bc" if self.delta < 0 else "="
        if unit == "%":
            body = f"{self.delta:+.1f} pp"
        elif unit == "minutes":
            body = _signed(duration(self.delta * 60), self.delta)
        elif unit == "hours":
            body = _signed(duration(self.delta * 3600), self.delta)
        elif unit == "count":
            body = f"{self.delta:+,.0f}" if float(self.delta).is_integer() else f"{self.delta:+,.2f}"
            if self.previous:
                body += f" ({100 * self.delta / self.previous:+.0f} %)"
        elif unit == "score":
            body = f"{self.delta:+.1f} points"
        else:
            body = f"{self.delta:+,.2f}"
        return f"{arrow} {body}"


def _signed(text: str, delta: float) -> str:
    return text if delta < 0 else "+" + text


def change(current: float | None, previous: float | None, direction: str | None) -> Change | None:
    """The change against the previous period, or None when either value is missing."""
    if current is None or previous is None:
        return None
    delta = current - previous
    if abs(delta) < 1e-9:
        verdict = "same"
    elif direction is None:
        verdict = "neutral"
    else:
        verdict = "better" if (delta > 0) == (direction == "higher") else "worse"
    return Change(round(delta, 6), previous, verdict)


def target_text(target: float | list[float] | None, unit: str, direction: str | None) -> str:
    if target is None:
        return "\u2014"
    if isinstance(target, list):
        return f"{value_text(target[0], unit)} \u2013 {value_text(target[1], unit)}"
    comparator = "\u2265" if direction == "higher" else "\u2264" if direction == "lower" else ""
    return f"{comparator} {value_text(target, unit)}".strip()


def zone_name(zone: tzinfo) -> str:
    """The zone as the page names it: its IANA name ("Europe/Berlin"), "UTC" for UTC."""
    return zone.key if isinstance(zone, ZoneInfo) else (zone.tzname(None) or "UTC")


def time_text(iso: str | None, zone: tzinfo = timezone.utc) -> str:
    """'2026-11-25T10:04:05Z' -> '2026-11-25 11:04 Europe/Berlin': a stored UTC time read in the account's zone."""
    if not iso:
        return "never"
    at = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    if at.tzinfo is None:  # the store keeps UTC; a bare timestamp is UTC too
        at = at.replace(tzinfo=timezone.utc)
    return f"{at.astimezone(zone):%Y-%m-%d %H:%M} {zone_name(zone)}"


def utc_text(iso: str | None) -> str:
    """'2026-11-25T10:04:05Z' -> '2026-11-25 10:04 UTC'."""
    return time_text(iso, timezone.utc)


def age_text(seconds: int | None) -> str:
    if seconds is None:
        return "\u2014"
    if seconds < 120:
        return f"{seconds} s"
    return duration(float(seconds))
