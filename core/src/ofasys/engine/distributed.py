"""Data-parallel and fully sharded training on PyTorch's own ``torch.distributed``.

Launch with ``torchrun --nproc-per-node N -m ofasys train CONFIG`` (or call :meth:`Trainer.fit` in a script started
by torchrun). The trainer reads ``WORLD_SIZE``/``RANK``/``LOCAL_RANK`` from the environment, starts the process
group (NCCL on CUDA, gloo on CPU) and wraps the model:

``ddp``
    :class:`torch.nn.parallel.DistributedDataParallel` over a small module whose forward is the task loss, so
    every task's adaptors, the universal model and the criterion run inside DDP; ``find_unused_parameters`` is on
    because a micro-batch of one task does not touch the adaptors of the others. Gradient accumulation runs under
    ``no_sync`` and reduces once per update.
``fsdp``
    FSDP2 :func:`torch.distributed.fsdp.fully_shard` on every encoder and decoder layer and on the root, so
    parameters, gradients and optimizer state are sharded across ranks; accumulation turns gradient sync off
    (``set_requires_gradient_sync(False)``) until the last micro-batch of an update.

Checkpoints hold full (unsharded) tensors, written by rank 0 only, so a checkpoint written by ``N`` ranks resumes
with ``M`` ranks (or one process).
"""

from __future__ import annotations

import contextlib
import datetime
import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError

MODES = ("auto", "none", "ddp", "fsdp")


@dataclass
class DistEnv:
    """This process's place in the job (world 1 when not launched by torchrun)."""

    world: int = 1
    rank: int = 0
    local_rank: int = 0
    backend: str | None = None
    owns_group: bool = False

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_environment(cls, device: str) -> "DistEnv":
        world = int(os.environ.get("WORLD_SIZE", "1") or 1)
        if world <= 1:
            return cls()
        import torch.distributed as dist

        rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        owns = False
        if not dist.is_initialized():
            backend = "nccl" if device.startswith("cuda") else "gloo"
            if backend == "nccl":
                torch.cuda.set_device(local_rank)
            dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=30))
            owns = True
        return cls(world=dist.get_world_size(), rank=dist.get_rank(), local_rank=local_rank,
                   backend=dist.get_backend(), owns_group=owns)

    # ---------------------------------------------------------------------------------------- collectives
    def all_reduce_sum(self, values: list[float], device: torch.device) -> list[float]:
        if not self.enabled:
            return list(values)
        import torch.distributed as dist

        t = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(t)
        return t.tolist()

    def barrier(self) -> None:
        if self.enabled:
            import torch.distributed as dist

            dist.barrier()

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if not self.enabled:
            return obj
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def close(self) -> None:
        if self.owns_group:
            import torch.distributed as dist

            dist.barrier()
            dist.destroy_process_group()
            self.owns_group = False


class LossModule(nn.Module):
    """``forward(batch) -> (loss, logging)``: the unit DDP/FSDP wrap, so the whole loss runs inside them.

    ``batch=None`` (every row of this rank's micro-batch was unreadable) gives a zero loss that touches every
    parameter: the rank still joins the update's collectives, and its zero gradients leave the others' intact.
    """

    def __init__(self, runtime):
        super().__init__()
        self.model = runtime.model
        object.__setattr__(self, "_runtime", runtime)  # not a submodule

    def forward(self, batch):
        if batch is None:
            return sum(p.sum() for p in self.model.parameters() if p.requires_grad) * 0.0, {}
        return self._runtime.loss(batch)


def resolve_mode(mode: str, env: DistEnv) -> str:
    if mode not in MODES:
        raise ConfigError(f"unknown distributed mode {mode!r}; use one of {', '.join(MODES)}")
    if not env.enabled:
        if mode in ("ddp", "fsdp"):
            raise ConfigError(f"distributed={mode!r} needs several processes: launch with "
                              "torchrun --nproc-per-node N -m ofasys train CONFIG")
        return "none"
    return "ddp" if mode == "auto" else mode


def wrap(runtime, mode: str, env: DistEnv, device: torch.device) -> nn.Module:
    """The module the training loop calls: plain, DDP or FSDP2 around :class:`LossModule`."""
    module = LossModule(runtime)
    if mode == "none":
        return module
    if mode == "ddp":
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [device.index] if device.type == "cuda" else None
        # a micro-batch of one task can leave parameters unused: other tasks' adaptors, bias tables and modality
        # experts, and tables a fast path skips (e.g. the cross-segment bias of a one-segment text batch)
        return DDP(module, device_ids=ids, find_unused_parameters=True)
    from torch.distributed.fsdp import fully_shard

    model = runtime.model
    for layer in list(getattr(model, "encoder_layers", [])) + list(getattr(model, "decoder_layers", [])):
        fully_shard(layer)
    fully_shard(module)
    return module


@contextlib.contextmanager
def gradient_sync(wrapped: nn.Module, mode: str, sync: bool):
    """Reduce gradients only on the last micro-batch of an update."""
    if mode == "ddp" and not sync:
        with wrapped.no_sync():
            yield
    elif mode == "fsdp":
        wrapped.set_requires_gradient_sync(sync)
        yield
    else:
        yield


# ------------------------------------------------------------------------------------------- full tensors
def _is_dtensor(t: Any) -> bool:
    return type(t).__name__ == "DTensor"


def full(t: torch.Tensor) -> torch.Tensor:
    """The whole tensor behind a (possibly sharded) one; a collective for DTensors (every rank calls it)."""
    return t.full_tensor() if _is_dtensor(t) else t


def like(full_tensor: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """``full_tensor`` laid out like ``ref`` (sharded the same way when ``ref`` is a DTensor)."""
    if _is_dtensor(ref):
        from torch.distributed.tensor import distribute_tensor

        return distribute_tensor(full_tensor.to(ref.device, ref.dtype), ref.device_mesh, ref.placements)
    return full_tensor.to(ref.device, ref.dtype)


def full_model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Unsharded CPU copies of the model's state (collective under FSDP); tied weights once, under their first
    name, as :func:`~ofasys.engine.checkpoint.model_state` does."""
    first: dict[int, str] = {}
    aliases = set()
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in first:
            aliases.add(name)
        else:
            first[id(p)] = name
    return {k: full(v).detach().cpu() for k, v in model.state_dict().items() if k not in aliases}


def full_optimizer_state(opt: torch.optim.Optimizer) -> dict:
    """``opt.state_dict()`` with every sharded state tensor gathered (collective under FSDP)."""
    sd = opt.state_dict()
    for st in sd["state"].values():
        for name, val in list(st.items()):
            if isinstance(val, torch.Tensor):
                st[name] = full(val).detach().cpu()
    return sd


def shard_optimizer_state(opt: torch.optim.Optimizer, state: dict[int, dict]) -> dict[int, dict]:
    """Full optimizer state tensors laid out like the parameters they belong to (for loading under FSDP)."""
    params = [p for g in opt.param_groups for p in g["params"]]
    out = {}
    for pid, st in state.items():
        p = params[int(pid)]
        out[pid] = {k: (like(v, p) if isinstance(v, torch.Tensor) and v.shape == p.shape else v)
                    for k, v in st.items()}
    return out
