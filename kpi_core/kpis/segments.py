"""Segments: the dimensions a KPI can be split by, their SQL, and the configured market mapping.

Ids of agents, groups and organizations are qualified by source (`zendesk:123`) because each
helpdesk numbers its own; configuration may name them either way.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from kpi_core.settings import SEGMENT_DIMENSIONS, KpiSettings, MarketSettings


class SegmentError(ValueError):
    """An unknown segment dimension."""


def sql_text(value: str) -> str:
    """A string literal for SQL built from configuration (never from API data)."""
    return "'" + value.replace("'", "''") + "'"


def _in_list(values: Iterable[str]) -> str:
    return "(" + ", ".join(sql_text(v) for v in values) + ")"


@dataclass(frozen=True)
class Segmentation:
    """An ordered list of dimensions (`[]` = unsegmented) and how each reads from the store."""

    dims: tuple[str, ...]
    custom_keys: tuple[tuple[str, str], ...] = ()  # dim -> custom field key, for custom dims

    @property
    def key(self) -> str:
        return ",".join(self.dims)

    @property
    def has_tag(self) -> bool:
        return "tag" in self.dims

    def custom_key(self, dim: str) -> str:
        return dict(self.custom_keys)[dim]


def parse(by: Sequence[str] | str | None, settings: KpiSettings) -> Segmentation:
    """Validate `--by` (a list or "a,b") against the built-in and configured dimensions."""
    if by is None:
        return Segmentation(())
    names = [d.strip() for d in (by.split(",") if isinstance(by, str) else by) if d.strip()]
    custom: list[tuple[str, str]] = []
    for name in names:
        if name in SEGMENT_DIMENSIONS:
            continue
        if name in settings.custom_segments:
            custom.append((name, settings.custom_segments[name]))
        elif name.startswith("custom.") and len(name) > 7:
            custom.append((name, name[7:]))
        else:
            known = ", ".join(SEGMENT_DIMENSIONS + tuple(settings.custom_segments))
            raise SegmentError(f"unknown segment {name!r}; use {known} or custom.FIELD")
    if len(set(names)) != len(names):
        raise SegmentError(f"segment listed twice in {names}")
    return Segmentation(tuple(names), tuple(custom))


def json_path(key: str) -> str:
    return sql_text('$."' + key.replace('"', '\\"') + '"')


def fact_dims(seg: Segmentation, duck: bool = False) -> list[str]:
    """SQL per dimension over `kpi_facts f` (and `tg`, the tag row, when splitting by tag).

    `duck`: in DuckDB's dialect (the KPI engine's), where a custom field's value comes out as JSON text,
    which `custom_value` reads as SQLite's json_extract gives it."""
    tag = "(tg.value ->> '$')" if duck else "tg.value"
    columns = {"source": "f.source", "channel": "f.channel", "platform": "f.platform", "agent": "f.agent",
               "group": "f.grp", "language": "f.language", "market": "f.market", "priority": "f.priority",
               "tag": tag}
    return [columns.get(d) or f"json_extract(f.custom, {json_path(seg.custom_key(d))})" for d in seg.dims]


def fact_joins(seg: Segmentation, duck: bool = False) -> str:
    return f" LEFT JOIN json_each(f.tags) tg{' ON true' if duck else ''}" if seg.has_tag else ""


def custom_value(text: str | None) -> Any:
    """A custom field's value from DuckDB's JSON text, as SQLite's json_extract gives it: a string or number
    as itself, true/false as 1/0, an object or list as its JSON text."""
    if text is None or text[:1] in ("{", "["):
        return text
    value = json.loads(text)
    return int(value) if isinstance(value, bool) else value


def survey_dims(seg: Segmentation, market_of_person: str, duck: bool = False) -> list[str]:
    """SQL per dimension for `survey_responses s` LEFT JOIN its contact's facts `f` and requester `rp`."""
    agent = "coalesce(f.agent, CASE WHEN s.agent_id IS NOT NULL THEN s.source || ':' || s.agent_id END)"
    columns = {"source": "s.source", "agent": agent, "language": "coalesce(f.language, rp.language, 'und')",
               "market": f"coalesce(f.market, {market_of_person})"}
    facts = fact_dims(seg, duck)
    return [columns.get(d, sql) for d, sql in zip(seg.dims, facts, strict=True)]


def market_sql(markets: Sequence[MarketSettings], default: str, *, source: str, country: str,
               organization: str, brand: str, tags: str, duck: bool = False) -> str:
    """The configured market of a contact; without rules, its country code (`duck`: in DuckDB's dialect)."""
    if not markets:
        return f"upper({country})"
    cases = []
    for market in markets:
        tests = []
        if market.countries:
            tests.append(f"upper({country}) IN {_in_list(c.upper() for c in market.countries)}")
        for ids, column in ((market.organizations, organization), (market.brands, brand)):
            if ids:
                tests.append(f"({column} IN {_in_list(ids)} OR ({source} || ':' || {column}) IN {_in_list(ids)})")
        for tag in market.tags:
            quoted = sql_text('"' + tag + '"')
            value = "(value ->> '$')" if duck else "value"
            tests.append(f"(instr({tags}, {quoted}) > 0 AND EXISTS (SELECT 1 FROM json_each({tags})"
                         f" WHERE {value} = {sql_text(tag)}))")
        if tests:
            cases.append(f"WHEN {' OR '.join(tests)} THEN {sql_text(market.name)}")
    return f"(CASE {' '.join(cases)} ELSE {sql_text(default)} END)" if cases else sql_text(default)


def matches_id(column: str, ids: Iterable[str]) -> str:
    """SQL: a qualified id column (`source:id`) equals one of `ids`, given qualified or bare."""
    ids = list(ids)
    if not ids:
        return "0"
    return f"({column} IN {_in_list(ids)} OR substr({column}, instr({column}, ':') + 1) IN {_in_list(ids)})"
