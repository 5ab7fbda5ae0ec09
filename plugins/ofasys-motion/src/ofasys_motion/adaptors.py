"""The ``motion_6d`` adaptor: per-frame MLPs between motion features and the model width, with a noise-level
embedding. One module serves both sides (the same key ``MOTION.motion_6d``):

* input (captioning): :meth:`forward` embeds clean frames + learned frame positions -> an encoder segment with the
  1-D relative bias ``motion1d``;
* output (generation): :meth:`embed_noisy` embeds a noisy clip plus the embedding of its noise level for the
  decoder (run non-causally as a denoiser), :meth:`predict` maps decoder states back to frames, and
  :meth:`drop_condition` swaps a sample's encoder output for a learned null condition (classifier-free guidance).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ofasys.model.adaptor import Adaptor, Segment
from ofasys.model.adaptor import EncoderOut


def timestep_embedding(t: Tensor, dim: int) -> Tensor:
    """Sinusoidal embedding (N, dim) of continuous noise levels t in [0, 1]."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = (t.float() * 1000.0).unsqueeze(1) * freqs.unsqueeze(0)
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1)


class MotionAdaptor(Adaptor):
    bias_kind = "motion1d"
    bias_dims = 1

    def __init__(self, n_features: int, d_model: int, max_frames: int = 256, init_std: float = 0.02):
        super().__init__()
        self.n_features, self.d_model, self.max_frames = n_features, d_model, max_frames
        self.frame_in = nn.Sequential(nn.Linear(n_features, d_model), nn.GELU(), nn.Linear(d_model, d_model))
        self.pos = nn.Embedding(max_frames, d_model)
        nn.init.normal_(self.pos.weight, 0.0, init_std)
        self.noise = nn.Sequential(nn.Linear(d_model, d_model), nn.SiLU(), nn.Linear(d_model, d_model))
        self.frame_out = nn.Sequential(nn.Linear(d_model, d_model), nn.GELU(), nn.Linear(d_model, n_features))
        self.null_cond = nn.Parameter(torch.zeros(d_model))

    def _check(self, t: int) -> None:
        if t > self.max_frames:
            raise ValueError(f"motion clips of {t} frames exceed the adaptor's {self.max_frames} positions")

    def forward(self, payload) -> Segment:
        x = payload["motion"]
        b, t, _ = x.shape
        self._check(t)
        lengths = payload["lengths"].to(x.device)
        mask = torch.arange(t, device=x.device).unsqueeze(0) < lengths.unsqueeze(1)
        emb = self.frame_in(x) + self.pos.weight[:t].unsqueeze(0)
        return Segment(emb, mask, None, self.bias_kind)

    def embed_noisy(self, x_t: Tensor, t: Tensor) -> Tensor:
        """Decoder inputs (B, T, D) for noisy frames x_t (B, T, F) at noise levels t (B,) in [0, 1]; the decoder
        adds its own positions."""
        self._check(x_t.size(1))
        level = self.noise(timestep_embedding(t, self.d_model).to(x_t.dtype))
        return self.frame_in(x_t) + level.unsqueeze(1)

    def predict(self, hidden: Tensor) -> Tensor:
        return self.frame_out(hidden)

    def drop_condition(self, enc: EncoderOut, drop: Tensor) -> EncoderOut:
        """Replace the encoder output of the samples where ``drop`` (B,) bool is True by the null condition (one
        position holding the learned ``null_cond``)."""
        if not bool(drop.any()):
            return enc
        hidden, mask = enc.hidden.clone(), enc.mask.clone()
        d = drop.to(hidden.device)
        hidden[d] = 0.0
        hidden[d, 0] = self.null_cond.to(hidden.dtype)
        mask[d] = False
        mask[d, 0] = True
        return EncoderOut(hidden, mask)


def build_adaptor(slot, model_config: dict) -> MotionAdaptor:
    from .skeleton import N_FEATURES

    a = slot.attrs or {}
    longest = max(int(a.get("max_length") or 64), int(a.get("window") or 0))
    return MotionAdaptor(N_FEATURES, int(model_config.get("d_model", 128)), max_frames=max(256, longest),
                         init_std=float(model_config.get("init_std", 0.02)))
