"""`helpdesk-kpi alerts`: what is at risk of missing its target now, and the alerts sent."""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo

from kpi_core.alerts.listing import at_risk_now, kpis_in_breach, sent_since
from kpi_core.alerts.messages import duration
from kpi_core.cli_common import EXIT_OK, UsageError, command, out, settings_from, store_from
from kpi_core.cli_kpis import bring_up_to_date
from kpi_core.kpis.catalogue import BY_ID
from kpi_core.kpis.scorecard import format_target, format_value, shown
from kpi_core.settings import parse_duration


@command("alerts")
def cmd_alerts(args: argparse.Namespace) -> int:
    """List the open contacts at risk of missing (or past) their targets now, KPIs in breach, and alerts sent."""
    try:
        window = parse_duration(args.since)
    except ValueError as exc:
        raise UsageError(f"--since: {exc}") from None
    settings = settings_from(args)
    now = datetime.now(timezone.utc).replace(microsecond=0)
    store = store_from(settings)
    try:
        if settings.alerts.kpis:
            bring_up_to_date(store, settings)
        found = {"at_risk": at_risk_now(store, settings, now), "kpis": kpis_in_breach(store, settings, now),
                 "sent": sent_since(store, now - window)}
    finally:
        store.close()
    if args.format == "json":
        out(json.dumps(found, indent=2, ensure_ascii=False))
    else:
        out(_tables(found, ZoneInfo(settings.kpis.timezone), args.limit))
    return EXIT_OK


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows, strict=True)]
    return ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
            for row in [header, *rows]]


def _signed(seconds: int) -> str:
    return duration(seconds) if seconds >= 0 else f"{duration(seconds)} ago"


def _kpi_figures(row: Mapping[str, Any]) -> tuple[str, str]:
    """The value and target as the scorecard writes them (one unit sized for the value)."""
    kpi = BY_ID[row["kpi"]]
    how = shown(kpi.id, row["unit"], row["value"], row["target"])
    return format_value(kpi.id, row["value"], row["unit"], row["target"]), format_target(kpi, row["target"], how)


def _tables(found: Mapping[str, list[dict[str, Any]]], zone: ZoneInfo, limit: int) -> str:
    lines: list[str] = []
    risky = found["at_risk"]
    lines.append(f"At risk or past a target now: {len(risky)} open contacts")
    if risky:
        risky_rows = [(f"{r['source']} #{r['contact_id']}", r["channel"], r["stage"],
                 f"{duration(r['elapsed_seconds'])} / {duration(r['target_seconds'])}"
                 + (" business" if r.get("business_time") else ""), _signed(r["due_in_seconds"]),
                 r["alert"]) for r in risky[:limit]]
        lines += _table(("contact", "channel", "stage", "elapsed / target", "due in", "alert"), risky_rows)
        if len(risky) > limit:
            lines.append(f"… and {len(risky) - limit} more (--limit, or --format json for all)")
    if found["kpis"]:
        lines += ["", f"KPIs in breach in the running period: {len(found['kpis'])}"]
        lines += _table(("kpi", "period", "segment", "value", "target", "alerted"), [
            (k["kpi"], f"{k['period']} from {k['period_start']}",
             ", ".join(f"{a}={b}" for a, b in k["segment"].items()) or "-", *_kpi_figures(k),
             "yes" if k["alerted"] else "next alerting pass") for k in found["kpis"]])
    sent = found["sent"]
    lines += ["", f"Alerts decided recently: {len(sent)}"]
    rows: list[tuple[str, ...]] = []
    for alert in sent:
        when = datetime.fromisoformat(alert["decided_at"]).astimezone(zone).strftime("%Y-%m-%d %H:%M")
        deliveries = alert["deliveries"] or [{"sink": "(no sink configured)", "status": "-", "error": None}]
        for i, d in enumerate(deliveries):
            outcome = d["status"] + (f": {d['error']}" if d.get("error") else "")
            rows.append((when if i == 0 else "", alert["about"] if i == 0 else "", alert["stage"] if i == 0 else "",
                         d["sink"], outcome))
    if rows:
        lines += _table((f"when ({zone.key})", "about", "stage", "sink", "outcome"), rows)
    return "\n".join(lines)


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("alerts", parents=[common], help=cmd_alerts.__doc__)
    p.add_argument("--since", default="24h", help="list the alerts decided within this long (default: 24h)")
    p.add_argument("--limit", type=int, default=50, help="table: at most this many contacts (default: 50)")
    p.add_argument("--format", choices=("table", "json"), default="table", help="output format (default: table)")
