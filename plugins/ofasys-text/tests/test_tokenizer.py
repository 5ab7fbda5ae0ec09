"""The byte-level BPE: exact round trips, a pinned vocabulary, pickling, reproducible build, override."""

from __future__ import annotations

import hashlib
import json
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ofasys.errors import ConfigError
from ofasys_text import plugin
from ofasys_text.tokenizer import DEFAULT_TOKENIZER, ENV_VAR, TextTokenizer, load_vocab_tokens, tokenizer_path

ROOT = Path(__file__).resolve().parent.parent
# sha256 of json.dumps(token list, ensure_ascii=False): changes whenever the shipped tokenizer changes, which
# silently invalidates every checkpoint's text embeddings. Update only together with a deliberate rebuild.
PINNED_TOKENS_SHA256 = "28a5e2b3fd136ff5bf7db729ea509c1733343af5b0fd01034883adbc2a8d9a12"


@pytest.fixture(scope="module")
def tok() -> TextTokenizer:
    return TextTokenizer()


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_round_trip_arbitrary_unicode(tok, text):
    ids = tok.encode(text)
    assert all(0 <= i < 8192 for i in ids)
    assert tok.decode(ids) == text


@pytest.mark.parametrize("text", ["", " ", "  two  spaces ", "tab\tand\nnewline\r\n", "naïve café 😀 中文 ﷽",
                                  "\x00\x01control", "<pad> <s> </s> <mask>"])
def test_round_trip_examples(tok, text):
    assert tok.decode(tok.encode(text)) == text


def test_special_strings_are_plain_text(tok):
    # the core's specials are not tokens of this block: "<mask>" in text is just characters
    assert len(tok.encode("<mask>")) > 1


def test_vocabulary_size_and_pinned_tokens(tok):
    tokens = tok.vocab_tokens()
    assert len(tokens) == len(tok) == 8192
    assert len(set(tokens)) == 8192
    digest = hashlib.sha256(json.dumps(tokens, ensure_ascii=False).encode("utf-8")).hexdigest()
    assert digest == PINNED_TOKENS_SHA256, "the shipped tokenizer changed: every trained model's text ids move"


def test_json_listing_matches_the_tokenizers_library(tok):
    vocab = tok.backend.get_vocab()
    assert [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])] == tok.vocab_tokens()


def test_every_byte_is_a_token(tok):
    # byte-level: the 256 byte symbols are in the vocabulary, so nothing is ever unknown
    from tokenizers.pre_tokenizers import ByteLevel

    assert set(ByteLevel.alphabet()) <= set(tok.vocab_tokens())


def test_common_words_are_single_tokens(tok):
    for word in ["man", "woman", "dog", "giraffe", "riding", "umbrella", "yes", "no", "red", "two"]:
        assert len(tok.encode(" " + word)) == 1, word


def test_pickle_carries_only_the_path(tok):
    tok.encode("load it")  # make sure a backend is loaded
    state = pickle.dumps(tok)
    assert len(state) < 500
    clone = pickle.loads(state)
    assert clone == tok and clone.encode("hello world") == tok.encode("hello world")


def test_env_override(tmp_path, monkeypatch):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    small = Tokenizer(models.BPE())
    small.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    small.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    small.train_from_iterator(["the cat sat on the mat"] * 50, trainer=trainer)
    path = tmp_path / "tokenizer.json"
    small.save(str(path))

    monkeypatch.setenv(ENV_VAR, str(path))
    assert tokenizer_path() == str(path.resolve())
    blocks = []
    plugin.ofasys_register_vocab_blocks(register=blocks.append)
    assert blocks[0].tokens == load_vocab_tokens(str(path.resolve()))
    assert len(blocks[0]) == small.get_vocab_size()
    assert TextTokenizer().decode(TextTokenizer().encode("the mat")) == "the mat"

    monkeypatch.setenv(ENV_VAR, str(tmp_path / "missing.json"))
    with pytest.raises(ConfigError, match=ENV_VAR):
        tokenizer_path()
    monkeypatch.delenv(ENV_VAR)
    assert tokenizer_path() == str(DEFAULT_TOKENIZER)


def test_unreadable_tokenizer_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="cannot read"):
        load_vocab_tokens(str(bad))


@pytest.mark.slow
def test_build_is_reproducible():
    """Rebuilding from corpus/ gives the committed tokenizer.json byte for byte."""
    pytest.importorskip("tokenizers")
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "build_tokenizer.py"), "--check"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr + result.stdout
