"""The ``ofasys-struct`` command (the parts that need no trained model; see test_struct_end_to_end for `sql`)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from ofasys import Task
from ofasys_struct import cli
from ofasys_struct.tasks import INSTRUCTIONS


def test_linearize_command(capsys, shop_db, tmp_path):
    assert cli.main(["linearize", json.dumps([["name", "age"], ["Ann", 31]])]) == 0
    assert capsys.readouterr().out == "col : name | age row 1 : Ann | 31\n"
    assert cli.main(["linearize", str(shop_db), "--question", "how much is green tea ?"]) == 0
    assert "name ( Green Tea )" in capsys.readouterr().out
    triples = tmp_path / "t.json"
    triples.write_text(json.dumps([["Ann", "birthPlace", "Oslo"]]))
    assert cli.main(["linearize", str(triples), "--kind", "triples", "--uncased"]) == 0
    assert capsys.readouterr().out == "ann : birth place : oslo\n"
    assert cli.main(["linearize", "not a structure"]) == 2
    assert "must be a path" in capsys.readouterr().err


def test_make_data_command(capsys, tmp_path):
    assert cli.main(["make-data", str(tmp_path), "--tasks", "sudoku", "table_qa", "--max-steps", "50"]) == 0
    assert "ofasys train" in capsys.readouterr().out
    config = (tmp_path / "struct.toml").read_text()
    assert "max_steps = 50" in config and 'name = "sudoku"' in config and 'name = "table_qa"' in config
    assert (tmp_path / "sudoku.train.jsonl").exists() and not (tmp_path / "shop.sqlite").exists()


def test_sql_command_refuses_a_missing_database_before_loading_anything(capsys, tmp_path):
    code = cli.main(["sql", "-c", str(tmp_path), "--db", str(tmp_path / "none.sqlite"), "-q", "how many shops ?"])
    assert code == 2 and "is not a SQLite database file" in capsys.readouterr().err


def test_the_text_to_sql_task_is_found_in_a_checkpoint(shop_db):
    tasks = {name: Task(name=name, instruction=ins) for name, ins in INSTRUCTIONS.items()}
    model = SimpleNamespace(tasks=tasks)
    assert cli._find_task(model, None).name == "text_to_sql"
    assert cli._find_task(model, "sudoku").name == "sudoku"
    with pytest.raises(cli.UsageError, match="no task 'nope'"):
        cli._find_task(model, "nope")
    model.tasks["other_sql"] = Task(name="other_sql", instruction="[TEXT:q] [STRUCT:db,preprocess=database] -> "
                                                                   "[TEXT:sql]")
    with pytest.raises(cli.UsageError, match=r"several tasks \(text_to_sql, other_sql\)"):
        cli._find_task(model, None)
    row, column = cli._sql_row(tasks["text_to_sql"], str(shop_db), "how many shops ?")
    assert row == {"database": str(shop_db), "question": "how many shops ?"} and column == "database"
