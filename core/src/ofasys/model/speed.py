"""Speed options of the universal model, in one place for the trainer, the CLI and the benchmarks.

* :func:`autocast` — bf16 autocast (CUDA with bf16 support, and CPU). The model is written for it: the encoder
  assembles segments in one dtype, attention masks follow the activations' dtype, the criterion computes the
  softmax in float32.
* activation checkpointing per layer — ``ModelConfig(checkpoint_activations=True)`` or
  ``model.set_checkpointing(True)``: each encoder/decoder layer's activations are recomputed in the backward pass.
* :func:`maybe_compile` — ``torch.compile`` of every encoder and decoder layer (the per-sample segment assembly
  around them is dynamic Python and stays eager). Off by default on CPU, where compiling costs minutes and needs
  a C++ compiler; on by default nowhere else either unless asked (``enabled=None`` means "on for CUDA").
* :func:`adamw` — AdamW with the fused kernel where PyTorch has one for the device (CUDA, and CPU since PyTorch
  2.4: about 3x faster than the foreach implementation on one CPU core), else foreach.
* :func:`linear` / :func:`pack_linear_weight` — the model's float32 linear layers on CPU through oneDNN where it
  is faster than PyTorch's default CPU ``F.linear`` (MKL's sgemm). Decoding: on the short, wide products of a
  decoding step (16 rows times a 768x3072 weight that no longer fits in cache) oneDNN on a weight reordered once
  into its blocked layout (:func:`pack_linear_weight`) streams the weight faster than MKL on every processor
  measured (AMD EPYC with and without AVX-512, Intel Xeon); every packed weight goes through oneDNN. Products of
  many rows (training, the encoder and the cross-attention keys/values at inference) depend on the processor
  (:func:`_onednn_wins_large_products`): oneDNN was 10-20% faster on an AMD EPYC with AVX-512 and is slower on an
  AVX2-only AMD EPYC (75-79 against MKL's 89-92 GFLOP/s, one thread) and on an Intel Xeon. Where it wins,
  without autograd products of 32 rows or more on plain weights use oneDNN (:data:`ONEDNN_UNPACKED`), and with
  autograd layers whose both dimensions are at least :data:`ONEDNN_TRAIN_MIN_DIM` (256: ``tiny`` and larger) use
  a oneDNN forward and input gradient with MKL's weight gradient (the fastest combination measured there);
  smaller layers (``nano``, the size the calibrated tests train) keep ``F.linear``. Decoding weights are laid
  out per row count (:func:`pack_linear_weight`: oneDNN's blocked layout, or a transposed copy for MKL where that
  measured faster), and fc1's GELU is fused into oneDNN's product at inference (:func:`linear_gelu`). Same
  precision (float32 products and sums; results differ from MKL's by summation order only, ~1e-6 relative).
  ``OFASYS_ONEDNN=0`` in the environment turns all of it off; ``OFASYS_ONEDNN_TRAIN_MIN_DIM`` moves the training
  threshold, ``OFASYS_ONEDNN_UNPACKED`` (``1``/``0``) sets the inference choice for plain weights and
  ``OFASYS_INFER_WEIGHTS`` (``auto``/``onednn``/``mkl``) picks the decoding weights' layout.
* :func:`unpad_worthwhile` — whether the encoder's layers run on the real positions only
  (:class:`~ofasys.model.transformer.Unpadded`): when :data:`UNPAD_MIN_FRACTION` of a batch is padding and the
  model is :data:`UNPAD_MIN_DIM` wide or more (``OFASYS_UNPAD_MIN_FRACTION``, ``OFASYS_UNPAD_MIN_DIM``); never
  under ``torch.compile``. Equal to the padded run up to summation order (tested, values and gradients).

Imports torch.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

COMPILE_MODES = (None, "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def autocast(device_type: str, bf16: bool | None = None):
    """A bf16 autocast context for ``device_type`` (``"cuda"``/``"cpu"``); ``bf16=None`` enables it on CUDA
    devices that support bf16 only; a disabled context where bf16 is off."""
    if bf16 is None:
        bf16 = device_type == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if not bf16:
        return contextlib.nullcontext()
    return torch.autocast(device_type, dtype=torch.bfloat16)


def fused_adamw_available(device: torch.device | str) -> bool:
    """Whether ``torch.optim.AdamW(fused=True)`` supports parameters on ``device``."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return True
    if dev.type == "cpu":
        major, minor = (int(x) for x in torch.__version__.split(".")[:2])
        return (major, minor) >= (2, 4)
    return False


