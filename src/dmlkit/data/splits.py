"""Split rules shared by every dataset: class-disjoint halves, seeded validation classes, image holdout.

Every item of a dataset carries a *part* (``"train"``, ``"test"``, ``"query"``, ``"gallery"`` or
``"val"``) and a class key. :func:`select_split` turns that into the items of one requested split and
their labels, renumbered ``0..C-1`` in sorted class-key order:

- ``"train"`` / ``"val"``: the items of part ``"train"``; with ``val_classes > 0`` a seeded subset of
  the training classes becomes ``"val"`` and leaves ``"train"`` (class-disjoint validation). With
  ``val_classes = ClassFold(fold, folds)`` the training classes are cut by a seeded permutation into
  ``folds`` near-equal groups and group ``fold`` is ``"val"`` (class-disjoint k-fold cross-validation,
  the Reality-Check protocol: the ``folds`` validation sets partition the training classes). A dataset whose items already carry part ``"val"`` (a CSV with a split column) serves
  those for ``"val"`` instead.
- ``"test"``: the items of part ``"test"``, or of ``"query"`` and ``"gallery"`` together.
- ``"query"`` / ``"gallery"``: those parts, labelled in the class space of query and gallery together,
  so a query and its gallery matches share one label.

Randomness comes only from ``numpy.random.default_rng([seed, stream])`` with a fixed stream id per
rule, so each rule is reproducible on its own. Memory O(N) for N items.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

SPLITS = ("train", "val", "test")
QUERY_GALLERY = ("query", "gallery")
_STREAM_TEST_CLASSES = 0
_STREAM_VAL_CLASSES = 1
_STREAM_IMAGE_HOLDOUT = 2
_STREAM_VAL_FOLDS = 3


@dataclass(frozen=True)
class ClassFold:
    """Validation fold ``fold`` (``0..folds-1``) of a class-disjoint ``folds``-fold split of the
    training classes."""

    fold: int
    folds: int

    def __post_init__(self) -> None:
        if isinstance(self.folds, bool) or not isinstance(self.folds, int) or self.folds < 2:
            raise ValueError(f"folds: expected an integer >= 2, got {self.folds!r}")
        if isinstance(self.fold, bool) or not isinstance(self.fold, int):
            raise TypeError(f"fold: expected an integer, got {self.fold!r}")
        if not 0 <= self.fold < self.folds:
            raise ValueError(f"fold: expected an integer in [0, {self.folds - 1}], got {self.fold}")


ValClasses = float | int | ClassFold


@dataclass(frozen=True)
class SplitItems:
    """The items of one split: ``indices (N,)`` into the dataset's item list, ``labels (N,)`` int64
    in ``0..C-1`` and ``class_keys (C,)``, the original class key of each label; ``query_mask``
    (bool ``(N,)``) marks the query items of a ``"test"`` split made of query and gallery parts
    (``None`` otherwise)."""

    indices: np.ndarray
    labels: np.ndarray
    class_keys: np.ndarray
    query_mask: np.ndarray | None = None


def check_split(split: str, allowed: Sequence[str], dataset: str) -> None:
    """Raise ``ValueError`` unless ``split`` is one of ``allowed``."""
    if split not in allowed:
        raise ValueError(
            f"{dataset}: expected split in {{{', '.join(map(repr, allowed))}}}, got {split!r}"
        )


def held_out_count(total: int, amount: float | int, what: str) -> int:
    """Number of the ``total`` units to hold out for ``amount`` (a fraction in ``[0, 1)`` or a count).

    A fraction is rounded and kept in ``1..total-1`` when positive; a count must be in ``0..total-1``.
    """
    if isinstance(amount, bool) or not isinstance(amount, (int, float)):
        raise TypeError(
            f"{what}: expected a fraction in [0, 1) or an integer count, got {amount!r}"
        )
    if isinstance(amount, float):
        if not 0.0 <= amount < 1.0:
            raise ValueError(f"{what}: expected a fraction in [0, 1), got {amount}")
        if amount == 0.0:
            return 0
        if total < 2:
            raise ValueError(f"{what}: cannot hold out a fraction of {total} unit(s); need >= 2")
        return min(max(round(total * amount), 1), total - 1)
    if not 0 <= amount < total:
        raise ValueError(f"{what}: expected an integer count in [0, {total - 1}], got {amount}")
    return amount


def class_fold(keys: np.ndarray, fold: ClassFold, seed: int) -> np.ndarray:
    """The sorted class keys of validation fold ``fold.fold``: the sorted unique ``keys`` are
    permuted with ``default_rng([seed, 3])`` and cut into ``fold.folds`` groups whose sizes differ
    by at most one (``numpy.array_split``); every key is in exactly one fold."""
    if len(keys) < fold.folds:
        raise ValueError(
            f"val folds: expected at least {fold.folds} training classes for {fold.folds} folds, "
            f"got {len(keys)}"
        )
    order = np.random.default_rng([seed, _STREAM_VAL_FOLDS]).permutation(len(keys))
    return np.sort(keys[np.array_split(order, fold.folds)[fold.fold]])


def seeded_subset(keys: np.ndarray, count: int, seed: int, stream: int) -> np.ndarray:
    """``count`` of the sorted unique ``keys`` drawn by a seeded permutation, returned sorted."""
    if count == 0:
        return keys[:0]
    order = np.random.default_rng([seed, stream]).permutation(len(keys))
    return np.sort(keys[order[:count]])


def class_disjoint_parts(item_classes: np.ndarray, test_fraction: float, seed: int) -> np.ndarray:
    """Assign part ``"train"``/``"test"`` per item with a seeded class-disjoint split.

    ``round(C * test_fraction)`` of the ``C`` classes (at least 1, at most ``C-1``) go to test.
    """
    keys = np.unique(item_classes)
    count = held_out_count(len(keys), float(test_fraction), "test_fraction")
    if count == 0:
        raise ValueError("test_fraction: expected a fraction in (0, 1), got 0")
    test = seeded_subset(keys, count, seed, _STREAM_TEST_CLASSES)
    return np.where(np.isin(item_classes, test), "test", "train")


def first_half_parts(item_classes: np.ndarray) -> np.ndarray:
    """The published DML protocol: the first half of the sorted classes train, the rest test.

    With ``C`` classes, the first ``C // 2`` are train (CUB 100/100, Cars196 98/98).
    """
    keys = np.unique(item_classes)
    train = keys[: len(keys) // 2]
    return np.where(np.isin(item_classes, train), "train", "test")


def image_holdout_parts(
    item_classes: np.ndarray, test_fraction: float, val_fraction: float, seed: int
) -> np.ndarray:
    """Assign ``"train"``/``"val"``/``"test"`` per item, stratified by class (images held out).

    Within each class, a seeded permutation sends ``round(n * test_fraction)`` items to test and
    ``round(n * val_fraction)`` to val; every class appears in every non-empty part.
    """
    for name, value in (("test_fraction", test_fraction), ("val_fraction", val_fraction)):
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{name}: expected a fraction in [0, 1), got {value}")
    if test_fraction + val_fraction >= 1.0:
        raise ValueError(
            f"test_fraction + val_fraction: expected < 1, got {test_fraction} + {val_fraction}"
        )
    rng = np.random.default_rng([seed, _STREAM_IMAGE_HOLDOUT])
    parts = np.full(len(item_classes), "train", dtype=object)
    for key in np.unique(item_classes):
        members = np.flatnonzero(item_classes == key)
        members = members[rng.permutation(len(members))]
        n_test = round(len(members) * test_fraction)
        n_val = round(len(members) * val_fraction)
        parts[members[:n_test]] = "test"
        parts[members[n_test : n_test + n_val]] = "val"
    return parts.astype(str)


def select_split(
    parts: np.ndarray,
    item_classes: np.ndarray,
    split: str,
    val_classes: ValClasses = 0,
    seed: int = 0,
) -> SplitItems:
    """Items and contiguous labels of ``split`` (rules in the module docstring).

    ``parts (N,)`` str and ``item_classes (N,)`` the class key of each item.
    """
    has_val_part = bool((parts == "val").any())
    if has_val_part and val_classes:
        raise ValueError(
            "val_classes: this dataset already defines its 'val' items; expected val_classes=0, "
            f"got {val_classes}"
        )
    train_keys = np.unique(item_classes[parts == "train"])
    if isinstance(val_classes, ClassFold):
        val_keys = class_fold(train_keys, val_classes, seed)
    else:
        n_val = (
            held_out_count(len(train_keys), val_classes, "val_classes") if len(train_keys) else 0
        )
        val_keys = seeded_subset(train_keys, n_val, seed, _STREAM_VAL_CLASSES)
    n_val = len(val_keys)
    in_val = np.isin(item_classes, val_keys)
    if split == "train":
        mask = (parts == "train") & ~in_val
    elif split == "val":
        if not n_val and not has_val_part:
            raise ValueError(
                "split 'val': expected val_classes > 0 (a fraction or a count of the training "
                "classes to hold out), got val_classes=0"
            )
        mask = (parts == "val") if has_val_part else ((parts == "train") & in_val)
    elif split == "test" and not (parts == "test").any():
        mask = np.isin(parts, QUERY_GALLERY)
    else:
        mask = parts == split
    if not mask.any():
        raise ValueError(f"split {split!r} has no items")
    indices = np.flatnonzero(mask)
    space = np.isin(parts, QUERY_GALLERY) if split in QUERY_GALLERY else mask
    class_keys = np.unique(item_classes[space])
    labels = np.searchsorted(class_keys, item_classes[indices]).astype(np.int64)
    query = parts[indices] == "query" if split == "test" and not (parts == "test").any() else None
    return SplitItems(indices=indices, labels=labels, class_keys=class_keys, query_mask=query)
