"""A first sync, newest first: the current month is read first, older months fill in behind it.

For each stream a connector can read in bounded time windows (`connectors.base.Backfillable`),
a first sync (the stream has no cursor) does this instead of reading oldest first:

1. `begin`: the first page of the oldest-first read tells the oldest change; that page is
   stored, and the stream's history is cut into calendar months (UTC) from the start of the
   current month back to that change. The windows go into `backfill_windows` and the stream's
   cursor is set to the start of the current month, all in one transaction.
2. The stream's ordinary incremental read then reads the current month and carries on as
   every sync does, so its cursor ends exactly where an oldest-first sync leaves it.
3. `Filler`: meanwhile the older windows are read newest first, several at a time (threads,
   each with its own HTTP session, one shared rate pacer per account; the sync's own reads
   go first). Each page is stored by the sync's thread with the window's new position in one
   transaction, so a crash resumes where it stopped. A later sync (the daemon's next one)
   reads new changes first and then goes on filling.

An older window must never overwrite a newer state of the same record: a page read before a
record changed can be stored after the newer state (threads), so contacts already stored with
a later `updated_at` are left as they are.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any, cast

from connectors.base import Backfillable, BackfillReader, Connector, Page, StreamSpec
from connectors.http import stopping_waits
from kpi_core.store import BackfillWindow, Store

log = logging.getLogger(__name__)

ISO = "%Y-%m-%dT%H:%M:%SZ"
DEFAULT_THREADS = 4
QUEUED_PAGES = 8  # pages read but not stored, per reading thread (memory stays bounded)


@dataclass(frozen=True)
class BackfillOptions:
    """`[sync]`: whether first syncs fill newest first, and how many threads read windows."""

    enabled: bool = True
    threads: int = DEFAULT_THREADS
    slice_seconds: float | None = None  # how long one sync fills after its own reads; None: to the end


def capable(connector: Connector) -> Backfillable | None:
    """The connector as a `Backfillable`, or None when it does not offer the capability."""
    needed = ("backfill_start", "head_cursor", "read_window", "spawn", "readers", "prefer_this_thread")
    return cast(Backfillable, connector) if all(hasattr(connector, n) for n in needed) else None


def month_windows(oldest: datetime, head: datetime) -> list[tuple[datetime, datetime]]:
    """Calendar months (UTC) from `head` back to `oldest`, newest first; the oldest starts at `oldest`."""
    windows: list[tuple[datetime, datetime]] = []
    end = head
    while end > oldest:
        start = month_start(datetime.fromtimestamp(end.timestamp() - 1, timezone.utc))
        windows.append((max(start, oldest), end))
        end = start
    return windows


def month_start(moment: datetime) -> datetime:
    return moment.astimezone(timezone.utc).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime(ISO)


def parse_iso(text: str) -> datetime:
    return datetime.strptime(text, ISO).replace(tzinfo=timezone.utc)


def begin(store: Store, connector: Backfillable, source: str, stream: StreamSpec, run_id: int,
          now: datetime | None = None, prepare: Callable[[Page], None] | None = None) -> tuple[str | None, int]:
    """Start a stream's first sync; returns the cursor its incremental read starts from, and records stored.

    `prepare`: what the sync does to every page before storing it (conversation insight), done to the first too.

    A stream with no bounded window returns (None, 0): it is read oldest first, as before.
    One whose history lies within the current month (or fits the first page) is read oldest
    first too, continuing after the page already read.
    """
    start = connector.backfill_start(stream)
    if start is None:
        return None, 0
    head = month_start(now or datetime.now(timezone.utc))
    first = start.first
    if prepare is not None:
        prepare(first)
    if start.complete or start.oldest is None or start.oldest >= head:
        # Nothing older than the current month: today's read, resumed after its first page.
        count = store.write_pages(source, stream.name, [(first.records, start.position)], run_id=run_id, checked=True)
        return start.position, count
    windows = month_windows(start.oldest, head)
    cursor = connector.head_cursor(stream, head)
    with store.db.atomic():
        count = store.write_pages(source, stream.name, [(first.records, cursor)], run_id=run_id, checked=True)
        store.save_backfill_head(source, stream.name, iso(head))
        for index, (window_start, window_end) in enumerate(windows):
            oldest = index == len(windows) - 1  # the first page read is this window's beginning
            store.save_backfill_window(BackfillWindow(source, stream.name, iso(window_start), iso(window_end),
                                                      start.position if oldest else None, False))
    log.info("%s/%s: first sync newest first: %d months back to %s", source, stream.name, len(windows),
             iso(start.oldest))
    return cursor, count


def head_unseen(store: Store, source: str, stream: StreamSpec) -> bool:
    """Whether the stream's incremental read has stored no change since its backfill began."""
    head = store.backfill_head(source, stream.name)
    return head is not None and not head[1]


