"""Contact reasons: the top tags, ticket types or custom-field values of a period, against the period before.

Share is of all contacts created in the period (deleted ones left out); with tags a contact
counts once per tag, so shares need not add up to 100. Change is the volume change against
the previous period (a range given by dates: the same number of days before it), in percent
(None when the reason is new). A running period is compared like for like, with as many days
of the previous period as it has had so far (`compared_with` says which days, `to_date` true).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from kpi_core.kpis import facts, values
from kpi_core.kpis import periods as P
from kpi_core.kpis.context import Context, kpi_settings
from kpi_core.kpis.segments import SegmentError, json_path
from kpi_core.settings import KpiSettings, Settings
from kpi_core.store import Store


def _reason_sql(by: str, settings: KpiSettings) -> tuple[str, str]:
    """(SQL of the reason value, extra join) for `tag`, `ticket_type` or `custom.FIELD` (or a custom segment)."""
    if by == "tag":
        return "tg.value", ", json_each(f.tags) tg"
    if by == "ticket_type":
        return "f.ticket_type", ""
    key = settings.custom_segments.get(by) or (by[7:] if by.startswith("custom.") and len(by) > 7 else None)
    if key is None:
        raise SegmentError(f"unknown reason source {by!r}; use tag, ticket_type or custom.FIELD")
    return f"json_extract(f.custom, {json_path(key)})", ""


def _counts(ctx: Context, by: str, period: P.Period) -> tuple[int, dict[Any, int]]:
    reason, join = _reason_sql(by, ctx.settings)
    params = {"lo": ctx.bound(period.start), "hi": ctx.bound(period.end)}
    where = "f.is_deleted = 0 AND f.created_at >= :lo AND f.created_at < :hi"
    total = ctx.conn.execute(f"SELECT count(*) FROM kpi_facts f WHERE {where}", params).fetchone()[0]
    rows = ctx.conn.execute(f"SELECT {reason} AS r, count(*) FROM kpi_facts f{join} WHERE {where} AND r IS NOT NULL"
                            f" AND r != '' GROUP BY r", params).fetchall()
    return total, {r: n for r, n in rows}


def top_reasons(store: Store, settings: Settings | KpiSettings, since: date | None = None, until: date | None = None,
                by: str | None = None, limit: int | None = None, *, now: datetime | None = None
                ) -> list[dict[str, Any]]:
    """The top reasons of [since, until) (default: this month) with volume, share and change."""
    ctx = Context(store, kpi_settings(settings), now or datetime.now().astimezone())
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
