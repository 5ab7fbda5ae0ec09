"""Image generation and infilling through discrete image codes (``image_vqgan``).

* :class:`CodePreprocessor` (``preprocess=image_vqgan``): image -> the tokenizer's ``h x w`` codes as tokens of
  the ``code<K>`` vocabulary block (``K`` = the tokenizer's codebook size). As an output, decoding is constrained
  to exactly ``h*w`` code tokens (a :class:`~ofasys.generation.constraints.Block`).
* :class:`CodeAdaptor` (``adaptor=image_vqgan`` on an input with the default ``preprocess=image``): pixels ->
  the frozen tokenizer's codes -> a learned embedding per code plus 2-D row/column positions, like the other
  image adaptors (so an infilling input is seen as the codes of the masked image).
* :class:`CodeGenerator`: the core's sequence generator (greedy by default; ``sampling=True`` with
  ``temperature``/``top_k``/``top_p``) and, with ``candidates=N``, N samples reranked by a scorer
  (``rerank=<registered name or module:function>``; default: the model's own log-probability).
* :class:`CodePostprocessor`: codes -> the tokenizer's decoder -> ``{"image": PIL, "codes", "save_image"}``.
* :func:`text_to_image_rows`, :func:`infill_rows`: the bundled shapes data for these tasks.
* :class:`ShapesJudge` / :func:`shape_attribute_accuracy`: a small CNN trained on the same shapes generator
  (and on the shipped tokenizer's reconstructions of it) that names the colour and shape of a single-shape
  image. It is the *judge* of the text-to-image attribute accuracy: the share of generated images whose judged
  (colour, shape) equals the prompt's. It measures whether the generation follows the prompt, not image quality.
"""

from __future__ import annotations

import importlib
import random
from pathlib import Path
from typing import Any, Callable

from ofasys.components import Postprocessor, Preprocessor, SampleContext, Tokens
from ofasys.errors import ConfigError, PlanError
from ofasys.generation import Generator

from . import vq

SIZE = 32  # text-to-image images (the shipped tokenizer's resolution: 8x8 codes)
SHAPE_FRAC = (0.45, 0.6)  # one shape per text-to-image image, this fraction of the side
JITTER = 0.05  # its centre is shifted from the image centre by at most this fraction of the side
BACKGROUND = (238, 238, 238)
INSTRUCTIONS = {
    "text_to_image": "draw [TEXT:prompt] -> [IMAGE:img,preprocess=image_vqgan]",
    "infill": "[IMAGE:masked,mask_ratio=0.25,adaptor=image_vqgan] fill in the image -> "
              "[IMAGE:img,preprocess=image_vqgan]",
}
JUDGE = vq.DATA_DIR / "shapes_judge.safetensors"

# ------------------------------------------------------------------------------------------------ data


def text_to_image_rows(n: int, seed: int = 0, size: int = SIZE) -> list[dict]:
    """``n`` rows ``{"prompt": "a red circle", "img": PIL, "color", "shape"}``, deterministic by ``seed``: one
    shape (40-60% of the side) near the centre (shifted by at most :data:`JITTER` of the side) on a plain light
    grey background. The prompt names colour and shape only, so the image varies only in what it names (plus
    size and a small shift): a task a nano model learns in a few hundred CPU updates."""
    from PIL import Image, ImageDraw

    from .datasets import COLORS, SHAPES, draw_shape

    rng = random.Random(f"text_to_image:{seed}")
    rows = []
    for _ in range(n):
        color, shape = rng.choice(list(COLORS)), rng.choice(SHAPES)
        side = rng.randint(int(size * SHAPE_FRAC[0]), int(size * SHAPE_FRAC[1]))
        shift = max(1, int(size * JITTER))
        x0 = (size - side) // 2 + rng.randint(-shift, shift)
        y0 = (size - side) // 2 + rng.randint(-shift, shift)
        img = Image.new("RGB", (size, size), BACKGROUND)
        draw_shape(ImageDraw.Draw(img), shape, [x0, y0, x0 + side, y0 + side], COLORS[color])
        rows.append({"prompt": f"a {color} {shape}", "img": img, "color": color, "shape": shape})
    return rows


