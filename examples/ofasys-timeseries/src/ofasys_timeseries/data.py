"""Generated series (standard library only, deterministic by seed): nothing is downloaded."""

from __future__ import annotations

import math
import random

SHAPES = ("sine", "square", "sawtooth", "ramp")
SHAPE_INSTRUCTION = "what shape is the series [TIMESERIES:series]? -> [TEXT:shape,closed_set]"


def _wave(shape: str, rng: random.Random, n: int) -> list[float]:
    period = rng.uniform(10, 24)
    phase = rng.uniform(0, 1)
    amp = rng.uniform(0.5, 3.0)
    offset = rng.uniform(-5, 5)
    noise = rng.uniform(0.0, 0.15) * amp
    out = []
    slope = rng.choice([-1, 1]) * amp * rng.uniform(0.05, 0.15)
    for i in range(n):
        t = i / period + phase
        frac = t - math.floor(t)
        if shape == "sine":
            y = math.sin(2 * math.pi * t)
        elif shape == "square":
            y = 1.0 if frac < 0.5 else -1.0
        elif shape == "sawtooth":
            y = 2 * frac - 1
        else:  # ramp: a steady trend
            y = slope * i / amp
        out.append(round(offset + amp * y + rng.gauss(0, noise), 4))
    return out


def shape_rows(n: int, seed: int = 0) -> list[dict]:
    """``n`` rows ``{"series": [...], "shape": one of SHAPES}`` of 32 to 64 samples, shapes balanced."""
    rng = random.Random(f"shape-{seed}")
    rows = []
    for i in range(n):
        shape = SHAPES[i % len(SHAPES)] if n >= len(SHAPES) else rng.choice(SHAPES)
        rows.append({"series": _wave(shape, rng, rng.randint(32, 64)), "shape": shape})
    rng.shuffle(rows)
    return rows


def demo_rows(split: str, n: int, seed: int) -> list[dict]:
    """``DemoTask.rows``: train and valid rows come from different seeds, so they never repeat."""
    return shape_rows(n, seed * 2 + (0 if split == "train" else 1) + 100)
