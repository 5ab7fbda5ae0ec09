"""The entry modules, the slot-type declarations and what the planner makes of them."""

from __future__ import annotations

import json
import subprocess
import sys

from ofasys.plan import build_plan
from ofasys_image import box, plugin


def test_entry_modules_import_only_the_standard_library_and_ofasys():
    code = ("import sys, json; import ofasys_image.plugin, ofasys_image.box; "
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'torchvision', 'PIL', 'numpy', 'sklearn', 'safetensors'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_slot_types_declare_their_components_and_attributes():
    assert plugin.IMAGE.kind == "features" and plugin.IMAGE.sides == ("encoder", "decoder")
    assert plugin.IMAGE.components["adaptor"][:2] == ("image_resnet", "image_patch")
    # image generation: code tokens of the shipped tokenizer's 256-code block (tests/test_vq.py covers the rest)
    assert plugin.IMAGE.kind_for("image_vqgan") == "tokens" and plugin.IMAGE.vocab_blocks == ("code256",)
    names = {a.name for a in plugin.IMAGE.attributes}
    assert {"patch_image_size", "augment", "norm", "mask_ratio", "backbone", "weights", "patch_size"} <= names
    assert box.BOX.vocab_blocks == ("bin",) and box.BOX.output_fields == ("box",)
    blocks = []
    box.ofasys_register_vocab_blocks(register=blocks.append)
    assert blocks[0].name == "bin" and len(blocks[0]) == 1000 and blocks[0].tokens[:3] == ("0", "1", "2")


def test_plan_of_a_grounding_instruction():
    plan = build_plan("[IMAGE:img] which region does the text [TEXT:expr] describe? -> [BOX:region]")
    img, region = plan.slots["img"], plan.slots["region"]
    assert img.kind == "features" and img.adaptor_key == "IMAGE.image_resnet" and img.plugin == "ofasys-image"
    assert img.attrs["augment"] == "none" and img.attrs["patch_image_size"] is None
    assert region.kind == "tokens" and region.vocab_blocks == ("bin",) and region.attrs["num_bins"] == 1000


def test_detection_plan_repeats_box_and_label():
    plan = build_plan("[IMAGE:img] what are the objects? -> ([BOX:boxes] [TEXT:labels])*")
    assert plan.slots["boxes"].group is not None and plan.slots["boxes"].group == plan.slots["labels"].group


def test_image_generation_plans_with_the_code_block_of_its_tokenizer(tmp_path):
    from ofasys import GeneralistModel, Task, Trainer

    t = Task(name="gen", instruction="draw [TEXT:prompt] -> [IMAGE:img,preprocess=image_vqgan]")
    assert t.plan.slots["img"].kind == "tokens" and t.plan.slots["img"].vocab_blocks == ("code256",)
    t.add_dataset([{"prompt": "a red circle", "img": "x.png"}], "train")
    runtime = Trainer(max_steps=1, output_dir=str(tmp_path)).prepare(GeneralistModel("nano"), [t])
    assert runtime.vocab.block("code256").size == 256
