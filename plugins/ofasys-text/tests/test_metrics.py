"""Text metrics on known inputs."""

from __future__ import annotations

import pytest

from ofasys_text.metrics import accuracy, bleu, exact_match, normalize_answer, rouge_l, rouge_l_f1, _lcs_length


def test_bleu():
    refs = ["the cat sat on the mat", "a man is riding a horse on the beach"]
    assert bleu(refs, refs) == 100.0
    assert 0 < bleu(["the cat sat on a mat", "a man rides a horse on the beach"], refs) < 100
    assert bleu(["completely unrelated words here"], ["the cat sat on the mat"]) < 5
    # several references, of varying number, per prediction
    assert bleu(["the cat sat on the mat", "a dog"], [["a cat sat", "the cat sat on the mat"], ["a dog"]]) == 100.0


def test_accuracy_normalises():
    assert accuracy(["The Cat.", "two", "Yes!"], ["cat", "2", ["no", "yes"]]) == pytest.approx(200 / 3)
    assert normalize_answer("  The  state-of-the-art, an Answer! ") == "state of art answer"


def test_exact_match_is_strict():
    assert exact_match(["cat ", "Cat"], ["cat", "cat"]) == 50.0
    assert exact_match(["a"], [["b", "a"]]) == 100.0


def test_rouge_l():
    assert _lcs_length("the cat sat on the mat".split(), "the cat is on the mat".split()) == 5
    assert rouge_l_f1("the cat sat on the mat", "the cat is on the mat") == pytest.approx(5 / 6)
    assert rouge_l(["The cat sat on the mat.", "x"], ["the cat sat on the mat", ["y", "x"]]) == pytest.approx(100.0)
    assert rouge_l(["abc"], ["xyz"]) == 0.0
    assert rouge_l_f1("", "") == 1.0 and rouge_l_f1("a", "") == 0.0


@pytest.mark.parametrize("fn", [accuracy, exact_match, bleu, rouge_l])
def test_edge_cases(fn):
    assert fn([], []) == 0.0
    with pytest.raises(ValueError):
        fn(["a"], [])
    with pytest.raises(ValueError):
        fn(["a"], [3])
