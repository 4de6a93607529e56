"""What `cli.py` and its command modules (`cli_*.py`) share: registration, printing, exit codes.

The command modules import this, never `cli` itself; `cli` imports them by name. So the
wiring is explicit and free of import cycles.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable
from datetime import date
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
    return open_store(settings.store.path)


def parse_date(value: str | None, flag: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise UsageError(f"{flag}: expected YYYY-MM-DD, got {value!r}") from None


def helpdesk_names(names: list[str] | None = None) -> str:
    """The registered connectors (or `names`) for a help text: the core names no vendor itself."""
    return ", ".join(registry.names() if names is None else names)


def stop_on_signals() -> threading.Event:
    """An event set by SIGTERM/SIGINT, so long work can finish its page and stop cleanly."""
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    return stop
