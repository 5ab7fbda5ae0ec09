"""The image tokenizer behind ``preprocess=image_vqgan``: a small vector-quantised autoencoder (VQ-VAE with an
EMA codebook; no perceptual or adversarial loss, so not a VQGAN proper, named after OFA's variant).

This module imports only the standard library: the planner calls :func:`codebook_size` to size the slot's
``code<size>`` vocabulary block without importing torch. The network lives in :mod:`ofasys_image.vq.model`,
training in :mod:`ofasys_image.vq.train` (command: ``ofasys-image train-vq``).

A tokenizer is two files: ``<name>.json`` (architecture, codebook size, image size, training record) and
``<name>.safetensors`` (weights). It is named by the IMAGE attribute ``tokenizer``: the path of the JSON file or
of a directory holding ``tokenizer.json`` + ``tokenizer.safetensors``; left out, the tokenizer shipped in the
package (:data:`SHIPPED`, trained on the bundled shapes scenes) is used.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
SHIPPED = DATA_DIR / "vq_shapes32.json"
BLOCK_PREFIX = "code"
MAX_CODEBOOK = 65536


def resolve(spec: "str | os.PathLike | None") -> tuple[Path, Path]:
    """``(json path, safetensors path)`` of a tokenizer named by ``spec`` (None: the shipped one).

    Raises ``ValueError`` saying what is missing."""
    if spec is None or str(spec) in ("", "shapes", "default"):
        path = SHIPPED
    else:
        path = Path(os.path.expanduser(str(spec)))
        if path.is_dir():
            path = path / "tokenizer.json"
        elif path.suffix == ".safetensors":
            path = path.with_suffix(".json")
    if not path.is_file():
        raise ValueError(f"tokenizer={spec}: no tokenizer file {path} (give the .json written by "
                         "'ofasys-image train-vq', or the directory holding tokenizer.json)")
    weights = path.with_suffix(".safetensors")
    if not weights.is_file():
        raise ValueError(f"tokenizer={spec}: the weights {weights} next to {path.name} are missing")
    return path, weights


def read_config(spec: "str | os.PathLike | None") -> dict:
    """The JSON configuration of a tokenizer (stdlib only)."""
    path, _ = resolve(spec)
    try:
        cfg = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"tokenizer={spec}: {path} is not a readable JSON file: {exc}") from None
    for key in ("codebook_size", "image_size", "downsample", "code_dim", "channels"):
        if not isinstance(cfg.get(key), int) or cfg[key] < 1:
            raise ValueError(f"tokenizer={spec}: {path} has no positive integer '{key}'")
    if cfg["codebook_size"] > MAX_CODEBOOK:
        raise ValueError(f"tokenizer={spec}: codebook_size {cfg['codebook_size']} is above {MAX_CODEBOOK}")
    return cfg


def codebook_size(spec: "str | os.PathLike | None") -> int:
    return int(read_config(spec)["codebook_size"])


def grid_side(cfg: dict) -> int:
    """Codes per side of the tokenizer's grid."""
    return int(cfg["image_size"]) // (2 ** int(cfg["downsample"]))


def block_name(size: int) -> str:
    """The vocabulary block of a codebook of ``size`` codes: ``code<size>`` (tokens ``<code512>0`` ...)."""
    return f"{BLOCK_PREFIX}{int(size)}"


def block_size(name: str) -> int | None:
    """The codebook size a ``code<size>`` block name encodes, or None for another name."""
    if name.startswith(BLOCK_PREFIX) and name[len(BLOCK_PREFIX):].isdigit():
        size = int(name[len(BLOCK_PREFIX):])
        return size if 1 <= size <= MAX_CODEBOOK else None
    return None
