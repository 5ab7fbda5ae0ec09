"""The plugin's bundled tasks: instructions, data splits and the ``ofasys demo`` tasks (with a GIF showcase)."""

from __future__ import annotations

import html
from pathlib import Path

from .data import CLIP_FRAMES, FPS, splits

TEXT_TO_MOTION = f"[TEXT:text] show this motion. -> [MOTION:motion,max_length={CLIP_FRAMES},sample_rate={FPS}]"
CAPTION = f"[MOTION:motion,max_length={CLIP_FRAMES},sample_rate={FPS}] what is the person doing? -> [TEXT:caption]"


def _rows(split: str, n: int, seed: int) -> list[dict]:
    train, valid = splits(n_train=n if split == "train" else 1, n_valid=n if split != "train" else 1, seed=seed)
    return train if split == "train" else valid


def _showcase(served, rows: list[dict], out_dir) -> list[dict]:
    """GIFs of four generations (held-out texts, one per action where possible)."""
    out_dir = Path(out_dir)
    picked, seen = [], set()
    for r in rows:
        if r["action"] not in seen:
            picked.append(r)
            seen.add(r["action"])
        if len(picked) == 4:
            break
    outs = served.inference("motion_text_to_motion", data=[{"text": r["text"]} for r in picked])
    items = []
    for i, (r, o) in enumerate(zip(picked, outs)):
        name = f"motion_{i}.gif"
        o.save_gif(out_dir / name, title=r["text"])
        items.append({"title": r["text"], "html": f"<p><code>{html.escape(r['text'])}</code></p>"
                                                 f"<img src='{name}' alt='{html.escape(r['text'])}'>"})
    return items


def demo_tasks() -> list:
    from ofasys.spec import DemoTask

    return [
        DemoTask(name="motion_text_to_motion", modality="motion", instruction=TEXT_TO_MOTION, rows=_rows,
                 metric="motion_class_accuracy", n_train=480, n_valid=36, micro_batch_size=16,
                 generation={"steps": 20}, showcase=_showcase),
        DemoTask(name="motion_captioning", modality="motion", instruction=CAPTION, rows=_rows,
                 metric="action_accuracy", n_train=480, n_valid=36, micro_batch_size=16),
    ]
