"""The multi-task Trainer: one universal model, any number of tasks, one optimizer.

Task mixing (``schedule``):

``accumulate`` (default, as the seed does)
    every update takes ``accum_steps`` micro-batches from *every* task and sums their losses;
``round_robin``
    update *k* trains task *k mod n*;
``sampling``
    each update trains one task drawn with probability proportional to ``size ** (1 / temperature)``.

Each task's loss is its per-token (or per-frame) mean times its ``weight``, so tasks with long targets do not
drown tasks with short ones. Resume is exact on CPU: model, optimizer, schedule, RNG and every task's data
position are restored, and the resumed loss curve equals the uninterrupted one.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..errors import CheckpointError, ConfigError, DataError
from ..plugins import get_manager
from . import checkpoint as ckpt
from .data import make_loader
from .runtime import Runtime, build_vocab
from .task import Task

log = logging.getLogger("ofasys.trainer")
SCHEDULES = ("accumulate", "round_robin", "sampling")


@dataclass
class TrainerConfig:
    """Every setting of a run (saved in checkpoints and accepted by ``ofasys train`` configs)."""

    max_steps: int = 1000
    lr: float = 5e-4
    min_lr: float = 0.0
    warmup_steps: int = 100
    lr_schedule: str = "linear"  # linear | cosine | constant (after warm-up)
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    clip_norm: float = 1.0
    accum_steps: int = 1
    schedule: str = "accumulate"
    temperature: float = 1.0
    label_smoothing: float = 0.1
    seed: int = 1
    output_dir: str = "runs/ofasys"
    save_every: int | None = None
    keep_checkpoints: int = 2
    eval_every: int | None = None
    eval_splits: tuple[str, ...] = ("valid",)
    eval_max_samples: int | None = 200
    log_every: int = 10
    ema_decay: float | None = None
    device: str = "cpu"
    bf16: bool | None = None  # None: on when the device is CUDA with bf16 support
    num_workers: int = 0
    pin_memory: bool | None = None
    prefetch_factor: int | None = None  # batches each worker prepares ahead (DataLoader default 2)
    worker_start: str | None = None  # None: the platform's default; "spawn": fresh worker processes
    bucket_batches: int = 0  # >1: batch samples of similar length together, windows of this many batches
    pack: bool = False  # pack several samples into one row where the task allows (token inputs and targets)
    pack_tokens: int | None = None  # with pack: tokens per packed row (None: the longest sample of the micro-batch)
    distributed: str = "auto"  # auto | none | ddp | fsdp (auto: ddp when launched by torchrun with N > 1)
    fused_adamw: bool | None = None  # None: the fused kernel on CUDA; True: wherever torch has one (CPU ~3x faster)
    max_bad_fraction: float = 0.05
    min_samples_for_bad_check: int = 50
    progress: bool | None = None  # None: a live progress bar only on a terminal
    resume: bool = True
    checkpoint_activations: bool = False
    compile: bool = False
    tensorboard: bool = True
    threads: int | None = None

    def validate(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"unknown schedule {self.schedule!r}; use one of {', '.join(SCHEDULES)}")
        if self.lr_schedule not in ("linear", "cosine", "constant"):
            raise ConfigError(f"unknown lr_schedule {self.lr_schedule!r}; use linear, cosine or constant")
        if self.max_steps < 1 or self.accum_steps < 1:
            raise ConfigError("max_steps and accum_steps must be at least 1")
        if self.temperature <= 0:
            raise ConfigError("temperature must be positive")
        from .distributed import MODES

        if self.distributed not in MODES:
            raise ConfigError(f"unknown distributed mode {self.distributed!r}; use one of {', '.join(MODES)}")
        if self.pack_tokens is not None and self.pack_tokens < 1:
            raise ConfigError(f"pack_tokens must be at least 1 (or None: the longest sample), not {self.pack_tokens}")
        if self.worker_start not in (None, "fork", "spawn", "forkserver"):
            raise ConfigError(f"worker_start must be fork, spawn or forkserver, not {self.worker_start!r}")


@dataclass
class FitResult:
    """What :meth:`Trainer.fit` returns: the loss curve, the last metrics and where things were written."""

    steps: int
    history: list[dict] = field(default_factory=list)
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    checkpoint: str | None = None
    bad_samples: dict[str, dict] = field(default_factory=dict)
    skipped_updates: list[dict] = field(default_factory=list)
    timing: dict[str, float] = field(default_factory=dict)  # data_s, compute_s, data_fraction over the run


class Trainer:
    """Train one model jointly on several tasks.

    ``Trainer(max_steps=..., lr=..., ...)``: keyword arguments are :class:`TrainerConfig` fields.
    """

    def __init__(self, config: TrainerConfig | None = None, **settings: Any):
        cfg = config or TrainerConfig()
        unknown = set(settings) - set(TrainerConfig.__dataclass_fields__)
        if unknown:
            from ..errors import did_you_mean

            name = sorted(unknown)[0]
            raise ConfigError(f"unknown Trainer setting {name!r}.{did_you_mean(name, TrainerConfig.__dataclass_fields__)}")
        for k, v in settings.items():
            setattr(cfg, k, v)
        cfg.validate()
        self.config = cfg
        self.runtime: Runtime | None = None

    # ------------------------------------------------------------------------------------------ set-up
    def _device(self, env=None) -> torch.device:
        dev = torch.device(self.config.device)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError("device 'cuda' requested but CUDA is not available")
        if dev.type == "cuda" and env is not None and env.enabled and dev.index is None:
            dev = torch.device("cuda", env.local_rank)
        return dev

    def prepare(self, model, tasks: list[Task], manager=None) -> Runtime:
        """Build the vocabulary, initialise the model and the tasks' pipelines (no training)."""
        if not tasks:
            raise ConfigError("fit() needs at least one task")
        names = [t.name for t in tasks]
        if len(set(names)) != len(names):
            raise ConfigError(f"task names must be unique: {names}")
        for t in tasks:
            if "train" not in t.datasets:
                raise ConfigError(f"task {t.name!r} has no train dataset: call add_dataset(data, 'train')")
            t.fill_closed_sets()
        manager = manager or get_manager()
        vocab = build_vocab([t.plan for t in tasks], manager)
        model.initialize(vocab, seed=self.config.seed)
        torch.manual_seed(self.config.seed + 1)  # adaptors created below draw from a known state too
        if self.config.checkpoint_activations:
            model.set_checkpointing(True)
        runtime = Runtime(model, manager, label_smoothing=self.config.label_smoothing)
        for t in tasks:
            runtime.add_task(t)
        self.runtime = runtime
        return runtime

    def _lr_at(self, step: int) -> float:
        c = self.config
        if c.warmup_steps > 0 and step < c.warmup_steps:
            return c.lr * (step + 1) / c.warmup_steps
        if c.lr_schedule == "constant":
            return c.lr
        span = max(1, c.max_steps - c.warmup_steps)
        frac = min(1.0, (step - c.warmup_steps) / span)
        if c.lr_schedule == "cosine":
            return c.min_lr + (c.lr - c.min_lr) * 0.5 * (1 + math.cos(math.pi * frac))
        return c.min_lr + (c.lr - c.min_lr) * (1 - frac)

    def _optimizer(self, model) -> torch.optim.Optimizer:
        decay, no_decay = [], []
        for n, p in model.named_parameters():
            if not p.requires_grad:
                continue
            (no_decay if p.ndim < 2 else decay).append(p)  # biases, norms, per-head scales: no decay
        groups = [{"params": decay, "weight_decay": self.config.weight_decay},
                  {"params": no_decay, "weight_decay": 0.0}]
        if self.config.fused_adamw:
            from ..model.speed import adamw

            return adamw(groups, lr=self.config.lr, betas=tuple(self.config.betas), fused=True)
        fused = next(model.parameters()).device.type == "cuda" and self.config.fused_adamw is None
        return torch.optim.AdamW(groups, lr=self.config.lr, betas=tuple(self.config.betas), fused=fused or None)

    # ------------------------------------------------------------------------------------------ fit
    def fit(self, model, tasks: list[Task], manager=None) -> FitResult:
        from . import distributed as D

        c = self.config
        if c.threads:
            torch.set_num_threads(c.threads)
        env = D.DistEnv.from_environment(c.device)
        mode = D.resolve_mode(c.distributed, env)
        if mode == "fsdp" and c.ema_decay:
            raise ConfigError("ema_decay is not supported with distributed='fsdp'; use ddp or turn EMA off")
        self.env, self.mode = env, mode
        runtime = self.prepare(model, tasks, manager)
        device = self._device(env)
        model.to(device)
        model.train()
        if c.compile:
            _compile_layers(model)
        use_bf16 = c.bf16 if c.bf16 is not None else (device.type == "cuda" and torch.cuda.is_bf16_supported())
        out_dir = Path(c.output_dir)
        if env.is_main:
            out_dir.mkdir(parents=True, exist_ok=True)
        env.barrier()
        state = {"step": 0, "positions": {t.name: 0 for t in tasks}, "history": [], "bad": {},
                 "skipped": [], "sched_rng": None}
        resume_from = None
        if c.resume and (out_dir / "checkpoint").exists():
            resume_from = self._load_weights(out_dir, model, tasks)  # before wrapping: full tensors
        wrapped = D.wrap(runtime, mode, env, device)
        opt = self._optimizer(model)
        ema = _EMA(model, c.ema_decay) if c.ema_decay else None
        if resume_from is not None:
            state = self._resume(resume_from, opt, ema, state)
        if env.enabled and env.rank > 0:  # distinct dropout masks per rank; rank 0 keeps the single-process stream
            torch.manual_seed((torch.initial_seed() + 7919 * env.rank) % (2 ** 63))
        sched_rng = random.Random(c.seed * 7919 + 17)
        if state.get("sched_rng") is not None:
            sched_rng.setstate(_tuple_state(state["sched_rng"]))
        pin = bool(c.pin_memory) if c.pin_memory is not None else device.type == "cuda"
        loaders = {t.name: iter(make_loader(t.datasets["train"], runtime.pipelines[t.name], "train",
                                            t.micro_batch_size, c.seed, shuffle=True,
                                            start=state["positions"][t.name], num_workers=c.num_workers,
                                            rank=env.rank, world=env.world, pin_memory=pin,
                                            prefetch_factor=c.prefetch_factor, bucket_batches=c.bucket_batches,
                                            multiprocessing_context=c.worker_start if c.num_workers else None,
                                            pack=self._packing(runtime, t)))
                   for t in tasks}
        sizes = {t.name: (len(t.datasets["train"]) if not t.datasets["train"].is_iterable else 1) for t in tasks}
        bad = {t.name: {"seen": 0, "bad": 0, "examples": []} for t in tasks}
        for name, b in state.get("bad", {}).items():
            if name in bad:
                bad[name].update(b)
        history: list[dict] = list(state["history"])
        skipped: list[dict] = list(state.get("skipped", []))
        logf = _open_log(out_dir / "log.jsonl", state["step"]) if env.is_main else _NullLog()
        tb = _tensorboard(out_dir) if c.tensorboard and env.is_main else None
        progress = _Progress(c.max_steps, state["step"], enabled=env.is_main and (
            c.progress if c.progress is not None else sys.stderr.isatty()))
        metrics: dict[str, dict[str, float]] = {}
        step = state["step"]
        total_data = total_compute = 0.0
        path = None
        try:
            while step < c.max_steps:
                lr = self._lr_at(step)
                for g in opt.param_groups:
                    g["lr"] = lr
                task_names = self._tasks_for_step(step, tasks, sizes, sched_rng)
                opt.zero_grad(set_to_none=True)
                rec: dict[str, Any] = {"step": step + 1, "lr": lr, "tasks": {}}
                t_data = t_compute = 0.0
                finite = True
                new_bad = {name: [0, 0] for name in task_names}  # this update's (seen, bad) on this rank
                n_micro = len(task_names) * c.accum_steps
                k = 0
                for name in task_names:
                    task = runtime.tasks[name]
                    if env.enabled:  # every rank reports every task of the update (one all-reduce below)
                        rec["tasks"].setdefault(name, {"loss": 0.0, "tokens": 0})
                    for _ in range(c.accum_steps):
                        k += 1
                        t0 = time.perf_counter()
                        batch, bads = next(loaders[name])
                        state["positions"][name] += env.world
                        t1 = time.perf_counter()
                        t_data += t1 - t0
                        self._count_bad(bad[name], new_bad[name], bads, batch, name)
                        if batch is None and not env.enabled:
                            continue
                        if batch is not None:
                            batch = batch.to(device, non_blocking=True)
                        with D.gradient_sync(wrapped, mode, sync=k == n_micro):
                            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                                loss, logging_out = wrapped(batch)
                            loss = loss * task.weight / c.accum_steps
                            if not torch.isfinite(loss):
                                finite = False
                                skipped.append({"step": step + 1, "task": name, "loss": float(loss.detach())})
                                log.warning("step %d: task %r produced a non-finite loss (%s); the update is "
                                            "skipped", step + 1, name, float(loss.detach()))
                                if not env.enabled:
                                    break
                            # with several ranks a non-finite loss still runs backward: every rank must join the
                            # gradient reduction, and the non-finite norm then skips the update on all of them
                            loss.backward()
                        t_compute += time.perf_counter() - t1
                        if batch is not None:
                            tr = rec["tasks"].setdefault(name, {"loss": 0.0, "tokens": 0})
                            tr["loss"] += float(loss.detach()) / task.weight if task.weight else 0.0
                            tr["tokens"] += int(logging_out.get("ntokens", logging_out.get("sample_size", 0)))
                    if not finite and not env.enabled:
                        break
                if finite or env.enabled:
                    t2 = time.perf_counter()
                    gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(),
                                                           c.clip_norm if c.clip_norm > 0 else float("inf"))
                    if hasattr(gnorm, "full_tensor"):
                        gnorm = gnorm.full_tensor()
                    if torch.isfinite(gnorm):
                        opt.step()
                        if ema is not None:
                            ema.update(model)
                    else:
                        skipped.append({"step": step + 1, "task": ",".join(task_names), "loss": float("nan"),
                                        "reason": "non-finite gradient norm"})
                    rec["grad_norm"] = float(gnorm)
                    t_compute += time.perf_counter() - t2
                opt.zero_grad(set_to_none=True)
                if env.enabled:  # the logged losses and the bad-sample counts are those of the global batch
                    names = list(dict.fromkeys(task_names))
                    vals = env.all_reduce_sum([rec["tasks"][n]["loss"] for n in names]
                                              + [rec["tasks"][n]["tokens"] for n in names]
                                              + [v for n in task_names for v in new_bad[n]], device)
                    for i, n in enumerate(names):
                        rec["tasks"][n]["loss"] = vals[i] / env.world
                        rec["tasks"][n]["tokens"] = int(vals[len(names) + i])
                    off = 2 * len(names)
                    for i, n in enumerate(task_names):
                        bad[n]["seen"] += int(vals[off + 2 * i]) - new_bad[n][0]
                        bad[n]["bad"] += int(vals[off + 2 * i + 1]) - new_bad[n][1]
                for n in task_names:
                    self._check_bad(bad[n], n)
                rec["loss"] = sum(v["loss"] for v in rec["tasks"].values())
                rec["data_s"], rec["compute_s"] = round(t_data, 5), round(t_compute, 5)
                total_data += t_data
                total_compute += t_compute
                step += 1
                state["step"] = step
                history.append({"step": step, "loss": rec["loss"], "tasks": {k: v["loss"] for k, v in
                                                                           rec["tasks"].items()}})
                logf.write(json.dumps(rec) + "\n")
                if tb is not None:
                    tb.add_scalar("train/loss", rec["loss"], step)
                    tb.add_scalar("train/data_fraction", t_data / max(t_data + t_compute, 1e-9), step)
                    for k_, v in rec["tasks"].items():
                        tb.add_scalar(f"train/{k_}/loss", v["loss"], step)
                progress.update(step, rec)
                if c.eval_every and step % c.eval_every == 0 and step < c.max_steps:
                    metrics = self._eval(runtime, tasks, ema, step, logf, tb, wrapped)
                if c.save_every and step % c.save_every == 0 and step < c.max_steps:
                    state["sched_rng"] = list(sched_rng.getstate())
                    self._save(out_dir, runtime, opt, ema, state, history, bad, skipped)
            state["sched_rng"] = list(sched_rng.getstate())
            metrics = self._eval(runtime, tasks, ema, step, logf, tb, wrapped) if any(
                s in t.datasets for t in tasks for s in c.eval_splits) else metrics
            path = self._save(out_dir, runtime, opt, ema, state, history, bad, skipped)
        finally:
            progress.close()
            logf.close()
            if tb is not None:
                tb.close()
            if path is not None:
                env.close()
        if ema is not None:
            ema.copy_to(model)  # the returned model carries the weights that were evaluated and saved
        timing = {"data_s": round(total_data, 3), "compute_s": round(total_compute, 3),
                  "data_fraction": round(total_data / max(total_data + total_compute, 1e-9), 4)}
        return FitResult(step, history, metrics, str(path), bad, skipped, timing)

    def _packing(self, runtime: Runtime, task: Task):
        """The packing step of a task's training batches, or ``None`` (packing off, or not possible for it)."""
        if not self.config.pack:
            return None
        from .packing import Packing, plan_is_packable

        why = plan_is_packable(task.plan)
        if why is None and not getattr(runtime.model, "supports_packing", False):
            why = f"the model ({type(runtime.model).__name__}) does not take packed batches"
        if why is not None:
            log.info("task %r: sequence packing not applied (%s); its batches stay padded", task.name, why)
            return None
        max_positions = getattr(runtime.model.config, "max_positions", None)
        return Packing(runtime.vocab.pad, self.config.pack_tokens, max_positions)

    def _tasks_for_step(self, step: int, tasks: list[Task], sizes: dict[str, int], rng: random.Random) -> list[str]:
        c = self.config
        if c.schedule == "accumulate":
            return [t.name for t in tasks]
        if c.schedule == "round_robin":
            return [tasks[step % len(tasks)].name]
        weights = [sizes[t.name] ** (1.0 / c.temperature) for t in tasks]
        return [rng.choices([t.name for t in tasks], weights=weights)[0]]

    def _count_bad(self, rec: dict, delta: list[int], bads: list, batch, name: str) -> None:
        n_good = batch.n_samples if batch is not None else 0
        rec["seen"] += n_good + len(bads)
        delta[0] += n_good + len(bads)
        if bads:
            rec["bad"] += len(bads)
            delta[1] += len(bads)
            for b in bads:
                if len(rec["examples"]) < 5:
                    rec["examples"].append(f"row {b.index}: {b.reason}")
                log.warning("task %r: skipped row %d: %s", name, b.index, b.reason)

    def _check_bad(self, rec: dict, name: str) -> None:
        c = self.config
        if rec["seen"] >= c.min_samples_for_bad_check and rec["bad"] / rec["seen"] > c.max_bad_fraction:
            examples = "\n  ".join(rec["examples"])
            raise DataError(f"task {name!r}: {rec['bad']} of {rec['seen']} samples could not be read "
                            f"({rec['bad'] / rec['seen']:.0%} > max_bad_fraction={c.max_bad_fraction:.0%}); "
                            f"training stopped. Examples:\n  {examples}")

    # ------------------------------------------------------------------------------------------ evaluation
    def _eval(self, runtime: Runtime, tasks: list[Task], ema, step: int, logf, tb, wrapped=None) -> dict:
        """Every rank evaluates the whole held-out set the same way (under FSDP every rank must join the
        parameter gathers), so each returns the same metrics; rank 0 logs them."""
        from .evaluate import evaluate_task

        backup = ema.swap_in(runtime.model) if ema is not None else None
        out: dict[str, dict[str, float]] = {}
        fsdp = getattr(self, "mode", "none") == "fsdp" and wrapped is not None
        if fsdp:
            wrapped.unshard()
        try:
            for split in self.config.eval_splits:
                for t in tasks:
                    if split not in t.datasets:
                        continue
                    res = evaluate_task(runtime, t, split, max_samples=self.config.eval_max_samples)
                    out[t.name if split == "valid" else f"{t.name}/{split}"] = res
        finally:
            if backup is not None:
                ema.swap_out(runtime.model, backup)
            if fsdp:
                wrapped.reshard()
        logf.write(json.dumps({"step": step, "eval": out}) + "\n")
        if tb is not None:
            for task, res in out.items():
                for k, v in res.items():
                    if isinstance(v, (int, float)):
                        tb.add_scalar(f"eval/{task}/{k}", v, step)
        return out

    # ------------------------------------------------------------------------------------------ checkpoints
    def _save(self, out_dir: Path, runtime: Runtime, opt, ema, state, history, bad, skipped) -> Path:
        """Rank 0 writes full (unsharded) tensors, so any number of ranks can resume from the checkpoint."""
        from . import distributed as D

        env = getattr(self, "env", None) or D.DistEnv()
        model = runtime.model
        weights = D.full_model_state(model) if env.enabled else ckpt.model_state(model)
        sd = D.full_optimizer_state(opt) if env.enabled else None
        opt_tensors, opt_meta = ckpt.optimizer_to_tensors(opt, sd)
        name = f"step-{state['step']:08d}"
        path = Path(out_dir) / "checkpoints" / name
        if env.is_main:
            rng = {"torch": torch.get_rng_state()}
            if torch.cuda.is_available():
                for i, s in enumerate(torch.cuda.get_rng_state_all()):
                    rng[f"cuda{i}"] = s
            files: dict[str, Any] = {
                "config.json": checkpoint_config(runtime, trainer=asdict(self.config)),
                "model.safetensors": weights,
                "optimizer.safetensors": opt_tensors,
                "rng.safetensors": rng,
                "trainer_state.json": {"step": state["step"], "positions": state["positions"],
                                       "world": env.world, "optimizer": opt_meta,
                                       "sched_rng": state.get("sched_rng"), "python_rng": list(random.getstate()),
                                       "history": history, "bad": bad, "skipped": skipped},
            }
            if ema is not None:
                files["ema.safetensors"] = ema.state()
            path = ckpt.write_checkpoint(out_dir, name, files, keep=self.config.keep_checkpoints)
        env.barrier()
        return path

    def _load_weights(self, out_dir: Path, model, tasks) -> tuple[Path, dict]:
        """Check the run's checkpoint against these tasks and load its model weights (before any wrapping)."""
        path, config = ckpt.read_checkpoint(out_dir / "checkpoint")
        saved_tasks = set(config.get("tasks", {}))
        if saved_tasks != {t.name for t in tasks}:
            raise CheckpointError(f"cannot resume {path}: it was trained on tasks {sorted(saved_tasks)}, this run has "
                                  f"{sorted(t.name for t in tasks)}; use another output_dir or resume=False")
        from ..vocab import Vocabulary

        if not Vocabulary.from_json(config["vocab"]).same_as(model.vocab):
            raise CheckpointError(f"cannot resume {path}: its vocabulary differs from the one these tasks build")
        ckpt.load_model_state(model, ckpt.load_tensors(path / "model.safetensors"), str(path))
        return path, config

    def _resume(self, resume_from: tuple[Path, dict], opt, ema, state) -> dict:
        from . import distributed as D

        path, _ = resume_from
        ts = json.loads((path / "trainer_state.json").read_text())
        env = getattr(self, "env", None) or D.DistEnv()
        ckpt.optimizer_from_tensors(opt, ckpt.load_tensors(path / "optimizer.safetensors"), ts["optimizer"],
                                    place=D.shard_optimizer_state if env.enabled else None)
        if ema is not None and (path / "ema.safetensors").exists():
            ema.load(ckpt.load_tensors(path / "ema.safetensors"))
        rng = ckpt.load_tensors(path / "rng.safetensors")
        torch.set_rng_state(rng["torch"])
        if torch.cuda.is_available():
            cuda = [rng[k] for k in sorted(k for k in rng if k.startswith("cuda"))]
            if len(cuda) == torch.cuda.device_count():
                torch.cuda.set_rng_state_all(cuda)
        random.setstate(_tuple_state(ts["python_rng"]))
        state = dict(state)
        state.update(step=ts["step"], positions={**state["positions"], **ts["positions"]}, history=ts["history"],
                     bad=ts.get("bad", {}), skipped=ts.get("skipped", []), sched_rng=ts.get("sched_rng"))
        saved_world = int(ts.get("world", 1))
        if saved_world != env.world:
            log.info("resuming a %d-rank checkpoint with %d rank(s): data continues from the same global "
                     "positions", saved_world, env.world)
        log.info("resumed from %s at step %d", path, ts["step"])
        return state


