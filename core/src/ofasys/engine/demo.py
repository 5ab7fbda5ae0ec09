"""``ofasys demo``: one small generalist trained on the bundled tasks of every installed plugin.

Each plugin contributes tasks through ``ofasys_register_demo_tasks`` (data generated or shipped in the package).
The demo trains one ``nano`` model on all of them jointly, evaluates each on held-out rows, prints a table, and
writes ``results.json``, the checkpoint (``run/checkpoint``), a gallery and ``index.html``.
"""

from __future__ import annotations

import html
import json
import time
from pathlib import Path

from ..errors import ConfigError
from ..plugins import get_manager

#: ``steps`` updates; ``scale``: the fraction of each task's bundled training rows; ``micro_batch``: a cap on each
#: task's micro-batch (None: the task's own); ``valid``: a cap on held-out rows per task (None: the task's own).
#: ``quick`` is sized to finish in under 5 minutes on 2 CPU cores with every plugin installed.
PROFILES = {"quick": {"steps": 300, "scale": 0.5, "micro_batch": 8, "valid": 30},
            "default": {"steps": 1500, "scale": 1.0, "micro_batch": None, "valid": None}}
VARIANTS = ("dense", "moe")


def select(demo: list, names: "list[str] | None") -> list:
    """The demo tasks named (all when ``names`` is empty); unknown names are a ConfigError listing the known."""
    if not names:
        return demo
    known = {d.name for d in demo}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(f"unknown demo task(s) {', '.join(unknown)}; installed: {', '.join(sorted(known))}")
    return [d for d in demo if d.name in names]


def _tasks(demo: list, profile: dict, manager, only: str | None = None, valid_samples: int | None = None):
    valid_samples = valid_samples or profile.get("valid")
    cap = profile.get("micro_batch")
    from .task import Task

    tasks, valid_rows = [], {}
    for d in demo:
        if only is not None and d.name != only:
            continue
        n_train = max(32, int(d.n_train * profile["scale"]))
        mbs = min(d.micro_batch_size, cap) if cap else d.micro_batch_size
        t = Task(name=d.name, instruction=d.instruction, micro_batch_size=mbs, metrics=[d.metric],
                 generation=d.generation, manager=manager)
        t.add_dataset(d.rows("train", n_train, 0), "train")
        valid_rows[d.name] = d.rows("valid", min(d.n_valid, valid_samples or d.n_valid), 0)
        t.add_dataset(valid_rows[d.name], "valid")
        tasks.append(t)
    return tasks, valid_rows


def moe_modalities(tasks: list) -> list[str]:
    """One encoder FFN expert per input modality of the tasks: every feature slot type, and ``tokens`` for
    token slots (TEXT, BOX, PHONE, STRUCT share it) — the seed's modality-level "Generalist MoE"."""
    kinds = set()
    for t in tasks:
        for slot in t.plan.all_slots():
            if slot.side == "encoder":
                kinds.add(slot.type if slot.kind == "features" else "tokens")
    return sorted(kinds)


def _model(size: str, variant: str, tasks: list):
    from .model import GeneralistModel

    if variant not in VARIANTS:
        raise ConfigError(f"unknown model variant {variant!r}; use one of {', '.join(VARIANTS)}")
    # a nano model trained from scratch for a few hundred updates learns to read its inputs much sooner with a
    # larger initialisation and without NormFormer's extra norms and dropout (what the plugins' tests found)
    tuned = dict(init_std=0.07, normformer=False, dropout=0.0) if size == "nano" else {}
    if variant == "moe":
        tuned["moe_modalities"] = moe_modalities(tasks)
    return GeneralistModel(size, **tuned)


def _setup(manager, names, quick: bool, steps: int | None, output, overrides: dict | None = None) -> tuple:
    """The plugin manager, the selected demo tasks, the profile (with ``overrides``), the number of updates and
    the output folder."""
    manager = manager or get_manager()
    demo = select(manager.demo_tasks(), names)
    if not demo:
        raise ConfigError('no installed plugin contributes demo tasks; install some: pip install "ofasys[all]"')
    profile = {**PROFILES["quick" if quick else "default"],
               **{k: v for k, v in (overrides or {}).items() if v is not None}}
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    return manager, demo, profile, steps or profile["steps"], output


