"""Metrics against known values.

CIDEr-D reference values were computed with coco-caption's scorer (``pycocoevalcap`` 1.2,
``pycocoevalcap.cider.Cider().compute_score`` on the same, already tokenised, captions). mAP@0.5 reference values
were computed with ``pycocotools`` 2.0.11 (``COCOeval(..., "bbox").stats[1]``, one category for the
class-agnostic case). Neither library is a dependency: the values are recorded here.
"""

from __future__ import annotations

import pytest

from ofasys.plugins import get_manager
from ofasys_image.metrics import cider, cider_scores, iou, iou_acc, map50, normalize_vqa_answer, vqa_score

CAPTION_REFS = [["a red circle and a blue square", "a red circle next to a blue square"],
                ["a green triangle"],
                ["a yellow square and a green circle", "two shapes a yellow square and a green circle"],
                ["a blue circle"]]
CAPTION_PREDS = ["a red circle and a blue square", "a green square", "a yellow square", "a blue circle"]


def test_cider_d_matches_coco_caption():
    scores = cider_scores(CAPTION_PREDS, CAPTION_REFS)
    assert scores == pytest.approx([6.960307051680418, 1.2905694150420952, 3.0929661571677913, 7.5], rel=1e-12)
    assert cider(CAPTION_PREDS, CAPTION_REFS) == pytest.approx(471.0960655972576, rel=1e-12)  # x100, as OFA reports


def test_cider_tokenises_case_and_punctuation_away():
    assert cider(["A Red circle."], ["a red circle"]) == cider(["a red circle"], ["a red circle"])
    assert cider([], []) == 0.0
    with pytest.raises(ValueError, match="predictions but"):
        cider(["a"], [])


def test_vqa_score_is_the_official_leave_one_out_accuracy():
    ten = ["yes"] * 3 + ["no"] * 7
    assert vqa_score(["yes"], [ten]) == pytest.approx(90.0)  # (3 * 2/3 + 7 * 1) / 10
    assert vqa_score(["no"], [ten]) == pytest.approx(100.0)
    assert vqa_score(["maybe"], [ten]) == 0.0
    assert vqa_score(["two"], [["2"] * 2 + ["3"] * 8]) == pytest.approx(100 * (2 * 1 / 3 + 8 * 2 / 3) / 10)
    assert vqa_score(["Red!"], ["red"]) == 100.0  # a single reference: exact after normalisation
    assert vqa_score(["blue", "red"], [{"blue": 1.0, "navy": 0.6}, {"blue": 1.0}]) == pytest.approx(50.0)


def test_vqa_normalisation():
    assert normalize_vqa_answer("The Two dogs.") == "2 dogs"
    assert normalize_vqa_answer("dont") == "don't"
    assert normalize_vqa_answer("  a   cat ") == "cat"


def test_iou_and_iou_accuracy():
    assert iou([0, 0, 10, 10], [0, 0, 10, 10]) == 1.0
    assert iou([0, 0, 10, 10], [5, 0, 15, 10]) == pytest.approx(50 / 150)
    assert iou([0, 0, 10, 10], [10, 10, 20, 20]) == 0.0
    preds = [[0, 0, 10, 10], [0, 0, 10, 7], [2, 0, 12, 10], None, [0, 0, 5, 5]]
    refs = [[0, 0, 10, 10]] * 5
    # IoU 1, 0.7, 8/12=0.67, missing, 0.25
    assert iou_acc(preds, refs) == pytest.approx(60.0)
    # a repetition group: reference boxes matched one-to-one
    assert iou_acc([[[0, 0, 10, 10], [0, 0, 10, 10]]], [[[0, 0, 10, 10], [20, 20, 30, 30]]]) == 50.0
    with pytest.raises(ValueError, match="reference must be a box"):
        iou_acc([[0, 0, 1, 1]], ["nope"])


DET_REFS = [[([10, 10, 30, 30], "circle"), ([40, 40, 60, 60], "square")],
            [([5, 5, 25, 25], "circle")],
            [([0, 0, 20, 20], "square"), ([30, 0, 50, 20], "square"), ([20, 30, 40, 50], "circle")]]
DET_PREDS = [[([11, 10, 31, 30], "circle", 0.9), ([40, 42, 60, 62], "circle", 0.8), ([42, 40, 61, 60], "square", 0.7)],
             [([30, 30, 40, 40], "circle", 0.95), ([6, 5, 25, 26], "circle", 0.6)],
             [([0, 0, 20, 20], "square", 0.85), ([25, 0, 45, 20], "square", 0.5), ([20, 30, 40, 50], "circle", 0.4),
              ([60, 60, 70, 70], "square", 0.3)]]


def test_map50_matches_pycocotools():
    preds = [[{"box": b, "label": lab, "score": s} for b, lab, s in p] for p in DET_PREDS]
    assert map50(preds, DET_REFS) == pytest.approx(80.0, abs=1e-9)
    agnostic = [[{"box": b, "score": s} for b, _, s in p] for p in DET_PREDS]
    assert map50(agnostic, [[b for b, _ in r] for r in DET_REFS]) == pytest.approx(75.0, abs=1e-9)


def test_map50_ranks_generated_boxes_by_order_without_scores():
    refs = [[[0, 0, 10, 10], [20, 20, 30, 30]]]
    assert map50([[[0, 0, 10, 10], [20, 20, 30, 30]]], refs) == pytest.approx(100.0)
    assert map50([[[50, 50, 60, 60], [0, 0, 10, 10], [20, 20, 30, 30]]], refs) < 100.0
    assert map50([[]], refs) == 0.0
    assert map50([[([0, 0, 10, 10], "a")]], [[([0, 0, 10, 10], "b")]]) == 0.0  # wrong class


def test_map50_counts_an_unfinished_generated_box_as_no_detection():
    # the BOX postprocessor gives None for a box of fewer than 4 bins; evaluation of a half-trained model meets it
    refs = [[[0, 0, 10, 10], [20, 20, 30, 30]]]
    assert map50([[None, [0, 0, 10, 10], [20, 20, 30, 30]]], refs) == pytest.approx(100.0)
    assert map50([[(None, "a"), ([0, 0, 10, 10], "a")]], [[([0, 0, 10, 10], "a")]]) == pytest.approx(100.0)
    assert map50([[None]], refs) == 0.0


def test_metrics_are_registered():
    from ofasys.plan import build_plan

    manager = get_manager()
    build_plan("[IMAGE:img] where? -> [BOX:region]", manager=manager)
    registry = manager.metrics()
    for name in ("vqa_score", "cider", "iou_acc", "map50", "accuracy", "bleu"):
        assert name in registry
    box_metrics = [m.name for m in registry.values() if "BOX" in m.for_types]
    assert box_metrics[0] == "iou_acc"
    assert "TEXT" not in registry["cider"].for_types  # does not change the TEXT default metric
