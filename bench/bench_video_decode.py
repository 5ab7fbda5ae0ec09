"""Is video decoding the bottleneck of a training step on CPU? Decoding throughput vs one nano training step.

Clips are the bundled generated ones (``ofasys_video.data``: real H.264 mp4, 8-12 frames) at ``--size`` px,
read from files on disk. Timed, interleaved and as medians of ``--steps`` repetitions:

* ``decode all``: decord opens each clip of a micro-batch and decodes every frame (raw decoder throughput);
* ``preprocess``: what a DataLoader worker does per micro-batch: the VIDEO preprocessor (open, sample
  ``--frames`` frames, decode them, resize, normalise) for every clip, then collate;
* ``train step``: forward + backward + AdamW of a ``nano`` model on that collated micro-batch (the direction
  task: frames through the shared ``image_patch`` adaptor, 4 frames x 16 cells).

Printed: frames per second of each, and the ratio ``preprocess / train step``: below 1, one worker keeps up with
training (and the engine's DataLoader can add workers); the share of a step spent in decoding is what a
single-process run (``num_workers=0``) pays on top of compute.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_video_decode.py --threads 1
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path


def median_times(fns, steps: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        for fn in fns:
            fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(steps):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            times[i].append(time.perf_counter() - t0)
    return [statistics.median(t) for t in times]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=16, help="clips per micro-batch")
    ap.add_argument("--frames", type=int, default=4, help="frames sampled per clip (num_frames)")
    ap.add_argument("--size", type=int, default=32, help="frame side in pixels (clips and patch_image_size)")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from ofasys import GeneralistModel, Task, Trainer
    from ofasys_video import data, tasks
    from ofasys_video.decode import open_video

    tmp = Path(tempfile.mkdtemp(prefix="bench-video-"))
    rows = data.clip_rows(args.batch * 4, seed=0, size=args.size, out_dir=tmp)
    video = (f"[VIDEO:clip,num_frames={args.frames},patch_image_size={args.size},frame_adaptor=image_patch]")
    task = Task("direction", tasks.instruction("direction", video), micro_batch_size=args.batch)
    task.add_dataset(rows, "train")
    model = GeneralistModel("nano", init_std=0.07, normformer=False, dropout=0.0)
    trainer = Trainer(threads=args.threads, seed=0, tensorboard=False)
    rt = trainer.prepare(model, [task])
    opt = trainer._optimizer(model)
    pipe = rt.pipelines["direction"]
    rng = random.Random(0)
    state = {"k": 0}

    def batch_rows():
        k = state["k"] = (state["k"] + 1) % 4
        return rows[k * args.batch:(k + 1) * args.batch]

    total_frames = {"n": 0}

    def decode_all():
        n = 0
        for r in batch_rows():
            c = open_video(r["clip"])
            n += c.frames(list(range(len(c)))).shape[0]
        total_frames["n"] = n

    def preprocess():
        return pipe.collate([pipe.make_sample(r, "train", random.Random(rng.random())) for r in batch_rows()])

    fixed = preprocess()
    model.train()

    def train_step():
        opt.zero_grad(set_to_none=True)
        loss, _ = rt.loss(fixed)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    t_dec, t_pre, t_step = median_times([decode_all, preprocess, train_step], args.steps, args.warmup)
    sampled = args.batch * args.frames
    print(f"clips {args.size}x{args.size} px, 8-12 frames; micro-batch {args.batch} clips x {args.frames} sampled "
          f"frames; nano; {args.threads} thread(s); medians of {args.steps}")
    print(f"decode all frames : {t_dec * 1e3:8.1f} ms/batch  {total_frames['n'] / t_dec:8.0f} frames/s")
    print(f"preprocess+collate: {t_pre * 1e3:8.1f} ms/batch  {sampled / t_pre:8.0f} sampled frames/s")
    print(f"train step        : {t_step * 1e3:8.1f} ms/batch  {sampled / t_step:8.0f} sampled frames/s")
    print(f"ratio preprocess / train step = {t_pre / t_step:.2f}  "
          f"(decoding share of a single-process step: {t_pre / (t_pre + t_step):.0%})")


if __name__ == "__main__":
    main()
