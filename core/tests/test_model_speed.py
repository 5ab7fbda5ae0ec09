"""The universal model's fast paths compute what the general paths compute, and its speed options work.

Fast paths: text-only encoder batches (one token row per sample), cached incremental decoding in inference,
attention with a learned bias while training. Every test gives the relative-bias tables, head scales and
LayerNorms random values first (they start at zeros/ones, which would hide a wrong index or a missing factor).
"""

from __future__ import annotations

import os
import platform

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


@pytest.mark.slow  # compiles every layer with inductor: ~40 s on the 2-core CPU, needs a C++ compiler
def test_compiled_layers_give_the_loss_and_gradients_of_eager_layers():
    """``maybe_compile`` is the default on CUDA: the compiled layers (the custom autograd functions included)
    compute what the eager ones do."""
    import shutil

    if shutil.which("g++") is None and shutil.which("c++") is None:
        pytest.skip("torch.compile on CPU needs a C++ compiler")
    src = padded_tokens()
    prev = torch.randint(5, V, (4, 9), generator=torch.Generator().manual_seed(1))
    batch = {"encoder": EncoderBatch.from_tokens(src), "prev_tokens": prev, "target": prev.roll(-1, 1)}
    results = []
    for compiled in (False, True):
        m = randomised(normformer=True).train()
        speed.maybe_compile(m, compiled, "cpu")
        loss, _ = TokenCriterion(0.1)(m, batch)
        loss.backward()
        results.append((loss.detach(), {n: p.grad for n, p in m.named_parameters() if p.grad is not None}))
    (l0, g0), (l1, g1) = results
    assert torch.allclose(l0, l1, rtol=1e-5) and g0.keys() == g1.keys()
    for name, g in g0.items():
        assert torch.allclose(g1[name], g, atol=1e-5 * max(1.0, float(g.abs().max()))), name


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
    monkeypatch.setattr(speed, "INFER_WEIGHTS", "onednn")
    fast = _greedy(m, batch)
    # the many-row products on plain weights (encoder, cross-attention keys/values) through either library
    calls = []
    real = speed._dnn
    monkeypatch.setattr(speed, "_dnn", lambda x, w, b: calls.append(w.is_mkldnn) or real(x, w, b))
    for unpacked in (True, False):
        monkeypatch.setattr(speed, "ONEDNN_UNPACKED", unpacked)
        calls.clear()
        assert _same(_greedy(copy.deepcopy(m), batch), fast)
        assert (False in calls) is unpacked and True in calls  # plain weights only when asked; packed always
    monkeypatch.setattr(speed, "_dnn", real)
    packed = [getattr(w, f) for w in m._inference.step for f in ("qkv_w", "fc1_w", "fc2_w")]
    assert packed and all(t.is_mkldnn for t in packed)  # the decoder step ran on packed weights
    assert m._inference.embed is not None and m._inference.embed.is_mkldnn
    # the other layout (MKL on a transposed copy) and the size rule give the same tokens and scores
    for mode in ("mkl", "auto"):
        monkeypatch.setattr(speed, "INFER_WEIGHTS", mode)
        other = copy.deepcopy(m)
        assert _same(_greedy(other, batch), fast)
        # nano's layer weights are all below the size from which "auto" takes oneDNN's layout
        assert not any(getattr(w, f).is_mkldnn for w in other._inference.step for f in ("qkv_w", "fc1_w", "fc2_w"))
    monkeypatch.setattr(speed, "INFER_WEIGHTS", "onednn")
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


