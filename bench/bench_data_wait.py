"""Fraction of a training step spent waiting for data, with the image and audio plugins' preprocessing.

Trains a ``nano`` model with :class:`ofasys.engine.trainer.Trainer` on one task at a time (the plugins' bundled
demo tasks: image captioning on generated shapes at the demo's 48 px and at 224 px, speech recognition on the
bundled speech corpus) with ``num_workers`` DataLoader workers (0 = preprocessing in the training process, as a
peer measured in the same run), and reads the trainer's per-update timings from ``log.jsonl``: the time the
update waited for its batches (``data_wait_s``, or ``data_s`` in older trainers) and the time it computed
(``compute_s``). The first ``--skip`` updates (worker start-up, first-batch latency) are left out.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_data_wait.py --steps 40 --workers 0,2

Writes ``bench/results/data_wait.json`` (``--out``). Target: waiting < 10% of the step for nano with 2 workers.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import warnings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "core", "src"))

SETTINGS = {
    "image_caption_48px": ("shapes_caption", None),
    "image_caption_224px": ("shapes_caption", ("patch_image_size=48", "patch_image_size=224")),
    "audio_asr": ("audio_asr", None),
}


def run(setting: str, workers: int, steps: int, skip: int, threads: int, manager) -> dict:
    from ofasys.engine.model import GeneralistModel
    from ofasys.engine.task import Task
    from ofasys.engine.trainer import Trainer

    demo_name, edit = SETTINGS[setting]
    demo = {d.name: d for d in manager.demo_tasks()}
    if demo_name not in demo:
        raise SystemExit(f"demo task {demo_name!r} is not installed (install the plugin that provides it)")
    d = demo[demo_name]
    instruction = d.instruction if edit is None else d.instruction.replace(*edit)
    task = Task(name=d.name, instruction=instruction, micro_batch_size=d.micro_batch_size, manager=manager)
    task.add_dataset(d.rows("train", max(d.n_train, steps * d.micro_batch_size), 0), "train")
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(max_steps=steps, output_dir=out, resume=False, num_workers=workers, threads=threads,
                          warmup_steps=10, tensorboard=False, progress=False, log_every=1, eval_splits=())
        t0 = time.perf_counter()
        trainer.fit(GeneralistModel("nano"), [task], manager=manager)
        wall = time.perf_counter() - t0
        with open(os.path.join(out, "log.jsonl")) as f:
            recs = [json.loads(line) for line in f if line.strip()]
    recs = [r for r in recs if "compute_s" in r][skip:]
    wait = [r.get("data_wait_s", r.get("data_s", 0.0)) for r in recs]
    comp = [r["compute_s"] for r in recs]
    frac = sum(wait) / max(1e-9, sum(wait) + sum(comp))
    return {"setting": setting, "task": d.name, "instruction": instruction, "workers": workers,
            "micro_batch_size": d.micro_batch_size, "updates_measured": len(recs), "wait_fraction": frac,
            "median_wait_s": statistics.median(wait) if wait else None,
            "median_compute_s": statistics.median(comp) if comp else None, "fit_wall_s": wall}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--settings", default=",".join(SETTINGS), help=f"comma list of {', '.join(SETTINGS)}")
    ap.add_argument("--workers", default="0,2", help="comma list of DataLoader worker counts")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--skip", type=int, default=5, help="first updates left out (start-up)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the training process")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "data_wait.json"))
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    import logging

    logging.getLogger("ofasys").setLevel(logging.ERROR)
    from ofasys.plugins import get_manager

    manager = get_manager()
    results = {"bench": "data_wait", "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "cpus": os.cpu_count(), "loadavg_start": os.getloadavg(), "settings": vars(args), "runs": []}
    for setting in filter(None, args.settings.split(",")):
        for w in (int(x) for x in args.workers.split(",")):
            r = run(setting, w, args.steps, args.skip, args.threads, manager)
            results["runs"].append(r)
            print(f"{setting:22s} workers={w}  waiting {100 * r['wait_fraction']:5.1f}% of the step  "
                  f"(median wait {r['median_wait_s']:.4f}s, compute {r['median_compute_s']:.3f}s)", flush=True)
            os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
            with open(args.out, "w") as f:
                json.dump(results, f, indent=1)
    results["loadavg_end"] = os.getloadavg()
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)
    return results


if __name__ == "__main__":
    main()
