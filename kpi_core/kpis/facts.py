"""Per-contact KPI facts: one narrow row per contact in `kpi_facts`, refreshed only where a sync changed something.

The store marks the contacts it writes, and those whose messages or status events it writes,
in `kpi_dirty_contacts` (`store.mark_for_kpis`); triggers on survey responses and people
(migration m011) and on deleted status events mark theirs, and survey answers and status
events also note their day in `kpi_dirty_days`. `refresh` rebuilds the facts of those contacts and of
the other contacts of the same requesters whose FCR a new contact can undo (resolved after one agent
reply), compares them with the old rows, and adds the anchor days of every row that really changed
to `kpi_dirty_days`, which tells `compute` which periods to redo. Those days are UTC dates, as the
store's triggers note them; `compute` maps each to the one or two local dates of `[kpis] timezone`
it overlaps (`periods.local_days`). The old and new versions
of the changed rows go to `kpi_facts_changes`, from which `compute` moves the stored backlog.

Durations are computed once here, in whole seconds, clamped at 0; a contact's FCR needs
`next_contact_epoch`, the first later customer-started contact of its requester after its
first resolution, kept only when it falls inside the FCR window. Contacts whose status history
has reopenings keep their resolve/reopen steps in `transitions` (JSON [[time, +1|-1], ...])
for the backlog.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from kpi_core import derive
from kpi_core.insight.sentiment import NEGATIVE_BELOW
from kpi_core.kpis import hours_on_server
from kpi_core.kpis.context import Context, get_meta, set_meta
from kpi_core.kpis.scales import positive_sql
from kpi_core.store import utc_now

# Value facts of an order feed (catalogue 3b, migration m028), from the orders of the contact's customer: see
# `_value_sql`.
VALUE_COLUMNS = ("customer", "shop_known", "shop_matched", "ordered_before", "created_epoch", "next_order_epoch",
                 "reorder_epoch", "value_before", "value_after", "refund_gap_s")
VALUE_DAYS = 90  # the CLV windows before the contact and after its resolution (catalogue 3b)
# Conversation insight (migration m030), from the contact's derived facts (kpi_core/derive.py): see `_insight_sql`.
INSIGHT_COLUMNS = ("reply_match", "first_sentiment", "last_sentiment", "min_sentiment", "negative",
                   "started_negative", "recovered", "escalated", "topic")
COLUMNS = (
    "source", "source_id", "is_deleted", "channel", "platform", "outbound", "agent", "grp", "language", "market",
    "priority", "ticket_type", "tags", "custom", "requester", "created_at", "first_resolved_at", "last_resolved_at",
    "replied", "start_epoch", "first_resolved_epoch", "activity_epoch", "frt_s", "res_s", "full_res_s", "handle_s",
    "agent_replies", "reopens", "bot_only", "csat_n", "csat_classified", "csat_pos", "transitions",
    "next_contact_epoch", *VALUE_COLUMNS, *INSIGHT_COLUMNS, "schedule", "frt_bh_s", "res_bh_s", "full_res_bh_s",
)
ANCHOR_COLUMNS = ("created_at", "first_resolved_at", "last_resolved_at")
INDEXES = {
    "kpi_facts_contact": "CREATE UNIQUE INDEX kpi_facts_contact ON kpi_facts (source, source_id)",
    "kpi_facts_created": "CREATE INDEX kpi_facts_created ON kpi_facts (created_at)",
    "kpi_facts_first_resolved": "CREATE INDEX kpi_facts_first_resolved ON kpi_facts (first_resolved_at)",
    "kpi_facts_last_resolved": "CREATE INDEX kpi_facts_last_resolved ON kpi_facts (last_resolved_at)",
    "kpi_facts_history": "CREATE INDEX kpi_facts_history ON kpi_facts (created_at) WHERE transitions IS NOT NULL",
}
# Rebuild everything rather than diff when this share of the contacts changed.
_FULL_SHARE = 0.3


def epoch_sql(conn: sqlite3.Connection, column: str) -> str:
    """Epoch seconds of an ISO timestamp: unixepoch() where SQLite has it (3.38+), else via julianday."""
    if sqlite3.sqlite_version_info >= (3, 38, 0):
        return f"unixepoch({column})"
    return f"CAST(round((julianday({column}) - 2440587.5) * 86400) AS INTEGER)"


def _transitions_sql() -> str:
    """JSON [[at, -1 | +1], ...]: each entry into (-1) or exit from (+1) a resolved state, in order."""
    steps = ("SELECT at, CASE WHEN kind = 'resolved' AND coalesce(lag(kind) OVER w, 'reopened') = 'reopened'"
             " THEN -1 WHEN kind = 'reopened' AND lag(kind) OVER w = 'resolved' THEN 1 ELSE 0 END AS d"
             " FROM status_events e WHERE e.source = c.source AND e.contact_id = c.source_id"
             " WINDOW w AS (ORDER BY e.at, e.rowid)")
    return (f"CASE WHEN coalesce(c.reopens, 0) > 0 AND EXISTS (SELECT 1 FROM status_events e"
            f" WHERE e.source = c.source AND e.contact_id = c.source_id AND e.kind = 'reopened')"
            f" THEN (SELECT json_group_array(json_array(at, d)) FROM ({steps}) WHERE d != 0) END")


def _fcr_candidate(alias: str) -> str:
    """A contact whose FCR can be undone by a later contact of its requester: resolved after one agent reply."""
    return (f"{alias}.first_resolved_at IS NOT NULL AND coalesce({alias}.agent_replies, 0) = 1"
            f" AND coalesce({alias}.reopens, 0) = 0")


def _next_contact_sql(epoch: Callable[[str], str], window_s: int) -> str:
    """The requester's first later customer-started contact after this one's first resolution, for FCR
    candidates, kept only when it falls inside the FCR window (so a contact months later changes nothing)."""
    later = ("SELECT min(g.created_at) FROM contacts g WHERE g.source = c.source AND g.requester_id = c.requester_id"
             " AND g.created_at > c.first_resolved_at AND g.status NOT IN ('deleted', 'merged') AND g.rowid != c.rowid"
             " AND (coalesce(g.is_outbound, 0) = 0 OR g.first_customer_message_at IS NOT NULL)")
    candidate = f"c.requester_id IS NOT NULL AND {_fcr_candidate('c')}"
    within = f"{epoch('c.first_resolved_at')} + {window_s}"
    return f"CASE WHEN {candidate} THEN (SELECT n FROM (SELECT {epoch(f'({later})')} AS n) WHERE n <= {within}) END"


def _live_session_sql(epoch: Callable[[str], str], gap_s: int) -> str:
    """Handle time of a chat or messaging contact without a record (catalogue 2c): its first live session.

    From the first human-agent reply to the last customer or public human-agent message before the first
    resolution (notes and bot messages do not count), cut at the first gap longer than `gap_s`
    (`abandon_after`): the agent handled the conversation while both sides kept writing, not while it waited."""
    role = "coalesce(m.author_role, p.role)"
    said = (f"SELECT {epoch('m.created_at')} AS t FROM messages m LEFT JOIN people p ON p.source = m.source"
            f" AND p.source_id = m.author_id WHERE m.source = c.source AND m.contact_id = c.source_id"
            f" AND ({role} = 'customer' OR ({role} = 'agent' AND m.public = 1))"
            f" AND m.created_at >= c.first_agent_reply_at"
            f" AND (c.first_resolved_at IS NULL OR m.created_at <= c.first_resolved_at)")
    gaps = f"SELECT t, t - lag(t) OVER (ORDER BY t) AS gap FROM ({said})"
    # Big gaps up to each message: the session is the messages before the first one.
    cuts = (f"SELECT t, sum(CASE WHEN gap > {gap_s} THEN 1 ELSE 0 END) OVER (ORDER BY t ROWS UNBOUNDED PRECEDING)"
            f" AS cut FROM ({gaps})")
    end = f"SELECT max(t) FROM ({cuts}) WHERE cut = 0"
    return f"max(0, ({end}) - {epoch('c.first_agent_reply_at')})"


def _country_sql() -> str:
    return ("coalesce(c.country, (SELECT p.country FROM people p WHERE p.source = c.source"
            " AND p.source_id = c.requester_id), (SELECT o.country FROM organizations o WHERE o.source = c.source"
            " AND o.source_id = c.organization_id))")


def _no_orders_sql() -> str:
    """CTE `valued` when the store holds no order at all: what `_value_sql` gives a contact whose customer has no
    order, without its per-contact look-up (a first compute of a million contacts without a shop spent a minute
    in it). An order arriving later marks its customer's contacts, which are then looked up in full."""
    # The NULLs typed: PostgreSQL gives an untyped NULL column the type text, which an INTEGER column refuses.
    return """valued AS (SELECT *, CASE WHEN customer IS NOT NULL THEN 1 ELSE 0 END AS shop_known, 0 AS shop_matched,
        0 AS ordered_before, CAST(NULL AS INTEGER) AS next_order_epoch, CAST(NULL AS INTEGER) AS reorder_epoch,
        0 AS value_before, CASE WHEN first_resolved_epoch IS NOT NULL THEN 0 END AS value_after,
        CAST(NULL AS INTEGER) AS refund_gap_s FROM placed)"""


