"""Our universal model vs Hugging Face BART at the same dimensions: training throughput, peak memory, generation.

Both models get random weights, the same vocabulary size and the same batch (source lengths vary, so both use
padding masks), the same optimizer (AdamW, ``--optim``: fused kernel or foreach, identical for both) and the
same loss (label-smoothed cross entropy, eps 0.1). Timed per size:

* ``train``: one training step (forward + backward + AdamW) on ``--batch`` x ``--tgt-len`` target tokens;
* ``greedy`` (and ``greedy_b1``, one sample): cached greedy generation of exactly ``--gen-len`` tokens, eos
  disallowed before that (``min_len`` / ``min_new_tokens``), so both decode the same number of steps;
* ``beam``: beam search (``--beam``) the same way, when asked (``--parts``).

Repetitions are interleaved (ours, BART, ours, BART...) after a warm-up and the median is reported. Each run
records both the wall time and the thread CPU time of the repetition: on a CPU shared with other processes the
wall time includes the time the process waited for a core, so the ratios are given on CPU time (the wall-time
ratios are in the JSON too). With one thread (``--threads 1``, the default) the headline ratio is the median over
repetitions of BART's thread CPU time over ours in the same round (robust to the machine's speed drifting between
rounds); with more threads the thread CPU time covers the calling thread only, so the headline uses wall time
(run those on an idle machine).

Peak memory of a training step is measured in a fresh subprocess per model: the peak resident memory during the
first two steps (sampled every millisecond) minus the resident memory once the model, optimizer and batch exist:
the activations + gradients + optimizer state a step adds, as the OS sees it.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_model_vs_bart.py --sizes nano,tiny,base
    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_model_vs_bart.py --sizes nano --parts train,greedy --steps 3

Writes ``bench/results/model_vs_bart.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "core", "src"))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from ofasys.generation import SequenceGenerator  # noqa: E402
from ofasys.model import EncoderBatch, GeneralistModel, ModelConfig, TokenCriterion  # noqa: E402
from ofasys.model import speed  # noqa: E402

PAD, BOS, EOS = 0, 1, 2
PARTS = ("train", "greedy", "greedy_b1", "beam")


def interleaved(fns, steps: int, warmup: int) -> list[dict]:
    """Median wall and thread-CPU seconds of each function, and the per-repetition times; repetitions are
    interleaved (a, b, a, b...) so load changes on a shared machine hit every contender alike."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    wall: list[list[float]] = [[] for _ in fns]
    cpu: list[list[float]] = [[] for _ in fns]
    for _ in range(steps):
        for i, fn in enumerate(fns):
            c0, w0 = time.thread_time(), time.perf_counter()
            fn()
            cpu[i].append(time.thread_time() - c0)
            wall[i].append(time.perf_counter() - w0)
    return [{"wall_s": statistics.median(w), "cpu_s": statistics.median(c), "reps": steps, "wall_each": w,
             "cpu_each": c} for w, c in zip(wall, cpu)]


def ratios(t_ours: dict, t_bart: dict, threads: int) -> dict:
    """BART's time over ours: of the medians (CPU and wall), and the median of the per-repetition ratios (each
    repetition of ours against the BART repetition right after it: robust to this machine's drifting speed).
    ``ratio`` is the headline: per-repetition thread CPU time with one thread; with several threads the thread
    CPU time covers the calling thread only, so wall time."""
    pairs = {k: statistics.median(b / o for o, b in zip(t_ours[f"{k}_each"], t_bart[f"{k}_each"]))
             for k in ("cpu", "wall")}
    out = {"ratio_cpu": t_bart["cpu_s"] / t_ours["cpu_s"], "ratio_wall": t_bart["wall_s"] / t_ours["wall_s"],
           "ratio_pairs_cpu": pairs["cpu"], "ratio_pairs_wall": pairs["wall"]}
    out["clock"] = "cpu" if threads == 1 else "wall"
    out["ratio"] = pairs[out["clock"]]
    return out


