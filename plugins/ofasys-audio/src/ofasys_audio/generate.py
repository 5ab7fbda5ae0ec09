"""Autoregressive mel-frame generation for AUDIO outputs (Tacotron-style loop over the universal decoder).

Each step feeds the previous ``frames_per_step`` frames through the adaptor's pre-net (its dropout stays on, as in
Tacotron 2, so the random stream is seeded by the ``seed`` option), decodes one position with the KV cache, and
predicts the next frames and a stop probability; a sample ends when the probability passes 0.5 (or at
``max_len`` steps, default ``max_duration``). The post-net then refines each sample's frames.
Predictions are ``{"mel": (frames, n_mels) normalised log-mel tensor}``.
"""

from __future__ import annotations

import math

import torch

from .features import MEL_HOP


class TTSGenerator:
    def __init__(self, adaptor_key: str, sample_rate: int = 16000, max_duration: float = 30.0,
                 stop_threshold: float = 0.5):
        self.adaptor_key = adaptor_key
        self.sample_rate = int(sample_rate)
        self.max_duration = float(max_duration or 30.0)
        self.stop_threshold = float(stop_threshold)

    @torch.no_grad()
    def generate(self, model, batch, max_len: int | None = None, seed: int | None = None, min_len: int | None = None,
                 **_options) -> list[dict]:
        adaptor = model.adaptor(self.adaptor_key)
        enc = model.encode(batch.encoder)
        b = len(enc)
        r = adaptor.r
        limit = math.ceil(self.max_duration * self.sample_rate / MEL_HOP / r)
        limit = min(int(max_len) if max_len else limit, model.config.max_positions)
        min_steps = int(min_len or 1)
        cache = model.new_cache(min(limit, 256))
        prev = adaptor.go_frame(b).to(enc.hidden.dtype)
        steps_out = []
        done = torch.zeros(b, dtype=torch.bool, device=enc.hidden.device)
        lengths = torch.full((b,), limit, dtype=torch.long, device=enc.hidden.device)
        with torch.random.fork_rng(devices=[] if enc.hidden.device.type == "cpu" else [enc.hidden.device]):
            torch.manual_seed(0 if seed is None else int(seed))
            for s in range(limit):
                h = model.decode_embeds(adaptor.embed_steps(prev), enc, cache)  # (B, 1, D)
                step = adaptor.feat_proj(h)
                stop = torch.sigmoid(adaptor.stop_proj(h).float()).view(b)
                steps_out.append(step)
                prev = step
                if s + 1 >= min_steps:
                    newly = (~done) & (stop > self.stop_threshold)
                    lengths[newly] = s + 1
                    done |= newly
                if bool(done.all()):
                    break
        mel = adaptor.refine(adaptor.ungroup(torch.cat(steps_out, dim=1))).float()
        return [{"mel": mel[i, : int(lengths[i]) * r].cpu()} for i in range(b)]
