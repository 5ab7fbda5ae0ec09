"""Structured values -> linear text, and generated text -> structured values. Pure Python (no torch, no
tokenizer): the preprocessor turns the *units* returned here into BPE ids.

A linearisation is a list of **units**: short strings joined by single spaces. Each unit is one cell (with the
separator that introduces it), so truncating a linearisation at a unit boundary keeps whole cells. Formats
(``uncased`` lower-cases everything):

=========  ==================================================================================================
table      ``title : T col : h1 | h2 | h3 row 1 : a | b | c row 2 : d | e | f`` (TAPEX style)
triples    ``s1 : r1 : o1 | s2 : r2 : o2`` (camelCase and snake_case relations become words)
database   ``| db | t1 : c1 , c2 ( v1 , v2 ) , c3 | t2 : c4`` (values in parentheses: those the question
           mentions, then sample values)
grid       ``1 2 _ 4 | 3 _ _ 2 | ...`` (rows separated by ``|``, blanks written ``_``)
=========  ==================================================================================================

Accepted values per kind (:func:`detect_kind` guesses the kind for the default ``struct`` variant):

* **table**: a list of rows whose first row is the header; a list of dicts (the header is the union of their
  keys, in order); a dict ``{"header"|"columns": [...], "rows": [...], "title"|"name": ...}``; a dict of
  columns ``{"col": [values...]}``; a pandas ``DataFrame`` (duck-typed: ``.columns`` and ``.itertuples``,
  pandas is never imported); a path to a ``.csv``/``.tsv`` file.
* **triples**: a list of ``(subject, relation, object)`` tuples or 3-item lists, or of dicts with keys
  ``subject``/``relation``/``object`` (also ``s``/``p``/``o``, ``head``/``relation``/``tail``).
* **database**: a path to a SQLite file (schema and values are read by :mod:`ofasys_struct.schema`); a list
  of tables ``[{"name": ..., "columns": [...], "rows"?: [...], "values"?: {col: [...]}}]``; a dict
  ``{"name"|"db_id": ..., "tables": [...]}``.
* **grid**: a list of equal-length rows of single values (``None``, ``0``, ``""``, ``"."`` and ``"_"`` are
  blanks); a string of n*n cells (``"1.3..2.."``, 16 or 81 characters) or rows separated by ``|``/newlines.
"""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path
from typing import Any

KINDS = ("table", "triples", "database", "grid")
BLANKS = (None, "", ".", "_", "0", 0)
BLANK = "_"
SQLITE_MAGIC = b"SQLite format 3\x00"
SQLITE_SUFFIXES = (".sqlite", ".sqlite3", ".db", ".db3")
TABLE_SUFFIXES = (".csv", ".tsv")


class StructError(ValueError):
    """A value that cannot be linearised (the preprocessor reports it as an ``ofasys.errors.DataError``)."""


# ------------------------------------------------------------------------------------------------ cells


def cell_text(value: Any) -> str:
    """The text of one cell: whitespace collapsed, ``|`` (the cell separator) replaced by ``/``; ``None`` is
    empty; floats that are whole numbers lose their ``.0``."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isfinite(value) and value == int(value) and abs(value) < 1e15:
            return str(int(value))
        return repr(value)
    text = " ".join(str(value).split())
    return text.replace("|", "/")


def _item_text(value: Any) -> str:
    """A database/triple item: like :func:`cell_text`, and the separators ``,`` ``(`` ``)`` of the schema
    format are kept readable but unambiguous (``(``/``)`` become ``[``/``]``)."""
    return cell_text(value).replace("(", "[").replace(")", "]")


_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def relation_text(rel: Any) -> str:
    """A triple's relation as words: ``birthPlace`` -> ``birth place``, ``works_at`` -> ``works at``."""
    text = cell_text(rel).replace("_", " ")
    text = _CAMEL.sub(" ", text)
    return " ".join(w.lower() if w[:1].isupper() and w[1:].islower() else w for w in text.split())


# ------------------------------------------------------------------------------------------------ detection


def is_sqlite_file(path: "str | Path") -> bool:
    """Whether ``path`` names an existing SQLite database file (by its header, else by its suffix)."""
    p = Path(path)
    try:
        if not p.is_file():
            return False
        with p.open("rb") as f:
            head = f.read(16)
    except OSError:
        return False
    return head == SQLITE_MAGIC or (not head and p.suffix.lower() in SQLITE_SUFFIXES)


