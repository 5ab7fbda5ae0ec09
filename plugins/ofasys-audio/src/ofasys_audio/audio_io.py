"""Reading audio: a path, bytes, or an array with its sample rate -> mono float32 at the model's rate.

Everything goes through :mod:`soundfile` (torchaudio 2.11 has no I/O); resampling is
``torchaudio.functional.resample``. Problems with one value raise :class:`ofasys.errors.DataError`, which the
engine counts and reports as a skipped sample:

* a missing file, an unreadable or corrupt file, an array without a sample rate;
* zero-length audio (no samples, or all samples non-finite);
* audio longer than ``max_duration`` seconds when ``long_audio="skip"`` (the default: a transcript cannot be cut
  with its audio); ``long_audio="cut"`` keeps the first ``max_duration`` seconds instead (only those are read).

Multi-channel audio is mixed down to mono (mean of the channels); 8-bit, 16-bit, 24-bit, 32-bit and float files
are all read as floats in [-1, 1] by soundfile; integer arrays are scaled by their type's range.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from ofasys.errors import DataError


@dataclass
class Audio:
    """Decoded audio: ``samples`` (n,) float32 mono at ``sample_rate``; ``source_rate``/``channels`` as read;
    ``cut`` True when ``long_audio="cut"`` shortened it."""

    samples: np.ndarray
    sample_rate: int
    source_rate: int
    channels: int
    cut: bool = False

    @property
    def duration(self) -> float:
        return len(self.samples) / float(self.sample_rate)


def _describe(value: Any) -> str:
    if isinstance(value, (str, os.PathLike)):
        return f"audio file {os.fspath(value)!r}"
    if isinstance(value, (bytes, bytearray)):
        return f"audio bytes ({len(value)} bytes)"
    return f"audio value of type {type(value).__name__}"


def _int_to_float(a: np.ndarray) -> np.ndarray:
    if a.dtype == np.uint8:
        return (a.astype(np.float32) - 128.0) / 128.0
    if np.issubdtype(a.dtype, np.integer):
        return a.astype(np.float32) / float(-np.iinfo(a.dtype).min)
    return a.astype(np.float32)


def _read_file(src: Any, what: str, max_duration: float | None, long_audio: str) -> tuple[np.ndarray, int, bool]:
    import soundfile as sf

    try:
        with sf.SoundFile(src) as f:
            rate, frames = int(f.samplerate), int(f.frames)
            if rate <= 0:
                raise DataError(f"{what} has an invalid sample rate {rate}")
            cut = False
            if max_duration and frames > max_duration * rate:
                if long_audio != "cut":
                    raise DataError(f"{what} is {frames / rate:.1f} s long, more than max_duration={max_duration:g} s "
                                    "(skipped; set long_audio=cut to keep its beginning, or raise max_duration)")
                frames, cut = int(max_duration * rate), True
            data = f.read(frames, dtype="float32", always_2d=True)
    except DataError:
        raise
    except Exception as exc:  # soundfile.LibsndfileError, RuntimeError, TypeError for odd objects
        raise DataError(f"{what} could not be decoded: {exc}") from None
    return data, rate, cut


def load_audio(value: Any, sample_rate: int = 16000, max_duration: float | None = 30.0,
               long_audio: str = "skip", trim: bool = False) -> Audio:
    """Decode ``value`` to mono float32 at ``sample_rate``.

    ``value``: a path (``str``/``PathLike``), encoded bytes (WAV, FLAC, OGG...), a ``(array, sample_rate)`` tuple,
    or a dict with ``array`` + ``sampling_rate``/``sample_rate`` (Hugging Face style), ``path`` or ``bytes``.
    Arrays are (n,) or (n, channels); a 2-D array with fewer rows than columns is taken as (channels, n).
    ``trim``: cut leading and trailing silence (:func:`trim_silence`) after resampling.
    """
    what = _describe(value)
    cut = False
    if isinstance(value, dict):
        if value.get("array") is not None:
            rate = value.get("sampling_rate", value.get("sample_rate"))
            return load_audio((value["array"], rate), sample_rate, max_duration, long_audio, trim)
        if value.get("bytes") is not None:
            return load_audio(value["bytes"], sample_rate, max_duration, long_audio, trim)
        if value.get("path") is not None:
            return load_audio(value["path"], sample_rate, max_duration, long_audio, trim)
        raise DataError(f"an audio dict needs 'array' (with 'sampling_rate'), 'bytes' or 'path'; got keys "
                        f"{sorted(value)}")
    if isinstance(value, (str, os.PathLike)):
        path = os.path.expanduser(os.fspath(value))
        if not os.path.isfile(path):
            raise DataError(f"audio file not found: {path!r}")
        data, rate, cut = _read_file(path, what, max_duration, long_audio)
    elif isinstance(value, (bytes, bytearray, memoryview)):
        if len(value) == 0:
            raise DataError("zero-length audio: the audio bytes are empty")
        data, rate, cut = _read_file(io.BytesIO(bytes(value)), what, max_duration, long_audio)
    elif isinstance(value, (tuple, list)) and len(value) == 2 and not np.isscalar(value[0]):
        arr, rate = value
        if rate is None or not isinstance(rate, (int, float, np.integer, np.floating)) or rate <= 0:
            raise DataError(f"an audio array needs a positive sample rate, got {rate!r}")
        rate = int(rate)
        try:
            import torch

            if isinstance(arr, torch.Tensor):
                arr = arr.detach().cpu().numpy()
        except ImportError:  # pragma: no cover - torch is a dependency
            pass
        data = np.asarray(arr)
        if data.ndim == 1:
            data = data[:, None]
        elif data.ndim == 2:
            if data.shape[0] < data.shape[1]:
                data = data.T  # (channels, n) -> (n, channels)
        else:
            raise DataError(f"an audio array must be 1-D or 2-D, got shape {data.shape}")
        data = _int_to_float(data)
        if max_duration and data.shape[0] > max_duration * rate:
            if long_audio != "cut":
                raise DataError(f"audio array is {data.shape[0] / rate:.1f} s long, more than "
                                f"max_duration={max_duration:g} s (skipped; set long_audio=cut to keep its beginning)")
            data, cut = data[: int(max_duration * rate)], True
    else:
        raise DataError(f"cannot read {what}: give a path, bytes, (array, sample_rate) or a dict")
    channels = int(data.shape[1]) if data.ndim == 2 else 1
    mono = data.mean(axis=1) if data.ndim == 2 else data
    mono = np.ascontiguousarray(mono, dtype=np.float32)
    if mono.size == 0:
        raise DataError(f"zero-length audio: {what} has no samples")
    if not np.isfinite(mono).all():
        raise DataError(f"{what} contains NaN or infinite samples")
    if rate != sample_rate:
        mono = resample(mono, rate, sample_rate)
    if trim:
        mono = trim_silence(mono, sample_rate)
    return Audio(mono, int(sample_rate), int(rate), channels, cut)


TRIM_THRESHOLD = 0.01  # |sample| below this (-40 dBFS) counts as silence
TRIM_MARGIN = 0.1  # seconds of silence kept before the first and after the last loud sample


def trim_silence(samples: np.ndarray, sample_rate: int, threshold: float = TRIM_THRESHOLD,
                 margin: float = TRIM_MARGIN) -> np.ndarray:
    """Cut leading and trailing silence (samples below ``threshold``), keeping ``margin`` seconds; audio that is
    silent throughout is returned unchanged. The bundled corpus was trimmed the same way."""
    loud = np.nonzero(np.abs(samples) > threshold)[0]
    if len(loud) == 0:
        return samples
    m = int(margin * sample_rate)
    return samples[max(int(loud[0]) - m, 0): int(loud[-1]) + m + 1]


def resample(x: np.ndarray, orig: int, new: int) -> np.ndarray:
    """Band-limited resampling with torchaudio (sinc interpolation, Hann window)."""
    import torch
    import torchaudio.functional as AF

    return AF.resample(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), int(orig), int(new)).numpy()


def save_audio(path: "str | os.PathLike", samples: np.ndarray, sample_rate: int) -> str:
    """Write ``samples`` (float in [-1, 1]) with soundfile; the format follows the extension (.wav, .flac, .ogg),
    16-bit PCM for WAV and FLAC. Returns the path."""
    import soundfile as sf

    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    subtype = "PCM_16" if ext in (".wav", ".flac") else None
    sf.write(path, np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0), int(sample_rate), subtype=subtype)
    return path