# --------------------------------------------------------------------------------------------- sequence packing
def _unpacked_text_batch(enc_lens, dec_lens, seed=0):
    """A collated text batch (the engine's Batch) of random samples with these encoder / target lengths; some
    targets have no-loss positions and some samples closed smoothing sets."""
    from ofasys.engine.batch import Batch

    g = torch.Generator().manual_seed(seed)
    B = len(enc_lens)
    src = torch.zeros(B, max(enc_lens), dtype=torch.long)
    tgt = torch.zeros(B, max(dec_lens), dtype=torch.long)
    loss_mask = torch.zeros_like(tgt, dtype=torch.bool)
    for i, (e, d) in enumerate(zip(enc_lens, dec_lens)):
        src[i, :e] = torch.randint(5, V, (e,), generator=g)
        tgt[i, :d] = torch.randint(5, V, (d,), generator=g)
        loss_mask[i, :d] = True
        if i % 3 == 1 and d > 2:
            loss_mask[i, 0] = False  # a forced piece
    prev = torch.zeros_like(tgt)
    prev[:, 0] = 1
    prev[:, 1:] = tgt[:, :-1]
    smoothing = [sorted({5, 6, 7, 8, 2} | set(tgt[i, :dec_lens[i]].tolist())) if i % 4 == 2 else None
                 for i in range(B)]
    return Batch("t", EncoderBatch.from_tokens(src), prev, tgt, loss_mask, smoothing, n_samples=B,
                 n_tokens=int(loss_mask.sum()))


def _loss_and_grads(m, batch):
    m.zero_grad(set_to_none=True)
    loss, logging = TokenCriterion(epsilon=0.1)(m, batch)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}
    return loss.detach(), logging, grads


ENC_LENS = [3, 17, 5, 9, 2, 12, 7, 20, 11, 4, 1, 8]
DEC_LENS = [4, 2, 9, 3, 2, 1, 3, 5, 2, 2, 3, 1]


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("max_tokens", [None, 24])
def test_packed_batch_gives_the_loss_and_gradients_of_the_unpacked_batch(train, max_tokens):
    """Several samples of different lengths per row (attention kept within a sample, positions and relative bias
    restarting at each sample), a row holding one sample, rows filled exactly to the budget: the loss, the
    logging and every gradient equal the unpacked batch's (random bias tables, LayerNorms, head scales)."""
    from ofasys.engine.packing import PackedBatch, pack_batch

    m = randomised()
    m.train(train)
    unpacked = _unpacked_text_batch(ENC_LENS, DEC_LENS)
    packed = pack_batch(unpacked, max_tokens=max_tokens, max_positions=m.config.max_positions)
    assert isinstance(packed, PackedBatch)
    seq = packed.encoder.seq_ids
    rows = [sorted(set(r[r >= 0].tolist())) for r in seq]
    assert sorted(i for r in rows for i in r) == list(range(len(ENC_LENS)))  # every sample once, none split
    assert any(len(r) == 1 for r in rows) and any(len(r) >= 3 for r in rows)
    assert any(bool((r >= 0).all()) for r in seq)  # a row filled to the last position
    assert packed.encoder.tokens.size(0) < len(ENC_LENS)

    l0, log0, g0 = _loss_and_grads(m, unpacked)
    l1, log1, g1 = _loss_and_grads(m, packed)
    assert torch.allclose(l0, l1, rtol=1e-5, atol=1e-5), (l0, l1)
    for k in ("ntokens", "sample_size", "nsentences"):
        assert log0[k] == log1[k], k
    assert log1["nsentences"] == len(ENC_LENS)
    assert set(g0) == set(g1)
    for n in g0:
        scale = float(g0[n].abs().max()) + 1e-12
        assert torch.allclose(g0[n], g1[n], rtol=1e-4, atol=1e-5 * scale), (n, float((g0[n] - g1[n]).abs().max()))
    assert any(n.startswith("rel_bias.") for n in g1)


