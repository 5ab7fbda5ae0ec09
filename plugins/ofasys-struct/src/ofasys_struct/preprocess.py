"""The STRUCT preprocessor: a structured value -> ids of the shared ``text`` block.

The value is linearised into units (:mod:`ofasys_struct.linearize`), each unit is encoded with the TEXT
plugin's byte-level BPE (with a leading space, exactly as ofasys-text encodes a piece of text, so the ids of the
units concatenate to the ids of the joined text), and units are kept while they fit in ``max_length``: a
truncated linearisation always ends with a whole cell.
"""

from __future__ import annotations

from typing import Any

from ofasys.components import Preprocessor, SampleContext, Tokens
from ofasys.errors import ConfigError, DataError, PlanError

from .linearize import KINDS, StructError, database_units, detect_kind, to_database, units_of
from .schema import match_values
from .sql import normalize_sql

BLOCK = "text"
VARIANTS = ("struct",) + KINDS + ("sql",)
GRID_CELLS = tuple(str(d) for d in range(10)) + ("_",)
_CACHE_LIMIT = 200_000


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def database_columns(plan: Any, exclude: str | None = None) -> list[str]:
    """Columns of the input STRUCT slots of a plan that may hold a database (``preprocess=database`` or the
    auto-detecting default)."""
    out = []
    for s in (plan.slots.values() if plan is not None else ()):
        if s.type == "STRUCT" and s.side == "encoder" and s.column and s.column != exclude and \
                s.components.get("preprocess") in ("struct", "database"):
            out.append(s.column)
    return out


