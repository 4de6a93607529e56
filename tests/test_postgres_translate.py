"""The store's SQLite statements as PostgreSQL reads them (kpi_core/postgres/translate.py), on plain text.

Each case is an idiom the store's modules use whose meaning differs between the two databases, not only
its spelling; tests/test_postgres_store.py runs the translated statements on a real server.
"""

from __future__ import annotations

import pytest

from kpi_core.postgres.translate import translate


def pg(sql: str, keys: tuple[str, ...] = ("key",)) -> str:
    return translate(sql, lambda _table: keys)


def test_a_comparison_read_as_a_number_is_cast_and_a_number_read_as_a_condition_is_compared() -> None:
    assert pg("SELECT sum(a > b), coalesce(x = 1, 0) FROM t WHERE flag AND NOT other") == (
        "SELECT SUM(CAST((a > b) AS INT)), COALESCE(CAST((x = 1) AS INT), 0) FROM t"
        " WHERE (flag) <> 0 AND NOT (other) <> 0")


def test_case_values_stay_values_and_then_branches_become_numbers() -> None:
    assert pg("SELECT CASE p WHEN 'low' THEN 1 END, CASE WHEN x THEN a AND b ELSE c = 1 END FROM t") == (
        "SELECT CASE p WHEN 'low' THEN 1 END, CASE WHEN (x) <> 0 THEN CAST((a AND b) AS INT)"
        " ELSE CAST((c = 1) AS INT) END FROM t")


def test_an_assignment_of_a_comparison_stores_a_number() -> None:
    assert pg("UPDATE t SET is_bot = a > b WHERE id = ?") == "UPDATE t SET is_bot = CAST((a > b) AS INT) WHERE id = %s"


def test_insert_or_ignore_and_insert_or_replace() -> None:
    assert pg("INSERT OR IGNORE INTO d (source, contact_id) SELECT ?, value FROM json_each(?)") == (
        "INSERT INTO d (source, contact_id) SELECT %s, value FROM JSON_ARRAY_ELEMENTS_TEXT(CAST(%s AS JSON))"
        " ON CONFLICT DO NOTHING")
    assert pg("INSERT OR REPLACE INTO kpi_meta (key, value) VALUES (?, ?)") == (
        "INSERT INTO kpi_meta (key, value) VALUES (%s, %s) ON CONFLICT(key) DO UPDATE SET value = excluded.value")


def test_an_upsert_names_its_conflict_target_without_sort_order() -> None:
    upsert = "INSERT INTO [c] ([a], [b]) VALUES (?, ?) ON CONFLICT (source, source_id) DO UPDATE SET [b] = excluded.[b]"
    assert pg(upsert) == ('INSERT INTO "c" ("a", "b") VALUES (%s, %s) ON CONFLICT(source, source_id)'
                          ' DO UPDATE SET "b" = excluded."b"')


def test_json_group_array_gives_sqlite_s_compact_text() -> None:
    assert pg("SELECT json_group_array(DISTINCT v) FILTER (WHERE f = 'g') FROM t") == (
        "SELECT COALESCE('[' || STRING_AGG(DISTINCT CAST(TO_JSON(v) AS TEXT), ',') FILTER(WHERE f = 'g') || ']',"
        " '[]') FROM t")


def test_named_placeholders_temp_tables_integers_and_percent_signs() -> None:
    assert pg("SELECT CAST(x AS INTEGER) FROM temp.gone WHERE a = :source AND b LIKE '%x%'") == (
        "SELECT CAST(x AS BIGINT) FROM pg_temp.gone WHERE a = %(source)s AND b LIKE '%%x%%'")


@pytest.mark.parametrize(("sql", "expected"), [
    ("PRAGMA journal_mode=WAL", ""),
    ("BEGIN IMMEDIATE", "BEGIN"),
    ("SAVEPOINT derive_settle", "SAVEPOINT derive_settle"),
    ("ROLLBACK TO derive_settle", "ROLLBACK TO derive_settle"),
])
def test_statements_of_sqlite_s_own(sql: str, expected: str) -> None:
    assert pg(sql) == expected


