"""TextPostprocessor: ids -> {"text": ...}, the inverse of the preprocessor."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ofasys_text.postprocess import TextPostprocessor
from ofasys_text.preprocess import TextPreprocessor, normalize_text


@pytest.fixture(scope="module")
def pair(vocab, make_slot):
    """A decoder-side preprocessor (no truncation) and the matching postprocessor."""
    return (TextPreprocessor(make_slot(side="decoder", max_length=0), vocab),
            TextPostprocessor(make_slot(side="decoder"), vocab))


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=200))
def test_inverts_the_preprocessor(pair, make_ctx, text):
    pre, post = pair
    ids = pre(text, make_ctx("test")).ids
    assert post(ids, {}) == {"text": normalize_text(text)}


def test_drops_ids_outside_the_text_block_and_stops_at_eos(vocab, pair, make_ctx):
    pre, post = pair
    ids = pre("a red kite", make_ctx()).ids
    bins = vocab.block("bin").start
    noisy = [vocab.bos, ids[0], bins + 3, vocab.mask, *ids[1:], vocab.pad]
    assert post(noisy, {})["text"] == "a red kite"
    assert post([vocab.bos, *ids, vocab.eos, *pre("junk", make_ctx()).ids], {})["text"] == "a red kite"
    assert post([], {})["text"] == ""


def test_accepts_tensors(vocab, pair, make_ctx):
    torch = pytest.importorskip("torch")
    pre, post = pair
    ids = pre("two dogs", make_ctx()).ids
    assert post(torch.tensor(ids + [vocab.eos, vocab.pad]), {})["text"] == "two dogs"
