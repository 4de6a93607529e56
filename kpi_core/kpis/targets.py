"""Targets and status: the catalogue's defaults, the admin's overrides, and ok | breach | no_data | info | low_n.

`[kpis.targets]` holds overrides by KPI id, globally and under `channel.NAME`, `market.NAME`
and `group.NAME`. A target is a number (the direction of the KPI says whether it is a floor
or a ceiling) or a band `[low, high]` (for KPIs without a better direction, such as
utilization). The most specific target wins: the segment's group, then market, then
channel override; then the catalogue's channel first-response default; then the global
override; then the catalogue default.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kpi_core.kpis.catalogue import BY_ID, COUNT_KPIS, Direction, Kpi, UnknownKpi
from kpi_core.model import Channel

Target = float | tuple[float, float]

# First-response targets per channel, in minutes: also the service-level thresholds.
CHANNEL_FRT_MINUTES: dict[str, float] = {
    Channel.CHAT: 2.0, Channel.MESSAGING: 2.0, Channel.PHONE: 0.5, Channel.EMAIL: 24 * 60.0,
    Channel.WEB_FORM: 24 * 60.0, Channel.API: 24 * 60.0, Channel.SOCIAL: 24 * 60.0,
}
_CHANNEL_TARGETED = ("first_response_time_median", "first_response_time_median_bh")
SCOPES = ("channel", "market", "group")


def check_targets(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Validate `[kpis.targets]`; raise ValueError naming the offending key."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key in SCOPES:
            if not isinstance(value, Mapping):
                raise ValueError(f"{key}: expected tables such as [kpis.targets.{key}.NAME]")
            out[key] = {}
            for name, targets in value.items():
                if key == "channel" and name not in {c.value for c in Channel}:
                    raise ValueError(f"channel.{name}: unknown channel")
                if not isinstance(targets, Mapping):
                    raise ValueError(f"{key}.{name}: expected KPI = target pairs")
                out[key][str(name)] = {k: _check_one(f"{key}.{name}.{k}", k, v) for k, v in targets.items()}
        else:
            out[key] = _check_one(key, key, value)
    return out


def _check_one(path: str, kpi_id: str, value: Any) -> Target:
    try:
        kpi = BY_ID[kpi_id]
    except KeyError:
        raise UnknownKpi(f"{path}: unknown KPI id") from None
    if isinstance(value, (list, tuple)):
        if len(value) != 2 or not all(_is_number(v) for v in value) or value[0] > value[1]:
            raise ValueError(f"{path}: a band is [low, high] with low <= high")
        return (float(value[0]), float(value[1]))
    if not _is_number(value):
        raise ValueError(f"{path}: expected a number or a band [low, high]")
    if kpi.direction is None:
        raise ValueError(f"{path}: {kpi_id} has no better direction; give a band [low, high]")
    return float(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class Targets:
    """Resolves the target of a KPI value from its segment."""

    def __init__(self, checked: Mapping[str, Any]) -> None:
        """`checked`: `[kpis.targets]` as `check_targets` returns it, which is how the settings hold it."""
        self.scoped: dict[str, dict[str, dict[str, Target]]] = {s: checked.get(s, {}) for s in SCOPES}
        self.global_: dict[str, Target] = {k: v for k, v in checked.items() if k not in SCOPES}

    def for_value(self, kpi: Kpi, segment: Mapping[str, Any]) -> Target | None:
        kpi_id = kpi.target_of or kpi.id
        for scope in ("group", "market", "channel"):
            name = segment.get(scope)
            if name is None:
                continue
            found = self._scoped(scope, str(name), kpi_id)
            if found is not None:
                return found
        channel = segment.get("channel")
        if kpi_id in _CHANNEL_TARGETED and channel is not None:
            return self.channel_frt_minutes(str(channel))
        if kpi_id in self.global_:
            return self.global_[kpi_id]
        return BY_ID[kpi_id].default_target

    def _scoped(self, scope: str, name: str, kpi_id: str) -> Target | None:
        table = self.scoped[scope]
        for candidate in (name, name.split(":", 1)[-1]) if scope == "group" else (name,):
            if candidate in table and kpi_id in table[candidate]:
                return table[candidate][kpi_id]
        return None

    def channel_frt_minutes(self, channel: str) -> float:
        """The channel's first-response target: its override, else the catalogue's (`other` uses email's)."""
        override = self.scoped["channel"].get(channel, {}).get("first_response_time_median")
        if isinstance(override, float):
            return override
        return CHANNEL_FRT_MINUTES.get(channel, CHANNEL_FRT_MINUTES[Channel.EMAIL])

    def service_level_sql(self) -> str:
        """SQL CASE giving each contact's service-level threshold in seconds, by its channel."""
        whens = " ".join(f"WHEN '{c.value}' THEN {self.channel_frt_minutes(c.value) * 60:g}" for c in Channel)
        return f"(CASE f.channel {whens} ELSE {self.channel_frt_minutes(Channel.OTHER) * 60:g} END)"


def status(kpi: Kpi, value: float | None, target: Target | None, n: int | None = None, min_n: int = 1) -> str:
    """ok | breach against the target, info without one, no_data without a value, and low_n for a sampled value
    (a rate, an average, a percentile) resting on fewer than `min_n` contacts: shown, judged by no target
    (catalogue 4). A count is exact whatever its size, so it is never low_n."""
    if value is None:
        return "no_data"
    if n is not None and n < min_n and kpi.id not in COUNT_KPIS:
        return "low_n"
    if target is None:
        return "info"
    if isinstance(target, tuple):
        return "ok" if target[0] <= value <= target[1] else "breach"
    direction = BY_ID[kpi.target_of].direction if kpi.target_of else kpi.direction
    if direction is Direction.HIGHER:
        return "ok" if value >= target else "breach"
    if direction is Direction.LOWER:
        return "ok" if value <= target else "breach"
    return "info"


def target_json(target: Target | None) -> float | list[float] | None:
    return list(target) if isinstance(target, tuple) else target
