"""Entry module of the BOX slot type (entry point ``BOX``): boxes as quantised ``<bin>`` tokens of the shared
vocabulary. Imports only the standard library and ofasys.

A box is ``[x0, y0, x1, y1]`` in pixels of an image of the same instruction. It is moved with its image
(resize, crop, flip), quantised to ``num_bins`` bins per coordinate (OFA: 1000) and becomes 4 ``<bin>`` tokens,
in the encoder (region inputs) or the decoder (grounding, detection). As an output its decoding is constrained to
exactly 4 bins, and the postprocessor maps them back to pixels of the original image: ``out.box``,
``out.save_box(path)``.
"""

from __future__ import annotations

from typing import Any, Callable

from ofasys.hookspecs import hookimpl
from ofasys.spec import Attribute, Metric, SlotType, VocabBlock

SLOT_TYPE = "BOX"
BLOCK = "bin"
NUM_BINS = 1000

BOX = SlotType(
    name=SLOT_TYPE,
    kind="tokens",
    help="A box [x0, y0, x1, y1] in pixels of its image, quantised to 4 <bin> tokens (needs an IMAGE slot).",
    components={"preprocess": ("box",), "postprocess": ("box",)},
    output_fields=("box",),
    vocab_blocks=(BLOCK,),
    attributes=(
        Attribute("num_bins", "int", NUM_BINS,
                  f"Quantisation bins per coordinate, 2-{NUM_BINS} (the <bin> block always holds {NUM_BINS})."),
        Attribute("image", "str", None,
                  "Column of the IMAGE slot the box refers to (default: the instruction's first IMAGE slot)."),
    ),
)


def _mine(slot: Any, stage: str) -> bool:
    return getattr(slot, "type", None) == SLOT_TYPE and \
        (getattr(slot, "components", None) or {}).get(stage) in (None, "box")


@hookimpl
def ofasys_register_slot_types(register: Callable[..., None]) -> None:
    """Declare the BOX slot type."""
    register(BOX)


@hookimpl
def ofasys_register_vocab_blocks(register: Callable[..., None]) -> None:
    """The ``bin`` block: ``<bin>0`` ... ``<bin>999``."""
    register(VocabBlock(BLOCK, tuple(str(i) for i in range(NUM_BINS)), "box coordinate bins"))


@hookimpl
def ofasys_preprocess(slot: Any, ctx: Any) -> Any:
    """A :class:`~ofasys_image.preprocess.BoxPreprocessor` (refused at plan time without an IMAGE slot)."""
    if not _mine(slot, "preprocess"):
        return None
    from .preprocess import BoxPreprocessor

    return BoxPreprocessor(slot, ctx.vocab, ctx.plan)


@hookimpl
def ofasys_postprocess(slot: Any, ctx: Any) -> Any:
    """A :class:`~ofasys_image.postprocess.BoxPostprocessor` for BOX outputs."""
    if not _mine(slot, "postprocess") or getattr(slot, "side", None) != "decoder":
        return None
    from .postprocess import BoxPostprocessor

    return BoxPostprocessor(slot, ctx.vocab)


@hookimpl
def ofasys_register_metrics(register: Callable[..., None]) -> None:
    """``iou_acc`` (the default of BOX outputs) and ``map50``; pure Python."""
    from . import metrics

    register(Metric("iou_acc", metrics.iou_acc, for_types=(SLOT_TYPE,),
                    help="Percentage of predicted boxes with IoU >= 0.5 against the reference (grounding); for a "
                         "repetition group, the percentage of reference boxes matched one-to-one."))
    register(Metric("map50", metrics.map50, for_types=(SLOT_TYPE,),
                    help="Detection AP at IoU 0.5 (COCO 101-point interpolation), averaged over classes when "
                         "predictions and references carry labels; 0-100."))


@hookimpl
def ofasys_register_demo_tasks(register: Callable[..., None]) -> None:
    """The image plugin's ``ofasys demo`` tasks (``ofasys_image.demo``): shapes grounding, whose gallery draws the
    predicted boxes with ``save_box``, and shapes captioning. Registered here, once for both slot types."""
    from .demo import demo_tasks

    for task in demo_tasks():
        register(task)
