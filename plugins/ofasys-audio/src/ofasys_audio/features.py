"""Acoustic features: Kaldi filterbanks for the encoder, log-mel frames for text to speech, normalisation and
SpecAugment.

* :func:`fbank`: ``torchaudio.compliance.kaldi.fbank`` (25 ms windows every 10 ms, povey window, no dither),
  ``num_mel_bins`` bins, on 16-bit-scaled samples as Kaldi expects.
* :func:`normalize`: ``utterance`` (per-utterance mean/variance per bin), ``global`` (per-bin statistics of the
  bundled corpus shipped in ``data/global_cmvn.json``, or of a JSON file given by the ``cmvn_stats`` attribute)
  or ``none``.
* :func:`spec_augment`: two frequency masks and two time masks (Park et al. 2019, LibriSpeech-basic widths scaled
  to short utterances), drawn from the sample's ``random.Random``.
* :class:`MelSpec`: the TTS target, natural-log mel magnitudes (n_fft 1024, hop 256, 80 mels, 0-8 kHz at
  16 kHz), normalised by the global mel statistics; :func:`mel_to_waveform` inverts it with Griffin-Lim.
"""

from __future__ import annotations

import functools
import json
import math
import os
import random
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parent / "data"
STATS_FILE = DATA / "global_cmvn.json"

MEL_N_FFT = 1024
MEL_HOP = 256
MEL_FMAX = 8000.0
MEL_FLOOR = 1e-5


def fbank(samples: np.ndarray, sample_rate: int = 16000, num_mel_bins: int = 80):
    """(n,) float samples in [-1, 1] -> (frames, num_mel_bins) float32 tensor of Kaldi log filterbanks."""
    import torch
    from torchaudio.compliance import kaldi

    wav = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32)).unsqueeze(0) * 32768.0
    min_len = int(0.025 * sample_rate)
    if wav.size(1) < min_len:  # shorter than one window: pad with silence so that one frame exists
        wav = torch.nn.functional.pad(wav, (0, min_len - wav.size(1)))
    return kaldi.fbank(wav, num_mel_bins=num_mel_bins, sample_frequency=float(sample_rate), dither=0.0,
                       energy_floor=0.0)


@functools.lru_cache(maxsize=8)
def load_stats(path: str | None = None) -> dict:
    """Global statistics ``{"fbank80": {"mean": [...], "std": [...]}, "mel80": {...}}``."""
    p = Path(path) if path else STATS_FILE
    with open(p) as f:
        return json.load(f)


def _stats(name: str, path: str | None):
    import torch

    stats = load_stats(os.fspath(path) if path else None)
    if name not in stats:
        from ofasys.errors import ConfigError

        raise ConfigError(f"{path or STATS_FILE} has no statistics {name!r} (it has {', '.join(stats)}); compute "
                          "them with ofasys_audio.features.compute_stats")
    return torch.tensor(stats[name]["mean"]), torch.tensor(stats[name]["std"])


def normalize(feats, mode: str = "utterance", stats_path: str | None = None):
    """Mean/variance normalisation of (frames, bins) features per bin."""
    if mode == "none":
        return feats
    if mode == "utterance":
        mean = feats.mean(0, keepdim=True)
        std = feats.std(0, keepdim=True, unbiased=False) if feats.size(0) > 1 else feats.new_ones(1, feats.size(1))
        return (feats - mean) / std.clamp(min=1e-5)
    if mode == "global":
        mean, std = _stats(f"fbank{feats.size(1)}", stats_path)
        return (feats - mean) / std.clamp(min=1e-5)
    raise ValueError(f"unknown normalisation {mode!r}")


