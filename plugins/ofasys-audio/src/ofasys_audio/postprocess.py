"""Postprocessor of AUDIO outputs: normalised mel -> log-mel -> vocoder -> waveform."""

from __future__ import annotations

from typing import Any

import numpy as np

from ofasys.components import Postprocessor


class SaveAudio:
    """``save_audio(path)``: write the waveform with soundfile (format from the extension: .wav, .flac...)."""

    def __init__(self, waveform: np.ndarray, sample_rate: int):
        self.waveform, self.sample_rate = waveform, sample_rate

    def __call__(self, path) -> str:
        from .audio_io import save_audio

        return save_audio(path, self.waveform, self.sample_rate)


class AudioPostprocessor(Postprocessor):
    """Returns ``waveform`` (float32 numpy), ``sample_rate``, ``duration`` (s), ``mel`` (frames x bins, natural-log
    magnitudes) and ``save_audio``."""

    def __init__(self, slot, vocab):
        super().__init__(slot, vocab)
        from .features import MelSpec

        a = slot.attrs or {}
        self.sample_rate = int(a.get("sample_rate") or 16000)
        self.vocoder_name = a.get("vocoder") or "griffin_lim"
        self.mel = MelSpec(self.sample_rate, int(a.get("num_mel_bins") or 80), a.get("cmvn_stats"))
        self._vocoder = None

    def __getstate__(self):
        return {**self.__dict__, "_vocoder": None}

    def __call__(self, prediction: Any, meta: dict) -> dict:
        from .vocoder import get_vocoder

        if self._vocoder is None:
            self._vocoder = get_vocoder(self.vocoder_name, self.sample_rate)
        log_mel = self.mel.denormalize(prediction["mel"].float())
        wav = np.asarray(self._vocoder(log_mel, self.sample_rate), dtype=np.float32)
        return {"waveform": wav, "sample_rate": self.sample_rate, "duration": len(wav) / self.sample_rate,
                "mel": log_mel.numpy(), "save_audio": SaveAudio(wav, self.sample_rate)}
