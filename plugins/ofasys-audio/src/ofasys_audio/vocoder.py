"""Vocoders: log-mel frames -> waveform.

A vocoder is a callable ``vocoder(log_mel, sample_rate) -> np.ndarray`` taking ``(frames, n_mels)`` natural-log mel
magnitudes (n_fft 1024, hop 256, 0-8 kHz, see :mod:`ofasys_audio.features`). ``griffin_lim`` (torchaudio's
InverseMelScale + GriffinLim, 32 iterations) is built in. A neural vocoder plugs in either by calling
:func:`register_vocoder` (``register_vocoder("hifigan", factory)``, ``factory(sample_rate) -> vocoder``) or, from
another package, through the entry-point group ``ofasys_audio.vocoders`` (name -> factory); an AUDIO output names it
with the ``vocoder`` attribute: ``[AUDIO:wav,preprocess=audio_mel,adaptor=audio_mel,vocoder=hifigan]``.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

_REGISTRY: dict[str, Callable[[int], Any]] = {}


class GriffinLim:
    def __init__(self, sample_rate: int = 16000, n_iter: int = 32):
        self.sample_rate = int(sample_rate)
        self.n_iter = int(n_iter)

    def __call__(self, log_mel, sample_rate: int | None = None) -> np.ndarray:
        from .features import mel_to_waveform

        return mel_to_waveform(log_mel, int(sample_rate or self.sample_rate), self.n_iter)


def register_vocoder(name: str, factory: Callable[[int], Any]) -> None:
    """Make ``vocoder=name`` available: ``factory(sample_rate)`` returns the vocoder callable."""
    _REGISTRY[name] = factory


register_vocoder("griffin_lim", GriffinLim)


def get_vocoder(name: str, sample_rate: int = 16000):
    from ofasys.errors import ConfigError

    if name not in _REGISTRY:
        from importlib.metadata import entry_points

        for ep in entry_points(group="ofasys_audio.vocoders"):
            if ep.name == name:
                _REGISTRY[name] = ep.load()
                break
    if name not in _REGISTRY:
        raise ConfigError(f"unknown vocoder {name!r}; available: {', '.join(sorted(_REGISTRY))} (register one with "
                          "ofasys_audio.vocoder.register_vocoder or the 'ofasys_audio.vocoders' entry-point group)")
    return _REGISTRY[name](sample_rate)