def test_packed_hidden_states_equal_each_sample_alone():
    """Encoder and decoder states of every packed sample equal those of the sample encoded and decoded alone,
    and the packed encoder output carries the sample ids (checkpointed layers give the same states)."""
    from ofasys.engine.packing import pack_batch

    m = randomised()
    b = _unpacked_text_batch(ENC_LENS[:6], DEC_LENS[:6], seed=3)
    p = pack_batch(b)
    with torch.no_grad():
        enc = m.encode(p.encoder)
        hid = m.decode(p.prev_tokens, enc, seq_ids=p.target_seq_ids)
        m.set_checkpointing(True)
        m.train()
        m.config.dropout = 0.0
        enc_ck = m.encode(p.encoder)
        m.set_checkpointing(False)
        m.eval()
    assert torch.allclose(enc.hidden, enc_ck.hidden, atol=1e-6)
    assert torch.equal(enc.seq_ids, p.encoder.seq_ids) and torch.equal(enc.mask, p.encoder.seq_ids.ge(0))
    for i, (e, d) in enumerate(zip(ENC_LENS[:6], DEC_LENS[:6])):
        with torch.no_grad():
            alone = m.encode(EncoderBatch.from_tokens(b.encoder.tokens[i:i + 1, :e]))
            h_alone = m.decode(b.prev_tokens[i:i + 1, :d], alone)
        r = int((p.encoder.seq_ids == i).any(1).nonzero()[0])
        assert torch.allclose(enc.hidden[r][p.encoder.seq_ids[r] == i], alone.hidden[0], atol=1e-5)
        assert torch.allclose(hid[r][p.target_seq_ids[r] == i], h_alone[0], atol=1e-5)


def test_packing_cuts_padding_on_a_realistic_length_spread():
    """Log-normal lengths (a few long samples, many short ones, as instructions and answers are): packing to
    the longest sample of the batch (per side) cuts the padded share of the encoder positions from 66% to 17% and
    of the decoder positions from 72% to 30% (measured: 10 batches of 32)."""
    import random

    from ofasys.engine.packing import pack_batch, padding_fraction

    rnd = random.Random(0)
    plain_src = plain_tgt = pk_src = pk_tgt = 0.0
    for k in range(10):
        enc = [max(2, min(120, int(rnd.lognormvariate(3.0, 0.7)))) for _ in range(32)]
        dec = [max(1, min(60, int(rnd.lognormvariate(2.0, 0.8)))) for _ in range(32)]
        b = _unpacked_text_batch(enc, dec, seed=k)
        p = pack_batch(b)
        s0, t0 = padding_fraction(b)
        s1, t1 = padding_fraction(p)
        plain_src, plain_tgt, pk_src, pk_tgt = plain_src + s0, plain_tgt + t0, pk_src + s1, pk_tgt + t1
        assert p.n_tokens == b.n_tokens and p.n_samples == b.n_samples == 32
    plain_src, plain_tgt, pk_src, pk_tgt = (x / 10 for x in (plain_src, plain_tgt, pk_src, pk_tgt))
    assert plain_src > 0.6 and plain_tgt > 0.6, (plain_src, plain_tgt)
    assert pk_src < 0.2 and pk_tgt < 0.35, (pk_src, pk_tgt)


def test_packing_leaves_unpackable_batches_alone_and_generation_refuses_packed_rows():
    from ofasys.engine.batch import Batch
    from ofasys.engine.packing import pack_batch

    b = _unpacked_text_batch([3, 4], [2, 2])
    two_rows = Batch("t", EncoderBatch(b.encoder.tokens, {}, [[("tokens", 0), ("tokens", 1)], []]), b.prev_tokens,
                     b.target, b.loss_mask, b.smoothing_ids, n_samples=2)
    assert pack_batch(two_rows) is two_rows
    feat = Batch("t", EncoderBatch(b.encoder.tokens, {"IMAGE.x": torch.zeros(2, 3)}, b.encoder.layout),
                 b.prev_tokens, b.target, b.loss_mask, n_samples=2)
    assert pack_batch(feat) is feat
    m = randomised()
    p = pack_batch(_unpacked_text_batch([3, 4, 9], [2, 2, 5]))
    enc = m.encode(p.encoder)
    with pytest.raises(ValueError, match="generation runs unpacked"):
        m.decode(p.prev_tokens[:, :1], enc, m.new_cache(), seq_ids=p.target_seq_ids[:, :1])


