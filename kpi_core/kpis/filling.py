"""Which KPI periods are still filling: a first sync that reads newest first has not reached them yet.

A first sync of a large account stores the current month first and older months after it
(kpi_core/backfill.py, `backfill_windows` in the store). Until it ends, a period that starts
before the point every source is complete back to lacks contacts, and so do the KPIs that
need the whole history (the backlog counts every contact still open, retention looks back
at earlier contacts). Nothing here changes a value: rows are only marked `filling`.
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the scorecard imports this module's marks without loading the store
    from kpi_core.store import Store

# KPIs whose value for any period depends on contacts of every earlier period.
WHOLE_HISTORY = frozenset({"backlog", "customer_retention_pct"})
NOTE = "filling: still syncing older history; these values will change as older months arrive"


def complete_back_to(store: Store, sources: Iterable[str]) -> dict[str, str | None]:
    """Per source still filling: the UTC time (ISO) after which everything is stored. Sources done are left out."""
    reached: dict[str, str | None] = {}
    wanted = set(sources)
    for window in store.backfill_windows():
        if window.source in wanted and not window.done:
            current = reached.get(window.source)
            reached[window.source] = window.end if current is None or window.end > current else current
    return reached


def boundary(store: Store, sources: Iterable[str]) -> str | None:
    """The time every source is complete back to (the latest of theirs); None when no source is filling."""
    points = [p for p in complete_back_to(store, sources).values() if p is not None]
    return max(points) if points else None


def is_filling(kpi: str, period_start: str, point: str | None) -> bool:
    """Whether a value of `kpi` for the period starting `period_start` (a date) may still change."""
    if point is None:
        return False
    return kpi in WHOLE_HISTORY or f"{period_start}T00:00:00Z" < point


def mark(store: Store, sources: Iterable[str], rows: Iterable[MutableMapping[str, Any]]) -> bool:
    """Set `"filling": true` on the rows that may still change (only when true, as `partial` and `prorated`:
    the interface changes only by adding); returns whether any row is filling."""
    point = boundary(store, sources)
    any_filling = False
    for row in rows:
        if is_filling(str(row["kpi"]), str(row["period_start"]), point):
            row["filling"] = any_filling = True
    return any_filling
