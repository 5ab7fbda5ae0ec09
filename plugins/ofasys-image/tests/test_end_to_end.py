"""One nano model trained jointly on the image tasks and a text task (train once, assert many), and one on visual
entailment alone.

The instructions are the one-liners of :data:`ofasys_image.datasets.INSTRUCTIONS` (plus small-image attributes);
the data are the bundled shapes scenes and scikit-learn's digits; every score is measured on held-out rows.
Some training rows are deliberately bad (missing file, truncated JPEG, wrong type, box outside the image,
x1 < x0): they are counted, reported and skipped.

Entailment has its own model: in the joint run (450 updates) it stayed at the always-"no" score (54 %), while on
its own it starts to read the image after about 400 updates and scores 69 % after 800.
"""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from PIL import Image

from ofasys import GeneralistModel, OFASys, Task, Trainer
from ofasys.errors import DataError
from ofasys_image import datasets as D
from ofasys_image.metrics import iou, map50

pytestmark = pytest.mark.slow

SIZE = 48
IMAGE = f"[IMAGE:img,patch_image_size={SIZE},adaptor=image_patch]"  # 8 px patches at nano: 6 x 6 positions
BINS = 48  # one bin per pixel
STEPS = 450
ENTAILMENT_STEPS = 800
MODEL = dict(init_std=0.07, normformer=False, dropout=0.0)  # nano from scratch reads its inputs sooner (ground rules)
SPATIAL = ("grounding", "grounded_caption", "detection")  # 1-2 larger objects per scene, loss weight 2
# task -> (metric, stated held-out threshold, what a model that ignores the image scores on the same rows).
# Thresholds are 75-85 % of the scores measured with these settings (README, "Measured scores").
THRESHOLDS = {
    "caption": ("cider", 360.0, 131.8),  # blind: the most frequent training caption for every image
    "vqa": ("accuracy", 45.0, 34.0),  # blind: the most frequent training answer to each question
    "grounding": ("iou_acc", 34.0, 7.0),  # blind: the mean training box
    "grounded_caption": ("accuracy", 36.0, 12.0),  # blind: the most frequent training caption
    "detection": ("map50", 17.0, 1.3),  # blind: the mean first box (the engine's map50 is class-agnostic)
    "digits": ("accuracy", 80.0, 10.0),  # blind: chance (the most frequent class scores 9)
    "reverse": ("exact_match", 80.0, 0.0),  # the TEXT plugin's task (no image)
    "entailment": ("accuracy", 59.0, 53.0),  # blind: always "no" (the most frequent label per statement: 52)
}
JOINT = [t for t in THRESHOLDS if t != "entailment"]
TRAINER = dict(max_steps=STEPS, lr=5e-4, warmup_steps=30, seed=3, progress=False, log_every=50, threads=1,
               tensorboard=False)


def instruction(task: str) -> str:
    if task == "reverse":
        from ofasys_text import demo

        return demo.INSTRUCTIONS["reverse"]
    ins = D.INSTRUCTIONS[task].replace("[IMAGE:img]", IMAGE)
    return ins.replace("[BOX:region]", f"[BOX:region,num_bins={BINS}]").replace(
        "[BOX:boxes]", f"[BOX:boxes,num_bins={BINS}]")


def bad_rows(tmp) -> list[dict]:
    """Five rows the grounding task must count and skip, one per documented bad input."""
    good = D.shapes_task("grounding", 1, seed=7, size=SIZE)[0]
    buf = __import__("io").BytesIO()
    good["img"].resize((200, 200)).save(buf, format="JPEG")
    cut = tmp / "truncated.jpg"
    cut.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    return [dict(good, img=str(tmp / "missing.png")),
            dict(good, img=str(cut)),
            dict(good, img=12345),
            dict(good, region=[SIZE + 5, SIZE + 5, SIZE + 20, SIZE + 20]),
            dict(good, region=[20, 5, 10, 15])]