def test_onednn_for_many_row_products_defaults_on_for_avx512_amd_processors_only(monkeypatch):
    """oneDNN's products of many rows (the training path, and plain weights at inference) measured faster on an
    AMD processor with AVX-512 and slower on an AVX2-only AMD EPYC and on an Intel Xeon; the environment variables
    override the choice everywhere."""
    monkeypatch.delenv("OFASYS_ONEDNN_TRAIN_MIN_DIM", raising=False)
    monkeypatch.delenv("OFASYS_ONEDNN_UNPACKED", raising=False)
    vendor, flags = speed._cpu_info()
    if os.path.exists("/proc/cpuinfo") and platform.machine() in ("x86_64", "AMD64"):
        assert vendor and "sse2" in flags, (vendor, sorted(flags)[:5])
    off = 1 << 62
    for vendor, flags, want in [("AuthenticAMD", {"avx2", "avx512f"}, 256), ("AuthenticAMD", {"avx2"}, off),
                                ("GenuineIntel", {"avx2", "avx512f"}, off), ("", set(), off)]:
        monkeypatch.setattr(speed, "_cpu_info", lambda v=vendor, f=flags: (v, frozenset(f)))
        assert speed._default_train_min_dim() == want, (vendor, flags)
        assert speed._default_unpacked_inference() is (want == 256), (vendor, flags)
    monkeypatch.setenv("OFASYS_ONEDNN_TRAIN_MIN_DIM", "512")
    assert speed._default_train_min_dim() == 512
    monkeypatch.setenv("OFASYS_ONEDNN_UNPACKED", "1")
    assert speed._default_unpacked_inference() is True
    monkeypatch.setenv("OFASYS_ONEDNN_UNPACKED", "off")
    monkeypatch.setattr(speed, "_cpu_info", lambda: ("AuthenticAMD", frozenset({"avx512f"})))
    assert speed._default_unpacked_inference() is False


@pytest.mark.skipif(not speed.ONEDNN, reason="this PyTorch build has no oneDNN")
def test_onednn_training_linears_give_the_loss_and_gradients_of_f_linear(monkeypatch):
    """Layers at or above ``ONEDNN_TRAIN_MIN_DIM`` train through oneDNN; forced here on ``nano`` (threshold 0)
    against ``F.linear`` (oneDNN off), and ``nano`` at the default threshold never takes that path."""
    m = randomised().train()
    src = padded_tokens()
    prev = torch.randint(5, V, (4, 9))
    target = torch.randint(5, V, (4, 9))
    batch = {"encoder": EncoderBatch.from_tokens(src), "prev_tokens": prev, "target": target}
    crit = TokenCriterion(0.1)
    calls = []
    real = speed._OneDNNLinear.apply
    monkeypatch.setattr(speed._OneDNNLinear, "apply", lambda *a: calls.append(1) or real(*a))

    def loss_and_grads():
        m.zero_grad(set_to_none=True)
        loss, _ = crit(m, batch)
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}

    loss_default, _ = loss_and_grads()
    assert not calls  # nano: every layer has a 128-wide side, below the default threshold
    monkeypatch.setattr(speed, "ONEDNN_TRAIN_MIN_DIM", 0)
    loss_dnn, g_dnn = loss_and_grads()
    assert len(calls) > 10  # every projection, the FFNs and the logits went through oneDNN
    monkeypatch.setattr(speed, "ONEDNN", False)
    loss_ref, g_ref = loss_and_grads()
    assert torch.allclose(loss_dnn, loss_ref, rtol=1e-5) and torch.allclose(loss_default, loss_ref, rtol=1e-5)
    assert g_dnn.keys() == g_ref.keys()
    for name, g in g_ref.items():
        assert torch.allclose(g_dnn[name], g, atol=1e-5 * max(1.0, float(g.abs().max()))), name