def note_head_seen(store: Store, source: str, stream: StreamSpec) -> None:
    head = store.backfill_head(source, stream.name)
    if head is not None and not head[1]:
        with store.db.atomic():
            store.save_backfill_head(source, stream.name, head[0], seen=True)


def widen_head(store: Store, connector: Backfillable, source: str,
               stream: StreamSpec) -> tuple[str, BackfillWindow | None] | None:
    """Start the stream's incremental read one window earlier (its range so far held no change).

    An incremental read that stored nothing would leave its cursor where it began instead of on
    the last change, unlike an oldest-first read. The window before its start is handed to it
    (removed from the backfill if unread); reading on to the end, it ends on the last change.
    Returns the new cursor and the unread window taken (None if it was read already), or None
    when no window is left before the read's start. Taking a window too many costs one re-read.
    """
    head = store.backfill_head(source, stream.name)
    if head is None:
        return None
    earlier = [w for w in store.backfill_windows(source) if w.stream == stream.name and w.end <= head[0]]
    if not earlier:
        return None
    window = earlier[0]  # newest first
    cursor = connector.head_cursor(stream, parse_iso(window.start))
    with store.db.atomic():
        if not window.done:
            store.delete_backfill_window(window)
        store.save_backfill_head(source, stream.name, window.start)
        store.set_cursor(source, stream.name, cursor)
    return cursor, None if window.done else window


@dataclass
class FillStatus:
    """What `fill` reports through the sync's progress callback."""

    window: str = ""  # the window whose page was stored last, e.g. "tickets 2025-03"
    done: int = 0
    total: int = 0
    eta_seconds: float | None = None
    records: int = 0
    calls: int = 0  # calls made by the reading threads


PageHook = Callable[[str, Page], None]
PagePrep = Callable[[Page], None]  # done to each page before it is stored (conversation insight drops bodies)
Job = tuple[float, str, str]  # (-end, stream, start): the newest window first


