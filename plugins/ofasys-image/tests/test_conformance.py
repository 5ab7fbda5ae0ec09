"""ofasys-image against the core's plugin conformance suite (``ofasys.testing``): IMAGE as an input, BOX as an
input, an output and inside a repetition group, on small generated shapes scenes."""

from __future__ import annotations

from ofasys.testing import BadInput, ModalityConformance
from ofasys_image.datasets import INSTRUCTIONS, shapes_task

SMALL = ",patch_image_size=64"  # the scenes are 64 px: keep the conformance run cheap


def _small(instruction: str) -> str:
    return instruction.replace("[IMAGE:img]", f"[IMAGE:img{SMALL}]")


class TestImageConformance(ModalityConformance):
    slot_type = "IMAGE"
    distribution = "ofasys-image"
    tasks = {"caption": _small(INSTRUCTIONS["caption"]), "vqa": _small(INSTRUCTIONS["vqa"])}
    output_types = {"caption": {"text": str}, "vqa": {"text": str}}
    bad_inputs = [
        BadInput("caption", "img", "/no/such/image.png", "no such image file"),
        BadInput("caption", "img", b"not an image", "not an image file PIL can read"),
        BadInput("caption", "img", 42, "must hold an image"),
    ]

    def rows(self, task, n, seed):
        return shapes_task(task, n, seed=seed)


class TestBoxConformance(ModalityConformance):
    slot_type = "BOX"
    distribution = "ofasys-image"
    tasks = {"grounding": _small(INSTRUCTIONS["grounding"]),
             "grounded_caption": _small(INSTRUCTIONS["grounded_caption"]),
             "detection": _small(INSTRUCTIONS["detection"])}
    output_types = {"grounding": {"box": list}, "grounded_caption": {"text": str},
                    "detection": {"box": list, "text": str}}
    bad_inputs = [
        BadInput("grounded_caption", "region", [1, 2, 3], r"must hold a box \[x0, y0, x1, y1\]"),
        BadInput("grounded_caption", "region", [1, 2, "x", 4], "not a number"),
        BadInput("grounded_caption", "region", [1, 2, float("nan"), 4], "NaN or infinite"),
        BadInput("grounding", "region", {"x0": 1}, "needs the keys x0, y0, x1, y1"),
    ]

    def rows(self, task, n, seed):
        return shapes_task(task, n, seed=seed)
