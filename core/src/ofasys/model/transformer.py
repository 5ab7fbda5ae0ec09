"""The ``ofa`` universal model: a pre-LN encoder-decoder transformer with NormFormer extras.

Architecture (OFA's, with the speed-relevant choices spelled out):

* pre-LN layers; NormFormer: LayerNorm after attention, LayerNorm on the FFN intermediate, a learnable per-head
  scale on the attention output (folded into the output projection's weight, so it costs no activation pass);
  GELU; attention through ``F.scaled_dot_product_attention`` with a fused QKV projection (self-attention) and a
  fused KV projection (cross-attention);
* a shared token embedding ``embed_tokens`` tied to the output projection, learned absolute positions added to
  token embeddings (encoder and decoder have their own), type embeddings per segment source, embedding LayerNorm;
* relative position bias: one table per bias kind (``tokens``: OFA's 1-D log buckets; adaptor kinds: 1-D log
  buckets or 2-D clamped offsets) **shared by all layers** (OFA's ``share_attn_bias``), so the (B, H, S, S) bias
  is built once per forward, not once per layer. Positions of different segments of a sample get a learned
  per-head bias indexed by their segment-order offset (clamped to +-8), so ``[TEXT:a] [IMAGE] [TEXT:b]`` differs
  from ``[TEXT:b] [IMAGE] [TEXT:a]``. The bias tables start at zero, so adding an adaptor later creates
  parameters deterministically;
* incremental decoding with a key/value cache: self-attention keys grow, cross-attention keys/values are
  computed once per source sample. When the decoder batch holds ``r`` rows per encoder sample (beams, n-best
  samples, rows grouped sample-major), the cross-attention folds the ``r`` rows into the query axis instead of
  copying the encoder states ``r`` times;
* packed batches (training and teacher-forced evaluation only): several samples share an encoder row and a
  decoder row (``EncoderBatch.seq_ids``, the ``seq_ids`` of :meth:`GeneralistModel.decode`); attention stays
  within a sample (causal in the decoder, cross-attention to the same sample's encoder positions) and the learned
  positions and relative bias restart at each sample, so every sample is computed as if it were alone.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pad_sequence
from torch.utils.checkpoint import checkpoint

from ..errors import ConfigError
from ..vocab import Vocabulary
from .adaptor import Adaptor, EncoderBatch, EncoderOut, Segment
from .config import ModelConfig
from . import speed
from .speed import linear, linear_gelu, pack_linear_weight

PAD = Vocabulary.pad
MAX_SEGMENT_OFFSET = 8  # cross-segment bias rows: segment-order offsets -8..8 (clamped)
_NONE_KINDS = ("none",)


def token_bucket_lookup(bucket_size: int, max_position: int) -> Tensor:
    """OFA's 1-D log-bucketed relative positions as a lookup: entry ``delta + max_position - 1`` holds the bucket
    (in ``[0, 2 * bucket_size - 1)``) of relative distance ``delta`` (query minus key)."""
    rel = torch.arange(-(max_position - 1), max_position)
    mid = bucket_size // 2
    if max_position - 1 <= mid or mid < 2:
        return rel.clamp(-(bucket_size - 1), bucket_size - 1) + bucket_size - 1
    sign = torch.sign(rel)
    abs_pos = torch.where((rel < mid) & (rel > -mid), torch.full_like(rel, mid - 1), rel.abs())
    log_pos = torch.ceil(torch.log(abs_pos.double() / mid) / math.log((max_position - 1) / mid) * (mid - 1)) + mid
    bucket = torch.where(abs_pos <= mid, rel, log_pos.long() * sign)
    return (bucket + bucket_size - 1).clamp(0, 2 * bucket_size - 2)


def packed_positions(seq_ids: Tensor) -> Tensor:
    """Position of every entry of a packed row within its run of equal ``seq_ids`` (N, L): ``0, 1, ...`` from the
    first position of each sample (padding runs count on as well; they are masked)."""
    n, L = seq_ids.shape
    idx = torch.arange(L, device=seq_ids.device).expand(n, L)
    starts = torch.ones_like(seq_ids, dtype=torch.bool)
    starts[:, 1:] = seq_ids[:, 1:] != seq_ids[:, :-1]
    return idx - torch.where(starts, idx, torch.zeros_like(idx)).cummax(1).values


def _bias_rows(dims: int, buckets: int) -> int:
    return 2 * buckets - 1 if dims == 1 else (2 * buckets - 1) ** 2


def _drop_path(x: Tensor, p: float, training: bool) -> Tensor:
    if p <= 0.0 or not training:
        return x
    keep = x.new_empty((x.size(0),) + (1,) * (x.dim() - 1)).bernoulli_(1 - p)
    return x * keep / (1 - p)


class _ResidualDropout(torch.autograd.Function):
    """``x + dropout(h, p)`` in one pass with a boolean keep-mask (cheaper than ``F.dropout``'s bernoulli + float
    noise on CPU, and a quarter of its saved memory)."""

    @staticmethod
    def forward(ctx, x, h, p):
        keep = torch.rand_like(h) >= p
        ctx.scale = 1.0 / (1.0 - p)
        ctx.save_for_backward(keep)
        return torch.addcmul(x, h, keep, value=ctx.scale)

    @staticmethod
    def backward(ctx, g):
        (keep,) = ctx.saved_tensors
        return g, g * keep * ctx.scale, None


def _residual(x: Tensor, h: Tensor, p: float, drop_path: float) -> Tensor:
    """Training-time residual branch: ``x + drop_path(dropout(h))``."""
    if drop_path > 0.0:
        return x + _drop_path(F.dropout(h, p, True), drop_path, True)
    if p <= 0.0:
        return x + h
    return _ResidualDropout.apply(x, h, p)


def _attend(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, p: float) -> Tensor:
    """Attention ``softmax(q k^T / sqrt(hd) + mask) v``. Through ``F.scaled_dot_product_attention`` (fused kernels)
    unless the mask needs a gradient (a learned relative bias while training): SDPA then falls back to its
    unfused math path, which is slower on CPU than these three ops (matmul with the scale and bias applied in
    place, softmax, matmul). Every row must have a finite entry (the model's masks always keep one)."""
    if mask is None or not mask.requires_grad:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
    s = torch.matmul(q, k.transpose(-2, -1)).mul_(q.size(-1) ** -0.5).add_(mask)
    a = torch.softmax(s, dim=-1)
    if p > 0.0:
        a = F.dropout(a, p, True)
    return torch.matmul(a, v)


class _Linear(nn.Linear):
    """``nn.Linear`` computed by :func:`~ofasys.model.speed.linear` (oneDNN on CPU where it is faster). A module
    call like any other: forward hooks (plugins capture attention queries with them) and parameter names are
    those of ``nn.Linear``."""

    def forward(self, x: Tensor) -> Tensor:
        return linear(x, self.weight, self.bias)


def _one_query_attention(q: Tensor, kT: Tensor, v: Tensor, mask: Tensor) -> Tensor:
    """Attention of one query position per (row, head), the heads folded into the batch: queries (N*H, 1, hd)
    already scaled by ``hd ** -0.5``, keys transposed (N*H, hd, S), values (N*H, S, hd) and an additive mask
    broadcastable to (N*H, 1, S). One ``baddbmm`` (scores plus mask), a softmax and a ``bmm``: fewer operations
    than SDPA's flash kernel, which tiles for many queries, or a matmul/scale/add chain."""
    return torch.bmm(torch.softmax(torch.baddbmm(mask, q, kT), dim=-1), v)


def _ln(m: nn.LayerNorm, x: Tensor) -> Tensor:
    return F.layer_norm(x, m.normalized_shape, m.weight, m.bias, m.eps)


class Unpadded:
    """The real positions of a padded (B, S) batch as one flat row index, for layers that run on those rows only
    (:func:`~ofasys.model.speed.unpad_worthwhile` decides when). Position-wise work (layer norms, projections,
    the FFN, residuals) then skips the padding; attention scatters its projections back into the padded layout
    (zeros at padded positions, which are masked as keys) and gathers the real queries' outputs. Real positions
    get the values of the padded computation up to the summation order of the products."""

    __slots__ = ("index", "pad_index", "shape", "rows", "pad_rows")

    def __init__(self, mask: Tensor):
        flat = mask.reshape(-1)
        self.index = flat.nonzero().squeeze(1)
        self.pad_index = (~flat).nonzero().squeeze(1)
        self.shape = tuple(mask.shape)
        s = self.shape[1]
        self.rows = (self.index // s, self.index % s)  # (sample, position) of every real row
        self.pad_rows = (self.pad_index // s, self.pad_index % s)

    def take(self, x: Tensor) -> Tensor:
        """(B, S, F) -> (N, F): the real positions' rows."""
        return x.reshape(-1, x.size(-1)).index_select(0, self.index)

    def put(self, flat: Tensor) -> Tensor:
        """(N, F) -> (B, S, F) with zeros at padded positions."""
        b, s = self.shape
        out = flat.new_empty(b * s, flat.size(-1)).index_fill_(0, self.pad_index, 0.0)
        return out.index_copy_(0, self.index, flat).view(b, s, -1)


class _SplitHeads(torch.autograd.Function):
    """Rows of a fused projection (B * S or, with an :class:`Unpadded`, its N real positions; P * D features:
    query/key/value parts, heads, head dims) -> P contiguous (B, H, S, hd) tensors, zeros at padded positions.
    One strided write per part; the backward builds the rows' gradient with one ``stack`` (plus the gather of the
    real rows). Autograd's view/permute/unbind chain instead stacks, copies the permuted stack, and the attention
    products copy the strided parts to contiguous ones again."""

    @staticmethod
    def forward(ctx, rows, parts: int, heads: int, b: int, s: int, unpad):
        f = rows.size(-1)
        hd = f // parts // heads
        src = rows.reshape(-1, parts, heads, hd)
        outs = []
        for i in range(parts):
            out = rows.new_empty(b, heads, s, hd)
            dst = out.transpose(1, 2)  # (B, S, H, hd) view
            if unpad is None:
                dst.copy_(src[:, i].view(b, s, heads, hd))
            else:
                dst.index_put_(unpad.rows, src[:, i])
                dst.index_put_(unpad.pad_rows, rows.new_zeros(()))
            outs.append(out)
        ctx.meta = (rows.shape, b, s, unpad)
        return tuple(outs)

    @staticmethod
    def backward(ctx, *grads):
        shape, b, s, unpad = ctx.meta
        like = next(g for g in grads if g is not None)
        g = torch.stack([(gi if gi is not None else torch.zeros_like(like)).transpose(1, 2) for gi in grads], 2)
        g = g.view(b * s, -1)
        if unpad is not None:
            g = g.index_select(0, unpad.index)
        return g.view(shape), None, None, None, None, None


def _split_heads(rows: Tensor, parts: int, heads: int, b: int, s: int, unpad: Unpadded | None = None):
    """The P (B, H, S, hd) parts of fused projection rows (:class:`_SplitHeads`)."""
    return _SplitHeads.apply(rows, parts, heads, b, s, unpad)


# --------------------------------------------------------------------------------------------- layers


class Attention(nn.Module):
    """Multi-head attention through SDPA. Self-attention uses one fused QKV projection, cross-attention a Q and a
    fused KV projection. The NormFormer head scale multiplies the output projection's input columns."""

    def __init__(self, cfg: ModelConfig, cross: bool):
        super().__init__()
        d, self.h = cfg.d_model, cfg.n_heads
        self.hd = d // self.h
        self.cross = cross
        if cross:
            self.q = _Linear(d, d)
            self.kv = _Linear(d, 2 * d)
        else:
            self.qkv = _Linear(d, 3 * d)
        self.out = _Linear(d, d)
        self.head_scale = nn.Parameter(torch.ones(self.h)) if cfg.scale_heads else None
        self.post_ln = nn.LayerNorm(d) if cfg.normformer else None
        self.p = cfg.attention_dropout

    def folded_out_weight(self) -> Tensor:
        """The output projection's weight with the NormFormer head scale folded into its input columns."""
        w = self.out.weight
        return w if self.head_scale is None else w * self.head_scale.repeat_interleave(self.hd)

    def _project_out(self, o: Tensor) -> Tensor:
        """Output projection of the attention output o (N, T, D) (heads concatenated); the NormFormer head scale
        multiplies either the activations or, when those are larger, the projection weight's input columns."""
        w = self.out.weight
        hs = self.head_scale
        if hs is not None:
            if o.numel() < w.numel():
                o = (o.view(*o.shape[:-1], self.h, self.hd) * hs.unsqueeze(1)).flatten(-2)
            else:
                w = w * hs.repeat_interleave(self.hd)
        o = linear(o, w, self.out.bias)
        return self.post_ln(o) if self.post_ln is not None else o

    def self_attn(self, x: Tensor, bias: Tensor | None, cache: "DecoderCache | None" = None, layer: int = 0,
                  unpad: Unpadded | None = None) -> Tensor:
        if unpad is not None:  # x: the real positions (N, D); attention in the padded layout
            n, t = unpad.shape
            q, k, v = _split_heads(self.qkv(x), 3, self.h, n, t, unpad)
            o = _attend(q, k, v, bias, self.p if self.training else 0.0)
            return self._project_out(unpad.take(o.transpose(1, 2).reshape(n, t, -1)))
        n, t, d = x.shape
        if cache is not None:
            qkv = self.qkv(x).view(n, t, 3, self.h, self.hd)
            k, v = cache.append_kv(layer, qkv[:, :, 1:])
            q = qkv[:, :, 0].transpose(1, 2)
        else:
            q, k, v = _split_heads(self.qkv(x), 3, self.h, n, t)
        o = _attend(q, k, v, bias, self.p if self.training else 0.0)
        return self._project_out(o.transpose(1, 2).reshape(n, t, d))

    def cross_kv(self, mem: Tensor, flat: "tuple[Tensor, Unpadded] | None" = None) -> tuple[Tensor, Tensor]:
        """Keys and values (B, H, S, hd) of the encoder states ``mem`` (B, S, D); ``flat`` (the real positions'
        states and their :class:`Unpadded`, :attr:`EncoderOut.flat`) projects only those (zeros elsewhere)."""
        b, s, _ = mem.shape
        if flat is None:
            return _split_heads(self.kv(mem), 2, self.h, b, s)
        return _split_heads(self.kv(flat[0]), 2, self.h, b, s, flat[1])

    def cross_attn(self, x: Tensor, kv: tuple[Tensor, Tensor], mask: Tensor, rows: int) -> Tensor:
        n, t, d = x.shape
        k, v = kv
        q = self.q(x)
        p = self.p if self.training else 0.0
        if rows == 1:
            q = q.view(n, t, self.h, self.hd).transpose(1, 2)
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
            o = o.transpose(1, 2).reshape(n, t, d)
        else:  # fold the rows of one source sample into the query axis
            b = n // rows
            q = q.view(b, rows, t, self.h, self.hd).permute(0, 3, 1, 2, 4).reshape(b, self.h, rows * t, self.hd)
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
            o = o.view(b, self.h, rows, t, self.hd).permute(0, 2, 3, 1, 4).reshape(n, t, d)
        return self._project_out(o)


class FFN(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.fc1 = _Linear(cfg.d_model, cfg.ffn_dim)
        self.fc2 = _Linear(cfg.ffn_dim, cfg.d_model)
        self.mid_ln = nn.LayerNorm(cfg.ffn_dim) if cfg.normformer else None
        self.p = cfg.activation_dropout

    def forward(self, x: Tensor) -> Tensor:
        if torch.is_grad_enabled() or self._forward_hooks or self.fc1._forward_hooks:
            h = F.gelu(self.fc1(x))
        else:  # inference: the GELU fused into fc1 where oneDNN runs it
            h = linear_gelu(x, self.fc1.weight, self.fc1.bias)
        if self.mid_ln is not None:
            h = self.mid_ln(h)
        if self.p and self.training:
            h = F.dropout(h, self.p, True)
        return self.fc2(h)


class EncoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig, drop_path: float, n_experts: int = 1):
        super().__init__()
        self.attn_ln = nn.LayerNorm(cfg.d_model)
        self.attn = Attention(cfg, cross=False)
        self.ffn_ln = nn.LayerNorm(cfg.d_model)
        self.ffn = FFN(cfg)
        self.experts = nn.ModuleList(FFN(cfg) for _ in range(n_experts - 1)) if n_experts > 1 else None
        self.p, self.drop_path = cfg.dropout, drop_path

    def _ffn(self, h: Tensor, expert_ids: Tensor | None) -> Tensor:
        if self.experts is None or expert_ids is None:
            return self.ffn(h)
        out = torch.empty_like(h)
        for e, ffn in enumerate([self.ffn, *self.experts]):
            sel = expert_ids == e
            if bool(sel.any()):
                out[sel] = ffn(h[sel]).to(out.dtype)
        return out

    def forward(self, x: Tensor, bias: Tensor, expert_ids: Tensor | None = None,
                unpad: Unpadded | None = None) -> Tensor:
        """``x`` (B, S, D), or with ``unpad`` the real positions (N, D) (``expert_ids`` likewise)."""
        h = self.attn.self_attn(self.attn_ln(x), bias, unpad=unpad)
        x = _residual(x, h, self.p, self.drop_path) if self.training else x + h
        h = self._ffn(self.ffn_ln(x), expert_ids)
        return _residual(x, h, self.p, self.drop_path) if self.training else x + h


class DecoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig, drop_path: float):
        super().__init__()
        self.self_ln = nn.LayerNorm(cfg.d_model)
        self.self_attn = Attention(cfg, cross=False)
        self.cross_ln = nn.LayerNorm(cfg.d_model)
        self.cross_attn = Attention(cfg, cross=True)
        self.ffn_ln = nn.LayerNorm(cfg.d_model)
        self.ffn = FFN(cfg)
        self.p, self.drop_path = cfg.dropout, drop_path

    def forward(self, x: Tensor, self_bias: Tensor | None, mem: Tensor | None, cross_kv, cross_mask: Tensor,
                rows: int, cache: DecoderCache | None = None, layer: int = 0, mem_flat=None) -> Tensor:
        tr = self.training
        h = self.self_attn.self_attn(self.self_ln(x), self_bias, cache, layer)
        x = _residual(x, h, self.p, self.drop_path) if tr else x + h
        if cross_kv is None:
            cross_kv = self.cross_attn.cross_kv(mem, mem_flat)
        h = self.cross_attn.cross_attn(self.cross_ln(x), cross_kv, cross_mask, rows)
        x = _residual(x, h, self.p, self.drop_path) if tr else x + h
        h = self.ffn(self.ffn_ln(x))
        return _residual(x, h, self.p, self.drop_path) if tr else x + h

    def step_weights(self, rows: int = 16) -> "_StepWeights":
        """The tensors :meth:`step` reads, gathered once per decoding run: the head scales folded into the output
        projections and the attention scale ``head_dim ** -0.5`` into the query projections (equal to scaling the
        activations up to float rounding; exact for power-of-two head sizes). The projection weights are packed
        for oneDNN where it is used (:func:`~ofasys.model.speed.pack_linear_weight`, ``rows``: the expected number
        of decoder rows)."""
        pk = lambda t: pack_linear_weight(t, rows)  # noqa: E731
        sa, ca, f = self.self_attn, self.cross_attn, self.ffn
        d, scale = sa.h * sa.hd, sa.hd ** -0.5
        qs = torch.ones(3 * d, dtype=sa.qkv.weight.dtype, device=sa.qkv.weight.device)
        qs[:d] = scale
        w = _StepWeights()
        w.heads, w.hd = sa.h, sa.hd
        w.eps = self.self_ln.eps
        w.ln1, w.ln2, w.ln3 = _ln_params(self.self_ln), _ln_params(self.cross_ln), _ln_params(self.ffn_ln)
        w.qkv_w, w.qkv_b = pk(sa.qkv.weight * qs.unsqueeze(1)), sa.qkv.bias * qs
        w.so_w, w.so_b, w.so_ln = pk(sa.folded_out_weight()), sa.out.bias, _ln_params(sa.post_ln)
        w.q_w, w.q_b = pk(ca.q.weight * scale), ca.q.bias * scale
        w.co_w, w.co_b, w.co_ln = pk(ca.folded_out_weight()), ca.out.bias, _ln_params(ca.post_ln)
        w.fc1_w, w.fc1_b, w.mid_ln = pk(f.fc1.weight), f.fc1.bias, _ln_params(f.mid_ln)
        w.fc2_w, w.fc2_b = pk(f.fc2.weight), f.fc2.bias
        return w

    @staticmethod
    def step(w: "_StepWeights", x: Tensor, bias: Tensor, cache: "DecoderCache", layer: int, cross_kv,
             cross_mask: Tensor, rows: int) -> Tensor:
        """Cached inference (no dropout): :meth:`forward` computed from the tensors of :meth:`step_weights`
        (queries come out of their projections already scaled) with functional calls; per decoded token, module
        calls, attribute look-ups and view operations are a visible share of a step of the small sizes.

        With one new position (``t == 1``), ``bias`` is that position's bias row with the heads folded into the
        batch (N*H, 1, L) and self-attention reads the cache through :meth:`DecoderCache.append_one`; with one
        row per source sample as well, ``cross_kv``/``cross_mask`` are the head-folded keys, values and mask of
        :meth:`DecoderCache.cross_views`. Otherwise ``bias`` is (1, H, t, L), ``cross_kv`` (B, H, S, hd) keys
        and values and ``cross_mask`` (B, 1, 1, S)."""
        n, t, d = x.shape
        H, hd, eps = w.heads, w.hd, w.eps
        ln, lin = torch.layer_norm, linear
        # self-attention: keys/values go straight into the cache buffer
        qkv = lin(ln(x, (d,), *w.ln1, eps), w.qkv_w, w.qkv_b)
        if t == 1:
            kT, v = cache.append_one(layer, qkv, H)
            o = _one_query_attention(qkv[:, 0, :d].reshape(n * H, 1, hd), kT, v, bias).view(n, 1, d)
        else:
            qkv = qkv.view(n, t, 3, H, hd)
            k, v = cache.append_kv(layer, qkv[:, :, 1:])
            o = F.scaled_dot_product_attention(qkv[:, :, 0].transpose(1, 2), k, v, attn_mask=bias, scale=1.0)
            o = o.transpose(1, 2).reshape(n, t, d)
        o = lin(o, w.so_w, w.so_b)
        x = x + (ln(o, (d,), *w.so_ln, eps) if w.so_ln is not None else o)
        # cross-attention over the cached source keys/values
        q = lin(ln(x, (d,), *w.ln2, eps), w.q_w, w.q_b)
        if rows == 1 and t == 1:
            kT, v = cross_kv
            o = _one_query_attention(q.view(n * H, 1, hd), kT, v, cross_mask).view(n, 1, d)
        elif rows == 1:
            k, v = cross_kv
            o = F.scaled_dot_product_attention(q.view(n, t, H, hd).transpose(1, 2), k, v, attn_mask=cross_mask,
                                               scale=1.0)
            o = o.transpose(1, 2).reshape(n, t, d)
        else:
            k, v = cross_kv
            b = n // rows
            q = q.view(b, rows, t, H, hd).permute(0, 3, 1, 2, 4).reshape(b, H, rows * t, hd)
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=cross_mask, scale=1.0)
            o = o.view(b, H, rows, t, hd).permute(0, 2, 3, 1, 4).reshape(n, t, d)
        o = lin(o, w.co_w, w.co_b)
        x = x + (ln(o, (d,), *w.co_ln, eps) if w.co_ln is not None else o)
        # feed-forward
        h = linear_gelu(ln(x, (d,), *w.ln3, eps), w.fc1_w, w.fc1_b)
        if w.mid_ln is not None:
            h = ln(h, (h.size(-1),), *w.mid_ln, eps)
        return x + lin(h, w.fc2_w, w.fc2_b)


class _StepWeights:
    """Plain attribute bag of one decoder layer's tensors for :meth:`DecoderLayer.step`."""

    __slots__ = ("heads", "hd", "eps", "ln1", "ln2", "ln3", "qkv_w", "qkv_b", "so_w", "so_b", "so_ln", "q_w", "q_b",
                 "co_w", "co_b", "co_ln", "fc1_w", "fc1_b", "mid_ln", "fc2_w", "fc2_b")


def _ln_params(m: nn.LayerNorm | None) -> tuple[Tensor, Tensor] | None:
    return None if m is None else (m.weight, m.bias)


# --------------------------------------------------------------------------------------------- cache


class DecoderCache:
    """Incremental-decoding state: the self-attention keys/values of the positions decoded so far (all layers),
    the cross-attention keys/values (computed on the first call, one set per source sample), the number of
    positions decoded (``length``) and, for inference, state derived from the weights once per decoding run (the
    decoder's relative bias for every position pair up to the capacity, the output weights with the head scale
    folded in). A cache belongs to one decoding run of one model: do not change the weights while it is in use.

    Keys/values live in one preallocated time-major buffer ``(capacity, layers, 2, N, H, head_dim)``: a step
    writes its position of every layer in place (no concatenation), and :meth:`reorder` (beam search) is a single
    ``index_select`` of the decoded prefix, into a second buffer that is then swapped in. Attention reads the
    prefix as a strided ``(N, H, L, head_dim)`` view.
    """

    def __init__(self, n_layers: int, capacity: int = 64):
        self.length = 0
        self.capacity = max(1, int(capacity))
        self.n_layers = n_layers
        self.kv: Tensor | None = None
        self._spare: Tensor | None = None
        self.cross_kv: list | None = None
        self.cross_mask: Tensor | None = None
        self.derived: dict | None = None  # inference-only state derived from the weights (see GeneralistModel)
        self._layer_views: tuple | None = None  # (buffer, per layer (keys^T, values) head-folded views of it)
        self._cross_views: tuple | None = None  # (cross_kv, cross_mask, head-folded views of them)

    def _buffer(self, n: int, h: int, hd: int, t: int, like: Tensor) -> Tensor:
        L = self.length
        buf = self.kv
        if buf is None or buf.size(0) < L + t or buf.size(3) != n or buf.dtype != like.dtype:
            cap = max(self.capacity, L + t)
            same = buf is not None and buf.size(3) == n
            if same:
                cap = max(cap, 2 * buf.size(0))
            new = like.new_empty(cap, self.n_layers, 2, n, h, hd)
            if same and L:
                new[:L].copy_(buf[:L])
            self.kv, self._spare, self.capacity = new, None, cap
        return self.kv

    def append_kv(self, layer: int, kv: Tensor) -> tuple[Tensor, Tensor]:
        """Store the new positions' keys/values ``kv`` (N, T, 2, H, hd) and return all of them as two
        (N, H, L + T, hd) views."""
        n, t, _, h, hd = kv.shape
        buf = self._buffer(n, h, hd, t, kv)
        L = self.length
        buf[L:L + t, layer].copy_(kv.permute(1, 2, 0, 3, 4))
        prefix = buf[:L + t, layer]
        return prefix[:, 0].permute(1, 2, 0, 3), prefix[:, 1].permute(1, 2, 0, 3)

    def append_one(self, layer: int, qkv: Tensor, heads: int) -> tuple[Tensor, Tensor]:
        """Store the key/value of one new position, taken from the fused projection ``qkv`` (N, 1, 3 * D) (query,
        keys, values), and return all positions' keys transposed (N*H, hd, L + 1) and values (N*H, L + 1, hd),
        the heads folded into the batch (views of the buffer)."""
        n, d = qkv.size(0), qkv.size(-1) // 3
        buf = self._buffer(n, heads, d // heads, 1, qkv)
        L = self.length
        buf[L, layer].copy_(qkv[:, 0, d:].view(n, 2, heads, d // heads).transpose(0, 1))
        lv = self._layer_views
        if lv is None or lv[0] is not buf:
            cap, nl, _, _, h, hd = buf.shape
            keys = buf[:, :, 0].permute(1, 2, 3, 4, 0).view(nl, n * h, hd, cap)
            values = buf[:, :, 1].permute(1, 2, 3, 0, 4).view(nl, n * h, cap, hd)
            lv = self._layer_views = (buf, list(zip(keys.unbind(0), values.unbind(0))))
        kT, v = lv[1][layer]
        return kT[:, :, :L + 1], v[:, :L + 1]

    def cross_views(self) -> tuple[list, Tensor]:
        """The cross-attention keys/values and mask with the heads folded into the batch: per layer keys
        transposed (B*H, hd, S) and values (B*H, S, hd), and the mask (B*H, 1, S); made once per set of
        ``cross_kv``/``cross_mask`` (a source reordering assigns new ones)."""
        cv = self._cross_views
        if cv is None or cv[0] is not self.cross_kv or cv[1] is not self.cross_mask:
            b, h, s, hd = self.cross_kv[0][0].shape
            views = [(k.transpose(-1, -2).reshape(b * h, hd, s), v.reshape(b * h, s, hd)) for k, v in self.cross_kv]
            mask = self.cross_mask.expand(b, h, 1, s).reshape(b * h, 1, s)
            cv = self._cross_views = (self.cross_kv, self.cross_mask, views, mask)
        return cv[2], cv[3]

    def append(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Store the new positions' keys/values (N, H, T, hd) and return all of them as (N, H, L + T, hd)."""
        return self.append_kv(layer, torch.stack([k, v], 1).permute(0, 3, 1, 2, 4))

    def reorder(self, index: Tensor) -> None:
        buf = self.kv
        if buf is None:
            return
        n = index.numel()
        spare = self._spare
        if spare is None or spare.size(0) != buf.size(0) or spare.size(3) != n:
            spare = buf.new_empty(buf.shape[:3] + (n,) + buf.shape[4:])
        L = self.length
        if L:
            torch.index_select(buf[:L], 3, index, out=spare[:L])
        self.kv, self._spare = spare, (buf if buf.size(3) == n else None)


class _InferenceWeights:
    """Inference-only tensors derived from the weights (decoder step weights with folded head scales, packed for
    oneDNN; the packed output embedding), kept across decoding runs and rebuilt when a parameter they come from
    changes (its storage or version counter) or the model's mode changes. Never copied, pickled or saved."""

    def __init__(self):
        self.step_key: tuple | None = None
        self.step: list | None = None
        self.embed_key: tuple | None = None
        self.embed: Tensor | None = None

    def __deepcopy__(self, memo):
        return _InferenceWeights()

    def __reduce__(self):
        return (_InferenceWeights, ())


def _rows_bucket(rows: int) -> int:
    """The row count inference weights are laid out for: one row (batch-1 decoding), else 16, 32 or 64 (the
    power of two at or above ``rows``, capped: a batch shrinking as its samples finish keeps its weights)."""
    return 1 if rows <= 1 else min(64, max(16, 1 << (int(rows) - 1).bit_length()))


def _weights_key(params) -> tuple | None:
    """What the derived inference weights depend on, or ``None`` where parameters have no plain storage (sharded
    tensor subclasses): then nothing is reused."""
    try:
        return (speed.ONEDNN, torch.is_autocast_enabled("cpu"), *((p.data_ptr(), p._version) for p in params))
    except (RuntimeError, NotImplementedError):
        return None


# --------------------------------------------------------------------------------------------- model


class GeneralistModel(nn.Module):
    """The ``ofa`` universal encoder-decoder.

    Build with ``GeneralistModel(ModelConfig.from_size("tiny", vocab_size=vocab.padded_size()))`` or
    :func:`ofasys.model.build_model`. Feature slots plug in through :meth:`add_adaptor`; see
    :class:`~ofasys.model.adaptor.EncoderBatch` for the encoder input contract.
    """

    supports_packing = True  # packed batches: EncoderBatch.seq_ids and decode(..., seq_ids=)

    def __init__(self, config: ModelConfig | dict):
        super().__init__()
        cfg = config if isinstance(config, ModelConfig) else ModelConfig.from_dict(config)
        cfg.validate()
        if cfg.vocab_size is None:
            raise ConfigError("model config vocab_size is not set; use vocab.padded_size()")
        self.config = cfg
        d, h = cfg.d_model, cfg.n_heads
        self.embed_scale = 1.0
        self.embed_tokens = nn.Embedding(cfg.vocab_size, d, padding_idx=PAD)
        self.enc_pos = nn.Embedding(cfg.max_positions, d)
        self.dec_pos = nn.Embedding(cfg.max_positions, d)
        self.type_embed = nn.Embedding(cfg.type_vocab, d)
        self.enc_emb_ln = nn.LayerNorm(d)
        self.dec_emb_ln = nn.LayerNorm(d)
        self.moe_keys = list(cfg.moe_modalities)
        n_exp = 1 + len(self.moe_keys)
        dpr_e = [cfg.drop_path * i / max(1, cfg.encoder_layers - 1) for i in range(cfg.encoder_layers)]
        dpr_d = [cfg.drop_path * i / max(1, cfg.decoder_layers - 1) for i in range(cfg.decoder_layers)]
        self.encoder_layers = nn.ModuleList(EncoderLayer(cfg, p, n_exp) for p in dpr_e)
        self.decoder_layers = nn.ModuleList(DecoderLayer(cfg, p) for p in dpr_d)
        self.enc_final_ln = nn.LayerNorm(d)
        self.dec_final_ln = nn.LayerNorm(d)
        self.adaptors = nn.ModuleDict()
        self._adaptor_names: dict[str, str] = {}  # adaptor key -> ModuleDict name
        self.checkpointing = bool(cfg.checkpoint_activations)
        self._inference = _InferenceWeights()
        self.apply(self._init_weights)
        # relative-bias tables: zeros, so that creating one later (add_adaptor) consumes no randomness
        tb = _bias_rows(1, cfg.token_bucket_size)
        self.rel_bias = nn.ParameterDict({
            "cross_segment": nn.Parameter(torch.zeros(2 * MAX_SEGMENT_OFFSET + 1, h)),
            "enc_tokens": nn.Parameter(torch.zeros(tb, h)),
            "dec_tokens": nn.Parameter(torch.zeros(tb, h)),
        })
        self._lookups: dict[int, Tensor] = {}
        for kind in sorted(cfg.bias_kinds):
            dims, buckets = cfg.bias_kinds[kind]
            self._create_bias_table(kind, dims, buckets)

    def train(self, mode: bool = True) -> "GeneralistModel":
        if bool(mode) != self.training:  # derived inference weights are rebuilt after a change of mode
            self._inference = _InferenceWeights()
        return super().train(mode)

    def _step_weights(self, rows: int) -> list:
        """Every decoder layer's :meth:`DecoderLayer.step_weights`, reused while the decoder's parameters are
        unchanged."""
        st = self._inference
        rows = _rows_bucket(rows)
        key = _weights_key(self.decoder_layers.parameters())
        key = key and (*key, rows)
        if key is None or st.step is None or st.step_key != key:
            st.step = [layer.step_weights(rows) for layer in self.decoder_layers]
            st.step_key = key
        return st.step

    def _packed_embedding(self, rows: int = 16) -> Tensor:
        """The output projection's weight (the tied token embedding) laid out for inference products of about
        ``rows`` rows (:func:`~ofasys.model.speed.pack_linear_weight`)."""
        w = self.embed_tokens.weight
        st = self._inference
        key = _weights_key((w,))
        key = key and (*key, _rows_bucket(rows))
        if key is not None and st.embed is not None and st.embed_key == key:
            return st.embed
        packed = pack_linear_weight(w, _rows_bucket(rows))
        if packed is not w and key is not None:
            st.embed, st.embed_key = packed, key
        return packed

    def _init_weights(self, m: nn.Module) -> None:
        std = self.config.init_std
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, 0.0, std)
            if m.padding_idx is not None:
                with torch.no_grad():
                    m.weight[m.padding_idx].zero_()

    # ------------------------------------------------------------------ adaptors and bookkeeping
    @property
    def device(self) -> torch.device:
        return self.embed_tokens.weight.device

    def type_id(self, key: str) -> int:
        """Stable small int of a segment source (``"tokens"`` = 0, adaptors numbered as first seen); stored in
        ``config.type_ids`` so it survives save/load."""
        ids = self.config.type_ids
        if key not in ids:
            nxt = max(ids.values()) + 1
            if nxt >= self.config.type_vocab:
                raise ConfigError(f"too many segment sources for type_vocab={self.config.type_vocab}: "
                                  f"{sorted(ids)} + {key!r}; raise type_vocab")
            ids[key] = nxt
        return ids[key]

    @staticmethod
    def _module_name(key: str) -> str:
        return key.replace(".", "-")

    def add_adaptor(self, key: str, module: nn.Module) -> nn.Module:
        """Register the adaptor of a feature slot under its adaptor key (``"IMAGE.image_resnet"``), give it a type
        id and create the relative-bias table of its ``bias_kind`` if needed. Returns the module (moved to the
        model's device)."""
        name = self._module_name(key)
        for other, n in self._adaptor_names.items():
            if n == name and other != key:
                raise ConfigError(f"adaptor keys {other!r} and {key!r} collide")
        kind = getattr(module, "bias_kind", "seq1d")
        dims = int(getattr(module, "bias_dims", 1))
        buckets = int(getattr(module, "bias_buckets", 0))
        self._ensure_bias_kind(kind, dims, buckets)
        self.type_id(key)
        module = module.to(self.device)
        self.adaptors[name] = module
        self._adaptor_names[key] = name
        return module

    def adaptor(self, key: str) -> nn.Module:
        try:
            return self.adaptors[self._module_name(key)]
        except KeyError:
            raise KeyError(f"no adaptor {key!r} in the model; it has {sorted(self._adaptor_names) or 'none'}") from None

    def has_adaptor(self, key: str) -> bool:
        return self._module_name(key) in self.adaptors

    def _ensure_bias_kind(self, kind: str, dims: int, buckets: int) -> None:
        if kind in _NONE_KINDS:
            return
        if kind == "tokens":
            if dims != 1:
                raise ConfigError("bias kind 'tokens' is 1-D")
            return
        if dims not in (1, 2):
            raise ConfigError(f"bias kind {kind!r}: bias_dims must be 1 or 2, not {dims}")
        buckets = buckets or (self.config.token_bucket_size if dims == 1 else self.config.image_bucket_size)
        known = self.config.bias_kinds.get(kind)
        if known is not None:
            if list(known) != [dims, buckets]:
                raise ConfigError(f"bias kind {kind!r} is declared with dims/buckets {list(known)} and "
                                  f"{[dims, buckets]} by two adaptors")
            if self._table_name(kind) in self.rel_bias:
                return
        self.config.bias_kinds[kind] = [dims, buckets]
        self._create_bias_table(kind, dims, buckets)

    @staticmethod
    def _table_name(kind: str) -> str:
        return "k_" + kind.replace(".", "-")

    def _create_bias_table(self, kind: str, dims: int, buckets: int) -> None:
        w = torch.zeros(_bias_rows(dims, buckets), self.config.n_heads, device=self.embed_tokens.weight.device,
                        dtype=self.embed_tokens.weight.dtype)
        self.rel_bias[self._table_name(kind)] = nn.Parameter(w)

    def _lookup(self, bucket_size: int, device) -> Tensor:
        t = self._lookups.get(bucket_size)
        if t is None or t.device != device:
            t = token_bucket_lookup(bucket_size, self.config.max_positions).to(device=device, dtype=torch.int32)
            self._lookups[bucket_size] = t
        return t

    def num_parameters(self, trainable_only: bool = False, include_adaptors: bool = True) -> int:
        n = 0
        for name, p in self.named_parameters():
            if not include_adaptors and name.startswith("adaptors."):
                continue
            if trainable_only and not p.requires_grad:
                continue
            n += p.numel()
        return n

    def set_checkpointing(self, enabled: bool = True) -> None:
        """Recompute each layer's activations in the backward pass (saves memory, costs one more forward)."""
        self.checkpointing = bool(enabled)
        self.config.checkpoint_activations = bool(enabled)

    def _ckpt(self) -> bool:
        return self.checkpointing and self.training and torch.is_grad_enabled()

    # ------------------------------------------------------------------ encoder
    def _expert_of(self, key: str) -> int:
        for i, m in enumerate(self.moe_keys):
            if key == m or key.split(".")[0] == m:
                return i + 1
        return 0

    def encode(self, batch: EncoderBatch) -> EncoderOut:
        """Embed every segment, assemble each sample's sequence in layout order and run the encoder."""
        cfg = self.config
        dev = self.device
        d = cfg.d_model
        B = len(batch.layout)
        if B == 0:
            raise ValueError("encode() got a batch with no samples (empty layout)")
        if batch.seq_ids is not None:
            return self._encode_packed(batch)
        # ---- sources: (key, embeds (n, L, D), mask (n, L), pos (n, L, 2) | None, kind)
        sources: list[tuple[str, Tensor, Tensor, Tensor | None, str]] = []
        tok = batch.tokens
        if tok is not None and tok.numel() > 0:
            lt = tok.size(1)
            if lt > cfg.max_positions:
                raise ValueError(f"token segment of length {lt} exceeds max_positions={cfg.max_positions}")
            emb = self.embed_tokens(tok)
            if self.embed_scale != 1.0:
                emb = emb * self.embed_scale
            emb = emb + (self.enc_pos.weight[:lt] + self.type_embed.weight[0])
            sources.append(("tokens", emb, tok.ne(PAD), None, "tokens"))
        for key, payload in batch.features.items():
            seg = self.adaptor(key)(payload)
            if not isinstance(seg, Segment):
                raise TypeError(f"adaptor {key!r} returned {type(seg).__name__}, not a Segment")
            kind = seg.bias_kind
            if kind not in _NONE_KINDS and kind != "tokens" and self._table_name(kind) not in self.rel_bias:
                raise ConfigError(f"adaptor {key!r} returned bias_kind {kind!r}, which was not declared when it was "
                                  "added (set the adaptor's bias_kind/bias_dims class attributes)")
            emb = seg.embeds + self.type_embed.weight[self.type_id(key)]
            sources.append((key, emb, seg.mask.bool(), seg.pos, kind))

        fast = None if self.moe_keys else self._one_token_row_each(batch, sources)
        if fast is not None:
            x, mask, bias = fast
            x = F.dropout(self.enc_emb_ln(x), cfg.dropout, self.training)
            expert_ids = None
        else:
            # ---- flatten every source and index the valid positions of each (source, row)
            flat_emb, flat_pos, flat_kind, flat_seg, flat_exp = [], [], [], [], []
            pieces: dict[str, tuple[Tensor, ...]] = {}
            kinds: list[str] = []
            offset = seg_base = 0
            for key, emb, mask, pos, kind in sources:
                n, L = mask.shape
                if kind not in kinds:
                    kinds.append(kind)
                flat_emb.append(emb.reshape(n * L, d))
                if pos is None:
                    pos = torch.zeros(L, 2, dtype=torch.long, device=dev)
                    pos[:, 0] = torch.arange(L, device=dev)
                    pos = pos.expand(n, L, 2)
                flat_pos.append(pos.reshape(n * L, 2).long())
                flat_kind.append(torch.full((n * L,), kinds.index(kind), dtype=torch.long, device=dev))
                flat_seg.append((torch.arange(n, device=dev) + seg_base).repeat_interleave(L))
                if self.moe_keys:
                    flat_exp.append(torch.full((n * L,), self._expert_of(key), dtype=torch.long, device=dev))
                counts = mask.sum(1).tolist()
                valid = mask.reshape(-1).nonzero().squeeze(1) + offset
                pieces[key] = torch.split(valid, counts)
                offset += n * L
                seg_base += n
            dummy = offset  # index of an all-zero row used for padding
            flat_emb.append(torch.zeros(1, d, device=dev, dtype=flat_emb[0].dtype if flat_emb else
                                        self.embed_tokens.weight.dtype))
            rows: list[Tensor] = []
            empty = torch.zeros(0, dtype=torch.long, device=dev)
            for b, layout in enumerate(batch.layout):
                parts = []
                for key, r in layout:
                    if key not in pieces:
                        raise KeyError(f"sample {b} uses segment {key!r} but the batch has no such "
                                       + ("token rows" if key == "tokens" else "features"))
                    parts.append(pieces[key][r])
                rows.append(torch.cat(parts) if len(parts) > 1 else (parts[0] if parts else empty))
            S = max(1, max(len(r) for r in rows))
            index = torch.full((B, S), dummy, dtype=torch.long, device=dev)
            if any(len(r) for r in rows):
                index = pad_sequence(rows, batch_first=True, padding_value=dummy)
                if index.size(1) < S:
                    index = F.pad(index, (0, S - index.size(1)), value=dummy)
            mask = index.ne(dummy)
            dt = flat_emb[0].dtype
            x = torch.cat([e if e.dtype == dt else e.to(dt) for e in flat_emb])[index]
            x = F.dropout(self.enc_emb_ln(x), cfg.dropout, self.training)

            # ---- relative bias (B, H, S, S), shared by all layers; padded keys -> -inf
            key_mask = mask.clone()
            key_mask[:, 0] |= ~mask.any(1)  # an empty sample attends to its single dummy position
            bias = self._encoder_bias(index, key_mask, flat_pos, flat_kind, flat_seg, kinds, dummy)
            expert_ids = torch.cat(flat_exp + [flat_exp[0].new_zeros(1)])[index] if self.moe_keys and flat_exp else None

        return self._encoder_layers(x, bias, expert_ids, mask)

    def _encoder_layers(self, x: Tensor, bias: Tensor, expert_ids: Tensor | None, mask: Tensor,
                        seq_ids: Tensor | None = None) -> EncoderOut:
        """The encoder layers (each checkpointed when activation checkpointing is on) and the final LayerNorm,
        on the real positions only where enough of the batch is padding (:func:`~ofasys.model.speed.
        unpad_worthwhile`; the output's padded positions are then zeros)."""
        ck = self._ckpt()
        real = mask
        if not bool(mask[:, 0].all()):  # a sample with no positions keeps its dummy one (it is attended to)
            real = mask.clone()
            real[:, 0] |= ~mask.any(1)
        unpad = Unpadded(real) if speed.unpad_worthwhile(real, x.size(-1)) else None
        if unpad is not None:
            x = unpad.take(x)
            if expert_ids is not None:
                expert_ids = expert_ids.reshape(-1)[unpad.index]
        for layer in self.encoder_layers:
            if ck:
                x = checkpoint(layer, x, bias, expert_ids, unpad, use_reentrant=False)
            else:
                x = layer(x, bias, expert_ids, unpad)
        x = self.enc_final_ln(x)
        if unpad is None:
            return EncoderOut(x, mask, seq_ids)
        return EncoderOut(unpad.put(x), mask, seq_ids, flat=(x, unpad))

    def _packed_bias(self, table: str, qpos: Tensor, kpos: Tensor, qseq: Tensor, kseq: Tensor,
                     causal: bool) -> Tensor:
        """Relative bias (N, H, T, S) of packed rows: the ``table``'s 1-D log buckets of within-sample position
        offsets; -inf between positions of different samples (and, ``causal``, for later keys). Padding queries
        (``seq_ids`` -1) see the padding keys before them, which always include themselves."""
        mp = self.config.max_positions
        d = qpos.to(torch.int32).unsqueeze(2) - kpos.to(torch.int32).unsqueeze(1)  # (N, T, S)
        b = self._lookup(self.config.token_bucket_size, qpos.device)[(d + (mp - 1)).clamp_(0, 2 * mp - 2)]
        blocked = qseq.unsqueeze(2) != kseq.unsqueeze(1)
        if causal:
            blocked |= d < 0
        bias = self.rel_bias[table].t()[:, b].transpose(0, 1)  # (N, H, T, S)
        return bias.masked_fill_(blocked.unsqueeze(1), float("-inf"))

    def _packed_pos(self, seq_ids: Tensor, side: str) -> Tensor:
        pos = packed_positions(seq_ids)
        mp = self.config.max_positions
        real = seq_ids.ge(0)
        if bool(real.any()) and int(pos[real].max()) >= mp:
            raise ValueError(f"a packed {side} sample is longer than max_positions={mp}")
        return pos.clamp(max=mp - 1)

    def _encode_packed(self, batch: EncoderBatch) -> EncoderOut:
        """The encoder over packed token rows (``batch.seq_ids``): each sample's positions get exactly what the
        sample alone in a row would get."""
        cfg = self.config
        tok, seq = batch.tokens, batch.seq_ids
        if tok is None or batch.features or any(lay != [("tokens", r)] for r, lay in enumerate(batch.layout)):
            raise ValueError("a packed encoder batch holds token rows only, layout[r] == [('tokens', r)]")
        if seq.shape != tok.shape:
            raise ValueError(f"packed seq_ids {tuple(seq.shape)} do not match the token rows {tuple(tok.shape)}")
        seq = seq.to(tok.device)
        pos = self._packed_pos(seq, "encoder")
        emb = self.embed_tokens(tok)
        if self.embed_scale != 1.0:
            emb = emb * self.embed_scale
        x = emb + (self.enc_pos.weight[pos] + self.type_embed.weight[0])
        x = F.dropout(self.enc_emb_ln(x), cfg.dropout, self.training)
        bias = self._packed_bias("enc_tokens", pos, pos, seq, seq, causal=False)
        expert = self._expert_of("tokens") if self.moe_keys else 0
        expert_ids = torch.full_like(seq, expert) if expert else None
        return self._encoder_layers(x, bias, expert_ids, seq.ge(0), seq)

    def _one_token_row_each(self, batch: EncoderBatch, sources: list) -> tuple[Tensor, Tensor, Tensor] | None:
        """Fast path of :meth:`encode` for text-only batches in which every sample is one token row, padded on
        the right and not empty: the sequence is the token rows themselves and the relative bias is one (H, S, S)
        table lookup plus the key-padding mask, instead of the general per-sample assembly. Real positions get
        exactly the general path's values; only padded positions (masked as keys, ignored downstream) differ.
        Returns ``(x, mask, bias)`` or ``None`` when the batch is not of that form."""
        if len(sources) != 1 or sources[0][0] != "tokens":
            return None
        rows = []
        for layout in batch.layout:
            if len(layout) != 1 or layout[0][0] != "tokens":
                return None
            rows.append(layout[0][1])
        _, emb, mask, _, _ = sources[0]
        if rows != list(range(mask.size(0))):
            index = torch.tensor(rows, device=mask.device)
            emb, mask = emb.index_select(0, index), mask.index_select(0, index)
        counts = mask.sum(1)
        if bool((counts == 0).any()) or bool((mask[:, 1:] > mask[:, :-1]).any()):  # empty row, or a pad inside
            return None
        S = int(counts.max())
        emb, mask = emb[:, :S], mask[:, :S]
        mp = self.config.max_positions
        pos = torch.arange(S, device=mask.device, dtype=torch.int32)
        b = self._lookup(self.config.token_bucket_size, mask.device)[(pos.unsqueeze(1) - pos.unsqueeze(0)) + (mp - 1)]
        table = self.rel_bias["enc_tokens"].t()[:, b]  # (H, S, S)
        key_bias = torch.zeros(mask.shape, dtype=table.dtype, device=mask.device).masked_fill_(~mask, float("-inf"))
        return emb, mask, table.unsqueeze(0) + key_bias[:, None, None, :]

    def _encoder_bias(self, index, key_mask, flat_pos, flat_kind, flat_seg, kinds, dummy) -> Tensor:
        cfg = self.config
        dev = index.device
        B, S = index.shape
        H = cfg.n_heads
        tables = [self.rel_bias["cross_segment"]]
        offsets: dict[str, int] = {}
        M = MAX_SEGMENT_OFFSET
        row = 2 * M + 1
        for kind in kinds:
            if kind in _NONE_KINDS:
                t = self.rel_bias["cross_segment"].new_zeros(1, H)
            elif kind == "tokens":
                t = self.rel_bias["enc_tokens"]
            else:
                t = self.rel_bias[self._table_name(kind)]
            offsets[kind] = row
            tables.append(t)
            row += t.size(0)
        table = torch.cat(tables).t()  # (H, R)
        if kinds:
            # int32 index arithmetic: these (B, S, S) temporaries are the largest of the forward for long inputs
            pos = torch.cat(flat_pos + [flat_pos[0].new_zeros(1, 2)])[index].to(torch.int32)  # (B, S, 2)
            seg = torch.cat(flat_seg + [flat_seg[0].new_full((1,), -1)])[index].to(torch.int32)
            same = seg.unsqueeze(2) == seg.unsqueeze(1)
            kind_q = torch.cat(flat_kind + [flat_kind[0].new_zeros(1)])[index] if len(kinds) > 1 else None
            d0 = pos[..., 0].unsqueeze(2) - pos[..., 0].unsqueeze(1)
            # positions of different segments: a per-head bias by segment-order offset, so order is visible
            order = F.pad((seg[:, 1:] != seg[:, :-1]).cumsum(1, dtype=torch.int32), (1, 0))
            idx = (order.unsqueeze(2) - order.unsqueeze(1)).clamp_(-M, M).add_(M)
            mp = cfg.max_positions
            for ki, kind in enumerate(kinds):
                if kind in _NONE_KINDS:
                    b = torch.zeros_like(d0)
                else:
                    dims, buckets = ([1, cfg.token_bucket_size] if kind == "tokens" else cfg.bias_kinds[kind])
                    if dims == 1:
                        b = self._lookup(buckets, dev)[(d0 + (mp - 1)).clamp(0, 2 * mp - 2)]
                    else:
                        d1 = pos[..., 1].unsqueeze(2) - pos[..., 1].unsqueeze(1)
                        c = buckets - 1
                        b = (d0.clamp(-c, c) + c) * (2 * buckets - 1) + (d1.clamp(-c, c) + c)
                sel = same if kind_q is None else same & (kind_q == ki).unsqueeze(2)
                idx = torch.where(sel, b + offsets[kind], idx)
            bias = table[:, idx].transpose(0, 1)  # (B, H, S, S), last dim contiguous
        else:
            bias = table.new_zeros(H, B, S, S).transpose(0, 1)
        return bias.masked_fill_(~key_mask[:, None, None, :], float("-inf"))

    # ------------------------------------------------------------------ decoder
    def new_cache(self, max_len: int = 64) -> DecoderCache:
        """An empty incremental-decoding cache for :meth:`decode` / :meth:`decode_embeds` (``max_len``: the
        expected number of positions, to size its buffers; they grow if needed)."""
        return DecoderCache(len(self.decoder_layers), max_len)

    def reorder_cache(self, cache: DecoderCache, index: Tensor, src_index: Tensor | None = None) -> DecoderCache:
        """Reorder (or select) the decoder rows of ``cache`` by ``index`` (beam search). Cross-attention states
        are stored once per source sample and are left alone unless ``src_index`` selects/reorders source samples
        (then ``index`` must keep the rows grouped sample-major like the encoder output they follow)."""
        cache.reorder(index)
        if src_index is not None and cache.cross_kv is not None:
            cache.cross_kv = [(k.index_select(0, src_index), v.index_select(0, src_index)) for k, v in cache.cross_kv]
            cache.cross_mask = cache.cross_mask.index_select(0, src_index)
        return cache

    def decode(self, prev_tokens: Tensor, enc: EncoderOut, cache: DecoderCache | None = None,
               seq_ids: Tensor | None = None) -> Tensor:
        """Decoder hidden states (N, T, D) for ``prev_tokens`` (N, T). ``N`` is ``len(enc)`` or a multiple of it
        (rows grouped sample-major: row ``i`` reads encoder sample ``i // (N // len(enc))``). With a ``cache``,
        ``prev_tokens`` are the new positions only; the cache advances by T.

        Packed rows (``enc`` from a packed :class:`EncoderBatch`): ``seq_ids`` (N, T) gives the sample of every
        decoder position (``-1`` = padding), N = ``len(enc)``; no cache."""
        x = self.embed_tokens(prev_tokens)
        if self.embed_scale != 1.0:
            x = x * self.embed_scale
        if seq_ids is not None or enc.seq_ids is not None:
            return self._decode_packed(x, enc, seq_ids, cache)
        return self._decode(x, enc, cache)

    def decode_embeds(self, embeds: Tensor, enc: EncoderOut, cache: DecoderCache | None = None,
                      causal: bool = True) -> Tensor:
        """Like :meth:`decode` with decoder input embeddings (N, T, D) supplied by an adaptor's ``embed_target``
        (the decoder adds its positions and embedding LayerNorm, as for tokens). ``causal=False`` lets every
        position attend to every other one (non-autoregressive generators: a diffusion denoiser over a whole
        clip); it cannot be combined with a cache."""
        if not causal and cache is not None:
            raise ValueError("non-causal decoding has no incremental cache")
        return self._decode(embeds, enc, cache, causal)

    def logits(self, hidden: Tensor) -> Tensor:
        """Output logits (..., V) through the tied token embedding (:func:`~ofasys.model.speed.linear`; without
        autograd on CPU with the embedding packed once while it is unchanged)."""
        if torch.is_grad_enabled() or hidden.device.type != "cpu":
            return linear(hidden, self.embed_tokens.weight)
        return linear(hidden, self._packed_embedding(hidden.numel() // max(1, hidden.size(-1))))

    def forward(self, batch: EncoderBatch, prev_tokens: Tensor, seq_ids: Tensor | None = None) -> Tensor:
        """Teacher-forced logits (B, T, V) (``seq_ids``: the decoder side of a packed batch)."""
        return self.logits(self.decode(prev_tokens, self.encode(batch), seq_ids=seq_ids))

    def _self_bias(self, start: int, t: int, dev, causal: bool = True) -> Tensor:
        cfg = self.config
        mp = cfg.max_positions
        if start + t > mp:
            raise ValueError(f"decoder length {start + t} exceeds max_positions={mp}")
        qpos = torch.arange(start, start + t, device=dev)
        kpos = torch.arange(0, start + t, device=dev)
        d = qpos.unsqueeze(1) - kpos.unsqueeze(0)
        b = self._lookup(cfg.token_bucket_size, dev)[d + (mp - 1)]
        bias = self.rel_bias["dec_tokens"].t()[:, b]  # (H, t, start + t)
        if t > 1 and causal:
            bias = bias.masked_fill(d < 0, float("-inf"))
        return bias.unsqueeze(0)

    def _cache_derived(self, cache: DecoderCache, need: int, dev, rows: int = 16) -> dict:
        """Inference state derived from the weights once per decoding run: the decoder's relative bias for every
        (query, key) position pair below the capacity, future keys at -inf, (1, H, C, C); and per layer the
        self/cross output weights with the head scale folded in (equal to scaling the activations up to float
        rounding)."""
        st = cache.derived
        if st is None or st["bias"].size(-1) < need:
            mp = self.config.max_positions
            cap = min(max(cache.capacity, need), mp)
            pos = torch.arange(cap, device=dev)
            d = pos.unsqueeze(1) - pos.unsqueeze(0)
            b = self._lookup(self.config.token_bucket_size, dev)[d + (mp - 1)]
            bias = self.rel_bias["dec_tokens"].t()[:, b].masked_fill_(d < 0, float("-inf")).unsqueeze(0)
            w = st["w"] if st is not None else self._step_weights(rows)
            st = cache.derived = {"bias": bias, "w": w}
        return st

    def _decode_cached(self, x: Tensor, enc: EncoderOut, cache: DecoderCache, rows: int) -> Tensor:
        """Incremental inference (eval mode, no autograd): the same computation as the general path with fewer
        operations per step (precomputed bias rows, folded output weights, keys/values written in place)."""
        n, t, _ = x.shape
        start = cache.length
        if start + t > self.config.max_positions:
            raise ValueError(f"decoder length {start + t} exceeds max_positions={self.config.max_positions}")
        st = self._cache_derived(cache, start + t, x.device, n)
        x = _ln(self.dec_emb_ln, x + self.dec_pos.weight[start:start + t])
        bias = st["bias"][:, :, start:start + t, :start + t]
        if cache.cross_kv is None:
            mem = enc.hidden
            cache.cross_kv = [layer.cross_attn.cross_kv(mem, enc.flat) for layer in self.decoder_layers]
            cache.cross_mask = self._cross_mask(enc, x.dtype)
        if t == 1:  # the new position's bias row, heads folded into the batch (DecoderLayer.step)
            bias = bias[0, :, 0].expand(n, -1, -1).reshape(n * bias.size(1), 1, start + 1)
        if rows == 1 and t == 1:
            cross_kv, cross_mask = cache.cross_views()
        else:
            cross_kv, cross_mask = cache.cross_kv, cache.cross_mask
        for i, w in enumerate(st["w"]):
            x = DecoderLayer.step(w, x, bias, cache, i, cross_kv[i], cross_mask, rows)
        cache.length = start + t
        return _ln(self.dec_final_ln, x)

    @staticmethod
    def _cross_mask(enc: EncoderOut, dtype) -> Tensor:
        km = enc.mask.clone()
        km[:, 0] |= ~enc.mask.any(1)
        mask = torch.zeros(km.shape, dtype=dtype, device=km.device).masked_fill_(~km, float("-inf"))
        return mask[:, None, None, :]

    def _decode(self, x: Tensor, enc: EncoderOut, cache: DecoderCache | None, causal: bool = True) -> Tensor:
        cfg = self.config
        n, t, _ = x.shape
        nb = enc.hidden.size(0)
        if n % nb:
            raise ValueError(f"decoder batch ({n} rows) is not a multiple of the encoder batch ({nb})")
        rows = n // nb
        if cache is not None and not self.training and not torch.is_grad_enabled():
            return self._decode_cached(x, enc, cache, rows)
        start = cache.length if cache is not None else 0
        x = x + self.dec_pos.weight[start:start + t]
        x = self.dec_emb_ln(x)
        if self.training:
            x = F.dropout(x, cfg.dropout, True)
        self_bias = self._self_bias(start, t, x.device, causal)
        mem = enc.hidden
        if cache is not None and cache.cross_kv is not None:
            cross_kv, cross_mask = cache.cross_kv, cache.cross_mask
        else:
            cross_mask = self._cross_mask(enc, x.dtype)
            cross_kv = None
            if cache is not None:
                cross_kv = [layer.cross_attn.cross_kv(mem, enc.flat) for layer in self.decoder_layers]
                cache.cross_kv, cache.cross_mask = cross_kv, cross_mask
        ck = self._ckpt() and cache is None
        for i, layer in enumerate(self.decoder_layers):
            ckv = cross_kv[i] if cross_kv is not None else None
            if ck:
                x = checkpoint(layer, x, self_bias, mem, ckv, cross_mask, rows, None, i, enc.flat, use_reentrant=False)
            else:
                x = layer(x, self_bias, mem, ckv, cross_mask, rows, cache, i, enc.flat)
        if cache is not None:
            cache.length = start + t
        return self.dec_final_ln(x)

    def _decode_packed(self, x: Tensor, enc: EncoderOut, seq: Tensor | None, cache) -> Tensor:
        """Teacher-forced decoder over packed rows: causal self-attention within a sample, cross-attention to the
        same sample's encoder positions, positions and relative bias restarting at each sample."""
        if seq is None or enc.seq_ids is None:
            raise ValueError("packed decoding needs both the encoder's and the decoder's seq_ids")
        if cache is not None:
            raise ValueError("packed batches are for teacher forcing; generation runs unpacked (no cache)")
        n, t, _ = x.shape
        if n != enc.hidden.size(0) or seq.shape != (n, t):
            raise ValueError(f"packed decoder rows {tuple(seq.shape)} do not match the encoder's {len(enc)} rows")
        seq = seq.to(x.device)
        pos = self._packed_pos(seq, "decoder")
        x = self.dec_emb_ln(x + self.dec_pos.weight[pos])
        if self.training:
            x = F.dropout(x, self.config.dropout, True)
        self_bias = self._packed_bias("dec_tokens", pos, pos, seq, seq, causal=True)
        eseq = enc.seq_ids
        allowed = (seq.unsqueeze(2) == eseq.unsqueeze(1)) & eseq.ge(0).unsqueeze(1)
        real = seq.ge(0)
        if not bool(allowed.any(2)[real].all()):
            raise ValueError("a packed decoder sample has no encoder positions in its row")
        allowed |= ~real.unsqueeze(2)  # padding queries attend anywhere (finite, ignored)
        cross_mask = torch.zeros(allowed.shape, dtype=x.dtype, device=x.device).masked_fill_(~allowed, float("-inf"))
        cross_mask = cross_mask.unsqueeze(1)
        mem = enc.hidden
        ck = self._ckpt()
        for i, layer in enumerate(self.decoder_layers):
            if ck:
                x = checkpoint(layer, x, self_bias, mem, None, cross_mask, 1, None, i, enc.flat, use_reentrant=False)
            else:
                x = layer(x, self_bias, mem, None, cross_mask, 1, None, i, enc.flat)
        return self.dec_final_ln(x)


def build_ofa(config: ModelConfig | dict) -> GeneralistModel:
    return GeneralistModel(config)


def build_model(config: ModelConfig | dict, architectures: dict[str, Any] | None = None) -> nn.Module:
    """Build the universal model a config names: ``arch="ofa"`` (the default) builds :class:`GeneralistModel`;
    other names are looked up in ``architectures`` (name -> ``build(config_dict)`` callable or
    :class:`ofasys.spec.Architecture`), which the core fills from ``ofasys_register_architectures``."""
    arch = config.arch if isinstance(config, ModelConfig) else dict(config).get("arch", "ofa")
    if arch == "ofa":
        return GeneralistModel(config)
    archs = architectures or {}
    if arch not in archs:
        names = ", ".join(["ofa", *sorted(archs)])
        raise ConfigError(f"unknown model architecture {arch!r}; available: {names}")
    builder: Callable | Any = archs[arch]
    build = getattr(builder, "build", builder)
    return build(config.to_dict() if isinstance(config, ModelConfig) else dict(config))