class Filler:
    """Reads a source's unread windows in threads, newest first, while the caller goes on syncing.

    Threads (each with its own HTTP session, one pacer) only read and queue pages; the caller's
    thread stores them (`drain`), each page with its window's new position in one transaction.
    The caller's own calls go first: the threads leave a share of each rate-limit window to it
    until `foreground_done` (its incremental reads bring the current month).
    """

    def __init__(self, store: Store, connector: Connector, *, run_id: int, threads: int,
                 stop: threading.Event | None, on_page: PageHook,
                 on_progress: Callable[[FillStatus], None] | None = None, prepare: PagePrep | None = None) -> None:
        found = capable(connector)
        if found is None:
            raise TypeError(f"{connector.name}: the connector cannot read time windows")
        self.backfillable: Backfillable = found
        self.store, self.connector, self.source, self.run_id = store, connector, connector.name, run_id
        self.on_page, self.on_progress, self.prepare = on_page, on_progress, prepare
        self.stop = stop or threading.Event()
        self.abort = threading.Event()
        self.no_more_jobs = threading.Event()
        self.jobs: queue.PriorityQueue[Job] = queue.PriorityQueue()
        self.windows: dict[tuple[str, str], BackfillWindow] = {}
        self.unseen: set[str] = set()  # streams whose incremental read has stored no change yet
        self.skipped: set[tuple[str, str]] = set()  # windows an incremental read took over (`taken`)
        self.status = FillStatus()
        self.wanted_threads = threads
        self.threads: list[threading.Thread] = []
        self.readers: list[BackfillReader] = []
        self.results: queue.Queue[tuple[str, BackfillWindow | None, Any]] = queue.Queue()
        self.alive = 0
        self.error: BaseException | None = None
        self.started = time.monotonic()
        self.done_at_start = 0

    def start(self, unseen: set[str]) -> None:
        """Queue the unread windows, newest first, and start the threads."""
        backfillable = self.backfillable
        windows = self.store.backfill_windows(self.source)
        pending = [w for w in windows if not w.done]
        self.status = FillStatus(done=len(windows) - len(pending), total=len(windows))
        self.done_at_start = self.status.done
        self.unseen = unseen
        self.no_more_jobs.set()
        if not pending:
            return
        for window in pending:
            self._queue(window)
        specs = {s.name: s for s in self.connector.streams()}
        count = max(1, min(backfillable.readers(self.wanted_threads), len(pending)))
        self.results = queue.Queue(QUEUED_PAGES * count)
        self.readers = [backfillable.spawn() for _ in range(count)]
        self.threads = [threading.Thread(target=self._work, args=(reader, specs), name=f"backfill-{i}", daemon=True)
                        for i, reader in enumerate(self.readers)]
        self.alive = count
        backfillable.prefer_this_thread(True)
        log.info("%s: filling %d older windows with %d threads", self.source, len(pending), count)
        for thread in self.threads:
            thread.start()

    def foreground_done(self) -> None:
        """The caller's own reads are over: the threads may use the whole budget."""
        self.backfillable.prefer_this_thread(False)

    def drain(self, block: bool, until: float | None = None) -> None:
        """Store what the threads have read; `block`: until every thread has ended (asked to stop at
        monotonic time `until`). Raises a thread's error."""
        while self.alive:
            if until is not None and time.monotonic() >= until and not self.abort.is_set():
                log.info("%s: this sync's share of the backfill is over; the next sync goes on", self.source)
                self.abort.set()
            try:
                items = [self.results.get(timeout=0.2) if block else self.results.get_nowait()]
            except queue.Empty:
                if block:
                    continue
                break
            while len(items) < 4 * len(self.threads):
                try:
                    items.append(self.results.get_nowait())
                except queue.Empty:
                    break
            self.alive -= sum(1 for kind, _, _ in items if kind == "exit")
            for kind, _, exc in items:
                if kind == "error" and self.error is None:
                    self.error = exc
                    self.abort.set()
            self._store_batch(items)
        if self.error is not None:
            raise self.error

    def close(self) -> FillStatus:
        """Stop the threads (after their page in hand), store what they read, add their call counts."""
        self.abort.set()
        self.foreground_done()
        error: BaseException | None = None
        try:
            self.drain(block=True)
        except BaseException as exc:  # raised below, once the threads are down
            error = exc
        for thread in self.threads:
            thread.join(timeout=5)
        counts = self.connector.call_counts
        for reader in self.readers:
            theirs = reader.call_counts
            counts.calls += theirs.calls
            counts.throttled += theirs.throttled
            counts.server_errors += theirs.server_errors
            counts.retries += theirs.retries
            counts.slowdowns += theirs.slowdowns
            reader.close()
        self.readers = []
        if error is not None:
            raise error
        return self.status

    def finish(self, slice_seconds: float | None = None) -> FillStatus:
        """Wait for every window to be read (or a stop, or `slice_seconds`), storing as they come.

        After the slice the threads stop at their page in hand; the next sync goes on from there.
        """
        self.foreground_done()
        if self.on_progress is not None:
            self.on_progress(self.status)  # every incremental read is done: only older months are left
        self.drain(block=True, until=None if slice_seconds is None else time.monotonic() + slice_seconds)
        return self.close()

    def calls(self) -> int:
        return sum(r.call_counts.calls for r in self.readers)

    def taken(self, window: BackfillWindow) -> None:
        """An incremental read took `window` over (`widen_head`): no thread starts it any more."""
        self.skipped.add((window.stream, window.start))
        self.status.total -= 1
        self._update_eta()

    def _update_eta(self) -> None:
        self.status.eta_seconds = _eta(time.monotonic() - self.started, self.status.done - self.done_at_start,
                                       self.status.total - self.status.done)

    def _queue(self, window: BackfillWindow) -> None:
        key = (window.stream, window.start)
        self.windows[key] = window
        self.jobs.put((-parse_iso(window.end).timestamp(), window.stream, window.start))

    def _work(self, reader: BackfillReader, specs: dict[str, StreamSpec]) -> None:
        try:
            with stopping_waits(self.stop):
                while not (self.stop.is_set() or self.abort.is_set()):
                    try:
                        _, stream, start = self.jobs.get(timeout=0.1)
                    except queue.Empty:
                        if self.no_more_jobs.is_set() and self.jobs.empty():
                            return
                        continue
                    if (stream, start) in self.skipped:
                        continue
                    window = self.windows[(stream, start)]
                    pages = reader.read_window(specs[stream], parse_iso(window.start), parse_iso(window.end),
                                               window.position)
                    for page in pages:
                        self.results.put(("page", window, page))
                        if self.stop.is_set() or self.abort.is_set():
                            return
                    self.results.put(("done", window, None))
        except BaseException as exc:  # handed to the storing thread, which raises it
            self.results.put(("error", None, exc))
        finally:
            self.results.put(("exit", None, None))

    def _store_batch(self, items: list[tuple[str, BackfillWindow | None, Any]]) -> None:
        done_before = self.status.done
        _store(self.store, self.source, self.run_id, items, self.status, self.on_page, self.skipped, self.prepare)
        self.status.calls = self.calls()
        self._update_eta()
        if self.status.done > done_before:  # what the daemon's log shows of a long first sync
            left = "" if self.status.eta_seconds is None else f"; about {self.status.eta_seconds / 60:.0f} min left"
            log.info("%s: backfill: %d of %d windows read (last: %s)%s", self.source, self.status.done,
                     self.status.total, self.status.window, left)
        if self.on_progress is not None and any(kind in ("page", "done") for kind, _, _ in items):
            self.on_progress(self.status)


