"""The universal model's fast paths compute what the general paths compute, and its speed options work.

Fast paths: text-only encoder batches (one token row per sample), cached incremental decoding in inference,
attention with a learned bias while training. Every test gives the relative-bias tables, head scales and
LayerNorms random values first (they start at zeros/ones, which would hide a wrong index or a missing factor).
"""

from __future__ import annotations

import pytest
import torch

from ofasys.model import EncoderBatch, GeneralistModel, ModelConfig, TokenCriterion
from ofasys.model import speed
from ofasys.model.transformer import _attend

torch.set_num_threads(1)
V = 64


def randomised(**kw) -> GeneralistModel:
    torch.manual_seed(0)
    m = GeneralistModel(ModelConfig.from_size("nano", vocab_size=V, dropout=0.0, **kw))
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.startswith("rel_bias."):
                p.normal_(0.0, 0.5)
            elif p.dim() == 1:
                p.normal_(1.0 if name.endswith(("weight", "head_scale")) else 0.0, 0.2)
    return m.eval()


def general_encode(m: GeneralistModel, batch: EncoderBatch):
    """The general segment-assembly path (the fast path switched off)."""
    fast = m._one_token_row_each
    m._one_token_row_each = lambda *a: None
    try:
        return m.encode(batch)
    finally:
        m._one_token_row_each = fast


def padded_tokens(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(5, V, (4, 11), generator=g)
    src[1, 7:] = 0
    src[2, 3:] = 0
    return src


def test_text_fast_encoder_path_equals_general_path_at_real_positions():
    m = randomised()
    src = padded_tokens()
    for batch in (EncoderBatch.from_tokens(src),
                  EncoderBatch(src, {}, [[("tokens", r)] for r in (2, 0, 3, 1)])):  # rows in another order
        assert m._one_token_row_each(batch, [("tokens", m.embed_tokens(src), src.ne(0), None, "tokens")]) is not None
        with torch.no_grad():
            fast, slow = m.encode(batch), general_encode(m, batch)
        assert torch.equal(fast.mask, slow.mask)
        assert torch.allclose(fast.hidden[fast.mask], slow.hidden[slow.mask], atol=1e-5)


def test_text_fast_encoder_path_gives_the_same_gradients():
    src = padded_tokens(1)
    batch = EncoderBatch.from_tokens(src)
    prev = torch.randint(5, V, (4, 5))
    grads = []
    for path in ("fast", "general"):
        m = randomised().train()
        enc = m.encode(batch) if path == "fast" else general_encode(m, batch)
        m.logits(m.decode(prev, enc)).square().mean().backward()
        grads.append({n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None})
    # the general path also runs the padded positions (through the cross-segment bias): their gradient is zero
    assert set(grads[1]) - set(grads[0]) <= {"rel_bias.cross_segment"}
    assert not grads[1].get("rel_bias.cross_segment", torch.zeros(1)).any()
    for name in grads[0]:
        assert torch.allclose(grads[0][name], grads[1][name], atol=1e-5, rtol=1e-4), name


def test_fast_path_is_not_taken_for_rows_with_a_pad_inside_or_empty_rows():
    m = randomised()
    src = padded_tokens()
    src[0, 4] = 0  # a pad inside a row
    emb = m.embed_tokens(src)
    batch = EncoderBatch.from_tokens(src)
    assert m._one_token_row_each(batch, [("tokens", emb, src.ne(0), None, "tokens")]) is None
    src2 = padded_tokens()
    src2[3] = 0  # an empty row
    assert m._one_token_row_each(EncoderBatch.from_tokens(src2),
                                 [("tokens", m.embed_tokens(src2), src2.ne(0), None, "tokens")]) is None
    with torch.no_grad():
        assert not torch.isnan(m.encode(EncoderBatch.from_tokens(src2)).hidden).any()


@pytest.mark.parametrize("rows", [1, 3])
def test_cached_inference_equals_full_decode_with_random_weights(rows):
    m = randomised()
    src = padded_tokens()
    prev = torch.randint(5, V, (4 * rows, 9))
    with torch.no_grad():
        enc = m.encode(EncoderBatch.from_tokens(src))
        full = m.decode(prev, enc)
    with torch.inference_mode():
        cache = m.new_cache(3)  # the buffers and the derived bias table must grow
        steps = [m.decode(prev[:, :2], enc, cache)]
        steps += [m.decode(prev[:, t:t + 1], enc, cache) for t in range(2, 9)]
    assert cache.derived is not None  # the inference path ran
    assert torch.allclose(torch.cat(steps, 1), full, atol=1e-5)


def test_cached_inference_reorder_and_dropping_rows():
    m = randomised()
    src = padded_tokens()
    rows = torch.randint(5, V, (8, 7))  # 2 beams per source sample
    with torch.no_grad():
        enc = m.encode(EncoderBatch.from_tokens(src))
        full = m.decode(rows, enc)
    with torch.inference_mode():
        cache = m.new_cache(8)
        for t in range(4):
            m.decode(rows[:, t:t + 1], enc, cache)
        swap = torch.arange(8).view(4, 2).flip(1).reshape(-1)
        m.reorder_cache(cache, swap)
        out = [m.decode(rows[swap][:, t:t + 1], enc, cache) for t in range(4, 6)]
        # samples 1 and 3 finish: their rows and encoder states leave the batch
        keep = torch.tensor([0, 2])
        sel = (keep.unsqueeze(1) * 2 + torch.arange(2)).view(-1)
        m.reorder_cache(cache, sel, src_index=keep)
        last = m.decode(rows[swap][sel][:, 6:7], enc.index_select(keep), cache)
    assert torch.allclose(torch.cat(out, 1), full[swap][:, 4:6], atol=1e-5)
    assert torch.allclose(last, full[swap][sel][:, 6:7], atol=1e-5)


def test_attention_with_a_learned_bias_matches_sdpa_values_and_gradients():
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 5, 8, requires_grad=True) for _ in range(3))
    bias = torch.randn(2, 3, 5, 5)
    bias[:, :, :, -1] = float("-inf")
    bias.requires_grad_()
    out = _attend(q, k, v, bias, 0.0)
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    assert torch.allclose(out, ref, atol=1e-5)
    g1 = torch.autograd.grad(out.square().sum(), (q, k, v, bias))
    g2 = torch.autograd.grad(ref.square().sum(), (q, k, v, bias))
    for a, b in zip(g1, g2):
        assert torch.allclose(a.nan_to_num(), b.nan_to_num(), atol=1e-5)


