"""Backlog kept up to date by difference: the stored count plus what the changed contacts changed.

Backlog at a time T counts every contact open at T, so one changed contact moves the backlog
of every later period; recounting them all after each sync would rescan the whole history.
Instead, from the old and new versions of the changed rows that `facts.refresh` keeps in
`kpi_facts_changes` (netted per contact), each stored backlog value B(T) becomes
B(T) - (old rows open at T_then) + (new rows open at T_now), where T_then is the time the
stored value was counted at (a period's end, or the time of computing for a running one).
A period's end is the UTC instant of its last local midnight in `[kpis] timezone`.
"""

from __future__ import annotations

import json
from bisect import bisect_right
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from kpi_core.kpis.context import Context
from kpi_core.kpis.periods import Grain, Period
from kpi_core.kpis.segments import Segmentation, fact_dims, fact_joins
from kpi_core.kpis.values import segment_json


@dataclass(frozen=True)
class Row:
    """A contact version as far as backlog cares: when it opened, its reopen steps or its resolution."""

    values: tuple[Any, ...]
    created_at: str
    closed_at: str | None  # contacts without reopen history: max(created, first resolution)
    steps: tuple[tuple[str, int], ...] | None  # contacts with a reopen history

    def open_at(self, t: str) -> int:
        if self.created_at >= t:
            return 0
        if self.steps is None:
            return 0 if self.closed_at is not None and self.closed_at < t else 1
        return 1 + sum(d for at, d in self.steps if max(at, self.created_at) < t)


def _changed_rows(ctx: Context, seg: Segmentation, sign: int, after: int, upto: int) -> list[Row]:
    """Per contact changed by refreshes after number `after`: its version then (sign -1: the first
    old row, if the contact existed then) or now (sign +1: the last new row, if it still exists)."""
    pick = "min" if sign < 0 else "max"
    chosen = (f"SELECT * FROM kpi_facts_changes c WHERE c.sign = {sign} AND c.seq > :after AND c.seq <= :upto"
              f" AND c.seq = (SELECT {pick}(x.seq) FROM kpi_facts_changes x WHERE x.source = c.source"
              f" AND x.source_id = c.source_id AND x.seq > :after AND x.seq <= :upto)")
    dims = fact_dims(seg)
    sql = (f"SELECT {''.join(f'{d}, ' for d in dims)}f.created_at, f.first_resolved_at, f.transitions"
           f" FROM ({chosen}) f{fact_joins(seg)} WHERE f.is_deleted = 0")
    out = []
    for row in ctx.conn.execute(sql, {"after": after, "upto": upto}):
        vals, created, resolved, transitions = tuple(row[:len(dims)]), row[-3], row[-2], row[-1]
        steps = tuple((at, int(d)) for at, d in json.loads(transitions)) if transitions else None
        closed = max(created, resolved) if resolved is not None else None
        out.append(Row(vals, created, closed, steps))
    return out


def pending(ctx: Context) -> bool:
    """Whether refreshes since the last compute left changed rows to apply."""
    return ctx.conn.execute("SELECT 1 FROM kpi_facts_changes LIMIT 1").fetchone() is not None


def clear(ctx: Context, upto: int) -> None:
    """Forget the changes of refreshes up to number `upto` (applied by this compute)."""
    ctx.conn.execute("DELETE FROM kpi_facts_changes WHERE seq <= ?", [upto])


def apply_changes(ctx: Context, grain: Grain, seg: Segmentation, periods: list[Period], upto: int) -> int:
    """Move the stored backlog of `periods` by the contacts changed since each was counted; returns the
    values written. (A period counted after some changes, by `kpi_rows`, takes only the later ones.)"""
    if not periods or not pending(ctx):
        return 0
    counted = _counted(ctx, grain, seg, periods)
    by_seq: dict[int, list[Period]] = defaultdict(list)
    for period in periods:
        by_seq[counted[period][1] if period in counted else 0].append(period)
    moves: dict[Period, dict[tuple[Any, ...], int]] = defaultdict(lambda: defaultdict(int))
    for seq, group in by_seq.items():
        if seq >= upto:
            continue
        old, new = _changed_rows(ctx, seg, -1, seq, upto), _changed_rows(ctx, seg, 1, seq, upto)
        for then, same in _by_time(group, counted).items():
            _moves(ctx, same, then, old, new, moves)
    written = _write(ctx, grain, seg, moves)
    ctx.conn.executemany(
        "UPDATE kpi_computed SET backlog_seq = ?"
        " WHERE grain = ? AND by_key = ? AND period_start = ? AND period_end = ?",
        [(upto, grain.value, seg.key, p.start.isoformat(), p.end.isoformat()) for p in periods])
    return written


