"""Text-to-image on the shapes with a nano model (train once, assert many).

One nano model learns ``draw [TEXT:prompt] -> [IMAGE:img,preprocess=image_vqgan]`` (8x8 codes of the shipped
tokenizer) on 800 generated rows; held-out prompts are judged by the shapes judge (a small CNN trained on the same
generator, :class:`ofasys_image.generation.ShapesJudge`): does the generated image show the prompt's colour and
shape? Some training rows are deliberately bad and must be counted and skipped.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image

from ofasys import GeneralistModel, OFASys, Task, Trainer
from ofasys_image import generation as G

pytestmark = pytest.mark.slow

INSTRUCTION = G.INSTRUCTIONS["text_to_image"]
STEPS = 400
# Held-out colour+shape match rate (%) of greedy generations for the 48 prompts of text_to_image_rows(48,
# seed=200_003), judged by the shapes judge: measured 95.8 with this fixture (a calibration run without the bad rows
# scored 87.5 on the prompts of seed 100_003; 60.4 after 300 steps, 56.3 after 200). Chance is 8.3 (1 of 12 pairs);
# an input-blind model scores at most the share of the most frequent pair (computed in the test: 18.8).
THRESHOLD = 70.0
TRAINER = dict(max_steps=STEPS, lr=5e-4, warmup_steps=30, seed=0, progress=False, log_every=50, threads=1,
               tensorboard=False)


def bad_rows(tmp) -> list[dict]:
    return [{"prompt": "a red circle", "img": str(tmp / "missing.png")},
            {"prompt": "a red circle", "img": b"\x89PNG\r\n\x1a\n not really"},
            {"prompt": "a red circle", "img": None}]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("t2i")
    threads = torch.get_num_threads()
    train = G.text_to_image_rows(800, seed=0)
    train = train[:300] + bad_rows(tmp) + train[300:]
    task = Task("t2i", INSTRUCTION, micro_batch_size=16)
    task.add_dataset(train, "train")
    task.add_dataset(G.text_to_image_rows(24, seed=100_003), "valid")
    trainer = Trainer(output_dir=str(tmp / "run"), **TRAINER)
    try:
        result = trainer.fit(GeneralistModel("nano", init_std=0.07, normformer=False, dropout=0.0), [task])
    finally:
        torch.set_num_threads(threads)
    return {"dir": tmp / "run", "result": result, "trainer": trainer}


@pytest.fixture(scope="module")
def served(trained):
    return OFASys.from_pretrained(trained["dir"] / "checkpoint")


@pytest.fixture(scope="module")
def held_out():
    return G.text_to_image_rows(48, seed=200_003)


@pytest.fixture(scope="module")
def generated(served, held_out):
    return served.inference(INSTRUCTION, data=[{"prompt": r["prompt"]} for r in held_out])


def test_generated_images_show_the_prompts_colour_and_shape(generated, held_out):
    # an input-blind model draws one (colour, shape) for every prompt: at best the most frequent held-out pair
    blind = 100 * max(Counter(r["prompt"] for r in held_out).values()) / len(held_out)
    assert THRESHOLD > blind + 10
    acc = G.shape_attribute_accuracy(list(generated.image), [r["prompt"] for r in held_out])
    assert acc >= THRESHOLD, acc


def test_validation_reports_the_shape_attribute_metric(trained):
    scores = trained["result"].metrics["t2i"]
    assert scores["samples"] == 24 and 0 <= scores["shape_attributes"] <= 100


def test_outputs_are_images_that_save(generated, tmp_path):
    out = generated[0]
    assert isinstance(out.image, Image.Image) and out.image.size == (32, 32) and len(out.codes) == 64
    path = out.save_image(tmp_path / "one.png")
    assert np.array_equal(np.asarray(Image.open(path).convert("RGB")), np.asarray(out.image))
    big = generated[1].save_image(tmp_path / "sub" / "big.png", scale=4)  # batch outputs: output[i].save_image
    assert Image.open(big).size == (128, 128)
    assert len(generated.image) == len(generated)


def test_checkpoint_serves_what_the_trained_model_generates(trained, served, held_out):
    rows = [{"prompt": r["prompt"]} for r in held_out[:8]]
    live = OFASys(trained["trainer"].runtime).inference("t2i", data=rows)
    assert served.inference(INSTRUCTION, data=rows).codes == live.codes


def test_sampling_is_reproducible_by_seed_and_varies_across_seeds(served):
    row = {"prompt": "a blue triangle"}
    a = served.inference(INSTRUCTION, data=row, sampling=True, temperature=1.5, seed=1)
    b = served.inference(INSTRUCTION, data=row, sampling=True, temperature=1.5, seed=1)
    others = [served.inference(INSTRUCTION, data=row, sampling=True, temperature=1.5, top_k=50, seed=s).codes
              for s in (2, 3, 4)]
    assert a.codes == b.codes
    assert any(o != a.codes for o in others)


def test_candidates_are_reranked_by_a_user_scorer(served, held_out):
    seen = []

    def prefers_the_prompt(images, row):
        seen.append((len(images), row["prompt"]))
        words = row["prompt"].split()
        return [float(j == (words[-2], words[-1])) + 1e-3 * k for k, j in enumerate(G.judge()(images))]

    G.register_scorer("test_prompt_match", prefers_the_prompt)
    ins = INSTRUCTION.replace("preprocess=image_vqgan]", "preprocess=image_vqgan,candidates=4,"
                                                         "rerank=test_prompt_match]")
    rows = [{"prompt": r["prompt"]} for r in held_out[:12]]
    outs = served.inference(ins, data=rows, seed=0, top_k=20)
    assert seen == [(4, r["prompt"]) for r in rows]
    for o in outs:
        assert len(o.candidates) == 4 and len(o.scores) == 4
        best = int(np.argmax(o.scores))
        assert o.codes == o.candidate_codes[best] and o.image is o.candidates[best]
    # picking by the judge, a drawn candidate that shows the prompt wins whenever there is one
    plain = G.shape_attribute_accuracy([o.candidates[0] for o in outs], [r["prompt"] for r in rows])
    assert G.shape_attribute_accuracy(list(outs.image), [r["prompt"] for r in rows]) >= plain


def test_bad_training_rows_are_counted_and_skipped(trained):
    bad = trained["result"].bad_samples["t2i"]
    assert bad["bad"] >= 3
    reasons = "\n".join(bad["examples"])
    assert "no such image file" in reasons and ("could not be decoded" in reasons or "not an image" in reasons)


def test_demo_showcase_writes_a_picture_of_generations(served, held_out, tmp_path):
    items = G.showcase(served, held_out, tmp_path)
    assert (tmp_path / "text_to_image.png").is_file() and len(list(tmp_path.glob("text_to_image_*.png"))) == 12
    assert items and "<img" in items[0]["html"] and "match" in items[0]["html"]
    sheet = Image.open(tmp_path / "text_to_image.png")
    assert sheet.size[0] > 12 * 96