# ------------------------------------------------------------------------------------------ speed options


def _train_loss(m, dtype_ctx):
    src = padded_tokens()
    prev = torch.randint(5, V, (4, 6), generator=torch.Generator().manual_seed(3))
    batch = {"encoder": EncoderBatch.from_tokens(src), "prev_tokens": prev, "target": prev.roll(-1, 1)}
    with dtype_ctx:
        loss, log = TokenCriterion(0.1)(m, batch)
    loss.backward()
    return float(loss.detach()) / log["sample_size"]


def test_bf16_autocast_trains_and_generates_on_cpu():
    m = randomised().train()
    ref = _train_loss(m, torch.autocast("cpu", enabled=False))
    m.zero_grad()
    low = _train_loss(m, speed.autocast("cpu", bf16=True))
    assert abs(low - ref) < 0.05 * abs(ref)
    assert all(torch.isfinite(p.grad).all() for p in m.parameters() if p.grad is not None)
    from ofasys.generation import SequenceGenerator

    m.eval()
    enc = EncoderBatch.from_tokens(padded_tokens())
    with speed.autocast("cpu", bf16=True):
        hyps = SequenceGenerator(beam_size=2, max_len=5, min_len=5).generate(m, enc)
    assert all(len(h[0].tokens) == 5 for h in hyps)


def test_checkpoint_activations_config_option_gives_same_gradients():
    src = padded_tokens()
    prev = torch.randint(5, V, (4, 5))
    grads = []
    for ck in (False, True):
        m = randomised(checkpoint_activations=ck).train()
        assert m.checkpointing is ck
        m(EncoderBatch.from_tokens(src), prev).square().mean().backward()
        grads.append(torch.cat([p.grad.flatten() for p in m.parameters() if p.grad is not None]))
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


