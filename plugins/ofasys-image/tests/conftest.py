"""Shared fixtures of the ofasys-image tests.

Helpers are fixtures (the suite runs with ``--import-mode=importlib``, so test modules cannot import this file).
Components are built through the real plugin manager from real instructions, as the engine builds them.
"""

from __future__ import annotations

import io
import random

import pytest

from ofasys.components import BuildContext, SampleContext
from ofasys.engine.runtime import build_vocab
from ofasys.plan import build_plan
from ofasys.plugins import get_manager


class Built:
    """The plan of an instruction with its vocabulary and a build context for the factories."""

    def __init__(self, instruction: str, size: str = "nano", **model_config):
        self.manager = get_manager()
        self.plan = build_plan(instruction, manager=self.manager, task="t")
        self.vocab = build_vocab([self.plan], self.manager)
        cfg = {"size": size, "d_model": 128, "image_bucket_size": 42, "init_std": 0.02, **model_config}
        self.ctx = BuildContext(vocab=self.vocab, model_config=cfg, task="t", plan=self.plan)

    def slot(self, column: str):
        return self.plan.slots[column]

    def pre(self, column: str):
        return self.manager.build("preprocess", self.slot(column), self.ctx)

    def post(self, column: str):
        return self.manager.build("postprocess", self.slot(column), self.ctx)

    def sample_ctx(self, split: str = "test", row: dict | None = None, seed: int = 0) -> SampleContext:
        return SampleContext(split=split, row=dict(row or {}), rng=random.Random(seed), vocab=self.vocab)


@pytest.fixture(scope="session")
def build():
    """``build(instruction, size="nano", **model_config)`` -> :class:`Built`."""
    return Built


def _png_bytes(img, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


@pytest.fixture(scope="session")
def encode():
    """``encode(pil_image, fmt="PNG", **save_kwargs)`` -> encoded bytes."""
    return _png_bytes


@pytest.fixture
def rgb_image():
    """A 40x30 RGB test image: left half red, right half blue, a green dot at (5, 5)."""
    from PIL import Image

    img = Image.new("RGB", (40, 30), (220, 0, 0))
    img.paste((0, 0, 220), (20, 0, 40, 30))
    img.putpixel((5, 5), (0, 255, 0))
    return img