def _value_sql(epoch: Callable[[str], str]) -> str:
    """CTEs `shop` and `valued`: the value facts of each contact of `placed`, from its customer's orders.

    A customer's orders are those whose `customer_key` is the requester's keyed e-mail hash, or that an
    explicit customer-id map gave to the requester (`orders.requester`). Cancelled orders count nowhere but
    in `shop_matched` (the shop knows the customer); a refund counts at its own date, negative. All the
    figures come from one look-up of the customer's orders per contact (a JSON array, read back below):
    [orders of any state, orders before the contact, the first order after the contact's creation (epoch),
    the first after its first resolution, value in the VALUE_DAYS before the creation, value in the
    VALUE_DAYS after the first resolution, the nearest refund to the creation (seconds)]."""
    day_s = VALUE_DAYS * 86400
    # JSON values are read with a CAST: SQLite's json_extract gives a number its own type, PostgreSQL's gives text
    # (the columns are INTEGER and REAL, so SQLite stores the same values either way).
    at, amount = epoch("json_extract(r.value, '$.at')"), "CAST(json_extract(r.value, '$.amount') AS REAL)"

    def refunds(lo: str, hi: str) -> str:
        return f"(SELECT coalesce(sum({amount}), 0) FROM json_each(o.refunds) r WHERE {at} {lo} AND {at} {hi})"

    oe, kept = epoch("o.created_at"), "o.cancelled_at IS NULL"
    before = f">= p.created_epoch - {day_s}", "< p.created_epoch"
    after = "> p.first_resolved_epoch", f"<= p.first_resolved_epoch + {day_s}"
    figures = ", ".join([
        "count(*)",
        f"sum(CASE WHEN {kept} AND o.created_at < p.created_at THEN 1 ELSE 0 END)",
        f"min(CASE WHEN {kept} AND {oe} > p.created_epoch THEN {oe} END)",
        f"min(CASE WHEN {kept} AND {oe} > p.first_resolved_epoch THEN {oe} END)",
        f"sum(CASE WHEN {kept} THEN CASE WHEN {oe} {before[0]} AND {oe} {before[1]} THEN o.total ELSE 0 END"
        f" - {refunds(*before)} ELSE 0 END)",
        f"CASE WHEN p.first_resolved_epoch IS NOT NULL THEN sum(CASE WHEN {kept} THEN CASE WHEN {oe} {after[0]}"
        f" AND {oe} {after[1]} THEN o.total ELSE 0 END - {refunds(*after)} ELSE 0 END) END",
        f"min(CASE WHEN {kept} THEN (SELECT min(abs({at} - p.created_epoch)) FROM json_each(o.refunds) r) END)",
    ])
    mine = "(o.customer_key = p.customer OR o.requester = p.requester)"
    read = [f"CAST(json_extract(ov, '$[{i}]') AS {'REAL' if i in (4, 5) else 'INTEGER'})" for i in range(7)]
    return f"""shop AS (SELECT *, (SELECT json_array({figures}) FROM orders o WHERE {mine}) AS ov FROM placed p),
    valued AS (SELECT *, CASE WHEN customer IS NOT NULL OR {read[0]} > 0 THEN 1 ELSE 0 END AS shop_known,
        CASE WHEN {read[0]} > 0 THEN 1 ELSE 0 END AS shop_matched, CASE WHEN {read[1]} > 0 THEN 1 ELSE 0 END
        AS ordered_before, {read[2]} AS next_order_epoch, {read[3]} AS reorder_epoch,
        coalesce({read[4]}, 0) AS value_before, CASE WHEN first_resolved_epoch IS NOT NULL
        THEN coalesce({read[5]}, 0) END AS value_after, {read[6]} AS refund_gap_s FROM shop)"""


