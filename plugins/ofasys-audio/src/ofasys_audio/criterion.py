"""Training criteria of the AUDIO plugin.

* :class:`TTSCriterion` (AUDIO output, ``criterion=tts``): Tacotron-2's loss on normalised log-mel frames --
  L1 + MSE of the frames before and after the post-net, summed over mel bins and divided by the number of bins
  (so one frame contributes a per-bin mean), plus binary cross entropy of the stop token per decoder step
  (positive weight ``stop_pos_weight``: one positive per utterance). Normalised by the number of real frames.
* :class:`CTCTextCriterion` (TEXT output of a task whose AUDIO input sets ``ctc_weight`` > 0): the core's
  label-smoothed cross entropy on the text plus CTC on phones over the audio positions of the encoder
  (OFASys's ``speech_to_text_loss``): ``(1 - ctc_weight) * CE per token + ctc_weight * CTC per phone``. Phones come
  from the row's ``ctc_column`` (default ``phones``) or, when the row has none, from the shipped lexicon applied
  to the text target. Word separators are not CTC targets.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ofasys.errors import DataError
from ofasys.model.criterion import Criterion


def _get(batch: Any, name: str, default: Any = None) -> Any:
    if isinstance(batch, dict):
        return batch.get(name, default)
    return getattr(batch, name, default)


def text_spans(encoder: Any, mask: Tensor) -> tuple[Tensor, Tensor]:
    """(start, length) per sample of the part of a token-only encoder input that varies between the samples of
    the batch (the text of ``[TEXT:text] speak this.``: the instruction words around it are the same in every
    sample). Falls back to every real position when the batch has one sample or feature segments."""
    real = mask.sum(1)
    start = torch.zeros_like(real)
    tokens = _get(encoder, "tokens")
    if tokens is None or _get(encoder, "features") or tokens.size(0) < 2 or tokens.shape != mask.shape:
        return start, real
    seqs = [tokens[i, : int(real[i])].tolist() for i in range(tokens.size(0))]
    shortest = min(len(x) for x in seqs)
    pre = 0
    while pre < shortest and all(x[pre] == seqs[0][pre] for x in seqs):
        pre += 1
    suf = 0
    while suf < shortest - pre and all(x[-1 - suf] == seqs[0][-1 - suf] for x in seqs):
        suf += 1
    length = real - pre - suf
    if int(length.min()) < 1:
        return start, real
    return start + pre, length


def guided_attention_loss(probs: Tensor, step_mask: Tensor, start: Tensor, length: Tensor,
                          sigma: float) -> Tensor:
    """Tachibana et al.'s guided attention: cross-attention probabilities ``probs`` (B, H, T, S) weighted by
    ``1 - exp(-(s'/N - t/T)^2 / (2 sigma^2))`` (``s'`` the position inside the text span of length N, ``t`` the
    decoder step of T), 1 outside the span; summed over source positions, averaged over heads, summed over
    decoder steps."""
    b, h, t, s = probs.shape
    dev = probs.device
    steps = step_mask.sum(1).clamp(min=1).to(probs.dtype)  # (B,)
    tt = (torch.arange(t, device=dev, dtype=probs.dtype).unsqueeze(0) + 0.5) / steps.unsqueeze(1)  # (B, T)
    pos = torch.arange(s, device=dev).unsqueeze(0) - start.unsqueeze(1)  # (B, S)
    inside = (pos >= 0) & (pos < length.unsqueeze(1))
    ss = (pos.to(probs.dtype) + 0.5) / length.clamp(min=1).unsqueeze(1).to(probs.dtype)
    w = 1.0 - torch.exp(-((ss.unsqueeze(1) - tt.unsqueeze(2)) ** 2) / (2 * sigma ** 2))  # (B, T, S)
    w = torch.where(inside.unsqueeze(1), w, torch.ones_like(w))
    per_step = (probs * w.unsqueeze(1)).sum(-1).mean(1)  # (B, T)
    return (per_step * step_mask.to(probs.dtype)).sum()


class TTSCriterion(Criterion):
    def __init__(self, adaptor_key: str, stop_pos_weight: float = 5.0, stop_weight: float = 1.0,
                 guided_attention: float = 0.0, guided_sigma: float = 0.3):
        self.adaptor_key = adaptor_key
        self.stop_pos_weight = float(stop_pos_weight)
        self.stop_weight = float(stop_weight)
        self.guided_attention = float(guided_attention)
        self.guided_sigma = float(guided_sigma)

    def _cross_attention(self, model, enc, embeds):
        """Decoder states and the cross-attention probabilities (B, H, T, S) of every decoder layer (queries
        captured with forward hooks; keys recomputed from the encoder states)."""
        import math

        layers = list(getattr(model, "decoder_layers", None) or [])
        queries: list[Tensor] = []
        hooks = [layer.cross_attn.q.register_forward_hook(lambda _m, _i, out: queries.append(out))
                 for layer in layers]
        try:
            hidden = model.decode_embeds(embeds, enc)
        finally:
            for hk in hooks:
                hk.remove()
        probs = []
        key_mask = enc.mask.clone()
        key_mask[:, 0] |= ~enc.mask.any(1)
        for layer, q in zip(layers, queries):
            att = layer.cross_attn
            k, _ = att.cross_kv(enc.hidden)  # (B, H, S, hd)
            b, t, _ = q.shape
            qh = q.view(b, t, att.h, att.hd).transpose(1, 2)
            scores = (qh @ k.transpose(-1, -2)).float() / math.sqrt(att.hd)
            scores = scores.masked_fill(~key_mask[:, None, None, :], float("-inf"))
            probs.append(scores.softmax(-1))
        return hidden, probs

    def __call__(self, model, batch) -> tuple[Tensor, dict]:
        tf = _get(batch, "target_features")
        if tf is None:
            raise DataError("the text-to-speech criterion needs target audio (the output column) in every row")
        enc = _get(batch, "encoder_out")
        if enc is None:
            enc = model.encode(_get(batch, "encoder"))
        adaptor = model.adaptor(self.adaptor_key)
        embeds, step_mask = adaptor.embed_target(tf)
        probs: list[Tensor] = []
        if self.guided_attention > 0 and model.training:
            hidden, probs = self._cross_attention(model, enc, embeds)
        else:
            hidden = model.decode_embeds(embeds, enc)
        pred = adaptor.predict(hidden)
        target = tf["mel"].to(pred["mel"].dtype)
        lengths = tf["lengths"].to(target.device)
        b, t, m = target.shape
        frame_mask = (torch.arange(t, device=target.device).unsqueeze(0) < lengths.unsqueeze(1)).unsqueeze(-1)
        fm = frame_mask.to(target.dtype)
        l1 = ((pred["mel"] - target).abs() * fm).sum() + ((pred["post"] - target).abs() * fm).sum()
        mse = (((pred["mel"] - target) ** 2) * fm).sum() + (((pred["post"] - target) ** 2) * fm).sum()
        steps = step_mask.sum(1)
        stop_target = torch.zeros_like(pred["stop"])
        stop_target[torch.arange(b, device=target.device), (steps - 1).clamp(min=0)] = 1.0
        bce = F.binary_cross_entropy_with_logits(
            pred["stop"].float(), stop_target.float(), reduction="none",
            pos_weight=torch.tensor(self.stop_pos_weight, device=target.device))
        bce = (bce * step_mask.float()).sum() * adaptor.r  # per frame, like the spectral terms
        n_frames = int(lengths.sum())
        spectral = (l1 + mse) / m
        loss = spectral + self.stop_weight * bce
        ga = 0.0
        if probs:
            start, length = text_spans(_get(batch, "encoder"), enc.mask)
            ga_t = sum(guided_attention_loss(p, step_mask, start, length, self.guided_sigma) for p in probs)
            ga_t = ga_t / len(probs) * adaptor.r  # per frame, like the spectral terms
            loss = loss + self.guided_attention * ga_t
            ga = float(ga_t.detach())
        logging = {"guided_attention": ga, "loss": float(loss.detach()), "mel_l1": float(l1.detach()) / (2 * m), "stop_bce":
                   float(bce.detach()), "nsentences": b, "sample_size": n_frames, "nframes": n_frames}
        return loss, logging


class CTCTextCriterion(Criterion):
    def __init__(self, token_criterion, ctc_weight: float, audio_key: str, ctc_column: str = "phones",
                 text_column: str | None = None, pad: int = 1):
        self.token = token_criterion
        self.ctc_weight = float(ctc_weight)
        self.audio_key = audio_key
        self.ctc_column = ctc_column
        self.text_column = text_column
        self.pad = pad

    def phone_targets(self, row: dict) -> list[int]:
        from .phones import WORD_SEP, _index, g2p, split_phones

        value = row.get(self.ctc_column)
        if value is None:
            if self.text_column is None or not isinstance(row.get(self.text_column), str):
                raise DataError(f"the CTC branch needs a '{self.ctc_column}' column of phones")
            value = g2p(row[self.text_column])
        index = _index()
        out = []
        for p in split_phones(value):
            if p == WORD_SEP:
                continue
            if p not in index:
                raise DataError(f"unknown phone {p!r} in column '{self.ctc_column}'")
            out.append(index[p] + 1)  # 0 is the CTC blank
        return out

    def __call__(self, model, batch) -> tuple[Tensor, dict]:
        encoder = _get(batch, "encoder")
        enc = _get(batch, "encoder_out")
        if enc is None:
            enc = model.encode(encoder)
        view = {"encoder_out": enc, "prev_tokens": _get(batch, "prev_tokens"), "target": _get(batch, "target"),
                "loss_mask": _get(batch, "loss_mask"), "smoothing_ids": _get(batch, "smoothing_ids")}
        ce, logging = self.token(model, view)
        targets = [self.phone_targets(m["row"]) for m in _get(batch, "meta")]
        index, in_lens = audio_frames(model, encoder, self.audio_key, self.pad)
        head = model.adaptor(self.audio_key).ctc_head
        hidden = enc.hidden.gather(1, index.clamp(max=enc.hidden.size(1) - 1).unsqueeze(-1)
                                   .expand(-1, -1, enc.hidden.size(-1)))
        logp = F.log_softmax(head(hidden).float(), dim=-1)
        flat = torch.tensor([p for t in targets for p in t], dtype=torch.long, device=logp.device)
        t_lens = torch.tensor([len(t) for t in targets], dtype=torch.long, device=logp.device)
        ctc = F.ctc_loss(logp.transpose(0, 1), flat, in_lens, t_lens, blank=0, reduction="sum", zero_infinity=True)
        n_tok = max(int(logging["sample_size"]), 1)
        n_ph = max(int(t_lens.sum()), 1)
        w = self.ctc_weight
        loss = (1.0 - w) * ce + w * ctc * (n_tok / n_ph)
        logging = {**logging, "loss": float(loss.detach()), "ce_loss": float(ce.detach()),
                   "ctc_loss": float(ctc.detach()), "nphones": n_ph}
        return loss, logging


def audio_frames(model, encoder, audio_key: str, pad: int = 1) -> tuple[Tensor, Tensor]:
    """(index (B, T) into the encoder positions, lengths (B,)) of each sample's first ``audio_key`` segment
    (segments are concatenated in layout order; tokens count their non-pad ids)."""
    lengths_of: dict[str, list[int]] = {}
    tokens = encoder.tokens
    for key, payload in encoder.features.items():
        ad = model.adaptor(key)
        if key == audio_key or hasattr(ad, "output_lengths"):
            lens = ad.output_lengths(payload["lengths"])
            if "feats" in payload:
                t = payload["feats"].size(1)
                lens = lens.clamp(max=int(ad.output_lengths(torch.tensor([max(t, 7)]))[0]))
            lengths_of[key] = [int(x) for x in lens]
        else:
            lengths_of[key] = [int(x) for x in ad(payload).mask.sum(1)]
    starts, lens = [], []
    for lay in encoder.layout:
        offset, start, n = 0, 0, 0
        found = False
        for key, row in lay:
            size = int(tokens[row].ne(pad).sum()) if key == "tokens" else lengths_of[key][row]
            if key == audio_key and not found:
                start, n, found = offset, size, True
            offset += size
        starts.append(start)
        lens.append(n)
    dev = model.device
    lens_t = torch.tensor(lens, dtype=torch.long, device=dev)
    tmax = max(1, max(lens))
    index = torch.tensor(starts, device=dev).unsqueeze(1) + torch.arange(tmax, device=dev).unsqueeze(0)
    return index, lens_t


@torch.no_grad()
def ctc_greedy_phones(model, encoder, audio_key: str = "AUDIO.audio_fbank", pad: int = 1) -> list[str]:
    """Greedy CTC decoding of the encoder's phone head: per sample, the phones (space-separated, no word
    separators) of its first ``audio_key`` segment. The encoder batch may hold any instruction with that audio."""
    from .phones import PHONES

    enc = model.encode(encoder)
    index, lens = audio_frames(model, encoder, audio_key, pad)
    hidden = enc.hidden.gather(1, index.clamp(max=enc.hidden.size(1) - 1).unsqueeze(-1)
                               .expand(-1, -1, enc.hidden.size(-1)))
    best = model.adaptor(audio_key).ctc_head(hidden).argmax(-1).tolist()
    out = []
    for b, n in enumerate(lens.tolist()):
        seq, prev = [], 0
        for k in best[b][:n]:
            if k != prev and k != 0:
                seq.append(PHONES[k - 1])
            prev = k
        out.append(" ".join(seq))
    return out
