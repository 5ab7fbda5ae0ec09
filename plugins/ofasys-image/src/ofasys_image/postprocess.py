"""The BOX postprocessor and the ``save_box`` drawing.

A predicted box (4 ``<bin>`` ids) goes back through its image's recorded transform to pixels of the original
image: ``{"box": [x0, y0, x1, y1], "save_box": callable}``. ``save_box(path)`` draws the box on the input image
and writes it (PNG unless the suffix says otherwise). Inside a repetition group (detection) each item gets its
own box; :meth:`BoxPostprocessor.finalize` then gives the whole output one ``save_box`` that draws every box with
its label (the text of the group's TEXT slot).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from ofasys.components import Postprocessor

from .preprocess import STATE_KEY
from .transforms import dequantize, inverse_box

PALETTE = [(255, 0, 0), (0, 200, 0), (0, 90, 255), (255, 160, 0), (200, 0, 200), (0, 200, 200), (120, 60, 0)]


def draw_boxes(image: Any, boxes: Sequence[Sequence[float] | None], labels: Sequence[str | None] | None = None,
               scale: int | None = None):
    """A copy of ``image`` (anything :func:`~ofasys_image.io.load_image` reads) with ``boxes`` (original-image
    pixels) drawn as rectangles, each with its label. Small images are enlarged (``scale``, default: so that the
    short side is at least 256 px) so that labels stay readable; boxes are scaled with them."""
    from PIL import Image, ImageDraw

    from .io import load_image

    img = load_image(image, "save_box image").copy()
    if scale is None:
        scale = max(1, -(-256 // max(1, min(img.size))))
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST)
    draw = ImageDraw.Draw(img)
    width = max(1, round(min(img.size) / 128))
    labels = list(labels or [])
    for k, box in enumerate(boxes):
        if box is None:
            continue
        color = PALETTE[k % len(PALETTE)]
        x0, y0, x1, y1 = (float(v) * scale for v in box)
        draw.rectangle([x0, y0, max(x0, x1 - 1), max(y0, y1 - 1)], outline=color, width=width)
        label = labels[k] if k < len(labels) else None
        if label:
            tx, ty = x0 + width + 1, max(0.0, y0 - 11) if y0 >= 11 else y0 + width + 1
            bbox = draw.textbbox((tx, ty), str(label))
            draw.rectangle(bbox, fill=color)
            draw.text((tx, ty), str(label), fill=(255, 255, 255))
    return img


class BoxSaver:
    """``save_box(path)``: draw the predicted box(es) on the input image and write the file; returns the path.
    Picklable (holds the image value, the boxes and labels)."""

    def __init__(self, image: Any, boxes: Sequence[Sequence[float] | None], labels: Sequence[str | None] = ()):
        self.image = image
        self.boxes = [list(b) if b is not None else None for b in boxes]
        self.labels = list(labels)

    def __call__(self, path: "str | Path", scale: int | None = None) -> Path:
        path = Path(path)
        img = draw_boxes(self.image, self.boxes, self.labels, scale=scale)
        path.parent.mkdir(parents=True, exist_ok=True)
        img.save(path, format=None if path.suffix else "PNG")
        return path

    def __repr__(self) -> str:
        return f"save_box({len([b for b in self.boxes if b is not None])} box(es))"


class BoxPostprocessor(Postprocessor):
    """Generated ids of a BOX output -> ``{"box": [x0, y0, x1, y1] | None, "save_box": BoxSaver}``.

    The first 4 ``<bin>`` ids are read (ids of other blocks and bins past ``num_bins`` are ignored; fewer than 4
    bins give ``box=None``), mapped to pixels of the transformed image and back through the recorded transform
    (``meta["state"]``) to the original image, ordered and clipped to it, rounded to 0.01 px.
    """

    def __init__(self, slot: Any, vocab: Any):
        super().__init__(slot, vocab)
        attrs = dict(slot.attrs or {})
        self.column = slot.column
        self.image = attrs.get("image")
        self.num_bins = int(attrs.get("num_bins") or 1000)
        block = vocab.block("bin")
        self.start = block.start
        self.group = slot.group

    def _record(self, meta: dict) -> dict | None:
        state = (meta or {}).get("state") or {}
        images = state.get(STATE_KEY) or {}
        column = self.image or state.get("image")
        return images.get(column) if column is not None else None

    def _image_value(self, meta: dict, record: dict | None) -> Any:
        row = (meta or {}).get("row") or {}
        return row.get(record["column"]) if record is not None else None

    def box(self, prediction: Any, meta: dict) -> list[float] | None:
        if hasattr(prediction, "tolist"):
            prediction = prediction.tolist()
        bins = []
        for t in prediction or []:
            t = int(t)
            if t == self.vocab.eos:
                break
            b = t - self.start
            if 0 <= b < self.num_bins:
                bins.append(b)
                if len(bins) == 4:
                    break
        record = self._record(meta)
        if len(bins) < 4 or record is None:
            return None
        box = inverse_box(dequantize(bins, record["size"], self.num_bins), record)
        return [round(v, 2) for v in box]

    def __call__(self, prediction: Any, meta: dict) -> dict:
        box = self.box(prediction, meta)
        return {"box": box, "save_box": BoxSaver(self._image_value(meta, self._record(meta)), [box])}

    def finalize(self, fields: dict, meta: dict) -> None:
        """Inside a repetition group: one ``save_box`` drawing every predicted box of the output, labelled with
        the group's text (detection: ``([BOX:boxes] [TEXT:labels])*``)."""
        if self.group is None:
            return
        boxes = fields.get("box")
        if not isinstance(boxes, list):
            return
        labels = fields.get("text") if isinstance(fields.get("text"), list) else []
        fields["save_box"] = BoxSaver(self._image_value(meta, self._record(meta)), boxes, labels)
