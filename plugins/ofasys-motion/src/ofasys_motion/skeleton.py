"""The skeleton, the clip representation and its conversions (numpy only).

A :class:`Skeleton` is a joint hierarchy with rest-pose offsets (metres, Y up, the body faces +Z). The bundled
:data:`SMALL` skeleton has 11 rotating joints and 5 end sites (head, hands, feet): 16 points for positions.

A :class:`Clip` stores per frame the root (pelvis) translation and every joint's local rotation matrix. Its
*features* (what the model sees, one row per frame, ``3 + 6 * n_joints`` values) are

* ``[0:2]`` the root's horizontal velocity (m/s) in the heading frame (x sideways, z forward of the body's
  facing direction at that frame), ``[2]`` the root height (m);
* ``[3:]`` per joint the 6-D rotation representation (Zhou et al. 2019): the first two columns of its local
  rotation matrix (the root's is its global orientation, so the heading lives there).

The horizontal start position is not part of the features: a clip decoded from features starts at x = z = 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Skeleton:
    """A joint hierarchy: ``names``, ``parents`` (-1 for the root; parents precede children), ``offsets`` (J, 3)
    rest-pose offsets from the parent (the root's is its rest position), and ``end_sites``: ``(joint, offset,
    name)`` leaf points carried by a joint (hands, feet, head top)."""

    name: str
    names: tuple[str, ...]
    parents: tuple[int, ...]
    offsets: tuple[tuple[float, float, float], ...]
    end_sites: tuple[tuple[int, tuple[float, float, float], str], ...] = ()

    @property
    def n_joints(self) -> int:
        return len(self.names)

    @property
    def n_points(self) -> int:
        return len(self.names) + len(self.end_sites)

    @property
    def n_features(self) -> int:
        return 3 + 6 * self.n_joints

    def offsets_array(self) -> np.ndarray:
        return np.asarray(self.offsets, dtype=np.float64)

    def bones(self) -> list[tuple[int, int]]:
        """(parent point, child point) pairs over the ``n_points`` points (joints then end sites)."""
        out = [(p, j) for j, p in enumerate(self.parents) if p >= 0]
        out += [(j, self.n_joints + k) for k, (j, _, _) in enumerate(self.end_sites)]
        return out

    def forward_kinematics(self, root: np.ndarray, rotations: np.ndarray) -> np.ndarray:
        """Global positions (T, n_points, 3) of the joints then end sites, from the root translation (T, 3) and
        local rotation matrices (T, J, 3, 3)."""
        root = np.asarray(root, dtype=np.float64)
        rot = np.asarray(rotations, dtype=np.float64)
        t = root.shape[0]
        off = self.offsets_array()
        g_rot = np.zeros_like(rot)
        pos = np.zeros((t, self.n_points, 3))
        for j, p in enumerate(self.parents):
            if p < 0:
                g_rot[:, j] = rot[:, j]
                pos[:, j] = root
            else:
                g_rot[:, j] = g_rot[:, p] @ rot[:, j]
                pos[:, j] = pos[:, p] + np.einsum("tij,j->ti", g_rot[:, p], off[j])
        for k, (j, o, _) in enumerate(self.end_sites):
            pos[:, self.n_joints + k] = pos[:, j] + np.einsum("tij,j->ti", g_rot[:, j], np.asarray(o, float))
        return pos


SMALL = Skeleton(
    name="small16",
    names=("pelvis", "spine", "neck", "l_shoulder", "l_elbow", "r_shoulder", "r_elbow", "l_hip", "l_knee", "r_hip",
           "r_knee"),
    parents=(-1, 0, 1, 1, 3, 1, 5, 0, 7, 0, 9),
    offsets=((0.0, 0.95, 0.0), (0.0, 0.10, 0.0), (0.0, 0.45, 0.0), (0.18, 0.40, 0.0), (0.0, -0.28, 0.0),
             (-0.18, 0.40, 0.0), (0.0, -0.28, 0.0), (0.10, -0.05, 0.0), (0.0, -0.43, 0.0), (-0.10, -0.05, 0.0),
             (0.0, -0.43, 0.0)),
    end_sites=((2, (0.0, 0.22, 0.0), "head"), (4, (0.0, -0.26, 0.0), "l_hand"), (6, (0.0, -0.26, 0.0), "r_hand"),
               (8, (0.0, -0.42, 0.05), "l_foot"), (10, (0.0, -0.42, 0.05), "r_foot")),
)
N_FEATURES = SMALL.n_features  # 69


# --------------------------------------------------------------------------------------------- rotations
def rot_x(a) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([o, z, z], -1), np.stack([z, c, -s], -1), np.stack([z, s, c], -1)], -2)


def rot_y(a) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([c, z, s], -1), np.stack([z, o, z], -1), np.stack([-s, z, c], -1)], -2)


def rot_z(a) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([c, -s, z], -1), np.stack([s, c, z], -1), np.stack([z, z, o], -1)], -2)


def matrix_to_6d(m: np.ndarray) -> np.ndarray:
    """(..., 3, 3) -> (..., 6): the first two columns."""
    m = np.asarray(m)
    return np.concatenate([m[..., :, 0], m[..., :, 1]], axis=-1)


def sixd_to_matrix(d6: np.ndarray) -> np.ndarray:
    """(..., 6) -> (..., 3, 3) by Gram-Schmidt. Raises ValueError for degenerate (zero or parallel) columns."""
    d6 = np.asarray(d6, dtype=np.float64)
    a, b = d6[..., :3], d6[..., 3:]
    na = np.linalg.norm(a, axis=-1, keepdims=True)
    if np.any(na < 1e-8):
        raise ValueError("degenerate 6-D rotation (a zero column)")
    x = a / na
    b = b - (x * b).sum(-1, keepdims=True) * x
    nb = np.linalg.norm(b, axis=-1, keepdims=True)
    if np.any(nb < 1e-8):
        raise ValueError("degenerate 6-D rotation (parallel columns)")
    y = b / nb
    z = np.cross(x, y)
    return np.stack([x, y, z], axis=-1)


def euler_to_matrix(angles_deg: np.ndarray, order: str) -> np.ndarray:
    """Intrinsic Euler angles (..., 3) in degrees, applied in ``order`` (e.g. "ZXY": R = Rz @ Rx @ Ry)."""
    a = np.radians(np.asarray(angles_deg, dtype=np.float64))
    fn = {"X": rot_x, "Y": rot_y, "Z": rot_z}
    m = None
    for i, axis in enumerate(order):
        r = fn[axis](a[..., i])
        m = r if m is None else m @ r
    return m


def matrix_to_euler_zxy(m: np.ndarray) -> np.ndarray:
    """(..., 3, 3) -> (..., 3) degrees (z, x, y) with R = Rz @ Rx @ Ry."""
    m = np.asarray(m, dtype=np.float64)
    # R = Rz Rx Ry: R[2,1] = sin x; R[2,0] = -cos x sin y; R[2,2] = cos x cos y; R[0,1] = -sin z cos x; R[1,1] = cos z cos x
    x = np.arcsin(np.clip(m[..., 2, 1], -1.0, 1.0))
    y = np.arctan2(-m[..., 2, 0], m[..., 2, 2])
    z = np.arctan2(-m[..., 0, 1], m[..., 1, 1])
    return np.degrees(np.stack([z, x, y], axis=-1))


def heading_of(root_rot: np.ndarray) -> np.ndarray:
    """Yaw (radians) of the body's facing direction (+Z of the root rotated, projected on the floor)."""
    fwd = np.asarray(root_rot)[..., :, 2]
    return np.arctan2(fwd[..., 0], fwd[..., 2])


