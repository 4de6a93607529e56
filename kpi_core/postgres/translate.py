"""The store's SQL, written once in SQLite's dialect, read by PostgreSQL.

The store, the derivations and the KPI facts speak SQLite (its system of record by default). Rather
than keep a second copy of every statement, each one is parsed by sqlglot, rewritten where the two
databases differ in meaning, not only in spelling, and cached by its text:

- SQLite has no boolean type: a comparison is 0 or 1 and an integer is a condition. A comparison used
  as a value becomes `CAST(... AS BIGINT)`; a value used as a condition becomes `(...) <> 0`.
- `INSERT OR IGNORE` becomes `ON CONFLICT DO NOTHING`; `INSERT OR REPLACE` an upsert on the table's
  primary key (read from the catalogue); `json_each(x)` the elements of `x` read as a JSON array,
  `json_extract(x, path)` a JSON path query, `unixepoch(x)` and `julianday(x)` the epoch arithmetic.
- Integers are 64-bit (`BIGINT`), as SQLite's are; `temp.t` is the session's `pg_temp.t`.
- Placeholders (`?`, `:name`) become psycopg's (`%s`, `%(name)s`), and a literal `%` is doubled.

What cannot be parsed (SAVEPOINT, RELEASE, ROLLBACK TO) passes through unchanged; PRAGMAs are
SQLite's alone and become nothing. Triggers and table definitions are the schema's business
(kpi_core/postgres/schema.py), which uses `translate_ddl`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError

PASS_THROUGH = re.compile(r"^\s*(SAVEPOINT|RELEASE|ROLLBACK\s+TO)\b", re.IGNORECASE)
PRAGMA = re.compile(r"^\s*PRAGMA\b", re.IGNORECASE)
BEGIN = re.compile(r"^\s*BEGIN(\s+(IMMEDIATE|DEFERRED|EXCLUSIVE))?\s*;?\s*$", re.IGNORECASE)
_PERCENT = re.compile(r"%(?!s\b|\(\w+\)s)")

# A statement's primary key columns by table, for INSERT OR REPLACE (filled by the connection).
PrimaryKeys = Callable[[str], Sequence[str]]


class UntranslatableSql(Exception):
    """A statement the PostgreSQL store cannot run; names the statement's start."""


def translate(sql: str, primary_keys: PrimaryKeys) -> str:
    """`sql` in PostgreSQL's dialect with psycopg's placeholders ('' for a statement with nothing to do)."""
    return _translate_cached(sql, _KeyLookup(primary_keys))


class _KeyLookup:
    """Hashable wrapper so the cache can key on the statement alone (the lookup is one per connection)."""

    def __init__(self, lookup: PrimaryKeys) -> None:
        self.lookup = lookup

    def __hash__(self) -> int:
        return 0

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _KeyLookup)


@lru_cache(maxsize=4096)
def _translate_cached(sql: str, keys: _KeyLookup) -> str:
    if PRAGMA.match(sql):
        return ""
    if BEGIN.match(sql):
        return "BEGIN"
    if PASS_THROUGH.match(sql):
        return sql.strip().rstrip(";")
    try:
        trees = [t for t in sqlglot.parse(sql, read="sqlite") if t is not None]
    except ParseError as exc:
        raise UntranslatableSql(f"cannot read this statement for PostgreSQL: {sql[:80]!r}") from exc
    out = []
    for tree in trees:
        tree = rewrite(tree, keys.lookup)
        out.append(tree.sql(dialect="postgres"))
    return _PERCENT.sub("%%", "; ".join(out))


def rewrite(tree: exp.Expr, primary_keys: PrimaryKeys) -> exp.Expr:
    """The project's SQLite idioms in PostgreSQL's terms (module docstring)."""
    tree = tree.transform(_functions)
    tree = tree.transform(_temp_schema)
    tree = tree.transform(_sort_keys_in_definitions)
    if isinstance(tree, exp.Insert):
        _insert_alternative(tree, primary_keys)
    _fix_booleans(tree)
    tree = tree.transform(_wide_integers)
    return tree


# --- functions ----------------------------------------------------------------------------


def _epoch(value: exp.Expr) -> exp.Expr:
    ts = exp.cast(value, exp.DataType.build("TIMESTAMPTZ"))
    return exp.Extract(this=exp.var("EPOCH"), expression=ts)


