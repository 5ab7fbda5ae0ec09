"""The universal model (``ofa`` architecture), the encoder input contract and the training criteria.

Imports torch. Typical use::

    from ofasys.model import ModelConfig, build_model
    model = build_model(ModelConfig.from_size("tiny", vocab_size=vocab.padded_size()))
    model.add_adaptor("IMAGE.image_resnet", adaptor)           # feature slots
    enc = model.encode(EncoderBatch(tokens, {"IMAGE.image_resnet": pixels}, layout))
    logits = model.logits(model.decode(prev_tokens, enc))
"""

from .adaptor import Adaptor, EncoderBatch, EncoderOut, Segment
from .config import PUBLISHED_TOTALS, SIZES, ModelConfig
from .criterion import Criterion, TokenCriterion, label_smoothed_cross_entropy
from .transformer import DecoderCache, GeneralistModel, build_model, token_bucket_lookup

__all__ = [
    "Adaptor", "Criterion", "DecoderCache", "EncoderBatch", "EncoderOut", "GeneralistModel", "ModelConfig",
    "PUBLISHED_TOTALS", "SIZES", "Segment", "TokenCriterion", "build_model", "label_smoothed_cross_entropy",
    "token_bucket_lookup",
]
