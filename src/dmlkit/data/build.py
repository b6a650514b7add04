"""From an item table (image or path, class key, part) to the dataset of one split.

Every loader parses its files into three aligned arrays, ``class keys (N,)``, ``parts (N,)``
(see :mod:`dmlkit.data.splits`) and the images or paths, then calls :func:`file_split` or
:func:`array_split`, which select the split, renumber the labels, name the classes and keep each
item's place in the full table as its ``item_ids``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dmlkit.data.base import ON_CORRUPT, ArrayDataset, FileDataset, Transform, readable
from dmlkit.data.splits import ValClasses, check_split, select_split


def names_of(class_keys: np.ndarray, names: Mapping[Any, str] | None) -> list[str]:
    """Class names for ``class_keys``: ``names[key]``, or ``str(key)`` without a mapping."""
    return [str(k) if names is None else names[k] for k in class_keys]


def file_split(
    dataset: str,
    paths: Sequence[str | Path],
    item_classes: np.ndarray,
    parts: np.ndarray,
    split: str,
    allowed: Sequence[str],
    transform: Transform | None,
    names: Mapping[Any, str] | None = None,
    val_classes: ValClasses = 0,
    seed: int = 0,
    on_corrupt: str = "error",
) -> FileDataset:
    """The :class:`FileDataset` of ``split``.

    ``on_corrupt="skip"`` decodes the split's images once and drops unreadable ones with a warning;
    ``"error"`` (default) leaves them in, and reading one raises an error naming its path.
    """
    check_split(split, allowed, dataset)
    if on_corrupt not in ON_CORRUPT:
        raise ValueError(f"on_corrupt: expected one of {ON_CORRUPT}, got {on_corrupt!r}")
    paths_arr = np.asarray([str(p) for p in paths], dtype=object)
    items = select_split(parts, item_classes, split, val_classes, seed)
    if on_corrupt == "skip":
        bad = items.indices[~readable(list(paths_arr[items.indices]))]
        if len(bad):
            parts = parts.copy().astype(object)
            parts[bad] = "unreadable"
            items = select_split(parts.astype(str), item_classes, split, val_classes, seed)
    out = FileDataset(
        list(paths_arr[items.indices]),
        items.labels,
        names_of(items.class_keys, names),
        transform,
        seed=seed,
    )
    out.item_ids = items.indices.astype(np.int64)
    out.query_mask = items.query_mask
    return out


def array_split(
    dataset: str,
    images: np.ndarray,
    item_classes: np.ndarray,
    parts: np.ndarray,
    split: str,
    allowed: Sequence[str],
    transform: Transform | None,
    names: Mapping[Any, str] | None = None,
    val_classes: ValClasses = 0,
    seed: int = 0,
) -> ArrayDataset:
    """The :class:`ArrayDataset` of ``split`` (images ``(N, H, W[, 3])`` uint8)."""
    check_split(split, allowed, dataset)
    items = select_split(parts, item_classes, split, val_classes, seed)
    out = ArrayDataset(
        images[items.indices],
        items.labels,
        names_of(items.class_keys, names),
        transform,
        seed=seed,
    )
    out.item_ids = items.indices.astype(np.int64)
    out.query_mask = items.query_mask
    return out