def _train(tasks, model, output: Path, steps: int, device: str, manager, progress, seed: int = 1):
    from .trainer import Trainer

    trainer = Trainer(max_steps=steps, output_dir=str(output), device=device, resume=False, seed=seed, lr=1e-3,
                      eval_max_samples=None, warmup_steps=min(100, steps // 10), progress=progress,
                      tensorboard=False)
    t0 = time.perf_counter()
    result = trainer.fit(model, tasks, manager=manager)
    return trainer, result, time.perf_counter() - t0


def run_demo(output: Path, quick: bool = False, device: str = "cpu", steps: int | None = None,
             size: str = "nano", manager=None, progress: bool | None = None, variant: str = "dense",
             valid_samples: int | None = None, tasks: "list[str] | None" = None,
             train_fraction: float | None = None, micro_batch: int | None = None) -> dict:
    from rich.console import Console
    from rich.table import Table

    from .inference import OFASys

    manager, demo, profile, steps, output = _setup(manager, tasks, quick, steps, output,
                                                   {"scale": train_fraction, "micro_batch": micro_batch})
    con = Console(highlight=False)
    con.print(f"[bold]ofasys demo[/bold]: one {size} {variant} model, {len(demo)} tasks "
              f"({', '.join(sorted({d.modality for d in demo}))}), {steps} updates on {device}")
    built, valid_rows = _tasks(demo, profile, manager, valid_samples=valid_samples)
    trainer, result, elapsed = _train(built, _model(size, variant, built), output / "run", steps, device, manager,
                                      progress)
    served = OFASys(trainer.runtime)

    table = Table(title=f"held-out scores after {steps} updates ({elapsed:.0f} s)")
    for col in ("task", "modality", "metric", "score"):
        table.add_column(col)
    summary = {}
    for d in demo:
        res = result.metrics.get(d.name, {})
        score = res.get(d.metric)
        summary[d.name] = {"modality": d.modality, "instruction": d.instruction, "metric": d.metric,
                           "score": score, "loss": res.get("loss"), "samples": res.get("samples")}
        table.add_row(d.name, d.modality, d.metric, "-" if score is None else f"{score:.1f}")
    con.print(table)

    gallery_dir = output / "gallery"
    gallery_dir.mkdir(exist_ok=True)
    gallery = []
    for d in demo:
        if d.showcase is not None:
            for item in d.showcase(served, valid_rows[d.name], gallery_dir):
                gallery.append({"task": d.name, **item})
    results = {"profile": "quick" if quick else "default", "size": size, "variant": variant, "steps": steps,
               "valid_samples": {d.name: len(valid_rows[d.name]) for d in demo},
               "device": device, "elapsed_s": round(elapsed, 1), "checkpoint": str(output / "run" / "checkpoint"),
               "tasks": summary}
    (output / "results.json").write_text(json.dumps(results, indent=2))
    (output / "index.html").write_text(_page(results, gallery))
    con.print(f"wrote {output / 'results.json'}, {output / 'index.html'} and the checkpoint {results['checkpoint']}")
    return results


def run_compare(output: Path, quick: bool = False, device: str = "cpu", steps: int | None = None,
                size: str = "nano", manager=None, progress: bool | None = None,
                valid_samples: int | None = None, tasks: "list[str] | None" = None,
                train_fraction: float | None = None, micro_batch: int | None = None) -> dict:
    """Specialists vs the generalist (dense and MoE) at equal compute, in the seed's table shape.

    Each specialist trains ``steps`` updates of its one task; each generalist trains ``steps`` updates in which
    every task contributes one micro-batch (the ``accumulate`` schedule), so a generalist run costs the same
    forward/backward passes as all specialists together.
    """
    from rich.console import Console
    from rich.table import Table

    manager, demo, profile, steps, output = _setup(manager, tasks, quick, steps, output,
                                                   {"scale": train_fraction, "micro_batch": micro_batch})
    con = Console(highlight=False)
    scores: dict[str, dict[str, float | None]] = {d.name: {} for d in demo}
    times: dict[str, float] = {}
    for d in demo:
        con.print(f"specialist [bold]{d.name}[/bold]: {steps} updates")
        built, _ = _tasks(demo, profile, manager, only=d.name, valid_samples=valid_samples)
        _, res, el = _train(built, _model(size, "dense", built), output / "specialists" / d.name, steps, device,
                            manager, progress)
        scores[d.name]["specialist"] = res.metrics.get(d.name, {}).get(d.metric)
        times["specialists"] = times.get("specialists", 0.0) + el
    for variant in VARIANTS:
        con.print(f"generalist ({variant}): {len(demo)} tasks, {steps} updates")
        built, _ = _tasks(demo, profile, manager, valid_samples=valid_samples)
        _, res, el = _train(built, _model(size, variant, built), output / f"generalist-{variant}", steps, device,
                            manager, progress)
        for d in demo:
            scores[d.name][variant] = res.metrics.get(d.name, {}).get(d.metric)
        times[variant] = el

    registered = manager.metrics()

    def ratio(generalist, specialist, metric):
        """generalist / specialist for higher-is-better metrics, specialist / generalist for error rates, so
        1.0 means parity and below 1.0 means the generalist is worse either way."""
        if generalist is None or specialist is None:
            return None
        higher = getattr(registered.get(metric), "higher_is_better", True)
        num, den = (generalist, specialist) if higher else (specialist, generalist)
        return round(num / den, 3) if den else None

    rows = []
    table = Table(title=f"specialist vs generalist, {size}, {steps} updates each (equal compute)")
    for col in ("task", "modality", "dataset", "metric", "specialist", "generalist", "generalist-MoE",
                "generalist / specialist", "MoE / specialist"):
        table.add_column(col)
    for d in demo:
        s = scores[d.name]
        row = {"task": d.name, "modality": d.modality, "dataset": "bundled (generated)", "metric": d.metric,
               "specialist": s.get("specialist"), "generalist": s.get("dense"), "generalist_moe": s.get("moe"),
               "ratio": ratio(s.get("dense"), s.get("specialist"), d.metric),
               "ratio_moe": ratio(s.get("moe"), s.get("specialist"), d.metric)}
        rows.append(row)
        fmt = (lambda v: "-" if v is None else f"{v:.1f}")
        table.add_row(d.name, d.modality, row["dataset"], d.metric, fmt(row["specialist"]), fmt(row["generalist"]),
                      fmt(row["generalist_moe"]), "-" if row["ratio"] is None else f"{row['ratio']:.2f}",
                      "-" if row["ratio_moe"] is None else f"{row['ratio_moe']:.2f}")
    con.print(table)
    out = {"size": size, "steps": steps, "device": device, "profile": "quick" if quick else "default",
           "elapsed_s": {k: round(v, 1) for k, v in times.items()}, "rows": rows}
    (output / "compare.json").write_text(json.dumps(out, indent=2))
    con.print(f"wrote {output / 'compare.json'}")
    return out


def _page(results: dict, gallery: list[dict]) -> str:
    rows = "".join(f"<tr><td>{html.escape(n)}</td><td>{html.escape(r['modality'])}</td>"
                   f"<td><code>{html.escape(r['instruction'])}</code></td><td>{html.escape(r['metric'])}</td>"
                   f"<td>{'-' if r['score'] is None else format(r['score'], '.1f')}</td></tr>"
                   for n, r in results["tasks"].items())
    items = "".join(f"<div class='item'><h3>{html.escape(g['task'])}</h3><p class='title'>"
                    f"{html.escape(str(g.get('title', '')))}</p>{g['html']}</div>" for g in gallery)
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>ofasys demo</title>
<base href="gallery/"><!-- showcases give paths relative to the gallery folder -->
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;
padding:4px 8px}}.gallery{{display:flex;flex-wrap:wrap;gap:1em}}.item{{border:1px solid #ddd;padding:.5em;
max-width:28em}}img{{max-width:100%}}</style></head><body>
<h1>ofasys demo</h1>
<p>One {html.escape(results['size'])} {html.escape(results.get('variant', 'dense'))} generalist, {results['steps']} updates on {html.escape(results['device'])}
({results['elapsed_s']} s). Checkpoint: <code>{html.escape(results['checkpoint'])}</code></p>
<table><tr><th>task</th><th>modality</th><th>instruction</th><th>metric</th><th>score</th></tr>{rows}</table>
<h2>Gallery</h2><div class="gallery">{items}</div>
</body></html>
"""
