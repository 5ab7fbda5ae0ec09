"""Training throughput and padding with plain batches, length bucketing and sequence packing.

A text task with a realistic spread of lengths (the text plugin's ``reverse`` instruction over rows whose input
and output word counts are drawn independently from log-normal distributions: many short samples, a few long
ones) is trained with :class:`ofasys.engine.trainer.Trainer` on a ``nano`` model for ``--steps`` updates in
three settings measured in the same run:

* ``plain``: batches as drawn (padded to their longest sample);
* ``bucketing``: ``bucket_batches=8`` (samples of similar length batched together);
* ``packing``: ``pack=True`` (each micro-batch's samples packed into rows as long as its longest sample).

Each setting sees the same samples per update count (``--batch``). Reported: target (loss) tokens and samples
per second of compute (the trainer's per-update ``compute_s``, the first ``--skip`` updates left out) and the
padding fraction of the encoder and decoder positions over the batches of the run. Ratios are to ``plain``.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_packing.py --steps 40

Writes ``bench/results/packing.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
import warnings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "core", "src"))

SETTINGS = {"plain": {}, "bucketing": {"bucket_batches": 8}, "packing": {"pack": True}}


def rows(n: int, seed: int, src_mu: float, tgt_mu: float, max_words: int) -> list[dict]:
    from ofasys_text.demo import WORDS

    rnd = random.Random(seed)

    def words(mu: float) -> str:
        k = max(1, min(max_words, int(rnd.lognormvariate(mu, 0.7))))
        return " ".join(rnd.choice(WORDS) for _ in range(k))

    return [{"words": words(src_mu), "reversed": words(tgt_mu)} for _ in range(n)]


def padding(task, pipeline, batch_size: int, n_batches: int, seed: int, **loader_opts) -> dict:
    """Padding fractions of the encoder and decoder positions over the first ``n_batches`` training batches."""
    from ofasys.engine.data import make_loader

    it = iter(make_loader(task.datasets["train"], pipeline, "train", batch_size, seed, **loader_opts))
    pos = {"enc": [0, 0], "dec": [0, 0]}
    for _ in range(n_batches):
        batch, _ = next(it)
        enc = batch.encoder
        real_e = enc.seq_ids.ge(0) if enc.seq_ids is not None else enc.tokens.ne(0)
        seq = getattr(batch, "target_seq_ids", None)
        real_d = seq.ge(0) if seq is not None else batch.target.ne(0)
        pos["enc"][0] += real_e.numel()
        pos["enc"][1] += int(real_e.sum())
        pos["dec"][0] += real_d.numel()
        pos["dec"][1] += int(real_d.sum())
    return {k: 1.0 - real / max(total, 1) for k, (total, real) in pos.items()}


def run(setting: str, data: list[dict], args) -> dict:
    from ofasys.engine.model import GeneralistModel
    from ofasys.engine.packing import Packing
    from ofasys.engine.task import Task
    from ofasys.engine.trainer import Trainer
    from ofasys_text.demo import INSTRUCTIONS

    opts = SETTINGS[setting]
    task = Task(name="reverse", instruction=INSTRUCTIONS["reverse"], micro_batch_size=args.batch,
                max_source_length=args.max_len, max_target_length=args.max_len)
    task.add_dataset(data, "train")
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(max_steps=args.steps, output_dir=out, resume=False, threads=args.threads, seed=args.seed,
                          warmup_steps=5, tensorboard=False, progress=False, log_every=1, eval_splits=(), **opts)
        t0 = time.perf_counter()
        trainer.fit(GeneralistModel(args.size), [task])
        wall = time.perf_counter() - t0
        with open(os.path.join(out, "log.jsonl")) as f:
            recs = [json.loads(line) for line in f if line.strip()]
    recs = [r for r in recs if "compute_s" in r][args.skip:]
    compute = sum(r["compute_s"] for r in recs)
    tokens = sum(r["tasks"]["reverse"]["tokens"] for r in recs)
    pipe = trainer.runtime.pipelines["reverse"]
    pack = Packing(trainer.runtime.vocab.pad, None, trainer.runtime.model.config.max_positions) if opts.get(
        "pack") else None
    pad = padding(task, pipe, args.batch, args.steps, args.seed, bucket_batches=opts.get("bucket_batches", 0),
                  pack=pack)
    return {"setting": setting, "updates_measured": len(recs), "compute_s": compute, "fit_wall_s": wall,
            "target_tokens_per_s": tokens / max(compute, 1e-9),
            "samples_per_s": len(recs) * args.batch / max(compute, 1e-9),
            "padding_fraction_encoder": pad["enc"], "padding_fraction_decoder": pad["dec"]}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--settings", default=",".join(SETTINGS), help=f"comma list of {', '.join(SETTINGS)}")
    ap.add_argument("--size", default="nano")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--skip", type=int, default=3, help="first updates left out (start-up)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rows", type=int, default=4000)
    ap.add_argument("--src-mu", type=float, default=2.8, help="log-normal mu of the input word count")
    ap.add_argument("--tgt-mu", type=float, default=2.0, help="log-normal mu of the output word count")
    ap.add_argument("--max-words", type=int, default=120)
    ap.add_argument("--max-len", type=int, default=256, help="max_source_length / max_target_length (tokens)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the training process")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "packing.json"))
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    import logging

    import torch

    logging.getLogger("ofasys").setLevel(logging.ERROR)
    torch.set_num_threads(args.threads)
    data = rows(args.rows, args.seed, args.src_mu, args.tgt_mu, args.max_words)
    results = {"bench": "packing", "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "cpus": os.cpu_count(), "loadavg_start": os.getloadavg(), "settings": vars(args), "runs": []}
    for setting in filter(None, args.settings.split(",")):
        r = run(setting, data, args)
        results["runs"].append(r)
        print(f"{setting:10s} {r['target_tokens_per_s']:9.1f} target tok/s  {r['samples_per_s']:7.1f} samples/s  "
              f"padding enc {100 * r['padding_fraction_encoder']:5.1f}%  "
              f"dec {100 * r['padding_fraction_decoder']:5.1f}%", flush=True)
    base = next((r for r in results["runs"] if r["setting"] == "plain"), None)
    if base is not None:
        for r in results["runs"]:
            r["speedup_vs_plain"] = r["target_tokens_per_s"] / max(base["target_tokens_per_s"], 1e-9)
    results["loadavg_end"] = os.getloadavg()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)
    return results


if __name__ == "__main__":
    main()
