"""The entry module, the preprocessor and postprocessor, the metrics, and planning through the core."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys

import pytest

from ofasys.components import BuildContext
from ofasys.errors import DataError, InstructionError, PlanError
from ofasys.spec import Metric, SlotType
from ofasys_struct import plugin
from ofasys_struct.postprocess import StructPostprocessor
from ofasys_struct.preprocess import StructPreprocessor

SQL_INSTRUCTION = ('" [TEXT:question] " ; structured knowledge: " [STRUCT:database,question=question] " . '
                   'generating sql code. -> [STRUCT:sql,preprocess=sql]')


@pytest.mark.slow
def test_importing_the_plugin_is_light():
    code = ("import sys, json, ofasys_struct.plugin as p; p.ofasys_register_slot_types(register=lambda s: None); "
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'tokenizers', 'sacrebleu', 'numpy', 'sqlite3', 'ofasys_text'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ),
                         check=True)
    assert json.loads(out.stdout) == []


def test_slot_type_declaration():
    declared: list[SlotType] = []
    plugin.ofasys_register_slot_types(register=declared.append)
    (spec,) = declared
    assert spec.name == "STRUCT" and spec.kind == "tokens" and spec.vocab_blocks == ("text",)
    assert spec.components["preprocess"] == ("struct", "table", "database", "triples", "grid", "sql")
    assert spec.output_fields == ("struct", "text")
    attrs = {a.name: a for a in spec.attributes}
    assert set(attrs) == {"max_length", "uncased", "question", "sample_values", "size", "database", "timeout"}
    assert attrs["question"].sides == ("encoder",) and attrs["database"].sides == ("decoder",)
    assert all(a.help for a in spec.attributes)


def test_vocab_block_is_the_text_plugins_block():
    from ofasys_text import plugin as text_plugin

    mine, theirs = [], []
    plugin.ofasys_register_vocab_blocks(register=mine.append)
    text_plugin.ofasys_register_vocab_blocks(register=theirs.append)
    assert [(b.name, b.tokens) for b in mine] == [(b.name, b.tokens) for b in theirs]


def test_metrics_registered():
    metrics: list[Metric] = []
    plugin.ofasys_register_metrics(register=metrics.append)
    by_name = {m.name: m for m in metrics}
    assert set(by_name) == {"struct_exact_match", "solved_rate", "sql_exact_match", "execution_accuracy"}
    assert by_name["struct_exact_match"].for_types == ("STRUCT",)
    pickle.dumps([m.fn for m in metrics])


def test_planning_and_attribute_errors():
    from ofasys.plan import build_plan

    plan = build_plan(SQL_INSTRUCTION)
    db, sql = plan.slots["database"], plan.slots["sql"]
    assert db.attrs["question"] == "question" and db.components["preprocess"] == "struct"
    assert sql.components["preprocess"] == "sql" and sql.attrs["timeout"] == 2.0
    with pytest.raises(InstructionError, match="not valid on an input slot"):
        build_plan("[STRUCT:db,database=db] -> [TEXT:x]")
    with pytest.raises(InstructionError, match="unknown attribute"):
        build_plan("[STRUCT:db,questoin=q] -> [TEXT:x]")
    with pytest.raises(InstructionError, match="no preprocess variant"):
        build_plan("[STRUCT:db,preprocess=graph] -> [TEXT:x]")


# ------------------------------------------------------------------------------------------------ preprocessor


def test_database_slot_adds_the_values_the_question_mentions(vocab, make_slot, make_ctx, decode, shop_db):
    pre = StructPreprocessor(make_slot(question="question"), vocab)
    ctx = make_ctx({"question": "what is the price of green tea ?", "database": str(shop_db)})
    toks = pre(str(shop_db), ctx)
    text = decode(toks.ids)
    assert "products : id , name ( Green Tea ) , category" in text
    assert ctx.state["struct_kinds"] == {"value": "database"}
    plain = decode(StructPreprocessor(make_slot(), vocab)(str(shop_db), make_ctx()).ids)
    assert "Green Tea" not in plain and plain.startswith("| shop | shops : id , name , city , opened")
    with pytest.raises(DataError, match="matches values against column 'question'"):
        pre(str(shop_db), make_ctx({"database": str(shop_db)}))


def test_ids_of_units_equal_the_ids_of_the_joined_text(vocab, make_slot, make_ctx):
    from ofasys_text.tokenizer import TextTokenizer

    pre = StructPreprocessor(make_slot(), vocab)
    value = {"title": "fruit", "header": ["name", "price"], "rows": [["green apple", 3.5], ["pear (ripe)", 5]]}
    text = pre.linearize(value)
    start = vocab.block("text").start
    assert pre(value, make_ctx()).ids == [start + i for i in TextTokenizer().encode(" " + text)]


def test_truncation_keeps_whole_cells(vocab, make_slot, make_ctx, decode):
    value = {"header": ["name", "price"], "rows": [[f"item number {i}", i] for i in range(50)]}
    for limit in (7, 20, 33, 64):
        pre = StructPreprocessor(make_slot(max_length=limit), vocab)
        ids = pre(value, make_ctx()).ids
        assert len(ids) <= limit
        text = decode(ids)
        assert text == pre.linearize(value)
        full = StructPreprocessor(make_slot(max_length=0), vocab).linearize(value)
        units = full.split(" ")
        # the kept text is a prefix of the full text that ends at a cell boundary
        assert full.startswith(text) and (full == text or full[len(text)] == " ")
        last = text.rsplit("|", 1)[-1].rsplit(":", 1)[-1].strip()
        assert last in [c for r in value["rows"] for c in map(str, r)] + ["name", "price"], (limit, text)
        assert len(units) > len(text.split(" "))


def test_uncased(vocab, make_slot, make_ctx, decode):
    pre = StructPreprocessor(make_slot(uncased=True), vocab)
    assert decode(pre([["Name", "City"], ["Ann", "Paris"]], make_ctx()).ids) == "col : name | city row 1 : ann | paris"


def test_bad_values_are_data_errors_that_name_the_column(vocab, make_slot, make_ctx):
    pre = StructPreprocessor(make_slot(column="table"), vocab)
    for value, match in ((None, "cannot tell what structure"), ("hello there", "must be a path"),
                         ([["a", "b"], ["x"]], "has 1 cells but the header has 2"),
                         ("/missing/db.sqlite", "no such file")):
        with pytest.raises(DataError, match=match) as err:
            pre(value, make_ctx())
        assert "column 'table'" in str(err.value)
    with pytest.raises(DataError, match="query string"):
        StructPreprocessor(make_slot(preprocess="sql"), vocab)(42, make_ctx())


def test_misplaced_attributes_are_plan_errors(vocab, make_slot):
    with pytest.raises(PlanError, match="question= only applies to a database"):
        StructPreprocessor(make_slot(preprocess="table", question="q"), vocab)
    with pytest.raises(PlanError, match="size= only applies to preprocess=grid"):
        StructPreprocessor(make_slot(side="decoder", size=4), vocab)


def test_sql_slot_encodes_the_normalised_query(vocab, make_slot, make_ctx, decode):
    pre = StructPreprocessor(make_slot(side="decoder", column="sql", preprocess="sql"), vocab)
    toks = pre('SELECT COUNT(*) FROM products WHERE name="Green Tea";', make_ctx())
    assert decode(toks.ids) == "select count ( * ) from products where name = 'Green Tea'"
    assert toks.loss and pre.constraint() is None


def test_grid_output_constraint(vocab, make_slot, make_ctx):
    pre = StructPreprocessor(make_slot(side="decoder", column="solution", preprocess="grid", size=4), vocab)
    solution = [[1, 2, 3, 4], [3, 4, 1, 2], [2, 1, 4, 3], [4, 3, 2, 1]]
    toks = pre(solution, make_ctx())
    c = pre.constraint()
    assert c is toks.constraint and c.accepts(toks.ids)
    assert not c.accepts(toks.ids[:-1])  # 15 cells
    assert not c.accepts(pre([[1, 2], [2, 1]], make_ctx()).ids)
    free = StructPreprocessor(make_slot(side="decoder", column="solution", preprocess="grid"), vocab)
    assert free.constraint().accepts(toks.ids) and free.constraint().accepts(pre([[1, 2], [2, 1]], make_ctx()).ids)
    assert StructPreprocessor(make_slot(side="decoder"), vocab).constraint() is None


def test_preprocessor_pickles_without_its_cache(vocab, make_slot, make_ctx):
    pre = StructPreprocessor(make_slot(), vocab)
    value = [["a", "b"], [1, 2]]
    ids = pre(value, make_ctx()).ids
    again = pickle.loads(pickle.dumps(pre))
    assert again._cache == {} and again(value, make_ctx()).ids == ids


# ------------------------------------------------------------------------------------------------ postprocessor


def _ids(pre, value, make_ctx):
    return pre(value, make_ctx()).ids


def test_postprocessor_parses_generated_text_back(vocab, make_slot, make_ctx):
    for preprocess, value, expected in (
            ("struct", [[1, 2, 3, 4], [3, 4, 1, 2], [2, 1, 4, 3], [4, 3, 2, 1]],
             [[1, 2, 3, 4], [3, 4, 1, 2], [2, 1, 4, 3], [4, 3, 2, 1]]),
            ("grid", "12 21".replace(" ", ""), [[1, 2], [2, 1]]),
            ("struct", [["name", "age"], ["Ann", 31]], {"title": None, "header": ["name", "age"],
                                                       "rows": [["Ann", "31"]]}),
            ("triples", [["Ann", "birthPlace", "Oslo"]], [["Ann", "birth place", "Oslo"]])):
        slot = make_slot(side="decoder", column="out", preprocess=preprocess)
        ids = _ids(StructPreprocessor(slot, vocab), value, make_ctx) + [vocab.eos, 42]
        out = StructPostprocessor(slot, vocab)(ids, {"row": {}})
        assert out["struct"] == expected, preprocess
        assert isinstance(out["text"], str)
    assert StructPostprocessor(make_slot(side="decoder"), vocab)([], {"row": {}}) == {"text": "", "struct": None}
    post = pickle.loads(pickle.dumps(StructPostprocessor(make_slot(side="decoder", preprocess="sql"), vocab,
                                                         database_column="db")))
    assert post.database_column == "db" and post.variant == "sql"


def test_sql_output_runs_the_query_on_the_rows_database(vocab, make_slot, make_ctx, shop_db):
    slot = make_slot(side="decoder", column="sql", preprocess="sql")
    ids = _ids(StructPreprocessor(slot, vocab), "select count(*) from shops", make_ctx)
    post = StructPostprocessor(slot, vocab, database_column="db")
    out = post(ids, {"row": {"db": str(shop_db)}})
    assert out["text"] == "select count ( * ) from shops"
    assert out["struct"]["rows"] == [[8]] and out["struct"]["error"] is None
    assert out["struct"]["database"] == str(shop_db)
    assert "does not hold a path" in post(ids, {"row": {"db": "nothing"}})["struct"]["error"]
    bad = _ids(StructPreprocessor(slot, vocab), "drop table shops", make_ctx)
    assert "not a query" in post(bad, {"row": {"db": str(shop_db)}})["struct"]["error"]


def test_postprocess_factory_links_the_sql_output_to_the_database_slot(vocab):
    from ofasys.plan import build_plan

    plan = build_plan(SQL_INSTRUCTION)
    post = plugin.ofasys_postprocess(slot=plan.slots["sql"], ctx=BuildContext(vocab=vocab, plan=plan))
    assert post.database_column == "database"
    plan = build_plan("[STRUCT:a] [STRUCT:b] -> [STRUCT:sql,preprocess=sql]")
    with pytest.raises(PlanError, match="database=<column>"):
        plugin.ofasys_postprocess(slot=plan.slots["sql"], ctx=BuildContext(vocab=vocab, plan=plan))
    plan = build_plan("[STRUCT:a] [STRUCT:b] -> [STRUCT:sql,preprocess=sql,database=b]")
    assert plugin.ofasys_postprocess(slot=plan.slots["sql"], ctx=BuildContext(vocab=vocab, plan=plan)) \
        .database_column == "b"
    assert plugin.ofasys_postprocess(slot=plan.slots["a"], ctx=BuildContext(vocab=vocab, plan=plan)) is None


# ------------------------------------------------------------------------------------------------ metrics


def test_struct_and_sql_metrics(shop_db, monkeypatch):
    from ofasys_struct import metrics

    grid = [[1, 2], [2, 1]]
    assert metrics.struct_exact_match([grid, [[2, 1], [1, 2]], None], ["1 2 | 2 1", grid, grid]) == \
        pytest.approx(100 / 3)
    gold = "select name from shops where city = 'Paris'"
    pred = {"sql": "SELECT name FROM shops WHERE city='Paris'", "database": str(shop_db)}
    assert metrics.sql_exact_match([pred, "select name from shops"], [gold, gold]) == 50.0
    assert metrics.struct_exact_match([pred], [gold]) == 100.0
    assert metrics.execution_accuracy([pred, dict(pred, sql="select 1")], [gold, gold]) == 50.0
    assert metrics.execution_accuracy([dict(pred, database=None)], [gold]) == 0.0  # nothing to run it on
    monkeypatch.delenv(metrics.DATABASE_ENV, raising=False)
    with pytest.warns(RuntimeWarning, match="needs a database"):
        assert metrics.execution_accuracy(["select 1"], [gold]) != metrics.execution_accuracy(["select 1"], [gold])
    monkeypatch.setenv(metrics.DATABASE_ENV, str(shop_db))
    assert metrics.execution_accuracy([pred["sql"]], [gold]) == 100.0
