"""Entry module of the MOTION slot type. Imports only the standard library and ofasys; numpy and torch are
imported inside the factories."""

from __future__ import annotations

from ofasys.hookspecs import hookimpl
from ofasys.spec import Attribute, SlotType

MOTION = SlotType(
    name="MOTION",
    kind="features",
    help="A motion clip: per-frame root translation and 6-D joint rotations (.npy/.npz/BVH or an array).",
    components={
        "preprocess": ("motion_6d",),
        "adaptor": ("motion_6d",),
        "criterion": ("diffusion",),
        "generator": ("ddim",),
        "postprocess": ("motion",),
    },
    output_fields=("motion",),
    attributes=(
        Attribute("min_length", "int", 16, "Shortest clip in frames."),
        Attribute("max_length", "int", 64, "Longest clip in frames; longer clips are cropped (randomly in training)."),
        Attribute("sample_rate", "int", 20, "Frames per second after resampling."),
        Attribute("window", "int", None, "Train on random windows of this many frames."),
        Attribute("prediction", "str", "x0", "Diffusion target.", ("decoder",), choices=("x0", "epsilon")),
        Attribute("steps", "int", 50, "DDIM sampling steps.", ("decoder",)),
        Attribute("guidance", "float", 1.0, "Classifier-free guidance scale (1 = none).", ("decoder",)),
    ),
)


@hookimpl
def ofasys_register_slot_types(register):
    register(MOTION)
