"""The ``motion`` postprocessor: a generated (normalised) clip -> ``motion`` (features array), ``positions``,
``fps``, ``clip`` and the savers ``save_bvh(path)``, ``save_npz(path)``, ``save_gif(path)``."""

from __future__ import annotations

from functools import partial
from typing import Any

from ofasys.components import Postprocessor

from .preprocess import slot_settings


class MotionPostprocessor(Postprocessor):
    def __init__(self, slot, vocab):
        super().__init__(slot, vocab)
        self.s = slot_settings(slot)

    def __call__(self, prediction: Any, meta: dict) -> dict:
        import numpy as np

        from . import io, render
        from .normalization import load_stats
        from .skeleton import Clip

        x = prediction["motion"] if isinstance(prediction, dict) else prediction
        x = np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x, dtype=np.float32)
        mean, std = load_stats(self.s["stats"])
        feats = x * std + mean
        fps = self.s["sample_rate"]
        clip = Clip.from_features(feats, fps)
        return {"motion": clip.to_features(), "positions": clip.positions().astype(np.float32), "fps": fps,
                "clip": clip, "save_bvh": partial(io.save_bvh, clip), "save_npz": partial(io.save_npz, clip),
                "save_gif": partial(render.save_gif, clip)}
