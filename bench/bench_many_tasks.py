"""Task scalability: update time and memory with 100 tasks (text, struct and image, synthetic) against one task.

Every task is a variant of a plugin's bundled demo task (``text_reverse``, ``struct_sudoku``, ``shapes_caption``:
its instruction prefixed with ``variant <i>``, its rows drawn with seed ``i``), with the same micro-batch size.
The trainer runs ``schedule="round_robin"``: each update trains one task on one micro-batch, so an update has
the same total batch whether the run has 1 task or 100. Compared, each in a fresh subprocess:

* one task of each modality alone (the peers), and runs with 10 and 100 tasks mixing the three modalities;
* per modality, the median update time of the updates on tasks of that modality, the 100-task run against the
  single task (ratio 1.00 = no per-task overhead per update). Update time = CPU time of the training thread
  between consecutive optimizer steps (data loading in the process, forward, backward, step, logging): on a
  machine shared with other processes wall times swing by more than the 10% looked for; the trainer's wall-clock
  ``data_s + compute_s`` medians are in the JSON too;
* planning + preparation time (vocabulary, plans, pipelines, adaptors) and resident memory after preparation
  and at the end; memory growth per added task = slope between the 10- and 100-task runs.

All the runs are repeated ``--rounds`` times (3) in turn; each round's multi-task runs are compared with the same
round's single-task runs and the ratio is the median over rounds: this machine's speed drifts between runs a
minute apart by more than the 10% looked for (one round measured the text task alone at 53 ms per update, a
later one at 86 ms). Timings and memory in ``single``/``multi`` are medians over rounds; ``rounds`` has them
all.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_many_tasks.py --tasks 100 --updates 100

Writes ``bench/results/many_tasks.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "core", "src"))

BASES = {"text": "text_reverse", "struct": "struct_sudoku", "image": "shapes_caption"}


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def child(n_tasks: int, modalities: list[str], updates: int, rows: int, mbs: int, threads: int) -> dict:
    import logging

    import torch

    from ofasys.engine.model import GeneralistModel
    from ofasys.engine.task import Task
    from ofasys.engine.trainer import Trainer
    from ofasys.plugins import get_manager

    logging.getLogger("ofasys").setLevel(logging.ERROR)
    torch.set_num_threads(threads)
    # CPU time of the training thread at every optimizer step: robust to other processes on a shared machine
    marks: list[float] = []
    make_opt = getattr(Trainer, "_optimizer", None)
    if make_opt is not None:
        def _optimizer(self, model):
            opt = make_opt(self, model)
            opt.register_step_post_hook(lambda *a: marks.append(time.thread_time()))
            return opt

        Trainer._optimizer = _optimizer
    manager = get_manager()
    demo = {d.name: d for d in manager.demo_tasks()}
    rss0 = _rss_mib()
    t0 = time.perf_counter()
    tasks, kind = [], {}
    for i in range(n_tasks):
        mod = modalities[i % len(modalities)]
        d = demo[BASES[mod]]
        name = f"{mod}_{i}"
        t = Task(name=name, instruction=f"variant {i} " + d.instruction, micro_batch_size=mbs, manager=manager)
        t.add_dataset(d.rows("train", rows, i), "train")
        tasks.append(t)
        kind[name] = mod
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(max_steps=updates, output_dir=out, resume=False, schedule="round_robin", threads=threads,
                          warmup_steps=10, tensorboard=False, progress=False, log_every=1, eval_splits=())
        model = GeneralistModel("nano")
        trainer.prepare(model, tasks, manager)
        prep_s = time.perf_counter() - t0
        rss_prepared = _rss_mib()
        n_params = model.num_parameters()
        trainer.fit(model, tasks, manager=manager)
        with open(os.path.join(out, "log.jsonl")) as f:
            recs = [json.loads(line) for line in f if line.strip()]
    by_mod: dict[str, list[float]] = {}
    by_mod_cpu: dict[str, list[float]] = {}
    cpu_ok = len(marks) == len(recs)
    for i, r in enumerate(recs):
        if i < 3 or "compute_s" not in r or not r.get("tasks"):  # the first updates warm up allocators, caches
            continue
        mod = kind[next(iter(r["tasks"]))]
        by_mod.setdefault(mod, []).append(r.get("data_wait_s", r.get("data_s", 0.0)) + r["compute_s"])
        if cpu_ok:  # from the previous step's end to this one's: logging, data, forward, backward, step
            by_mod_cpu.setdefault(mod, []).append(marks[i] - marks[i - 1])
    import resource

    return {"n_tasks": n_tasks, "modalities": modalities, "updates": len(recs), "prepare_s": prep_s,
            "rss_start_mib": rss0, "rss_prepared_mib": rss_prepared, "rss_end_mib": _rss_mib(),
            "maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "params": n_params,
            "update_wall_s_median": {m: statistics.median(v) for m, v in by_mod.items()},
            "update_s_median": {m: statistics.median(v) for m, v in (by_mod_cpu or by_mod).items()},
            "update_time": "thread CPU time" if by_mod_cpu else "wall (trainer log)",
            "update_count": {m: len(v) for m, v in by_mod.items()}}


def _median_run(runs: list[dict]) -> dict:
    """One run's record with its timings and memory figures replaced by their medians over ``runs``."""
    out = dict(runs[0])
    for key in ("prepare_s", "rss_prepared_mib", "rss_end_mib", "maxrss_mib"):
        out[key] = statistics.median(r[key] for r in runs)
    for key in ("update_s_median", "update_wall_s_median"):
        out[key] = {m: statistics.median(r[key][m] for r in runs) for m in runs[0][key]}
    return out


