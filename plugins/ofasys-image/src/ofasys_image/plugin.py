"""Entry module of the IMAGE slot type (entry point ``IMAGE`` of the ``ofasys.slots`` group).

Imports only the standard library and ``ofasys``; torch, torchvision and PIL are imported inside the factories.

IMAGE is a feature slot on the input side: its preprocessor yields a normalised pixel tensor and its adaptor
(``image_resnet``, OFA's default, ``image_patch``, or ``image_vqgan``: the codes of the image tokenizer with 2-D
positions) embeds it as a 2-D grid of positions. With ``preprocess=image_vqgan`` an IMAGE slot is a token slot:
the tokenizer's codes in the ``code<K>`` vocabulary block (``K`` = its codebook size, 256 for the tokenizer shipped
in the package, whatever size a user's ``tokenizer=`` file has); as an output it is generated as exactly ``h*w``
code tokens and decoded back to pixels (:mod:`ofasys_image.generation`, :mod:`ofasys_image.vq`).
"""

from __future__ import annotations

from typing import Any, Callable

from ofasys.hookspecs import hookimpl
from ofasys.spec import Attribute, Metric, SlotType, VocabBlock

from . import vq

SLOT_TYPE = "IMAGE"
SHIPPED_CODEBOOK_SIZE = 256  # the tokenizer in ofasys_image/data (vq_shapes32: 32 px -> 8x8 codes of 256)
VQGAN = "image_vqgan"  # image codes: generation, infilling, code inputs
INPUT_PREPROCESS = ("image",)
INPUT_ADAPTORS = ("image_resnet", "image_patch")

def _code_blocks(attrs: dict) -> tuple[str, ...]:
    """The ``code<K>`` block of a ``preprocess=image_vqgan`` slot: K is the codebook size of its tokenizer
    (read from the tokenizer's JSON at plan time; ValueError if it cannot be read)."""
    return (vq.block_name(vq.codebook_size(attrs.get("tokenizer"))),)


