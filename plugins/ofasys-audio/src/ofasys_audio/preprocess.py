"""Preprocessors of the AUDIO slot (run in DataLoader workers; picklable).

* :class:`FbankPreprocessor` (``audio_fbank``): load -> 16 kHz mono -> Kaldi fbank -> normalisation ->
  SpecAugment (training only, with ``spec_augment``). ``Features.data`` is the (frames, bins) tensor; collate pads
  to ``{"feats": (N, T, F), "lengths": (N,)}``.
* :class:`MelPreprocessor` (``audio_mel``): load -> 16 kHz mono -> normalised log-mel (TTS target, or an encoder
  input). Collate pads to a multiple of ``frames_per_step``: ``{"mel": (N, T, m), "lengths": (N,)}``. As an output
  at inference (no target yet) its placeholder carries no data.
"""

from __future__ import annotations

from typing import Any

from ofasys.components import Features, Preprocessor, SampleContext
from ofasys.errors import DataError

from .audio_io import load_audio


class _AudioPreprocessor(Preprocessor):
    order = -5

    def __init__(self, slot, vocab):
        super().__init__(slot, vocab)
        a = slot.attrs or {}
        self.sample_rate = int(a.get("sample_rate") or 16000)
        self.max_duration = float(a.get("max_duration") or 0) or None
        self.long_audio = a.get("long_audio") or "skip"
        self.bins = int(a.get("num_mel_bins") or 80)
        self.trim = bool(a.get("trim_silence"))

    def load(self, value: Any):
        return load_audio(value, self.sample_rate, self.max_duration, self.long_audio, self.trim)


class FbankPreprocessor(_AudioPreprocessor):
    """Kaldi filterbanks of the encoder input."""

    def __init__(self, slot, vocab):
        super().__init__(slot, vocab)
        a = slot.attrs or {}
        self.normalize = a.get("normalize") or "utterance"
        self.stats = a.get("cmvn_stats")
        self.spec_augment = bool(a.get("spec_augment"))

    def __call__(self, value: Any, ctx: SampleContext) -> Features:
        import torch

        from .adaptors import subsampled_lengths
        from .features import fbank, normalize, spec_augment

        audio = self.load(value)
        feats = normalize(fbank(audio.samples, audio.sample_rate, self.bins), self.normalize, self.stats)
        if self.spec_augment and ctx.training:
            feats = spec_augment(feats, ctx.rng)
        n = int(subsampled_lengths(torch.tensor([feats.size(0)]))[0])
        ctx.state[f"audio:{self.slot.column}"] = {"duration": audio.duration, "source_rate": audio.source_rate,
                                                  "channels": audio.channels, "cut": audio.cut}
        return Features(feats.contiguous(), length=n,
                        meta={"duration": audio.duration, "source_rate": audio.source_rate})

    def collate(self, items: list[Any]) -> dict:
        import torch

        lengths = torch.tensor([x.size(0) for x in items], dtype=torch.long)
        out = torch.zeros(len(items), int(lengths.max()), items[0].size(1))
        for i, x in enumerate(items):
            out[i, : x.size(0)] = x
        return {"feats": out, "lengths": lengths}


class MelPreprocessor(_AudioPreprocessor):
    """Normalised log-mel frames (the TTS representation)."""

    def __init__(self, slot, vocab):
        super().__init__(slot, vocab)
        from .features import MelSpec

        self.frames_per_step = int((slot.attrs or {}).get("frames_per_step") or 2)
        self.mel = MelSpec(self.sample_rate, self.bins, (slot.attrs or {}).get("cmvn_stats"))

    def __call__(self, value: Any, ctx: SampleContext) -> Features:
        audio = self.load(value)
        mel = self.mel.encode(audio.samples)
        if mel.size(0) == 0:
            raise DataError("zero-length audio: no mel frame")
        steps = -(-mel.size(0) // self.frames_per_step)
        return Features(mel.contiguous(), length=steps, meta={"duration": audio.duration, "frames": mel.size(0)})

    def target_placeholder(self, ctx: SampleContext) -> Features:
        return Features(None)

    def collate(self, items: list[Any]) -> dict | None:
        import torch

        if any(x is None for x in items):
            return None
        r = self.frames_per_step
        lengths = torch.tensor([x.size(0) for x in items], dtype=torch.long)
        t = -(-int(lengths.max()) // r) * r
        out = torch.zeros(len(items), t, items[0].size(1))
        for i, x in enumerate(items):
            out[i, : x.size(0)] = x
        return {"mel": out, "lengths": lengths}