def _functions(node: exp.Expr) -> exp.Expr:
    if isinstance(node, exp.Anonymous):
        name = node.name.lower()
        args = node.expressions
        if name == "unixepoch" and len(args) == 1:
            return exp.cast(exp.Floor(this=_epoch(args[0])), exp.DataType.build("BIGINT"))
        if name == "julianday" and len(args) == 1:
            return exp.Add(this=exp.Div(this=_epoch(args[0]), expression=exp.Literal.number("86400.0")),
                           expression=exp.Literal.number("2440587.5"))
        if name == "json_each" and len(args) == 1:
            return _json_elements(args[0])
    if isinstance(node, exp.Filter) and isinstance(node.this, exp.JSONArrayAgg):
        return _json_group_array(node.this, node.expression)
    if isinstance(node, exp.JSONArrayAgg) and not isinstance(node.parent, exp.Filter):
        return _json_group_array(node, None)
    if isinstance(node, exp.JSONObject):
        # SQLite's JSON functions give text: so must these (PostgreSQL's json has no equality, for one).
        return exp.cast(node, exp.DataType.build("TEXT"))
    if isinstance(node, exp.Anonymous) and node.name.lower() == "json_array":
        return exp.cast(exp.Anonymous(this="json_build_array", expressions=node.expressions),
                        exp.DataType.build("TEXT"))
    if isinstance(node, exp.JSONExtract | exp.JSONExtractScalar):
        path = node.expression
        if isinstance(path, exp.JSONPath):
            path = exp.Literal.string(path.sql(dialect="sqlite").strip("'"))
        return _json_path(node.this, path)
    return node


def _json_group_array(agg: exp.JSONArrayAgg, where: exp.Expr | None) -> exp.Expr:
    """json_group_array(x): SQLite's compact JSON text ('["a","b"]', '[]' for no row), not json_agg's."""
    inner = agg.this
    distinct = isinstance(inner, exp.Distinct)
    value = inner.expressions[0] if distinct else inner
    piece: exp.Expr = exp.cast(exp.Anonymous(this="to_json", expressions=[value]), exp.DataType.build("TEXT"))
    joined: exp.Expr = exp.GroupConcat(this=exp.Distinct(expressions=[piece]) if distinct else piece,
                                             separator=exp.Literal.string(","))
    if where is not None:
        joined = exp.Filter(this=joined, expression=where)
    opened = exp.DPipe(this=exp.Literal.string("["), expression=joined)
    listed = exp.DPipe(this=opened, expression=exp.Literal.string("]"))
    return exp.Coalesce(this=listed, expressions=[exp.Literal.string("[]")])


def _json_path(value: exp.Expr, path: exp.Expr) -> exp.Expr:
    """json_extract(value, path): the text of the path's first match (NULL when none), as `->>` reads it."""
    query = exp.Anonymous(this="jsonb_path_query_first",
                          expressions=[exp.cast(value, exp.DataType.build("JSONB")),
                                       exp.cast(path, exp.DataType.build("JSONPATH"))])
    return exp.JSONBExtractScalar(this=query, expression=exp.Literal.string("{}"))


def _json_elements(value: exp.Expr) -> exp.Expr:
    """json_each(array): one row per element, `value` its text and `key` its 0-based position."""
    return exp.Anonymous(this="json_array_elements_text", expressions=[exp.cast(value, exp.DataType.build("JSON"))])


def _temp_schema(node: exp.Expr) -> exp.Expr:
    if isinstance(node, exp.Table) and node.args.get("db") is not None and node.db.lower() == "temp":
        node.set("db", exp.to_identifier("pg_temp"))
    return node


def _sort_keys_in_definitions(node: exp.Expr) -> exp.Expr:
    """sqlglot keeps SQLite's NULL order by writing NULLS FIRST; in a conflict target or an index key it
    means nothing to PostgreSQL (a conflict target refuses it)."""
    if isinstance(node, exp.Ordered) and node.find_ancestor(exp.OnConflict, exp.Index) is not None \
            and node.find_ancestor(exp.Select) is None:
        key: exp.Expr = node.this
        return key
    return node


def _wide_integers(node: exp.Expr) -> exp.Expr:
    if isinstance(node, exp.DataType) and isinstance(node.parent, exp.Cast) and _is_condition(node.parent.this):
        return node
    if isinstance(node, exp.DataType) and node.this in (exp.DataType.Type.INT, exp.DataType.Type.SMALLINT,
                                                         exp.DataType.Type.TINYINT):
        return exp.DataType.build("BIGINT")
    if isinstance(node, exp.DataType) and node.this in (exp.DataType.Type.FLOAT,):
        return exp.DataType.build("DOUBLE")
    return node


# --- INSERT OR ... ------------------------------------------------------------------------


