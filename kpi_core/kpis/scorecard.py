"""Presenting KPI rows: the plain-text scorecard a support lead reads at a glance, the segment pivot, and CSV/JSON.

The scorecard groups KPIs as the catalogue does (speed, resolution, satisfaction, cost,
coverage, and value once an order feed has data for the periods shown) and shows value,
target, status and the change against what the period is compared with (the previous
period, or its first days for a running period), saying whether the change is for the
better. Each row has one unit, chosen for its size (37 s, 71.8 min,
2.9 h), for its value, target and change alike; labels wrap rather than being cut. Plain
text, no colour, fits 100 columns.

`kpis --by` prints the pivot instead: one line per segment (with its number of contacts),
one column per KPI.
"""

from __future__ import annotations

import csv
import io
import json
import re
import textwrap
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from kpi_core.kpis.catalogue import BY_ID, COUNT_KPIS, Direction, Group, Kpi
from kpi_core.kpis.filling import NOTE as FILLING_NOTE
from kpi_core.kpis.filling import WHOLE_HISTORY

_STATUS = {"ok": "ok", "breach": "BREACH", "no_data": "no data", "info": "", "low_n": "low n*"}
LOW_N_NOTE = ("* low n: fewer contacts than [kpis] min_n; shown, but judged by no target and firing no"
              " diagnostic")
PRORATED_NOTE = ("(prorated): a running period's business input (cost, orders, available hours) counts for the"
                 " days so far only")
CSV_COLUMNS = ("kpi", "period_start", "period_end", "segment", "value", "unit", "numerator", "denominator", "n",
               "target", "status", "partial", "compared_start", "compared_end", "to_date")
LABEL_WIDTH = 36
WIDTH = 100


# --- units and numbers ------------------------------------------------------------------------

@dataclass(frozen=True)
class Shown:
    """How one row's figures are written: the unit after them, the factor from the stored unit, decimals."""

    suffix: str
    factor: float = 1.0
    decimals: int = 1

    def number(self, value: float, signed: bool = False) -> str:
        scaled = value * self.factor
        text = f"{scaled:+,.{self.decimals}f}" if signed else f"{scaled:,.{self.decimals}f}"
        if text.lstrip("+-").strip("0.,") == "" and text[0] == "-":
            text = text[1:]  # "-0.0" says nothing
        return text

    def write(self, value: float, signed: bool = False) -> str:
        return f"{self.number(value, signed)} {self.suffix}".rstrip()


def _duration(minutes: float) -> Shown:
    """Seconds under a minute, minutes under 90, hours under two days, then days."""
    if minutes < 1:
        return Shown("s", 60.0, 0)
    if minutes < 90:
        return Shown("min", 1.0, 1)
    if minutes < 48 * 60:
        return Shown("h", 1 / 60, 1)
    return Shown("d", 1 / 1440, 1)


def shown(kpi_id: str, unit: str, value: float | None, target: Any = None) -> Shown:
    """The one unit of a row: durations sized by the value (else the target), the rest by the KPI's unit."""
    if unit in ("minutes", "hours"):
        reference = value if value is not None else (target[1] if isinstance(target, list) else target)
        minutes = abs(reference or 0.0) * (60.0 if unit == "hours" else 1.0)
        chosen = _duration(minutes)
        return chosen if unit == "minutes" else Shown(chosen.suffix, chosen.factor * 60.0, chosen.decimals)
    if kpi_id in COUNT_KPIS:
        return Shown("", 1.0, 0)
    if unit == "%":
        return Shown("%", 1.0, 1)
    if unit == "1-7":
        return Shown("/ 7", 1.0, 2)
    if unit in ("count", "ratio"):  # averages and ratios of counts: 1.66 touches, 0.42 interactions per order
        return Shown("", 1.0, 2)
    if unit == "score":
        return Shown("", 1.0, 1)
    return Shown(unit, 1.0, 2)  # a currency


def format_value(kpi_id: str, value: float | None, unit: str, target: Any = None) -> str:
    if value is None:
        return "-"
    return shown(kpi_id, unit, value, target).write(value)


def _direction(kpi: Kpi) -> Direction | None:
    return BY_ID[kpi.target_of].direction if kpi.target_of else kpi.direction


def format_target(kpi: Kpi, target: Any, how: Shown) -> str:
    if target is None:
        return ""
    if isinstance(target, (list, tuple)):
        return f"{how.number(target[0])}..{how.write(target[1])}"
    return f"{'>=' if _direction(kpi) is Direction.HIGHER else '<='} {how.write(target)}"


