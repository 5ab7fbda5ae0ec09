"""The VIDEO adaptor: frames through an IMAGE adaptor, a motion-weighted space-time term, a temporal position
embedding, optional temporal pooling.

``video_image_sequence`` (the default) runs the frames through **the model's IMAGE adaptor** of the variant
named by ``frame_adaptor`` (``IMAGE.image_resnet`` or ``IMAGE.image_patch``): one set of weights serves IMAGE
slots and video frames. The factory looks the module up in the model it is building for
(``BuildContext.shared["model"]``) by that adaptor key, and adds it to the model under that key first when no
IMAGE slot created it yet, so an IMAGE task added later (or a checkpoint rebuilt later) finds and reuses it.
The module is also a submodule of the VIDEO adaptor (``.frames``): the optimizer sees its parameters once
(``named_parameters`` deduplicates) and checkpoints save them once (tied tensors are saved under one name).

``video_own_frames`` builds a private frame encoder of the same kind instead (no sharing).

Each frame becomes the IMAGE adaptor's grid of cells (``LayerNorm(content) + row + column`` embeddings); the
motion-weighted space-time term (:meth:`VideoAdaptor.motion_term`) puts where-and-when of what changes into the
embeddings; ``temporal_pool`` averages the cells of that many consecutive frames (the last group is padded by repeating
the last frame), bounding the sequence at ``ceil(T / pool) * cells``; a learned temporal embedding (unit scale,
like the image positions) is added per time step. The segment keeps the image's 2-D positions for the
``image2d`` relative bias, so the 2-D bias table is shared with IMAGE too.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ofasys.errors import ConfigError
from ofasys.model.adaptor import Adaptor, Segment

from . import defaults

TEMPORAL_STD = 1.0


def image_slot_for(slot: Any) -> Any:
    """The IMAGE slot plan whose adaptor embeds this VIDEO slot's frames (patch size, backbone)."""
    from ofasys.plan import SlotPlan

    attrs = dict(slot.attrs or {})
    return SlotPlan(key=f"{slot.column or 'video'}:frames", type="IMAGE", side="encoder", column=slot.column,
                    attrs={"patch_size": attrs.get("patch_size"), "backbone": attrs.get("backbone"),
                           "patch_image_size": attrs.get("patch_image_size")},
                    components={"adaptor": defaults.frame_adaptor(attrs)}, kind="features",
                    plugin="ofasys-video", version="")


