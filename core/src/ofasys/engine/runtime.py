"""A universal model together with its vocabulary and the pipelines, criteria and generators of its tasks.

Shared by the :class:`~ofasys.engine.trainer.Trainer` and :class:`~ofasys.engine.inference.OFASys`: training
and serving build tasks the same way, so a checkpoint serves exactly what was trained.
"""

from __future__ import annotations

from typing import Any

import torch

from ..components import BuildContext
from ..errors import PlanError
from ..plan import GroupPlan, Plan, SlotPlan
from ..plugins import get_manager
from ..vocab import Vocabulary
from .batch import Batch
from .pipeline import TaskPipeline
from .task import Task

GENERATION_OPTIONS = ("beam_size", "max_len", "min_len", "len_penalty", "no_repeat_ngram_size", "sampling",
                      "temperature", "top_k", "top_p", "return_n_best", "seed", "use_cache")


def build_vocab(plans: list[Plan], manager=None) -> Vocabulary:
    """The vocabulary a set of tasks needs: the blocks of every token slot they use, sorted by name."""
    manager = manager or get_manager()
    names: set[str] = set()
    for plan in plans:
        for slot in plan.all_slots():
            names.update(slot.vocab_blocks)
    return Vocabulary(manager.vocab_blocks(names))


def split_output(items: list, ids: list[int], vocab: Vocabulary) -> dict[str, Any]:
    """Attribute generated ids to the output slots of a template, by walking its decoder items.

    Forced pieces (plain text, markers) consume their own ids; a slot consumes the longest run of ids from its
    vocabulary blocks; a repetition group repeats while ids remain. Returns ``{slot key: ids}`` (a list of id
    lists for slots inside a group).
    """
    out: dict[str, Any] = {}
    pos = 0

    def block_ok(slot: SlotPlan, tok: int) -> bool:
        b = vocab.block_of(tok)
        return b is not None and b in slot.vocab_blocks

    def walk(its, in_group: bool) -> bool:
        nonlocal pos
        progressed = False
        for it in its:
            if isinstance(it, str):
                if pos < len(ids) and ids[pos] in (vocab.bos, vocab.eos):
                    pos += 1
            elif isinstance(it, GroupPlan):
                for _ in range(len(ids) + 1):
                    start = pos
                    if not walk(it.items, True) or pos == start or pos >= len(ids):
                        break
            elif it.literal is not None:
                continue  # forced text is not part of the generated output (the generator strips the prefix)
            else:
                start = pos
                limit = len(ids)
                while pos < limit and block_ok(it, ids[pos]):
                    pos += 1
                    if "bin" in it.vocab_blocks and pos - start == 4:
                        break
                piece = ids[start:pos]
                progressed = progressed or bool(piece)
                if in_group:
                    out.setdefault(it.key, []).append(piece)
                else:
                    out[it.key] = piece
        return progressed

    walk(items, False)
    return out


