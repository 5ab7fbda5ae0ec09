"""A task: a name, an instruction (or several templates), datasets per split and training settings."""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError, DataError
from ..plan import Plan, build_plan
from .data import DataSource

SPLITS = ("train", "valid", "test")


class Task:
    """One task of a multi-task run.

    >>> t = Task(name="sentiment", instruction="is the review [TEXT:review] positive? -> [TEXT:label,closed_set]",
    ...          micro_batch_size=8)                                                    # doctest: +SKIP
    >>> t.add_dataset(rows, "train")                                                   # doctest: +SKIP

    The instruction is planned at once against the installed plugins, so a misspelled attribute or a missing
    plugin fails here; a dataset is checked against the instruction's columns as soon as it is attached.

    :param weight: multiplies this task's loss (each task's loss is a per-token mean, so a task with long
        targets does not drown one with short targets).
    :param metrics: metric names to report on validation/test (default: chosen by the output slot type).
    :param generation: generator options used for evaluation (``beam_size``, ``max_len``...).
    """

    def __init__(self, name: str, instruction: "str | list[str]", micro_batch_size: int = 8, weight: float = 1.0,
                 metrics: list[str] | None = None, generation: dict | None = None,
                 max_source_length: int = 512, max_target_length: int = 128, manager=None, plan: Plan | None = None):
        if not name or not isinstance(name, str):
            raise ConfigError("a task needs a non-empty name")
        if micro_batch_size < 1:
            raise ConfigError(f"task {name!r}: micro_batch_size must be at least 1")
        self.name = name
        self.instruction = instruction
        self.micro_batch_size = int(micro_batch_size)
        self.weight = float(weight)
        self.metrics = list(metrics) if metrics else None
        self.generation = dict(generation or {})
        self.max_source_length = max_source_length
        self.max_target_length = max_target_length
        self.plan = plan if plan is not None else build_plan(instruction, manager=manager, task=name)
        self.datasets: dict[str, DataSource] = {}

    def add_dataset(self, data: Any, split: str = "train") -> "Task":
        """Attach a dataset to a split (``train``, ``valid`` or ``test``); checks its columns now."""
        if split not in SPLITS:
            raise ConfigError(f"task {self.name!r}: unknown split {split!r}; use one of {', '.join(SPLITS)}")
        source = DataSource(data, name=f"{split} dataset of task {self.name!r}")
        columns = source.columns()
        needed = self.plan.columns()
        missing = [c for c in needed if c not in columns]
        if missing:
            slot = self.plan.slots[missing[0]]
            raise DataError(
                f"task {self.name!r}: the {split} dataset has no column '{missing[0]}', which the slot "
                f"[{slot.type}:{missing[0]}] of the instruction\n  {self.plan.instruction}\nbinds. "
                f"Available columns: {', '.join(sorted(columns)) or 'none'}.")
        self.datasets[split] = source
        return self

    def add_train_dataset(self, data: Any) -> "Task":
        return self.add_dataset(data, "train")

    def add_valid_dataset(self, data: Any) -> "Task":
        return self.add_dataset(data, "valid")

    def add_test_dataset(self, data: Any) -> "Task":
        return self.add_dataset(data, "test")

    def settings(self) -> dict:
        """What a checkpoint stores besides the plan, to rebuild the task for inference."""
        return {"micro_batch_size": self.micro_batch_size, "weight": self.weight, "metrics": self.metrics,
                "generation": self.generation, "max_source_length": self.max_source_length,
                "max_target_length": self.max_target_length, "instruction": self.instruction}

    @classmethod
    def from_saved(cls, name: str, plan: Plan, settings: dict) -> "Task":
        s = dict(settings)
        instruction = s.pop("instruction", plan.instruction)
        return cls(name=name, instruction=instruction, plan=plan, **s)

    def fill_closed_sets(self) -> None:
        """Gather the answers of bare ``closed_set`` output slots from the training data (sorted, unique)."""
        for slot in self.plan.outputs:
            if slot.attrs.get("closed_set") is True:
                source = self.datasets.get("train")
                if source is None:
                    raise ConfigError(f"task {self.name!r}: [{slot.type}:{slot.column},closed_set] gathers its "
                                      "answers from the training data, but the task has no train dataset; list them "
                                      'explicitly: closed_set="yes|no"')
                if source.is_iterable:
                    raise ConfigError(f"task {self.name!r}: cannot gather closed_set answers from a streaming "
                                      'dataset; list them explicitly: closed_set="a|b|c"')
                answers = set()
                for row in source.iter_rows():
                    v = row.get(slot.column)
                    if isinstance(v, str):
                        answers.add(v)
                if not answers:
                    raise DataError(f"task {self.name!r}: column '{slot.column}' has no string answers to build "
                                    "the closed set from")
                slot.attrs["closed_set"] = sorted(answers)

    def __repr__(self) -> str:
        return f"Task({self.name!r}, {self.plan.instruction!r}, splits={sorted(self.datasets)})"
