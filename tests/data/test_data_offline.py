"""digits and Fashion-MNIST: image-holdout splits, class-holdout mode, IDX parsing."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from dmlkit.data import create_dataset
from dmlkit.data.offline import FASHION_MNIST_ROOT, read_idx


def test_digits_image_holdout_keeps_every_class() -> None:
    from sklearn.datasets import load_digits

    raw = load_digits()
    train = create_dataset("digits", "train", test_fraction=0.3, val_fraction=0.2)
    val = create_dataset("digits", "val", test_fraction=0.3, val_fraction=0.2)
    test = create_dataset("digits", "test", test_fraction=0.3, val_fraction=0.2)
    assert len(train) + len(val) + len(test) == len(raw.target) == 1797
    for ds in (train, val, test):
        assert ds.class_names == [str(d) for d in range(10)]
        assert set(ds.labels.tolist()) == set(range(10))
        assert ds.image_channels == 1 and ds.image_size == 8
    counts = np.bincount(raw.target)
    assert np.array_equal(np.bincount(test.labels), np.rint(counts * 0.3).astype(int))
    x, y = test[0]
    assert y == test.labels[0]
    assert (
        x.shape == (1, 8, 8)
        and x.dtype == torch.float32
        and 0.0 <= float(x.min()) <= float(x.max()) <= 1.0
    )
    # the three splits partition the 0-16 images scaled to 0-255 (as multisets of image bytes)
    expected = sorted(bytes(img) for img in np.rint(raw.images * 255 / 16).astype(np.uint8))
    got = sorted(bytes(img) for ds in (train, val, test) for img in ds.images)
    assert got == expected
    again = create_dataset("digits", "test", test_fraction=0.3, val_fraction=0.2)
    assert np.array_equal(again.images, test.images)
    reseeded = create_dataset("digits", "test", test_fraction=0.3, val_fraction=0.2, seed=1)
    assert not np.array_equal(reseeded.images, test.images)


def test_digits_class_holdout_and_errors() -> None:
    train = create_dataset("digits", "train", holdout="classes", val_classes=1, seed=1)
    val = create_dataset("digits", "val", holdout="classes", val_classes=1, seed=1)
    test = create_dataset("digits", "test", holdout="classes", val_classes=1, seed=1)
    names = [set(d.class_names) for d in (train, val, test)]
    assert [len(n) for n in names] == [4, 1, 5]
    assert set().union(*names) == {str(d) for d in range(10)}
    with pytest.raises(ValueError, match="holds out images"):
        create_dataset("digits", "train", val_classes=0.2)
    with pytest.raises(ValueError, match="val_fraction > 0"):
        create_dataset("digits", "val")
    with pytest.raises(ValueError, match="holdout='classes'"):
        create_dataset("digits", "train", holdout="classes", val_fraction=0.1)
    with pytest.raises(ValueError, match="holdout: expected one of"):
        create_dataset("digits", "train", holdout="pixels")
    with pytest.raises(ValueError, match="expected root=None"):
        create_dataset("digits", "train", root="/data")
    with pytest.raises(ValueError, match="expected split in"):
        create_dataset("digits", "query")
    with pytest.raises(KeyError, match="registered: cars, csv, cub, digits"):
        create_dataset("mnist", "train")


def write_idx(path: Path, array: np.ndarray, compress: bool) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if compress else data)


def make_fashion(root: Path, compress: bool) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(50, 28, 28), dtype=np.uint8)
    labels = np.arange(50) % 10
    suffix = ".gz" if compress else ""
    write_idx(root / f"train-images-idx3-ubyte{suffix}", images[:40], compress)
    write_idx(root / f"train-labels-idx1-ubyte{suffix}", labels[:40], compress)
    write_idx(root / f"t10k-images-idx3-ubyte{suffix}", images[40:], compress)
    write_idx(root / f"t10k-labels-idx1-ubyte{suffix}", labels[40:], compress)
    return images, labels


@pytest.mark.parametrize("compress", [False, True])
def test_fashion_mnist_from_idx_files(tmp_path: Path, compress: bool) -> None:
    images, labels = make_fashion(tmp_path, compress)
    test = create_dataset("fashion_mnist", "test", root=tmp_path)
    assert np.array_equal(test.images, images[40:]) and np.array_equal(test.labels, labels[40:])
    assert test.class_names[0] == "T-shirt/top" and test.class_names[9] == "Ankle boot"
    train = create_dataset("fashion_mnist", "train", root=tmp_path, val_fraction=0.25)
    val = create_dataset("fashion_mnist", "val", root=tmp_path, val_fraction=0.25)
    assert len(train) == 30 and len(val) == 10 and set(val.labels.tolist()) == set(range(10))
    assert test.image(3).size == (28, 28) and test.image_size == 28
    classes = create_dataset("fashion_mnist", "test", root=tmp_path, holdout="classes")
    assert len(classes.class_names) == 5 and len(classes) == 25


def test_idx_errors(tmp_path: Path) -> None:
    bad = tmp_path / "x-idx3-ubyte"
    bad.write_bytes(bytes([0, 0, 0x0D, 1, 0, 0, 0, 1]) + b"\0\0\0\0")
    with pytest.raises(ValueError, match="unsigned bytes"):
        read_idx(bad)
    bad.write_bytes(bytes([0, 0, 0x08, 1, 0, 0, 0, 5, 1, 2]))
    with pytest.raises(ValueError, match=r"announces shape \(5,\), file holds 2"):
        read_idx(bad)
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"):
        create_dataset("fashion_mnist", "train", root=tmp_path)


@pytest.mark.skipif(
    not Path(FASHION_MNIST_ROOT).is_dir(),
    reason="Debian package dataset-fashion-mnist not installed (apt-get install dataset-fashion-mnist)",
)
def test_fashion_mnist_debian_package() -> None:
    test = create_dataset("fashion_mnist", "test")
    assert len(test) == 10_000 and test.images.shape[1:] == (28, 28)
    assert np.array_equal(np.bincount(test.labels), np.full(10, 1000))


def test_every_dataset_shares_one_keyword_only_signature() -> None:
    import inspect

    from dmlkit.data import DATASETS
    from dmlkit.data.registry import COMMON_NAMES

    for name in DATASETS.names():
        params = list(inspect.signature(DATASETS.get(name)).parameters.values())
        assert tuple(p.name for p in params[: len(COMMON_NAMES)]) == COMMON_NAMES, name
        assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params[1:]), name
    with pytest.raises(TypeError, match=r"dataset 'digits': unknown option\(s\) \['holdot'\]; "
                       "accepted: holdout, test_fraction, val_fraction"):  # fmt: skip
        create_dataset("digits", "train", holdot="classes")
    with pytest.raises(TypeError):
        DATASETS.get("digits")("train", None)  # root is keyword-only


def test_a_reader_with_positional_options_is_refused() -> None:
    from dmlkit.data import SplitRequest, register_dataset

    def reader(request: SplitRequest, size: int = 1) -> None:  # not keyword-only
        raise AssertionError

    with pytest.raises(TypeError, match="options must be keyword-only"):
        register_dataset("never_registered")(reader)  # type: ignore[arg-type]
