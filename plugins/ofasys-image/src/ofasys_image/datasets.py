"""Bundled data for demos and tests; nothing is downloaded.

**Shapes** (procedural, deterministic by seed): coloured circles, squares and triangles on a lightly tinted
background, several per image, never overlapping, each (colour, shape) at most once per image so every object
can be named unambiguously. :func:`shapes_scenes` gives the scenes; :func:`shapes_task` turns them into rows for
one task (columns as in :data:`INSTRUCTIONS`):

=====================  =========================================================================
``caption``            ``img``, ``caption`` ("a red circle and a blue square", left to right)
``vqa``                ``img``, ``question``, ``answer`` (colour, shape, count or yes/no)
``entailment``         ``img``, ``statement``, ``label`` ("yes" if the statement is true, else "no")
``grounding``          ``img``, ``expression`` ("the red circle"), ``region`` (its box)
``grounded_caption``   ``img``, ``region``, ``caption`` ("red circle")
``detection``          ``img``, ``boxes`` (list), ``labels`` (list, left to right)
=====================  =========================================================================

Boxes are ``[x0, y0, x1, y1]`` in pixels (``x1``/``y1`` exclusive edges of the drawn shape).

**Digits**: scikit-learn's 8x8 handwritten digits (1797 images shipped inside scikit-learn; a test-only
dependency): :func:`digits_rows`.
"""

from __future__ import annotations

import io
import random
from typing import Any

COLORS = {"red": (220, 30, 30), "green": (30, 170, 50), "blue": (40, 70, 230), "yellow": (235, 200, 20)}
SHAPES = ("circle", "square", "triangle")
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five")
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

INSTRUCTIONS = {
    "caption": "[IMAGE:img] what does the image describe? -> [TEXT:caption]",
    "vqa": "[IMAGE:img] [TEXT:question] -> [TEXT:answer,closed_set]",
    "entailment": "[IMAGE:img] does the image describe \" [TEXT:statement] \"? -> [TEXT:label,closed_set]",
    "grounding": "[IMAGE:img] which region does the text \" [TEXT:expression] \" describe? -> [BOX:region]",
    "grounded_caption": "[IMAGE:img] what does the region describe? region: [BOX:region] -> [TEXT:caption]",
    "detection": "[IMAGE:img] what are the objects in the image? -> ([BOX:boxes] [TEXT:labels])*",
    "digits": "[IMAGE:img] what digit is this? -> [TEXT:label,closed_set]",
}
TASKS = ("caption", "vqa", "entailment", "grounding", "grounded_caption", "detection")


def draw_shape(draw, shape: str, box: list[float], color: tuple[int, int, int]) -> None:
    """Draw a filled ``circle``, ``square`` or ``triangle`` inside ``box`` (x0, y0, x1, y1; x1/y1 exclusive) with
    a PIL ``ImageDraw``; the video plugin draws its frames with it too."""
    x0, y0, x1, y1 = box
    if shape == "circle":
        draw.ellipse([x0, y0, x1 - 1, y1 - 1], fill=color)
    elif shape == "square":
        draw.rectangle([x0, y0, x1 - 1, y1 - 1], fill=color)
    else:
        draw.polygon([(x0, y1 - 1), (x1 - 1, y1 - 1), ((x0 + x1 - 1) / 2, y0)], fill=color)


def _overlaps(a: list[int], b: list[int], gap: int) -> bool:
    return not (a[2] + gap <= b[0] or b[2] + gap <= a[0] or a[3] + gap <= b[1] or b[3] + gap <= a[1])


