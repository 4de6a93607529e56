"""Per-record metrics for write-back, in SQL over the KPI engine's per-contact facts.

Everything here reads the engine's `kpi_facts` (refreshed first, exactly as `compute` does)
and its definitions, so a value written on a ticket is the value that ticket contributes
to the KPIs: first response from the first customer message (outbound contacts) or
creation, to the first public human-agent reply; resolution to the first resolved state;
service level against the channel's first-response target (`Targets.service_level_sql`),
bot-only contacts and contacts still within their target having no value; one-touch as
`one_touch_resolution_pct` counts it; CSAT positives by the engine's scale rule
(`positive_sql`) and NPS on 0-10 (`nps_sql`). Deleted contacts, and the survey answers on
them, are left out. Values are rounded to two decimals.

`repeat_contact` is the only contact metric without a catalogue KPI of its own: the
requester opened another (customer-written) contact within `fcr_window_days` before this
one, the same window FCR uses to look forward. Requester and organization metrics cover
the customers and companies that have at least one contact in the store; their windows
(`contacts_30d`, `csat_pct_90d`...) end now, at the push, not at any one contact.

Notes are read by people, about one contact: besides the metrics, a note template may name
that contact's previous contact by the same customer (`previous_contact_id`, and
`previous_contact_ago`, e.g. "2 days"), and the latest CSAT answer in words on its own
scale ("good", "4 of 5"), see `ContactRecord.note_values` and `SourceMetrics.requester_notes`.

With an order feed, customers also get `orders_90d`, `last_order_days_ago` and `clv_90d` from
their orders, matched as the value KPIs match them (catalogue 3b).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from kpi_core.kpis import facts
from kpi_core.kpis.catalogue import ANSWERABLE
from kpi_core.kpis.context import Context
from kpi_core.kpis.scales import nps_sql, positive_sql
from kpi_core.model import SCALES
from kpi_core.settings import KpiSettings
from kpi_core.store import Store
from kpi_core.writeback.convert import decimal_string

DIGITS = 2
RECENT_DAYS, SURVEY_DAYS = 30, 90

_CONTACTS_SQL = """
SELECT f.source_id, c.status, c.requester_id, c.organization_id, f.created_at, f.frt_s, f.frt_bh_s, f.res_s,
  f.agent_replies, f.reopens, f.first_resolved_at,
  CASE WHEN {answerable} THEN CASE WHEN f.frt_s IS NOT NULL THEN f.frt_s <= {sl}
                                   WHEN :now - f.start_epoch > {sl} THEN 0 END END AS sla_met,
  f.start_epoch IS NOT NULL AS customer_started, unixepoch(f.created_at) AS created_epoch
FROM kpi_facts f JOIN contacts c ON c.source = f.source AND c.source_id = f.source_id
WHERE f.source = :source AND f.is_deleted = 0
"""

_SURVEYS_SQL = """
SELECT s.kind, s.score, s.created_at, {pos} AS positive, {nps} AS nps, s.scale,
  coalesce(s.requester_id, c.requester_id) AS requester, coalesce(c.organization_id, p.organization_id) AS org
FROM survey_responses s
LEFT JOIN contacts c ON c.source = s.source AND c.source_id = s.contact_id
LEFT JOIN people p ON p.source = s.source AND p.source_id = coalesce(s.requester_id, c.requester_id)
WHERE s.source = :source AND s.kind IN ('csat', 'nps') AND (c.status IS NULL OR c.status NOT IN ('deleted', 'merged'))
ORDER BY s.created_at, s.source_id
"""


@dataclass
class ContactRecord:
    """A contact with what the planner needs besides its metrics."""

    id: str
    status: str
    requester_id: str | None
    created_at: str
    metrics: dict[str, Any]
    # Note-only values, already in words (previous_contact_id, previous_contact_ago).
    note_values: dict[str, str] = field(default_factory=dict)


@dataclass
class SourceMetrics:
    """Every per-record metric of one helpdesk: by contact, requester and organization id."""

    contacts: dict[str, ContactRecord] = field(default_factory=dict)
    requesters: dict[str, dict[str, Any]] = field(default_factory=dict)
    organizations: dict[str, dict[str, Any]] = field(default_factory=dict)
    # By requester id: metrics as a note words them where a number would mislead (last_csat -> "good").
    requester_notes: dict[str, dict[str, str]] = field(default_factory=dict)


def context(store: Store, settings: KpiSettings, now: datetime | None = None) -> Context:
    """The engine's context with its per-contact facts brought up to date."""
    ctx = Context(store, settings, now or datetime.now(timezone.utc))
    with ctx.writing():
        facts.refresh(ctx)
    return ctx


