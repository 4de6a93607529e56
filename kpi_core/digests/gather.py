"""A digest's content, read through the KPI engine's public functions: nothing here computes a KPI.

The last complete period against the one before: the cadence's KPI selection with value, target, status
and change; the biggest movers among all KPIs (largest relative change, judged better or worse by the
KPI's direction in the catalogue); the diagnostics that fired, naming the events they ran into; the top
contact reasons; and the events of the period.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from kpi_core import events as event_log
from kpi_core.digests.periods import GRAINS
from kpi_core.events import Event
from kpi_core.kpis import catalogue
from kpi_core.kpis.api import kpi_rows, refresh
from kpi_core.kpis.diagnostics import diagnose
from kpi_core.kpis.periods import Period
from kpi_core.kpis.reasons import top_reasons
from kpi_core.report.formatting import Change, change
from kpi_core.settings import Settings
from kpi_core.store import Store

TITLES = {"daily": "Daily", "weekly": "Weekly", "monthly": "Monthly", "quarterly": "Quarterly"}
# Statuses whose value is not a measured figure worth comparing: nothing measured, or too few contacts.
_UNJUDGED = ("no_data", "low_n")


@dataclass(frozen=True)
class Figure:
    """One KPI in the period, with the period before."""

    kpi: str
    name: str
    unit: str
    direction: str | None
    value: float | None
    previous: float | None
    target: Any
    status: str
    change: Change | None

    @property
    def relative(self) -> float | None:
        """The change as a share of the previous value (0.25: a quarter more); None without a base."""
        if self.change is None or not self.previous:
            return None
        return self.change.delta / abs(self.previous)

    def as_json(self) -> dict[str, Any]:
        return {"kpi": self.kpi, "name": self.name, "unit": self.unit, "value": self.value,
                "previous": self.previous, "target": self.target, "status": self.status,
                "change": None if self.change is None else self.change.delta,
                "change_pct": None if self.relative is None else round(100 * self.relative, 2),
                "verdict": None if self.change is None else self.change.verdict}


@dataclass(frozen=True)
class Finding:
    """One diagnostic of the period with every segment it fired for; the figures are those of the broadest."""

    diagnostic: str
    message: str
    segments: list[dict[str, Any]]
    evidence: dict[str, Any]


@dataclass
class Digest:
    cadence: str
    period: Period
    previous: Period
    generated_at: str
    zone: str
    volume: float | None = None  # contacts created in the period
    figures: list[Figure] = field(default_factory=list)
    worse: list[Figure] = field(default_factory=list)
    better: list[Figure] = field(default_factory=list)
    diagnostics: list[dict[str, Any]] = field(default_factory=list)
    reasons: list[dict[str, Any]] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)

    @property
    def title(self) -> str:
        return f"{TITLES[self.cadence]} digest {self.period.label()}"

    @property
    def span(self) -> str:
        """The period's dates, the last one inclusive, as people read them."""
        last = self.period.end - timedelta(days=1)
        return self.period.start.isoformat() if self.period.days == 1 else f"{self.period.start} to {last}"

    @property
    def findings(self) -> list[Finding]:
        """The diagnostics grouped by id and message (the overall figures first): a spike that shows overall, per
        channel and per source reads as one finding, not four."""
        groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for d in sorted(self.diagnostics, key=lambda d: (len(d["segment"]), json.dumps(d["segment"], sort_keys=True))):
            groups.setdefault((d["diagnostic"], d["message"]), []).append(d)
        return [Finding(name, message, [d["segment"] for d in items], items[0]["evidence"])
                for (name, message), items in groups.items()]

    @property
    def empty(self) -> bool:
        return not self.volume

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": "digest", "cadence": self.cadence, "title": self.title,
            "period_start": self.period.start.isoformat(), "period_end": self.period.end.isoformat(),
            "previous_start": self.previous.start.isoformat(), "previous_end": self.previous.end.isoformat(),
            "timezone": self.zone, "generated_at": self.generated_at,
            "kpis": [f.as_json() for f in self.figures],
            "movers": {"worse": [f.as_json() for f in self.worse], "better": [f.as_json() for f in self.better]},
            "diagnostics": self.diagnostics, "reasons": self.reasons, "events": [e.as_json() for e in self.events],
        }


def gather(store: Store, settings: Settings, cadence: str, period: Period, now: datetime | None = None) -> Digest:
    """Everything the digest of `cadence` for `period` shows (stored values brought up to date first)."""
    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc).replace(microsecond=0)
    grain = GRAINS[cadence].value
    previous = period.previous()
    digest = Digest(cadence, period, previous, now.strftime("%Y-%m-%dT%H:%M:%SZ"), settings.kpis.timezone)
    refresh(store, settings, now=now)  # what synced since the last compute counts too

    def figures(kpi_ids: list[str] | None) -> list[Figure]:
        rows = kpi_rows(store, settings, grain, previous.start, period.end, None, kpi_ids, now=now)
        return _figures([r for r in rows if not r["segment"]], period, previous)

    selection = settings.digests.kpis_of(cadence)
    digest.figures = figures(selection)
    everything = figures(None)
    digest.volume = next((f.value for f in everything if f.kpi == "ticket_volume"), None)
    digest.worse, digest.better = movers(everything, settings.digests.movers)
    found = diagnose(store, settings, period.start, period.end, grain, now=now)
    digest.diagnostics = [d for d in found if d["period_start"] == period.start.isoformat()]
    if settings.digests.reasons:
        digest.reasons = top_reasons(store, settings, period.start, period.end, limit=settings.digests.reasons,
                                     now=now)
    digest.events = event_log.between(store.db.conn, period.start, period.end)
    return digest


def _figures(rows: list[dict[str, Any]], period: Period, previous: Period) -> list[Figure]:
    now = {r["kpi"]: r for r in rows if r["period_start"] == period.start.isoformat()}
    before = {r["kpi"]: r for r in rows if r["period_start"] == previous.start.isoformat()}
    out = []
    for kpi_id, row in now.items():
        kpi = catalogue.get(kpi_id)
        direction = kpi.direction.value if kpi.direction else None
        earlier = before.get(kpi_id)
        previous_value = earlier["value"] if earlier and earlier["status"] not in _UNJUDGED else None
        judged = row["status"] not in _UNJUDGED
        out.append(Figure(kpi_id, kpi.name, row["unit"], direction, row["value"], previous_value, row["target"],
                          row["status"], change(row["value"], previous_value, direction) if judged else None))
    return out


def movers(figures: list[Figure], top: int) -> tuple[list[Figure], list[Figure]]:
    """The `top` KPIs that moved most toward worse and toward better, by relative change; KPIs with no better
    direction (volume, mix) and values on too few contacts are not judged."""
    judged = [f for f in figures if f.change is not None and f.relative is not None and f.direction is not None]
    worse = sorted((f for f in judged if f.change and f.change.verdict == "worse"),
                   key=lambda f: (-abs(f.relative or 0), f.kpi))
    better = sorted((f for f in judged if f.change and f.change.verdict == "better"),
                    key=lambda f: (-abs(f.relative or 0), f.kpi))
    return worse[:top], better[:top]
