"""Procedural motions for the small skeleton, with text descriptions (deterministic by seed; nothing downloaded).

Six actions, each with speeds and directions and random jitter (phase, amplitude, speed +-10 %):

=========  ==========================================  ===========================================
action     variants                                     what the body does
=========  ==========================================  ===========================================
walk       slowly / normally / quickly x forward,       alternating legs, counter-swinging arms,
           backward, turning left, turning right        small bounce; turning = curving path
run        slowly / quickly x the same directions       larger, faster strides, bent elbows, lean
jump       low / high x in place / forward              crouch, flight (ballistic root), landing
wave       slowly / quickly x left / right hand         one arm raised, forearm swinging sideways
turn       left / right / around                        turning on the spot with small steps
sit        slowly / quickly                             hips and knees bend, the pelvis lowers
=========  ==========================================  ===========================================

Every clip has :data:`CLIP_FRAMES` frames at :data:`FPS` frames per second and starts at the origin facing +Z.
Rows: ``{"motion": features (T, 69) float32, "text": a paraphrase, "caption": the canonical description,
"action", "speed", "direction"}``.
"""

from __future__ import annotations

import math
import random

import numpy as np

from .skeleton import SMALL, Clip, rot_x, rot_y, rot_z

FPS = 20
CLIP_FRAMES = 24
ACTIONS = ("walk", "run", "jump", "wave", "turn", "sit")
VARIANTS = {
    "walk": [(s, d) for s in ("slowly", "normally", "quickly") for d in ("forward", "backward", "left", "right")],
    "run": [(s, d) for s in ("slowly", "quickly") for d in ("forward", "backward", "left", "right")],
    "jump": [(s, d) for s in ("low", "high") for d in ("in place", "forward")],
    "wave": [(s, d) for s in ("slowly", "quickly") for d in ("left", "right")],
    "turn": [("", d) for d in ("left", "right", "around")],
    "sit": [(s, "") for s in ("slowly", "quickly")],
}
_J = {n: i for i, n in enumerate(SMALL.names)}


def _flex(a):
    """Forward flexion of a hip / shoulder (positive: the limb swings towards +Z)."""
    return rot_x(-np.asarray(a))


