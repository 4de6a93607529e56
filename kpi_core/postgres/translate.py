"""The store's SQL, written once in SQLite's dialect, read by PostgreSQL.

The store, the derivations and the KPI facts speak SQLite (its system of record by default). Rather
than keep a second copy of every statement, each one is parsed by sqlglot, rewritten where the two
databases differ in meaning, not only in spelling, and cached by its text:

- SQLite has no boolean type: a comparison is 0 or 1 and an integer is a condition. A comparison used
  as a value becomes `CAST(... AS BIGINT)`; a value used as a condition becomes `(...) <> 0`.
- `INSERT OR IGNORE` becomes `ON CONFLICT DO NOTHING`; `INSERT OR REPLACE` an upsert on the table's
  primary key (read from the catalogue); `json_each(x)` the elements of `x` read as a JSON array,
  `json_extract(x, path)` a JSON path query, `json_array(...)` SQLite's compact JSON text,
  `unixepoch(x)` and `julianday(x)` the epoch arithmetic.
- `date(x, modifier, ...)` is SQLite's 'YYYY-MM-DD' text of x's UTC date, moved by literal `'+N days'`
  and `'weekday N'` modifiers. A subquery in FROM without a name gets one (`_sq1`, ...);
  `json_each(x) AS j` gets the columns `value` and `key` (numbered from 1); `CROSS JOIN t ON c` is
  `JOIN t ON c`; `x IN ()` is false. `max(a, b)` and `min(a, b)` (two or more arguments) are NULL when an
  argument is, as SQLite's are (PostgreSQL's GREATEST and LEAST skip NULLs).
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
    _name_subqueries(tree)
    _number_json_elements(tree)
    _inner_cross_joins(tree)
    tree = tree.transform(_empty_in)
    tree = tree.transform(_null_when_any_null)  # after _functions: its copies of the arguments are translated
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
        # The arguments of a node replaced here are translated here: the transform does not descend into it.
        args = [a.transform(_functions) for a in node.expressions] if name in _REPLACED else node.expressions
        if name == "unixepoch" and len(args) == 1:
            return exp.cast(exp.Floor(this=_epoch(args[0])), exp.DataType.build("BIGINT"))
        if name == "julianday" and len(args) == 1:
            return exp.Add(this=exp.Div(this=_epoch(args[0]), expression=exp.Literal.number("86400.0")),
                           expression=exp.Literal.number("2440587.5"))
        if name == "json_each" and len(args) == 1:
            return _json_elements(args[0])
        if name == "date" and args:
            return _sqlite_date(args[0], args[1:])
    if isinstance(node, exp.Date) and node.this is not None and not node.expressions and not node.args.get("zone"):
        return _sqlite_date(node.this.transform(_functions), [])
    if isinstance(node, exp.Filter) and isinstance(node.this, exp.JSONArrayAgg):
        return _json_group_array(node.this, node.expression)
    if isinstance(node, exp.JSONArrayAgg) and not isinstance(node.parent, exp.Filter):
        return _json_group_array(node, None)
    if isinstance(node, exp.JSONObject):
        # SQLite's JSON functions give text: so must these (PostgreSQL's json has no equality, for one).
        return exp.cast(node, exp.DataType.build("TEXT"))
    if _is_json_array(node):
        return _json_array(node)
    if isinstance(node, exp.JSONExtract | exp.JSONExtractScalar):
        path = node.expression
        if isinstance(path, exp.JSONPath):
            path = exp.Literal.string(path.sql(dialect="sqlite").strip("'"))
        return _json_path(node.this.transform(_functions), path)
    return node


_REPLACED = {"unixepoch", "julianday", "json_each", "date"}


_DAYS = re.compile(r"^([+-]?\d+) days?$")
_WEEKDAY = re.compile(r"^weekday ([0-6])$")


def _sqlite_date(value: exp.Expr, modifiers: Sequence[exp.Expr]) -> exp.Expr:
    """date(x, '+N days', 'weekday N', ...): the 'YYYY-MM-DD' text SQLite gives (its date is UTC's; the
    connection's time zone is UTC, so a value without an offset is read as SQLite reads it)."""
    instant = exp.AtTimeZone(this=exp.cast(value, exp.DataType.build("TIMESTAMPTZ")), zone=exp.Literal.string("UTC"))
    day: exp.Expr = exp.cast(instant, exp.DataType.build("DATE"))
    for modifier in modifiers:
        text = modifier.name.strip().lower() if isinstance(modifier, exp.Literal) and modifier.is_string else ""
        if (days := _DAYS.match(text)) is not None:
            day = exp.Add(this=day, expression=exp.Literal.number(int(days.group(1))))
        elif (weekday := _WEEKDAY.match(text)) is not None:  # forward to that weekday (0 = Sunday), or stay
            # The one day of [day, day + 6] that is k days after a Monday: the Monday of day + 6 - k's week,
            # plus k (the value is read once: a `?` in it must stay one placeholder).
            k = (int(weekday.group(1)) + 6) % 7
            later = exp.cast(exp.Add(this=day, expression=exp.Literal.number(6 - k)), exp.DataType.build("TIMESTAMP"))
            monday = exp.cast(exp.TimestampTrunc(this=later, unit=exp.var("WEEK")), exp.DataType.build("DATE"))
            day = exp.Add(this=monday, expression=exp.Literal.number(k))
        else:
            raise UntranslatableSql(f"date() modifier {modifier.sql(dialect='sqlite')} has no PostgreSQL form here")
    return exp.Anonymous(this="to_char", expressions=[day, exp.Literal.string("YYYY-MM-DD")])


def _null_when_any_null(node: exp.Expr) -> exp.Expr:
    """SQLite's scalar max/min: NULL when any argument is NULL."""
    if not isinstance(node, exp.Greatest | exp.Least) or not node.expressions or node.args.get("ignore_nulls"):
        return node
    values = [node.this, *node.expressions]
    node.set("ignore_nulls", True)  # read: already made NULL-strict (not rewritten again)
    if any(v.find(exp.Placeholder) for v in values):
        # A `?` must stay one placeholder: the arguments as rows, read once (slower, so only here).
        rows = exp.Values(expressions=[exp.Tuple(expressions=[v]) for v in values],
                          alias=exp.TableAlias(this=exp.to_identifier("_args"), columns=[exp.to_identifier("v")]))
        pick = exp.Max if isinstance(node, exp.Greatest) else exp.Min
        whole = exp.EQ(this=exp.Count(this=exp.column("v")), expression=exp.Literal.number(len(values)))
        strict = exp.Case(ifs=[exp.If(this=whole, true=pick(this=exp.column("v")))])
        return exp.Subquery(this=exp.select(strict).from_(rows))
    missing = [exp.Is(this=v.copy(), expression=exp.Null()) for v in values]
    return exp.Case(ifs=[exp.If(this=exp.or_(*missing), true=exp.Null())], default=node)


def _json_group_array(agg: exp.JSONArrayAgg, where: exp.Expr | None) -> exp.Expr:
    """json_group_array(x): SQLite's compact JSON text ('["a","b"]', '[]' for no row), not json_agg's."""
    inner = agg.this
    distinct = isinstance(inner, exp.Distinct)
    value = inner.expressions[0] if distinct else inner
    # SQLite embeds a JSON array as JSON, not as a quoted string.
    piece: exp.Expr = _json_array(value) if _is_json_array(value) else exp.cast(
        exp.Anonymous(this="to_json", expressions=[value.transform(_functions)]), exp.DataType.build("TEXT"))
    joined: exp.Expr = exp.GroupConcat(this=exp.Distinct(expressions=[piece]) if distinct else piece,
                                             separator=exp.Literal.string(","))
    if where is not None:
        joined = exp.Filter(this=joined, expression=where)
    opened = exp.DPipe(this=exp.Literal.string("["), expression=joined)
    listed = exp.DPipe(this=opened, expression=exp.Literal.string("]"))
    return exp.Coalesce(this=listed, expressions=[exp.Literal.string("[]")])


def _is_json_array(node: exp.Expr) -> bool:
    return isinstance(node, exp.Anonymous) and node.name.lower() == "json_array"


def _json_array(node: exp.Expr) -> exp.Expr:
    """json_array(a, ...): SQLite's compact text ('[1,"x",null]'; json_build_array writes '[1, "x", null]'),
    a json_array argument embedded as JSON. Arguments are translated here: the transform does not descend
    into the node it replaced."""
    pieces: list[exp.Expr] = []
    for arg in node.expressions:
        if _is_json_array(arg):
            pieces.append(_json_array(arg))
            continue
        if isinstance(arg, exp.Null):
            pieces.append(exp.Literal.string("null"))
            continue
        value = arg.transform(_functions)
        if isinstance(value, exp.Literal) and value.is_string:  # to_json needs to know it is text
            value = exp.cast(value, exp.DataType.build("TEXT"))
        text = exp.cast(exp.Anonymous(this="to_json", expressions=[value]), exp.DataType.build("TEXT"))
        pieces.append(exp.Coalesce(this=text, expressions=[exp.Literal.string("null")]))
    joined = exp.Anonymous(this="concat_ws", expressions=[exp.Literal.string(","), *pieces])
    opened = exp.DPipe(this=exp.Literal.string("["), expression=joined)
    return exp.DPipe(this=opened, expression=exp.Literal.string("]"))


def _json_path(value: exp.Expr, path: exp.Expr) -> exp.Expr:
    """json_extract(value, path): the text of the path's first match (NULL when none), as `->>` reads it; JSON
    true and false as SQLite reads them, 1 and 0 (a checkbox field mapped to a survey score, say). The match is
    named once, in a subquery's FROM, so a `?` path stays one placeholder."""
    query = exp.Anonymous(this="jsonb_path_query_first",
                          expressions=[exp.cast(value, exp.DataType.build("JSONB")),
                                       exp.cast(path, exp.DataType.build("JSONPATH", udt=True))])
    found = sqlglot.parse_one(_JSON_VALUE, read="postgres")
    function = found.find(exp.Anonymous)
    assert function is not None
    function.replace(query)
    return found


_JSON_VALUE = ("(SELECT CASE CAST(j AS TEXT) WHEN 'true' THEN '1' WHEN 'false' THEN '0' ELSE j #>> '{}' END"
               " FROM jsonb_path_query_first(NULL, NULL) AS _json(j))")


def _json_elements(value: exp.Expr) -> exp.Expr:
    """json_each(array): one row per element, `value` its text (an alias naming columns adds `key`, counted from
    1 where SQLite counts from 0: the statements only tell elements apart by it)."""
    return exp.Anonymous(this="json_array_elements_text", expressions=[exp.cast(value, exp.DataType.build("JSON"))])


def _empty_in(node: exp.Expr) -> exp.Expr:
    """`x IN ()`, an empty list SQLite accepts (false, even for a NULL x): PostgreSQL has no empty list."""
    if isinstance(node, exp.In) and not node.expressions and node.args.get("query") is None \
            and node.args.get("unnest") is None and node.args.get("field") is None:
        return exp.false()
    return node


def _inner_cross_joins(tree: exp.Expr) -> None:
    """SQLite's `CROSS JOIN t ON ...` is an inner join whose order the planner keeps: an inner join here."""
    for join in tree.find_all(exp.Join):
        if (join.args.get("kind") or "").upper() == "CROSS" and join.args.get("on") is not None:
            join.set("kind", None)


def _number_json_elements(tree: exp.Expr) -> None:
    """`json_each(x) AS j` read as a table has SQLite's columns `value` and `key` (the element's position: from
    1 here, from 0 in SQLite; the statements use it to tell elements apart, not as a position)."""
    for table in tree.find_all(exp.Table):
        alias = table.args.get("alias")
        if (isinstance(table.this, exp.Anonymous) and table.this.name.lower() == "json_array_elements_text"
                and alias is not None and not alias.columns):
            table.set("ordinality", True)
            alias.set("columns", [exp.to_identifier("value"), exp.to_identifier("key")])


def _name_subqueries(tree: exp.Expr) -> None:
    """A subquery read as a table needs a name in PostgreSQL before 16 (SQLite needs none): `_sq1`, `_sq2`, ..."""
    for number, node in enumerate((n for n in tree.find_all(exp.Subquery)
                                   if isinstance(n.parent, exp.From | exp.Join) and not n.alias), start=1):
        node.set("alias", exp.TableAlias(this=exp.to_identifier(f"_sq{number}")))


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
