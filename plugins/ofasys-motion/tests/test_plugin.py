"""The plugin's components on a small untrained model (no training)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from ofasys import GeneralistModel, OFASys, Task
from ofasys.components import SampleContext
from ofasys.engine.runtime import Runtime, build_vocab
from ofasys.errors import ConfigError, DataError, InstructionError, PlanError
from ofasys_motion import data, io
from ofasys_motion.tasks import CAPTION, TEXT_TO_MOTION

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(scope="module")
def runtime():
    tasks = [Task(name="t2m", instruction=TEXT_TO_MOTION, generation={"steps": 4}),
             Task(name="cap", instruction=CAPTION)]
    torch.manual_seed(0)
    model = GeneralistModel("nano")
    model.initialize(build_vocab([t.plan for t in tasks]))
    rt = Runtime(model)
    for t in tasks:
        rt.add_task(t)
    return rt


@pytest.fixture(scope="module")
def rows():
    return data.rows(6, seed=0)


def _batch(rt, task, rows, split="train"):
    pipe = rt.pipelines[task]
    return pipe.collate([pipe.make_sample(r, split, random.Random(i), with_target=split != "test")
                         for i, r in enumerate(rows)])


def test_plan_uses_the_motion_components():
    t = Task(name="t", instruction=TEXT_TO_MOTION)
    out = t.plan.outputs[0]
    assert out.type == "MOTION" and out.kind == "features"
    assert out.components == {"preprocess": "motion_6d", "adaptor": "motion_6d", "criterion": "diffusion",
                              "generator": "ddim", "postprocess": "motion"}


def test_misspelled_or_wrong_attribute_values_are_instruction_errors():
    with pytest.raises(InstructionError):
        Task(name="x", instruction="[TEXT:text] -> [MOTION:motion,prediction=velocity]")
    with pytest.raises(InstructionError):
        Task(name="x", instruction="[TEXT:text] -> [MOTION:motion,stpes=10]")


def test_window_shorter_than_min_length_is_a_plan_error():
    t = Task(name="w", instruction="[MOTION:motion,window=8,min_length=16] what? -> [TEXT:caption]")
    model = GeneralistModel("nano")
    model.initialize(build_vocab([t.plan]))
    with pytest.raises(PlanError, match="window"):
        Runtime(model).add_task(t)


def test_preprocessor_resamples_crops_and_refuses_short_clips(runtime, rows):
    pipe = runtime.pipelines["cap"]
    pre = pipe.preprocessor(pipe.plan.slots["motion"])
    ctx = SampleContext("train", {}, random.Random(0), runtime.vocab)
    clip = data.make_clip("walk", "slowly", "forward", seed=0)
    assert pre(clip, ctx).data.shape == (24, 69)
    # a 40 fps clip of the same motion is resampled to 20 fps
    fast = io.Clip.from_features(np.repeat(clip.to_features(), 2, axis=0), 40.0)
    assert pre(fast, ctx).data.shape == (24, 69)
    # a long clip is cropped to max_length
    long = io.Clip.from_features(np.concatenate([clip.to_features()] * 3), 20.0)
    assert pre(long, ctx).data.shape == (24, 69)
    with pytest.raises(DataError, match="too short: 8 frames at 20 fps, min_length is 16"):
        pre(clip.crop(0, 8), ctx)
    # normalised: the bundled corpus's features are about zero-mean
    feats = torch.stack([pre(r["motion"], ctx).data for r in data.rows(60, seed=3)])
    assert feats.mean().abs() < 0.3


def test_diffusion_loss_ignores_padding_frames(runtime, rows):
    batch = _batch(runtime, "t2m", rows[:2])
    crit = runtime.criteria["t2m"]
    runtime.model.eval()  # fixed noise draw
    loss, log = crit(runtime.model, batch)
    assert log["sample_size"] == 48 and 0.0 < log["mse"] < 10
    # pad the same clips with 6 frames of garbage: the loss (and its normaliser) do not change
    tf = batch.target_features
    padded = {"motion": torch.cat([tf["motion"], torch.randn(2, 6, 69) * 5], 1), "lengths": tf["lengths"]}
    batch.target_features = padded
    loss2, log2 = crit(runtime.model, batch)
    assert log2["sample_size"] == 48
    # the noisy padding is zeroed before the denoiser, but real frames attend to padding positions, so allow a
    # small change
    assert abs(float(loss2) - float(loss)) / float(loss) < 0.2


def test_the_denoiser_sees_the_whole_clip(runtime, rows):
    """Non-causal decoding: changing the last noisy frame changes the prediction of the first."""
    model = runtime.model.eval()
    ad = model.adaptor("MOTION.motion_6d")
    batch = _batch(runtime, "t2m", rows[:1])
    enc = model.encode(batch.encoder)
    x = torch.randn(1, 24, 69)
    t = torch.tensor([0.5])
    from ofasys_motion.diffusion import denoise

    a = denoise(model, ad, x, t, enc)
    x2 = x.clone()
    x2[0, -1] += 3
    b = denoise(model, ad, x2, t, enc)
    assert (a[0, 0] - b[0, 0]).abs().max() > 1e-4


def test_generation_is_served_by_predict_with_its_own_options(runtime, rows):
    served = OFASys(runtime)
    texts = [{"text": r["text"]} for r in rows[:2]]
    outs = served.inference("t2m", data=texts, steps=3, guidance=2.0, seed=1)
    assert outs[0].motion.shape == (24, 69) and outs[0].positions.shape == (24, 16, 3) and outs[0].fps == 20
    again = served.inference("t2m", data=texts, steps=3, guidance=2.0, seed=1)
    assert np.array_equal(outs[0].motion, again[0].motion)  # deterministic by seed
    other = served.inference("t2m", data=texts, steps=3, guidance=2.0, seed=2)
    assert not np.array_equal(outs[0].motion, other[0].motion)
    longer = served.inference("t2m", data=texts[0], steps=2, max_len=30)
    assert longer.motion.shape == (30, 69)
    with pytest.raises(ConfigError, match="unknown generation option"):
        served.inference("t2m", data=texts, stepz=3)


def test_outputs_save_bvh_npz_and_gif(runtime, rows, tmp_path):
    out = OFASys(runtime).inference("t2m", data={"text": rows[0]["text"]}, steps=2)
    out.save_bvh(tmp_path / "g.bvh")
    out.save_npz(tmp_path / "g.npz")
    out.save_gif(tmp_path / "g.gif")
    back = io.load_bvh(tmp_path / "g.bvh")
    assert np.abs(back.positions() - out.positions).max() < 1e-3
    assert np.abs(io.load_clip(str(tmp_path / "g.npz"), 20).positions() - out.positions).max() < 1e-3
    assert (tmp_path / "g.gif").stat().st_size > 1000


def test_captioning_reads_every_motion_format(runtime, rows, tmp_path):
    clip = io.Clip.from_features(rows[0]["motion"], 20.0)
    io.save_bvh(clip, tmp_path / "a.bvh")
    io.save_npz(clip, tmp_path / "a.npz")
    served = OFASys(runtime)
    values = [rows[0]["motion"], str(tmp_path / "a.bvh"), str(tmp_path / "a.npz"), {"motion": rows[0]["motion"]},
              clip]
    outs = served.inference("cap", data=[{"motion": v} for v in values], max_len=5)
    assert len(set(outs.text)) == 1  # the same clip, whatever its container


def test_bad_rows_are_data_errors_at_inference(runtime):
    served = OFASys(runtime)
    with pytest.raises(DataError, match="motion file not found"):
        served.inference("cap", data={"motion": "/nope/x.npz"})


def test_demo_tasks_are_registered_with_rows_and_a_gif_showcase():
    from ofasys.plugins import get_manager

    demo = {t.name: t for t in get_manager().demo_tasks() if t.modality == "motion"}
    assert set(demo) == {"motion_text_to_motion", "motion_captioning"}
    t2m = demo["motion_text_to_motion"]
    assert t2m.showcase is not None and t2m.metric == "motion_class_accuracy"
    train, valid = t2m.rows("train", 12, 0), t2m.rows("valid", 6, 0)
    assert len(train) == 12 and len(valid) == 6 and {"text", "motion", "caption"} <= set(train[0])
    Task(name="motion_text_to_motion", instruction=t2m.instruction).add_dataset(train, "train")


def test_epsilon_prediction_trains_on_the_noise_and_samples_finite_clips(rows):
    t = Task(name="eps", instruction=TEXT_TO_MOTION[:-1] + ",prediction=epsilon,steps=3]")
    torch.manual_seed(0)
    model = GeneralistModel("nano")
    model.initialize(build_vocab([t.plan]))
    rt = Runtime(model)
    rt.add_task(t)
    assert rt.criteria["eps"].prediction == "epsilon" and rt.generators["eps"].steps == 3
    model.eval()
    loss, log = rt.criteria["eps"](model, _batch(rt, "eps", rows[:2]))
    assert 0.5 < log["mse"] < 5  # an untrained model's error on unit-variance noise
    out = OFASys(rt).inference("eps", data={"text": rows[0]["text"]})
    assert np.isfinite(out.motion).all() and out.motion.shape == (24, 69)
