"""The benchmark scripts run, and the MFU script counts FLOPs correctly (no timing is asserted)."""

from __future__ import annotations

import importlib.util
import os

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "bench", f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_mfu_flop_count_matches_torch_flop_counter():
    """The analytic forward count of bench_mfu equals what torch.utils.flop_counter counts on the model's
    matrix multiplies and attention (all positions real, so no padding question)."""
    from torch.utils.flop_counter import FlopCounterMode

    from ofasys.model import EncoderBatch, GeneralistModel, ModelConfig

    mfu = _load("bench_mfu")
    torch.manual_seed(0)
    B, S, T, V = 2, 12, 7, 96
    cfg = ModelConfig.from_size("nano", vocab_size=V)
    m = GeneralistModel(cfg).eval()
    src = torch.randint(5, V, (B, S))
    prev = torch.randint(5, V, (B, T))
    from torch.nn.attention import SDPBackend, sdpa_kernel

    counter = FlopCounterMode(display=False)
    # the math backend decomposes attention into matmuls the counter sees (it has no formula for CPU flash)
    with counter, torch.no_grad(), sdpa_kernel(SDPBackend.MATH):
        m.logits(m.decode(prev, m.encode(EncoderBatch.from_tokens(src))))
    counted = counter.get_total_flops()
    analytic = mfu.forward_flops(cfg, B, S, T, V)["total"]
    assert abs(analytic - counted) <= 0.01 * counted, (analytic, counted)
    assert mfu.train_flops(cfg, B, S, T, V) == 3 * analytic


def test_mfu_script_runs_on_cpu_with_nano(tmp_path):
    mfu = _load("bench_mfu")
    out = tmp_path / "mfu.json"
    res = mfu.main(["--device", "cpu", "--size", "nano", "--batch", "2", "--src-len", "16", "--tgt-len", "8",
                    "--vocab", "512", "--steps", "2", "--warmup", "1", "--out", str(out)])
    assert out.exists()
    assert res["size"] == "nano" and res["device"] == "cpu" and not res["bf16"]
    assert res["train_flops_per_step"] > 0 and res["step_s_median"] > 0
    assert 0.0 < res["mfu"] < 2.0  # CPU MFU is relative to a measured GEMM rate: same order of magnitude


@pytest.mark.slow  # imports transformers and builds BART: ~27 s on the shared CPU
def test_model_vs_bart_bench_runs_a_tiny_configuration(tmp_path):
    pytest.importorskip("transformers")
    bench = _load("bench_model_vs_bart")
    out = tmp_path / "r.json"
    res = bench.main(["--sizes", "nano", "--parts", "train,greedy", "--batch", "2", "--src-len", "8",
                      "--tgt-len", "4", "--gen-len", "3", "--gen-batch", "2", "--vocab", "256", "--steps", "1",
                      "--no-memory", "--out", str(out)])
    row = res["sizes"][0]
    assert out.exists() and row["size"] == "nano"
    assert row["train"]["ratio_cpu"] > 0 and row["greedy"]["ratio_cpu"] > 0
    # the headline: per-repetition ratios on the thread CPU time (one thread)
    assert row["train"]["clock"] == "cpu" and row["train"]["ratio"] == row["train"]["ratio_pairs_cpu"] > 0
    assert len(row["greedy"]["ours"]["cpu_each"]) == row["greedy"]["ours"]["reps"]


def test_packing_bench_runs_a_tiny_configuration(tmp_path):
    bench = _load("bench_packing")
    out = tmp_path / "packing.json"
    res = bench.main(["--steps", "3", "--skip", "1", "--batch", "4", "--rows", "40", "--out", str(out)])
    runs = {r["setting"]: r for r in res["runs"]}
    assert out.exists() and set(runs) == {"plain", "bucketing", "packing"}
    for r in runs.values():
        assert r["target_tokens_per_s"] > 0 and 0.0 <= r["padding_fraction_encoder"] < 1.0
    # the same batches, packed: fewer padded positions on both sides (no timing is asserted)
    assert runs["packing"]["padding_fraction_encoder"] < runs["plain"]["padding_fraction_encoder"]
    assert runs["packing"]["padding_fraction_decoder"] < runs["plain"]["padding_fraction_decoder"]
