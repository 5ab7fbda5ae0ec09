"""Entry module of the TIMESERIES slot type (entry point ``TIMESERIES`` of the ``ofasys.slots`` group).

Written from ofasys' public documentation only (docs/plugin_hooks.md, docs/plugin_authoring.md): it imports the
standard library and ``ofasys``; torch is imported inside the factories, in :mod:`ofasys_timeseries.components`.

``[TIMESERIES:col]`` reads a list of numbers, normalises it, cuts it into patches of ``patch`` samples and embeds
each patch as one encoder position (a small MLP plus learned positions), like a patch-based time-series
transformer. Input only.
"""

from __future__ import annotations

from typing import Any, Callable

from ofasys.hookspecs import hookimpl
from ofasys.spec import Attribute, DemoTask, SlotType

SLOT_TYPE = "TIMESERIES"

TIMESERIES = SlotType(
    name=SLOT_TYPE,
    kind="features",
    sides=("encoder",),
    help="A univariate time series: a list of numbers (or a dict with a 'values' list), embedded one patch of "
         "`patch` samples per position.",
    components={"preprocess": ("timeseries",), "adaptor": ("timeseries_patch",)},
    attributes=(
        Attribute("patch", "int", 4, "Samples per embedded position (the series is zero-padded to a multiple)."),
        Attribute("max_length", "int", 512, "Longest accepted series in samples; a longer one is a bad sample."),
        Attribute("normalize", "str", "zscore", "Per-series scaling: zscore (zero mean, unit variance), "
                  "minmax (to [-1, 1]) or none.", choices=("zscore", "minmax", "none")),
    ),
)


def _mine(slot: Any, stage: str) -> bool:
    return getattr(slot, "type", None) == SLOT_TYPE and \
        (getattr(slot, "components", None) or {}).get(stage) in (None, *TIMESERIES.components[stage])


@hookimpl
def ofasys_register_slot_types(register: Callable[..., None]) -> None:
    """Declare TIMESERIES."""
    register(TIMESERIES)


@hookimpl
def ofasys_preprocess(slot: Any, ctx: Any) -> Any:
    """The series preprocessor (runs per sample in DataLoader workers)."""
    if not _mine(slot, "preprocess"):
        return None
    from .components import SeriesPreprocessor

    return SeriesPreprocessor(slot, ctx.vocab)


@hookimpl
def ofasys_adapt(slot: Any, ctx: Any) -> Any:
    """The patch adaptor, in the model's width (one per model: it accepts every ``patch`` value)."""
    if not _mine(slot, "adaptor"):
        return None
    from .components import PatchAdaptor

    return PatchAdaptor(int(ctx.model_config["d_model"]))


@hookimpl
def ofasys_register_demo_tasks(register: Callable[..., None]) -> None:
    """``series_shape`` for ``ofasys demo``."""
    from . import data

    register(DemoTask(name="series_shape", modality=SLOT_TYPE, instruction=data.SHAPE_INSTRUCTION,
                      rows=data.demo_rows, metric="accuracy", n_train=600, n_valid=100, micro_batch_size=16))
