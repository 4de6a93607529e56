"""Pull every enabled connector into the store; each page is stored with its cursor.

The one sync path: `helpdesk-kpi sync` (`sync_all`) and the daemon's sync and nightly
reconciliation jobs all go through `sync_one`, so both apply survey mappings, record the
run and count calls and 429s the same way.

Only this module moves cursors, and only inside the transaction that stores the rows they
cover (`Store.write_pages`). One failing source does not stop the others: its error is
logged in the run log and returned in the result.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone

from connectors.base import Connector, Page, SyncError
from connectors.http import WaitInterrupted, announcing_waits, stopping_waits
from connectors.registry import build_connector
from kpi_core import backfill
from kpi_core.backfill import BackfillOptions, FillStatus
from kpi_core.collector import fewer_collections
from kpi_core.insight.topics import TopicRuleError
from kpi_core.insight_pass import InsightPass, prepare
from kpi_core.model import RecordError
from kpi_core.settings import Settings
from kpi_core.store import Store
from kpi_core.surveys import apply_mappings

log = logging.getLogger(__name__)


@dataclass
class Progress:
    """What a sync has done so far; handed to the progress callback after every page."""

    source: str
    stream: str = ""
    pages: int = 0
    records: int = 0
    api_calls: int = 0
    # A first sync filling older months newest first (kpi_core/backfill.py): the window whose
    # page was stored last ("tickets 2025-03"), windows read of all, seconds left at the pace so far.
    window: str = ""
    windows_done: int = 0
    windows_total: int = 0
    eta_seconds: float | None = None


@dataclass
class SourceResult:
    source: str
    ok: bool
    records: int = 0
    pages: int = 0
    api_calls: int = 0
    throttled: int = 0  # 429 answers met (and waited out, or not)
    by_stream: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    stopped: bool = False
    warnings: list[str] = field(default_factory=list)  # the connector's page warnings, each once
    quarantined: int = 0  # records set aside as unreadable during this run
    contacts_stored: int | None = None  # the source's contacts in the store afterwards (`status`'s "records")
    orders_stored: int | None = None  # a shop's orders in the store afterwards

    def stored_text(self) -> str:
        """What the store holds of the source afterwards, for a summary line ("" before a sync ran)."""
        if self.orders_stored:
            return f"; {self.orders_stored:,} orders stored"
        if self.contacts_stored is None:
            return ""
        return f"; {self.contacts_stored:,} records (tickets and conversations) stored"

    @property
    def finished(self) -> bool:
        """Read to the end: neither failed nor stopped early."""
        return self.ok and not self.stopped


ProgressCallback = Callable[[Progress], None]

# How many records, or how long, pages wait to be stored together (see `_Batch`).
BATCH_RECORDS = 10_000
BATCH_SECONDS = 2.0


class StopRequested(Exception):
    """A graceful stop was asked for; the page in hand has been committed."""


class _Batch:
    """Pages read but not yet stored: written together, each with its cursor, in one transaction.

    One commit per page made a first sync write the same index pages to the WAL hundreds of
    times over (measured on 50,000 tickets: 1.6 s of 10 s of store time). Pages are held
    until they carry `BATCH_RECORDS` records or the oldest has waited `BATCH_SECONDS`, and
    at the end of each stream; a crash loses only pages whose cursor was not stored either,
    so the next sync reads them again.
    """

    def __init__(self, store: Store, source: str, run_id: int, connector: Connector, progress: Progress,
                 on_progress: ProgressCallback | None) -> None:
        self.store, self.source, self.run_id, self.connector = store, source, run_id, connector
        self.progress, self.on_progress = progress, on_progress
        self.stream = ""
        self.stream_records = 0
        self.pages: list[Page] = []
        self.records = 0
        self.since = 0.0

    def add(self, page: Page) -> None:
        if not self.pages:
            self.since = time.monotonic()
        self.pages.append(page)
        self.records += page.size()
        if self.records >= BATCH_RECORDS or time.monotonic() - self.since >= BATCH_SECONDS:
            self.flush()

    def flush(self) -> None:
        if not self.pages:
            return
        pages, self.pages, self.records = self.pages, [], 0
        count = self.store.write_pages(self.source, self.stream, [(p.records, p.cursor) for p in pages],
                                       run_id=self.run_id, api_calls=self.connector.api_calls, checked=True)
        self.stream_records += count
        self.progress.pages += len(pages)
        self.progress.records += count
        self.progress.api_calls = self.connector.api_calls
        if self.on_progress:
            self.on_progress(self.progress)


def sync_source(
    store: Store,
    connector: Connector,
    *,
    full: bool = False,
    on_progress: ProgressCallback | None = None,
    stop: threading.Event | None = None,
    backfill_options: BackfillOptions | None = None,
    insight: InsightPass | None = None,
) -> SourceResult:
    """Sync one connector's streams in order; never raises SyncError (it is returned).

    With `insight` (conversation insight on), every page's message bodies are analysed and dropped
    before the page is stored, whichever path stores it (kpi_core/insight_pass.py).

    With `backfill_options` enabled and a connector offering `Backfillable`, a stream's first
    sync reads the current month first and older months after every stream's incremental
    read, newest first (kpi_core/backfill.py); without them, first syncs read oldest first.
    """
    name = connector.name
    run_id = store.start_run(name)
    progress = Progress(source=name)
    result = SourceResult(source=name, ok=True)
    if full:
        store.clear_cursors(name)
        store.clear_backfill(name)
    batch = _Batch(store, name, run_id, connector, progress, on_progress)
    prep = prepare(insight, store.db.conn)
    # A backfill begun earlier is finished even when first syncs now read oldest first.
    planning = bool(backfill_options and backfill_options.enabled)
    newest_first = backfill.capable(connector) if planning or store.backfill_windows(name) else None

    def note(stream_name: str, page: Page) -> None:
        for record_id, reason in page.rejected:
            log.warning("%s/%s: record %s quarantined: %s", name, stream_name, record_id, reason)
            store.quarantine(name, stream_name, record_id, reason)
            result.quarantined += 1
        for warning in page.warnings:
            text = f"{stream_name}: {warning}"
            if text not in result.warnings:
                log.warning("%s/%s", name, text)
                result.warnings.append(text)

    filler: backfill.Filler | None = None
    try:
        # A stop also ends any wait of the client (a 429's Retry-After, a backoff) at once.
        with fewer_collections(), announcing_waits(lambda _seconds: batch.flush()), stopping_waits(stop):
            if newest_first is not None:
                filler = _start_filling(store, connector, run_id, backfill_options or BackfillOptions(enabled=False),
                                        progress, on_progress, stop, note, prep)
            for stream in connector.streams():
                progress.stream = stream.name
                batch.stream, batch.stream_records = stream.name, 0
                cursor = store.get_cursor(name, stream.name)
                unseen = filler is not None and stream.name in filler.unseen
                while True:
                    before = batch.stream_records
                    try:
                        for page in connector.read(stream, cursor, full=full and cursor is None):
                            if prep is not None:
                                prep(page)  # before anything else sees the page: its bodies go here
                            note(stream.name, page)
                            batch.add(page)
                            if filler is not None:
                                filler.drain(block=False)  # older windows read meanwhile by the threads
                            if stop is not None and stop.is_set():
                                raise StopRequested()
                    finally:
                        batch.flush()  # the pages read before a stop or an error are kept, with their cursor
                    if not unseen or filler is None:
                        break
                    if batch.stream_records > before:
                        backfill.note_head_seen(store, name, stream)
                        break
                    # A current month with no change yet: the newest older month joins the incremental
                    # read, so that its cursor ends on the last change, as an oldest-first read's does.
                    widened = backfill.widen_head(store, filler.backfillable, name, stream)
                    if widened is None:
                        break
                    cursor = widened[0]
                    if widened[1] is not None:
                        filler.taken(widened[1])
                result.by_stream[stream.name] = batch.stream_records
            if filler is not None:
                progress.stream = "backfill"  # every incremental read is done: the threads get the whole budget
                filled = filler.finish(backfill_options.slice_seconds if backfill_options else None)
                if filled.records:
                    result.by_stream["backfill"] = filled.records
                if stop is not None and stop.is_set():
                    raise StopRequested()
    except (StopRequested, WaitInterrupted):
        result.stopped = True
    except (SyncError, RecordError) as exc:
        result.ok = False
        result.error = str(exc)
        log.error("%s: sync failed: %s", name, exc)
    finally:
        if filler is not None:
            _close_filling(filler, result)
    store.settle(name)  # what was stored is derived, whether the sync ended, stopped or failed
    if insight is not None:
        log.info("%s: conversation insight analysed %d messages", name, insight.analysed)
    result.records, result.pages, result.api_calls = progress.records, progress.pages, connector.api_calls
    result.contacts_stored = store.count("contacts", name)
    result.orders_stored = store.count("orders", name)
    status = "ok" if result.ok and not result.stopped else ("stopped" if result.ok else "failed")
    store.finish_run(run_id, status, connector.api_calls, result.error, warnings=result.warnings)
    return result


def _start_filling(store: Store, connector: Connector, run_id: int, options: BackfillOptions, progress: Progress,
                   on_progress: ProgressCallback | None, stop: threading.Event | None,
                   note: Callable[[str, Page], None], prep: Callable[[Page], None] | None) -> backfill.Filler:
    """Plan the first syncs newest first (one look per stream) and start the threads reading older months.

    The threads read while this thread syncs every stream as usual; their pages are stored
    between the stream's own pages. Each stored batch is reported as progress.
    """
    filler = backfill.Filler(store, connector, run_id=run_id, threads=options.threads, stop=stop, on_page=note,
                             prepare=prep)
    unseen: set[str] = set()
    for stream in connector.streams():
        if options.enabled and store.get_cursor(connector.name, stream.name) is None:
            progress.stream = stream.name
            _, stored = backfill.begin(store, filler.backfillable, connector.name, stream, run_id, prepare=prep)
            progress.records += stored
        if backfill.head_unseen(store, connector.name, stream):
            unseen.add(stream.name)
    counted = [0]  # the fill's records already added to the progress

    def report(status: FillStatus) -> None:
        progress.window, progress.windows_done, progress.windows_total = status.window, status.done, status.total
        progress.eta_seconds = status.eta_seconds
        progress.records += status.records - counted[0]
        counted[0] = status.records
        progress.api_calls = connector.api_calls + status.calls
        if on_progress:
            on_progress(progress)

    filler.on_progress = report
    filler.start(unseen)
    return filler


def _close_filling(filler: backfill.Filler, result: SourceResult) -> None:
    """End the threads whatever happened; a reading thread's failure fails the source."""
    try:
        filler.close()
    except (SyncError, RecordError) as exc:
        if result.ok:
            result.ok, result.error = False, str(exc)
            log.error("%s: sync failed: %s", filler.source, exc)
    except (StopRequested, WaitInterrupted):
        result.stopped = True