def make_batch(batch: int, src_len: int, tgt_len: int, vocab: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(5, vocab, (batch, src_len), generator=g)
    lengths = torch.randint(max(1, src_len * 3 // 4), src_len + 1, (batch,), generator=g)
    lengths[0] = src_len
    src_mask = torch.arange(src_len)[None, :] < lengths[:, None]
    src = src.masked_fill(~src_mask, PAD)
    target = torch.randint(5, vocab, (batch, tgt_len), generator=g)
    target[:, -1] = EOS
    prev = torch.cat([torch.full((batch, 1), BOS), target[:, :-1]], 1)
    return src, src_mask, prev, target


def build_bart(cfg: ModelConfig, vocab: int):
    from transformers import BartConfig, BartForConditionalGeneration

    bc = BartConfig(vocab_size=vocab, d_model=cfg.d_model, encoder_layers=cfg.encoder_layers,
                    decoder_layers=cfg.decoder_layers, encoder_attention_heads=cfg.n_heads,
                    decoder_attention_heads=cfg.n_heads, encoder_ffn_dim=cfg.ffn_dim, decoder_ffn_dim=cfg.ffn_dim,
                    max_position_embeddings=cfg.max_positions, dropout=cfg.dropout, attention_dropout=0.0,
                    activation_dropout=0.0, activation_function="gelu", pad_token_id=PAD, bos_token_id=BOS,
                    eos_token_id=EOS, decoder_start_token_id=BOS, forced_bos_token_id=None, forced_eos_token_id=None,
                    scale_embedding=False, tie_word_embeddings=True)
    try:
        return BartForConditionalGeneration._from_config(bc, attn_implementation="sdpa")
    except TypeError:  # older transformers
        bc._attn_implementation = "sdpa"
        return BartForConditionalGeneration(bc)


def ours_config(cfg: ModelConfig, args) -> ModelConfig:
    """Our model's config: ``cfg`` with the ``--ours`` overrides (``key=value`` comma list)."""
    over = {}
    for item in filter(None, getattr(args, "ours", "").split(",")):
        k, v = item.split("=", 1)
        over[k] = {"true": True, "false": False}.get(v.lower(), v)
        if isinstance(over[k], str):
            over[k] = type(getattr(cfg, k))(v)
    return ModelConfig.from_dict({**cfg.to_dict(), **over}) if over else cfg


def train_steps(model_name: str, cfg: ModelConfig, args):
    """(model, step function) for one contender, on the shared batch."""
    src, src_mask, prev, target = make_batch(args.batch, args.src_len, args.tgt_len, args.vocab)
    torch.manual_seed(0)
    fused = {"fused": True, "foreach": False}[args.optim]
    if model_name == "ours":
        model = GeneralistModel(ours_config(cfg, args)).train()
        crit = TokenCriterion(0.1)
        batch = {"encoder": EncoderBatch.from_tokens(src), "prev_tokens": prev, "target": target}
        opt = speed.adamw(model.parameters(), lr=1e-4, weight_decay=0.0, fused=fused)

        def step():
            opt.zero_grad(set_to_none=True)
            loss, log = crit(model, batch)
            (loss / log["sample_size"]).backward()
            opt.step()
    else:
        model = build_bart(cfg, args.vocab).train()
        opt = speed.adamw(model.parameters(), lr=1e-4, weight_decay=0.0, fused=fused)
        am = src_mask.long()

        def step():
            opt.zero_grad(set_to_none=True)
            logits = model(input_ids=src, attention_mask=am, decoder_input_ids=prev).logits
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), target.view(-1), ignore_index=PAD,
                                   label_smoothing=0.1)
            loss.backward()
            opt.step()
    return model, step


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def memory_probe(args) -> None:
    """Subprocess entry: peak resident-memory growth during ``args.memory_probe``'s training steps (sampled every
    millisecond by a thread, above the resident memory once the model, optimizer and batch exist and freed
    memory was returned to the OS), printed as JSON."""
    import ctypes
    import gc
    import threading

    torch.set_num_threads(args.threads)
    cfg = ModelConfig.from_size(args.sizes, vocab_size=args.vocab, dropout=0.1)
    _, step = train_steps(args.memory_probe, cfg, args)
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    base = _rss_bytes()
    peak = [base]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _rss_bytes())
            time.sleep(0.001)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    for _ in range(2):
        step()
    done.set()
    th.join()
    print(json.dumps({"peak_step_mib": (peak[0] - base) / 2**20}))


