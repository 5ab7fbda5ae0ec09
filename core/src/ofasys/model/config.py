"""Configuration of the universal model (the ``ofa`` architecture) and its named sizes.

Importable without torch. The dimensions of the named sizes are OFA's published ones (tiny, medium, base, large,
huge); ``nano`` is a CPU-test size. :meth:`ModelConfig.to_dict` / :meth:`ModelConfig.from_dict` round-trip through
JSON; the config is saved with every checkpoint, including the mapping of segment sources to type ids and the
relative-bias tables adaptors asked for, so a rebuilt model has the same parameters before any adaptor is added.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from ..errors import ConfigError, did_you_mean

#: OFA's published dimensions per size: layers (encoder/decoder), width, heads, FFN width.
SIZES: dict[str, dict[str, int]] = {
    "nano": dict(encoder_layers=2, decoder_layers=2, d_model=128, n_heads=4, ffn_dim=512),
    "tiny": dict(encoder_layers=4, decoder_layers=4, d_model=256, n_heads=4, ffn_dim=1024),
    "medium": dict(encoder_layers=4, decoder_layers=4, d_model=512, n_heads=8, ffn_dim=2048),
    "base": dict(encoder_layers=6, decoder_layers=6, d_model=768, n_heads=12, ffn_dim=3072),
    "large": dict(encoder_layers=12, decoder_layers=12, d_model=1024, n_heads=16, ffn_dim=4096),
    "huge": dict(encoder_layers=24, decoder_layers=12, d_model=1280, n_heads=16, ffn_dim=5120),
}

#: OFA's published parameter totals (with the ResNet image backbone the image plugin adds).
PUBLISHED_TOTALS: dict[str, str] = {"tiny": "33M", "medium": "93M", "base": "180M", "large": "470M", "huge": "930M"}


@dataclass
class ModelConfig:
    """Hyper-parameters of the ``ofa`` universal model.

    ``vocab_size`` is the number of rows of the shared token embedding (``Vocabulary.padded_size()``).
    ``type_ids`` maps segment sources (``"tokens"``, adaptor keys) to type-embedding ids and ``bias_kinds`` maps
    relative-bias table names to ``[dims, buckets]``; both are filled by the model as adaptors are added.
    ``moe_modalities`` gives the encoder one FFN expert per listed modality (an adaptor key, its slot type prefix
    such as ``"IMAGE"``, or ``"tokens"``); positions of other sources use the shared FFN.
    ``share_attn_bias`` must stay True: one relative-bias table per kind is shared by all layers, so the bias is
    computed once per forward instead of once per layer (OFA's ``share_attn_bias`` option).
    """

    arch: str = "ofa"
    size: str = "custom"
    d_model: int = 256
    encoder_layers: int = 4
    decoder_layers: int = 4
    n_heads: int = 4
    ffn_dim: int = 1024
    dropout: float = 0.1
    attention_dropout: float = 0.0
    activation_dropout: float = 0.0
    drop_path: float = 0.0
    max_positions: int = 1024
    token_bucket_size: int = 256
    image_bucket_size: int = 42
    normformer: bool = True
    scale_heads: bool = True
    vocab_size: int | None = None
    type_vocab: int = 16
    moe_modalities: list[str] = field(default_factory=list)
    share_attn_bias: bool = True
    checkpoint_activations: bool = False
    init_std: float = 0.02
    type_ids: dict[str, int] = field(default_factory=lambda: {"tokens": 0})
    bias_kinds: dict[str, list[int]] = field(default_factory=dict)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_size(cls, name: str, **overrides: Any) -> "ModelConfig":
        """The config of a named size (``nano``, ``tiny``, ``medium``, ``base``, ``large``, ``huge``) with
        ``overrides`` applied, e.g. ``ModelConfig.from_size("tiny", vocab_size=vocab.padded_size())``."""
        if name not in SIZES:
            raise ConfigError(f"unknown model size {name!r}; sizes are: {', '.join(SIZES)}." + did_you_mean(name, SIZES))
        values = dict(SIZES[name], size=name)
        values.update(overrides)
        return cls.from_dict(values)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        unknown = [k for k in data if k not in known]
        if unknown:
            k = unknown[0]
            raise ConfigError(f"unknown model config key {k!r}." + did_you_mean(k, known))
        cfg = cls(**copy.deepcopy(dict(data)))
        cfg.validate()
        return cfg

    def to_dict(self) -> dict:
        return copy.deepcopy(asdict(self))

    def validate(self) -> None:
        if self.d_model % self.n_heads:
            raise ConfigError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        for name in ("d_model", "n_heads", "ffn_dim", "max_positions", "type_vocab"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"model config {name} must be positive, not {getattr(self, name)}")
        for name in ("encoder_layers", "decoder_layers"):
            if getattr(self, name) < 0:
                raise ConfigError(f"model config {name} must not be negative")
        if self.vocab_size is not None and self.vocab_size <= 5:
            raise ConfigError(f"vocab_size ({self.vocab_size}) must cover at least the special tokens")
        if not self.share_attn_bias:
            raise ConfigError("share_attn_bias=False (one relative-bias table per layer) is not supported: the "
                              "bias is computed once per forward and shared by all layers")
        if "tokens" not in self.type_ids:
            self.type_ids = {"tokens": 0, **self.type_ids}
        if len(set(self.type_ids.values())) != len(self.type_ids):
            raise ConfigError(f"model config type_ids has duplicate ids: {self.type_ids}")
        if max(self.type_ids.values()) >= self.type_vocab:
            raise ConfigError(f"more segment sources ({len(self.type_ids)}) than type_vocab ({self.type_vocab}); "
                              "raise type_vocab")
        self.moe_modalities = list(self.moe_modalities)

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads
