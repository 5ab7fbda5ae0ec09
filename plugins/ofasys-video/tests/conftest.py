"""Shared fixtures: generated clips written as real mp4 files, and the documented bad inputs.

Helpers are fixtures (the suite runs with ``--import-mode=importlib``, so test modules cannot import this file).
"""

from __future__ import annotations

import random

import pytest


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("clips")


@pytest.fixture(scope="session")
def clip(clip_dir):
    """One generated clip: ``{"frames": (T, 32, 32, 3) uint8, "path": mp4 path, "bytes": mp4 bytes, ...}``."""
    from ofasys_video import data

    c = data.make_clip(random.Random(5), size=32, min_frames=10, max_frames=10)
    raw = data.encode_mp4(c["frames"])
    path = clip_dir / "one.mp4"
    path.write_bytes(raw)
    return dict(c, path=str(path), bytes=raw)


@pytest.fixture(scope="session")
def bad_files(clip_dir, clip):
    """The documented bad inputs as files: ``{name: path}``."""
    from ofasys_video import data

    text = clip_dir / "notes.mp4"
    text.write_text("this is a text file, not a video\n")
    empty = clip_dir / "empty.mp4"
    empty.write_bytes(b"")
    truncated = clip_dir / "truncated.mp4"
    truncated.write_bytes(clip["bytes"][: len(clip["bytes"]) // 2])
    return {"missing": str(clip_dir / "missing.mp4"), "zero_frames": str(data.write_zero_frame_mp4(
        clip_dir / "zero.mp4")), "text": str(text), "empty": str(empty), "truncated": str(truncated)}
