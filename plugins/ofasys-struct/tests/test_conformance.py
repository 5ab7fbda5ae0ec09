"""ofasys-struct against the core's plugin conformance suite (``ofasys.testing``): a table as an input, a sudoku
grid as an output."""

from __future__ import annotations

from ofasys.testing import BadInput, ModalityConformance
from ofasys_struct import data
from ofasys_struct.tasks import INSTRUCTIONS


class TestConformance(ModalityConformance):
    slot_type = "STRUCT"
    distribution = "ofasys-struct"
    tasks = {"table_qa": INSTRUCTIONS["table_qa"], "sudoku": INSTRUCTIONS["sudoku"]}
    output_types = {"table_qa": {"text": str}, "sudoku": {"struct": list}}
    bad_inputs = [
        BadInput("table_qa", "table", 42, "column 'table' of a STRUCT slot"),
        BadInput("table_qa", "table", [["name", "price"], ["apple"]], "column 'table' of a STRUCT slot"),
        BadInput("sudoku", "puzzle", {"no": "shape"}, "column 'puzzle' of a STRUCT slot"),
    ]

    def rows(self, task, n, seed):
        if task == "sudoku":
            return data.sudoku(n, size=4, seed=seed)
        return data.table_qa(n, seed=seed)
