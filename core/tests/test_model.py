"""The universal model: config/sizes, encoder segment assembly, incremental decoding, criterion."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ofasys.errors import ConfigError
from ofasys.model import (Adaptor, EncoderBatch, GeneralistModel, ModelConfig, Segment, TokenCriterion, build_model,
                          label_smoothed_cross_entropy)
from ofasys.model.config import SIZES

torch.set_num_threads(1)  # robust on shared CPUs: OpenMP barriers stall under contention
V = 64


class Patches2D(Adaptor):
    """A tiny 2-D adaptor: (N, h, w, C) feature grids, padded grids marked by a (N, h, w) validity mask."""

    bias_kind = "image2d"
    bias_dims = 2
    bias_buckets = 8

    def __init__(self, d: int, c: int = 3):
        super().__init__()
        self.proj = nn.Linear(c, d)

    def forward(self, payload):
        x, valid = payload["x"], payload["valid"]
        n, h, w, _ = x.shape
        ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        pos = torch.stack([ys, xs], -1).reshape(1, h * w, 2).expand(n, -1, -1)
        return Segment(self.proj(x).reshape(n, h * w, -1), valid.reshape(n, h * w), pos, self.bias_kind)


def nano(**kw) -> GeneralistModel:
    torch.manual_seed(0)
    return GeneralistModel(ModelConfig.from_size("nano", vocab_size=V, dropout=0.0, **kw)).eval()


# ------------------------------------------------------------------------------------------ config


def test_from_size_gives_published_dims():
    expect = {"tiny": (4, 4, 256, 4, 1024), "medium": (4, 4, 512, 8, 2048), "base": (6, 6, 768, 12, 3072),
              "large": (12, 12, 1024, 16, 4096), "huge": (24, 12, 1280, 16, 5120), "nano": (2, 2, 128, 4, 512)}
    for name, dims in expect.items():
        c = ModelConfig.from_size(name, vocab_size=1000)
        assert (c.encoder_layers, c.decoder_layers, c.d_model, c.n_heads, c.ffn_dim) == dims
        assert c.size == name
    assert set(SIZES) == set(expect)
    assert ModelConfig.from_size("base", dropout=0.2).dropout == 0.2


def test_unknown_size_lists_sizes():
    with pytest.raises(ConfigError) as e:
        ModelConfig.from_size("gigantic")
    for name in ("tiny", "base", "huge"):
        assert name in str(e.value)
    with pytest.raises(ConfigError, match="d_modl"):
        ModelConfig.from_size("tiny", d_modl=3)


def test_config_json_roundtrip_keeps_type_ids_and_bias_tables():
    m = nano()
    m.add_adaptor("IMAGE.patch", Patches2D(128))
    data = json.loads(json.dumps(m.config.to_dict()))
    assert data["type_ids"] == {"tokens": 0, "IMAGE.patch": 1}
    assert data["bias_kinds"] == {"image2d": [2, 8]}
    m2 = GeneralistModel(ModelConfig.from_dict(data))
    # the bias table exists before the adaptor is added again, so a checkpoint loads in any order
    assert "k_image2d" in m2.rel_bias
    m2.add_adaptor("IMAGE.patch", Patches2D(128))
    m2.load_state_dict(m.state_dict())
    assert m2.type_id("IMAGE.patch") == 1


def test_build_model_and_architectures():
    cfg = ModelConfig.from_size("nano", vocab_size=V)
    assert isinstance(build_model(cfg), GeneralistModel)
    assert isinstance(build_model(cfg.to_dict()), GeneralistModel)
    seen = {}
    d = dict(cfg.to_dict(), arch="toy")
    out = build_model(d, architectures={"toy": lambda c: seen.setdefault("cfg", c) and nn.Linear(2, 2)})
    assert isinstance(out, nn.Linear) and seen["cfg"]["arch"] == "toy"
    with pytest.raises(ConfigError, match="ofa"):
        build_model(dict(d, arch="nope"))


def test_num_parameters_and_tied_output():
    m = nano()
    assert m.num_parameters() == sum(p.numel() for p in m.parameters())
    h = torch.randn(2, 3, 128)
    assert torch.allclose(m.logits(h), h @ m.embed_tokens.weight.t(), atol=1e-5)


# ------------------------------------------------------------------------------------------ decoder


def test_incremental_decode_equals_full_decode():
    m = nano()
    src = torch.randint(5, V, (3, 9))
    src[1, 6:] = 0
    enc = m.encode(EncoderBatch.from_tokens(src))
    prev = torch.randint(5, V, (3, 7))
    with torch.no_grad():
        full = m.decode(prev, enc)
        cache = m.new_cache(2)  # small capacity: the buffers must grow
        steps = [m.decode(prev[:, :3], enc, cache)]  # a multi-token prefix, then one token at a time
        steps += [m.decode(prev[:, t:t + 1], enc, cache) for t in range(3, 7)]
        assert torch.allclose(torch.cat(steps, 1), full, atol=1e-5)
        # beams: 2 rows per source sample share the encoder states; reordering keeps them consistent
        rows = prev.repeat_interleave(2, 0)
        rows[1::2, 4:] = torch.randint(5, V, (3, 3))
        full2 = m.decode(rows, enc)
        cache = m.new_cache()
        for t in range(4):
            m.decode(rows[:, t:t + 1], enc, cache)
        swap = torch.arange(6).view(3, 2).flip(1).reshape(-1)  # swap the beams of each sample
        m.reorder_cache(cache, swap)
        out = [m.decode(rows[swap][:, t:t + 1], enc, cache) for t in range(4, 7)]
        assert torch.allclose(torch.cat(out, 1), full2[swap][:, 4:], atol=1e-5)
        # decode_embeds runs the same decoder on supplied embeddings
        assert torch.allclose(m.decode_embeds(m.embed_tokens(prev), enc), full, atol=1e-6)


def test_eval_is_deterministic_and_train_uses_dropout():
    m = nano()
    m.config.dropout = 0.1
    for layer in [*m.encoder_layers, *m.decoder_layers]:
        layer.p = 0.1
    src = torch.randint(5, V, (2, 6))
    prev = torch.randint(5, V, (2, 4))
    b = EncoderBatch.from_tokens(src)
    assert torch.equal(m(b, prev), m(b, prev))
    m.train()
    assert not torch.equal(m(b, prev), m(b, prev))


def test_activation_checkpointing_gives_same_gradients():
    m = nano()
    m.train()
    src = torch.randint(5, V, (2, 6))
    prev = torch.randint(5, V, (2, 4))
    b = EncoderBatch.from_tokens(src)
    grads = []
    for ck in (False, True):
        m.zero_grad()
        m.set_checkpointing(ck)
        m(b, prev).square().mean().backward()
        grads.append(torch.cat([p.grad.flatten() for p in m.parameters() if p.grad is not None]))
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


# ------------------------------------------------------------------------------------------ encoder segments


def _mixed_batch(d=3):
    torch.manual_seed(1)
    tokens = torch.randint(5, V, (4, 6))
    tokens[0, 4:] = 0
    tokens[2, 2:] = 0
    x = torch.randn(2, 3, 4, d)
    valid = torch.ones(2, 3, 4, dtype=torch.bool)
    valid[1, 2:, :] = False  # a smaller image padded to the grid
    layout = [[("tokens", 0), ("IMAGE.patch", 0)],
              [("IMAGE.patch", 1), ("tokens", 1), ("tokens", 2)],
              [("tokens", 3)],
              []]  # decoder-only sample: empty encoder side
    return EncoderBatch(tokens, {"IMAGE.patch": {"x": x, "valid": valid}}, layout)


def _alone(batch: EncoderBatch, b: int) -> EncoderBatch:
    """Sample b as a batch of its own (its token rows and images only, unpadded)."""
    tok_rows = [r for k, r in batch.layout[b] if k == "tokens"]
    img_rows = [r for k, r in batch.layout[b] if k != "tokens"]
    tokens = None
    if tok_rows:
        tokens = batch.tokens[tok_rows]
        tokens = tokens[:, : int(tokens.ne(0).sum(1).max())]
    feats = {}
    if img_rows:
        p = batch.features["IMAGE.patch"]
        feats["IMAGE.patch"] = {"x": p["x"][img_rows], "valid": p["valid"][img_rows]}
    ti = ii = 0
    layout = []
    for k, _ in batch.layout[b]:
        if k == "tokens":
            layout.append((k, ti))
            ti += 1
        else:
            layout.append((k, ii))
            ii += 1
    return EncoderBatch(tokens, feats, [layout])


def test_mixed_segments_encode_without_nan_and_padding_does_not_leak():
    m = nano()
    m.add_adaptor("IMAGE.patch", Patches2D(128))
    torch.nn.init.normal_(m.rel_bias["k_image2d"], std=0.5)  # make the bias matter
    torch.nn.init.normal_(m.rel_bias["enc_tokens"], std=0.5)
    torch.nn.init.normal_(m.rel_bias["cross_segment"], std=0.5)
    batch = _mixed_batch()
    with torch.no_grad():
        enc = m.encode(batch)
        lengths = enc.mask.sum(1).tolist()
        assert lengths == [4 + 12, 8 + 6 + 2, 6, 0]
        assert not torch.isnan(enc.hidden).any()
        for b in range(3):
            alone = m.encode(_alone(batch, b))
            n = lengths[b]
            assert alone.hidden.shape[1] == n
            assert torch.allclose(enc.hidden[b, :n], alone.hidden[0], atol=1e-5), b
        # the decoder reads the empty sample without NaN, and its rows do not depend on the others
        prev = torch.randint(5, V, (4, 3))
        h = m.decode(prev, enc)
        assert not torch.isnan(h).any()
        h_alone = m.decode(prev[3:], m.encode(EncoderBatch(None, {}, [[]])))
        assert torch.allclose(h[3:], h_alone, atol=1e-5)


def test_segment_order_matters_and_adaptor_added_late_is_deterministic():
    m1, m2 = nano(), nano()
    torch.manual_seed(5)
    m1.add_adaptor("IMAGE.patch", Patches2D(128))
    torch.manual_seed(5)
    torch.randn(10)  # a different RNG state must not change the model's own parameters
    m2.add_adaptor("IMAGE.patch", Patches2D(128))
    own1 = {k: v for k, v in m1.state_dict().items() if not k.startswith("adaptors.")}
    own2 = {k: v for k, v in m2.state_dict().items() if not k.startswith("adaptors.")}
    assert all(torch.equal(own1[k], own2[k]) for k in own1)
    # the cross-segment bias depends on the segments' order, so swapping two segments changes their states
    torch.nn.init.normal_(m1.rel_bias["cross_segment"], std=1.0)
    b = _mixed_batch()
    swapped = EncoderBatch(b.tokens, b.features, [list(reversed(s)) for s in b.layout])
    with torch.no_grad():
        a, c = m1.encode(b), m1.encode(swapped)
    assert not torch.allclose(a.hidden[0, :4], c.hidden[0, 12:16], atol=1e-3)
    assert torch.allclose(a.hidden[2, :6], c.hidden[2, :6], atol=1e-5)  # one segment: nothing to reorder


def test_empty_encoder_batch_has_no_nan():
    m = nano()
    enc = m.encode(EncoderBatch(None, {}, [[], []]))
    assert enc.hidden.shape[:2] == (2, 1) and not enc.mask.any()
    assert not torch.isnan(m.decode(torch.ones(2, 2, dtype=torch.long), enc)).any()


def test_moe_modalities_route_positions_to_experts():
    m = nano(moe_modalities=["IMAGE"])
    m.train()
    m.add_adaptor("IMAGE.patch", Patches2D(128))
    prev = torch.randint(5, V, (4, 3))
    m(_mixed_batch(), prev).sum().backward()
    assert m.encoder_layers[0].experts[0].fc1.weight.grad.abs().sum() > 0
    m.zero_grad(set_to_none=True)
    m(EncoderBatch.from_tokens(torch.randint(5, V, (2, 4))), prev[:2]).sum().backward()
    assert m.encoder_layers[0].experts[0].fc1.weight.grad is None


# ------------------------------------------------------------------------------------------ criterion


def test_label_smoothed_cross_entropy():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 11, requires_grad=True)
    target = torch.randint(5, 11, (2, 5))
    target[1, 3:] = 0  # padding
    mask = torch.ones(2, 5, dtype=torch.bool)
    mask[0, 0] = False  # a no_loss position
    loss, n, nll = label_smoothed_cross_entropy(logits, target, mask, epsilon=0.0)
    sel = mask & target.ne(0)
    ref = F.cross_entropy(logits[sel], target[sel], reduction="sum")
    assert int(n) == 7 and torch.allclose(loss, ref) and torch.allclose(nll, ref)
    # uniform smoothing: (1 - eps) on the target, eps / (V - 1) on every other id
    eps = 0.1
    loss, _, _ = label_smoothed_cross_entropy(logits, target, mask, epsilon=eps)
    lp = F.log_softmax(logits[sel], -1)
    q = torch.full_like(lp, eps / 10).scatter(1, target[sel][:, None], 1 - eps)
    assert torch.allclose(loss, -(q * lp).sum(), atol=1e-5)
    # closed set: the smoothing mass goes to the allowed ids only
    allowed = torch.zeros(11, dtype=torch.bool)
    allowed[[5, 6, 7, 8, 9, 10]] = True
    loss2, _, _ = label_smoothed_cross_entropy(logits, target, mask, epsilon=eps, smoothing_mask=allowed[None, None])
    q2 = (allowed.float() * eps / 5).expand_as(lp).scatter(1, target[sel][:, None], 1 - eps)
    assert torch.allclose(loss2, -(q2 * lp).sum(), atol=1e-5)
    g, = torch.autograd.grad(loss2, logits)
    g_ref, = torch.autograd.grad(-(q2 * F.log_softmax(logits[sel], -1)).sum(), logits)
    assert torch.allclose(g, g_ref, atol=1e-6)
    assert g[~sel].abs().sum() == 0  # masked positions contribute nothing


def test_token_criterion_on_model():
    m = nano()
    m.train()
    src = torch.randint(5, V, (2, 5))
    target = torch.tensor([[7, 8, 2, 0], [9, 10, 11, 2]])
    prev = torch.tensor([[1, 7, 8, 2], [1, 9, 10, 11]])
    loss_mask = torch.tensor([[False, True, True, True], [True, True, True, True]])  # 7 is a forced prefix
    batch = {"encoder": EncoderBatch.from_tokens(src), "prev_tokens": prev, "target": target,
             "loss_mask": loss_mask, "smoothing_ids": [None, [9, 10, 11, 2]]}
    loss, log = TokenCriterion(0.1)(m, batch)
    assert log["ntokens"] == 6 and log["sample_size"] == 6 and log["nsentences"] == 2
    assert loss.requires_grad and abs(float(loss.detach()) - log["loss"]) < 1e-5
    logits = m(batch["encoder"], prev)
    sm = torch.ones(2, 1, V, dtype=torch.bool)
    sm[1] = False
    sm[1, 0, [9, 10, 11, 2]] = True
    ref, n, _ = label_smoothed_cross_entropy(logits, target, loss_mask, 0.1, smoothing_mask=sm)
    assert int(n) == 6 and torch.allclose(loss, ref, atol=1e-4)
