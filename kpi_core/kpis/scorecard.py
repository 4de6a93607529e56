"""Presenting KPI rows: the plain-text scorecard a support lead reads at a glance, and CSV/JSON.

The scorecard groups KPIs as the catalogue does (speed, resolution, satisfaction, cost,
coverage) and shows value, target, status and the change against the previous period,
saying whether the change is for the better. Plain text, no colour, fits 100 columns.
"""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from kpi_core.kpis.catalogue import BY_ID, Direction, Group, Kpi

_UNITS = {"minutes": "min", "hours": "h", "%": "%", "count": "", "ratio": "", "score": "", "1-7": "/ 7"}
_STATUS = {"ok": "ok", "breach": "BREACH", "no_data": "no data", "info": ""}
CSV_COLUMNS = ("kpi", "period_start", "period_end", "segment", "value", "unit", "numerator", "denominator", "n",
               "target", "status", "partial")


def _number(value: float, unit: str) -> str:
    if unit in ("count",):
        return f"{value:,.0f}"
    if unit in ("ratio",):
        return f"{value:,.3f}"
    return f"{value:,.1f}" if abs(value) < 1000 else f"{value:,.0f}"


def format_value(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    suffix = _UNITS.get(unit, unit)
    return f"{_number(value, unit)} {suffix}".rstrip()


def format_target(kpi: Kpi, target: Any, unit: str) -> str:
    if target is None:
        return ""
    suffix = _UNITS.get(unit, unit)
    if isinstance(target, (list, tuple)):
        return f"{_number(target[0], unit)}..{_number(target[1], unit)} {suffix}".rstrip()
    direction = BY_ID[kpi.target_of].direction if kpi.target_of else kpi.direction
    sign = ">=" if direction is Direction.HIGHER else "<="
    return f"{sign} {_number(target, unit)} {suffix}".rstrip()


def format_change(kpi: Kpi, value: float | None, previous: float | None, unit: str) -> str:
    if value is None or previous is None:
        return ""
    delta = value - previous
    suffix = "pts" if unit == "%" else _UNITS.get(unit, unit)
    text = f"{delta:+,.1f} {suffix}".rstrip() if unit != "count" else f"{delta:+,.0f}"
    if delta == 0 or kpi.direction is None:
        return text
    better = (delta > 0) == (kpi.direction is Direction.HIGHER)
    return f"{text} ({'better' if better else 'worse'})"


def _segment_label(segment: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in segment.items()) or "all contacts"


def format_scorecard(rows: Sequence[Mapping[str, Any]], previous_rows: Sequence[Mapping[str, Any]] | None = None
                     ) -> str:
    """One block per period and segment; `previous_rows` (the periods before) give the change column."""
    if not rows:
        return "No KPI values for this period (run `helpdesk-kpi compute` after a sync)."
    previous = _previous_index(previous_rows or [])
    blocks: dict[tuple[str, str, str], list[Mapping[str, Any]]] = defaultdict(list)
    for row in rows:
        seg = dict(row["segment"])
        if row["kpi"] == "channel_mix_pct":
            seg.pop("channel", None)
        blocks[(row["period_start"], row["period_end"], json.dumps(seg, sort_keys=True))].append(row)
    out: list[str] = []
    for (start, end, seg_json), block in sorted(blocks.items()):
        out.append(f"KPI scorecard  {start} .. {end} (end exclusive)  |  {_segment_label(json.loads(seg_json))}")
        out.append(f"  {'KPI':<44}{'value':>14}  {'target':>14}  {'status':<8}  vs previous period")
        by_group: dict[Group, list[Mapping[str, Any]]] = defaultdict(list)
        for row in block:
            by_group[BY_ID[row["kpi"]].group].append(row)
        order = {k: i for i, k in enumerate(BY_ID)}
        for group in Group:
            members = sorted(by_group.get(group, []), key=lambda r: (order[r["kpi"]], json.dumps(r["segment"])))
            if not members:
                continue
            out.append(group.value.upper())
            for row in members:
                out.append(_line(row, previous))
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def _previous_index(rows: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str, str], float | None]:
    """Previous values by (kpi, segment, the start of the period that follows them)."""
    return {(r["kpi"], json.dumps(r["segment"], sort_keys=True), r["period_end"]): r["value"] for r in rows}


def _line(row: Mapping[str, Any], previous: Mapping[tuple[str, str, str], float | None]) -> str:
    kpi = BY_ID[row["kpi"]]
    name = kpi.name
    if row["kpi"] == "channel_mix_pct":
        name = f"{name}: {row['segment'].get('channel')}"
    before = previous.get((row["kpi"], json.dumps(row["segment"], sort_keys=True), row["period_start"]))
    unit = row["unit"]
    return (f"  {name[:44]:<44}{format_value(row['value'], unit):>14}  {format_target(kpi, row['target'], unit):>14}"
            f"  {_STATUS.get(row['status'], row['status']):<8}  {format_change(kpi, row['value'], before, unit)}"
            ).rstrip()


def rows_to_json(rows: Sequence[Mapping[str, Any]]) -> str:
    return json.dumps(list(rows), indent=2, ensure_ascii=False)


def rows_to_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    """One line per value; the segment as `dim=value;dim=value`; `partial` is "true" for a period computed after a
    retention purge from what it left (docs/privacy.md)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        segment = ";".join(f"{k}={'' if v is None else v}" for k, v in row["segment"].items())
        target = row["target"]
        target_text = "" if target is None else ("..".join(map(str, target)) if isinstance(target, list) else target)
        writer.writerow([row["kpi"], row["period_start"], row["period_end"], segment,
                         *("" if row[c] is None else row[c]
                           for c in ("value", "unit", "numerator", "denominator", "n")),
                         target_text, row["status"], "true" if row.get("partial") else ""])
    return buffer.getvalue()


def format_diagnostics(found: Sequence[Mapping[str, Any]]) -> str:
    if not found:
        return "No diagnostic fires for these periods."
    out = []
    for d in found:
        evidence = ", ".join(f"{k}={v}" for k, v in d["evidence"].items())
        out.append(f"{d['period_start']} .. {d['period_end']}  {_segment_label(d['segment'])}  {d['diagnostic']}")
        out.append(f"  {d['message']}")
        out.append(f"  evidence: {evidence}")
    return "\n".join(out) + "\n"


def format_reasons(found: Sequence[Mapping[str, Any]]) -> str:
    if not found:
        return "No contact reasons in this period."
    first = found[0]
    out = [f"Top contact reasons by {first['by']}  {first['period_start']} .. {first['period_end']}",
           f"  {'reason':<32}{'volume':>9}{'share':>9}{'previous':>10}{'change':>10}"]
    for r in found:
        change = "new" if r["change_pct"] is None and r["volume"] else (
            "" if r["change_pct"] is None else f"{r['change_pct']:+.0f}%")
        out.append(f"  {str(r['reason'])[:32]:<32}{r['volume']:>9,}{r['share_pct']:>8.1f}%{r['previous_volume']:>10,}"
                   f"{change:>10}")
    return "\n".join(out) + "\n"
