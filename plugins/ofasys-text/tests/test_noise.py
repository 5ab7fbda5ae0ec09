"""BART span masking and random-token replacement."""

from __future__ import annotations

import math
import random
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from ofasys_text.noise import poisson, replace_noise, span_mask

MASK = 4


def _is_subsequence(small, big) -> bool:
    it = iter(big)
    return all(any(x == y for y in it) for x in small)


@settings(max_examples=300, deadline=None)
@given(n=st.integers(0, 200), ratio=st.floats(0, 1), seed=st.integers(0, 2**32))
def test_span_mask_properties(n, ratio, seed):
    ids = list(range(100, 100 + n))
    out = span_mask(ids, ratio, random.Random(seed), MASK)
    kept = [t for t in out if t != MASK]
    expected_removed = min(n, math.ceil(n * ratio - 1e-9)) if n and ratio > 0 else 0
    assert len(kept) == n - expected_removed
    assert _is_subsequence(kept, ids)
    if expected_removed:
        assert MASK in out
        assert all(not (a == MASK and b == MASK) for a, b in zip(out, out[1:])), "masks never touch"
    else:
        assert out == ids
    assert out == span_mask(ids, ratio, random.Random(seed), MASK), "deterministic given the rng"


def test_span_lengths_follow_poisson_3():
    rng = random.Random(1)
    draws = [poisson(rng, 3.0) for _ in range(20000)]
    mean = sum(draws) / len(draws)
    assert abs(mean - 3.0) < 0.1
    assert abs(Counter(draws)[0] / len(draws) - math.exp(-3)) < 0.01


def test_span_mask_uses_few_masks_for_many_tokens():
    ids = list(range(100, 1100))
    out = span_mask(ids, 0.3, random.Random(0), MASK)
    masks = out.count(MASK)
    assert 60 < masks < 150  # about 300 tokens / mean span length 3, plus zero-length insertions


@settings(max_examples=200, deadline=None)
@given(n=st.integers(0, 100), ratio=st.floats(0, 1), seed=st.integers(0, 2**32))
def test_replace_noise_properties(n, ratio, seed):
    ids = [MASK if i % 7 == 3 else 1000 + i for i in range(n)]
    out = replace_noise(ids, ratio, random.Random(seed), 1000, 9000, protect=(MASK,))
    assert len(out) == n
    candidates = [i for i, t in enumerate(ids) if t != MASK]
    changed = [i for i, (a, b) in enumerate(zip(ids, out)) if a != b]
    expected = math.ceil(len(candidates) * ratio - 1e-9) if candidates and ratio > 0 else 0
    assert len(changed) == expected
    assert all(ids[i] != MASK and 1000 <= out[i] < 9000 for i in changed)
