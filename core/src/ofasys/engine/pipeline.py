"""A task's data path: row -> preprocessed sample -> collated batch.

A :class:`TaskPipeline` is built once per task from its plan: the factory hooks run here (and only here), and
the returned preprocessors/postprocessors are called directly in DataLoader workers. Everything in this module
is picklable so workers (fork or spawn) receive a copy.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from ..components import BuildContext, Features, SampleContext, Tokens
from ..errors import DataError, PlanError
from ..generation.constraints import Chain, Fixed, Free, Repeat
from ..plan import GroupPlan, Plan, SlotPlan, TemplatePlan
from ..vocab import Vocabulary


@dataclass
class Piece:
    """One preprocessed element of a side: merged later into token runs or feature segments."""

    kind: str  # "tokens" | "features" | "marker"
    slot: SlotPlan | None = None
    value: Tokens | Features | str | None = None


@dataclass
class Sample:
    """One preprocessed example (the output of a worker, the input of collate)."""

    encoder: list[Piece]
    decoder: list[Piece]
    template: int
    meta: dict = field(default_factory=dict)


def _rows_of(pieces: list[Piece], vocab: Vocabulary, side: str) -> list[tuple[str, Any]]:
    """Merge consecutive token pieces into runs; returns [("tokens", ids) | ("features", piece)].

    Without explicit markers the first token run of the encoder starts with BOS and the last ends with EOS.
    """
    explicit = any(p.kind == "marker" for p in pieces)
    segs: list[tuple[str, Any]] = []
    run: list[int] | None = None
    for p in pieces:
        if p.kind == "features":
            if run is not None:
                segs.append(("tokens", run))
                run = None
            segs.append(("features", p))
            continue
        if run is None:
            run = []
        if p.kind == "marker":
            run.append(vocab.bos if p.value == "BOS" else vocab.eos)
        else:
            run.extend(p.value.ids)  # type: ignore[union-attr]
    if run is not None:
        segs.append(("tokens", run))
    if not explicit and side == "encoder":
        tok_idx = [i for i, (k, _) in enumerate(segs) if k == "tokens"]
        if tok_idx:
            first, last = tok_idx[0], tok_idx[-1]
            segs[first] = ("tokens", [vocab.bos] + segs[first][1])
            segs[last] = ("tokens", segs[last][1] + [vocab.eos])
    return [s for s in segs if not (s[0] == "tokens" and not s[1])]


class TaskPipeline:
    """Preprocess and collate one task's samples according to its plan."""

    def __init__(self, name: str, plan: Plan, vocab: Vocabulary, manager, model_config: dict | None = None,
                 max_source_length: int = 1024, max_target_length: int = 1024):
        self.name = name
        self.plan = plan
        self.vocab = vocab
        self.max_source_length = max_source_length
        self.max_target_length = max_target_length
        ctx = BuildContext(vocab=vocab, model_config=dict(model_config or {}), task=name, plan=plan)
        self.preprocessors: dict[str, Any] = {}  # by slot key
        self.postprocessors: dict[str, Any] = {}
        for slot in plan.all_slots():
            pre = manager.build("preprocess", slot, ctx)
            if pre is None:
                raise PlanError(f"task {name!r}: no installed plugin builds the preprocessor "
                                f"'{slot.components.get('preprocess')}' of slot type {slot.type} "
                                f"(provided by {slot.plugin} {slot.version}); the plugin may be too old")
            self.preprocessors[slot.key] = pre
        for slot in plan.outputs:
            post = manager.build("postprocess", slot, ctx)
            if post is None:
                raise PlanError(f"task {name!r}: no installed plugin builds the postprocessor of output slot "
                                f"{slot.type}:{slot.column}")
            self.postprocessors[slot.key] = post
        self.target_kind = plan.target_kind

    def preprocessor(self, slot: SlotPlan):
        return self.preprocessors[slot.key]

    # ------------------------------------------------------------------------------------ samples
    def make_sample(self, row: dict, split: str, rng: random.Random, with_target: bool = True) -> Sample:
        """Preprocess one row. Raises :class:`DataError` for a bad value (the caller counts and skips it)."""
        t_index = rng.randrange(len(self.plan.templates)) if len(self.plan.templates) > 1 and split == "train" else 0
        template = self.plan.templates[t_index]
        ctx = SampleContext(split=split, row=row, rng=rng, vocab=self.vocab)
        # preprocess in slot order (lower `order` first: images before the boxes that follow them)
        order = sorted(((self.preprocessor(s).order, i, s) for i, s in enumerate(template.walk())
                        if s.literal is None), key=lambda x: (x[0], x[1]))
        values: dict[int, Any] = {}
        for _, _, slot in order:
            if slot.side == "decoder" and not with_target:
                continue
            if slot.column not in row:
                raise DataError(f"task {self.name!r}: the row has no column '{slot.column}' "
                                f"(slot [{slot.type}:{slot.column}]); it has {', '.join(sorted(row)) or 'none'}")
            value = row[slot.column]
            pre = self.preprocessor(slot)
            try:
                if slot.group is not None:
                    if not isinstance(value, (list, tuple)):
                        raise DataError(f"column '{slot.column}' is in a repetition group and must hold a list, "
                                        f"not {type(value).__name__}")
                    values[slot.key] = [pre(v, ctx) for v in value]
                else:
                    values[slot.key] = pre(value, ctx)
            except DataError:
                raise
            except Exception as exc:  # a plugin failing on one value is a bad sample, not a crash
                raise DataError(f"task {self.name!r}: slot [{slot.type}:{slot.column}] could not read its value: "
                                f"{type(exc).__name__}: {exc}") from exc
        enc = self._pieces(template.encoder, values, ctx, with_target=True)
        dec = self._pieces(template.decoder, values, ctx, with_target=with_target)
        meta = {"row": {k: row[k] for k in row}, "features": {}, "state": ctx.state}
        for p in dec:
            if p.kind == "features" and isinstance(p.value, Features):
                meta["features"] = p.value.meta
        return Sample(enc, dec, t_index, meta)

    def _pieces(self, items, values, ctx: SampleContext, with_target: bool, index: int | None = None) -> list[Piece]:
        out: list[Piece] = []
        for it in items:
            if isinstance(it, str):
                out.append(Piece("marker", value=it))
            elif isinstance(it, GroupPlan):
                lengths = {len(values[s.key]) for s in it.items if isinstance(s, SlotPlan) and s.literal is None
                           and s.key in values}
                if len(lengths) > 1:
                    raise DataError(f"task {self.name!r}: the lists bound by the repetition group "
                                    f"({', '.join(it.columns)}) have different lengths {sorted(lengths)}")
                n = lengths.pop() if lengths else 0
                for k in range(n):
                    out.extend(self._pieces(it.items, values, ctx, with_target, index=k))
            else:
                slot = it
                if slot.literal is not None:
                    out.append(Piece("tokens", slot, self.preprocessor(slot)(slot.literal, ctx)))
                    continue
                if slot.key not in values:  # output slot at inference
                    out.append(Piece(slot.kind, slot, self.preprocessor(slot).target_placeholder(ctx)))
                    continue
                v = values[slot.key]
                if index is not None:
                    v = v[index]
                out.append(Piece("features" if isinstance(v, Features) else "tokens", slot, v))
        return out

    def literal_ids(self, slot: SlotPlan) -> list[int]:
        """Token ids of a plain-text piece (the same for every sample)."""
        cache = self.__dict__.setdefault("_literal_ids", {})
        if slot.key not in cache:
            ctx = SampleContext(split="test", row={}, rng=random.Random(0), vocab=self.vocab)
            cache[slot.key] = list(self.preprocessor(slot)(slot.literal, ctx).ids)
        return cache[slot.key]

    # ------------------------------------------------------------------------------------ constraints
    def constraint(self, template_index: int = 0, ctx: SampleContext | None = None):
        """The decoding constraint of a template's output side (forced plain text, closed sets, bins...)."""
        cache = self.__dict__.setdefault("_constraints", {})
        if ctx is None and template_index in cache:
            return cache[template_index]
        template = self.plan.templates[template_index]
        cacheable = ctx is None
        if ctx is None:
            ctx = SampleContext(split="test", row={}, rng=random.Random(0), vocab=self.vocab)

        def part(items) -> list:
            parts = []
            for it in items:
                if isinstance(it, str):
                    parts.append(Fixed([self.vocab.bos if it == "BOS" else self.vocab.eos]))
                elif isinstance(it, GroupPlan):
                    parts.append(Repeat(Chain(part(it.items))))
                elif it.literal is not None:
                    parts.append(Fixed(self.literal_ids(it)))
                else:
                    c = self.preprocessor(it).constraint(ctx)
                    parts.append(c if c is not None else Free())
            return parts

        parts = part(template.decoder)
        result = None if all(isinstance(p, Free) for p in parts) else Chain(parts)
        if cacheable:
            cache[template_index] = result
        return result

    # ------------------------------------------------------------------------------------ collate
    def collate(self, samples: list[Sample]):
        from .batch import collate_samples

        return collate_samples(self, samples)
