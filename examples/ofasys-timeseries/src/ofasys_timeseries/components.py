"""What the TIMESERIES factories return (imports torch; never imported by the entry module)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ofasys.components import Features, Preprocessor, SampleContext
from ofasys.errors import DataError
from ofasys.model.adaptor import Adaptor, Segment


class SeriesPreprocessor(Preprocessor):
    """A list of numbers -> ``Features(data=(L,) float tensor, length=number of patches)``. Picklable."""

    def _where(self) -> str:
        return f"[TIMESERIES:{self.slot.column}]"

    def __call__(self, value: Any, ctx: SampleContext) -> Features:
        where = self._where()
        if isinstance(value, dict):
            if "values" not in value:
                raise DataError(f"{where}: a series dict needs a 'values' list; it has {sorted(value)}")
            value = value["values"]
        if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):  # numpy arrays, tensors
            value = value.tolist()
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise DataError(f"{where} expects a list of numbers, got {type(value).__name__}")
        if len(value) < 2:
            raise DataError(f"{where}: a series needs at least 2 samples, got {len(value)}")
        for i, v in enumerate(value):
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise DataError(f"{where}: sample {i} ({v!r}) is not a number")
            if not math.isfinite(v):
                raise DataError(f"{where}: sample {i} is NaN or infinite")
        limit = int(self.slot.attr("max_length", 512) or 0)
        if limit and len(value) > limit:
            raise DataError(f"{where}: {len(value)} samples, more than max_length={limit}")
        x = torch.tensor([float(v) for v in value], dtype=torch.float32)
        mode = self.slot.attr("normalize", "zscore")
        if mode == "zscore":
            x = (x - x.mean()) / (x.std(unbiased=False) + 1e-6)
        elif mode == "minmax":
            lo, hi = x.min(), x.max()
            x = 2 * (x - lo) / (hi - lo + 1e-6) - 1
        patch = int(self.slot.attr("patch", 4))
        return Features(data=x, length=-(-len(x) // patch))

    def collate(self, items: list[Any]) -> dict:
        """``{"values": (N, P, patch) zero-padded, "mask": (N, P) bool}``: P patches of the longest series."""
        patch = int(self.slot.attr("patch", 4))
        n_patches = max(-(-len(x) // patch) for x in items)
        values = torch.zeros(len(items), n_patches * patch)
        mask = torch.zeros(len(items), n_patches, dtype=torch.bool)
        for i, x in enumerate(items):
            values[i, : len(x)] = x
            mask[i, : -(-len(x) // patch)] = True
        return {"values": values.view(len(items), n_patches, patch), "mask": mask}


class PatchAdaptor(Adaptor):
    """Each patch -> one position: resampled to ``width`` points, MLP(width -> d_model) + learned position,
    LayerNorm. Uses the shared 1-D relative-bias table ``seq1d``.

    One adaptor serves every TIMESERIES slot of every task (adaptors are shared by ``slot.adaptor_key``), so it must
    accept any ``patch`` attribute: patches are linearly resampled to a fixed width instead of sizing a layer by
    the first slot's ``patch``."""

    bias_kind = "seq1d"
    bias_dims = 1

    def __init__(self, d_model: int, width: int = 16, max_patches: int = 512):
        super().__init__()
        self.width = width
        self.embed = nn.Sequential(nn.Linear(width, d_model), nn.GELU(), nn.Linear(d_model, d_model))
        self.position = nn.Embedding(max_patches, d_model)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, payload: dict) -> Segment:
        values, mask = payload["values"], payload["mask"]  # (N, P, patch), (N, P)
        n, p, patch = values.shape
        if patch != self.width:
            flat = values.reshape(n * p, 1, patch)
            values = nn.functional.interpolate(flat, size=self.width, mode="linear", align_corners=True)
            values = values.view(n, p, self.width)
        pos = torch.arange(p, device=values.device).clamp(max=self.position.num_embeddings - 1)
        embeds = self.norm(self.embed(values) + self.position(pos)[None])
        return Segment(embeds=embeds, mask=mask, bias_kind=self.bias_kind)
