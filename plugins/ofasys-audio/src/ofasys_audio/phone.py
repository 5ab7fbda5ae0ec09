"""Entry module of the PHONE slot type: phone sequences as tokens of a ``phone`` vocabulary block.
Imports only the standard library and ofasys."""

from __future__ import annotations

from ofasys.hookspecs import hookimpl
from ofasys.spec import Attribute, SlotType

PHONE = SlotType(
    name="PHONE",
    kind="tokens",
    help="A phone sequence (space-separated phones, or English text converted offline by grapheme-to-phoneme).",
    components={"preprocess": ("phone",), "postprocess": ("phone",)},
    output_fields=("phones",),
    vocab_blocks=("phone",),
    attributes=(
        Attribute("mask_ratio", "float", 0.0, "Mask this ratio of input phones at training time.", ("encoder",)),
        Attribute("g2p", "bool", False, "The column holds English text: convert it to phones offline."),
    ),
)


@hookimpl
def ofasys_register_slot_types(register):
    register(PHONE)
