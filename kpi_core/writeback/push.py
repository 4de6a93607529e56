"""Push: compute the per-record metrics, plan the differences, send them within the budget, record every result.

Per helpdesk with mappings or notes: the mapped fields are checked against the helpdesk's
definitions first (a missing field or a type that cannot hold the metric refuses that
helpdesk before anything is written), then the plan is sent: notes first (they are what
an agent acts on), then field values, ticket fields in bulk where the API allows it.
`max_writes_per_run` caps the write requests of one push across all helpdesks (a bulk
job is one request); what does not fit waits for the next push. Each request's results go
into the ledger at once, so a push killed mid-way loses nothing and repeats nothing it
recorded. One record refused does not stop the others; bad credentials or an unreachable
helpdesk stop that helpdesk only.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from connectors import registry
from connectors.base import SyncError, Writer
from connectors.http import WaitInterrupted
from connectors.registry import build_writer
from kpi_core.kpis.context import Context
from kpi_core.settings import Settings
from kpi_core.store import Store
from kpi_core.writeback import fields as field_checks
from kpi_core.writeback import ledger, metrics
from kpi_core.writeback.mappings import MappingError
from kpi_core.writeback.planner import Plan, PlannedNote, PlannedWrite, plan

log = logging.getLogger(__name__)


class Budget:
    """Write requests left in this push; none once `stop` is set."""

    def __init__(self, limit: int, stop: threading.Event | None = None) -> None:
        self.left = limit
        self.stop = stop

    def take(self) -> bool:
        if self.left <= 0 or (self.stop is not None and self.stop.is_set()):
            return False
        self.left -= 1
        return True


@dataclass
class Outcome:
    """What a push did in one helpdesk."""

    helpdesk: str
    plan: Plan | None = None
    written: int = 0  # records and notes the helpdesk accepted
    failed: int = 0  # refused: sent again next push
    uncertain: int = 0  # notes that may exist: never sent again automatically
    deferred: int = 0  # planned but over the budget (or stopped): next push
    requests: int = 0  # write requests sent
    api_calls: int = 0  # every call: reads of field definitions, writes, job polls
    refused: str | None = None  # why nothing was written at all
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.refused is None and self.failed == 0 and self.uncertain == 0

    def counts(self) -> dict[str, int]:
        """For the daemon's metrics: written, unchanged, failed (a refused helpdesk counts as one failure)."""
        unchanged = self.plan.unchanged if self.plan else 0
        return {"written": self.written, "unchanged": unchanged, "deferred": self.deferred,
                "failed": self.failed + self.uncertain + (1 if self.refused else 0)}


@dataclass
class Report:
    run_id: int
    dry_run: bool
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    stopped: bool = False

    @property
    def ok(self) -> bool:
        return all(o.ok for o in self.outcomes.values())

    def totals(self) -> dict[str, int]:
        return {
            "planned": sum(o.plan.size for o in self.outcomes.values() if o.plan),
            **{key: sum(getattr(o, key) for o in self.outcomes.values())
               for key in ("requests", "written", "failed", "deferred", "api_calls")},
        }


def helpdesks(settings: Settings) -> list[str]:
    """Helpdesks with mappings or notes, in registry order (every one named is kept: settings
    checked it is writable)."""
    wb = settings.writeback
    named = {m.helpdesk for m in wb.mappings} | {n.helpdesk for n in wb.notes}
    return [h for h in registry.names() if h in named] + sorted(named - set(registry.names()))


