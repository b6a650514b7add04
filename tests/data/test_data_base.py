"""The dataset contract, per-sample seeded augmentation, image reading and the preflight check."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from data_helpers import write_image
from PIL import Image
from torch.utils.data import DataLoader

from dmlkit.data import (
    ArrayDataset,
    FileDataset,
    check_dataset,
    check_splits,
    create_transform,
    read_image,
)
from dmlkit.sampling import MPerClassBatchSampler


def tiny_arrays(n: int = 12, size: int = 10) -> ArrayDataset:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, size, size), dtype=np.uint8)
    labels = np.arange(n) % 3
    return ArrayDataset(
        images, labels, ["a", "b", "c"], create_transform("small", train=True), seed=5
    )


def test_array_dataset_items() -> None:
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    ds = ArrayDataset(images, np.array([1, 0]), ["x", "y"])
    x, y = ds[0]
    assert y == 1 and isinstance(y, int)
    assert torch.equal(x, torch.from_numpy(images[0]).float()[None] / 255.0)
    assert ds.image_channels == 1 and ds.image_size is None and ds.num_classes == 2
    assert np.array_equal(np.asarray(ds.image(-1)), images[1])
    with pytest.raises(IndexError, match="index 2 out of range"):
        ds[2]
    rgb = ArrayDataset(np.zeros((1, 5, 5, 3), dtype=np.uint8), np.array([0]), ["only"])
    assert rgb.image_channels == 3 and rgb.image_size == 5 and rgb[0][0].shape == (3, 5, 5)


def test_dataset_rejects_bad_labels() -> None:
    images = np.zeros((2, 4, 4), dtype=np.uint8)
    with pytest.raises(ValueError, match=r"labels: expected values in 0\.\.1"):
        ArrayDataset(images, np.array([0, 2]), ["a", "b"])
    with pytest.raises(TypeError, match="1-D integer array"):
        ArrayDataset(images, np.array([0.0, 1.0]), ["a", "b"])
    with pytest.raises(ValueError, match="expected uint8"):
        ArrayDataset(images.astype(np.float32), np.array([0, 1]), ["a", "b"])


def test_augmentation_is_a_function_of_seed_epoch_index() -> None:
    ds = tiny_arrays()
    state = torch.get_rng_state()
    first = ds[3][0]
    assert torch.equal(torch.get_rng_state(), state), "the global generator must be left untouched"
    assert torch.equal(ds[3][0], first)
    assert not torch.equal(ds[4][0], create_transform("small", train=False)(ds.image(4)))
    ds.set_epoch(1)
    assert not torch.equal(ds[3][0], first)
    ds.set_epoch(0)
    assert torch.equal(ds[3][0], first)
    other = tiny_arrays()
    other.seed = 6
    assert not torch.equal(other[3][0], first)


def test_loader_workers_do_not_change_the_batches() -> None:
    ds = tiny_arrays()
    sampler = MPerClassBatchSampler(ds.labels, m=2, batch_size=4, seed=1)
    single = [x for x, _ in DataLoader(ds, batch_sampler=sampler, num_workers=0)]
    multi = [x for x, _ in DataLoader(ds, batch_sampler=sampler, num_workers=2)]
    assert len(single) == len(sampler) and all(
        torch.equal(a, b) for a, b in zip(single, multi, strict=True)
    )


def test_read_image(tmp_path: Path) -> None:
    gray = tmp_path / "g.png"
    Image.new("L", (3, 2), 9).save(gray)
    img = read_image(gray)
    assert img.mode == "RGB" and img.getpixel((0, 0)) == (9, 9, 9)
    truncated = tmp_path / "t.jpg"
    write_image(tmp_path / "full.jpg", size=(64, 64))
    truncated.write_bytes((tmp_path / "full.jpg").read_bytes()[:200])
    with pytest.raises(ValueError, match=r"cannot decode image .*t\.jpg"):
        read_image(truncated)
    with pytest.raises(FileNotFoundError, match=r"image file not found: .*none\.png"):
        read_image(tmp_path / "none.png")


def test_check_dataset_reports_every_problem(tmp_path: Path) -> None:
    paths = [write_image(tmp_path / f"{k}.png") for k in range(5)]
    paths[1].write_bytes(b"garbage")
    paths[3].unlink()
    ds = FileDataset([str(p) for p in paths], np.array([0, 0, 1, 1, 2]), ["a", "b", "c"])
    with pytest.raises(ValueError, match="3 problem") as err:
        check_dataset(ds, m=2)
    text = str(err.value)
    assert "1 missing image file(s)" in text and "3.png" in text
    assert "1 unreadable image(s)" in text and "1.png" in text
    assert "1 class(es) with fewer than m=2 images" in text and "'c' (1)" in text
    with pytest.raises(ValueError, match="1 problem") as err:
        check_dataset(ds, decode_images=False)
    assert "3.png" in str(err.value) and "1.png" not in str(err.value)
    good = FileDataset([str(paths[0]), str(paths[2])], np.array([0, 0]), ["a"])
    assert check_dataset(good, m=2) is None
    with pytest.raises(ValueError, match="no items"):
        check_dataset(ArrayDataset(np.zeros((0, 2, 2), np.uint8), np.zeros(0, np.int64), []))


def test_check_splits_reports_the_problems_of_every_split_at_once(tmp_path: Path) -> None:
    paths = [write_image(tmp_path / f"{k}.png") for k in range(6)]
    paths[4].unlink()
    train = FileDataset([str(p) for p in paths[:3]], np.array([0, 0, 1]), ["a", "b"])
    test = FileDataset([str(p) for p in paths[3:]], np.array([0, 0, 1]), ["x", "y"])
    with pytest.raises(ValueError, match="3 problem") as err:
        check_splits({"train": train, "test": test}, m=2, batch_classes=3)
    text = str(err.value)
    assert "- train: 1 class(es) with fewer than m=2 images" in text and "'b' (1)" in text
    assert "- train: 2 class(es), but a batch draws 3 classes" in text
    assert "- test: 1 missing image file(s)" in text and "4.png" in text
    # the sampler conditions concern the training split only
    assert check_splits({"train": train, "val": train}, m=None, batch_classes=2) is None
