"""The image tokenizer (``ofasys_image.vq``): the shipped one's reconstruction quality, training a user's one,
the ``code<K>`` vocabulary block following its codebook size, and the bad inputs of ``image_vqgan``."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest
import torch

from ofasys import GeneralistModel, OFASys, Task, Trainer
from ofasys.errors import CheckpointError, ConfigError, DataError, InstructionError, PlanError
from ofasys.plan import build_plan
from ofasys.engine.runtime import build_vocab
from ofasys_image import generation as G
from ofasys_image import plugin, vq
from ofasys_image.vq.model import VQAutoencoder, load_tokenizer, psnr, reconstruction_psnr, to_pixels
from ofasys_image.vq.train import shapes_images, train_vq

# Held-out reconstruction PSNR of the shipped tokenizer, measured on the 200 images of shapes_images(200,
# seed=100_003) (the tokenizer was trained on seed 0): one large shape 27.5 dB, 1-3 object scenes 26.1 dB; a flat
# image of each image's mean colour scores 13.8 dB. Stated thresholds: about 1.5 dB below the measurement.
PSNR_SINGLE = 26.0
PSNR_SCENES = 24.5


@pytest.fixture(scope="module")
def tiny_tokenizer(tmp_path_factory):
    """A user tokenizer with another codebook size (48 codes, 16 px -> 4x4), trained for a few steps."""
    path = tmp_path_factory.mktemp("vq") / "tiny.json"
    torch.set_num_threads(1)
    train_vq("shapes", path, codebook_size=48, image_size=16, downsample=2, code_dim=8, channels=8, steps=30,
             batch_size=16, n_images=64, seed=1)
    return path


def test_shipped_tokenizer_reconstructs_held_out_shapes_above_the_stated_psnr():
    tok = load_tokenizer(None)
    assert (tok.codebook_size, tok.image_size, tok.grid) == (256, 32, 8)
    held = shapes_images(200, seed=100_003, size=32)  # even: one large shape, odd: 1-3 object scenes
    single, scenes = held[0::2], held[1::2]
    got_single, got_scenes = reconstruction_psnr(tok, single), reconstruction_psnr(tok, scenes)
    # a flat image of each held-out image's mean colour: what a tokenizer that keeps no shape would score
    flat = [float(psnr(x.mean((1, 2), keepdim=True).expand_as(x)[None], x[None])) for x in to_pixels(held, 32)]
    assert PSNR_SINGLE > sum(flat) / len(flat) + 5 and PSNR_SCENES > sum(flat) / len(flat) + 5
    assert got_single >= PSNR_SINGLE, got_single
    assert got_scenes >= PSNR_SCENES, got_scenes


def test_shipped_tokenizer_files_are_small_and_describe_themselves():
    cfg = json.loads(vq.SHIPPED.read_text())
    assert cfg["codebook_size"] == 256 and cfg["image_size"] == 32 and cfg["downsample"] == 2
    size = vq.SHIPPED.with_suffix(".safetensors").stat().st_size + G.JUDGE.stat().st_size
    assert size < 5 * 2 ** 20


def test_encode_decode_shapes_and_determinism():
    tok = load_tokenizer(None)
    x = to_pixels(shapes_images(4, seed=5), 32)
    codes = tok.encode(x)
    assert codes.shape == (4, 8, 8) and int(codes.min()) >= 0 and int(codes.max()) < 256
    assert torch.equal(codes, tok.encode(x))
    assert tok.decode(codes).shape == (4, 3, 32, 32)
    # a larger image is resized to the tokenizer's size first
    assert tok.encode(torch.nn.functional.interpolate(x, size=64)).shape == (4, 8, 8)


def test_a_user_tokenizer_of_another_codebook_size_gets_a_block_of_that_size(tiny_tokenizer):
    ins = f"draw [TEXT:prompt] -> [IMAGE:img,preprocess=image_vqgan,tokenizer={tiny_tokenizer}]"
    plan = build_plan(ins)
    assert plan.slots["img"].vocab_blocks == ("code48",)
    vocab = build_vocab([plan])
    assert vocab.block("code48").size == 48 and not vocab.has_block("code256")
    # the shipped tokenizer's slot in the same vocabulary gets its own block
    both = build_vocab([plan, build_plan("draw [TEXT:prompt] -> [IMAGE:img,preprocess=image_vqgan]")])
    assert both.block("code48").size == 48 and both.block("code256").size == 256


def test_a_model_trains_and_serves_with_a_user_tokenizer(tiny_tokenizer, tmp_path):
    """A few steps with the 48-code tokenizer: the outputs are 4x4 codes of that block, decoded at 16 px, and the
    checkpoint reloads with the same block."""
    ins = f"draw [TEXT:prompt] -> [IMAGE:img,preprocess=image_vqgan,tokenizer={tiny_tokenizer}]"
    t = Task("tiny_t2i", ins, micro_batch_size=8)
    t.add_dataset(G.text_to_image_rows(16, seed=3, size=16), "train")
    trainer = Trainer(max_steps=2, output_dir=str(tmp_path / "run"), threads=1, progress=False, tensorboard=False)
    trainer.fit(GeneralistModel("nano"), [t])
    served = OFASys.from_pretrained(tmp_path / "run" / "checkpoint")
    block = served.runtime.vocab.block("code48")
    out = served.inference(ins, data={"prompt": "a red circle"})
    assert len(out.codes) == 16 and all(0 <= c < 48 for c in out.codes)
    plain = served.inference(ins[:-1] + ",generator=sequence]", data={"prompt": "a red circle"})  # core decoding
    assert plain["img"]["codes"] == out.codes and all(t in block for t in plain.tokens if t > 4)
    assert out.image.size == (16, 16)
    path = out.save_image(tmp_path / "gen.png", scale=4)
    from PIL import Image

    assert Image.open(path).size == (64, 64)


def test_preprocessor_gives_exactly_the_grid_of_code_tokens():
    plan = build_plan("draw [TEXT:prompt] -> [IMAGE:img,preprocess=image_vqgan]")
    vocab = build_vocab([plan])
    pre = G.CodePreprocessor(plan.slots["img"], vocab)
    from ofasys.components import SampleContext

    img = G.text_to_image_rows(1, seed=2)[0]["img"]
    toks = pre(img, SampleContext("train", {}, random.Random(0), vocab))
    block = vocab.block("code256")
    assert len(toks.ids) == 64 and all(i in block for i in toks.ids)
    c = toks.constraint
    assert c.accepts(toks.ids) and not c.accepts(toks.ids[:63]) and not c.accepts(toks.ids + toks.ids[:1])


def test_train_vq_command_writes_safetensors_and_json(tmp_path):
    out = tmp_path / "cli" / "tok.json"
    proc = subprocess.run([sys.executable, "-m", "ofasys_image.vq.train", "train-vq", "--out", str(out),
                           "--steps", "3", "--images", "16", "--codebook-size", "32", "--channels", "8",
                           "--code-dim", "4", "--batch-size", "8", "--threads", "1"],
                          capture_output=True, text=True, timeout=300, env={**__import__("os").environ,
                                                                             "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["codebook_size"] == 32 and summary["grid"] == 8
    assert out.is_file() and out.with_suffix(".safetensors").is_file()
    assert vq.codebook_size(str(out)) == 32 and VQAutoencoder.load(str(out)).codebook_size == 32


def test_train_vq_on_an_image_folder(tmp_path):
    for i, img in enumerate(shapes_images(6, seed=9)):
        img.save(tmp_path / f"{i}.png")
    model = train_vq(str(tmp_path), tmp_path / "t" / "tokenizer.json", codebook_size=16, channels=8, code_dim=4,
                     steps=2, batch_size=4)
    assert model.codebook_size == 16 and vq.codebook_size(str(tmp_path / "t")) == 16  # a directory works too
    with pytest.raises(ValueError, match="no image files"):
        train_vq(str(tmp_path / "t"), None, steps=1)


# ------------------------------------------------------------------------------------------------ bad input

def test_a_missing_tokenizer_is_an_instruction_error_at_plan_time(tmp_path):
    with pytest.raises(InstructionError, match="no tokenizer file"):
        build_plan(f"draw [TEXT:p] -> [IMAGE:img,preprocess=image_vqgan,tokenizer={tmp_path / 'nope.json'}]")


def test_a_tokenizer_json_without_its_weights_or_sizes_is_refused(tmp_path):
    cfg = tmp_path / "t.json"
    cfg.write_text(json.dumps({"codebook_size": 32}))
    with pytest.raises(InstructionError, match="weights"):
        build_plan(f"draw [TEXT:p] -> [IMAGE:img,preprocess=image_vqgan,tokenizer={cfg}]")
    (tmp_path / "t.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(InstructionError, match="positive integer 'image_size'"):
        build_plan(f"draw [TEXT:p] -> [IMAGE:img,preprocess=image_vqgan,tokenizer={cfg}]")
    good = json.loads(vq.SHIPPED.read_text())
    cfg.write_text(json.dumps(good))
    with pytest.raises(CheckpointError, match="could not be read"):
        VQAutoencoder.load(str(cfg))


def test_an_unreadable_image_is_a_data_error():
    plan = build_plan("draw [TEXT:prompt] -> [IMAGE:img,preprocess=image_vqgan]")
    vocab = build_vocab([plan])
    pre = G.CodePreprocessor(plan.slots["img"], vocab)
    from ofasys.components import SampleContext

    ctx = SampleContext("train", {}, random.Random(0), vocab)
    with pytest.raises(DataError, match="no such image file"):
        pre("/nonexistent/x.png", ctx)
    with pytest.raises(DataError, match="could not be decoded|not an image"):
        pre(b"\x89PNG\r\n\x1a\n broken", ctx)
    with pytest.raises(DataError):
        pre(12345, ctx)


def test_bad_generation_attributes_are_refused():
    plan = build_plan("draw [TEXT:p] -> [IMAGE:img,preprocess=image_vqgan,candidates=0]")
    vocab = build_vocab([plan])
    with pytest.raises(PlanError, match="candidates must be at least 1"):
        G.CodeGenerator(plan.slots["img"], vocab)
    plan = build_plan("draw [TEXT:p] -> [IMAGE:img,preprocess=image_vqgan,rerank=nosuchmodule:f]")
    with pytest.raises(ConfigError, match="cannot import"):
        G.CodeGenerator(plan.slots["img"], vocab)
    plan = build_plan("draw [TEXT:p] -> [IMAGE:img,preprocess=image_vqgan,rerank=unregistered]")
    with pytest.raises(ConfigError, match="not a registered scorer"):
        G.CodeGenerator(plan.slots["img"], vocab)
    with pytest.raises(InstructionError, match="not valid on an input"):
        build_plan("[IMAGE:img,preprocess=image_vqgan,candidates=2] what? -> [TEXT:t]")


def test_the_judge_names_colour_and_shape_of_held_out_images_and_their_reconstructions():
    rows = G.text_to_image_rows(200, seed=424242)
    tok = load_tokenizer(None)
    x = to_pixels([r["img"] for r in rows], 32)
    from ofasys_image.vq.model import to_images

    rec = to_images(tok.decode(tok.encode(x)))
    prompts = [r["prompt"] for r in rows]
    assert G.shape_attribute_accuracy([r["img"] for r in rows], prompts) >= 95
    assert G.shape_attribute_accuracy(rec, prompts) >= 90
    # the metric form compares with the reference images' judged attributes
    assert G.shape_attributes_metric(rec[:50], [r["img"] for r in rows[:50]]) >= 90


def test_plugin_declares_the_image_vqgan_components():
    assert plugin.IMAGE.vocab_blocks == ("code256",)
    names = {a.name for a in plugin.IMAGE.attributes}
    assert {"tokenizer", "candidates", "rerank"} <= names
    blocks = []
    plugin.ofasys_register_vocab_blocks(register=blocks.append, names=frozenset({"code100", "text"}))
    assert [(b.name, len(b)) for b in blocks] == [("code100", 100)]


def test_infilling_targets_the_codes_of_the_whole_image_and_reads_the_masked_one(tmp_path):
    """``[IMAGE:masked,mask_ratio=0.25,adaptor=image_vqgan] ... -> [IMAGE:img,preprocess=image_vqgan]``: the input is
    the masked image seen as codes with 2-D positions, the target the codes of the full image."""
    t = Task("infill", G.INSTRUCTIONS["infill"], micro_batch_size=2)
    rows = G.infill_rows(4, seed=1)
    t.add_dataset(rows, "train")
    runtime = Trainer(max_steps=1, output_dir=str(tmp_path), threads=1).prepare(
        GeneralistModel("nano"), [t])
    pipe = runtime.pipelines["infill"]
    sample = pipe.make_sample(rows[0], "train", random.Random(0))
    tok = load_tokenizer(None)
    full = tok.encode(to_pixels([rows[0]["img"]], 32)).flatten().tolist()
    target = [p for p in sample.decoder if p.kind == "tokens" and p.slot is not None and p.slot.column == "img"]
    start = runtime.vocab.block("code256").start
    assert [i - start for i in target[0].value.ids] == full
    pixels = [p for p in sample.encoder if p.kind == "features"][0].value.data
    side = pixels.shape[-1]
    assert float(pixels[:, side // 2, side // 2].abs().max()) == 0.0  # the grey (0 after normalisation) centre
    batch = pipe.collate([sample, pipe.make_sample(rows[1], "train", random.Random(1))])
    seg = runtime.model.adaptor("IMAGE.image_vqgan")(batch.encoder.features["IMAGE.image_vqgan"])
    assert seg.embeds.shape[:2] == (2, 64) and seg.pos[0, -1].tolist() == [7, 7] and bool(seg.mask.all())
    masked = tok.encode(pixels[None]).flatten().tolist()
    assert masked != full and masked[0] == full[0]  # the centre changed, a corner did not
