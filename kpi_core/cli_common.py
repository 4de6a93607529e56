"""What `cli.py` and its command modules (`cli_*.py`) share: registration, printing, exit codes.

The command modules import this, never `cli` itself; `cli` imports them by name. So the
wiring is explicit and free of import cycles.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta, timezone
from types import FrameType
from typing import Any

from connectors import registry
from kpi_core.settings import Settings, config_path, load_settings
from kpi_core.store import Store, open_store

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

Command = Callable[[argparse.Namespace], int]
# Adds a module's sub-commands: (the sub-parsers action, the parent parser of --config/--verbose).
AddParsers = Callable[[Any, argparse.ArgumentParser], None]

# Every sub-command's handler by name, filled by `@command` as the command modules are imported.
COMMANDS: dict[str, Command] = {}


class UsageError(Exception):
    """Bad arguments: printed on one line, exit 2."""


class Interrupted(BaseException):
    """SIGINT/SIGTERM cut a command short (a BaseException, like KeyboardInterrupt, so that no
    `except Exception` of the work swallows it): the command exits 1 naming what it did not finish."""

    def __init__(self, signal_name: str) -> None:
        super().__init__(signal_name)
        self.signal_name = signal_name


# After SIGTERM/SIGINT, how long work that stops gracefully (the page in hand committed) may take
# before it is interrupted where it stands: the interface promises a stop within 2 s.
STOP_GRACE = 1.5


def command(name: str) -> Callable[[Command], Command]:
    def register(fn: Command) -> Command:
        COMMANDS[name] = fn
        return fn

    return register


def out(text: str = "") -> None:
    print(text)


def err(text: str) -> None:
    print(text, file=sys.stderr)


def settings_from(args: argparse.Namespace) -> Settings:
    """Load the configuration named by --config / $HELPDESK_KPI_CONFIG / ./helpdesk-kpi.toml."""
    return load_settings(config_path(args.config))


def store_from(settings: Settings) -> Store:
    return open_store(settings.store.location, settings.store.account)


def parse_date(value: str | None, flag: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise UsageError(f"{flag}: expected YYYY-MM-DD, got {value!r}") from None


def date_range(args: argparse.Namespace) -> tuple[date | None, date | None]:
    """--since and --until, checked together: a range that cannot hold a day is a usage error
    that says what to change, before any engine turns it into a puzzle."""
    since, until = parse_date(args.since, "--since"), parse_date(args.until, "--until")
    if since is not None and until is not None and until <= since:
        raise UsageError(f"--until {until} must be after --since {since} (--until is the first day left out)")
    # A day ahead of UTC's today: the [kpis] timezone may already be there.
    latest = datetime.now(timezone.utc).date() + timedelta(days=1)
    if since is not None and until is None and since > latest:
        raise UsageError(f"--since {since} is in the future (today is {latest - timedelta(days=1)} UTC):"
                         " give a day that has passed, or an --until after it")
    return since, until


def helpdesk_names(names: list[str] | None = None) -> str:
    """The registered connectors (or `names`) for a help text: the core names no vendor itself."""
    return ", ".join(registry.names() if names is None else names)


def _on_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signal.Signals(signum).name)


def interrupt_on_signals() -> None:
    """Every command's default: SIGTERM, like Ctrl-C, interrupts it where it stands (exit 1)."""
    if _on_main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, _interrupt)


@contextmanager
def graceful_stop() -> Iterator[threading.Event]:
    """Within the block, SIGTERM/SIGINT set the yielded event, so long work commits the page in
    hand and returns; a second signal, or the work still running `STOP_GRACE` seconds later (a
    request waiting on a silent server), raises `Interrupted` where it stands. Leaving the block
    restores `interrupt_on_signals`."""
    stop = threading.Event()
    if not _on_main_thread():
        yield stop
        return
    main_thread = threading.main_thread().ident
    timers: list[threading.Timer] = []

    def handle(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            raise Interrupted(signal.Signals(signum).name)
        # Set from another thread: this one may be inside stop.wait(), holding the event's lock.
        threading.Thread(target=stop.set, name="stop", daemon=True).start()
        assert main_thread is not None
        timer = threading.Timer(STOP_GRACE, signal.pthread_kill, (main_thread, signum))
        timer.daemon = True
        timers.append(timer)
        timer.start()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, handle)
    try:
        yield stop
    finally:
        for timer in timers:
            timer.cancel()
        interrupt_on_signals()


@contextmanager
def reported_here(*loggers: str, verbose: bool = False) -> Iterator[None]:
    """Drop the log lines of `loggers` (and their children) while a command prints what they would
    say itself: each error is printed once. With -v (`verbose`) the logs stay."""
    if verbose:
        yield
        return

    def keep(record: logging.LogRecord) -> bool:
        return not any(record.name == name or record.name.startswith(name + ".") for name in loggers)

    handlers = list(logging.getLogger().handlers)
    for handler in handlers:
        handler.addFilter(keep)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(keep)


def confirm(question: str, *, yes: bool) -> bool:
    """Ask `question` on the terminal; `--yes` answers it. Without a terminal and without --yes:
    a UsageError, as nobody can answer."""
    if yes:
        return True
    if not sys.stdin.isatty():
        raise UsageError("this changes the helpdesk and nobody can confirm it here (no terminal): pass --yes")
    answer = input(f"{question} [y/N] ").strip().lower()
    return answer in ("y", "yes")
