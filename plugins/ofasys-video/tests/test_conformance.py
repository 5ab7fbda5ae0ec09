"""ofasys-video against the core's plugin conformance suite (``ofasys.testing``)."""

from __future__ import annotations

from ofasys.testing import BadInput, ModalityConformance
from ofasys_video import data, tasks


class TestConformance(ModalityConformance):
    slot_type = "VIDEO"
    distribution = "ofasys-video"
    tasks = {name: tasks.instruction(name) for name in ("direction", "qa", "caption")}
    output_types = {"direction": {"text": str}, "qa": {"text": str}, "caption": {"text": str}}
    heavy_modules = ModalityConformance.heavy_modules + ("av", "numpy", "PIL")
    bad_inputs = [BadInput("direction", "clip", "/nonexistent/clip.mp4", "does not exist"),
                  BadInput("direction", "clip", b"just some text, not a video", "is not a video"),
                  BadInput("direction", "clip", 42, "must hold a video")]

    def rows(self, task, n, seed):
        return data.clip_rows(n, seed)