def rewind_source(store: Store, connector: Connector, since: datetime) -> dict[str, str]:
    """Move each stream's cursor back so the next read re-reads changes since `since`.

    For the nightly reconciliation; only connectors offering `rewind_cursor`
    (`connectors.base.Reconcilable`) can do it. Moving a cursor back loses nothing: the
    window is read again and upserted. Returns the streams moved, with their new cursors.
    """
    rewind = getattr(connector, "rewind_cursor", None)
    if rewind is None:
        return {}
    moved: dict[str, str] = {}
    with store.db.atomic():
        for stream in connector.streams():
            current = store.get_cursor(connector.name, stream.name)
            target = rewind(stream, current, since)
            if target is not None and target != current:
                store.set_cursor(connector.name, stream.name, target)
                moved[stream.name] = target
    return moved


def sync_one(
    store: Store,
    settings: Settings,
    name: str,
    *,
    full: bool = False,
    on_progress: ProgressCallback | None = None,
    stop: threading.Event | None = None,
    rewind_since: datetime | None = None,
) -> SourceResult:
    """Build source `name`, (rewind,) sync it, apply its survey mappings, record the run, close it.

    Never raises for the source's own failure, expected or not: it is logged, recorded in
    the run log and returned, so one source cannot stop the others (or the daemon).
    """
    enabled = settings.enabled_connectors()
    if name not in enabled:
        return SourceResult(source=name, ok=False, error=f"{name}: not configured or not enabled")
    try:
        connector = build_connector(name, enabled[name])
    except Exception as exc:  # a connector that cannot even be built fails alone
        return _failed_to_start(store, name, describe(exc))
    try:
        insight = InsightPass.from_settings(settings)  # built once per run: loading the models is the slow part
    except Exception as exc:  # without its analyser no page may be stored: the bodies would have nowhere to go
        connector.close()
        said = str(exc) if isinstance(exc, TopicRuleError) else describe(exc)  # a rule error names key and rule
        return _failed_to_start(store, name, f"conversation insight cannot start: {said}")
    try:
        if rewind_since is not None:
            _rewind(store, connector, rewind_since)
        result = sync_source(store, connector, full=full, on_progress=on_progress, stop=stop,
                             backfill_options=sync_options(settings), insight=insight)
        if result.ok:
            result.records += apply_mappings(store, settings.surveys.mappings, name)
    except Exception as exc:  # a bug or a store problem: logged with its traceback, its run closed
        result = _failed_unexpectedly(store, name, exc)
    finally:
        counts = connector.call_counts
        connector.close()
    result.api_calls, result.throttled = counts.calls, counts.throttled
    return result


