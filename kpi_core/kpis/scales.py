"""Survey scales in SQL: is a CSAT answer positive, an NPS answer on 0-10, a CES answer on 1-7.

Generated from the `Scale` data of `kpi_core.model.SCALES`, the same data the Python rule
(`Scale.is_positive`) reads, so the two cannot drift apart. The engine recomputes positivity
from score and scale for the scales it knows, so one definition holds for every source; for
a scale it does not know (a vendor's own, declared in its connector) it takes the
`is_positive` the connector stored. Scores outside their scale count as unclassified.
"""

from __future__ import annotations

from collections.abc import Mapping

from kpi_core.model import SCALES, Scale


def _inside(score: str, scale: Scale) -> str:
    return f"{score} BETWEEN {scale.low} AND {scale.high}"


def _text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def scale_sql(alias: str = "s", stated: Mapping[str, str] | None = None) -> str:
    """The scale an answer is read on: the one the admin stated for its source's scale
    (`[kpis] csat_scales`, "source:scale" -> scale), else the scale the connector stored."""
    if not stated:
        return f"{alias}.scale"
    cases = " ".join(f"WHEN {_text(seen)} THEN {_text(scale)}" for seen, scale in sorted(stated.items()))
    return f"coalesce(CASE {alias}.source || ':' || {alias}.scale {cases} END, {alias}.scale)"


def _numeric_range(score: str, scale: str) -> str:
    """Positivity on a scale named "low-high" that SCALES does not list (Zendesk's 1-3 or 1-10, say): its
    top 20 % of points, rounded up, as catalogue 2b/2c say for every other numeric scale; NULL when the
    name is not such a range or the score lies outside it.

    Written so SQLite and DuckDB read it alike: the name is checked before its numbers are cast (DuckDB's
    CAST fails on text that is no number), and the integer division is exact (DuckDB's `/` is a float's)."""
    low = f"CAST(substr({scale}, 1, instr({scale}, '-') - 1) AS INTEGER)"
    high = f"CAST(substr({scale}, instr({scale}, '-') + 1) AS INTEGER)"
    points = f"(({high} - {low}) * 20 + 99)"
    top = f"(({points} - {points} % 100) / 100)"
    ranged = (f"ltrim({scale}, '0123456789-') = '' AND length({scale}) - length(replace({scale}, '-', '')) = 1"
              f" AND {scale} NOT LIKE '-%' AND {scale} NOT LIKE '%-'")
    positive = f"CASE WHEN {score} >= {high} - {top} + 1 THEN 1 ELSE 0 END"
    return (f"CASE WHEN {ranged} THEN CASE WHEN {low} < {high} AND {score} BETWEEN {low} AND {high}"
            f" THEN {positive} END END")


def positive_sql(alias: str = "s", stated: Mapping[str, str] | None = None) -> str:
    """1 when the CSAT answer is positive, 0 when not, NULL when it cannot be classified.

    Known scales by their rule; a connector's own coded scale by the `is_positive` it stored; any other
    "low-high" scale by its top 20 %. What is left (a scale nobody can read) stays NULL: such answers count
    in no CSAT KPI, and `status` lists them so the admin can state their scale."""
    score, scale = f"{alias}.score", scale_sql(alias, stated)
    cases = [f"WHEN '{s.name}' THEN CASE WHEN {_inside(score, s)} THEN"
             f" CASE WHEN {score} >= {s.positive_from!r} THEN 1 ELSE 0 END END" for s in SCALES.values()]
    return (f"(CASE {scale} {' '.join(cases)} ELSE coalesce({alias}.is_positive,"
            f" {_numeric_range(score, scale)}) END)")


def _rescaled(alias: str, target_low: int, target_high: int) -> str:
    # Categorical scales are codes, not points: placing them on a line would invent a distance.
    score, cases = f"{alias}.score", []
    for s in SCALES.values():
        if s.categorical:
            continue
        value = f"{target_low} + ({score} - {s.low}) * {target_high - target_low}.0 / {s.high - s.low}"
        cases.append(f"WHEN '{s.name}' THEN CASE WHEN {_inside(score, s)} THEN {value} END")
    return f"(CASE {alias}.scale {' '.join(cases)} END)"


def nps_sql(alias: str = "s") -> str:
    """The answer on 0-10 (other point scales rescaled linearly), NULL when it cannot be placed."""
    return _rescaled(alias, 0, 10)


def ces_sql(alias: str = "s") -> str:
    """The answer on 1-7, 7 = easiest (other point scales rescaled linearly)."""
    return _rescaled(alias, 1, 7)
