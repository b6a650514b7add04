"""Small offline sets: scikit-learn's digits (the embedded demo) and Fashion-MNIST from IDX files.

Both have only 10 classes, so by default they hold out IMAGES, not classes (``holdout="images"``):
``"train"``, ``"val"`` and ``"test"`` contain every class, and within each class a seeded
permutation assigns images to the parts (digits: ``test_fraction`` of each class to test,
``val_fraction`` to val; Fashion-MNIST: its official 10,000 test images are the test split and
``val_fraction`` of each class of the 60,000 training images is val). This is a closed-set check
that the pipeline learns, not a zero-shot benchmark. ``holdout="classes"`` pools all images and
splits the classes instead (seeded ``test_fraction`` of the classes to test, ``val_classes`` of the
training classes to val), a tiny zero-shot setting.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from dmlkit.data.base import ArrayDataset
from dmlkit.data.build import ItemTable, array_split
from dmlkit.data.registry import SplitRequest, register_dataset
from dmlkit.data.splits import ValClasses, class_disjoint_parts, image_holdout_parts

FASHION_MNIST_ROOT = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
HOLDOUTS = ("images", "classes")


def holdout_parts(
    classes: np.ndarray,
    holdout: str,
    test_fraction: float,
    val_fraction: float,
    val_classes: ValClasses,
    seed: int,
    official_test: np.ndarray | None = None,
) -> np.ndarray:
    """Parts per item for ``holdout`` (module docstring); ``official_test`` marks a fixed test set
    used in image mode instead of ``test_fraction``."""
    if holdout == "images":
        if val_classes:
            raise ValueError(
                "val_classes: this dataset holds out images (holdout='images'); expected "
                f"val_classes=0 and val_fraction for a validation split, got {val_classes}"
            )
        if official_test is None:
            return image_holdout_parts(classes, test_fraction, val_fraction, seed)
        parts = np.full(len(classes), "test", dtype=object)
        train = ~official_test
        parts[train] = image_holdout_parts(classes[train], 0.0, val_fraction, seed)
        return parts.astype(str)
    if holdout == "classes":
        if val_fraction:
            raise ValueError(
                "val_fraction: with holdout='classes' the validation split holds out classes; "
                f"expected val_fraction=0 and val_classes, got {val_fraction}"
            )
        return class_disjoint_parts(classes, test_fraction, seed)
    raise ValueError(f"holdout: expected one of {HOLDOUTS}, got {holdout!r}")


def check_no_val_images(split: str, holdout: str, val_fraction: float) -> None:
    """``ValueError`` for split "val" in image mode without ``val_fraction``."""
    if split == "val" and holdout == "images" and not val_fraction:
        raise ValueError(
            "split 'val': with holdout='images' expected val_fraction > 0 (a fraction of each "
            "class's training images), got val_fraction=0"
        )


@register_dataset("digits")
def digits(
    request: SplitRequest,
    *,
    holdout: str = "images",
    test_fraction: float = 0.5,
    val_fraction: float = 0.0,
) -> ArrayDataset:
    """scikit-learn's 1,797 8x8 digit images (0-16 scaled to 0-255), 10 classes.

    IMAGE splits by default (module docstring): each split holds every digit.
    """
    if request.root is not None:
        raise ValueError(
            f"digits: the images ship with scikit-learn; expected root=None, got {request.root!r}"
        )
    from sklearn.datasets import load_digits

    data = load_digits()
    images = np.rint(data.images * (255.0 / 16.0)).astype(np.uint8)
    classes = data.target.astype(np.int64)
    check_no_val_images(request.split, holdout, val_fraction)
    parts = holdout_parts(
        classes, holdout, test_fraction, val_fraction, request.val_classes, request.seed
    )
    return array_split(ItemTable("digits", images, classes, parts), request)


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (the MNIST format; gzip-compressed when the name ends in ``.gz``) of unsigned bytes.

    Header: two zero bytes, type code ``0x08`` (uint8), the number of dimensions, then one big-endian
    uint32 per dimension; the data follows in C order.
    """
    raw = (gzip.decompress if path.suffix == ".gz" else bytes)(path.read_bytes())
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] != 0x08:
        raise ValueError(f"{path}: expected an IDX file of unsigned bytes (magic 00 00 08 nd)")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * k : 8 + 4 * k], "big") for k in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header announces shape {shape}, file holds {data.size} values")
    return data.reshape(shape)


def find_idx(root: Path, stem: str) -> Path:
    """``root/stem`` or ``root/stem.gz``; ``FileNotFoundError`` naming both and the Debian package."""
    for name in (stem, stem + ".gz"):
        if (root / name).is_file():
            return root / name
    raise FileNotFoundError(
        f"fashion_mnist: missing {root / stem}(.gz). Install the Debian package "
        f"dataset-fashion-mnist (apt-get install dataset-fashion-mnist, files in "
        f"{FASHION_MNIST_ROOT}) or pass root=<directory with train-images-idx3-ubyte, "
        "train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte[.gz]>"
    )


@register_dataset("fashion_mnist")
def fashion_mnist(
    request: SplitRequest,
    *,
    holdout: str = "images",
    test_fraction: float = 0.5,
    val_fraction: float = 0.0,
) -> ArrayDataset:
    """Fashion-MNIST, 70,000 28x28 grayscale images, 10 classes, from IDX files under ``root``
    (default: the Debian package's ``/usr/share/datasets/fashion-mnist``).

    IMAGE splits by default (module docstring): the official test set is ``"test"``;
    ``test_fraction`` applies only with ``holdout="classes"``.
    """
    base = Path(FASHION_MNIST_ROOT if request.root is None else request.root).expanduser()
    images, classes = [], []
    for prefix in ("train", "t10k"):
        images.append(read_idx(find_idx(base, f"{prefix}-images-idx3-ubyte")))
        classes.append(read_idx(find_idx(base, f"{prefix}-labels-idx1-ubyte")).astype(np.int64))
        if images[-1].ndim != 3 or len(images[-1]) != len(classes[-1]):
            raise ValueError(
                f"fashion_mnist: {prefix} images {images[-1].shape} do not match "
                f"{len(classes[-1])} labels"
            )
    official_test = np.repeat([False, True], [len(classes[0]), len(classes[1])])
    all_classes = np.concatenate(classes)
    check_no_val_images(request.split, holdout, val_fraction)
    parts = holdout_parts(
        all_classes,
        holdout,
        test_fraction,
        val_fraction,
        request.val_classes,
        request.seed,
        official_test,
    )
    names = dict(enumerate(FASHION_MNIST_CLASSES))
    table = ItemTable("fashion_mnist", np.concatenate(images), all_classes, parts, names=names)
    return array_split(table, request)
