"""Diffusion over whole motion clips: the training criterion and the DDIM sampler (no scheduler dependency).

Noise schedule: the cosine schedule of Nichol & Dhariwal (2021) in continuous time,
``alpha_bar(t) = cos(((t + s) / (1 + s)) * pi / 2) ** 2 / cos((s / (1 + s)) * pi / 2) ** 2`` with ``s = 0.008``,
t in [0, 1]. A noisy clip is ``x_t = sqrt(alpha_bar) x_0 + sqrt(1 - alpha_bar) eps`` on normalised features.

The universal decoder is the denoiser: its input is the noisy clip embedded frame by frame plus the noise-level
embedding (:meth:`MotionAdaptor.embed_noisy`), it attends to every frame (``decode_embeds(..., causal=False)``)
and to the encoder (the text), and :meth:`MotionAdaptor.predict` maps its states to either ``x_0`` or ``eps``
(the slot's ``prediction`` attribute).

**Loss and its balance against token losses.** :class:`DiffusionCriterion` returns the squared error summed over
real frames of the per-frame *mean over features* (padding frames excluded), times ``loss_weight``, with
``sample_size`` = number of real frames; the trainer divides by ``sample_size``, so the task's loss is the
per-element mean squared error on unit-variance features (about 1 for a model that ignores its input, falling
to ~0.05-0.3) times ``loss_weight``, on the same per-element footing as a text task's per-token cross entropy.
It does not grow with clip length or batch size (the seed normalised by sample count instead).

**Classifier-free guidance.** In training, each sample's condition (its encoder output) is replaced by the learned
null condition with probability ``cond_dropout``; at sampling, ``guidance`` g combines the conditional and
unconditional predictions as ``uncond + g * (cond - uncond)`` (g = 1: conditional only, one pass per step).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ofasys.errors import DataError
from ofasys.model.criterion import Criterion

S = 0.008


def alpha_bar(t: Tensor) -> Tensor:
    f = torch.cos((t + S) / (1 + S) * math.pi / 2) ** 2
    f0 = math.cos(S / (1 + S) * math.pi / 2) ** 2
    return (f / f0).clamp(1e-5, 1.0)


def _get(batch: Any, name: str, default: Any = None) -> Any:
    if isinstance(batch, dict):
        return batch.get(name, default)
    return getattr(batch, name, default)


def denoise(model, adaptor, x_t: Tensor, t: Tensor, enc) -> Tensor:
    """The adaptor's prediction (x_0 or eps) for noisy clips ``x_t`` (B, T, F) at levels ``t`` (B,)."""
    return adaptor.predict(model.decode_embeds(adaptor.embed_noisy(x_t, t), enc, causal=False))


class DiffusionCriterion(Criterion):
    def __init__(self, adaptor_key: str, prediction: str = "x0", cond_dropout: float = 0.1, loss_weight: float = 1.0):
        if prediction not in ("x0", "epsilon"):
            raise ValueError(f"prediction must be x0 or epsilon, not {prediction!r}")
        self.adaptor_key = adaptor_key
        self.prediction = prediction
        self.cond_dropout = float(cond_dropout)
        self.loss_weight = float(loss_weight)

    def __call__(self, model, batch) -> tuple[Tensor, dict]:
        tf = _get(batch, "target_features")
        if tf is None:
            raise DataError("the motion diffusion criterion needs a target clip (the output column) in every row")
        enc = _get(batch, "encoder_out")
        if enc is None:
            enc = model.encode(_get(batch, "encoder"))
        adaptor = model.adaptor(self.adaptor_key)
        x0 = tf["motion"].to(enc.hidden.dtype)
        lengths = tf["lengths"].to(x0.device)
        b, t_len, _ = x0.shape
        mask = torch.arange(t_len, device=x0.device).unsqueeze(0) < lengths.unsqueeze(1)  # (B, T)
        # training draws from the global (trainer-seeded) generator; evaluation from a fixed one, so validation
        # losses are comparable between evaluations and do not disturb the training stream
        gen = None
        if not model.training:
            gen = torch.Generator(device="cpu").manual_seed(0)
        t = torch.rand(b, generator=gen).to(x0.device) * (1.0 - 1e-3) + 1e-3
        eps = torch.randn(x0.shape, generator=gen).to(x0.device, x0.dtype)
        ab = alpha_bar(t).view(b, 1, 1).to(x0.dtype)
        x_t = (ab.sqrt() * x0 + (1 - ab).sqrt() * eps) * mask.unsqueeze(-1)
        if model.training and self.cond_dropout > 0:
            drop = torch.rand(b) < self.cond_dropout
            enc = adaptor.drop_condition(enc, drop)
        pred = denoise(model, adaptor, x_t, t, enc)
        target = x0 if self.prediction == "x0" else eps
        per_frame = ((pred.float() - target.float()) ** 2).mean(-1)
        se = (per_frame * mask).sum()
        n = int(mask.sum())
        loss = se * self.loss_weight
        logging = {"loss": float(loss.detach()), "mse": float(se.detach()) / max(n, 1), "nframes": n,
                   "nsentences": b, "sample_size": n}
        return loss, logging


