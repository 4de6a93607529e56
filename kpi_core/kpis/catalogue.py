"""The KPI catalogue as data: every KPI's id, meaning, anchor, unit, direction, target and measure.

A measure is the query that computes the KPI, written as SQL fragments over one row of
`kpi_facts` (alias `f`, one row per contact) or of `survey_responses` (alias `s`). The
engine (`engine.py`) gathers the fragments of all KPIs sharing an anchor into a single
grouped query per period grain and segmentation. Fragments may use the bound parameters
`:now` (epoch seconds of the computation), `:abandon_s`, `:window_s`, and for the value KPIs
(catalogue 3b, rows of the order feed under alias `o` for those anchored on orders) `:conv_s`,
`:refund_s` and `:orders_from`, and the
placeholders `{sl}` (the contact's service-level threshold in seconds) and `{pos}` (1/0/NULL:
is this CSAT answer positive). Fragments run in DuckDB (the engine's columnar copy, columns.py)
and some in SQLite too (write-back's metrics): they keep to SQL both read alike (CASE for
booleans used as numbers, no integer `/`). The ids are public names: never rename one.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Final


class Anchor(StrEnum):
    """The event that places a contact (or a survey answer) in a period."""

    CREATED = "created_at"
    FIRST_RESOLVED = "first_resolved_at"
    LAST_RESOLVED = "last_resolved_at"
    RESPONSE = "response created_at"
    PERIOD_END = "period end"
    ORDER = "order created_at"  # an order of the order feed (alias `o`), and each refund at its own date


class Direction(StrEnum):
    HIGHER = "higher"
    LOWER = "lower"


class Group(StrEnum):
    """How the scorecard groups KPIs."""

    SPEED = "speed"
    RESOLUTION = "resolution"
    SATISFACTION = "satisfaction"
    COST = "cost"
    COVERAGE = "coverage"
    VALUE = "value"
    INSIGHT = "insight"  # conversation insight: languages, sentiment and escalations read from the messages


# --- measures: how a KPI's value comes out of grouped rows ---------------------------


@dataclass(frozen=True)
class Count:
    """An aggregate that is the value itself; 0 when nothing is counted."""

    sql: str


@dataclass(frozen=True)
class Sum:
    """An aggregate amount that is the value itself (currency); 0 when nothing is summed."""

    sql: str


@dataclass(frozen=True)
class Share:
    """Rows meeting `num` among rows meeting `den` (both row conditions), in percent."""

    num: str
    den: str


@dataclass(frozen=True)
class Ratio:
    """Aggregate `num` over aggregate `den`, times `scale` (100 for percentages)."""

    num: str
    den: str
    scale: float = 100.0


@dataclass(frozen=True)
class Mean:
    """Arithmetic mean of a row value (NULL values left out), times `factor` (unit conversion)."""

    expr: str
    factor: float = 1.0


@dataclass(frozen=True)
class Percentile:
    """Nearest-rank percentile: the value at rank ceil(p*n) of the n sorted values; p = num/den."""

    expr: str
    num: int
    den: int
    factor: float = 1.0


@dataclass(frozen=True)
class Distinct:
    """How many distinct non-NULL values `expr` takes (computed beside SQL, not additive)."""

    expr: str


@dataclass(frozen=True)
class Repeat:
    """(rows with a value of `expr` - distinct values of `expr`) / rows, in percent."""

    expr: str


@dataclass(frozen=True)
class InputRatio:
    """A business input against an aggregate: input/aggregate (cost) or aggregate/input (orders)."""

    input: str  # operating_cost | orders
    aggregate: str
    input_on_top: bool


@dataclass(frozen=True)
class Special:
    """Computed by its own query in the engine (backlog, channel mix, retention, utilization)."""

    name: str


Measure = Count | Sum | Share | Ratio | Mean | Percentile | Distinct | Repeat | InputRatio | Special


@dataclass(frozen=True)
class Kpi:
    id: str
    name: str
    definition: str
    anchor: Anchor
    unit: str
    direction: Direction | None  # None: no better way (volume, mix) -> status "info" unless given a band
    default_target: float | None
    group: Group
    measure: Measure
    business_hours: bool = False  # a `_bh` variant, present only when schedules are configured
    hidden: bool = False  # internal figure for diagnostics, not listed unless asked for
    target_of: str | None = None  # take the target of another KPI


MINUTES: Final = 1 / 60
HOURS: Final = 1 / 3600

# Row conditions shared by several KPIs.
ANSWERABLE = "f.start_epoch IS NOT NULL AND f.bot_only = 0"  # bot-only and never-customer-written left out
LIVE = "f.channel IN ('chat', 'messaging', 'phone')"
# The customer wrote (catalogue 2c): an outbound contact nobody answered has no start and counts only in the KPIs of
# COUNTS_UNANSWERED_OUTBOUND.
CUSTOMER_WROTE = "f.start_epoch IS NOT NULL"
COUNTS_UNANSWERED_OUTBOUND: Final = frozenset(
    {"ticket_volume", "channel_mix_pct", "backlog", "interactions_per_order", "cost_per_interaction"})
# Abandonment is decided once, abandon_after after the customer's first message (catalogue 2c), so a closed
# period keeps its value when a late reply arrives; until then a contact without a reply is undecided.
ABANDONABLE = (f"{LIVE} AND f.outbound = 0 AND f.bot_only = 0"
               " AND (f.frt_s IS NOT NULL OR f.start_epoch + :abandon_s <= :now)")
NOT_ANSWERED_IN_TIME = "f.frt_s IS NULL OR f.frt_s > :abandon_s"
WINDOW_PASSED = "f.first_resolved_epoch + :window_s <= :now"
# The requester's next customer-started contact came later than the window (or never).
NO_RETURN = "(f.next_contact_epoch IS NULL OR f.next_contact_epoch > f.first_resolved_epoch + :window_s)"
# Value KPIs (catalogue 3b). A KPI that needs orders before a contact leaves out contacts created less than
# VALUE_DAYS after the feed's earliest order (`:orders_from`, bound by the engine; far in the future without a
# feed). Windows are (0, N] days after their anchor, and a contact counts once its window has passed.
DAY_S: Final = 86400
VALUE_DAYS: Final = 90
FEED_COVERS = "f.created_at >= :orders_from"
PRE_SALES = (f"f.shop_known = 1 AND f.ordered_before = 0 AND f.created_epoch + :conv_s <= :now AND {FEED_COVERS}")
CONVERTED = "f.next_order_epoch <= f.created_epoch + :conv_s"
_SL_STILL_OPEN = ":now - f.start_epoch > {sl}"
_SL_BH_STILL_OPEN = "kpi_bh(f.schedule, f.start_epoch, :now) > {sl}"


def _csat(expr: str) -> str:
    return f"CASE WHEN s.kind = 'csat' THEN {expr} END"


def _survey_kpis() -> list[Kpi]:
    return [
        Kpi("csat_pct", "CSAT", "positive CSAT responses / all CSAT responses (good; 4-5 of 1-5;"
            " a source's coded scale: its positive codes; else the top 20 % of the scale)",
            Anchor.RESPONSE, "%", Direction.HIGHER, 90.0,
            Group.SATISFACTION, Ratio("sum(" + _csat("{pos}") + ")", "count(" + _csat("{pos}") + ")")),
        Kpi("csat_responses", "CSAT responses", "count of CSAT responses whose positivity is known", Anchor.RESPONSE,
            "count", None, None, Group.SATISFACTION, Count("count(" + _csat("{pos}") + ")")),
        Kpi("csat_response_rate_pct", "CSAT coverage", "resolved contacts with a CSAT response / resolved contacts",
            Anchor.FIRST_RESOLVED, "%", Direction.HIGHER, None, Group.SATISFACTION,
            Share("f.csat_classified > 0", "1")),
        Kpi("nps", "Net Promoter Score", "% promoters (9-10) - % detractors (0-6) of NPS responses",
            Anchor.RESPONSE, "score", Direction.HIGHER, 50.0, Group.SATISFACTION,
            Ratio("sum(CASE WHEN s.kind = 'nps' THEN CASE WHEN {nps} >= 9 THEN 1 WHEN {nps} <= 6 THEN -1"
                  " WHEN {nps} IS NOT NULL THEN 0 END END)",
                  "count(CASE WHEN s.kind = 'nps' THEN {nps} END)")),
        Kpi("nps_responses", "NPS responses", "count of NPS responses", Anchor.RESPONSE, "count", None, None,
            Group.SATISFACTION, Count("count(CASE WHEN s.kind = 'nps' THEN 1 END)")),
        Kpi("ces_avg", "Customer Effort Score", "mean CES on a 1-7 scale (7 = easiest), other scales rescaled",
            Anchor.RESPONSE, "1-7", Direction.HIGHER, None, Group.SATISFACTION,
            Mean("CASE WHEN s.kind = 'ces' THEN {ces} END")),
    ]


def _speed_kpis() -> list[Kpi]:
    frt = "first_agent_reply_at - created_at (outbound: from the first customer message)"
    out = [
        Kpi("first_response_time_avg", "Average first response time", f"mean of {frt} over contacts with a reply",
            Anchor.CREATED, "minutes", Direction.LOWER, None, Group.SPEED, Mean("f.frt_s", MINUTES)),
        Kpi("first_response_time_median", "Median first response time", f"median of {frt}",
            Anchor.CREATED, "minutes", Direction.LOWER, None, Group.SPEED, Percentile("f.frt_s", 1, 2, MINUTES)),
        Kpi("first_response_time_p90", "90th-percentile first response time", f"p90 of {frt}",
            Anchor.CREATED, "minutes", Direction.LOWER, None, Group.SPEED, Percentile("f.frt_s", 9, 10, MINUTES)),
        Kpi("service_level_pct", "Service level", "contacts answered within their channel's target / contacts"
            " (bot-only left out; unanswered past the target = missed; still within it = left out)",
            Anchor.CREATED, "%", Direction.HIGHER, None, Group.SPEED,
            Share(f"{ANSWERABLE} AND f.frt_s <= {{sl}}",
                  f"{ANSWERABLE} AND (f.frt_s IS NOT NULL OR {_SL_STILL_OPEN})")),
        Kpi("resolution_time_avg", "Average resolution time", "mean of first_resolved_at - created_at",
            Anchor.FIRST_RESOLVED, "hours", Direction.LOWER, None, Group.SPEED, Mean("f.res_s", HOURS)),
        Kpi("resolution_time_median", "Median resolution time", "median of first_resolved_at - created_at",
            Anchor.FIRST_RESOLVED, "hours", Direction.LOWER, 12.0, Group.SPEED, Percentile("f.res_s", 1, 2, HOURS)),
        Kpi("full_resolution_time_avg", "Average full resolution time", "mean of last_resolved_at - created_at",
            Anchor.LAST_RESOLVED, "hours", Direction.LOWER, None, Group.SPEED, Mean("f.full_res_s", HOURS)),
        Kpi("handle_time_avg", "Average handle time", "mean of handle_seconds where known (chat and messaging"
            " without a record: the first live session)", Anchor.FIRST_RESOLVED, "minutes",
            Direction.LOWER, None, Group.SPEED, Mean("f.handle_s", MINUTES)),
    ]
    return out + _business_hours_variants(out)


def _business_hours_variants(speed: list[Kpi]) -> list[Kpi]:
    """The `_bh` twin of every elapsed-time KPI, measured in business time."""
    columns = {"f.frt_s": "f.frt_bh_s", "f.res_s": "f.res_bh_s", "f.full_res_s": "f.full_res_bh_s"}
    out = []
    for kpi in speed:
        measure: Measure
        if isinstance(kpi.measure, Mean) and kpi.measure.expr in columns:
            measure = Mean(columns[kpi.measure.expr], kpi.measure.factor)
        elif isinstance(kpi.measure, Percentile):
            measure = Percentile(columns[kpi.measure.expr], kpi.measure.num, kpi.measure.den, kpi.measure.factor)
        elif kpi.id == "service_level_pct":
            measure = Share(f"{ANSWERABLE} AND f.frt_bh_s <= {{sl}}",
                            f"{ANSWERABLE} AND f.schedule IS NOT NULL AND"
                            f" (CASE WHEN f.frt_s IS NOT NULL THEN 1 ELSE {_SL_BH_STILL_OPEN} END)")
        else:
            continue  # handle time is effort, not elapsed time: no business-hours twin
        out.append(Kpi(kpi.id + "_bh", kpi.name + " (business hours)", kpi.definition + ", in business time",
                       kpi.anchor, kpi.unit, kpi.direction, kpi.default_target, kpi.group, measure,
                       business_hours=True))
    return out


def _resolution_kpis() -> list[Kpi]:
    return [
        Kpi("backlog", "Backlog", "contacts not in a resolved state at the period's end (now for a running"
            " period)", Anchor.PERIOD_END, "count", Direction.LOWER, None, Group.RESOLUTION, Special("backlog")),
        Kpi("one_touch_resolution_pct", "One-touch resolution", "resolved contacts with exactly 1 agent reply and"
            " 0 reopens / resolved contacts with >= 1 agent reply", Anchor.FIRST_RESOLVED, "%", Direction.HIGHER,
            70.0, Group.RESOLUTION, Share("f.agent_replies = 1 AND f.reopens = 0", "f.agent_replies >= 1")),
        Kpi("fcr_pct", "First contact resolution", "one-touch resolved contacts with no new contact from the"
            " requester within fcr_window_days / resolved contacts with >= 1 agent reply (window passed)",
            Anchor.FIRST_RESOLVED, "%", Direction.HIGHER, 75.0, Group.RESOLUTION,
            Share(f"f.agent_replies = 1 AND f.reopens = 0 AND {NO_RETURN}",
                  f"f.agent_replies >= 1 AND {WINDOW_PASSED}")),
        Kpi("reopen_rate_pct", "Reopen rate", "resolved contacts with reopens >= 1 / resolved contacts",
            Anchor.FIRST_RESOLVED, "%", Direction.LOWER, 5.0, Group.RESOLUTION, Share("f.reopens >= 1", "1")),
        Kpi("agent_touches_avg", "Touches per resolution", "mean agent replies over resolved contacts",
            Anchor.FIRST_RESOLVED, "count", Direction.LOWER, None, Group.RESOLUTION, Mean("f.agent_replies")),
        Kpi("repeat_contact_rate_pct", "Repeat contact rate", "(contacts - distinct requesters) / contacts",
            Anchor.CREATED, "%", Direction.LOWER, None, Group.RESOLUTION,
            Repeat("f.requester")),
        Kpi("bot_deflection_rate_pct", "Bot deflection", "bot-only resolved contacts / resolved contacts",
            Anchor.FIRST_RESOLVED, "%", Direction.HIGHER, None, Group.RESOLUTION, Share("f.bot_only = 1", "1")),
    ]


def _coverage_kpis() -> list[Kpi]:
    return [
        Kpi("ticket_volume", "Ticket volume", "contacts created (deleted ones left out)", Anchor.CREATED, "count",
            None, None, Group.COVERAGE, Count("count(*)")),
        Kpi("channel_mix_pct", "Channel mix", "share of ticket_volume per channel (always by channel)",
            Anchor.CREATED, "%", None, None, Group.COVERAGE, Special("channel_mix")),
        Kpi("response_rate_pct", "Response rate", "contacts with an agent reply / contacts (bot-only resolved"
            " left out of both)", Anchor.CREATED, "%", Direction.HIGHER, 98.0, Group.COVERAGE,
            Share(f"{ANSWERABLE} AND f.replied = 1", ANSWERABLE)),
        Kpi("abandonment_rate_pct", "Abandonment rate", "customer-initiated live-channel contacts with no human"
            " reply within abandon_after of the first message / customer-initiated live-channel contacts (bot-only"
            " left out; still inside abandon_after = left out)", Anchor.CREATED, "%",
            Direction.LOWER, 5.0, Group.COVERAGE, Share(NOT_ANSWERED_IN_TIME, ABANDONABLE)),
        Kpi("language_coverage", "Language coverage", "distinct languages among contacts that got an agent reply"
            " (und not counted)", Anchor.CREATED, "count", Direction.HIGHER, None, Group.COVERAGE,
            Distinct("CASE WHEN f.replied = 1 AND f.language != 'und' THEN f.language END")),
        Kpi("customer_retention_pct", "Contact-base retention (proxy)", "requesters of the previous period who"
            " contact or rate again in this one / requesters of the previous period (a proxy until an order"
            " feed exists)", Anchor.CREATED, "%", None, None, Group.COVERAGE, Special("retention")),
    ]


def _cost_kpis() -> list[Kpi]:
    return [
        Kpi("interactions_per_order", "Interactions per order", "ticket_volume / orders (the order feed's where"
            " it covers the period, else the business input)", Anchor.CREATED, "ratio", Direction.LOWER, None,
            Group.COST, InputRatio("orders", "count(*)", False)),
        Kpi("cost_per_interaction", "Cost per interaction", "operating cost / ticket_volume", Anchor.CREATED,
            "currency", Direction.LOWER, None, Group.COST, InputRatio("operating_cost", "count(*)", True)),
        Kpi("cost_per_resolution", "Cost per resolution", "operating cost / resolved contacts",
            Anchor.FIRST_RESOLVED, "currency", Direction.LOWER, None, Group.COST,
            InputRatio("operating_cost", "count(*)", True)),
        Kpi("agent_utilization_pct", "Agent utilization", "sum of handle_seconds of the agents' resolved contacts"
            " / their available seconds (business input)", Anchor.FIRST_RESOLVED, "%", None, None, Group.COST,
            Special("utilization")),
    ]


def _hidden_kpis() -> list[Kpi]:
    return [
        Kpi("csat_of_resolved_pct", "CSAT of contacts resolved in the period", "positive CSAT responses /"
            " classified CSAT responses, over contacts first resolved in the period", Anchor.FIRST_RESOLVED, "%",
            Direction.HIGHER, None, Group.SATISFACTION,
            Ratio(f"sum(CASE WHEN {CUSTOMER_WROTE} THEN f.csat_pos END)",
                  f"sum(CASE WHEN {CUSTOMER_WROTE} THEN f.csat_classified END)"),
            hidden=True, target_of="csat_pct"),
    ]


def _repurchase(days: int) -> Kpi:
    window = days * DAY_S
    return Kpi(f"repurchase_{days}d_pct", f"Repurchase after contact, {days} days", "resolved contacts of customers"
               f" with an order before the contact whose customer orders again within {days} days after the first"
               " resolution / such resolved contacts (window passed)", Anchor.FIRST_RESOLVED, "%", Direction.HIGHER,
               None, Group.VALUE,
               Share(f"f.reorder_epoch <= f.first_resolved_epoch + {window}",
                     f"f.ordered_before = 1 AND f.first_resolved_epoch + {window} <= :now AND {FEED_COVERS}"))


def _value_kpis() -> list[Kpi]:
    window = VALUE_DAYS * DAY_S
    return [
        Kpi("orders", "Orders", "orders placed (the order feed, cancelled ones left out)", Anchor.ORDER, "count",
            None, None, Group.VALUE, Count("count(CASE WHEN o.kind = 'order' THEN 1 END)")),
        Kpi("consultation_conversion_pct", "Consultation conversion", "pre-sales contacts (no order before the"
            " contact) whose customer orders within conversion_window_days / pre-sales contacts (window passed)",
            Anchor.CREATED, "%", Direction.HIGHER, None, Group.VALUE, Share(CONVERTED, PRE_SALES)),
        _repurchase(30),
        _repurchase(VALUE_DAYS),
        Kpi("repurchase_lift_90d_pp", "Repurchase lift", "repurchase_90d_pct minus the 90-day repurchase of"
            " customers with no contact in the 90 days around their order (the baseline, never segmented)",
            Anchor.FIRST_RESOLVED, "pp", Direction.HIGHER, None, Group.VALUE, Special("lift")),
        Kpi("clv_increment", "CLV increment", "mean over resolved contacts of matched customers of (order value"
            " in the 90 days after the first resolution - in the 90 days before the contact), refunds negative",
            Anchor.FIRST_RESOLVED, "currency", Direction.HIGHER, None, Group.VALUE,
            Mean(f"CASE WHEN f.shop_matched = 1 AND f.first_resolved_epoch + {window} <= :now AND {FEED_COVERS}"
                 " THEN f.value_after - f.value_before END")),
        Kpi("support_influenced_revenue", "Support-influenced revenue", "value of orders placed within"
            " conversion_window_days after a contact by the same customer (each order once; its refunds negative"
            " at their own date)", Anchor.ORDER, "currency", Direction.HIGHER, None, Group.VALUE,
            Sum("sum(CASE WHEN o.influenced THEN o.amount ELSE 0 END)")),
        Kpi("refund_contact_rate_pct", "Refund contacts", "contacts of customers with an order before the contact"
            " who have a refund within refund_window_days before or after it / contacts of customers with an order"
            " before the contact (window passed)", Anchor.CREATED, "%", Direction.LOWER, None, Group.VALUE,
            Share("f.refund_gap_s <= :refund_s",
                  f"f.ordered_before = 1 AND f.created_epoch + :refund_s <= :now AND {FEED_COVERS}")),
    ]


def _insight_kpis() -> list[Kpi]:
    """Conversation insight (docs/kpi-definitions.md). Each denominator holds only contacts with the data its
    question needs (a reply whose two languages are known, a scored customer message, a source whose changes
    are read), so with insight off, or before a sync analysed anything, a KPI has no value rather than 0 %."""
    return [
        Kpi("reply_language_match_pct", "Reply language match", "contacts whose first agent reply is in the"
            " customer's language (detected, else the helpdesk's) / contacts with a reply whose two languages are"
            " known", Anchor.CREATED, "%", Direction.HIGHER, None, Group.INSIGHT,
            Share("f.reply_match = 1", "f.reply_match IS NOT NULL")),
        Kpi("negative_contact_pct", "Negative contacts", "contacts with a customer message scored negative /"
            " contacts with a scored customer message", Anchor.CREATED, "%", Direction.LOWER, None, Group.INSIGHT,
            Share("f.negative = 1", "f.negative IS NOT NULL")),
        Kpi("sentiment_recovery_pct", "Sentiment recovery", "resolved contacts whose first scored customer message"
            " was negative and last was neutral or positive / resolved contacts whose first was negative",
            Anchor.FIRST_RESOLVED, "%", Direction.HIGHER, None, Group.INSIGHT,
            Share("f.recovered = 1", "f.started_negative = 1")),
        Kpi("escalation_rate_pct", "Escalation rate", "contacts moved to another group after the first agent reply,"
            " raised to high/urgent priority or put in an escalation group / contacts (of sources whose group and"
            " priority changes are read)", Anchor.CREATED, "%", Direction.LOWER, None, Group.INSIGHT,
            Share("f.escalated = 1", "f.escalated IS NOT NULL")),
        Kpi("negative_escalation_pct", "Negative escalations", "escalated contacts with a customer message scored"
            " negative / escalated contacts with a scored customer message", Anchor.CREATED, "%", Direction.LOWER,
            None, Group.INSIGHT, Share("f.negative = 1", "f.escalated = 1 AND f.negative IS NOT NULL")),
    ]


def _scoped(kpi: Kpi) -> Kpi:
    """The KPI with outbound contacts nobody answered left out of its contact rows (catalogue 2c).

    Survey KPIs lose them in the engine's join (their answers go with the contact), the requester-based
    measures (repeat contacts, language coverage, retention) and utilization in the engine's own fetches."""
    m = kpi.measure
    if kpi.id in COUNTS_UNANSWERED_OUTBOUND or kpi.anchor in (Anchor.RESPONSE, Anchor.ORDER):
        return kpi
    scoped: Measure = m
    if isinstance(m, Share):
        scoped = Share(m.num, f"({m.den}) AND {CUSTOMER_WROTE}")
    elif isinstance(m, Mean):
        scoped = Mean(f"CASE WHEN {CUSTOMER_WROTE} THEN {m.expr} END", m.factor)
    elif isinstance(m, Percentile):
        scoped = Percentile(f"CASE WHEN {CUSTOMER_WROTE} THEN {m.expr} END", m.num, m.den, m.factor)
    elif isinstance(m, InputRatio) and m.aggregate == "count(*)":
        scoped = InputRatio(m.input, f"count(CASE WHEN {CUSTOMER_WROTE} THEN 1 END)", m.input_on_top)
    return replace(kpi, measure=scoped)


