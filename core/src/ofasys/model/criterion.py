"""Training criteria. Token targets use label-smoothed cross entropy; feature-target plugins subclass
:class:`Criterion`.

Losses are returned as **sums** with the number of tokens (or frames) they cover; the trainer divides (by the
``sample_size`` of the logging dict, summed over accumulated batches and workers).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..vocab import Vocabulary

PAD = Vocabulary.pad


class _SmoothedCE(torch.autograd.Function):
    """Label-smoothed cross entropy over (n, V) float logits with a hand-written backward: the gradient
    ``softmax * (g_loss + g_nll) - g_loss * q - g_nll * onehot`` is built in the one (n, V) buffer saved by the
    forward, instead of autograd's chain of (n, V) temporaries (gather/scatter, expand, log-softmax backward)."""

    @staticmethod
    def forward(ctx, logits, target, epsilon, sm):
        lprobs = torch.log_softmax(logits, dim=-1)
        t = target.unsqueeze(1)
        nll = -lprobs.gather(1, t).squeeze(1)
        if epsilon <= 0:
            coef_t, coef_o = 1.0, None
            loss = nll.clone()
        elif sm is None:
            k = max(lprobs.size(-1) - 1, 1)
            coef_t, coef_o = 1.0 - epsilon, epsilon / k
            loss = coef_t * nll + coef_o * (-lprobs.sum(-1) - nll)
        else:
            target_in = sm.gather(1, t).squeeze(1)
            allowed_sum = -torch.where(sm, lprobs, torch.zeros_like(lprobs)).sum(-1)
            others = allowed_sum - torch.where(target_in, nll, torch.zeros_like(nll))
            k = sm.sum(-1) - target_in.long()
            eps = torch.where(k > 0, torch.full_like(nll, epsilon), torch.zeros_like(nll))
            coef_t, coef_o = 1.0 - eps, eps / k.clamp(min=1)
            loss = coef_t * nll + coef_o * others
        ctx.coefs = (coef_t, coef_o)
        ctx.save_for_backward(lprobs, target, sm)
        ctx.mark_non_differentiable(nll)
        return loss, nll

    @staticmethod
    def backward(ctx, g_loss, g_nll):
        lprobs, target, sm = ctx.saved_tensors
        coef_t, coef_o = ctx.coefs
        g = g_loss if g_nll is None else g_loss + g_nll
        grad = lprobs.exp_()  # the saved buffer becomes softmax, then the gradient
        grad.mul_(g.unsqueeze(1))
        t = target.unsqueeze(1)
        # target column: subtract g_loss * q_target (+ g_nll)
        sub_t = g_loss * coef_t if g_nll is None else g_loss * coef_t + g_nll
        if coef_o is not None:
            if sm is None:
                grad.sub_((g_loss * coef_o).unsqueeze(1))
                sub_t = sub_t - g_loss * coef_o  # the target was not an "other" id
            else:
                co = (g_loss * coef_o).unsqueeze(1)
                grad.sub_(torch.where(sm, co, torch.zeros_like(grad)))
                sub_t = sub_t - (g_loss * coef_o) * sm.gather(1, t).squeeze(1)
        grad.scatter_add_(1, t, -sub_t.unsqueeze(1).to(grad.dtype))
        return grad, None, None, None


def _ls_ce_flat(logits: Tensor, target: Tensor, epsilon: float, smoothing_mask: Tensor | None,
                restrict_logits: bool) -> tuple[Tensor, Tensor]:
    """Per-position (loss, nll) for logits (n, V) and target (n,); nll carries no gradient (logging)."""
    lg = logits.float()
    if restrict_logits and smoothing_mask is not None:
        lg = lg.masked_fill(~smoothing_mask, float("-inf"))
    if smoothing_mask is not None:
        smoothing_mask = smoothing_mask.bool()
    return _SmoothedCE.apply(lg, target, float(epsilon), smoothing_mask)