def measure_memory(size: str, who: str, args) -> float | None:
    cmd = [sys.executable, os.path.abspath(__file__), "--memory-probe", who, "--sizes", size, "--vocab",
           str(args.vocab), "--batch", str(args.batch), "--src-len", str(args.src_len), "--tgt-len",
           str(args.tgt_len), "--threads", str(args.threads), "--optim", args.optim, "--ours", args.ours]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, check=True).stdout
        return json.loads(out.strip().splitlines()[-1])["peak_step_mib"]
    except Exception as exc:  # noqa: BLE001 - a failed probe must not lose the timings
        print(f"  memory probe {who}/{size} failed: {exc}", file=sys.stderr)
        return None


def bench_size(size: str, args, parts: set[str]) -> dict:
    cfg = ModelConfig.from_size(size, vocab_size=args.vocab, dropout=0.1)
    steps = args.steps if size not in ("base", "large", "huge") else max(1, min(args.steps, args.big_steps))
    res: dict = {"size": size, "dims": {k: getattr(cfg, k) for k in ("d_model", "encoder_layers", "decoder_layers",
                                                                      "n_heads", "ffn_dim")}}
    if "train" in parts:
        ours, step_o = train_steps("ours", cfg, args)
        bart, step_b = train_steps("bart", cfg, args)
        res["params"] = {"ours": ours.num_parameters(), "bart": sum(p.numel() for p in bart.parameters())}
        t_o, t_b = interleaved([step_o, step_b], steps, 1)
        n_tok = args.batch * args.tgt_len
        res["train"] = {"tokens_per_step": n_tok, "ours": t_o, "bart": t_b,
                        "ours_tok_s_cpu": n_tok / t_o["cpu_s"], "bart_tok_s_cpu": n_tok / t_b["cpu_s"],
                        "ours_tok_s_wall": n_tok / t_o["wall_s"], "bart_tok_s_wall": n_tok / t_b["wall_s"],
                        **ratios(t_o, t_b, args.threads)}
        del ours, bart, step_o, step_b
        if not args.no_memory:
            res["train"]["peak_step_mib"] = {"ours": measure_memory(size, "ours", args),
                                             "bart": measure_memory(size, "bart", args)}
        print_row(size, "train", res["train"])
    gen_parts = [p for p in ("greedy", "greedy_b1", "beam") if p in parts]
    if gen_parts:
        torch.manual_seed(0)
        ours = GeneralistModel(ours_config(cfg, args)).eval()
        bart = build_bart(cfg, args.vocab).eval()
        src, src_mask, _, _ = make_batch(max(args.gen_batch, 1), args.src_len, args.tgt_len, args.vocab)
        L = args.gen_len
        for part in gen_parts:
            gb = 1 if part == "greedy_b1" else args.gen_batch
            beam = args.beam if part == "beam" else 1
            gsrc, gmask = src[:gb], src_mask[:gb].long()
            genc = EncoderBatch.from_tokens(gsrc)
            gen = SequenceGenerator(beam_size=beam, max_len=L, min_len=L)

            def gen_ours():
                out = gen.generate(ours, genc, bos=BOS, eos=EOS, pad=PAD)
                assert all(len(h[0].tokens) == L for h in out)

            def gen_bart():
                with torch.inference_mode():
                    out = bart.generate(input_ids=gsrc, attention_mask=gmask, num_beams=beam, do_sample=False,
                                        max_new_tokens=L, min_new_tokens=L, length_penalty=1.0,
                                        no_repeat_ngram_size=0, decoder_start_token_id=BOS, use_cache=True)
                assert out.size(1) >= L

            reps = max(1, steps * (1 if beam > 1 else 2))
            t_o, t_b = interleaved([gen_ours, gen_bart], reps, 1)
            n_tok = gb * L
            res[part] = {"batch": gb, "beam": beam, "gen_len": L, "ours": t_o, "bart": t_b,
                         "ours_tok_s_cpu": n_tok / t_o["cpu_s"], "bart_tok_s_cpu": n_tok / t_b["cpu_s"],
                         "ours_tok_s_wall": n_tok / t_o["wall_s"], "bart_tok_s_wall": n_tok / t_b["wall_s"],
                         **ratios(t_o, t_b, args.threads)}
            print_row(size, part, res[part])
    return res


