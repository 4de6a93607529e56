"""Survey scales in SQL: is a CSAT answer positive, an NPS answer on 0-10, a CES answer on 1-7.

The engine recomputes positivity from score and scale rather than trusting a stored flag, so
one definition holds for every source. Scores outside their scale count as unclassified.
"""

from __future__ import annotations

from kpi_core.model import SCALES

_CATEGORICAL = ("good_bad", "freshdesk")  # codes, not points: never rescaled


def top_points(low: int, high: int) -> int:
    """The catalogue's "top 20 % of the points, rounded up", counted on the span (1-7 -> 2, 0-10 -> 2)."""
    return -(-(high - low) * 20 // 100)


def positive_sql(alias: str = "s") -> str:
    """1 when the CSAT answer is positive, 0 when not, NULL when its scale is unknown."""
    score, cases = f"{alias}.score", []
    for name, (low, high) in SCALES.items():
        inside = f"{score} BETWEEN {low} AND {high}"
        if name == "good_bad":
            test = f"{score} >= 1"
        elif name == "1-5":
            test = f"{score} >= 4"
        elif name == "freshdesk":
            test = f"{score} > 100"
        else:
            test = f"{score} > {high - top_points(low, high)}"
        cases.append(f"WHEN '{name}' THEN CASE WHEN {inside} THEN ({test}) END")
    return f"(CASE {alias}.scale {' '.join(cases)} ELSE {alias}.is_positive END)"


def _rescaled(alias: str, target_low: int, target_high: int) -> str:
    score, cases = f"{alias}.score", []
    for name, (low, high) in SCALES.items():
        if name in _CATEGORICAL:
            continue
        value = f"{target_low} + ({score} - {low}) * {target_high - target_low}.0 / {high - low}"
        cases.append(f"WHEN '{name}' THEN CASE WHEN {score} BETWEEN {low} AND {high} THEN {value} END")
    return f"(CASE {alias}.scale {' '.join(cases)} END)"


def nps_sql(alias: str = "s") -> str:
    """The answer on 0-10 (other point scales rescaled linearly), NULL when it cannot be placed."""
    return _rescaled(alias, 0, 10)


def ces_sql(alias: str = "s") -> str:
    """The answer on 1-7, 7 = easiest (other point scales rescaled linearly)."""
    return _rescaled(alias, 1, 7)