def infill_rows(n: int, seed: int = 0, size: int = SIZE) -> list[dict]:
    """Rows for ``INSTRUCTIONS["infill"]``: ``masked`` and ``img`` hold the same image (the input slot masks its
    centre with ``mask_ratio``; the target is the codes of the whole image)."""
    rows = text_to_image_rows(n, seed + 7_919, size)
    return [{"masked": r["img"], "img": r["img"], "color": r["color"], "shape": r["shape"]} for r in rows]


# ------------------------------------------------------------------------------------------------ components


def _tokenizer_spec(slot: Any) -> str | None:
    return (slot.attrs or {}).get("tokenizer")


class CodePreprocessor(Preprocessor):
    """``preprocess=image_vqgan``: load (any value :func:`~ofasys_image.io.load_image` reads) -> resize to the
    tokenizer's size -> (``mask_ratio``: grey out the centre) -> codes -> ids of the ``code<K>`` block.
    The tokenizer is loaded lazily once per process (workers included)."""

    order = -10

    def __init__(self, slot: Any, vocab: Any):
        super().__init__(slot, vocab)
        self.column = slot.column
        self.spec = _tokenizer_spec(slot)
        where = f"IMAGE slot of column '{self.column}'"
        try:
            cfg = vq.read_config(self.spec)
        except ValueError as exc:
            raise PlanError(f"{where}: {exc}") from None
        self.codebook_size = int(cfg["codebook_size"])
        self.image_size = int(cfg["image_size"])
        self.length = vq.grid_side(cfg) ** 2
        name = vq.block_name(self.codebook_size)
        if not vocab.has_block(name):
            raise PlanError(f"{where}: the model's vocabulary has no block {name} for a {self.codebook_size}-code "
                            f"tokenizer (it has {', '.join(vocab.block_names)}); train a model with this tokenizer")
        self.start = vocab.block(name).start
        self.mask_ratio = float((slot.attrs or {}).get("mask_ratio") or 0.0)
        if not 0.0 <= self.mask_ratio < 1.0:
            raise PlanError(f"{where}: mask_ratio must be in [0, 1), not {self.mask_ratio}")
        from ofasys.generation.constraints import Block

        self._constraint = Block(range(self.start, self.start + self.codebook_size), self.length, self.length)
        self.side = slot.side

    def codes(self, value: Any) -> list[int]:
        import math

        import torch

        from .io import load_image
        from .vq.model import load_tokenizer, to_pixels

        img = load_image(value, f"column '{self.column}'")
        x = to_pixels([img], self.image_size)
        if self.mask_ratio > 0:
            s = self.image_size
            side = int(round(s * math.sqrt(self.mask_ratio)))
            lo = (s - side) // 2
            x[:, :, lo:lo + side, lo:lo + side] = 0.0
        with torch.no_grad():
            return load_tokenizer(self.spec).encode(x).flatten().tolist()

    def __call__(self, value: Any, ctx: SampleContext) -> Tokens:
        ids = [self.start + c for c in self.codes(value)]
        return Tokens(ids, loss=True, constraint=self._constraint if self.side == "decoder" else None)

    def constraint(self, ctx: SampleContext | None = None):
        """Exactly ``h*w`` tokens of the ``code<K>`` block."""
        return self._constraint


class ImageSaver:
    """``save_image(path, scale=1)``: write the generated image (PNG unless the suffix says otherwise; ``scale``
    enlarges it with nearest-neighbour pixels); creates the folder; returns the path. Picklable."""

    def __init__(self, image: Any):
        self.image = image

    def __call__(self, path: "str | Path", scale: int = 1) -> Path:
        from PIL import Image

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        img = self.image
        if scale > 1:
            img = img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST)
        img.save(path, format=None if path.suffix else "PNG")
        return path


