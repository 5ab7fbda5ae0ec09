"""ofasys-timeseries against the ofasys plugin conformance suite."""

from __future__ import annotations

from ofasys.testing import BadInput, ModalityConformance

from ofasys_timeseries import data


class TestConformance(ModalityConformance):
    slot_type = "TIMESERIES"
    distribution = "ofasys-timeseries"
    tasks = {"shape": data.SHAPE_INSTRUCTION,
             "shape_minmax": "[TIMESERIES:series,patch=8,normalize=minmax] shape? -> [TEXT:shape,closed_set]"}
    output_types = {"shape": {"text": str}, "shape_minmax": {"text": str}}
    # the bad-input table of the README
    bad_inputs = [
        BadInput("shape", "series", "1, 2, 3", "expects a list of numbers, got str"),
        BadInput("shape", "series", None, "expects a list of numbers, got NoneType"),
        BadInput("shape", "series", [1.0], "at least 2 samples"),
        BadInput("shape", "series", [1.0, "x", 2.0], r"sample 1 \('x'\) is not a number"),
        BadInput("shape", "series", [1.0, float("inf")], "sample 1 is NaN or infinite"),
        BadInput("shape", "series", {"vals": [1, 2]}, "needs a 'values' list"),
        BadInput("shape", "series", [0.0] * 513, "more than max_length=512"),
    ]

    def rows(self, task, n, seed):
        return data.shape_rows(n, seed)
