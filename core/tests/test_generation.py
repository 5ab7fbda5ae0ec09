"""Constrained decoding state machines (pure Python) and the sequence generator on a real (nano) model."""

from __future__ import annotations

import pickle
import subprocess
import sys

import pytest

from ofasys.generation.constraints import (EMPTY, FREE, Block, Chain, Fixed, Free, Repeat, TokenSet, Trie,
                                           union)

BINS = range(40, 50)
TEXT = frozenset(range(5, 40))

# ------------------------------------------------------------------------------------------ constraints (no torch)


def test_constraints_module_does_not_import_torch():
    code = ("import sys, ofasys.generation.constraints, ofasys.generation; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_fixed_block_trie_free():
    f = Fixed([7, 8])
    assert f.accepts([7, 8]) and not f.accepts([7]) and not f.accepts([8, 7])
    assert f.allowed(f.start()) == {7}
    b = Block(BINS, 4, 4)
    assert b.accepts([40, 41, 42, 49]) and not b.accepts([40, 41, 42]) and not b.accepts([40] * 5)
    assert not b.accepts([40, 41, 42, 7])
    s = b.start()
    for t in (40, 41, 42, 43):
        assert b.allowed(s) == frozenset(BINS)
        s = b.advance(s, t)
    assert b.allowed(s) == EMPTY and b.can_finish(s)
    t = Trie([[10, 11, 12], [10, 13], [20]])
    assert t.allowed(t.start()) == {10, 20}
    assert t.accepts([10, 13]) and t.accepts([20]) and not t.accepts([10]) and not t.accepts([10, 11])
    assert t.advance(t.start(), 11) is None
    free = Free(exclude=BINS)
    assert free.allowed(free.start()) == TokenSet(EMPTY, True, frozenset(BINS))
    assert Free().allowed(0) is None and free.can_finish(0) and free.accepts([]) and not free.accepts([41])
    assert not Free(max_len=2).accepts([5, 6, 7])


def test_chain_epsilon_moves_text_then_box():
    c = Chain([Free(), Block(BINS, 4, 4)])
    s = c.start()
    assert c.allowed(s) is None or FREE.ids <= c.allowed(s).ids  # free text (bins are free text too)
    assert not c.can_finish(s)
    assert c.accepts([5, 6, 40, 41, 42, 43]) and c.accepts([40, 41, 42, 43])
    assert not c.accepts([5, 6, 40, 41])
    c2 = Chain([Fixed([3]), Free(exclude=BINS), Block(BINS, 4, 4)])
    s = c2.advance(c2.start(), 3)
    a = c2.allowed(s)  # text (minus bins) or the box's first bin
    assert isinstance(a, TokenSet) and a.free and set(BINS) <= a.ids
    assert c2.split([3, 5, 6, 40, 41, 42, 43]) == [[3], [5, 6], [40, 41, 42, 43]]
    assert c2.split([3, 40]) is None


def test_repeat_detection_like():
    det = Repeat(Chain([Block(BINS, 4, 4), Trie([[5], [6, 7]])]), min=1, max=3)
    assert det.accepts([40, 41, 42, 43, 5])
    assert det.accepts([40, 41, 42, 43, 6, 7, 44, 45, 46, 47, 5])
    assert not det.accepts([])  # min=1
    assert not det.accepts([40, 41, 42, 43])  # label missing
    assert not det.accepts([40, 41, 42, 43, 5] * 4)  # max=3
    star = Repeat(Chain([Block(BINS, 4, 4), Free(exclude=BINS)]))
    assert star.accepts([]) and star.accepts([40, 41, 42, 43, 9, 9, 44, 45, 46, 47])
    assert not star.accepts([40, 41, 9])


def test_union_and_pickle():
    assert union(frozenset({1}), frozenset({2})) == {1, 2}
    assert union(None, frozenset({2})) == TokenSet(frozenset({2}), True, EMPTY)
    u = union(TokenSet(EMPTY, True, frozenset({1, 2})), TokenSet(EMPTY, True, frozenset({2, 3})))
    assert u.free and u.exclude == {2}
    c = Chain([Fixed([3]), Repeat(Chain([Block(BINS, 4, 4), Trie([[5], [6, 7]])]), min=1)])
    assert c.accepts([3, 40, 41, 42, 43, 5])  # fills the memo
    c2 = pickle.loads(pickle.dumps(c))
    assert c2.accepts([3, 40, 41, 42, 43, 6, 7]) and not c2.accepts([3, 5])


# ------------------------------------------------------------------------------------------ generator (torch)

torch = pytest.importorskip("torch")
from ofasys.generation import Generator, SequenceGenerator, TokenGenerator  # noqa: E402
from ofasys.model import EncoderBatch, GeneralistModel, ModelConfig, TokenCriterion  # noqa: E402

torch.set_num_threads(1)  # robust on shared CPUs: OpenMP barriers stall under contention
V = 64
BOS, EOS, PAD = 1, 2, 0


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = GeneralistModel(ModelConfig.from_size("nano", vocab_size=V, dropout=0.0))
    with torch.no_grad():  # make EOS unlikely so untrained decoding runs long enough to exercise constraints
        m.embed_tokens.weight[EOS].mul_(0.0)
    return m.eval()


@pytest.fixture(scope="module")
def enc_batch():
    g = torch.Generator().manual_seed(1)
    src = torch.randint(5, V, (4, 7), generator=g)
    src[2, 4:] = 0
    return EncoderBatch.from_tokens(src)


def constraints():
    return [Chain([Fixed([7, 8]), Block(BINS, 4, 4)]),
            Trie([[10, 11, 12], [10, 13], [20]]),
            Chain([Fixed([9]), Repeat(Chain([Block(BINS, 4, 4), Trie([[5], [6, 7]])]), min=1, max=2)]),
            None]


@pytest.mark.parametrize("beam", [1, 3])
def test_cached_and_uncached_decoding_give_identical_tokens(model, enc_batch, beam):
    outs = []
    for use_cache in (True, False):
        gen = SequenceGenerator(beam_size=beam, max_len=14, use_cache=use_cache, return_n_best=beam)
        outs.append(gen.generate(model, enc_batch, constraints(), BOS, EOS, PAD))
    assert [[h.tokens for h in hs] for hs in outs[0]] == [[h.tokens for h in hs] for hs in outs[1]]
    for a, b in zip(outs[0], outs[1]):
        assert [round(h.score, 4) for h in a] == [round(h.score, 4) for h in b]


@pytest.mark.parametrize("beam", [1, 3])
def test_batched_decoding_equals_decoding_each_sample_alone(model, enc_batch, beam):
    """Samples finish at different steps (the Trie one first) and leave the batch; the others are unaffected."""
    gen = SequenceGenerator(beam_size=beam, max_len=12, return_n_best=beam)
    cons = constraints()
    batch = gen.generate(model, enc_batch, cons, BOS, EOS, PAD)
    for b in range(4):
        one = EncoderBatch(enc_batch.tokens[b:b + 1], {}, [[("tokens", 0)]])
        alone = gen.generate(model, one, [cons[b]], BOS, EOS, PAD)[0]
        assert [h.tokens for h in alone] == [h.tokens for h in batch[b]]


@pytest.mark.parametrize("beam", [1, 4])
def test_constraints_hold_on_an_untrained_model(model, enc_batch, beam):
    cons = constraints()
    out = SequenceGenerator(beam_size=beam, max_len=20, return_n_best=beam).generate(model, enc_batch, cons,
                                                                                    BOS, EOS, PAD)
    for c, hyps in zip(cons[:3], out):
        assert 1 <= len(hyps) <= beam  # the Trie has 3 members only
        for h in hyps:
            assert c.accepts(h.tokens), (c, h.tokens)
        assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)
    # Block: the forced prefix, then exactly 4 bins
    assert all(h.tokens[:2] == [7, 8] and len(h.tokens) == 6 and all(t in BINS for t in h.tokens[2:])
               for h in out[0])
    assert all(h.tokens in ([10, 11, 12], [10, 13], [20]) for h in out[1])  # Trie: set members only
    for h in out[2]:  # detection-like: [9] then 1..2 x (4 bins + label)
        parts = cons[2].split(h.tokens)
        assert parts[0] == [9] and len(parts[1]) in (5, 6, 7, 10, 11, 12, 13, 14)
    free = out[3][0].tokens  # free text: no specials
    assert free and all(t >= 5 for t in free)


