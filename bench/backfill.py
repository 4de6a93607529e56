"""First-sync benchmark: newest first against oldest first, on a rate-limited multi-year sandbox.

    python bench/backfill.py [--source zendesk] [--tickets 3000] [--days 1095] [--limit 100] [--window 5]
                             [--latency 0.1] [--threads 8] [--page-size 20]

One process: the fake serves on a thread over a world of `--days` of history; it enforces
`--limit` calls per `--window` seconds with its own rate-limit headers, 429 and Retry-After,
and answers each call after `--latency` seconds (a vendor's round trip). Two first syncs run,
each into a fresh store, through the one sync path (`kpi_core.sync.sync_source`):

- oldest first: today's single pass (`[sync] backfill = false`, `sync --oldest-first`);
- newest first: the current month first, older months filled by up to `--threads` threads
  sharing one pacer (fewer when the limit is small).

For each it prints the time until the current and the previous month's KPIs are final (every
contact created in them stored in its final state, with all its messages and status events:
checked against the finished oldest-first store after each stored batch), the total time, the
calls, the 429s met and the share of the rate budget used (calls made / calls the limit allowed
over the sync's time). The newest-first store must end equal to the oldest-first one (rows and
cursors): the bench says whether it does. The defaults (1,500 Zendesk tickets over three years,
100 calls per 5 s, 100 ms a call) run in about two minutes.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from connectors import registry
from connectors.sandbox import Sandbox
from connectors.sandbox.server import FakeApi
from kpi_core.backfill import BackfillOptions, month_start
from kpi_core.model import RECORD_TYPES
from kpi_core.store import Store, open_store
from kpi_core.sync import Progress, sync_source


@dataclass
class Run:
    mode: str
    seconds: float = 0.0
    final_at: float | None = None  # seconds until the current and previous months were final
    calls: int = 0
    throttled: int = 0
    ok: bool = False
    error: str | None = None


def recent_signature(store: Store, source: str, since: str) -> tuple[Any, ...]:
    """What makes the recent months' KPIs final: their contacts' states and every message and status event."""
    contacts = store.db.execute(
        "SELECT source_id, updated_at, status FROM contacts WHERE source = ? AND created_at >= ? ORDER BY source_id",
        [source, since]).fetchall()
    messages = store.db.execute(
        "SELECT count(*) FROM messages m JOIN contacts c ON c.source = m.source AND c.source_id = m.contact_id"
        " WHERE c.source = ? AND c.created_at >= ?", [source, since]).fetchone()[0]
    events = store.db.execute(
        "SELECT count(*) FROM status_events e JOIN contacts c ON c.source = e.source AND c.source_id = e.contact_id"
        " WHERE c.source = ? AND c.created_at >= ?", [source, since]).fetchone()[0]
    return tuple(contacts), messages, events


def one_sync(fake: FakeApi, source: str, path: Path, options: BackfillOptions | None, page_size: int,
             wanted: tuple[Any, ...] | None, since: str) -> Run:
    run = Run("newest first" if options else "oldest first")
    store = open_store(path)
    settings = registry.plugin(source).settings(**{**fake.connector_settings(), "page_size": page_size})
    connector = registry.build_connector(source, settings)
    started = time.monotonic()

    def check(_: Progress) -> None:
        if wanted is not None and run.final_at is None and recent_signature(store, source, since) == wanted:
            run.final_at = time.monotonic() - started

    try:
        result = sync_source(store, connector, backfill_options=options, on_progress=check)
        run.seconds = time.monotonic() - started
        check(Progress(source))
        counts = connector.call_counts
        run.calls, run.throttled, run.ok, run.error = counts.calls, counts.throttled, result.finished, result.error
    finally:
        connector.close()
        store.close()
    return run


def dump(path: Path, source: str) -> tuple[dict[str, list[tuple[Any, ...]]], dict[str, str]]:
    store = open_store(path)
    try:
        rows = {t: [tuple(r) for r in store.db.execute(f"SELECT * FROM [{t}] ORDER BY source, source_id")]
                for t in sorted(RECORD_TYPES)}
        return rows, store.cursors(source)
    finally:
        store.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default="zendesk")
    parser.add_argument("--tickets", type=int, default=3000, help="tickets of the world (all helpdesks)")
    parser.add_argument("--days", type=int, default=3 * 365)
    parser.add_argument("--limit", type=int, default=100, help="calls per window the fake allows")
    parser.add_argument("--window", type=float, default=5.0, help="seconds of a rate-limit window")
    parser.add_argument("--latency", type=float, default=0.1, help="seconds the fake takes per call")
    parser.add_argument("--threads", type=int, default=8)
    # Small pages on a small world: a month takes a few pages, as on a large account with full pages.
    parser.add_argument("--page-size", type=int, default=20)
    args = parser.parse_args()

    made = time.monotonic()
    box = Sandbox.generate(seed=11, tickets=args.tickets, names=(args.source,), days=args.days)
    fake = box[args.source]
    box.start()
    live = len(box.world.sources[args.source].tickets)
    print(f"world: {live:,} {args.source} tickets over {args.days} days (generated in {time.monotonic() - made:.1f} s);"
          f" limit {args.limit} calls / {args.window:g} s, {args.latency * 1000:.0f} ms a call;"
          f" load {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    now = datetime.now(timezone.utc)
    previous = month_start(datetime.fromtimestamp(month_start(now).timestamp() - 1, timezone.utc))
    since = previous.strftime("%Y-%m-%dT%H:%M:%SZ")
    runs: list[Run] = []
    with tempfile.TemporaryDirectory() as folder:
        paths = {mode: Path(folder) / f"{mode}.sqlite" for mode in ("oldest", "newest")}
        for mode in ("oldest", "newest"):
            fake.rate_limit(args.limit, args.window)
            fake.slow(args.latency, times=10_000_000)
            wanted = None
            if mode == "newest":
                reference = open_store(paths["oldest"])
                wanted = recent_signature(reference, args.source, since)
                reference.close()
            options = BackfillOptions(threads=args.threads) if mode == "newest" else None
            run = one_sync(fake, args.source, paths[mode], options, args.page_size, wanted, since)
            if mode == "oldest":
                run.final_at = run.seconds  # its recent months are final only when its single pass ends
            with fake.lock:
                fake.faults.clear()
            runs.append(run)
        same = dump(paths["oldest"], args.source) == dump(paths["newest"], args.source)
    box.stop()
    print_table(runs, args.limit, args.window)
    print(f"newest-first store equals oldest-first store (rows and cursors): {'yes' if same else 'NO'}")
    print(f"load after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0 if same and all(r.ok for r in runs) else 1


def print_table(runs: list[Run], limit: int, window: float) -> None:
    header = ("first sync", "recent months final", "total", "calls", "429s", "budget used")
    rows = [header]
    for run in runs:
        allowed = limit * run.seconds / window
        final = "-" if run.final_at is None else f"{run.final_at:.1f} s"
        rows.append((run.mode, final, f"{run.seconds:.1f} s", f"{run.calls:,}", str(run.throttled),
                     f"{100 * run.calls / allowed:.0f} %" if allowed else "-"))
        if run.error:
            print(f"{run.mode}: {run.error}")
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for index, row in enumerate(rows):
        print("  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths,
                                                                                                 strict=True))))
        if index == 0:
            print("  ".join("-" * w for w in widths))


if __name__ == "__main__":
    raise SystemExit(main())