def push(store: Store, settings: Settings, *, sources: Sequence[str] | None = None, dry_run: bool = False,
         stop: threading.Event | None = None, now: datetime | None = None,
         writer_options: Mapping[str, Mapping[str, Any]] | None = None) -> Report:
    """Plan (and unless `dry_run`, send) the write-back of every mapped helpdesk, or of `sources`."""
    ledger.close_unfinished_runs(store)
    report = Report(ledger.start_run(store, dry_run), dry_run)
    budget = Budget(settings.writeback.max_writes_per_run, stop)
    wanted = [h for h in helpdesks(settings) if sources is None or h in sources]
    ctx = metrics.context(store, settings.kpis, now)
    enabled = settings.enabled_connectors()
    for helpdesk in wanted:
        outcome = report.outcomes[helpdesk] = Outcome(helpdesk)
        if not settings.writeback.enabled and not dry_run:
            outcome.refused = "write-back is disabled ([writeback] enabled = false)"
            continue
        if helpdesk not in enabled:
            outcome.refused = f"write-back is mapped but [connectors.{helpdesk}] is not enabled"
            continue
        try:
            writer = build_writer(helpdesk, enabled[helpdesk], **dict((writer_options or {}).get(helpdesk, {})))
        except SyncError as exc:
            outcome.refused = str(exc)
            continue
        try:
            _push_one(store, settings, report.run_id, writer, ctx, outcome, budget, dry_run)
        except MappingError as exc:
            outcome.refused = str(exc)
        except SyncError as exc:
            outcome.refused = f"push stopped: {exc}"
        except WaitInterrupted:
            # Stopped during a back-off: what was written is in the ledger; the next push goes on from there.
            outcome.refused = "stopped while waiting for the helpdesk; the next push goes on from here"
        finally:
            outcome.api_calls = writer.api_calls
            writer.close()
        if outcome.refused:
            log.error("%s: %s", helpdesk, outcome.refused)
        if stop is not None and stop.is_set():
            break
    report.stopped = stop is not None and stop.is_set()
    status = "dry_run" if dry_run else ("stopped" if report.stopped else ("ok" if report.ok else "failed"))
    summary = {name: {**o.counts(), "refused": o.refused} for name, o in report.outcomes.items()}
    ledger.finish_run(store, report.run_id, status, report.totals(), summary)
    return report


def _push_one(store: Store, settings: Settings, run_id: int, writer: Writer, ctx: Context, outcome: Outcome,
              budget: Budget, dry_run: bool) -> None:
    helpdesk = outcome.helpdesk
    targets = field_checks.targets(field_checks.check(store, settings, helpdesk, writer))
    outcome.plan = plan(store, helpdesk, targets, settings.writeback.notes, metrics.for_source(ctx, helpdesk))
    if dry_run:
        return
    ledger.settle(store, helpdesk, outcome.plan.settled)
    for note in outcome.plan.notes:
        if not budget.take():
            outcome.deferred += 1
            continue
        _send_note(store, run_id, writer, note, outcome)
    for object, writes in _by_object(outcome.plan.writes):
        size = writer.batch_size(object)
        for start in range(0, len(writes), size):
            chunk = writes[start:start + size]
            if not budget.take():
                outcome.deferred += len(chunk)
                continue
            _send_writes(store, run_id, writer, object, chunk, outcome)


def _send_note(store: Store, run_id: int, writer: Writer, note: PlannedNote, outcome: Outcome) -> None:
    outcome.requests += 1
    result = writer.add_note(note.request())
    status = ledger.OK if result.ok else (ledger.FAILED if result.certain else ledger.UNCERTAIN)
    ledger.record(store, run_id, outcome.helpdesk,
                  [ledger.Attempt(note.object, note.record_id, ledger.NOTE, note.rule, note.body, None, status,
                                  result.error)])
    if result.ok:
        outcome.written += 1
    else:
        if status == ledger.FAILED:
            outcome.failed += 1
        else:
            outcome.uncertain += 1
        outcome.failures.append(f"note {note.rule} on {note.object} {note.record_id}: {result.error}")


def _send_writes(store: Store, run_id: int, writer: Writer, object: str, chunk: list[PlannedWrite],
                 outcome: Outcome) -> None:
    outcome.requests += 1
    results = writer.write(object, [w.request() for w in chunk])
    by_id = {r.request.record_id: r for r in results}
    attempts = []
    for write in chunk:
        result = by_id.get(write.record_id)
        ok = result is not None and result.ok
        error = None if ok else (result.error if result is not None else "no result for this record")
        attempts += [ledger.Attempt(object, write.record_id, ledger.FIELD, c.target.field.key, c.value, c.current,
                                    ledger.OK if ok else ledger.FAILED, error) for c in write.changes]
        if ok:
            outcome.written += 1
        else:
            outcome.failed += 1
            outcome.failures.append(f"{object} {write.record_id}: {error}")
    ledger.record(store, run_id, outcome.helpdesk, attempts)
    if any(a.status == ledger.FAILED for a in attempts):
        # The refusal may be a field that was deleted or retyped: read the definitions afresh next time.
        ledger.forget_definitions(store, outcome.helpdesk, object)


def _by_object(writes: Iterable[PlannedWrite]) -> list[tuple[str, list[PlannedWrite]]]:
    grouped: dict[str, list[PlannedWrite]] = {}
    for w in writes:
        grouped.setdefault(w.object, []).append(w)
    return list(grouped.items())


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