def shapes_scene(rng: random.Random, size: int = 64, min_objects: int = 1, max_objects: int = 3,
                 min_frac: float = 0.22, max_frac: float = 0.38) -> dict:
    """One scene: ``{"image": PIL RGB, "objects": [{"shape", "color", "box"}, ...]}``, objects sorted by ``x0``."""
    from PIL import Image, ImageDraw

    tint = [rng.randint(225, 250) for _ in range(3)]
    img = Image.new("RGB", (size, size), tuple(tint))
    draw = ImageDraw.Draw(img)
    n = rng.randint(min_objects, max_objects)
    kinds = rng.sample([(c, s) for c in COLORS for s in SHAPES], n)
    objects: list[dict] = []
    gap = max(1, size // 32)
    for color, shape in kinds:
        for _ in range(100):
            side = rng.randint(max(4, int(size * min_frac)), max(5, int(size * max_frac)))
            w = side
            h = side if shape != "triangle" else max(4, int(side * rng.uniform(0.85, 1.0)))
            x0, y0 = rng.randint(0, size - w), rng.randint(0, size - h)
            box = [x0, y0, x0 + w, y0 + h]
            if all(not _overlaps(box, o["box"], gap) for o in objects):
                objects.append({"shape": shape, "color": color, "box": box})
                break
    for o in objects:
        draw_shape(draw, o["shape"], o["box"], COLORS[o["color"]])
    objects.sort(key=lambda o: (o["box"][0], o["box"][1]))
    return {"image": img, "objects": objects}


def shapes_scenes(n: int, seed: int = 0, size: int = 64, min_objects: int = 1, max_objects: int = 3) -> list[dict]:
    """``n`` scenes, deterministic by ``seed``."""
    rng = random.Random(seed)
    return [shapes_scene(rng, size, min_objects, max_objects) for _ in range(n)]


def _name(o: dict) -> str:
    return f"{o['color']} {o['shape']}"


def _caption(objects: list[dict]) -> str:
    return " and ".join(f"a {_name(o)}" for o in objects)


def _vqa(scene: dict, rng: random.Random) -> tuple[str, str]:
    objs = scene["objects"]
    kind = rng.choice(["color", "shape", "count", "exists"])
    o = rng.choice(objs)
    if kind == "color" and sum(x["shape"] == o["shape"] for x in objs) == 1:
        return f"what color is the {o['shape']}?", o["color"]
    if kind == "shape" and sum(x["color"] == o["color"] for x in objs) == 1:
        return f"what shape is the {o['color']} object?", o["shape"]
    if kind == "count":
        return "how many shapes are there?", NUMBER_WORDS[len(objs)]
    present = {(x["color"], x["shape"]) for x in objs}
    if rng.random() < 0.5:
        c, s = o["color"], o["shape"]
    else:
        c, s = rng.choice([(c, s) for c in COLORS for s in SHAPES if (c, s) not in present])
    return f"is there a {c} {s}?", "yes" if (c, s) in present else "no"


def _statement(scene: dict, rng: random.Random) -> tuple[str, str]:
    """A statement about the scene and whether it holds ("yes"/"no"), true half of the time: a colour is
    present, a shape is present, the number of shapes, or a (colour, shape) object is present."""
    objs = scene["objects"]
    truth = rng.random() < 0.5
    kind = rng.choices(["color", "shape", "count", "object"], weights=[3, 3, 2, 2])[0]
    label = "yes" if truth else "no"
    colors = {o["color"] for o in objs}
    shapes = {o["shape"] for o in objs}
    if kind == "color":
        pool = sorted(colors) if truth else sorted(set(COLORS) - colors)
        if pool:
            return f"there is a {rng.choice(pool)} shape", label
    if kind == "shape" or kind == "color":
        pool = sorted(shapes) if truth else sorted(set(SHAPES) - shapes)
        if pool:
            return f"there is a {rng.choice(pool)}", label
    if kind == "count":
        k = len(objs) if truth else rng.choice([m for m in range(1, 5) if m != len(objs)])
        return f"there {'is' if k == 1 else 'are'} {NUMBER_WORDS[k]} shape{'' if k == 1 else 's'}", label
    present = {(x["color"], x["shape"]) for x in objs}
    if truth:
        o = rng.choice(objs)
        return f"there is a {_name(o)}", "yes"
    c, s = rng.choice([(c, s) for c in COLORS for s in SHAPES if (c, s) not in present])
    return f"there is a {c} {s}", "no"


def _png(img) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def shapes_task(task: str, n: int, seed: int = 0, size: int = 64, max_objects: int | None = None,
                as_png: bool = False, min_frac: float = 0.22, max_frac: float = 0.38) -> list[dict]:
    """``n`` rows of a shapes task (see the module docstring), deterministic by ``seed``.

    ``max_objects`` defaults to 2 for ``caption`` and 3 otherwise; shapes are ``min_frac``-``max_frac`` of the
    image side. ``as_png`` stores images as PNG bytes instead of PIL images. Each row also has ``objects`` (the
    scene's ground truth).
    """
    if task not in TASKS:
        raise ValueError(f"unknown shapes task {task!r}; tasks: {', '.join(TASKS)}")
    top = max_objects or (2 if task == "caption" else 3)
    # each task draws from its own stream, so tasks built with one seed use different scenes
    rng = random.Random(f"{task}:{seed}")
    rows = []
    for _ in range(n):
        scene = shapes_scene(rng, size, 1, top, min_frac, max_frac)
        objs = scene["objects"]
        row: dict[str, Any] = {"img": _png(scene["image"]) if as_png else scene["image"], "objects": objs}
        if task == "caption":
            row["caption"] = _caption(objs)
        elif task == "vqa":
            row["question"], row["answer"] = _vqa(scene, rng)
        elif task == "entailment":
            row["statement"], row["label"] = _statement(scene, rng)
        elif task in ("grounding", "grounded_caption"):
            o = rng.choice(objs)
            row["region"] = list(o["box"])
            if task == "grounding":
                row["expression"] = f"the {_name(o)}"
            else:
                row["caption"] = _name(o)
        else:
            row["boxes"] = [list(o["box"]) for o in objs]
            row["labels"] = [_name(o) for o in objs]
        rows.append(row)
    return rows


def shapes_splits(task: str, n_train: int = 800, n_valid: int = 100, seed: int = 0, size: int = 64,
                  **kwargs: Any) -> tuple[list[dict], list[dict]]:
    """Train and held-out rows of a shapes task, drawn from different seeds."""
    return (shapes_task(task, n_train, seed, size, **kwargs),
            shapes_task(task, n_valid, seed + 100_003, size, **kwargs))


def digits_rows(split: str = "train", test_fraction: float = 0.2, seed: int = 0, words: bool = True) -> list[dict]:
    """scikit-learn's 8x8 digits as rows ``{"img": 8x8 PIL image, "label": "seven"}`` (``words=False``: "7").

    The 1797 images are split deterministically by ``seed`` (``test_fraction`` of them for ``split="test"``).
    Needs scikit-learn (the ``test`` extra of ofasys-image); nothing is downloaded: the data ship inside it.
    """
    if split not in ("train", "test"):
        raise ValueError("split must be 'train' or 'test'")
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ImportError("digits_rows needs scikit-learn: pip install 'ofasys-image[test]' "
                          "(or pip install scikit-learn)") from None
    import numpy as np
    from PIL import Image

    data = load_digits()
    order = list(range(len(data.target)))
    random.Random(seed).shuffle(order)
    cut = int(round(len(order) * (1 - test_fraction)))
    chosen = order[:cut] if split == "train" else order[cut:]
    rows = []
    for i in chosen:
        pixels = (np.asarray(data.images[i]) * (255.0 / 16.0)).round().astype(np.uint8)
        label = int(data.target[i])
        rows.append({"img": Image.fromarray(255 - pixels),
                     "label": DIGIT_WORDS[label] if words else str(label)})
    return rows
