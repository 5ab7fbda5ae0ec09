"""Reading and writing clips: ``.npy`` (features), ``.npz`` (features + fps), BVH, and the values a MOTION column may
hold. Every failure is a :class:`ofasys.errors.DataError` saying what is wrong."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ofasys.errors import DataError

from .skeleton import SMALL, Clip, Skeleton, euler_to_matrix, matrix_to_euler_zxy


# --------------------------------------------------------------------------------------------- npy / npz
def save_npz(clip: Clip, path: "str | os.PathLike") -> None:
    """Features (``motion``), ``fps`` and the skeleton name."""
    np.savez(path, motion=clip.to_features(), fps=np.float32(clip.fps), skeleton=np.array(clip.skeleton.name))


def save_npy(clip: Clip, path: "str | os.PathLike") -> None:
    """Features only (the reader assumes the slot's ``sample_rate``)."""
    np.save(path, clip.to_features())


def _clip_from_array(arr: Any, fps: float, where: str, skeleton: Skeleton = SMALL) -> Clip:
    a = np.asarray(arr)
    if a.dtype == object or not np.issubdtype(a.dtype, np.number):
        raise DataError(f"{where}: motion must be a numeric array, not {a.dtype}")
    if a.ndim != 2 or a.shape[1] != skeleton.n_features:
        raise DataError(f"{where}: motion features must have shape (frames, {skeleton.n_features}) for the "
                        f"{skeleton.name} skeleton (3 root values + 6-D rotations of {skeleton.n_joints} joints), "
                        f"not {tuple(a.shape)}")
    try:
        return Clip.from_features(a, fps, skeleton)
    except ValueError as exc:
        raise DataError(f"{where}: {exc}") from None


# --------------------------------------------------------------------------------------------- BVH
def save_bvh(clip: Clip, path: "str | os.PathLike") -> None:
    """Write a BVH file: the hierarchy with offsets (metres, as the skeleton stores them), root position + ZXY
    rotations (degrees), ZXY rotations for the other joints, end sites. Frame time 1 / fps."""
    sk = clip.skeleton
    children: dict[int, list[int]] = {j: [] for j in range(sk.n_joints)}
    for j, p in enumerate(sk.parents):
        if p >= 0:
            children[p].append(j)
    ends: dict[int, list] = {}
    for j, off, name in sk.end_sites:
        ends.setdefault(j, []).append((off, name))
    lines = ["HIERARCHY"]

    def fmt(v) -> str:
        return " ".join(f"{float(x):.6f}" for x in v)

    def write(j: int, depth: int) -> None:
        ind = "  " * depth
        p = sk.parents[j]
        if p < 0:
            lines.append(f"{ind}ROOT {sk.names[j]}")
        else:
            lines.append(f"{ind}JOINT {sk.names[j]}")
        lines.append(f"{ind}{{")
        lines.append(f"{ind}  OFFSET {fmt(sk.offsets[j]) if p >= 0 else fmt((0, 0, 0))}")
        if p < 0:
            lines.append(f"{ind}  CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation")
        else:
            lines.append(f"{ind}  CHANNELS 3 Zrotation Xrotation Yrotation")
        for c in children[j]:
            write(c, depth + 1)
        for off, name in ends.get(j, []):
            lines.append(f"{ind}  End Site")
            lines.append(f"{ind}  {{")
            lines.append(f"{ind}    OFFSET {fmt(off)}")
            lines.append(f"{ind}  }}")
        lines.append(f"{ind}}}")

    root = sk.parents.index(-1)
    write(root, 0)
    order = []

    def visit(j):
        order.append(j)
        for c in children[j]:
            visit(c)

    visit(root)
    euler = matrix_to_euler_zxy(clip.rotations)  # (T, J, 3)
    lines += ["MOTION", f"Frames: {len(clip)}", f"Frame Time: {1.0 / clip.fps:.8f}"]
    for t in range(len(clip)):
        vals = list(clip.root[t])
        for j in order:
            vals += list(euler[t, j])
        lines.append(" ".join(f"{v:.6f}" for v in vals))
    Path(path).write_text("\n".join(lines) + "\n")


def load_bvh(path: "str | os.PathLike", skeleton: Skeleton | None = SMALL) -> Clip:
    """Read a BVH file. Joint names must be those of ``skeleton`` (the order may differ); ``skeleton=None`` builds
    a skeleton from the file. Any rotation channel order is accepted. DataError when the file is malformed."""
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise DataError(f"motion file not found: {p}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read BVH file {p}: {exc}") from None
    try:
        return _parse_bvh(text, skeleton)
    except DataError as exc:
        raise DataError(f"{p}: {exc}") from None
    except (ValueError, IndexError, KeyError) as exc:
        raise DataError(f"{p} is not a valid BVH file: {type(exc).__name__}: {exc}") from None


def _parse_bvh(text: str, skeleton: Skeleton | None) -> Clip:
    tokens = text.split()
    if not tokens or tokens[0] != "HIERARCHY":
        raise DataError("not a BVH file (it does not start with HIERARCHY)")
    i = 1
    names: list[str] = []
    parents: list[int] = []
    offsets: list[tuple] = []
    channels: list[list[str]] = []
    ends: list[tuple] = []
    stack: list[int] = []
    while tokens[i] != "MOTION":
        tok = tokens[i]
        if tok in ("ROOT", "JOINT"):
            names.append(tokens[i + 1])
            parents.append(stack[-1] if stack else -1)
            offsets.append((0.0, 0.0, 0.0))
            channels.append([])
            i += 2
        elif tok == "End":  # End Site { OFFSET x y z }
            if tokens[i + 2] != "{" or tokens[i + 3] != "OFFSET" or tokens[i + 7] != "}":
                raise DataError("malformed End Site")
            ends.append((stack[-1], tuple(float(x) for x in tokens[i + 4:i + 7]), f"{names[stack[-1]]}_end"))
            i += 8
        elif tok == "{":
            stack.append(len(names) - 1)
            i += 1
        elif tok == "}":
            stack.pop()
            i += 1
        elif tok == "OFFSET":
            offsets[stack[-1]] = tuple(float(x) for x in tokens[i + 1:i + 4])
            i += 4
        elif tok == "CHANNELS":
            n = int(tokens[i + 1])
            channels[stack[-1]] = tokens[i + 2:i + 2 + n]
            i += 2 + n
        else:
            raise DataError(f"unexpected token {tok!r} in the BVH hierarchy")
    if not names:
        raise DataError("the BVH hierarchy has no joints")
    if tokens[i + 1] != "Frames:" or tokens[i + 3] != "Frame" or tokens[i + 4] != "Time:":
        raise DataError("malformed MOTION header (expected 'Frames: N' and 'Frame Time: dt')")
    n_frames = int(tokens[i + 2])
    dt = float(tokens[i + 5])
    if dt <= 0:
        raise DataError(f"frame time must be positive, not {dt}")
    values = np.asarray([float(x) for x in tokens[i + 6:]], dtype=np.float64)
    n_ch = sum(len(c) for c in channels)
    if n_frames < 1 or values.size != n_frames * n_ch:
        raise DataError(f"the BVH motion has {values.size} values; {n_frames} frames x {n_ch} channels expected")
    values = values.reshape(n_frames, n_ch)
    root_pos = np.zeros((n_frames, 3))
    rots = np.zeros((n_frames, len(names), 3, 3))
    col = 0
    for j, chs in enumerate(channels):
        rot_axes, rot_cols = "", []
        for c in chs:
            if c.endswith("position"):
                root_pos[:, "XYZ".index(c[0])] = values[:, col] if parents[j] < 0 else 0.0
            elif c.endswith("rotation"):
                rot_axes += c[0]
                rot_cols.append(col)
            else:
                raise DataError(f"unknown BVH channel {c!r}")
            col += 1
        rots[:, j] = euler_to_matrix(values[:, rot_cols], rot_axes) if rot_axes else np.eye(3)
    if skeleton is None:
        offs = list(offsets)
        offs[0] = tuple(np.asarray(offsets[0]))
        skeleton = Skeleton("bvh", tuple(names), tuple(parents), tuple(offs), tuple(ends))
        return Clip(root_pos + np.asarray(offsets[0]), rots, 1.0 / dt, skeleton)
    if sorted(names) != sorted(skeleton.names):
        missing = sorted(set(skeleton.names) - set(names))
        extra = sorted(set(names) - set(skeleton.names))
        raise DataError(f"the BVH skeleton does not match the {skeleton.name} skeleton"
                        + (f"; missing joints: {', '.join(missing)}" if missing else "")
                        + (f"; unknown joints: {', '.join(extra)}" if extra else ""))
    index = [names.index(n) for n in skeleton.names]
    return Clip(root_pos + np.asarray(offsets[index[0]]), rots[:, index], 1.0 / dt, skeleton)


# --------------------------------------------------------------------------------------------- column values
def load_clip(value: Any, sample_rate: float, skeleton: Skeleton = SMALL) -> Clip:
    """A clip from a MOTION column value: a :class:`Clip`; a (frames, features) array (at ``sample_rate``); a dict
    ``{"motion": array, "fps": n}``; a path to ``.npy`` (features at ``sample_rate``), ``.npz`` (``motion`` and
    optional ``fps``) or ``.bvh``."""
    if isinstance(value, Clip):
        return value
    if isinstance(value, dict):
        if "motion" not in value:
            raise DataError(f"a motion dict needs a 'motion' array; it has {', '.join(sorted(value)) or 'no keys'}")
        return _clip_from_array(value["motion"], float(value.get("fps") or sample_rate), "motion dict", skeleton)
    if isinstance(value, (str, os.PathLike)):
        path = Path(value)
        suffix = path.suffix.lower()
        if suffix == ".bvh":
            return load_bvh(path, skeleton)
        if suffix not in (".npy", ".npz"):
            raise DataError(f"unsupported motion file {path.name!r}: use .npy, .npz or .bvh")
        if not path.exists():
            raise DataError(f"motion file not found: {path}")
        try:
            data = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot read motion file {path}: {exc}") from None
        if suffix == ".npy":
            return _clip_from_array(data, sample_rate, str(path), skeleton)
        with data:
            if "motion" not in data.files:
                raise DataError(f"{path} has no 'motion' array (it has {', '.join(data.files) or 'none'})")
            fps = float(data["fps"]) if "fps" in data.files else sample_rate
            return _clip_from_array(data["motion"], fps, str(path), skeleton)
    if isinstance(value, np.ndarray) or hasattr(value, "__array__") or isinstance(value, (list, tuple)):
        try:
            arr = np.asarray(value, dtype=np.float64)
        except (ValueError, TypeError):
            raise DataError("motion must be a numeric (frames, features) array") from None
        return _clip_from_array(arr, sample_rate, "motion array", skeleton)
    if value is None:
        raise DataError("the motion value is missing (None)")
    raise DataError(f"cannot read a motion clip from a {type(value).__name__}: give a path (.npy/.npz/.bvh), an "
                    "array of features, a {'motion', 'fps'} dict or a Clip")
