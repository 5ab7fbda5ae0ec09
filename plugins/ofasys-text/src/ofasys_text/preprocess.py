"""The TEXT preprocessor: one column value (or a plain-text literal) -> ids in the shared vocabulary."""

from __future__ import annotations

import functools
import sys
import unicodedata
from typing import Any

from ofasys.components import Preprocessor, SampleContext, Tokens
from ofasys.errors import ConfigError, DataError, PlanError

from .noise import replace_noise, span_mask
from .tokenizer import ENV_VAR, TextTokenizer

BLOCK = "text"
_SPACE_LIKE = "/\\_|"  # punctuation that separates words: becomes a space under no_punctuation


@functools.lru_cache(maxsize=1)
def _punctuation_table() -> dict[int, str | None]:
    """``str.translate`` table for ``no_punctuation``: every Unicode punctuation character (category ``P*``)
    is removed, except dashes (``Pd``) and ``/ \\ _ |`` which become a space (``state-of-the-art`` ->
    ``state of the art``). Symbols (``$ + = ...``) are kept."""
    table: dict[int, str | None] = {}
    for cp in range(sys.maxunicode + 1):
        cat = unicodedata.category(chr(cp))
        if cat == "Pd":
            table[cp] = " "
        elif cat[0] == "P":
            table[cp] = None
    for ch in _SPACE_LIKE:
        table[ord(ch)] = " "
    return table


def normalize_text(text: str, uncased: bool = False, no_punctuation: bool = False) -> str:
    """Apply the TEXT normalisations: lower-case (``uncased``), drop punctuation (``no_punctuation``), and
    always collapse runs of whitespace to one space and strip both ends."""
    if uncased:
        text = text.lower()
    if no_punctuation:
        text = text.translate(_punctuation_table())
    return " ".join(text.split())


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _constraints():
    from ofasys.generation import constraints

    return constraints


