"""One nano model trained jointly on video classification (direction of motion) and video QA (train once,
assert many).

Clips are generated and written as real H.264 mp4 files (PyAV), decoded by decord from their paths; every score
is measured on held-out clips (other seeds). Three training rows are the documented bad inputs (a missing file,
a zero-frame mp4, a text file named .mp4): they are counted, reported and skipped.
"""

from __future__ import annotations

import pytest

from ofasys import GeneralistModel, OFASys, Task, Trainer
from ofasys_video import data, tasks

pytestmark = pytest.mark.slow

STEPS = 500
N_TRAIN, N_VALID = 500, 100
# task -> (metric, stated held-out threshold, what a model that ignores the video scores on the same rows)
# measured with this file (seed 3): direction 91.0, qa 57.0 after 500 updates; thresholds ~77-79 % of that.
# Learning is late and abrupt (same run: 31 / 33 at update 400, 67 / 45 at 450), hence 500 updates.
THRESHOLDS = {
    "direction": ("accuracy", 70.0, 27.0),  # the most frequent training direction
    "qa": ("accuracy", 45.0, 30.0),  # the most frequent training answer to each question
}
# constant lr after warm-up: with a linear decay to 0 the direction of motion was not learned by the time the lr
# had shrunk (measured: 20 % = one class at step 200 of 300); at 1e-3 constant, direction alone jumps from 28 % at
# step 250 to 100 % at step 400
TRAINER = dict(max_steps=STEPS, lr=1e-3, lr_schedule="constant", warmup_steps=30, seed=3, progress=False,
               log_every=50, threads=1, tensorboard=False, eval_max_samples=None)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("video-e2e")
    train, valid = data.splits(N_TRAIN, N_VALID, seed=0, out_dir=tmp / "clips")
    blind = data.blind_scores(train, valid)
    bad = [dict(train[0], clip=str(tmp / "missing.mp4")),
           dict(train[1], clip=str(data.write_zero_frame_mp4(tmp / "zero.mp4"))),
           dict(train[2], clip=str(tmp / "notes.mp4"))]
    (tmp / "notes.mp4").write_text("a text file named like a video\n")
    ts = [Task("direction", tasks.instruction("direction"), micro_batch_size=16)
          .add_dataset(train[:200] + bad + train[200:], "train").add_dataset(valid, "valid"),
          Task("qa", tasks.instruction("qa"), micro_batch_size=16)
          .add_dataset(train, "train").add_dataset(valid, "valid")]
    model = GeneralistModel("nano", init_std=0.07, normformer=False, dropout=0.0)
    trainer = Trainer(output_dir=str(tmp / "run"), **TRAINER)
    result = trainer.fit(model, ts)
    print("\nvideo e2e held-out metrics:", {k: v for k, v in result.metrics.items()}, "blind:", blind)
    return {"result": result, "trainer": trainer, "valid": valid, "blind": blind, "tmp": tmp}


@pytest.mark.parametrize("task", sorted(THRESHOLDS))
def test_held_out_score_beats_the_stated_threshold(trained, task):
    metric, threshold, blind = THRESHOLDS[task]
    assert trained["blind"][task] == pytest.approx(blind)  # the input-blind baseline on these very rows
    assert threshold >= blind + 5, "a stated threshold must sit above the input-blind baseline"
    score = trained["result"].metrics[task][metric]
    assert score >= threshold, f"{task}: held-out {metric} {score:.1f} < {threshold}"


def test_bad_clips_are_counted_reported_and_skipped(trained):
    bad = trained["result"].bad_samples["direction"]
    assert bad["bad"] >= 3  # each bad row is met at least once per epoch
    text = "\n".join(bad["examples"])
    assert "does not exist" in text and "not a video" in text and "zero frames" in text
    assert trained["result"].bad_samples["qa"]["bad"] == 0


def test_served_checkpoint_answers_like_the_trained_model(trained):
    served = OFASys.from_pretrained(trained["tmp"] / "run")
    live = OFASys(trained["trainer"].runtime)
    rows = trained["valid"][:16]
    for task in ("direction", "qa"):
        assert served.inference(task, rows).text == live.inference(task, rows).text
    # bytes decode like paths
    with open(rows[0]["clip"], "rb") as f:
        as_bytes = dict(rows[0], clip=f.read())
    assert served.inference("direction", as_bytes).text == served.inference("direction", rows[0]).text
    model = served.model
    assert model.adaptor("VIDEO.video_image_sequence").frames is model.adaptor("IMAGE.image_patch")


def test_showcase_writes_a_gallery(trained):
    out = trained["tmp"] / "gallery"
    out.mkdir()
    items = tasks.showcase_rows(OFASys(trained["trainer"].runtime), "qa", "qa", trained["valid"], out, n=2)
    assert len(items) == 2
    for it in items:
        assert "predicted:" in it["html"] and "<img" in it["html"]
    assert sorted(p.suffix for p in out.iterdir()) == [".gif", ".gif", ".png", ".png"]
