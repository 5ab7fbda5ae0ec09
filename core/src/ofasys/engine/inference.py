"""Serving a checkpoint: ``OFASys.from_pretrained(dir).inference(instruction, data=...)``."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError, ConfigError, DataError, InstructionError
from ..instruction import parse_templates
from ..plan import Plan, SlotPlan
from ..plugins import get_manager
from ..vocab import Vocabulary
from . import checkpoint as ckpt
from .batch import Batch
from .runtime import Runtime, build_vocab
from .task import Task


class Output:
    """One generated output. Fields come from the output slots' postprocessors: ``.text``, ``.box``,
    ``.image``, ``.waveform``... plus ``.tokens`` and ``.score``; ``out["column"]`` gives a slot's fields by
    column. ``save_image(path)``/``save_audio(path)``/... call what the plugin provided."""

    def __init__(self, fields: dict):
        self._fields = dict(fields)

    def __getattr__(self, name: str) -> Any:
        fields = self.__dict__.get("_fields", {})
        if name in fields:
            return fields[name]
        if name.startswith("save_"):
            saver = fields.get(name)
            if callable(saver):
                return saver
            target = fields.get(name[5:])
            if target is not None and hasattr(target, "save"):
                return target.save
        raise AttributeError(f"this output has no field {name!r}; it has {', '.join(sorted(fields))}")

    def __getitem__(self, key: str) -> Any:
        return self._fields[key]

    def keys(self):
        return self._fields.keys()

    def to_dict(self) -> dict:
        return dict(self._fields)

    def __repr__(self) -> str:
        shown = {k: v for k, v in self._fields.items() if k not in ("tokens",) and not callable(v)}
        return f"Output({shown})"


class Outputs(list):
    """A list of :class:`Output`; ``outputs.text`` is the list of each output's ``text``."""

    def __getattr__(self, name: str) -> list:
        if name.startswith("_"):
            raise AttributeError(name)
        return [getattr(o, name) for o in self]