def for_source(ctx: Context, source: str) -> SourceMetrics:
    """The metrics of every contact, requester and organization of `source`."""
    out = SourceMetrics()
    sql = _CONTACTS_SQL.format(answerable=ANSWERABLE, sl=ctx.targets.service_level_sql())
    rows = ctx.conn.execute(sql, {**ctx.params(), "source": source}).fetchall()
    recent = _iso(ctx.now - timedelta(days=RECENT_DAYS))
    survey_since = _iso(ctx.now - timedelta(days=SURVEY_DAYS))
    repeats = _repeat_contacts(rows, ctx.settings.fcr_window_days * 86400)
    by_requester: dict[str, list[tuple[str, str, int | None]]] = defaultdict(list)
    by_org: dict[str, list[tuple[str, str, int | None]]] = defaultdict(list)
    for (cid, status, requester, org, created, frt, frt_bh, res, replies, reopens, resolved, sla, _, _) in rows:
        out.contacts[cid] = ContactRecord(cid, status, requester, created, {
            "first_response_minutes": _minutes(frt),
            "first_response_minutes_bh": _minutes(frt_bh) if ctx.hours.configured else None,
            "resolution_hours": _round(res / 3600) if res is not None else None,
            "agent_touches": replies,
            "one_touch": (replies == 1 and reopens == 0) if resolved is not None and replies >= 1 else None,
            "sla_met": None if sla is None else bool(sla),
            "reopens": reopens,
            "repeat_contact": repeats[cid].repeat if cid in repeats else None,
        }, repeats[cid].note_values() if cid in repeats else {})
        if requester is not None:
            by_requester[requester].append((created, requester, frt))
        if org is not None:
            by_org[org].append((created, requester or "", frt))
    surveys_sql = _SURVEYS_SQL.format(pos=positive_sql("s"), nps=nps_sql("s"))
    surveys = ctx.conn.execute(surveys_sql, {"source": source}).fetchall()
    answers_by_requester, answers_by_org = _answers(surveys)
    known = _ids(ctx, "people", source, "role = 'customer'")
    for requester, contacts in by_requester.items():
        if requester in known:
            answers = answers_by_requester.get(requester, [])
            out.requesters[requester] = _people_metrics(contacts, answers, recent, survey_since, per_requester=True)
            out.requester_notes[requester] = _requester_words(answers)
    for requester, values in _order_metrics(ctx, source, set(out.requesters)).items():
        out.requesters[requester].update(values)
    known = _ids(ctx, "organizations", source)
    for org, contacts in by_org.items():
        if org in known:
            out.organizations[org] = _people_metrics(contacts, answers_by_org.get(org, []), recent, survey_since,
                                                     per_requester=False)
    return out


@dataclass(frozen=True)
class Repeat:
    """A customer-started contact against the same requester's previous one (if any)."""

    repeat: bool  # the previous one was started within the window before this one
    previous_id: str | None = None
    gap_seconds: int | None = None

    def note_values(self) -> dict[str, str]:
        if self.previous_id is None or self.gap_seconds is None:
            return {}
        return {"previous_contact_id": f"#{self.previous_id}", "previous_contact_ago": ago(self.gap_seconds)}


def _repeat_contacts(rows: list[tuple[Any, ...]], window_s: int) -> dict[str, Repeat]:
    """Customer-started contacts, each with whether its requester started another one within the window before it."""
    started: dict[str, list[tuple[str, str, int]]] = defaultdict(list)
    for cid, _, requester, _, created, *_, customer_started, created_epoch in rows:
        if requester is not None and customer_started:
            started[requester].append((created, cid, created_epoch))
    out = {}
    for contacts in started.values():
        contacts.sort()
        previous: tuple[str, int] | None = None
        for _, cid, epoch in contacts:
            if previous is None:
                out[cid] = Repeat(False)
            else:
                gap = epoch - previous[1]
                out[cid] = Repeat(gap <= window_s, previous[0], gap)
            previous = (cid, epoch)
    return out


