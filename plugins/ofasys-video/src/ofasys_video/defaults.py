"""Settings of the VIDEO slot chosen when the instruction does not give them. Pure Python (no torch).

Frames are embedded by an IMAGE adaptor variant, so the frame side and the grid follow the IMAGE plugin's
defaults (:mod:`ofasys_image.defaults`): ``patch_image_size`` by model size (64 px at nano), 8-px patches at
nano for ``image_patch``, stride 16 for ``image_resnet``.
"""

from __future__ import annotations

from ofasys.errors import ConfigError

NUM_FRAMES = 8
FRAME_ADAPTORS = ("image_resnet", "image_patch")  # IMAGE's input adaptors; image_resnet is IMAGE's default
SHARED_ADAPTOR = "video_image_sequence"  # frames through the model's IMAGE adaptor (shared weights)
OWN_ADAPTOR = "video_own_frames"  # the VIDEO adaptor owns a private copy of the frame encoder
MAX_TIME_STEPS = 64  # entries of the temporal position embedding


def frame_adaptor(attrs: dict) -> str:
    return str(attrs.get("frame_adaptor") or FRAME_ADAPTORS[0])


def image_key(attrs: dict) -> str:
    """The adaptor key of the IMAGE adaptor a shared VIDEO adaptor runs its frames through."""
    return f"IMAGE.{frame_adaptor(attrs)}"


def frame_geometry(attrs: dict, model_config: dict, where: str) -> tuple[int, int]:
    """``(frame side in pixels, grid cells per side)`` for a VIDEO slot's attributes."""
    from ofasys_image import defaults as image

    variant = frame_adaptor(attrs)
    if variant not in FRAME_ADAPTORS:
        raise ConfigError(f"{where}: frame_adaptor must be one of {', '.join(FRAME_ADAPTORS)}, not {variant!r}")
    size = image.patch_image_size(attrs, model_config)
    if size < 1:
        raise ConfigError(f"{where}: patch_image_size must be positive, not {size}")
    stride = image.stride(variant, attrs, model_config)
    if variant == "image_patch" and size % stride:
        raise ConfigError(f"{where}: patch_image_size {size} is not a multiple of the patch size {stride}; choose "
                          "sizes so that patches tile the frame")
    grid = image.grid_side(size, variant, attrs, model_config)
    bucket = int(model_config.get("image_bucket_size") or image.IMAGE_BUCKET_SIZE)
    if grid < 1:
        raise ConfigError(f"{where}: patch_image_size {size} is smaller than one {stride}px patch")
    if grid > bucket:
        raise ConfigError(f"{where}: a {size}px frame makes a {grid}x{grid} grid with {variant}, more than the "
                          f"model's image_bucket_size ({bucket}); use a smaller patch_image_size")
    return size, grid
