"""Adaptors of the IMAGE slot: pixels -> a segment of image positions in the model width.

Both adaptors return a :class:`~ofasys.model.adaptor.Segment` whose positions are the cells of a 2-D grid,
with a learned 2-D absolute position embedding (a row embedding plus a column embedding, each with
``image_bucket_size`` entries; OFA uses one entry per cell of the bucket x bucket grid, the factorised form
shares what a column means across rows and learns from less data) and ``pos`` = (row, col) for the model's 2-D
relative position bias (``bias_kind="image2d"``, ``bias_dims=2``: clamped 2-D offsets, as OFA's image bias).

Each cell's embedding is ``LayerNorm(content) + position`` with the position table initialised at unit scale,
so content and absolute position start equally strong. OFA feeds image positions to every attention layer as
a separate bias; this model adds them to the embeddings instead, and with the usual small position
initialisation (std 0.02 against content of std ~0.5) a model trained from scratch takes thousands of updates
to learn anything position-dependent (where an object is, which region a box names): measured on the shapes
data, a nano model did not tell left from right in 500 updates, and does in about 150 with equal scales.

* :class:`ImageResNetAdaptor` (``image_resnet``, OFA's default): stages 1-3 of a torchvision ResNet
  (1024 channels at stride 16), a linear projection to the model width.
* :class:`ImagePatchAdaptor` (``image_patch``): a strided convolution over non-overlapping patches, for small
  images and fast CPU runs.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import Tensor, nn

from ofasys.errors import ConfigError
from ofasys.model.adaptor import Adaptor, Segment

from . import defaults

POSITION_STD = 1.0  # same scale as the layer-normalised content (see the module docstring)
RESNET_LAYERS = {"resnet50": [3, 4, 6, 3], "resnet101": [3, 4, 23, 3], "resnet152": [3, 8, 36, 3]}


class _GridAdaptor(Adaptor):
    """Shared part: 2-D absolute positions, the grid mask of padded images, the segment."""

    bias_kind = "image2d"
    bias_dims = 2
    bias_buckets = 0  # the model config's image_bucket_size

    def __init__(self, d_model: int, bucket: int, stride: int, init_std: float = 0.02):
        super().__init__()
        self.bucket = int(bucket)
        self.stride = int(stride)
        self.content_norm = nn.LayerNorm(d_model)
        self.embed_rows = nn.Embedding(self.bucket, d_model)
        self.embed_cols = nn.Embedding(self.bucket, d_model)
        for table in (self.embed_rows, self.embed_cols):  # their sum has POSITION_STD
            nn.init.normal_(table.weight, 0.0, POSITION_STD / 2 ** 0.5)

    def features(self, pixels: Tensor) -> Tensor:  # pragma: no cover - interface
        """(N, 3, H, W) -> (N, D, h, w)."""
        raise NotImplementedError

    def cells(self, side: Tensor) -> Tensor:
        """Grid cells covering ``side`` pixels (per image)."""
        return torch.div(side, self.stride, rounding_mode="floor")

    def forward(self, payload: Any) -> Segment:
        if isinstance(payload, dict):
            pixels, hw = payload["pixels"], payload.get("hw")
        else:  # a bare (N, 3, H, W) tensor
            pixels, hw = payload, None
        feats = self.features(pixels)  # (N, D, h, w)
        n, d, h, w = feats.shape
        if h > self.bucket or w > self.bucket:
            raise ConfigError(f"a {pixels.shape[-2]}x{pixels.shape[-1]} image makes a {h}x{w} grid, more than the "
                              f"image_bucket_size ({self.bucket}) positions per side; use smaller images")
        dev = feats.device
        rows = torch.arange(h, device=dev).view(h, 1).expand(h, w)
        cols = torch.arange(w, device=dev).view(1, w).expand(h, w)
        content = self.content_norm(feats.flatten(2).transpose(1, 2))
        position = self.embed_rows(rows.reshape(-1)) + self.embed_cols(cols.reshape(-1))
        embeds = content + position.unsqueeze(0).to(content.dtype)
        pos = torch.stack([rows.reshape(-1), cols.reshape(-1)], dim=-1).unsqueeze(0).expand(n, h * w, 2)
        if hw is None:
            mask = torch.ones(n, h * w, dtype=torch.bool, device=dev)
        else:
            hw = hw.to(dev)
            valid_r = self.cells(hw[:, 0]).clamp(min=1, max=h)
            valid_c = self.cells(hw[:, 1]).clamp(min=1, max=w)
            mask = ((rows.reshape(1, -1) < valid_r.view(n, 1)) & (cols.reshape(1, -1) < valid_c.view(n, 1)))
        return Segment(embeds=embeds, mask=mask, pos=pos, bias_kind=self.bias_kind)


class ImagePatchAdaptor(_GridAdaptor):
    """``image_patch``: ``Conv2d(3, d_model, patch_size, stride=patch_size)`` + 2-D positions."""

    def __init__(self, d_model: int, patch_size: int, bucket: int = defaults.IMAGE_BUCKET_SIZE,
                 init_std: float = 0.02):
        super().__init__(d_model, bucket, patch_size, init_std)
        self.patch_size = int(patch_size)
        self.proj = nn.Conv2d(3, d_model, kernel_size=self.patch_size, stride=self.patch_size)

    def features(self, pixels: Tensor) -> Tensor:
        return self.proj(pixels.to(self.proj.weight.dtype))


class ResNetTrunk(nn.Module):
    """Stages 1-3 of a torchvision ResNet (stem, ``layer1``-``layer3``): 1024 channels at stride 16. Parameter
    names are torchvision's, so a torchvision state dict loads into it (``layer4`` and ``fc`` are dropped)."""

    def __init__(self, depth: str):
        super().__init__()
        from torchvision.models.resnet import Bottleneck, ResNet

        if depth not in RESNET_LAYERS:
            raise ConfigError(f"unknown ResNet backbone {depth!r}; use one of {', '.join(RESNET_LAYERS)}")
        full = ResNet(Bottleneck, RESNET_LAYERS[depth])
        self.depth = depth
        self.conv1, self.bn1, self.relu, self.maxpool = full.conv1, full.bn1, full.relu, full.maxpool
        self.layer1, self.layer2, self.layer3 = full.layer1, full.layer2, full.layer3

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer3(self.layer2(self.layer1(x)))

    def load_torchvision_weights(self, path: str) -> None:
        """Load a torchvision ResNet checkpoint (``.pth``/``.pt`` state dict, or ``.safetensors``)."""
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file

            state = load_file(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
            state = state["state_dict"]
        if not isinstance(state, dict):
            raise ConfigError(f"{path} does not hold a state dict of ResNet weights")
        state = {k.removeprefix("module."): v for k, v in state.items()}
        own = self.state_dict()
        missing = [k for k in own if k not in state]
        if missing:
            raise ConfigError(f"{path} is not a torchvision {self.depth} checkpoint: it lacks {len(missing)} of the "
                              f"backbone's tensors (e.g. {missing[0]})")
        wrong = [k for k in own if tuple(state[k].shape) != tuple(own[k].shape)]
        if wrong:
            raise ConfigError(f"{path} does not match {self.depth}: {wrong[0]} has shape "
                              f"{tuple(state[wrong[0]].shape)}, expected {tuple(own[wrong[0]].shape)} "
                              "(set backbone= to the checkpoint's depth)")
        self.load_state_dict({k: state[k] for k in own}, strict=True)


class ImageResNetAdaptor(_GridAdaptor):
    """``image_resnet``: ResNet stages 1-3 -> ``Linear(1024, d_model)`` + 2-D positions (OFA's image adaptor).

    Randomly initialised (torchvision's initialisation) unless ``weights`` names a torchvision ResNet checkpoint.
    """

    def __init__(self, d_model: int, depth: str = "resnet101", bucket: int = defaults.IMAGE_BUCKET_SIZE,
                 weights: str | None = None, init_std: float = 0.02):
        super().__init__(d_model, bucket, defaults.RESNET_STRIDE, init_std)
        self.backbone = ResNetTrunk(depth)
        self.proj = nn.Linear(defaults.RESNET_CHANNELS, d_model)
        nn.init.normal_(self.proj.weight, 0.0, init_std)
        nn.init.zeros_(self.proj.bias)
        if weights:
            self.backbone.load_torchvision_weights(weights)

    def cells(self, side: Tensor) -> Tensor:
        return torch.div(side + self.stride - 1, self.stride, rounding_mode="floor")

    def features(self, pixels: Tensor) -> Tensor:
        x = self.backbone(pixels.to(self.proj.weight.dtype))  # (N, 1024, h, w)
        return self.proj(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def build_adaptor(slot: Any, model_config: dict, rebuilding: bool = False) -> Adaptor:
    """The adaptor a planned IMAGE slot names, sized for ``model_config``.

    ``rebuilding``: the module is being rebuilt to receive a checkpoint's weights, so a ``weights`` file that is
    no longer on this machine is not needed (and not read).
    """
    attrs = dict(slot.attrs or {})
    variant = (slot.components or {}).get("adaptor") or "image_resnet"
    d = int(model_config.get("d_model", 256))
    bucket = int(model_config.get("image_bucket_size") or defaults.IMAGE_BUCKET_SIZE)
    std = float(model_config.get("init_std", 0.02))
    if variant == "image_patch":
        return ImagePatchAdaptor(d, defaults.patch_size(attrs, model_config), bucket, std)
    if variant == "image_resnet":
        weights = attrs.get("weights")
        if weights:
            weights = os.path.expanduser(str(weights))
            if rebuilding:
                weights = None
            elif not os.path.isfile(weights):
                raise ConfigError(f"IMAGE slot of column '{slot.column}': weights={weights} is not a file (give "
                                  "the path of a torchvision ResNet state dict, e.g. resnet101-*.pth)")
        return ImageResNetAdaptor(d, defaults.backbone(attrs, model_config), bucket, weights, std)
    raise ConfigError(f"unknown IMAGE adaptor {variant!r}")