def _quoted(values: Iterable[str]) -> str:
    """An SQL list of text literals (empty: `()`, which SQLite reads as an empty set)."""
    return "(" + ", ".join("'" + v.replace("'", "''") + "'" for v in sorted(values)) + ")"


def tracked_sources(conn: sqlite3.Connection) -> list[str]:
    """Sources that stored any group or priority change: only their contacts' escalation is known (a source whose
    connector reads only assignments says nothing of moves between groups or of priorities).

    The sources by one index step each (a skip scan of contact_changes_contact), then one look per source that
    stops at its first group or priority change, not a read of every change."""
    return [row[0] for row in conn.execute(
        "WITH RECURSIVE s(x) AS (SELECT min(source) FROM contact_changes UNION ALL"
        " SELECT (SELECT min(source) FROM contact_changes WHERE source > x) FROM s WHERE x IS NOT NULL)"
        " SELECT x FROM s WHERE x IS NOT NULL AND EXISTS (SELECT 1 FROM contact_changes c WHERE c.source = s.x"
        " AND c.field IN ('group', 'priority'))")]


def escalation_keys(conn: sqlite3.Connection, listed: Iterable[str]) -> tuple[list[str], list[str]]:
    """The escalation tier `[insight] escalation_groups` names, as group keys: ("source:id" of the groups named by
    name, case-insensitively, by id or by "source:id"; the ids listed as such, for any source)."""
    wanted = [g.strip() for g in listed if g.strip()]
    if not wanted:
        return [], []
    names = {g.casefold() for g in wanted}
    # A helpdesk has tens of groups: compared here, where case folding knows every alphabet (SQLite's lower()
    # folds ASCII only).
    keys = {f"{source}:{gid}" for source, gid, name in conn.execute("SELECT source, source_id, name FROM groups")
            if (isinstance(name, str) and name.strip().casefold() in names) or gid in wanted
            or f"{source}:{gid}" in wanted}
    keys |= {g for g in wanted if ":" in g}
    return sorted(keys), sorted(wanted)