def adamw(params: Iterable[Any], lr: float, betas: tuple[float, float] = (0.9, 0.999), weight_decay: float = 0.01,
          eps: float = 1e-8, fused: bool | None = None) -> torch.optim.AdamW:
    """AdamW over ``params`` (tensors or param-group dicts). ``fused=None`` uses the fused kernel when the
    parameters' device has one (:func:`fused_adamw_available`), else the foreach implementation; the two agree
    up to float rounding."""
    groups = list(params)
    first = next((p for g in groups for p in (g["params"] if isinstance(g, dict) else [g])), None)
    if fused is None:
        fused = first is not None and fused_adamw_available(first.device)
    kw: dict[str, Any] = {"fused": True} if fused else {"foreach": True}
    return torch.optim.AdamW(groups, lr=lr, betas=tuple(betas), weight_decay=weight_decay, eps=eps, **kw)


def maybe_compile(model: nn.Module, enabled: bool | None, device: torch.device | str, mode: str | None = None,
                  dynamic: bool | None = None) -> nn.Module:
    """Compile every encoder and decoder layer of ``model`` in place with ``torch.compile`` when ``enabled``
    (``None``: only on CUDA). Returns ``model``. Parameter names and checkpoints are unchanged (``Module.compile``
    keeps the module, unlike wrapping it in an ``OptimizedModule``)."""
    if mode not in COMPILE_MODES:
        raise ValueError(f"unknown torch.compile mode {mode!r}; use one of {', '.join(map(str, COMPILE_MODES))}")
    dev = torch.device(device)
    if enabled is None:
        enabled = dev.type == "cuda"
    if not enabled:
        return model
    layers = [*getattr(model, "encoder_layers", []), *getattr(model, "decoder_layers", [])]
    if not layers:
        raise ValueError(f"{type(model).__name__} has no encoder_layers/decoder_layers to compile")
    for layer in layers:
        layer.compile(mode=mode, dynamic=dynamic)
    return model