def print_row(size: str, part: str, r: dict) -> None:
    mem = ""
    if "peak_step_mib" in r:
        m = r["peak_step_mib"]
        fmt = lambda v: "-" if v is None else f"{v:.0f}"  # noqa: E731
        mem = f"  peak MiB ours {fmt(m['ours'])} bart {fmt(m['bart'])}"
    clock = r["clock"]
    print(f"{size:6s} {part:10s} ours {r[f'ours_tok_s_{clock}']:9.0f} tok/s  bart {r[f'bart_tok_s_{clock}']:9.0f} "
          f"tok/s ({clock})  ours/bart {r['ratio']:5.2f} (median of {r['ours']['reps']} paired repetitions; "
          f"medians: cpu {r['ratio_cpu']:.2f}, wall {r['ratio_wall']:.2f}){mem}", flush=True)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="nano,tiny,base")
    ap.add_argument("--parts", default="train,greedy,greedy_b1", help=f"comma list of {', '.join(PARTS)}")
    ap.add_argument("--vocab", type=int, default=8192)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--src-len", type=int, default=64)
    ap.add_argument("--tgt-len", type=int, default=32)
    ap.add_argument("--gen-len", type=int, default=32)
    ap.add_argument("--gen-batch", type=int, default=16)
    ap.add_argument("--beam", type=int, default=5)
    ap.add_argument("--steps", type=int, default=5, help="timed repetitions per contender (median)")
    ap.add_argument("--big-steps", type=int, default=3, help="repetitions for base and larger")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--optim", choices=("fused", "foreach"), default="fused",
                    help="AdamW implementation, the same for both models")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    ap.add_argument("--ours", default="", help="overrides of our model's config, e.g. normformer=false "
                                               "(OFA's NormFormer extras off: BART's layer structure)")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "model_vs_bart.json"))
    ap.add_argument("--memory-probe", choices=("ours", "bart"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    if args.memory_probe:
        memory_probe(args)
        return {}
    torch.set_num_threads(args.threads)
    parts = set(filter(None, args.parts.split(",")))
    unknown = parts - set(PARTS)
    if unknown:
        ap.error(f"unknown parts {sorted(unknown)}; choose from {', '.join(PARTS)}")
    import transformers

    print(f"batch={args.batch} src={args.src_len} tgt={args.tgt_len} gen_len={args.gen_len} vocab={args.vocab} "
          f"threads={args.threads} optim={args.optim} torch={torch.__version__} "
          f"transformers={transformers.__version__}")
    results = {"bench": "model_vs_bart", "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                           "loadavg_start": os.getloadavg()},
               "settings": {k: v for k, v in vars(args).items() if k not in ("out", "memory_probe")},
               "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
               "sizes": []}
    for size in filter(None, args.sizes.split(",")):
        results["sizes"].append(bench_size(size, args, parts))
        write(results, args.out)  # partial results survive an interrupted run
    results["machine"]["loadavg_end"] = os.getloadavg()
    write(results, args.out)
    return results


def write(results: dict, path: str) -> None:
    if not path:
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