class CodePostprocessor(Postprocessor):
    """Codes -> image: ``{"image": PIL RGB, "codes": [...], "save_image": ImageSaver}`` (plus ``candidates``,
    the images of every reranked sample, their ``candidate_codes`` and ``scores`` when ``candidates`` > 1)."""

    def __init__(self, slot: Any, vocab: Any):
        super().__init__(slot, vocab)
        self.spec = _tokenizer_spec(slot)
        cfg = vq.read_config(self.spec)
        self.codebook_size = int(cfg["codebook_size"])
        self.grid = vq.grid_side(cfg)
        self.start = vocab.block(vq.block_name(self.codebook_size)).start

    def to_codes(self, ids: Any) -> list[int]:
        n = self.grid * self.grid
        codes = [int(t) - self.start for t in ids if 0 <= int(t) - self.start < self.codebook_size][:n]
        if len(codes) < n:  # cannot happen under the Block constraint; fill with the last code to stay total
            codes += [codes[-1] if codes else 0] * (n - len(codes))
        return codes

    def decode(self, codes_list: list[list[int]]) -> list:
        import torch

        from .vq.model import load_tokenizer, to_images

        tok = load_tokenizer(self.spec)
        codes = torch.tensor(codes_list, dtype=torch.long).view(-1, self.grid, self.grid)
        return to_images(tok.decode(codes))

    def __call__(self, prediction: Any, meta: dict) -> dict:
        if isinstance(prediction, dict):
            ids, cands = prediction["ids"], prediction.get("candidates")
        else:
            ids, cands = prediction, None
        codes = self.to_codes(ids)
        if cands:  # the kept sample's image as the scorer saw it
            image = prediction["candidate_images"][prediction["best"]]
        else:
            image = self.decode([codes])[0]
        out: dict[str, Any] = {"image": image, "codes": codes, "save_image": ImageSaver(image)}
        if cands:
            out["candidates"] = prediction.get("candidate_images")
            out["candidate_codes"] = [list(c) for c in cands]
            out["scores"] = list(prediction.get("scores", []))
        return out


# ---------------------------------------------------------------------------------------- reranking scorers

SCORERS: dict[str, Callable[[list, dict], list[float]]] = {}


def register_scorer(name: str, fn: Callable[[list, dict], list[float]]) -> None:
    """Make ``fn(images: list[PIL.Image], row: dict) -> list[float]`` (higher is better) available as
    ``rerank=<name>``. A scorer can also be named by import path: ``rerank=mypkg.scoring:score``."""
    SCORERS[name] = fn


def resolve_scorer(name: str) -> Callable[[list, dict], list[float]]:
    if name in SCORERS:
        return SCORERS[name]
    module, _, attr = name.partition(":")
    if not attr:
        raise ConfigError(f"rerank={name}: not a registered scorer ({', '.join(sorted(SCORERS)) or 'none'} are) "
                          "nor an import path module:function")
    try:
        fn = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"rerank={name}: cannot import it: {exc}") from None
    if not callable(fn):
        raise ConfigError(f"rerank={name} is not callable")
    return fn


