"""Vision-language metrics: ``fn(predictions, references) -> float``, 0-100 (CIDEr-D: x100 like OFA's tables),
higher is better. Pure Python (no numpy), no downloads.

* :func:`vqa_score` - the VQA accuracy ``min(1, #annotators who gave the answer / 3)`` averaged over the 10
  leave-one-out subsets of the annotators (the official VQA evaluation), with its answer normalisation.
* :func:`cider` - CIDEr-D (Vedantam et al. 2015) exactly as the coco-caption ``cider_scorer``: 1-4-grams, tf-idf
  with document frequencies from the references of the evaluated corpus, clipped counts, Gaussian length
  penalty (sigma 6); reported x100 (coco-caption reports x10 before scaling tables by 10). pycocoevalcap is not
  a dependency: its wheel is 100 MB of Java tools, and its tokenizer needs Java; :func:`caption_tokens` stands in
  for the PTB tokenizer (lower-case, punctuation removed).
* :func:`iou_acc` - percentage of predicted boxes with IoU >= 0.5 against the reference box (OFA's grounding
  metric).
* :func:`map50` - detection average precision at IoU 0.5, COCO-style (101-point interpolated precision,
  greedy matching by confidence, averaged over classes).

BLEU-4 and answer accuracy are the TEXT plugin's ``bleu`` (sacrebleu) and ``accuracy`` metrics.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from typing import Any, Sequence

# ----------------------------------------------------------------------------------------------------- VQA

_CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "didnt": "didn't", "doesnt": "doesn't", "dont": "don't", "hadnt": "hadn't", "hasnt": "hasn't",
    "havent": "haven't", "hed": "he'd", "hes": "he's", "im": "i'm", "ive": "i've", "isnt": "isn't", "itd": "it'd",
    "itll": "it'll", "lets": "let's", "shouldnt": "shouldn't", "thats": "that's", "theres": "there's",
    "theyre": "they're", "theyve": "they've", "wasnt": "wasn't", "werent": "weren't", "whats": "what's",
    "wheres": "where's", "whos": "who's", "wont": "won't", "wouldnt": "wouldn't", "youre": "you're",
    "youve": "you've",
}
_NUMBERS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
            "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
_ARTICLES = {"a", "an", "the"}
_PUNCT = [";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?",
          "!"]
_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
_COMMA_STRIP = re.compile(r"(\d)(,)(\d)")


def normalize_vqa_answer(answer: str) -> str:
    """The official VQA evaluation's answer normalisation: punctuation, periods not inside numbers, number
    words to digits, articles removed, common contractions restored, lower-case."""
    text = " ".join(str(answer).replace("\n", " ").replace("\t", " ").strip().lower().split())
    out = text
    for p in _PUNCT:
        if (p + " " in text or " " + p in text) or re.search(_COMMA_STRIP, text) is not None:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    out = _PERIOD_STRIP.sub("", out)
    words = []
    for w in out.lower().split():
        w = _NUMBERS.get(w, w)
        if w in _ARTICLES:
            continue
        words.append(_CONTRACTIONS.get(w, w))
    return " ".join(words)


def _vqa_one(pred: str, ref: Any) -> float:
    p = normalize_vqa_answer(pred)
    if isinstance(ref, dict):  # answer -> score (OFA's format)
        return float(max((float(v) for k, v in ref.items() if normalize_vqa_answer(k) == p), default=0.0))
    answers = [ref] if isinstance(ref, str) else list(ref)
    if not answers:
        raise ValueError("a VQA reference has no answers")
    norm = [normalize_vqa_answer(a) for a in answers]
    if len(norm) == 1:
        return 1.0 if p == norm[0] else 0.0
    total = 0.0
    for i in range(len(norm)):  # leave annotator i out; the others vote
        matches = sum(1 for j, a in enumerate(norm) if j != i and a == p)
        total += min(1.0, matches / 3.0)
    return total / len(norm)


def vqa_score(predictions: Sequence[str], references: Sequence[Any]) -> float:
    """VQA accuracy, 0-100. A reference is the list of the annotators' answers (the official leave-one-out
    ``min(1, matches / 3)``), a single string (exact match after normalisation), or a dict answer -> score."""
    _same_length(predictions, references)
    if not predictions:
        return 0.0
    return 100.0 * sum(_vqa_one(str(p), r) for p, r in zip(predictions, references)) / len(predictions)


# --------------------------------------------------------------------------------------------------- CIDEr

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def caption_tokens(text: str) -> list[str]:
    """Lower-case words without punctuation (a stand-in for coco-caption's PTB tokenizer)."""
    return _WORD.findall(str(text).lower())


def _ngrams(words: list[str], n: int = 4) -> Counter:
    counts: Counter = Counter()
    for k in range(1, n + 1):
        for i in range(len(words) - k + 1):
            counts[tuple(words[i:i + k])] += 1
    return counts


def cider_scores(predictions: Sequence[str], references: Sequence[Any], n: int = 4, sigma: float = 6.0) -> list:
    """Per-sample CIDEr-D (coco-caption scale: about 0-10). Document frequencies come from the references."""
    _same_length(predictions, references)
    refs = [[r] if isinstance(r, str) else list(r) for r in references]
    crefs = [[_ngrams(caption_tokens(r), n) for r in rs] for rs in refs]
    ctest = [_ngrams(caption_tokens(p), n) for p in predictions]
    df: Counter = Counter()
    for rs in crefs:
        for ng in {g for r in rs for g in r}:
            df[ng] += 1
    ref_len = math.log(float(len(crefs))) if crefs else 0.0

    def vec(cnts: Counter):
        v = [defaultdict(float) for _ in range(n)]
        norm = [0.0] * n
        length = 0
        for ng, tf in cnts.items():
            k = len(ng) - 1
            d = math.log(max(1.0, df[ng]))
            v[k][ng] = float(tf) * (ref_len - d)
            norm[k] += v[k][ng] ** 2
            if k == 1:  # coco-caption counts the bigrams as the length (kept for identical scores)
                length += tf
        return v, [math.sqrt(x) for x in norm], length

    def sim(vh, vr, nh, nr, lh, lr):
        delta = float(lh - lr)
        val = [0.0] * n
        for k in range(n):
            for ng in vh[k]:
                val[k] += min(vh[k][ng], vr[k].get(ng, 0.0)) * vr[k].get(ng, 0.0)
            if nh[k] != 0 and nr[k] != 0:
                val[k] /= nh[k] * nr[k]
            val[k] *= math.e ** (-(delta ** 2) / (2 * sigma ** 2))
        return val

    scores = []
    for test, rs in zip(ctest, crefs):
        vh, nh, lh = vec(test)
        acc = [0.0] * n
        for r in rs:
            vr, nr, lr = vec(r)
            for k, x in enumerate(sim(vh, vr, nh, nr, lh, lr)):
                acc[k] += x
        score = sum(acc) / n
        score /= max(len(rs), 1)
        scores.append(score * 10.0)
    return scores


def cider(predictions: Sequence[str], references: Sequence[Any]) -> float:
    """Corpus CIDEr-D x 100 (OFA reports e.g. 154.9 on COCO). References: a string or a list of strings per
    prediction. Document frequencies are computed from the evaluated references, as coco-caption does."""
    for r in references:
        if not isinstance(r, str) and not (isinstance(r, (list, tuple)) and r and all(isinstance(x, str) for x in r)):
            raise ValueError(f"a caption reference must be a string or a non-empty list of strings, not {r!r}")
    scores = cider_scores([str(p) for p in predictions], references)
    return 100.0 * sum(scores) / len(scores) if scores else 0.0


# --------------------------------------------------------------------------------------------------- boxes


def _as_box(value: Any) -> list[float] | None:
    if value is None:
        return None
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, dict):
        value = value.get("box")
        return _as_box(value)
    if isinstance(value, (list, tuple)) and len(value) == 4 and all(isinstance(v, (int, float)) for v in value):
        return [float(v) for v in value]
    return None


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two ``[x0, y0, x1, y1]`` boxes (0 when either is empty)."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _boxes_of(value: Any) -> list[list[float]]:
    """The well-formed boxes of one sample's value: a box, or a list of boxes (malformed items dropped)."""
    box = _as_box(value)
    if box is not None:
        return [box]
    if isinstance(value, (list, tuple)):
        return [b for b in (_as_box(v) for v in value) if b is not None]
    return []


