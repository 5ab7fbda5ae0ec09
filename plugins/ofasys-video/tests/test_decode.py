"""Decoding with decord (path, bytes, file object, frames array), frame sampling, and the bad-input table."""

from __future__ import annotations

import io
import random

import numpy as np
import pytest

from ofasys.errors import DataError
from ofasys_video.decode import open_video, sample_indices

# the README's bad-input table: input -> the words the DataError says
BAD = {
    "missing": "does not exist",
    "zero_frames": "no decodable video stream|zero frames",
    "text": "is not a video: it holds text",
    "empty": "is empty",
    "truncated": "could not be decoded",
}


@pytest.mark.parametrize("how", ["path", "bytes", "file", "array"])
def test_every_source_decodes_the_same_frames(clip, how):
    value = {"path": clip["path"], "bytes": clip["bytes"], "file": io.BytesIO(clip["bytes"]),
             "array": clip["frames"]}[how]
    c = open_video(value)
    assert len(c) == clip["num_frames"] == 10
    frames = c.frames([0, 4, 9])
    assert frames.shape == (3, 32, 32, 3) and frames.dtype == np.uint8
    # near-lossless H.264: decoded pixels stay close to the drawn ones
    assert np.abs(frames.astype(int) - clip["frames"][[0, 4, 9]].astype(int)).mean() < 3
    if how != "array":
        assert c.fps == pytest.approx(8.0)


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_files_are_data_errors_that_say_what_is_wrong(bad_files, name):
    with pytest.raises(DataError, match=BAD[name]):
        open_video(bad_files[name], "column 'clip'")


def test_bad_bytes_and_values(bad_files):
    with open(bad_files["text"], "rb") as f:
        with pytest.raises(DataError, match="is not a video"):
            open_video(f.read())
    with pytest.raises(DataError, match="bytes are empty"):
        open_video(b"")
    with pytest.raises(DataError, match="must hold a video"):
        open_video(12345)
    with pytest.raises(DataError, match="missing"):
        open_video(None)
    with pytest.raises(DataError, match=r"shape \(T, H, W, 3\)"):
        open_video(np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(DataError, match="zero frames"):
        open_video(np.zeros((0, 32, 32, 3), np.uint8))


def test_uniform_sampling_takes_segment_middles_at_evaluation_and_jitters_at_training():
    assert sample_indices(16, 4) == [2, 6, 10, 14]
    assert sample_indices(10, 4) == [1, 3, 6, 8]
    draws = {tuple(sample_indices(16, 4, rng=random.Random(s))) for s in range(50)}
    assert len(draws) > 10  # training draws differ
    for d in draws:  # ... but stay inside their segment, in time order
        assert all(4 * k <= i < 4 * (k + 1) for k, i in enumerate(d))
    assert sample_indices(16, 4, rng=random.Random(3)) == sample_indices(16, 4, rng=random.Random(3))


def test_short_clips_are_padded_by_repetition():
    assert sample_indices(2, 4) == [0, 0, 1, 1]
    assert sample_indices(1, 3) == [0, 0, 0]
    assert sample_indices(5, 4, stride=2) == [0, 2, 4, 4]  # the window runs past the end: last frame repeats


def test_stride_and_fps_windows():
    assert sample_indices(20, 4, stride=3) == [5, 8, 11, 14]  # centred at evaluation
    for s in range(20):
        d = sample_indices(20, 4, stride=3, rng=random.Random(s))
        assert [b - a for a, b in zip(d, d[1:])] == [3, 3, 3] and 0 <= d[0] <= 10
    assert sample_indices(40, 4, fps=4, source_fps=8) == sample_indices(40, 4, stride=2)
    assert sample_indices(40, 4, fps=8, source_fps=8) == sample_indices(40, 4, stride=1)


def test_sampled_frames_come_back_in_order(clip):
    c = open_video(clip["bytes"])
    idx = sample_indices(len(c), 4)
    got = c.frames(idx + idx[:1])  # a repeated index is decoded once and returned twice
    assert np.array_equal(got[0], got[-1])
    assert np.abs(got[:4].astype(int) - clip["frames"][idx].astype(int)).mean() < 3


def test_generated_clips_are_deterministic_and_use_the_image_plugins_names():
    from ofasys_image.datasets import COLORS, SHAPES
    from ofasys_video import data

    assert data.COLOUR_NAMES == tuple(sorted(COLORS)) and data.SHAPE_NAMES == tuple(SHAPES)
    a, b = data.clip_rows(3, seed=4), data.clip_rows(3, seed=4)
    assert [r["clip"] for r in a] == [r["clip"] for r in b]  # same seed, same mp4 bytes
    for r in a:
        assert r["answer"] in data.QA_ANSWERS and r["direction"] in data.DIRECTIONS
        assert r["direction"] in r["caption"] and r["color"] in r["caption"] and r["shape"] in r["caption"]
        c = open_video(r["clip"])
        assert 8 <= len(c) <= 12 and c.frames([0]).shape == (1, 32, 32, 3)
