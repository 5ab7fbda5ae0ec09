"""The bundled data generators: deterministic, executable, and with held-out splits that share nothing with
training."""

from __future__ import annotations

import json
from collections import Counter

from ofasys_struct import data
from ofasys_struct.sql import run_query


def test_the_shop_database_is_a_real_sqlite_file_and_deterministic(tmp_path, shop_db, file_hash):
    again = data.build_shop_database(tmp_path / "again.sqlite", seed=0)
    assert file_hash(again) == file_hash(shop_db)
    other = data.build_shop_database(tmp_path / "other.sqlite", seed=1)
    assert file_hash(other) != file_hash(shop_db)
    counts = {t: run_query(shop_db, f"select count(*) from {t}").rows[0][0] for t in ("shops", "products", "orders")}
    assert counts == {"shops": 8, "products": 30, "orders": 120}
    # every shop sells something (join questions about a shop have an answer)
    orphans = run_query(shop_db, "select count(*) from shops where id not in (select shop_id from products)")
    assert orphans.rows == [(0,)]


def test_text_to_sql_pairs_execute_and_cover_every_difficulty(shop_db):
    s = data.text_to_sql(shop_db, n_train=300, n_valid=60, n_test=30, seed=0)
    assert [len(s[k]) for k in ("train", "valid", "test")] == [300, 60, 30]
    assert s == data.text_to_sql(shop_db, n_train=300, n_valid=60, n_test=30, seed=0)
    assert len(data.text_to_sql(shop_db, n_valid=200, n_test=0)["valid"]) == 97  # at most 40% of each template
    for split in s.values():
        for r in split[:40]:
            res = run_query(r["database"], r["sql"])
            assert res.ok and res.rows, r
    assert set(Counter(r["difficulty"] for r in s["valid"] + s["test"])) == {"easy", "medium", "hard"}
    # held-out pairs are new combinations: their gold query never appears in training under any phrasing
    train = {(r["template"], r["sql"]) for r in s["train"]}
    assert not any((r["template"], r["sql"]) in train for r in s["valid"] + s["test"])
    assert not {r["question"] for r in s["valid"]} & {r["question"] for r in s["test"]}
    # text values are mentioned in lower case; the SQL uses the stored spelling
    tea = [r for r in data.sql_pool(shop_db) if "green tea" in r["question"]]
    assert tea and all("'Green Tea'" in r["sql"] for r in tea)


def test_table_to_text_and_table_qa():
    t2t = data.splits(data.table_to_text, 200, 50, seed=0)
    assert len(t2t["train"]) == 200 and len(t2t["valid"]) == 50
    keys = {json.dumps(r["triples"]) for r in t2t["train"]}
    assert not any(json.dumps(r["triples"]) in keys for r in t2t["valid"])
    for r in t2t["train"][:50]:
        for s, _, o in r["triples"]:
            assert str(s) in r["sentence"] and str(o) in r["sentence"]
    qa = data.splits(data.table_qa, 200, 50, seed=0)
    for r in qa["train"][:50]:
        cells = {str(c) for row in r["table"]["rows"] for c in row}
        assert r["answer"] in cells
    assert data.table_qa(20, seed=5) == data.table_qa(20, seed=5)


def test_sudoku_splits_share_no_puzzle():
    s = data.splits(data.sudoku, 100, 30, size=4, seed=0)
    train = {json.dumps(r["puzzle"]) for r in s["train"]}
    assert not any(json.dumps(r["puzzle"]) in train for r in s["valid"])


def test_write_jsonl(tmp_path):
    rows = data.table_qa(3)
    path = data.write_jsonl(rows, tmp_path / "qa.jsonl")
    assert [json.loads(line) for line in path.read_text().splitlines()] == rows


def test_demo_sudoku_rows_draw_only_what_a_task_asks_for(tmp_path, monkeypatch):
    """Preparing many demo-derived tasks (``bench/bench_many_tasks.py``: 64 training rows each, a seed per task)
    drew the whole bundled split (2000 + 200 puzzles) for every task and normalised every grid on each uniqueness
    check: ~0.45 s a task. The demo now draws the held-out rows plus the training rows asked for, and the same
    number for every added task; the rows are still exactly those of the full split."""
    from ofasys_struct import demo, sudoku, tasks

    calls = Counter()
    make_puzzle, to_grid = sudoku.make_puzzle, sudoku.to_grid
    monkeypatch.setattr(sudoku, "make_puzzle", lambda *a: calls.update(["make_puzzle"]) or make_puzzle(*a))
    monkeypatch.setattr(sudoku, "to_grid", lambda *a: calls.update(["to_grid"]) or to_grid(*a))
    demo._sudoku_splits.cache_clear()
    rows = demo._rows("sudoku")
    n_train, n_valid, n_test = tasks.SIZES["sudoku"]
    drawn = []
    for seed in (11, 12, 13):
        calls.clear()
        got = rows("train", 64, seed)
        assert len(got) == 64 and rows("valid", 60, seed) and rows("train", 8, seed) == got[:8]
        drawn.append(calls["make_puzzle"])
        assert calls["to_grid"] == 0  # generation works on its own int grids
    # held-out + 64 (a few more for duplicates), not the full 2000-row training split, and flat per task
    assert all(n_valid + n_test + 64 <= n < n_valid + n_test + 64 + 40 for n in drawn), drawn
    demo._sudoku_splits.cache_clear()
    monkeypatch.undo()
    full = tasks.make_splits(tmp_path, ["sudoku"], seed=12)["sudoku"]
    assert rows("train", 64, 12) == full["train"][:64]
    assert rows("valid", 1000, 12) == full["valid"] and rows("test", 1000, 12) == full["test"]
    assert rows("train", 5000, 12) == full["train"]
