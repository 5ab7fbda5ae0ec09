"""Preprocessors of the IMAGE and BOX slots.

IMAGE (a feature slot): load -> (training augmentation) -> resize to a ``patch_image_size`` square -> normalise
-> a ``3 x S x S`` float tensor; the geometric transform is recorded in ``ctx.state`` for the boxes.
BOX (a token slot): ``[x0, y0, x1, y1]`` in original pixels -> moved with its image -> 4 ``<bin>`` tokens.
"""

from __future__ import annotations

import math
from typing import Any

from ofasys.components import Features, Preprocessor, SampleContext, Tokens
from ofasys.errors import ConfigError, DataError, PlanError

from . import defaults
from .io import load_image
from .transforms import clip_box, forward_box, quantize, random_resized_crop

AUGMENTATIONS = ("none", "flip", "resized_crop", "randaug")
NORMS = {"ofa": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
         "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))}
STATE_KEY = "images"  # ctx.state["images"][column] = transform record; ctx.state["image"] = first column


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def box_columns_for(plan: Any, image_column: str | None) -> list[tuple[str, bool]]:
    """``(column, in_group)`` of the BOX slots of a plan that refer to the IMAGE slot of ``image_column``."""
    if plan is None:
        return []
    image_cols = [s.column for s in plan.all_slots() if s.type == "IMAGE" and s.column]
    first = image_cols[0] if image_cols else None
    out = []
    for s in plan.all_slots():
        if s.type != "BOX" or not s.column:
            continue
        target = s.attrs.get("image") or first
        if target == image_column:
            out.append((s.column, s.group is not None))
    return out


def parse_box(value: Any, where: str) -> list[float]:
    """``[x0, y0, x1, y1]`` as 4 finite floats from a list/tuple/array/tensor, a ``"x0,y0,x1,y1"`` string or a
    dict with ``x0, y0, x1, y1`` keys; :class:`DataError` otherwise (also for ``x1 < x0`` or ``y1 < y0``)."""
    raw = value
    if isinstance(value, dict):
        try:
            value = [value["x0"], value["y0"], value["x1"], value["y1"]]
        except KeyError:
            raise DataError(f"{where}: a box dict needs the keys x0, y0, x1, y1; it has {sorted(raw)}") from None
    elif isinstance(value, str):
        value = value.replace(",", " ").split()
    elif hasattr(value, "tolist"):
        value = value.tolist()
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        kind = "missing (None)" if raw is None else f"{_describe(raw)}"
        raise DataError(f"{where} must hold a box [x0, y0, x1, y1] (4 numbers in pixels of its image), "
                        f"not {kind}")
    try:
        box = [float(v) for v in value]
    except (TypeError, ValueError):
        raise DataError(f"{where}: the box {_describe(raw)} has a value that is not a number") from None
    if not all(math.isfinite(v) for v in box):
        raise DataError(f"{where}: the box {_describe(raw)} has a NaN or infinite coordinate")
    if box[2] < box[0] or box[3] < box[1]:
        axis = "x1 < x0" if box[2] < box[0] else "y1 < y0"
        raise DataError(f"{where}: the box {_describe(raw)} has {axis}; boxes are [x0, y0, x1, y1] with the "
                        "top-left corner first")
    return box


class ImagePreprocessor(Preprocessor):
    """Preprocessor of an IMAGE input slot (``preprocess=image``).

    Per sample: :func:`~ofasys_image.io.load_image` (path, URL, bytes, base64, PIL, array; EXIF transpose, RGB);
    in the training split only, the ``augment`` attribute's augmentation drawn from ``ctx.rng``
    (``flip``: horizontal flip with p=0.5; ``resized_crop``: torchvision-style random resized crop over 50-100%
    of the area that keeps every box of the sample inside; ``randaug``: both plus torchvision's RandAugment,
    2 ops at magnitude 9, photometric ops only when the sample has boxes); resize (bicubic) to
    ``patch_image_size`` square; scale to 0-1 and normalise (``norm=ofa``: mean = std = 0.5 as OFA,
    ``norm=imagenet``); ``mask_ratio`` greys out a centred square of that area ratio (image infilling inputs,
    every split). The transform record goes to ``ctx.state["images"][column]`` for the BOX slots.
    """

    order = -10

    def __init__(self, slot: Any, vocab: Any, model_config: dict | None = None, plan: Any = None):
        super().__init__(slot, vocab)
        cfg = dict(model_config or {})
        attrs = dict(slot.attrs or {})
        self.column = slot.column
        self.size = defaults.patch_image_size(attrs, cfg)
        self.augment = attrs.get("augment") or "none"
        self.mask_ratio = float(attrs.get("mask_ratio") or 0.0)
        self.norm = attrs.get("norm") or "ofa"
        adaptor = (slot.components or {}).get("adaptor") or "image_resnet"
        where = f"IMAGE slot of column '{self.column}'"
        if self.size < 1:
            raise PlanError(f"{where}: patch_image_size must be positive, not {self.size}")
        if self.augment not in AUGMENTATIONS:
            raise PlanError(f"{where}: augment must be one of {', '.join(AUGMENTATIONS)}, not {self.augment!r}")
        if self.norm not in NORMS:
            raise PlanError(f"{where}: norm must be one of {', '.join(NORMS)}, not {self.norm!r}")
        if not 0.0 <= self.mask_ratio < 1.0:
            raise PlanError(f"{where}: mask_ratio must be in [0, 1), not {self.mask_ratio}")
        stride = defaults.stride(adaptor, attrs, cfg)
        if adaptor == "image_patch" and self.size % stride:
            raise ConfigError(f"{where}: patch_image_size {self.size} is not a multiple of the patch size {stride}; "
                              "choose sizes so that patches tile the image")
        self.grid = defaults.grid_side(self.size, adaptor, attrs, cfg)
        bucket = int(cfg.get("image_bucket_size") or defaults.IMAGE_BUCKET_SIZE)
        if self.grid > bucket:
            raise ConfigError(f"{where}: a {self.size}px image makes a {self.grid}x{self.grid} grid with {adaptor}, "
                              f"more than the model's image_bucket_size ({bucket}) positions per side; use a smaller "
                              "patch_image_size (or a larger patch_size)")
        if self.grid < 1:
            raise ConfigError(f"{where}: patch_image_size {self.size} is smaller than one {stride}px patch")
        self.boxes = box_columns_for(plan, self.column)
        self.mean, self.std = NORMS[self.norm]

    # ------------------------------------------------------------------------------------------ per sample
    def _keep_boxes(self, row: dict, width: int, height: int) -> list[list[float]]:
        """The sample's boxes on this image (well-formed ones, clipped), which a random crop must keep."""
        out = []
        for column, grouped in self.boxes:
            values = row.get(column)
            items = values if grouped and isinstance(values, (list, tuple)) else [values]
            for v in items:
                try:
                    b = clip_box(parse_box(v, "box"), width, height)
                except DataError:
                    continue  # the BOX preprocessor reports it
                if b[2] > b[0] and b[3] > b[1]:
                    out.append(b)
        return out

    def __call__(self, value: Any, ctx: SampleContext) -> Features:
        import numpy as np
        import torch
        from PIL import Image

        img = load_image(value, f"column '{self.column}'")
        width, height = img.size
        crop = [0.0, 0.0, float(width), float(height)]
        flip = False
        if ctx.training and self.augment in ("resized_crop", "randaug"):
            crop = random_resized_crop(width, height, ctx.rng, keep=self._keep_boxes(ctx.row, width, height))
        if ctx.training and self.augment in ("flip", "randaug"):
            flip = ctx.rng.random() < 0.5
        s = self.size
        cx, cy, cw, ch = crop
        img = img.resize((s, s), Image.Resampling.BICUBIC, box=(cx, cy, cx + cw, cy + ch))
        if flip:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        if ctx.training and self.augment == "randaug":
            from .augment import rand_augment

            img = rand_augment(img, ctx.rng.getrandbits(62), geometric=not self.boxes)
        arr = np.asarray(img, dtype=np.float32) / 255.0
        arr = (arr - np.asarray(self.mean, dtype=np.float32)) / np.asarray(self.std, dtype=np.float32)
        if self.mask_ratio > 0:
            side = int(round(s * math.sqrt(self.mask_ratio)))
            lo = (s - side) // 2
            arr[lo:lo + side, lo:lo + side] = 0.0
        data = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))
        record = {"column": self.column, "orig": [width, height], "crop": crop, "flip": flip, "size": s}
        ctx.state.setdefault(STATE_KEY, {})[self.column] = record
        ctx.state.setdefault("image", self.column)
        return Features(data=data, length=self.grid * self.grid, meta={"orig_size": [width, height]})

    def collate(self, items: list[Any]) -> dict:
        """``{"pixels": (N, 3, H, W) float, "hw": (N, 2) long}``; images of different sizes are zero-padded at the
        bottom/right (``hw`` keeps each one's size so the adaptor masks the padding)."""
        import torch

        hw = torch.tensor([[int(x.shape[1]), int(x.shape[2])] for x in items], dtype=torch.long)
        if all(x.shape == items[0].shape for x in items):
            pixels = torch.stack(items)
        else:
            h, w = int(hw[:, 0].max()), int(hw[:, 1].max())
            pixels = items[0].new_zeros(len(items), 3, h, w)
            for i, x in enumerate(items):
                pixels[i, :, : x.shape[1], : x.shape[2]] = x
        return {"pixels": pixels, "hw": hw}


