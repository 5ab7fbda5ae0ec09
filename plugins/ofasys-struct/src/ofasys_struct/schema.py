"""Database schemas: reading a SQLite file (read-only) and matching a question to the database's values.

:func:`read_schema` returns the normalised form of :func:`ofasys_struct.linearize.to_database`: tables in file
order, their columns, and up to ``MAX_VALUES`` distinct text values per column (the candidates for question
matching and sample values). Results are cached per process by (path, size, modification time), so a
DataLoader worker reads a file once.

:func:`match_values` is a lightweight version of BRIDGE's value matching (Lin et al., 2020): a text value is
*mentioned* when its normalised words occur as a whole-word run in the normalised question (case, accents and
punctuation ignored). Longer values win over values they contain (``green tea`` hides ``tea``); at most
``per_column`` values are kept per column. Numbers are not matched: the model copies them from the question.
"""

from __future__ import annotations

import os
import re
import sqlite3
import threading
import unicodedata
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .linearize import StructError, cell_text

MAX_VALUES = 5000  # distinct text values read per column
_CACHE: dict[tuple, dict] = {}
_LOCK = threading.Lock()


def connect_readonly(path: "str | Path", timeout: float = 5.0) -> sqlite3.Connection:
    """A read-only connection (``file:...?mode=ro`` URI): the file is never created, written or locked for
    writing. Raises :class:`StructError` when the file does not exist or is not a database."""
    p = Path(path).expanduser().resolve()
    if not p.is_file():
        raise StructError(f"database file {path} does not exist")
    uri = f"file:{quote(str(p))}?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=timeout, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA query_only = ON")
    except sqlite3.Error as exc:
        raise StructError(f"cannot open database {path}: {exc}") from None
    return conn


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def read_schema(path: "str | Path", max_values: int = MAX_VALUES) -> dict:
    """``{"name": file stem, "path": absolute path, "tables": [{"name", "columns", "values", "types"}]}`` of a
    SQLite file. ``values[col]`` lists up to ``max_values`` distinct text values in table order."""
    p = Path(path).expanduser().resolve()
    try:
        st = p.stat()
    except OSError:
        raise StructError(f"database file {path} does not exist") from None
    key = (str(p), st.st_size, st.st_mtime_ns, max_values)
    cached = _CACHE.get(key)
    if cached is not None:
        return cached
    conn = connect_readonly(p)
    try:
        names = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY rowid")]
        tables = []
        for t in names:
            info = conn.execute(f"PRAGMA table_info({_quote_ident(t)})").fetchall()
            cols = [r[1] for r in info]
            types = {r[1]: (r[2] or "").upper() for r in info}
            values: dict[str, list] = {}
            for c in cols:
                rows = conn.execute(
                    f"SELECT DISTINCT {_quote_ident(c)} FROM {_quote_ident(t)} "
                    f"WHERE typeof({_quote_ident(c)}) = 'text' LIMIT ?", (max_values,)).fetchall()
                values[c] = [r[0] for r in rows]
            tables.append({"name": t, "columns": cols, "values": values, "types": types})
    except sqlite3.Error as exc:
        raise StructError(f"cannot read the schema of {path}: {exc}") from None
    finally:
        conn.close()
    if not tables:
        raise StructError(f"database {path} has no tables")
    db = {"name": p.stem, "path": str(p), "tables": tables}
    with _LOCK:
        if len(_CACHE) > 64:
            _CACHE.clear()
        _CACHE[key] = db
    return db


def normalize_words(text: Any) -> str:
    """Lower-case, strip accents, turn punctuation into spaces, collapse whitespace."""
    text = unicodedata.normalize("NFKD", cell_text(text))
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).casefold()
    text = re.sub(r"[^\w]+", " ", text)
    return " ".join(text.split())


def match_values(question: str, db: dict, per_column: int = 3, min_chars: int = 2) -> dict[tuple[str, str], list]:
    """The database values the question mentions: ``{(table, column): [value, ...]}`` (values as stored)."""
    q = f" {normalize_words(question)} "
    if not q.strip():
        return {}
    found: list[tuple[int, int, str, str, Any]] = []  # (-length, order, table, column, value)
    order = 0
    for t in db["tables"]:
        for c in t["columns"]:
            for v in t.get("values", {}).get(c, []):
                if not isinstance(v, str):
                    continue
                nv = normalize_words(v)
                order += 1
                if len(nv) >= min_chars and not nv.isdigit() and f" {nv} " in q:
                    found.append((-len(nv), order, t["name"], c, v))
    found.sort()
    spans: list[str] = []
    out: dict[tuple[str, str], list] = {}
    for _, _, t, c, v in found:
        nv = normalize_words(v)
        # a value contained in a longer mentioned value of another column/table is not a mention of its own
        if any(f" {nv} " in f" {s} " and nv != s for s in spans):
            continue
        vals = out.setdefault((t, c), [])
        if len(vals) < per_column and v not in vals:
            vals.append(v)
            spans.append(nv)
    # keep the table/column order of the schema
    ordered: dict[tuple[str, str], list] = {}
    for t in db["tables"]:
        for c in t["columns"]:
            if (t["name"], c) in out:
                ordered[(t["name"], c)] = out[(t["name"], c)]
    return ordered


def database_path(value: Any) -> str | None:
    """The absolute path of a SQLite database value, or ``None`` when the value is not a path to one."""
    from .linearize import is_sqlite_file

    if isinstance(value, (str, Path)) and not isinstance(value, bool):
        s = str(value)
        if "\n" not in s and len(s) < 4096 and is_sqlite_file(s):
            return os.path.abspath(os.path.expanduser(s))
    if isinstance(value, dict) and value.get("path") and is_sqlite_file(value["path"]):
        return os.path.abspath(value["path"])
    return None
