import pytest

from ofasys_audio import corpus
from ofasys_audio.audio_io import load_audio
from ofasys_audio.metrics import cer, edit_distance, mcd, mcd_pair, wer


def test_edit_distance_hand_cases():
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance([], ["a", "b"]) == 2
    assert edit_distance(["a", "b", "c"], ["a", "c"]) == 1


def test_wer_counts_substitutions_deletions_insertions_over_the_corpus():
    refs = ["turn left now", "stop"]
    # 1 substitution (left->right) + 1 deletion (now) ; 1 insertion (stop stop)
    assert wer(["turn right", "stop stop"], refs) == pytest.approx(100 * 3 / 4)
    assert wer(["Turn LEFT, now!", "stop."], refs) == 0.0  # case and punctuation are normalised


def test_cer():
    assert cer(["abd"], ["abc"]) == pytest.approx(100 / 3)
    assert cer(["go up"], ["go up"]) == 0.0


def test_mcd_is_zero_for_identical_audio_and_smaller_for_the_same_words():
    rows = corpus.rows()
    r = rows[0]  # "zero", en-us, 140 wpm
    assert rows[1]["text"] == r["text"] and rows[40]["text"] != r["text"]
    x = load_audio(r["wav"]).samples
    assert mcd_pair(x, x) == pytest.approx(0.0, abs=1e-6)
    same_words = mcd_pair(load_audio(rows[1]["wav"]).samples, x)  # same voice, 190 wpm
    other_words = mcd_pair(load_audio(rows[40]["wav"]).samples, x)
    assert 0 < same_words < other_words / 2
    assert mcd([x], [r["wav"]]) == pytest.approx(0.0, abs=1e-6)
    assert mcd([(x, 16000)], [r["wav"]]) == pytest.approx(0.0, abs=1e-6)
