"""The bench's KPIs written by hand in DuckDB over the engine's own facts, and a check that both agree.

    from duckdb_reference import load, reference, stored, compare

`load` reads `kpi_facts`, `survey_responses` and the requesters' languages out of the SQLite
store with Python's `sqlite3` (DuckDB's sqlite extension is downloaded at run time, which fails
offline) into NumPy columns, and copies them into DuckDB tables. `reference` runs one grouped
query per anchor (GROUPING SETS: unsegmented and channel × language) for the months of a year,
plus backlog, channel mix and retention, and returns every value keyed like `kpi_values`
rows. `stored` reads the engine's values; `compare` checks them to a relative 1e-9.

The SQL follows the catalogue's definitions (docs/kpi-definitions.md) but is written here
independently of the engine's fragments; only data is shared: the survey scales
(`kpi_core.model.SCALES`) and the channels' service-level thresholds (`Targets`).
Not covered: the business-input KPIs (interactions_per_order, cost_per_interaction,
cost_per_resolution, agent_utilization_pct: the bench stores no inputs, so all are empty)
and the business-hours twins.
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from kpi_core.kpis.targets import Targets
from kpi_core.model import SCALES
from kpi_core.settings import KpiSettings

Key = tuple[str, str, str, str]  # (kpi, by_key, period_start, segment JSON)
SEGMENTED = "channel,language"
_FACT_TEXT = ("source", "source_id", "channel", "language", "requester", "created_at", "first_resolved_at",
              "last_resolved_at", "transitions")
_FACT_NUMBERS = ("is_deleted", "outbound", "replied", "start_epoch", "first_resolved_epoch", "frt_s", "res_s",
                 "full_res_s", "agent_replies", "reopens", "bot_only", "csat_classified", "csat_pos",
                 "next_contact_epoch", "handle_s")
_SURVEY_TEXT = ("source", "contact_id", "requester_id", "kind", "scale", "created_at")
_SURVEY_NUMBERS = ("score", "is_positive")
_REAL = frozenset({"handle_s", "score"})
# What `reference` computes; every other stored KPI is left out of the comparison.
KPIS = (
    "ticket_volume", "channel_mix_pct", "backlog", "first_response_time_avg", "first_response_time_median",
    "first_response_time_p90", "service_level_pct", "response_rate_pct", "abandonment_rate_pct",
    "repeat_contact_rate_pct", "language_coverage", "customer_retention_pct", "resolution_time_avg",
    "resolution_time_median", "full_resolution_time_avg", "handle_time_avg", "one_touch_resolution_pct", "fcr_pct",
    "reopen_rate_pct", "agent_touches_avg", "bot_deflection_rate_pct", "csat_response_rate_pct",
    "csat_of_resolved_pct", "csat_pct", "csat_responses", "nps", "nps_responses", "ces_avg",
)


def _columns(conn: sqlite3.Connection, sql: str, text: tuple[str, ...], numbers: tuple[str, ...]
             ) -> dict[str, np.ndarray]:
    """One NumPy array per column: text as objects (None = NULL), numbers as float64 (NaN = NULL)."""
    rows = conn.execute(sql).fetchall()
    names = text + numbers
    cols = list(zip(*rows, strict=True)) if rows else [() for _ in names]
    out = {}
    for name, col in zip(names, cols, strict=True):
        out[name] = np.array(col, dtype=object if name in text else np.float64)
    return out


def load(path: Path) -> tuple[duckdb.DuckDBPyConnection, float]:
    """DuckDB tables `facts`, `surveys` and `people` from the store; returns the connection and the seconds."""
    started = time.perf_counter()
    src = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    facts = _columns(src, f"SELECT {', '.join(_FACT_TEXT + _FACT_NUMBERS)} FROM kpi_facts", _FACT_TEXT,
                     _FACT_NUMBERS)
    surveys = _columns(src, f"SELECT {', '.join(_SURVEY_TEXT + _SURVEY_NUMBERS)} FROM survey_responses",
                       _SURVEY_TEXT, _SURVEY_NUMBERS)
    people = _columns(src, "SELECT source, source_id, language FROM people", ("source", "source_id", "language"), ())
    src.close()
    db = duckdb.connect()
    for name, cols, numbers in (("facts", facts, _FACT_NUMBERS), ("surveys", surveys, _SURVEY_NUMBERS),
                                ("people", people, ())):
        db.register(f"{name}_np", cols)
        # Whole numbers travel as float64 (NaN for NULL, exact below 2**53) and become integers again here.
        casts = ", ".join(f"CAST({c} AS {'DOUBLE' if c in _REAL else 'BIGINT'}) AS {c}" for c in numbers)
        keep = ", ".join(c for c in cols if c not in numbers)
        db.execute(f"CREATE TABLE {name} AS SELECT {keep}{', ' + casts if casts else ''} FROM {name}_np")
        db.unregister(f"{name}_np")
    return db, time.perf_counter() - started


# --- the queries --------------------------------------------------------------------------------------------

def _share(num: str, den: str) -> str:
    """Rows meeting num among rows meeting den, in percent (NULL without any)."""
    return f"100.0 * count(*) FILTER (WHERE ({den}) AND ({num})) / nullif(count(*) FILTER (WHERE {den}), 0)"


def _mean(expr: str, divisor: float = 1) -> str:
    return f"sum({expr})::DOUBLE / {divisor} / nullif(count({expr}), 0)"


def _ranked(expr: str) -> str:
    """The median and p90: DuckDB's quantile_disc is the catalogue's nearest rank, the value at rank
    ceil(n * p) of the n sorted values (checked against that formula for every n up to 4,000)."""
    return f"quantile_disc({expr}, [0.5, 0.9])"


def _pick(column: str, index: int, divisor: float) -> str:
    return f"{column}[{index}]::DOUBLE / {divisor}"


def _positive_sql() -> str:
    """1/0 for a CSAT answer on a scale the catalogue knows; the stored flag for a connector's own scale;
    else the top 20 % of a "low-high" scale; NULL when it cannot be classified."""
    known = " ".join(f"WHEN '{s.name}' THEN CASE WHEN s.score BETWEEN {s.low} AND {s.high}"
                     f" THEN (s.score >= {s.positive_from})::INT END" for s in SCALES.values())
    low, high = "TRY_CAST(split_part(s.scale, '-', 1) AS INT)", "TRY_CAST(split_part(s.scale, '-', 2) AS INT)"
    ranged = (f"CASE WHEN regexp_full_match(s.scale, '[0-9]+-[0-9]+') AND {low} < {high}"
              f" AND s.score BETWEEN {low} AND {high}"
              f" THEN (s.score >= {high} - (({high} - {low}) * 20 + 99) // 100 + 1)::INT END")
    return f"CASE s.scale {known} ELSE coalesce(s.is_positive, {ranged}) END"


def _rescaled_sql(low: int, high: int) -> str:
    """The answer placed on low-high (point scales only: categorical ones hold codes), NULL when it cannot be."""
    whens = " ".join(f"WHEN '{s.name}' THEN CASE WHEN s.score BETWEEN {s.low} AND {s.high}"
                     f" THEN {low} + (s.score - {s.low}) * {high - low}.0 / {s.high - s.low} END"
                     for s in SCALES.values() if not s.categorical)
    return f"CASE s.scale {whens} END"


def _month(column: str) -> str:
    return f"substr({column}, 1, 7) || '-01'"


def queries(settings: KpiSettings, now_epoch: int, lo: date, hi: date, before: date) -> dict[str, str]:
    """The SQL of each pass: months in [lo, hi) (retention reads from `before`), UTC periods."""
    if settings.timezone != "UTC" or settings.csat_scales or settings.markets:
        raise ValueError("the DuckDB reference covers the bench's settings: UTC, no stated scales, no markets")
    p = {"now": now_epoch, "abandon": int(settings.abandon_after.total_seconds()),
         "window": settings.fcr_window_days * 86400, "lo": f"'{lo.isoformat()}'", "hi": f"'{hi.isoformat()}'",
         "before": f"'{before.isoformat()}'"}
    sl = Targets(settings.targets).service_level_sql()  # the channels' thresholds in seconds (f.channel)
    cw = "f.start_epoch IS NOT NULL"  # the customer wrote: outbound contacts nobody answered have no start
    answerable = f"{cw} AND f.bot_only = 0"
    sets = "GROUP BY GROUPING SETS ((p), (p, channel, language))"
    created = f"""
    WITH f AS (SELECT *, {_month('created_at')} AS p FROM facts
               WHERE is_deleted = 0 AND created_at >= {p['lo']} AND created_at < {p['hi']}),
    g AS (SELECT grouping(channel, language) AS g, p, channel, language,
      count(*) AS ticket_volume,
      {_mean(f'CASE WHEN {cw} THEN f.frt_s END', 60)} AS first_response_time_avg,
      {_ranked(f'CASE WHEN {cw} THEN f.frt_s END')} AS frt,
      {_share(f'{answerable} AND f.frt_s <= {sl}',
              f"{answerable} AND (f.frt_s IS NOT NULL OR {p['now']} - f.start_epoch > {sl}) AND {cw}")}
        AS service_level_pct,
      {_share(f'{answerable} AND f.replied = 1', f'{answerable} AND {cw}')} AS response_rate_pct,
      {_share(f"f.frt_s IS NULL OR f.frt_s > {p['abandon']}",
              f"f.channel IN ('chat', 'messaging', 'phone') AND f.outbound = 0 AND f.bot_only = 0"
              f" AND (f.frt_s IS NOT NULL OR f.start_epoch + {p['abandon']} <= {p['now']}) AND {cw}")}
        AS abandonment_rate_pct,
      100.0 * (count(f.requester) FILTER (WHERE {cw}) - count(DISTINCT f.requester) FILTER (WHERE {cw}))
        / nullif(count(*) FILTER (WHERE {cw}), 0) AS repeat_contact_rate_pct,
      count(DISTINCT CASE WHEN f.replied = 1 AND f.language != 'und' THEN f.language END) FILTER (WHERE {cw})
        AS language_coverage
      FROM f {sets})
    SELECT g, p, channel, language, ticket_volume, first_response_time_avg, {_pick('frt', 1, 60)}
      AS first_response_time_median, {_pick('frt', 2, 60)} AS first_response_time_p90, service_level_pct,
      response_rate_pct, abandonment_rate_pct, repeat_contact_rate_pct, language_coverage FROM g"""
    resolved = f"""
    WITH f AS (SELECT *, {_month('first_resolved_at')} AS p FROM facts
               WHERE is_deleted = 0 AND first_resolved_at >= {p['lo']} AND first_resolved_at < {p['hi']}),
    g AS (SELECT grouping(channel, language) AS g, p, channel, language,
      {_mean(f'CASE WHEN {cw} THEN f.res_s END', 3600)} AS resolution_time_avg,
      {_ranked(f'CASE WHEN {cw} THEN f.res_s END')} AS res,
      {_mean(f'CASE WHEN {cw} THEN f.handle_s END', 60)} AS handle_time_avg,
      {_share('f.agent_replies = 1 AND f.reopens = 0', f'f.agent_replies >= 1 AND {cw}')} AS one_touch_resolution_pct,
      {_share(f"f.agent_replies = 1 AND f.reopens = 0 AND (f.next_contact_epoch IS NULL"
              f" OR f.next_contact_epoch > f.first_resolved_epoch + {p['window']})",
              f"f.agent_replies >= 1 AND f.first_resolved_epoch + {p['window']} <= {p['now']} AND {cw}")} AS fcr_pct,
      {_share('f.reopens >= 1', cw)} AS reopen_rate_pct,
      {_mean(f'CASE WHEN {cw} THEN f.agent_replies END')} AS agent_touches_avg,
      {_share('f.bot_only = 1', cw)} AS bot_deflection_rate_pct,
      {_share('f.csat_classified > 0', cw)} AS csat_response_rate_pct,
      100.0 * sum(CASE WHEN {cw} THEN f.csat_pos END) / nullif(sum(CASE WHEN {cw} THEN f.csat_classified END), 0)
        AS csat_of_resolved_pct
      FROM f {sets})
    SELECT g, p, channel, language, resolution_time_avg, {_pick('res', 1, 3600)} AS resolution_time_median,
      handle_time_avg, one_touch_resolution_pct, fcr_pct, reopen_rate_pct, agent_touches_avg,
      bot_deflection_rate_pct, csat_response_rate_pct, csat_of_resolved_pct FROM g"""
    last = f"""
    SELECT grouping(channel, language) AS g, p, channel, language,
      {_mean(f'CASE WHEN {cw} THEN f.full_res_s END', 3600)} AS full_resolution_time_avg
    FROM (SELECT *, {_month('last_resolved_at')} AS p FROM facts
          WHERE is_deleted = 0 AND last_resolved_at >= {p['lo']} AND last_resolved_at < {p['hi']}) f {sets}"""
    # An answer goes with its contact: left out with a deleted one or an outbound one nobody answered.
    answers = f"""
    SELECT s.*, {_month('s.created_at')} AS p, f.channel AS channel,
      coalesce(f.language, rp.language, 'und') AS language, f.requester AS contact_requester,
      {_positive_sql()} AS pos, {_rescaled_sql(0, 10)} AS nps_score, {_rescaled_sql(1, 7)} AS ces_score
    FROM surveys s LEFT JOIN facts f ON f.source = s.source AND f.source_id = s.contact_id
    LEFT JOIN people rp ON rp.source = s.source AND rp.source_id = s.requester_id
    WHERE coalesce(f.is_deleted, 0) = 0 AND (f.source_id IS NULL OR {cw})
      AND s.created_at >= {p['lo']} AND s.created_at < {p['hi']}"""
    surveys = f"""
    SELECT grouping(channel, language) AS g, p, channel, language,
      100.0 * sum(CASE WHEN kind = 'csat' THEN pos END) / nullif(count(CASE WHEN kind = 'csat' THEN pos END), 0)
        AS csat_pct,
      count(CASE WHEN kind = 'csat' THEN pos END) AS csat_responses,
      100.0 * sum(CASE WHEN kind = 'nps' THEN (nps_score >= 9)::INT - (nps_score <= 6)::INT END)
        / nullif(count(CASE WHEN kind = 'nps' THEN nps_score END), 0) AS nps,
      count(CASE WHEN kind = 'nps' THEN 1 END) AS nps_responses,
      {_mean("CASE WHEN kind = 'ces' THEN ces_score END")} AS ces_avg
    FROM ({answers}) {sets}"""
    mix = f"""
    SELECT g, p, channel, language, n AS volume,
      100.0 * n / sum(n) OVER (PARTITION BY g, p, language) AS channel_mix_pct
    FROM (SELECT grouping(channel, language) AS g, {_month('created_at')} AS p, channel, language, count(*) AS n
          FROM facts
          WHERE is_deleted = 0 AND created_at >= {p['lo']} AND created_at < {p['hi']}
          GROUP BY GROUPING SETS ((p, channel), (p, channel, language))) c"""
    # Backlog: +1 at creation and -1 at resolution (at creation when resolved "before" it) for contacts without
    # reopenings; for those with, +1 at creation and each step of their resolve/reopen history. The count open at
    # a month's end is every step before that end.
    steps = """
    SELECT created_at AS t, 1 AS d, channel, language FROM facts WHERE is_deleted = 0
    UNION ALL SELECT greatest(created_at, first_resolved_at), -1, channel, language FROM facts
      WHERE is_deleted = 0 AND transitions IS NULL AND first_resolved_at IS NOT NULL
    UNION ALL SELECT greatest(created_at, unnest(json_extract_string(transitions, '$[*][0]'))),
      unnest(json_extract(transitions, '$[*][1]')::INT[]), channel, language FROM facts
      WHERE is_deleted = 0 AND transitions IS NOT NULL"""
    backlog = f"""
    WITH b AS (SELECT CASE WHEN t < {p['lo']} THEN '' ELSE {_month('t')} END AS m, channel, language, sum(d) AS d
               FROM ({steps}) WHERE t < {p['hi']} GROUP BY ALL),
    months AS (SELECT strftime(unnest(range({p['lo']}::DATE, {p['hi']}::DATE, INTERVAL 1 MONTH)), '%Y-%m-%d') AS p)
    SELECT grouping(channel, language) AS g, p, channel, language, sum(d) AS backlog
    FROM months JOIN b ON b.m <= months.p {sets}"""
    # Retention: requesters of last month's contacts (the customer wrote) who start a contact or answer a survey
    # this month, over last month's requesters; by the segment of last month's contact.
    month = "CAST(substr({0}, 1, 4) AS INT) * 12 + CAST(substr({0}, 6, 2) AS INT)"  # months as numbers: +1 is next
    retention = f"""
    WITH r AS (SELECT {month.format('created_at')} AS m, channel, language, requester FROM facts
               WHERE is_deleted = 0 AND start_epoch IS NOT NULL AND requester IS NOT NULL
                 AND created_at >= {p['before']} AND created_at < {p['hi']}),
    active AS (SELECT DISTINCT m, requester FROM (
        SELECT m, requester FROM r
        UNION ALL SELECT {month.format('created_at')}, coalesce(source || ':' || requester_id, contact_requester)
          FROM ({answers}))
      WHERE requester IS NOT NULL),
    seg AS (SELECT DISTINCT m, channel, language, requester FROM r WHERE m + 1 < {month.format(p['hi'])}),
    flag AS (SELECT seg.*, a.requester IS NOT NULL AS back FROM seg
             LEFT JOIN active a ON a.m = seg.m + 1 AND a.requester = seg.requester),
    out AS (
      SELECT 0 AS g, m + 1 AS n, channel, language, 100.0 * count_if(back) / count(*) AS customer_retention_pct
      FROM flag GROUP BY ALL
      UNION ALL SELECT 1, m + 1, NULL, NULL,
        100.0 * count(DISTINCT requester) FILTER (WHERE back) / count(DISTINCT requester) FROM flag GROUP BY m)
    SELECT g, printf('%04d-%02d-01', (n - 1) // 12, (n - 1) % 12 + 1) AS p, channel, language,
      customer_retention_pct FROM out"""
    return {"created": created, "first_resolved": resolved, "last_resolved": last, "surveys": surveys,
            "channel_mix": mix, "backlog": backlog, "retention": retention}


def _segment(by: str, channel: Any, language: Any, *, mix: bool = False) -> str:
    seg = {"channel": channel} if mix and not by else ({} if not by else {"channel": channel, "language": language})
    return json.dumps(seg, separators=(",", ":"), ensure_ascii=False)


def reference(db: duckdb.DuckDBPyConnection, settings: KpiSettings, now_epoch: int, lo: date, hi: date,
              before: date) -> tuple[dict[Key, float | None], float]:
    """Every value of KPIS for the months of [lo, hi), unsegmented and by channel × language; and the seconds
    the queries took (results fetched)."""
    sql = queries(settings, now_epoch, lo, hi, before)
    started = time.perf_counter()
    results = {}
    for name, query in sql.items():
        cur = db.execute(query)
        results[name] = ([d[0] for d in cur.description], cur.fetchall())
    seconds = time.perf_counter() - started
    out: dict[Key, float | None] = {}
    for name, (cols, rows) in results.items():
        for row in rows:
            rec = dict(zip(cols, row, strict=True))
            by = "" if rec["g"] else SEGMENTED
            if name == "channel_mix":
                by = "" if rec["g"] == 1 else SEGMENTED  # (p, channel) is the unsegmented view's mix
            segment = _segment(by, rec["channel"], rec["language"], mix=name == "channel_mix")
            for kpi in cols[4:]:
                if kpi not in KPIS:
                    continue
                value = rec[kpi]
                if kpi == "backlog" and by and not value:
                    continue  # a segment's backlog row exists where something is open
                out[(kpi, by, rec["p"], segment)] = None if value is None else float(value)
    return out, seconds


def stored(path: Path, lo: date, hi: date) -> dict[Key, float | None]:
    """The engine's stored monthly values of KPIS over [lo, hi), unsegmented and by channel × language."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            f"SELECT kpi, by_key, period_start, segment, value FROM kpi_values WHERE grain = 'month'"
            f" AND by_key IN ('', ?) AND period_start >= ? AND period_start < ?"
            f" AND kpi IN ({', '.join('?' for _ in KPIS)})", [SEGMENTED, lo.isoformat(), hi.isoformat(), *KPIS])
        return {(k, by, p, seg): v for k, by, p, seg, v in rows}
    finally:
        conn.close()


def compare(engine: dict[Key, float | None], duck: dict[Key, float | None], rel: float = 1e-9
            ) -> tuple[int, int, list[tuple[Key, float | None, float | None]]]:
    """(values compared, of which with a value on both sides, disagreements as (key, engine, duckdb)).

    A value missing on one side counts as NULL (the engine stores empty rows the reference need not make)."""
    wrong = []
    keys = sorted(engine.keys() | duck.keys())
    both = 0
    for key in keys:
        a, b = engine.get(key), duck.get(key)
        if a is None and b is None:
            continue
        if a is None or b is None or not math.isclose(a, b, rel_tol=rel, abs_tol=0.0):
            wrong.append((key, a, b))
        else:
            both += 1
    return len(keys), both, wrong
