"""The TEXT postprocessor: generated ids -> ``{"text": str}``."""

from __future__ import annotations

from typing import Any

from ofasys.components import Postprocessor

from .tokenizer import TextTokenizer


class TextPostprocessor(Postprocessor):
    """Decodes the ids generated for a TEXT output slot.

    ``prediction`` is a sequence of shared-vocabulary ids (a list, tuple or 1-D tensor). Decoding stops at
    the first ``</s>``; ids outside the ``text`` block (``<s>``, ``<pad>``, ``<mask>``, other blocks) are
    dropped; the text is decoded with the BPE and stripped (the preprocessor encodes a leading space).
    """

    def __init__(self, slot: Any, vocab: Any, tokenizer: TextTokenizer | None = None):
        super().__init__(slot, vocab)
        self.tokenizer = tokenizer or TextTokenizer()
        block = vocab.block("text")
        self._start, self._stop = block.start, block.stop

    def __call__(self, prediction: Any, meta: dict | None = None) -> dict:
        if hasattr(prediction, "tolist"):
            prediction = prediction.tolist()
        if isinstance(prediction, int):
            prediction = [prediction]
        local: list[int] = []
        for token in prediction:
            token = int(token)
            if token == self.vocab.eos:
                break
            if self._start <= token < self._stop:
                local.append(token - self._start)
        return {"text": self.tokenizer.decode(local).strip()}