class _NullLog:
    """The log of ranks other than 0: they write nothing."""

    def write(self, _text: str) -> None:
        pass

    def close(self) -> None:
        pass


def _compile_layers(model) -> None:
    """``torch.compile`` each encoder and decoder layer in place (regional compilation: compiles in seconds,
    keeps parameter names, and leaves the Python-level task logic eager)."""
    for layer in list(getattr(model, "encoder_layers", [])) + list(getattr(model, "decoder_layers", [])):
        layer.compile()


def _open_log(path: Path, step: int):
    """The JSONL log, keeping only the records up to ``step`` (a resumed run rewrites what came after)."""
    kept = []
    if step > 0 and path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                if json.loads(line).get("step", 0) <= step:
                    kept.append(line + "\n")
            except json.JSONDecodeError:  # a line cut short by a crash
                continue
    f = path.open("w", encoding="utf-8", buffering=1)  # line-buffered: a killed run loses no logged step
    f.writelines(kept)
    f.flush()
    return f


def checkpoint_config(runtime: Runtime, trainer: dict | None = None) -> dict:
    """The JSON that describes a model and its tasks in a checkpoint."""
    model = runtime.model
    plugins: dict[str, str] = {}
    for t in runtime.tasks.values():
        for s in t.plan.all_slots():
            plugins[s.plugin] = s.version
    return {
        "ofasys_version": __version__,
        "model": model.config.to_dict(),
        "vocab": model.vocab.to_json(),
        "adaptors": runtime.adaptor_slots,
        "tasks": {name: {"plan": t.plan.to_json(), "settings": t.settings()} for name, t in runtime.tasks.items()},
        "plugins": plugins,
        "trainer": trainer,
    }


