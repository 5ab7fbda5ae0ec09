"""The encoder input contract: how token rows and modality adaptors feed the universal model.

A batch reaches the encoder as an :class:`EncoderBatch`: all token segments of the batch in one padded id matrix,
the collated payload of every feature adaptor, and per sample the ordered list of its segments. Adaptors
(:class:`Adaptor` subclasses built by plugins through ``ofasys_adapt``) turn a payload into a :class:`Segment`;
the model concatenates each sample's valid positions in layout order and pads to the longest sample.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn


@dataclass
class Segment:
    """What an adaptor returns for the N instances of its slot kind in a batch.

    ``embeds`` (N, L, D) are final embeddings in the model width: add your own absolute positions inside the
    adaptor if you want them (the model adds the type embedding and the embedding LayerNorm). ``mask`` (N, L) bool,
    True = real position; only real positions enter the encoder sequence. ``pos`` (N, L, 2) long: coordinates for
    the relative bias (1-D kinds use ``pos[..., 0]``); ``None`` means ``0..L-1`` along the first coordinate.
    ``bias_kind`` names the relative-bias table: ``"tokens"`` (the 1-D log buckets of text), ``"none"`` (no
    bias), or the adaptor's own kind (``"image2d"``...), declared by the adaptor's ``bias_*`` class attributes.
    """

    embeds: Tensor
    mask: Tensor
    pos: Tensor | None = None
    bias_kind: str = "tokens"


class Adaptor(nn.Module):
    """Base class of the modules that embed a feature slot (IMAGE, AUDIO, VIDEO, MOTION...) into the model width.

    Class attributes describe the relative-bias table the model creates for ``bias_kind`` when the adaptor is
    added (:meth:`GeneralistModel.add_adaptor`): ``bias_dims`` 1 (log buckets over ``pos[..., 0]``, like text)
    or 2 (clamped 2-D offsets, like OFA's image bias); ``bias_buckets`` the bucket size (0 = the config's
    ``token_bucket_size`` for 1-D, ``image_bucket_size`` for 2-D). Adaptors sharing a kind share its table.

    ``forward(payload) -> Segment`` embeds what the slot's ``Preprocessor.collate`` produced (moved to the
    model's device). Decoder-side feature targets (TTS mel frames, motion) also implement ``embed_target`` and
    ``predict``.
    """

    bias_kind: str = "seq1d"
    bias_dims: int = 1
    bias_buckets: int = 0

    def forward(self, payload: Any) -> Segment:  # pragma: no cover - interface
        raise NotImplementedError

    def embed_target(self, payload: Any) -> tuple[Tensor, Tensor]:
        """Decoder inputs for a feature target: ``(embeds (B, T, D), mask (B, T) bool)``, already shifted right
        (position t carries frame t-1, position 0 a learned start frame). Fed to ``model.decode_embeds``."""
        raise NotImplementedError(f"{type(self).__name__} does not embed decoder-side targets")

    def predict(self, hidden: Tensor) -> Any:
        """Decoder hidden states (B, T, D) -> predictions for the adaptor's criterion and generator."""
        raise NotImplementedError(f"{type(self).__name__} does not predict decoder-side targets")


@dataclass
class EncoderBatch:
    """The encoder side of a batch.

    ``tokens`` (Nt, Lt) long, padded with ``vocab.pad`` on the right: every token segment of the batch, one row
    each (a sample may own 0..k rows), or ``None``. ``features`` maps adaptor keys to collated payloads (N_k
    instances each). ``layout[b]`` lists sample b's segments in order as ``("tokens", row)`` or
    ``(adaptor_key, row)``; an empty list is an empty encoder side (decoder-only task).

    **Packed** batches (training / teacher-forced evaluation of token-only encoders, see
    :func:`ofasys.engine.packing.pack_batch`) hold several samples per token row: ``seq_ids`` (Nt, Lt) long gives
    the sample of every position (``-1`` = padding; a sample's positions are contiguous) and ``layout[r]`` is
    ``[("tokens", r)]`` per packed row. The encoder then attends only within a sample and restarts the learned
    positions and the relative bias at each sample. ``None`` (the default): one sample per layout entry.
    """

    tokens: Tensor | None
    features: dict[str, Any] = field(default_factory=dict)
    layout: list[list[tuple[str, int]]] = field(default_factory=list)
    seq_ids: Tensor | None = None

    def __len__(self) -> int:
        return len(self.layout)

    def to(self, device, non_blocking: bool = False) -> "EncoderBatch":
        return EncoderBatch(None if self.tokens is None else self.tokens.to(device, non_blocking=non_blocking),
                            {k: _move(v, device, non_blocking) for k, v in self.features.items()},
                            self.layout,
                            None if self.seq_ids is None else self.seq_ids.to(device, non_blocking=non_blocking))

    @classmethod
    def from_tokens(cls, tokens: Tensor) -> "EncoderBatch":
        """A text-only batch: one token row per sample."""
        return cls(tokens, {}, [[("tokens", i)] for i in range(tokens.size(0))])


@dataclass
class EncoderOut:
    """Encoder states ``hidden`` (B, S, D) and ``mask`` (B, S) bool (True = real position). A sample with an
    empty encoder side has no True position (S is at least 1). For a packed batch, ``seq_ids`` (B, S) gives the
    sample of every position (``-1`` = padding), and B counts packed rows."""

    hidden: Tensor
    mask: Tensor
    seq_ids: Tensor | None = None
    #: the model's own shortcut: the real positions' states (N, D) and their ``Unpadded`` index when the encoder
    #: ran on those only (``hidden`` then holds zeros at padded positions); ``None`` otherwise
    flat: Any = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return self.hidden.size(0)

    def index_select(self, index: Tensor) -> "EncoderOut":
        return EncoderOut(self.hidden.index_select(0, index), self.mask.index_select(0, index),
                          None if self.seq_ids is None else self.seq_ids.index_select(0, index))


def _move(value: Any, device, non_blocking: bool) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=non_blocking)
    if isinstance(value, dict):
        return {k: _move(v, device, non_blocking) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_move(v, device, non_blocking) for v in value)
    return value
