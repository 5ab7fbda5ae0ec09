"""The bundled data: the procedural shapes scenes and scikit-learn's digits."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from ofasys_image import datasets as D


def test_scenes_are_deterministic_by_seed():
    a = D.shapes_task("detection", 5, seed=3, size=48)
    b = D.shapes_task("detection", 5, seed=3, size=48)
    c = D.shapes_task("detection", 5, seed=4, size=48)
    assert [r["boxes"] for r in a] == [r["boxes"] for r in b]
    assert all(np.array_equal(np.asarray(x["img"]), np.asarray(y["img"])) for x, y in zip(a, b))
    assert [r["boxes"] for r in a] != [r["boxes"] for r in c]


def test_boxes_are_tight_around_the_drawn_shapes():
    for row in D.shapes_task("detection", 20, seed=1, size=64):
        arr = np.asarray(row["img"]).astype(int)
        background = arr[arr.sum(-1) > 600]  # light background pixels
        assert len(background)
        for o, label in zip(row["objects"], row["labels"]):
            color = np.array(D.COLORS[o["color"]])
            ys, xs = np.nonzero(np.abs(arr - color).sum(-1) < 10)
            x0, y0, x1, y1 = o["box"]
            inside = (xs >= x0) & (xs < x1) & (ys >= y0) & (ys < y1)
            assert inside.sum() > 0.3 * (x1 - x0) * (y1 - y0)  # the shape fills its box
            assert xs[inside].min() <= x0 + 1 and xs[inside].max() >= x1 - 2
            assert ys[inside].min() <= y0 + 1 and ys[inside].max() >= y1 - 2
            assert label == f"{o['color']} {o['shape']}"
        assert [b[0] for b in row["boxes"]] == sorted(b[0] for b in row["boxes"])  # left to right


def test_task_rows_have_the_columns_of_their_instructions():
    from ofasys.plan import build_plan

    for task in D.TASKS:
        rows = D.shapes_task(task, 30, seed=0, size=32)
        plan = build_plan(D.INSTRUCTIONS[task])
        for r in rows:
            assert set(plan.columns()) <= set(r)
    caps = {r["caption"] for r in D.shapes_task("caption", 50, seed=0)}
    assert any(" and " in c for c in caps) and all(c.startswith("a ") for c in caps)
    answers = {r["answer"] for r in D.shapes_task("vqa", 200, seed=0)}
    assert {"yes", "no", "red", "circle", "two"} <= answers
    labels = [r["label"] for r in D.shapes_task("entailment", 200, seed=0)]
    assert 0.35 < labels.count("yes") / len(labels) < 0.65


def test_statements_and_answers_are_true_of_the_scene():
    for r in D.shapes_task("entailment", 200, seed=2):
        objs = r["objects"]
        s, yes = r["statement"], r["label"] == "yes"
        words = s.split()
        if s.endswith(" shape") and words[-2] in D.COLORS:
            assert (words[-2] in {o["color"] for o in objs}) == yes, s
        elif words[-1] in D.SHAPES and words[-2] in D.COLORS:
            assert ((words[-2], words[-1]) in {(o["color"], o["shape"]) for o in objs}) == yes, s
        elif words[-1] in D.SHAPES:
            assert (words[-1] in {o["shape"] for o in objs}) == yes, s
        else:
            assert (D.NUMBER_WORDS.index(words[2]) == len(objs)) == yes, s
    for r in D.shapes_task("vqa", 100, seed=2):
        if r["question"] == "how many shapes are there?":
            assert r["answer"] == D.NUMBER_WORDS[len(r["objects"])]


def test_png_rows_and_held_out_splits():
    rows = D.shapes_task("grounding", 3, seed=0, size=32, as_png=True)
    assert Image.open(io.BytesIO(rows[0]["img"])).size == (32, 32)
    train, valid = D.shapes_splits("caption", 20, 10, seed=0, size=32)
    assert len(train) == 20 and len(valid) == 10
    with pytest.raises(ValueError, match="unknown shapes task"):
        D.shapes_task("segmentation", 1)


def test_digits_ship_with_scikit_learn():
    pytest.importorskip("sklearn")
    train, test = D.digits_rows("train"), D.digits_rows("test")
    assert len(train) + len(test) == 1797 and len(test) == 359
    assert train[0]["img"].size == (8, 8) and train[0]["label"] in D.DIGIT_WORDS
    assert D.digits_rows("test", words=False)[0]["label"] in "0123456789"
