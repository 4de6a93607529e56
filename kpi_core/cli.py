"""`helpdesk-kpi`: the command line, one sub-command per verb of the interface.

The only module that prints (with its command modules, `cli_*.py`, which it imports by
name). Exit codes: 0 success; 1 the work failed (a source unreachable, a push rejected);
2 bad usage or invalid configuration.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from connectors.sandbox import Sandbox, fake_names
from kpi_core import cli_daemon, cli_kpis, cli_privacy, cli_report, cli_writeback, surveys
from kpi_core import status as status_report
from kpi_core.cli_common import (
    COMMANDS,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    AddParsers,
    UsageError,
    command,
    err,
    helpdesk_names,
    out,
    settings_from,
    stop_on_signals,
    store_from,
)
from kpi_core.logs import configure_logging
from kpi_core.settings import (
    ConfigProblem,
    Settings,
    config_path,
    load_settings,
    parse_duration,
    secret_in_file_readable_by_others,
)
from kpi_core.store import Store, StoreError
from kpi_core.sync import Progress, SourceResult, sync_all

# The command modules' sub-commands, in the order `--help` lists them after the ones below.
MORE_COMMANDS: tuple[AddParsers, ...] = (
    cli_daemon.add_parsers,
    cli_kpis.add_parsers,
    cli_privacy.add_parsers,
    cli_report.add_parsers,
    cli_writeback.add_parsers,
)


class ProgressLine:
    """A single self-rewriting line on a terminal; silent when stderr is not a terminal."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stderr
        self.active = bool(getattr(self.stream, "isatty", lambda: False)())
        self._width = 0

    def __call__(self, p: Progress) -> None:
        if not self.active:
            return
        text = f"{p.source} {p.stream}: {p.pages:,} pages, {p.records:,} records, {p.api_calls:,} API calls"
        self.stream.write("\r" + text.ljust(self._width))
        self.stream.flush()
        self._width = len(text)

    def done(self) -> None:
        if self.active and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0


# --- commands --------------------------------------------------------------------------------


@command("check-config")
def cmd_check_config(args: argparse.Namespace) -> int:
    """Validate the configuration file and the environment."""
    path = config_path(args.config)
    settings = load_settings(path)
    if secret_in_file_readable_by_others(path):
        err(f"warning: {path}: holds a secret and is readable by other users; run: chmod 600 {path}")
    enabled = settings.enabled_connectors()
    out(f"{path}: OK")
    out(f"  store: {settings.store.path}")
    out(f"  sources enabled: {', '.join(enabled) if enabled else 'none'}")
    return EXIT_OK


@command("sync")
def cmd_sync(args: argparse.Namespace) -> int:
    """Pull what changed since the stored cursors."""
    settings = settings_from(args)
    enabled = settings.enabled_connectors()
    if args.source and args.source not in enabled:
        raise UsageError(f"--source {args.source}: not configured or not enabled"
                         f" (enabled: {', '.join(enabled) or 'none'})")
    if not enabled:
        raise UsageError("no source is enabled in the configuration")
    progress = ProgressLine()
    stop = stop_on_signals()
    with _store(settings) as store:
        results = sync_all(store, settings, sources=[args.source] if args.source else None,
                           full=args.full, on_progress=progress, stop=stop)
    progress.done()
    _print_sync_results(results)
    return EXIT_OK if all(r.ok for r in results) else EXIT_FAILED


def _print_sync_results(results: Sequence[SourceResult]) -> None:
    for r in results:
        if r.ok:
            streams = ", ".join(f"{name} {count:,}" for name, count in r.by_stream.items())
            state = "stopped early (resumes next time)" if r.stopped else "ok"
            out(f"{r.source}: {state}: {r.records:,} records in {r.pages:,} pages, {r.api_calls:,} API calls"
                + (f" ({streams})" if streams else ""))
        else:
            err(f"{r.source}: FAILED: {r.error}")
        for warning in r.warnings:
            err(f"{r.source}: warning: {warning}")
    failed = [r.source for r in results if not r.ok]
    if failed and len(results) > 1:
        err(f"{len(failed)} of {len(results)} sources failed: {', '.join(failed)}")


@command("status")
def cmd_status(args: argparse.Namespace) -> int:
    """Per source: last successful sync, lag, cursor, records, API calls, last error."""
    settings = settings_from(args)
    max_lag = parse_duration(args.max_lag) if args.max_lag else None
    with _store(settings) as store:
        report = status_report.collect(store, settings)
    if args.format == "json":
        out(json.dumps(report, indent=2))
    else:
        out(status_report.format_table(report))
    if max_lag is not None:
        late = status_report.lagging(report, max_lag)
        if late:
            err(f"lag over {args.max_lag}: {', '.join(late)}")
            return EXIT_FAILED
    return EXIT_OK