class VideoAdaptor(Adaptor):
    """Embeds ``{"frames": (N, T, 3, S, S), "pool": int, ...}`` as ``N`` segments of ``ceil(T / pool) * cells``
    positions."""

    bias_kind = "image2d"
    bias_dims = 2
    bias_buckets = 0

    def __init__(self, frames: nn.Module, d_model: int, frame_adaptor: str, shared: bool,
                 max_steps: int = defaults.MAX_TIME_STEPS, space_time: bool = True, bucket: int = 42):
        super().__init__()
        self.frames = frames
        self.frame_adaptor = frame_adaptor
        self.shared = bool(shared)
        self.embed_time = nn.Embedding(max_steps, d_model)
        nn.init.normal_(self.embed_time.weight, 0.0, TEMPORAL_STD)
        # motion-weighted space-time term (see motion_term)
        self.space_time = space_time
        if space_time:
            self.time_gate = nn.Embedding(max_steps, d_model)
            self.st_rows = nn.Embedding(bucket, d_model)
            self.st_cols = nn.Embedding(bucket, d_model)
            nn.init.normal_(self.time_gate.weight, 0.0, TEMPORAL_STD)
            for table in (self.st_rows, self.st_cols):
                nn.init.normal_(table.weight, 0.0, TEMPORAL_STD / 2 ** 0.5)

    def motion_term(self, emb: torch.Tensor, pos: torch.Tensor, pool: int = 1) -> torch.Tensor:
        """``motion (N, T, L, 1) * time_gate[t] * (st_rows[row] + st_cols[col])``: a space-time position, weighted
        by how much each cell differs from its own mean over the clip (RMS over the width, no learned weights;
        the cell's 2-D position cancels in the difference). Static background gets ~0, the cells a moving,
        appearing or recolouring shape passes through get a large weight, so where-and-when of what changes is in
        the segment additively: a decoder reading it even with uniform attention sees the trajectory."""
        n, t, L, d = emb.shape
        if int(pos.max()) >= self.st_rows.num_embeddings:
            raise ConfigError(f"a frame grid of {int(pos.max()) + 1} cells per side exceeds the VIDEO adaptor's "
                              f"{self.st_rows.num_embeddings} space-time positions; use smaller frames")
        dev = emb - emb.mean(dim=1, keepdim=True)
        motion = dev.pow(2).mean(-1, keepdim=True).add(1e-6).sqrt()  # (N, T, L, 1)
        where = self.st_rows(pos[..., 0]) + self.st_cols(pos[..., 1])  # (N, T, L, D)
        step = torch.div(torch.arange(t, device=emb.device), pool, rounding_mode="floor")  # the pooled time step
        gate = self.time_gate(step.clamp(max=self.time_gate.num_embeddings - 1)).view(1, t, 1, d)
        return motion * gate.to(emb.dtype) * where.to(emb.dtype)

    def forward(self, payload: Any) -> Segment:
        if isinstance(payload, dict):
            video = payload["frames"]
            pool = int(payload.get("pool") or 1)
            wanted = payload.get("frame_adaptor")
        else:
            video, pool, wanted = payload, 1, None
        if wanted is not None and wanted != self.frame_adaptor:
            raise ConfigError(f"a VIDEO slot asks for frame_adaptor={wanted}, but the model's VIDEO adaptor was built "
                              f"with {self.frame_adaptor} (the first VIDEO slot fixes it); use one frame_adaptor for "
                              "every VIDEO slot of a model")
        n, t = int(video.shape[0]), int(video.shape[1])
        seg = self.frames(video.reshape(n * t, *video.shape[2:]))  # (N*T, L, D)
        L, d = seg.embeds.shape[1], seg.embeds.shape[2]
        emb = seg.embeds.reshape(n, t, L, d)
        mask = seg.mask.reshape(n, t, L)
        pos = seg.pos.reshape(n, t, L, 2) if seg.pos is not None else None
        if self.space_time and pos is not None and t > 1:
            emb = emb + self.motion_term(emb, pos, pool)
        if pool > 1:
            steps = -(-t // pool)
            if steps * pool != t:  # pad the last group by repeating the last frame
                extra = steps * pool - t
                emb = torch.cat([emb, emb[:, -1:].expand(n, extra, L, d)], dim=1)
                mask = torch.cat([mask, mask[:, -1:].expand(n, extra, L)], dim=1)
                if pos is not None:
                    pos = torch.cat([pos, pos[:, -1:].expand(n, extra, L, 2)], dim=1)
            emb = emb.reshape(n, steps, pool, L, d).mean(2)
            mask = mask.reshape(n, steps, pool, L).any(2)
            pos = pos.reshape(n, steps, pool, L, 2)[:, :, 0] if pos is not None else None
            t = steps
        if t > self.embed_time.num_embeddings:
            raise ConfigError(f"{t} time steps exceed the VIDEO adaptor's {self.embed_time.num_embeddings} temporal "
                              "positions; raise temporal_pool or lower num_frames")
        time = self.embed_time(torch.arange(t, device=emb.device)).to(emb.dtype)  # (T, D)
        emb = emb + time.view(1, t, 1, d)
        return Segment(embeds=emb.reshape(n, t * L, d), mask=mask.reshape(n, t * L),
                       pos=None if pos is None else pos.reshape(n, t * L, 2), bias_kind=self.bias_kind)


def build_video_adaptor(slot: Any, model_config: dict, model: Any = None) -> VideoAdaptor:
    """The adaptor a planned VIDEO slot names. Shared variant: the model's IMAGE adaptor (created and added to
    ``model`` under its key when missing); own variant: a private frame encoder."""
    from ofasys_image.adaptors import build_adaptor

    attrs = dict(slot.attrs or {})
    variant = (slot.components or {}).get("adaptor") or defaults.SHARED_ADAPTOR
    frame_variant = defaults.frame_adaptor(attrs)
    if frame_variant not in defaults.FRAME_ADAPTORS:
        raise ConfigError(f"VIDEO slot of column '{slot.column}': frame_adaptor must be one of "
                          f"{', '.join(defaults.FRAME_ADAPTORS)}, not {frame_variant!r}")
    d = int(model_config.get("d_model", 256))
    bucket = int(model_config.get("image_bucket_size") or 42)
    image_slot = image_slot_for(slot)
    if variant == defaults.OWN_ADAPTOR:
        return VideoAdaptor(build_adaptor(image_slot, model_config), d, frame_variant, shared=False, bucket=bucket)
    if variant != defaults.SHARED_ADAPTOR:
        raise ConfigError(f"unknown VIDEO adaptor {variant!r}")
    if model is None:
        raise ConfigError("the shared VIDEO adaptor needs the model it is built for (BuildContext.shared['model']) "
                          "to find the IMAGE adaptor; use adaptor=video_own_frames for a standalone adaptor")
    key = defaults.image_key(attrs)
    if model.has_adaptor(key):
        frames = model.adaptor(key)
    else:
        frames = model.add_adaptor(key, build_adaptor(image_slot, model_config))
    return VideoAdaptor(frames, d, frame_variant, shared=True, bucket=bucket)
