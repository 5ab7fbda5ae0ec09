"""The VIDEO slot in the engine: preprocessing, augmentation consistent across frames, temporal pooling, and the
image adaptor shared with IMAGE slots (one set of weights, kept through a checkpoint)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from ofasys import GeneralistModel, OFASys, Task, Trainer
from ofasys.components import SampleContext
from ofasys.engine.checkpoint import load_tensors
from ofasys.errors import DataError, InstructionError
from ofasys_video import data, tasks

VIDEO = tasks.SMALL_VIDEO
MIXED = ("[IMAGE:img,patch_image_size=32,adaptor=image_patch] [VIDEO:clip,num_frames=4,patch_image_size=32,"
         "frame_adaptor=image_patch] does the picture show the first frame? -> [TEXT:same,closed_set]")


def rows(n, seed=0):
    return data.clip_rows(n, seed)


def runtime_for(instructions: dict, n=4, data_of=None, **model):
    ts = [Task(name, ins, micro_batch_size=4).add_dataset((data_of or {}).get(name) or rows(n, 1), "train")
          for name, ins in instructions.items()]
    m = GeneralistModel("nano", **model)
    rt = Trainer(threads=1, seed=0, tensorboard=False).prepare(m, ts)
    return rt, m


def preprocessor(rt, task, column="clip"):
    pipe = rt.pipelines[task]
    return pipe.preprocessor(pipe.plan.slots[column])


def ctx(split="valid", seed=0):
    return SampleContext(split=split, row={}, rng=random.Random(seed), vocab=None)


def mixed_rows(n, seed=0):
    """Rows for MIXED: an image that is (or is not) the clip's first frame."""
    from PIL import Image

    out = []
    for i, r in enumerate(rows(n, seed)):
        other = rows(1, seed + 100 + i)[0]
        same = i % 2 == 0
        from ofasys_video.decode import open_video

        first = open_video(r["clip"] if same else other["clip"]).frames([0])[0]
        out.append({"img": Image.fromarray(first), "clip": r["clip"], "same": "yes" if same else "no"})
    return out


def test_frames_are_sampled_resized_and_normalised(clip):
    rt, _ = runtime_for({"d": tasks.instruction("direction", "[VIDEO:clip,num_frames=4,patch_image_size=16,"
                                                              "frame_adaptor=image_patch]")})
    pre = preprocessor(rt, "d")
    f = pre(clip["path"], ctx())
    assert f.data.shape == (4, 3, 16, 16) and f.data.dtype == torch.float32
    assert -1.0 <= float(f.data.min()) and float(f.data.max()) <= 1.0  # (x - 0.5) / 0.5
    assert f.meta["indices"] == [1, 3, 6, 8] and f.meta["frames"] == 10
    assert f.length == 4 * 2 * 2  # 4 frames x (16 / 8)^2 cells


def test_augmentation_is_the_same_for_every_frame():
    still = np.repeat(data.make_clip(random.Random(2))["frames"][:1], 6, axis=0)  # 6 identical frames
    for augment in ("flip", "resized_crop"):
        rt, _ = runtime_for({"d": tasks.instruction(
            "direction", f"[VIDEO:clip,num_frames=4,patch_image_size=32,frame_adaptor=image_patch,augment={augment}]")})
        pre = preprocessor(rt, "d")
        changed = 0
        for seed in range(6):
            x = pre(still, ctx("train", seed)).data
            assert all(torch.equal(x[0], x[k]) for k in range(1, 4)), f"{augment}: frames transformed differently"
            changed += not torch.equal(x[0], pre(still, ctx("valid")).data[0])
        assert changed, f"{augment} never changed a training clip"
        # evaluation never augments
        assert torch.equal(pre(still, ctx("valid", 1)).data, pre(still, ctx("valid", 2)).data)


def test_bad_rows_raise_data_errors_through_the_pipeline(bad_files):
    rt, _ = runtime_for({"d": tasks.instruction("direction")})
    pipe = rt.pipelines["d"]
    for name, words in (("missing", "does not exist"), ("zero_frames", "zero frames"), ("text", "not a video")):
        with pytest.raises(DataError, match=words):
            pipe.make_sample({"clip": bad_files[name], "direction": "left"}, "train", random.Random(0))


def test_video_is_an_input_only_slot():
    with pytest.raises(InstructionError, match="cannot be an output"):
        Task("x", "[TEXT:q] -> [VIDEO:clip]")


def test_image_and_video_share_one_image_adaptor_through_training_and_a_checkpoint(tmp_path):
    ts = [Task("mixed", MIXED, micro_batch_size=4).add_dataset(mixed_rows(8), "train"),
          Task("direction", tasks.instruction("direction"), micro_batch_size=4).add_dataset(rows(8), "train")]
    model = GeneralistModel("nano")
    trainer = Trainer(max_steps=2, threads=1, seed=0, warmup_steps=1, tensorboard=False, progress=False,
                      output_dir=str(tmp_path / "run"))
    trainer.fit(model, ts)
    image = model.adaptor("IMAGE.image_patch")
    video = model.adaptor("VIDEO.video_image_sequence")
    assert sorted(model._adaptor_names) == ["IMAGE.image_patch", "VIDEO.video_image_sequence"]
    assert video.frames is image  # the video path runs its frames through the IMAGE adaptor module
    image_params = {id(p) for p in image.parameters()}
    frame_convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len({id(m) for m in frame_convs}) == 1  # one patch embedding in the whole model
    own_video = [n for n, p in video.named_parameters() if id(p) not in image_params]
    # the VIDEO adaptor adds only its temporal and space-time position tables
    assert sorted(own_video) == ["embed_time.weight", "st_cols.weight", "st_rows.weight", "time_gate.weight"]
    # the checkpoint holds the image weights once, and a served model shares them again
    saved = load_tensors(tmp_path / "run" / "checkpoint" / "model.safetensors")
    assert any(k.startswith("adaptors.IMAGE-image_patch.") for k in saved)
    assert not any(".frames." in k for k in saved)
    served = OFASys.from_pretrained(tmp_path / "run")
    m2 = served.model
    assert m2.adaptor("VIDEO.video_image_sequence").frames is m2.adaptor("IMAGE.image_patch")
    assert torch.equal(m2.adaptor("IMAGE.image_patch").proj.weight, image.proj.weight)
    probe = rows(3, 9)
    assert served.inference("direction", probe).text == OFASys(trainer.runtime).inference("direction", probe).text


