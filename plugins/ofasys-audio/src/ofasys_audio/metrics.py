"""Speech metrics: word and character error rates (own Levenshtein code, tested against hand-computed cases) and
mel cepstral distortion.

* :func:`wer` / :func:`cer`: ``100 * (substitutions + deletions + insertions) / reference length``, summed over the
  corpus (not averaged per utterance), after normalisation: lower-case, punctuation removed (apostrophes kept),
  whitespace collapsed. Lower is better; can exceed 100 with many insertions.
* :func:`mcd`: mel cepstral distortion in dB, ``(10 / ln 10) * sqrt(2 * sum_{d=1..12} (c_d - c'_d)^2)`` averaged
  over frames aligned by dynamic time warping; cepstra are the orthonormal DCT of natural-log mel magnitudes floored
  at 1e-2 (80 mels, n_fft 1024, hop 256 at 16 kHz), c0 (energy) excluded. Predictions are waveforms (or ``(array, rate)``),
  references anything :func:`ofasys_audio.audio_io.load_audio` reads. Lower is better.
"""

from __future__ import annotations

import math
import re
from typing import Any, Sequence

_PUNCT = re.compile(r"[^\w\s']", re.UNICODE)


def normalize_text(s: Any) -> str:
    s = "" if s is None else str(s)
    return " ".join(_PUNCT.sub(" ", s.lower()).split())


def edit_distance(ref: Sequence, hyp: Sequence) -> int:
    """Levenshtein distance (unit costs) between two sequences."""
    if len(ref) < len(hyp):
        ref, hyp = hyp, ref
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


def _ref(r: Any) -> str:
    if isinstance(r, (list, tuple)):  # several references: score against the first
        r = r[0] if r else ""
    return normalize_text(r)


def wer(predictions: list, references: list) -> float:
    """Corpus word error rate in percent."""
    errors = total = 0
    for p, r in zip(predictions, references):
        ref, hyp = _ref(r).split(), normalize_text(p).split()
        errors += edit_distance(ref, hyp)
        total += len(ref)
    return 100.0 * errors / max(total, 1)


def cer(predictions: list, references: list) -> float:
    """Corpus character error rate in percent (spaces count as characters)."""
    errors = total = 0
    for p, r in zip(predictions, references):
        ref, hyp = _ref(r), normalize_text(p)
        errors += edit_distance(ref, hyp)
        total += len(ref)
    return 100.0 * errors / max(total, 1)


MCD_FLOOR = 1e-2  # mel magnitude floor (about -40 dB below speech): silence and empty bands do not dominate


def mel_cepstrum(samples, sample_rate: int = 16000, n_ceps: int = 13):
    """(frames, n_ceps) cepstra of natural-log mel magnitudes floored at ``MCD_FLOOR`` (c0 first)."""
    import math

    import torchaudio.functional as AF

    from .features import MelSpec

    lm = MelSpec(sample_rate, 80).log_mel(samples).clamp(min=math.log(MCD_FLOOR))
    dct = AF.create_dct(n_ceps, 80, norm="ortho")
    return lm @ dct


def _dtw_mean(a, b) -> float:
    """Mean frame distance along the DTW path between (n, d) and (m, d) tensors (Euclidean distances)."""
    import torch

    d = torch.cdist(a.double(), b.double()).numpy()
    n, m = d.shape
    inf = float("inf")
    cost = [[inf] * (m + 1) for _ in range(n + 1)]
    steps = [[0] * (m + 1) for _ in range(n + 1)]
    cost[0][0] = 0.0
    for i in range(1, n + 1):
        di = d[i - 1]
        ci, cp = cost[i], cost[i - 1]
        si, sp = steps[i], steps[i - 1]
        for j in range(1, m + 1):
            best, k = cp[j - 1], sp[j - 1]
            if cp[j] < best:
                best, k = cp[j], sp[j]
            if ci[j - 1] < best:
                best, k = ci[j - 1], si[j - 1]
            ci[j] = best + di[j - 1]
            si[j] = k + 1
    return cost[n][m] / max(steps[n][m], 1)


def mcd_pair(pred, ref, sample_rate: int = 16000) -> float:
    """MCD in dB between two waveforms at ``sample_rate``."""
    a = mel_cepstrum(pred, sample_rate)[:, 1:]
    b = mel_cepstrum(ref, sample_rate)[:, 1:]
    return (10.0 / math.log(10.0)) * math.sqrt(2.0) * _dtw_mean(a, b)


def mcd(predictions: list, references: list) -> float:
    """Mean MCD (dB) over pairs; see the module docstring."""
    import numpy as np

    from .audio_io import load_audio

    scores = []
    for p, r in zip(predictions, references):
        if isinstance(p, tuple):
            p = load_audio(p, 16000, None).samples
        ref = load_audio(r, 16000, None).samples
        scores.append(mcd_pair(np.asarray(p, dtype=np.float32), ref))
    return float(sum(scores) / max(len(scores), 1))
