"""The STRUCT tasks of ``ofasys demo``: text-to-SQL executed on the bundled SQLite shop database, and 4x4 sudoku.

The gallery shows each generated SQL query with the rows SQLite returns for it, beside the reference query's.
"""

from __future__ import annotations

import functools
import html
import itertools
import tempfile
from pathlib import Path

DEMO = ("text_to_sql", "sudoku")


@functools.lru_cache(maxsize=4)
def _splits(name: str, seed: int) -> dict:
    from .tasks import make_splits

    # a directory of this process's own: two demos running at once must not rewrite each other's database
    directory = Path(tempfile.mkdtemp(prefix=f"ofasys-struct-demo-{seed}-"))
    return make_splits(directory, [name], seed=seed)[name]


class _LazySudokuSplits:
    """The bundled sudoku splits of one seed (those of ``make_splits(..., ["sudoku"], seed)``) with the training
    rows drawn only as far as asked for: the held-out rows are all generated (training rows must differ from
    them), but a task that trains on 64 rows no longer waits for the 2000 of the full split. Puzzles are drawn
    one after another from one random stream, so the first ``n`` rows are those of the full split."""

    def __init__(self, seed: int):
        from . import data
        from . import sudoku as _sudoku
        from .tasks import SIZES

        n_train, n_valid, n_test = SIZES["sudoku"]
        held = data.sudoku(n_valid + n_test, size=4, seed=seed + 1000)  # as data.splits does
        taken = {_sudoku._int_grid_key(r["puzzle"]) for r in held}  # = puzzle_key
        self.n_train = n_train
        self.held = {"valid": held[:n_valid], "test": held[n_valid:]}
        self.train: list[dict] = []
        self._more = _sudoku.iter_generate(4, (4, 8), seed, taken, max_attempts=50 * n_train + 1000,
                                           planned=n_train)

    def rows(self, split: str, n: int) -> list[dict]:
        if split != "train":
            return list(self.held[split][:n])
        want = len(range(self.n_train)[:n])  # the rows [:n] takes of the full split
        if want > len(self.train):
            self.train.extend(itertools.islice(self._more, want - len(self.train)))
        return self.train[:want]


@functools.lru_cache(maxsize=16)
def _sudoku_splits(seed: int) -> _LazySudokuSplits:
    return _LazySudokuSplits(seed)


def _rows(name: str):
    def make(split: str, n: int, seed: int) -> list[dict]:
        if name == "sudoku":
            return _sudoku_splits(seed).rows(split, n)
        # the full bundled split is generated once, so valid rows never repeat train rows whatever n is
        return list(_splits(name, seed)[split][:n])

    return make


def _table(rows) -> str:
    if not rows:
        return "<i>no rows</i>"
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in r) + "</tr>" for r in rows[:5])
    more = f"<tr><td colspan='9'>... {len(rows) - 5} more</td></tr>" if len(rows) > 5 else ""
    return f"<table>{body}{more}</table>"


def _show_sql(served, rows: list[dict], out_dir) -> list[dict]:
    from .sql import run_query

    items = []
    outs = served.inference("struct_text_to_sql", data=rows[:3])
    for row, out in zip(rows[:3], outs):
        res = out.struct or {}
        got = (f"<i>did not run: {html.escape(str(res['error']))}</i>" if res.get("error")
               else _table(res.get("rows") or []))
        ref = run_query(row["database"], row["sql"])
        items.append({"title": "text to SQL (executed in SQLite)", "html":
                      f"<p>{html.escape(row['question'])}</p><pre>{html.escape(str(out.text))}</pre>{got}"
                      f"<p>reference <code>{html.escape(row['sql'])}</code></p>{_table(ref.rows or [])}"})
    return items


def _show_sudoku(served, rows: list[dict], out_dir) -> list[dict]:
    outs = served.inference("struct_sudoku", data=rows[:2])
    items = []
    for row, out in zip(rows[:2], outs):
        items.append({"title": "sudoku", "html": f"<pre>{html.escape(str(row['puzzle']))}</pre>&rarr;"
                                                 f"<pre>{html.escape(str(out.struct))}</pre>"})
    return items


def demo_tasks() -> list:
    from ofasys.spec import DemoTask

    from .tasks import INSTRUCTIONS, METRICS

    show = {"text_to_sql": _show_sql, "sudoku": _show_sudoku}
    return [DemoTask(name=f"struct_{name}", modality="struct", instruction=INSTRUCTIONS[name], rows=_rows(name),
                     metric=METRICS[name][0], n_valid=60, micro_batch_size=16, showcase=show[name])
            for name in DEMO]
