"""Decoding files to uint8 tensors: the same pixels as PIL, errors that name the path, and the
DML presets reading files directly inside :class:`FileDataset`."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dmlkit.data import FileDataset, create_transform, read_image
from dmlkit.data.decode import decode_file, pil_to_uint8


def _photo(width: int = 120, height: int = 90) -> Image.Image:
    field = np.random.default_rng(1).integers(0, 256, size=(4, 5, 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(field).resize((width, height), Image.Resampling.BICUBIC))
    noise = np.random.default_rng(2).integers(-20, 21, size=smooth.shape)
    return Image.fromarray(np.clip(smooth + noise, 0, 255).astype(np.uint8))


@pytest.mark.parametrize("mode", ["RGB", "L", "CMYK"])
def test_jpeg_pixels_equal_pil(tmp_path: Path, mode: str) -> None:
    path = tmp_path / f"x_{mode}.jpg"
    _photo().convert(mode).save(path, quality=90)
    pixels = decode_file(path)
    assert pixels.dtype == torch.uint8 and pixels.shape == (3, 90, 120)
    assert torch.equal(pixels, pil_to_uint8(read_image(path)))


def test_other_formats_go_through_pil(tmp_path: Path) -> None:
    rgba = np.random.default_rng(0).integers(0, 256, size=(7, 9, 4), dtype=np.uint8)
    path = tmp_path / "a.png"
    Image.fromarray(rgba).save(path)
    expected = torch.from_numpy(np.asarray(Image.fromarray(rgba).convert("RGB"))).permute(2, 0, 1)
    assert torch.equal(decode_file(path), expected)
    gray = tmp_path / "g.bmp"
    Image.new("L", (3, 2), 9).save(gray)
    assert torch.equal(decode_file(gray), torch.full((3, 2, 3), 9, dtype=torch.uint8))


def test_decode_errors_name_the_path(tmp_path: Path) -> None:
    full = io.BytesIO()
    _photo().save(full, "JPEG", quality=90)
    truncated = tmp_path / "t.jpg"
    truncated.write_bytes(full.getvalue()[:300])
    with pytest.raises(ValueError, match=r"cannot decode image .*t\.jpg"):
        decode_file(truncated)
    garbage = tmp_path / "g.jpg"
    garbage.write_bytes(b"\xff\xd8\xff" + b"not a jpeg" * 20)
    with pytest.raises(ValueError, match=r"cannot decode image .*g\.jpg"):
        decode_file(garbage)
    with pytest.raises(FileNotFoundError, match=r"image file not found: .*none\.jpg"):
        decode_file(tmp_path / "none.jpg")


@pytest.mark.parametrize("name", ["dml", "dml227", "caffe_bgr"])
def test_file_items_equal_the_transform_of_the_decoded_image(tmp_path: Path, name: str) -> None:
    """A FileDataset with a DML preset decodes the file itself (``from_file``): the same values
    as the preset applied to the PIL image under the same seed."""
    paths = []
    for k in range(3):
        paths.append(str(tmp_path / f"{k}.jpg"))
        _photo(300 + 40 * k, 260).save(paths[-1], quality=90)
    tf = create_transform(name, train=True)
    ds = FileDataset(paths, np.array([0, 0, 1]), ["a", "b"], tf, seed=3)
    for i in range(3):
        x, label = ds[i]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(ds.sample_seed(i))
            expected = tf(ds.image(i))
        assert label == ds.labels[i] and torch.equal(x, expected)