def _by_time(periods: list[Period], counted: dict[Period, tuple[str, int]]) -> dict[str, list[Period]]:
    out: dict[str, list[Period]] = defaultdict(list)
    for period in periods:
        out[counted[period][0] if period in counted else ""].append(period)
    return out


def _moves(ctx: Context, periods: list[Period], then: str, old: list[Row], new: list[Row],
           moves: dict[Period, dict[tuple[Any, ...], int]]) -> None:
    now = ctx.now_iso
    ends = sorted(periods, key=lambda p: p.end)
    # Most stored periods were counted at (after) their end and still are: one sweep over the sorted ends.
    end_of = {p: ctx.instant(p.end) for p in ends}  # each boundary converted once
    steady = [p for p in ends if then >= end_of[p] and end_of[p] <= now]
    moving = [p for p in ends if p not in set(steady)]
    marks = [end_of[p] for p in steady]
    for sign, rows in ((-1, old), (1, new)):
        for row in rows:
            if row.steps is None:
                # Open at T when created < T <= closed: from the first end after creation to the last at closing.
                first = bisect_right(marks, row.created_at)
                last = len(marks) if row.closed_at is None else bisect_right(marks, row.closed_at)
                for p in steady[first:last]:
                    moves[p][row.values] += sign
            else:
                for p in steady:
                    if row.open_at(end_of[p]):
                        moves[p][row.values] += sign
            for p in moving:
                at = min(then, end_of[p]) if sign < 0 else min(now, end_of[p])
                if row.open_at(at):
                    moves[p][row.values] += sign


def _counted(ctx: Context, grain: Grain, seg: Segmentation, periods: list[Period]) -> dict[Period, tuple[str, int]]:
    """When each stored backlog was counted (its rows' computed_at, else the period's) and up to which refresh."""
    by_key = {(p.start.isoformat(), p.end.isoformat()): p for p in periods}
    out = {}
    for start, end, at, seq in ctx.conn.execute(
        "SELECT k.period_start, k.period_end, coalesce((SELECT max(v.computed_at) FROM kpi_values v"
        " WHERE v.grain = k.grain AND v.by_key = k.by_key AND v.period_start = k.period_start"
        " AND v.period_end = k.period_end AND v.kpi = 'backlog'), k.computed_at), k.backlog_seq"
        " FROM kpi_computed k WHERE k.grain = ? AND k.by_key = ?", [grain.value, seg.key]
    ):
        if (start, end) in by_key:
            out[by_key[(start, end)]] = (at, seq)
    return out


def _write(ctx: Context, grain: Grain, seg: Segmentation, moves: dict[Period, dict[tuple[Any, ...], int]]) -> int:
    """The stored backlog of each period moved by its moves; each statement once for every row it touches."""
    if not moves:
        return 0
    now = ctx.now_iso
    spans = {(p.start.isoformat(), p.end.isoformat()) for p in moves}
    starts = sorted({start for start, _ in spans})
    stored = {(start, end, segment): value for start, end, segment, value in ctx.conn.execute(
        "SELECT period_start, period_end, segment, value FROM kpi_values WHERE grain = ? AND by_key = ?"
        f" AND kpi = 'backlog' AND period_start IN ({', '.join('?' for _ in starts)})",
        [grain.value, seg.key, *starts]) if (start, end) in spans}
    gone: list[list[Any]] = []
    kept: list[list[Any]] = []
    for period, by_segment in moves.items():
        for vals, move in by_segment.items():
            if not move:
                continue
            segment = segment_json(tuple(zip(seg.dims, vals, strict=False)))
            start, end = period.start.isoformat(), period.end.isoformat()
            key = [grain.value, seg.key, start, end, "backlog", segment]
            value = (stored.get((start, end, segment)) or 0) + move
            if not value and seg.dims:  # zero backlogs are shown only unsegmented (as a full compute does)
                gone.append(key)
            else:
                kept.append([*key, value, int(value), now])
    ctx.conn.executemany("DELETE FROM kpi_values WHERE grain = ? AND by_key = ? AND period_start = ?"
                         " AND period_end = ? AND kpi = ? AND segment = ?", gone)
    ctx.conn.executemany(
        "INSERT INTO kpi_values VALUES (?, ?, ?, ?, ?, ?, ?, NULL, NULL, ?, ?)"
        " ON CONFLICT (grain, by_key, period_start, period_end, kpi, segment)"
        " DO UPDATE SET value = excluded.value, n = excluded.n, computed_at = excluded.computed_at", kept)
    # Segments the changes did not touch were counted at the same moment as before: restamp them.
    ctx.conn.executemany(
        "UPDATE kpi_values SET computed_at = ? WHERE grain = ? AND by_key = ? AND period_start = ?"
        " AND period_end = ? AND kpi = 'backlog'",
        [(now, grain.value, seg.key, period.start.isoformat(), period.end.isoformat()) for period in moves])
    return len(kept)
