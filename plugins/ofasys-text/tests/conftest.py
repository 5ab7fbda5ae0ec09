"""Shared fixtures: the shipped tokenizer's vocabulary, planned TEXT slots, sample contexts.

Helpers are fixtures (the suite runs with ``--import-mode=importlib``, so test modules cannot import this
file). The decoding-constraint classes (``ofasys.generation.constraints``) belong to the core; the
preprocessor tests that build decoder literals or closed sets replace them with the small stand-ins below
(fixture ``fake_constraints``), so that they check what this plugin asks for (which ids, in which constraint
kind) independently of the core's implementation. ``test_plugin.py`` exercises the real classes.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from types import SimpleNamespace

import pytest

from ofasys.components import SampleContext
from ofasys.spec import VocabBlock
from ofasys.vocab import Vocabulary
from ofasys_text import plugin, preprocess


@dataclass
class FakeFixed:
    ids: list


@dataclass
class FakeTrie:
    sequences: list


FAKE_CONSTRAINTS = SimpleNamespace(Fixed=FakeFixed, Trie=FakeTrie)


@pytest.fixture
def fake_constraints(monkeypatch):
    """Swap the core's constraint classes for the stand-ins (needed by decoder literals and closed sets)."""
    monkeypatch.setattr(preprocess, "_constraints", lambda: FAKE_CONSTRAINTS)
    return FAKE_CONSTRAINTS


def text_block() -> VocabBlock:
    blocks: list[VocabBlock] = []
    plugin.ofasys_register_vocab_blocks(register=blocks.append)
    (block,) = blocks
    return block


@pytest.fixture(scope="session")
def vocab() -> Vocabulary:
    """Specials, a 10-token ``bin`` block (sorted before ``text``), then the text block: text ids start at 15."""
    return Vocabulary([text_block(), VocabBlock("bin", tuple(f"{i}" for i in range(10)))])


def _make_slot(side: str = "encoder", column: str | None = "q", literal: str | None = None, **attrs):
    """A planned TEXT slot with the attribute defaults filled in, as the core's planner makes it."""
    from ofasys.plan import SlotPlan

    values = {a.name: a.default for a in plugin.TEXT.attributes}
    values.update(attrs)
    return SlotPlan(key=column or "text#1", type="TEXT", side=side, column=None if literal else column,
                    attrs=values, components={"preprocess": "text", "postprocess": "text"}, literal=literal)


def _make_ctx(vocab: Vocabulary, split: str = "train", seed: int = 0) -> SampleContext:
    return SampleContext(split=split, row={}, rng=random.Random(seed), vocab=vocab)


@pytest.fixture(scope="session")
def make_slot():
    """``make_slot(side="encoder", column="q", literal=None, **attrs)`` -> a planned TEXT slot."""
    return _make_slot


@pytest.fixture(scope="session")
def make_ctx(vocab):
    """``make_ctx(split="train", seed=0)`` -> a sample context on the test vocabulary."""
    return lambda split="train", seed=0: _make_ctx(vocab, split, seed)
