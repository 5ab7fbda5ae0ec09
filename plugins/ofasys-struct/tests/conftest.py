"""Shared fixtures: the bundled shop database, the shared vocabulary, planned STRUCT slots, sample contexts.

Helpers are fixtures (the suite runs with ``--import-mode=importlib``, so test modules cannot import this file).
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pytest

from ofasys.components import SampleContext
from ofasys.vocab import Vocabulary
from ofasys_struct import plugin
from ofasys_struct.data import build_shop_database


@pytest.fixture(scope="session")
def shop_db(tmp_path_factory) -> Path:
    """The bundled shop database (seed 0) as a real SQLite file."""
    return build_shop_database(tmp_path_factory.mktemp("db") / "shop.sqlite", seed=0)


@pytest.fixture(scope="session")
def file_hash():
    """``file_hash(path)`` -> sha256 of the file's bytes."""
    return lambda path: hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="session")
def vocab() -> Vocabulary:
    blocks = []
    plugin.ofasys_register_vocab_blocks(register=blocks.append)
    return Vocabulary(blocks)


def _make_slot(side: str = "encoder", column: str = "value", preprocess: str = "struct", **attrs):
    """A planned STRUCT slot with the attribute defaults filled in, as the core's planner makes it."""
    from ofasys.plan import SlotPlan

    values = {a.name: a.default for a in plugin.STRUCT.attributes if side in a.sides}
    values.update(attrs)
    return SlotPlan(key=column, type="STRUCT", side=side, column=column, attrs=values,
                    components={"preprocess": preprocess, "postprocess": "struct", "adaptor": "tokens"},
                    output_fields=plugin.STRUCT.output_fields, vocab_blocks=("text",))


@pytest.fixture(scope="session")
def make_slot():
    """``make_slot(side="encoder", column="value", preprocess="struct", **attrs)`` -> a planned STRUCT slot."""
    return _make_slot


@pytest.fixture(scope="session")
def make_ctx(vocab):
    """``make_ctx(row=None, split="train")`` -> a sample context on the test vocabulary."""
    return lambda row=None, split="train": SampleContext(split=split, row=dict(row or {}), rng=random.Random(0),
                                                         vocab=vocab)


@pytest.fixture(scope="session")
def decode(vocab):
    """``decode(ids)`` -> the text of shared-vocabulary ids of the text block."""
    from ofasys_text.tokenizer import TextTokenizer

    tok = TextTokenizer()
    start = vocab.block("text").start
    return lambda ids: tok.decode([i - start for i in ids]).strip()
