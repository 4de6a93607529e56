"""Contact reasons: the top tags, ticket types, topics or custom-field values of a period, against the period before.

Share is of all contacts created in the period (deleted ones left out); with tags a contact
counts once per tag, so shares need not add up to 100. Change is the volume change against
the previous period (a range given by dates: the same number of days before it), in percent
(None when the reason is new). A running period is compared like for like, with as many days
of the previous period as it has had so far (`compared_with` says which days, `to_date` true).

With an order feed, `top_refunded_skus` ranks the SKUs of the orders refunded in a period, each
with the contacts its customers made around the refunds (catalogue 3b).
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import date, datetime
from typing import Any

from kpi_core.kpis import facts, values
from kpi_core.kpis import periods as P
from kpi_core.kpis.context import Context, context_for
from kpi_core.kpis.segments import SegmentError, json_path
from kpi_core.settings import KpiSettings, Settings
from kpi_core.store import Store


def _reason_sql(by: str, settings: KpiSettings) -> tuple[str, str]:
    """(SQL of the reason value, extra join) for `tag`, `ticket_type`, `topic` or `custom.FIELD` (or a custom
    segment).

    `topic` is the topic the `[insight] topics` rules gave the contact's first customer message when it was
    synced: the rules in force then, since the text is not kept to apply later rules to."""
    if by == "tag":
        return "tg.value", ", json_each(f.tags) tg"
    if by == "ticket_type":
        return "f.ticket_type", ""
    if by == "topic":
        return "f.topic", ""
    key = settings.custom_segments.get(by) or (by[7:] if by.startswith("custom.") and len(by) > 7 else None)
    if key is None:
        raise SegmentError(f"unknown reason source {by!r}; use tag, ticket_type, topic or custom.FIELD")
    return f"json_extract(f.custom, {json_path(key)})", ""


def _counts(ctx: Context, by: str, period: P.Period) -> tuple[int, dict[Any, int]]:
    reason, join = _reason_sql(by, ctx.settings)
    params = {"lo": ctx.bound(period.start), "hi": ctx.bound(period.end)}
    where = "f.is_deleted = 0 AND f.created_at >= :lo AND f.created_at < :hi"
    total = ctx.conn.execute(f"SELECT count(*) FROM kpi_facts f WHERE {where}", params).fetchone()[0]
    # The reason named in a subquery: PostgreSQL's WHERE cannot name a column alias (SQLite's can).
    rows = ctx.conn.execute(f"SELECT r, count(*) FROM (SELECT {reason} AS r FROM kpi_facts f{join} WHERE {where})"
                            f" WHERE r IS NOT NULL AND r != '' GROUP BY r", params).fetchall()
    return total, {r: n for r, n in rows}


def top_reasons(store: Store, settings: Settings | KpiSettings, since: date | None = None, until: date | None = None,
                by: str | None = None, limit: int | None = None, *, now: datetime | None = None
                ) -> list[dict[str, Any]]:
    """The top reasons of [since, until) (default: this month) with volume, share and change."""
    ctx = context_for(store, settings, now)
    period = P.resolve(None, since, until, ctx.now, ctx.zone)[0]
    by = by or ctx.settings.reasons.by
    limit = limit or ctx.settings.reasons.top
    if not facts.built(ctx):
        with ctx.writing():
            facts.refresh(ctx)
    total, now_counts = _counts(ctx, by, period)
    before, to_date = values.compared_with(period, ctx.today)
    compared = {"period_start": before.start.isoformat(), "period_end": before.end.isoformat(), "to_date": to_date}
    prev_total, prev_counts = _counts(ctx, by, before)
    excluded = set(ctx.settings.reasons.exclude)
    ranked = sorted(((r, n) for r, n in now_counts.items() if str(r) not in excluded), key=lambda x: (-x[1], str(x[0])))
    out = []
    for reason, volume in ranked[:limit]:
        previous = prev_counts.get(reason, 0)
        out.append({
            "reason": reason, "by": by, "period_start": period.start.isoformat(), "period_end": period.end.isoformat(),
            "volume": volume, "share_pct": round(100.0 * volume / total, 2) if total else None,
            "previous_volume": previous,
            "previous_share_pct": round(100.0 * previous / prev_total, 2) if prev_total else None,
            "change_pct": round(100.0 * (volume - previous) / previous, 2) if previous else None,
            "share_change_pts": (round(100.0 * volume / total - 100.0 * previous / prev_total, 2)
                                 if total and prev_total else None),
            "compared_with": dict(compared),
        })
    return out


# The refunds dated in [lo, hi) of orders not cancelled, one row per SKU line of the refunded order, with each
# contact of the same customer (matched as the value KPIs match: keyed e-mail hash or explicit requester) created
# within `window` seconds before or after the refund. A contact the customer never wrote in is no contact here.
_REFUNDED_SQL = """
WITH refund AS (
  SELECT o.rowid AS oid, r.key AS nth, o.customer_key, o.requester, o.lines, {at} AS at_e
  FROM orders o, json_each(o.refunds) r
  WHERE o.cancelled_at IS NULL AND json_extract(r.value, '$.at') >= :lo AND json_extract(r.value, '$.at') < :hi),
