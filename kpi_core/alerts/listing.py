"""What `helpdesk-kpi alerts` shows: what is at risk or breached now (and how each was or will be alerted), the
KPIs in breach, and the alerts sent recently with each delivery's outcome. Values only; the CLI prints."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from kpi_core.alerts import state
from kpi_core.alerts.kpi_watch import kpi_breaches
from kpi_core.alerts.messages import contact_label
from kpi_core.alerts.watch import crossings
from kpi_core.settings import Settings
from kpi_core.store import Store

# How a (contact, stage) on record went out, as the listing words it.
HOW = {state.ALERT: "alerted", state.HELD: "held (quiet hours)", state.CAPPED: "in a summary (hourly cap)",
       state.BASELINE: "in the start summary", state.LATE: "in a summary (seen late)"}

# What a summary stands for, by the disposition of the alerts it covers.
SUMMARISED = {state.BASELINE: "past when alerting started", state.LATE: "seen late", state.CAPPED: "over the cap",
              state.HELD: "held in quiet hours"}


def at_risk_now(store: Store, settings: Settings, now: datetime) -> list[dict[str, Any]]:
    """Open contacts at risk or past a target, most overdue first."""
    on_record = state.contact_stages(store.db.conn)
    rows: list[dict[str, Any]] = []
    for c in crossings(store, settings, now):
        how = on_record.get((c.source, c.contact_id, c.stage))
        rows.append({"source": c.source, "contact_id": c.contact_id, "channel": c.channel, "market": c.market,
                     "group": c.group, "stage": c.stage, "elapsed_seconds": c.elapsed_s,
                     "target_seconds": c.target_s, "business_time": c.business, "due_at": state.iso(c.due_at),
                     "due_in_seconds": int((c.due_at - now).total_seconds()),
                     "alert": HOW.get(how, how) if how else "next alerting pass"})
    rows.sort(key=lambda r: r["due_in_seconds"])
    return rows


def kpis_in_breach(store: Store, settings: Settings, now: datetime) -> list[dict[str, Any]]:
    return [{"kpi": b.kpi, "period": b.grain, "period_start": b.period_start, "segment": b.segment,
             "value": b.value, "target": b.target, "unit": b.unit,
             "alerted": state.decided(store.db.conn, b.key)} for b in kpi_breaches(store, settings, now)]


def sent_since(store: Store, since: datetime) -> list[dict[str, Any]]:
    """Alerts and summaries decided since `since`, newest first, each with its deliveries."""
    out = []
    for row in state.recent(store.db.conn, since):
        if row["kind"] == "contact":
            about = contact_label(row)
        elif row["kind"] == "kpi":
            segment = json.loads(row["segment"] or "{}")
            about = row["kpi"] + "".join(f" {k}={v}" for k, v in segment.items())
        else:
            about = f"{row['covers']} {SUMMARISED.get(row['stage'], row['stage'])}"
        out.append({"id": row["id"], "decided_at": row["decided_at"], "kind": row["kind"], "about": about,
                    "stage": row["stage"], "deliveries": row["deliveries"]})
    return out