def fingerprint(ctx: Context) -> str:
    """The facts' settings fingerprint (`Context.facts_fingerprint`) with what the insight facts depend on beside the
    store's rows: the escalation tier's groups (the admin's list, resolved through `groups`), the sources whose
    changes are read, and the sentiment threshold. A change of any rebuilds the facts."""
    keys, bare = escalation_keys(ctx.conn, ctx.settings.escalation_groups)
    extra = repr((keys, bare, tracked_sources(ctx.conn), NEGATIVE_BELOW))
    if extra == repr(([], [], [], NEGATIVE_BELOW)):
        return ctx.facts_fingerprint()  # a store without insight keeps the fingerprint it had
    return hashlib.sha256((ctx.facts_fingerprint() + extra).encode()).hexdigest()[:16]


def _insight_sql(ctx: Context) -> str:
    """The insight facts of contact `c` (see docs/kpi-definitions.md, "Conversation insight").

    reply_match: the first agent reply is in the customer's language (the detected one, else the helpdesk's), NULL
    when either is unknown. Sentiment flags, NULL without a scored customer message: negative at any point (the
    lowest score below NEGATIVE_BELOW), started negative, and for those, recovered (the last score not negative).
    escalated: NULL for a source that stored no group or priority change (its connector does not read them), else
    moved to another group after the first reply, raised to high/urgent, or ever in an escalation-tier group."""
    keys, bare = escalation_keys(ctx.conn, ctx.settings.escalation_groups)
    tracked = tracked_sources(ctx.conn)
    customer = "coalesce(c.detected_language, CASE WHEN c.language != 'und' THEN c.language END)"
    tier = "0"
    if keys or bare:
        def in_tier(group: str) -> str:
            return f"({group} IN {_quoted(bare)} OR c.source || ':' || {group} IN {_quoted(keys)})"

        tier = (f"({in_tier('c.group_id')} OR EXISTS (SELECT 1 FROM json_each(c.groups_seen) j"
                f" WHERE {in_tier('j.value')}))")
    escalated = (f"CASE WHEN c.source IN {_quoted(tracked)} THEN CASE WHEN coalesce(c.regrouped_after_reply, 0) = 1"
                 f" OR coalesce(c.priority_raised, 0) = 1 OR {tier} THEN 1 ELSE 0 END END")
    neg = repr(float(NEGATIVE_BELOW))
    return f"""CASE WHEN c.reply_language IS NOT NULL AND {customer} IS NOT NULL
          THEN CASE WHEN c.reply_language = {customer} THEN 1 ELSE 0 END END AS reply_match,
        c.first_sentiment, c.last_sentiment, c.min_sentiment,
        CASE WHEN c.min_sentiment IS NOT NULL THEN CASE WHEN c.min_sentiment < {neg} THEN 1 ELSE 0 END END AS negative,
        CASE WHEN c.first_sentiment IS NOT NULL THEN CASE WHEN c.first_sentiment < {neg} THEN 1 ELSE 0 END END
          AS started_negative,
        CASE WHEN c.first_sentiment < {neg} THEN CASE WHEN c.last_sentiment >= {neg} THEN 1 ELSE 0 END END
          AS recovered,
        {escalated} AS escalated, c.topic"""


