"""Survey scales in SQL: is a CSAT answer positive, an NPS answer on 0-10, a CES answer on 1-7.

Generated from the `Scale` data of `kpi_core.model.SCALES`, the same data the Python rule
(`Scale.is_positive`) reads, so the two cannot drift apart. The engine recomputes positivity
from score and scale for the scales it knows, so one definition holds for every source; for
a scale it does not know (a vendor's own, declared in its connector) it takes the
`is_positive` the connector stored. Scores outside their scale count as unclassified.
"""

from __future__ import annotations

from kpi_core.model import SCALES, Scale


def _inside(score: str, scale: Scale) -> str:
    return f"{score} BETWEEN {scale.low} AND {scale.high}"


def positive_sql(alias: str = "s") -> str:
    """1 when the CSAT answer is positive, 0 when not, NULL when it cannot be classified."""
    score = f"{alias}.score"
    cases = [f"WHEN '{s.name}' THEN CASE WHEN {_inside(score, s)} THEN ({score} >= {s.positive_from!r}) END"
             for s in SCALES.values()]
    return f"(CASE {alias}.scale {' '.join(cases)} ELSE {alias}.is_positive END)"


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