def iou_acc(predictions: Sequence[Any], references: Sequence[Any], threshold: float = 0.5) -> float:
    """Percentage of predictions whose box has IoU >= ``threshold`` with the reference box (a missing or
    malformed prediction counts as wrong).

    For a repetition group (a list of boxes per sample), the percentage of reference boxes matched one-to-one
    (greedily, best IoU first) by a predicted box at IoU >= ``threshold``; use :func:`map50` for detection AP.
    """
    _same_length(predictions, references)
    hits = total = 0
    for p, r in zip(predictions, references):
        ref = _as_box(r)
        if ref is not None:
            pred = _as_box(p)
            total += 1
            hits += int(pred is not None and iou(pred, ref) >= threshold)
            continue
        if not isinstance(r, (list, tuple)) or len(_boxes_of(r)) != len(r):
            raise ValueError(f"a reference must be a box [x0, y0, x1, y1] or a list of boxes, not {r!r}")
        refs, preds = _boxes_of(r), _boxes_of(p)
        pairs = sorted(((iou(a, b), i, j) for i, a in enumerate(preds) for j, b in enumerate(refs)), reverse=True)
        used_p: set[int] = set()
        used_r: set[int] = set()
        for v, i, j in pairs:
            if v >= threshold and i not in used_p and j not in used_r:
                used_p.add(i)
                used_r.add(j)
        hits += len(used_r)
        total += len(refs)
    return 100.0 * hits / total if total else 0.0


