"""`helpdesk-kpi push [--source NAME] [--dry-run]` and `helpdesk-kpi fields [--create]`: write-back."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

from connectors.base import SyncError, Writer
from connectors.http import WaitInterrupted, stopping_waits
from connectors.registry import build_writer, writable
from kpi_core.cli_common import (
    EXIT_FAILED,
    EXIT_OK,
    Interrupted,
    UsageError,
    command,
    confirm,
    err,
    graceful_stop,
    helpdesk_names,
    out,
    reported_here,
    settings_from,
    store_from,
)
from kpi_core.kpis.api import refresh
from kpi_core.settings import Settings
from kpi_core.store import Store
from kpi_core.writeback import fields
from kpi_core.writeback.planner import Plan
from kpi_core.writeback.push import Report, helpdesks, push


@command("push")
def cmd_push(args: argparse.Namespace) -> int:
    """Write the configured per-record KPI metrics and notes into the helpdesks (--dry-run: show the plan only)."""
    settings = settings_from(args)
    names = _mapped(settings, args.source)
    if not settings.writeback.enabled and not args.dry_run:
        raise UsageError("write-back is disabled ([writeback] enabled = false); --dry-run shows what it would write")
    store = store_from(settings)
    try:
        refresh(store, settings)  # the values pushed are those of the store now, not of the last compute
        # SIGTERM/SIGINT end a push after the request in hand, whose result is recorded; a wait
        # (Retry-After) ends at once. The refusals are printed below, not logged too.
        with reported_here("kpi_core.writeback", verbose=args.verbose), graceful_stop() as stop, stopping_waits(stop):
            report = push(store, settings, sources=names, dry_run=args.dry_run, stop=stop)
    except (Interrupted, WaitInterrupted):
        err("push interrupted: what was written is recorded; the next push sends the rest")
        return EXIT_FAILED
    finally:
        store.close()
    if args.dry_run:
        _print_plans(report)
    _print_report(report)
    if report.stopped:
        return EXIT_FAILED
    return EXIT_OK if report.ok else EXIT_FAILED


@command("fields")
def cmd_fields(args: argparse.Namespace) -> int:
    """Compare the mapped fields with the helpdesks' field definitions; --create makes the missing ones."""
    settings = settings_from(args)
    names = _mapped(settings, args.source, mappings_only=True)
    enabled = settings.enabled_connectors()
    store = store_from(settings)
    all_ok = True
    try:
        for helpdesk in names:
            if helpdesk not in enabled:
                err(f"{helpdesk}: mapped but [connectors.{helpdesk}] is not enabled")
                all_ok = False
                continue
            writer = build_writer(helpdesk, enabled[helpdesk])
            try:
                all_ok &= _fields_of(store, settings, helpdesk, writer, args.create, args.yes)
            except SyncError as exc:
                err(str(exc))
                all_ok = False
            finally:
                writer.close()
    finally:
        store.close()
    return EXIT_OK if all_ok else EXIT_FAILED


def _fields_of(store: Store, settings: Settings, helpdesk: str, writer: Writer, create: bool, yes: bool) -> bool:
    mapped = fields.check(store, settings, helpdesk, writer, refresh=True)
    out(f"{helpdesk}:")
    rows = [("mapping", "metric", "field", "in the helpdesk", "status")]
    for m in mapped:
        has = f"{m.field.vendor_type} {m.field.key}" if m.field else "-"
        if m.missing:
            state = f"missing: to create as {fields.spec_for(m).type}"
        else:
            state = "ok" if m.problem is None else m.problem.split(": ", 1)[-1]
        rows.append((f"#{m.index + 1} {m.mapping.object}", m.metric.name, m.mapping.field, has, state))
    out(_table(rows, indent="  "))
    missing = [m for m in mapped if m.missing]
    if not create:
        if missing:
            out(f"  {len(missing)} missing: `helpdesk-kpi fields --create` creates them where the API allows")
        return all(m.problem is None for m in mapped)
    if missing:
        out("  will create:")
        for m in missing:
            spec = fields.spec_for(m)
            out(f"    {spec.object} field {spec.key!r}: {spec.type} (for {m.metric.name})")
        if not confirm(f"  create these {len(missing)} fields in {helpdesk}?", yes=yes):
            out(f"  {helpdesk}: nothing created")
            return False
    created = fields.create_missing(store, helpdesk, writer, mapped)
    for c in created:
        (out if c.field else err)(f"  {c.message}")
    return all(m.problem is None or m.missing for m in mapped) and all(c.field is not None for c in created)


