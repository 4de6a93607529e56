"""What an alert says: a title and a few lines (the same for webhook, Slack, e-mail and note), and the generic
JSON body of a webhook. Alerts name contacts by source and id, never by customer: no personal data leaves here."""

from __future__ import annotations

import html
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from kpi_core.kpis.catalogue import BY_ID
from kpi_core.kpis.scorecard import format_target, format_value, shown

STAGE_WORDS = {
    "at_risk": "first response at risk",
    "breached": "first response target missed",
    "resolution_at_risk": "resolution at risk",
    "resolution_breached": "resolution target missed",
}
SUMMARY_EXAMPLES = 20


@dataclass(frozen=True)
class Message:
    title: str
    lines: list[str]

    @property
    def text(self) -> str:
        return "\n".join([self.title, "", *self.lines]) + "\n"

    def html(self) -> str:
        items = "".join(f"<li>{html.escape(line)}</li>" for line in self.lines)
        return (f"<!doctype html><html><body><h2>{html.escape(self.title)}</h2><ul>{items}</ul>"
                "<p style=\"color:#666\">Sent by helpdesk-kpi alerts.</p></body></html>")


def duration(seconds: float) -> str:
    """"45s", "3m 10s", "2h 05m", "1d 3h": the two largest units."""
    s = round(abs(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 86400}d {s % 86400 // 3600}h"


def contact_label(row: Mapping[str, Any]) -> str:
    return f"{row['source']} #{row['contact_id']}"


def business_time(row: Mapping[str, Any]) -> bool:
    """Whether a contact alert's figures are business time (m033; alerts decided before it: calendar time)."""
    return bool(row.get("business"))


def contact_line(row: Mapping[str, Any]) -> str:
    where = ", ".join(str(v) for v in (row.get("channel"), row.get("market"), row.get("grp")) if v)
    return (f"{contact_label(row)} ({where}): {STAGE_WORDS.get(row['stage'], row['stage'])},"
            f" {duration(row['elapsed_s'])} of {duration(row['target_s'])}"
            + (" business time" if business_time(row) else ""))


def render(event: Mapping[str, Any], covered: Sequence[Mapping[str, Any]], zone: ZoneInfo) -> Message:
    if event["kind"] == "contact":
        return _contact(event, zone)
    if event["kind"] == "kpi":
        return _kpi(event)
    return _summary(event, covered)


def _local(text: str, zone: ZoneInfo) -> str:
    return datetime.fromisoformat(text).astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")


def _contact(event: Mapping[str, Any], zone: ZoneInfo) -> Message:
    stage = event["stage"]
    words = STAGE_WORDS.get(stage, stage)
    title = f"{words[0].upper()}{words[1:]}: {contact_label(event)}"
    clock = "waiting for a first reply" if stage in ("at_risk", "breached") else "open, not resolved"
    # Business time says so at each figure: "2h 15m" on a Monday for a Friday-evening contact is not calendar time.
    unit = " of business time" if business_time(event) else ""
    lines = [f"{duration(event['elapsed_s'])}{unit} {clock}; target {duration(event['target_s'])}{unit}",
             f"Channel {event['channel']}" + (f", market {event['market']}" if event.get("market") else "")
             + (f", group {event['grp']}" if event.get("grp") else ""),
             f"{'Missed' if stage.endswith('breached') else 'At risk'} since {_local(event['crossed_at'], zone)}"]
    return Message(title, lines)


def _kpi(event: Mapping[str, Any]) -> Message:
    kpi = BY_ID[event["kpi"]]
    target: Any = json.loads(event["target"]) if event.get("target") else None
    how = shown(kpi.id, kpi.unit, event["value"], target)
    segment = json.loads(event["segment"] or "{}")
    scope = ", ".join(f"{k} {v}" for k, v in segment.items())
    period = "today" if event["grain"] == "day" else "this week"
    title = f"KPI in breach {period}: {kpi.name} ({kpi.id}{', ' + scope if scope else ''})"
    lines = [f"{format_value(kpi.id, event['value'], kpi.unit, target)} against a target of"
             f" {format_target(kpi, target, how)}",
             f"Period from {event['period_start']} ({event['grain']}, still running)"]
    return Message(title, lines)


def _summary(event: Mapping[str, Any], covered: Sequence[Mapping[str, Any]]) -> Message:
    reason = event["stage"]
    n = len(covered)
    contacts = [r for r in covered if r["kind"] == "contact"]
    kpis = [r for r in covered if r["kind"] == "kpi"]
    stages = Counter(STAGE_WORDS.get(r["stage"], r["stage"]) for r in contacts)
    breakdown = "; ".join(f"{words}: {count}" for words, count in stages.most_common())
    c = _count(len(contacts), "contact")
    if reason == "baseline":
        title = (f"{c} already past their first-response target when alerting started"
                 if stages and set(stages) <= {STAGE_WORDS["breached"]}
                 else f"{c} already at risk or past a target when alerting started")
    elif reason == "late":
        title = f"{c} found past their targets long after they crossed them"
    elif reason == "capped":
        title = f"{_count(n, 'more alert')} past the hourly cap"
    else:
        title = f"{_count(n, 'alert')} held during quiet hours"
    lines = [breakdown] if breakdown else []
    if kpis:
        lines.append(f"{len(kpis)} KPI breaches: {', '.join(sorted({r['kpi'] for r in kpis}))}")
    lines += [contact_line(r) for r in contacts[:SUMMARY_EXAMPLES]]
    if len(contacts) > SUMMARY_EXAMPLES:
        lines.append(f"… and {len(contacts) - SUMMARY_EXAMPLES} more (helpdesk-kpi alerts lists them)")
    return Message(title, lines)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def webhook_json(event: Mapping[str, Any], message: Message, covers: int) -> dict[str, Any]:
    """The generic body: the alert's facts plus its title and text, with a stable id receivers may dedupe by."""
    body: dict[str, Any] = {"id": f"helpdesk-kpi-alert-{event['id']}", "kind": event["kind"],
                            "stage": event["stage"], "title": message.title, "text": message.text,
                            "lines": message.lines, "decided_at": event["decided_at"]}
    if event["kind"] == "contact":
        body.update(source=event["source"], contact_id=event["contact_id"], channel=event["channel"],
                    market=event["market"], group=event["grp"], elapsed_seconds=event["elapsed_s"],
                    target_seconds=event["target_s"], business_time=business_time(event),
                    crossed_at=event["crossed_at"])
    elif event["kind"] == "kpi":
        body.update(kpi=event["kpi"], period=event["grain"], period_start=event["period_start"],
                    segment=json.loads(event["segment"] or "{}"), value=event["value"],
                    target=json.loads(event["target"]) if event.get("target") else None)
    else:
        body["covers"] = covers
    return body
