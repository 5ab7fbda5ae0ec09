"""The user-facing universal model: ``GeneralistModel("nano")``.

A model is named by its size before its tasks are known; the Trainer calls :meth:`initialize` with the
vocabulary its tasks need, which sizes the shared token embedding (tied to the output projection).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..model import ModelConfig
from ..model.transformer import GeneralistModel as _Universal
from ..vocab import Vocabulary

_PLACEHOLDER_ROWS = 8


class GeneralistModel(_Universal):
    """The universal encoder-decoder of a named size (``nano``, ``tiny``, ``medium``, ``base``, ``large``,
    ``huge``) or a :class:`~ofasys.model.ModelConfig`; keyword arguments override config fields
    (``GeneralistModel("tiny", dropout=0.0)``)."""

    def __init__(self, size: "str | ModelConfig | dict" = "nano", **overrides: Any):
        if isinstance(size, str):
            cfg = ModelConfig.from_size(size, **overrides)
        else:
            cfg = size if isinstance(size, ModelConfig) else ModelConfig.from_dict(size)
            for k, v in overrides.items():
                setattr(cfg, k, v)
        self._initialized = cfg.vocab_size is not None
        if cfg.vocab_size is None:
            cfg.vocab_size = _PLACEHOLDER_ROWS
        super().__init__(cfg)
        self.vocab: Vocabulary | None = None
        self.adaptor_slots: dict[str, dict] = {}

    def initialize(self, vocab: Vocabulary, seed: int | None = None) -> "GeneralistModel":
        """Size the token embedding for ``vocab`` (once); a second call with another vocabulary remaps rows.

        With ``seed``, a fresh model's weights are (re)drawn from that seed first, so the same seed gives the same
        initial model whatever the process did before (resume, CLI and Python runs agree)."""
        rows = vocab.padded_size()
        if self.vocab is None and not self._initialized:
            if seed is not None:
                torch.manual_seed(seed)
                self.apply(self._init_weights)
            emb = nn.Embedding(rows, self.config.d_model, padding_idx=vocab.pad,
                               device=self.embed_tokens.weight.device, dtype=self.embed_tokens.weight.dtype)
            nn.init.normal_(emb.weight, 0.0, self.config.init_std)
            with torch.no_grad():
                emb.weight[vocab.pad].zero_()
            self.embed_tokens = emb
            self.config.vocab_size = rows
            self._initialized = True
        elif self.vocab is not None and not self.vocab.same_as(vocab):
            self.remap_vocab(vocab, vocab.remap_from(self.vocab))
            return self
        elif self.config.vocab_size != rows:
            raise ValueError(f"model has {self.config.vocab_size} embedding rows, the vocabulary needs {rows}")
        self.vocab = vocab
        return self

    @torch.no_grad()
    def remap_vocab(self, vocab: Vocabulary, mapping: list[int]) -> None:
        """Move embedding rows to a new vocabulary layout (``mapping[new_id] = old_id`` or -1 for new tokens,
        which get fresh random rows)."""
        old = self.embed_tokens.weight
        rows = vocab.padded_size()
        new = torch.empty(rows, old.size(1), device=old.device, dtype=old.dtype).normal_(0.0, self.config.init_std)
        for new_id, old_id in enumerate(mapping):
            if 0 <= old_id < old.size(0):
                new[new_id] = old[old_id]
        emb = nn.Embedding(rows, old.size(1), padding_idx=vocab.pad, device=old.device, dtype=old.dtype)
        emb.weight.copy_(new)
        self.embed_tokens = emb
        self.config.vocab_size = rows
        self.vocab = vocab


def create_model(arch: str = "ofa", size: str = "nano", manager=None, **overrides: Any):
    """A model of architecture ``arch``: the core's ``ofa``, or one a plugin registers through
    ``ofasys_register_architectures``. A plugin architecture's ``build(config: dict)`` receives
    ``{"arch", "size", **sizes[size], **overrides}`` and must return a module with the universal model's interface
    (``initialize(vocab, seed)``, ``encode``, ``decode``, ``decode_embeds``, ``logits``, ``add_adaptor``...);
    subclassing :class:`GeneralistModel` is the easy way."""
    if arch == "ofa":
        return GeneralistModel(size, **overrides)
    from ..errors import ConfigError, did_you_mean
    from ..plugins import get_manager

    manager = manager or get_manager()
    manager.load_all()
    archs = manager.architectures()
    if arch not in archs:
        names = ["ofa", *sorted(archs)]
        raise ConfigError(f"unknown architecture {arch!r}.{did_you_mean(arch, names)} Available: {', '.join(names)}")
    spec = archs[arch]
    config = {"arch": arch, "size": size, **spec.sizes.get(size, {}), **overrides}
    model = spec.build(config)
    if hasattr(getattr(model, "config", None), "arch"):
        model.config.arch = arch
    return model
