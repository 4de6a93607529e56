"""What is at risk or breached now: the store's open contacts against their targets.

A contact's first-response clock starts as the KPI's does (catalogue 2c): at the customer's first message,
and never before the contact was created (a bot's greeting opens some chats before the visitor writes). An
outbound contact nobody answered has no customer message, so no clock: it is never at risk. The resolution
clock runs from creation to the first resolution, as the resolution KPIs measure it. Calendar time, or with
`[alerts] business_hours` the contact's business time (clock.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone

from kpi_core.alerts.clock import WaitClock
from kpi_core.alerts.targets import ContactTargets
from kpi_core.kpis import segments
from kpi_core.settings import Settings
from kpi_core.store import Store

FIRST_RESPONSE, RESOLUTION = "first_response", "resolution"
AT_RISK, BREACHED = "at_risk", "breached"
RES_AT_RISK, RES_BREACHED = "resolution_at_risk", "resolution_breached"
STAGES = (AT_RISK, BREACHED, RES_AT_RISK, RES_BREACHED)

_START = ("CASE WHEN coalesce(c.is_outbound, 0) = 1 THEN c.first_customer_message_at"
          " ELSE max(c.created_at, coalesce(c.first_customer_message_at, c.created_at)) END")
# The market of a contact is decided from its own country, else its requester's, else its organization's.
_COUNTRY = ("coalesce(c.country, (SELECT p.country FROM people p WHERE p.source = c.source"
            " AND p.source_id = c.requester_id), (SELECT o.country FROM organizations o WHERE o.source = c.source"
            " AND o.source_id = c.organization_id))")


@dataclass(frozen=True)
class Crossing:
    """One contact past a threshold now: `stage` is the furthest it reached for its `clock`."""

    source: str
    contact_id: str
    channel: str
    market: str | None
    group: str | None
    clock: str  # first_response | resolution
    stage: str
    started_at: datetime
    elapsed_s: int
    target_s: int
    crossed_at: datetime  # when it reached `stage`
    due_at: datetime  # when the whole target is (or was) reached, on the contact's clock
    business: bool  # elapsed, target and moments on its business-hours schedule's clock (else calendar time)

    @property
    def key(self) -> str:
        return f"contact:{self.source}:{self.contact_id}:{self.stage}"


def parse_time(text: str) -> datetime:
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def open_contacts_sql(settings: Settings) -> str:
    # The market as the KPI engine decides it (Context.market_of_contact), from the settings alone: watching
    # open contacts needs no KPI computation, so it runs on either store.
    kpis = settings.kpis
    market = segments.market_sql(kpis.markets, kpis.default_market, source="c.source", country=_COUNTRY,
                                 organization="c.organization_id", brand="c.brand_id", tags="c.tags")
    return f"""
    SELECT c.source, c.source_id, c.channel, {market} AS market,
      CASE WHEN c.group_id IS NOT NULL THEN c.source || ':' || c.group_id END AS grp,
      ({_START}) AS start, c.created_at, c.first_agent_reply_at IS NULL AS unanswered,
      c.first_resolved_at IS NULL AS unresolved
    FROM contacts c
    WHERE c.status NOT IN ('resolved', 'closed', 'deleted', 'merged')
      AND ({_START}) IS NOT NULL
      AND (c.first_agent_reply_at IS NULL OR c.first_resolved_at IS NULL)
    ORDER BY c.source, c.created_at
    """


def crossings(store: Store, settings: Settings, now: datetime) -> Iterator[Crossing]:
    """Every open contact at risk or past a watched target at `now`, one per clock (its furthest stage)."""
    alerts = settings.alerts
    targets = ContactTargets(settings)
    clock = WaitClock(settings)
    share = alerts.at_risk_share
    watch_resolution = bool(alerts.resolution_targets)
    for source, contact_id, channel, market, grp, start, created, unanswered, unresolved in store.db.execute(
            open_contacts_sql(settings)):
        schedule = clock.schedule_of(grp, market) if clock.business else None
        business = schedule is not None  # a contact no schedule covers keeps calendar time
        if unanswered and alerts.first_response:
            target = targets.first_response_s(channel, market, grp, business=business)
            found = _stage(clock, schedule, parse_time(start), target, share, now, (AT_RISK, BREACHED))
            if found:
                yield Crossing(source, contact_id, channel, market, grp, FIRST_RESPONSE, *found, business)
        if unresolved and watch_resolution:
            res_target = targets.resolution_s(channel, market, grp)
            if res_target is not None:
                found = _stage(clock, schedule, parse_time(created), res_target, share, now,
                               (RES_AT_RISK, RES_BREACHED))
                if found:
                    yield Crossing(source, contact_id, channel, market, grp, RESOLUTION, *found, business)


def _stage(clock: WaitClock, schedule: int | None, started: datetime, target_s: float, share: float,
           now: datetime, names: tuple[str, str]) -> tuple[str, datetime, int, int, datetime, datetime] | None:
    elapsed = clock.elapsed_s(schedule, started, now)
    if elapsed < share * target_s:
        return None
    due = clock.reached_at(schedule, started, target_s)
    if elapsed >= target_s:
        return names[1], started, int(elapsed), round(target_s), due, due
    return names[0], started, int(elapsed), round(target_s), clock.reached_at(schedule, started, share * target_s), due
