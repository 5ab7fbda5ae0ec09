"""Model FLOPs utilisation (MFU) of training the universal model: ``base`` with bf16 autocast on CUDA; any size
on CPU (the test runs ``nano`` on CPU).

MFU = model FLOPs per second / the device's peak FLOPs per second. Model FLOPs are counted analytically
(:func:`train_flops`), never from the hardware, so recomputation (activation checkpointing) does not count:

* every matrix multiply of a forward pass costs ``2 * m * n * k``; a training step costs 3x its forward (the
  backward computes the gradients of both operands): the usual ``6 * N * tokens`` for the weights, where N
  counts the weights each token goes through;
* encoder, per layer and source token: QKV + output projections ``2 * 4 d^2``, FFN ``2 * 2 d f``;
* decoder, per layer and target token: self-attention projections ``2 * 4 d^2``, cross-attention query and
  output projections ``2 * 2 d^2``, FFN ``2 * 2 d f``; per layer and *source* token, the cross-attention
  key/value projection ``2 * 2 d^2``;
* attention terms, per layer: ``2 * 2 * Lq * Lk * d`` (scores and weighted values; the full square is counted
  for causal self-attention, as the kernels compute it): encoder ``S x S``, decoder self ``T x T``, cross ``T x S``;
* output logits through the tied embedding: ``2 * d * V`` per target token;
* embeddings, LayerNorms, softmax, activation functions and the optimizer are not counted (as in the usual
  MFU definitions; they are a few percent).

``core/tests`` checks this count against ``torch.utils.flop_counter`` on a forward pass.

Peak: ``--peak-tflops``, else the dense bf16 (fp32 without ``--bf16``) tensor-core peak of known GPUs by name
(H100/H200 SXM 989 TFLOP/s bf16, A100 312, L4 121, ...), else on CPU the rate of a 1024x1024 fp32 matrix
multiply measured on the same threads (so CPU MFU says how close the step comes to the machine's own GEMM
speed). On CUDA times are wall times after ``synchronize``; on CPU they are process CPU times (both the step and
the peak), which other processes on a shared machine do not inflate.

    .venv/bin/python bench/bench_mfu.py                          # CUDA: base, bf16, batch 16 x 512/128
    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_mfu.py --device cpu --size nano --batch 8 --src-len 64 --tgt-len 32

Writes ``bench/results/mfu_<device>_<size>.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "core", "src"))

import torch  # noqa: E402

from ofasys.model import EncoderBatch, GeneralistModel, ModelConfig, TokenCriterion, speed  # noqa: E402

#: dense peak TFLOP/s (bf16 tensor cores, fp32 non-tensor) of GPUs by a substring of their name
GPU_PEAKS = {"H200": (989.0, 67.0), "H100": (989.0, 67.0), "A100": (312.0, 19.5), "L40S": (362.0, 91.6),
             "L4": (121.0, 30.3), "A10": (125.0, 31.2), "V100": (125.0, 15.7), "RTX 4090": (165.0, 82.6)}


def forward_flops(cfg: ModelConfig, batch: int, src_len: int, tgt_len: int, vocab: int) -> dict:
    """Analytic matmul FLOPs of one forward pass (all positions real), by part."""
    d, f, le, ld = cfg.d_model, cfg.ffn_dim, cfg.encoder_layers, cfg.decoder_layers
    S, T, B = src_len, tgt_len, batch
    parts = {
        "encoder_linear": le * B * S * (2 * 4 * d * d + 2 * 2 * d * f),
        "encoder_attention": le * B * 2 * 2 * S * S * d,
        "decoder_linear": ld * B * T * (2 * 4 * d * d + 2 * 2 * d * d + 2 * 2 * d * f),
        "decoder_cross_kv": ld * B * S * 2 * 2 * d * d,
        "decoder_attention": ld * B * 2 * 2 * (T * T + T * S) * d,
        "logits": B * T * 2 * d * vocab,
    }
    parts["total"] = sum(parts.values())
    return parts


def train_flops(cfg: ModelConfig, batch: int, src_len: int, tgt_len: int, vocab: int) -> int:
    """Model FLOPs of one training step: 3x the forward (backward = 2x forward)."""
    return 3 * forward_flops(cfg, batch, src_len, tgt_len, vocab)["total"]


def peak_flops(device: torch.device, bf16: bool, threads: int) -> tuple[float, str]:
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, (p_bf16, p_fp32) in GPU_PEAKS.items():
            if key in name:
                return (p_bf16 if bf16 else p_fp32) * 1e12, f"{name}: listed dense peak"
        raise SystemExit(f"unknown GPU {name!r}: pass --peak-tflops")
    n = 1024
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(2):
        a @ b
    ts = []
    for _ in range(5):
        t0 = _clock(device)
        a @ b
        ts.append(_clock(device) - t0)
    return 2 * n ** 3 / min(ts), f"measured fp32 {n}x{n} matmul, per CPU second of {threads} thread(s)"


def _clock(device: torch.device) -> float:
    """Wall time on CUDA; process CPU time on CPU (all threads), so that other processes on a shared machine
    slow neither the step nor the peak measurement: CPU MFU is then FLOPs per CPU second over the GEMM's."""
    return time.perf_counter() if device.type == "cuda" else time.process_time()


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto", help="cuda, cpu or auto (cuda when available)")
    ap.add_argument("--size", default=None, help="model size (default: base on CUDA, nano on CPU)")
    ap.add_argument("--batch", type=int, default=None, help="default: 16 on CUDA, 8 on CPU")
    ap.add_argument("--src-len", type=int, default=None, help="default: 512 on CUDA, 64 on CPU")
    ap.add_argument("--tgt-len", type=int, default=None, help="default: 128 on CUDA, 32 on CPU")
    ap.add_argument("--vocab", type=int, default=59464, help="embedding rows (OFA's vocabulary, padded)")
    ap.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                    help="bf16 autocast (default: on for CUDA with bf16, off on CPU)")
    ap.add_argument("--compile", action="store_true", help="torch.compile every layer")
    ap.add_argument("--checkpoint-activations", action="store_true")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch threads on CPU")
    ap.add_argument("--peak-tflops", type=float, default=None)
    ap.add_argument("--out", default=None, help="JSON path (default bench/results/mfu_<device>_<size>.json; '' = none)")
    args = ap.parse_args(argv)
    dev = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                       ("cpu" if args.device == "auto" else args.device))
    gpu = dev.type == "cuda"
    size = args.size or ("base" if gpu else "nano")
    B = args.batch or (16 if gpu else 8)
    S = args.src_len or (512 if gpu else 64)
    T = args.tgt_len or (128 if gpu else 32)
    bf16 = args.bf16 if args.bf16 is not None else (gpu and torch.cuda.is_bf16_supported())
    if not gpu:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    cfg = ModelConfig.from_size(size, vocab_size=args.vocab, checkpoint_activations=args.checkpoint_activations,
                                max_positions=max(1024, S, T))
    model = GeneralistModel(cfg).to(dev).train()
    speed.maybe_compile(model, args.compile, dev)
    opt = speed.adamw(model.parameters(), lr=1e-4)
    crit = TokenCriterion(0.1)
    g = torch.Generator().manual_seed(0)
    src = torch.randint(5, args.vocab, (B, S), generator=g).to(dev)
    target = torch.randint(5, args.vocab, (B, T), generator=g).to(dev)
    prev = torch.cat([torch.full((B, 1), 1, device=dev), target[:, :-1]], 1)
    batch = {"encoder": EncoderBatch.from_tokens(src), "prev_tokens": prev, "target": target}

    def step():
        opt.zero_grad(set_to_none=True)
        with speed.autocast(dev.type, bf16):
            loss, log = crit(model, batch)
        (loss / log["sample_size"]).backward()
        opt.step()

    def sync():
        if gpu:
            torch.cuda.synchronize(dev)

    for _ in range(args.warmup):
        step()
    sync()
    if gpu:
        torch.cuda.reset_peak_memory_stats(dev)
    times = []
    for _ in range(args.steps):
        t0 = _clock(dev)
        step()
        sync()
        times.append(_clock(dev) - t0)
    t = statistics.median(times)
    flops = train_flops(cfg, B, S, T, args.vocab)
    if args.peak_tflops:
        peak, peak_src = args.peak_tflops * 1e12, "--peak-tflops"
    else:
        peak, peak_src = peak_flops(dev, bf16, args.threads)
    res = {"bench": "mfu", "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "device": str(dev),
           "device_name": torch.cuda.get_device_name(dev) if gpu else "cpu", "size": size, "bf16": bf16,
           "compile": args.compile, "checkpoint_activations": args.checkpoint_activations, "batch": B,
           "src_len": S, "tgt_len": T, "vocab": args.vocab, "params": model.num_parameters(),
           "step_s_median": t, "train_flops_per_step": flops,
           "forward_flops": forward_flops(cfg, B, S, T, args.vocab), "achieved_tflops": flops / t / 1e12,
           "peak_tflops": peak / 1e12, "peak_source": peak_src, "mfu": flops / t / peak,
           "tokens_per_s": B * (S + T) / t, "target_tokens_per_s": B * T / t,
           "peak_memory_gib": torch.cuda.max_memory_allocated(dev) / 2**30 if gpu else None}
    print(f"{size} on {res['device_name']} bf16={bf16} batch {B} x ({S} src + {T} tgt): step {t * 1e3:.1f} ms, "
          f"{res['achieved_tflops']:.3f} TFLOP/s of {res['peak_tflops']:.3f} ({peak_src}) -> MFU {100 * res['mfu']:.1f}%")
    out = args.out if args.out is not None else os.path.join(ROOT, "bench", "results", f"mfu_{dev.type}_{size}.json")
    if out:
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        with open(out, "w") as f:
            json.dump(res, f, indent=1)
    return res


if __name__ == "__main__":
    main()
