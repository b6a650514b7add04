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
    expected = torch.from_numpy(np.array(Image.fromarray(rgba).convert("RGB"))).permute(2, 0, 1)
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


def test_jpeg_size_reads_the_frame_header(tmp_path: Path) -> None:
    from dmlkit.data.decode import jpeg_size, read_bytes

    img = _photo(131, 77)
    cases = {
        "plain.jpg": {},
        "progressive.jpg": {"progressive": True},
        "exif.jpg": {"exif": Image.Exif().tobytes() + b"\x00" * 5000},
        "gray.jpg": {},
    }
    for name, options in cases.items():
        path = tmp_path / name
        (img.convert("L") if name == "gray.jpg" else img).save(path, quality=90, **options)
        assert jpeg_size(read_bytes(path)) == (131, 77), name
    img.save(tmp_path / "x.png")
    assert jpeg_size(read_bytes(tmp_path / "x.png")) is None
    header = read_bytes(tmp_path / "plain.jpg")[:20]  # cut before the frame header
    assert jpeg_size(header) is None


@pytest.mark.parametrize("reduce", [2, 4])
def test_reduced_decoding_is_pils_draft(tmp_path: Path, reduce: int) -> None:
    from dmlkit.data.decode import decode_bytes, read_bytes

    path = tmp_path / "big.jpg"
    _photo(403, 301).save(path, quality=90)
    pixels = decode_bytes(read_bytes(path), path, reduce)
    with Image.open(path) as img:
        img.draft("RGB", (403 // reduce, 301 // reduce))
        expected = pil_to_uint8(img)
    assert pixels.shape == (3, -(-301 // reduce), -(-403 // reduce))
    assert torch.equal(pixels, expected)
    png = tmp_path / "big.png"
    _photo(40, 30).save(png)  # not a JPEG: the full image comes back
    assert decode_bytes(read_bytes(png), png, 2).shape == (3, 30, 40)
    with pytest.raises(ValueError, match="reduce: expected 1, 2, 4 or 8, got 3"):
        decode_bytes(read_bytes(path), path, 3)


def test_decoding_without_torchvision_gives_the_same_pixels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dmlkit.data import decode

    path = tmp_path / "x.jpg"
    _photo().save(path, quality=90)
    with_torchvision = decode_file(path)
    monkeypatch.setattr(decode, "jpeg_decoder", lambda: None)
    assert torch.equal(decode_file(path), with_torchvision)


@pytest.mark.parametrize("train", [True, False])
def test_reduced_decoding_keeps_the_crop(tmp_path: Path, train: bool) -> None:
    """A 1000 x 760 photo: crops of 2x the output or more are decoded at reduced size; the
    result shows the same region as the full decoding within a few grey levels."""
    field = np.random.default_rng(3).integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
    path = tmp_path / "large.jpg"
    Image.fromarray(field).resize((1000, 760), Image.Resampling.BICUBIC).save(path, quality=95)
    tf = create_transform("dml", train=train)
    reduced = 0
    for seed in range(6):
        torch.manual_seed(seed)
        box = tf.draw(1000, 760)
        reduced += box.reduction(224) > 1
        torch.manual_seed(seed)
        fast = tf.from_file(path)
        torch.manual_seed(seed)
        full = tf.apply(decode_file(path))
        std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
        grey_levels = ((fast - full) * std * 255).abs()
        assert float(grey_levels.mean()) < 1.5 and float(grey_levels.max()) < 20
    assert reduced > 0  # the reduced path was taken (always for the centre crop)


def test_file_items_are_a_function_of_seed_epoch_index(tmp_path: Path) -> None:
    from torch.utils.data import DataLoader

    paths = []
    for k in range(6):
        paths.append(str(tmp_path / f"{k}.jpg"))
        _photo(320, 240 + 8 * k).save(paths[-1], quality=90)
    ds = FileDataset(paths, np.arange(6) % 2, ["a", "b"], create_transform("dml", True), seed=1)
    first = ds[4][0]
    assert torch.equal(ds[4][0], first) and not torch.equal(ds[3][0], first)
    ds.set_epoch(1)
    assert not torch.equal(ds[4][0], first)
    ds.set_epoch(0)
    assert torch.equal(ds[4][0], first)
    single = [x for x, _ in DataLoader(ds, batch_size=3)]
    workers = [x for x, _ in DataLoader(ds, batch_size=3, num_workers=2)]
    assert all(torch.equal(a, b) for a, b in zip(single, workers, strict=True))
    with pytest.raises(ValueError, match="epoch: expected an integer >= 0, got -1"):
        ds.set_epoch(-1)
