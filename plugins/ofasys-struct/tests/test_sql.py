"""The execution harness: correct scores for good queries, zero for hostile or broken ones, and the database file
never changes."""

from __future__ import annotations

import os

import pytest

from ofasys_struct.sql import (execution_accuracy, execution_match, has_top_level_order_by, normalize_sql,
                               run_query, sql_exact_match)

GOLD = "select name from products where category = 'fruit'"

HOSTILE = {
    "drop table": "DROP TABLE products",
    "delete": "DELETE FROM products",
    "update": "UPDATE products SET price = 0",
    "insert": "INSERT INTO shops VALUES (99, 'x', 'y', 2000)",
    "create": "CREATE TABLE t (x)",
    "create temp": "CREATE TEMP TABLE t AS SELECT * FROM products",
    "cte write": "WITH x AS (SELECT 1) DELETE FROM products",
    "two statements": "SELECT name FROM products WHERE category = 'fruit'; DROP TABLE products",
    "attach": "ATTACH DATABASE '{tmp}/evil.sqlite' AS evil",
    "attach in select": "SELECT * FROM products WHERE 1 = (SELECT 1) ; ATTACH '{tmp}/evil2.sqlite' AS e",
    "pragma": "PRAGMA journal_mode = WAL",
    "pragma function": "SELECT * FROM pragma_table_info('products')",
    "vacuum into": "VACUUM INTO '{tmp}/copy.sqlite'",
    "load extension": "SELECT load_extension('/tmp/evil.so')",
    "begin": "BEGIN IMMEDIATE",
    "infinite recursion": "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c",
    "huge cross join": "SELECT count(*) FROM orders a, orders b, orders c, orders d, orders e",
    "huge string": "SELECT length(group_concat(hex(randomblob(100000)))) FROM orders a, orders b",
    "syntax error": "SELECT name FROM products WHERE",
    "misspelled keyword": "SELEC name FROM products",
    "unknown table": "SELECT * FROM customers",
    "empty": "",
    "comment only": "-- nothing here",
}


@pytest.fixture
def db(shop_db, tmp_path):
    """A private copy of the shop database (these tests attack it)."""
    path = tmp_path / "shop.sqlite"
    path.write_bytes(shop_db.read_bytes())
    return path


def test_a_good_query_returns_rows(db):
    res = run_query(db, GOLD)
    assert res.ok and res.columns == ["name"] and res.rows
    assert res.to_dict()["rows"] == [list(r) for r in res.rows]


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_or_broken_queries_score_zero_and_leave_the_database_unchanged(db, tmp_path, file_hash, name):
    sql = HOSTILE[name].format(tmp=tmp_path)
    before = file_hash(db)
    files_before = sorted(os.listdir(tmp_path))
    res = run_query(db, sql, timeout=0.5)
    assert not res.ok and res.error and res.rows == []
    assert not execution_match(sql, GOLD, db, timeout=0.5)
    assert execution_accuracy([sql], [GOLD], db, timeout=0.5) == 0.0
    assert file_hash(db) == before
    assert sorted(os.listdir(tmp_path)) == files_before  # nothing attached, vacuumed or journaled next to it
    assert run_query(db, "SELECT count(*) FROM products").rows == [(30,)]


def test_error_messages_say_what_went_wrong(db):
    assert "timed out" in run_query(db, HOSTILE["infinite recursion"], timeout=0.2).error
    assert "not authorized" in run_query(db, "SELECT * FROM pragma_table_info('products')").error
    assert "one statement" in run_query(db, HOSTILE["two statements"]).error
    assert "not a query" in run_query(db, HOSTILE["drop table"]).error
    assert "incomplete input" in run_query(db, HOSTILE["syntax error"]).error
    assert "syntax error" in run_query(db, "SELECT name FROM products WHERE WHERE").error
    assert "does not exist" in run_query(db.parent / "missing.sqlite", GOLD).error
    assert not (db.parent / "missing.sqlite").exists()  # read-only mode never creates a file


@pytest.mark.parametrize("name", ["drop table", "delete", "insert", "create", "attach", "pragma", "begin",
                                  "vacuum into"])
def test_the_authorizer_alone_stops_writes(db, tmp_path, file_hash, monkeypatch, name):
    """Defence in depth: with the 'queries only' pre-check switched off, SQLite itself refuses."""
    import re

    from ofasys_struct import sql as sql_module

    monkeypatch.setattr(sql_module, "_QUERY_START", re.compile(r""))
    before = file_hash(db)
    files_before = sorted(os.listdir(tmp_path))
    res = run_query(db, HOSTILE[name].format(tmp=tmp_path))
    assert not res.ok
    assert file_hash(db) == before and sorted(os.listdir(tmp_path)) == files_before


def test_row_limit(db):
    res = run_query(db, "SELECT a.id FROM orders a, orders b", max_rows=50)
    assert res.ok and res.truncated and len(res.rows) == 50


def test_execution_accuracy_scores_equivalent_queries(db):
    golds = [GOLD, "select count ( * ) from products where price > 20",
             "select name from products order by price desc, name limit 3"]
    preds = ["SELECT p.name FROM products AS p WHERE p.category = \"fruit\";",  # same rows, other spelling
             "select count(*) from products where not price <= 20",  # same count
             "select name from products order by price asc, name limit 3"]  # order matters here: wrong
    assert execution_accuracy(preds, golds, db) == pytest.approx(200 / 3)
    assert execution_accuracy([GOLD], [GOLD], [db]) == 100.0
    assert execution_accuracy([], [], db) == 0.0
    with pytest.raises(ValueError):
        execution_accuracy(["x"], [], db)


def test_rows_compare_as_a_multiset_unless_the_gold_orders_them(db):
    assert execution_match("select name from products where category = 'fruit' order by name desc", GOLD, db)
    assert execution_match("select avg(price) * 1.0 from products", "select avg ( price ) from products", db)
    assert not execution_match("select name, price from products where category = 'fruit'", GOLD, db)
    assert has_top_level_order_by("select a from t order by a")
    assert not has_top_level_order_by("select a from (select a from t order by a)")


def test_normalisation_and_exact_match():
    assert normalize_sql('SELECT COUNT(*) FROM t1 WHERE a="X y" AND b != 2;') == \
        "select count ( * ) from t1 where a = 'X y' and b <> 2"
    assert normalize_sql("select T1.Name from t as T1 -- note\n where x>=3.5") == \
        "select t1.name from t as t1 where x >= 3.5"
    assert sql_exact_match("select name from products", "SELECT  name\nFROM products ;")
    assert not sql_exact_match("select name from products where a = 'X'", "select name from products where a = 'x'")
