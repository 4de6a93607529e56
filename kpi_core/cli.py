"""`helpdesk-kpi`: the command line, one sub-command per verb of the interface.

The only module that prints (with its command modules, `cli_*.py`, which it imports by
name). Exit codes: 0 success; 1 the work failed (a source unreachable, a push rejected);
2 bad usage or invalid configuration.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from connectors.sandbox import Sandbox, fake_names
from kpi_core import (
    cli_alerts,
    cli_daemon,
    cli_digests,
    cli_kpis,
    cli_orders,
    cli_privacy,
    cli_report,
    cli_topics,
    cli_writeback,
    online_check,
    surveys,
)
from kpi_core import status as status_report
from kpi_core.cli_common import (
    COMMANDS,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    AddParsers,
    Interrupted,
    UsageError,
    command,
    err,
    graceful_stop,
    helpdesk_names,
    interrupt_on_signals,
    out,
    reported_here,
    settings_from,
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
from kpi_core.sync import Progress, SourceResult, sync_one

# The top-level help lists the sub-commands by the task they serve, in this order; a command in no
# group (a newer one) is listed under "more".
TASKS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("set up", ("check-config", "demo", "sandbox", "topics")),
    ("sync", ("sync", "surveys", "orders", "inputs", "compute")),
    ("read", ("kpis", "diagnose", "reasons", "report")),
    ("write back", ("push", "fields")),
    ("operate", ("run", "status")),
    ("review", ("alerts", "digest", "events")),
    ("privacy", ("forget", "purge")),
)

# The command modules' sub-commands, added after the ones of this module.
MORE_COMMANDS: tuple[AddParsers, ...] = (
    cli_alerts.add_parsers,
    cli_daemon.add_parsers,
    cli_digests.add_parsers,
    cli_kpis.add_parsers,
    cli_orders.add_parsers,
    cli_privacy.add_parsers,
    cli_report.add_parsers,
    cli_topics.add_parsers,
    cli_writeback.add_parsers,
)


def format_seconds(seconds: float) -> str:
    """"45 s", "12 min", "3.5 h": an ETA at a glance."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


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
        if p.windows_total:  # a first sync filling older months, newest first
            eta = "" if p.eta_seconds is None else f", about {format_seconds(p.eta_seconds)} left"
            text += f"; filled {p.windows_done}/{p.windows_total} months (last {p.window}){eta}"
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
    """Validate the configuration file and the environment; --online also tries each source's credentials."""
    path = config_path(args.config)
    settings = load_settings(path)
    if secret_in_file_readable_by_others(path):
        err(f"warning: {path}: holds a secret and is readable by other users; run: chmod 600 {path}")
    enabled = settings.enabled_connectors()
    insight = cli_topics.check_insight(path, settings)  # a topic rule that cannot compile: ConfigProblem, exit 2
    out(f"{path}: OK")
    out(f"  store: {settings.store.shown}")
    out(f"  sources enabled: {', '.join(enabled) if enabled else 'none'}")
    for line in insight:
        out(line)
    if not args.online:
        return EXIT_OK
    checks = online_check.check_sources(settings)
    out(online_check.format_checks(checks))
    return EXIT_OK if online_check.all_ok(checks) else EXIT_FAILED


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
    names = [args.source] if args.source else list(enabled)
    # This command fills older months to the end (the daemon's syncs take turns, [sync] backfill_slice);
    # --oldest-first reads first syncs as one oldest-first pass, whatever [sync] backfill says.
    sync_options = {"backfill_slice": None, **({"backfill": False} if args.oldest_first else {})}
    settings = settings.model_copy(update={"sync": settings.sync.model_copy(update=sync_options)})
    progress = ProgressLine()
    results: list[SourceResult] = []
    interrupted: str | None = None
    # The CLI prints each source's failure and warnings below: the sync's own log lines would repeat them.
    with _store(settings) as store, reported_here("kpi_core.sync", verbose=args.verbose):
        with graceful_stop() as stop:
            try:
                for name in names:
                    if stop.is_set():
                        break
                    results.append(sync_one(store, settings, name, full=args.full, on_progress=progress, stop=stop))
            except Interrupted as exc:
                interrupted = exc.signal_name
                store.close_unfinished_runs("interrupted", "the command was interrupted before the run finished")
        progress.done()
        _print_sync_results(results)
    unfinished = [n for n in names if not any(r.source == n and (r.finished or not r.ok) for r in results)]
    if interrupted or stop.is_set():
        err(f"sync interrupted: did not finish {', '.join(unfinished) or 'nothing'}; every page stored is kept"
            " and the next sync resumes from there")
        return EXIT_FAILED
    return EXIT_OK if all(r.ok for r in results) else EXIT_FAILED


