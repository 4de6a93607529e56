"""`helpdesk-kpi run [--once]`: the unattended daemon, one per store, stopped cleanly by SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import traceback
from typing import TYPE_CHECKING, Any

from kpi_core.cli_common import EXIT_FAILED, EXIT_OK, UsageError, command, err, out, settings_from
from kpi_core.lock import AlreadyRunning, StoreLock
from kpi_core.logs import configure_logging
from kpi_core.metrics import Metrics, MetricsUnavailable, metrics_from
from kpi_core.scheduler import CycleResult, Daemon, kpi_compute_step
from kpi_core.settings import ConfigProblem, Settings, config_path
from kpi_core.store import account_schema
from kpi_core.writeback.push import daemon_push_step

if TYPE_CHECKING:
    from kpi_core.postgres.lock import AccountLock as PgAccountLock

log = logging.getLogger(__name__)


def daemon_lock(settings: Settings) -> StoreLock | PgAccountLock:
    """One daemon per store: the file lock beside a SQLite store, an advisory lock per PostgreSQL account."""
    if settings.store.url is None:
        return StoreLock(settings.store.path)
    from kpi_core.postgres.lock import AccountLock  # the driver and translator load only for a PostgreSQL store

    return AccountLock(str(settings.store.location), account_schema(settings.store.account))


@command("run")
def cmd_run(args: argparse.Namespace) -> int:
    """The unattended daemon: scheduled sync, compute and push; --once runs one cycle and exits."""
    settings = settings_from(args)
    configure_logging(verbose=args.verbose, fmt=settings.logging.format, level=settings.logging.level)
    # The scheduler's own "running job ..." lines add nothing to ours but volume.
    logging.getLogger("apscheduler").setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    if not settings.enabled_connectors():
        raise UsageError("no source is enabled in the configuration")
    metrics = _metrics(settings, args)
    lock = daemon_lock(settings)
    try:
        lock.acquire()
    except AlreadyRunning as exc:
        err(f"helpdesk-kpi run: {exc}")
        return EXIT_FAILED
    stop = _stop_on_signals()
    daemon = Daemon(settings, compute=kpi_compute_step(settings), push=daemon_push_step(settings),
                    metrics=metrics, stop=stop)
    try:
        if args.once:
            cycle = daemon.run_once()
            _print_cycle(cycle)
            return EXIT_OK if cycle.ok else EXIT_FAILED
        try:
            code = daemon.run_forever()
        except MetricsUnavailable as exc:
            raise ConfigProblem(config_path(args.config), [("metrics.port", str(exc))]) from None
        if daemon.abandoned:
            # A job is stuck in a network wait: nothing uncommitted matters, so do not wait for it
            # (the interpreter would join its thread). The kernel releases the lock.
            logging.shutdown()
            os._exit(code)
        return code
    finally:
        if not daemon.abandoned:
            lock.release()


def _metrics(settings: Settings, args: argparse.Namespace) -> Metrics:
    try:
        return metrics_from(settings.metrics)
    except MetricsUnavailable as exc:
        raise ConfigProblem(config_path(args.config), [("metrics.enabled", str(exc))]) from None


def _stop_on_signals() -> threading.Event:
    """SIGTERM/SIGINT: finish the page in hand and stop; a second one: stop at once."""
    stop = threading.Event()

    def handle(signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if stop.is_set():
            os._exit(128 + signum)  # asked twice: every committed page is safe, leave now

        def request_stop() -> None:
            log.info("%s received: stopping after the page in hand", name)
            stop.set()

        # Set from a helper thread: the main thread may be inside stop.wait(), holding the event's lock.
        threading.Thread(target=request_stop, name="stop", daemon=True).start()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, handle)
    signal.signal(signal.SIGUSR1, _log_stacks)
    return stop


def _log_stacks(signum: int, frame: Any) -> None:
    """SIGUSR1: log where every thread stands (files, lines and code; no values), the daemon running on.

    For a daemon that seems stuck. Read from Python's own frames at a safe point of the main thread
    (faulthandler's dump can crash a process whose other threads are running).
    """
    names = {thread.ident: thread.name for thread in threading.enumerate()}
    stacks = [f"thread {names.get(ident, ident)}:\n{''.join(traceback.format_stack(top))}"
              for ident, top in sys._current_frames().items()]
    log.warning("%s: the stacks of %d threads\n%s", signal.Signals(signum).name, len(stacks), "\n".join(stacks))


def _print_cycle(cycle: CycleResult) -> None:
    for r in cycle.syncs:
        if r.ok:
            state = "stopped early (resumes next time)" if r.stopped else "ok"
            stored = r.stored_text()
            out(f"{r.source}: {state}: read {r.records:,} items in {r.pages:,} pages with {r.api_calls:,} API calls"
                + stored)
        else:
            err(f"{r.source}: FAILED: {(r.error or 'unknown error').removeprefix(r.source + ': ')}")
    # One line per step that ran, in the cycle's order (a failed step's reason is in the log line before it).
    steps = (("compute", cycle.computed), ("push", cycle.pushed), ("alerts", cycle.alerted),
             ("report", cycle.reported), ("digests", cycle.digests))
    for step, ran in steps:
        if ran is not None:
            (out if ran else err)(f"{step}: {'ok' if ran else 'FAILED'}")


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("run", parents=[common], help=cmd_run.__doc__)
    p.add_argument("--once", action="store_true", help="run one cycle (sync, compute, push) and exit with its result")