def select_sql(ctx: Context, keys: str | None) -> str:
    """The facts of the contacts in temp table `keys` (every contact when None), in COLUMNS order."""
    conn = ctx.conn

    def ep(column: str) -> str:
        return epoch_sql(conn, column)

    # With a key table, start from it (CROSS JOIN fixes the order) so only those contacts are read.
    contacts = (f"{keys} k CROSS JOIN contacts c ON c.source = k.source AND c.source_id = k.source_id"
                if keys else "contacts c")
    surveys = (f"{keys} k CROSS JOIN survey_responses s ON s.source = k.source AND s.contact_id = k.source_id"
               if keys else "survey_responses s")
    # The customer's side starts with their first message: outbound contacts have none until answered; an inbound
    # one opened by a bot's greeting (Intercom's operator_initiated) starts when the visitor wrote.
    start = ("CASE WHEN coalesce(c.is_outbound, 0) = 1 THEN c.first_customer_message_at"
             " ELSE max(c.created_at, coalesce(c.first_customer_message_at, c.created_at)) END")
    resolved = "(c.first_resolved_at IS NOT NULL OR c.status IN ('resolved', 'closed'))"
    live = "c.channel IN ('chat', 'messaging')"  # phone without a record: unknown (catalogue 2c)
    # A reply counts only once the customer wrote (catalogue 2c): an outbound contact nobody answered has none.
    replied = f"c.first_agent_reply_at IS NOT NULL AND ({start}) IS NOT NULL"
    abandon_s = int(ctx.settings.abandon_after.total_seconds())
    schedule = ctx.hours.assignment_sql("grp", "market") if ctx.hours.configured else "CAST(NULL AS INTEGER)"
    spans = (("start_epoch", "reply_epoch"), ("created_epoch", "first_resolved_epoch"),
             ("created_epoch", "last_resolved_epoch"))
    bh = ", ".join(f"{_bh_sql(ctx, a, b)} AS {name}" for (a, b), name in zip(spans, COLUMNS[-3:], strict=True))
    market = ctx.market_of_contact(_country_sql())
    # The helpdesk's language (its locale), else the one detected in the customer's first messages.
    language = ("CASE WHEN coalesce(c.language, 'und') = 'und' THEN coalesce(c.detected_language, 'und')"
                " ELSE c.language END")
    return f"""
    WITH sv AS (
      SELECT source, contact_id, count(*) AS n, count(pos) AS classified, coalesce(sum(pos), 0) AS positive
      FROM (SELECT s.source, s.contact_id, {positive_sql('s', ctx.settings.csat_scales)} AS pos FROM {surveys}
            WHERE s.kind = 'csat' AND s.contact_id IS NOT NULL)
      GROUP BY source, contact_id),
    base AS (
      SELECT c.source, c.source_id, (c.status IN ('deleted', 'merged')) AS is_deleted, c.channel,
        coalesce(c.platform, c.channel) AS platform, coalesce(c.is_outbound, 0) AS outbound,
        CASE WHEN c.assignee_id IS NOT NULL THEN c.source || ':' || c.assignee_id END AS agent,
        CASE WHEN c.group_id IS NOT NULL THEN c.source || ':' || c.group_id END AS grp,
        {language} AS language, {market} AS market, c.priority, c.ticket_type,
        coalesce(c.tags, '[]') AS tags, c.custom,
        CASE WHEN c.requester_id IS NOT NULL THEN c.source || ':' || c.requester_id END AS requester,
        c.created_at, c.first_resolved_at, c.last_resolved_at, ({replied}) AS replied,
        {ep(start)} AS start_epoch, {ep('c.first_resolved_at')} AS first_resolved_epoch,
        {ep('coalesce(c.last_activity_at, c.created_at)')} AS activity_epoch,
        CASE WHEN {replied} THEN max(0, {ep('c.first_agent_reply_at')} - {ep(start)}) END AS frt_s,
        max(0, {ep('c.first_resolved_at')} - {ep('c.created_at')}) AS res_s,
        max(0, {ep('c.last_resolved_at')} - {ep('c.created_at')}) AS full_res_s,
        coalesce(c.handle_seconds, CASE WHEN {live} AND {replied} THEN ({_live_session_sql(ep, abandon_s)}) END)
          AS handle_s,
        coalesce(c.agent_replies, 0) AS agent_replies, coalesce(c.reopens, 0) AS reopens,
        ({resolved} AND c.first_agent_reply_at IS NULL AND coalesce(c.agent_replies, 0) = 0
          AND (coalesce(c.is_bot_only, 0) = 1 OR coalesce(c.has_bot_message, 0) = 1)) AS bot_only,
        coalesce(sv.n, 0) AS csat_n, coalesce(sv.classified, 0) AS csat_classified,
        coalesce(sv.positive, 0) AS csat_pos, {_transitions_sql()} AS transitions,
        {_next_contact_sql(ep, ctx.settings.fcr_window_days * 86400)} AS next_contact_epoch,
        {ep('c.created_at')} AS created_epoch,
        (SELECT p.email_hash FROM people p WHERE p.source = c.source AND p.source_id = c.requester_id) AS customer,
        {ep('c.first_agent_reply_at') if ctx.hours.configured else 'NULL'} AS reply_epoch,
        {ep('c.last_resolved_at') if ctx.hours.configured else 'NULL'} AS last_resolved_epoch,
        {_insight_sql(ctx)}
      FROM {contacts}
      LEFT JOIN sv ON sv.source = c.source AND sv.contact_id = c.source_id),
    placed AS (SELECT *, {schedule} AS schedule FROM base),
    {_value_sql(ep) if conn.execute("SELECT 1 FROM orders LIMIT 1").fetchone() else _no_orders_sql()}
    SELECT {', '.join(COLUMNS[:-3])}, {bh} FROM valued
    """


