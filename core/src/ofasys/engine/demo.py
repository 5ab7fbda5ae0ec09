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

PROFILES = {"quick": {"steps": 300, "scale": 0.5}, "default": {"steps": 1500, "scale": 1.0}}


def run_demo(output: Path, quick: bool = False, device: str = "cpu", steps: int | None = None,
             size: str = "nano", manager=None, progress: bool | None = None) -> dict:
    from rich.console import Console
    from rich.table import Table

    from .inference import OFASys
    from .model import GeneralistModel
    from .task import Task
    from .trainer import Trainer

    manager = manager or get_manager()
    con = Console(highlight=False)
    demo = manager.demo_tasks()
    if not demo:
        raise ConfigError('no installed plugin contributes demo tasks; install some: pip install "ofasys[all]"')
    profile = PROFILES["quick" if quick else "default"]
    steps = steps or profile["steps"]
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    con.print(f"[bold]ofasys demo[/bold]: one {size} model, {len(demo)} tasks "
              f"({', '.join(sorted({d.modality for d in demo}))}), {steps} updates on {device}")
    tasks, valid_rows = [], {}
    for d in demo:
        n_train = max(32, int(d.n_train * profile["scale"]))
        t = Task(name=d.name, instruction=d.instruction, micro_batch_size=d.micro_batch_size, metrics=[d.metric],
                 generation=d.generation, manager=manager)
        t.add_dataset(d.rows("train", n_train, 0), "train")
        valid_rows[d.name] = d.rows("valid", d.n_valid, 0)
        t.add_dataset(valid_rows[d.name], "valid")
        tasks.append(t)
    trainer = Trainer(max_steps=steps, output_dir=str(output / "run"), device=device, resume=False,
                      eval_max_samples=None, warmup_steps=min(100, steps // 10), progress=progress)
    t0 = time.perf_counter()
    result = trainer.fit(GeneralistModel(size), tasks, manager=manager)
    elapsed = time.perf_counter() - t0
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
    results = {"profile": "quick" if quick else "default", "size": size, "steps": steps, "device": device,
               "elapsed_s": round(elapsed, 1), "checkpoint": str(output / "run" / "checkpoint"), "tasks": summary}
    (output / "results.json").write_text(json.dumps(results, indent=2))
    (output / "index.html").write_text(_page(results, gallery))
    con.print(f"wrote {output / 'results.json'}, {output / 'index.html'} and the checkpoint {results['checkpoint']}")
    return results


def _page(results: dict, gallery: list[dict]) -> str:
    rows = "".join(f"<tr><td>{html.escape(n)}</td><td>{html.escape(r['modality'])}</td>"
                   f"<td><code>{html.escape(r['instruction'])}</code></td><td>{html.escape(r['metric'])}</td>"
                   f"<td>{'-' if r['score'] is None else format(r['score'], '.1f')}</td></tr>"
                   for n, r in results["tasks"].items())
    items = "".join(f"<div class='item'><h3>{html.escape(g['task'])}</h3>{g['html']}</div>" for g in gallery)
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>ofasys demo</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;
padding:4px 8px}}.gallery{{display:flex;flex-wrap:wrap;gap:1em}}.item{{border:1px solid #ddd;padding:.5em;
max-width:28em}}img{{max-width:100%}}</style></head><body>
<h1>ofasys demo</h1>
<p>One {html.escape(results['size'])} generalist, {results['steps']} updates on {html.escape(results['device'])}
({results['elapsed_s']} s). Checkpoint: <code>{html.escape(results['checkpoint'])}</code></p>
<table><tr><th>task</th><th>modality</th><th>instruction</th><th>metric</th><th>score</th></tr>{rows}</table>
<h2>Gallery</h2><div class="gallery">{items}</div>
</body></html>
"""