def test_json_extract_reads_a_json_path_given_as_text_or_as_a_parameter_and_true_as_1() -> None:
    def value(json: str, path: str) -> str:
        return ("(SELECT CASE CAST(j AS TEXT) WHEN 'true' THEN '1' WHEN 'false' THEN '0' ELSE j #>> '{}' END"
                f" FROM JSONB_PATH_QUERY_FIRST(CAST({json} AS JSONB), CAST({path} AS JSONPATH)) AS _json(j))")

    assert pg("SELECT json_extract(raw, ?), json_extract(value, '$[0]') FROM t WHERE json_extract(c, :path) = '1'") == (
        f"SELECT {value('raw', '%s')}, {value('value', repr('$[0]'))} FROM t WHERE {value('c', '%(path)s')} = '1'")


def test_date_with_modifiers_is_sqlite_s_text_of_the_utc_date() -> None:
    day = "CAST(CAST(c AS TIMESTAMPTZ) AT TIME ZONE 'UTC' AS DATE)"
    assert pg("SELECT date(c), date(c, '+90 days'), date(c, 'weekday 0', '-6 days') FROM t") == (
        f"SELECT TO_CHAR({day}, 'YYYY-MM-DD'), TO_CHAR({day} + 90, 'YYYY-MM-DD'),"
        f" TO_CHAR(CAST(DATE_TRUNC('WEEK', CAST({day} + 0 AS TIMESTAMP)) AS DATE) + 6 + -6, 'YYYY-MM-DD') FROM t")
    with pytest.raises(Exception, match="modifier"):
        pg("SELECT date(c, ?) FROM t")  # a modifier must be written in the statement


def test_scalar_max_and_min_are_null_when_an_argument_is() -> None:
    assert pg("SELECT max(0, a - b), min(a, b) FROM t") == (
        "SELECT CASE WHEN 0 IS NULL OR a - b IS NULL THEN NULL ELSE GREATEST(0, a - b) END,"
        " CASE WHEN a IS NULL OR b IS NULL THEN NULL ELSE LEAST(a, b) END FROM t")
    # A placeholder is read once: the arguments become rows.
    assert pg("SELECT max(?, a) FROM t") == (
        "SELECT (SELECT CASE WHEN COUNT(v) = 2 THEN MAX(v) END FROM (VALUES (%s), (a)) AS _args(v)) FROM t")


def test_json_array_is_compact_text_and_a_nested_array_stays_json() -> None:
    assert pg("SELECT json_group_array(json_array(at, d)) FROM t") == (
        "SELECT COALESCE('[' || STRING_AGG('[' || CONCAT_WS(',', COALESCE(CAST(TO_JSON(at) AS TEXT), 'null'),"
        " COALESCE(CAST(TO_JSON(d) AS TEXT), 'null')) || ']', ',') || ']', '[]') FROM t")


def test_subqueries_are_named_json_each_has_value_and_key_and_cross_join_on_is_a_join() -> None:
    assert pg("SELECT r.key, n FROM (SELECT 1 AS n) CROSS JOIN o ON o.n = n, json_each(o.refunds) r") == (
        "SELECT r.key, n FROM (SELECT 1 AS n) AS _sq1 JOIN o ON o.n = n"
        " CROSS JOIN JSON_ARRAY_ELEMENTS_TEXT(CAST(o.refunds AS JSON)) WITH ORDINALITY AS r(value, key)")


def test_an_empty_in_list_is_false() -> None:
    assert pg("SELECT x NOT IN (), y IN (1) FROM t WHERE z IN ()") == (
        "SELECT CAST((NOT FALSE) AS INT), CAST((y IN (1)) AS INT) FROM t WHERE FALSE")
