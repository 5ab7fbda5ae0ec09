"""Collation: preprocessed samples of one task -> a :class:`Batch` of tensors."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from ..model.adaptor import EncoderBatch
from ..model.adaptor import _move as move_to_device
from .pipeline import Sample, TaskPipeline, _rows_of


@dataclass
class Batch:
    """A collated batch of one task.

    Token targets: ``prev_tokens`` (BOS + target[:-1]), ``target`` and ``loss_mask`` (B, T), and per sample
    ``smoothing_ids`` (closed sets). Feature targets: ``target_features`` (the output slot's collated payload).
    ``constraints`` (per sample) restrict generation; ``meta`` carries each row and postprocessing metadata.
    """

    task: str
    encoder: EncoderBatch
    prev_tokens: torch.Tensor | None = None
    target: torch.Tensor | None = None
    loss_mask: torch.Tensor | None = None
    smoothing_ids: list | None = None
    target_features: Any = None
    constraints: list = field(default_factory=list)
    templates: list[int] = field(default_factory=list)
    meta: list[dict] = field(default_factory=list)
    n_samples: int = 0
    n_tokens: int = 0

    def to(self, device, non_blocking: bool = False) -> "Batch":
        moved = [None if t is None else t.to(device, non_blocking=non_blocking)
                 for t in (self.prev_tokens, self.target, self.loss_mask)]
        target_features = move_to_device(self.target_features, device, non_blocking)
        return Batch(self.task, self.encoder.to(device, non_blocking), *moved, self.smoothing_ids, target_features,
                     self.constraints, self.templates, self.meta, self.n_samples, self.n_tokens)


def _pad(rows: list[list[int]], pad: int) -> torch.Tensor:
    width = max((len(r) for r in rows), default=0)
    out = torch.full((len(rows), max(width, 1)), pad, dtype=torch.long)
    for i, r in enumerate(rows):
        if r:
            out[i, : len(r)] = torch.tensor(r, dtype=torch.long)
    return out


def collate_samples(pipe: TaskPipeline, samples: list[Sample]) -> Batch:
    vocab = pipe.vocab
    token_rows: list[list[int]] = []
    feat_items: dict[str, list[Any]] = {}
    feat_slot: dict[str, Any] = {}
    layout: list[list[tuple[str, int]]] = []
    for s in samples:
        lay: list[tuple[str, int]] = []
        for kind, val in _rows_of(s.encoder, vocab, "encoder"):
            if kind == "tokens":
                lay.append(("tokens", len(token_rows)))
                token_rows.append(val[: pipe.max_source_length])
            else:
                key = val.slot.adaptor_key
                items = feat_items.setdefault(key, [])
                feat_slot.setdefault(key, val.slot)
                lay.append((key, len(items)))
                items.append(val.value.data)
        layout.append(lay)
    features = {k: pipe.preprocessor(feat_slot[k]).collate(v) for k, v in feat_items.items()}
    enc = EncoderBatch(tokens=_pad(token_rows, vocab.pad) if token_rows else None, features=features, layout=layout)
    batch = Batch(task=pipe.name, encoder=enc, templates=[s.template for s in samples],
                  meta=[s.meta for s in samples], n_samples=len(samples))
    if pipe.target_kind == "features":
        out_slot = pipe.plan.outputs[0]
        datas = [p.value.data for s in samples for p in s.decoder if p.kind == "features"]
        if len(datas) == len(samples):
            batch.target_features = pipe.preprocessor(out_slot).collate(datas)
        batch.n_tokens = len(samples)
        return batch
    targets, masks, smooth, constraints = [], [], [], []
    for s in samples:
        ids: list[int] = []
        mask: list[bool] = []
        sm: set[int] | None = None
        for p in s.decoder:
            if p.kind == "marker":
                ids.append(vocab.bos if p.value == "BOS" else vocab.eos)
                mask.append(True)
                continue
            tok = p.value
            ids.extend(tok.ids)
            mask.extend([bool(tok.loss)] * len(tok.ids))
            if tok.smoothing_ids is not None:
                sm = (sm or set()) | set(tok.smoothing_ids)
        ids = ids[: pipe.max_target_length - 1] + [vocab.eos]
        mask = mask[: pipe.max_target_length - 1] + [True]
        targets.append(ids)
        masks.append(mask)
        smooth.append(sorted(sm | {vocab.eos}) if sm is not None else None)
        constraints.append(pipe.constraint(s.template))
    target = _pad(targets, vocab.pad)
    loss_mask = torch.zeros_like(target, dtype=torch.bool)
    for i, m in enumerate(masks):
        loss_mask[i, : len(m)] = torch.tensor(m, dtype=torch.bool)
    prev = torch.full_like(target, vocab.pad)
    prev[:, 0] = vocab.bos
    prev[:, 1:] = target[:, :-1]
    prev[:, 1:][target[:, :-1] == vocab.pad] = vocab.pad
    batch.prev_tokens, batch.target, batch.loss_mask = prev, target, loss_mask
    batch.smoothing_ids = smooth
    batch.constraints = constraints
    batch.n_tokens = int(loss_mask.sum())
    return batch
