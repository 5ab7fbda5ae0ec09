"""Phones: the inventory of the ``phone`` vocabulary block, the shipped lexicon (offline grapheme-to-phoneme)
and the PHONE slot's preprocessor and postprocessor.

Phones are espeak-ng's ASCII phoneme mnemonics (``espeak-ng -x``, stress marks removed), written space-separated
with ``|`` between words: ``"t 3: n | l E f t"``. The lexicon ``data/lexicon.tsv`` (word TAB phones) was written
by ``scripts/make_corpus.py`` from espeak-ng's output for the bundled corpus; it is the G2P of the ``g2p``
attribute and of the CTC branch when rows carry no ``phones`` column. No G2P runs at training or inference time.

Torch-free (the CTC criterion imports it in the main process).
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

from ofasys.components import Postprocessor, Preprocessor, SampleContext, Tokens
from ofasys.errors import DataError

DATA = Path(__file__).resolve().parent / "data"
WORD_SEP = "|"
# espeak-ng's English phoneme mnemonics (consonants, vowels, diphthongs and their variants); the shipped
# lexicon uses a subset. A fixed list keeps the vocabulary (and checkpoints) independent of the lexicon.
ESPEAK_EN_PHONES = (
    "p", "b", "t", "d", "k", "g", "f", "v", "T", "D", "s", "z", "S", "Z", "h", "tS", "dZ", "m", "n", "N", "l", "r",
    "w", "j", "t2", "d2", "n-", "l-", "r-", "?", "x", "C",
    "a", "a#", "A:", "A@", "aI", "aI@", "aU", "aU@", "E", "e@", "eI", "E2", "E3", "@", "@2", "@5", "@L", "3", "3:",
    "i", "i:", "i@", "i@3", "I", "I2", "I#", "0", "O", "O:", "O@", "O2", "OI", "o@", "oU", "o", "u", "u:", "u@",
    "U", "U@", "V", "a2", "aa", "e", "y",
)
PHONES: tuple[str, ...] = ESPEAK_EN_PHONES + (WORD_SEP,)
MAX_PHONES = 512  # longest generated phone sequence


@functools.lru_cache(maxsize=1)
def lexicon() -> dict[str, str]:
    """word -> phones (space-separated) from the shipped ``data/lexicon.tsv``."""
    out = {}
    with open(DATA / "lexicon.tsv") as f:
        for line in f:
            if line.strip():
                word, phones = line.rstrip("\n").split("\t")
                out[word] = phones
    return out


def g2p(text: str) -> str:
    """English text -> phones through the shipped lexicon; an unknown word raises :class:`DataError`."""
    lex = lexicon()
    words = re.findall(r"[a-z']+", text.lower())
    if not words:
        raise DataError(f"no words to convert to phones in {text!r}")
    missing = [w for w in words if w not in lex]
    if missing:
        raise DataError(f"no pronunciation for {missing[0]!r} in the shipped lexicon ({len(lex)} words, "
                        f"{DATA / 'lexicon.tsv'}); give phones in the column instead (space-separated espeak-ng "
                        "phonemes, '|' between words)")
    return f" {WORD_SEP} ".join(lex[w] for w in words)


def split_phones(value: Any) -> list[str]:
    if isinstance(value, (list, tuple)):
        return [str(p) for p in value]
    if not isinstance(value, str):
        raise DataError(f"a PHONE value must be a string of space-separated phones or a list, not "
                        f"{type(value).__name__}")
    return value.split()


def phone_ids(phones: list[str], vocab) -> list[int]:
    """Phones -> ids of the ``phone`` block; an unknown phone raises :class:`DataError`."""
    block = vocab.block("phone")
    index = _index()
    ids = []
    for p in phones:
        if p not in index:
            raise DataError(f"unknown phone {p!r}; the phone inventory is espeak-ng's English mnemonics "
                            f"({' '.join(PHONES[:12])} ...) and '|' between words")
        ids.append(block.start + index[p])
    return ids


@functools.lru_cache(maxsize=1)
def _index() -> dict[str, int]:
    return {p: i for i, p in enumerate(PHONES)}


class PhonePreprocessor(Preprocessor):
    """A PHONE value (phones, or English text with ``g2p``) -> ids of the ``phone`` block. On the input side at
    training time, ``mask_ratio`` replaces that fraction of the phones by ``<mask>``."""

    def __call__(self, value: Any, ctx: SampleContext) -> Tokens:
        attrs = self.slot.attrs or {}
        if attrs.get("g2p"):
            if not isinstance(value, str):
                raise DataError(f"g2p needs English text, not {type(value).__name__}")
            value = g2p(value)
        ids = phone_ids(split_phones(value), self.vocab)
        ratio = float(attrs.get("mask_ratio") or 0.0)
        if ratio > 0 and ctx.training and self.slot.side == "encoder" and ids:
            n = max(1, int(round(ratio * len(ids))))
            for i in ctx.rng.sample(range(len(ids)), min(n, len(ids))):
                ids[i] = self.vocab.mask
        return Tokens(ids=ids)

    def constraint(self, ctx: SampleContext | None = None):
        from ofasys.generation.constraints import Block

        return Block(self.vocab.block("phone").ids(), 1, MAX_PHONES)


class PhonePostprocessor(Postprocessor):
    """Generated ids -> ``{"phones": "t 3: n | l E f t"}`` (ids outside the phone block are dropped)."""

    def __call__(self, prediction: Any, meta: dict) -> dict:
        block = self.vocab.block("phone")
        phones = [PHONES[i - block.start] for i in prediction if block.start <= i < block.stop]
        return {"phones": " ".join(phones)}
