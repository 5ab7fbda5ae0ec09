import random

import pytest

from ofasys.components import SampleContext
from ofasys.errors import DataError
from ofasys.plan import build_plan
from ofasys.engine.runtime import build_vocab
from ofasys_audio import corpus
from ofasys_audio.phones import PHONES, g2p, lexicon


def test_lexicon_covers_the_corpus_and_uses_the_inventory():
    lex = lexicon()
    for r in corpus.rows():  # every word has an isolated-word pronunciation; a row's phones are in context
        assert len(g2p(r["text"]).split(" | ")) == len(r["text"].split())
        assert all(p in PHONES for p in r["phones"].split())
    assert all(p in PHONES for v in lex.values() for p in v.split())
    assert g2p("Turn left!") == "t 3: n | l E f t"


def test_unknown_word_is_a_data_error():
    with pytest.raises(DataError, match="no pronunciation for 'xylophone'"):
        g2p("open the xylophone")


def _pre(instruction, column):
    from ofasys.plugins import get_manager
    from ofasys.components import BuildContext

    plan = build_plan(instruction)
    vocab = build_vocab([plan])
    slot = plan.slots[column]
    pre = get_manager().build("preprocess", slot, BuildContext(vocab=vocab, plan=plan))
    post = get_manager().build("postprocess", slot, BuildContext(vocab=vocab, plan=plan)) if slot.side == "decoder" \
        else None
    return pre, post, vocab


def test_phone_block_in_vocabulary_and_round_trip():
    pre, post, vocab = _pre("[TEXT:text] -> [PHONE:phones]", "phones")
    assert vocab.has_block("phone") and vocab.block("phone").size == len(PHONES)
    ctx = SampleContext("train", {}, random.Random(0), vocab)
    tok = pre("t 3: n | l E f t", ctx)
    assert post(tok.ids, {}) == {"phones": "t 3: n | l E f t"}
    with pytest.raises(DataError, match="unknown phone 'QQ'"):
        pre("t QQ", ctx)


def test_g2p_attribute_and_input_masking():
    pre, _, vocab = _pre("[PHONE:text,g2p,mask_ratio=0.5] -> [TEXT:out]", "text")
    ctx = SampleContext("train", {}, random.Random(0), vocab)
    ids = pre("turn left", ctx).ids
    assert len(ids) == len("t 3: n | l E f t".split())
    assert ids.count(vocab.mask) == 4
    assert vocab.mask not in pre("turn left", SampleContext("valid", {}, random.Random(0), vocab)).ids
