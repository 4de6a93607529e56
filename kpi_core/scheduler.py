"""The unattended daemon: scheduled sync -> compute -> push, plus a nightly reconciliation.

Jobs (APScheduler 3.x, UTC, one thread pool):

- `sync:<source>`: every `[schedule] sync_every`, the first run at start, through
  `kpi_core.sync.sync_one` (the path `helpdesk-kpi sync` takes). A source that fails
  backs off (every, 2x, 4x ... up to an hour) while the others keep their pace.
- `compute`: after a sync that changed the store; syncs that finish while it runs fold
  into one more run. It has the store to itself (`WriterGate`): its one long transaction
  would otherwise keep sync pages waiting on SQLite's lock.
- `push`: after a compute, no more often than `push_every` (only when a push step is
  installed, i.e. once write-back is configured).
- `alerts` ([alerts] enabled): after each scheduled sync, changed or not (time alone moves an open contact
  past its target), and after each compute (KPI alerts read its values); asks fold into one more run.
  It shares the store with syncs; `run --once` runs it after compute and push (kpi_core/alerts).
- `reconcile`: daily at `reconcile_at` UTC, moves each source's cursors back by
  `reconcile_lookback` (connectors offering `rewind_cursor`) and syncs again, so whatever
  an incremental export missed is read again; upserts keep it free of duplicates.
- `report`: every `[schedule] report_every` (off when unset), the first run at start,
  writes the HTML report to `[schedule] report_path`: a temp file in the same folder, then
  a rename, so a reader never sees half a page. It has the store alone (`WriterGate`), as
  a compute does, because it first brings the stored values up to date and computes the
  periods the store lacks; drawing the charts happens after, beside the syncs. `run --once`
  writes it too when the file is missing or older than `report_every`, so a cron job keeps
  the same pace.
- `digests` ([digests] enabled): every `DIGESTS_EVERY`, the first run one sync interval after
  start (and in `run --once`, after the syncs), sends each cadence's review digest once its
  period has ended and `send_at` has passed, to the sinks the store does not record as
  reached (kpi_core/digests); alone with the store, as the report, because it first brings
  the values up to date.

Each job runs one at a time: `max_instances=1`, and a sync job pauses its own trigger
while it runs and sets its next run when it ends, so a slow job never stacks up behind
itself; missed runs coalesce. No job lets an exception escape: a failure is logged,
recorded and retried on schedule. A stop (the `stop` event, set on SIGTERM/SIGINT) lets
each sync finish and commit the page in hand; jobs still busy after `STOP_GRACE` (a
request stuck in a retry wait) are abandoned, which loses nothing because each page and
its cursor commit together.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_EXECUTED,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    JobEvent,
)
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from kpi_core import status as health
from kpi_core.alerts.run import run_alerts
from kpi_core.daemon_state import DaemonState, JobState, state_path_for, write_state
from kpi_core.kpis import api as kpi_api
from kpi_core.logs import log_context
from kpi_core.metrics import Metrics
from kpi_core.model import RECORD_TYPES
from kpi_core.privacy import purge
from kpi_core.settings import Settings
from kpi_core.store import Store, open_store, store_at
from kpi_core.sync import SourceResult, describe, sync_one
from kpi_core.writeback.push import PushStep

log = logging.getLogger(__name__)

# (kpi id, period start, segment, value): what a compute step hands back for the metrics.
KpiValue = tuple[str, str, Mapping[str, Any], float | None]
# Recomputes the KPIs into the store after data changed; returns the current values (or None).
ComputeStep = Callable[[Store], Iterable[KpiValue] | None]
# Writes KPI values back into the helpdesks (filled in by write-back); returns outcome
# counts by helpdesk, e.g. {"<helpdesk>": {"written": 12, "unchanged": 30, "failed": 0}}.
# It must check `stop` between writes and return early when it is set.

COMPUTE, PUSH, RECONCILE, REPORT = "compute", "push", "reconcile", "report"
DIGESTS = "digests"
DIGESTS_EVERY = 600  # seconds between checks for a digest that is due ([digests] send_at is a local time)
# After each scheduled sync (time alone moves contacts past their targets) and each compute (KPI alerts).
ALERTS = "alerts"
MAX_BACKOFF = timedelta(hours=1)
STOP_GRACE = 8.0  # seconds the busy jobs get to commit and return after a stop; under the 10 s promised
HEARTBEAT = 30.0  # seconds between state-file refreshes while idle
SIGNAL_SLICE = 0.5  # seconds the main thread waits at a time: how late a signal caught by another thread acts
RECONCILE_GRACE = 3600  # a nightly run missed by up to an hour (machine asleep) still runs


def sync_job_id(source: str) -> str:
    return f"sync:{source}"


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def iso(value: datetime | None) -> str | None:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if value else None


def report_target(settings: Settings) -> Path:
    """Where the daemon writes the report: `[schedule] report_path`, a relative path taken from the store's folder."""
    path = Path(settings.schedule.report_path).expanduser()
    return path if path.is_absolute() else settings.store.path.parent / path


