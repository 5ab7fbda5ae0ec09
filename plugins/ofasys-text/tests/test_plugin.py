"""The entry module: light import, registrations, factory hooks, and the whole path through the core."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys

import pytest

from ofasys.components import BuildContext
from ofasys.spec import Metric, SlotType
from ofasys_text import plugin
from ofasys_text.postprocess import TextPostprocessor
from ofasys_text.preprocess import TextPreprocessor



@pytest.mark.slow
def test_importing_the_plugin_is_light():
    code = ("import sys, json, ofasys_text.plugin as p; "
            "p.ofasys_register_slot_types(register=lambda s: None); "
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'tokenizers', 'sacrebleu', 'numpy'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ),
                         check=True)
    assert json.loads(out.stdout) == []


def test_slot_type_declaration():
    declared: list[SlotType] = []
    plugin.ofasys_register_slot_types(register=declared.append)
    (spec,) = declared
    assert spec.name == "TEXT" and spec.kind == "tokens" and spec.vocab_blocks == ("text",)
    assert spec.components == {"preprocess": ("text",), "postprocess": ("text",)}
    assert spec.output_fields == ("text",)
    attrs = {a.name: a for a in spec.attributes}
    assert set(attrs) == {"max_length", "uncased", "no_punctuation", "mask_ratio", "noise_ratio", "no_loss",
                          "closed_set"}
    assert attrs["mask_ratio"].sides == ("encoder",) and attrs["noise_ratio"].sides == ("encoder",)
    assert attrs["no_loss"].sides == ("decoder",) and attrs["closed_set"].sides == ("decoder",)
    assert attrs["closed_set"].flag_or_value and attrs["closed_set"].convert(True) is True
    assert attrs["closed_set"].convert("yes|no|maybe") == ["yes", "no", "maybe"]
    assert all(a.help for a in spec.attributes)


def test_vocab_block():
    blocks = []
    plugin.ofasys_register_vocab_blocks(register=blocks.append)
    (block,) = blocks
    assert block.name == "text" and len(block) == 8192


def test_metrics_registered_and_picklable():
    metrics: list[Metric] = []
    plugin.ofasys_register_metrics(register=metrics.append)
    by_name = {m.name: m for m in metrics}
    assert set(by_name) == {"accuracy", "exact_match", "bleu", "rouge_l"}
    assert by_name["bleu"].fn(["a b c d"], ["a b c d"]) == 100.0
    assert pickle.loads(pickle.dumps(by_name["accuracy"].fn))(["x"], ["x"]) == 100.0


def test_factory_hooks_answer_only_for_text(vocab, make_slot):
    ctx = BuildContext(vocab=vocab)
    assert isinstance(plugin.ofasys_preprocess(make_slot(), ctx), TextPreprocessor)
    assert isinstance(plugin.ofasys_preprocess(make_slot(literal="hi"), ctx), TextPreprocessor)
    assert isinstance(plugin.ofasys_postprocess(make_slot(side="decoder"), ctx), TextPostprocessor)
    assert plugin.ofasys_postprocess(make_slot(side="encoder"), ctx) is None
    assert plugin.ofasys_postprocess(make_slot(side="decoder", literal="answer:"), ctx) is None
    other = make_slot()
    other.type = "IMAGE"
    assert plugin.ofasys_preprocess(other, ctx) is None and plugin.ofasys_postprocess(other, ctx) is None


def test_through_the_core_planner_and_manager(make_ctx, fake_constraints):
    from ofasys.plan import build_plan
    from ofasys.plugins import PluginManager
    from ofasys.vocab import Vocabulary

    manager = PluginManager(load_entry_points=False)
    manager.register(plugin, distribution="ofasys-text", version="0.1.0")
    plan = build_plan('is [TEXT:review,uncased,mask_ratio=0.2] positive? -> answer: [TEXT:label,closed_set="yes|no"]',
                      manager, task="sentiment")
    vocab = Vocabulary(manager.vocab_blocks(["text"]))
    ctx = BuildContext(vocab=vocab, plan=plan)
    slots = list(plan.all_slots())
    pres = [manager.build("preprocess", s, ctx) for s in slots]
    assert all(isinstance(p, TextPreprocessor) for p in pres)
    sample = make_ctx("valid")
    row = {"review": "GREAT movie", "label": "yes"}
    out = [p(row.get(s.column) if s.column else s.literal, sample) for s, p in zip(slots, pres)]
    post = manager.build("postprocess", plan.slots["label"], ctx)
    assert [post(t.ids, {})["text"] for t in out] == ["is", "great movie", "positive?", "answer:", "yes"]
    assert [t.forced for t in out] == [False, False, False, True, False]
    assert [t.loss for t in out] == [False, True, False, False, True]


def test_real_constraint_classes_when_available(vocab, monkeypatch, make_slot, make_ctx):
    constraints = pytest.importorskip("ofasys.generation.constraints")
    from ofasys_text import preprocess

    monkeypatch.setattr(preprocess, "_constraints", lambda: constraints)
    closed = TextPreprocessor(make_slot(side="decoder", closed_set=["yes", "no", "maybe not"]), vocab)
    trie = closed.constraint()
    assert isinstance(trie, constraints.Trie)
    for answer in ("yes", "no", "maybe not"):
        assert trie.accepts(closed(answer, make_ctx()).ids)
    assert not trie.accepts(closed.encode("maybe"))
    literal = TextPreprocessor(make_slot(side="decoder", literal="answer:"), vocab)
    assert isinstance(literal.constraint(), constraints.Fixed)
    assert literal.constraint().accepts(literal(None, make_ctx()).ids)
    clone = pickle.loads(pickle.dumps(closed))
    assert clone.constraint().accepts(closed.encode("yes"))
