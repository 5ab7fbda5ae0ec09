"""Parameters of the universal model per named size, text-only (no image backbone).

OFA's published totals include the ResNet image backbone that the image plugin adds when an IMAGE slot is planned
(tiny 33M, medium 93M, base 180M, large 470M, huge 930M), so the numbers here are smaller. The default vocabulary
size is OFA's (50k BPE + 1000 location bins + 8192 image codes + specials), padded to a multiple of 8.

    PYTHONPATH=core/src .venv/bin/python bench/param_counts.py [--vocab 59464] [--sizes tiny,base]
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "core", "src"))

import torch  # noqa: E402

from ofasys.model import PUBLISHED_TOTALS, SIZES, GeneralistModel, ModelConfig  # noqa: E402


def count(size: str, vocab: int) -> dict:
    cfg = ModelConfig.from_size(size, vocab_size=vocab)
    with torch.device("meta"):  # no memory, no init time
        m = GeneralistModel(cfg)
    total = m.num_parameters()
    emb = m.embed_tokens.weight.numel()
    enc = sum(p.numel() for p in m.encoder_layers.parameters())
    dec = sum(p.numel() for p in m.decoder_layers.parameters())
    return {"size": size, "total": total, "embedding": emb, "encoder": enc, "decoder": dec,
            "other": total - emb - enc - dec, "cfg": cfg}


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vocab", type=int, default=59464, help="embedding rows (OFA: 59457 tokens, padded to 8)")
    ap.add_argument("--sizes", default=",".join(SIZES))
    args = ap.parse_args(argv)
    rows = [count(s, args.vocab) for s in args.sizes.split(",") if s]
    print(f"vocab rows {args.vocab}; text-only (the image plugin adds its ResNet backbone)")
    print(f"{'size':8s} {'layers':>7s} {'d':>5s} {'heads':>5s} {'ffn':>5s} {'total':>9s} {'embed':>8s} "
          f"{'encoder':>8s} {'decoder':>8s} {'other':>7s} {'OFA published (with ResNet)':>28s}")
    for r in rows:
        c = r["cfg"]
        print(f"{r['size']:8s} {c.encoder_layers:>3d}/{c.decoder_layers:<3d} {c.d_model:5d} {c.n_heads:5d} "
              f"{c.ffn_dim:5d} {r['total'] / 1e6:8.1f}M {r['embedding'] / 1e6:7.1f}M {r['encoder'] / 1e6:7.1f}M "
              f"{r['decoder'] / 1e6:7.1f}M {r['other'] / 1e6:6.2f}M {PUBLISHED_TOTALS.get(r['size'], '-'):>28s}")
    return rows


if __name__ == "__main__":
    main()