def format_change(kpi: Kpi, value: float | None, previous: float | None, how: Shown) -> str:
    if value is None or previous is None:
        return ""
    delta = value - previous
    text = how.number(delta, signed=True) + (" pts" if how.suffix == "%" else f" {how.suffix}".rstrip())
    if text.lstrip("+-").split(" ")[0].strip("0.,") == "":
        return text.lstrip("+")  # no change at this precision
    if kpi.direction is None:
        return text
    better = (delta > 0) == (kpi.direction is Direction.HIGHER)
    return f"{text} ({'better' if better else 'worse'})"


def _segment_label(segment: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in segment.items()) or "all contacts"


# --- the scorecard ----------------------------------------------------------------------------------

Key = tuple[str, str, str, str]  # kpi, segment json, period start, period end


def format_scorecard(rows: Sequence[Mapping[str, Any]], previous_rows: Sequence[Mapping[str, Any]] | None = None,
                     channel_frt: Sequence[Mapping[str, Any]] | None = None) -> str:
    """One block per period and segment.

    `previous_rows` (api.previous_rows) give the change column: each row is matched with the previous row of its
    `compared_with` span (the period just before when a row has none). `channel_frt`: the rows of
    `first_response_time_median` by channel, summarised under the unsegmented median first response time.
    """
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
    low_n = False
    hidden = hidden_groups(rows)
    for (start, end, seg_json), block in sorted(blocks.items()):
        segment = json.loads(seg_json)
        filling = any(r.get("filling") and r["kpi"] not in WHOLE_HISTORY for r in block)
        out += _heading(start, end, segment, block[0].get("compared_with"), filling)
        by_group: dict[Group, list[Mapping[str, Any]]] = defaultdict(list)
        for row in block:
            by_group[BY_ID[row["kpi"]].group].append(row)
            low_n = low_n or row["status"] == "low_n"
        order = {k: i for i, k in enumerate(BY_ID)}
        for group in Group:
            members = sorted(by_group.get(group, []), key=lambda r: (order[r["kpi"]], json.dumps(r["segment"])))
            if not members or group in hidden:
                continue
            out.append(group.value.upper())
            for row in members:
                out += _line(row, previous)
                if row["kpi"] == "first_response_time_median" and not segment and channel_frt:
                    out += _channel_summary([r for r in channel_frt if r["period_start"] == start])
        out.append("")
    if any(row.get("prorated") for row in rows):
        out.append(PRORATED_NOTE)
    if low_n:
        out.append(LOW_N_NOTE)
    if any(row.get("filling") for row in rows):
        out.append(FILLING_NOTE)
    return "\n".join(out).rstrip() + "\n"


def has_order_feed(rows: Iterable[Mapping[str, Any]]) -> bool:
    """Whether the rows show an order feed's data (orders counted, or a value KPI with a value): without one,
    the value group would be a block of "no data" and is left out."""
    return any(BY_ID[r["kpi"]].group is Group.VALUE and r["value"] for r in rows)


def has_insight(rows: Iterable[Mapping[str, Any]]) -> bool:
    """Whether any conversation-insight KPI has a value: with insight off (or no source that reads the
    messages' changes), the insight group would be a block of "no data" and is left out."""
    return any(BY_ID[r["kpi"]].group is Group.INSIGHT and r["value"] is not None for r in rows)


def hidden_groups(rows: Sequence[Mapping[str, Any]]) -> set[Group]:
    """The optional groups with nothing to show in these rows."""
    return ({Group.VALUE} if not has_order_feed(rows) else set()) | \
        ({Group.INSIGHT} if not has_insight(rows) else set())


def _heading(start: str, end: str, segment: Mapping[str, Any], compared: Mapping[str, Any] | None,
             filling: bool = False) -> list[str]:
    lines = [f"KPI scorecard  {start} .. {end} (end exclusive)  |  {_segment_label(segment)}"
             + ("  |  filling: still syncing older history" if filling else "")]
    against = "vs previous period"
    if compared and compared.get("to_date"):
        days = (date.fromisoformat(compared["period_end"]) - date.fromisoformat(compared["period_start"])).days
        total = (date.fromisoformat(end) - date.fromisoformat(start)).days
        note = (f"running: {days} of {total} days so far; changes compare with the same {days} days of the"
                f" previous period, {compared['period_start']} .. {compared['period_end']} (end exclusive)")
        lines += wrap(note, "  ", "  ")
        against = f"vs first {days} days before"
    lines.append(f"  {'KPI':<{LABEL_WIDTH}}{'value':>12}  {'target':>13}  {'status':<8}  {against}")
    return lines