class DDIMGenerator:
    """Deterministic DDIM (eta = 0) over ``steps`` evenly spaced noise levels from 1 to 0, with classifier-free
    guidance. Options (besides ``max_len``: frames to generate, and ``seed``: the initial noise): ``steps``,
    ``guidance``. Predictions: ``{"motion": normalised features (frames, F)}``."""

    options = ("steps", "guidance")

    def __init__(self, adaptor_key: str, prediction: str = "x0", steps: int = 50, guidance: float = 1.0,
                 length: int = 64, clip_x0: float = 8.0):
        self.adaptor_key = adaptor_key
        self.prediction = prediction
        self.steps = int(steps)
        self.guidance = float(guidance)
        self.length = int(length)
        self.clip_x0 = float(clip_x0)

    @torch.no_grad()
    def generate(self, model, batch, max_len: int | None = None, seed: int | None = None, steps: int | None = None,
                 guidance: float | None = None, **_options) -> list[dict]:
        from ofasys.errors import ConfigError
        from ofasys.model.adaptor import EncoderOut

        steps = int(steps or self.steps)
        g = float(self.guidance if guidance is None else guidance)
        if steps < 1:
            raise ConfigError(f"steps must be at least 1, not {steps}")
        adaptor = model.adaptor(self.adaptor_key)
        enc = _get(batch, "encoder_out")
        if enc is None:
            enc = model.encode(batch.encoder)
        b = len(enc)
        tf = _get(batch, "target_features")
        length = int(max_len) if max_len else (int(tf["lengths"].max()) if tf is not None else self.length)
        dev, dtype = enc.hidden.device, enc.hidden.dtype
        if g != 1.0:
            both = EncoderOut(torch.cat([enc.hidden, enc.hidden]), torch.cat([enc.mask, enc.mask]))
            drop = torch.cat([torch.zeros(b, dtype=torch.bool), torch.ones(b, dtype=torch.bool)])
            enc = adaptor.drop_condition(both, drop)
        gen = torch.Generator(device="cpu").manual_seed(0 if seed is None else int(seed))
        x = torch.randn(b, length, adaptor.n_features, generator=gen).to(dev, dtype)
        levels = torch.linspace(1.0, 0.0, steps + 1)
        x0 = x
        for i in range(steps):
            t, t_next = levels[i], levels[i + 1]
            ab, ab_next = float(alpha_bar(t)), float(alpha_bar(t_next))
            if g != 1.0:
                out = denoise(model, adaptor, torch.cat([x, x]), torch.full((2 * b,), float(t), device=dev), enc)
                cond, uncond = out[:b], out[b:]
                out = uncond + g * (cond - uncond)
            else:
                out = denoise(model, adaptor, x, torch.full((b,), float(t), device=dev), enc)
            if self.prediction == "x0":
                x0 = out.clamp(-self.clip_x0, self.clip_x0)
                eps = (x - math.sqrt(ab) * x0) / math.sqrt(max(1 - ab, 1e-8))
            else:
                eps = out
                x0 = ((x - math.sqrt(max(1 - ab, 0.0)) * eps) / math.sqrt(ab)).clamp(-self.clip_x0, self.clip_x0)
            x = math.sqrt(ab_next) * x0 + math.sqrt(max(1 - ab_next, 0.0)) * eps
        return [{"motion": x0[i].float().cpu()} for i in range(b)]