def spec_augment(feats, rng: random.Random, freq_masks: int = 2, freq_width: int = 27, time_masks: int = 2,
                 time_ratio: float = 0.1):
    """Zero (the normalised mean) ``freq_masks`` bands of at most ``freq_width`` bins and ``time_masks`` spans of
    at most ``time_ratio`` of the frames. Returns a new tensor."""
    x = feats.clone()
    t, f = x.shape
    for _ in range(freq_masks):
        w = rng.randint(0, min(freq_width, f // 4))
        if w:
            s = rng.randint(0, f - w)
            x[:, s:s + w] = 0.0
    max_t = int(t * time_ratio)
    for _ in range(time_masks):
        w = rng.randint(0, max_t) if max_t > 0 else 0
        if w:
            s = rng.randint(0, t - w)
            x[s:s + w, :] = 0.0
    return x


class MelSpec:
    """Waveform <-> normalised log-mel frames (the TTS representation)."""

    def __init__(self, sample_rate: int = 16000, n_mels: int = 80, stats_path: str | None = None):
        self.sample_rate = int(sample_rate)
        self.n_mels = int(n_mels)
        self.stats_path = stats_path
        self._mel = None

    def _transform(self):
        if self._mel is None:
            import torchaudio

            self._mel = torchaudio.transforms.MelSpectrogram(
                sample_rate=self.sample_rate, n_fft=MEL_N_FFT, win_length=MEL_N_FFT, hop_length=MEL_HOP,
                f_min=0.0, f_max=min(MEL_FMAX, self.sample_rate / 2), n_mels=self.n_mels, power=1.0)
        return self._mel

    def __getstate__(self):
        return {**self.__dict__, "_mel": None}

    def log_mel(self, samples: np.ndarray):
        """(n,) samples -> (frames, n_mels) natural-log mel magnitudes (not normalised)."""
        import torch

        wav = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))
        if wav.numel() <= MEL_N_FFT // 2:  # reflect padding needs more than half a window
            wav = torch.nn.functional.pad(wav, (0, MEL_N_FFT // 2 + 1 - wav.numel()))
        return torch.log(self._transform()(wav).clamp(min=MEL_FLOOR)).T.contiguous()

    def encode(self, samples: np.ndarray):
        """(n,) samples -> normalised log-mel (frames, n_mels)."""
        mean, std = _stats(f"mel{self.n_mels}", self.stats_path)
        return (self.log_mel(samples) - mean) / std

    def denormalize(self, mel):
        mean, std = _stats(f"mel{self.n_mels}", self.stats_path)
        return mel * std.to(mel.device) + mean.to(mel.device)


def mel_to_waveform(log_mel, sample_rate: int = 16000, n_iter: int = 32) -> np.ndarray:
    """Griffin-Lim vocoder: (frames, n_mels) natural-log mel magnitudes -> (samples,) float32 waveform."""
    import torch
    import torchaudio

    log_mel = torch.as_tensor(log_mel, dtype=torch.float32)
    n_mels = log_mel.size(1)
    frames = log_mel.size(0)
    min_frames = MEL_N_FFT // MEL_HOP + 2  # Griffin-Lim's STFT needs more than one window of signal
    if frames < min_frames:  # pad a very short output with silence, cut it off afterwards
        pad = torch.full((min_frames - frames, n_mels), math.log(MEL_FLOOR))
        log_mel = torch.cat([log_mel, pad])
    mag = log_mel.exp().T  # (n_mels, frames)
    inv = torchaudio.transforms.InverseMelScale(n_stft=MEL_N_FFT // 2 + 1, n_mels=n_mels, sample_rate=sample_rate,
                                                f_min=0.0, f_max=min(MEL_FMAX, sample_rate / 2))
    # InverseMelScale solves a least-squares problem; clamp tiny negative magnitudes
    spec = inv(mag).clamp(min=0.0)
    gl = torchaudio.transforms.GriffinLim(n_fft=MEL_N_FFT, win_length=MEL_N_FFT, hop_length=MEL_HOP, power=1.0,
                                          n_iter=n_iter)
    with torch.random.fork_rng():
        torch.manual_seed(0)  # Griffin-Lim starts from random phases: keep the output reproducible
        wav = gl(spec)
    if frames < min_frames:
        wav = wav[: frames * MEL_HOP]
    peak = float(wav.abs().max()) if wav.numel() else 0.0
    if peak > 0.99:
        wav = wav * (0.99 / peak)
    return wav.numpy().astype(np.float32)


def compute_stats(sample_sets, sample_rate: int = 16000, num_mel_bins: int = 80) -> dict:
    """Per-bin mean/std of Kaldi fbank and log-mel over an iterable of (n,) sample arrays."""
    import torch

    mel = MelSpec(sample_rate, num_mel_bins)
    fb, lm = [], []
    for x in sample_sets:
        fb.append(fbank(x, sample_rate, num_mel_bins))
        lm.append(mel.log_mel(x))
    out = {}
    for name, parts in ((f"fbank{num_mel_bins}", fb), (f"mel{num_mel_bins}", lm)):
        allf = torch.cat(parts)
        out[name] = {"mean": [round(float(v), 5) for v in allf.mean(0)],
                     "std": [round(float(v), 5) for v in allf.std(0).clamp(min=1e-3)]}
    return out