def test_adamw_helper_uses_the_fused_kernel_where_available_and_matches_foreach():
    params, losses = [], []
    for fused in (False, None):
        m = randomised().train()
        opt = speed.adamw(m.parameters(), lr=1e-3, weight_decay=0.01, fused=fused)
        if fused is None:
            assert opt.defaults["fused"] == speed.fused_adamw_available(torch.device("cpu"))
        for _ in range(3):
            opt.zero_grad()
            loss = _train_loss(m, torch.autocast("cpu", enabled=False))
            opt.step()
        params.append(torch.cat([p.detach().flatten() for p in m.parameters()]))
        losses.append(loss)
    # Adam normalises each update to about lr: parameters whose gradients are at rounding level may move
    # differently, but by less than one update, and the loss curves agree
    assert (params[0] - params[1]).abs().max() < 1e-3
    assert abs(losses[0] - losses[1]) < 1e-4 * abs(losses[0])


def test_compile_option_is_off_by_default_on_cpu_and_validated():
    m = randomised()
    assert speed.maybe_compile(m, None, torch.device("cpu")) is m  # default: not compiled on CPU
    with pytest.raises(ValueError, match="mode"):
        speed.maybe_compile(m, True, torch.device("cpu"), mode="fastest")


def _greedy(m: GeneralistModel, batch: EncoderBatch) -> list:
    from ofasys.generation import SequenceGenerator

    gen = SequenceGenerator(beam_size=1, max_len=10, min_len=10)
    return [(h[0].tokens, h[0].score) for h in gen.generate(m, batch)]


def _same(a: list, b: list) -> bool:
    return all(ta == tb and abs(sa - sb) < 1e-4 for (ta, sa), (tb, sb) in zip(a, b, strict=True))


@pytest.mark.skipif(not speed.ONEDNN, reason="this PyTorch build has no oneDNN")
def test_onednn_inference_matches_default_kernels_and_follows_weight_changes(monkeypatch):
    import copy
    import pickle

    m = randomised()
    batch = EncoderBatch.from_tokens(padded_tokens())
    fast = _greedy(m, batch)
    packed = [getattr(w, f) for w in m._inference.step for f in ("qkv_w", "fc1_w", "fc2_w")]
    assert packed and all(t.is_mkldnn for t in packed)  # the decoder step ran on packed weights
    assert m._inference.embed is not None and m._inference.embed.is_mkldnn
    reused = m._inference.step
    assert _same(_greedy(m, batch), fast) and m._inference.step is reused  # unchanged weights: no repacking
    monkeypatch.setattr(speed, "ONEDNN", False)
    assert _same(_greedy(m, batch), fast)  # MKL through F.linear: the same tokens and scores
    monkeypatch.setattr(speed, "ONEDNN", True)

    # weights changed in place (what an optimizer step does): the next run packs the new weights
    with torch.no_grad():
        for p in [*m.decoder_layers.parameters(), m.embed_tokens.weight]:
            p.mul_(1.7)
    changed = _greedy(m, batch)
    assert m._inference.step is not reused
    monkeypatch.setattr(speed, "ONEDNN", False)
    assert _same(_greedy(m, batch), changed) and not _same(changed, fast)
    monkeypatch.setattr(speed, "ONEDNN", True)
    # weights changed behind autograd's back (.data) are picked up after a train/eval round trip
    with torch.no_grad():
        m.embed_tokens.weight.data.copy_(m.embed_tokens.weight.data * 0.5)
    m.train()
    m.eval()
    assert _same(_greedy(m, batch), _greedy(copy.deepcopy(m), batch))
    # the packed tensors are never copied, pickled or saved
    clone = pickle.loads(pickle.dumps(m))
    assert clone._inference.step is None and copy.deepcopy(m)._inference.embed is None
    assert not any(t.is_mkldnn for t in m.state_dict().values())
    with torch.no_grad():
        x = torch.randn(5, 128)
        assert torch.allclose(m.logits(x), torch.nn.functional.linear(x, m.embed_tokens.weight), atol=1e-5)
