"""The bundled tasks through the core's data path (plan -> preprocess -> collate -> postprocess), no model."""

from __future__ import annotations

import random

import pytest

from ofasys import Task
from ofasys.engine.pipeline import TaskPipeline
from ofasys.engine.runtime import build_vocab, split_output
from ofasys.errors import DataError
from ofasys.plugins import get_manager
from ofasys_struct import data
from ofasys_struct.tasks import INSTRUCTIONS, make_splits, write_config


def pipeline(task: Task) -> TaskPipeline:
    return TaskPipeline(task.name, task.plan, build_vocab([task.plan]), get_manager())


def decoded(pipe: TaskPipeline, sample) -> dict:
    """Feed the sample's own target ids to the postprocessors, as if the model had generated them."""
    ids = [i for p in sample.decoder if p.kind == "tokens" and not p.value.forced for i in p.value.ids]
    template = pipe.plan.templates[sample.template]
    pieces = split_output(template.decoder, ids, pipe.vocab)
    return {s.key: pipe.postprocessors[s.key](pieces.get(s.key, []), sample.meta) for s in pipe.plan.outputs}


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    sizes = {name: (20, 5, 5) for name in INSTRUCTIONS}
    return make_splits(tmp_path_factory.mktemp("bundled"), sizes=sizes)


@pytest.mark.parametrize("name", sorted(INSTRUCTIONS))
def test_every_bundled_task_round_trips_through_the_pipeline(splits, name):
    task = Task(name=name, instruction=INSTRUCTIONS[name])
    task.add_dataset(splits[name]["train"], "train")
    pipe = pipeline(task)
    samples = [pipe.make_sample(r, "train", random.Random(i)) for i, r in enumerate(splits[name]["valid"])]
    batch = pipe.collate(samples)
    assert batch.n_samples == len(samples) and batch.target.shape[0] == len(samples)
    assert batch.encoder.tokens.shape[1] <= 120  # the inputs stay short (CPU cost)
    for row, sample in zip(splits[name]["valid"], samples):
        out = decoded(pipe, sample)
        if name == "text_to_sql":
            assert out["sql"]["text"] == row["sql"]
            assert out["sql"]["struct"]["error"] is None and out["sql"]["struct"]["rows"]
        elif name == "sudoku":
            assert out["solution"]["struct"] == row["solution"]
        elif name == "table_to_text":
            assert out["sentence"]["text"] == row["sentence"]
        else:
            assert out["answer"]["text"] == row["answer"]
    # inference: no target, the output slots get placeholders
    sample = pipe.make_sample({k: v for k, v in splits[name]["valid"][0].items()}, "test", random.Random(0),
                              with_target=False)
    assert pipe.collate([sample]).n_samples == 1


def test_the_ofasys_style_instruction_with_a_text_target(splits):
    ins = ('" [TEXT:question] " ; structured knowledge: " [STRUCT:database,max_length=876] " . '
           "generating sql code. -> [TEXT:sql]")
    task = Task(name="spider", instruction=ins)
    task.add_dataset(splits["text_to_sql"]["train"], "train")
    pipe = pipeline(task)
    row = splits["text_to_sql"]["valid"][0]
    sample = pipe.make_sample(row, "train", random.Random(0))
    assert decoded(pipe, sample)["sql"] == {"text": row["sql"]}
    assert task.plan.slots["database"].attrs["max_length"] == 876


def test_a_struct_only_instruction_builds_its_vocabulary_without_a_text_slot():
    task = Task(name="grid", instruction="[STRUCT:puzzle] -> [STRUCT:solution,preprocess=grid,size=4]")
    rows = data.sudoku(4, size=4)
    task.add_dataset(rows, "train")
    pipe = pipeline(task)
    sample = pipe.make_sample(rows[0], "train", random.Random(0))
    assert pipe.constraint(sample.template).accepts(sample.decoder[0].value.ids)
    assert decoded(pipe, sample)["solution"]["struct"] == rows[0]["solution"]


def test_bad_rows_are_reported_per_sample(splits):
    task = Task(name="t2s", instruction=INSTRUCTIONS["text_to_sql"])
    pipe = pipeline(task)
    row = dict(splits["text_to_sql"]["valid"][0], database="/no/such/shop.sqlite")
    with pytest.raises(DataError, match="no such file"):
        pipe.make_sample(row, "train", random.Random(0))


def test_write_config_for_ofasys_train(tmp_path):
    from ofasys.engine.commands import load_config, tasks_from_config

    path = write_config(tmp_path, names=["text_to_sql", "sudoku"], max_steps=10)
    config = load_config(path)
    tasks = tasks_from_config(config, path.parent)
    assert [t.name for t in tasks] == ["text_to_sql", "sudoku"]
    assert set(tasks[0].datasets) == {"train", "valid", "test"} and (tmp_path / "shop.sqlite").exists()