def _print_sync_results(results: Sequence[SourceResult]) -> None:
    """One line per source: what was read (items of every stream) and the contacts stored, which is
    what `status` calls records."""
    for r in results:
        if r.ok:
            streams = ", ".join(f"{name} {count:,}" for name, count in r.by_stream.items())
            state = "stopped early (resumes next time)" if r.stopped else "ok"
            stored = r.stored_text()
            out(f"{r.source}: {state}: read {r.records:,} items in {r.pages:,} pages with {r.api_calls:,} API calls"
                + (f" ({streams})" if streams else "") + stored)
        else:
            error = r.error or "unknown error"
            err(f"{r.source}: FAILED: {error.removeprefix(r.source + ': ')}")
        for warning in r.warnings:
            err(f"{r.source}: warning: {warning}")
        if r.quarantined:
            err(f"{r.source}: warning: {r.quarantined:,} records could not be read and were set aside"
                " (`status` counts them; the log says why)")
    failed = [r.source for r in results if not r.ok]
    if failed and len(results) > 1:
        err(f"{len(failed)} of {len(results)} sources failed: {', '.join(failed)}")


@command("status")
def cmd_status(args: argparse.Namespace) -> int:
    """Per source: last successful sync, lag, cursor, records, API calls, last error."""
    max_lag = _max_lag(args.max_lag)
    settings = settings_from(args)
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


def _max_lag(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return parse_duration(text)
    except ValueError:
        raise UsageError(f'--max-lag {text}: expected a duration such as "30s", "15m", "2h" or "7d"') from None


@command("sandbox")
def cmd_sandbox(args: argparse.Namespace) -> int:
    """Serve a fake API for every registered connector that ships one, on loopback until stopped."""
    sandbox = Sandbox.generate(seed=args.seed, tickets=args.tickets, days=args.days)
    if args.rate_limit:
        for fake in sandbox.fakes.values():
            fake.rate_limit(args.rate_limit, args.rate_window)
    urls = sandbox.start(args.host, args.port)
    for name, url in urls.items():
        creds = ", ".join(f"{k} = {v}" for k, v in sandbox[name].connector_settings().items() if k != "base_url")
        out(f"{name}: {url}  ({creds})")
    out("# a config for these fakes:")
    out(sandbox.config_toml("sandbox.sqlite"))
    sys.stdout.flush()
    with graceful_stop() as stop:
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
        try:
            result = surveys.import_csv(store, path, kind=args.kind, scale=args.scale, source=args.source,
                                        hash_key=key)
        except surveys.SurveyFileError as exc:
            raise UsageError(str(exc)) from None
    for problem in result.skipped:
        err(f"skipped {problem}")
    out(f"{path}: {result.stored:,} of {result.rows:,} {args.kind} answers stored "
        f"({result.matched_people:,} matched to a helpdesk customer, {len(result.skipped):,} skipped)")
    return EXIT_OK if not result.skipped else EXIT_FAILED


@command("demo")
def cmd_demo(args: argparse.Namespace) -> int:
    """Start the sandbox, sync it, compute the KPIs and print the scorecard."""
    from kpi_core import demo  # late: it loads matplotlib and Jinja2 for the report, needed by this command only

    return demo.run(Path(args.dir), tickets=args.tickets, seed=args.seed, say=out, warn=err, port=args.port)


# --- argument parsing ------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="helpdesk-kpi", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"helpdesk-kpi {_version()}",
                        help="print the installed version and exit")
    parser.add_argument("--verbose", "-v", action="store_true", help="log debug details and show tracebacks")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", help="config file (default: $HELPDESK_KPI_CONFIG, else ./helpdesk-kpi.toml)")
    common.add_argument("--verbose", "-v", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    sub = _ByTask(parser.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                        help="one of the commands below (`helpdesk-kpi COMMAND --help`: its options)"))

    p = sub.add_parser("check-config", parents=[common], help=cmd_check_config.__doc__)
    p.add_argument("--online", action="store_true",
                   help="also make one cheap authenticated call per enabled source (token, permission, host)")

    p = sub.add_parser("sync", parents=[common], help=cmd_sync.__doc__)
    p.add_argument("--source", help=f"only this helpdesk ({helpdesk_names()})")
    p.add_argument("--full", action="store_true", help="re-read everything from start_date")
    p.add_argument("--oldest-first", action="store_true",
                   help="read a first sync oldest first in one pass instead of the current month first")

    p = sub.add_parser("status", parents=[common], help=cmd_status.__doc__)
    p.add_argument("--format", choices=("table", "json"), default="table", help="output format (default: table)")
    p.add_argument("--max-lag", help='exit 1 when a source has not synced for longer than this, e.g. "1h"')

    p = sub.add_parser("sandbox", parents=[common], help=cmd_sandbox.__doc__)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, loopback only)")
    p.add_argument("--port", type=int, default=0, help=f"first port ({_port_plan()}); 0 = free ports")
    p.add_argument("--seed", type=int, default=7, help="seed of the generated world: the same seed, the same data")
    p.add_argument("--tickets", type=int, default=600, help="tickets across the helpdesks")
    p.add_argument("--rate-limit", type=int, default=None,
                   help="enforce this many calls per minute (per --rate-window) per API, with 429 and Retry-After")
    p.add_argument("--rate-window", type=float, default=60.0, help="seconds of a rate-limit window (default: 60)")
    p.add_argument("--days", type=int, default=120, help="days of history the generated world spans (default: 120)")

    p = sub.add_parser("surveys", parents=[common], help=cmd_surveys.__doc__)
    p.add_argument("action", choices=("import",), help="import: read a CSV file into the store")
    p.add_argument("file", help="CSV with a score column, a time column (responded_at/created_at/date) and"
                               " optionally id, email (hashed, never stored), requester_id + helpdesk, ticket_id;"
                               " UTF-8 or UTF-16, separated by , or ;")
    p.add_argument("--kind", choices=("nps", "ces", "csat"), required=True, help="which survey the answers are")
    p.add_argument("--scale", required=True, help="0-10, 1-7, 1-5, good_bad, ...")
    p.add_argument("--source", default="import", help="name for answers that match no helpdesk customer")

    p = sub.add_parser("demo", parents=[common], help=cmd_demo.__doc__)
    p.add_argument("--dir", default="demo-data", help="where the demo keeps its config and store")
    p.add_argument("--tickets", type=int, default=1200, help="tickets across the sandbox helpdesks")
    p.add_argument("--seed", type=int, default=7, help="seed of the generated world")
    p.add_argument("--port", type=int, default=0,
                   help=f"first port of the sandbox ({_port_plan()}); 0 = free ports")

    for add_parsers in MORE_COMMANDS:
        add_parsers(sub, common)
    parser.epilog = sub.listing()
    return parser