class OFASys:
    """A trained universal model and the tasks it serves."""

    def __init__(self, runtime: Runtime, path: Path | None = None):
        self.runtime = runtime
        self.path = path
        self._instructions: dict[str, str] = {}
        for name, task in runtime.tasks.items():
            for t in task.plan.templates:
                self._instructions.setdefault(t.source, name)

    @property
    def model(self):
        return self.runtime.model

    @property
    def tasks(self) -> dict[str, Task]:
        return self.runtime.tasks

    @classmethod
    def from_pretrained(cls, path: "str | Path", device: str = "cpu", use_ema: bool = True, manager=None) -> "OFASys":
        """Load a checkpoint directory (or a run directory whose ``checkpoint`` link points at one).

        Nothing is unpickled: weights are safetensors, everything else JSON. Truncated or modified files,
        a model config that does not match the weights, or a vocabulary the installed plugins cannot reproduce
        are :class:`CheckpointError`.
        """
        from ..model import ModelConfig
        from .model import GeneralistModel

        manager = manager or get_manager()
        directory, config = ckpt.read_checkpoint(Path(path))
        try:
            saved_vocab = Vocabulary.from_json(config["vocab"])
            model_cfg = ModelConfig.from_dict(config["model"])
            plans = {name: Plan.from_json(t["plan"]) for name, t in config["tasks"].items()}
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{directory}/config.json is missing or has malformed entries: {exc}") from exc
        for plan in plans.values():  # make sure every slot type's plugin is installed (clear error otherwise)
            for slot in plan.all_slots():
                try:
                    manager.load_slot_type(slot.type)
                except KeyError:
                    msg, hint = manager.missing_slot_type_message(slot.type)
                    raise CheckpointError(f"{directory}: {msg}. {hint}") from None
        if model_cfg.arch == "ofa":
            model = GeneralistModel(model_cfg)
        else:
            from .model import create_model

            model = create_model(model_cfg.arch, config["model"].get("size", "nano"), manager=manager,
                                 **{k: v for k, v in config["model"].items() if k not in ("arch", "size")})
        model.initialize(saved_vocab)
        runtime = Runtime(model, manager)
        for key, slot_json in config.get("adaptors", {}).items():
            slot = SlotPlan.from_json(slot_json)
            module = manager.build("adaptor", slot, runtime.context(Plan("", [], {}), ""))
            if module is None:
                raise CheckpointError(f"{directory}: no installed plugin builds the adaptor {key!r} "
                                      f"(from {slot.plugin} {slot.version})")
            model.add_adaptor(key, module)
            runtime.adaptor_slots[key] = slot_json
        model.adaptor_slots = runtime.adaptor_slots
        weights = directory / ("ema.safetensors" if use_ema and (directory / "ema.safetensors").exists()
                               else "model.safetensors")
        tensors = ckpt.load_tensors(weights)
        if weights.name == "ema.safetensors":
            base = ckpt.load_tensors(directory / "model.safetensors")
            base.update({k: v for k, v in tensors.items() if k in base})
            tensors = base
        ckpt.load_model_state(model, tensors, str(weights))
        installed = build_vocab(list(plans.values()), manager)
        if not installed.same_as(saved_vocab):
            model.remap_vocab(installed, installed.remap_from(saved_vocab))
            runtime.vocab = installed
        for name, t in config["tasks"].items():
            runtime.add_task(Task.from_saved(name, plans[name], t.get("settings", {})))
        model.to(torch.device(device))
        model.eval()
        return cls(runtime, directory)

    # ------------------------------------------------------------------------------------------ inference
    def _task_for(self, instruction: str) -> Task:
        if instruction in self.runtime.tasks:
            return self.runtime.tasks[instruction]
        try:
            canon = [str(t) for t in parse_templates(instruction)]
        except InstructionError:
            raise
        for c in canon:
            if c in self._instructions:
                return self.runtime.tasks[self._instructions[c]]
        # a new instruction: plan it and serve it zero-shot with the trained weights
        name = f"adhoc:{canon[0]}"
        if name not in self.runtime.tasks:
            task = Task(name=name, instruction=instruction, manager=self.runtime.manager)
            for slot in task.plan.outputs:
                if slot.attrs.get("closed_set") is True:
                    raise ConfigError("a new instruction cannot gather its closed_set from training data; "
                                      'list the answers: closed_set="a|b|c"')
            self.runtime.add_task(task)
        return self.runtime.tasks[name]

    @torch.no_grad()
    def inference(self, instruction: str, data: "dict | list[dict]", batch_size: int = 16,
                  **generation: Any) -> "Output | Outputs":
        """Run the model on one row (a dict; returns an :class:`Output`) or several (a list; returns
        :class:`Outputs`). ``instruction`` is a task name, one of the trained instructions, or a new one.
        Generation options: ``beam_size``, ``max_len``, ``min_len``, ``len_penalty``, ``no_repeat_ngram_size``,
        ``sampling``, ``temperature``, ``top_k``, ``top_p``, ``return_n_best``, ``seed``."""
        task = self._task_for(instruction)
        single = isinstance(data, dict)
        rows = [data] if single else list(data)
        if not rows:
            return Outputs()
        pipe = self.runtime.pipelines[task.name]
        needed = task.plan.input_columns()
        outputs: list[Output] = []
        for start in range(0, len(rows), batch_size):
            samples = []
            for i, row in enumerate(rows[start:start + batch_size], start):
                if not isinstance(row, dict):
                    raise DataError(f"inference data must be dicts of columns; item {i} is {type(row).__name__}")
                missing = [c for c in needed if c not in row]
                if missing:
                    raise DataError(f"row {i} has no column '{missing[0]}' needed by the instruction "
                                    f"{task.plan.instruction!r}; it has {', '.join(sorted(row)) or 'none'}")
                samples.append(pipe.make_sample(row, "test", random.Random(i), with_target=False))
            batch: Batch = pipe.collate(samples)
            for fields in self.runtime.predict(batch, **generation):
                outputs.append(Output(fields))
        return outputs[0] if single else Outputs(outputs)

    __call__ = inference

    def evaluate(self, split: str = "test", tasks: list[str] | None = None, **generation) -> dict:
        from .evaluate import evaluate_task

        return {name: evaluate_task(self.runtime, t, split, **generation)
                for name, t in self.runtime.tasks.items()
                if (tasks is None or name in tasks) and split in t.datasets}