def report_due(target: Path, every: timedelta, now: datetime) -> bool:
    """`run --once`: the report is due when the file is missing or older than `every`."""
    try:
        written = datetime.fromtimestamp(target.stat().st_mtime, timezone.utc)
    except OSError:
        return True
    return now - written >= every


def backoff_delay(failures: int, every: timedelta) -> timedelta:
    """Wait before the next try after `failures` failed syncs in a row: every, 2x, 4x ... capped."""
    if failures <= 1:
        return every
    cap = max(every, MAX_BACKOFF)
    return min(every * (1 << min(failures - 1, 30)), cap)


def data_fingerprint(store: Store, source: str) -> tuple[Any, ...]:
    """Row counts of every record table plus the newest contact change, for one source.

    Connectors re-read an overlap on purpose, so "records were written" does not mean
    "data changed"; a compute is only worth its cost when this moves.
    """
    counts = tuple(store.count(table, source) for table in RECORD_TYPES)
    newest = store.db.execute("SELECT max(updated_at), max(last_activity_at) FROM contacts WHERE source = ?",
                              [source]).fetchone()
    return counts + tuple(newest)


@dataclass
class CycleResult:
    """What `run --once` did: each source's sync, then compute and push when they ran."""

    syncs: list[SourceResult] = field(default_factory=list)
    computed: bool | None = None  # None: not run (nothing changed, or no compute step)
    pushed: bool | None = None
    reported: bool | None = None  # None: not run (no report_every, or the report is not due yet)
    digests: bool | None = None  # None: not run ([digests] enabled = false)
    alerted: bool | None = None  # None: not run ([alerts] enabled = false)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (all(r.ok for r in self.syncs) and self.computed is not False and self.pushed is not False
                and self.reported is not False and self.digests is not False
                and self.alerted is not False)


@dataclass
class JobRun:
    """The outcome a job body reports; an exception escaping the body counts as a failure."""

    ok: bool = True
    error: str | None = None
    stopped: bool = False
    skipped: str | None = None

    def fail(self, error: str) -> None:
        self.ok, self.error = False, error

    @property
    def result(self) -> str:
        if not self.ok:
            return "failed"
        return "stopped" if self.stopped else ("skipped" if self.skipped else "ok")


class OnDemand:
    """A job that runs when asked, one at a time, at most once per `min_interval`.

    Asks made while it is queued or running fold into one more run after it.
    """

    def __init__(self, job_id: str, min_interval: timedelta, submit: Callable[[str, datetime], bool]) -> None:
        self.job_id = job_id
        self.min_interval = min_interval
        self._submit = submit
        self._lock = threading.Lock()
        self._pending = False
        self._queued = False  # scheduled or running
        self._last_start: datetime | None = None

    def _earliest(self) -> datetime:
        now = utc_now()
        return now if self._last_start is None else max(now, self._last_start + self.min_interval)

    def request(self) -> None:
        with self._lock:
            self._pending = True
            if self._queued:
                return
            self._queued = True
            at = self._earliest()
        self._queue(at)

    def begin(self) -> None:
        """Called as the run starts: asks from now on need another run."""
        with self._lock:
            self._pending = False
            self._last_start = utc_now()

    def finished(self) -> None:
        """Called once the scheduler has counted the run as done; queues the next if asked."""
        with self._lock:
            if not self._pending:
                self._queued = False
                return
            at = self._earliest()
        self._queue(at)

    def _queue(self, at: datetime) -> None:
        if not self._submit(self.job_id, at):
            with self._lock:
                self._queued = False