def _detections(value: Any, with_scores: bool) -> list[tuple[list[float], Any, float]]:
    """``[(box, label, score)]`` of one sample: items are boxes, ``(box, label)`` / ``(box, label, score)``
    tuples or ``{"box", "label", "score"}`` dicts; without a score, earlier items rank higher."""
    out = []
    items = list(value or [])
    for k, it in enumerate(items):
        label, score = None, float(len(items) - k)
        if it is None or (isinstance(it, (list, tuple)) and len(it) in (2, 3) and it[0] is None):
            continue  # a box the model did not finish (the postprocessor gives None): no detection
        if isinstance(it, dict):
            box = _as_box(it.get("box"))
            label = it.get("label")
            score = float(it.get("score", score))
        elif _as_box(it) is not None:
            box = _as_box(it)
        elif isinstance(it, (list, tuple)) and len(it) in (2, 3) and _as_box(it[0]) is not None:
            box, label = _as_box(it[0]), it[1]
            if len(it) == 3:
                score = float(it[2])
        else:
            raise ValueError(f"a detection must be a box, (box, label[, score]) or a dict, not {it!r}")
        if box is not None:
            out.append((box, label, score if with_scores else float(len(items) - k)))
    return out


def average_precision(matches: list[tuple[float, bool]], n_refs: int) -> float:
    """COCO's 101-point interpolated AP of scored detections (``(score, is_true_positive)``)."""
    if n_refs == 0:
        return float("nan")
    matches = sorted(matches, key=lambda m: -m[0])
    tp = fp = 0
    precision, recall = [], []
    for _, ok in matches:
        tp += ok
        fp += not ok
        precision.append(tp / (tp + fp))
        recall.append(tp / n_refs)
    for i in range(len(precision) - 2, -1, -1):  # monotone envelope
        precision[i] = max(precision[i], precision[i + 1])
    total = 0.0
    j = 0
    for t in range(101):
        r = t / 100
        while j < len(recall) and recall[j] < r:
            j += 1
        total += precision[j] if j < len(recall) else 0.0
    return total / 101


def map50(predictions: Sequence[Any], references: Sequence[Any], threshold: float = 0.5) -> float:
    """Detection mAP at IoU ``threshold`` (0.5), 0-100.

    Per sample, predictions and references are lists of boxes, ``(box, label)`` pairs or ``{"box", "label"}``
    dicts (a prediction may carry a ``score``; otherwise earlier boxes are more confident, as generated).
    With labels, AP is computed per reference class and averaged (COCO: greedy matching by confidence to the
    unmatched reference of the same class with the highest IoU); without labels, all boxes are one class.
    """
    _same_length(predictions, references)
    by_class_refs: dict[Any, int] = Counter()
    matches: dict[Any, list[tuple[float, bool]]] = defaultdict(list)
    for p, r in zip(predictions, references):
        refs = _detections(r, with_scores=False)
        dets = _detections(p, with_scores=True)
        classes = {lab for _, lab, _ in refs} | {lab for _, lab, _ in dets}
        for c in classes:
            rc = [b for b, lab, _ in refs if lab == c]
            dc = sorted(((s, b) for b, lab, s in dets if lab == c), key=lambda x: -x[0])
            by_class_refs[c] += len(rc)
            used: set[int] = set()
            for s, b in dc:
                best, best_j = threshold, -1
                for j, rb in enumerate(rc):
                    if j in used:
                        continue
                    v = iou(b, rb)
                    if v >= best:
                        best, best_j = v, j
                if best_j >= 0:
                    used.add(best_j)
                matches[c].append((s, best_j >= 0))
    aps = [average_precision(matches[c], by_class_refs[c]) for c in by_class_refs if by_class_refs[c] > 0]
    return 100.0 * sum(aps) / len(aps) if aps else 0.0


def _same_length(predictions: Sequence[Any], references: Sequence[Any]) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