def label_smoothed_cross_entropy(logits: Tensor, target: Tensor, loss_mask: Tensor | None = None, epsilon: float = 0.1,
                                 smoothing_mask: Tensor | None = None, ignore_index: int | None = PAD,
                                 restrict_logits: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    """Label-smoothed cross entropy summed over the positions where ``loss_mask`` is True and the target is not
    ``ignore_index``.

    The target distribution puts ``1 - epsilon`` on the target and spreads ``epsilon`` uniformly over the other ids
    (fairseq's convention), or over the other *allowed* ids where ``smoothing_mask`` (B, T, V) bool — or anything
    broadcastable to it, e.g. (B, 1, V) — is given (closed sets). With ``restrict_logits`` the logits of disallowed
    ids are masked out before the softmax (OFA's constraint masks).

    :returns: ``(loss_sum, n_tokens, nll_sum)``; ``n_tokens`` is a 0-d long tensor; ``nll_sum`` is for logging
        (it carries no gradient).
    """
    sel = torch.ones_like(target, dtype=torch.bool) if loss_mask is None else loss_mask.bool()
    if ignore_index is not None:
        sel = sel & target.ne(ignore_index)
    lg = logits[sel]
    sm = None
    if smoothing_mask is not None:
        sm = smoothing_mask.bool().expand(*target.shape, logits.size(-1))[sel]
    loss, nll = _ls_ce_flat(lg, target[sel], epsilon, sm, restrict_logits)
    return loss.sum(), sel.sum(), nll.sum()


def _get(batch: Any, name: str, default: Any = None) -> Any:
    if isinstance(batch, dict):
        return batch.get(name, default)
    return getattr(batch, name, default)


class Criterion:
    """The training loss of an output slot, built by ``ofasys_criterion`` (or the core's default for tokens).

    ``__call__(model, batch) -> (loss, logging)``:

    * ``model``: the universal model (:class:`~ofasys.model.GeneralistModel`);
    * ``batch``: a mapping or object carrying at least ``encoder`` (an :class:`~ofasys.model.EncoderBatch`) and
      the criterion's target fields; when it carries ``encoder_out`` (an :class:`~ofasys.model.EncoderOut`), the
      criterion uses it instead of encoding again;
    * ``loss``: a 0-d tensor, the **sum** of the loss over the batch (backpropagated by the trainer after dividing
      by the summed ``sample_size``);
    * ``logging``: floats/ints — at least ``loss`` (sum), ``sample_size`` (what the loss is normalised by: tokens
      or frames), ``nsentences``; token criteria add ``nll_loss`` (sum) and ``ntokens``.
    """

    def __call__(self, model, batch) -> tuple[Tensor, dict]:  # pragma: no cover - interface
        raise NotImplementedError


class TokenCriterion(Criterion):
    """Label-smoothed cross entropy for token targets.

    Batch fields: ``encoder`` (EncoderBatch) or ``encoder_out``, ``prev_tokens`` (B, T) (bos + target shifted
    right), ``target`` (B, T) padded with ``pad``, optional ``loss_mask`` (B, T) bool (default: target != pad;
    False for ``no_loss`` / forced pieces), optional ``smoothing_ids`` (per sample a list of allowed ids or
    ``None``: closed sets spread the smoothing mass over their members only).
    Logits are computed only at the positions that enter the loss.

    Packed batches (several samples per row, :func:`ofasys.engine.packing.pack_batch`) also carry
    ``target_seq_ids`` (rows, T): the sample of every decoder position (-1 = padding), and ``n_samples``;
    ``smoothing_ids`` stays per sample. The loss, ``sample_size`` and ``nsentences`` equal the unpacked batch's.
    """

    def __init__(self, epsilon: float = 0.1, pad: int = PAD, restrict_logits: bool = False):
        self.epsilon = float(epsilon)
        self.pad = pad
        self.restrict_logits = restrict_logits

    def __call__(self, model, batch) -> tuple[Tensor, dict]:
        enc = _get(batch, "encoder_out")
        if enc is None:
            enc = model.encode(_get(batch, "encoder"))
        prev, target = _get(batch, "prev_tokens"), _get(batch, "target")
        loss_mask = _get(batch, "loss_mask")
        sel = target.ne(self.pad)
        if loss_mask is not None:
            sel = sel & loss_mask.bool()
        seq = _get(batch, "target_seq_ids")
        hidden = model.decode(prev, enc) if seq is None else model.decode(prev, enc, seq_ids=seq)
        logits = model.logits(hidden[sel])
        sm = None
        smoothing_ids: Sequence | None = _get(batch, "smoothing_ids")
        if smoothing_ids is not None and any(s is not None for s in smoothing_ids):
            V = logits.size(-1)
            rows = torch.ones(len(smoothing_ids), V, dtype=torch.bool)
            for b, ids in enumerate(smoothing_ids):
                if ids is not None:
                    rows[b] = False
                    rows[b, torch.as_tensor(list(ids), dtype=torch.long)] = True
            rows = rows.to(logits.device)
            if seq is None:
                sample_of = torch.arange(target.size(0), device=target.device).unsqueeze(1).expand_as(target)[sel]
            else:
                sample_of = seq.to(target.device)[sel]
            sm = rows[sample_of]
        loss, nll = _ls_ce_flat(logits, target[sel], self.epsilon, sm, self.restrict_logits)
        loss, nll = loss.sum(), nll.sum()
        n = int(sel.sum())
        n_sent = int(target.size(0))
        if seq is not None:
            n_sent = int(_get(batch, "n_samples", 0) or 0) or (int(seq.max()) + 1 if seq.numel() else 0)
        logging = {"loss": float(loss.detach()), "nll_loss": float(nll.detach()), "ntokens": n,
                   "nsentences": n_sent, "sample_size": n}
        return loss, logging