def _bh_sql(ctx: Context, start: str, end: str) -> str:
    """Business seconds between two of the row's instants: the clock as SQL function `kpi_bh` on SQLite; on a
    PostgreSQL store, which cannot call Python, left empty here and filled by hours_on_server.fill."""
    if not ctx.hours.configured or ctx.store.on_server:
        return "CAST(NULL AS INTEGER)"  # typed: PostgreSQL gives an untyped NULL column the type text
    return f"kpi_bh(schedule, {start}, {end})"


@dataclass
class Refresh:
    """What a refresh did: contacts rebuilt, and whether everything (rather than some days) changed."""

    contacts: int
    everything: bool
    changed: int = 0


def built(ctx: Context) -> bool:
    """Whether the facts exist and were built under the current settings (markets, schedules, FCR window)."""
    return get_meta(ctx.conn, "facts_fingerprint") == fingerprint(ctx)


def refresh(ctx: Context, force_full: bool = False) -> Refresh:
    """Bring `kpi_facts` up to date with the store (inside the caller's write transaction)."""
    conn = ctx.conn
    derive.settle(conn)  # reply/resolution facts still waiting since a sync that did not finish
    shaped_by = fingerprint(ctx)
    dirty = conn.execute("SELECT count(*) FROM kpi_dirty_contacts").fetchone()[0]
    # SQLite's max(rowid) is instant and about count(*); a PostgreSQL store's rowid skips the numbers its upserts
    # drew and did not use, so there the count is counted (an index-only scan).
    total = conn.execute("SELECT count(*) FROM contacts" if ctx.store.on_server
                         else "SELECT coalesce(max(rowid), 0) FROM contacts").fetchone()[0]
    full = force_full or get_meta(conn, "facts_fingerprint") != shaped_by or dirty > _FULL_SHARE * max(total, 1)
    _prepare_clock(ctx, full)
    _drop_temp(conn)
    _note_feed_start(ctx)
    if full:
        _rebuild(ctx)
        set_meta(conn, "facts_fingerprint", shaped_by)
        return Refresh(total, True)
    changed = _refresh_some(ctx) if dirty else 0
    return Refresh(dirty, False, changed)


