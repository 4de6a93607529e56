"""The KPI engine's commands: compute, kpis, diagnose, reasons, inputs import."""

from __future__ import annotations

import argparse
import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

from kpi_core.cli_common import EXIT_OK, UsageError, command, date_range, err, out, settings_from, store_from
from kpi_core.kpis import filling
from kpi_core.kpis.accounts import AccountError, across, chosen_accounts
from kpi_core.kpis.api import compute, frozen_history, import_inputs, kpi_rows, previous_rows, refresh
from kpi_core.kpis.catalogue import UnknownKpi
from kpi_core.kpis.diagnostics import diagnose
from kpi_core.kpis.inputs import InputsError
from kpi_core.kpis.periods import PeriodError
from kpi_core.kpis.reasons import top_reasons, top_refunded_skus
from kpi_core.kpis.scorecard import (
    PIVOT_KPIS,
    format_diagnostics,
    format_pivot,
    format_reasons,
    format_refunded_skus,
    format_scorecard,
    rows_to_csv,
    rows_to_json,
)
from kpi_core.kpis.segments import SegmentError
from kpi_core.settings import Settings
from kpi_core.store import Store


@contextmanager
def _engine(args: argparse.Namespace) -> Iterator[tuple[Settings, Store]]:
    """The settings and store of a KPI command; the engine's request errors become usage errors (exit 2)."""
    settings = settings_from(args)
    store = store_from(settings)
    try:
        yield settings, store
    except (PeriodError, SegmentError, UnknownKpi, InputsError) as exc:
        raise UsageError(str(exc)) from None
    finally:
        store.close()