line AS (
  SELECT refund.*, json_extract(l.value, '$.sku') AS sku,
    coalesce(CAST(json_extract(l.value, '$.quantity') AS REAL), 1) AS qty
  FROM refund, json_each(refund.lines) l WHERE json_extract(l.value, '$.sku') IS NOT NULL),
customer AS (  -- the customer's helpdesk requesters, through the indexed people and contacts tables
  SELECT DISTINCT line.customer_key, line.requester, p.source, p.source_id FROM line
  JOIN people p ON p.email_hash = line.customer_key
  UNION SELECT DISTINCT line.customer_key, line.requester, substr(line.requester, 1, instr(line.requester, ':') - 1),
    substr(line.requester, instr(line.requester, ':') + 1) FROM line WHERE line.requester IS NOT NULL),
around AS (
  SELECT cu.customer_key, cu.requester, f.source || ':' || f.source_id AS contact, f.tags, f.created_epoch
  FROM customer cu JOIN contacts c ON c.source = cu.source AND c.requester_id = cu.source_id
  JOIN kpi_facts f ON f.source = c.source AND f.source_id = c.source_id
  WHERE f.is_deleted = 0 AND f.start_epoch IS NOT NULL)
SELECT line.sku, line.oid, line.nth, line.qty, a.contact, a.tags FROM line
LEFT JOIN around a ON a.customer_key IS line.customer_key AND a.requester IS line.requester
  AND abs(a.created_epoch - line.at_e) <= :window
"""
SAMPLE = 5  # contact ids shown per SKU


def top_refunded_skus(store: Store, settings: Settings | KpiSettings, since: date | None = None,
                      until: date | None = None, limit: int | None = None, *, now: datetime | None = None
                      ) -> list[dict[str, Any]]:
    """The SKUs of the orders refunded in [since, until) (default: this month), the most refunded first: refunds
    (a refund of an order with the SKU), the quantity on those orders, and the contacts around them (created within
    `[kpis] refund_window_days` before or after a refund by the same customer), their share of the refunds, a few
    of their ids and their top tags, so a product's returns can be read beside what its customers wrote."""
    ctx = context_for(store, settings, now)
    period = P.resolve(None, since, until, ctx.now, ctx.zone)[0]
    limit = limit or ctx.settings.reasons.top
    if not facts.built(ctx) or ctx.conn.execute("SELECT 1 FROM kpi_dirty_contacts LIMIT 1").fetchone():
        with ctx.writing():
            facts.refresh(ctx)
    params = {"lo": ctx.bound(period.start), "hi": ctx.bound(period.end),
              "window": ctx.settings.refund_window_days * 86400}
    sql = _REFUNDED_SQL.format(at=facts.epoch_sql(ctx.conn, "json_extract(r.value, '$.at')"))
    refunds: dict[str, dict[tuple[int, int], float]] = {}
    contacts: dict[str, dict[str, list[str]]] = {}
    helped: dict[str, set[tuple[int, int]]] = {}
    for sku, oid, nth, qty, contact, tags in ctx.conn.execute(sql, params):
        refunds.setdefault(sku, {})[(oid, nth)] = float(qty or 0)
        if contact is not None:
            contacts.setdefault(sku, {})[contact] = json.loads(tags or "[]")
            helped.setdefault(sku, set()).add((oid, nth))
    ranked = sorted(refunds, key=lambda s: (-len(refunds[s]), str(s)))
    out = []
    for sku in ranked[:limit]:
        around = contacts.get(sku, {})
        tags = Counter(t for ts in around.values() for t in ts)
        out.append({
            "sku": sku, "period_start": period.start.isoformat(), "period_end": period.end.isoformat(),
            "refunds": len(refunds[sku]), "quantity": _whole(sum(refunds[sku].values())),
            "contacts": len(around),
            "refunds_with_contact_pct": round(100.0 * len(helped.get(sku, set())) / len(refunds[sku]), 2),
            "contact_ids": sorted(around)[:SAMPLE],
            "top_tags": [t for t, _ in sorted(tags.items(), key=lambda x: (-x[1], x[0]))[:3]],
        })
    return out


def _whole(number: float) -> float | int:
    return int(number) if float(number).is_integer() else number
