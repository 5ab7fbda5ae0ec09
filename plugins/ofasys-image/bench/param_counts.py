"""Parameter counts of the universal model with the ``image_resnet`` adaptor, against OFA's published totals.

OFA's totals include its 59,457-row shared embedding (GPT-2 BPE 50,265 + 8,192 image codes + 1,000 bins), so the
comparison uses that many rows; the count with this ofasys' own vocabulary (TEXT's 8,192-token BPE + 1,000 bins)
is shown beside it. Models are built on the meta device: no memory, no time.

    .venv/bin/python plugins/ofasys-image/bench/param_counts.py
"""

from __future__ import annotations

import torch

from ofasys import GeneralistModel
from ofasys.model.config import PUBLISHED_TOTALS
from ofasys_image.adaptors import ImageResNetAdaptor
from ofasys_image.defaults import BACKBONE

OFA_VOCAB_ROWS = 59457


def count(size: str, vocab_rows: int) -> tuple[int, int]:
    """(total parameters, of which the image adaptor) of ``size`` with ``vocab_rows`` embedding rows."""
    with torch.device("meta"):
        model = GeneralistModel(size, vocab_size=vocab_rows)
        adaptor = ImageResNetAdaptor(model.config.d_model, BACKBONE[size], model.config.image_bucket_size)
        model.add_adaptor("IMAGE.image_resnet", adaptor)
    return model.num_parameters(), sum(p.numel() for p in adaptor.parameters())


def main() -> None:
    from ofasys.engine.runtime import build_vocab
    from ofasys.plan import build_plan

    own_rows = build_vocab([build_plan("[IMAGE:img] [TEXT:q] -> [BOX:b]")]).padded_size()
    print(f"{'size':<8}{'backbone':<11}{'OFA':>6}{'ours (OFA vocab)':>18}{'diff':>8}{'adaptor':>10}"
          f"{'ours (own vocab)':>18}")
    for size, published in PUBLISHED_TOTALS.items():
        total, adaptor = count(size, OFA_VOCAB_ROWS)
        own, _ = count(size, own_rows)
        ref = float(published.rstrip("M")) * 1e6
        print(f"{size:<8}{BACKBONE[size]:<11}{published:>6}{total / 1e6:>17.1f}M{(total - ref) / ref:>+8.1%}"
              f"{adaptor / 1e6:>9.1f}M{own / 1e6:>17.1f}M")


if __name__ == "__main__":
    main()
