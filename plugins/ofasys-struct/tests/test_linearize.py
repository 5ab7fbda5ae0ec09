"""Linearisation of tables, triples, databases and grids, and parsing generated text back."""

from __future__ import annotations

import pytest

from ofasys_struct.linearize import (StructError, canonical, detect_kind, detect_text_kind, linearize, parse,
                                     parse_database, parse_grid, parse_table, parse_triples, to_table)
from ofasys_struct.schema import match_values, read_schema

TABLE_TEXT = "col : name | price row 1 : apple | 3 row 2 : pear | 5"


class FakeFrame:
    """The two things the linearisation asks of a pandas DataFrame (pandas itself is not a dependency)."""

    def __init__(self, columns, rows):
        self.columns = columns
        self._rows = rows

    def itertuples(self, index=True):
        assert index is False
        return iter(tuple(r) for r in self._rows)


def test_table_from_every_accepted_form(tmp_path):
    rows = [["name", "price"], ["apple", 3], ["pear", 5.0]]
    dicts = [{"name": "apple", "price": 3}, {"name": "pear", "price": 5}]
    csv_path = tmp_path / "fruit.csv"
    csv_path.write_text("name,price\napple,3\npear,5\n")
    forms = [rows, dicts, {"header": ["name", "price"], "rows": [["apple", 3], ["pear", 5]]},
             {"name": ["apple", "pear"], "price": [3, 5]}, FakeFrame(["name", "price"], [("apple", 3), ("pear", 5)]),
             str(csv_path), csv_path]
    for value in forms:
        assert detect_kind(value) == "table", value
        assert linearize(value) == TABLE_TEXT, value


def test_real_dataframe_if_pandas_is_installed():
    pd = pytest.importorskip("pandas")
    assert linearize(pd.DataFrame({"name": ["apple", "pear"], "price": [3, 5]})) == TABLE_TEXT


def test_table_title_uncased_and_cells():
    value = {"title": "Fruit", "header": ["Name", "Note"], "rows": [["Apple", "red | sweet"], ["Pear", None]]}
    assert linearize(value) == "title : Fruit col : Name | Note row 1 : Apple | red / sweet row 2 : Pear |"
    assert linearize(value, uncased=True) == \
        "title : fruit col : name | note row 1 : apple | red / sweet row 2 : pear |"


def test_table_round_trip_and_errors():
    value = {"title": "fruit", "header": ["name", "price"], "rows": [["apple", "3"], ["pear", ""]]}
    assert parse_table(linearize(value)) == value
    with pytest.raises(StructError, match="row 1 has 1 cells but the header has 2"):
        to_table([["a", "b"], ["x"]])


def test_triples():
    triples = [("Alice", "birthPlace", "Paris"), {"subject": "Alice", "relation": "works_at", "object": "Acme (UK)"}]
    assert detect_kind(triples) == "triples"
    text = linearize(triples)
    assert text == "Alice : birth place : Paris | Alice : works at : Acme [UK]"
    assert parse_triples(text) == [["Alice", "birth place", "Paris"], ["Alice", "works at", "Acme [UK]"]]
    # 3-item lists are a table by default (first row = header): say preprocess=triples for them
    assert detect_kind([["Alice", "birthPlace", "Paris"]]) == "table"
    assert linearize([["Alice", "birthPlace", "Paris"]], "triples") == "Alice : birth place : Paris"


def test_grid_forms_and_round_trip():
    grid = [[1, 0, 3, 4], [0, 0, 1, 2], [2, 1, 4, 3], [4, 3, 2, 1]]
    text = "1 _ 3 4 | _ _ 1 2 | 2 1 4 3 | 4 3 2 1"
    for value in (grid, "1.34..122143 4321".replace(" ", ""), "1 _ 3 4 | _ _ 1 2 | 2 1 4 3 | 4 3 2 1",
                  "1 0 3 4\n0 0 1 2\n2 1 4 3\n4 3 2 1"):
        assert detect_kind(value) == "grid"
        assert linearize(value) == text
    assert parse_grid(text) == [[1, None, 3, 4], [None, None, 1, 2], [2, 1, 4, 3], [4, 3, 2, 1]]
    assert detect_text_kind(text) == "grid"


def test_database_from_a_list_of_tables_with_question_values():
    tables = [{"name": "shops", "columns": ["id", "name", "city"],
               "rows": [[1, "Green Market", "Paris"], [2, "Blue Door", "Rome"]]},
              {"name": "products", "columns": [{"name": "id"}, {"name": "name"}], "values": {"name": ["Tea"]}}]
    assert detect_kind(tables) == "database"
    assert linearize(tables) == "| shops : id , name , city | products : id , name"
    from ofasys_struct.linearize import to_database

    db = to_database({"name": "shop", "tables": tables})
    matched = match_values("which shops in PARIS sell green-market tea?", db)
    assert matched == {("shops", "name"): ["Green Market"], ("shops", "city"): ["Paris"], ("products", "name"): ["Tea"]}
    text = linearize({"name": "shop", "tables": tables}, matched=matched)
    assert text == ("| shop | shops : id , name ( Green Market ) , city ( Paris ) | products : id , name ( Tea )")
    parsed = parse_database(text)
    assert parsed["name"] == "shop"
    assert parsed["tables"][0] == {"name": "shops", "columns": ["id", "name", "city"],
                                   "values": {"id": [], "name": ["Green Market"], "city": ["Paris"]}}
    assert linearize(tables, sample_values=1) == \
        "| shops : id , name ( Green Market ) , city ( Paris ) | products : id , name ( Tea )"


def test_longer_values_hide_the_values_they_contain():
    db = {"tables": [{"name": "p", "columns": ["name"], "values": {"name": ["Tea", "Green Tea", "a"]}}]}
    assert match_values("how much is green tea", db) == {("p", "name"): ["Green Tea"]}
    assert match_values("how much is tea", db) == {("p", "name"): ["Tea"]}
    assert match_values("", db) == {}


def test_sqlite_schema_and_values(shop_db):
    db = read_schema(shop_db)
    assert db["name"] == "shop"
    assert [t["name"] for t in db["tables"]] == ["shops", "products", "orders"]
    assert db["tables"][1]["columns"] == ["id", "name", "category", "price", "shop_id"]
    assert "Green Tea" in db["tables"][1]["values"]["name"] or db["tables"][1]["values"]["name"]
    assert detect_kind(str(shop_db)) == "database"
    text = linearize(str(shop_db), "database")
    assert text.startswith("| shop | shops : id , name , city , opened | products : id , name , category , price")


def test_detection_errors_are_readable(tmp_path):
    with pytest.raises(StructError, match="no such file"):
        detect_kind("/nowhere/db.sqlite")
    with pytest.raises(StructError, match="must be a path"):
        detect_kind("just some words")
    bad = tmp_path / "x.txt"
    bad.write_text("hello")
    with pytest.raises(StructError, match="not a SQLite database"):
        detect_kind(str(bad))
    with pytest.raises(StructError, match="empty list"):
        detect_kind([])


def test_canonical_forms_compare_equal():
    assert canonical([[1, 2], [2, 1]]) == canonical("12 21".replace(" ", "")) == canonical("1 2 | 2 1")
    assert canonical([("a", "rel", "b")]) == canonical("a : rel : b")
    assert parse(TABLE_TEXT)["rows"] == [["apple", "3"], ["pear", "5"]]