def _is_path_like(value: Any) -> bool:
    if isinstance(value, Path):
        return True
    return isinstance(value, str) and "\n" not in value and len(value) < 4096 and \
        (value.lower().endswith(SQLITE_SUFFIXES + TABLE_SUFFIXES) or "/" in value or "\\" in value)


def _is_dataframe(value: Any) -> bool:
    return hasattr(value, "columns") and hasattr(value, "itertuples") and not isinstance(value, dict)


def _is_triple(item: Any) -> bool:
    if isinstance(item, dict):
        return _triple_from_dict(item) is not None
    return isinstance(item, tuple) and len(item) == 3


def _grid_cell(value: Any) -> bool:
    if value is None or isinstance(value, bool):
        return value is None
    if isinstance(value, int):
        return True
    return isinstance(value, str) and len(value.strip()) <= 1


def _looks_like_grid(value: Any) -> bool:
    if isinstance(value, str):
        try:
            parse_grid_string(value)
            return True
        except StructError:
            return False
    if not isinstance(value, (list, tuple)) or not value:
        return False
    if not all(isinstance(r, (list, tuple)) and r for r in value):
        return False
    width = len(value[0])
    return all(len(r) == width for r in value) and all(_grid_cell(c) for r in value for c in r)


def detect_kind(value: Any) -> str:
    """Guess which of :data:`KINDS` a value is (the default ``struct`` variant). Raises :class:`StructError`.

    Order: a path (SQLite file -> database, CSV/TSV -> table); a DataFrame -> table; a dict with ``tables``
    -> database, other dicts -> table; a list of dicts -> triples when every dict has subject/relation/object
    keys, database when every dict has ``columns``, else table; a list of tuples of 3 -> triples; a list of
    equal-length rows of single values (digits, blanks, one-character strings) or a grid string -> grid;
    other lists of rows -> table (first row = header).
    """
    if _is_dataframe(value):
        return "table"
    if isinstance(value, (str, Path)):
        if _is_path_like(value) and Path(value).is_file():
            if is_sqlite_file(value):
                return "database"
            if str(value).lower().endswith(TABLE_SUFFIXES):
                return "table"
            raise StructError(f"{value}: not a SQLite database or a .csv/.tsv table")
        if isinstance(value, str) and _looks_like_grid(value):
            return "grid"
        if _is_path_like(value):
            raise StructError(f"{value}: no such file")
        raise StructError(f"a string value must be a path to a SQLite or CSV file or a grid such as '1.3..2..', "
                          f"not {_short(value)}")
    if isinstance(value, dict):
        if "tables" in value:
            return "database"
        return "table"
    if isinstance(value, (list, tuple)):
        if not value:
            raise StructError("an empty list has no structure to linearise")
        if all(isinstance(x, dict) for x in value):
            if all(_triple_from_dict(x) is not None for x in value):
                return "triples"
            if all("columns" in x for x in value):
                return "database"
            return "table"
        if all(_is_triple(x) for x in value):
            return "triples"
        if _looks_like_grid(value):
            return "grid"
        if all(isinstance(x, (list, tuple)) for x in value):
            return "table"
    raise StructError(f"cannot tell what structure {_short(value)} is: give a table (rows, dicts, a DataFrame or a "
                      "CSV path), triples, a database (SQLite path or list of tables) or a grid")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# ------------------------------------------------------------------------------------------------ tables


def to_table(value: Any) -> dict:
    """Normalise a table value to ``{"title": str | None, "header": [str], "rows": [[Any]]}``."""
    title = None
    if _is_dataframe(value):
        header = [cell_text(c) for c in value.columns]
        rows = [list(r) for r in value.itertuples(index=False)]
    elif isinstance(value, (str, Path)):
        path = Path(value)
        if not path.is_file():
            raise StructError(f"table file {path} does not exist")
        with path.open(encoding="utf-8", newline="") as f:
            data = list(csv.reader(f, delimiter="\t" if path.suffix.lower() == ".tsv" else ","))
        data = [r for r in data if r]
        if not data:
            raise StructError(f"table file {path} is empty")
        header, rows = data[0], data[1:]
    elif isinstance(value, dict):
        scalar = {k: v for k, v in value.items() if k in ("title", "name") and not isinstance(v, (list, tuple))}
        title = scalar.get("title", scalar.get("name"))
        if "rows" in value or "header" in value:
            header = list(value.get("header") or value.get("columns") or [])
            rows = [list(r.values()) if isinstance(r, dict) else list(r) for r in value.get("rows") or []]
            if rows and isinstance((value.get("rows") or [None])[0], dict) and not header:
                header = list(value["rows"][0])
        else:  # column-oriented {"col": [values]}
            cols = {k: v for k, v in value.items() if k not in scalar}
            if not cols or not all(isinstance(v, (list, tuple)) for v in cols.values()):
                raise StructError("a table dict needs 'header' and 'rows', or lists of values per column")
            header = list(cols)
            n = max(len(v) for v in cols.values())
            rows = [[cols[h][i] if i < len(cols[h]) else None for h in header] for i in range(n)]
    elif isinstance(value, (list, tuple)) and value and all(isinstance(r, dict) for r in value):
        header = []
        for r in value:
            for k in r:
                if k not in header:
                    header.append(k)
        rows = [[r.get(h) for h in header] for r in value]
    elif isinstance(value, (list, tuple)) and value and all(isinstance(r, (list, tuple)) for r in value):
        header, rows = list(value[0]), [list(r) for r in value[1:]]
    else:
        raise StructError(f"not a table: {_short(value)}")
    width = len(header)
    if width == 0:
        raise StructError("a table needs at least one column")
    for i, r in enumerate(rows):
        if len(r) != width:
            raise StructError(f"table row {i + 1} has {len(r)} cells but the header has {width} columns")
    return {"title": cell_text(title) if title is not None else None, "header": [cell_text(h) for h in header],
            "rows": rows}


