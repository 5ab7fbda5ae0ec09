"""Entry module of the VIDEO slot type (entry point ``VIDEO`` of the ``ofasys.slots`` group).

Imports only the standard library and ofasys; decord, PyAV and torch are imported inside the factories.

VIDEO is a feature slot on the input side: its preprocessor decodes a clip with decord and samples frames
(:mod:`ofasys_video.preprocess`); its adaptor runs the frames through the model's IMAGE adaptor (shared weights
by default) and adds a temporal position embedding (:mod:`ofasys_video.adaptors`).
"""

from __future__ import annotations

from typing import Any, Callable

from ofasys.hookspecs import hookimpl
from ofasys.spec import Attribute, SlotType

SLOT_TYPE = "VIDEO"
SHARED_ADAPTOR = "video_image_sequence"
OWN_ADAPTOR = "video_own_frames"

VIDEO = SlotType(
    name=SLOT_TYPE,
    kind="features",
    sides=("encoder",),
    help="A video clip: a path, bytes, a binary file object or a (T, H, W, 3) array of frames, decoded with "
         "decord; frames go through the model's IMAGE adaptor (shared weights) plus a temporal embedding.",
    components={"preprocess": ("video",), "adaptor": (SHARED_ADAPTOR, OWN_ADAPTOR)},
    attributes=(
        Attribute("num_frames", "int", 8, "Frames sampled from the clip (spread uniformly over it unless stride "
                                          "or fps is given; jittered at training)."),
        Attribute("stride", "int", None, "Take every n-th frame (a window of num_frames; random start at "
                                         "training, centred at evaluation)."),
        Attribute("fps", "float", None, "Take frames at this rate (the clip's own rate / fps frames apart), placed "
                                        "like stride."),
        Attribute("patch_image_size", "int", None, "Frame side in pixels (default: the IMAGE default of the model "
                                                   "size, 64 at nano)."),
        Attribute("augment", "str", "none", "Training-time augmentation, drawn once per clip and applied to every "
                                            "frame: none, flip (horizontal, p=0.5), resized_crop (50-100% of the "
                                            "area).", choices=("none", "flip", "resized_crop")),
        Attribute("temporal_pool", "int", 1, "Average the cells of this many consecutive frames (bounds the "
                                             "sequence at ceil(num_frames / temporal_pool) frames' cells)."),
        Attribute("frame_adaptor", "str", "image_resnet",
                  "The IMAGE adaptor variant that embeds each frame (IMAGE's default image_resnet, or image_patch). "
                  "With the default adaptor its weights are the model's IMAGE adaptor of that variant.",
                  choices=("image_resnet", "image_patch")),
        Attribute("patch_size", "int", None, "Patch side of image_patch when the VIDEO slot creates the IMAGE "
                                             "adaptor (default 16; 8 at nano)."),
        Attribute("backbone", "str", None, "ResNet depth of image_resnet when the VIDEO slot creates it.",
                  choices=("resnet50", "resnet101", "resnet152")),
    ),
)


def _mine(slot: Any, stage: str, variants: tuple[str, ...]) -> bool:
    return getattr(slot, "type", None) == SLOT_TYPE and \
        ((getattr(slot, "components", None) or {}).get(stage) or variants[0]) in variants


@hookimpl
def ofasys_register_slot_types(register: Callable[..., None]) -> None:
    """Declare the VIDEO slot type."""
    register(VIDEO)


@hookimpl
def ofasys_preprocess(slot: Any, ctx: Any) -> Any:
    """A :class:`~ofasys_video.preprocess.VideoPreprocessor`."""
    if not _mine(slot, "preprocess", ("video",)):
        return None
    from .preprocess import VideoPreprocessor

    return VideoPreprocessor(slot, ctx.vocab, ctx.model_config)


@hookimpl
def ofasys_adapt(slot: Any, ctx: Any) -> Any:
    """The VIDEO adaptor; the shared variant finds (or creates) the model's IMAGE adaptor through
    ``ctx.shared["model"]``."""
    if not _mine(slot, "adaptor", (SHARED_ADAPTOR, OWN_ADAPTOR)):
        return None
    from .adaptors import build_video_adaptor

    return build_video_adaptor(slot, dict(ctx.model_config or {}), (getattr(ctx, "shared", None) or {}).get("model"))


@hookimpl
def ofasys_register_demo_tasks(register: Callable[..., None]) -> None:
    """Two demo tasks on generated clips: direction of motion (classification) and video QA."""
    from .tasks import demo_tasks

    for task in demo_tasks():
        register(task)
