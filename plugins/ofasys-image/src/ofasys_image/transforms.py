"""Geometric transforms of an image and of the boxes that go with it.

The IMAGE preprocessor crops (training-time ``resized_crop``/``randaug`` only), resizes to a square of
``patch_image_size`` pixels and may flip horizontally. It records what it did as a plain dict in
``SampleContext.state`` (JSON-able, so it travels in batch metadata)::

    {"column": "img", "orig": [W0, H0], "crop": [x, y, w, h], "flip": False, "size": S}

``crop`` is in pixels of the original image (after EXIF orientation). The BOX preprocessor moves boxes with
:func:`forward_box`; the BOX postprocessor maps predicted boxes back to original pixels with
:func:`inverse_box`. Pure Python.
"""

from __future__ import annotations

import math
import random
from typing import Sequence

Box = list  # [x0, y0, x1, y1]


def identity_record(column: str, width: int, height: int, size: int) -> dict:
    """The record of a plain resize of a ``width`` x ``height`` image to ``size`` x ``size``."""
    return {"column": column, "orig": [width, height], "crop": [0.0, 0.0, float(width), float(height)],
            "flip": False, "size": int(size)}


def forward_box(box: Sequence[float], record: dict) -> Box:
    """A box in original-image pixels -> pixels of the transformed ``size`` x ``size`` image (not clipped)."""
    cx, cy, cw, ch = record["crop"]
    s = record["size"]
    x0, y0, x1, y1 = ((box[0] - cx) * s / cw, (box[1] - cy) * s / ch, (box[2] - cx) * s / cw,
                      (box[3] - cy) * s / ch)
    if record["flip"]:
        x0, x1 = s - x1, s - x0
    return [x0, y0, x1, y1]


def inverse_box(box: Sequence[float], record: dict) -> Box:
    """A box in pixels of the transformed image -> original-image pixels (ordered, clipped to the image)."""
    cx, cy, cw, ch = record["crop"]
    s = record["size"]
    x0, y0, x1, y1 = (float(v) for v in box)
    x0, x1 = min(x0, x1), max(x0, x1)
    y0, y1 = min(y0, y1), max(y0, y1)
    if record["flip"]:
        x0, x1 = s - x1, s - x0
    w, h = record["orig"]
    out = [x0 * cw / s + cx, y0 * ch / s + cy, x1 * cw / s + cx, y1 * ch / s + cy]
    return [min(max(out[0], 0.0), w), min(max(out[1], 0.0), h), min(max(out[2], 0.0), w), min(max(out[3], 0.0), h)]


def clip_box(box: Sequence[float], width: float, height: float) -> Box:
    return [min(max(float(box[0]), 0.0), width), min(max(float(box[1]), 0.0), height),
            min(max(float(box[2]), 0.0), width), min(max(float(box[3]), 0.0), height)]


def quantize(box_t: Sequence[float], size: int, num_bins: int) -> list[int]:
    """Transformed-image pixels -> bin indices ``round(c / size * (num_bins - 1))`` (OFA's quantisation)."""
    top = num_bins - 1
    return [min(top, max(0, int(round(c / size * top)))) for c in box_t]


def dequantize(bins: Sequence[int], size: int, num_bins: int) -> Box:
    top = max(num_bins - 1, 1)
    return [b / top * size for b in bins]


def random_resized_crop(width: int, height: int, rng: random.Random, scale=(0.5, 1.0), ratio=(3 / 4, 4 / 3),
                        keep: Sequence[Sequence[float]] = (), tries: int = 10) -> list[float]:
    """``[x, y, w, h]`` of a random crop covering ``scale`` of the area with aspect ``ratio`` (torchvision's
    RandomResizedCrop sampling, drawn from ``rng``) that contains every box of ``keep``; the whole image when
    no such crop is found in ``tries`` draws."""
    area = width * height
    log_r = (math.log(ratio[0]), math.log(ratio[1]))
    if keep:
        kx0 = min(b[0] for b in keep)
        ky0 = min(b[1] for b in keep)
        kx1 = max(b[2] for b in keep)
        ky1 = max(b[3] for b in keep)
    for _ in range(tries):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_r))
        w = math.sqrt(target * aspect)
        h = math.sqrt(target / aspect)
        if not (0 < w <= width and 0 < h <= height):
            continue
        if keep:
            if w < kx1 - kx0 or h < ky1 - ky0:
                continue
            # x must satisfy x <= kx0 and x + w >= kx1, within the image
            lo_x, hi_x = max(0.0, kx1 - w), min(kx0, width - w)
            lo_y, hi_y = max(0.0, ky1 - h), min(ky0, height - h)
            if lo_x > hi_x or lo_y > hi_y:
                continue
            x, y = rng.uniform(lo_x, hi_x), rng.uniform(lo_y, hi_y)
        else:
            x, y = rng.uniform(0, width - w), rng.uniform(0, height - h)
        return [x, y, w, h]
    return [0.0, 0.0, float(width), float(height)]
