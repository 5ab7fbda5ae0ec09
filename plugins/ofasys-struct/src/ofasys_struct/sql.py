"""Running generated SQL safely, and scoring it.

:func:`run_query` executes one query against a SQLite file so that a generated query can never change or
escape the database, nor run forever:

* the file is opened through a ``file:...?mode=ro`` URI (read-only; a missing file is an error, never created)
  with ``PRAGMA query_only = ON``;
* only one statement, and it must be a query (``SELECT``, ``WITH``, ``VALUES`` or a parenthesised one);
* an authorizer (``Connection.set_authorizer``) allows reading tables, selecting, recursive CTEs and ordinary
  functions, and denies everything else: writes, DDL, ``ATTACH``/``DETACH``, ``PRAGMA``, transactions,
  ``load_extension`` and file functions; ``SQLITE_LIMIT_ATTACHED`` is 0 as a second line;
* a progress handler (``set_progress_handler``) interrupts the query after ``timeout`` seconds (infinite
  recursive CTEs, huge cross joins), and string/blob sizes are capped;
* at most ``max_rows`` rows are fetched.

Any failure is a :class:`QueryResult` with ``error`` set (never an exception), and scores zero.

Scoring: :func:`normalize_sql` / :func:`sql_exact_match` (textual, after normalisation) and
:func:`execution_match` / :func:`execution_accuracy` (same result rows as the gold query: compared as a multiset,
or as a list when the gold query has a top-level ``ORDER BY``; numbers compared after rounding to 6 decimals).
"""

from __future__ import annotations

import math
import re
import sqlite3
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from .linearize import StructError

DEFAULT_TIMEOUT = 2.0
DEFAULT_MAX_ROWS = 10_000
MAX_LENGTH = 1_000_000  # longest string or blob a query may build

_ALLOWED_ACTIONS = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION,
                    getattr(sqlite3, "SQLITE_RECURSIVE", 33)}
_DENIED_FUNCTIONS = frozenset({"load_extension", "readfile", "writefile", "edit", "fts3_tokenizer",
                               "sqlite_dbpage", "zipfile", "sqlar_compress", "sqlar_uncompress"})
_QUERY_START = re.compile(r"^\s*(?:\(\s*)*(select|with|values)\b", re.IGNORECASE)


@dataclass
class QueryResult:
    """What :func:`run_query` returns: ``columns`` and ``rows`` of a successful query, else ``error``."""

    sql: str
    columns: list[str] = field(default_factory=list)
    rows: list[tuple] = field(default_factory=list)
    error: str | None = None
    truncated: bool = False
    database: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict:
        """JSON-friendly: ``{"sql", "database", "columns", "rows" (lists), "error", "truncated"}``."""
        return {"sql": self.sql, "database": self.database, "columns": list(self.columns),
                "rows": [list(r) for r in self.rows], "error": self.error, "truncated": self.truncated}


def strip_comments(sql: str) -> str:
    """Remove ``-- ...`` and ``/* ... */`` comments outside string literals."""
    out, i, n = [], 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch in ("'", '"', "`", "["):
            close = "]" if ch == "[" else ch
            j = i + 1
            while j < n:
                if sql[j] == close:
                    if close != "]" and j + 1 < n and sql[j + 1] == close:
                        j += 2
                        continue
                    break
                j += 1
            out.append(sql[i:j + 1])
            i = j + 1
        elif sql.startswith("--", i):
            j = sql.find("\n", i)
            i = n if j < 0 else j
            out.append(" ")
        elif sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            i = n if j < 0 else j + 2
            out.append(" ")
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _authorizer(action: int, arg1: Any, arg2: Any, db_name: Any, source: Any) -> int:
    if action not in _ALLOWED_ACTIONS:
        return sqlite3.SQLITE_DENY
    if action == sqlite3.SQLITE_FUNCTION and str(arg2 or "").lower() in _DENIED_FUNCTIONS:
        return sqlite3.SQLITE_DENY
    if action == sqlite3.SQLITE_READ and db_name not in (None, "main", "temp"):
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


def run_query(database: "str | Path", sql: str, timeout: float = DEFAULT_TIMEOUT,
              max_rows: int = DEFAULT_MAX_ROWS) -> QueryResult:
    """Execute one read-only query against a SQLite file (see the module docstring); never raises for a bad
    query: the result's ``error`` says what went wrong."""
    text = (sql or "").strip()
    db = str(database)
    result = QueryResult(sql=text, database=db)
    body = strip_comments(text).strip().rstrip(";").strip()
    if not body:
        result.error = "empty query"
        return result
    if ";" in _mask_literals(body):
        result.error = "only one statement may be executed"
        return result
    if not _QUERY_START.match(body):
        result.error = "not a query: only SELECT, WITH and VALUES statements are executed"
        return result
    from .schema import connect_readonly

    try:
        conn = connect_readonly(db, timeout=min(timeout, 5.0))
    except StructError as exc:
        result.error = str(exc)
        return result
    try:
        conn.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
        conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, MAX_LENGTH)
        conn.set_authorizer(_authorizer)
        deadline = time.monotonic() + timeout
        conn.set_progress_handler(lambda: 1 if time.monotonic() > deadline else 0, 1000)
        cur = conn.execute(body)
        rows = cur.fetchmany(max_rows + 1)
        if len(rows) > max_rows:
            rows = rows[:max_rows]
            result.truncated = True
        result.columns = [d[0] for d in (cur.description or [])]
        result.rows = [tuple(r) for r in rows]
    except sqlite3.OperationalError as exc:
        msg = str(exc)
        result.error = f"timed out after {timeout:g}s" if msg == "interrupted" else msg
    except (sqlite3.Error, sqlite3.Warning, ValueError, OverflowError, MemoryError) as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        try:
            conn.set_progress_handler(None, 0)
            conn.set_authorizer(None)
        finally:
            conn.close()
    if result.error is not None:
        result.rows, result.columns = [], []
    return result


