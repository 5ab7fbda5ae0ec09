"""Loading: every documented input form, and the documented behaviour of bad inputs."""

from __future__ import annotations

import io
import random

import numpy as np
import pytest
import soundfile as sf

from ofasys.errors import DataError
from ofasys_audio import corpus
from ofasys_audio.audio_io import load_audio, save_audio


def tone(seconds=0.5, rate=16000, freq=440.0):
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_bundled_flac_is_read_and_resampled_to_16k():
    r = corpus.rows()[0]
    a = load_audio(r["wav"])
    assert a.source_rate == 8000 and a.sample_rate == 16000
    assert abs(a.duration - sf.info(r["wav"]).duration) < 0.01
    assert a.samples.dtype == np.float32 and np.abs(a.samples).max() > 0.05


def test_path_bytes_tuple_and_dict_give_the_same_samples(tmp_path):
    x = tone(rate=22050)
    p = tmp_path / "x.wav"
    sf.write(p, x, 22050, subtype="PCM_16")
    from_path = load_audio(str(p)).samples
    from_bytes = load_audio(p.read_bytes()).samples
    from_tuple = load_audio((sf.read(p, dtype="float32")[0], 22050)).samples
    from_dict = load_audio({"array": sf.read(p, dtype="float32")[0], "sampling_rate": 22050}).samples
    assert len(from_path) == round(0.5 * 16000)
    np.testing.assert_allclose(from_path, from_bytes)
    np.testing.assert_allclose(from_path, from_tuple, atol=1e-6)
    np.testing.assert_allclose(from_path, from_dict, atol=1e-6)
    assert load_audio({"path": str(p)}).samples.shape == from_path.shape


def test_missing_file_is_a_data_error_naming_the_path(tmp_path):
    with pytest.raises(DataError, match="audio file not found: .*nope.flac"):
        load_audio(str(tmp_path / "nope.flac"))


def test_zero_length_audio_is_a_data_error(tmp_path):
    p = tmp_path / "empty.wav"
    sf.write(p, np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(DataError, match="zero-length"):
        load_audio(str(p))
    with pytest.raises(DataError, match="zero-length"):
        load_audio(b"")
    with pytest.raises(DataError, match="zero-length"):
        load_audio((np.zeros(0, dtype=np.float32), 16000))


def test_corrupt_file_is_a_data_error(tmp_path):
    p = tmp_path / "bad.flac"
    p.write_bytes(b"fLaC" + bytes(random.Random(0).randrange(256) for _ in range(500)))
    with pytest.raises(DataError, match="could not be decoded"):
        load_audio(str(p))


def test_8_bit_file_is_read_as_float(tmp_path):
    x = tone(rate=8000)
    p = tmp_path / "u8.wav"
    sf.write(p, x, 8000, subtype="PCM_U8")
    a = load_audio(str(p))
    assert a.source_rate == 8000 and len(a.samples) == 8000
    ref = load_audio((x, 8000)).samples
    assert np.abs(a.samples - ref).max() < 0.05  # 8-bit quantisation noise only


def test_integer_arrays_are_scaled():
    x = tone()
    a16 = load_audio(((x * 32767).astype(np.int16), 16000)).samples
    np.testing.assert_allclose(a16, x, atol=1e-4)


def test_multichannel_file_is_mixed_down(tmp_path):
    left, right = tone(freq=440), tone(freq=880)
    p = tmp_path / "stereo.flac"
    sf.write(p, np.stack([left, right], axis=1), 16000, subtype="PCM_16")
    a = load_audio(str(p))
    assert a.channels == 2 and a.samples.ndim == 1
    np.testing.assert_allclose(a.samples, (left + right) / 2, atol=1e-3)
    # a (channels, n) array is recognised as such
    b = load_audio((np.stack([left, right]), 16000))
    assert b.channels == 2 and b.samples.shape == left.shape


def test_ten_minute_file_against_30s_maximum(tmp_path):
    p = tmp_path / "long.flac"
    sf.write(p, np.zeros(600 * 8000, dtype=np.float32), 8000, subtype="PCM_16")
    with pytest.raises(DataError, match=r"600\.0 s long, more than max_duration=30 s"):
        load_audio(str(p), max_duration=30)
    a = load_audio(str(p), max_duration=30, long_audio="cut")
    assert a.cut and a.duration == pytest.approx(30.0, abs=0.01)


def test_array_without_rate_is_refused():
    with pytest.raises(DataError, match="sample rate"):
        load_audio((tone(), None))


def test_save_audio_round_trip(tmp_path):
    x = tone()
    for ext in ("wav", "flac"):
        path = save_audio(tmp_path / f"y.{ext}", x, 16000)
        y, rate = sf.read(path, dtype="float32")
        assert rate == 16000
        np.testing.assert_allclose(y, x, atol=1e-4)


def test_bytes_of_a_flac(tmp_path):
    buf = io.BytesIO()
    sf.write(buf, tone(rate=44100), 44100, format="FLAC")
    assert len(load_audio(buf.getvalue()).samples) == 8000


@pytest.mark.skipif(__import__("shutil").which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_fresh_espeak_ng_speech_is_read_from_bytes():
    import subprocess

    from ofasys_audio.metrics import mcd_pair

    wav = subprocess.run(["espeak-ng", "-v", "en-us", "-s", "140", "--stdout", "zero"], capture_output=True,
                         check=True).stdout
    a = load_audio(wav)
    assert a.source_rate == 22050 and a.sample_rate == 16000 and 0.3 < a.duration < 1.5
    bundled = corpus.rows()[0]  # "zero", en-us, 140 wpm (band-limited to 8 kHz, trimmed)
    other = next(r for r in corpus.rows() if r["text"] == "open the door" and r["voice"] == "en-us")
    ref = load_audio(bundled["wav"]).samples
    fresh_8k = load_audio((load_audio(wav, 8000).samples, 8000)).samples
    assert mcd_pair(fresh_8k, ref) < mcd_pair(load_audio(other["wav"]).samples, ref)


def test_trim_silence_keeps_a_margin():
    x = np.concatenate([np.zeros(16000, np.float32), tone(0.5), np.zeros(8000, np.float32)])
    a = load_audio((x, 16000), trim=True)
    assert a.duration == pytest.approx(0.5 + 2 * 0.1, abs=0.01)
    silent = load_audio((np.zeros(4000, np.float32), 16000), trim=True)
    assert len(silent.samples) == 4000