KPIS: Final[tuple[Kpi, ...]] = tuple(_scoped(kpi) for kpi in (
    _speed_kpis() + _resolution_kpis() + _survey_kpis() + _cost_kpis() + _coverage_kpis() + _hidden_kpis()
    + _value_kpis() + _insight_kpis()
))
BY_ID: Final[dict[str, Kpi]] = {kpi.id: kpi for kpi in KPIS}
# The catalogue's public ids, in catalogue order (business-hours twins and hidden figures excluded).
CATALOGUE_IDS: Final[tuple[str, ...]] = (
    "ticket_volume", "backlog", "channel_mix_pct", "first_response_time_avg", "first_response_time_median",
    "first_response_time_p90", "response_rate_pct", "service_level_pct", "abandonment_rate_pct",
    "resolution_time_avg", "resolution_time_median", "full_resolution_time_avg", "handle_time_avg",
    "one_touch_resolution_pct", "fcr_pct", "reopen_rate_pct", "agent_touches_avg", "repeat_contact_rate_pct",
    "bot_deflection_rate_pct", "csat_pct", "csat_responses", "csat_response_rate_pct", "nps", "nps_responses",
    "ces_avg", "language_coverage", "interactions_per_order", "cost_per_interaction", "cost_per_resolution",
    "agent_utilization_pct", "customer_retention_pct",
    "orders", "consultation_conversion_pct", "repurchase_30d_pct", "repurchase_90d_pct", "repurchase_lift_90d_pp",
    "clv_increment", "support_influenced_revenue", "refund_contact_rate_pct",
    "reply_language_match_pct", "negative_contact_pct", "sentiment_recovery_pct", "escalation_rate_pct",
    "negative_escalation_pct",
)
VALUE_KPIS: Final = frozenset(k.id for k in KPIS if k.group is Group.VALUE)
INSIGHT_KPIS: Final = frozenset(k.id for k in KPIS if k.group is Group.INSIGHT)
# Days after a period's end during which its value KPIs can still move with time alone (their windows pass).
VALUE_SETTLE_DAYS: Final = VALUE_DAYS + 1
COUNT_KPIS: Final = frozenset({"ticket_volume", "backlog", "csat_responses", "nps_responses", "language_coverage",
                               "orders"})


class UnknownKpi(ValueError):
    """A KPI id that the catalogue does not define."""


def get(kpi_id: str) -> Kpi:
    try:
        return BY_ID[kpi_id]
    except KeyError:
        raise UnknownKpi(f"unknown KPI {kpi_id!r}; known: {', '.join(CATALOGUE_IDS)}") from None


def selected(kpi_ids: list[str] | None, business_hours: bool) -> list[Kpi]:
    """The KPIs to compute: the given ids (validated) or every listed one, `_bh` twins only with schedules."""
    if kpi_ids:
        chosen = [get(k) for k in kpi_ids]
        return [k for k in chosen if business_hours or not k.business_hours]
    return [k for k in KPIS if not k.hidden and (business_hours or not k.business_hours)]
