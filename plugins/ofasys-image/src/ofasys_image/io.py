"""Reading an image from whatever a dataset column holds.

Accepted values: a file path (``str`` or ``os.PathLike``), an ``http(s)://`` URL (fetched only because the
value names it: nothing is ever downloaded otherwise), a ``data:image/...;base64,`` URI or a bare base64 string,
``bytes``/``bytearray``/``memoryview`` of an encoded image, a Hugging Face ``datasets`` image dict
(``{"bytes": ..., "path": ...}``), a PIL image, or an array/tensor of pixels (``H x W``, ``H x W x C`` or
``C x H x W``; ``uint8`` 0-255 or floats 0-1).

Every failure is a :class:`ofasys.errors.DataError` with a message naming the column and the reason, so the
engine counts the sample as bad, reports it and skips it.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import re
from typing import Any

from ofasys.errors import DataError

URL_TIMEOUT_S = 30.0
_B64 = re.compile(r"^[A-Za-z0-9+/\s]+={0,2}$")


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _open_bytes(data: bytes, what: str):
    from PIL import Image, UnidentifiedImageError

    try:
        img = Image.open(io.BytesIO(data))
        img.load()  # decode now: a truncated file fails here, not later in a worker
    except UnidentifiedImageError:
        raise DataError(f"{what} is not an image file PIL can read") from None
    except (OSError, SyntaxError, ValueError) as exc:  # truncated/corrupt data
        raise DataError(f"{what} could not be decoded: {exc}") from None
    return img


def _from_string(value: str, where: str):
    stripped = value.strip()
    low = stripped[:16].lower()
    if low.startswith(("http://", "https://")):
        return _open_bytes(fetch_url(stripped, where), f"{where}: the image at {stripped}")
    if low.startswith("data:"):
        head, _, payload = stripped.partition(",")
        if ";base64" not in head:
            raise DataError(f"{where}: a data: URI must be base64-encoded")
        return _open_bytes(_b64decode(payload, where), f"{where}: the base64 data URI")
    if os.path.exists(stripped):
        return _from_path(stripped, where)
    if len(stripped) >= 64 and _B64.match(stripped):  # long, base64 alphabet only: not a plausible path
        return _open_bytes(_b64decode(stripped, where), f"{where}: the base64 string")
    shown = stripped if len(stripped) <= 300 else stripped[:297] + "..."
    raise DataError(f"{where}: no such image file: {shown} (expected an existing path, an http(s) URL "
                    "or a base64-encoded image)")


def _b64decode(payload: str, where: str) -> bytes:
    try:
        return base64.b64decode("".join(payload.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise DataError(f"{where}: invalid base64 image data ({exc})") from None


def _from_path(path: "str | os.PathLike", where: str):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise DataError(f"{where}: no such image file: {os.fspath(path)}") from None
    except OSError as exc:
        raise DataError(f"{where}: cannot read {os.fspath(path)}: {exc.strerror or exc}") from None
    return _open_bytes(data, f"{where}: {os.fspath(path)}")


def fetch_url(url: str, where: str = "image") -> bytes:
    """GET ``url`` (only ever called for a value that is an http(s) URL) with a timeout."""
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, headers={"User-Agent": "ofasys-image"})
    try:
        with urllib.request.urlopen(req, timeout=URL_TIMEOUT_S) as resp:  # noqa: S310 - the user's URL
            return resp.read()
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise DataError(f"{where}: could not fetch {url}: {reason}") from None


def _from_array(value: Any, where: str):
    import numpy as np
    from PIL import Image

    if hasattr(value, "detach"):  # torch tensor: channels first by convention
        arr = value.detach().cpu().numpy()
        if arr.ndim == 3 and arr.shape[0] in (1, 3, 4):
            arr = np.moveaxis(arr, 0, -1)
    else:
        arr = np.asarray(value)
        if arr.ndim == 3 and arr.shape[-1] not in (1, 3, 4) and arr.shape[0] in (1, 3, 4):
            arr = np.moveaxis(arr, 0, -1)  # channels first
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (3, 4)) or 0 in arr.shape:
        raise DataError(f"{where}: an image array must be H x W, H x W x 3/4 or 3/4 x H x W, not shape "
                        f"{tuple(arr.shape)}")
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise DataError(f"{where}: the image array has NaN or infinite values")
        scale = 255.0 if arr.max(initial=0.0) <= 1.0 else 1.0
        arr = np.clip(arr * scale, 0, 255).round().astype(np.uint8)
    elif np.issubdtype(arr.dtype, np.integer):
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    else:
        raise DataError(f"{where}: cannot make an image of an array of {arr.dtype}")
    return Image.fromarray(np.ascontiguousarray(arr))


def load_image(value: Any, where: str = "image"):
    """The value of an IMAGE column as an RGB PIL image (EXIF orientation applied).

    :param where: how messages name the value (``"column 'img'"``).
    :raises DataError: for a missing file, an unreadable or truncated image, a failed download or a value of
        an unsupported type.
    """
    from PIL import Image, ImageOps

    if isinstance(value, Image.Image):
        img = value
        try:
            img.load()
        except (OSError, SyntaxError, ValueError) as exc:
            raise DataError(f"{where}: the PIL image could not be decoded: {exc}") from None
    elif isinstance(value, str):
        img = _from_string(value, where)
    elif isinstance(value, os.PathLike):
        img = _from_path(value, where)
    elif isinstance(value, (bytes, bytearray, memoryview)):
        img = _open_bytes(bytes(value), f"{where}: the image bytes")
    elif isinstance(value, dict) and ("bytes" in value or "path" in value):  # datasets.Image() feature
        if value.get("bytes"):
            img = _open_bytes(bytes(value["bytes"]), f"{where}: the image bytes")
        elif value.get("path"):
            img = _from_path(value["path"], where)
        else:
            raise DataError(f"{where}: the image dict has neither bytes nor a path")
    elif hasattr(value, "__array__") or hasattr(value, "detach"):
        img = _from_array(value, where)
    else:
        kind = "missing (None)" if value is None else f"a {type(value).__name__} ({_describe(value)})"
        raise DataError(f"{where} must hold an image (a path, http(s) URL, bytes, base64 string, PIL image or "
                        f"array), but the value is {kind}")
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # a malformed EXIF block: keep the pixels as stored  # noqa: BLE001
        pass
    if img.mode != "RGB":
        if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
            rgba = img.convert("RGBA")
            bg = Image.new("RGB", rgba.size, (255, 255, 255))
            bg.paste(rgba, mask=rgba.getchannel("A"))
            img = bg
        else:
            img = img.convert("RGB")
    if img.width < 1 or img.height < 1:
        raise DataError(f"{where}: the image is empty ({img.width}x{img.height})")
    return img