def _mask_literals(sql: str) -> str:
    """Replace the contents of string literals and quoted identifiers by ``x`` (to find statement separators)."""
    return re.sub(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|`[^`]*`|\[[^\]]*\]", lambda m: "x" * len(m.group()), sql)


# ------------------------------------------------------------------------------------------------ normalisation

_TOKEN = re.compile(r"""
    '(?:[^']|'')*'             # string literal
  | "(?:[^"]|"")*"             # quoted identifier (or string, in SQLite's lenient mode)
  | `[^`]*`
  | \d+\.\d*|\.\d+|\d+         # numbers
  | [A-Za-z_][A-Za-z0-9_$]*(?:\.[A-Za-z_*][A-Za-z0-9_$]*)*   # identifiers, qualified names
  | <>|!=|<=|>=|==|\|\|
  | \S                         # any other single character
""", re.VERBOSE)


def sql_tokens(sql: str) -> list[str]:
    """Tokens of a query: literals kept verbatim (double-quoted strings become single-quoted), everything else
    lower-cased; ``!=`` is ``<>``, ``==`` is ``=``, a trailing ``;`` is dropped."""
    out = []
    for tok in _TOKEN.findall(strip_comments(sql)):
        if tok.startswith("'"):
            out.append(tok)
        elif tok.startswith('"'):
            inner = tok[1:-1].replace('""', '"')
            out.append("'" + inner.replace("'", "''") + "'")
        else:
            low = tok.lower()
            out.append({"!=": "<>", "==": "="}.get(low, low))
    while out and out[-1] == ";":
        out.pop()
    return out


def normalize_sql(sql: str) -> str:
    """A canonical spelling of a query for exact match and as a training target: lower-cased keywords and
    identifiers, string literals verbatim, one space between tokens (``SELECT COUNT(*) FROM t WHERE a="x";``
    -> ``select count ( * ) from t where a = 'x'``). It still runs: SQLite ignores whitespace between tokens."""
    return " ".join(sql_tokens(sql or ""))


def sql_exact_match(prediction: str, gold: str) -> bool:
    """Whether two queries are the same after :func:`normalize_sql`."""
    return normalize_sql(prediction) == normalize_sql(gold)


def has_top_level_order_by(sql: str) -> bool:
    """Whether the outermost query sorts its result (so row order matters when comparing results)."""
    depth = 0
    toks = sql_tokens(sql)
    for i, tok in enumerate(toks):
        if tok == "(":
            depth += 1
        elif tok == ")":
            depth -= 1
        elif tok == "order" and depth == 0 and i + 1 < len(toks) and toks[i + 1] == "by":
            return True
    return False


def _norm_value(v: Any) -> Any:
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        r = round(v, 6)
        return int(r) if r == int(r) and abs(r) < 1e15 else r
    if isinstance(v, bytes):
        return v.hex()
    return v


def _norm_rows(rows: Iterable[Sequence[Any]]) -> list[tuple]:
    return [tuple(_norm_value(v) for v in r) for r in rows]


def results_match(pred: QueryResult, gold: QueryResult, ordered: bool = False) -> bool:
    """Whether a predicted result equals the gold one (both must have succeeded and not been truncated)."""
    if not (pred.ok and gold.ok) or pred.truncated or gold.truncated:
        return False
    p, g = _norm_rows(pred.rows), _norm_rows(gold.rows)
    if len(p) != len(g) or (p and len(p[0]) != len(g[0])):
        return False
    return p == g if ordered else Counter(p) == Counter(g)


def execution_match(prediction: str, gold: str, database: "str | Path", timeout: float = DEFAULT_TIMEOUT,
                    gold_result: QueryResult | None = None) -> bool:
    """Whether ``prediction`` returns the same rows as ``gold`` on ``database`` (see :func:`results_match`)."""
    g = gold_result or run_query(database, gold, timeout=timeout)
    p = run_query(database, prediction, timeout=timeout)
    return results_match(p, g, ordered=has_top_level_order_by(gold))


def execution_accuracy(predictions: Sequence[str], golds: Sequence[str], databases: "str | Path | Sequence",
                       timeout: float = DEFAULT_TIMEOUT) -> float:
    """Percentage (0-100) of predictions whose result equals the gold query's. ``databases`` is one path for
    all pairs or one per pair. A prediction that fails (malformed, writes, attaches, times out) scores zero; a
    gold query that fails also scores zero for its pair."""
    if len(predictions) != len(golds):
        raise ValueError(f"{len(predictions)} predictions but {len(golds)} gold queries")
    if not predictions:
        return 0.0
    dbs = [databases] * len(golds) if isinstance(databases, (str, Path)) else list(databases)
    if len(dbs) != len(golds):
        raise ValueError(f"{len(dbs)} databases for {len(golds)} gold queries")
    hits = sum(execution_match(p or "", g, d, timeout) for p, g, d in zip(predictions, golds, dbs))
    return 100.0 * hits / len(golds)
