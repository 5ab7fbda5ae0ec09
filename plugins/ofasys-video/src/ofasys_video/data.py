"""Bundled data: procedurally generated short clips of a moving shape, written as real H.264 mp4 files with PyAV
so that decoding (decord) is exercised for real. Deterministic by seed; nothing is downloaded.

Each clip (32 x 32 px by default, 8-12 frames at 8 fps) shows one shape (circle, square, triangle; the colours
and shapes of :mod:`ofasys_image.datasets`) on a dark background, moving left, right, up or down across
the frame, and one event: nothing, it changes colour (in the middle third of the clip), it appears (absent from
the first frames, up to a third of the clip) or it disappears (absent from the last frames, up to a third). Every clip comes with:

* ``direction`` (classification, closed set of 4);
* ``caption``: "a red circle moves left and turns blue", "a green square appears and moves up"...;
* a question and its ``answer`` (QA): what shape is it / which way does it move / what colour is it at the end
  / what happens to it (nothing, changes, appears, disappears).

:func:`clip_rows` returns rows whose ``clip`` column holds either mp4 bytes (default) or the path of an mp4 file
written under ``out_dir``.
"""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Any

DIRECTIONS = ("left", "right", "up", "down")
EVENTS = ("nothing", "changes", "appears", "disappears")
QUESTIONS = {
    "shape": "what shape is in the video?",
    "direction": "which way does the shape move?",
    "end_colour": "what colour is the shape at the end?",
    "event": "what happens to the shape?",
}
BACKGROUND = (36, 36, 44)
FPS = 8
COLOUR_NAMES = ("blue", "green", "red", "yellow")  # the keys of ofasys_image.datasets.COLORS
SHAPE_NAMES = ("circle", "square", "triangle")  # ofasys_image.datasets.SHAPES
QA_ANSWERS = SHAPE_NAMES + DIRECTIONS + COLOUR_NAMES + EVENTS
INSTRUCTIONS = {
    "direction": f'[VIDEO:clip] which way does the shape move? -> [TEXT:direction,closed_set="{"|".join(DIRECTIONS)}"]',
    "caption": "[VIDEO:clip] what does the video show? -> [TEXT:caption]",
    "qa": f'[VIDEO:clip] [TEXT:question] -> [TEXT:answer,closed_set="{"|".join(QA_ANSWERS)}"]',
}
METRICS = {"direction": "accuracy", "caption": "cider", "qa": "accuracy"}


def _palette() -> tuple[dict[str, tuple[int, int, int]], tuple[str, ...]]:
    from ofasys_image.datasets import COLORS, SHAPES

    return dict(COLORS), tuple(SHAPES)


def _draw_shape(draw, shape: str, box: list[float], color: tuple[int, int, int]) -> None:
    from ofasys_image.datasets import draw_shape

    draw_shape(draw, shape, box, color)