def _mapped(settings: Settings, source: str | None, mappings_only: bool = False) -> list[str]:
    names = helpdesks(settings)
    if mappings_only:
        names = [h for h in names if any(m.helpdesk == h for m in settings.writeback.mappings)]
    if not names:
        raise UsageError("[writeback] maps nothing: add [[writeback.mappings]] (see config.example.toml)")
    if source is not None:
        if source not in names:
            raise UsageError(f"--source {source}: nothing is mapped for it (mapped: {', '.join(names)})")
        return [source]
    return names


def _print_plans(report: Report) -> None:
    for name, outcome in report.outcomes.items():
        if outcome.plan is None:
            continue
        out(f"{name}: {outcome.plan.size:,} changes planned, {outcome.plan.unchanged:,} fields already as wanted")
        rows = _plan_rows(outcome.plan)
        if len(rows) > 1:
            out(_table(rows, indent="  "))


def _plan_rows(plan: Plan) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = [("object", "record", "field / note", "in the helpdesk", "will be", "why")]
    for note in plan.notes:
        rows.append((note.object, note.record_id, f"note: {note.rule}", "-", _short(note.body), note.reason))
    for write in plan.writes:
        for c in write.changes:
            rows.append((write.object, write.record_id, f"{c.target.field.key} ({c.target.metric.name})",
                         _value(c.current), _value(c.value), c.reason))
    return rows


def _print_report(report: Report) -> None:
    verb = "would write" if report.dry_run else "wrote"
    for name, o in report.outcomes.items():
        if o.refused:
            err(f"{name}: REFUSED: {o.refused}")
            continue
        if report.dry_run:
            continue
        notes = sum(1 for _ in o.plan.notes) if o.plan else 0
        out(f"{name}: {verb} {o.written:,} of {o.plan.size if o.plan else 0:,} planned ({notes:,} notes) in"
            f" {o.requests:,} write requests ({o.api_calls:,} API calls); {o.failed:,} failed,"
            f" {o.deferred:,} over the budget (next push)"
            + (f", {o.uncertain:,} notes uncertain" if o.uncertain else ""))
        for failure in o.failures[:20]:
            err(f"  {failure}")
        if len(o.failures) > 20:
            err(f"  ... and {len(o.failures) - 20:,} more (sent again next push)")
    if report.stopped:
        err("stopped early: the rest waits for the next push")


def _value(value: Any) -> str:
    return "-" if value is None else json.dumps(value, ensure_ascii=False)


def _short(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


def _table(rows: Sequence[tuple[str, ...]], indent: str = "") -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [indent + "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=False)).rstrip() for r in rows]
    lines.insert(1, indent + "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("push", parents=[common], help=cmd_push.__doc__)
    p.add_argument("--source", help=f"only this helpdesk ({helpdesk_names(writable())})")
    p.add_argument("--dry-run", action="store_true", help="print the plan as a table and send nothing")
    p = sub.add_parser("fields", parents=[common], help=cmd_fields.__doc__)
    p.add_argument("--source", help=f"only this helpdesk ({helpdesk_names(writable())})")
    p.add_argument("--create", action="store_true",
                   help="show the missing fields, ask, then create them with the right type where the helpdesk's"
                        " API allows it")
    p.add_argument("--yes", "-y", action="store_true",
                   help="with --create: create without asking (needed when no terminal can answer, as in cron)")

