"""The STRUCT postprocessor: generated ids -> ``{"text": linear text, "struct": structure}``.

``struct`` is the text parsed back with the slot's variant (:func:`ofasys_struct.linearize.parse`): a grid (list
of rows), a table (``{"title", "header", "rows"}``), triples (``[[s, r, o], ...]``) or a schema; the default
``struct`` variant recognises the format of the text. A ``sql`` output is executed read-only against the
SQLite database of the row (see :mod:`ofasys_struct.sql`), and ``struct`` is the query's result:
``{"sql", "database", "columns", "rows", "error", "truncated"}``.
"""

from __future__ import annotations

from typing import Any

from ofasys.components import Postprocessor

from .linearize import KINDS, parse
from .schema import database_path
from .sql import DEFAULT_TIMEOUT, QueryResult, run_query


class StructPostprocessor(Postprocessor):
    """Postprocessor of a ``STRUCT`` output slot (built by :func:`ofasys_struct.plugin.ofasys_postprocess`).

    ``database_column``: for the ``sql`` variant, the column of the row holding the SQLite file to run the
    query on (the ``database=`` attribute, else the only input STRUCT slot that may hold a database).
    """

    def __init__(self, slot: Any, vocab: Any, database_column: str | None = None, tokenizer: Any = None):
        super().__init__(slot, vocab)
        from ofasys_text.tokenizer import TextTokenizer

        self.tokenizer = tokenizer or TextTokenizer()
        block = vocab.block("text")
        self._start, self._stop = block.start, block.stop
        attrs = dict(getattr(slot, "attrs", None) or {})
        self.variant = (getattr(slot, "components", None) or {}).get("preprocess") or "struct"
        self.database_column = database_column
        self.timeout = float(attrs.get("timeout") or DEFAULT_TIMEOUT)

    def decode(self, prediction: Any) -> str:
        """The text of generated ids: up to the first ``</s>``, ``text`` block ids only, stripped."""
        if hasattr(prediction, "tolist"):
            prediction = prediction.tolist()
        if isinstance(prediction, int):
            prediction = [prediction]
        local = []
        for token in prediction or ():
            token = int(token)
            if token == self.vocab.eos:
                break
            if self._start <= token < self._stop:
                local.append(token - self._start)
        return self.tokenizer.decode(local).strip()

    def __call__(self, prediction: Any, meta: dict | None = None) -> dict:
        text = self.decode(prediction)
        if self.variant == "sql":
            return {"text": text, "struct": self.execute(text, (meta or {}).get("row") or {}).to_dict()}
        kind = self.variant if self.variant in KINDS else None
        try:
            struct = parse(text, kind) if text else None
        except Exception:  # a malformed generation is a wrong answer, not a crash
            struct = None
        return {"text": text, "struct": struct}

    def execute(self, sql: str, row: dict) -> QueryResult:
        """Run the generated query on the row's database (read-only, with the slot's ``timeout``)."""
        if self.database_column is None:
            return QueryResult(sql=sql, error="no database column to run the query on: add database=<column> to "
                                              "the sql output slot")
        value = row.get(self.database_column)
        path = database_path(value)
        if path is None:
            return QueryResult(sql=sql, error=f"column '{self.database_column}' does not hold a path to a SQLite "
                                              f"file, so the query was not run")
        return run_query(path, sql, timeout=self.timeout)