def _store(store: Store, source: str, run_id: int, items: list[tuple[str, BackfillWindow | None, Any]],
           status: FillStatus, on_page: PageHook, taken: set[tuple[str, str]], prepare: PagePrep | None = None) -> None:
    """Store read pages, each window's position and the windows read to their end, in one transaction.

    `prepare` runs on this (the storing) thread, before the transaction: the analysers need not be thread-safe,
    and the write transaction stays as short as it was."""
    positions: dict[tuple[str, str], BackfillWindow] = {}
    # Read before the write transaction begins: a transaction that reads first and writes later
    # cannot wait for another writer (SQLite answers "database is locked" at once). Only this
    # thread writes this source's contacts, so what is read here still holds when writing.
    for kind, _, page in items:
        if kind == "page":
            if prepare is not None:
                prepare(page)
            _keep_newer_states(store, source, page)
    with store.db.atomic():
        for kind, window, page in items:
            if window is None:
                continue
            key = (window.stream, window.start)
            current = positions.get(key, window)
            if kind == "page":
                on_page(window.stream, page)
                status.records += store.write_pages(source, window.stream, [(page.records, None)], run_id=run_id,
                                                    checked=True)
                positions[key] = replace(current, position=page.cursor or current.position)
                status.window = f"{window.stream} {window.start[:7]}"
            elif kind == "done":
                positions[key] = replace(current, done=True)
                status.done += key not in taken
        for key, window in positions.items():
            if key not in taken:  # a window an incremental read took over stays gone
                store.save_backfill_window(window)


def _keep_newer_states(store: Store, source: str, page: Page) -> None:
    """Drop the page's contacts that the store already holds in a later state (see the module doc)."""
    contacts = page.records.get("contacts")
    if not contacts:
        return
    newer = store.newer_contacts(source, contacts)
    if newer:
        page.records["contacts"] = [row for row in contacts if str(row["source_id"]) not in newer]


def _eta(elapsed: float, windows_read: int, windows_left: int) -> float | None:
    """Seconds left at the pace observed so far (calls per window and calls per second alike)."""
    if windows_read <= 0 or windows_left <= 0:
        return 0.0 if windows_left <= 0 else None
    return elapsed / windows_read * windows_left


def summary(store: Store, source: str) -> dict[str, Any] | None:
    """How far a source's newest-first backfill has come (for `status`); None when it never had one.

    `complete_back_to`: everything changed after this time is stored (None once the backfill
    has ended); `eta_seconds`: the time left at the pace of the windows read so far.
    """
    windows = store.backfill_windows(source)
    if not windows:
        return None
    pending = [w for w in windows if not w.done]
    point = max((w.end for w in pending), default=None)
    first, last, done = store.db.execute(
        "SELECT min(updated_at), max(updated_at), count(*) FROM backfill_windows WHERE source = ? AND done = 1",
        [source]).fetchone()
    eta: float | None = 0.0 if not pending else None
    if pending and done and done > 1 and first and last and last > first:
        eta = (parse_iso(last) - parse_iso(first)).total_seconds() / (done - 1) * len(pending)
    return {"complete": not pending, "complete_back_to": point, "oldest": min(w.start for w in windows),
            "windows_done": len(windows) - len(pending), "windows_total": len(windows), "eta_seconds": eta}