class Runtime:
    """Owns the model's task-side machinery. ``model`` must already be initialised with its vocabulary."""

    def __init__(self, model, manager=None, label_smoothing: float = 0.1):
        self.model = model
        self.manager = manager or get_manager()
        self.vocab: Vocabulary = model.vocab
        self.label_smoothing = label_smoothing
        self.tasks: dict[str, Task] = {}
        self.pipelines: dict[str, TaskPipeline] = {}
        self.criteria: dict[str, Any] = {}
        self.generators: dict[str, Any] = {}
        self.adaptor_slots: dict[str, dict] = dict(getattr(model, "adaptor_slots", {}) or {})

    def context(self, plan: Plan, task: str) -> BuildContext:
        cfg = self.model.config.to_dict() if hasattr(self.model.config, "to_dict") else dict(self.model.config)
        return BuildContext(vocab=self.vocab, model_config=cfg, task=task, plan=plan,
                            shared={"model": self.model})

    def ensure_adaptors(self, plan: Plan, task: str = "") -> None:
        """Create the adaptor of every feature slot the model does not have yet (shared by adaptor key)."""
        ctx = self.context(plan, task)
        for slot in plan.all_slots():
            if slot.kind != "features":
                continue
            key = slot.adaptor_key
            if self.model.has_adaptor(key):
                continue
            module = self.manager.build("adaptor", slot, ctx)
            if module is None:
                raise PlanError(f"no installed plugin builds the adaptor '{slot.components.get('adaptor')}' of "
                                f"slot type {slot.type} (provided by {slot.plugin} {slot.version})")
            self.model.add_adaptor(key, module)
            self.adaptor_slots[key] = slot.to_json()
        self.model.adaptor_slots = self.adaptor_slots

    def add_task(self, task: Task) -> TaskPipeline:
        plan = task.plan
        missing = {b for s in plan.all_slots() for b in s.vocab_blocks if not self.vocab.has_block(b)}
        if missing:
            raise PlanError(f"task {task.name!r} needs vocabulary block(s) {', '.join(sorted(missing))} that the "
                            f"model's vocabulary lacks (it has {', '.join(self.vocab.block_names)}); train a model "
                            "that includes such a task")
        self.ensure_adaptors(plan, task.name)
        pipe = TaskPipeline(task.name, plan, self.vocab, self.manager, self.context(plan, task.name).model_config,
                            max_source_length=task.max_source_length, max_target_length=task.max_target_length)
        out = plan.outputs[0]
        ctx = self.context(plan, task.name)
        crit = self.manager.build("criterion", out, ctx)
        if crit is None:
            if plan.target_kind != "tokens":
                raise PlanError(f"task {task.name!r}: no installed plugin builds the criterion of output slot "
                                f"{out.type}:{out.column}")
            from ..model.criterion import TokenCriterion

            crit = TokenCriterion(epsilon=self.label_smoothing, pad=self.vocab.pad)
        gen = self.manager.build("generator", out, ctx)
        if gen is None and plan.target_kind != "tokens":
            raise PlanError(f"task {task.name!r}: no installed plugin builds the generator of output slot "
                            f"{out.type}:{out.column}")
        self.tasks[task.name] = task
        self.pipelines[task.name] = pipe
        self.criteria[task.name] = crit
        self.generators[task.name] = gen
        return pipe

    # -------------------------------------------------------------------------------------------- training
    def loss(self, batch: Batch) -> tuple[torch.Tensor, dict]:
        """The task's loss as a per-token (or per-frame) mean, and logging values."""
        crit = self.criteria[batch.task]
        loss_sum, logging = crit(self.model, batch)
        size = max(float(logging.get("sample_size", 1) or 1), 1.0)
        return loss_sum / size, logging

    # -------------------------------------------------------------------------------------------- generation
    def free_ids(self) -> torch.Tensor:
        """Ids unconstrained text may use: the text block (or every non-special id) and EOS."""
        mask = torch.zeros(self.model.config.vocab_size, dtype=torch.bool)
        if self.vocab.has_block("text"):
            r = self.vocab.block("text")
            mask[r.start:r.stop] = True
        else:
            mask[5:len(self.vocab)] = True
        mask[self.vocab.eos] = True
        return mask

    @torch.no_grad()
    def predict(self, batch: Batch, **options) -> list[dict]:
        """Generate and postprocess one batch: one dict of output fields per sample."""
        task = self.tasks[batch.task]
        pipe = self.pipelines[batch.task]
        opts = {**task.generation, **{k: v for k, v in options.items() if v is not None}}
        gen = self.generators[batch.task]
        known = (*GENERATION_OPTIONS, *getattr(gen, "options", ()))  # a plugin generator's own (diffusion steps...)
        unknown = set(opts) - set(known)
        if unknown:
            from ..errors import ConfigError

            raise ConfigError(f"unknown generation option(s) {', '.join(sorted(unknown))}; "
                              f"known: {', '.join(known)}")
        was_training = self.model.training
        self.model.eval()
        try:
            batch = batch.to(self.model.device)
            if gen is not None:
                preds = gen.generate(self.model, batch, **opts)
                out_slot = pipe.plan.outputs[0]
                post = pipe.postprocessors[out_slot.key]
                results = []
                for p, m in zip(preds, batch.meta):
                    value = post(p, m)
                    # like token outputs: the fields at top level, and the slot's whole dict under its key
                    results.append({out_slot.key: value, **value})
                return results
            return self._predict_tokens(batch, pipe, opts)
        finally:
            self.model.train(was_training)

    def _predict_tokens(self, batch: Batch, pipe: TaskPipeline, opts: dict) -> list[dict]:
        from ..generation.sequence import SequenceGenerator

        opts = dict(opts)
        opts.setdefault("max_len", pipe.max_target_length)
        if opts.get("beam_size", 1) > 1 and "no_repeat_ngram_size" not in opts and not any(batch.constraints):
            opts["no_repeat_ngram_size"] = 3
        gen = SequenceGenerator(**opts)
        hyps = gen.generate(self.model, batch.encoder, constraints=batch.constraints, bos=self.vocab.bos,
                            eos=self.vocab.eos, pad=self.vocab.pad, free_ids_mask=self.free_ids())
        results = []
        for i, h in enumerate(hyps):
            best = h[0]
            template = pipe.plan.templates[batch.templates[i]]
            pieces = split_output(template.decoder, _strip_forced(template.decoder, best.tokens, pipe),
                                  self.vocab)
            fields: dict[str, Any] = {"tokens": list(best.tokens), "score": float(best.score)}
            named: set[str] = set()  # output fields win over a slot key of the same name ([TEXT:text] -> out.text)
            for slot in pipe.plan.outputs:
                post = pipe.postprocessors[slot.key]
                got = pieces.get(slot.key, [] if slot.group is None else [])
                meta = batch.meta[i]
                value = [post(p, meta) for p in got] if slot.group is not None else post(got, meta)
                fields[slot.key] = value
                for name in slot.output_fields:  # inside a group: the list of the items' values
                    if name not in named:
                        named.add(name)
                        fields[name] = [v.get(name) for v in value] if slot.group is not None else value.get(name)
                for name, v in (value.items() if isinstance(value, dict) else ()):
                    if name.startswith("save_") and callable(v):
                        fields.setdefault(name, v)
            for slot in pipe.plan.outputs:  # whole-output fields (a detection's save_box draws every item)
                finalize = getattr(pipe.postprocessors[slot.key], "finalize", None)
                if finalize is not None:
                    finalize(fields, batch.meta[i])
            if opts.get("return_n_best", 1) > 1:
                fields["n_best"] = [{"tokens": list(x.tokens), "score": float(x.score)} for x in h]
            results.append(fields)
        return results


def _strip_forced(items: list, tokens: list[int], pipe: TaskPipeline) -> list[int]:
    """Remove the forced plain-text prefix of the output (it is the instruction's, not the model's answer)."""
    prefix: list[int] = []
    for it in items:
        if isinstance(it, SlotPlan) and it.literal is not None:
            prefix.extend(pipe.literal_ids(it))
        else:
            break
    if prefix and tokens[: len(prefix)] == prefix:
        return tokens[len(prefix):]
    return tokens
