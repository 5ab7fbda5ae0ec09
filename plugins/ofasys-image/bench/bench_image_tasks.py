"""Train one nano model jointly on the image tasks and a text task for longer than the tests do, and print the
held-out scores along the way (the numbers in the README's "Measured scores").

    .venv/bin/python plugins/ofasys-image/bench/bench_image_tasks.py --steps 1500 --eval-every 500 --out runs/img

The tasks, data and settings are those of ``tests/test_end_to_end.py`` (48 px shapes scenes, scikit-learn's
digits, the TEXT plugin's ``reverse`` task, nano with ``init_std=0.07, normformer=False, dropout=0.0``), except that
visual entailment is trained jointly here (the test trains it alone); CPU, one thread.
"""

from __future__ import annotations

import argparse
import json
import time

from ofasys import GeneralistModel, Task, Trainer
from ofasys_image import datasets as D

SIZE, BINS = 48, 48
SPATIAL = ("grounding", "grounded_caption", "detection")
METRICS = {"caption": ["cider", "bleu"], "vqa": ["accuracy"], "entailment": ["accuracy"], "grounding": ["iou_acc"],
           "grounded_caption": ["accuracy"], "detection": ["map50"], "digits": ["accuracy"],
           "reverse": ["exact_match"]}


def tasks() -> list[Task]:
    from ofasys_text import demo

    out = []
    for name, metrics in METRICS.items():
        if name == "reverse":
            ins = demo.INSTRUCTIONS["reverse"]
            train, valid = demo.splits("reverse", 800, 100, seed=11)
        else:
            ins = D.INSTRUCTIONS[name].replace("[IMAGE:img]", f"[IMAGE:img,patch_image_size={SIZE},adaptor=image_patch]")
            ins = ins.replace("[BOX:region]", f"[BOX:region,num_bins={BINS}]").replace(
                "[BOX:boxes]", f"[BOX:boxes,num_bins={BINS}]")
            if name == "digits":
                train, valid = D.digits_rows("train"), D.digits_rows("test")[:100]
            else:
                extra = dict(max_objects=2, min_frac=0.3, max_frac=0.45) if name in SPATIAL else {}
                train, valid = D.shapes_splits(name, 800, 100, seed=0, size=SIZE, **extra)
        t = Task(name=name, instruction=ins, micro_batch_size=32, metrics=metrics, generation={"max_len": 40},
                 weight=2.0 if name in SPATIAL else 1.0)
        t.add_dataset(train, "train")
        t.add_dataset(valid, "valid")
        out.append(t)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--eval-every", type=int, default=500)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--out", default="runs/bench-image")
    a = p.parse_args()
    t0 = time.perf_counter()
    result = Trainer(max_steps=a.steps, lr=a.lr, warmup_steps=30, seed=3, threads=1, progress=False,
                     tensorboard=False, eval_every=a.eval_every, eval_max_samples=100, resume=False,
                     output_dir=a.out).fit(GeneralistModel("nano", init_std=0.07, normformer=False, dropout=0.0),
                                           tasks())
    print(f"{a.steps} steps in {time.perf_counter() - t0:.0f} s")
    with open(f"{a.out}/log.jsonl", encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            if "eval" in rec:
                scores = {k: {m: round(v[m], 1) for m in METRICS[k]} for k, v in rec["eval"].items()}
                print(rec["step"], json.dumps(scores))
    _ = result


if __name__ == "__main__":
    main()
