"""The metrics this plugin registers (all 0-100, higher is better). Standard library only.

``fn(predictions, references)``: a prediction is what the engine's evaluation takes from the output slot (for a
STRUCT output: the parsed ``struct``; for a ``sql`` output: the executed result dict; for a TEXT output: the
text); a reference is the row's value of the output column.

* ``struct_exact_match``: the predicted structure equals the reference after both are linearised and parsed
  (:func:`ofasys_struct.linearize.canonical`); for SQL, after :func:`ofasys_struct.sql.normalize_sql`.
* ``solved_rate``: sudoku solved (every row, column and box valid; every given of the reference kept).
* ``sql_exact_match``: normalised SQL equality.
* ``execution_accuracy``: the predicted query returns the gold query's rows on the database. The database is
  the one a ``sql`` output ran the prediction on (``[STRUCT:sql,preprocess=sql]``; a row without a database
  is a miss); for a plain-text prediction (``[TEXT:sql]``) it is ``$OFASYS_STRUCT_DATABASE``, and without it
  the metric cannot be computed: it warns and returns NaN (use :func:`ofasys_struct.sql.execution_accuracy`
  with explicit databases).
"""

from __future__ import annotations

import math
import os
import warnings
from typing import Any, Sequence

from . import sudoku
from .linearize import canonical
from .sql import DEFAULT_TIMEOUT, execution_match, normalize_sql

DATABASE_ENV = "OFASYS_STRUCT_DATABASE"


def _check(predictions: Sequence, references: Sequence) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")


def _sql_of(pred: Any) -> str:
    if isinstance(pred, dict):
        return str(pred.get("sql") or "")
    return "" if pred is None else str(pred)


def _same_structure(pred: Any, ref: Any) -> bool:
    if isinstance(pred, dict) and "sql" in pred:
        return normalize_sql(_sql_of(pred)) == normalize_sql(str(ref))
    if pred is None:
        return False
    try:
        return canonical(pred) == canonical(ref)
    except Exception:  # unparsable prediction or reference: not a match
        return False


def struct_exact_match(predictions: Sequence[Any], references: Sequence[Any]) -> float:
    _check(predictions, references)
    if not predictions:
        return 0.0
    return 100.0 * sum(_same_structure(p, r) for p, r in zip(predictions, references)) / len(predictions)


def solved_rate(predictions: Sequence[Any], references: Sequence[Any]) -> float:
    return sudoku.solved_rate(predictions, references)


def sql_exact_match(predictions: Sequence[Any], references: Sequence[Any]) -> float:
    _check(predictions, references)
    if not predictions:
        return 0.0
    hits = sum(normalize_sql(_sql_of(p)) == normalize_sql(str(r or "")) for p, r in zip(predictions, references))
    return 100.0 * hits / len(predictions)


def execution_accuracy(predictions: Sequence[Any], references: Sequence[Any],
                       timeout: float = DEFAULT_TIMEOUT) -> float:
    _check(predictions, references)
    if not predictions:
        return 0.0
    fallback = os.environ.get(DATABASE_ENV) or None
    hits = 0
    for p, r in zip(predictions, references):
        if isinstance(p, dict):  # a sql output: it ran on the row's database (or says why it could not)
            db = p.get("database")
            if db is None:
                continue  # no database in the row: the query could not run, a miss
        elif fallback is not None:
            db = fallback
        else:
            warnings.warn("execution_accuracy needs a database: use a sql output ([STRUCT:sql,preprocess=sql] with "
                          f"the database column of the row) or set {DATABASE_ENV}; returning NaN", RuntimeWarning,
                          stacklevel=2)
            return math.nan
        hits += execution_match(_sql_of(p), str(r or ""), db, timeout=timeout)
    return 100.0 * hits / len(predictions)
