"""Engine behaviours a user relies on, each with a few training steps: data sources, bad samples, NaN losses,
schedules, EMA, evaluation and the CLI around checkpoints."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ofasys import GeneralistModel, OFASys, Task, Trainer
from ofasys.errors import DataError, InstructionError
from ofasys.hookspecs import hookimpl
from ofasys.plugins import PluginManager

from ofasys_text import demo as text_tasks

REV = text_tasks.INSTRUCTIONS["reverse"]
QUICK = dict(max_steps=6, warmup_steps=2, progress=False, tensorboard=False)


def rev_rows(n=64, seed=0):
    return text_tasks.reverse(n, seed)


def test_missing_column_names_the_slot_the_instruction_and_the_columns():
    t = Task(name="rev", instruction=REV)
    with pytest.raises(DataError) as err:
        t.add_dataset([{"word": "a b", "reversed": "b a"}], "train")
    msg = str(err.value)
    assert "no column 'words'" in msg and "[TEXT:words]" in msg and REV.split("[")[0].strip() in msg
    assert "Available columns: reversed, word" in msg


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "json"])
def test_file_datasets(tmp_path, fmt):
    rows = rev_rows(8)
    path = tmp_path / f"rows.{fmt}"
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif fmt == "json":
        path.write_text(json.dumps(rows))
    else:
        with path.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["words", "reversed"])
            w.writeheader()
            w.writerows(rows)
    t = Task(name="rev", instruction=REV).add_dataset(str(path), "train")
    assert len(t.datasets["train"]) == 8 and t.datasets["train"].row(3) == rows[3]


def test_torch_datasets_and_streaming(tmp_path):
    rows = rev_rows(40)

    class MapDS(torch.utils.data.Dataset):
        def __len__(self):
            return len(rows)

        def __getitem__(self, i):
            return rows[i]

    class Stream(torch.utils.data.IterableDataset):
        def __iter__(self):
            yield from rows

    t1 = Task(name="map", instruction=REV, micro_batch_size=8).add_dataset(MapDS(), "train")
    t2 = Task(name="stream", instruction=REV, micro_batch_size=8).add_dataset(Stream(), "train")
    assert t2.datasets["train"].is_iterable
    res = Trainer(output_dir=str(tmp_path), **QUICK).fit(GeneralistModel("nano"), [t1, t2])
    assert res.steps == 6 and all(math.isfinite(h["loss"]) for h in res.history)
    assert set(res.history[-1]["tasks"]) == {"map", "stream"}


def test_bad_samples_are_skipped_counted_and_stop_training_past_the_limit(tmp_path):
    rows = rev_rows(64)
    for i in range(0, 64, 8):  # 1 in 8 rows has a number where text belongs
        rows[i] = {"words": 12345, "reversed": "x"}
    t = Task(name="rev", instruction=REV, micro_batch_size=8).add_dataset(rows, "train")
    res = Trainer(output_dir=str(tmp_path / "a"), max_bad_fraction=0.25, min_samples_for_bad_check=16,
                  **QUICK).fit(GeneralistModel("nano"), [t])
    bad = res.bad_samples["rev"]
    assert bad["seen"] == 48 and 1 <= bad["bad"] <= 8  # 6 steps x 8 rows; 1 row in 8 is bad
    assert "words" in bad["examples"][0] and "int" in bad["examples"][0]
    t = Task(name="rev", instruction=REV, micro_batch_size=8).add_dataset(rows, "train")
    stop = r"of 16 samples could not be read \(\d+% > max_bad_fraction=5%\); training stopped"
    with pytest.raises(DataError, match=stop):
        Trainer(output_dir=str(tmp_path / "b"), max_bad_fraction=0.05, min_samples_for_bad_check=16,
                **QUICK).fit(GeneralistModel("nano"), [t])


class _Poison:
    """An in-memory plugin whose criterion returns NaN on every third call for the task 'poison'."""

    def __init__(self):
        self.calls = 0

    @hookimpl
    def ofasys_criterion(self, slot, ctx):
        if ctx.task != "poison":
            return None
        from ofasys.model.criterion import TokenCriterion

        inner = TokenCriterion(0.1, pad=ctx.vocab.pad)
        outer = self

        def crit(model, batch):
            outer.calls += 1
            loss, log = inner(model, batch)
            return (loss * float("nan") if outer.calls % 3 == 0 else loss), log

        return crit


def test_non_finite_loss_is_reported_with_the_task_and_the_update_skipped(tmp_path):
    pm = PluginManager()
    poison = _Poison()
    pm.register(poison, name="poison-plugin")
    good = Task(name="good", instruction=REV, micro_batch_size=8, manager=pm).add_dataset(rev_rows(), "train")
    bad = Task(name="poison", instruction=REV, micro_batch_size=8, manager=pm).add_dataset(rev_rows(), "train")
    model = GeneralistModel("nano")
    res = Trainer(output_dir=str(tmp_path), **QUICK).fit(model, [good, bad], manager=pm)
    assert [s["task"] for s in res.skipped_updates] == ["poison", "poison"]
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.parametrize("schedule", ["round_robin", "sampling"])
def test_other_schedules_train_every_task(tmp_path, schedule):
    a = Task(name="a", instruction=REV, micro_batch_size=8).add_dataset(rev_rows(64, 1), "train")
    b = Task(name="b", instruction=text_tasks.INSTRUCTIONS["first_word"], micro_batch_size=8).add_dataset(
        text_tasks.first_word(64, 2), "train")
    res = Trainer(output_dir=str(tmp_path), schedule=schedule, temperature=2.0,
                  **{**QUICK, "max_steps": 12}).fit(GeneralistModel("nano"), [a, b])
    seen = [next(iter(h["tasks"])) for h in res.history]
    assert all(len(h["tasks"]) == 1 for h in res.history) and set(seen) == {"a", "b"}
    if schedule == "round_robin":
        assert seen[:4] == ["a", "b", "a", "b"]


def test_ema_weights_are_saved_and_served(tmp_path):
    t = Task(name="rev", instruction=REV, micro_batch_size=8).add_dataset(rev_rows(), "train")
    model = GeneralistModel("nano")
    Trainer(output_dir=str(tmp_path), ema_decay=0.5, **QUICK).fit(model, [t])
    ckpt = (tmp_path / "checkpoint").resolve()
    from safetensors.torch import load_file

    ema, raw = load_file(str(ckpt / "ema.safetensors")), load_file(str(ckpt / "model.safetensors"))
    name = "encoder_layers.0.ffn.fc1.weight" if "encoder_layers.0.ffn.fc1.weight" in ema else next(iter(ema))
    assert not torch.equal(ema[name], raw[name])
    served = OFASys.from_pretrained(tmp_path).model.state_dict()[name]
    assert torch.equal(served, ema[name])
    assert torch.equal(model.state_dict()[name], ema[name])  # fit() leaves the evaluated (EMA) weights in place


def test_eval_and_infer_jsonl_commands(tmp_path):
    train, valid = text_tasks.splits("reverse", 64, 10, seed=5)
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train))
    (tmp_path / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in valid))
    cfg = tmp_path / "run.yaml"
    cfg.write_text(f"model:\n  size: nano\ntrainer:\n  max_steps: 4\n  warmup_steps: 1\n  output_dir: run\n"
                   f"  progress: false\ntasks:\n  - name: rev\n    instruction: {json.dumps(REV)}\n"
                   f"    train: train.jsonl\n    test: test.jsonl\n    metrics: [exact_match]\n")
    run = [sys.executable, "-m", "ofasys"]
    r = subprocess.run(run + ["train", str(cfg)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(run + ["eval", str(tmp_path / "run" / "checkpoint"), str(cfg), "--json"], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)["rev"]
    assert res["samples"] == 10 and 0.0 <= res["exact_match"] <= 100.0
    r = subprocess.run(run + ["infer", "-c", str(tmp_path / "run"), "-i", "rev", "--jsonl",
                              str(tmp_path / "test.jsonl"), "--json"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert len(lines) == 10 and all(isinstance(x["text"], str) for x in lines)


def test_config_errors_are_messages_not_tracebacks(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[trainer]\nmax_step = 3\n\n[[tasks]]\nname = "t"\ninstruction = "[TEXT:a] -> [TEXT:b]"\n'
                   'train = "missing.jsonl"\n')
    r = subprocess.run([sys.executable, "-m", "ofasys", "train", str(cfg)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "missing.jsonl does not exist" in r.stderr
    cfg.write_text('[trainer]\nmax_step = 3\n\n[[tasks]]\nname = "t"\ninstruction = "[TEXT:a] -> [TEXT:b]"\n')
    r = subprocess.run([sys.executable, "-m", "ofasys", "train", str(cfg)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2 and "unknown Trainer setting 'max_step'. Did you mean 'max_steps'?" in r.stderr


def test_inference_with_a_bad_instruction_points_at_it(tmp_path):
    t = Task(name="rev", instruction=REV, micro_batch_size=8).add_dataset(rev_rows(), "train")
    Trainer(output_dir=str(tmp_path), **{**QUICK, "max_steps": 1}).fit(GeneralistModel("nano"), [t])
    m = OFASys.from_pretrained(tmp_path)
    with pytest.raises(InstructionError, match="unknown attribute 'uncasde'"):
        m.inference("[TEXT:words,uncasde] -> [TEXT:x]", data={"words": "a"})
    with pytest.raises(DataError, match="no column 'words'"):
        m.inference("rev", data={"word": "a"})


class _ArchPlugin:
    """An in-memory plugin registering a universal-model architecture (a GeneralistModel without dropout)."""

    @hookimpl
    def ofasys_register_architectures(self, register):
        from ofasys.spec import Architecture

        def build(config):
            config = dict(config)
            config.pop("arch")
            return GeneralistModel(config.pop("size"), **{**config, "dropout": 0.0})

        register(Architecture("ofa-nodrop", build, sizes={"nano": {"ffn_dim": 256}}))


def test_a_plugin_architecture_trains_saves_and_loads(tmp_path):
    from ofasys.engine.model import create_model
    from ofasys.errors import ConfigError

    pm = PluginManager(entry_points=[])
    pm.register(_ArchPlugin(), name="arch-plugin")
    with pytest.raises(ConfigError, match="unknown architecture 'ofa-nodro'.*Did you mean 'ofa-nodrop'"):
        create_model("ofa-nodro", "nano", manager=pm)
    model = create_model("ofa-nodrop", "nano", manager=pm)
    assert model.config.arch == "ofa-nodrop" and model.config.ffn_dim == 256 and model.config.dropout == 0.0
    t = Task(name="rev", instruction=REV, micro_batch_size=8).add_dataset(rev_rows(), "train")
    Trainer(output_dir=str(tmp_path), **{**QUICK, "max_steps": 2}).fit(model, [t])
    from ofasys.plugins import get_manager

    main = get_manager()
    main.register(_ArchPlugin(), name="arch-plugin")
    try:
        served = OFASys.from_pretrained(tmp_path)
    finally:
        main.unregister("arch-plugin")
    assert served.model.config.arch == "ofa-nodrop" and served.model.config.ffn_dim == 256


@pytest.mark.slow
def test_spawned_worker_processes_train_exactly_like_the_main_process(tmp_path):
    """Preprocessing in DataLoader workers started fresh (spawn: the pipeline is pickled and the plugins are
    imported again inside each worker) gives the very same updates as preprocessing in the main process, and the
    run reports how much of each step waited for data."""

    def run(out, **opts):
        t = Task(name="rev", instruction=REV, micro_batch_size=8).add_dataset(rev_rows(64, 3), "train")
        model = GeneralistModel("nano", dropout=0.0)
        res = Trainer(output_dir=str(tmp_path / out), **{**QUICK, "max_steps": 5}, **opts).fit(model, [t])
        return res, model

    inline, m0 = run("inline")
    spawned, m1 = run("spawned", num_workers=2, worker_start="spawn", prefetch_factor=2)
    assert [h["loss"] for h in spawned.history] == pytest.approx([h["loss"] for h in inline.history], rel=1e-6)
    for (n, a), (_, b) in zip(m0.named_parameters(), m1.named_parameters()):
        assert torch.allclose(a, b, atol=1e-6), n
    for res in (inline, spawned):
        assert res.timing["data_s"] > 0 and res.timing["compute_s"] > 0
        assert 0 < res.timing["data_fraction"] < 1


def test_length_bucketing_cuts_padding_and_keeps_every_sample(tmp_path):
    from ofasys.engine.data import EpochBatchSampler, row_length

    rows = [{"src": "x" * n} for n in [1, 30, 2, 29, 3, 28, 4, 27] * 8]
    lengths = [row_length(r) for r in rows]
    plain = EpochBatchSampler(len(rows), 4, 0, "t")
    bucketed = EpochBatchSampler(len(rows), 4, 0, "t", lengths=lengths, bucket_batches=8)

    def padding(sampler):
        batches = sampler._epoch_batches(0)
        return sum(max(lengths[i] for _, i in b) * len(b) - sum(lengths[i] for _, i in b) for b in batches)

    assert sorted(i for b in bucketed._epoch_batches(0) for _, i in b) == list(range(len(rows)))
    assert padding(bucketed) < 0.2 * padding(plain)


def test_ranks_share_the_global_batch_stream_and_resume_with_another_world_size():
    from ofasys.engine.data import EpochBatchSampler

    def take(sampler, n):
        it = iter(sampler)
        return [next(it) for _ in range(n)]

    one = take(EpochBatchSampler(20, 3, 7, "t"), 12)  # 7 batches per epoch: the stream crosses epochs
    two = [take(EpochBatchSampler(20, 3, 7, "t", rank=r, world=2), 6) for r in range(2)]
    assert [b for pair in zip(*two) for b in pair] == one  # update k on 2 ranks = batches 2k, 2k+1 of one process
    resumed = take(EpochBatchSampler(20, 3, 7, "t", start=6), 6)  # 6 global batches done, now on one process
    assert resumed == one[6:]
