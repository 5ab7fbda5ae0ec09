"""The image plugin's ``ofasys demo`` tasks: registered once, deterministic rows with disjoint held-out scenes,
instructions that plan. (Their showcases are exercised on the trained model of ``test_end_to_end.py``.)"""

from __future__ import annotations

from ofasys.plan import build_plan
from ofasys.plugins import get_manager
from ofasys_image import demo


def test_demo_tasks_are_registered_once_each():
    tasks = [t for t in get_manager().demo_tasks() if t.modality == "image"]
    # shapes_text_to_image comes from ofasys_image.generation (image_vqgan; showcase tested in test_image_generation)
    assert sorted(t.name for t in tasks) == ["shapes_caption", "shapes_grounding", "shapes_text_to_image"]
    for t in tasks:
        assert t.showcase is not None and t.metric in ("iou_acc", "bleu", "shape_attributes")
        build_plan(t.instruction, manager=get_manager(), task=t.name)  # plans without error


def test_demo_rows_are_deterministic_and_held_out_scenes_differ():
    for name in demo.INSTRUCTIONS:
        a, b = demo.rows(name, "train", 20, 0), demo.rows(name, "train", 20, 0)
        assert [r["img"].tobytes() for r in a] == [r["img"].tobytes() for r in b]
        valid = demo.rows(name, "valid", 20, 0)
        assert not {r["img"].tobytes() for r in a} & {r["img"].tobytes() for r in valid}
        assert all(r["img"].size == (demo.SIZE, demo.SIZE) for r in a + valid)
    row = demo.rows("shapes_grounding", "valid", 1, 0)[0]
    assert set(row) == {"img", "expression", "region"}