def make_tasks(tmp, names=JOINT) -> list[Task]:
    tasks = []
    for name in names:
        metric = THRESHOLDS[name][0]
        if name == "reverse":
            from ofasys_text import demo

            train, valid = demo.splits("reverse", 800, 100, seed=11)
        elif name == "digits":
            train, valid = D.digits_rows("train"), D.digits_rows("test")[:100]
        else:
            extra = dict(max_objects=2, min_frac=0.3, max_frac=0.45) if name in SPATIAL else {}
            train, valid = D.shapes_splits(name, 800, 100, seed=0, size=SIZE, **extra)
        if name == "grounding":
            train = train[:400] + bad_rows(tmp) + train[400:]
        t = Task(name=name, instruction=instruction(name), micro_batch_size=32, metrics=[metric],
                 generation={"max_len": 40}, weight=2.0 if name in SPATIAL else 1.0)
        t.add_dataset(train, "train")
        t.add_dataset(valid, "valid")
        tasks.append(t)
    return tasks


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("image-joint")
    threads = torch.get_num_threads()
    tasks = make_tasks(tmp)
    model = GeneralistModel("nano", **MODEL)
    trainer = Trainer(output_dir=str(tmp / "run"), **TRAINER)
    try:
        result = trainer.fit(model, tasks)
    finally:
        torch.set_num_threads(threads)
    return {"dir": tmp / "run", "tasks": {t.name: t for t in tasks}, "result": result, "trainer": trainer}


@pytest.fixture(scope="module")
def entailed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("image-entailment")
    threads = torch.get_num_threads()
    trainer = Trainer(output_dir=str(tmp / "run"), **dict(TRAINER, max_steps=ENTAILMENT_STEPS))
    try:
        result = trainer.fit(GeneralistModel("nano", **MODEL), make_tasks(tmp, ["entailment"]))
    finally:
        torch.set_num_threads(threads)
    return {"result": result}


@pytest.fixture(scope="module")
def served(trained):
    return OFASys.from_pretrained(trained["dir"] / "checkpoint")


@pytest.mark.parametrize("task", JOINT)
def test_each_task_of_the_joint_model_beats_its_stated_held_out_score(trained, task):
    check_score(trained["result"].metrics[task], task)


def test_entailment_beats_its_stated_held_out_score(entailed):
    check_score(entailed["result"].metrics["entailment"], "entailment")


def check_score(scores: dict, task: str) -> None:
    metric, threshold, blind = THRESHOLDS[task]
    assert threshold > blind  # every stated score is above what a model that ignores the image gets
    assert scores["samples"] == 100
    assert scores[metric] >= threshold, (task, scores)


def test_bad_training_rows_are_counted_reported_and_skipped(trained):
    bad = trained["result"].bad_samples["grounding"]
    # the 5 bad rows are met once per epoch; training stops mid-epoch, so the count need not be a multiple of 5
    assert 5 <= bad["bad"] < bad["seen"] / 2
    reasons = "\n".join(bad["examples"])
    for expected in ("no such image file", "could not be decoded", "must hold an image", "entirely outside",
                     "x1 < x0"):
        assert expected in reasons, reasons
    assert all(b["bad"] == 0 for name, b in trained["result"].bad_samples.items() if name != "grounding")


def overlap(box, ref) -> float:
    """IoU of a predicted box (None if the model did not finish it) with the reference."""
    return 0.0 if box is None else iou(box, ref)


def held_out(trained, task: str, n: int) -> list[dict]:
    source = trained["tasks"][task].datasets["valid"]
    return [source.row(i) for i in range(n)]


def test_checkpoint_serves_the_same_boxes_as_the_trained_model(trained, served):
    rows = held_out(trained, "grounding", 16)
    live = OFASys(trained["trainer"].runtime).inference("grounding", data=rows)
    loaded = served.inference(instruction("grounding"), data=rows)
    assert loaded.box == live.box
    assert all(len(b) == 4 and 0 <= b[0] <= b[2] <= SIZE and 0 <= b[1] <= b[3] <= SIZE for b in loaded.box)
    hits = sum(overlap(b, r["region"]) >= 0.5 for b, r in zip(loaded.box, rows))
    assert hits >= 1


def test_images_given_as_paths_bytes_and_arrays_give_the_same_answer(served, trained, tmp_path):
    row = held_out(trained, "caption", 1)[0]
    path = tmp_path / "scene.png"
    row["img"].save(path)
    outs = [served.inference(instruction("caption"), data={"img": v}).text
            for v in (row["img"], str(path), path.read_bytes(), np.asarray(row["img"]))]
    assert len(set(outs)) == 1


