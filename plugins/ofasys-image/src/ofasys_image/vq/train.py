"""Training an image tokenizer: ``ofasys-image train-vq --data shapes|DIR --out FILE.json``.

``--data shapes`` draws images from the bundled shapes generator (half single large shapes as the text-to-image
task uses, half 1-3 object scenes, both at ``--image-size``); a directory is read recursively (png, jpg, jpeg,
bmp, gif, webp), each image resized to a square. Deterministic by ``--seed`` on CPU.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Callable

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")


def shapes_images(n: int, seed: int = 0, size: int = 32) -> list:
    """``n`` PIL images from the shapes generator: even indices one large shape (text-to-image style), odd ones a
    scene of 1-3 smaller shapes."""
    from ..datasets import shapes_scene
    from ..generation import SHAPE_FRAC

    rng = random.Random(f"vq:{seed}")
    out = []
    for i in range(n):
        if i % 2 == 0:
            out.append(shapes_scene(rng, size, 1, 1, *SHAPE_FRAC)["image"])
        else:
            out.append(shapes_scene(rng, size, 1, 3)["image"])
    return out


def folder_images(path: "str | Path") -> list[Path]:
    files = sorted(p for p in Path(path).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"{path}: no image files ({', '.join(IMAGE_SUFFIXES)})")
    return files


def train_vq(data: "str | list" = "shapes", out: "str | Path | None" = None, codebook_size: int = 256,
             image_size: int = 32, downsample: int = 2, code_dim: int = 32, channels: int = 64, steps: int = 2000,
             batch_size: int = 64, lr: float = 2e-3, seed: int = 0, n_images: int = 4000,
             log: Callable[[str], None] | None = None):
    """Train a :class:`~ofasys_image.vq.model.VQAutoencoder`; save it to ``out`` when given; returns the model.

    ``data``: ``"shapes"``, a directory of images, or a list of PIL images."""
    import torch

    from .model import VQAutoencoder, psnr, to_pixels

    torch.manual_seed(seed)
    if isinstance(data, str) and data == "shapes":
        images = shapes_images(n_images, seed, image_size)
        source = f"shapes generator ({n_images} images, seed {seed})"
    elif isinstance(data, (str, Path)):
        from ..io import load_image

        files = folder_images(data)
        images = [load_image(str(f), str(f)) for f in files]
        source = f"folder {data} ({len(images)} images)"
    else:
        images = list(data)
        source = f"{len(images)} images given in Python"
    x_all = to_pixels(images, image_size)
    model = VQAutoencoder(codebook_size, code_dim, channels, downsample, image_size)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 50) * (0.1 + 0.9 * max(0.0, 1 - s / max(steps, 1))))
    gen = torch.Generator().manual_seed(seed)
    start = time.time()
    model.train()
    for step in range(1, steps + 1):
        idx = torch.randint(0, len(x_all), (min(batch_size, len(x_all)),), generator=gen)
        x = x_all[idx]
        if step % 2 == 0:  # horizontal flips: twice the data for free
            x = x.flip(-1)
        recon, parts = model(x)
        opt.zero_grad(set_to_none=True)
        parts["loss"].backward()
        opt.step()
        sched.step()
        if log and (step % max(1, steps // 10) == 0 or step == 1):
            log(f"step {step}/{steps} loss {float(parts['loss']):.4f} recon {float(parts['recon']):.4f} "
                f"psnr {float(psnr(recon.detach().clamp(-1, 1), x).mean()):.2f} codes used {parts['used']} "
                f"({time.time() - start:.0f}s)")
    model.eval()
    if out is not None:
        model.save(out, {"trained_on": source, "steps": steps, "batch_size": batch_size, "lr": lr, "seed": seed})
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ofasys-image", description="ofasys-image tools")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train-vq", help="train an image tokenizer (for [IMAGE:x,preprocess=image_vqgan,"
                                          "tokenizer=FILE.json]) on the shapes generator or an image folder")
    p.add_argument("--data", default="shapes", help="'shapes' (bundled generator) or a directory of images")
    p.add_argument("--out", required=True, help="output .json (the .safetensors is written next to it) or directory")
    p.add_argument("--codebook-size", type=int, default=256)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--downsample", type=int, default=2, help="stride-2 stages: codes per side = size / 2**this")
    p.add_argument("--code-dim", type=int, default=32)
    p.add_argument("--channels", type=int, default=64)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--images", type=int, default=4000, help="images drawn from the shapes generator")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        model = train_vq(args.data, args.out, args.codebook_size, args.image_size, args.downsample, args.code_dim,
                         args.channels, args.steps, args.batch_size, args.lr, args.seed, args.images,
                         log=lambda m: print(m, flush=True))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from .model import reconstruction_psnr

    held = shapes_images(200, args.seed + 100_003, args.image_size)
    print(json.dumps({"out": str(args.out), "codebook_size": model.codebook_size, "grid": model.grid,
                      "held_out_shapes_psnr": round(reconstruction_psnr(model, held), 2)}))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
