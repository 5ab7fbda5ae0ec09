"""ofasys-timeseries as a user meets it: the preprocessor's patches, the adaptor's positions, and (slow) a model
trained jointly with a TEXT task that recognises held-out series shapes."""

from __future__ import annotations

import random

import pytest

from ofasys import Task
from ofasys.components import SampleContext

from ofasys_timeseries import data

# Measured (300 updates, nano, both tasks in every update; see README): held-out shape accuracy 85% (seed 1) and
# 97% (seed 2); word-reversal exact match 100% in both runs. An input-blind model scores 25% on the shapes (four
# balanced classes) and ~0% on reversal. Thresholds leave margin under the lower run.
SHAPE_ACCURACY_THRESHOLD = 65.0
REVERSE_EXACT_MATCH_THRESHOLD = 80.0


def test_series_become_patches_and_a_mask():
    task = Task(name="s", instruction="[TIMESERIES:series,patch=4] shape? -> [TEXT:shape]")
    from ofasys.plugins import get_manager

    slot = task.plan.slots["series"]
    from ofasys_timeseries.components import PatchAdaptor, SeriesPreprocessor

    pre = SeriesPreprocessor(slot, None)
    ctx = SampleContext("train", {}, random.Random(0), None)
    a, b = pre(list(range(10)), ctx), pre({"values": [3.0] * 5 + [4.0] * 5 + [5.0] * 6}, ctx)
    assert a.length == 3 and b.length == 4  # ceil(10 / 4), ceil(16 / 4)
    assert abs(float(a.data.mean())) < 1e-5 and abs(float(a.data.std(unbiased=False)) - 1) < 1e-3
    payload = pre.collate([a.data, b.data])
    assert payload["values"].shape == (2, 4, 4) and payload["mask"].tolist() == [[True] * 3 + [False], [True] * 4]
    adaptor = PatchAdaptor(32)
    seg = adaptor(payload)
    assert seg.embeds.shape == (2, 4, 32) and seg.mask.tolist() == payload["mask"].tolist()
    # the same module embeds another slot's patch size (adaptors are shared by key)
    wide = adaptor({"values": payload["values"].view(2, 2, 8), "mask": payload["mask"][:, :2]})
    assert wide.embeds.shape == (2, 2, 32)
    assert get_manager().load_slot_type("TIMESERIES")[1] == "ofasys-timeseries"


def test_generated_shapes_are_balanced_and_deterministic():
    rows = data.shape_rows(40, seed=3)
    assert rows == data.shape_rows(40, seed=3) and rows != data.shape_rows(40, seed=4)
    assert {s: sum(r["shape"] == s for r in rows) for s in data.SHAPES} == {s: 10 for s in data.SHAPES}
    assert all(32 <= len(r["series"]) <= 64 for r in rows)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from ofasys_timeseries.experiment import run

    return run(steps=300, out_dir=str(tmp_path_factory.mktemp("run")))


@pytest.mark.slow
def test_joint_training_recognises_held_out_shapes_and_keeps_the_text_task(trained):
    assert trained["majority_baseline"] == 25.0  # balanced classes: an input-blind model scores 25%
    assert SHAPE_ACCURACY_THRESHOLD > trained["majority_baseline"] + 20
    assert trained["shape_accuracy"] >= SHAPE_ACCURACY_THRESHOLD, trained["shape_accuracy"]
    # the TEXT task trained in the same model still works
    assert trained["reverse_exact_match"] >= REVERSE_EXACT_MATCH_THRESHOLD, trained["reverse_exact_match"]
