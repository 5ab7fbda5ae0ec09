"""Sequence packing: several short samples of a task share one encoder row and one decoder row.

A collated :class:`~ofasys.engine.batch.Batch` whose encoder side is one token row per sample and whose target is
tokens (the text and struct tasks) is repacked by greedy first-fit (longest sample first) into rows of at most
a token budget on each side: the longest sample of the micro-batch (per side), or ``max_tokens`` (capped at the model's
``max_positions``), whichever is larger. No sample is split across rows. The model keeps the samples apart
(attention within a sample, positions and relative bias restarting at each sample, see
:class:`~ofasys.model.adaptor.EncoderBatch`), so a packed batch gives the loss, gradients and logging of the
unpacked one with far fewer padded positions.

Other tasks (feature inputs: images, audio, video, motion; feature targets) are never packed. Packing runs per
micro-batch inside the DataLoader's collate function (so in the worker processes, after length bucketing, before
gradient accumulation and per rank), and only for training: evaluation and generation batches stay unpacked.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from ..vocab import Vocabulary
from .batch import Batch

PAD = Vocabulary.pad


@dataclass
class PackedBatch(Batch):
    """A :class:`Batch` whose rows hold several samples. ``encoder.seq_ids`` and ``target_seq_ids`` (rows, T)
    give the sample (index into the per-sample lists ``meta``, ``smoothing_ids``... ) of every position, -1 for
    padding. ``n_samples``/``n_tokens`` count samples and loss tokens as in the unpacked batch."""

    target_seq_ids: torch.Tensor | None = None

    def to(self, device, non_blocking: bool = False) -> "PackedBatch":
        moved = Batch.to(self, device, non_blocking)
        fields = {f.name: getattr(moved, f.name) for f in dataclasses.fields(Batch)}
        return PackedBatch(**fields, target_seq_ids=self.target_seq_ids.to(device, non_blocking=non_blocking))


def plan_is_packable(plan) -> str | None:
    """``None`` when a task of this plan can be packed, else why not (token inputs and token targets only)."""
    if plan.target_kind != "tokens":
        return f"its target is {plan.target_kind}, not tokens"
    feats = sorted({s.type for s in plan.all_slots() if s.side == "encoder" and s.kind == "features"})
    if feats:
        return f"its encoder input has feature slots ({', '.join(feats)})"
    return None


def _lengths(rows: torch.Tensor, pad: int) -> list[int] | None:
    """Per row the number of real positions, or ``None`` if a row has padding inside (left as it is)."""
    real = rows.ne(pad)
    n = real.sum(1)
    if bool((real[:, 1:] > real[:, :-1]).any()):
        return None
    return n.tolist()


def first_fit(enc_len: list[int], dec_len: list[int], enc_budget: int, dec_budget: int) -> list[list[int]]:
    """Greedy first-fit decreasing: samples, largest first (by the larger of their two sides' shares of the
    budgets), go into the first row with room on both sides. Returns per row the sample indices in ascending
    order."""
    order = sorted(range(len(enc_len)), key=lambda i: (-max(enc_len[i] / enc_budget, dec_len[i] / dec_budget), i))
    rows: list[list[int]] = []
    used: list[list[int]] = []
    for i in order:
        e, d = enc_len[i], dec_len[i]
        for r, (ue, ud) in enumerate(used):
            if ue + e <= enc_budget and ud + d <= dec_budget:
                rows[r].append(i)
                used[r][0] += e
                used[r][1] += d
                break
        else:
            rows.append([i])
            used.append([e, d])
    return [sorted(r) for r in rows]


def pack_batch(batch: Batch, pad: int = PAD, max_tokens: int | None = None,
               max_positions: int | None = None) -> Batch:
    """The packed form of ``batch``, or ``batch`` itself where it cannot be packed (feature inputs or targets, a
    sample with several or no encoder token rows, padding inside a row) or nothing would be gained (one row)."""
    enc = batch.encoder
    if (batch.target is None or batch.target_features is not None or enc.features or enc.tokens is None
            or enc.seq_ids is not None or isinstance(batch, PackedBatch)):
        return batch
    B = len(enc.layout)
    if B < 2 or any(len(lay) != 1 or lay[0][0] != "tokens" for lay in enc.layout):
        return batch
    src_rows = [lay[0][1] for lay in enc.layout]
    tokens = enc.tokens if src_rows == list(range(enc.tokens.size(0))) else enc.tokens[src_rows]
    enc_len = _lengths(tokens, pad)
    dec_len = _lengths(batch.target, pad)
    if enc_len is None or dec_len is None or min(enc_len) == 0 or min(dec_len) == 0:
        return batch
    enc_budget, dec_budget = max(enc_len), max(dec_len)
    if max_tokens:
        cap = min(max_tokens, max_positions) if max_positions else max_tokens
        enc_budget, dec_budget = max(enc_budget, cap), max(dec_budget, cap)
    rows = first_fit(enc_len, dec_len, enc_budget, dec_budget)
    if len(rows) == B:
        return batch
    R = len(rows)
    We = max(sum(enc_len[i] for i in r) for r in rows)
    Wd = max(sum(dec_len[i] for i in r) for r in rows)
    p_tok = torch.full((R, We), pad, dtype=tokens.dtype)
    p_eseq = torch.full((R, We), -1, dtype=torch.long)
    p_prev = torch.full((R, Wd), pad, dtype=batch.prev_tokens.dtype)
    p_tgt = torch.full((R, Wd), pad, dtype=batch.target.dtype)
    p_mask = torch.zeros((R, Wd), dtype=torch.bool)
    p_dseq = torch.full((R, Wd), -1, dtype=torch.long)
    loss_mask = batch.loss_mask if batch.loss_mask is not None else batch.target.ne(pad)
    for r, members in enumerate(rows):
        oe = od = 0
        for i in members:
            e, d = enc_len[i], dec_len[i]
            p_tok[r, oe:oe + e] = tokens[i, :e]
            p_eseq[r, oe:oe + e] = i
            p_prev[r, od:od + d] = batch.prev_tokens[i, :d]
            p_tgt[r, od:od + d] = batch.target[i, :d]
            p_mask[r, od:od + d] = loss_mask[i, :d]
            p_dseq[r, od:od + d] = i
            oe += e
            od += d
    fields = {f.name: getattr(batch, f.name) for f in dataclasses.fields(Batch)}
    fields["encoder"] = type(enc)(p_tok, {}, [[("tokens", r)] for r in range(R)], p_eseq)
    fields.update(prev_tokens=p_prev, target=p_tgt, loss_mask=p_mask)
    return PackedBatch(**fields, target_seq_ids=p_dseq)


@dataclass(frozen=True)
class Packing:
    """Picklable per-task packing step applied to each collated micro-batch (DataLoader workers included)."""

    pad: int = PAD
    max_tokens: int | None = None
    max_positions: int | None = None

    def __call__(self, batch):
        if batch is None:
            return None
        return pack_batch(batch, self.pad, self.max_tokens, self.max_positions)


def padding_fraction(batch: Batch) -> tuple[float, float]:
    """Fractions of padded positions of a batch's encoder token rows and decoder rows."""
    enc = batch.encoder
    pad_src = 0.0
    if enc.tokens is not None and enc.tokens.numel():
        real = enc.seq_ids.ge(0) if enc.seq_ids is not None else enc.tokens.ne(PAD)
        pad_src = 1.0 - float(real.float().mean())
    seq = getattr(batch, "target_seq_ids", None)
    real_t = seq.ge(0) if seq is not None else batch.target.ne(PAD)
    return pad_src, 1.0 - float(real_t.float().mean())