class TextPreprocessor(Preprocessor):
    """Preprocessor of a ``TEXT`` slot (built by :func:`ofasys_text.plugin.ofasys_preprocess`).

    Per sample: normalise (``uncased``, ``no_punctuation``, whitespace), encode with the byte-level BPE (each
    piece is encoded with a leading space, so a word has the same token wherever it appears and pieces decode
    to space-separated text), move the ids into the ``text`` block of the shared vocabulary, truncate to
    ``max_length`` and, on the encoder side in the training split only, apply ``mask_ratio`` (BART span
    masking with ``<mask>``) then ``noise_ratio`` (random-token replacement), both drawn from ``ctx.rng``.
    No BOS/EOS is added: the core adds them per merged sequence.

    A plain-text literal (``slot.literal`` set) ignores the value, is not normalised, truncated or noised, is
    never in the loss, and is forced on the decoder side. On the decoder side the decoding constraint is
    ``Fixed(ids)`` for a literal, ``Trie(answers)`` for a ``closed_set`` slot (whose label smoothing is also
    confined to the answers' tokens) and ``None`` (free text) otherwise.
    """

    def __init__(self, slot: Any, vocab: Any, tokenizer: TextTokenizer | None = None):
        super().__init__(slot, vocab)
        self.tokenizer = tokenizer or TextTokenizer()
        self._check_vocab()
        attrs = dict(getattr(slot, "attrs", None) or {})
        self.column = getattr(slot, "column", None)
        self.side = getattr(slot, "side", "encoder")
        self.literal: str | None = getattr(slot, "literal", None)
        self.max_length = int(attrs.get("max_length") or 0)
        self.uncased = bool(attrs.get("uncased", False))
        self.no_punctuation = bool(attrs.get("no_punctuation", False))
        self.mask_ratio = float(attrs.get("mask_ratio") or 0.0)
        self.noise_ratio = float(attrs.get("noise_ratio") or 0.0)
        self.no_loss = bool(attrs.get("no_loss", False))
        if self.max_length < 0:
            raise PlanError(f"{self._where()}: max_length must be >= 0 (0 = no limit), not {self.max_length}")
        for name in ("mask_ratio", "noise_ratio"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise PlanError(f"{self._where()}: {name} must be between 0 and 1, not {value}")
        block = self.vocab.block(BLOCK)
        self._start, self._stop = block.start, block.stop

        self._literal_ids: list[int] | None = None
        self.answers: dict[str, list[int]] | None = None
        self.smoothing_ids: tuple[int, ...] | None = None
        self._constraint: Any = None
        if self.literal is not None:
            self._literal_ids = self.encode(self.literal)
            if self.side == "decoder":
                self._constraint = _constraints().Fixed(list(self._literal_ids))
            return
        closed = attrs.get("closed_set")
        if closed is True:
            raise PlanError(
                f"{self._where()}: closed_set was given as a bare flag, but the answers were not gathered from "
                "the training data. The engine must replace slot.attrs['closed_set'] with the list of distinct "
                "training values before building the preprocessor; or write closed_set=\"a|b|c\".")
        if isinstance(closed, str):  # tolerate an unconverted 'a|b|c' (the planner normally gives a list)
            closed = [a for a in closed.split("|") if a]
        if closed:
            if self.side != "decoder":
                raise PlanError(f"{self._where()}: closed_set is only valid on an output (decoder) slot")
            self.answers = {}
            for answer in closed:
                norm = self.normalize(str(answer))
                if norm and norm not in self.answers:
                    self.answers[norm] = self.encode(norm)
            if not self.answers:
                raise PlanError(f"{self._where()}: closed_set has no non-empty answer")
            self.smoothing_ids = tuple(sorted({i for ids in self.answers.values() for i in ids}))
            self._constraint = _constraints().Trie([list(ids) for ids in self.answers.values()])

    # ------------------------------------------------------------------------------------------ helpers
    def _where(self) -> str:
        if self.literal is not None:
            return f"plain text {self.literal!r}"
        return f"TEXT slot of column '{self.column}'"

    def _check_vocab(self) -> None:
        if not self.vocab.has_block(BLOCK):
            raise ConfigError("the model's vocabulary has no 'text' block: it was not built with the TEXT slot type")
        block = self.vocab.block(BLOCK)
        if block.size != len(self.tokenizer) or block.digest != self.tokenizer.digest():
            raise ConfigError(
                f"the model's 'text' vocabulary block ({block.size} tokens, digest {block.digest}) does not match "
                f"the text tokenizer {self.tokenizer.path} ({len(self.tokenizer)} tokens, digest "
                f"{self.tokenizer.digest()}). Use the tokenizer the model was trained with (set or unset {ENV_VAR}).")

    def normalize(self, text: str) -> str:
        """The slot's normalisation of ``text`` (``uncased``, ``no_punctuation``, whitespace)."""
        return normalize_text(text, self.uncased, self.no_punctuation)

    def encode(self, text: str) -> list[int]:
        """Shared-vocabulary ids of already normalised ``text`` (leading space added; no truncation)."""
        if not text:
            return []
        start = self._start
        return [start + i for i in self.tokenizer.encode(" " + text)]

    # ------------------------------------------------------------------------------------------ per sample
    def __call__(self, value: Any, ctx: SampleContext) -> Tokens:
        if self._literal_ids is not None:
            return Tokens(list(self._literal_ids), loss=False, constraint=self._constraint,
                          forced=self.side == "decoder")
        if not isinstance(value, str):
            kind = "missing (None)" if value is None else f"a {type(value).__name__} ({_describe(value)})"
            raise DataError(f"column '{self.column}' of a TEXT slot must hold a string, but the value is {kind}")
        text = self.normalize(value)
        loss = not self.no_loss
        if self.answers is not None:
            ids = self.answers.get(text)
            if ids is None:
                if ctx.training:
                    examples = ", ".join(repr(a) for a in list(self.answers)[:5])
                    more = ", ..." if len(self.answers) > 5 else ""
                    raise DataError(
                        f"column '{self.column}': {_describe(text)} is not in the closed set of "
                        f"{len(self.answers)} answers ({examples}{more})")
                # evaluation: keep the sample (its reference still scores predictions), teacher-forced as is
                ids = self._truncate(self.encode(text))
            return Tokens(list(ids), loss=loss, constraint=self._constraint, smoothing_ids=self.smoothing_ids)
        ids = self._truncate(self.encode(text))
        if ctx.training and self.side == "encoder":
            if self.mask_ratio > 0:
                ids = span_mask(ids, self.mask_ratio, ctx.rng, self.vocab.mask)
            if self.noise_ratio > 0:
                ids = replace_noise(ids, self.noise_ratio, ctx.rng, self._start, self._stop,
                                    protect=(self.vocab.mask,))
        return Tokens(ids, loss=loss)

    def _truncate(self, ids: list[int]) -> list[int]:
        return ids[:self.max_length] if self.max_length else ids

    def target_placeholder(self, ctx: SampleContext) -> Tokens:
        """At inference: no ids yet, the slot's decoding constraint (``Fixed`` for a literal, ``Trie`` for a
        closed set, ``None`` for free text) and its smoothing ids."""
        return Tokens(ids=[], loss=not self.no_loss and self.literal is None, constraint=self._constraint,
                      forced=self.literal is not None and self.side == "decoder", smoothing_ids=self.smoothing_ids)

    def constraint(self, ctx: SampleContext | None = None) -> Any:
        """The decoding constraint of this slot as an output (``None``: free text)."""
        return self._constraint