@command("sandbox")
def cmd_sandbox(args: argparse.Namespace) -> int:
    """Serve a fake API for every registered connector that ships one, on loopback until stopped."""
    sandbox = Sandbox.generate(seed=args.seed, tickets=args.tickets)
    if args.rate_limit:
        for fake in sandbox.fakes.values():
            fake.rate_limit(args.rate_limit, 60.0)
    urls = sandbox.start(args.host, args.port)
    for name, url in urls.items():
        creds = ", ".join(f"{k} = {v}" for k, v in sandbox[name].connector_settings().items() if k != "base_url")
        out(f"{name}: {url}  ({creds})")
    out("# a config for these fakes:")
    out(sandbox.config_toml("sandbox.sqlite"))
    sys.stdout.flush()
    stop = stop_on_signals()
    stop.wait()
    sandbox.stop()
    return EXIT_OK


@command("surveys")
def cmd_surveys(args: argparse.Namespace) -> int:
    """Import NPS/CES/CSAT answers from a survey tool's CSV export (re-importable)."""
    settings = settings_from(args)
    path = Path(args.file)
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    key = settings.privacy.hash_key.get_secret_value().encode() if settings.privacy.hash_key else None
    with _store(settings) as store:
        result = surveys.import_csv(store, path, kind=args.kind, scale=args.scale, source=args.source, hash_key=key)
    for problem in result.skipped:
        err(f"skipped {problem}")
    out(f"{path}: {result.stored:,} of {result.rows:,} {args.kind} answers stored "
        f"({result.matched_people:,} matched to a helpdesk customer, {len(result.skipped):,} skipped)")
    return EXIT_OK if not result.skipped else EXIT_FAILED


@command("demo")
def cmd_demo(args: argparse.Namespace) -> int:
    """Start the sandbox, sync it, compute the KPIs and print the scorecard."""
    from kpi_core import demo  # late: it loads matplotlib and Jinja2 for the report, needed by this command only

    return demo.run(Path(args.dir), tickets=args.tickets, seed=args.seed, say=out, warn=err)


# --- argument parsing ------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="helpdesk-kpi", description=__doc__.splitlines()[0])
    parser.add_argument("--verbose", "-v", action="store_true", help="log debug details and show tracebacks")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", help="config file (default: $HELPDESK_KPI_CONFIG, else ./helpdesk-kpi.toml)")
    common.add_argument("--verbose", "-v", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    sub.add_parser("check-config", parents=[common], help=cmd_check_config.__doc__)

    p = sub.add_parser("sync", parents=[common], help=cmd_sync.__doc__)
    p.add_argument("--source", help=f"only this helpdesk ({helpdesk_names()})")
    p.add_argument("--full", action="store_true", help="re-read everything from start_date")

    p = sub.add_parser("status", parents=[common], help=cmd_status.__doc__)
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.add_argument("--max-lag", help='exit 1 when a source has not synced for longer than this, e.g. "1h"')

    p = sub.add_parser("sandbox", parents=[common], help=cmd_sandbox.__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help=f"first port ({_port_plan()}); 0 = free ports")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--tickets", type=int, default=600, help="tickets across the helpdesks")
    p.add_argument("--rate-limit", type=int, default=None, help="enforce this many calls per minute per API")

    p = sub.add_parser("surveys", parents=[common], help=cmd_surveys.__doc__)
    p.add_argument("action", choices=("import",))
    p.add_argument("file", help="CSV with a score column, a time column (responded_at/created_at/date) and"
                               " optionally id, email (hashed, never stored), requester_id + helpdesk, ticket_id")
    p.add_argument("--kind", choices=("nps", "ces", "csat"), required=True)
    p.add_argument("--scale", required=True, help="0-10, 1-7, 1-5, good_bad, ...")
    p.add_argument("--source", default="import", help="name for answers that match no helpdesk customer")

    p = sub.add_parser("demo", parents=[common], help=cmd_demo.__doc__)
    p.add_argument("--dir", default="demo-data", help="where the demo keeps its config and store")
    p.add_argument("--tickets", type=int, default=1200)
    p.add_argument("--seed", type=int, default=7)

    for add_parsers in MORE_COMMANDS:
        add_parsers(sub, common)
    return parser


def _port_plan() -> str:
    """Which fake listens on which port from --port N on: the registry's order."""
    return ", ".join(f"{name} N" + (f"+{i}" if i else "") for i, name in enumerate(fake_names()))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(verbose=args.verbose)
    handler = COMMANDS[args.command]
    try:
        return handler(args)
    except ConfigProblem as exc:
        for key, reason in exc.problems:
            err(f"{exc.path}: {key}: {reason}")
        return EXIT_USAGE
    except UsageError as exc:
        err(f"helpdesk-kpi {args.command}: {exc}")
        return EXIT_USAGE
    except StoreError as exc:
        err(str(exc))
        return EXIT_FAILED
    except KeyboardInterrupt:
        err("interrupted")
        return 130
    except Exception as exc:  # the last line of defence: one line, no traceback unless asked
        if args.verbose:
            raise
        err(f"helpdesk-kpi {args.command}: {type(exc).__name__}: {exc}")
        return EXIT_FAILED


class _store:
    """Open the configured store for the duration of a command."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store: Store | None = None

    def __enter__(self) -> Store:
        self.store = store_from(self.settings)
        return self.store

    def __exit__(self, *exc: object) -> None:
        if self.store is not None:
            self.store.close()


if __name__ == "__main__":
    sys.exit(main())