class CodeGenerator(Generator):
    """Decodes ``h*w`` code tokens per sample with the core's :class:`~ofasys.generation.SequenceGenerator`
    (greedy unless ``sampling=True``). With ``candidates=N`` (slot attribute, or the ``return_n_best`` option),
    N samples are drawn (sampling is switched on) and the one the scorer likes best is kept: ``rerank`` names a
    scorer (:func:`register_scorer`, or ``module:function``); without it, the model's own sequence score."""

    def __init__(self, slot: Any, vocab: Any):
        self.vocab = vocab
        attrs = slot.attrs or {}
        value = attrs.get("candidates")
        self.candidates = 1 if value is None else int(value)
        if self.candidates < 1:
            raise PlanError(f"IMAGE slot of column '{slot.column}': candidates must be at least 1")
        self.rerank = attrs.get("rerank")
        if self.rerank:
            resolve_scorer(self.rerank)  # fail at build time with a clear message
        cfg = vq.read_config(_tokenizer_spec(slot))
        self.length = vq.grid_side(cfg) ** 2
        self.post = CodePostprocessor(slot, vocab)

    def generate(self, model, batch, **options) -> list[Any]:
        from ofasys.generation.sequence import SequenceGenerator

        opts = dict(options)
        n = int(opts.pop("return_n_best", 0) or self.candidates)
        if n > 1:
            opts["sampling"] = True
        opts.setdefault("max_len", self.length + 64)
        opts.setdefault("min_len", self.length)
        opts.pop("no_repeat_ngram_size", None)
        if not opts.get("sampling"):
            opts["beam_size"] = 1
        gen = SequenceGenerator(return_n_best=n, **opts)
        hyps = gen.generate(model, batch.encoder, constraints=batch.constraints, bos=self.vocab.bos,
                            eos=self.vocab.eos, pad=self.vocab.pad, free_ids_mask=self.vocab)
        preds = []
        for i, hs in enumerate(hyps):
            if not hs:
                preds.append([])
                continue
            if n == 1:
                preds.append(list(hs[0].tokens))
                continue
            codes = [self.post.to_codes(h.tokens) for h in hs]
            images = self.post.decode(codes)
            if self.rerank:
                row = batch.meta[i].get("row", {}) if batch.meta else {}
                scores = [float(s) for s in resolve_scorer(self.rerank)(images, row)]
                if len(scores) != len(images):
                    raise ConfigError(f"rerank={self.rerank} returned {len(scores)} scores for {len(images)} images")
            else:
                scores = [float(h.score) for h in hs]
            best = max(range(len(hs)), key=lambda k: scores[k])
            preds.append({"ids": list(hs[best].tokens), "best": best, "candidates": codes,
                          "candidate_images": images, "scores": scores})
        return preds


def _adaptor_base():
    from .adaptors import _GridAdaptor

    return _GridAdaptor


def build_code_adaptor(slot: Any, model_config: dict):
    """``adaptor=image_vqgan``: a :class:`CodeAdaptor` sized for the model."""
    from . import defaults

    d = int(model_config.get("d_model", 256))
    bucket = int(model_config.get("image_bucket_size") or defaults.IMAGE_BUCKET_SIZE)
    return make_code_adaptor(d, _tokenizer_spec(slot), bucket)


def make_code_adaptor(d_model: int, spec: str | None, bucket: int):
    import torch
    from torch import nn

    from .vq.model import load_tokenizer

    base = _adaptor_base()

    class CodeAdaptor(base):  # type: ignore[misc, valid-type]
        """Pixels -> the frozen tokenizer's codes -> ``Embedding(K, d_model)`` + 2-D positions. The tokenizer is
        not part of the model's weights (it is read from ``tokenizer`` / the package)."""

        def __init__(self):
            cfg = vq.read_config(spec)
            grid = vq.grid_side(cfg)
            super().__init__(d_model, bucket, 1)
            self.spec, self.grid = spec, grid
            self.codebook_size = int(cfg["codebook_size"])
            self.embed_codes = nn.Embedding(self.codebook_size, d_model)
            nn.init.normal_(self.embed_codes.weight, 0.0, 1.0)

        def features(self, pixels):
            tok = load_tokenizer(self.spec)
            if next(tok.parameters()).device != pixels.device:
                tok.to(pixels.device)
            with torch.no_grad():
                codes = tok.encode(pixels)  # (N, h, w)
            self.stride = max(1, pixels.shape[-1] // codes.shape[-1])
            return self.embed_codes(codes).permute(0, 3, 1, 2)

    return CodeAdaptor()


# ---------------------------------------------------------------------------------------------------- judge

def _judge_net():
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
        nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 7))


