"""`helpdesk-kpi digest` (the review digests) and `helpdesk-kpi events` (the event log)."""

from __future__ import annotations

import argparse
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from kpi_core import events
from kpi_core.cli_common import (
    EXIT_FAILED,
    EXIT_OK,
    UsageError,
    command,
    err,
    out,
    parse_date,
    settings_from,
    store_from,
)
from kpi_core.events import Event, EventError


@command("digest")
def cmd_digest(args: argparse.Namespace) -> int:
    """Build the review digest of the last complete day, week, month or quarter and send it (or print it)."""
    # Late: the digest renders with the report's templates, which load matplotlib and Jinja2.
    from kpi_core.digests import BY_PERIOD, gather, last_complete, render
    from kpi_core.digests import deliver as sinks

    settings = settings_from(args)
    cadence = BY_PERIOD[args.period]
    configured = sinks.configured(settings, cadence)
    if not args.dry_run and not configured:
        raise UsageError(f"[digests]: no sink is configured for the {cadence} digest (email_to, webhook_url or"
                         " file_dir); --dry-run prints the digest instead")
    period = last_complete(cadence, datetime.now(timezone.utc), settings.kpis.timezone)
    store = store_from(settings)
    try:
        digest = gather(store, settings, cadence, period)
        if args.dry_run:
            if args.format == "json":
                out(json.dumps(digest.as_json(), indent=2, ensure_ascii=False))
            else:
                out((render.html if args.format == "html" else render.text)(digest).rstrip())
            where = [sinks.describe(settings, s, cadence) for s in configured] or ["nowhere: no sink is configured"]
            err("dry run: nothing sent; it would go to " + "; ".join(where))
            return EXIT_OK
        result = sinks.deliver(store, settings, digest, configured)
    finally:
        store.close()
    for sink in result.delivered:
        out(f"{digest.title}: sent, {sinks.describe(settings, sink, cadence)}")
    for problem in result.failed.values():
        err(f"{digest.title}: not sent: {problem}")
    return EXIT_OK if result.ok else EXIT_FAILED


@command("events")
def cmd_events(args: argparse.Namespace) -> int:
    """The event log beside the metrics (launches, outages, sales): add, list, import or remove events."""
    settings = settings_from(args)
    store = store_from(settings)
    try:
        if args.action == "add":
            starts = parse_date(args.at, "--at")
            assert starts is not None  # --at is required
            try:
                event, new = events.add(store, starts, parse_date(args.until, "--until"), args.title,
                                        events.parse_segment(args.segment))
            except EventError as exc:
                raise UsageError(str(exc)) from None
            out(f"event {event.id} {'added' if new else 'is in the log already'}: {_line(event)}")
            return EXIT_OK
        if args.action == "list":
            since, until = parse_date(args.since, "--since"), parse_date(args.until, "--until")
            found = events.between(store.db.conn, since, until)
            out(json.dumps([e.as_json() for e in found], indent=2, ensure_ascii=False) if args.format == "json"
                else _table(found))
            return EXIT_OK
        if args.action == "import":
            try:
                result = events.import_csv(store, Path(args.file))
            except EventError as exc:
                raise UsageError(str(exc)) from None
            out(f"{args.file}: {result.rows:,} events read, {result.stored:,} new"
                f" ({result.rows - result.stored:,} in the log already)")
            return EXIT_OK
        removed = events.remove(store, args.id)
        if removed is None:
            err(f"helpdesk-kpi events remove: no event {args.id} (`helpdesk-kpi events list` shows their ids)")
            return EXIT_FAILED
        out(f"event {removed.id} removed: {_line(removed)}")
        return EXIT_OK
    finally:
        store.close()


def _line(event: Event) -> str:
    return f"{event.dates} {event.title}" + (f" ({event.segment_text})" if event.segment else "")


def _table(found: list[Event]) -> str:
    if not found:
        return "No events in the log (add one: helpdesk-kpi events add --at YYYY-MM-DD --title TEXT)."
    rows = [("id", "dates", "segment", "title")]
    rows += [(str(e.id), e.dates, e.segment_text or "all", e.title) for e in found]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(f"{r[0].rjust(widths[0])}  {r[1].ljust(widths[1])}  {r[2].ljust(widths[2])}  {r[3]}"
                     for r in rows)


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("digest", parents=[common], help=cmd_digest.__doc__)
    p.add_argument("--period", choices=("day", "week", "month", "quarter"), default="week",
                   help="the digest's cadence: its last complete period in [kpis] timezone (default: week)")
    p.add_argument("--dry-run", action="store_true",
                   help="print the digest and say where it would go; send nothing, record nothing")
    p.add_argument("--format", choices=("text", "html", "json"), default="text",
                   help="with --dry-run: the plain-text part (default), the HTML body or the webhook's JSON")

    p = sub.add_parser("events", parents=[common], help=cmd_events.__doc__)
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True,
                               help="add, list, import or remove events (each has its own --help)")
    # --config before or after the action: an action's own default must not overwrite one given before it.
    inner = argparse.ArgumentParser(add_help=False)
    inner.add_argument("--config", default=argparse.SUPPRESS,
                       help="config file (default: $HELPDESK_KPI_CONFIG, else ./helpdesk-kpi.toml)")
    inner.add_argument("--verbose", "-v", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    a = actions.add_parser("add", parents=[inner], help="log an event (dates in [kpis] timezone)")
    a.add_argument("--at", required=True, help="its first day, YYYY-MM-DD")
    a.add_argument("--until", help="its last day, YYYY-MM-DD, inclusive (default: the one day --at)")
    a.add_argument("--title", required=True, help='what happened, e.g. "Black Friday sale"')
    a.add_argument("--segment", help="the segment it concerns, e.g. market=de (default: everything)")
    a = actions.add_parser("list", parents=[inner], help="the logged events, by date")
    a.add_argument("--since", help="events running on or after this day, YYYY-MM-DD")
    a.add_argument("--until", help="events starting before this day, YYYY-MM-DD (exclusive)")
    a.add_argument("--format", choices=("table", "json"), default="table", help="output format (default: table)")
    a = actions.add_parser("import", parents=[inner], help="log the events of a CSV file")
    a.add_argument("file", help="CSV with columns starts, title and optionally ends (inclusive) and segment;"
                               " UTF-8 or UTF-16, separated by , ; or tab; read again, it adds no duplicates")
    a = actions.add_parser("remove", parents=[inner], help="delete one event by its id")
    a.add_argument("id", type=int, help="the event's id (`events list` shows it)")