def _smooth(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


class _Pose:
    def __init__(self, t: int):
        self.t = t
        self.rot = np.tile(np.eye(3), (t, SMALL.n_joints, 1, 1))
        self.root = np.zeros((t, 3))
        self.root[:, 1] = 0.93

    def set(self, name: str, m):
        self.rot[:, _J[name]] = m

    def clip(self) -> Clip:
        return Clip(self.root, self.rot, float(FPS), SMALL)


def _gait(p: _Pose, tt, freq, hip_amp, knee_amp, arm_amp, elbow, phase, backward=False):
    w = 2 * math.pi * freq * tt + phase
    sign = -1.0 if backward else 1.0
    lh = hip_amp * np.sin(w)
    p.set("l_hip", _flex(lh))
    p.set("r_hip", _flex(-lh))
    # the knee of a leg bends while it swings forward
    lk = knee_amp * np.clip(np.sin(w + sign * math.pi / 2), 0, None) + 0.1
    rk = knee_amp * np.clip(np.sin(w + math.pi + sign * math.pi / 2), 0, None) + 0.1
    p.set("l_knee", rot_x(lk))
    p.set("r_knee", rot_x(rk))
    p.set("l_shoulder", _flex(-arm_amp * np.sin(w)) @ rot_z(0.08))
    p.set("r_shoulder", _flex(arm_amp * np.sin(w)) @ rot_z(-0.08))
    p.set("l_elbow", _flex(np.full_like(tt, elbow)))
    p.set("r_elbow", _flex(np.full_like(tt, elbow)))
    return w


def _travel(p: _Pose, tt, speed, direction, yaw_rate, lean=0.0):
    """Move the root along its heading: forward / backward / curving left / right."""
    heading = np.zeros_like(tt)
    if direction == "left":
        heading = yaw_rate * tt
    elif direction == "right":
        heading = -yaw_rate * tt
    v = -speed if direction == "backward" else speed
    dt = 1.0 / FPS
    x = np.concatenate([[0.0], np.cumsum(v * np.sin(heading[:-1]) * dt)])
    z = np.concatenate([[0.0], np.cumsum(v * np.cos(heading[:-1]) * dt)])
    p.root[:, 0], p.root[:, 2] = x, z
    p.set("pelvis", rot_y(heading) @ rot_x(np.full_like(tt, lean if v > 0 else -lean / 2)))


def make_clip(action: str, speed: str = "", direction: str = "", seed: int = 0) -> Clip:
    """One procedural clip of ``action`` with a ``speed`` and ``direction`` (see :data:`VARIANTS`)."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}; actions: {', '.join(ACTIONS)}")
    rng = random.Random(seed)
    jit = lambda: 1.0 + rng.uniform(-0.1, 0.1)  # noqa: E731
    tt = np.arange(CLIP_FRAMES) / FPS
    p = _Pose(CLIP_FRAMES)
    phase = rng.uniform(0, 2 * math.pi)
    if action in ("walk", "run"):
        if action == "walk":
            v = {"slowly": 0.7, "normally": 1.1, "quickly": 1.5}[speed] * jit()
            freq, hip, knee, arm, elbow, lean, bounce, base = 0.6 + 0.35 * v, 0.3 + 0.1 * v, 0.6, 0.25, 0.25, 0.03, 0.02, 0.93
        else:
            v = {"slowly": 2.2, "quickly": 3.2}[speed] * jit()
            freq, hip, knee, arm, elbow, lean, bounce, base = 1.1 + 0.15 * v, 0.55 * jit(), 1.3, 0.5, 1.4, 0.18, 0.05, 0.88
        w = _gait(p, tt, freq, hip, knee, arm, elbow, phase, backward=direction == "backward")
        _travel(p, tt, v, direction, 1.2 * jit(), lean)
        p.root[:, 1] = base + bounce * np.cos(2 * w)
    elif action == "jump":
        h = {"low": 0.18, "high": 0.42}[speed] * jit()
        flight = 2 * math.sqrt(2 * h / 9.81)
        t0 = 0.25 * jit()
        crouch = np.where(tt < t0, _smooth(tt / t0), 0.0) + np.where(tt >= t0 + flight, _smooth((t0 + flight + 0.3 - tt) / 0.3), 0.0)
        air = (tt >= t0) & (tt < t0 + flight)
        ta = np.clip(tt - t0, 0, flight)
        y = 0.93 - 0.18 * crouch + np.where(air, 9.81 / 2 * ta * (flight - ta), 0.0)
        p.root[:, 1] = y
        hipf = 0.9 * crouch + np.where(air, 0.15, 0.0)
        p.set("l_hip", _flex(hipf))
        p.set("r_hip", _flex(hipf))
        p.set("l_knee", rot_x(1.5 * crouch + np.where(air, 0.2, 0.0)))
        p.set("r_knee", rot_x(1.5 * crouch + np.where(air, 0.2, 0.0)))
        arms = np.where(air, 2.6 * np.sin(math.pi * ta / flight), -0.5 * crouch)
        p.set("l_shoulder", _flex(arms) @ rot_z(0.1))
        p.set("r_shoulder", _flex(arms) @ rot_z(-0.1))
        p.set("l_elbow", _flex(np.full_like(tt, 0.3)))
        p.set("r_elbow", _flex(np.full_like(tt, 0.3)))
        p.set("pelvis", rot_x(0.35 * crouch))
        if direction == "forward":
            vz = 1.6 * jit()
            p.root[:, 2] = vz * np.clip(tt - t0, 0, flight)
    elif action == "wave":
        freq = {"slowly": 1.2, "quickly": 2.6}[speed] * jit()
        w = 2 * math.pi * freq * tt + phase
        side, sign = ("l", 1.0) if direction == "left" else ("r", -1.0)
        other = "r" if side == "l" else "l"
        raise_ = 2.5 * jit() * _smooth(tt / 0.2)
        p.set(f"{side}_shoulder", rot_z(sign * raise_))
        p.set(f"{side}_elbow", rot_z(sign * (0.2 + 0.55 * np.sin(w)) * _smooth(tt / 0.2)))
        p.set(f"{other}_shoulder", rot_z(-sign * 0.08 * np.ones_like(tt)))
        p.set(f"{other}_elbow", _flex(np.full_like(tt, 0.15)))
        p.root[:, 1] = 0.93 + 0.005 * np.sin(2 * math.pi * 0.5 * tt)
        p.set("pelvis", rot_z(-sign * 0.04 * np.ones_like(tt)))
        p.set("neck", rot_z(sign * 0.1 * np.ones_like(tt)))
    elif action == "turn":
        angle = {"left": math.pi / 2, "right": -math.pi / 2, "around": math.pi * rng.choice([1, -1])}[direction] * jit()
        dur = 0.9 * jit()
        heading = angle * _smooth(tt / dur)
        p.set("pelvis", rot_y(heading))
        step = 0.25 * np.sin(2 * math.pi * tt / dur * 1.5 + phase) * (tt < dur)
        p.set("l_hip", _flex(step))
        p.set("r_hip", _flex(-step))
        p.set("l_knee", rot_x(0.1 + np.clip(2 * step, 0, None)))
        p.set("r_knee", rot_x(0.1 + np.clip(-2 * step, 0, None)))
        p.set("l_shoulder", rot_z(0.1 * np.ones_like(tt)))
        p.set("r_shoulder", rot_z(-0.1 * np.ones_like(tt)))
        p.set("neck", rot_y(0.25 * np.sign(angle) * np.exp(-((tt - dur / 2) ** 2) / 0.08)))
    elif action == "sit":
        dur = {"slowly": 1.0, "quickly": 0.5}[speed] * jit()
        s = _smooth((tt - 0.05) / dur)
        p.root[:, 1] = 0.93 - 0.42 * s
        p.root[:, 2] = -0.18 * s
        tilt = 0.5 * np.sin(math.pi * s) + 0.1 * s
        p.set("pelvis", rot_x(tilt))
        p.set("l_hip", _flex(1.45 * s + tilt))
        p.set("r_hip", _flex(1.45 * s + tilt))
        p.set("l_knee", rot_x(1.45 * s))
        p.set("r_knee", rot_x(1.45 * s))
        p.set("l_shoulder", _flex(0.6 * np.sin(math.pi * s)) @ rot_z(0.1))
        p.set("r_shoulder", _flex(0.6 * np.sin(math.pi * s)) @ rot_z(-0.1))
        p.set("l_elbow", _flex(0.3 + 0.9 * s))
        p.set("r_elbow", _flex(0.3 + 0.9 * s))
    return p.clip()


# --------------------------------------------------------------------------------------------- descriptions
def caption(action: str, speed: str, direction: str) -> str:
    """The canonical description, e.g. ``a person walks slowly forward``."""
    if action in ("walk", "run"):
        d = {"forward": "forward", "backward": "backward", "left": "turning left", "right": "turning right"}[direction]
        return f"a person {action}s {speed} {d}"
    if action == "jump":
        return f"a person jumps {speed} {direction}"
    if action == "wave":
        return f"a person waves {speed} with the {direction} hand"
    if action == "turn":
        return "a person turns around" if direction == "around" else f"a person turns to the {direction}"
    return f"a person sits down {speed}"


_GERUND = {"walk": "walking", "run": "running", "jump": "jumping", "wave": "waving", "turn": "turning",
           "sit": "sitting down"}


def paraphrase(action: str, speed: str, direction: str, rng: random.Random) -> str:
    """One of a few phrasings of the same motion."""
    base = caption(action, speed, direction)
    rest = base.split(" ", 3)[3] if base.count(" ") >= 3 else ""
    if action == "sit":
        rest = speed
    if action == "turn":
        rest = "around" if direction == "around" else f"to the {direction}"
    choices = [base, f"someone is {_GERUND[action]} {rest}".strip(), f"the figure is {_GERUND[action]} {rest}".strip()]
    return rng.choice(choices)


def rows(n: int, seed: int = 0, actions: tuple[str, ...] = ACTIONS) -> list[dict]:
    """``n`` rows, actions balanced (round robin), variants and jitter drawn from ``seed``."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        action = actions[i % len(actions)]
        speed, direction = rng.choice(VARIANTS[action])
        clip = make_clip(action, speed, direction, seed=rng.randrange(1 << 30))
        out.append({"motion": clip.to_features(), "text": paraphrase(action, speed, direction, rng),
                    "caption": caption(action, speed, direction), "action": action, "speed": speed,
                    "direction": direction})
    return out


def splits(n_train: int = 480, n_valid: int = 60, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """Train and held-out rows (held-out clips come from other seeds: new jitter and phases)."""
    return rows(n_train, seed), rows(n_valid, seed + 7919)