class ShapesJudge:
    """Names the colour and shape of single-shape images (the text-to-image judge). Trained by
    :func:`train_judge` on the shapes generator's images and the shipped tokenizer's reconstructions of them;
    the trained weights ship as ``data/shapes_judge.safetensors``."""

    def __init__(self, net=None):
        from .datasets import COLORS, SHAPES

        self.colors, self.shapes = list(COLORS), list(SHAPES)
        if net is None:
            from safetensors.torch import load_file

            net = _judge_net()
            net.load_state_dict(load_file(str(JUDGE)))
        self.net = net.eval()

    def __call__(self, images: list) -> list[tuple[str, str]]:
        import torch

        from .vq.model import to_pixels

        if not images:
            return []
        with torch.no_grad():
            logits = self.net(to_pixels(images, SIZE))
        c = logits[:, :4].argmax(1).tolist()
        s = logits[:, 4:].argmax(1).tolist()
        return [(self.colors[i], self.shapes[j]) for i, j in zip(c, s)]


_JUDGE: list = []


def judge() -> ShapesJudge:
    if not _JUDGE:
        _JUDGE.append(ShapesJudge())
    return _JUDGE[0]


def judge_rows(n: int, seed: int) -> list[dict]:
    """The judge's training images: one shape (40-60% of the side) anywhere on a tinted background (the shapes
    scene generator), so that the judge does not depend on where or how large a generated shape is."""
    from .datasets import shapes_scene

    rng = random.Random(f"text_to_image:{seed}")
    rows = []
    for _ in range(n):
        scene = shapes_scene(rng, SIZE, 1, 1, 0.4, 0.6)
        o = scene["objects"][0]
        rows.append({"prompt": f"a {o['color']} {o['shape']}", "img": scene["image"], "color": o["color"],
                     "shape": o["shape"]})
    return rows


