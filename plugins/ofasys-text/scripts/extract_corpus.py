#!/usr/bin/env python3
"""Extract English prose from the docstrings of the Python standard library into the tokenizer corpus.

This produced ``corpus/stdlib_docstrings.txt.gz``, the main training text of the shipped BPE tokenizer. It is
kept for provenance and for regenerating the corpus from another Python; the committed corpus file (not this
script) is the input of ``build_tokenizer.py``, so the tokenizer does not depend on the Python that builds it.

What is kept: every module, class and function docstring of the ``.py`` files of the standard library
(``sysconfig.get_paths()["stdlib"]``), excluding ``site-packages``, the test suites and generated tables.
Each docstring is split into paragraphs; paragraphs that look like code (doctest prompts, indented blocks,
mostly non-letters) are dropped; whitespace is collapsed so that each paragraph is one line. Duplicate
paragraphs are dropped (first occurrence kept) and modules are visited in sorted path order, so the output
depends only on the standard library's sources. The output is gzip-compressed with a zero timestamp, so
identical text gives an identical file.

Licence: the Python standard library is distributed under the PSF License Agreement; see corpus/README.md.

Usage::

    python scripts/extract_corpus.py [--stdlib DIR] [--out corpus/stdlib_docstrings.txt.gz] [--max-bytes N]
"""

from __future__ import annotations

import argparse
import ast
import gzip
import io
import re
import sysconfig
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
EXCLUDED_DIRS = {"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__", "lib2to3",
                 "encodings", "turtledemo", "pydoc_data", "config-3.11-x86_64-linux-gnu"}
EXCLUDED_FILES = {"_sysconfigdata__linux_x86_64-linux-gnu.py", "this.py"}
_WS = re.compile(r"\s+")


def _docstrings(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=True)
            if doc:
                yield doc


def _is_prose(paragraph: str) -> bool:
    lines = paragraph.splitlines()
    if any(line.lstrip().startswith((">>>", "...", "$ ", "%")) for line in lines):
        return False
    if sum(line.startswith((" ", "\t")) for line in lines) > len(lines) / 2:
        return False  # an indented (code or table) block
    text = " ".join(lines)
    letters = sum(c.isalpha() for c in text)
    if len(text) < 20 or letters < 0.7 * len(text.replace(" ", "")):
        return False
    return len(text.split()) >= 4


def extract(stdlib: Path) -> list[str]:
    """The distinct prose paragraphs of the standard library's docstrings, one line each, in a stable order."""
    seen: set[str] = set()
    out: list[str] = []
    files = sorted(p for p in stdlib.rglob("*.py")
                   if not (set(p.relative_to(stdlib).parts[:-1]) & EXCLUDED_DIRS) and p.name not in EXCLUDED_FILES)
    for path in files:
        try:
            source = path.read_text(encoding="utf-8")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                tree = ast.parse(source)
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        for doc in _docstrings(tree):
            for para in re.split(r"\n\s*\n", doc):
                if not _is_prose(para):
                    continue
                line = _WS.sub(" ", para).strip()
                if line not in seen:
                    seen.add(line)
                    out.append(line)
    return out


def write_gz(lines: list[str], out: Path, max_bytes: int) -> int:
    """Write ``lines`` (up to ``max_bytes`` of UTF-8) gzip-compressed with a zero mtime; return the byte count."""
    buf = io.BytesIO()
    total = 0
    for line in lines:
        data = (line + "\n").encode("utf-8")
        if total + len(data) > max_bytes:
            break
        buf.write(data)
        total += len(data)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as gz:
        gz.write(buf.getvalue())
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--stdlib", type=Path, default=Path(sysconfig.get_paths()["stdlib"]))
    ap.add_argument("--out", type=Path, default=HERE / "corpus" / "stdlib_docstrings.txt.gz")
    ap.add_argument("--max-bytes", type=int, default=8_000_000, help="cap on the uncompressed text")
    args = ap.parse_args()
    lines = extract(args.stdlib)
    n = write_gz(lines, args.out, args.max_bytes)
    print(f"{len(lines)} paragraphs, {n} bytes of text -> {args.out} ({args.out.stat().st_size} bytes gzip)")


if __name__ == "__main__":
    main()
