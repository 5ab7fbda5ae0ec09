"""ofasys-text against the core's plugin conformance suite (``ofasys.testing``)."""

from __future__ import annotations

from ofasys.testing import BadInput, ModalityConformance
from ofasys_text import demo


class TestConformance(ModalityConformance):
    slot_type = "TEXT"
    distribution = "ofasys-text"
    tasks = {name: demo.INSTRUCTIONS[name] for name in ("sentiment", "reverse")}
    output_types = {"sentiment": {"text": str}, "reverse": {"text": str}}
    bad_inputs = [BadInput("reverse", "words", 42, "must hold a string"),
                  BadInput("reverse", "words", None, "must hold a string")]

    def rows(self, task, n, seed):
        return demo.GENERATORS[task](n, seed)
