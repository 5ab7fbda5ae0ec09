"""Reading a video clip and choosing which frames to keep.

:func:`open_video` turns a column value (a path, ``bytes``, a binary file object, or already-decoded frames as a
``(T, H, W, 3)`` uint8 array) into a :class:`Clip`; :func:`sample_indices` picks the frame indices a slot's
``num_frames`` / ``stride`` / ``fps`` attributes ask for; :meth:`Clip.frames` decodes only those frames.

Every unreadable input is a :class:`ofasys.errors.DataError` whose message says what is wrong (missing file,
empty file, not a video, no frames, truncated or corrupt): the engine counts, reports and skips the sample.

decord is imported here (never by the plugin's entry module).
"""

from __future__ import annotations

import io
import math
import os
import random
from dataclasses import dataclass
from typing import Any

from ofasys.errors import DataError

#: the first bytes of container formats decord (FFmpeg) reads; used only to word the error for a file that is
#: clearly something else (a text file named .mp4)
_TEXT_SAMPLE = 256


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _looks_like_text(head: bytes) -> bool:
    if not head:
        return False
    if b"\x00" in head:
        return False
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    printable = sum(ch.isprintable() or ch in "\r\n\t" for ch in text)
    return printable >= 0.95 * len(text)


def _first_line(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()
    # decord's messages start with "[hh:mm:ss] /path/video_reader.cc:NN: "; keep the reason
    line = msg[0] if msg else type(exc).__name__
    if ".cc:" in line:
        line = line.split(".cc:", 1)[1].split(":", 1)[-1].strip()
    return line[:160]


@dataclass
class Clip:
    """An opened clip: ``len(clip)`` frames at ``fps`` frames per second (0: unknown); ``width`` x ``height``
    are known for arrays of frames (0 for files until frames are decoded)."""

    reader: Any
    num_frames: int
    fps: float
    width: int
    height: int
    where: str

    def __len__(self) -> int:
        return self.num_frames

    def frames(self, indices: list[int]):
        """The frames at ``indices`` as a ``(len(indices), H, W, 3)`` uint8 numpy array (decoded once each)."""
        import numpy as np

        if isinstance(self.reader, np.ndarray):
            return self.reader[indices]
        unique = sorted(set(indices))
        try:
            got = self.reader.get_batch(unique).asnumpy()
        except Exception as exc:  # decord raises its own error types for packets it cannot decode
            raise DataError(f"{self.where}: the video could not be decoded (truncated or corrupt): "
                            f"{_first_line(exc)}") from None
        if got.ndim != 4 or got.shape[0] != len(unique):
            raise DataError(f"{self.where}: the video decoder returned {got.shape[0] if got.ndim == 4 else 0} of "
                            f"{len(unique)} requested frames (truncated file?)")
        pos = {i: k for k, i in enumerate(unique)}
        return got[[pos[i] for i in indices]]


def open_video(value: Any, where: str = "video", num_threads: int = 1) -> Clip:
    """Open a clip from a path (``str`` or ``os.PathLike``), ``bytes``/``bytearray``, a binary file object, or a
    ``(T, H, W, 3)`` uint8 array / tensor of frames (fps unknown: 0). Raises :class:`DataError` with the reason."""
    import numpy as np

    if hasattr(value, "detach") and hasattr(value, "numpy"):  # a torch tensor of frames
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        if value.ndim != 4 or value.shape[-1] != 3:
            raise DataError(f"{where}: an array of frames must have shape (T, H, W, 3), not {tuple(value.shape)}")
        if value.shape[0] == 0:
            raise DataError(f"{where}: the array of frames has zero frames")
        if value.dtype != np.uint8:
            value = np.clip(value, 0, 255).astype(np.uint8)
        return Clip(value, int(value.shape[0]), 0.0, int(value.shape[2]), int(value.shape[1]), where)

    if isinstance(value, (str, os.PathLike)):
        path = os.fspath(value)
        if not path:
            raise DataError(f"{where}: the video path is an empty string")
        if not os.path.exists(path):
            raise DataError(f"{where}: video file '{path}' does not exist")
        if os.path.isdir(path):
            raise DataError(f"{where}: '{path}' is a directory, not a video file")
        size = os.path.getsize(path)
        if size == 0:
            raise DataError(f"{where}: video file '{path}' is empty (0 bytes)")
        with open(path, "rb") as f:
            head = f.read(_TEXT_SAMPLE)
        name = f"video file '{path}'"
        source: Any = path
    elif isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        if not data:
            raise DataError(f"{where}: the video bytes are empty")
        head = data[:_TEXT_SAMPLE]
        name = f"the video bytes ({len(data)} bytes)"
        source = io.BytesIO(data)
    elif hasattr(value, "read"):
        data = value.read()
        if not isinstance(data, (bytes, bytearray)):
            raise DataError(f"{where}: the file object must be opened in binary mode")
        return open_video(bytes(data), where, num_threads)
    else:
        kind = "missing (None)" if value is None else f"a {type(value).__name__} ({_describe(value)})"
        raise DataError(f"{where} must hold a video: a file path, bytes, a binary file object or a (T, H, W, 3) "
                        f"array of frames, not {kind}")

    if _looks_like_text(head):
        snippet = head[:40].decode("utf-8", "replace").strip().replace("\n", " ")
        raise DataError(f"{where}: {name} is not a video: it holds text ({snippet!r}...)")
    import decord

    try:
        reader = decord.VideoReader(source, ctx=decord.cpu(0), num_threads=num_threads)
    except Exception as exc:  # decord raises RuntimeError or its DECORDError for unreadable data
        reason = _first_line(exc)
        if "st_nb" in reason or "stream" in reason.lower():
            raise DataError(f"{where}: {name} has no decodable video stream (zero frames?)") from None
        raise DataError(f"{where}: {name} could not be decoded (truncated or not a video): {reason}") from None
    n = len(reader)
    if n <= 0:
        raise DataError(f"{where}: {name} has zero frames")
    try:
        fps = float(reader.get_avg_fps())
    except Exception:  # pragma: no cover - decord reports fps for every container it opens
        fps = 0.0
    if not math.isfinite(fps) or fps < 0:
        fps = 0.0
    return Clip(reader, n, fps, 0, 0, where)  # frame size: known once frames are decoded


def sample_indices(total: int, num_frames: int, stride: int | None = None, fps: float | None = None,
                   source_fps: float = 0.0, rng: random.Random | None = None) -> list[int]:
    """``num_frames`` frame indices of a ``total``-frame clip, in time order.

    * default (neither ``stride`` nor ``fps``): the clip is cut into ``num_frames`` equal segments and one frame
      is taken per segment: its middle without ``rng`` (evaluation), a random frame of it with ``rng``
      (training jitter). A clip shorter than ``num_frames`` repeats frames (frame ``k`` of the output is frame
      ``floor((k + 0.5) * total / num_frames)``, or a random one of its segment).
    * ``stride``: every ``stride``-th frame from a start offset: the window is centred without ``rng``, starts at
      a random frame with ``rng``.
    * ``fps``: frames ``source_fps / fps`` apart (the clip's own rate; 1 when unknown), placed like ``stride``.

    Indices past the end of the clip repeat its last frame (a clip shorter than the window is padded by
    repetition).
    """
    if total < 1:
        raise ValueError("a clip needs at least one frame")
    if num_frames < 1:
        raise ValueError("num_frames must be at least 1")
    if stride is None and fps is None:
        out = []
        seg = total / num_frames
        for k in range(num_frames):
            lo = k * seg
            if rng is None:
                i = int(lo + seg / 2)
            else:
                hi = max(lo, (k + 1) * seg - 1e-9)
                i = int(rng.uniform(lo, hi)) if hi > lo else int(lo)
            out.append(min(total - 1, max(0, i)))
        return out
    step = float(stride) if stride is not None else (source_fps / fps if source_fps > 0 else 1.0)
    step = max(step, 1e-6)
    span = step * (num_frames - 1)  # frames between the first and the last sampled frame
    room = total - 1 - span
    if room <= 0:
        start = 0.0
    elif rng is None:
        start = room / 2
    else:
        start = rng.uniform(0, room)
    return [min(total - 1, int(round(start + k * step))) for k in range(num_frames)]
