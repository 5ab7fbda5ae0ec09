"""Training-time noising of token sequences: BART text infilling (span masking) and random-token replacement.

Both functions are pure: they take a ``random.Random`` and return a new list, so a sample's noise is fully
determined by the per-sample generator the engine passes in ``SampleContext.rng``.
"""

from __future__ import annotations

import math
import random
from typing import Collection, Sequence

POISSON_LAMBDA = 3.0


def poisson(rng: random.Random, lam: float = POISSON_LAMBDA) -> int:
    """A Poisson(``lam``) draw (Knuth's method; fine for the small ``lam`` used for span lengths)."""
    limit = math.exp(-lam)
    k, p = 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def span_mask(ids: Sequence[int], ratio: float, rng: random.Random, mask_id: int,
              lam: float = POISSON_LAMBDA) -> list[int]:
    """BART text infilling: replace spans covering ``ceil(len(ids) * ratio)`` tokens by one ``mask_id`` each.

    Span lengths are drawn from Poisson(``lam``) (the last one cut to reach the target exactly); a zero-length
    span inserts a ``mask_id`` without removing anything, which teaches the model to predict how many tokens a
    mask stands for. Spans never touch (at least one kept token separates two masks) unless there are too
    few kept tokens, in which case neighbouring spans merge. Exactly ``ceil(len(ids) * ratio)`` tokens are
    removed; the kept tokens keep their order.
    """
    ids = list(ids)
    n = len(ids)
    if n == 0 or ratio <= 0:
        return ids
    target = min(n, math.ceil(n * ratio - 1e-9))
    lengths: list[int] = []
    covered = 0
    while covered < target:
        length = min(poisson(rng, lam), target - covered)
        lengths.append(length)
        covered += length
    kept = n - target
    while len(lengths) > 1 and len(lengths) - 1 > kept:  # not enough kept tokens to separate the spans
        last = lengths.pop()
        lengths[-1] += last
    k = len(lengths)
    spare = kept - (k - 1)  # kept tokens left after one separator between consecutive spans
    # distribute `spare` over the k + 1 gaps uniformly (stars and bars)
    cuts = sorted(rng.sample(range(spare + k), k))
    gaps, prev = [], -1
    for c in cuts:
        gaps.append(c - prev - 1)
        prev = c
    gaps.append(spare + k - 1 - prev)
    out: list[int] = []
    pos = 0
    for i, length in enumerate(lengths):
        keep = gaps[i] + (1 if i > 0 else 0)
        out.extend(ids[pos:pos + keep])
        pos += keep
        out.append(mask_id)
        pos += length
    out.extend(ids[pos:])
    return out


def replace_noise(ids: Sequence[int], ratio: float, rng: random.Random, low: int, high: int,
                  protect: Collection[int] = ()) -> list[int]:
    """Replace ``ceil(m * ratio)`` of the ``m`` unprotected tokens by a different token drawn uniformly from
    ``[low, high)``. Protected ids (``<mask>``) are left alone."""
    out = list(ids)
    candidates = [i for i, t in enumerate(out) if t not in protect]
    if not candidates or ratio <= 0 or high - low < 2:
        return out
    count = min(len(candidates), math.ceil(len(candidates) * ratio - 1e-9))
    for i in sorted(rng.sample(candidates, count)):
        r = rng.randrange(low, high - 1)
        if low <= out[i] < high and r >= out[i]:
            r += 1  # uniform over the other tokens of the range
        out[i] = r
    return out
