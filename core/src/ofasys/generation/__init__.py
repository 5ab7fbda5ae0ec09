"""Decoding: the :class:`Generator` protocol every output slot's generator satisfies, the core's
:class:`~ofasys.generation.sequence.SequenceGenerator` for token outputs and the torch-free decoding
:mod:`~ofasys.generation.constraints`.

This package imports no torch itself (constraints are pickled into DataLoader workers); ``SequenceGenerator``,
``TokenGenerator`` and ``Hypothesis`` are loaded from :mod:`ofasys.generation.sequence` on first access.
"""

from __future__ import annotations

from typing import Any


class Generator:
    """What ``ofasys_generate`` returns: decodes one output slot for a batch.

    ``generate(model, batch, **options) -> list[Any]``: one prediction per sample, handed to the slot's
    postprocessor. ``batch`` carries ``encoder`` (an :class:`ofasys.model.EncoderBatch`) or ``encoder_out`` (an
    already computed :class:`ofasys.model.EncoderOut`), plus whatever the generator needs (``constraints`` for
    token outputs, ``meta``...). Token outputs use :class:`~ofasys.generation.sequence.TokenGenerator`
    (predictions: the best hypothesis' ids); feature outputs (speech, motion diffusion) subclass this.
    ``options`` names the generation options this generator accepts besides the core's (``beam_size``,
    ``max_len``, ``seed``...), e.g. a diffusion sampler's ``steps`` and ``guidance``: ``predict`` and
    ``OFASys.inference`` pass them through instead of refusing them as unknown.
    """

    options: tuple[str, ...] = ()

    def generate(self, model, batch, **options) -> list[Any]:  # pragma: no cover - interface
        raise NotImplementedError

    def __call__(self, model, batch, **options) -> list[Any]:
        return self.generate(model, batch, **options)


_LAZY = {"SequenceGenerator", "TokenGenerator", "Hypothesis"}


def __getattr__(name: str):
    if name in _LAZY:
        from . import sequence

        return getattr(sequence, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Generator", "Hypothesis", "SequenceGenerator", "TokenGenerator"]