def test_a_video_loss_trains_the_shared_image_weights():
    ts = [Task("mixed", MIXED, micro_batch_size=4).add_dataset(mixed_rows(4), "train"),
          Task("direction", tasks.instruction("direction"), micro_batch_size=4).add_dataset(rows(4), "train")]
    model = GeneralistModel("nano")
    rt = Trainer(threads=1, seed=0).prepare(model, ts)
    pipe = rt.pipelines["direction"]  # a video-only task
    batch = pipe.collate([pipe.make_sample(r, "train", random.Random(i)) for i, r in enumerate(rows(4))])
    loss, _ = rt.loss(batch)
    loss.backward()
    grad = model.adaptor("IMAGE.image_patch").proj.weight.grad
    assert grad is not None and float(grad.abs().sum()) > 0


def test_own_frames_variant_keeps_separate_weights():
    own = "[VIDEO:clip,num_frames=4,patch_image_size=32,frame_adaptor=image_patch,adaptor=video_own_frames]"
    rt, model = runtime_for({"mixed": MIXED.replace("[VIDEO:clip,num_frames=4,patch_image_size=32,"
                                                    "frame_adaptor=image_patch]", own)},
                              data_of={"mixed": mixed_rows(4)})
    video = model.adaptor("VIDEO.video_own_frames")
    image = model.adaptor("IMAGE.image_patch")
    assert video.frames is not image and not video.shared
    assert not ({id(p) for p in video.frames.parameters()} & {id(p) for p in image.parameters()})


def test_temporal_pooling_bounds_the_sequence():
    lengths = {}
    for pool in (1, 2, 3):
        ins = tasks.instruction("direction", f"[VIDEO:clip,num_frames=4,patch_image_size=32,"
                                             f"frame_adaptor=image_patch,temporal_pool={pool}]")
        rt, model = runtime_for({"d": ins})
        pipe = rt.pipelines["d"]
        batch = pipe.collate([pipe.make_sample(r, "valid", random.Random(0)) for r in rows(2)])
        seg = model.adaptor("VIDEO.video_image_sequence")(batch.encoder.features["VIDEO.video_image_sequence"])
        lengths[pool] = seg.embeds.shape[1]
        assert seg.mask.all() and seg.pos.shape[:2] == seg.embeds.shape[:2]
    assert lengths == {1: 64, 2: 32, 3: 32}  # 4 frames x 16 cells; pooled to ceil(4 / pool) time steps


def test_video_slots_of_one_model_must_agree_on_the_frame_adaptor():
    resnet = "[VIDEO:clip,num_frames=2,patch_image_size=32]"  # frame_adaptor defaults to image_resnet
    ts = [Task("a", tasks.instruction("direction"), micro_batch_size=2).add_dataset(rows(2), "train"),
          Task("b", tasks.instruction("direction", resnet), micro_batch_size=2).add_dataset(rows(2), "train")]
    model = GeneralistModel("nano")
    rt = Trainer(threads=1, seed=0).prepare(model, ts)
    pipe = rt.pipelines["b"]
    batch = pipe.collate([pipe.make_sample(r, "valid", random.Random(0)) for r in rows(2)])
    with pytest.raises(Exception, match="frame_adaptor=image_resnet"):
        rt.loss(batch)


def test_demo_tasks_are_registered_with_rows_and_a_showcase():
    from ofasys.plugins import PluginManager

    manager = PluginManager()
    manager.load_all()
    demo = {d.name: d for d in manager.demo_tasks() if d.modality == "video"}
    assert sorted(demo) == ["video_direction", "video_qa"]
    for d in demo.values():
        train, valid = d.rows("train", 3, 0), d.rows("valid", 3, 0)
        assert {r["clip"] for r in train}.isdisjoint({r["clip"] for r in valid})
        assert d.showcase is not None and d.metric == "accuracy"
        Task(d.name, d.instruction).add_dataset(train, "train")  # plans, and the rows fit the instruction


def test_default_frame_adaptor_is_the_image_resnet_shared_with_default_image_slots():
    ins = ("[IMAGE:img,patch_image_size=32] [VIDEO:clip,num_frames=2,patch_image_size=32] "
           "does the picture show the first frame? -> [TEXT:same,closed_set]")
    rt, model = runtime_for({"mixed": ins}, data_of={"mixed": mixed_rows(2)})
    assert model.adaptor("VIDEO.video_image_sequence").frames is model.adaptor("IMAGE.image_resnet")
    pipe = rt.pipelines["mixed"]
    batch = pipe.collate([pipe.make_sample(r, "train", random.Random(i)) for i, r in enumerate(mixed_rows(2))])
    loss, _ = rt.loss(batch)
    assert torch.isfinite(loss)