def test_length_limits_and_no_repeat_ngram(model, enc_batch):
    out = SequenceGenerator(max_len=6, min_len=6).generate(model, enc_batch, bos=BOS, eos=EOS, pad=PAD)
    assert all(len(h[0].tokens) == 6 for h in out)
    for beam in (1, 3):
        out = SequenceGenerator(beam_size=beam, max_len=20, min_len=20, no_repeat_ngram_size=2).generate(
            model, enc_batch, bos=BOS, eos=EOS, pad=PAD)
        for hyps in out:
            toks = hyps[0].tokens
            bigrams = list(zip(toks, toks[1:]))
            assert len(bigrams) == len(set(bigrams))


def test_sampling_is_seeded_and_top_k_1_is_greedy(model, enc_batch):
    greedy = SequenceGenerator(max_len=8).generate(model, enc_batch, bos=BOS, eos=EOS, pad=PAD)
    top1 = SequenceGenerator(max_len=8, sampling=True, top_k=1, seed=3).generate(model, enc_batch, bos=BOS,
                                                                                 eos=EOS, pad=PAD)
    assert [h[0].tokens for h in greedy] == [h[0].tokens for h in top1]
    s = SequenceGenerator(max_len=8, sampling=True, temperature=1.5, top_p=0.9, seed=7, return_n_best=3)
    a = s.generate(model, enc_batch, bos=BOS, eos=EOS, pad=PAD)
    b = s.generate(model, enc_batch, bos=BOS, eos=EOS, pad=PAD)
    assert [[h.tokens for h in x] for x in a] == [[h.tokens for h in x] for x in b]
    assert all(len(x) == 3 for x in a)
    cons = constraints()
    c = s.generate(model, enc_batch, cons, bos=BOS, eos=EOS, pad=PAD)
    assert all(cons[1].accepts(h.tokens) for h in c[1])


