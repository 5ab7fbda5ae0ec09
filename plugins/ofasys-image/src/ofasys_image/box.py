"""Entry module of the BOX slot type: boxes as quantised ``<bin>`` tokens of the shared vocabulary.
Imports only the standard library and ofasys."""

from __future__ import annotations

from ofasys.hookspecs import hookimpl
from ofasys.spec import Attribute, SlotType, VocabBlock

NUM_BINS = 1000

BOX = SlotType(
    name="BOX",
    kind="tokens",
    help="A box [x0, y0, x1, y1] in pixels of its image, quantised to <bin> tokens (needs an IMAGE slot).",
    components={"preprocess": ("box",), "postprocess": ("box",)},
    output_fields=("box",),
    vocab_blocks=("bin",),
    attributes=(
        Attribute("num_bins", "int", NUM_BINS, "Quantisation bins per coordinate (at most the bin block size)."),
    ),
)


@hookimpl
def ofasys_register_slot_types(register):
    register(BOX)


@hookimpl
def ofasys_register_vocab_blocks(register):
    register(VocabBlock("bin", tuple(str(i) for i in range(NUM_BINS)), "box coordinate bins"))