def _insert_alternative(tree: exp.Insert, primary_keys: PrimaryKeys) -> None:
    alternative = (tree.args.get("alternative") or "").upper()
    if not alternative:
        return
    tree.set("alternative", None)
    if alternative == "IGNORE":
        tree.set("conflict", exp.OnConflict(action=exp.var("DO NOTHING")))
        return
    if alternative != "REPLACE":
        raise UntranslatableSql(f"INSERT OR {alternative} has no PostgreSQL form")
    table = tree.find(exp.Table)
    assert table is not None
    keys = list(primary_keys(table.name))
    schema = tree.this if isinstance(tree.this, exp.Schema) else None
    columns = [c.name for c in schema.expressions] if schema else []
    if not keys or not columns:
        raise UntranslatableSql(f"INSERT OR REPLACE INTO {table.name} needs its columns named and a primary key")
    updates = [exp.EQ(this=exp.column(c), expression=exp.column(c, table="excluded"))
               for c in columns if c not in keys]
    conflict = exp.OnConflict(conflict_keys=[exp.column(k) for k in keys],
                              action=exp.var("DO UPDATE" if updates else "DO NOTHING"), expressions=updates)
    tree.set("conflict", conflict)


# --- booleans -----------------------------------------------------------------------------

_CONDITIONS = (exp.Predicate, exp.Connector, exp.Not, exp.Boolean, exp.Exists)


def _is_condition(node: exp.Expr) -> bool:
    if isinstance(node, exp.Paren):
        return _is_condition(node.this)
    return isinstance(node, _CONDITIONS)


def _as_condition(node: exp.Expr) -> exp.Expr:
    """A value where SQLite reads a condition: true when neither 0 nor NULL."""
    if _is_condition(node):
        return node
    if isinstance(node, exp.Null):
        return node
    return exp.NEQ(this=exp.paren(node, copy=False), expression=exp.Literal.number(0))


def _as_value(node: exp.Expr) -> exp.Expr:
    """A condition where SQLite reads a value: 1 or 0 (NULL when unknown)."""
    if _is_condition(node):
        return exp.cast(exp.paren(node, copy=False), exp.DataType.build("INT"))  # boolean -> bigint has no cast
    return node


def _condition_slots(node: exp.Expr) -> list[str]:
    """The arguments of `node` that SQLite reads as conditions."""
    if isinstance(node, exp.Where | exp.Having | exp.Qualify):
        return ["this"]
    if isinstance(node, exp.Join):
        return ["on"]
    if isinstance(node, exp.If):
        # In `CASE x WHEN v THEN ...`, `v` is a value compared with `x`, not a condition.
        simple = isinstance(node.parent, exp.Case) and node.parent.args.get("this") is not None
        return [] if simple else ["this"]
    if isinstance(node, exp.Connector):
        return ["this", "expression"]
    if isinstance(node, exp.Not):
        return ["this"]
    if isinstance(node, exp.Filter):
        return []
    return []


def _fix_booleans(tree: exp.Expr) -> None:
    """Make every condition a boolean and every value a number, as SQLite reads them."""
    for node in list(tree.walk()):
        slots = _condition_slots(node)
        for slot in slots:
            child = node.args.get(slot)
            if isinstance(child, exp.Expr):
                fixed = _as_condition(child)
                if fixed is not child:
                    node.set(slot, fixed)
        if isinstance(node, exp.EQ) and isinstance(node.parent, exp.Update | exp.OnConflict):
            # `SET column = value` is parsed as an equality: its right side is a value.
            if _is_condition(node.expression):
                node.set("expression", _as_value(node.expression))
            continue
        if isinstance(node, exp.Where | exp.Having | exp.Join):
            continue
        # A condition anywhere a value is read: a projection, a function's argument, arithmetic, SET x = ...
        for key, child in list(node.args.items()):
            if key in slots:
                continue
            if isinstance(child, exp.Expr) and _is_condition(child) and _reads_value(node, key):
                node.set(key, _as_value(child))
            elif isinstance(child, list):
                node.set(key, [(_as_value(c) if isinstance(c, exp.Expr) and _is_condition(c)
                                and _reads_value(node, key) else c) for c in child])


def _reads_value(node: exp.Expr, key: str) -> bool:
    """Whether `node` reads its argument `key` as a value (not as a condition or a definition)."""
    if isinstance(node, (*_CONDITIONS, exp.Paren)):
        return False  # a condition's operands: fixed where the condition itself is used
    if isinstance(node, exp.Case) and key == "ifs":
        return False
    if isinstance(node, exp.If):
        return key == "true"
    if isinstance(node, exp.Case):
        return key == "default"
    if isinstance(node, exp.Where | exp.Having | exp.Join | exp.Qualify | exp.OnConflict):
        return False
    return isinstance(node, exp.Select | exp.Alias | exp.Func | exp.Binary | exp.Unary | exp.Tuple | exp.Values
                      | exp.Ordered | exp.Group | exp.Order | exp.Window | exp.Bracket | exp.Cast)


def uses_placeholders_by_name(params: object) -> bool:
    return isinstance(params, Mapping)