class _ByTask:
    """The sub-parsers action, seen by the `add_parsers` of each command module: it takes each
    command's one-line help for the listing by task (argparse would list them in the order added)
    and keeps it as the command's own description."""

    def __init__(self, action: Any) -> None:
        self.action = action
        self.summaries: dict[str, str] = {}

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        summary = (kwargs.pop("help", None) or "").strip()
        self.summaries[name] = summary
        kwargs.setdefault("description", summary)
        parser: argparse.ArgumentParser = self.action.add_parser(name, **kwargs)
        return parser

    def listing(self) -> str:
        grouped = [(task, [n for n in names if n in self.summaries]) for task, names in TASKS]
        listed = {n for _, names in grouped for n in names}
        more = [n for n in self.summaries if n not in listed]
        width = max(len(n) for n in self.summaries)
        lines = ["commands, by task:"]
        for task, names in [*grouped, ("more", more)]:
            if names:
                lines.append(f"  {task}:")
                lines += [f"    {n.ljust(width)}  {self.summaries[n]}" for n in names]
        return "\n".join(lines)


def _version() -> str:
    try:
        return metadata.version("helpdesk-kpi")
    except metadata.PackageNotFoundError:
        return "(not installed)"


def _port_plan() -> str:
    """Which fake listens on which port from --port N on: the registry's order."""
    return ", ".join(f"{name} N" + (f"+{i}" if i else "") for i, name in enumerate(fake_names()))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(verbose=args.verbose)
    interrupt_on_signals()
    try:
        return _run(args)
    except BrokenPipeError:
        return _reader_went_away()


def _run(args: argparse.Namespace) -> int:
    """The command, its errors as one line each with the documented exit code."""
    handler = COMMANDS[args.command]
    name = f"helpdesk-kpi {args.command}"
    try:
        return handler(args)
    except ConfigProblem as exc:
        for key, reason in exc.problems:
            err(f"{exc.path}: {key}: {reason}")
        return EXIT_USAGE
    except UsageError as exc:
        err(f"{name}: {exc}")
        return EXIT_USAGE
    except StoreError as exc:
        err(str(exc))
        return EXIT_FAILED
    except (Interrupted, KeyboardInterrupt) as exc:
        signal_name = exc.signal_name if isinstance(exc, Interrupted) else "SIGINT"
        err(f"{name}: interrupted ({signal_name}) before it finished; what it had committed is kept")
        return EXIT_FAILED
    except BrokenPipeError:
        raise
    except OSError as exc:
        if args.verbose:
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        err(f"{name}: {where}{exc.strerror or exc}")
        return EXIT_FAILED
    except Exception as exc:  # the last line of defence: one line, no traceback unless asked
        if args.verbose:
            raise
        err(f"{name}: unexpected error: {exc or 'no detail'} (run it again with -v for the details)")
        return EXIT_FAILED


def _reader_went_away() -> int:
    """stdout's reader closed it (`helpdesk-kpi kpis | head`): end quietly, as other tools do.

    The interpreter flushes stdout once more on exit; pointed at /dev/null, that flush cannot fail."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return EXIT_OK


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
