"""The plugin conformance suite: pytest fixtures and a test base class every modality plugin subclasses.

Opt in from a plugin's tests (a top-level ``conftest.py`` or the test module itself)::

    pytest_plugins = ["ofasys.testing"]

and subclass :class:`ModalityConformance` with the plugin's slot type, a few instructions and a small data
generator::

    from ofasys.testing import BadInput, ModalityConformance

    class TestConformance(ModalityConformance):
        slot_type = "TIMESERIES"
        distribution = "ofasys-timeseries"
        tasks = {"shape": "what shape is [TIMESERIES:series]? -> [TEXT:shape,closed_set]"}
        bad_inputs = [BadInput("shape", "series", "not numbers", "list of numbers")]

        def rows(self, task, n, seed):
            return my_plugin.data.rows(n, seed)

Every ``test_*`` method of the base class then runs against the installed plugin, on a fresh plugin manager
that discovers it through its entry points exactly as a user's process would:

* its entry modules import without torch (or any module of ``heavy_modules``), checked in a subprocess;
* the slot type is declared by the named distribution, with typed, documented attributes and components;
* every instruction plans; preprocess -> collate -> adapt -> loss runs forward and backward with finite gradients
  reaching the plugin's adaptor;
* generate -> postprocess returns, for every output slot, the fields its slot type declares (``output_fields``),
  with the types named in ``output_types``;
* each bad input raises :class:`ofasys.errors.DataError` with the documented message (the engine counts, reports
  and skips such samples);
* preprocessors and postprocessors pickle (DataLoader workers receive copies).

The fixtures (also usable on their own):

``ofasys_plugin_manager``
    a fresh :class:`ofasys.plugins.PluginManager` that discovers the installed entry points, made the
    process-wide manager for the duration of one test;
``ofasys_isolated_manager``
    a fresh manager that discovers *nothing*: register plugin modules or objects yourself
    (``ofasys_isolated_manager.register(module, distribution="my-plugin")``); also process-wide for one test.

Importing this module does not import torch; the suite imports it when it runs.
"""

from __future__ import annotations

import json
import pickle
import random
import re
import subprocess
import sys
from dataclasses import dataclass
from typing import Any, Iterator

import pytest

from .plugins import ENTRY_POINT_GROUP, PluginManager, set_manager

__all__ = ["BadInput", "ModalityConformance", "ofasys_plugin_manager", "ofasys_isolated_manager",
           "use_manager", "entry_modules_of", "heavy_modules_imported"]

DEFAULT_HEAVY_MODULES: tuple[str, ...] = ("torch", "torchvision", "torchaudio", "decord", "tokenizers",
                                          "transformers")


@dataclass(frozen=True)
class BadInput:
    """A documented bad input: a good row of ``task`` with ``column`` set to ``value`` must make preprocessing
    raise :class:`ofasys.errors.DataError` whose message matches the regular expression ``match``."""

    task: str
    column: str
    value: Any
    match: str
    split: str = "train"


# ------------------------------------------------------------------------------------------------ fixtures
class use_manager:
    """Context manager: make ``manager`` the process-wide plugin manager, restore the previous one on exit."""

    def __init__(self, manager: PluginManager):
        self.manager = manager
        self._prev: PluginManager | None = None

    def __enter__(self) -> PluginManager:
        self._prev = set_manager(self.manager)
        return self.manager

    def __exit__(self, *exc: Any) -> None:
        set_manager(self._prev)


@pytest.fixture
def ofasys_plugin_manager() -> Iterator[PluginManager]:
    """A fresh plugin manager over the installed entry points, process-wide for one test."""
    with use_manager(PluginManager()) as manager:
        yield manager


@pytest.fixture
def ofasys_isolated_manager() -> Iterator[PluginManager]:
    """A fresh plugin manager that discovers nothing; register plugins on it yourself. Process-wide for one test."""
    with use_manager(PluginManager(load_entry_points=False)) as manager:
        yield manager