def _previous_index(rows: Iterable[Mapping[str, Any]]) -> dict[Key, float | None]:
    return {(r["kpi"], json.dumps(r["segment"], sort_keys=True), r["period_start"], r["period_end"]): r["value"]
            for r in rows}


def _previous_of(row: Mapping[str, Any], previous: Mapping[Key, float | None]) -> float | None:
    segment = json.dumps(row["segment"], sort_keys=True)
    compared = row.get("compared_with")
    if compared:
        return previous.get((row["kpi"], segment, compared["period_start"], compared["period_end"]))
    # Rows without the key (read elsewhere): the previous period is the one ending where this one starts.
    return next((v for (k, s, _, e), v in previous.items() if k == row["kpi"] and s == segment
                 and e == row["period_start"]), None)


def _label(row: Mapping[str, Any]) -> str:
    kpi = BY_ID[row["kpi"]]
    name = f"{kpi.name}: {row['segment'].get('channel')}" if row["kpi"] == "channel_mix_pct" else kpi.name
    filling = " (filling)" if row.get("filling") and row["kpi"] in WHOLE_HISTORY else ""
    return name + (" (prorated)" if row.get("prorated") else "") + filling


def _line(row: Mapping[str, Any], previous: Mapping[Key, float | None]) -> list[str]:
    kpi = BY_ID[row["kpi"]]
    how = shown(kpi.id, row["unit"], row["value"], row["target"])
    value = "-" if row["value"] is None else how.write(row["value"])
    status = _STATUS.get(row["status"], row["status"])
    change = format_change(kpi, row["value"], _previous_of(row, previous), how)
    label = textwrap.wrap(_label(row), LABEL_WIDTH) or [""]
    first = (f"  {label[0]:<{LABEL_WIDTH}}{value:>12}  {format_target(kpi, row['target'], how):>13}"
             f"  {status:<8}  {change}").rstrip()
    return [first, *(f"    {more}" for more in label[1:])]