def make_clip(rng: random.Random, size: int = 32, min_frames: int = 8, max_frames: int = 12) -> dict:
    """One clip's frames (``(T, H, W, 3)`` uint8) and its description."""
    import numpy as np
    from PIL import Image, ImageDraw

    colors, shapes = _palette()
    names = sorted(colors)
    t = rng.randint(min_frames, max_frames)
    shape = rng.choice(shapes)
    color = rng.choice(names)
    direction = rng.choice(DIRECTIONS)
    event = rng.choice(EVENTS)
    end_color = rng.choice([c for c in names if c != color]) if event == "changes" else color
    obj = max(6, round(size * 0.3))  # shape side
    travel = size - obj - 2  # the shape crosses the frame
    # the moving axis: start so that the whole path stays inside; the other axis: anywhere
    lo, hi = 1, size - obj - 1
    along0 = rng.randint(lo, max(lo, hi - travel))
    across = rng.randint(lo, hi)
    # the event's frame: a colour change in the middle third; an appearance in the first third and a
    # disappearance in the last third, so that the shape is visible in most frames and its motion stays visible
    third = max(1, t // 3)
    when = {"appears": rng.randint(1, third), "disappears": rng.randint(t - third, t - 1)}.get(
        event, rng.randint(third, max(third, t - third)))
    frames = np.empty((t, size, size, 3), dtype=np.uint8)
    for i in range(t):
        frac = i / max(1, t - 1)
        along = along0 + travel * (frac if direction in ("right", "down") else 1 - frac)
        x, y = (along, across) if direction in ("left", "right") else (across, along)
        img = Image.new("RGB", (size, size), BACKGROUND)
        visible = not ((event == "appears" and i < when) or (event == "disappears" and i >= when))
        if visible:
            c = colors[end_color if (event == "changes" and i >= when) else color]
            _draw_shape(ImageDraw.Draw(img), shape, [x, y, x + obj, y + obj], c)
        frames[i] = np.asarray(img)
    caption = f"a {color} {shape}"
    if event == "appears":
        caption += f" appears and moves {direction}"
    elif event == "disappears":
        caption += f" moves {direction} and disappears"
    elif event == "changes":
        caption += f" moves {direction} and turns {end_color}"
    else:
        caption += f" moves {direction}"
    return {"frames": frames, "shape": shape, "color": color, "end_color": end_color, "direction": direction,
            "event": event, "caption": caption, "num_frames": t}


def encode_mp4(frames: Any, fps: int = FPS, crf: int = 12) -> bytes:
    """H.264 mp4 bytes of ``(T, H, W, 3)`` uint8 frames (PyAV; even sides; near-lossless at the default crf)."""
    import av

    buf = io.BytesIO()
    t, h, w = frames.shape[:3]
    with av.open(buf, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = w, h
        stream.pix_fmt = "yuv444p"  # no chroma subsampling: tiny shapes keep their colours
        stream.options = {"crf": str(crf), "preset": "ultrafast", "tune": "zerolatency"}
        stream.thread_count = 1
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


def write_zero_frame_mp4(path: "str | Path", size: int = 32, fps: int = FPS) -> Path:
    """An mp4 container with a video stream header and no frames (a documented bad input)."""
    import av

    path = Path(path)
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        container.start_encoding()
        for packet in stream.encode():
            container.mux(packet)
    return path


def _qa(clip: dict, rng: random.Random) -> tuple[str, str]:
    kind = rng.choice(sorted(QUESTIONS))
    answer = {"shape": clip["shape"], "direction": clip["direction"], "end_colour": clip["end_color"],
              "event": clip["event"]}[kind]
    return QUESTIONS[kind], answer


def clip_rows(n: int, seed: int = 0, size: int = 32, out_dir: "str | Path | None" = None, min_frames: int = 8,
              max_frames: int = 12, prefix: str = "clip") -> list[dict]:
    """``n`` rows ``{"clip", "direction", "caption", "question", "answer", "event", "shape", "color"}``.

    ``clip`` holds the mp4 bytes, or (with ``out_dir``) the path of ``{out_dir}/{prefix}-{i}.mp4``."""
    rng = random.Random(seed)
    rows = []
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        clip = make_clip(rng, size, min_frames, max_frames)
        data = encode_mp4(clip["frames"])
        if out_dir is not None:
            path = out_dir / f"{prefix}-{i}.mp4"
            path.write_bytes(data)
            value: Any = str(path)
        else:
            value = data
        question, answer = _qa(clip, rng)
        rows.append({"clip": value, "direction": clip["direction"], "caption": clip["caption"],
                     "question": question, "answer": answer, "event": clip["event"], "shape": clip["shape"],
                     "color": clip["color"], "end_color": clip["end_color"], "num_frames": clip["num_frames"]})
    return rows


def splits(n_train: int, n_valid: int, seed: int = 0, size: int = 32, out_dir: "str | Path | None" = None,
           **kw: Any) -> tuple[list[dict], list[dict]]:
    """Train and held-out rows from different seeds (held-out clips are fresh draws)."""
    train = clip_rows(n_train, seed, size, None if out_dir is None else Path(out_dir) / "train", prefix="train", **kw)
    valid = clip_rows(n_valid, seed + 10_000, size, None if out_dir is None else Path(out_dir) / "valid",
                      prefix="valid", **kw)
    return train, valid


def blind_scores(train: list[dict], valid: list[dict]) -> dict[str, float]:
    """What a model that ignores the video scores on ``valid`` (percent): the most frequent training direction;
    for QA, the most frequent training answer to each question."""
    from collections import Counter

    top_dir = Counter(r["direction"] for r in train).most_common(1)[0][0]
    per_q: dict[str, Counter] = {}
    for r in train:
        per_q.setdefault(r["question"], Counter())[r["answer"]] += 1
    best = {q: c.most_common(1)[0][0] for q, c in per_q.items()}
    return {"direction": 100.0 * sum(r["direction"] == top_dir for r in valid) / len(valid),
            "qa": 100.0 * sum(best.get(r["question"]) == r["answer"] for r in valid) / len(valid)}