IMAGE = SlotType(
    name=SLOT_TYPE,
    kind="features",
    token_variants=(VQGAN,),
    help="An image: a path, http(s) URL (fetched only when given), bytes, base64 string, PIL image or array. "
         "Boxes on it are BOX slots; as an output it needs preprocess=image_vqgan.",
    components={
        "preprocess": ("image", VQGAN),
        "adaptor": ("image_resnet", "image_patch", VQGAN),
        "generator": (VQGAN,),  # image_vqgan outputs; generator=sequence gives the core's plain token decoding
        "postprocess": (VQGAN,),
    },
    output_fields=("image",),
    vocab_blocks=(vq.block_name(SHIPPED_CODEBOOK_SIZE),),
    vocab_blocks_for=_code_blocks,
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
        Attribute("tokenizer", "str", None,
                  "image_vqgan: the image tokenizer, a .json written by 'ofasys-image train-vq' (weights in the "
                  ".safetensors next to it) or a directory holding tokenizer.json; default: the shipped one (32 px, "
                  "8x8 codes of 256). The slot's vocabulary block is code<codebook size>."),
        Attribute("candidates", "int", 1,
                  "image_vqgan output: draw this many samples and keep the best by the rerank scorer (default: "
                  "the model's own score).", sides=("decoder",)),
        Attribute("rerank", "str", None,
                  "image_vqgan output: the scorer that picks among candidates: a name registered with "
                  "ofasys_image.generation.register_scorer, or module:function taking (images, row) and "
                  "returning one score per image (higher is better).", sides=("decoder",)),
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
def ofasys_register_vocab_blocks(register: Callable[..., None], names: Any = None) -> None:
    """The ``code<K>`` blocks (``<code256>0`` ... ``<code256>255``) of ``image_vqgan`` slots, one per codebook
    size the vocabulary asks for (``names``; without it, the shipped tokenizer's ``code256``). A block enters a
    model's vocabulary only when a task plans such a slot."""
    wanted = [n for n in (names or [vq.block_name(SHIPPED_CODEBOOK_SIZE)]) if vq.block_size(n)]
    for name in sorted(wanted):
        size = vq.block_size(name)
        register(VocabBlock(name, tuple(str(i) for i in range(size)), f"image codes of a {size}-code tokenizer"))


def _codes(slot: Any) -> bool:
    return getattr(slot, "type", None) == SLOT_TYPE and (getattr(slot, "components", None) or {}).get(
        "preprocess") == VQGAN


@hookimpl
def ofasys_preprocess(slot: Any, ctx: Any) -> Any:
    """An :class:`~ofasys_image.preprocess.ImagePreprocessor` (its image size chosen by the model size unless
    ``patch_image_size`` is given), or for ``preprocess=image_vqgan`` a
    :class:`~ofasys_image.generation.CodePreprocessor`."""
    if _codes(slot):
        from .generation import CodePreprocessor

        return CodePreprocessor(slot, ctx.vocab)
    if not _mine(slot, "preprocess", INPUT_PREPROCESS):
        return None
    from .preprocess import ImagePreprocessor

    return ImagePreprocessor(slot, ctx.vocab, ctx.model_config, ctx.plan)


@hookimpl
def ofasys_adapt(slot: Any, ctx: Any) -> Any:
    """The ``image_resnet``, ``image_patch`` or ``image_vqgan`` adaptor, sized for the model."""
    if getattr(slot, "type", None) == SLOT_TYPE and (slot.components or {}).get("adaptor") == VQGAN and \
            slot.kind == "features":
        from .generation import build_code_adaptor

        return build_code_adaptor(slot, dict(ctx.model_config or {}))
    if not _mine(slot, "adaptor", INPUT_ADAPTORS):
        return None
    from .adaptors import build_adaptor

    # a model rebuilt from a checkpoint asks for its adaptors with an empty plan: the weights come from the
    # checkpoint, so a `weights` file named at training time is not read again
    plan = getattr(ctx, "plan", None)
    rebuilding = plan is not None and not getattr(plan, "templates", None)
    return build_adaptor(slot, dict(ctx.model_config or {}), rebuilding=rebuilding)


@hookimpl
def ofasys_generate(slot: Any, ctx: Any) -> Any:
    """Generation of an ``image_vqgan`` output: exactly ``h*w`` code tokens, greedy or sampled, optionally several
    candidates reranked by a scorer (:class:`~ofasys_image.generation.CodeGenerator`)."""
    if not (_codes(slot) and slot.side == "decoder") or (slot.components or {}).get("generator") == "sequence":
        return None
    from .generation import CodeGenerator

    return CodeGenerator(slot, ctx.vocab)


@hookimpl
def ofasys_postprocess(slot: Any, ctx: Any) -> Any:
    """Codes -> ``{"image": PIL, "codes", "save_image"}`` through the tokenizer's decoder."""
    if not (_codes(slot) and slot.side == "decoder"):
        return None
    from .generation import CodePostprocessor

    return CodePostprocessor(slot, ctx.vocab)


@hookimpl
def ofasys_register_demo_tasks(register: Callable[..., None]) -> None:
    """Text-to-image on the shapes (``ofasys_image.generation.demo_tasks``): the gallery shows one generation per
    (colour, shape) prompt next to a held-out example."""
    from .generation import demo_tasks

    for task in demo_tasks():
        register(task)


@hookimpl
def ofasys_register_metrics(register: Callable[..., None]) -> None:
    """``vqa_score`` and ``cider`` (CIDEr-D); pure Python. They are used when a task names them (they suit TEXT
    outputs, whose default metric stays the TEXT plugin's)."""
    from . import metrics

    register(Metric("vqa_score", metrics.vqa_score, help="VQA accuracy min(1, matches/3), leave-one-out over "
                                                           "annotators, official answer normalisation; 0-100."))
    register(Metric("cider", metrics.cider, help="CIDEr-D (coco-caption's scorer) x 100; document frequencies "
                                                   "from the evaluated references."))
    from . import generation

    register(Metric("shape_attributes", generation.shape_attributes_metric, for_types=("IMAGE",),
                    help="Text-to-image on the shapes: % of generated images whose colour and shape, as judged by a "
                         "small CNN trained on the same generator, match the target's; 0-100."))
    register(Metric("image_psnr", generation.image_psnr_metric,
                    help="Mean PSNR (dB) of generated images against the target images (infilling)."))