def sync_options(settings: Settings) -> BackfillOptions:
    """`[sync]` as the sync path takes it."""
    chunk = settings.sync.backfill_slice
    return BackfillOptions(settings.sync.backfill, settings.sync.backfill_threads,
                           None if chunk is None else chunk.total_seconds())


def _failed_to_start(store: Store, name: str, error: str) -> SourceResult:
    log.error("%s: cannot start the connector: %s", name, error)
    store.finish_run(store.start_run(name), "failed", 0, error)  # so `status` shows why it never synced
    return SourceResult(source=name, ok=False, error=error)


def _failed_unexpectedly(store: Store, name: str, exc: Exception) -> SourceResult:
    error = describe(exc)
    log.exception("%s: sync failed unexpectedly: %s", name, error)
    store.close_unfinished_runs("failed", error, source=name)
    return SourceResult(source=name, ok=False, error=error)


def _rewind(store: Store, connector: Connector, since: datetime) -> None:
    """The nightly reconciliation's first step; a connector that cannot rewind is synced as usual."""
    if not hasattr(connector, "rewind_cursor"):
        log.warning("%s: the connector cannot re-read a window (no rewind_cursor); reconciling as a normal sync",
                    connector.name)
        return
    moved = rewind_source(store, connector, since)
    stamp = since.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    log.info("%s: re-reading changes since %s (%d streams rewound)", connector.name, stamp, len(moved))


def describe(exc: BaseException) -> str:
    """One line for an operator: SyncErrors and record errors already say where; anything else is
    an unexpected problem (its details and traceback are in the log, or with -v)."""
    if isinstance(exc, (SyncError, RecordError)):
        return str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.filename + ': ' if exc.filename else ''}{exc.strerror}"
    return f"unexpected error: {exc or 'no detail'} (run with -v for the details)"


def sync_all(
    store: Store,
    settings: Settings,
    *,
    sources: Iterable[str] | None = None,
    full: bool = False,
    on_progress: ProgressCallback | None = None,
    stop: threading.Event | None = None,
) -> list[SourceResult]:
    """Sync the enabled sources (or the named ones), each isolated from the others' failures."""
    names = list(sources) if sources is not None else list(settings.enabled_connectors())
    results: list[SourceResult] = []
    for name in names:
        if stop is not None and stop.is_set():
            break
        results.append(sync_one(store, settings, name, full=full, on_progress=on_progress, stop=stop))
    return results
