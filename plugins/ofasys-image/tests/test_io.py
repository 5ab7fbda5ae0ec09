"""Reading images from every accepted kind of value, and the errors for values that are not images."""

from __future__ import annotations

import base64
import io
import urllib.request

import numpy as np
import pytest
import torch
from PIL import Image

from ofasys.errors import DataError
from ofasys_image.io import load_image


def same_pixels(a, b) -> bool:
    return a.size == b.size and np.array_equal(np.asarray(a), np.asarray(b))


def test_every_accepted_kind_of_value_gives_the_same_rgb_image(rgb_image, encode, tmp_path):
    png = encode(rgb_image)
    path = tmp_path / "img.png"
    path.write_bytes(png)
    b64 = base64.b64encode(png).decode()
    arr = np.array(rgb_image)
    values = [str(path), path, png, bytearray(png), memoryview(png), b64, "data:image/png;base64," + b64,
              {"bytes": png, "path": None}, {"bytes": None, "path": str(path)}, rgb_image, arr,
              arr.astype(np.float32) / 255.0, np.moveaxis(arr, -1, 0), torch.from_numpy(arr).permute(2, 0, 1),
              torch.from_numpy(arr).permute(2, 0, 1).float() / 255.0]
    for v in values:
        img = load_image(v, "column 'img'")
        assert img.mode == "RGB"
        assert same_pixels(img, rgb_image), type(v)


def test_grey_palette_and_transparent_images_become_rgb():
    grey = Image.new("L", (4, 3), 100)
    assert load_image(grey).getpixel((0, 0)) == (100, 100, 100)
    assert load_image(np.full((3, 4), 100, dtype=np.uint8)).getpixel((0, 0)) == (100, 100, 100)
    rgba = Image.new("RGBA", (2, 2), (255, 0, 0, 0))  # fully transparent: composited on white
    assert load_image(rgba).getpixel((0, 0)) == (255, 255, 255)
    pal = Image.new("P", (2, 2), 0)
    pal.putpalette([10, 20, 30] + [0] * 765)
    assert load_image(pal).getpixel((1, 1)) == (10, 20, 30)


def test_exif_orientation_is_applied(encode):
    img = Image.new("RGB", (40, 20), (0, 0, 0))
    img.paste((255, 255, 255), (0, 0, 10, 20))  # white band on the left
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    data = encode(img, "JPEG", exif=exif.tobytes(), quality=95)
    out = load_image(data)
    assert out.size == (20, 40)
    assert np.asarray(out)[:5].mean() > 200  # the band is now on top
    assert np.asarray(out)[-5:].mean() < 50


def test_missing_file_is_a_data_error_naming_the_column_and_path(tmp_path):
    with pytest.raises(DataError, match=r"column 'img': no such image file: .*nothere\.jpg"):
        load_image(str(tmp_path / "nothere.jpg"), "column 'img'")
    with pytest.raises(DataError, match="no such image file"):
        load_image(tmp_path / "nothere.jpg", "column 'img'")


def test_truncated_jpeg_is_a_data_error(rgb_image, encode, tmp_path):
    data = encode(rgb_image.resize((200, 150)), "JPEG", quality=90)
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="could not be decoded.*truncated"):
        load_image(str(path), "column 'img'")
    with pytest.raises(DataError, match="not an image file"):
        load_image(b"this is not an image", "column 'img'")


@pytest.mark.parametrize("value, shown", [(3, "a int"), (None, "missing"), (["a.png"], "a list"),
                                          (object(), "a object")])
def test_wrong_type_is_a_data_error_saying_what_was_found(value, shown):
    with pytest.raises(DataError, match=rf"column 'img' must hold an image .* but the value is {shown}"):
        load_image(value, "column 'img'")


def test_bad_arrays_and_bad_base64_are_data_errors():
    with pytest.raises(DataError, match="shape"):
        load_image(np.zeros((2, 3, 5, 5), dtype=np.uint8))
    with pytest.raises(DataError, match="NaN"):
        load_image(np.full((4, 4), np.nan, dtype=np.float32))
    with pytest.raises(DataError, match="invalid base64"):
        load_image("data:image/png;base64,@@@not-base64@@@")


def test_urls_are_fetched_only_when_the_value_is_one(rgb_image, encode, monkeypatch, tmp_path):
    calls = []

    class Response(io.BytesIO):
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    def fake_urlopen(req, timeout=None):
        calls.append((req.full_url, timeout))
        return Response(encode(rgb_image))

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    path = tmp_path / "local.png"
    path.write_bytes(encode(rgb_image))
    load_image(str(path))
    with pytest.raises(DataError):
        load_image("http_not_a_url.png")  # a relative path that does not exist, not a URL
    assert calls == []
    assert same_pixels(load_image("https://example.org/img.png"), rgb_image)
    assert calls and calls[0][0] == "https://example.org/img.png" and calls[0][1] > 0


def test_a_failed_download_is_a_data_error(monkeypatch):
    import urllib.error

    def refuse(req, timeout=None):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    with pytest.raises(DataError, match="could not fetch http://example.org/x.png: no network"):
        load_image("http://example.org/x.png", "column 'img'")
