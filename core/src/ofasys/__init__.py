"""ofasys: declare multi-modal tasks in one line, train one universal model on all of them.

``import ofasys`` is light (no torch): the engine classes load on first attribute access.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import (CheckpointError, ConfigError, DataError, InstructionError, OfasysError, PlanError,  # noqa: F401
                     PluginConflictError, PluginError)
_LAZY = {
    "hookimpl": "ofasys.hookspecs",
    "Task": "ofasys.engine.task",
    "Trainer": "ofasys.engine.trainer",
    "GeneralistModel": "ofasys.engine.model",
    "OFASys": "ofasys.engine.inference",
    "Output": "ofasys.engine.inference",
    "parse": "ofasys.instruction",
    "build_plan": "ofasys.plan",
}

__all__ = ["__version__", "OfasysError", "InstructionError", "PlanError", "PluginError",
           "PluginConflictError", "DataError", "CheckpointError", "ConfigError", *_LAZY]


def __getattr__(name: str):
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'ofasys' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(mod), name)
    globals()[name] = value
    return value
