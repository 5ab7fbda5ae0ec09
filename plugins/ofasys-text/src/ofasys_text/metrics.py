"""Text metrics: ``fn(predictions, references) -> float`` on a 0-100 scale, higher is better.

``predictions`` is a list of strings; ``references`` has one entry per prediction, either a string or a list of
acceptable strings (a prediction scores against its best reference). Empty inputs score 0.
"""

from __future__ import annotations

import re
from typing import Sequence, Union

from .preprocess import normalize_text

Reference = Union[str, Sequence[str]]
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_WORD = re.compile(r"[^\W_]+")


def _check(predictions: Sequence[str], references: Sequence[Reference]) -> list[list[str]]:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    refs: list[list[str]] = []
    for r in references:
        if isinstance(r, str):
            refs.append([r])
        elif isinstance(r, (list, tuple)) and all(isinstance(x, str) for x in r):
            if not r:
                raise ValueError("a prediction has an empty list of references")
            refs.append(list(r))
        else:
            raise ValueError(f"a reference must be a string or a list of strings, not {type(r).__name__}")
    for p in predictions:
        if not isinstance(p, str):
            raise ValueError(f"a prediction must be a string, not {type(p).__name__}")
    return refs


def normalize_answer(text: str) -> str:
    """Normalisation of :func:`accuracy` (as in SQuAD/VQA evaluation): lower-case, punctuation removed,
    articles (a, an, the) removed, whitespace collapsed."""
    text = normalize_text(text, uncased=True, no_punctuation=True)
    return " ".join(_ARTICLES.sub(" ", text).split())


def accuracy(predictions: Sequence[str], references: Sequence[Reference]) -> float:
    """Percentage of predictions equal to one of their references after :func:`normalize_answer`."""
    refs = _check(predictions, references)
    if not predictions:
        return 0.0
    hits = sum(normalize_answer(p) in {normalize_answer(r) for r in rs} for p, rs in zip(predictions, refs))
    return 100.0 * hits / len(predictions)


def exact_match(predictions: Sequence[str], references: Sequence[Reference]) -> float:
    """Percentage of predictions identical to one of their references (only surrounding whitespace ignored)."""
    refs = _check(predictions, references)
    if not predictions:
        return 0.0
    hits = sum(p.strip() in {r.strip() for r in rs} for p, rs in zip(predictions, refs))
    return 100.0 * hits / len(predictions)


def bleu(predictions: Sequence[str], references: Sequence[Reference]) -> float:
    """Corpus BLEU (sacrebleu defaults: 4-grams, ``13a`` tokenisation, exponential smoothing off), 0-100.

    Samples may have different numbers of references: missing ones are passed to sacrebleu as ``None``.
    """
    refs = _check(predictions, references)
    if not predictions:
        return 0.0
    from sacrebleu.metrics import BLEU

    width = max(len(rs) for rs in refs)
    streams = [[rs[j] if j < len(rs) else None for rs in refs] for j in range(width)]
    score = BLEU().corpus_score(list(predictions), streams).score
    return min(100.0, float(score))  # float rounding can give 100.00000000000004


def _lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence of two token lists (O(len(a) * len(b)) time, O(len(b)) memory)."""
    if len(a) < len(b):
        a, b = b, a
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l_tokens(text: str) -> list[str]:
    """The tokens ROUGE-L compares: lower-cased runs of letters and digits."""
    return _WORD.findall(text.lower())


def rouge_l_f1(prediction: str, reference: str) -> float:
    """ROUGE-L F1 (0-1) of one prediction against one reference: LCS-based precision and recall."""
    p, r = rouge_l_tokens(prediction), rouge_l_tokens(reference)
    if not p or not r:
        return 1.0 if not p and not r else 0.0
    lcs = _lcs_length(p, r)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(p), lcs / len(r)
    return 2 * precision * recall / (precision + recall)


def rouge_l(predictions: Sequence[str], references: Sequence[Reference]) -> float:
    """Mean over samples of the best ROUGE-L F1 against the sample's references, 0-100."""
    refs = _check(predictions, references)
    if not predictions:
        return 0.0
    return 100.0 * sum(max(rouge_l_f1(p, r) for r in rs) for p, rs in zip(predictions, refs)) / len(predictions)
