"""Entry module of the IMAGE slot type (entry point ``IMAGE`` of the ``ofasys.slots`` group).

Imports only the standard library and ``ofasys``; torch, torchvision and PIL are imported inside the factories.

IMAGE is a feature slot on the input side: its preprocessor yields a normalised pixel tensor and its adaptor
(``image_resnet``, OFA's default, or ``image_patch``) embeds it as a 2-D grid of positions. Image *outputs* are
declared through the ``image_vqgan`` variants (discrete image codes in a ``code`` vocabulary block), so such
instructions plan and ``ofasys explain`` shows them; this release does not build those components yet, and
training or serving such a task stops with a PlanError naming the missing component.
"""

from __future__ import annotations

from typing import Any, Callable

from ofasys.hookspecs import hookimpl
from ofasys.spec import Attribute, Metric, SlotType, VocabBlock

SLOT_TYPE = "IMAGE"
CODE_BLOCK_SIZE = 8192  # OFA's VQGAN codebook (f=8, 8192 codes)
VQGAN = "image_vqgan"  # declared image-code variants (generation, infilling); not built in this release
INPUT_PREPROCESS = ("image",)
INPUT_ADAPTORS = ("image_resnet", "image_patch")

IMAGE = SlotType(
    name=SLOT_TYPE,
    kind="features",
    token_variants=(VQGAN,),
    help="An image: a path, http(s) URL (fetched only when given), bytes, base64 string, PIL image or array. "
         "Boxes on it are BOX slots; as an output it needs preprocess=image_vqgan.",
    components={
        "preprocess": ("image", VQGAN),
        "adaptor": ("image_resnet", "image_patch", VQGAN),
        "postprocess": (VQGAN,),
    },
    output_fields=("image",),
    vocab_blocks=("code",),
    attributes=(
        Attribute("patch_image_size", "int", None,
                  "Side in pixels of the square the image is resized to (default by model size: nano 64, tiny/medium "
                  "256, base 384, large/huge 480)."),
        Attribute("augment", "str", "none",
                  "Training-time augmentation: none, flip (horizontal, p=0.5), resized_crop (50-100% of the area, "
                  "boxes kept inside), randaug (resized_crop + flip + torchvision RandAugment).",
                  choices=("none", "flip", "resized_crop", "randaug")),
        Attribute("norm", "str", "ofa", "Pixel normalisation: ofa (mean = std = 0.5) or imagenet.",
                  choices=("ofa", "imagenet")),
        Attribute("mask_ratio", "float", 0.0,
                  "Grey out a centred square of this area ratio (image-infilling inputs; every split)."),
        Attribute("backbone", "str", None,
                  "ResNet depth of image_resnet (default by model size: tiny resnet50, medium/base resnet101, "
                  "large/huge resnet152).", choices=("resnet50", "resnet101", "resnet152")),
        Attribute("weights", "str", None,
                  "A torchvision ResNet state dict (.pth or .safetensors) to initialise image_resnet's backbone "
                  "(default: random initialisation)."),
        Attribute("patch_size", "int", None,
                  "Patch side in pixels of image_patch (default 16; 8 at nano). The first slot that builds a "
                  "shared adaptor fixes it."),
    ),
)


def _mine(slot: Any, stage: str, variants: tuple[str, ...]) -> bool:
    return getattr(slot, "type", None) == SLOT_TYPE and \
        ((getattr(slot, "components", None) or {}).get(stage) or variants[0]) in variants


@hookimpl
def ofasys_register_slot_types(register: Callable[..., None]) -> None:
    """Declare the IMAGE slot type."""
    register(IMAGE)


@hookimpl
def ofasys_register_vocab_blocks(register: Callable[..., None]) -> None:
    """The ``code`` block (``<code>0`` ... ``<code>8191``) the declared ``image_vqgan`` output variants use. It
    enters a model's vocabulary only when a task plans such a slot; its components are not built in this release,
    so that task then stops with a PlanError naming the missing preprocessor."""
    register(VocabBlock("code", tuple(str(i) for i in range(CODE_BLOCK_SIZE)), "image codes (image_vqgan)"))


@hookimpl
def ofasys_preprocess(slot: Any, ctx: Any) -> Any:
    """An :class:`~ofasys_image.preprocess.ImagePreprocessor` (its image size chosen by the model size unless
    ``patch_image_size`` is given)."""
    if not _mine(slot, "preprocess", INPUT_PREPROCESS):
        return None
    from .preprocess import ImagePreprocessor

    return ImagePreprocessor(slot, ctx.vocab, ctx.model_config, ctx.plan)


@hookimpl
def ofasys_adapt(slot: Any, ctx: Any) -> Any:
    """The ``image_resnet`` or ``image_patch`` adaptor, sized for the model."""
    if not _mine(slot, "adaptor", INPUT_ADAPTORS):
        return None
    from .adaptors import build_adaptor

    # a model rebuilt from a checkpoint asks for its adaptors with an empty plan: the weights come from the
    # checkpoint, so a `weights` file named at training time is not read again
    plan = getattr(ctx, "plan", None)
    rebuilding = plan is not None and not getattr(plan, "templates", None)
    return build_adaptor(slot, dict(ctx.model_config or {}), rebuilding=rebuilding)


@hookimpl
def ofasys_register_metrics(register: Callable[..., None]) -> None:
    """``vqa_score`` and ``cider`` (CIDEr-D); pure Python. They are used when a task names them (they suit TEXT
    outputs, whose default metric stays the TEXT plugin's)."""
    from . import metrics

    register(Metric("vqa_score", metrics.vqa_score, help="VQA accuracy min(1, matches/3), leave-one-out over "
                                                           "annotators, official answer normalisation; 0-100."))
    register(Metric("cider", metrics.cider, help="CIDEr-D (coco-caption's scorer) x 100; document frequencies "
                                                   "from the evaluated references."))
