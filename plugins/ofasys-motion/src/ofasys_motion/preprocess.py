"""The ``motion_6d`` preprocessor: a column value -> normalised features (frames, 69) of the slot's frame rate."""

from __future__ import annotations

from typing import Any

from ofasys.components import Features, Preprocessor, SampleContext
from ofasys.errors import DataError


def slot_settings(slot) -> dict:
    a = slot.attrs or {}
    return {"min_length": int(a.get("min_length") or 1), "max_length": int(a.get("max_length") or 64),
            "sample_rate": float(a.get("sample_rate") or 20), "window": int(a["window"]) if a.get("window") else None,
            "stats": a.get("stats")}


class MotionPreprocessor(Preprocessor):
    """Reads the clip (:func:`ofasys_motion.io.load_clip`), resamples it to ``sample_rate``, refuses clips shorter
    than ``min_length``, crops to ``window`` (random start in training, centred otherwise) or to ``max_length``
    (random start in training, the first frames otherwise), and normalises the features."""

    def __init__(self, slot, vocab):
        super().__init__(slot, vocab)
        self.s = slot_settings(slot)
        if self.s["window"] is not None and self.s["window"] < self.s["min_length"]:
            from ofasys.errors import PlanError

            raise PlanError(f"[MOTION:{slot.column}]: window ({self.s['window']}) is shorter than min_length "
                            f"({self.s['min_length']})")

    @property
    def generate_length(self) -> int:
        """Frames an output slot generates by default: ``window``, else ``max_length``."""
        return self.s["window"] or self.s["max_length"]

    def __call__(self, value: Any, ctx: SampleContext) -> Features:
        import numpy as np
        import torch

        from .io import load_clip
        from .normalization import load_stats

        clip = load_clip(value, self.s["sample_rate"])
        if abs(clip.fps - self.s["sample_rate"]) > 1e-6:
            clip = clip.resample(self.s["sample_rate"])
        n = len(clip)
        if n < self.s["min_length"]:
            raise DataError(f"motion clip too short: {n} frames at {self.s['sample_rate']:g} fps, min_length is "
                            f"{self.s['min_length']}")
        limit = self.s["window"] or self.s["max_length"]
        if n > limit:
            if ctx.training:
                start = ctx.rng.randrange(n - limit + 1)
            else:
                start = (n - limit) // 2 if self.s["window"] else 0
            clip = clip.crop(start, limit)
        feats = clip.to_features()
        if not np.all(np.isfinite(feats)):
            raise DataError("motion clip has NaN or infinite values")
        mean, std = load_stats(self.s["stats"])
        if mean.shape[0] != feats.shape[1]:
            raise DataError(f"the statistics have {mean.shape[0]} features, the clip {feats.shape[1]}")
        data = torch.from_numpy(((feats - mean) / std).astype(np.float32))
        return Features(data=data, length=len(clip), meta={"fps": self.s["sample_rate"], "frames": len(clip)})

    def collate(self, items: list) -> dict:
        import torch

        lengths = torch.tensor([x.shape[0] for x in items], dtype=torch.long)
        out = torch.zeros(len(items), int(lengths.max()), items[0].shape[1])
        for i, x in enumerate(items):
            out[i, : x.shape[0]] = x
        return {"motion": out, "lengths": lengths}

    def target_placeholder(self, ctx: SampleContext) -> Features:
        """At inference an output clip is not known yet: zeros of the length to generate."""
        import torch

        from .skeleton import N_FEATURES

        n = self.generate_length
        return Features(data=torch.zeros(n, N_FEATURES), length=n, meta={"fps": self.s["sample_rate"], "frames": n})