def table_units(value: Any) -> list[str]:
    t = to_table(value)
    units: list[str] = []
    if t["title"]:
        units.append(f"title : {t['title']}")
    header = t["header"]
    units.append(f"col : {header[0]}".rstrip())
    units.extend(f"| {h}".rstrip() for h in header[1:])
    for i, row in enumerate(t["rows"], 1):
        units.append(f"row {i} : {cell_text(row[0])}".rstrip())
        units.extend(f"| {cell_text(c)}".rstrip() for c in row[1:])
    return units


_ROW_SPLIT = re.compile(r"(?:^|\s)row \d+ :(?=\s|$)")


def parse_table(text: str) -> dict:
    """Inverse of the table format: ``{"title", "header", "rows"}`` (cells as strings; a ragged row is padded
    or cut to the header's width)."""
    text = " ".join(text.split())
    title = None
    m = re.match(r"^title : (.*?)(?:\s|^)(?=col :)", text)
    if m:
        title = m.group(1).strip() or None
        text = text[m.end():]
    if text.startswith("col :"):
        text = text[len("col :"):]
    parts = _ROW_SPLIT.split(" " + text)
    header = [c.strip() for c in parts[0].split("|")] if parts[0].strip() else []
    rows = []
    for p in parts[1:]:
        cells = [c.strip() for c in p.split("|")]
        if header:
            cells = (cells + [""] * len(header))[: len(header)]
        rows.append(cells)
    return {"title": title, "header": header, "rows": rows}


# ------------------------------------------------------------------------------------------------ triples


def _triple_from_dict(d: dict) -> tuple | None:
    for keys in (("subject", "relation", "object"), ("s", "p", "o"), ("head", "relation", "tail"),
                 ("subject", "predicate", "object")):
        if all(k in d for k in keys):
            return tuple(d[k] for k in keys)
    return None


def to_triples(value: Any) -> list[tuple]:
    """Normalise triples to a list of ``(subject, relation, object)``."""
    if not isinstance(value, (list, tuple)) or not value:
        raise StructError(f"triples must be a non-empty list of (subject, relation, object), not {_short(value)}")
    out = []
    for i, item in enumerate(value):
        t = _triple_from_dict(item) if isinstance(item, dict) else (
            tuple(item) if isinstance(item, (list, tuple)) and len(item) == 3 else None)
        if t is None:
            raise StructError(f"triple {i + 1} is not (subject, relation, object): {_short(item)}")
        out.append(t)
    return out


def triples_units(value: Any) -> list[str]:
    units = []
    for i, (s, r, o) in enumerate(to_triples(value)):
        unit = f"{_item_text(s)} : {relation_text(r)} : {_item_text(o)}"
        units.append(unit if i == 0 else "| " + unit)
    return units


def parse_triples(text: str) -> list[list[str]]:
    """Inverse of the triples format: ``[[subject, relation, object], ...]``; a piece with fewer than two
    `` : `` separators is skipped."""
    out = []
    for piece in " ".join(text.split()).split("|"):
        parts = [p.strip() for p in piece.split(" : ")]
        if len(parts) < 3:
            continue
        out.append([parts[0], " : ".join(parts[1:-1]), parts[-1]])
    return out


# ------------------------------------------------------------------------------------------------ databases


