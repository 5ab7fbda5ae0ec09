"""IMAGE and BOX preprocessing: sizes, normalisation, augmentation, the co-transform of boxes, quantisation,
and the documented errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from ofasys.components import Features, Tokens
from ofasys.errors import ConfigError, DataError, PlanError
from ofasys.generation.constraints import Block
from ofasys_image.transforms import forward_box, inverse_box

GROUND = "[IMAGE:img{a}] where is [TEXT:expr] ? -> [BOX:region{b}]"


def ground(build, a: str = "", b: str = "", size: str = "nano"):
    return build(GROUND.format(a=a, b=b), size=size)


def test_image_becomes_a_normalised_square_tensor_and_records_its_transform(build, rgb_image):
    g = ground(build, ",patch_image_size=32,adaptor=image_patch")
    pre = g.pre("img")
    assert pre.order < g.pre("region").order  # images are read before their boxes
    ctx = g.sample_ctx()
    out = pre(rgb_image, ctx)
    assert isinstance(out, Features)
    assert out.data.shape == (3, 32, 32) and out.data.dtype == torch.float32
    assert out.length == 16  # 4x4 patches of 8 px (nano)
    # OFA normalisation: (x - 0.5) / 0.5, so red (220, 0, 0) -> (0.725, -1, -1)
    left = out.data[:, 16, 2]
    assert torch.allclose(left, torch.tensor([220 / 255 * 2 - 1, -1.0, -1.0]), atol=0.02)
    assert ctx.state["image"] == "img"
    assert ctx.state["images"]["img"] == {"column": "img", "orig": [40, 30], "crop": [0.0, 0.0, 40.0, 30.0],
                                          "flip": False, "size": 32}


def test_sizes_default_by_model_size_and_attributes_override(build, rgb_image):
    assert ground(build).pre("img")(rgb_image, ground(build).sample_ctx()).data.shape[-1] == 64
    tiny = ground(build, size="tiny")
    assert tiny.pre("img").size == 256 and tiny.pre("img").grid == 16  # resnet stride 16
    assert ground(build, size="base").pre("img").size == 384
    assert ground(build, size="large").pre("img").size == 480
    assert ground(build, ",patch_image_size=96", size="base").pre("img").size == 96
    imagenet = ground(build, ",norm=imagenet,patch_image_size=16")
    t = imagenet.pre("img")(Image.new("RGB", (4, 4), (124, 116, 104)), imagenet.sample_ctx()).data
    assert t.abs().max() < 0.01  # ImageNet mean colour -> 0


def test_grids_larger_than_the_position_table_are_refused_when_the_task_is_built(build):
    with pytest.raises(ConfigError, match="more than the model's image_bucket_size"):
        ground(build, ",patch_image_size=800", size="base").pre("img")
    with pytest.raises(ConfigError, match="not a multiple of the patch size 8"):
        ground(build, ",patch_image_size=50,adaptor=image_patch").pre("img")


def test_mask_ratio_greys_out_a_centred_square(build):
    g = ground(build, ",patch_image_size=32,mask_ratio=0.25")
    t = g.pre("img")(Image.new("RGB", (32, 32), (255, 255, 255)), g.sample_ctx()).data
    assert torch.all(t[:, 8:24, 8:24] == 0) and torch.all(t[:, :8] == 1)


def box_tokens(g, box, split="test", seed=0, image=None, row=None):
    image = image if image is not None else Image.new("RGB", (100, 50), (200, 200, 200))
    ctx = g.sample_ctx(split, row=row or {"img": image, "region": box}, seed=seed)
    g.pre("img")(image, ctx)
    return g.pre("region")(box, ctx), ctx


def test_box_is_quantised_to_four_bins_of_the_shared_vocabulary(build):
    g = ground(build, ",patch_image_size=32")
    start = g.vocab.block("bin").start
    tok, _ = box_tokens(g, [0, 0, 100, 50])
    assert isinstance(tok, Tokens) and tok.loss
    assert [i - start for i in tok.ids] == [0, 0, 999, 999]
    tok, _ = box_tokens(g, [25, 10, 50, 40])  # 1/4, 1/5, 1/2, 4/5 of the image
    assert [i - start for i in tok.ids] == [250, 200, 500, 799]  # round(f * 999)
    g16 = ground(build, ",patch_image_size=32", ",num_bins=16")
    tok, _ = box_tokens(g16, [25, 10, 50, 40])
    assert [i - g16.vocab.block("bin").start for i in tok.ids] == [4, 3, 8, 12]


def test_box_output_is_constrained_to_exactly_four_bins(build):
    g = ground(build, "", ",num_bins=100")
    c = g.pre("region").constraint()
    assert isinstance(c, Block) and c.min_len == c.max_len == 4
    start = g.vocab.block("bin").start
    assert c.accepts([start, start + 5, start + 99, start + 99])
    assert not c.accepts([start, start + 5, start + 100, start + 1])  # past num_bins
    assert not c.accepts([start, start + 1, start + 2])


def test_box_as_input_has_no_constraint(build):
    g = build("[IMAGE:img] what is in region [BOX:region] ? -> [TEXT:cap]")
    tok, _ = box_tokens(g, [10, 10, 20, 20])
    assert tok.constraint is None and len(tok.ids) == 4


@pytest.mark.parametrize("box, message", [
    ([30, 10, 20, 40], r"has x1 < x0"),
    ([10, 40, 30, 20], r"has y1 < y0"),
    ([120, 60, 150, 90], r"lies entirely outside the 100x50 image"),
    ([-20, -20, -5, -1], r"lies entirely outside"),
    ([10, 10, 10, 30], r"zero width or height"),
    ([1, 2, 3], r"must hold a box \[x0, y0, x1, y1\]"),
    ("ten, 2, 3, 4", r"not a number"),
    ([1, 2, float("nan"), 4], r"NaN"),
    (None, r"must hold a box .* not missing"),
])
def test_bad_boxes_are_data_errors_with_the_reason(build, box, message):
    g = ground(build, ",patch_image_size=32")
    with pytest.raises(DataError, match=message):
        box_tokens(g, box)


def test_a_box_partly_outside_the_image_is_clipped(build):
    g = ground(build, ",patch_image_size=32")
    inside, _ = box_tokens(g, [50, 25, 100, 50])
    over, _ = box_tokens(g, [50, 25, 180, 95])
    assert over.ids == inside.ids


def test_boxes_accept_strings_dicts_arrays_and_tensors(build):
    g = ground(build, ",patch_image_size=32")
    ref, _ = box_tokens(g, [25, 10, 50, 40])
    for v in ("25,10,50,40", "25 10 50 40", {"x0": 25, "y0": 10, "x1": 50, "y1": 40}, np.array([25, 10, 50, 40]),
              torch.tensor([25.0, 10.0, 50.0, 40.0]), (25, 10, 50, 40)):
        assert box_tokens(g, v)[0].ids == ref.ids


def test_box_without_an_image_slot_is_refused_when_the_task_is_built(build):
    g = build("where is [TEXT:expr] ? -> [BOX:region]")
    with pytest.raises(PlanError, match="needs an IMAGE slot in the same instruction"):
        g.pre("region")


def test_image_output_is_refused_when_planned(build):
    from ofasys.errors import InstructionError

    with pytest.raises(InstructionError, match="IMAGE cannot be an output"):
        build("draw [TEXT:prompt] -> [IMAGE:img]")


def test_flip_moves_the_box_with_the_image(build):
    g = ground(build, ",patch_image_size=100,augment=flip")
    image = Image.new("RGB", (100, 50), (200, 200, 200))
    image.paste((0, 0, 0), (10, 10, 30, 20))
    flips = 0
    for seed in range(12):
        tok, ctx = box_tokens(g, [10, 10, 30, 20], split="train", seed=seed, image=image)
        rec = ctx.state["images"]["img"]
        bins = [i - g.vocab.block("bin").start for i in tok.ids]
        flips += rec["flip"]
        expect = [699, 200, 899, 400] if rec["flip"] else [100, 200, 300, 400]  # x: 1 - x mirrored
        assert bins == pytest.approx(expect, abs=1)
    assert 0 < flips < 12
    # evaluation is never augmented
    _, ctx = box_tokens(g, [10, 10, 30, 20], split="valid", seed=1)
    assert ctx.state["images"]["img"]["flip"] is False


def test_resized_crop_keeps_the_boxes_and_moves_them(build):
    g = ground(build, ",patch_image_size=64,augment=resized_crop")
    image = Image.new("RGB", (100, 80), (255, 255, 255))
    image.paste((0, 0, 0), (60, 50, 80, 70))
    box = [60, 50, 80, 70]
    crops = set()
    for seed in range(10):
        ctx = g.sample_ctx("train", row={"img": image, "region": box}, seed=seed)
        pixels = g.pre("img")(image, ctx).data
        g.pre("region")(box, ctx)
        rec = ctx.state["images"]["img"]
        crops.add(tuple(round(c, 3) for c in rec["crop"]))
        x, y, w, h = rec["crop"]
        assert x <= 60 and y <= 50 and x + w >= 80 and y + h >= 70  # the box stays inside the crop
        # the black square is where the moved box says
        x0, y0, x1, y1 = (int(round(v)) for v in forward_box(box, rec))
        inner = pixels[:, y0 + 2:y1 - 2, x0 + 2:x1 - 2]
        assert inner.numel() and inner.max() < -0.8
    assert len(crops) > 5  # crops vary with the sample's rng


def test_augmentations_are_deterministic_by_sample_seed(build, rgb_image):
    g = ground(build, ",patch_image_size=32,augment=randaug")
    a = g.pre("img")(rgb_image, g.sample_ctx("train", seed=3)).data
    b = g.pre("img")(rgb_image, g.sample_ctx("train", seed=3)).data
    c = g.pre("img")(rgb_image, g.sample_ctx("train", seed=4)).data
    assert torch.equal(a, b) and not torch.equal(a, c)
    torch.manual_seed(0)
    before = torch.rand(1)
    torch.manual_seed(0)
    g.pre("img")(rgb_image, g.sample_ctx("train", seed=5))
    assert torch.equal(torch.rand(1), before)  # RandAugment does not consume the global torch generator


def test_collate_pads_images_of_different_sizes(build):
    pre = ground(build, ",patch_image_size=32").pre("img")
    out = pre.collate([torch.ones(3, 32, 32), torch.ones(3, 16, 24)])
    assert out["pixels"].shape == (2, 3, 32, 32)
    assert out["hw"].tolist() == [[32, 32], [16, 24]]
    assert out["pixels"][1, :, 16:].abs().sum() == 0


@settings(max_examples=60, deadline=None)
@given(w=st.integers(8, 400), h=st.integers(8, 400), fx=st.tuples(*[st.floats(0, 1)] * 4),
       crop=st.tuples(*[st.floats(0, 1)] * 4), flip=st.booleans(), size=st.sampled_from([32, 64, 480]))
def test_forward_then_inverse_box_is_the_identity(w, h, fx, crop, flip, size):
    x0, x1 = sorted((fx[0] * w, fx[1] * w))
    y0, y1 = sorted((fx[2] * h, fx[3] * h))
    cw, ch = max(1.0, crop[2] * w), max(1.0, crop[3] * h)
    rec = {"column": "img", "orig": [w, h], "crop": [crop[0] * (w - cw), crop[1] * (h - ch), cw, ch], "flip": flip,
           "size": size}
    back = inverse_box(forward_box([x0, y0, x1, y1], rec), rec)
    cx, cy = rec["crop"][0], rec["crop"][1]
    expect = [min(max(v, lo), hi) for v, lo, hi in
              zip([x0, y0, x1, y1], [0, 0, 0, 0], [w, h, w, h])]
    assert back == pytest.approx(expect, abs=1e-6 * max(w, h) + 1e-6)
    assert cx >= 0 and cy >= 0


_BUILT: dict = {}


@settings(max_examples=40, deadline=None)
@given(w=st.integers(20, 300), h=st.integers(20, 300), fx=st.tuples(*[st.floats(0, 1)] * 4),
       bins=st.sampled_from([50, 1000]))
def test_preprocess_then_postprocess_recovers_the_box_within_one_bin(build, w, h, fx, bins):
    g = _BUILT.get(bins) or _BUILT.setdefault(bins, ground(build, ",patch_image_size=32", f",num_bins={bins}"))
    x0, x1 = sorted((fx[0] * w, fx[1] * w))
    y0, y1 = sorted((fx[2] * h, fx[3] * h))
    if x1 - x0 < 1 or y1 - y0 < 1:
        return
    image = Image.new("RGB", (w, h))
    tok, ctx = box_tokens(g, [x0, y0, x1, y1], image=image, row={"img": image})
    out = g.post("region")(tok.ids, {"row": {"img": image}, "state": ctx.state})
    step_x, step_y = w / (bins - 1), h / (bins - 1)
    for got, want, step in zip(out["box"], [x0, y0, x1, y1], [step_x, step_y, step_x, step_y]):
        assert abs(got - want) <= step / 2 + 0.011
