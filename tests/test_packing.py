"""Sequence packing in the engine (``Trainer(pack=True)``): text tasks train on packed micro-batches with the
updates of unpacked ones, tasks the plan cannot pack (images) train unpacked in the same run, and packing works
with spawned DataLoader workers and with DDP. The model-level equivalence (loss and gradients of a packed batch
equal the unpacked batch's) is tested in core/tests/test_model_speed.py."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import pytest
import torch

from ofasys import GeneralistModel, Task, Trainer
from ofasys.engine.data import make_loader
from ofasys.engine.evaluate import evaluate_task
from ofasys.engine.packing import PackedBatch

from ofasys_text import demo as text_tasks

QUICK = dict(warmup_steps=2, progress=False, tensorboard=False, threads=1)


def _text_task(name: str, n: int = 64, seed: int = 3, mbs: int = 16, valid: int = 0) -> Task:
    train, held = text_tasks.splits(name, n_train=n, n_valid=max(valid, 1), seed=seed)
    t = Task(name=name, instruction=text_tasks.INSTRUCTIONS[name], micro_batch_size=mbs)
    t.add_dataset(train, "train")
    if valid:
        t.add_dataset(held, "valid")
    return t


def _image_task(n: int = 16) -> Task:
    from ofasys_image import datasets as D

    ins = "[IMAGE:img,patch_image_size=32,adaptor=image_patch] what does the image describe? -> [TEXT:caption]"
    rows = D.shapes_task("caption", n, 0, size=32)
    for r in rows:
        r.pop("objects", None)
    return Task(name="caption", instruction=ins, micro_batch_size=4).add_dataset(rows, "train")


def _tokens(out) -> list[dict]:
    recs = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines() if x.strip()]
    return [{k: v["tokens"] for k, v in r["tasks"].items()} for r in recs if "tasks" in r]


def test_packed_training_makes_the_updates_of_unpacked_training(tmp_path, caplog, monkeypatch):
    """Two text tasks packed (with bucketing and gradient accumulation) and an image task the plan cannot pack,
    in one run: the loss curve, the logged token counts and the final weights equal those of the unpacked run
    (dropout off, so both runs compute the same function of the same samples)."""

    def run(out, **opts):
        tasks = [_text_task("reverse"), _text_task("sentiment", mbs=8), _image_task()]
        model = GeneralistModel("nano", dropout=0.0)
        res = Trainer(output_dir=str(tmp_path / out), max_steps=5, accum_steps=2, bucket_batches=4, lr=2e-3,
                      **QUICK, **opts).fit(model, tasks)
        return res, model

    from ofasys.engine import packing

    plain, m0 = run("plain")
    seen = []
    real_pack = packing.pack_batch

    def counting(batch, *a):
        out = real_pack(batch, *a)
        seen.append((batch.task, isinstance(out, PackedBatch), len(out.encoder), batch.n_samples))
        return out

    monkeypatch.setattr(packing, "pack_batch", counting)
    with caplog.at_level(logging.INFO, logger="ofasys.trainer"):
        packed, m1 = run("packed", pack=True, pack_tokens=64)
    assert {t for t, p, _, _ in seen if p} == {"reverse", "sentiment"}
    assert all(p for _, p, _, _ in seen), [x for x in seen if not x[1]]
    assert sum(r for *_, r, _ in seen) < 0.5 * sum(n for *_, n in seen)  # rows vs samples
    notes = [r.getMessage() for r in caplog.records if "packing not applied" in r.getMessage()]
    assert len(notes) == 1 and "'caption'" in notes[0] and "IMAGE" in notes[0], notes
    assert _tokens(tmp_path / "packed") == _tokens(tmp_path / "plain")
    for a, b in zip(plain.history, packed.history):
        assert set(a["tasks"]) == set(b["tasks"]) == {"reverse", "sentiment", "caption"}
        for k in a["tasks"]:
            assert b["tasks"][k] == pytest.approx(a["tasks"][k], rel=1e-4, abs=1e-5), (a, b)
    for (n, a), (_, b) in zip(m0.named_parameters(), m1.named_parameters()):
        assert torch.allclose(a, b, atol=2e-5, rtol=1e-4), (n, float((a - b).abs().max()))


def test_packed_loaders_pack_text_batches_only(tmp_path):
    trainer = Trainer(output_dir=str(tmp_path), pack=True, pack_tokens=40, **QUICK)
    text, image = _text_task("reverse"), _image_task()
    runtime = trainer.prepare(GeneralistModel("nano"), [text, image])
    for task, packable in ((text, True), (image, False)):
        pack = trainer._packing(runtime, task)
        assert (pack is not None) == packable
        loader = make_loader(task.datasets["train"], runtime.pipelines[task.name], "train", task.micro_batch_size,
                             1, pack=pack)
        batch, _ = next(iter(loader))
        assert isinstance(batch, PackedBatch) == packable
        assert batch.n_samples == task.micro_batch_size
        if packable:
            assert batch.encoder.tokens.size(0) < task.micro_batch_size
            assert len(batch.meta) == len(batch.smoothing_ids) == task.micro_batch_size
    with pytest.raises(Exception, match="pack_tokens"):
        Trainer(pack=True, pack_tokens=0)


@pytest.mark.slow
def test_packed_training_reaches_the_unpacked_held_out_score(tmp_path):
    """Same number of updates, default dropout (so the runs differ in their dropout masks), rows of up to 64
    tokens (2-3 sentiment samples each): held-out accuracy and loss match the unpacked run's (measured on the
    shared 2-core machine: accuracy 100 / 100, loss 0.444 unpacked, 0.448 packed, after 150 updates)."""
    scores = {}
    for name, opts in (("plain", {}), ("packed", {"pack": True, "pack_tokens": 64})):
        t = _text_task("sentiment", n=600, seed=11, mbs=32, valid=100)
        t.metrics = ["accuracy"]
        trainer = Trainer(output_dir=str(tmp_path / name), max_steps=150, lr=1e-3, warmup_steps=10, eval_splits=(),
                          progress=False, tensorboard=False, threads=1, **opts)
        trainer.fit(GeneralistModel("nano"), [t])
        scores[name] = evaluate_task(trainer.runtime, t, "valid")
    assert scores["plain"]["accuracy"] >= 90.0, scores
    assert scores["packed"]["accuracy"] >= max(90.0, scores["plain"]["accuracy"] - 5.0), scores
    assert scores["packed"]["loss"] <= 1.2 * scores["plain"]["loss"], scores


@pytest.mark.slow
def test_spawned_workers_pack_exactly_like_the_main_process(tmp_path):
    def run(out, **opts):
        t = _text_task("reverse", mbs=8)
        model = GeneralistModel("nano", dropout=0.0)
        res = Trainer(output_dir=str(tmp_path / out), max_steps=4, pack=True, **QUICK, **opts).fit(model, [t])
        return res, model

    inline, m0 = run("inline")
    spawned, m1 = run("spawned", num_workers=2, worker_start="spawn", prefetch_factor=2)
    assert [h["loss"] for h in spawned.history] == pytest.approx([h["loss"] for h in inline.history], rel=1e-6)
    for (n, a), (_, b) in zip(m0.named_parameters(), m1.named_parameters()):
        assert torch.allclose(a, b, atol=1e-6), n


@pytest.mark.slow
def test_ddp_two_ranks_with_packing_equal_one_process(tmp_path):
    """torchrun, 2 ranks of DDP on packed micro-batches = one process accumulating the same 2 packed
    micro-batches per update."""
    from ofasys.engine.checkpoint import load_tensors

    def config(name, distributed, accum):
        data = tmp_path / "reverse.jsonl"
        if not data.exists():
            train, _ = text_tasks.splits("reverse", 48, 8, seed=5)
            data.write_text("".join(json.dumps(r) + "\n" for r in train))
        cfg = {"model": {"size": "nano", "dropout": 0.0},
               "trainer": {"max_steps": 4, "lr": 2e-3, "warmup_steps": 2, "seed": 4, "accum_steps": accum,
                           "distributed": distributed, "tensorboard": False, "progress": False, "threads": 1,
                           "pack": True, "output_dir": str(tmp_path / name)},
               "tasks": [{"name": "reverse", "instruction": text_tasks.INSTRUCTIONS["reverse"],
                          "micro_batch_size": 8, "train": str(data)}]}
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(cfg))
        return str(path)

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    runs = {"one": (config("one", "none", 2), 1), "ddp": (config("ddp", "ddp", 1), 2)}
    for name, (cfg, nproc) in runs.items():
        cmd = [sys.executable, "-m", "ofasys", "train", cfg]
        if nproc > 1:
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
                   "-m", "ofasys", "train", cfg]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    w = {n: load_tensors(tmp_path / n / "checkpoint" / "model.safetensors") for n in runs}
    for k in w["one"]:
        assert torch.allclose(w["one"][k], w["ddp"][k], atol=1e-5), k
