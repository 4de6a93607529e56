"""Write-back: per-record KPI metrics pushed into the helpdesks as custom field values and private notes.

`push(store, settings)` computes the metrics (`metrics.py`), plans only the differences
against the ledger and the last sync (`planner.py`), and sends them through each
helpdesk's `Writer` within the budget (`push.py`); `fields.check` / `fields.create_missing`
compare the mapped fields with the helpdesk's definitions. The daemon calls
`daemon_push_step(settings)`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping

from kpi_core.settings import Settings
from kpi_core.store import Store
from kpi_core.writeback.mappings import METRICS, OBJECTS, RULES, MappingError
from kpi_core.writeback.push import Outcome, Report, push

__all__ = ["METRICS", "OBJECTS", "RULES", "MappingError", "Outcome", "Report", "daemon_push_step", "push"]

PushStep = Callable[[Store, threading.Event], Mapping[str, Mapping[str, int]]]


def daemon_push_step(settings: Settings) -> PushStep | None:
    """The daemon's push job, or None when write-back is off or has nothing mapped."""
    wb = settings.writeback
    if not wb.enabled or not (wb.mappings or wb.notes):
        return None

    def step(store: Store, stop: threading.Event) -> Mapping[str, Mapping[str, int]]:
        report = push(store, settings, stop=stop)
        return {name: outcome.counts() for name, outcome in report.outcomes.items()}

    return step