def _tuple_state(s):
    """JSON lists back into the nested tuples ``random.setstate`` expects."""
    return tuple(tuple(x) if isinstance(x, list) else x for x in s)


class _EMA:
    """Exponential moving average of the trainable weights (fp32 shadow copies)."""

    def __init__(self, model, decay: float):
        self.decay = decay
        self.shadow = {n: p.detach().float().clone() for n, p in model.named_parameters() if p.requires_grad}

    @torch.no_grad()
    def update(self, model) -> None:
        for n, p in model.named_parameters():
            if n in self.shadow:
                self.shadow[n].mul_(self.decay).add_(p.detach().float(), alpha=1 - self.decay)

    def state(self) -> dict:
        return dict(self.shadow)

    def load(self, tensors: dict) -> None:
        for n, t in tensors.items():
            if n in self.shadow:
                self.shadow[n].copy_(t)

    @torch.no_grad()
    def swap_in(self, model) -> dict:
        backup = {}
        for n, p in model.named_parameters():
            if n in self.shadow:
                backup[n] = p.detach().clone()
                p.copy_(self.shadow[n].to(p.dtype))
        return backup

    @torch.no_grad()
    def swap_out(self, model, backup: dict) -> None:
        for n, p in model.named_parameters():
            if n in backup:
                p.copy_(backup[n])

    @torch.no_grad()
    def copy_to(self, model) -> None:
        self.swap_in(model)


def _tensorboard(out_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:  # tensorboard not installed: JSONL logs only
        return None
    return SummaryWriter(str(out_dir / "tensorboard"))


class _Progress:
    """A rich progress bar with per-task loss (only on a terminal unless forced)."""

    def __init__(self, total: int, start: int, enabled: bool):
        self.enabled = enabled
        self.bar = None
        if enabled:
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("[bold]train"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                                TimeRemainingColumn(), TextColumn("{task.fields[info]}"))
            self.task = self.bar.add_task("train", total=total, completed=start, info="")
            self.bar.start()

    def update(self, step: int, rec: dict) -> None:
        if self.bar is not None:
            info = " ".join(f"{k}={v['loss']:.3f}" for k, v in rec["tasks"].items())
            self.bar.update(self.task, completed=step, info=info)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
