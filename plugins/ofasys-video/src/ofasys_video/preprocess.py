"""Preprocessor of the VIDEO slot: a clip -> ``num_frames`` normalised frames ``(T, 3, S, S)``.

Per sample: :func:`~ofasys_video.decode.open_video` (path, bytes, file object or array of frames) ->
:func:`~ofasys_video.decode.sample_indices` (uniform at evaluation, jittered at training) -> decode only those
frames -> the training augmentation drawn **once per clip** and applied to every frame (the same crop, the same
flip) -> resize to ``patch_image_size`` (bilinear, antialiased) -> scale to 0-1 and normalise as the IMAGE slot
does (``norm=ofa``: mean = std = 0.5), so frames look to the shared image adaptor like IMAGE inputs.
"""

from __future__ import annotations

from typing import Any

from ofasys.components import Features, Preprocessor, SampleContext
from ofasys.errors import PlanError

from . import defaults
from .decode import open_video, sample_indices

AUGMENTATIONS = ("none", "flip", "resized_crop")
MEAN = STD = 0.5  # the IMAGE slot's default (OFA) normalisation


class VideoPreprocessor(Preprocessor):
    """Preprocessor of a VIDEO input slot (``preprocess=video``). ``Features.data``: a ``(T, 3, S, S)`` float
    tensor; ``Features.meta``: the clip's frame count, fps and the sampled indices."""

    order = -10

    def __init__(self, slot: Any, vocab: Any, model_config: dict | None = None):
        super().__init__(slot, vocab)
        cfg = dict(model_config or {})
        attrs = dict(slot.attrs or {})
        self.column = slot.column
        where = f"VIDEO slot of column '{self.column}'"
        self.num_frames = int(attrs.get("num_frames") or defaults.NUM_FRAMES)
        self.stride = attrs.get("stride")
        self.fps = attrs.get("fps")
        self.augment = attrs.get("augment") or "none"
        self.pool = int(attrs.get("temporal_pool") or 1)
        self.frame_adaptor = defaults.frame_adaptor(attrs)
        if self.num_frames < 1:
            raise PlanError(f"{where}: num_frames must be at least 1, not {self.num_frames}")
        if self.stride is not None and int(self.stride) < 1:
            raise PlanError(f"{where}: stride must be at least 1, not {self.stride}")
        if self.fps is not None and not float(self.fps) > 0:
            raise PlanError(f"{where}: fps must be positive, not {self.fps}")
        if self.stride is not None and self.fps is not None:
            raise PlanError(f"{where}: give stride or fps, not both (stride counts frames, fps sets a rate)")
        if self.pool < 1:
            raise PlanError(f"{where}: temporal_pool must be at least 1, not {self.pool}")
        if self.augment not in AUGMENTATIONS:
            raise PlanError(f"{where}: augment must be one of {', '.join(AUGMENTATIONS)}, not {self.augment!r}")
        steps = -(-self.num_frames // self.pool)
        if steps > defaults.MAX_TIME_STEPS:
            raise PlanError(f"{where}: {self.num_frames} frames pooled by {self.pool} make {steps} time steps, more "
                            f"than the {defaults.MAX_TIME_STEPS} temporal positions of the adaptor; raise "
                            "temporal_pool or lower num_frames")
        self.size, self.grid = defaults.frame_geometry(attrs, cfg, where)
        self.time_steps = steps

    def __call__(self, value: Any, ctx: SampleContext) -> Features:
        import numpy as np
        import torch
        import torch.nn.functional as F

        where = f"column '{self.column}'"
        clip = open_video(value, where)
        rng = ctx.rng if ctx.training else None
        idx = sample_indices(len(clip), self.num_frames, self.stride, self.fps, clip.fps, rng)
        frames = clip.frames(idx)  # (T, H, W, 3) uint8
        t, height, width = frames.shape[0], frames.shape[1], frames.shape[2]
        x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div_(255.0)
        crop = [0.0, 0.0, float(width), float(height)]
        flip = False
        if ctx.training and self.augment == "resized_crop":
            from ofasys_image.transforms import random_resized_crop

            crop = random_resized_crop(width, height, ctx.rng)
        if ctx.training and self.augment == "flip":
            flip = ctx.rng.random() < 0.5
        cx, cy, cw, ch = crop
        x0, y0 = int(round(cx)), int(round(cy))
        x1, y1 = max(x0 + 1, int(round(cx + cw))), max(y0 + 1, int(round(cy + ch)))
        x = x[:, :, y0:y1, x0:x1]
        s = self.size
        if x.shape[-2:] != (s, s):
            x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False, antialias=True).clamp_(0, 1)
        if flip:
            x = torch.flip(x, dims=[-1])
        x = (x - MEAN) / STD
        ctx.state.setdefault("videos", {})[self.column] = {"orig": [width, height], "crop": crop, "flip": flip,
                                                          "indices": idx}
        meta = {"frames": len(clip), "fps": clip.fps, "indices": idx, "orig_size": [width, height]}
        return Features(data=x.contiguous(), length=self.time_steps * self.grid * self.grid, meta=meta)

    def collate(self, items: list[Any]) -> dict:
        """``{"frames": (N, T, 3, S, S), "pool": temporal_pool, "frame_adaptor": name}``; clips with
        fewer frames (another VIDEO slot of the same adaptor) are padded by repeating their last frame."""
        import torch

        t = max(int(x.shape[0]) for x in items)
        if any(int(x.shape[0]) != t for x in items):
            items = [x if x.shape[0] == t else torch.cat([x, x[-1:].expand(t - x.shape[0], *x.shape[1:])])
                     for x in items]
        return {"frames": torch.stack(items), "pool": self.pool, "frame_adaptor": self.frame_adaptor}
