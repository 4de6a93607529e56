"""Each open contact's targets: first response from `[kpis.targets]` (as the KPI is judged), resolution from
`[alerts] resolution_targets`; both by the contact's group, market and channel."""

from __future__ import annotations

from dataclasses import dataclass, field

from kpi_core.kpis.catalogue import BY_ID
from kpi_core.kpis.targets import Targets
from kpi_core.settings import Settings

FRT_KPI = BY_ID["first_response_time_median"]
FRT_BH_KPI = BY_ID["first_response_time_median_bh"]


@dataclass
class ContactTargets:
    """Targets in seconds for a (channel, market, group); looked up once per combination."""

    settings: Settings
    _targets: Targets = field(init=False)
    _frt: dict[tuple[str, str, str, bool], float] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self._targets = Targets(self.settings.kpis.targets)

    def first_response_s(self, channel: str, market: str | None, group: str | None, *,
                         business: bool = False) -> float:
        """The contact's first-response target: group, then market, then channel override, then the channel's
        catalogue default (the median's target, which is also the service-level threshold). On a business clock,
        the target of the `_bh` median, judged the same way (and by default the same minutes)."""
        key = (channel, market or "", group or "", business)
        if key not in self._frt:
            segment = {"channel": channel, "market": market, "group": group}
            found = self._targets.for_value(FRT_BH_KPI if business else FRT_KPI,
                                            {k: v for k, v in segment.items() if v})
            minutes = found[1] if isinstance(found, tuple) else found
            self._frt[key] = 60.0 * (minutes if minutes is not None else self._targets.channel_frt_minutes(channel))
        return self._frt[key]

    def resolution_s(self, channel: str, market: str | None, group: str | None) -> float | None:
        """The most specific `[alerts] resolution_targets` entry (group, market, channel, default), or None."""
        table = self.settings.alerts.resolution_targets
        candidates = []
        if group:
            candidates += [f"group.{group}", f"group.{group.split(':', 1)[-1]}"]
        if market:
            candidates.append(f"market.{market}")
        candidates += [f"channel.{channel}", "default"]
        for key in candidates:
            if key in table:
                return table[key].total_seconds()
        return None
