"""KPI alerts: the configured KPIs whose stored value for the running day or week has status `breach`.

The values are the stored ones (as `helpdesk-kpi kpis` shows them, judged by the same targets and `min_n`), so a
KPI alert follows the compute that follows each sync. One alert per KPI, period and segment: a value that
recovers and breaches again within the same period does not alert twice.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kpi_core.kpis import api as kpi_api
from kpi_core.settings import Settings
from kpi_core.store import Store


@dataclass(frozen=True)
class KpiBreach:
    kpi: str
    grain: str
    period_start: str
    period_end: str
    segment: dict[str, Any]
    value: float
    target: Any
    unit: str
    n: int | None

    @property
    def segment_key(self) -> str:
        return json.dumps(self.segment, sort_keys=True, ensure_ascii=False)

    @property
    def key(self) -> str:
        return f"kpi:{self.kpi}:{self.grain}:{self.period_start}:{self.segment_key}"


def kpi_breaches(store: Store, settings: Settings, now: datetime) -> Iterator[KpiBreach]:
    alerts = settings.alerts
    if not alerts.kpis:
        return
    for grain in alerts.kpi_periods:
        rows = kpi_api.kpi_rows(store, settings, grain, None, None, by=alerts.kpi_by or None, kpi_ids=alerts.kpis,
                                now=now)
        for row in rows:
            if row["status"] == "breach" and row["value"] is not None:
                yield KpiBreach(row["kpi"], grain, row["period_start"], row["period_end"], dict(row["segment"]),
                                float(row["value"]), row["target"], row["unit"], row.get("n"))
