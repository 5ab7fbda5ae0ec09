"""What ``ofasys train``, ``ofasys infer`` and ``ofasys eval`` do (the CLI module only parses arguments).

A run config (TOML or YAML)::

    [model]
    size = "nano"                  # or arch/overrides: d_model = 128 ...

    [trainer]                      # any TrainerConfig field
    max_steps = 300
    output_dir = "runs/text"       # relative paths are relative to the config file

    [[tasks]]
    name = "sentiment"
    instruction = "is the review [TEXT:review] positive? -> [TEXT:label,closed_set]"
    micro_batch_size = 8
    train = "data/sentiment.train.jsonl"
    valid = "data/sentiment.valid.jsonl"
    test = "data/sentiment.test.jsonl"
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from ..errors import ConfigError, DataError, did_you_mean

TASK_KEYS = {"name", "instruction", "micro_batch_size", "weight", "metrics", "generation", "max_source_length",
             "max_target_length", "train", "valid", "test"}


def load_config(path: Path) -> dict:
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() == ".toml":
            import tomllib

            data = tomllib.loads(text)
        elif path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        elif path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            raise ConfigError(f"{path}: use a .toml, .yaml or .json config")
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(f"{path} is not valid {path.suffix[1:].upper()}: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("tasks"), list) or not data["tasks"]:
        raise ConfigError(f"{path}: the config needs a non-empty 'tasks' list")
    unknown = set(data) - {"model", "trainer", "tasks"}
    if unknown:
        k = sorted(unknown)[0]
        raise ConfigError(f"{path}: unknown section {k!r}.{did_you_mean(k, ['model', 'trainer', 'tasks'])}")
    return data


def _resolve(base: Path, p: Any) -> Any:
    if isinstance(p, str) and not p.startswith(("http://", "https://")):
        q = Path(p)
        return str(q if q.is_absolute() else (base / q))
    return p


def tasks_from_config(data: dict, base: Path, splits=("train", "valid", "test")):
    from .task import Task

    tasks = []
    for i, spec in enumerate(data["tasks"]):
        if not isinstance(spec, dict) or "name" not in spec or "instruction" not in spec:
            raise ConfigError(f"task #{i + 1} needs at least 'name' and 'instruction'")
        unknown = set(spec) - TASK_KEYS
        if unknown:
            k = sorted(unknown)[0]
            raise ConfigError(f"task {spec['name']!r}: unknown key {k!r}.{did_you_mean(k, TASK_KEYS)}")
        kwargs = {k: v for k, v in spec.items() if k not in ("train", "valid", "test")}
        task = Task(**kwargs)
        for split in splits:
            if split in spec:
                task.add_dataset(_resolve(base, spec[split]), split)
        tasks.append(task)
    return tasks


def _model_from_config(data: dict):
    from .model import create_model

    m = dict(data.get("model") or {})
    return create_model(m.pop("arch", "ofa"), m.pop("size", "nano"), **m)


def train_from_config(config: Path, output: Path | None = None, max_steps: int | None = None, resume: bool = True):
    from rich.console import Console

    from .trainer import Trainer

    config = Path(config)
    data = load_config(config)
    base = config.parent
    tasks = tasks_from_config(data, base)
    settings = dict(data.get("trainer") or {})
    if "output_dir" in settings:
        settings["output_dir"] = _resolve(base, settings["output_dir"])
    if output is not None:
        settings["output_dir"] = str(output)
    if max_steps is not None:
        settings["max_steps"] = max_steps
    settings.setdefault("resume", resume)
    if not resume:
        settings["resume"] = False
    trainer = Trainer(**settings)
    model = _model_from_config(data)
    result = trainer.fit(model, tasks)
    if int(os.environ.get("RANK", "0") or 0) != 0:  # under torchrun only rank 0 reports
        return
    con = Console(stderr=False, highlight=False)
    _print_metrics(con, result.metrics)
    for name, b in result.bad_samples.items():
        if b["bad"]:
            con.print(f"[yellow]task {name}: skipped {b['bad']} of {b['seen']} samples[/yellow]")
    con.print(f"checkpoint: {result.checkpoint}")


def _print_metrics(con, metrics: dict) -> None:
    if not metrics:
        return
    from rich.table import Table

    table = Table(title="evaluation")
    for col in ("task", "metric", "score"):
        table.add_column(col)
    for task, res in metrics.items():
        for k, v in res.items():
            if k in ("samples", "bad_samples"):
                continue
            table.add_row(task, k, f"{v:.4f}" if isinstance(v, float) else str(v))
    con.print(table)


def _parse_data(pairs: list[str]) -> dict:
    row = {}
    for p in pairs:
        if "=" not in p:
            raise DataError(f"--data expects col=value, got {p!r}")
        k, v = p.split("=", 1)
        row[k.strip()] = v
    return row


def infer_command(checkpoint: Path, instruction: str, data: list[str], jsonl: Path | None, *, beam_size: int = 1,
                  max_len: int | None = None, sampling: bool = False, as_json: bool = False) -> None:
    from .inference import OFASys

    model = OFASys.from_pretrained(checkpoint)
    if jsonl is not None:
        from .data import _read_file

        rows = _read_file(Path(jsonl))
    else:
        if not data:
            raise DataError("give the input columns with --data col=value (or --jsonl FILE)")
        rows = [_parse_data(data)]
    outs = model.inference(instruction, rows, beam_size=beam_size, max_len=max_len, sampling=sampling or None)
    for o in outs:
        fields = {k: v for k, v in o.to_dict().items() if _jsonable(v)}
        if as_json:
            sys.stdout.write(json.dumps(fields) + "\n")
        else:
            shown = {k: v for k, v in fields.items() if k not in ("tokens", "score")}
            main = fields.get("text")
            sys.stdout.write((str(main) if main is not None and len(shown) <= 2 else json.dumps(shown)) + "\n")


def _jsonable(v: Any) -> bool:
    try:
        json.dumps(v)
        return True
    except (TypeError, ValueError):
        return False


def eval_command(checkpoint: Path, config: Path, split: str = "test", as_json: bool = False) -> None:
    from rich.console import Console

    from .evaluate import evaluate_task
    from .inference import OFASys

    model = OFASys.from_pretrained(checkpoint)
    data = load_config(Path(config))
    tasks = tasks_from_config(data, Path(config).parent, splits=(split,))
    results = {}
    for t in tasks:
        if t.name not in model.tasks:
            raise ConfigError(f"task {t.name!r} is in the config but not in the checkpoint "
                              f"(it has {', '.join(model.tasks)})")
        if split not in t.datasets:
            continue
        served = model.tasks[t.name]
        served.datasets[split] = t.datasets[split]
        results[t.name] = evaluate_task(model.runtime, served, split)
    if as_json:
        sys.stdout.write(json.dumps(results, indent=2) + "\n")
    else:
        _print_metrics(Console(highlight=False), results)
