"""Evaluation: teacher-forced loss and generated-output metrics of a task on one split."""

from __future__ import annotations

from typing import Any

import torch

from ..errors import ConfigError
from .data import DataSource, make_loader
from .runtime import Runtime
from .task import Task


def default_metrics(runtime: Runtime, task: Task) -> list[str]:
    """Metrics named by the task, or the first registered metric suited to its output slot type."""
    if task.metrics:
        return list(task.metrics)
    out = task.plan.outputs[0]
    registry = runtime.manager.metrics()
    preferred = "accuracy" if out.attrs.get("closed_set") else None
    if preferred in registry:
        return [preferred]
    for m in registry.values():
        if out.type in m.for_types:
            return [m.name]
    return []


def primary_value(task: Task, fields: dict) -> Any:
    """The value a metric compares: the output slot's first output field (a list inside a group)."""
    out = task.plan.outputs[0]
    value = fields.get(out.key)
    name = out.output_fields[0] if out.output_fields else None
    if name is None:
        return value
    if out.group is not None:
        return [v.get(name) for v in (value or [])]
    return value.get(name) if isinstance(value, dict) else value


@torch.no_grad()
def evaluate_task(runtime: Runtime, task: Task, split: str = "valid", max_samples: int | None = None,
                  batch_size: int | None = None, **gen_options) -> dict[str, float]:
    """``{"loss": teacher-forced per-token loss, <metric>: score, "samples": n}`` on a split of ``task``."""
    source: DataSource | None = task.datasets.get(split)
    if source is None:
        raise ConfigError(f"task {task.name!r} has no {split} dataset")
    names = default_metrics(runtime, task)
    registry = runtime.manager.metrics()
    unknown = [n for n in names if n not in registry]
    if unknown:
        raise ConfigError(f"task {task.name!r}: unknown metric(s) {', '.join(unknown)}; "
                          f"installed: {', '.join(sorted(registry))}")
    pipe = runtime.pipelines[task.name]
    loader = make_loader(source, pipe, split, batch_size or max(task.micro_batch_size, 16), seed=0, shuffle=False)
    preds, refs = [], []
    loss_sum, loss_n, bad = 0.0, 0, 0
    model = runtime.model
    was_training = model.training
    model.eval()
    out_slot = task.plan.outputs[0]
    try:
        for batch, bads in loader:
            bad += len(bads)
            if batch is None:
                continue
            batch = batch.to(model.device)
            loss, _ = runtime.loss(batch)
            loss_sum += float(loss) * batch.n_samples
            loss_n += batch.n_samples
            if names:
                for fields, meta in zip(runtime.predict(batch, **gen_options), batch.meta):
                    preds.append(primary_value(task, fields))
                    refs.append(meta["row"].get(out_slot.column))
            if max_samples is not None and loss_n >= max_samples:
                break
    finally:
        model.train(was_training)
    result: dict[str, float] = {"loss": loss_sum / max(loss_n, 1), "samples": loss_n, "bad_samples": bad}
    for n in names:
        result[n] = float(registry[n].fn(preds, refs))
    return result
