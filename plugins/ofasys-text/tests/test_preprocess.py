"""TextPreprocessor behaviours."""

from __future__ import annotations

import math
import pickle

import pytest

from ofasys.errors import ConfigError, DataError, PlanError
from ofasys.spec import VocabBlock
from ofasys.vocab import Vocabulary
from ofasys_text.postprocess import TextPostprocessor
from ofasys_text.preprocess import TextPreprocessor, normalize_text
from ofasys_text.tokenizer import TextTokenizer


LONG = ("The quick brown fox jumps over the lazy dog while a man riding a horse watches from the beach, "
        "and two children play with a red kite under the bright summer sky near the old wooden bridge. ") * 3


@pytest.fixture(scope="session")
def pre(make_slot):
    """``pre(vocab, **attrs)`` -> a TextPreprocessor of a TEXT slot with these attributes."""
    return lambda vocab, **kw: TextPreprocessor(make_slot(**kw), vocab)


@pytest.fixture(scope="session")
def decode(make_slot):
    """``decode(vocab, ids)`` -> the postprocessed text."""
    return lambda vocab, ids: TextPostprocessor(make_slot(side="decoder"), vocab)(ids, {})["text"]


def test_ids_are_in_the_text_block_with_offset(vocab, pre, make_ctx):
    tokens = pre(vocab)("a man riding a horse", make_ctx())
    block = vocab.block("text")
    assert block.start == 15
    assert tokens.ids and all(i in block for i in tokens.ids)
    local = [i - block.start for i in tokens.ids]
    assert local == TextTokenizer().encode(" a man riding a horse")  # leading space, no BOS/EOS
    assert tokens.loss and not tokens.forced and tokens.constraint is None and tokens.smoothing_ids is None


def test_whitespace_is_normalised(vocab, pre, make_ctx):
    p = pre(vocab)
    ctx = make_ctx("test")
    assert p("  a \t man\n\nriding  ", ctx).ids == p("a man riding", ctx).ids
    assert p("", ctx).ids == [] and p("   ", ctx).ids == []


def test_uncased(vocab, pre, make_ctx):
    ctx = make_ctx("test")
    assert pre(vocab, uncased=True)("A MAN Riding", ctx).ids == pre(vocab)("a man riding", ctx).ids
    assert pre(vocab)("A MAN Riding", ctx).ids != pre(vocab)("a man riding", ctx).ids


def test_no_punctuation(vocab, pre, decode, make_ctx):
    ctx = make_ctx("test")
    p = pre(vocab, no_punctuation=True)
    assert decode(vocab, p("Hello, world! (state-of-the-art) what's up/down?", ctx).ids) == \
        "Hello world state of the art whats up down"
    assert normalize_text("«Ça va?» — oui…", no_punctuation=True) == "Ça va oui"
    assert normalize_text("$5 + 3 = 8", no_punctuation=True) == "$5 + 3 = 8"  # symbols are not punctuation


def test_max_length_truncates(vocab, pre, make_ctx):
    ctx = make_ctx("test")
    full = pre(vocab, max_length=0)(LONG, ctx).ids
    assert len(full) > 100
    assert pre(vocab, max_length=10)(LONG, ctx).ids == full[:10]
    assert len(pre(vocab)(LONG * 3, ctx).ids) == 128  # the default


def test_span_masking_training_only_and_deterministic(vocab, pre, make_ctx):
    p = pre(vocab, max_length=0, mask_ratio=0.3)
    clean = p(LONG, make_ctx("valid")).ids
    assert vocab.mask not in clean and clean == pre(vocab, max_length=0)(LONG, make_ctx("test")).ids
    noisy = p(LONG, make_ctx("train", seed=7)).ids
    kept = [t for t in noisy if t != vocab.mask]
    assert len(clean) - len(kept) == math.ceil(len(clean) * 0.3 - 1e-9)
    assert vocab.mask in noisy
    assert noisy == p(LONG, make_ctx("train", seed=7)).ids
    others = {tuple(p(LONG, make_ctx("train", seed=s)).ids) for s in range(5)}
    assert len(others) == 5


def test_masking_happens_after_truncation(vocab, pre, make_ctx):
    noisy = pre(vocab, max_length=20, mask_ratio=0.5)(LONG, make_ctx("train")).ids
    assert len([t for t in noisy if t != vocab.mask]) == 10


def test_noise_ratio(vocab, pre, make_ctx):
    p = pre(vocab, max_length=0, noise_ratio=0.2)
    clean = p(LONG, make_ctx("test")).ids
    noisy = p(LONG, make_ctx("train", seed=3)).ids
    changed = sum(a != b for a, b in zip(clean, noisy))
    assert len(noisy) == len(clean) and changed == math.ceil(len(clean) * 0.2 - 1e-9)
    assert all(i in vocab.block("text") for i in noisy)
    assert noisy == p(LONG, make_ctx("train", seed=3)).ids


def test_mask_and_noise_together_keep_masks(vocab, pre, make_ctx):
    p = pre(vocab, max_length=0, mask_ratio=0.3, noise_ratio=0.5)
    out = p(LONG, make_ctx("train", seed=1)).ids
    assert vocab.mask in out and all(i == vocab.mask or i in vocab.block("text") for i in out)


def test_noise_is_not_applied_on_the_decoder_side(vocab, pre, make_ctx):
    # the spec only allows mask_ratio/noise_ratio on inputs; even if set, targets are never corrupted
    p = pre(vocab, side="decoder", mask_ratio=0.5, noise_ratio=0.5)
    assert p("a man riding a horse", make_ctx("train")).ids == \
        pre(vocab, side="decoder")("a man riding a horse", make_ctx("train")).ids


