"""Entry module of the PHONE slot type: phone sequences as tokens of the ``phone`` vocabulary block.
Imports only the standard library and ofasys (the phone inventory is plain data in :mod:`ofasys_audio.phones`,
which imports nothing heavy)."""

from __future__ import annotations

from typing import Any, Callable

from ofasys.hookspecs import hookimpl
from ofasys.spec import Attribute, SlotType, VocabBlock

SLOT_TYPE = "PHONE"
BLOCK = "phone"

PHONE = SlotType(
    name=SLOT_TYPE,
    kind="tokens",
    help="A phone sequence: space-separated espeak-ng phonemes with '|' between words (e.g. 't 3: n | l E f t'), "
         "or English text converted offline through the shipped lexicon (g2p).",
    components={"preprocess": ("phone",), "postprocess": ("phone",)},
    output_fields=("phones",),
    vocab_blocks=(BLOCK,),
    attributes=(
        Attribute("mask_ratio", "float", 0.0, "Mask this ratio of input phones at training time.", ("encoder",)),
        Attribute("g2p", "bool", False,
                  "The column holds English text: convert it to phones with the shipped lexicon (espeak-ng's "
                  "phonemes of the bundled corpus's words; an unknown word is a bad sample)."),
    ),
)


def _mine(slot: Any, stage: str) -> bool:
    return getattr(slot, "type", None) == SLOT_TYPE and \
        (getattr(slot, "components", None) or {}).get(stage) in (None, "phone")


@hookimpl
def ofasys_register_slot_types(register: Callable[..., None]) -> None:
    register(PHONE)


@hookimpl
def ofasys_register_vocab_blocks(register: Callable[..., None]) -> None:
    """The ``phone`` block: espeak-ng's English phoneme mnemonics and the word separator ``|``."""
    from .phones import PHONES

    register(VocabBlock(BLOCK, PHONES, description="espeak-ng English phonemes (ASCII mnemonics) and '|'"))


@hookimpl
def ofasys_preprocess(slot: Any, ctx: Any) -> Any:
    if not _mine(slot, "preprocess"):
        return None
    from .phones import PhonePreprocessor

    return PhonePreprocessor(slot, ctx.vocab)


@hookimpl
def ofasys_postprocess(slot: Any, ctx: Any) -> Any:
    if not _mine(slot, "postprocess") or getattr(slot, "side", None) != "decoder":
        return None
    from .phones import PhonePostprocessor

    return PhonePostprocessor(slot, ctx.vocab)