def _onednn_usable() -> bool:
    if os.environ.get("OFASYS_ONEDNN", "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    try:
        return bool(torch.backends.mkldnn.is_available()) and hasattr(torch.ops.mkldnn, "_linear_pointwise") \
            and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")
    except (AttributeError, RuntimeError):
        return False


#: whether :func:`linear` and :func:`pack_linear_weight` use oneDNN (set at import; tests may flip it)
ONEDNN = _onednn_usable()
_MIN_ROWS = 32  # below this many rows a plain (unpacked) weight is not worth oneDNN's per-call reorder


def _cpu_info() -> tuple[str, frozenset[str]]:
    """The CPU vendor string (``AuthenticAMD``, ``GenuineIntel``...) and the feature flags of /proc/cpuinfo;
    ("", frozenset()) where unknown."""
    vendor, flags = "", frozenset()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("vendor_id") and not vendor:
                    vendor = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = frozenset(line.split(":", 1)[1].split())
                if vendor and flags:
                    break
    except OSError:
        pass
    return vendor, flags


def _onednn_wins_large_products() -> bool:
    """Whether oneDNN's float32 products of many rows (training, the encoder and the cross-attention keys/values at
    inference) beat MKL's sgemm on this processor: measured so on an AMD processor with AVX-512 (Zen 4) only. On
    an AMD EPYC with AVX2 only (Zen 3) MKL reaches 89-92 GFLOP/s on the ``base`` encoder's products against
    oneDNN's 75-79 (one thread; the ``base`` encoder at inference about 930 ms with MKL, 1205 ms with oneDNN), and on
    an Intel Xeon (Sapphire Rapids) MKL is about 10% faster on the training products."""
    vendor, flags = _cpu_info()
    return vendor == "AuthenticAMD" and "avx512f" in flags


def _default_train_min_dim() -> int:
    """256 where oneDNN wins large products (:func:`_onednn_wins_large_products`: ``base`` training 0.95x ->
    1.09x BART on the AVX-512 AMD processor); off (a threshold no layer reaches) elsewhere: on an AMD EPYC with
    AVX2 only the same path made a ``base`` training step 14% slower (in-process A/B), and on an Intel Xeon the
    oneDNN input gradient also needs a transposed weight copy per step. ``OFASYS_ONEDNN_TRAIN_MIN_DIM``
    overrides it."""
    env = os.environ.get("OFASYS_ONEDNN_TRAIN_MIN_DIM", "").strip()
    if env:
        return int(env)
    return 256 if _onednn_wins_large_products() else 1 << 62


def _default_unpacked_inference() -> bool:
    """Whether inference products of :data:`_MIN_ROWS` rows or more on plain (unpacked) weights go through
    oneDNN: where it wins large products (:func:`_onednn_wins_large_products`); ``OFASYS_ONEDNN_UNPACKED``
    (``1``/``0``) overrides it."""
    env = os.environ.get("OFASYS_ONEDNN_UNPACKED", "").strip().lower()
    if env:
        return env not in ("0", "false", "no", "off")
    return _onednn_wins_large_products()


#: with autograd, layers whose both dimensions reach this use oneDNN (see the module notes and
#: :func:`_default_train_min_dim`)
ONEDNN_TRAIN_MIN_DIM = _default_train_min_dim()
#: without autograd, products of many rows on plain weights use oneDNN (:func:`_default_unpacked_inference`)
ONEDNN_UNPACKED = _default_unpacked_inference()


def _onednn_dtype_ok(x: Tensor, w: Tensor) -> bool:
    return (ONEDNN and x.device.type == "cpu" and x.dtype == torch.float32 and w.dtype == torch.float32
            and not torch.is_autocast_enabled("cpu"))


def _onednn_ok(x: Tensor, w: Tensor) -> bool:
    return _onednn_dtype_ok(x, w) and not torch.is_grad_enabled()


def _dnn(x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, w, b, "none", [], "")


class _OneDNNLinear(torch.autograd.Function):
    """``F.linear`` with oneDNN's forward and input gradient and MKL's weight gradient (``g^T x``)."""

    @staticmethod
    def forward(ctx, x, w, b):
        ctx.save_for_backward(x, w)
        ctx.has_bias = b is not None
        return _dnn(x, w, b)

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        g2 = g.reshape(-1, g.size(-1))
        gx = _dnn(g, w.t().contiguous(), None) if ctx.needs_input_grad[0] else None
        gw = g2.t().mm(x.reshape(-1, x.size(-1))) if ctx.needs_input_grad[1] else None
        gb = g2.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return gx, gw, gb


def linear(x: Tensor, w: Tensor, b: Tensor | None = None) -> Tensor:
    """``F.linear(x, w, b)``, through oneDNN on float32 CPU tensors where that is faster (see the module notes):
    always for a weight packed by :func:`pack_linear_weight`; without autograd for 32 rows or more where
    :data:`ONEDNN_UNPACKED`; with autograd for layers whose both dimensions reach :data:`ONEDNN_TRAIN_MIN_DIM`."""
    if w.is_mkldnn:
        return _dnn(x, w, b)
    if not _onednn_dtype_ok(x, w):
        return F.linear(x, w, b)
    if torch.is_grad_enabled():
        if min(w.shape) >= ONEDNN_TRAIN_MIN_DIM and (x.requires_grad or w.requires_grad):
            return _OneDNNLinear.apply(x, w, b)
        return F.linear(x, w, b)
    # (a transposed weight is MKL's layout, see pack_linear_weight)
    if ONEDNN_UNPACKED and x.numel() >= _MIN_ROWS * x.size(-1) and w.is_contiguous():
        return _dnn(x, w, b)
    return F.linear(x, w, b)


#: how :func:`pack_linear_weight` lays out inference weights: ``"auto"`` (by size, see there), ``"onednn"``
#: (always oneDNN's blocked layout) or ``"mkl"`` (always a transposed copy for MKL); from ``OFASYS_INFER_WEIGHTS``
INFER_WEIGHTS = os.environ.get("OFASYS_INFER_WEIGHTS", "auto").strip().lower() or "auto"
#: with ``"auto"``, weights of at least this many elements use oneDNN's blocked layout for products of 2+ rows
BLOCKED_MIN_NUMEL = 1 << 19


def linear_gelu(x: Tensor, w: Tensor, b: Tensor | None = None) -> Tensor:
    """``F.gelu(linear(x, w, b))`` (exact erf GELU); where :func:`linear` runs oneDNN without autograd, with the
    GELU fused into the product (one pass and one output tensor fewer)."""
    if w.is_mkldnn or (ONEDNN_UNPACKED and _onednn_ok(x, w) and w.is_contiguous()
                       and x.numel() >= _MIN_ROWS * x.size(-1)):
        return torch.ops.mkldnn._linear_pointwise(x, w, b, "gelu", [], "none")
    return F.gelu(linear(x, w, b))


def pack_linear_weight(w: Tensor, rows: int = 16) -> Tensor:
    """A copy of the (out, in) weight ``w`` laid out once for fast inference products with about ``rows`` rows
    (:func:`linear` accepts any number), or ``w`` itself where oneDNN is not used (not float32 on CPU, gradients
    recorded, or turned off). The copy is detached: repack after the weight changes.

    Two layouts, picked by :data:`INFER_WEIGHTS` (``"auto"``: by the measurements below): oneDNN's blocked
    layout, or a transposed copy that MKL multiplies without a transpose (returned as its (out, in) view). In
    decoding (every layer's weights evicted from the core's cache by the other layers' before their next use)
    on an Intel Xeon (Sapphire Rapids), one thread: for one row MKL is faster for every weight (greedy
    decoding of one sample: ``base`` 835 -> 726 ms, ``tiny`` 113 -> 92 ms); for 16 rows oneDNN's layout is
    faster for the large weights of ``base`` (MKL 2473 ms, oneDNN 2044 ms) and MKL for the small ones of
    ``tiny`` (288 vs 294 ms, within noise); on AMD EPYC oneDNN was up to 2x faster on the large weights. So
    ``"auto"`` takes oneDNN's layout for 2+ rows and weights of :data:`BLOCKED_MIN_NUMEL` elements or more."""
    if not _onednn_ok(w, w) or w.dim() != 2:
        return w
    w = w.detach().contiguous()
    mode = INFER_WEIGHTS
    if mode == "onednn" or (mode != "mkl" and rows > 1 and w.numel() >= BLOCKED_MIN_NUMEL):
        return torch.ops.mkldnn._reorder_linear_weight(w, rows)
    return w.t().contiguous().t()


#: the encoder runs on the real positions only (:class:`~ofasys.model.transformer.Unpadded`) when at least this
#: fraction of a batch's positions is padding ...
UNPAD_MIN_FRACTION = float(os.environ.get("OFASYS_UNPAD_MIN_FRACTION", "0.05"))
#: ... and the model is at least this wide (narrower layers are memory-bound: the gathers cost what they save)
UNPAD_MIN_DIM = int(os.environ.get("OFASYS_UNPAD_MIN_DIM", "256"))


def unpad_worthwhile(mask: Tensor, width: int) -> bool:
    """Whether layers over a padded (B, S) batch with real positions ``mask`` should run on those positions only:
    :data:`UNPAD_MIN_FRACTION` of it is padding and the model is :data:`UNPAD_MIN_DIM` wide or more. Never
    while ``torch.compile`` traces (the number of real positions is data-dependent)."""
    if width < UNPAD_MIN_DIM or UNPAD_MIN_FRACTION > 1.0 or mask.dim() != 2:
        return False
    if torch.compiler.is_compiling():
        return False
    real = int(mask.sum())
    return 0 < real and mask.numel() - real >= UNPAD_MIN_FRACTION * mask.numel()


__all__ = ["COMPILE_MODES", "ONEDNN", "adamw", "autocast", "fused_adamw_available", "linear", "linear_gelu",
           "maybe_compile", "pack_linear_weight", "unpad_worthwhile"]