def spawn(n_tasks: int, modalities: list[str], args) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", str(n_tasks), "--modalities", ",".join(modalities),
           "--updates", str(args.updates if n_tasks > 1 else args.single_updates), "--rows", str(args.rows),
           "--mbs", str(args.mbs), "--threads", str(args.threads)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=7200)
    if out.returncode:
        raise SystemExit(f"child {n_tasks} {modalities} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", type=int, default=100)
    ap.add_argument("--modalities", default="text,struct,image")
    ap.add_argument("--updates", type=int, default=100, help="updates of the multi-task runs")
    ap.add_argument("--single-updates", type=int, default=30, help="updates of each single-task run")
    ap.add_argument("--rows", type=int, default=64, help="training rows per task")
    ap.add_argument("--mbs", type=int, default=16, help="micro-batch size of every task")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3, help="rounds of all the runs (ratios are taken per round)")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "many_tasks.json"))
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    mods = [m for m in args.modalities.split(",") if m]
    if args.child:
        print(json.dumps(child(args.child, mods, args.updates, args.rows, args.mbs, args.threads)))
        return {}
    res = {"bench": "many_tasks", "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "loadavg_start": os.getloadavg(), "settings": {k: v for k, v in vars(args).items() if k != "child"},
           "single": {}, "multi": {}, "rounds": []}
    counts = sorted({min(10, args.tasks), args.tasks})
    for k in range(args.rounds):
        rnd: dict = {"single": {}, "multi": {}}
        for m in mods:
            r = rnd["single"][m] = spawn(1, [m], args)
            print(f"round {k + 1}: 1 task  ({m:6s}): update {r['update_s_median'][m] * 1e3:7.1f} ms  prepare "
                  f"{r['prepare_s']:.1f} s  RSS prepared {r['rss_prepared_mib']:.0f} MiB", flush=True)
        for n in counts:
            r = rnd["multi"][str(n)] = spawn(n, mods, args)
            line = "  ".join(f"{m} {v * 1e3:.1f} ms (x{v / rnd['single'][m]['update_s_median'][m]:.2f})"
                             for m, v in sorted(r["update_s_median"].items()))
            print(f"round {k + 1}: {n:3d} tasks: update {line}  prepare {r['prepare_s']:.1f} s  RSS prepared "
                  f"{r['rss_prepared_mib']:.0f} MiB, end {r['rss_end_mib']:.0f} MiB", flush=True)
        res["rounds"].append(rnd)
    res["single"] = {m: _median_run([r["single"][m] for r in res["rounds"]]) for m in mods}
    res["multi"] = {str(n): _median_run([r["multi"][str(n)] for r in res["rounds"]]) for n in counts}
    if len(res["multi"]) == 2:
        lo, hi = (res["multi"][k] for k in sorted(res["multi"], key=int))
        dn = hi["n_tasks"] - lo["n_tasks"]
        res["per_added_task"] = {"rss_prepared_mib": (hi["rss_prepared_mib"] - lo["rss_prepared_mib"]) / dn,
                                 "rss_end_mib": (hi["rss_end_mib"] - lo["rss_end_mib"]) / dn,
                                 "prepare_s": (hi["prepare_s"] - lo["prepare_s"]) / dn,
                                 "params": (hi["params"] - lo["params"]) / dn}
        p = res["per_added_task"]
        print(f"per added task: RSS after preparation +{p['rss_prepared_mib']:.2f} MiB, at the end "
              f"+{p['rss_end_mib']:.2f} MiB, preparation +{p['prepare_s'] * 1e3:.0f} ms, parameters +{p['params']:.0f}")
    for n in counts:
        # per round, the n-task run against the single-task runs of the same round (the machine's speed drifts
        # between rounds by more than the 10% looked for); the median over rounds
        per_round = [{m: v / r["single"][m]["update_s_median"][m]
                      for m, v in r["multi"][str(n)]["update_s_median"].items()} for r in res["rounds"]]
        ratio = {m: statistics.median(pr[m] for pr in per_round) for m in per_round[0]}
        res.setdefault("update_ratio_rounds", {})[str(n)] = per_round
        res.setdefault("update_ratio", {})[str(n)] = ratio
        print(f"{n:3d} tasks vs one task, median over {len(per_round)} rounds: "
              + "  ".join(f"{m} x{v:.2f}" for m, v in sorted(ratio.items())), flush=True)
    if str(args.tasks) in res.get("update_ratio", {}):
        res["update_ratio_vs_single"] = res["update_ratio"][str(args.tasks)]
    res["loadavg_end"] = os.getloadavg()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(res, f, indent=1)
    return res


if __name__ == "__main__":
    main()