def _note_feed_start(ctx: Context) -> None:
    """When the order feed's start (its earliest order) moved, note the days whose value KPIs it changes: which
    contacts have VALUE_DAYS of orders before them, and which periods the feed covers for interactions per order.
    Those days change with no contact's facts changing."""
    conn = ctx.conn
    first = conn.execute("SELECT min(created_at) FROM orders").fetchone()[0]
    old = get_meta(conn, "orders_feed_start")
    if first == old:
        return
    known = sorted(d for d in (first, old) if d)
    if known:
        until = (known[-1] if len(known) == 2 else ctx.now_iso)[:10]
        conn.execute(
            "WITH RECURSIVE d(day) AS (SELECT date(?) UNION ALL SELECT date(day, '+1 day') FROM d"
            f" WHERE day < date(?, '+{VALUE_DAYS} days')) INSERT INTO kpi_dirty_days SELECT day FROM d"
            " WHERE day NOT IN (SELECT day FROM kpi_dirty_days)", [known[0][:10], until])
    if first:
        set_meta(conn, "orders_feed_start", first)
    else:
        conn.execute("DELETE FROM kpi_meta WHERE key = 'orders_feed_start'")


def _rebuild(ctx: Context) -> None:
    """Everything from scratch: indexes dropped and built again after the bulk insert (much faster)."""
    conn = ctx.conn
    for name in INDEXES:
        conn.execute(f"DROP INDEX IF EXISTS {name}")
    conn.execute("DELETE FROM kpi_facts")
    # Stored in creation order, so that a period's contacts sit together and range reads are sequential.
    if ctx.store.on_server and ctx.hours.configured:  # the business hours are added in between (hours_on_server)
        conn.execute(f"CREATE TEMP TABLE kf_all AS {select_sql(ctx, None)}")
        hours_on_server.fill(conn, ctx.hours, "kf_all")
        conn.execute(f"INSERT INTO kpi_facts ({', '.join(COLUMNS)}) SELECT {', '.join(COLUMNS)} FROM kf_all"
                     " ORDER BY created_at")
        conn.execute("DROP TABLE temp.kf_all")
    else:
        conn.execute(f"INSERT INTO kpi_facts ({', '.join(COLUMNS)}) SELECT * FROM ({select_sql(ctx, None)})"
                     " ORDER BY created_at")
    for sql in INDEXES.values():
        conn.execute(sql)
    conn.execute("DELETE FROM kpi_dirty_contacts")
    conn.execute("DELETE FROM kpi_facts_changes")  # every stored value is redone after a rebuild


def _prepare_clock(ctx: Context, full: bool) -> None:
    if not ctx.hours.configured:
        return
    table = "contacts" if full else "contacts c JOIN kpi_dirty_contacts USING (source, source_id)"
    first, last = ctx.conn.execute(
        f"SELECT min(created_at), max(coalesce(last_resolved_at, created_at)) FROM {table}"
    ).fetchone()
    if first:
        # unixepoch rather than strftime('%s'): the same seconds, and a function PostgreSQL's translation knows.
        epochs = ctx.conn.execute(f"SELECT {epoch_sql(ctx.conn, '?')}, {epoch_sql(ctx.conn, '?')}",
                                  [first, last]).fetchone()
        ctx.hours.prepare(int(epochs[0]), max(int(epochs[1]), ctx.now_epoch))


def _drop_temp(conn: sqlite3.Connection) -> None:
    for table in ("kf_keys", "kf_new", "kf_old", "kf_chg", "kf_all", "kf_bh"):
        conn.execute(f"DROP TABLE IF EXISTS temp.{table}")


