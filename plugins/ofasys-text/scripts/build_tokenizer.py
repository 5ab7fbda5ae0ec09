#!/usr/bin/env python3
"""Rebuild the shipped byte-level BPE tokenizer (``src/ofasys_text/data/tokenizer.json``) from ``corpus/``.

The corpus is read in a fixed order:

1. every ``*.txt`` / ``*.txt.gz`` file of ``corpus/`` except ``common_words.txt``, in sorted file-name order,
   one training line per text line;
2. ``common_words.txt``: the distinct words of that list, sorted, each fed ``--word-weight`` times as
   ``" word"`` so that everyday English words (captions, questions, answers) become single tokens even
   though the prose corpus is technical.

The tokenizer is a GPT-2 style byte-level BPE: ``ByteLevel`` pre-tokenizer (no prefix space, GPT-2 split
regex) and decoder, the 256 byte symbols as the initial alphabet (so every string encodes and decodes back
exactly, nothing is ever unknown), no normalizer, no special tokens (``<pad>``, ``<s>``... belong to the
core's shared vocabulary), ``--vocab-size`` tokens in all.

The build is deterministic: the same corpus and ``tokenizers`` version give a byte-identical file (the script
prints its SHA-256; ``--check`` rebuilds into memory and fails if the committed file differs).

Usage::

    python scripts/build_tokenizer.py            # rewrite the shipped tokenizer.json
    python scripts/build_tokenizer.py --check    # verify the shipped file is reproducible
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "corpus"
OUT = ROOT / "src" / "ofasys_text" / "data" / "tokenizer.json"
WORD_LIST = "common_words.txt"


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    return data.decode("utf-8")


def corpus_lines(corpus: Path, word_weight: int) -> Iterator[str]:
    """The training lines, in a fixed order (see the module docstring)."""
    files = sorted(p for p in corpus.iterdir()
                   if p.name != WORD_LIST and (p.name.endswith(".txt") or p.name.endswith(".txt.gz")))
    for path in files:
        for line in _read_text(path).splitlines():
            line = line.strip()
            if line:
                yield line
    words_file = corpus / WORD_LIST
    if words_file.exists() and word_weight > 0:
        words = sorted(set(_read_text(words_file).split()))
        for word in words:
            yield f" {word}" * word_weight


def build(corpus: Path, vocab_size: int, word_weight: int) -> str:
    """Train the tokenizer and return its JSON serialisation."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, show_progress=False, special_tokens=[],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(corpus_lines(corpus, word_weight), trainer=trainer)
    size = tokenizer.get_vocab_size()
    if size != vocab_size:
        raise SystemExit(f"the corpus yields only {size} tokens, not {vocab_size}: add text to {corpus}")
    # save through a file: the same code path as Tokenizer.save, then normalise to a stable, readable layout
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "tokenizer.json")
        tokenizer.save(path, pretty=False)
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    vocab = data["model"]["vocab"]
    ids = sorted(vocab.values())
    if ids != list(range(vocab_size)):
        raise SystemExit("the trained vocabulary ids are not contiguous")
    data["model"]["vocab"] = dict(sorted(vocab.items(), key=lambda kv: kv[1]))
    return json.dumps(data, ensure_ascii=False, indent=1) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", type=Path, default=CORPUS)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--vocab-size", type=int, default=8192)
    ap.add_argument("--word-weight", type=int, default=64,
                    help="how many times each word of common_words.txt is fed to the trainer")
    ap.add_argument("--check", action="store_true", help="rebuild and compare with --out instead of writing it")
    args = ap.parse_args()
    text = build(args.corpus, args.vocab_size, args.word_weight)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.exists() else ""
        if current != text:
            print(f"MISMATCH: rebuilding gives sha256 {digest}, {args.out} differs", file=sys.stderr)
            return 1
        print(f"ok: {args.out} is reproducible (sha256 {digest})")
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out}: {args.vocab_size} tokens, sha256 {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
