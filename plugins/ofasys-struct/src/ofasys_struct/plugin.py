"""Entry module of the STRUCT slot type: tables, triples, database schemas, grids and SQL queries linearised
into the shared ``text`` vocabulary block. Imports only the standard library and ofasys; the linearisation,
tokenizer, SQLite and metric modules are imported inside the hooks.

STRUCT slots are token slots: they use the core's shared embedding, cross entropy and sequence generator, so
this plugin implements no adaptor, criterion or generator.
"""

from __future__ import annotations

from typing import Any, Callable

from ofasys.hookspecs import hookimpl
from ofasys.spec import Attribute, Metric, SlotType, VocabBlock

SLOT_TYPE = "STRUCT"
BLOCK = "text"

STRUCT = SlotType(
    name=SLOT_TYPE,
    kind="tokens",
    help="Structured data: a table (rows, dicts, DataFrame, CSV path), triples, a database schema or SQLite "
         "file, a grid, or a SQL query; linearised into text tokens. As an output, the generated text is parsed "
         "back into the structure (a sql output is executed read-only on the row's database).",
    components={"preprocess": ("struct", "table", "database", "triples", "grid", "sql"),
                "postprocess": ("struct",)},
    output_fields=("struct", "text"),
    vocab_blocks=(BLOCK,),
    attributes=(
        Attribute("max_length", "int", 512,
                  "Longest linearisation in tokens; truncation keeps whole cells. 0 = no limit."),
        Attribute("uncased", "bool", False, "Lower-case the linearisation."),
        Attribute("question", "str", None,
                  "Database only: the column of the row holding the question; database values it mentions are "
                  "added to the schema as 'column ( value )'.", sides=("encoder",)),
        Attribute("sample_values", "int", 0,
                  "Database only: also list up to this many distinct text values of every column.",
                  sides=("encoder",)),
        Attribute("size", "int", 0,
                  "Output grid only (preprocess=grid): constrain decoding to size x size single-token cells.",
                  sides=("decoder",)),
        Attribute("database", "str", None,
                  "Output sql only: the column holding the SQLite file the generated query runs on (default: the "
                  "input STRUCT slot's column).", sides=("decoder",)),
        Attribute("timeout", "float", 2.0, "Output sql only: seconds a generated query may run.",
                  sides=("decoder",)),
    ),
)


@hookimpl
def ofasys_register_slot_types(register: Callable[..., None]) -> None:
    """Declare the STRUCT slot type."""
    register(STRUCT)


@hookimpl
def ofasys_register_vocab_blocks(register: Callable[..., None]) -> None:
    """Contribute the ``text`` block from the TEXT plugin's tokenizer (the very block ofasys-text registers, so
    the two are identical), so that an instruction made only of STRUCT slots builds its vocabulary too."""
    from ofasys_text.tokenizer import load_vocab_tokens, tokenizer_path

    path = tokenizer_path()
    register(VocabBlock(BLOCK, load_vocab_tokens(path), description=f"byte-level BPE text tokens ({path})"))


def _is_struct(slot: Any) -> bool:
    return getattr(slot, "type", None) == SLOT_TYPE and getattr(slot, "literal", None) is None


@hookimpl
def ofasys_preprocess(slot: Any, ctx: Any) -> Any:
    """A :class:`~ofasys_struct.preprocess.StructPreprocessor` for STRUCT slots."""
    if not _is_struct(slot):
        return None
    from .preprocess import VARIANTS, StructPreprocessor

    if (slot.components or {}).get("preprocess", "struct") not in VARIANTS:
        return None
    return StructPreprocessor(slot, ctx.vocab)


@hookimpl
def ofasys_postprocess(slot: Any, ctx: Any) -> Any:
    """A :class:`~ofasys_struct.postprocess.StructPostprocessor` for STRUCT output slots."""
    if not _is_struct(slot) or getattr(slot, "side", None) != "decoder" or \
            (slot.components or {}).get("postprocess", "struct") != "struct":
        return None
    from ofasys.errors import PlanError

    from .postprocess import StructPostprocessor
    from .preprocess import database_columns

    db_column = None
    if (slot.components or {}).get("preprocess") == "sql":
        db_column = (slot.attrs or {}).get("database")
        if db_column is None:
            candidates = database_columns(getattr(ctx, "plan", None), exclude=slot.column)
            if len(candidates) > 1:
                raise PlanError(f"the sql output [STRUCT:{slot.column}] could run on the database of "
                                f"{' or '.join(candidates)}: say which with database=<column>")
            db_column = candidates[0] if candidates else None
    return StructPostprocessor(slot, ctx.vocab, database_column=db_column)


@hookimpl
def ofasys_register_metrics(register: Callable[..., None]) -> None:
    """Contribute ``struct_exact_match`` (the default for STRUCT outputs), ``solved_rate``, ``sql_exact_match``
    and ``execution_accuracy`` (all 0-100)."""
    from . import metrics

    for name, types, help_text in (
            ("struct_exact_match", (SLOT_TYPE,), "Percentage of predicted structures equal to the reference after "
                                                 "linearising and parsing both (SQL: after normalisation)."),
            ("solved_rate", (), "Percentage of sudoku predictions that are complete, valid (rows, columns, boxes) "
                                "and keep the reference's givens."),
            ("sql_exact_match", (), "Percentage of predicted queries equal to the gold query after normalisation "
                                    "(case, spacing, quotes)."),
            ("execution_accuracy", (), "Percentage of predicted queries returning the gold query's rows on the "
                                       "database (read-only, with a timeout).")):
        register(Metric(name, getattr(metrics, name), for_types=types, help=help_text))


@hookimpl
def ofasys_register_demo_tasks(register: Callable[..., None]) -> None:
    """Text-to-SQL (executed on the bundled SQLite database) and 4x4 sudoku for ``ofasys demo``."""
    from .demo import demo_tasks

    for task in demo_tasks():
        register(task)