# --------------------------------------------------------------------------------------------- clips
@dataclass
class Clip:
    """A motion clip: ``root`` (T, 3) translation, ``rotations`` (T, J, 3, 3) local rotations, ``fps``."""

    root: np.ndarray
    rotations: np.ndarray
    fps: float = 20.0
    skeleton: Skeleton = field(default=SMALL)

    def __len__(self) -> int:
        return int(self.root.shape[0])

    def __repr__(self) -> str:
        return f"Clip({len(self)} frames at {self.fps:g} fps, skeleton {self.skeleton.name})"

    @property
    def duration(self) -> float:
        return len(self) / float(self.fps)

    def positions(self) -> np.ndarray:
        """Global point positions (T, n_points, 3): joints then end sites."""
        return self.skeleton.forward_kinematics(self.root, self.rotations)

    def to_features(self) -> np.ndarray:
        """(T, 3 + 6 J) float32 features (module docstring)."""
        t = len(self)
        head = heading_of(self.rotations[:, 0])
        vel = np.zeros((t, 2))
        if t > 1:
            d = (self.root[1:, [0, 2]] - self.root[:-1, [0, 2]]) * self.fps
            c, s = np.cos(head[:-1]), np.sin(head[:-1])
            # world (x, z) -> heading frame: rotate by -heading about Y; the last frame repeats its predecessor
            vel[:-1, 0] = c * d[:, 0] - s * d[:, 1]
            vel[:-1, 1] = s * d[:, 0] + c * d[:, 1]
            vel[-1] = vel[-2]
        feats = np.concatenate([vel, self.root[:, 1:2], matrix_to_6d(self.rotations).reshape(t, -1)], axis=1)
        return feats.astype(np.float32)

    @classmethod
    def from_features(cls, feats: np.ndarray, fps: float = 20.0, skeleton: Skeleton = SMALL) -> "Clip":
        """Inverse of :meth:`to_features` (the clip starts at x = z = 0). ValueError for a wrong width, non-finite
        values or degenerate rotations."""
        f = np.asarray(feats, dtype=np.float64)
        if f.ndim != 2 or f.shape[1] != skeleton.n_features:
            raise ValueError(f"motion features must be (frames, {skeleton.n_features}) for the {skeleton.name} "
                             f"skeleton, not {tuple(f.shape)}")
        if not np.all(np.isfinite(f)):
            raise ValueError("motion features contain NaN or infinite values")
        t = f.shape[0]
        rot = sixd_to_matrix(f[:, 3:].reshape(t, skeleton.n_joints, 6))
        head = heading_of(rot[:, 0])
        c, s = np.cos(head), np.sin(head)
        vx = c * f[:, 0] + s * f[:, 1]
        vz = -s * f[:, 0] + c * f[:, 1]
        root = np.zeros((t, 3))
        root[:, 1] = f[:, 2]
        if t > 1:
            root[1:, 0] = np.cumsum(vx[:-1]) / fps
            root[1:, 2] = np.cumsum(vz[:-1]) / fps
        return cls(root, rot, float(fps), skeleton)

    def resample(self, fps: float) -> "Clip":
        """The clip at another frame rate (linear interpolation of features; rotations re-orthonormalised)."""
        fps = float(fps)
        if abs(fps - self.fps) < 1e-6 or len(self) < 2:
            return Clip(self.root.copy(), self.rotations.copy(), fps if len(self) < 2 else self.fps, self.skeleton)
        feats = self.to_features().astype(np.float64)
        n_new = max(1, int(round(len(self) * fps / self.fps)))
        src_t = np.arange(len(self)) / self.fps
        new_t = np.arange(n_new) / fps
        new = np.stack([np.interp(new_t, src_t, feats[:, k]) for k in range(feats.shape[1])], axis=1)
        y0 = self.root[0, [0, 2]]
        out = Clip.from_features(new, fps, self.skeleton)
        out.root[:, 0] += y0[0]
        out.root[:, 2] += y0[1]
        return out

    def crop(self, start: int, length: int) -> "Clip":
        return Clip(self.root[start:start + length].copy(), self.rotations[start:start + length].copy(), self.fps,
                    self.skeleton)


def joint_position_error(a: np.ndarray, b: np.ndarray) -> float:
    """Mean Euclidean distance (metres) between corresponding points of two (T, P, 3) position arrays, over the
    common frames."""
    n = min(len(a), len(b))
    if n == 0:
        return math.inf
    return float(np.linalg.norm(np.asarray(a[:n]) - np.asarray(b[:n]), axis=-1).mean())