def train_judge(out: "str | Path | None" = JUDGE, n: int = 3000, steps: int = 600, seed: int = 0):
    """Train the judge on ``n`` :func:`judge_rows` images and their reconstructions by the shipped tokenizer
    (the shipped judge: ``train_judge()``, about a minute on one CPU thread)."""
    import torch
    import torch.nn.functional as F

    from .datasets import COLORS, SHAPES
    from .vq.model import load_tokenizer, to_pixels

    torch.manual_seed(seed)
    rows = judge_rows(n, seed + 31)
    x = to_pixels([r["img"] for r in rows], SIZE)
    tok = load_tokenizer(None)
    with torch.no_grad():
        rec = torch.cat([tok.decode(tok.encode(x[i:i + 256])) for i in range(0, len(x), 256)])
    xs = torch.cat([x, rec])
    yc = torch.tensor([list(COLORS).index(r["color"]) for r in rows] * 2)
    ys = torch.tensor([list(SHAPES).index(r["shape"]) for r in rows] * 2)
    net = _judge_net()
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, len(xs), (64,), generator=g)
        logits = net(xs[idx])
        loss = F.cross_entropy(logits[:, :4], yc[idx]) + F.cross_entropy(logits[:, 4:], ys[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    if out is not None:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(out))
    return ShapesJudge(net)


def shape_attribute_accuracy(images: list, wanted: list) -> float:
    """Percentage of ``images`` whose judged (colour, shape) equals the wanted one; ``wanted`` items are prompts
    ("a red circle"), ``(colour, shape)`` pairs, or reference images (judged too)."""
    if not images:
        return 0.0
    from .io import load_image

    refs: list[tuple[str, str] | None] = []
    ref_images = []
    for w in wanted:
        if isinstance(w, str) and len(w.split()) >= 2 and not w.startswith(("/", ".")) and len(w) < 64:
            words = w.split()
            refs.append((words[-2], words[-1]))
        elif isinstance(w, (tuple, list)) and len(w) == 2 and all(isinstance(v, str) for v in w):
            refs.append((w[0], w[1]))
        else:
            refs.append(None)
            ref_images.append(load_image(w, "reference image"))
    judged_refs = iter(judge()(ref_images))
    refs = [r if r is not None else next(judged_refs) for r in refs]
    got = judge()([load_image(im, "generated image") if not hasattr(im, "convert") else im for im in images])
    return 100.0 * sum(g == r for g, r in zip(got, refs)) / len(images)


def shape_attributes_metric(predictions: list, references: list) -> float:
    """The registered metric ``shape_attributes``: predictions are generated images, references the target
    images (or prompts); 0-100."""
    pairs = [(p, r) for p, r in zip(predictions, references) if p is not None]
    if not pairs:
        return 0.0
    return shape_attribute_accuracy([p for p, _ in pairs], [r for _, r in pairs]) * len(pairs) / len(predictions)


def image_psnr_metric(predictions: list, references: list) -> float:
    """The registered metric ``image_psnr``: mean PSNR (dB) of generated images against the target images at the
    generated size (an infilling score; a missing prediction scores 0 dB)."""
    if not predictions:
        return 0.0
    from .io import load_image
    from .vq.model import psnr, to_pixels

    total = 0.0
    for p, r in zip(predictions, references):
        if p is None:
            continue
        a = to_pixels([p], p.width)
        b = to_pixels([load_image(r, "reference image")], p.width)
        total += float(psnr(a, b).mean())
    return total / len(predictions)


# ----------------------------------------------------------------------------------------------------- demo

def demo_rows(split: str, n: int, seed: int) -> list[dict]:
    rows = text_to_image_rows(n, seed if split == "train" else seed + 100_003)
    return [{"prompt": r["prompt"], "img": r["img"]} for r in rows]


def showcase(model: Any, held_out: list[dict], out_dir: "str | Path") -> list[dict]:
    """One picture: for each of the 12 (colour, shape) prompts, the generated image next to a held-out example of
    the prompt; also one PNG per generation. Returns gallery items for the demo page."""
    import base64
    import html

    from PIL import Image, ImageDraw

    from .datasets import COLORS, SHAPES

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    prompts = [f"a {c} {s}" for c in COLORS for s in SHAPES]
    example = {r["prompt"]: r["img"] for r in reversed(held_out)}
    outs = model.inference(INSTRUCTIONS["text_to_image"], data=[{"prompt": p} for p in prompts])
    scale, cell = 3, SIZE * 3
    sheet = Image.new("RGB", (len(prompts) * (cell + 6), 2 * cell + 30), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for k, (p, o) in enumerate(zip(prompts, outs)):
        x = k * (cell + 6)
        sheet.paste(o.image.resize((cell, cell), Image.Resampling.NEAREST), (x, 14))
        if p in example:
            sheet.paste(example[p].resize((cell, cell), Image.Resampling.NEAREST), (x, 18 + cell))
        draw.text((x, 0), p.removeprefix("a "), fill=(0, 0, 0))
        o.save_image(out_dir / f"text_to_image_{k:02d}.png", scale=scale)
    path = out_dir / "text_to_image.png"
    sheet.save(path)
    acc = shape_attribute_accuracy(list(outs.image), prompts)
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    caption = (f"top: generated from the prompt; bottom: a held-out training-distribution example. "
               f"Judged colour+shape match: {acc:.0f}% (chance {100 / len(prompts):.0f}%).")
    return [{"title": "text to image (shapes, 8x8 codes of the shipped tokenizer)",
             "html": f"<img src='data:image/png;base64,{data}' alt='text to image' title='{path.name}'>"
                     f"<p>{html.escape(caption)}</p>"}]


def demo_tasks() -> list:
    from ofasys.spec import DemoTask

    return [DemoTask(name="shapes_text_to_image", modality="image", instruction=INSTRUCTIONS["text_to_image"],
                     rows=demo_rows, metric="shape_attributes", n_train=800, n_valid=48, micro_batch_size=16,
                     showcase=showcase)]