class BoxPreprocessor(Preprocessor):
    """Preprocessor of a BOX slot: a box ``[x0, y0, x1, y1]`` in pixels of its (original) image -> 4 ``<bin>``
    tokens.

    The box moves with its image (crop, resize, flip recorded by the IMAGE preprocessor, which runs first), is
    clipped to the image, and each coordinate becomes bin ``round(c / S * (num_bins - 1))`` of the transformed
    ``S`` x ``S`` image. A box partly outside the image is clipped; a box with ``x1 < x0`` or ``y1 < y0``, one
    entirely outside the image or empty after clipping, or a value that is not 4 numbers is a
    :class:`DataError` (the sample is counted and skipped). As an output, decoding is constrained to exactly 4
    bins.
    """

    def __init__(self, slot: Any, vocab: Any, plan: Any = None):
        super().__init__(slot, vocab)
        attrs = dict(slot.attrs or {})
        self.column = slot.column
        self.side = slot.side
        self.image = attrs.get("image")
        self.num_bins = int(attrs.get("num_bins") or 0)
        block = vocab.block("bin")
        if not 2 <= self.num_bins <= block.size:
            raise PlanError(f"BOX slot of column '{self.column}': num_bins must be between 2 and {block.size} "
                            f"(the size of the <bin> vocabulary block), not {self.num_bins}")
        self.start = block.start
        if plan is not None:
            images = [s.column for s in plan.all_slots() if s.type == "IMAGE"]
            if not images:
                raise PlanError(f"BOX slot of column '{self.column}' needs an IMAGE slot in the same instruction: "
                                "box coordinates are pixels of that image")
            if self.image is not None and self.image not in images:
                raise PlanError(f"BOX slot of column '{self.column}': image={self.image} names no IMAGE slot of "
                                f"the instruction (IMAGE columns: {', '.join(images)})")
        from ofasys.generation.constraints import Block

        self._constraint = Block(range(self.start, self.start + self.num_bins), 4, 4)

    def record(self, state: dict) -> dict:
        """The transform record of this box's image in a sample's state."""
        images = state.get(STATE_KEY) or {}
        column = self.image or state.get("image")
        if column is None or column not in images:
            raise DataError(f"column '{self.column}': the BOX has no preprocessed image to refer to "
                            "(the instruction's IMAGE slot must be read first)")
        return images[column]

    def __call__(self, value: Any, ctx: SampleContext) -> Tokens:
        where = f"column '{self.column}'"
        box = parse_box(value, where)
        record = self.record(ctx.state)
        width, height = record["orig"]
        clipped = clip_box(box, width, height)
        if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
            outside = box[2] <= 0 or box[3] <= 0 or box[0] >= width or box[1] >= height
            reason = "lies entirely outside" if outside else "has zero width or height inside"
            raise DataError(f"{where}: the box {[round(v, 2) for v in box]} {reason} the {width}x{height} image")
        s = record["size"]
        moved = clip_box(forward_box(clipped, record), s, s)
        ids = [self.start + b for b in quantize(moved, s, self.num_bins)]
        return Tokens(ids, loss=True, constraint=self._constraint if self.side == "decoder" else None)

    def constraint(self, ctx: SampleContext | None = None):
        """Exactly 4 bins (of the first ``num_bins`` of the block)."""
        return self._constraint
