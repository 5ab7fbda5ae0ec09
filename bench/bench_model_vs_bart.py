"""Our universal model vs Hugging Face BART at the same dimensions: training step and generation speed.

Both models get random weights, the same vocabulary size and the same batch (source lengths vary, so both use
padding masks), and the same optimizer (AdamW, foreach). Timed: one training step (forward + backward + AdamW; label-smoothed cross entropy, eps 0.1, for
both), greedy and beam-5 generation of exactly ``--gen-len`` tokens (eos disallowed before that, so random
weights decode the same number of steps in both). Warm-up, then the median of ``--steps`` runs, ours and BART
interleaved. On a shared CPU, OpenMP threads stall when other processes compete for the cores: compare with
``--threads 1`` too when the machine is loaded.

    PYTHONPATH=core/src .venv/bin/python bench/bench_model_vs_bart.py --size tiny --threads 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "core", "src"))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from ofasys.generation import SequenceGenerator  # noqa: E402
from ofasys.model import EncoderBatch, GeneralistModel, ModelConfig, TokenCriterion  # noqa: E402

PAD, BOS, EOS = 0, 1, 2


def median_times(fns, steps: int, warmup: int) -> list[float]:
    """Median wall time of each function; repetitions are interleaved (a, b, a, b...) so that load changes on a
    shared machine hit every contender alike."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(steps):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            times[i].append(time.perf_counter() - t0)
    return [statistics.median(t) for t in times]


def make_batch(args, g: torch.Generator):
    B, S, T, V = args.batch, args.src_len, args.tgt_len, args.vocab
    src = torch.randint(5, V, (B, S), generator=g)
    lengths = torch.randint(max(1, S * 3 // 4), S + 1, (B,), generator=g)
    lengths[0] = S
    src_mask = torch.arange(S)[None, :] < lengths[:, None]
    src = src.masked_fill(~src_mask, PAD)
    target = torch.randint(5, V, (B, T), generator=g)
    target[:, -1] = EOS
    prev = torch.cat([torch.full((B, 1), BOS), target[:, :-1]], 1)
    return src, src_mask, prev, target


def build_bart(cfg: ModelConfig, args):
    from transformers import BartConfig, BartForConditionalGeneration

    bc = BartConfig(vocab_size=args.vocab, d_model=cfg.d_model, encoder_layers=cfg.encoder_layers,
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


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="tiny")
    ap.add_argument("--vocab", type=int, default=8192)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--src-len", type=int, default=64)
    ap.add_argument("--tgt-len", type=int, default=32)
    ap.add_argument("--gen-len", type=int, default=32)
    ap.add_argument("--gen-batch", type=int, default=None, help="batch for generation (default: --batch)")
    ap.add_argument("--beam", type=int, default=5)
    ap.add_argument("--steps", type=int, default=5, help="timed repetitions (median)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip", default="", help="comma list of parts to skip: train,greedy,beam")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    skip = set(filter(None, args.skip.split(",")))

    torch.manual_seed(0)
    cfg = ModelConfig.from_size(args.size, vocab_size=args.vocab)
    ours = GeneralistModel(cfg)
    bart = build_bart(cfg, args)
    g = torch.Generator().manual_seed(0)
    src, src_mask, prev, target = make_batch(args, g)
    enc_batch = EncoderBatch.from_tokens(src)
    crit = TokenCriterion(0.1)
    print(f"size={args.size} d={cfg.d_model} layers={cfg.encoder_layers}/{cfg.decoder_layers} heads={cfg.n_heads} "
          f"ffn={cfg.ffn_dim} vocab={args.vocab} batch={args.batch} src={args.src_len} tgt={args.tgt_len} "
          f"threads={args.threads} torch={torch.__version__}")
    print(f"params: ours {ours.num_parameters() / 1e6:.2f}M  bart {sum(p.numel() for p in bart.parameters()) / 1e6:.2f}M")
    results: dict[str, tuple[float, float]] = {}

    if "train" not in skip:
        ours.train()
        bart.train()
        opt_o = torch.optim.AdamW(ours.parameters(), lr=1e-4, foreach=True)
        opt_b = torch.optim.AdamW(bart.parameters(), lr=1e-4, foreach=True)
        batch = {"encoder": enc_batch, "prev_tokens": prev, "target": target}

        def step_ours():
            opt_o.zero_grad(set_to_none=True)
            loss, _ = crit(ours, batch)
            (loss / target.numel()).backward()
            opt_o.step()

        def step_bart():
            opt_b.zero_grad(set_to_none=True)
            logits = bart(input_ids=src, attention_mask=src_mask.long(), decoder_input_ids=prev).logits
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), target.view(-1), ignore_index=PAD,
                                   label_smoothing=0.1)
            loss.backward()
            opt_b.step()

        n_tok = args.batch * args.tgt_len
        t_o, t_b = median_times([step_ours, step_bart], args.steps, args.warmup)
        results["train"] = (n_tok / t_o, n_tok / t_b)

    gb = args.gen_batch or args.batch
    gsrc, gmask = src[:gb], src_mask[:gb]
    genc = EncoderBatch.from_tokens(gsrc)
    ours.eval()
    bart.eval()
    L = args.gen_len
    for name, beam in (("greedy", 1), (f"beam{args.beam}", args.beam)):
        if (name == "greedy" and "greedy" in skip) or (name != "greedy" and "beam" in skip):
            continue
        gen = SequenceGenerator(beam_size=beam, max_len=L, min_len=L)

        def gen_ours():
            out = gen.generate(ours, genc, bos=BOS, eos=EOS, pad=PAD)
            assert all(len(h[0].tokens) == L for h in out)

        def gen_bart():
            with torch.inference_mode():
                out = bart.generate(input_ids=gsrc, attention_mask=gmask.long(), num_beams=beam, do_sample=False,
                                    max_new_tokens=L, min_new_tokens=L, early_stopping=True, length_penalty=1.0,
                                    no_repeat_ngram_size=0, decoder_start_token_id=BOS, use_cache=True)
            assert out.size(1) >= L

        steps = max(1, args.steps // (2 if beam > 1 else 1))
        t_o, t_b = median_times([gen_ours, gen_bart], steps, 1)
        results[name] = (gb * L / t_o, gb * L / t_b)

    print(f"{'':10s} {'ours tok/s':>12s} {'bart tok/s':>12s} {'ours/bart':>10s}")
    for name, (o, b) in results.items():
        print(f"{name:10s} {o:12.0f} {b:12.0f} {o / b:10.2f}")
    return results


if __name__ == "__main__":
    main()