def test_token_generator_adapter(model, enc_batch):
    gen = SequenceGenerator(beam_size=2, max_len=10).as_generator(BOS, EOS, PAD)
    assert isinstance(gen, Generator)
    cons = constraints()
    preds = gen.generate(model, {"encoder": enc_batch, "constraints": cons})
    assert len(preds) == 4 and preds[1] in ([10, 11, 12], [10, 13], [20])
    enc = model.encode(enc_batch)
    assert gen(model, {"encoder_out": enc, "constraints": cons}) == preds
    assert isinstance(TokenGenerator.from_vocab(type("Vocab", (), {"bos": 1, "eos": 2, "pad": 0})()), TokenGenerator)


def test_model_criterion_and_generator_learn_to_reverse():
    """A nano model learns to reverse 5-token sequences: exact match on held-out sequences with greedy decoding."""
    torch.manual_seed(0)
    L, lo, hi = 5, 5, 15
    m = GeneralistModel(ModelConfig.from_size("nano", vocab_size=16, dropout=0.0))
    crit = TokenCriterion(0.1)
    steps = 100  # accuracy 1.0 for several seeds; it learns by ~step 50
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 30) * max(0.05, 1 - s / steps))
    g = torch.Generator().manual_seed(0)
    held = torch.randint(lo, hi, (100, L), generator=g)
    held_keys = {tuple(r) for r in held.tolist()}
    m.train()
    for _ in range(steps):
        src = torch.randint(lo, hi, (48, L), generator=g)
        keep = torch.tensor([tuple(r) not in held_keys for r in src.tolist()])
        src = src[keep]
        target = torch.cat([src.flip(1), torch.full((len(src), 1), EOS)], 1)
        prev = torch.cat([torch.full((len(src), 1), BOS), target[:, :-1]], 1)
        loss, log = crit(m, {"encoder": EncoderBatch.from_tokens(src), "prev_tokens": prev, "target": target})
        opt.zero_grad()
        (loss / log["sample_size"]).backward()
        opt.step()
        sched.step()
    out = SequenceGenerator(max_len=8).generate(m, EncoderBatch.from_tokens(held), bos=BOS, eos=EOS, pad=PAD)
    acc = sum(h[0].tokens == r[::-1] for h, r in zip(out, held.tolist())) / len(held)
    assert acc > 0.9, acc
    assert m.training  # the generator restores the model's mode