def to_database(value: Any) -> dict:
    """Normalise a schema to ``{"name": str | None, "tables": [{"name", "columns": [str], "values": {col:
    [values]}}]}``. A SQLite path is read with :func:`ofasys_struct.schema.read_schema` (cached)."""
    if isinstance(value, (str, Path)):
        from .schema import read_schema

        return read_schema(value)
    name = None
    tables = value
    if isinstance(value, dict):
        name = value.get("name", value.get("db_id"))
        tables = value.get("tables")
    if not isinstance(tables, (list, tuple)) or not tables:
        raise StructError("a database needs a non-empty list of tables")
    out = []
    for i, t in enumerate(tables):
        if not isinstance(t, dict) or "name" not in t or "columns" not in t:
            raise StructError(f"table {i + 1} of the database needs 'name' and 'columns': {_short(t)}")
        cols = [c["name"] if isinstance(c, dict) else c for c in t["columns"]]
        cols = [cell_text(c) for c in cols]
        values: dict[str, list] = {c: [] for c in cols}
        for c, vs in (t.get("values") or {}).items():
            if c in values:
                values[c] = list(vs)
        for row in t.get("rows") or []:
            cells = [row.get(c) for c in cols] if isinstance(row, dict) else list(row)
            for c, v in zip(cols, cells):
                if isinstance(v, str) and v not in values[c]:
                    values[c].append(v)
        out.append({"name": cell_text(t["name"]), "columns": cols, "values": values})
    return {"name": cell_text(name) if name is not None else None, "tables": out}


def database_units(db: dict, matched: dict | None = None, sample_values: int = 0) -> list[str]:
    """Units of a normalised database (:func:`to_database`). ``matched`` maps ``(table, column)`` to the values
    the question mentions; ``sample_values`` adds up to that many further distinct text values per column."""
    units: list[str] = []
    if db.get("name"):
        units.append(f"| {_item_text(db['name'])}")
    for t in db["tables"]:
        for j, col in enumerate(t["columns"]):
            vals = list((matched or {}).get((t["name"], col), []))
            if sample_values > 0:
                for v in t["values"].get(col, []):
                    if len(vals) >= len((matched or {}).get((t["name"], col), [])) + sample_values:
                        break
                    if v not in vals:
                        vals.append(v)
            shown = f"{_item_text(col)}" + (f" ( {' , '.join(_item_text(v) for v in vals)} )" if vals else "")
            units.append(f"| {_item_text(t['name'])} : {shown}" if j == 0 else f", {shown}")
    return units


def parse_database(text: str) -> dict:
    """Inverse of the database format: ``{"name", "tables": [{"name", "columns", "values"}]}``. The first
    ``|`` piece without a ``:`` is the database name."""
    name = None
    tables = []
    for piece in " ".join(text.split()).split("|"):
        piece = piece.strip()
        if not piece:
            continue
        if " : " not in piece and not piece.endswith(":"):
            if name is None and not tables:
                name = piece
            continue
        tname, _, rest = piece.partition(":")
        cols, values = [], {}
        for item in _split_top(rest, ","):
            item = item.strip()
            if not item:
                continue
            m = re.match(r"^(.*?)\s*\((.*)\)$", item)
            col = (m.group(1) if m else item).strip()
            cols.append(col)
            values[col] = [v.strip() for v in m.group(2).split(",") if v.strip()] if m else []
        tables.append({"name": tname.strip(), "columns": cols, "values": values})
    return {"name": name, "tables": tables}


def _split_top(text: str, sep: str) -> list[str]:
    """Split on ``sep`` outside parentheses."""
    out, depth, cur = [], 0, []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth = max(0, depth - 1)
        if ch == sep and depth == 0:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return out


# ------------------------------------------------------------------------------------------------ grids


def _grid_value(cell: Any) -> Any:
    if isinstance(cell, str):
        cell = cell.strip()
    if cell in BLANKS or (isinstance(cell, str) and cell in ("0",)):
        return None
    if isinstance(cell, str) and cell.isdigit():
        return int(cell)
    return cell


