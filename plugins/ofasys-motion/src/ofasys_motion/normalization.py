"""Normalisation statistics of motion features: per-feature mean and standard deviation.

The bundled statistics (``stats.json`` next to this module) are those of 3000 procedural clips
(:func:`ofasys_motion.data.rows`, seed 12345); regenerate them with ``python -m ofasys_motion.normalization``.
Standard deviations are floored (:data:`STD_FLOOR`) so that features that barely move in the corpus (the 6-D
columns of a joint that hardly rotates) do not explode when a user's clip moves them.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np

from ofasys.errors import ConfigError

STATS_FILE = Path(__file__).with_name("stats.json")
STD_FLOOR = 0.05


def compute_stats(features: list[np.ndarray]) -> dict:
    """``{"mean": [...], "std": [...]}`` over every frame of ``features`` (a list of (T, F) arrays)."""
    allf = np.concatenate([np.asarray(f, dtype=np.float64) for f in features], axis=0)
    return {"mean": allf.mean(0).round(6).tolist(), "std": np.maximum(allf.std(0), STD_FLOOR).round(6).tolist()}


@lru_cache(maxsize=8)
def load_stats(path: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) float32 arrays from a JSON file (default: the bundled corpus's)."""
    p = Path(path) if path else STATS_FILE
    try:
        d = json.loads(p.read_text())
        mean, std = np.asarray(d["mean"], dtype=np.float32), np.asarray(d["std"], dtype=np.float32)
    except FileNotFoundError:
        raise ConfigError(f"motion statistics file not found: {p}") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{p} is not a motion statistics file ({{'mean': [...], 'std': [...]}}): {exc}") from None
    if mean.shape != std.shape or mean.ndim != 1 or np.any(std <= 0):
        raise ConfigError(f"{p}: mean and std must be equal-length lists with positive std")
    return mean, std


if __name__ == "__main__":  # pragma: no cover - regenerates the bundled file
    from .data import rows

    stats = compute_stats([r["motion"] for r in rows(3000, seed=12345)])
    STATS_FILE.write_text(json.dumps(stats))
    print(f"wrote {STATS_FILE}")