# ------------------------------------------------------------------------------------------------ helpers
def entry_modules_of(distribution: str) -> dict[str, str]:
    """``{slot type: entry module}`` of an installed distribution's ``ofasys.slots`` entry points."""
    from importlib.metadata import PackageNotFoundError, distribution as get_dist

    try:
        dist = get_dist(distribution)
    except PackageNotFoundError:
        return {}
    return {ep.name: ep.value.split(":")[0] for ep in dist.entry_points if ep.group == ENTRY_POINT_GROUP}


def heavy_modules_imported(modules: list[str], heavy: tuple[str, ...] = DEFAULT_HEAVY_MODULES) -> list[str]:
    """Import ``modules`` in a fresh interpreter and return which of ``heavy`` ended up in ``sys.modules``."""
    code = ("import importlib, json, sys\n"
            f"for m in {list(modules)!r}:\n"
            "    importlib.import_module(m)\n"
            f"print(json.dumps([h for h in {list(heavy)!r} if h in sys.modules]))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise AssertionError(f"importing {', '.join(modules)} failed:\n{r.stderr}")
    return json.loads(r.stdout.strip().splitlines()[-1])


_ATTR_TYPES = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,), "list": (list, tuple)}


# ------------------------------------------------------------------------------------------------ the suite
class ModalityConformance:
    """Base class of a modality plugin's conformance tests. Subclass it as ``TestConformance`` and set:

    ``slot_type``
        the slot type under test (``"IMAGE"``);
    ``distribution``
        the distribution that must provide it (``"ofasys-image"``);
    ``tasks``
        ``{task name: instruction}``, each naming ``slot_type`` (as an input, an output or both);
    ``rows(task, n, seed)``
        a method returning ``n`` small generated rows of a task (keep values small: the suite runs on CPU);
    ``bad_inputs``
        a list of :class:`BadInput`: the documented bad values and the message each gives;
    ``output_types``
        ``{task: {field: type or tuple of types}}`` that ``generate -> postprocess`` must return (the slot types'
        declared ``output_fields`` are always required); for a slot inside a repetition group the field is a
        list and the type is its items';
    ``generation``
        generation options for the check (default ``{"max_len": 8}``);
    ``heavy_modules``
        modules an entry module must not import (default: torch and friends).
    """

    slot_type: str = ""
    distribution: str = ""
    tasks: dict[str, str] = {}
    bad_inputs: list[BadInput] = []
    output_types: dict[str, dict[str, Any]] = {}
    generation: dict[str, Any] = {"max_len": 8}
    heavy_modules: tuple[str, ...] = DEFAULT_HEAVY_MODULES
    micro_batch_size: int = 2
    model_size: str = "nano"
    seed: int = 0

    def rows(self, task: str, n: int, seed: int) -> list[dict]:  # pragma: no cover - interface
        raise NotImplementedError(f"{type(self).__name__} must implement rows(task, n, seed)")

    # -------------------------------------------------------------------------------------------- fixtures
    @pytest.fixture(scope="class")
    @classmethod
    def conformance_runtime(cls):
        """A nano model with every task of ``tasks`` added, on a fresh manager over the installed entry points."""
        import torch

        from .engine.model import GeneralistModel
        from .engine.task import Task
        from .engine.trainer import Trainer

        self = cls()
        assert self.slot_type and self.distribution and self.tasks, \
            f"{cls.__name__} must set slot_type, distribution and tasks"
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # small batches: one thread is fastest and leaves the machine to others
        manager = PluginManager()
        with use_manager(manager):
            tasks = []
            for name, instruction in self.tasks.items():
                t = Task(name=name, instruction=instruction, micro_batch_size=self.micro_batch_size,
                         generation=dict(self.generation), manager=manager)
                # every row the checks use, so that bare closed sets gathered from the data cover them
                t.add_dataset([r for k in range(6) for r in self._rows(name, k)], "train")
                tasks.append(t)
            torch.manual_seed(self.seed)
            model = GeneralistModel(self.model_size)
            runtime = Trainer(threads=1, seed=self.seed).prepare(model, tasks, manager)
            try:
                yield runtime
            finally:
                torch.set_num_threads(threads)

    def _rows(self, task: str, k: int) -> list[dict]:
        """The k-th small set of rows of a task (k = 0..5; each check uses its own)."""
        return self.rows(task, self.micro_batch_size, self.seed + k)

    def _batch(self, runtime, task: str, rows: list[dict], split: str):
        pipe = runtime.pipelines[task]
        samples = [pipe.make_sample(r, split, random.Random(self.seed + i), with_target=split != "test")
                   for i, r in enumerate(rows)]
        return pipe.collate(samples)

    def _slots_under_test(self, runtime, task: str):
        return [s for s in runtime.pipelines[task].plan.all_slots() if s.type == self.slot_type]

    # -------------------------------------------------------------------------------------------- contract
    def test_entry_modules_import_without_heavy_libraries(self):
        modules = sorted(set(entry_modules_of(self.distribution).values()))
        assert modules, (f"distribution {self.distribution} is not installed or declares no "
                         f"'{ENTRY_POINT_GROUP}' entry point")
        heavy = heavy_modules_imported(modules, self.heavy_modules)
        assert heavy == [], (f"importing the entry module(s) {', '.join(modules)} imported {', '.join(heavy)}: "
                             "import heavy libraries inside the factories, not at module level")

    def test_slot_type_is_declared_by_its_entry_point(self):
        from .spec import SIDES, STAGES, SlotType

        eps = entry_modules_of(self.distribution)
        assert self.slot_type in eps, (f"{self.distribution} has no '{ENTRY_POINT_GROUP}' entry point named "
                                       f"{self.slot_type} (it has {', '.join(sorted(eps)) or 'none'})")
        manager = PluginManager()
        spec, dist, version = manager.load_slot_type(self.slot_type)
        assert isinstance(spec, SlotType) and spec.name == self.slot_type
        assert dist == self.distribution, f"{self.slot_type} is provided by {dist}, not {self.distribution}"
        assert spec.kind in ("tokens", "features")
        assert spec.sides and set(spec.sides) <= set(SIDES)
        assert set(spec.components) <= set(STAGES), f"unknown stages {set(spec.components) - set(STAGES)}"
        for stage, variants in spec.components.items():
            assert variants and all(isinstance(v, str) and v for v in variants), f"stage {stage}: no variant names"
        for a in spec.attributes:
            assert a.help, f"attribute {self.slot_type}.{a.name} has no help text (ofasys plugins show prints it)"
            assert a.sides and set(a.sides) <= set(SIDES)
            if a.default is not None:
                assert isinstance(a.default, _ATTR_TYPES[a.type]), \
                    f"attribute {a.name}: default {a.default!r} is not a {a.type}"
                if a.choices and a.type == "str":
                    assert a.default in a.choices, f"attribute {a.name}: default {a.default!r} not in its choices"
        if "decoder" in spec.sides:
            assert spec.output_fields, f"{self.slot_type} can be an output but declares no output_fields"
        if spec.vocab_blocks:
            manager.load_all()
            manager.vocab_blocks(spec.vocab_blocks)  # raises if no loaded plugin provides one

    def test_instructions_plan_to_the_plugin(self, conformance_runtime):
        for name in self.tasks:
            slots = self._slots_under_test(conformance_runtime, name)
            assert slots, f"task {name!r}: its instruction has no {self.slot_type} slot"
            for s in slots:
                assert s.plugin == self.distribution
                json.dumps(s.to_json())  # plans are saved in checkpoints as JSON

    def test_preprocess_collate_adapt_loss_forward_and_backward(self, conformance_runtime):
        import torch

        rt = conformance_runtime
        model = rt.model
        model.train()
        for name in self.tasks:
            model.zero_grad(set_to_none=True)
            batch = self._batch(rt, name, self._rows(name, 1), "train")
            loss, logging = rt.loss(batch)
            assert loss.dim() == 0 and torch.isfinite(loss), f"task {name!r}: loss {loss}"
            assert loss.requires_grad, f"task {name!r}: the loss does not depend on the model's parameters"
            loss.backward()
            grads = [p.grad for p in model.parameters() if p.grad is not None]
            assert grads and all(torch.isfinite(g).all() for g in grads), f"task {name!r}: non-finite gradients"
            for s in self._slots_under_test(rt, name):
                if s.kind == "features" and model.has_adaptor(s.adaptor_key):
                    adaptor = model.adaptor(s.adaptor_key)
                    got = [p.grad for p in adaptor.parameters() if p.requires_grad]
                    assert any(g is not None and g.abs().sum() > 0 for g in got), \
                        f"task {name!r}: no gradient reaches the {s.adaptor_key} adaptor"
            model.zero_grad(set_to_none=True)
            with torch.no_grad():  # held-out preprocessing (no augmentation) also yields a finite loss
                vloss, _ = rt.loss(self._batch(rt, name, self._rows(name, 2), "valid"))
            assert torch.isfinite(vloss)

    def test_generate_then_postprocess_returns_the_declared_outputs(self, conformance_runtime):
        rt = conformance_runtime
        for name in self.tasks:
            rows = self._rows(name, 3)
            plan = rt.pipelines[name].plan
            inputs = [{k: v for k, v in r.items() if k not in plan.output_columns() or k in plan.input_columns()}
                      for r in rows]
            outs = rt.predict(self._batch(rt, name, inputs, "test"), **self.generation)
            assert len(outs) == len(rows)
            expected = dict(self.output_types.get(name, {}))
            for out in outs:
                for slot in plan.outputs:
                    for f in slot.output_fields:
                        assert f in out, f"task {name!r}: output lacks the declared field {f!r} of {slot.type}"
                for f, typ in expected.items():
                    assert f in out, f"task {name!r}: output lacks the field {f!r} (it has {sorted(out)})"
                    value = out[f]
                    if slot_group(plan, f):
                        assert isinstance(value, list) and all(isinstance(v, typ) for v in value), \
                            f"task {name!r}: field {f!r} = {value!r} is not a list of {typ}"
                    else:
                        assert isinstance(value, typ), f"task {name!r}: field {f!r} = {value!r} is not {typ}"

    def test_bad_inputs_raise_the_documented_data_error(self, conformance_runtime):
        from .errors import DataError

        if not self.bad_inputs:
            pytest.skip(f"{type(self).__name__} lists no bad_inputs")
        for bad in self.bad_inputs:
            assert bad.task in self.tasks, f"BadInput names unknown task {bad.task!r}"
            row = dict(self._rows(bad.task, 4)[0])
            row[bad.column] = bad.value
            pipe = conformance_runtime.pipelines[bad.task]
            with pytest.raises(DataError) as info:
                pipe.make_sample(row, bad.split, random.Random(0), with_target=True)
            assert re.search(bad.match, str(info.value)), \
                f"{bad.column}={bad.value!r}: the message {str(info.value)!r} does not match {bad.match!r}"

    def test_components_pickle_for_dataloader_workers(self, conformance_runtime):
        for name in self.tasks:
            pipe = conformance_runtime.pipelines[name]
            for s in self._slots_under_test(conformance_runtime, name):
                pre = pipe.preprocessors[s.key]
                pickle.loads(pickle.dumps(pre))
                if s.key in pipe.postprocessors:
                    pickle.loads(pickle.dumps(pipe.postprocessors[s.key]))
            # a copy preprocesses a row exactly as the original does
            copy = pickle.loads(pickle.dumps(pipe))
            row = self._rows(name, 5)[0]
            a = pipe.make_sample(row, "valid", random.Random(1))
            b = copy.make_sample(row, "valid", random.Random(1))
            assert _summary(a) == _summary(b), f"task {name!r}: a pickled pipeline preprocesses differently"


def slot_group(plan, field_name: str) -> bool:
    """Whether an output field comes from a slot inside a repetition group (its value is then a list)."""
    return any(s.group is not None and field_name in s.output_fields for s in plan.outputs)


def _summary(sample) -> list:
    out = []
    for side in (sample.encoder, sample.decoder):
        for p in side:
            v = p.value
            if hasattr(v, "ids"):
                out.append(("tokens", list(v.ids)))
            elif hasattr(v, "data"):
                data = v.data
                shape = tuple(getattr(data, "shape", ()) or ())
                try:
                    total = float(data.double().sum()) if hasattr(data, "double") else None
                except Exception:  # a payload that is not a tensor (dicts of tensors...)
                    total = None
                out.append(("features", shape, None if total is None else round(total, 4)))
            else:
                out.append((p.kind, repr(v)))
    return out
