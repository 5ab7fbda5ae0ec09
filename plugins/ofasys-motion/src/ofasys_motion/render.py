"""Stick-figure pictures of clips (matplotlib, Agg backend): an animated GIF, or one still of overlaid frames."""

from __future__ import annotations

import os

import numpy as np


def _frames(positions: np.ndarray, bones, title: str | None, size: float, dpi: int):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from PIL import Image

    p = np.asarray(positions, dtype=np.float64)
    centre = p[:, 0, [0, 2]].mean(0)
    span = max(1.2, float(np.abs(p[..., [0, 2]] - centre).max()) + 0.3)
    fig = plt.figure(figsize=(size, size), dpi=dpi)
    ax = fig.add_subplot(projection="3d")
    fig.subplots_adjust(left=0, right=1, bottom=0, top=0.92)
    images = []
    for t in range(len(p)):
        ax.cla()
        ax.set_xlim(centre[0] - span, centre[0] + span)
        ax.set_ylim(centre[1] - span, centre[1] + span)  # plot y = motion z (depth)
        ax.set_zlim(0, 2 * span if span > 1.2 else 2.2)
        ax.view_init(elev=15, azim=-60)
        ax.set_box_aspect((1, 1, 1), zoom=1.35)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_zticks([])
        xx, zz = np.meshgrid(np.linspace(centre[0] - span, centre[0] + span, 2),
                             np.linspace(centre[1] - span, centre[1] + span, 2))
        ax.plot_surface(xx, zz, np.zeros_like(xx), color="0.9", alpha=0.5)
        for a, b in bones:
            ax.plot([p[t, a, 0], p[t, b, 0]], [p[t, a, 2], p[t, b, 2]], [p[t, a, 1], p[t, b, 1]], color="C0", lw=2.5)
        ax.plot(p[: t + 1, 0, 0], p[: t + 1, 0, 2], np.zeros(t + 1), color="C3", lw=1)
        if title:
            ax.set_title(title, fontsize=8)
        fig.canvas.draw()
        buf = np.asarray(fig.canvas.buffer_rgba())[..., :3]
        images.append(Image.fromarray(buf.copy()))
    plt.close(fig)
    return images


def save_gif(clip, path: "str | os.PathLike", title: str | None = None, size: float = 3.0, dpi: int = 60) -> str:
    """An animated GIF of ``clip`` (a :class:`~ofasys_motion.skeleton.Clip`), one GIF frame per clip frame, at the
    clip's frame rate, seen from the front-left; the root's path is drawn on the floor."""
    images = _frames(clip.positions(), clip.skeleton.bones(), title, size, dpi)
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(round(1000 / clip.fps)), loop=0)
    return str(path)