def _channel_summary(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """"First response by channel: 5 of 6 on target - phone 37 s > 30 s": the channel targets in one line."""
    judged = [r for r in rows if r["status"] in ("ok", "breach") and list(r["segment"]) == ["channel"]]
    few = sorted(str(r["segment"]["channel"]) for r in rows if r["status"] == "low_n")
    if not judged and not few:
        return []
    misses = []
    for r in sorted(judged, key=lambda r: str(r["segment"]["channel"])):
        if r["status"] == "breach":
            how = shown(r["kpi"], r["unit"], r["value"], r["target"])
            misses.append(f"{r['segment']['channel']} {how.write(r['value'])} > {how.write(r['target'])}")
    text = "First response by channel: "
    text += f"{len(judged) - len(misses)} of {len(judged)} on target" if judged else "none judged"
    if misses:
        text += " - " + ", ".join(misses)
    if few:
        text += f" ({'too few contacts to judge' if judged else 'too few contacts in each of'}: {', '.join(few)})"
    return wrap(text, "  ", "    ")


# --- the segment pivot -------------------------------------------------------------------------------

PIVOT_KPIS = ("first_response_time_median", "service_level_pct", "resolution_time_median",
              "one_touch_resolution_pct", "reopen_rate_pct", "csat_pct", "response_rate_pct")
_CELL = 12


def format_pivot(rows: Sequence[Mapping[str, Any]], dims: Sequence[str], kpi_ids: Sequence[str] | None = None
                 ) -> str:
    """Segments as lines, KPIs as columns, one table per period (and per set of columns that fits 100 columns).

    `n` is the segment's ticket volume (its contacts created in the period). A segment with no value in any
    column is left out. A breach is marked `!`; a value resting on too few contacts is in parentheses.
    """
    columns = [k for k in (kpi_ids or PIVOT_KPIS) if k != "channel_mix_pct"]
    dims = list(dims)
    cells: dict[tuple[str, str], dict[str, dict[str, Mapping[str, Any]]]] = defaultdict(lambda: defaultdict(dict))
    for row in rows:
        if list(row["segment"]) != dims:
            continue  # channel-mix rows carry an extra dimension
        period = (row["period_start"], row["period_end"])
        cells[period][json.dumps(row["segment"], sort_keys=True)][row["kpi"]] = row
    if not cells:
        return "No KPI values for this period (run `helpdesk-kpi compute` after a sync)."
    out: list[str] = []
    marks: set[str] = set()
    for (start, end), segments in sorted(cells.items()):
        shown_segments = {s: r for s, r in segments.items()
                          if any(r.get(k) and r[k]["value"] is not None for k in columns)}
        out.append(f"KPIs by {', '.join(dims)}  {start} .. {end} (end exclusive)  |  {len(shown_segments)} segments"
                   f" with values ({len(segments) - len(shown_segments)} empty left out)")
        ordered = sorted(shown_segments.items(), key=lambda kv: (-_n(kv[1]), kv[0]))
        label_width = min(28, max([len(_pivot_label(json.loads(s), dims)) for s, _ in ordered] + [7]))
        per_table = max(1, (WIDTH - label_width - 10) // (_CELL + 1))
        for first in range(0, len(columns), per_table):
            chunk = columns[first:first + per_table]
            out += _pivot_table(ordered, dims, chunk, label_width, marks)
        out.append("")
    if "!" in marks:
        out.append("! breaches its target")
    if "(" in marks:
        out.append("(...) low n: fewer contacts than [kpis] min_n; shown, judged by no target")
    return "\n".join(out).rstrip() + "\n"


def _n(cells: Mapping[str, Mapping[str, Any]]) -> int:
    volume = cells.get("ticket_volume")
    if volume is not None and volume["value"] is not None:
        return int(volume["value"])
    return max((int(r["n"] or 0) for r in cells.values()), default=0)


def _pivot_label(segment: Mapping[str, Any], dims: Sequence[str]) -> str:
    return " / ".join("-" if segment.get(d) is None else str(segment[d]) for d in dims)


def _pivot_table(ordered: list[tuple[str, dict[str, Mapping[str, Any]]]], dims: Sequence[str], chunk: list[str],
                 label_width: int, marks: set[str]) -> list[str]:
    headers = [textwrap.wrap(BY_ID[k].name, _CELL) for k in chunk]
    depth = max(len(h) for h in headers)
    out = []
    for i in range(depth):
        left = " / ".join(dims) if i == depth - 1 else ""
        n = "n" if i == depth - 1 else ""
        texts = [(h[i - depth + len(h)] if i >= depth - len(h) else "") for h in headers]
        out.append(f"  {left:<{label_width}} {n:>7}" + "".join(f" {t:>{_CELL}}" for t in texts))
    for seg_json, cells in ordered:
        label = textwrap.wrap(_pivot_label(json.loads(seg_json), dims), label_width) or [""]
        line = f"  {label[0]:<{label_width}} {_n(cells):>7,}"
        for kpi_id in chunk:
            line += f" {_cell(cells.get(kpi_id), marks):>{_CELL}}"
        out.append(line.rstrip())
        out += [f"    {more}" for more in label[1:]]
    return out


def _cell(row: Mapping[str, Any] | None, marks: set[str]) -> str:
    if row is None or row["value"] is None:
        return "-"
    text = format_value(row["kpi"], row["value"], row["unit"], row["target"])
    if row["status"] == "low_n":
        marks.add("(")
        return f"({text}) "
    if row["status"] == "breach":
        marks.add("!")
        return f"{text} !"
    return text + "  "


# --- exports ---------------------------------------------------------------------------------------

def rows_to_json(rows: Sequence[Mapping[str, Any]]) -> str:
    return json.dumps(list(rows), indent=2, ensure_ascii=False)


def rows_to_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    """One line per value; the segment as `dim=value;dim=value`; `partial` is "true" for a period computed after a
    retention purge from what it left (docs/privacy.md); `compared_start`/`compared_end` the span its change is
    measured against, `to_date` "true" when that is the first days of the previous period."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        segment = ";".join(f"{k}={'' if v is None else v}" for k, v in row["segment"].items())
        target = row["target"]
        target_text = "" if target is None else ("..".join(map(str, target)) if isinstance(target, list) else target)
        compared = row.get("compared_with") or {}
        writer.writerow([row["kpi"], row["period_start"], row["period_end"], segment,
                         *("" if row[c] is None else row[c]
                           for c in ("value", "unit", "numerator", "denominator", "n")),
                         target_text, row["status"], "true" if row.get("partial") else "",
                         compared.get("period_start", ""), compared.get("period_end", ""),
                         "true" if compared.get("to_date") else ""])
    return buffer.getvalue()


# --- diagnostics and reasons -----------------------------------------------------------------------

def format_diagnostics(found: Sequence[Mapping[str, Any]]) -> str:
    """Each diagnostic as sentences: where and when, what it means, and the figures that made it fire, rounded."""
    if not found:
        return "No diagnostic fires for these periods."
    out = []
    for d in found:
        where = _segment_label(d["segment"])
        out += wrap(f"{d['period_start']} .. {d['period_end']}, {where}: {d['message']}", "", "  ")
        out += wrap(evidence_sentence(d["diagnostic"], d["evidence"]), "  ", "  ")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


_FIGURE = re.compile(r"(\d) (%|s|min|h|d|/ 7|pts)(?=[\s;.,)]|$)")


def wrap(text: str, first: str, rest: str) -> list[str]:
    """Lines of at most 100 characters that never part a figure from its unit ("84.6 %")."""
    kept = _FIGURE.sub(lambda m: f"{m[1]}\x00{m[2].replace(' ', chr(0))}", text)
    lines = textwrap.wrap(kept, WIDTH, initial_indent=first, subsequent_indent=rest, break_on_hyphens=False)
    return [line.replace("\x00", " ") for line in lines]


def _figure(kpi_id: str, value: Any) -> str:
    kpi = BY_ID.get(kpi_id)
    if kpi is None:
        return str(value)
    if value is None:
        return "no data"
    if isinstance(value, list):
        return " -> ".join(_figure(kpi_id, v) for v in value)
    return format_value(kpi_id, float(value), kpi.unit)


def evidence_sentence(diagnostic: str, evidence: Mapping[str, Any]) -> str:
    """The evidence of a diagnostic as one sentence with rounded figures in their units."""
    if diagnostic == "volume_spike":
        previous = evidence.get("previous_ticket_volume") or []
        sentence = (f"Ticket volume {_figure('ticket_volume', evidence['ticket_volume'])} against a mean of"
                    f" {float(evidence['previous_mean']):,.1f} over the previous {len(previous)} periods"
                    f" (threshold {float(evidence['threshold']):,.1f}).")
        return sentence
    parts = []
    for key, value in evidence.items():
        if key.startswith("overall_"):
            continue
        kpi = BY_ID.get(key)
        name = kpi.name if kpi else key
        text = f"{name} {_figure(key, value)}"
        if f"overall_{key}" in evidence:
            text += f" (overall {_figure(key, evidence[f'overall_{key}'])})"
        parts.append(text)
    return "Figures: " + "; ".join(parts) + "."


def format_reasons(found: Sequence[Mapping[str, Any]]) -> str:
    if not found:
        return "No contact reasons in this period."
    first = found[0]
    out = [f"Top contact reasons by {first['by']}  {first['period_start']} .. {first['period_end']}"]
    compared = first.get("compared_with")
    if compared and compared.get("to_date"):
        days = (date.fromisoformat(compared["period_end"]) - date.fromisoformat(compared["period_start"])).days
        out.append(f"  running: previous and change count the same {days} days of the previous period,"
                   f" {compared['period_start']} .. {compared['period_end']}")
    elif compared:
        out.append(f"  previous: {compared['period_start']} .. {compared['period_end']}")
    out.append(f"  {'reason':<32}{'volume':>9}{'share':>9}{'previous':>10}{'change':>10}")
    for r in found:
        change = "new" if r["change_pct"] is None and r["volume"] else (
            "" if r["change_pct"] is None else f"{r['change_pct']:+.0f}%")
        label = textwrap.wrap(str(r["reason"]), 32) or [""]
        out.append(f"  {label[0]:<32}{r['volume']:>9,}{r['share_pct']:>8.1f}%{r['previous_volume']:>10,}"
                   f"{change:>10}")
        out += [f"    {more}" for more in label[1:]]
    return "\n".join(out) + "\n"


def format_refunded_skus(found: Sequence[Mapping[str, Any]]) -> str:
    """The top refunded SKUs (reasons.top_refunded_skus) under the contact reasons; empty without refunds."""
    if not found:
        return ""
    first = found[0]
    out = [f"Top refunded SKUs  {first['period_start']} .. {first['period_end']}  (contacts: by the same customer"
           " within refund_window_days of a refund)",
           f"  {'SKU':<24}{'refunds':>9}{'qty':>7}{'contacts':>10}{'w/ contact':>12}  contact ids, top tags"]
    for r in found:
        ids = ", ".join(r["contact_ids"]) + (" ..." if r["contacts"] > len(r["contact_ids"]) else "")
        tags = f"  [{', '.join(r['top_tags'])}]" if r["top_tags"] else ""
        label = textwrap.wrap(str(r["sku"]), 24) or [""]
        out.append(f"  {label[0]:<24}{r['refunds']:>9,}{r['quantity']:>7,}{r['contacts']:>10,}"
                   f"{r['refunds_with_contact_pct']:>11.0f}%  {ids}{tags}".rstrip())
        out += [f"    {more}" for more in label[1:]]
    return "\n".join(out) + "\n"
