"""Entry module of the IMAGE slot type. Imports only the standard library and ofasys; torch, torchvision and
PIL are imported inside the factories."""

from __future__ import annotations

from ofasys.hookspecs import hookimpl
from ofasys.spec import Attribute, SlotType

IMAGE = SlotType(
    name="IMAGE",
    kind="features",
    token_variants=("image_vqgan",),
    help="An image: a path, http(s) URL (fetched only when given), bytes, base64 string, PIL image or array.",
    components={
        "preprocess": ("image", "image_vqgan"),
        "adaptor": ("image_resnet", "image_patch", "image_vqgan"),
        "generator": ("image_vqgan",),
        "postprocess": ("image_vqgan",),
    },
    output_fields=("image",),
    vocab_blocks=(),
    attributes=(
        Attribute("patch_image_size", "int", None, "Resize side in pixels (default: chosen by the model size)."),
        Attribute("augment", "str", "none", "Training-time augmentation.", ("encoder",),
                  choices=("none", "flip", "resized_crop", "randaug")),
        Attribute("mask_ratio", "float", 0.0, "Mask a central region of this area ratio (image infilling).",
                  ("encoder",)),
        Attribute("backbone", "str", None, "ResNet depth for image_resnet (resnet50/101/152; default by size).",
                  ("encoder",), choices=("resnet50", "resnet101", "resnet152")),
        Attribute("weights", "str", None, "A torchvision ResNet weights file to initialise the backbone.",
                  ("encoder",)),
        Attribute("length", "int", None, "Number of image code tokens (image_vqgan)."),
        Attribute("top_k", "int", 0, "Sampling: keep the k most likely codes (image_vqgan output).", ("decoder",)),
        Attribute("top_p", "float", 1.0, "Sampling: nucleus mass (image_vqgan output).", ("decoder",)),
        Attribute("temperature", "float", 1.0, "Sampling temperature (image_vqgan output).", ("decoder",)),
    ),
)


@hookimpl
def ofasys_register_slot_types(register):
    register(IMAGE)
