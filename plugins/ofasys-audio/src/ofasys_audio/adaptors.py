"""Adaptors of the AUDIO slot.

* :class:`AudioFbankAdaptor` (``audio_fbank``, encoder): OFASys's ``Conv2dSubsampling4`` -- two 3x3 stride-2
  ``Conv2d`` + ReLU over the (frames x bins) filterbank image, 4x fewer frames -- then a linear projection to the
  model width plus sinusoidal positions. Segments use the 1-D relative position bias kind ``audio1d``. It also owns
  the CTC head (``ctc_head``: model width -> the phone inventory + blank) used when an ASR task sets
  ``ctc_weight``.
* :class:`AudioMelAdaptor` (``audio_mel``): normalised log-mel frames, ``frames_per_step`` frames per position.
  As an encoder input it projects frames linearly. As a decoder target (text to speech) it implements
  ``embed_target`` (Tacotron-2 pre-net: 2 x (Linear, ReLU, dropout 0.5 always on), then Linear) and ``predict``
  (frame projection, a 5-layer convolutional post-net added as a residual, and a stop-token logit per step).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ofasys.model.adaptor import Adaptor, Segment


def sinusoidal(length: int, dim: int, device=None) -> Tensor:
    """(length, dim) transformer sinusoidal positions."""
    pos = torch.arange(length, device=device, dtype=torch.float32).unsqueeze(1)
    half = dim // 2
    freq = torch.exp(torch.arange(half, device=device, dtype=torch.float32) * (-math.log(10000.0) / max(half - 1, 1)))
    out = torch.zeros(length, dim, device=device)
    out[:, :half] = torch.sin(pos * freq)
    out[:, half:2 * half] = torch.cos(pos * freq)
    return out


def subsampled_lengths(lengths: Tensor) -> Tensor:
    """Frames left by two 3x3 stride-2 convolutions (no padding)."""
    l1 = torch.div(lengths - 3, 2, rounding_mode="floor") + 1
    return (torch.div(l1 - 3, 2, rounding_mode="floor") + 1).clamp(min=1)


class AudioFbankAdaptor(Adaptor):
    """Filterbanks (N, T, F) -> (N, ~T/4, D) with a 1-D relative bias; ``ctc_head`` for the CTC branch."""

    bias_kind = "audio1d"
    bias_dims = 1
    bias_buckets = 0  # the config's token_bucket_size

    def __init__(self, d_model: int, n_bins: int = 80, channels: int | None = None, n_ctc: int = 0,
                 init_std: float = 0.02):
        super().__init__()
        c = int(channels or max(32, d_model // 4))
        self.d_model = d_model
        self.conv = nn.Sequential(nn.Conv2d(1, c, 3, 2), nn.ReLU(), nn.Conv2d(c, c, 3, 2), nn.ReLU())
        f = ((n_bins - 3) // 2 + 1 - 3) // 2 + 1
        self.proj = nn.Linear(c * f, d_model)
        nn.init.normal_(self.proj.weight, 0.0, init_std)
        nn.init.zeros_(self.proj.bias)
        self.pos_scale = nn.Parameter(torch.tensor(0.1))
        self.ctc_head = nn.Linear(d_model, n_ctc) if n_ctc else None

    def output_lengths(self, lengths: Tensor) -> Tensor:
        return subsampled_lengths(lengths)

    def forward(self, payload: Any) -> Segment:
        feats, lengths = payload["feats"], payload["lengths"]
        if feats.size(1) < 7:  # two valid 3x3 stride-2 convolutions need 7 frames
            feats = F.pad(feats, (0, 0, 0, 7 - feats.size(1)))
        x = self.conv(feats.to(self.proj.weight.dtype).unsqueeze(1))  # (N, C, T', F')
        n, c, t, f = x.shape
        x = self.proj(x.permute(0, 2, 1, 3).reshape(n, t, c * f))
        x = x + self.pos_scale * sinusoidal(t, self.d_model, x.device).to(x.dtype)
        out_len = self.output_lengths(lengths.to(x.device)).clamp(max=t)
        mask = torch.arange(t, device=x.device).unsqueeze(0) < out_len.unsqueeze(1)
        return Segment(embeds=x, mask=mask, pos=None, bias_kind=self.bias_kind)


class AudioMelAdaptor(Adaptor):
    """Normalised log-mel frames in and out (TTS); ``frames_per_step`` frames per decoder position."""

    bias_kind = "audio1d"
    bias_dims = 1
    bias_buckets = 0

    def __init__(self, d_model: int, n_mels: int = 80, frames_per_step: int = 2, prenet_dim: int = 256,
                 postnet_channels: int = 256, postnet_layers: int = 5, prenet_dropout: float = 0.5,
                 init_std: float = 0.02):
        super().__init__()
        self.d_model, self.n_mels, self.r = d_model, n_mels, int(frames_per_step)
        step = n_mels * self.r
        self.in_proj = nn.Linear(step, d_model)  # encoder-side input
        self.prenet = nn.Sequential(nn.Linear(step, prenet_dim), nn.ReLU(), nn.Linear(prenet_dim, prenet_dim),
                                    nn.ReLU())
        self.prenet_dropout = float(prenet_dropout)
        self.prenet_out = nn.Linear(prenet_dim, d_model)
        self.go = nn.Parameter(torch.zeros(step))
        self.feat_proj = nn.Linear(d_model, step)
        self.stop_proj = nn.Linear(d_model, 1)
        layers: list[nn.Module] = []
        ch = [n_mels] + [postnet_channels] * (postnet_layers - 1) + [n_mels]
        for i in range(postnet_layers):
            layers.append(nn.Conv1d(ch[i], ch[i + 1], 5, padding=2))
            if i < postnet_layers - 1:
                layers += [nn.BatchNorm1d(ch[i + 1]), nn.Tanh(), nn.Dropout(0.1)]
        self.postnet = nn.Sequential(*layers)
        for lin in (self.in_proj, self.prenet_out, self.feat_proj):
            nn.init.normal_(lin.weight, 0.0, init_std)
            nn.init.zeros_(lin.bias)

    # ------------------------------------------------------------------ shapes
    def group(self, mel: Tensor) -> Tensor:
        """(B, T, n_mels) with T a multiple of r -> (B, T/r, r*n_mels)."""
        b, t, m = mel.shape
        return mel.reshape(b, t // self.r, self.r * m)

    def ungroup(self, steps: Tensor) -> Tensor:
        b, s, _ = steps.shape
        return steps.reshape(b, s * self.r, self.n_mels)

    # ------------------------------------------------------------------ encoder side
    def forward(self, payload: Any) -> Segment:
        mel, lengths = payload["mel"], payload["lengths"]
        x = self.in_proj(self.group(mel.to(self.in_proj.weight.dtype)))
        s = x.size(1)
        x = x + sinusoidal(s, self.d_model, x.device).to(x.dtype) * 0.1
        steps = torch.div(lengths.to(x.device) + self.r - 1, self.r, rounding_mode="floor")
        mask = torch.arange(s, device=x.device).unsqueeze(0) < steps.unsqueeze(1)
        return Segment(embeds=x, mask=mask, pos=None, bias_kind=self.bias_kind)

    # ------------------------------------------------------------------ decoder side
    def embed_steps(self, prev: Tensor) -> Tensor:
        """(B, S, r*n_mels) previous frame groups -> decoder inputs (B, S, D) through the pre-net."""
        h = prev.to(self.prenet_out.weight.dtype)
        for layer in self.prenet:
            h = layer(h)
            if isinstance(layer, nn.ReLU):
                h = F.dropout(h, self.prenet_dropout, True)  # always on, as in Tacotron 2
        return self.prenet_out(h)

    def go_frame(self, batch: int) -> Tensor:
        return self.go.view(1, 1, -1).expand(batch, 1, -1)

    def embed_target(self, payload: Any) -> tuple[Tensor, Tensor]:
        steps = self.group(payload["mel"])  # (B, S, r*m)
        b, s, _ = steps.shape
        prev = torch.cat([self.go_frame(b).to(steps.dtype), steps[:, :-1]], dim=1)
        n = torch.div(payload["lengths"].to(steps.device) + self.r - 1, self.r, rounding_mode="floor")
        mask = torch.arange(s, device=steps.device).unsqueeze(0) < n.unsqueeze(1)
        return self.embed_steps(prev), mask

    def predict(self, hidden: Tensor) -> dict:
        """Decoder states (B, S, D) -> ``{"mel": (B, S*r, m) before the post-net, "post": after it,
        "stop": (B, S) logits}``."""
        mel = self.ungroup(self.feat_proj(hidden))
        return {"mel": mel, "post": self.refine(mel), "stop": self.stop_proj(hidden).squeeze(-1)}

    def refine(self, mel: Tensor) -> Tensor:
        """The post-net's residual refinement of (B, T, m) frames."""
        return mel + self.postnet(mel.transpose(1, 2)).transpose(1, 2)


def build_adaptor(slot: Any, model_config: dict) -> Adaptor:
    from ofasys.errors import ConfigError

    from .phones import PHONES

    attrs = dict(slot.attrs or {})
    variant = (slot.components or {}).get("adaptor") or "audio_fbank"
    d = int(model_config.get("d_model", 256))
    std = float(model_config.get("init_std", 0.02))
    bins = int(attrs.get("num_mel_bins") or 80)
    if variant == "audio_fbank":
        if slot.side == "decoder":
            from ofasys.errors import PlanError

            raise PlanError("an AUDIO output predicts mel frames: write it as "
                              f"[AUDIO:{slot.column},preprocess=audio_mel,adaptor=audio_mel]")
        return AudioFbankAdaptor(d, bins, n_ctc=len(PHONES) + 1, init_std=std)
    if variant == "audio_mel":
        width = 256 if d >= 256 else 128
        return AudioMelAdaptor(d, bins, int(attrs.get("frames_per_step") or 2), prenet_dim=width,
                               postnet_channels=width, init_std=std)
    raise ConfigError(f"unknown AUDIO adaptor {variant!r}")
