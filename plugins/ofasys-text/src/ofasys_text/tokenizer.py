"""The byte-level BPE tokenizer behind the ``text`` vocabulary block.

The shipped tokenizer (``data/tokenizer.json``, 8192 tokens, built by ``scripts/build_tokenizer.py``) is used
unless the environment variable ``OFASYS_TEXT_TOKENIZER`` names another ``tokenizer.json`` (a file saved by
the Hugging Face ``tokenizers`` library). The variable is read when the vocabulary block is registered and when
a preprocessor or postprocessor is built; preprocessors keep the resolved path, so DataLoader workers use the
same file whatever their environment.

Listing the vocabulary (:func:`load_vocab_tokens`) reads the JSON file with :mod:`json` only; the
``tokenizers`` library is imported the first time text is actually encoded or decoded.
"""

from __future__ import annotations

import functools
import json
import os
import threading
from pathlib import Path
from typing import Any, Iterable

from ofasys.errors import ConfigError

ENV_VAR = "OFASYS_TEXT_TOKENIZER"
DEFAULT_TOKENIZER = Path(__file__).resolve().parent / "data" / "tokenizer.json"

_LOADED: dict[str, Any] = {}  # path -> tokenizers.Tokenizer, one per process
_LOCK = threading.Lock()


def tokenizer_path() -> str:
    """The tokenizer file in use: ``$OFASYS_TEXT_TOKENIZER`` when set, else the shipped one (absolute path)."""
    raw = os.environ.get(ENV_VAR, "").strip()
    if not raw:
        return str(DEFAULT_TOKENIZER)
    path = Path(raw).expanduser().resolve()
    if not path.is_file():
        raise ConfigError(f"{ENV_VAR}={raw!r} does not name a file; it must point to a tokenizer.json "
                          "saved by the Hugging Face tokenizers library (or be unset to use the shipped one)")
    return str(path)


@functools.lru_cache(maxsize=8)
def load_vocab_tokens(path: str) -> tuple[str, ...]:
    """The token strings of the tokenizer file at ``path``, ordered by id (ids must be ``0..n-1``).

    Reads the JSON only (no ``tokenizers`` import). BPE and WordPiece files (``model.vocab`` a mapping) and
    Unigram files (``model.vocab`` a list of ``[token, score]``) are understood; ``added_tokens`` are included.
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        vocab = data["model"]["vocab"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"cannot read the text tokenizer {path}: {type(exc).__name__}: {exc}") from exc
    by_id: dict[int, str] = {}
    if isinstance(vocab, dict):
        for token, idx in vocab.items():
            by_id[int(idx)] = token
    elif isinstance(vocab, list):
        for idx, entry in enumerate(vocab):
            by_id[idx] = entry[0] if isinstance(entry, (list, tuple)) else str(entry)
    else:
        raise ConfigError(f"the text tokenizer {path} has an unsupported model.vocab ({type(vocab).__name__})")
    for added in data.get("added_tokens") or []:
        by_id.setdefault(int(added["id"]), added["content"])
    if sorted(by_id) != list(range(len(by_id))):
        raise ConfigError(f"the text tokenizer {path} has non-contiguous token ids; ids must be 0..n-1")
    tokens = tuple(by_id[i] for i in range(len(by_id)))
    if len(set(tokens)) != len(tokens):
        raise ConfigError(f"the text tokenizer {path} has duplicate token strings")
    return tokens


@functools.lru_cache(maxsize=8)
def vocab_digest(path: str) -> str:
    """The digest the core's :class:`~ofasys.vocab.Vocabulary` computes for a ``text`` block of this file."""
    from ofasys.spec import VocabBlock
    from ofasys.vocab import Vocabulary

    return Vocabulary([VocabBlock("text", load_vocab_tokens(path))]).block("text").digest


def _load(path: str) -> Any:
    tok = _LOADED.get(path)
    if tok is None:
        with _LOCK:
            tok = _LOADED.get(path)
            if tok is None:
                from tokenizers import Tokenizer

                try:
                    tok = Tokenizer.from_file(path)
                except Exception as exc:  # tokenizers raises a bare Exception for malformed files
                    raise ConfigError(f"cannot load the text tokenizer {path}: {exc}") from exc
                _LOADED[path] = tok
    return tok


class TextTokenizer:
    """Encodes text to block-local ids (``0..len(self)-1``) and back.

    Wraps a ``tokenizers.Tokenizer`` loaded lazily from ``path`` (default: :func:`tokenizer_path`). With the
    shipped byte-level BPE, ``decode(encode(s)) == s`` for every string ``s`` and no id is ever unknown.
    Picklable: only the path travels; each process loads the file once on first use.
    """

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = str(Path(path).expanduser().resolve()) if path is not None else tokenizer_path()

    @property
    def backend(self) -> Any:
        """The underlying ``tokenizers.Tokenizer`` (loaded on first access)."""
        return _load(self.path)

    def encode(self, text: str) -> list[int]:
        """Block-local ids of ``text``, no special tokens added."""
        return self.backend.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """:meth:`encode` for several texts at once."""
        return [e.ids for e in self.backend.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: Iterable[int]) -> str:
        """The text of block-local ``ids`` (bytes that do not form valid UTF-8 become U+FFFD)."""
        return self.backend.decode([int(i) for i in ids], skip_special_tokens=False)

    def vocab_tokens(self) -> list[str]:
        """The token strings ordered by id: the content of the ``text`` vocabulary block."""
        return list(load_vocab_tokens(self.path))

    def digest(self) -> str:
        """The vocabulary digest of this tokenizer's ``text`` block (see :func:`vocab_digest`)."""
        return vocab_digest(self.path)

    def __len__(self) -> int:
        return len(load_vocab_tokens(self.path))

    def __getstate__(self) -> dict:
        return {"path": self.path}

    def __setstate__(self, state: dict) -> None:
        self.path = state["path"]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TextTokenizer) and other.path == self.path

    def __hash__(self) -> int:
        return hash(self.path)

    def __repr__(self) -> str:
        return f"TextTokenizer({self.path!r})"
