"""Entry module of the STRUCT slot type: tables, triples, database schemas and grids linearised into text
tokens. Imports only the standard library and ofasys."""

from __future__ import annotations

from ofasys.hookspecs import hookimpl
from ofasys.spec import Attribute, SlotType

STRUCT = SlotType(
    name="STRUCT",
    kind="tokens",
    help="Structured data: a table (rows, dicts, DataFrame, CSV path), triples, a database schema or SQLite "
         "file, or a grid; linearised into text tokens.",
    components={"preprocess": ("struct", "table", "database", "triples", "grid"), "postprocess": ("struct",)},
    output_fields=("struct",),
    vocab_blocks=("text",),
    attributes=(
        Attribute("max_length", "int", 512, "Longest linearisation in tokens; truncation keeps whole cells."),
        Attribute("uncased", "bool", False, "Lower-case the linearisation."),
        Attribute("question", "str", None, "Column of the question whose mentioned values are added to a schema."),
    ),
)


@hookimpl
def ofasys_register_slot_types(register):
    register(STRUCT)
