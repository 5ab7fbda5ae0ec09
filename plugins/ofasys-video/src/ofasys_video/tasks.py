"""The video tasks as one-line instructions, small settings for CPU runs, and the ``ofasys demo`` tasks.

Small settings (``nano`` on CPU): 32 x 32 px frames, 4 sampled frames, 8-px patches through the shared
``image_patch`` adaptor (4 x 4 cells per frame, 64 video positions).
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from . import data

FRAME_SIZE = 32
SMALL_VIDEO = f"[VIDEO:clip,num_frames=4,patch_image_size={FRAME_SIZE},frame_adaptor=image_patch]"


def instruction(task: str, video: str = SMALL_VIDEO) -> str:
    """The instruction of ``task`` (``direction``, ``caption``, ``qa``) with the VIDEO slot ``video``."""
    return data.INSTRUCTIONS[task].replace("[VIDEO:clip]", video)


def frame_strip(clip: Any, indices: list[int] | None = None, scale: int = 4):
    """A PIL image: the frames at ``indices`` (default: every frame) side by side, enlarged ``scale`` times."""
    from PIL import Image

    from .decode import open_video

    c = open_video(clip, "showcase clip")
    idx = list(range(len(c))) if indices is None else list(indices)
    frames = c.frames(idx)
    h, w = frames.shape[1:3]
    strip = Image.new("RGB", (len(idx) * (w * scale + 2), h * scale), (255, 255, 255))
    for k, f in enumerate(frames):
        strip.paste(Image.fromarray(f).resize((w * scale, h * scale), Image.Resampling.NEAREST),
                    (k * (w * scale + 2), 0))
    return strip


def save_gif(clip: Any, path: "str | Path", scale: int = 4, fps: int = data.FPS) -> Path:
    """An animated GIF of every frame of ``clip``."""
    from PIL import Image

    from .decode import open_video

    c = open_video(clip, "showcase clip")
    frames = c.frames(list(range(len(c))))
    h, w = frames.shape[1:3]
    images = [Image.fromarray(f).resize((w * scale, h * scale), Image.Resampling.NEAREST) for f in frames]
    path = Path(path)
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    return path


def showcase_rows(served: Any, name: str, task: str, rows: list[dict], out_dir: Path, n: int = 4) -> list[dict]:
    """Gallery items for the trained task ``name`` of kind ``task`` (``direction``, ``qa``, ``caption``): each
    clip as a GIF and as the strip of the 4 frames the model saw, with the question, the prediction and the
    truth."""
    from .decode import open_video, sample_indices

    out_dir = Path(out_dir)
    picked = rows[:n]
    preds = served.inference(name, picked)
    column = {"direction": "direction", "qa": "answer", "caption": "caption"}[task]
    items = []
    for i, (row, pred) in enumerate(zip(picked, preds)):
        gif = save_gif(row["clip"], out_dir / f"video-{task}-{i}.gif")
        total = len(open_video(row["clip"], "showcase clip"))
        strip = frame_strip(row["clip"], sample_indices(total, 4))
        strip_path = out_dir / f"video-{task}-{i}-frames.png"
        strip.save(strip_path)
        question = row.get("question") if task == "qa" else data.INSTRUCTIONS[task].split("]", 1)[1].split("->")[0]
        ok = "&#10003;" if str(pred.text).strip() == row[column] else "&#10007;"
        items.append({"title": f"{task} #{i}",
                      "html": f"<img src='{gif.name}' width='128'> <img src='{strip_path.name}'><br>"
                              f"<b>{html.escape(str(question).strip())}</b><br>predicted: "
                              f"<b>{html.escape(str(pred.text))}</b> {ok} (truth: {html.escape(row[column])})"})
    return items


def demo_tasks() -> list:
    """The tasks this plugin contributes to ``ofasys demo``: direction of motion and video QA on generated clips
    (mp4 bytes in the rows)."""
    from ofasys.spec import DemoTask

    def rows_of(task: str):
        def rows(split: str, n: int, seed: int) -> list[dict]:
            offset = 0 if split == "train" else 10_000  # held-out clips come from other seeds
            return data.clip_rows(n, seed * 7 + offset + (0 if task == "direction" else 500_000), FRAME_SIZE)
        return rows

    def showcase_of(task: str):
        def showcase(served: Any, rows: list[dict], out_dir: Path) -> list[dict]:
            return showcase_rows(served, f"video_{task}", task, rows, out_dir)
        return showcase

    return [DemoTask(name=f"video_{t}", modality="video", instruction=instruction(t), rows=rows_of(t),
                     metric=data.METRICS[t], n_train=400, n_valid=60, micro_batch_size=16,
                     showcase=showcase_of(t))
            for t in ("direction", "qa")]

