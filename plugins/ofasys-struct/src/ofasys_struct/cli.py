"""The ``ofasys-struct`` command (a console script of this plugin).

``ofasys-struct sql --checkpoint DIR --db FILE --question "..."``
    Ask a trained text-to-SQL task a question about a SQLite database: prints the generated SQL and the rows it
    returns (run read-only, with a timeout). The task is found in the checkpoint (``--task`` picks one when
    several take a database).
``ofasys-struct make-data DIR``
    Write the bundled data (the shop database, JSONL splits of the four tasks) and ``struct.toml``, a config
    for ``ofasys train``.
``ofasys-struct linearize VALUE``
    Print the linearisation of a value (a JSON literal, a SQLite/CSV path or a JSON file), as a STRUCT slot
    would encode it.

``ofasys infer`` works too on a task whose output is ``[STRUCT:sql,preprocess=sql]``: its output carries the
SQL (``text``) and the executed result (``struct``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence


class UsageError(Exception):
    """A command-line mistake: printed as ``error: ...`` with exit code 2."""


def _is_text_to_sql(task: Any) -> bool:
    """A task that takes a database: a STRUCT input read as one (``preprocess=database`` or ``question=``), or a
    ``sql`` output next to a STRUCT input."""
    from .preprocess import database_columns

    slots = task.plan.slots.values()
    if any(s.type == "STRUCT" and s.side == "encoder" and (s.components.get("preprocess") == "database" or
                                                          s.attrs.get("question")) for s in slots):
        return True
    return bool(database_columns(task.plan)) and any(
        s.type == "STRUCT" and s.side == "decoder" and s.components.get("preprocess") == "sql" for s in slots)


def _find_task(model: Any, name: str | None) -> Any:
    if name is not None:
        if name not in model.tasks:
            raise UsageError(f"the checkpoint has no task {name!r}; it has {', '.join(model.tasks)}")
        return model.tasks[name]
    found = [t for t in model.tasks.values() if _is_text_to_sql(t)]
    if len(found) != 1:
        what = f"several tasks ({', '.join(t.name for t in found)}) take" if found else "no task takes"
        raise UsageError(f"{what} a database in this checkpoint (it has {', '.join(model.tasks)}): "
                         "name one with --task")
    return found[0]


def _sql_row(task: Any, db: str, question: str) -> tuple[dict, str]:
    """The input row of a text-to-SQL task: the database column and the question column."""
    from .preprocess import database_columns

    db_cols = database_columns(task.plan)
    if len(db_cols) != 1:
        raise UsageError(f"task {task.name!r} has {len(db_cols)} STRUCT inputs that may hold a database; "
                         "this command needs exactly one")
    slot = task.plan.slots[db_cols[0]]
    q_col = slot.attrs.get("question")
    if q_col is None:
        texts = [s.column for s in task.plan.slots.values() if s.side == "encoder" and s.type == "TEXT"]
        if len(texts) != 1:
            raise UsageError(f"task {task.name!r}: cannot tell which column holds the question")
        q_col = texts[0]
    row = {db_cols[0]: db, q_col: question}
    missing = [c for c in task.plan.input_columns() if c not in row]
    if missing:
        raise UsageError(f"task {task.name!r} also needs the input column(s) {', '.join(missing)}")
    return row, db_cols[0]


def _print_table(columns: list[str], rows: list, limit: int, out) -> None:
    cells = [[str(c) for c in columns]] + [["NULL" if v is None else str(v) for v in r] for r in rows[:limit]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    for j, r in enumerate(cells):
        out.write("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() + "\n")
        if j == 0:
            out.write("  ".join("-" * w for w in widths) + "\n")
    if len(rows) > limit:
        out.write(f"... {len(rows) - limit} more rows\n")


def cmd_sql(args: argparse.Namespace) -> int:
    from .schema import database_path
    from .sql import run_query

    db = database_path(args.db)
    if db is None:
        raise UsageError(f"{args.db} is not a SQLite database file")
    from ofasys import OFASys

    model = OFASys.from_pretrained(args.checkpoint)
    task = _find_task(model, args.task)
    row, _ = _sql_row(task, db, args.question)
    out = model.inference(task.name, row, beam_size=args.beam_size)
    value = out.struct if "struct" in out.keys() else None
    if isinstance(value, dict) and "sql" in value:  # a sql STRUCT output: already run on the database
        result = value
    else:
        result = run_query(db, out.text, timeout=args.timeout).to_dict()
    if args.json:
        sys.stdout.write(json.dumps(result) + "\n")
        return 0 if result["error"] is None else 1
    sys.stdout.write(f"SQL: {result['sql']}\n")
    if result["error"] is not None:
        sys.stdout.write(f"error: {result['error']}\n")
        return 1
    _print_table(result["columns"], result["rows"], args.max_rows, sys.stdout)
    sys.stdout.write(f"({len(result['rows'])} row{'s' if len(result['rows']) != 1 else ''})\n")
    return 0


def cmd_make_data(args: argparse.Namespace) -> int:
    from .tasks import write_config

    path = write_config(args.directory, args.tasks or None, seed=args.seed, max_steps=args.max_steps)
    sys.stdout.write(f"wrote {path} and the data next to it; train with: ofasys train {path}\n")
    return 0


def cmd_linearize(args: argparse.Namespace) -> int:
    from .linearize import StructError, database_units, detect_kind, to_database, units_of
    from .schema import match_values

    raw = args.value
    value: Any = raw
    if not Path(raw).is_file() or raw.lower().endswith(".json"):
        try:
            value = json.loads(Path(raw).read_text(encoding="utf-8") if Path(raw).is_file() else raw)
        except json.JSONDecodeError:
            value = raw
    try:
        kind = args.kind or detect_kind(value)
        if kind == "database":
            db = to_database(value)
            units = database_units(db, match_values(args.question, db) if args.question else None,
                                   args.sample_values)
        else:
            units = units_of(value, kind)
    except StructError as exc:
        raise UsageError(str(exc)) from None
    text = " ".join(units)
    sys.stdout.write((text.lower() if args.uncased else text) + "\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ofasys-struct", description="Structured-knowledge tools of ofasys.")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("sql", help="Generate SQL for a question about a SQLite database and run it.")
    s.add_argument("--checkpoint", "-c", required=True, type=Path, help="A checkpoint directory.")
    s.add_argument("--db", required=True, help="The SQLite database file.")
    s.add_argument("--question", "-q", required=True, help="The question.")
    s.add_argument("--task", help="The text-to-SQL task of the checkpoint (when several take a database).")
    s.add_argument("--beam-size", type=int, default=1)
    s.add_argument("--timeout", type=float, default=2.0, help="Seconds the query may run.")
    s.add_argument("--max-rows", type=int, default=20, help="Rows to print.")
    s.add_argument("--json", action="store_true", help="Print the result as JSON.")
    s.set_defaults(func=cmd_sql)
    m = sub.add_parser("make-data", help="Write the bundled data and a config for `ofasys train`.")
    m.add_argument("directory", type=Path)
    m.add_argument("--tasks", nargs="*", help="Only these tasks (text_to_sql table_to_text table_qa sudoku).")
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--max-steps", type=int, default=400)
    m.set_defaults(func=cmd_make_data)
    lin = sub.add_parser("linearize", help="Print the linearisation of a value.")
    lin.add_argument("value", help="A JSON literal, a JSON file, or a SQLite/CSV path.")
    lin.add_argument("--kind", choices=("table", "triples", "database", "grid"))
    lin.add_argument("--question", help="Database: add the values this question mentions.")
    lin.add_argument("--sample-values", type=int, default=0)
    lin.add_argument("--uncased", action="store_true")
    lin.set_defaults(func=cmd_linearize)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UsageError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    except Exception as exc:  # an ofasys error (bad checkpoint, data) is a message, not a traceback
        from ofasys.errors import OfasysError

        if isinstance(exc, OfasysError):
            sys.stderr.write(f"error: {exc}\n")
            return getattr(exc, "exit_code", 1)
        raise


def run() -> None:  # console-script entry point
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    run()
