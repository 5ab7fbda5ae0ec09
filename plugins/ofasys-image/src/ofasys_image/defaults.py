"""Settings chosen by the model size when the instruction does not give them. Pure Python.

``patch_image_size`` follows OFA's pre-training resolutions (256 for tiny/medium, 384 for base, 480 for
large/huge); ``nano`` (ofasys' CPU test size) uses 64. The ResNet depth follows OFA (resnet50 for tiny,
resnet101 for medium/base, resnet152 for large/huge). ``image_patch`` cuts 16-pixel patches, 8-pixel ones at
``nano``.
"""

from __future__ import annotations

PATCH_IMAGE_SIZE = {"nano": 64, "tiny": 256, "medium": 256, "base": 384, "large": 480, "huge": 480}
BACKBONE = {"nano": "resnet50", "tiny": "resnet50", "medium": "resnet101", "base": "resnet101",
            "large": "resnet152", "huge": "resnet152"}
PATCH_SIZE = {"nano": 8}
RESNET_STRIDE = 16  # stages 1-3 of a ResNet: 1024 channels at 1/16 of the input side
RESNET_CHANNELS = 1024
IMAGE_BUCKET_SIZE = 42  # the model config's default image_bucket_size (OFA's)


def patch_image_size(attrs: dict, model_config: dict) -> int:
    value = attrs.get("patch_image_size")
    if value:
        return int(value)
    size = model_config.get("size", "custom")
    if size in PATCH_IMAGE_SIZE:
        return PATCH_IMAGE_SIZE[size]
    return 256 if int(model_config.get("d_model", 256)) <= 512 else 384


def backbone(attrs: dict, model_config: dict) -> str:
    value = attrs.get("backbone")
    if value:
        return str(value)
    size = model_config.get("size", "custom")
    if size in BACKBONE:
        return BACKBONE[size]
    d = int(model_config.get("d_model", 256))
    return "resnet50" if d <= 256 else "resnet101" if d <= 768 else "resnet152"


def patch_size(attrs: dict, model_config: dict) -> int:
    value = attrs.get("patch_size")
    if value:
        return int(value)
    return PATCH_SIZE.get(model_config.get("size", "custom"), 16)


def stride(adaptor: str | None, attrs: dict, model_config: dict) -> int:
    """Pixels per image position (grid cell) of an adaptor variant."""
    return RESNET_STRIDE if adaptor in (None, "image_resnet") else patch_size(attrs, model_config)


def grid_side(size: int, adaptor: str | None, attrs: dict, model_config: dict) -> int:
    """Positions per side of the grid an adaptor makes of a ``size`` x ``size`` image."""
    s = stride(adaptor, attrs, model_config)
    return -(-size // s) if adaptor in (None, "image_resnet") else size // s
