"""The worked example's experiment: one nano model trained jointly on TIMESERIES shape recognition and a TEXT
task (ofasys-text's word reversal), scored on held-out rows. Used by ``train.py`` and the end-to-end test."""

from __future__ import annotations

from collections import Counter

from . import data

TEXT_INSTRUCTION = "reverse the words: [TEXT:words] -> [TEXT:reversed]"


def run(steps: int = 300, out_dir: str = "runs/timeseries", seed: int = 1, n_train: int = 800,
        n_valid: int = 100, threads: int = 1) -> dict:
    """Train and evaluate; returns ``{"shape_accuracy", "reverse_exact_match", "majority_baseline", "fit"}``."""
    from ofasys import GeneralistModel, Task, Trainer
    from ofasys_text import demo as text_demo

    shape = Task(name="shape", instruction=data.SHAPE_INSTRUCTION, micro_batch_size=16, metrics=["accuracy"])
    shape.add_dataset(data.shape_rows(n_train, seed=0), "train")
    valid = data.shape_rows(n_valid, seed=1)
    shape.add_dataset(valid, "valid")
    text_train, text_valid = text_demo.splits("reverse", n_train=n_train, n_valid=n_valid)
    reverse = Task(name="reverse", instruction=TEXT_INSTRUCTION, micro_batch_size=16, metrics=["exact_match"])
    reverse.add_dataset(text_train, "train").add_dataset(text_valid, "valid")
    model = GeneralistModel("nano", init_std=0.07, normformer=False, dropout=0.0)
    fit = Trainer(max_steps=steps, lr=5e-4, warmup_steps=30, seed=seed, threads=threads, output_dir=out_dir,
                  tensorboard=False, log_every=50, eval_max_samples=None, resume=False).fit(model, [shape, reverse])
    counts = Counter(r["shape"] for r in valid)
    return {"shape_accuracy": fit.metrics["shape"]["accuracy"],
            "reverse_exact_match": fit.metrics["reverse"]["exact_match"],
            "majority_baseline": 100.0 * counts.most_common(1)[0][1] / len(valid), "fit": fit}