class StructPreprocessor(Preprocessor):
    """Preprocessor of a ``STRUCT`` slot (built by :func:`ofasys_struct.plugin.ofasys_preprocess`).

    The variant (``preprocess=``) fixes how the value is read: ``struct`` (default) guesses the kind from the
    value (:func:`ofasys_struct.linearize.detect_kind`); ``table``, ``triples``, ``database`` and ``grid``
    force one; ``sql`` takes a query string and encodes its normalised spelling
    (:func:`ofasys_struct.sql.normalize_sql`). A ``database`` slot with ``question=<column>`` adds the values
    of the database mentioned by that column of the row (``ctx.row``) to the schema. On the output side a
    ``grid`` slot with ``size=N`` is constrained to N rows of N single-token cells.
    """

    def __init__(self, slot: Any, vocab: Any, tokenizer: Any = None):
        super().__init__(slot, vocab)
        from ofasys_text.tokenizer import TextTokenizer

        self.tokenizer = tokenizer or TextTokenizer()
        if not vocab.has_block(BLOCK):
            raise ConfigError("the model's vocabulary has no 'text' block, which STRUCT slots are encoded into")
        block = vocab.block(BLOCK)
        if block.size != len(self.tokenizer):
            raise ConfigError(f"the model's 'text' block has {block.size} tokens but the text tokenizer "
                              f"{self.tokenizer.path} has {len(self.tokenizer)}: use the tokenizer the model was "
                              "trained with (OFASYS_TEXT_TOKENIZER)")
        self._start = block.start
        attrs = dict(getattr(slot, "attrs", None) or {})
        self.column = getattr(slot, "column", None)
        self.side = getattr(slot, "side", "encoder")
        self.variant = (getattr(slot, "components", None) or {}).get("preprocess") or "struct"
        if self.variant not in VARIANTS:
            raise PlanError(f"STRUCT slot '{self.column}': unknown preprocess variant {self.variant!r}")
        self.max_length = int(attrs.get("max_length") or 0)
        if self.max_length < 0:
            raise PlanError(f"STRUCT slot '{self.column}': max_length must be >= 0 (0 = no limit)")
        self.uncased = bool(attrs.get("uncased", False))
        self.question = attrs.get("question")
        self.sample_values = int(attrs.get("sample_values") or 0)
        self.size = int(attrs.get("size") or 0)
        if self.question is not None and self.variant not in ("struct", "database"):
            raise PlanError(f"STRUCT slot '{self.column}': question= only applies to a database "
                            f"(preprocess=database or the default), not to preprocess={self.variant}")
        if self.size and self.variant != "grid":
            raise PlanError(f"STRUCT slot '{self.column}': size= only applies to preprocess=grid")
        self._cache: dict[str, tuple[int, ...]] = {}
        self._constraint = self._build_constraint() if self.side == "decoder" else None

    # ------------------------------------------------------------------------------------------ encoding
    def encode_units(self, units: list[str]) -> tuple[list[int], int]:
        """Shared-vocabulary ids of ``units`` truncated at a unit boundary to ``max_length``; also returns how
        many units were kept. A first unit longer than ``max_length`` is cut (there is nothing whole to keep)."""
        missing = [u for u in dict.fromkeys(units) if u not in self._cache]
        if missing:
            if len(self._cache) > _CACHE_LIMIT:
                self._cache.clear()
            start = self._start
            for u, ids in zip(missing, self.tokenizer.encode_batch([" " + u for u in missing])):
                self._cache[u] = tuple(start + i for i in ids)
        out: list[int] = []
        kept = 0
        for u in units:
            ids = self._cache[u]
            if self.max_length and len(out) + len(ids) > self.max_length:
                if not out:
                    out = list(ids[: self.max_length])
                    kept = 1
                break
            out.extend(ids)
            kept += 1
        return out, kept

    def units(self, value: Any, ctx: SampleContext | None = None) -> list[str]:
        """The linearisation units of one value (see :mod:`ofasys_struct.linearize`)."""
        if self.variant == "sql":
            if not isinstance(value, str) or not value.strip():
                raise StructError(f"a sql slot needs a query string, not {_describe(value)}")
            units = normalize_sql(value).split(" ")
        else:
            kind = self.variant if self.variant != "struct" else detect_kind(value)
            if kind == "database":
                db = to_database(value)
                matched = None
                if self.question is not None:
                    row = ctx.row if ctx is not None else {}
                    if self.question not in row:
                        raise DataError(f"STRUCT slot '{self.column}' matches values against column "
                                        f"'{self.question}' (question={self.question}), which the row lacks; it "
                                        f"has {', '.join(sorted(row)) or 'no columns'}")
                    q = row[self.question]
                    matched = match_values(q if isinstance(q, str) else "", db)
                units = database_units(db, matched, self.sample_values)
            else:
                units = units_of(value, kind)
            if ctx is not None:
                ctx.state.setdefault("struct_kinds", {})[self.column] = kind
        return [u.lower() for u in units] if self.uncased else units

    def linearize(self, value: Any, ctx: SampleContext | None = None) -> str:
        """The linear text this slot encodes for ``value`` (after truncation), for inspection."""
        units = self.units(value, ctx)
        _, kept = self.encode_units(units)
        return " ".join(units[:kept])

    # ------------------------------------------------------------------------------------------ per sample
    def __call__(self, value: Any, ctx: SampleContext) -> Tokens:
        try:
            units = self.units(value, ctx)
        except StructError as exc:
            raise DataError(f"column '{self.column}' of a STRUCT slot: {exc}") from None
        ids, _ = self.encode_units(units)
        if not ids:
            raise DataError(f"column '{self.column}' of a STRUCT slot linearises to nothing: {_describe(value)}")
        return Tokens(ids, loss=True, constraint=self._constraint)

    def target_placeholder(self, ctx: SampleContext) -> Tokens:
        return Tokens(ids=[], constraint=self._constraint)

    def constraint(self, ctx: SampleContext | None = None) -> Any:
        """``None`` (free text) except for an output ``grid`` (single-token cells and ``|`` row separators;
        exactly ``size`` x ``size`` cells when ``size`` is set)."""
        return self._constraint

    def _build_constraint(self) -> Any:
        if self.variant != "grid":
            return None
        from ofasys.generation.constraints import Block, Chain, Fixed, Repeat

        cells = []
        for c in GRID_CELLS:
            ids = self._ids_of(c)
            if len(ids) == 1:
                cells.append(ids[0])
        sep = self._ids_of("|")
        if self.size:
            parts: list[Any] = []
            for r in range(self.size):
                if r:
                    parts.append(Fixed(sep))
                parts.append(Block(cells, self.size, self.size))
            return Chain(parts)
        return Chain([Block(cells, 1, 64), Repeat(Chain([Fixed(sep), Block(cells, 1, 64)]), max=64)])

    def _ids_of(self, unit: str) -> list[int]:
        ids, _ = self.encode_units([unit.lower() if self.uncased else unit])
        return ids

    def __getstate__(self) -> dict:
        d = dict(self.__dict__)
        d["_cache"] = {}
        return d