def test_save_box_draws_the_predicted_box_where_the_shape_is(served, trained, tmp_path):
    rows = held_out(trained, "grounding", 40)
    outs = served.inference(instruction("grounding"), data=rows)
    k = max(range(len(rows)), key=lambda i: overlap(outs[i].box, rows[i]["region"]))
    assert overlap(outs[k].box, rows[k]["region"]) >= 0.5
    path = outs[k].save_box(tmp_path / "grounded.png", scale=8)
    drawn = np.asarray(Image.open(path).convert("RGB")).astype(int)
    plain = np.asarray(rows[k]["img"].resize((SIZE * 8, SIZE * 8), Image.Resampling.NEAREST)).astype(int)
    ys, xs = np.nonzero(np.abs(drawn - plain).sum(-1) > 0)
    outline = [xs.min() / 8, ys.min() / 8, (xs.max() + 1) / 8, (ys.max() + 1) / 8]
    assert outline == pytest.approx(outs[k].box, abs=0.25)  # the drawing is the predicted box
    assert iou(outline, rows[k]["region"]) >= 0.45  # which lies on the referred shape (drawing rounds to 1/8 px)


def test_detection_outputs_labelled_boxes_and_draws_them_all(served, trained, tmp_path):
    rows = held_out(trained, "detection", 40)
    outs = served.inference(instruction("detection"), data=rows)
    preds = [[(b, t) for b, t in zip(o.box, o.text) if b is not None] for o in outs]
    refs = [list(zip(r["boxes"], r["labels"])) for r in rows]
    assert map50(preds, refs) > THRESHOLDS["detection"][2]  # class-aware mAP@0.5 beats the image-blind baseline
    o = outs[0]
    assert isinstance(o.box, list) and isinstance(o.text, list) and len(o.box) == len(o.text)
    path = o.save_box(tmp_path / "detected.png")
    assert Image.open(path).size[0] >= 256  # enlarged so that the labels are readable


def test_a_missing_image_at_inference_is_a_data_error(served, tmp_path):
    with pytest.raises(DataError, match="no such image file"):
        served.inference(instruction("caption"), data={"img": str(tmp_path / "nope.png")})


def test_training_log_and_plan_are_saved(trained):
    ckpt = (trained["dir"] / "checkpoint").resolve()
    config = json.loads((ckpt / "config.json").read_text())
    assert set(config["tasks"]) == set(JOINT)
    assert "IMAGE.image_patch" in config["adaptors"]
    assert config["tasks"]["grounding"]["plan"]["slots"]["region"]["attrs"]["num_bins"] == BINS


def test_one_model_captions_grounds_and_reverses_words(served, trained):
    """The joint run: captioning, grounding and the TEXT plugin's `reverse` task answered by one checkpoint."""
    cap = held_out(trained, "caption", 8)
    texts = served.inference(instruction("caption"), data=cap).text
    assert sum(t == r["caption"] for t, r in zip(texts, cap)) >= 2, texts
    ground = held_out(trained, "grounding", 20)
    boxes = served.inference(instruction("grounding"), data=ground).box
    assert sum(overlap(b, r["region"]) >= 0.5 for b, r in zip(boxes, ground)) >= 2
    words = held_out(trained, "reverse", 8)
    out = served.inference(instruction("reverse"), data=words).text
    assert sum(o == r["reversed"] for o, r in zip(out, words)) >= 6, out


def test_demo_showcases_draw_boxes_and_captions(served, trained, tmp_path):
    from ofasys_image import demo

    assert demo.INSTRUCTIONS["shapes_grounding"] == instruction("grounding")  # the model trained on it
    assert demo.INSTRUCTIONS["shapes_caption"] == instruction("caption")
    items = demo.showcase_grounding(served, held_out(trained, "grounding", 4), tmp_path)
    items += demo.showcase_caption(served, held_out(trained, "caption", 4), tmp_path)
    assert len(items) == 8 and all(i["title"] and "data:image/png;base64," in i["html"] for i in items)
    drawn = sorted(tmp_path.glob("shapes_grounding_*.png"))
    assert len(drawn) == 4 and Image.open(drawn[0]).size[0] >= 256  # save_box enlarged the 48 px scene
    assert len(list(tmp_path.glob("shapes_caption_*.png"))) == 4