def parse_grid_string(text: str) -> list[list[Any]]:
    """A grid from a string: rows separated by ``|``, ``;`` or newlines with cells separated by spaces or
    commas, or a run of n*n single-character cells (``"1.3..2..3..4.2.."``). Raises :class:`StructError`."""
    raw = text.strip()
    if not raw:
        raise StructError("an empty grid string")
    if re.search(r"[|;\n]", raw):
        rows = [r for r in re.split(r"[|;\n]", raw) if r.strip()]
        grid = [[_grid_value(c) for c in re.split(r"[\s,]+", r.strip()) if c != ""] for r in rows]
    elif " " in raw or "," in raw:
        cells = [c for c in re.split(r"[\s,]+", raw) if c]
        n = math.isqrt(len(cells))
        if n * n != len(cells) or n < 2:
            raise StructError(f"a grid string of {len(cells)} cells is not square")
        grid = [[_grid_value(c) for c in cells[i * n:(i + 1) * n]] for i in range(n)]
    else:
        n = math.isqrt(len(raw))
        if n * n != len(raw) or n < 2 or not re.fullmatch(r"[0-9._]+", raw):
            raise StructError(f"not a grid string: {_short(text)}")
        grid = [[_grid_value(c) for c in raw[i * n:(i + 1) * n]] for i in range(n)]
    if not grid or any(len(r) != len(grid[0]) for r in grid):
        raise StructError(f"grid rows have different lengths: {_short(text)}")
    if not all(c is None or isinstance(c, int) or (isinstance(c, str) and len(c) == 1) for r in grid for c in r):
        raise StructError(f"grid cells must be numbers, blanks or single characters: {_short(text)}")
    return grid


def to_grid(value: Any) -> list[list[Any]]:
    """Normalise a grid to a list of rows of ``int``, ``str`` or ``None`` (blank)."""
    if isinstance(value, str):
        return parse_grid_string(value)
    if isinstance(value, (list, tuple)) and value and all(isinstance(r, (list, tuple)) for r in value):
        grid = [[_grid_value(c) for c in r] for r in value]
        if any(len(r) != len(grid[0]) for r in grid) or not grid[0]:
            raise StructError("grid rows must be non-empty and of equal length")
        return grid
    raise StructError(f"not a grid: {_short(value)}")


def grid_units(value: Any) -> list[str]:
    units = []
    for i, row in enumerate(to_grid(value)):
        for j, c in enumerate(row):
            text = BLANK if c is None else cell_text(c).replace(" ", "_")
            units.append(f"| {text}" if j == 0 and i > 0 else text)
    return units


def parse_grid(text: str) -> list[list[Any]]:
    """Inverse of the grid format (cells: ``int``, ``None`` for ``_``, else ``str``); ``[]`` if empty."""
    rows = [r for r in " ".join(text.split()).split("|") if r.strip()]
    return [[_grid_value(c) for c in r.split()] for r in rows]


# ------------------------------------------------------------------------------------------------ dispatch

PARSERS = {"table": parse_table, "triples": parse_triples, "database": parse_database, "grid": parse_grid}


def units_of(value: Any, kind: str, **database_options: Any) -> list[str]:
    """The units of ``value`` as ``kind`` (one of :data:`KINDS`). Database options: ``matched``,
    ``sample_values``."""
    if kind == "table":
        return table_units(value)
    if kind == "triples":
        return triples_units(value)
    if kind == "grid":
        return grid_units(value)
    if kind == "database":
        return database_units(to_database(value), **database_options)
    raise StructError(f"unknown structure kind {kind!r}; use one of {', '.join(KINDS)}")


def linearize(value: Any, kind: str | None = None, uncased: bool = False, **database_options: Any) -> str:
    """The linear text of a structured value (``kind`` guessed by :func:`detect_kind` when ``None``)."""
    units = units_of(value, kind or detect_kind(value), **database_options)
    text = " ".join(units)
    return text.lower() if uncased else text


def detect_text_kind(text: str) -> str:
    """Guess the format of generated text: ``database`` (starts with ``|``), ``table`` (``col :``), ``triples``
    (`` : `` separators), else ``grid``."""
    t = text.strip()
    if t.startswith("|"):
        return "database"
    if t.startswith(("col :", "title :")):
        return "table"
    if " : " in t:
        return "triples"
    return "grid"


def parse(text: str, kind: str | None = None) -> Any:
    """Parse generated text of ``kind`` (guessed by :func:`detect_text_kind` when ``None``) back into a
    structure."""
    return PARSERS[kind or detect_text_kind(text)](text)


def canonical(value: Any, kind: str | None = None) -> Any:
    """A comparable form of a structure given as a value or as linear text: linearised then parsed, so that
    ``[[1, 2], [2, 1]]``, ``"12 21"`` and ``"1 2 | 2 1"`` compare equal (used by ``struct_exact_match``)."""
    if isinstance(value, str):
        try:
            k = kind or detect_kind(value)
            return parse(linearize(value, k), k)
        except StructError:
            return parse(value, kind)
    k = kind or detect_kind(value)
    return parse(linearize(value, k), k)
