"""ofasys-motion against the core's plugin conformance suite (``ofasys.testing``): MOTION as an input (captioning)
and an output (text to motion by diffusion), on the bundled procedural corpus."""

from __future__ import annotations

import numpy as np

from ofasys.testing import BadInput, ModalityConformance
from ofasys_motion import data
from ofasys_motion.tasks import CAPTION, TEXT_TO_MOTION


class TestMotionConformance(ModalityConformance):
    slot_type = "MOTION"
    distribution = "ofasys-motion"
    tasks = {"caption": CAPTION, "text_to_motion": TEXT_TO_MOTION}
    output_types = {"caption": {"text": str},
                    "text_to_motion": {"motion": np.ndarray, "positions": np.ndarray, "fps": float}}
    generation = {"max_len": 8}
    bad_inputs = [
        BadInput("caption", "motion", "/no/such/clip.bvh", "motion file not found"),
        BadInput("caption", "motion", np.zeros((24, 10)), r"shape \(frames, 69\)"),
        BadInput("caption", "motion", np.full((24, 69), np.nan), "NaN or infinite"),
        BadInput("caption", "motion", {"fps": 20}, "needs a 'motion' array"),
        BadInput("caption", "motion", 3.5, "cannot read a motion clip from a float"),
        BadInput("text_to_motion", "motion", data.make_clip("walk", "slowly", "forward").to_features()[:5],
                 "too short: 5 frames"),
    ]

    def rows(self, task, n, seed):
        return data.rows(n, seed)
