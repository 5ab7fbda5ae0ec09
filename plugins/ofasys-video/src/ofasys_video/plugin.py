"""Entry module of the VIDEO slot type. Imports only the standard library and ofasys; decord and torch are
imported inside the factories."""

from __future__ import annotations

from ofasys.hookspecs import hookimpl
from ofasys.spec import Attribute, SlotType

VIDEO = SlotType(
    name="VIDEO",
    kind="features",
    sides=("encoder",),
    help="A video clip: a path or bytes, decoded with decord; frames go through the image adaptor.",
    components={"preprocess": ("video",), "adaptor": ("video_image_sequence",)},
    attributes=(
        Attribute("num_frames", "int", 8, "Frames sampled from the clip."),
        Attribute("stride", "int", None, "Take every n-th frame instead of spreading num_frames over the clip."),
        Attribute("fps", "float", None, "Sample at this frame rate instead."),
        Attribute("patch_image_size", "int", None, "Frame side in pixels (default: chosen by the model size)."),
        Attribute("augment", "str", "none", "Training-time augmentation, the same for every frame.",
                  choices=("none", "flip", "resized_crop")),
        Attribute("temporal_pool", "int", 1, "Average this many consecutive frames' tokens (bounds length)."),
        Attribute("share_image_adaptor", "bool", True, "Reuse the IMAGE adaptor's weights for frames."),
    ),
)


@hookimpl
def ofasys_register_slot_types(register):
    register(VIDEO)