def test_free_text_target(vocab, pre, make_ctx):
    p = pre(vocab, side="decoder", column="caption")
    t = p("A man riding a horse.", make_ctx())
    assert t.loss and t.constraint is None and not t.forced
    assert p.target_placeholder(make_ctx("test")).ids == [] and p.constraint() is None


def test_no_loss(vocab, pre, make_ctx):
    t = pre(vocab, side="decoder", no_loss=True)("context", make_ctx())
    assert t.loss is False and t.ids


@pytest.mark.parametrize("side", ["encoder", "decoder"])
def test_literal(vocab, side, decode, make_ctx, make_slot, fake_constraints):
    p = TextPreprocessor(make_slot(side=side, literal="what does the image describe?"), vocab)
    t = p("ignored value", make_ctx())
    assert decode(vocab, t.ids) == "what does the image describe?"
    assert t.loss is False
    assert t.forced is (side == "decoder")
    if side == "decoder":
        assert t.constraint == fake_constraints.Fixed(t.ids)
        placeholder = p.target_placeholder(make_ctx("test"))
        assert placeholder.ids == [] and placeholder.constraint == fake_constraints.Fixed(t.ids) and placeholder.forced
    else:
        assert t.constraint is None
    assert p(None, make_ctx()).ids == t.ids  # a literal never looks at the value


def test_literal_is_not_noised_or_truncated(vocab, make_ctx, make_slot):
    p = TextPreprocessor(make_slot(literal=LONG, max_length=5, mask_ratio=0.5), vocab)
    ids = p(None, make_ctx("train")).ids
    assert vocab.mask not in ids and len(ids) > 5


def test_closed_set(vocab, pre, make_ctx, fake_constraints):
    p = pre(vocab, side="decoder", column="answer", closed_set=["yes", "no", "maybe not", "yes"])
    enc = {a: p.encode(a) for a in ("yes", "no", "maybe not")}
    assert list(p.answers) == ["yes", "no", "maybe not"]
    assert p.constraint() == fake_constraints.Trie([enc["yes"], enc["no"], enc["maybe not"]])
    assert set(p.smoothing_ids) == {i for ids in enc.values() for i in ids}
    t = p(" maybe  not ", make_ctx())
    assert t.ids == enc["maybe not"] and t.loss
    assert t.constraint == p.constraint() and t.smoothing_ids == p.smoothing_ids
    placeholder = p.target_placeholder(make_ctx("test"))
    assert placeholder.ids == [] and placeholder.constraint == p.constraint()
    assert placeholder.smoothing_ids == p.smoothing_ids


def test_closed_set_normalises_answers_with_the_slot(vocab, pre, make_ctx, fake_constraints):
    p = pre(vocab, side="decoder", column="answer", closed_set=["Yes", "yes", "No."], uncased=True,
            no_punctuation=True)
    assert list(p.answers) == ["yes", "no"]
    assert p("YES!", make_ctx()).ids == p.answers["yes"]


def test_closed_set_value_outside_the_set(vocab, pre, decode, make_ctx, fake_constraints):
    p = pre(vocab, side="decoder", column="answer", closed_set=["yes", "no", "maybe"])
    with pytest.raises(DataError) as err:
        p("perhaps", make_ctx("train"))
    msg = str(err.value)
    assert "answer" in msg and "'perhaps'" in msg and "'yes'" in msg and "'no'" in msg
    # at evaluation the sample is kept (its reference still scores the constrained prediction)
    t = p("perhaps", make_ctx("valid"))
    assert decode(vocab, t.ids) == "perhaps" and t.constraint == p.constraint()


def test_closed_set_as_unconverted_string(vocab, pre, fake_constraints):
    assert list(pre(vocab, side="decoder", closed_set="yes|no").answers) == ["yes", "no"]


def test_closed_set_flag_must_be_filled_by_the_engine(vocab, pre):
    with pytest.raises(PlanError, match="closed_set"):
        pre(vocab, side="decoder", closed_set=True)
    with pytest.raises(PlanError, match="non-empty"):
        pre(vocab, side="decoder", closed_set=["", "  "])


@pytest.mark.parametrize("value, type_name", [(None, "None"), (3, "int"), (2.5, "float"), (["a"], "list"),
                                              (b"bytes", "bytes")])
def test_non_string_value_is_a_data_error(vocab, value, type_name, pre, make_ctx):
    with pytest.raises(DataError) as err:
        pre(vocab, column="question")(value, make_ctx())
    assert "'question'" in str(err.value) and type_name in str(err.value)


@pytest.mark.parametrize("attrs", [{"mask_ratio": 1.5}, {"noise_ratio": -0.1}, {"max_length": -1}])
def test_bad_attribute_values(vocab, attrs, pre):
    with pytest.raises(PlanError):
        pre(vocab, **attrs)


def test_vocabulary_must_match_the_tokenizer(vocab, pre):
    with pytest.raises(ConfigError, match="no 'text' block"):
        pre(Vocabulary([VocabBlock("bin", ("0", "1"))]))
    other = Vocabulary([VocabBlock("text", tuple(f"t{i}" for i in range(8192)))])
    with pytest.raises(ConfigError, match="does not match"):
        pre(other)


def test_picklable(vocab, pre, make_ctx, fake_constraints):
    p = pre(vocab, side="decoder", closed_set=["yes", "no"])
    clone = pickle.loads(pickle.dumps(p))
    ctx = make_ctx()
    assert clone("yes", ctx).ids == p("yes", ctx).ids
    enc = pre(vocab, mask_ratio=0.3)
    assert pickle.loads(pickle.dumps(enc))(LONG, make_ctx(seed=4)).ids == enc(LONG, make_ctx(seed=4)).ids