class WriterGate:
    """Syncs share the store; a compute has it alone.

    A compute writes in one long transaction; a sync page waiting behind it could run into
    SQLite's busy timeout on a large store. So a compute waits for running syncs to end and
    holds new ones back until it is done (it goes first once it waits, so it cannot starve).
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._sharing = 0
        self._alone = False
        self._waiting_alone = 0

    @contextmanager
    def shared(self, stop: threading.Event) -> Iterator[bool]:
        """Enter beside other syncs; yields False (and holds nothing) if a stop came first."""
        with self._cond:
            while (self._alone or self._waiting_alone) and not stop.is_set():
                self._cond.wait(0.2)
            entered = not stop.is_set()
            if entered:
                self._sharing += 1
        try:
            yield entered
        finally:
            if entered:
                with self._cond:
                    self._sharing -= 1
                    self._cond.notify_all()

    @contextmanager
    def alone(self, stop: threading.Event) -> Iterator[bool]:
        """Enter once no sync runs; yields False (and holds nothing) if a stop came first."""
        with self._cond:
            self._waiting_alone += 1
            while (self._sharing or self._alone) and not stop.is_set():
                self._cond.wait(0.2)
            self._waiting_alone -= 1
            entered = not stop.is_set()
            if entered:
                self._alone = True
            self._cond.notify_all()
        try:
            yield entered
        finally:
            if entered:
                with self._cond:
                    self._alone = False
                    self._cond.notify_all()


class Daemon:
    """The jobs of one store; `run_forever` schedules them, `run_once` runs one cycle."""

    def __init__(
        self,
        settings: Settings,
        *,
        compute: ComputeStep | None = None,
        push: PushStep | None = None,
        metrics: Metrics | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.settings = settings
        self.store_path = settings.store.path
        self.store_location = settings.store.location
        self.store_account = settings.store.account
        self.sources = settings.enabled_connectors()
        self.every = settings.schedule.sync_every
        self.report_every = settings.schedule.report_every
        self.compute_step = compute
        self.push_step = push
        self.metrics = metrics or Metrics()
        self.stop = stop or threading.Event()
        self.state_path = state_path_for(self.store_path)
        self.abandoned: list[str] = []  # jobs still busy when the stop grace ran out
        now = iso(utc_now()) or ""
        self._state = DaemonState(pid=os.getpid(), started_at=now, updated_at=now)
        self._state_lock = threading.Lock()
        self._source_locks = {name: threading.Lock() for name in self.sources}
        self._gate = WriterGate()
        self._scheduler: BackgroundScheduler | None = None
        self._active: dict[str, int] = {}
        self._idle = threading.Condition()
        self._next_run: dict[str, datetime] = {}  # applied once the scheduler has counted the run done
        self._compute = OnDemand(COMPUTE, timedelta(0), self._submit)
        self._push = OnDemand(PUSH, settings.schedule.push_every, self._submit)
        self._alerts = OnDemand(ALERTS, timedelta(0), self._submit)
        self._changed_this_cycle = False  # run --once: did any sync change the store?

    # --- the two ways to run ---------------------------------------------------------

    def run_once(self) -> CycleResult:
        """Sync every enabled source, then compute and push if data changed."""
        self._prepare()
        cycle = CycleResult()
        try:
            for name in self.sources:
                if self.stop.is_set():
                    break
                cycle.syncs.append(self._sync_job_body(name))
            changed = self._changed_this_cycle
            if changed and not self.stop.is_set() and self.compute_step is not None:
                cycle.computed = self._compute_body().ok
            if changed and not self.stop.is_set() and self.push_step is not None and cycle.computed is not False:
                cycle.pushed = self._push_body().ok
            if self.settings.alerts.enabled and not self.stop.is_set():
                alerts = self._alerts_body()
                cycle.alerted = alerts.ok
                if not alerts.ok:
                    cycle.errors.append(f"alerts: {alerts.error}")
            if (self.report_every is not None and not self.stop.is_set()
                    and report_due(report_target(self.settings), self.report_every, utc_now())):
                report = self._report_body()
                cycle.reported = report.ok
                if not report.ok:
                    cycle.errors.append(f"report: {report.error}")
            if self.settings.digests.enabled and not self.stop.is_set():
                digests = self._digests_body()
                cycle.digests = digests.ok
                if not digests.ok:
                    cycle.errors.append(f"digests: {digests.error}")
            cycle.errors = [f"{r.source}: {r.error}" for r in cycle.syncs if not r.ok] + cycle.errors
            return cycle
        finally:
            self._finish_state()

    def run_forever(self) -> int:
        """Schedule the jobs and run until `stop` is set; returns the exit code (0)."""
        self._prepare()
        scheduler = BackgroundScheduler(
            timezone=timezone.utc,
            executors={"default": ThreadPoolExecutor(len(self.sources) + (4 if self.report_every else 3)
                                                     + (1 if self.settings.digests.enabled else 0)
                                                     + (1 if self.settings.alerts.enabled else 0))},
            job_defaults={"coalesce": True, "max_instances": 1},
        )
        now = utc_now()
        every = max(1, int(self.every.total_seconds()))
        for name in self.sources:
            scheduler.add_job(self._sync_job, IntervalTrigger(seconds=every, timezone=timezone.utc), args=[name],
                              id=sync_job_id(name), name=sync_job_id(name), next_run_time=now,
                              misfire_grace_time=every)
        hour, minute = (int(part) for part in self.settings.schedule.reconcile_at.split(":"))
        scheduler.add_job(self._reconcile_job, CronTrigger(hour=hour, minute=minute, timezone=timezone.utc),
                          id=RECONCILE, name=RECONCILE, misfire_grace_time=RECONCILE_GRACE)
        if self.report_every is not None:
            report_every = max(1, int(self.report_every.total_seconds()))
            scheduler.add_job(self._report_job, IntervalTrigger(seconds=report_every, timezone=timezone.utc),
                              id=REPORT, name=REPORT, next_run_time=now, misfire_grace_time=report_every)
        if self.settings.digests.enabled:
            # The first check one sync interval after start: a daemon back from a stop syncs before it reports.
            scheduler.add_job(self._digests_body, IntervalTrigger(seconds=DIGESTS_EVERY, timezone=timezone.utc),
                              id=DIGESTS, name=DIGESTS, next_run_time=now + self.every,
                              misfire_grace_time=DIGESTS_EVERY)
        scheduler.add_listener(self._on_job_event,
                               EVENT_JOB_EXECUTED | EVENT_JOB_ERROR | EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES)
        self._scheduler = scheduler
        self.metrics.start()
        try:
            scheduler.start()
            log.info("daemon started (pid %d): %s every %s; reconciliation daily at %s UTC over %s",
                     os.getpid(), ", ".join(self.sources), _age(self.every), self.settings.schedule.reconcile_at,
                     _age(self.settings.schedule.reconcile_lookback))
            if self.report_every is not None:
                log.info("the report is written to %s every %s", report_target(self.settings),
                         _age(self.report_every))
            self._write_state()
            while not self._stopped_within(HEARTBEAT):
                self._write_state()
            log.info("stopping: letting running jobs commit the page in hand")
            scheduler.shutdown(wait=False)
            self.abandoned = self._wait_idle(STOP_GRACE)
            if self.abandoned:
                log.warning("still busy after %.0fs (%s): exiting anyway; their uncommitted work is redone"
                            " next time (syncs resume from their cursors)", STOP_GRACE, ", ".join(self.abandoned))
            else:
                log.info("stopped cleanly")
            return 0
        finally:
            self.metrics.stop()
            self._finish_state()

    # --- sync --------------------------------------------------------------------------

    def sync_one(self, name: str, *, rewind_since: datetime | None = None) -> SourceResult:
        """Sync one source by the one sync path (after moving its cursors back to `rewind_since`).

        Its failures are returned; the metrics are fed and, when the data changed, a compute is asked for.
        """
        with store_at(self.store_location, self.store_account) as store:
            before = data_fingerprint(store, name)
            result = sync_one(store, self.settings, name, stop=self.stop, rewind_since=rewind_since)
            self._observe(store, result)
            if result.records and data_fingerprint(store, name) != before and not self.stop.is_set():
                self._after_change()
        if result.ok and not result.stopped:
            log.info("%s: %d records in %d pages, %d API calls", name, result.records, result.pages, result.api_calls)
        return result

    def _observe(self, store: Store, result: SourceResult) -> None:
        """Feed the metrics after a sync."""
        name = result.source
        last_ok = store.last_run(name, status="ok")
        ended = datetime.strptime(last_ok.ended_at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc) \
            if last_ok and last_ok.ended_at else None
        self.metrics.sync_counts(name, api_calls=result.api_calls, throttled=result.throttled, failed=not result.ok)
        self.metrics.source_state(name, last_success=ended.timestamp() if ended else None,
                                  records=store.count("contacts", name),
                                  quarantined=health.quarantine_count(store, name),
                                  consecutive_failures=health.failures_since_success(store, name))

    def _after_change(self) -> None:
        if self._scheduler is None:  # run --once: the cycle calls compute and push itself
            self._changed_this_cycle = True
            return
        if self.compute_step is not None:
            self._compute.request()
        elif self.push_step is not None:
            self._push.request()

    def _sync_job(self, name: str) -> None:
        """The scheduled sync of one source: pauses its trigger, runs, then sets its next run (or back-off)."""
        job_id = sync_job_id(name)
        at = utc_now() + self.every  # should anything below fail, the job still runs again
        try:
            self._pause(job_id)
            started = utc_now()
            self._sync_job_body(name)
            self._request_alerts()
            at = self._next_sync_at(name, started)
        finally:
            self._next_run[job_id] = at

    def _next_sync_at(self, name: str, started: datetime) -> datetime:
        """One interval after the last start (at once if the sync took longer), or a back-off."""
        with self._state_lock:
            state = self._state.jobs[sync_job_id(name)]
            failures = state.consecutive_failures
            delay = backoff_delay(failures, self.every) if failures else timedelta(0)
            state.backoff_seconds = delay.total_seconds()
        if not failures:
            return max(started + self.every, utc_now())
        with log_context(source=name, job="sync"):
            log.warning("%s: %d failed syncs in a row; next try in %s", name, failures, _age(delay))
        return utc_now() + delay

    def _sync_job_body(self, name: str) -> SourceResult:
        result = SourceResult(source=name, ok=False, error="not run")
        with self._job(sync_job_id(name), source=name, kind="sync") as run:
            lock = self._source_locks[name]
            if not lock.acquire(blocking=False):
                run.skipped = "the nightly reconciliation is syncing this source"
                return SourceResult(source=name, ok=True)
            try:
                with self._gate.shared(self.stop) as entered:
                    result = self.sync_one(name) if entered else SourceResult(source=name, ok=True, stopped=True)
            finally:
                lock.release()
            if not result.ok:
                run.fail(result.error or "failed")
            run.stopped = result.stopped
        return result

    # --- reconcile, compute, push --------------------------------------------------------

    def _reconcile_job(self) -> None:
        since = utc_now() - self.settings.schedule.reconcile_lookback
        with self._job(RECONCILE, kind=RECONCILE) as run:
            failed = []
            for name in self.sources:
                if not self._acquire_source(name):
                    run.stopped = True
                    break
                try:
                    with log_context(source=name), self._gate.shared(self.stop) as entered:
                        if not entered:
                            run.stopped = True
                            break
                        result = self.sync_one(name, rewind_since=since)
                finally:
                    self._source_locks[name].release()
                if not result.ok:
                    failed.append(name)
            if failed:
                run.fail(f"reconciliation failed for {', '.join(failed)}")
                log.error("%s", run.error)
            if not run.stopped and not self.stop.is_set():
                self._purge_expired()

    def _purge_expired(self) -> None:
        """Retention, after the nightly re-read: KPI values of what is past retention_days are stored, then it goes."""
        with self._gate.alone(self.stop) as entered, store_at(self.store_location, self.store_account) as store:
            if entered:
                result = purge(store, self.settings)
                log.info("purge: %s rows of contacts idle since before %s deleted", result.total, result.cutoff)

    def _acquire_source(self, name: str) -> bool:
        """Wait for the source's own sync to finish; False when a stop comes first."""
        lock = self._source_locks[name]
        while not self.stop.is_set():
            if lock.acquire(timeout=0.5):
                return True
        return False

    def _compute_job(self) -> None:
        self._compute.begin()
        if self._compute_body().ok and not self.stop.is_set():
            self._request_alerts()
            if self.push_step is not None:
                self._push.request()

    def _request_alerts(self) -> None:
        if self.settings.alerts.enabled and not self.stop.is_set():
            self._alerts.request()

    def _alerts_job(self) -> None:
        self._alerts.begin()
        self._alerts_body()

    def _alerts_body(self) -> JobRun:
        """One alerting pass (kpi_core/alerts): what crossed a threshold since, sent once per contact and stage."""
        with self._job(ALERTS, kind=ALERTS) as run, self._gate.shared(self.stop) as entered:
            if not entered:
                run.stopped = True
                return run
            with store_at(self.store_location, self.store_account) as store:
                result = run_alerts(store, self.settings, stop=self.stop)
            run.stopped = result.stopped
            if not result.ok:
                run.fail(f"{result.failed} alert deliveries failed: {'; '.join(result.errors[:3])}")
        return run

    def _compute_body(self) -> JobRun:
        assert self.compute_step is not None
        with self._job(COMPUTE, kind=COMPUTE) as run, self._gate.alone(self.stop) as entered:
            if not entered:
                run.stopped = True
                return run
            with store_at(self.store_location, self.store_account) as store:
                values = self.compute_step(store)
                if values is not None:
                    self.metrics.kpi_values(values)
        return run

    def _push_job(self) -> None:
        self._push.begin()
        self._push_body()

    def _report_job(self) -> None:
        """The scheduled report: pauses its trigger while it runs (a slow one never queues up behind itself)."""
        assert self.report_every is not None
        at = utc_now() + self.report_every  # should anything below fail, the job still runs again
        try:
            self._pause(REPORT)
            started = utc_now()
            self._report_body()
            at = max(started + self.report_every, utc_now())
        finally:
            self._next_run[REPORT] = at

    def _report_body(self) -> JobRun:
        """Write the HTML report to `[schedule] report_path`, replacing the last one in one step."""
        # Late: matplotlib and Jinja2 cost a second to import, paid only by daemons that write reports.
        from kpi_core.report import gather, render_html, write_page

        target = report_target(self.settings)
        with self._job(REPORT, kind=REPORT) as run:
            if not target.parent.is_dir():
                run.fail(f"[schedule] report_path: the folder {target.parent} does not exist")
                log.error("report: %s", run.error)
                return run
            started = time.perf_counter()
            # Alone: gathering computes the periods the store lacks, in one transaction like a compute.
            with self._gate.alone(self.stop) as entered:
                if not entered:
                    run.stopped = True
                    return run
                with store_at(self.store_location, self.store_account) as store:
                    kpi_api.refresh(store, self.settings)  # what synced since the last compute shows too
                    data = gather(store, self.settings)
            try:
                size = write_page(render_html(data), target)
            except OSError as exc:
                run.fail(f"[schedule] report_path: cannot write {target}: {exc.strerror or exc}")
                log.error("report: %s", run.error)
                return run
            log.info("report: %s written (%s bytes) in %.1fs", target, f"{size:,}", time.perf_counter() - started)
        return run

    def _digests_body(self) -> JobRun:
        """Send each enabled digest whose period has ended and that has not reached every sink (kpi_core/digests)."""
        # Late, as the report: digests render with its templates, which load matplotlib and Jinja2.
        from kpi_core.digests.due import send_due

        with self._job(DIGESTS, kind=DIGESTS) as run, self._gate.alone(self.stop) as entered:
            if not entered:  # alone: bringing the values up to date is a compute
                run.stopped = True
                return run
            with store_at(self.store_location, self.store_account) as store:
                failed = [problem for o in send_due(store, self.settings) for problem in o.sent.failed.values()]
            if failed:
                run.fail("; ".join(failed))
        return run

    def _push_body(self) -> JobRun:
        assert self.push_step is not None
        with self._job(PUSH, kind=PUSH) as run:
            with store_at(self.store_location, self.store_account) as store:
                outcomes = self.push_step(store, self.stop)
            failed = 0
            for helpdesk, counts in outcomes.items():
                self.metrics.push_results(helpdesk, counts)
                failed += counts.get("failed", 0)
            if failed:
                run.fail(f"{failed} writes were rejected")
                log.error("push: %s", run.error)
        return run

    # --- bookkeeping ---------------------------------------------------------------------

    @contextmanager
    def _job(self, job_id: str, *, kind: str, source: str | None = None) -> Iterator[JobRun]:
        """Run a job body with its log context, catching whatever it raises, and record the outcome."""
        run = JobRun()
        with self._idle:
            self._active[job_id] = self._active.get(job_id, 0) + 1
        self._update(job_id, running=True, last_started_at=iso(utc_now()), next_run_at=None)
        context = {"job": kind, **({"source": source} if source else {})}
        try:
            with log_context(**context):
                try:
                    yield run
                except Exception as exc:  # the daemon outlives any one job
                    log.exception("%s failed: %s", job_id, describe(exc))
                    run.fail(describe(exc))
                if run.skipped:
                    log.info("%s skipped: %s", job_id, run.skipped)
        finally:
            with self._state_lock:
                state = self._state.jobs[job_id]
                state.running = False
                state.last_finished_at = iso(utc_now())
                state.last_result = run.result
                if not run.ok:
                    state.consecutive_failures += 1
                    state.last_error = run.error
                elif not run.skipped and not run.stopped:
                    state.consecutive_failures, state.backoff_seconds, state.last_error = 0, 0.0, None
            with self._idle:
                self._active[job_id] -= 1
                self._idle.notify_all()

    def _update(self, job_id: str, **changes: Any) -> None:
        with self._state_lock:
            state = self._state.jobs.setdefault(job_id, JobState(job_id))
            for key, value in changes.items():
                setattr(state, key, value)

    def _prepare(self) -> None:
        """Open the store once (migrations run here; a newer schema refuses), tidy the run log."""
        store = open_store(self.store_location, self.store_account)
        try:
            interrupted = store.close_unfinished_runs("interrupted", "the process stopped before the run finished")
            if interrupted:
                log.warning("%d run(s) were interrupted by an earlier stop or crash; resuming from their cursors",
                            interrupted)
            jobs = [sync_job_id(name) for name in self.sources] + [RECONCILE]
            jobs += [COMPUTE] if self.compute_step else []
            jobs += [PUSH] if self.push_step else []
            jobs += [REPORT] if self.report_every is not None else []
            jobs += [DIGESTS] if self.settings.digests.enabled else []
            jobs += [ALERTS] if self.settings.alerts.enabled else []
            for job_id in jobs:
                self._update(job_id)
            for name in self.sources:
                # A restart keeps backing off a source that was failing before it.
                self._update(sync_job_id(name), consecutive_failures=health.failures_since_success(store, name))
                self._observe(store, SourceResult(source=name, ok=True))
        finally:
            store.close()
        if self.compute_step is None:
            log.info("no KPI engine installed: the daemon syncs only")

    def _pause(self, job_id: str) -> None:
        if self._scheduler is not None:
            self._scheduler.pause_job(job_id)

    def _submit(self, job_id: str, at: datetime) -> bool:
        """Queue an on-demand run (compute, push); False once the daemon is stopping."""
        scheduler = self._scheduler
        if scheduler is None or self.stop.is_set():
            return False
        body = {COMPUTE: self._compute_job, PUSH: self._push_job, ALERTS: self._alerts_job}[job_id]
        try:
            scheduler.add_job(body, "date", run_date=at, id=job_id, name=job_id, replace_existing=True,
                              misfire_grace_time=None)  # an asked-for run is never dropped for being late
        except Exception as exc:  # the scheduler shut down meanwhile
            log.debug("not queuing %s: %s", job_id, exc)
            return False
        self._write_state()
        return True

    def _on_job_event(self, event: JobEvent) -> None:
        """After the scheduler counted a run done: apply the next run it asked for, queue follow-ups."""
        job_id = event.job_id
        at = self._next_run.pop(job_id, None)
        if at is not None and self._scheduler is not None and not self.stop.is_set():
            try:
                self._scheduler.modify_job(job_id, next_run_time=at)
            except Exception as exc:  # shut down meanwhile
                log.debug("not rescheduling %s: %s", job_id, exc)
        elif job_id == COMPUTE:
            self._compute.finished()
        elif job_id == PUSH:
            self._push.finished()
        elif job_id == ALERTS:
            self._alerts.finished()
        self._write_state()

    def _stopped_within(self, seconds: float) -> bool:
        """Wait up to `seconds` for a stop, in slices of SIGNAL_SLICE.

        Python runs a signal's handler in the main thread between two steps of its code. The kernel
        may hand SIGTERM to any thread of the process, a busy job's say; the main thread then learns of
        it only when its wait ends, and one wait of HEARTBEAT held a stop up that long.
        """
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self.stop.wait(min(left, SIGNAL_SLICE)):
                return True
        return self.stop.is_set()

    def _wait_idle(self, timeout: float) -> list[str]:
        """Wait for running jobs to return; the ones still busy after `timeout`."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while any(self._active.values()) and time.monotonic() < deadline:
                self._idle.wait(0.1)
            return sorted(job for job, n in self._active.items() if n)

    def _write_state(self) -> None:
        # The scheduler is asked before the state is locked, never while: its own thread may call
        # `_on_job_event` (which writes the state) while holding the lock `get_jobs` takes, when a
        # job ends before the scheduler has attached its callback. Holding both in the other order
        # here deadlocked the two threads, and with them the stop.
        scheduler = self._scheduler
        jobs: dict[str, datetime | None] | None = None
        if scheduler is not None:
            try:
                jobs = {job.id: job.next_run_time for job in scheduler.get_jobs()}
            except Exception:  # shut down meanwhile
                jobs = {}
        with self._state_lock:
            if jobs is not None:
                for job_id, state in self._state.jobs.items():
                    state.next_run_at = iso(jobs.get(job_id))
            self._state.updated_at = iso(utc_now()) or ""
            try:
                write_state(self.state_path, self._state)
            except OSError as exc:
                log.warning("cannot write %s: %s", self.state_path, exc.strerror)

    def _finish_state(self) -> None:
        with self._state_lock:
            self._state.stopped_at = iso(utc_now())
            for state in self._state.jobs.values():
                state.next_run_at = None
        self._scheduler = None
        self._write_state()


def _age(delay: timedelta) -> str:
    seconds = int(delay.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= 2 * size or (seconds >= size and seconds % size == 0):
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


# --- the steps other parts of the program plug in --------------------------------------------


def kpi_compute_step(settings: Settings) -> ComputeStep:
    """The KPI engine as the daemon's compute step.

    `compute` brings the stored values up to date (only what the changed contacts touch);
    the returned values, this month's unsegmented KPIs, are read only if metrics want them.
    """

    def current_values(store: Store) -> Iterator[KpiValue]:
        for row in kpi_api.kpi_rows(store, settings, "month", None, None):
            yield row["kpi"], row["period_start"], row["segment"], row["value"]

    def compute(store: Store) -> Iterable[KpiValue]:
        kpi_api.compute(store, settings)
        return current_values(store)

    return compute