def _list(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


@command("compute")
def cmd_compute(args: argparse.Namespace) -> int:
    """(Re)compute the KPI values and diagnostics into the store (only what changed since last time)."""
    since, until = date_range(args)
    if args.rebuild_history and not args.full:
        raise UsageError("--rebuild-history recomputes every stored value, frozen ones included: give it with --full")
    with _engine(args) as (settings, store):
        if args.rebuild_history:
            _announce_rebuild(frozen_history(store))
        summary = compute(store, settings, since, until, full=args.full, rebuild_history=args.rebuild_history)
    out(f"computed {summary.periods_computed:,} periods in full and {summary.periods_partly:,} in part"
        f" ({summary.values_written:,} values; {summary.diagnostics_now:,} diagnostics firing this month:"
        " `helpdesk-kpi diagnose`) from"
        f" {summary.contacts_refreshed:,} refreshed contacts in {summary.seconds:.1f}s")
    if summary.periods_frozen:
        out(f"{summary.periods_frozen:,} frozen periods kept as they were (history is kept after a purge or forget;"
            " `compute --full --rebuild-history` recomputes them)")
    return EXIT_OK


def _announce_rebuild(frozen: list[tuple[str, str, int, str, str]]) -> None:
    """Say which frozen periods the rebuild reopens, before it does."""
    if not frozen:
        out("rebuild-history: no period is frozen; computing everything in full")
        return
    out(f"rebuild-history: unfreezing {sum(f[2] for f in frozen):,} stored periods and recomputing them from what"
        " the store holds now:")
    for grain, by_key, count, first, last in frozen:
        out(f"  {grain:<8} {'by ' + by_key if by_key else 'overall':<24} {count:>6,} periods  {first} .. {last}")
    out("Contacts purged or forgotten and not synced again (`sync --full` with an early enough start_date) are"
        " missing from the recomputed values, and they are no longer marked partial.")


def bring_up_to_date(store: Store, settings: Settings) -> None:
    """Before reading: recompute what the store changed since the last `compute` (syncs, imports, settings).

    A store this command may not write (read-only, or held by a long compute elsewhere) is read as it is, with a
    warning that the values are those of the last compute."""
    try:
        refresh(store, settings)
    except sqlite3.OperationalError as exc:
        if "readonly" not in str(exc) and "locked" not in str(exc):
            raise
        why = "is read-only" if "readonly" in str(exc) else "is busy (another process is writing to it)"
        err(f"warning: {settings.store.path} {why}: the KPI values shown are those of the last `compute`, without"
            " the changes stored since")


@command("kpis")
def cmd_kpis(args: argparse.Namespace) -> int:
    """Print KPI values: the scorecard (default), a pivot by segment (--by), JSON or CSV; default: this month."""
    since, until = date_range(args)
    by, kpi_ids = _list(args.by), _list(args.kpi)
    with _engine(args) as (settings, store):
        bring_up_to_date(store, settings)
        if args.account:
            return _kpis_of_accounts(args, settings, store, since, until, by, kpi_ids)
        if args.format == "table" and by:
            columns = kpi_ids or list(PIVOT_KPIS)
            rows = kpi_rows(store, settings, args.period, since, until, by, sorted({*columns, "ticket_volume"}))
            out(_mark_partial(format_pivot(rows, by, columns).rstrip("\n"), rows))
            if not kpi_ids:
                out(f"(columns: {', '.join(PIVOT_KPIS)}; --kpi ID[,ID] picks others)")
            return EXIT_OK
        rows = kpi_rows(store, settings, args.period, since, until, by, kpi_ids)
        filling.mark(store, settings.enabled_connectors(), rows)  # periods a first sync has not reached yet
        before = previous_rows(store, settings, args.period, since, until, by, kpi_ids)
        if args.format == "json":
            out(rows_to_json(_with_previous_values(rows, before)))
        elif args.format == "csv":
            out(rows_to_csv(rows).rstrip("\n"))
        else:
            frt = "first_response_time_median"
            channels = (kpi_rows(store, settings, args.period, since, until, ["channel"], [frt])
                        if not kpi_ids or frt in kpi_ids else None)
            out(_mark_partial(format_scorecard(rows, before, channels).rstrip("\n"), rows))
    return EXIT_OK


def _kpis_of_accounts(args: argparse.Namespace, settings: Settings, store: Store, since: date | None,
                      until: date | None, by: list[str] | None, kpi_ids: list[str] | None) -> int:
    """`kpis --account`: the stored values of several accounts of a PostgreSQL store, one segment each."""
    try:
        wanted = chosen_accounts(store, settings, args.account)
    except AccountError as exc:
        raise UsageError(str(exc)) from None
    rows = across(str(settings.store.location), wanted, settings, args.period, since, until, by, kpi_ids)
    if args.format == "json":
        out(rows_to_json(rows))
    elif args.format == "csv":
        out(rows_to_csv(rows).rstrip("\n"))
    elif by:
        out(format_pivot(rows, ["account", *by], kpi_ids or list(PIVOT_KPIS)).rstrip("\n"))
    else:
        out(format_scorecard(rows).rstrip("\n"))
    return EXIT_OK


def _with_previous_values(rows: list[dict[str, Any]], before: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each row's `compared_with` gains the value it is compared with (null when there is none)."""
    index = {(r["kpi"], json.dumps(r["segment"], sort_keys=True), r["period_start"], r["period_end"]): r["value"]
             for r in before}
    for row in rows:
        compared = row["compared_with"]
        compared["value"] = index.get((row["kpi"], json.dumps(row["segment"], sort_keys=True),
                                       compared["period_start"], compared["period_end"]))
    return rows


PARTIAL_NOTE = ("* partial: computed after a retention purge from what it left; contacts deleted before the purge"
                " boundary are missing (docs/privacy.md)")


def _mark_partial(table: str, rows: list[dict[str, Any]]) -> str:
    """Flag the scorecard blocks of partial periods (their heading) and explain the flag once, below."""
    partial = {(r["period_start"], r["period_end"]) for r in rows if r.get("partial")}
    if not partial:
        return table
    lines = []
    for line in table.split("\n"):
        if any(line.startswith(("KPI scorecard  ", "KPIs by ")) and f"{start} .. {end} " in line
               for start, end in partial):
            line += "  |  PARTIAL*"
        lines.append(line)
    return "\n".join([*lines, "", PARTIAL_NOTE])


@command("diagnose")
def cmd_diagnose(args: argparse.Namespace) -> int:
    """Print the read-together diagnostics that fire (default: the current month)."""
    since, until = date_range(args)
    with _engine(args) as (settings, store):
        bring_up_to_date(store, settings)
        found = diagnose(store, settings, since, until, args.period)
    out(json.dumps(found, indent=2, ensure_ascii=False) if args.format == "json"
        else format_diagnostics(found).rstrip())
    return EXIT_OK


@command("reasons")
def cmd_reasons(args: argparse.Namespace) -> int:
    """Print the top contact reasons (tags, ticket type, insight topic or a custom field) with share and change."""
    since, until = date_range(args)
    with _engine(args) as (settings, store):
        bring_up_to_date(store, settings)
        if args.refunded_skus:  # the order feed's side: what was refunded, and who wrote around it
            skus = top_refunded_skus(store, settings, since, until, args.top)
            out(json.dumps(skus, indent=2, ensure_ascii=False) if args.format == "json"
                else (format_refunded_skus(skus) or "No refunds in this period.").rstrip())
            return EXIT_OK
        found = top_reasons(store, settings, since, until, args.by, args.top)
        skus = top_refunded_skus(store, settings, since, until, args.top) if args.format != "json" else []
    if (args.by or settings.kpis.reasons.by) == "topic" and not (settings.insight.enabled and settings.insight.topics):
        err("note: topics are set during the sync only with [insight] enabled and [insight] topics rules;"
            " `helpdesk-kpi topics suggest` proposes rules")
    text = format_reasons(found) + ("\n" + format_refunded_skus(skus) if skus else "")
    out(json.dumps(found, indent=2, ensure_ascii=False) if args.format == "json" else text.rstrip())
    return EXIT_OK


@command("inputs")
def cmd_inputs(args: argparse.Namespace) -> int:
    """Import business inputs (operating cost, orders, available hours per agent) from a CSV file."""
    path = Path(args.file)
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    with _engine(args) as (_, store):
        count = import_inputs(store, path)
    out(f"{path}: {count:,} business inputs stored; run `helpdesk-kpi compute` to use them")
    return EXIT_OK


def _range(p: argparse.ArgumentParser) -> None:
    p.add_argument("--since", help="first day, YYYY-MM-DD (UTC)")
    p.add_argument("--until", help="end day, exclusive, YYYY-MM-DD (UTC)")


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("compute", parents=[common], help=cmd_compute.__doc__)
    _range(p)
    p.add_argument("--full", action="store_true",
                   help="rebuild the per-contact facts and every stored value that is not frozen")
    p.add_argument("--rebuild-history", action="store_true",
                   help="with --full: also recompute the frozen periods (kept since a purge or forget) from what the"
                        " store holds now; only after re-syncing them in full")

    p = sub.add_parser("kpis", parents=[common], help=cmd_kpis.__doc__)
    p.add_argument("--period", choices=("day", "week", "month", "quarter"),
                   help="the grain; with --since/--until alone the range is one custom period")
    _range(p)
    p.add_argument("--by", help="segment by FIELD[,FIELD]: source, channel, agent, group, language, market,"
                                " priority, tag or custom.FIELD")
    p.add_argument("--kpi", help="only these KPI ids, comma-separated")
    p.add_argument("--format", choices=("table", "json", "csv"), default="table", help="output format (default: table)")
    p.add_argument("--account", help="a PostgreSQL store's accounts to show side by side: NAME[,NAME] or all;"
                                     " the values each account's daemon stored, each row's segment led by its"
                                     " account (this account's brought up to date first)")

    p = sub.add_parser("diagnose", parents=[common], help=cmd_diagnose.__doc__)
    _range(p)
    p.add_argument("--period", choices=("day", "week", "month", "quarter"), default="month",
                   help="the grain of the periods looked at (default: month)")
    p.add_argument("--format", choices=("table", "json"), default="table", help="output format (default: table)")

    p = sub.add_parser("reasons", parents=[common], help=cmd_reasons.__doc__)
    _range(p)
    p.add_argument("--by", help="tag, ticket_type, topic or custom.FIELD (default: [kpis.reasons] by); a topic is"
                                " the one the [insight] topics rules gave the first customer message when the"
                                " contact was synced: rules changed later apply to contacts synced afterwards"
                                " (the text is not kept; `sync --full` reads it again)")
    p.add_argument("--top", type=int, help="how many reasons (default: [kpis.reasons] top)")
    p.add_argument("--refunded-skus", action="store_true",
                   help="the top refunded SKUs of the order feed, with the contacts around the refunds, instead")
    p.add_argument("--format", choices=("table", "json"), default="table", help="output format (default: table)")

    p = sub.add_parser("inputs", parents=[common], help=cmd_inputs.__doc__)
    p.add_argument("action", choices=("import",), help="import: read a CSV file into the store")
    p.add_argument("file", help="CSV with kind,start,end,value[,agent][,segment]")