def _refresh_some(ctx: Context) -> int:
    """Rebuild the dirty contacts (and their requesters' other contacts); return how many rows changed."""
    conn = ctx.conn
    conn.execute("CREATE TEMP TABLE kf_keys (source TEXT, source_id TEXT, PRIMARY KEY (source, source_id))")
    conn.execute("INSERT INTO kf_keys SELECT source, source_id FROM kpi_dirty_contacts")
    # The requesters' other contacts (the requester a contact has now, and the one its facts had: a contact removed
    # or given to another requester) whose next_contact_epoch (FCR) may move: those it is kept for (_next_contact_sql).
    conn.execute(
        "INSERT OR IGNORE INTO kf_keys SELECT g.source, g.source_id FROM (SELECT c.source, c.requester_id"
        " FROM kpi_dirty_contacts d CROSS JOIN contacts c ON c.source = d.source AND c.source_id = d.source_id"
        " WHERE c.requester_id IS NOT NULL UNION SELECT f.source, substr(f.requester, length(f.source) + 2)"
        " FROM kpi_dirty_contacts d CROSS JOIN kpi_facts f ON f.source = d.source AND f.source_id = d.source_id"
        " WHERE f.requester IS NOT NULL) r CROSS JOIN contacts g ON g.source = r.source"
        f" AND g.requester_id = r.requester_id WHERE {_fcr_candidate('g')}")
    conn.execute(f"CREATE TEMP TABLE kf_new AS {select_sql(ctx, 'kf_keys')}")
    if ctx.store.on_server and ctx.hours.configured:
        hours_on_server.fill(conn, ctx.hours, "kf_new")
    # Unqualified, the index goes where its table is (temp) in SQLite too; PostgreSQL's names take no schema.
    conn.execute("CREATE INDEX kf_new_contact ON kf_new (source, source_id)")
    same = "n.source = o.source AND n.source_id = o.source_id AND " + " AND ".join(
        f"n.{c} IS o.{c}" for c in COLUMNS[2:])
    conn.execute(f"CREATE TEMP TABLE kf_old AS SELECT o.* FROM kf_keys k CROSS JOIN kpi_facts o ON o.source = k.source"
                 f" AND o.source_id = k.source_id WHERE NOT EXISTS (SELECT 1 FROM kf_new n WHERE {same})")
    conn.execute(f"CREATE TEMP TABLE kf_chg AS SELECT NULL AS id, n.* FROM kf_new n"
                 f" WHERE NOT EXISTS (SELECT 1 FROM kpi_facts o WHERE {same})")
    days = " UNION ".join(f"SELECT substr({c}, 1, 10) AS day FROM {t} WHERE {c} IS NOT NULL"
                          for t in ("kf_old", "kf_chg") for c in ANCHOR_COLUMNS)
    conn.execute(f"INSERT INTO kpi_dirty_days SELECT day FROM ({days})"
                 " WHERE day NOT IN (SELECT day FROM kpi_dirty_days)")
    _record_changes(conn)
    conn.execute("DELETE FROM kpi_facts WHERE id IN (SELECT id FROM kf_old)")
    conn.execute(f"INSERT INTO kpi_facts ({', '.join(COLUMNS)}) SELECT {', '.join(COLUMNS)} FROM kf_chg")
    conn.execute("DELETE FROM kpi_dirty_contacts")
    changed = conn.execute("SELECT (SELECT count(*) FROM kf_old) + (SELECT count(*) FROM kf_chg)").fetchone()[0]
    _drop_temp(conn)
    return int(changed)


CHANGE_COLUMNS = ("source", "source_id", "is_deleted", "channel", "platform", "agent", "grp", "language", "market",
                  "priority", "tags", "custom", "created_at", "first_resolved_at", "transitions")


def _record_changes(conn: sqlite3.Connection) -> None:
    """Keep the old and new versions of the changed rows for the backlog (see backlog.py)."""
    seq = int(get_meta(conn, "facts_changes_seq") or 0) + 1
    set_meta(conn, "facts_changes_seq", str(seq))
    cols = ", ".join(CHANGE_COLUMNS)
    for sign, table in ((-1, "kf_old"), (1, "kf_chg")):
        conn.execute(f"INSERT INTO kpi_facts_changes (seq, recorded_at, sign, {cols}) SELECT ?, ?, ?, {cols}"
                     f" FROM {table}", [seq, utc_now(), sign])
