"""ofasys-text: the ``TEXT`` slot type of ofasys.

Provides text preprocessing (normalisation, byte-level BPE, truncation, BART-style noising, closed answer
sets), the ``text`` block of the shared vocabulary, decoding of generated ids back to text, and the text metrics
(accuracy, exact match, BLEU, ROUGE-L). The plugin module registered with ofasys is :mod:`ofasys_text.plugin`.

Importing this package is light (no torch, no tokenizers): the classes below load on first attribute access.
"""

from __future__ import annotations

__version__ = "0.1.0"

_LAZY = {
    "TextTokenizer": "ofasys_text.tokenizer",
    "TextPreprocessor": "ofasys_text.preprocess",
    "TextPostprocessor": "ofasys_text.postprocess",
    "normalize_text": "ofasys_text.preprocess",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ofasys_text' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