def ago(seconds: int) -> str:
    """A span as people say it: "40 minutes", "5 hours", "2 days" (rounded down, at least a minute)."""
    for unit, size in (("day", 86400), ("hour", 3600)):
        if seconds >= size:
            count = seconds // size
            return f"{count} {unit}{'' if count == 1 else 's'}"
    minutes = max(1, seconds // 60)
    return f"{minutes} minute{'' if minutes == 1 else 's'}"


def csat_words(score: float, scale: str, positive: int | None) -> str:
    """A CSAT answer as people read it: "good"/"bad", "4 of 5" on a scale of points, else by its class."""
    if scale == "good_bad":
        return "good" if score >= 1 else "bad"
    points = SCALES.get(scale)
    bounds = (points.low, points.high) if points is not None and not points.categorical else _range(scale)
    if bounds is not None and bounds[0] <= score <= bounds[1]:
        return f"{decimal_string(_tidy(score))} of {bounds[1]}"
    if positive is None:
        return f"{decimal_string(_tidy(score))} (scale {scale})"
    return "positive" if positive else "not positive"  # a vendor's coded scale: its answers are categories


def _range(scale: str) -> tuple[int, int] | None:
    low, _, high = scale.partition("-")
    return (int(low), int(high)) if low.isdigit() and high.isdigit() and int(low) < int(high) else None


Answer = tuple[str, float, str, int | None, float | None, str]  # kind, score, created_at, positive, nps, scale


def _answers(rows: list[tuple[Any, ...]]) -> tuple[dict[str, list[Answer]], dict[str, list[Answer]]]:
    by_requester: dict[str, list[Answer]] = defaultdict(list)
    by_org: dict[str, list[Answer]] = defaultdict(list)
    for kind, score, created, positive, nps, scale, requester, org in rows:  # oldest first
        answer = (kind, score, created, positive, nps, scale)
        if requester is not None:
            by_requester[requester].append(answer)
        if org is not None:
            by_org[org].append(answer)
    return by_requester, by_org


def _people_metrics(contacts: list[tuple[str, str, int | None]], answers: list[Answer], recent: str,
                    survey_since: str, *, per_requester: bool) -> dict[str, Any]:
    last_30 = [c for c in contacts if c[0] >= recent]
    requesters = {r for _, r, _ in last_30 if r}
    with_requester = sum(1 for _, r, _ in last_30 if r)
    repeats = max(len(last_30) - 1, 0) if per_requester else with_requester - len(requesters)
    frts = sorted(frt for created, _, frt in contacts if created >= survey_since and frt is not None)
    csat = [a for a in answers if a[0] == "csat"]
    classified = [a[3] for a in csat if a[2] >= survey_since and a[3] is not None]
    nps = [a[4] for a in answers if a[0] == "nps" and a[4] is not None]
    last_nps = _round(nps[-1]) if nps else None
    return {
        "contacts_30d": len(last_30),
        "repeat_contacts_30d": repeats,
        "last_csat": _tidy(csat[-1][1]) if csat else None,
        "csat_pct_90d": _round(100.0 * sum(classified) / len(classified)) if classified else None,
        "last_nps": last_nps,
        "nps_category": None if last_nps is None else
        ("promoter" if last_nps >= 9 else "detractor" if last_nps <= 6 else "passive"),
        "first_response_minutes_median_90d": _minutes(frts[(len(frts) + 1) // 2 - 1]) if frts else None,
    }


_ORDERS_SQL = """
SELECT p.source_id, o.rowid, o.created_at, o.total, o.refunds FROM people p
JOIN orders o ON o.customer_key = p.email_hash
WHERE p.source = :source AND p.email_hash IS NOT NULL AND o.cancelled_at IS NULL
UNION
SELECT substr(o.requester, length(:source) + 2), o.rowid, o.created_at, o.total, o.refunds FROM orders o
WHERE o.requester >= :source || ':' AND o.requester < :source || ';' AND o.cancelled_at IS NULL
"""


def _order_metrics(ctx: Context, source: str, requesters: set[str]) -> dict[str, dict[str, Any]]:
    """`orders_90d`, `last_order_days_ago` and `clv_90d` of the customers `requesters`, from the order feed (as
    the value KPIs match them: the keyed e-mail hash, or an order naming the requester; each order once). Without
    an order feed, none: a customer's zero orders would then say nothing."""
    if ctx.conn.execute("SELECT 1 FROM orders LIMIT 1").fetchone() is None:
        return {}
    since = ctx.now - timedelta(days=SURVEY_DAYS)
    found = {r: _Orders() for r in requesters}
    for requester, _, created, total, refunds in ctx.conn.execute(_ORDERS_SQL, {"source": source}):
        if requester in found:
            found[requester].add(ctx.now, since, _moment(created), float(total or 0.0),
                                 [(_moment(r["at"]), float(r["amount"])) for r in json.loads(refunds or "[]")])
    return {r: {"orders_90d": o.count, "last_order_days_ago": o.days_ago, "clv_90d": _round(o.value)}
            for r, o in found.items()}


@dataclass
class _Orders:
    """One customer's orders as write-back sums them up."""

    count: int = 0  # placed in the window
    days_ago: int | None = None  # since the latest order placed by now
    value: float = 0.0  # totals placed in the window minus refunds dated in it

    def add(self, now: datetime, since: datetime, placed: datetime, total: float,
            refunds: list[tuple[datetime, float]]) -> None:
        if placed <= now:
            days = (now - placed).days
            self.days_ago = days if self.days_ago is None else min(self.days_ago, days)
        if since < placed <= now:
            self.count += 1
            self.value += total
        self.value -= sum(amount for at, amount in refunds if since < at <= now)


def _moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc)


def _requester_words(answers: list[Answer]) -> dict[str, str]:
    csat = [a for a in answers if a[0] == "csat"]
    if not csat:
        return {"last_csat": "no answer yet"}
    _, score, _, positive, _, scale = csat[-1]
    return {"last_csat": csat_words(score, scale, positive)}


def _ids(ctx: Context, table: str, source: str, where: str = "1") -> set[str]:
    rows = ctx.conn.execute(f"SELECT source_id FROM [{table}] WHERE source = ? AND {where}", [source]).fetchall()
    return {r[0] for r in rows}


def _minutes(seconds: int | float | None) -> float | int | None:
    return None if seconds is None else _round(seconds / 60)


def _round(value: float) -> float | int:
    return _tidy(round(value, DIGITS))


def _tidy(value: float) -> float | int:
    """Whole numbers as ints, so `4` rather than `4.0` goes into text fields and notes."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