def test_linear_layers_stay_modules_whose_forward_hooks_run_in_every_mode(monkeypatch):
    """Plugins capture activations with forward hooks on the model's linear layers (the audio plugin's guided
    attention hooks ``cross_attn.q``): the oneDNN kernels must not bypass them, in training or inference, at
    sizes that take the oneDNN training path or not."""
    m = randomised()
    prev = torch.randint(5, V, (4, 5))
    for min_dim in (256, 0):
        monkeypatch.setattr(speed, "ONEDNN_TRAIN_MIN_DIM", min_dim)
        for training, grad in ((True, True), (False, False)):
            seen = []
            hooks = [layer.cross_attn.q.register_forward_hook(lambda _m, _i, out: seen.append(out.shape))
                     for layer in m.decoder_layers]
            hooks.append(m.encoder_layers[0].ffn.fc1.register_forward_hook(lambda _m, _i, out: seen.append(0)))
            m.train(training)
            try:
                with torch.set_grad_enabled(grad):
                    m.decode(prev, m.encode(EncoderBatch.from_tokens(padded_tokens())))
            finally:
                for h in hooks:
                    h.remove()
            assert seen == [0] + [torch.Size([4, 5, 128])] * len(m.decoder_layers), (min_dim, training)


@pytest.mark.parametrize("path", ["fast", "general", "checkpointed"])
def test_encoder_on_real_positions_only_gives_the_values_and_gradients_of_the_padded_run(monkeypatch, path):
    """Skipping padded positions (speed.unpad_worthwhile) changes nothing a user sees: the encoder states at real
    positions, the decoder output and every gradient equal the padded computation's (float rounding aside), also
    for a sample with no encoder positions at all (it still attends to its dummy position)."""
    src = padded_tokens(2)
    src[3] = 0  # an empty sample: the general path
    batch = EncoderBatch.from_tokens(src if path != "fast" else padded_tokens(2))
    prev = torch.randint(5, V, (4, 6), generator=torch.Generator().manual_seed(3))
    monkeypatch.setattr(speed, "UNPAD_MIN_DIM", 0)
    runs = []
    for frac in (2.0, 0.05):  # never, then whenever 5% of the batch is padding
        monkeypatch.setattr(speed, "UNPAD_MIN_FRACTION", frac)
        m = randomised(checkpoint_activations=path == "checkpointed").train()
        enc = m.encode(batch)
        out = m.logits(m.decode(prev, enc))
        out.square().mean().backward()
        grads = {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}
        with torch.no_grad():
            m.eval()
            gen = m.encode(batch)
        runs.append((enc, out.detach(), grads, gen))
    (e0, o0, g0, h0), (e1, o1, g1, h1) = runs
    assert e0.flat is None and e1.flat is not None  # the second run really skipped the padding
    assert torch.equal(e0.mask, e1.mask)
    assert torch.allclose(e0.hidden[e0.mask], e1.hidden[e1.mask], atol=1e-5)
    assert torch.allclose(h0.hidden[h0.mask], h1.hidden[h1.mask], atol=1e-5)
    assert not h1.hidden[~h1.mask & torch.arange(h1.mask.size(1)).gt(0)].any()  # padding is zeros, not garbage
    assert torch.allclose(o0, o1, atol=1e-4, rtol=1e-4)
    assert set(g0) == set(g1)
    for name in g0:
        assert torch.allclose(g0[name], g1[name], atol=1e-5, rtol=1e-4), name


def test_unpadding_is_decided_by_padding_fraction_and_width(monkeypatch):
    monkeypatch.setattr(speed, "UNPAD_MIN_FRACTION", 0.1)
    monkeypatch.setattr(speed, "UNPAD_MIN_DIM", 256)
    mask = torch.ones(4, 10, dtype=torch.bool)
    assert not speed.unpad_worthwhile(mask, 768)  # nothing to skip
    mask[0, 6:] = False  # 10% padding
    assert speed.unpad_worthwhile(mask, 768)
    assert not speed.unpad_worthwhile(mask, 128)  # too narrow to gain
    mask[1:, 9:] = False
    monkeypatch.setattr(speed, "UNPAD_MIN_FRACTION", 0.5)
    assert not speed.unpad_worthwhile(mask, 768)
