"""Planning against the installed plugins, plan JSON, lazy plugin loading and the shared vocabulary."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ofasys.errors import CheckpointError, InstructionError
from ofasys.plan import GroupPlan, Plan, build_plan
from ofasys.plugins import PluginManager
from ofasys.spec import VocabBlock
from ofasys.vocab import SPECIALS, Vocabulary


def test_plan_binds_plugins_components_and_typed_defaults():
    plan = build_plan("[IMAGE:img,patch_image_size=64] which region does the text \" [TEXT:cap] \" describe? "
                      "-> [BOX:region]", manager=PluginManager())
    img, cap, box = plan.slots["img"], plan.slots["cap"], plan.slots["region"]
    assert (img.plugin, img.kind, img.attrs["patch_image_size"]) == ("ofasys-image", "features", 64)
    assert img.components["preprocess"] == "image" and img.adaptor_key.startswith("IMAGE.")
    assert cap.attrs["max_length"] == 128 and cap.side == "encoder"
    assert box.side == "decoder" and box.components["generator"] == "sequence" and box.attrs["num_bins"] == 1000
    assert [s.key for s in plan.outputs] == ["region"]
    assert plan.columns() == ["img", "cap", "region"]


def test_plan_json_round_trip_keeps_structure():
    plan = build_plan("[IMAGE:img] detect the objects. -> ([BOX:boxes] [TEXT:labels])*", manager=PluginManager())
    again = Plan.from_json(json.loads(json.dumps(plan.to_json())))
    assert again.to_json() == plan.to_json()
    group = again.templates[0].decoder[0]
    assert isinstance(group, GroupPlan) and group.columns == ["boxes", "labels"]
    # column slots are shared objects between the template and the slot table
    assert group.items[0] is again.slots["boxes"]


def test_templates_must_bind_the_same_columns():
    plan = build_plan("review: [TEXT:r] -> [TEXT:l] ||| what about [TEXT:r] ? -> [TEXT:l]", manager=PluginManager())
    assert len(plan.templates) == 2 and plan.templates[1].decoder[0] is plan.slots["l"]
    with pytest.raises(InstructionError, match="different columns"):
        build_plan("review: [TEXT:r] -> [TEXT:l] ||| what about [TEXT:x] ? -> [TEXT:l]", manager=PluginManager())


def test_output_side_needs_a_slot():
    with pytest.raises(InstructionError, match="nothing to learn"):
        build_plan("[TEXT:x] -> just text", manager=PluginManager())


def test_an_empty_input_side_is_allowed():
    plan = build_plan("-> [TEXT:story]", manager=PluginManager())
    assert plan.templates[0].encoder == [] and plan.outputs[0].key == "story"


def test_planning_loads_only_the_plugins_an_instruction_names():
    code = ("import sys\nfrom ofasys.plan import build_plan\nbuild_plan('[TEXT:a] -> [TEXT:b]')\n"
            "print(sorted(m for m in sys.modules if m.startswith('ofasys_')))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    loaded = eval(r.stdout.strip())
    assert "ofasys_text.plugin" in loaded
    assert not any(m.startswith(("ofasys_image", "ofasys_audio", "ofasys_video", "ofasys_motion")) for m in loaded)


def test_vocabulary_ids_do_not_depend_on_block_order():
    a, b = VocabBlock("text", ("x", "y", "z")), VocabBlock("bin", tuple(str(i) for i in range(4)))
    v1, v2 = Vocabulary([a, b]), Vocabulary([b, a])
    assert v1.tokens() == v2.tokens() and v1.fingerprint() == v2.fingerprint()
    assert v1.block("bin").start == len(SPECIALS) and v1.block("text").start == len(SPECIALS) + 4
    assert v1.id("<text>y") == v1.block("text").start + 1 and v1.token(v1.id("<bin>3")) == "<bin>3"


def test_vocabulary_json_round_trip_and_tamper_detection():
    v = Vocabulary([VocabBlock("text", ("a", "b")), VocabBlock("bin", ("0", "1"))])
    data = json.loads(json.dumps(v.to_json()))
    assert Vocabulary.from_json(data).same_as(v)
    data["blocks"][0]["tokens"][0] = "tampered"
    with pytest.raises(CheckpointError, match="corrupt"):
        Vocabulary.from_json(data)


def test_vocabulary_remap_moves_rows_and_rejects_changed_blocks():
    text = VocabBlock("text", ("a", "b", "c"))
    old = Vocabulary([text])
    new = Vocabulary([text, VocabBlock("bin", ("0", "1"))])  # a block added in front of text
    mapping = new.remap_from(old)
    assert mapping[new.id("<text>b")] == old.id("<text>b")
    assert mapping[new.id("<bin>0")] == -1
    changed = Vocabulary([VocabBlock("text", ("a", "b", "d"))])
    with pytest.raises(CheckpointError, match="differs"):
        changed.remap_from(old)
